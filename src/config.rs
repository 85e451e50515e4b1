//! The host's configuration from the environment: every `MINIFARGATE_*` variable (and the
//! few others minifargate itself reads) declared once in a table, parsed once at start-up.
//!
//! Each process parses the table from its own environment when `main` starts ([`init`]):
//! a verb, `serve`, and a task's supervisor (which inherits the environment of the
//! `run-task` or `serve` that started it). A value that does not parse is an error then,
//! naming the variable and the value, before anything is done; an empty value is the same
//! as an unset one. Code below reads the typed [`Config`] through [`get`], never the
//! environment. The table is also the single source of docs/configuration.md (a unit test
//! checks it is up to date; `UPDATE_DOCS=1` rewrites it) and of the man pages' ENVIRONMENT
//! section (`cli::help::man_pages`).
//!
//! Variables a clap option also takes (`--root` …) are parsed by clap (the option wins);
//! the table lists them so that the docs and the man page have them, and a test checks
//! clap's `env` names match. The tests' hooks are in their own table, compiled only in
//! builds with debug assertions or the `test-hooks` feature, as the code reading them.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

/// One environment variable minifargate documents.
#[derive(Debug, Clone, Copy)]
pub struct Var {
    pub name: &'static str,
    /// What a value looks like.
    pub kind: &'static str,
    /// The value taken when the variable is unset or empty (parsed like a given one);
    /// `None`: unset has a meaning of its own, which `meaning` says.
    pub default: Option<&'static str>,
    pub meaning: &'static str,
    /// The commands or processes that read it.
    pub read_by: &'static str,
}

/// A variable whose value does not parse.
#[derive(Debug, thiserror::Error)]
#[error("{name}={value:?}")]
pub struct ConfigError {
    pub name: &'static str,
    pub value: String,
    #[source]
    pub source: BadValue,
}

/// Why a value does not parse.
#[derive(Debug, thiserror::Error)]
pub enum BadValue {
    #[error("expected a whole number ({what})")]
    Number { what: &'static str },
    #[error("expected a number of seconds (0 or more)")]
    Seconds,
    #[error("expected seconds between 0 and 86400 (more than 0)")]
    Timeout,
    #[error("not a size: use a number of bytes or one with k, m or g (e.g. 10m)")]
    Size,
    #[error("not a number of files: use a whole number of at least 1")]
    Files,
    #[error("expected one of: {0}")]
    OneOf(&'static str),
    #[error("a bridge name is 1-15 characters from a-z A-Z 0-9 _ -")]
    Bridge,
    #[error(transparent)]
    Subnet(#[from] netns::IpamError),
    #[error("an AWS account id is 12 digits")]
    Account,
    #[error("expected START:COUNT")]
    RangeSyntax,
    #[error("{0}")]
    Range(#[from] IdRangeError),
}

macro_rules! table {
    (
        $(#[$meta:meta])*
        pub struct $S:ident, pub const $T:ident {
            $( $(#[$fmeta:meta])* $field:ident : $ty:ty = $parse:path, $var:expr; )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone)]
        pub struct $S {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        /// The table of these variables, in the order of the fields.
        pub const $T: &[Var] = &[$($var),*];

        impl $S {
            /// Parses every variable of the table from `lookup` (the environment).
            pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<$S, ConfigError> {
                let mut vars = $T.iter();
                Ok($S {
                    $( $field: read(vars.next().expect("one entry per field"), lookup, $parse)?, )*
                })
            }
        }
    };
}

fn read<T>(
    var: &Var,
    lookup: &dyn Fn(&str) -> Option<String>,
    parse: fn(&str) -> Result<T, BadValue>,
) -> Result<T, ConfigError> {
    let given = lookup(var.name).filter(|v| !v.is_empty());
    let value = given.as_deref().or(var.default).unwrap_or("");
    parse(value).map_err(|source| ConfigError {
        name: var.name,
        value: value.into(),
        source,
    })
}

const SUPERVISOR: &str = "a task's supervisor (inherited from run-task, run or serve)";

table! {
    /// What the environment sets, typed (see the module's header).
    pub struct Config, pub const SETTINGS {
        bridge: String = bridge, Var {
            name: "MINIFARGATE_BRIDGE",
            kind: "bridge name",
            // Issue 5: not podman's 10.88, Docker's 172.17 or the default VPC's 172.31.
            default: Some("mfg0"),
            meaning: "The host bridge the tasks' network namespaces are attached to.",
            read_by: "run-task, run, serve, a task's supervisor, the clean-up of dead tasks",
        };
        subnet: netns::Subnet = subnet, Var {
            name: "MINIFARGATE_SUBNET",
            kind: "IPv4 CIDR",
            default: Some("10.94.0.0/16"),
            meaning: "The tasks' subnet on that bridge (the bridge has its first address). \
                      `agent --cluster`: given, this box's subnet (refused if another box \
                      holds one overlapping it); unset, the agent leases one from \
                      `--task-range`.",
            read_by: "run-task, run, serve, agent, a task's supervisor, the clean-up of dead tasks",
        };
        lb_subnet: netns::Subnet = subnet, Var {
            name: "MINIFARGATE_LB_SUBNET",
            kind: "IPv4 CIDR",
            // Beside the tasks' 10.94/16, for the same reasons (issue 5).
            default: Some("10.93.0.0/16"),
            meaning: "The range each load balancer's address is taken from (one /32 a load \
                      balancer, on the task bridge: reachable from the box and its tasks).",
            read_by: "serve",
        };
        hosts_file: Option<PathBuf> = hosts_path, Var {
            name: "MINIFARGATE_HOSTS_FILE",
            kind: "path",
            default: Some("/etc/hosts"),
            meaning: "The hosts file in which serve keeps a marked block naming each load \
                      balancer's DNSName (lines outside the block are never changed); `off`: \
                      none is written.",
            read_by: "serve",
        };
        nft: Option<PathBuf> = opt_path, Var {
            name: "MINIFARGATE_NFT",
            kind: "path",
            default: None,
            meaning: "Write the tasks' nftables rules with this `nft` binary instead of over \
                      netlink; a path that does not exist runs tasks as on a host without \
                      nftables.",
            read_by: SUPERVISOR,
        };
        userns_range: Option<IdRange> = opt_id_range, Var {
            name: "MINIFARGATE_USERNS_RANGE",
            kind: "START:COUNT",
            default: None,
            meaning: "The host ids per-task user namespaces are cut from (65536 a task); \
                      unset: the /etc/subuid and /etc/subgid entries of \
                      MINIFARGATE_USERNS_USER.",
            read_by: SUPERVISOR,
        };
        userns_user: Option<String> = opt_string, Var {
            name: "MINIFARGATE_USERNS_USER",
            kind: "user name",
            default: None,
            meaning: "The user whose subordinate ids are the pool; unset: `minifargate`, \
                      and no pool when it has no entries.",
            read_by: SUPERVISOR,
        };
        ephemeral_storage: EphemeralStorage = ephemeral_storage, Var {
            name: "MINIFARGATE_EPHEMERAL_STORAGE",
            kind: "enforce | off",
            default: Some("off"),
            meaning: "`enforce`: each task's writable layers and volumes on a loop-mounted \
                      ext4 of its ephemeralStorage size; `off`: not applied (the task says so).",
            read_by: SUPERVISOR,
        };
        restart_attempt_period: Option<Duration> = opt_seconds, Var {
            name: "MINIFARGATE_RESTART_ATTEMPT_PERIOD",
            kind: "seconds",
            default: None,
            meaning: "Replaces every container's restartPolicy.restartAttemptPeriod (ECS's \
                      minimum of 60 s makes a crash loop slow to watch); unset: the task \
                      definition's (default 300).",
            read_by: SUPERVISOR,
        };
        idle_release: Duration = millis, Var {
            name: "MINIFARGATE_IDLE_RELEASE_MS",
            kind: "milliseconds",
            default: Some("250"),
            meaning: "Quiet time after which a running task's supervisor releases the memory \
                      it no longer uses (benchmarks compare values).",
            read_by: SUPERVISOR,
        };
        log_max_size: u64 = size, Var {
            name: "MINIFARGATE_LOG_MAX_SIZE",
            kind: "size (10m, 512k, 1g, bytes)",
            default: Some("10m"),
            meaning: "Size at which a container's json-file rotates (the json-file driver's \
                      max-size option wins).",
            read_by: SUPERVISOR,
        };
        log_max_files: u32 = files, Var {
            name: "MINIFARGATE_LOG_MAX_FILES",
            kind: "count",
            default: Some("5"),
            meaning: "Files kept per container, the current one included (the json-file \
                      driver's max-file option wins).",
            read_by: SUPERVISOR,
        };
        awslogs_forward: bool = boolean, Var {
            name: "MINIFARGATE_AWSLOGS_FORWARD",
            kind: "1 | 0",
            default: Some("0"),
            meaning: "1 (or true, yes): awslogs containers' batches also go to the real \
                      CloudWatch Logs, with the task execution role's credentials.",
            read_by: SUPERVISOR,
        };
        logs_max_bytes: u64 = size, Var {
            name: "MINIFARGATE_LOGS_MAX_BYTES",
            kind: "size (10m, 512k, 1g, bytes)",
            default: Some("1g"),
            meaning: "The local CloudWatch Logs store's limit: past it, the oldest events go.",
            read_by: "a task's supervisor (awslogs), serve (PutLogEvents)",
        };
        metrics_period: Duration = metrics_period, Var {
            name: "MINIFARGATE_METRICS_PERIOD",
            kind: "seconds (1, 5, 10, 20, 30 or a multiple of 60)",
            default: Some("60"),
            meaning: "The box's metric period (CloudWatch's minute by default): ECS samples \
                      its tasks' CPU and memory three times a period and publishes \
                      AWS/ECS CPUUtilization and MemoryUtilization at that resolution \
                      (high resolution under 60 s). Shorter makes what takes minutes on \
                      AWS watchable in seconds (demos, classes; docs/cloudwatch.md); target \
                      tracking alarms take it as their period and scaling cooldowns scale \
                      with it (docs/scaling.md).",
            read_by: "serve",
        };
        ecr_lifecycle_interval: Duration = secs_f64, Var {
            name: "MINIFARGATE_ECR_LIFECYCLE_INTERVAL",
            kind: "seconds",
            default: Some("3600"),
            meaning: "How often the registry applies the repositories' lifecycle policies \
                      and collects garbage, the first time one interval after serve starts \
                      (ECR: within 24 hours; docs/registry.md).",
            read_by: "serve",
        };
        ecr_gc_grace: Duration = secs_f64, Var {
            name: "MINIFARGATE_ECR_GC_GRACE",
            kind: "seconds",
            default: Some("3600"),
            meaning: "How long a blob a client uploaded or read stays without a manifest \
                      naming it (a push or pull in flight; docs/registry.md \"Garbage \
                      collection\").",
            read_by: "serve",
        };
        registry_certs_d: Option<PathBuf> = hosts_path, Var {
            name: "MINIFARGATE_REGISTRY_CERTS_D",
            kind: "path | off",
            default: Some("/etc/containers/certs.d"),
            meaning: "Where serve writes `<host:port>/ca.crt` (and `<ECR host>/ca.crt`) so \
                      podman, skopeo and buildah trust the registry's HTTPS; `off`: nowhere \
                      (docs/registry.md \"HTTPS\").",
            read_by: "serve",
        };
        docker_certs_d: Option<PathBuf> = hosts_path, Var {
            name: "MINIFARGATE_DOCKER_CERTS_D",
            kind: "path | off",
            default: Some("/etc/docker/certs.d"),
            meaning: "Where serve writes `<ECR host>/ca.crt` so Docker trusts the registry \
                      answering on port 443 at its ECR host name; `off`: nowhere \
                      (docs/registry.md \"The repository URI on the box\").",
            read_by: "serve",
        };
        registry_advertise: Option<String> = opt_string, Var {
            name: "MINIFARGATE_REGISTRY_ADVERTISE",
            kind: "host:port",
            default: None,
            meaning: "With serve --cluster: the address the cluster's boxes pull from this \
                      serve's registry at (its certificate names the host); unset: the \
                      --listen address, or, for a wildcard listener, this machine's \
                      address toward etcd with serve's port (docs/registry.md \"A \
                      cluster's boxes\").",
            read_by: "serve",
        };
        stopped_task_retention: Duration = seconds, Var {
            name: "MINIFARGATE_STOPPED_TASK_RETENTION",
            kind: "seconds",
            default: Some("3600"),
            meaning: "How long STOPPED tasks stay describable (ECS: about an hour).",
            read_by: "every command that reads tasks, serve",
        };
        max_unpacked_size: Option<u64> = opt_bytes, Var {
            name: "MINIFARGATE_MAX_UNPACKED_SIZE",
            kind: "bytes",
            default: None,
            meaning: "Refuse a layer that unpacks to more; unset: the config file's \
                      max_unpacked_size (default 32 GiB).",
            read_by: "pull, load, run-task, run, a task's supervisor",
        };
        min_free_space: Option<u64> = opt_bytes, Var {
            name: "MINIFARGATE_MIN_FREE_SPACE",
            kind: "bytes",
            default: None,
            meaning: "Bytes to keep free on the image cache's filesystem; unset: the config \
                      file's min_free_space (default 256 MiB).",
            read_by: "pull, load, run-task, run, a task's supervisor",
        };
        registry_read_timeout: Option<f64> = opt_timeout, Var {
            name: "MINIFARGATE_REGISTRY_READ_TIMEOUT",
            kind: "seconds",
            default: None,
            meaning: "Seconds a registry connection may stay silent before the read is \
                      abandoned and resumed; unset: the config file's registry_read_timeout \
                      (default 30).",
            read_by: "pull, run-task, run, a task's supervisor",
        };
        trash_delay: Duration = millis, Var {
            name: "MINIFARGATE_TRASH_DELAY_MS",
            kind: "milliseconds",
            default: Some("30000"),
            meaning: "How long prune's background deleter waits before it deletes what prune \
                      moved to the trash.",
            read_by: "the deleter prune starts",
        };
        account_id: String = account, Var {
            name: "MINIFARGATE_ACCOUNT_ID",
            kind: "12 digits",
            default: Some(crate::taskdef::arn::DEFAULT_ACCOUNT_ID),
            meaning: "The account in every ARN minifargate prints.",
            read_by: "every command that prints an ARN, serve, a task's supervisor",
        };
        aws_region: Option<String> = opt_string, Var {
            name: "AWS_REGION",
            kind: "region",
            default: None,
            meaning: "The region in ARNs and of AWS calls; unset: AWS_DEFAULT_REGION, else \
                      us-east-1.",
            read_by: "every command that prints an ARN, serve, a task's supervisor",
        };
        aws_default_region: Option<String> = opt_string, Var {
            name: "AWS_DEFAULT_REGION",
            kind: "region",
            default: None,
            meaning: "The region when AWS_REGION is unset.",
            read_by: "every command that prints an ARN, serve, a task's supervisor",
        };
        api_access_key_id: Option<String> = opt_string, Var {
            name: "MINIFARGATE_API_ACCESS_KEY_ID",
            kind: "access key id",
            default: None,
            meaning: "With MINIFARGATE_API_SECRET_ACCESS_KEY: a key pair the API accepts \
                      (instead of the one serve generates).",
            read_by: "serve",
        };
        api_secret_access_key: Option<String> = opt_string, Var {
            name: "MINIFARGATE_API_SECRET_ACCESS_KEY",
            kind: "secret",
            default: None,
            meaning: "The secret of MINIFARGATE_API_ACCESS_KEY_ID.",
            read_by: "serve",
        };
    }
}

/// Variables a command-line option also takes: clap reads them (the option wins).
pub const OPTIONS: &[(Var, &str)] = &[
    (
        Var {
            name: "MINIFARGATE_ROOT",
            kind: "path",
            default: Some("/var/lib/minifargate"),
            meaning: "State directory: images, layers, tasks, state.db.",
            read_by: "every command",
        },
        "--root",
    ),
    (
        Var {
            name: "MINIFARGATE_RUN_ROOT",
            kind: "path",
            default: Some("/run/minifargate"),
            meaning: "Runtime directory: sockets, locks, netns mounts.",
            read_by: "every command",
        },
        "--run-root",
    ),
    (
        Var {
            name: "MINIFARGATE_CONFIG",
            kind: "path",
            default: None,
            meaning: "Registry configuration file (mirrors, insecure registries, limits); \
                      unset: /etc/minifargate/config.toml if it exists.",
            read_by: "every command",
        },
        "--config",
    ),
    (
        Var {
            name: "MINIFARGATE_USERNS",
            kind: "auto | on | off",
            default: Some("auto"),
            meaning: "Per-task user namespaces (docs/security.md).",
            read_by: "every command",
        },
        "--userns",
    ),
    (
        Var {
            name: "MINIFARGATE_API_CREDENTIALS_FILE",
            kind: "path",
            default: None,
            meaning: "A file of `ACCESS_KEY_ID SECRET_ACCESS_KEY` lines the API accepts.",
            read_by: "serve",
        },
        "--credentials-file",
    ),
    (
        Var {
            name: "MINIFARGATE_ETCD_CERTS",
            kind: "path",
            default: None,
            meaning: "A client bundle of `minifargate cluster init`/`add-box` (ca.crt, \
                      client.crt, client.key) for etcd (docs/cluster.md \"Security\").",
            read_by: "serve --cluster, agent, exec --etcd, logs --etcd",
        },
        "--etcd-certs",
    ),
    (
        Var {
            name: "MINIFARGATE_JOIN_TOKEN",
            kind: "token",
            default: None,
            meaning: "A join token of `minifargate cluster token create`, used with \
                      `--server` on the box's first start; later starts need none \
                      (docs/cluster.md \"Joining a box with a token\").",
            read_by: "agent",
        },
        "--token",
    ),
];

/// Variables minifargate honours that libraries or conventions define.
pub const OTHERS: &[Var] = &[
    Var {
        name: "RUST_LOG",
        kind: "filter",
        default: None,
        meaning: "Log filter; wins over --log-level.",
        read_by: "every command",
    },
    Var {
        name: "NO_COLOR",
        kind: "any",
        default: None,
        meaning: "No colours on a terminal.",
        read_by: "every command",
    },
    Var {
        name: "AWS_PROFILE, AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL_<SERVICE>, …",
        kind: "AWS SDK",
        default: None,
        meaning: "The AWS credential chain and endpoints for ECR pulls, secrets, S3 \
                  environment files, task roles and awslogs forwarding.",
        read_by: "pull, run-task, run, serve, a task's supervisor",
    },
    Var {
        name: "DOCKER_CONFIG",
        kind: "path",
        default: Some("~/.docker"),
        meaning: "Where docker's config.json (registry logins) is.",
        read_by: "pull, run-task, run, serve, a task's supervisor",
    },
];

#[cfg(any(debug_assertions, feature = "test-hooks", test))]
table! {
    /// The tests' hooks: only in builds with debug assertions (what `cargo test` builds)
    /// or the `test-hooks` feature; a release binary does not contain their names
    /// (scripts/release checks).
    pub struct Hooks, pub const HOOKS {
        test_pause: Option<String> = opt_string, Var {
            name: "MINIFARGATE_TEST_PAUSE",
            kind: "points",
            default: None,
            meaning: "Comma-separated points (launch, network, teardown, stopped) at which \
                      the process writes its pid to a paused-<point> file and sleeps until \
                      killed (tests/reliability_crash.rs).",
            read_by: "run-task, run, a task's supervisor",
        };
        test_network_delay: Option<Duration> = opt_millis, Var {
            name: "MINIFARGATE_TEST_NETWORK_DELAY",
            kind: "milliseconds",
            default: None,
            meaning: "How long a task's network configuration waits before it makes the \
                      veth pair (tests/run_task_overlap.rs: what happens beside it; \
                      tests/reliability_crash.rs: the root removed meanwhile).",
            read_by: "a task's supervisor",
        };
        binfmt_misc: Option<PathBuf> = opt_path, Var {
            name: "MINIFARGATE_BINFMT_MISC",
            kind: "path",
            default: None,
            meaning: "The binfmt_misc directory to read instead of /proc/sys/fs/binfmt_misc \
                      (tests/run_task_platform.rs).",
            read_by: "validate, run-task, run",
        };
    }
}

/// The tests' variables the binary does not read: documented beside its hooks.
#[cfg(test)]
pub const TEST_ONLY: &[Var] = &[
    Var {
        name: "MINIFARGATE_TEST_ETCD",
        kind: "plain",
        default: None,
        meaning: "The cluster tests' etcd over plain http on loopback, without `cluster \
                  init`'s client certificates (tests/common/etcd.rs).",
        read_by: "tests/",
    },
    Var {
        name: "MINIFARGATE_TEST_BIN",
        kind: "path",
        default: None,
        meaning: "The binary the integration tests run instead of this build's.",
        read_by: "tests/",
    },
    Var {
        name: "MINIFARGATE_TEST_USERNS",
        kind: "auto | on | off",
        default: None,
        meaning: "Runs the integration tests with per-task user namespaces.",
        read_by: "tests/",
    },
    Var {
        name: "MINIFARGATE_TEST_EMULATED_CPU",
        kind: "1",
        default: None,
        meaning: "The machine's CPU is emulated (TCG): the tests allow for slow timings.",
        read_by: "tests/",
    },
    Var {
        name: "MINIFARGATE_FUZZ_SECONDS, MINIFARGATE_FUZZ_SEED",
        kind: "seconds, number",
        default: None,
        meaning: "How long the API fuzz test runs, and its seed (scripts/fuzz).",
        read_by: "cargo test api::fuzz",
    },
];

/// Whether `ephemeralStorage` is enforced on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EphemeralStorage {
    Off,
    Enforce,
}

/// A range of host ids, `START:COUNT`, checked as [`id_range`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub start: u32,
    pub count: u32,
}

/// Ids a task needs: every id an image's files and `user` can name.
pub const TASK_IDS: u32 = 65536;

/// A range of subordinate ids that cannot hold a task.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdRangeError {
    #[error("{0:?} is not a host id")]
    Start(String),
    #[error("{0:?} is not a number of ids")]
    Count(String),
    #[error(
        "the range starts at {0}, among the host's own users: start at {TASK_IDS} or \
         above (e.g. 100000, as useradd allocates subordinate ids)"
    )]
    HostUsers(u32),
    #[error("{0} ids are fewer than one task needs ({TASK_IDS})")]
    TooFew(u32),
    #[error("{0}+{1} goes past the largest id")]
    PastEnd(u32, u32),
}

/// Parses and checks a subordinate-id range (also the /etc/subuid entries').
pub fn id_range(start: &str, count: &str) -> Result<IdRange, IdRangeError> {
    let s: u32 = start
        .trim()
        .parse()
        .map_err(|_| IdRangeError::Start(start.into()))?;
    let c: u32 = count
        .trim()
        .parse()
        .map_err(|_| IdRangeError::Count(count.into()))?;
    // Ids below 65536 are the host's own users (root, system accounts, people): a task's
    // root must never be one of them.
    if s < TASK_IDS {
        return Err(IdRangeError::HostUsers(s));
    }
    if c < TASK_IDS {
        return Err(IdRangeError::TooFew(c));
    }
    if u64::from(s) + u64::from(c) > u64::from(u32::MAX) {
        return Err(IdRangeError::PastEnd(s, c));
    }
    Ok(IdRange { start: s, count: c })
}

/// Parses a Docker size (`max-size`): bytes, or with a binary unit k/m/g (`10m`, `1.5g`).
/// Ref: moby daemon/logger/jsonfilelog/jsonfilelog.go parses `max-size` with
/// go-units `RAMInBytes` (binary multiples, optional `b`/`ib` suffix).
pub fn parse_size(s: &str) -> Option<u64> {
    let t = s.trim().to_ascii_lowercase();
    let t = t
        .strip_suffix("ib")
        .or_else(|| t.strip_suffix('b'))
        .unwrap_or(&t);
    let (num, mult) = match t.chars().last()? {
        'k' => (&t[..t.len() - 1], 1u64 << 10),
        'm' => (&t[..t.len() - 1], 1 << 20),
        'g' => (&t[..t.len() - 1], 1 << 30),
        't' => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let v: f64 = num.trim().parse().ok()?;
    (v.is_finite() && v >= 0.0).then_some((v * mult as f64) as u64)
}

// The parsers of the table: "" is an unset variable without a default.

fn bridge(s: &str) -> Result<String, BadValue> {
    let ok = !s.is_empty()
        && s.len() <= 15
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    ok.then(|| s.to_string()).ok_or(BadValue::Bridge)
}

fn subnet(s: &str) -> Result<netns::Subnet, BadValue> {
    Ok(s.parse()?)
}

fn hosts_path(s: &str) -> Result<Option<PathBuf>, BadValue> {
    Ok((s != "off")
        .then(|| PathBuf::from(s))
        .filter(|p| !p.as_os_str().is_empty()))
}

fn opt_path(s: &str) -> Result<Option<PathBuf>, BadValue> {
    Ok((!s.is_empty()).then(|| PathBuf::from(s)))
}

fn opt_string(s: &str) -> Result<Option<String>, BadValue> {
    Ok((!s.trim().is_empty()).then(|| s.to_string()))
}

fn opt_id_range(s: &str) -> Result<Option<IdRange>, BadValue> {
    if s.is_empty() {
        return Ok(None);
    }
    let (start, count) = s.split_once(':').ok_or(BadValue::RangeSyntax)?;
    Ok(Some(id_range(start, count)?))
}

fn ephemeral_storage(s: &str) -> Result<EphemeralStorage, BadValue> {
    match s.trim() {
        "enforce" => Ok(EphemeralStorage::Enforce),
        "off" => Ok(EphemeralStorage::Off),
        _ => Err(BadValue::OneOf("enforce, off")),
    }
}

fn seconds(s: &str) -> Result<Duration, BadValue> {
    s.trim()
        .parse::<u64>()
        .map(Duration::from_secs)
        .map_err(|_| BadValue::Number { what: "seconds" })
}

/// A CloudWatch period: 1, 5, 10, 20, 30 seconds or a multiple of 60 (up to a day).
fn metrics_period(s: &str) -> Result<Duration, BadValue> {
    match s.trim().parse::<u64>() {
        Ok(p @ (1 | 5 | 10 | 20 | 30)) => Ok(Duration::from_secs(p)),
        Ok(p) if p >= 60 && p % 60 == 0 && p <= 86_400 => Ok(Duration::from_secs(p)),
        _ => Err(BadValue::OneOf(
            "1, 5, 10, 20, 30 or a multiple of 60 up to 86400 (seconds)",
        )),
    }
}

/// Seconds, fractions allowed (0 or more).
fn secs_f64(s: &str) -> Result<Duration, BadValue> {
    let v: f64 = s.trim().parse().map_err(|_| BadValue::Seconds)?;
    (v.is_finite() && v >= 0.0)
        .then(|| Duration::from_secs_f64(v))
        .ok_or(BadValue::Seconds)
}

fn opt_seconds(s: &str) -> Result<Option<Duration>, BadValue> {
    if s.is_empty() {
        return Ok(None);
    }
    let v: f64 = s.trim().parse().map_err(|_| BadValue::Seconds)?;
    (v.is_finite() && v >= 0.0)
        .then(|| Some(Duration::from_secs_f64(v)))
        .ok_or(BadValue::Seconds)
}

fn opt_timeout(s: &str) -> Result<Option<f64>, BadValue> {
    if s.is_empty() {
        return Ok(None);
    }
    let v: f64 = s.trim().parse().map_err(|_| BadValue::Timeout)?;
    // As rootfs-cache checks the config file's registry_read_timeout.
    (v > 0.0 && v <= 86_400.0)
        .then_some(Some(v))
        .ok_or(BadValue::Timeout)
}

#[cfg(any(debug_assertions, feature = "test-hooks", test))]
fn opt_millis(s: &str) -> Result<Option<Duration>, BadValue> {
    if s.trim().is_empty() {
        return Ok(None);
    }
    millis(s).map(Some)
}

fn millis(s: &str) -> Result<Duration, BadValue> {
    s.trim()
        .parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| BadValue::Number {
            what: "milliseconds",
        })
}

fn size(s: &str) -> Result<u64, BadValue> {
    parse_size(s).ok_or(BadValue::Size)
}

fn files(s: &str) -> Result<u32, BadValue> {
    s.trim()
        .parse()
        .ok()
        .filter(|n| *n >= 1)
        .ok_or(BadValue::Files)
}

fn opt_bytes(s: &str) -> Result<Option<u64>, BadValue> {
    if s.trim().is_empty() {
        return Ok(None);
    }
    s.trim()
        .parse()
        .map(Some)
        .map_err(|_| BadValue::Number { what: "bytes" })
}

fn boolean(s: &str) -> Result<bool, BadValue> {
    match s.trim() {
        "1" | "true" | "yes" => Ok(true),
        "0" | "false" | "no" => Ok(false),
        _ => Err(BadValue::OneOf("1, true, yes, 0, false, no")),
    }
}

fn account(s: &str) -> Result<String, BadValue> {
    let s = s.trim();
    (s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.to_string())
        .ok_or(BadValue::Account)
}

impl Config {
    /// The region of ARNs and AWS calls: AWS_REGION, else AWS_DEFAULT_REGION, else
    /// us-east-1.
    pub fn region(&self) -> &str {
        self.aws_region
            .as_deref()
            .or(self.aws_default_region.as_deref())
            .unwrap_or(crate::taskdef::arn::DEFAULT_REGION)
    }

    /// The registry configuration: the file (`--config`, else the default path if it
    /// exists), with this environment's overrides.
    pub fn registries(
        &self,
        file: Option<&std::path::Path>,
    ) -> Result<rootfs_cache::config::RegistriesConfig, rootfs_cache::config::ConfigError> {
        rootfs_cache::config::RegistriesConfig::load(
            file,
            &rootfs_cache::config::Overrides {
                max_unpacked_size: self.max_unpacked_size,
                min_free_space: self.min_free_space,
                registry_read_timeout: self.registry_read_timeout,
            },
        )
    }
}

impl crate::taskdef::AwsContext {
    /// The region and account of this process's configuration (AWS_REGION,
    /// MINIFARGATE_ACCOUNT_ID, read at start-up).
    pub fn from_env() -> crate::taskdef::AwsContext {
        let c = get();
        crate::taskdef::AwsContext {
            region: c.region().to_string(),
            account_id: c.account_id.clone(),
        }
    }
}

static CONFIG: OnceLock<Config> = OnceLock::new();
#[cfg(any(debug_assertions, feature = "test-hooks", test))]
static HOOKS_SET: OnceLock<Hooks> = OnceLock::new();

fn env(name: &str) -> Option<String> {
    std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
}

/// Parses the environment: `main` calls it once, before any verb runs. `fallback` answers
/// for a variable the environment leaves unset (`agent`: what /etc/ecs/ecs.config sets).
pub fn init(fallback: &dyn Fn(&str) -> Option<String>) -> Result<&'static Config, ConfigError> {
    let c = Config::from_lookup(&|name| env(name).or_else(|| fallback(name)))?;
    #[cfg(any(debug_assertions, feature = "test-hooks", test))]
    {
        let h = Hooks::from_lookup(&env)?;
        let _ = HOOKS_SET.set(h);
    }
    Ok(CONFIG.get_or_init(|| c))
}

/// Whether the environment gives variable `name` (not empty) rather than leaving it to
/// its default: `agent --cluster` leases a task subnet unless MINIFARGATE_SUBNET is given.
pub fn given(name: &str) -> bool {
    env(name).is_some_and(|v| !v.is_empty())
}

/// The configuration [`init`] parsed. Unit tests, which do not run `main`, get it parsed
/// from their environment on first use.
pub fn get() -> &'static Config {
    CONFIG.get_or_init(|| Config::from_lookup(&env).unwrap_or_else(|e| panic!("{e}")))
}

/// The tests' hooks (builds with debug assertions or the `test-hooks` feature only).
#[cfg(any(debug_assertions, feature = "test-hooks", test))]
pub fn hooks() -> &'static Hooks {
    HOOKS_SET.get_or_init(|| Hooks::from_lookup(&env).unwrap_or_else(|e| panic!("{e}")))
}

/// The man pages' ENVIRONMENT items: every variable but the tests'.
pub fn man_items() -> Vec<(String, String)> {
    let item = |v: &Var, option: Option<&str>| {
        let mut text = format!("{} Value: {}", v.meaning, v.kind);
        if let Some(d) = v.default {
            text.push_str(&format!(", default {d}"));
        }
        if let Some(o) = option {
            text.push_str(&format!("; {o} wins"));
        }
        text.push_str(&format!(". Read by: {}.", v.read_by));
        (v.name.to_string(), text)
    };
    SETTINGS
        .iter()
        .map(|v| item(v, None))
        .chain(OPTIONS.iter().map(|(v, o)| item(v, Some(o))))
        .chain(OTHERS.iter().map(|v| item(v, None)))
        .collect()
}

/// docs/configuration.md's tables, as the unit test compares them.
#[cfg(test)]
fn markdown() -> String {
    fn table(out: &mut String, title: &str, rows: &[(Var, Option<&str>)]) {
        let cell = |s: &str| s.replace('|', "\\|");
        out.push_str(&format!("### {title}\n\n"));
        out.push_str("| Variable | Value | Default | Read by | Meaning |\n");
        out.push_str("|---|---|---|---|---|\n");
        for (v, option) in rows {
            let name = match option {
                Some(o) => format!("`{}` (`{o}`)", v.name),
                None => format!("`{}`", v.name),
            };
            let default = v.default.map_or("—".to_string(), |d| format!("`{d}`"));
            out.push_str(&format!(
                "| {name} | {} | {default} | {} | {} |\n",
                cell(v.kind),
                cell(v.read_by),
                cell(v.meaning)
            ));
        }
        out.push('\n');
    }
    let plain = |vars: &[Var]| vars.iter().map(|v| (*v, None)).collect::<Vec<_>>();
    let mut out = String::new();
    table(&mut out, "Settings", &plain(SETTINGS));
    table(
        &mut out,
        "Options' variables (the option wins)",
        &OPTIONS
            .iter()
            .map(|(v, o)| (*v, Some(*o)))
            .collect::<Vec<_>>(),
    );
    table(&mut out, "Other variables", &plain(OTHERS));
    let mut tests = plain(HOOKS);
    tests.extend(plain(TEST_ONLY));
    table(
        &mut out,
        "Test hooks (debug and `test-hooks` builds only, and the test suite)",
        &tests,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(&|k| m.get(k).cloned())
    }

    #[test]
    fn every_default_parses_and_matches_what_the_code_used_to_default_to() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.bridge, "mfg0");
        assert_eq!(c.subnet, "10.94.0.0/16".parse().unwrap());
        assert_eq!(c.log_max_size, runtime::Rotation::default().max_size);
        assert_eq!(c.log_max_files, runtime::Rotation::default().max_files);
        assert_eq!(c.logs_max_bytes, 1 << 30);
        assert_eq!(c.stopped_task_retention, Duration::from_secs(3600));
        assert_eq!(c.idle_release, Duration::from_millis(250));
        assert_eq!(c.trash_delay, Duration::from_secs(30));
        assert_eq!(c.account_id, crate::taskdef::arn::DEFAULT_ACCOUNT_ID);
        assert_eq!(c.region(), "us-east-1");
        assert_eq!(c.ephemeral_storage, EphemeralStorage::Off);
        assert!(!c.awslogs_forward);
        assert!(c.nft.is_none() && c.userns_range.is_none() && c.userns_user.is_none());
        assert!(c.restart_attempt_period.is_none() && c.max_unpacked_size.is_none());
        let h = Hooks::from_lookup(&|_| None).unwrap();
        assert!(h.test_pause.is_none() && h.binfmt_misc.is_none());
    }

    #[test]
    fn values_parse_into_their_types_and_empty_is_unset() {
        let c = parse(&[
            ("MINIFARGATE_BRIDGE", "mft1"),
            ("MINIFARGATE_SUBNET", "10.97.1.0/26"),
            ("MINIFARGATE_LOG_MAX_SIZE", "1m"),
            ("MINIFARGATE_LOG_MAX_FILES", "3"),
            ("MINIFARGATE_RESTART_ATTEMPT_PERIOD", "1.5"),
            ("MINIFARGATE_STOPPED_TASK_RETENTION", "0"),
            ("MINIFARGATE_EPHEMERAL_STORAGE", "enforce"),
            ("MINIFARGATE_AWSLOGS_FORWARD", "yes"),
            ("MINIFARGATE_USERNS_RANGE", "200000:655360"),
            ("MINIFARGATE_MIN_FREE_SPACE", ""),
            ("MINIFARGATE_REGISTRY_READ_TIMEOUT", "0.5"),
            ("AWS_DEFAULT_REGION", "eu-west-1"),
        ])
        .unwrap();
        assert_eq!((c.bridge.as_str(), c.log_max_size), ("mft1", 1 << 20));
        assert_eq!(c.log_max_files, 3);
        assert_eq!(c.restart_attempt_period, Some(Duration::from_millis(1500)));
        assert_eq!(c.stopped_task_retention, Duration::ZERO);
        assert_eq!(c.ephemeral_storage, EphemeralStorage::Enforce);
        assert!(c.awslogs_forward);
        assert_eq!(
            c.userns_range,
            Some(IdRange {
                start: 200_000,
                count: 655_360
            })
        );
        assert_eq!(c.min_free_space, None);
        assert_eq!(c.registry_read_timeout, Some(0.5));
        assert_eq!(c.region(), "eu-west-1");
    }

    #[test]
    fn a_bad_value_is_an_error_naming_the_variable_and_the_value() {
        for (name, bad, why) in [
            ("MINIFARGATE_SUBNET", "10.97.0.0", ""),
            (
                "MINIFARGATE_BRIDGE",
                "a-bridge-name-too-long",
                "1-15 characters",
            ),
            ("MINIFARGATE_STOPPED_TASK_RETENTION", "1h", "seconds"),
            ("MINIFARGATE_IDLE_RELEASE_MS", "-1", "milliseconds"),
            ("MINIFARGATE_TRASH_DELAY_MS", "soon", "milliseconds"),
            ("MINIFARGATE_LOG_MAX_SIZE", "big", "not a size"),
            ("MINIFARGATE_LOG_MAX_FILES", "0", "at least 1"),
            ("MINIFARGATE_LOGS_MAX_BYTES", "lots", "not a size"),
            ("MINIFARGATE_RESTART_ATTEMPT_PERIOD", "-3", "seconds"),
            ("MINIFARGATE_EPHEMERAL_STORAGE", "yes", "enforce, off"),
            ("MINIFARGATE_AWSLOGS_FORWARD", "maybe", "1, true"),
            ("MINIFARGATE_MAX_UNPACKED_SIZE", "1g", "bytes"),
            ("MINIFARGATE_MIN_FREE_SPACE", "lots", "bytes"),
            (
                "MINIFARGATE_REGISTRY_READ_TIMEOUT",
                "0",
                "between 0 and 86400",
            ),
            ("MINIFARGATE_ACCOUNT_ID", "12345", "12 digits"),
            ("MINIFARGATE_USERNS_RANGE", "100000", "START:COUNT"),
            ("MINIFARGATE_USERNS_RANGE", "0:65536", "host's own users"),
            (
                "MINIFARGATE_USERNS_RANGE",
                "100000:100",
                "fewer than one task",
            ),
            ("MINIFARGATE_USERNS_RANGE", "x:1", "not a host id"),
        ] {
            let e = parse(&[(name, bad)]).unwrap_err();
            let text = crate::errors::error_chain(&e);
            assert!(
                text.starts_with(&format!("{name}={bad:?}: ")) && text.contains(why),
                "{name}={bad}: {text}"
            );
        }
    }

    #[test]
    fn the_docs_table_is_the_code_table() {
        const BEGIN: &str =
            "<!-- BEGIN generated from src/config.rs: UPDATE_DOCS=1 cargo test config -->\n";
        const END: &str = "<!-- END generated -->";
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md");
        let doc = std::fs::read_to_string(path).unwrap();
        let (head, rest) = doc
            .split_once(BEGIN)
            .expect("docs/configuration.md: BEGIN marker");
        let (old, tail) = rest
            .split_once(END)
            .expect("docs/configuration.md: END marker");
        let want = markdown();
        if old != want {
            if std::env::var_os("UPDATE_DOCS").is_some() {
                std::fs::write(path, format!("{head}{BEGIN}{want}{END}{tail}")).unwrap();
            } else {
                panic!(
                    "docs/configuration.md's tables differ from src/config.rs: run \
                     `UPDATE_DOCS=1 cargo test --bin minifargate config`"
                );
            }
        }
    }

    #[test]
    fn every_variable_is_documented_once() {
        let mut names: Vec<&str> = SETTINGS
            .iter()
            .chain(OPTIONS.iter().map(|(v, _)| v))
            .chain(OTHERS)
            .chain(HOOKS)
            .chain(TEST_ONLY)
            .map(|v| v.name)
            .collect();
        let n = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), n, "a variable is in the tables twice");
        // That clap reads OPTIONS' variables: cli::help's tests.
    }

    #[test]
    fn the_man_page_lists_every_variable_but_the_tests() {
        let items = man_items();
        assert_eq!(items.len(), SETTINGS.len() + OPTIONS.len() + OTHERS.len());
        assert!(
            items
                .iter()
                .any(|(k, v)| k == "MINIFARGATE_SUBNET" && v.contains("10.94.0.0/16"))
        );
        assert!(!items.iter().any(|(k, _)| k.contains("TEST")));
    }
}
