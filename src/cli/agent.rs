//! `agent`: this box as a container instance of a cluster whose state is in etcd
//! (crate::cluster::agent, docs/cluster.md).

use super::GlobalOpts;
use anyhow::Context as _;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

/// TLS to etcd, with etcdctl's option names (`serve --cluster` and `agent`).
#[derive(Debug, Clone, Default, Args)]
pub struct EtcdTls {
    /// A client bundle made by `minifargate cluster init` or `cluster add-box`: DIR/ca.crt,
    /// DIR/client.crt and DIR/client.key (the three flags below in one), and the etcd user
    /// DIR/etcd-user with its password DIR/etcd-password.
    #[arg(long, env = "MINIFARGATE_ETCD_CERTS", value_name = "DIR", conflicts_with_all = ["etcd_cacert", "etcd_cert", "etcd_key"])]
    pub etcd_certs: Option<PathBuf>,
    /// The CA certificate (PEM) that signed etcd's server certificate: https endpoints.
    #[arg(long, value_name = "PEM")]
    pub etcd_cacert: Option<PathBuf>,
    /// This client's certificate (PEM) for etcd's `--client-cert-auth` (with --etcd-key).
    #[arg(long, value_name = "PEM", requires = "etcd_key")]
    pub etcd_cert: Option<PathBuf>,
    /// The private key (PEM) of --etcd-cert.
    #[arg(long, value_name = "PEM", requires = "etcd_cert")]
    pub etcd_key: Option<PathBuf>,
    /// Allow a plain-http etcd endpoint that is not on loopback (refused otherwise: whoever
    /// reaches it reads the cluster's token and can run any task on any box).
    #[arg(long)]
    pub etcd_insecure_plaintext: bool,
}

impl EtcdTls {
    /// Whether any of the flags was given.
    pub fn given(&self) -> bool {
        self.etcd_certs.is_some()
            || self.etcd_cacert.is_some()
            || self.etcd_cert.is_some()
            || self.etcd_key.is_some()
            || self.etcd_insecure_plaintext
    }

    pub fn tls(&self) -> crate::cluster::etcd::Tls {
        if let Some(d) = &self.etcd_certs {
            return crate::cluster::etcd::Tls {
                cacert: Some(d.join("ca.crt")),
                cert: Some(d.join("client.crt")),
                key: Some(d.join("client.key")),
                insecure_plaintext: self.etcd_insecure_plaintext,
                // A bundle made before etcd users has no user: its certificate alone. A
                // joined box's has a user and no password (serve authenticates for it).
                credentials: d.join("etcd-user").exists().then(|| d.clone()),
            };
        }
        crate::cluster::etcd::Tls {
            cacert: self.etcd_cacert.clone(),
            cert: self.etcd_cert.clone(),
            key: self.etcd_key.clone(),
            insecure_plaintext: self.etcd_insecure_plaintext,
            credentials: None,
        }
    }
}

/// Register this box as a container instance of a cluster kept in etcd, and keep it
/// connected (a liveness lease) until SIGTERM or SIGINT, which disconnect it at once.
///
/// The instance id is kept in <root>/agent/instance-id: a restart registers the same
/// instance. `serve --cluster` with the same endpoints lists and describes it.
/// The tasks `serve --cluster` places on the instance run here, through this box's own
/// store and supervisors, and their state goes back to etcd (docs/cluster.md). etcd must be on loopback or require TLS client certificates
/// (--etcd-certs, or --etcd-cacert, --etcd-cert, --etcd-key: `minifargate cluster init`).
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// etcd's client endpoints, comma-separated, tried in order (e.g.
    /// http://127.0.0.1:2379 or https://10.0.0.1:2379,https://10.0.0.2:2379). Not with
    /// --server: a joined box reaches the store only through serve's port for boxes.
    #[arg(long, value_name = "ENDPOINTS", required_unless_present_any = ["server", "leave"])]
    pub cluster: Option<String>,
    /// The ECS cluster this box joins (default: ECS_CLUSTER of --ecs-config, else
    /// `default`).
    #[arg(long, value_name = "NAME")]
    pub cluster_name: Option<String>,
    /// A custom attribute of the instance, `name=value` or `name` (repeatable), as ECS
    /// agent's ECS_INSTANCE_ATTRIBUTES; for `--filter "attribute:name == value"`. Added to
    /// the file's, and wins over one of the same name.
    #[arg(long, value_name = "NAME=VALUE")]
    pub attribute: Vec<String>,
    /// The ECS agent's configuration file (KEY=VALUE lines: ECS_CLUSTER,
    /// ECS_INSTANCE_ATTRIBUTES, ECS_RESERVED_MEMORY, ECS_RESERVED_PORTS, … ; docs/cluster.md
    /// lists what is applied). Read if present at the default path; a path given must exist.
    /// Flags win over it.
    #[arg(long, value_name = "PATH")]
    pub ecs_config: Option<PathBuf>,
    /// The file as read before start-up (`read_ecs_config`).
    #[arg(skip)]
    pub loaded: Option<crate::cluster::ecs_config::EcsConfig>,
    /// Seconds the liveness lease lives without renewal: how soon a lost box is
    /// agentConnected false.
    #[arg(long, value_name = "SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(2..=3600))]
    pub lease_ttl: u64,
    /// Seconds the agent's work loop may go without coming round before its liveness
    /// lease stops being renewed: a wedged agent (a live process whose work is stuck) is
    /// then agentConnected false once the lease lapses, and its tasks are replaced as a
    /// lost box's. Longer than SQLite's busy wait (60 s), so a box store held by another
    /// process for a while is not taken for a wedge.
    #[arg(long, value_name = "SECONDS", default_value_t = 90, value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub work_stall_limit: u64,
    /// Remove what a stopped agent left running for its tasks — the routes to the other
    /// boxes and the load balancers, the tasks' DNS server and Service Connect listeners
    /// (the box's data plane, which outlives an agent's restart) — and exit. For a box
    /// that leaves the cluster for good without its instance being deregistered (which
    /// removes them itself); refused while the agent runs.
    #[arg(long, conflicts_with_all = ["cluster", "server", "token"])]
    pub leave: bool,
    /// Where the agent's endpoint listens: serves read the box's task logs there (over
    /// TLS with serve's or the operator's certificate; without a bundle, requests signed
    /// by the cluster's token: docs/cluster.md). Give the box's address
    /// on the boxes' network (e.g. 10.0.0.5:51680) when serves run on other boxes.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:0")]
    pub listen: std::net::SocketAddr,
    /// The boxes' task address range: unless MINIFARGATE_SUBNET pins this box's subnet,
    /// the agent leases a /--box-prefix of it no other box holds (docs/cluster.md, "Task
    /// addresses across boxes").
    #[arg(long, value_name = "CIDR", default_value = "10.94.0.0/16")]
    pub task_range: netns::Subnet,
    /// The length of the subnet a box leases from --task-range (24: 253 tasks a box,
    /// 256 boxes in the default range).
    #[arg(long, value_name = "BITS", default_value_t = 24, value_parser = clap::value_parser!(u8).range(8..=30))]
    pub box_prefix: u8,
    /// This box's address on the boxes' network: the other boxes route its task subnet
    /// via it. Default: the source address of this box's route to the first etcd endpoint.
    #[arg(long, value_name = "IPV4")]
    pub advertise_address: Option<std::net::Ipv4Addr>,
    /// The control plane's port for boxes (serve's --boxes-listen): https://HOST:PORT,
    /// comma-separated for several serves. The first start joins with --token; from then
    /// on the box's only connection to the cluster's store is this port, dialed out with
    /// the certificate the join gave it (the box holds no etcd credentials).
    #[arg(long, value_name = "URL", conflicts_with_all = ["etcd_certs", "etcd_cacert", "etcd_cert", "etcd_key"])]
    pub server: Option<String>,
    /// A join token (`minifargate cluster token create`): with --server, this box makes
    /// its key, gets its certificate, and keeps them in <root>/agent/bundle
    /// (root-only); later starts use that bundle and need no token.
    #[arg(
        long,
        env = "MINIFARGATE_JOIN_TOKEN",
        value_name = "TOKEN",
        requires = "server",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// This box's name in the cluster when it joins (its certificate's):
    /// default the host name.
    #[arg(long, value_name = "NAME", requires = "server")]
    pub name: Option<String>,
    /// Benchmarks and tests (docs/cluster.md "Scale"): run N hollow boxes in this process
    /// instead of this box, each a client of the control plane with its own key,
    /// certificate (joined with --token, which needs N uses: `cluster token
    /// create --uses N`, or 0), its own lease and registration, named `NAME-hollow-<i>`
    /// (--name, default the host name), kept in <root>/hollow/<i>/. A hollow box runs no
    /// container: it reports each task placed on it PENDING then RUNNING, and STOPPED when
    /// asked (or after --simulate-lifetime), with a warning on the task saying so.
    #[arg(long, value_name = "N", requires = "server", value_parser = clap::value_parser!(u32).range(1..=20000))]
    pub simulate: Option<u32>,
    /// A hollow box's CPU units (1,024 a core).
    #[arg(long, value_name = "UNITS", default_value_t = 2048, requires = "simulate", value_parser = clap::value_parser!(i64).range(128..=1_048_576))]
    pub simulate_cpu: i64,
    /// A hollow box's memory (MiB).
    #[arg(long, value_name = "MIB", default_value_t = 4096, requires = "simulate", value_parser = clap::value_parser!(i64).range(128..=16_777_216))]
    pub simulate_memory: i64,
    /// Seconds a hollow box's task runs before its (simulated) essential container exits
    /// 0 and it is STOPPED (EssentialContainerExited); default: until it is stopped.
    #[arg(long, value_name = "SECONDS", requires = "simulate")]
    pub simulate_lifetime: Option<f64>,
    #[command(flatten)]
    pub etcd: EtcdTls,
}

/// `--server URL [--token TOKEN]`: this box's bundle in `<root>/agent/bundle`, joined
/// now with the token if it is not there yet, and checked with the control plane (a
/// removed box stops here). The ECS cluster its token names, if any.
fn joined(root: &std::path::Path, a: &mut AgentArgs) -> anyhow::Result<Option<String>> {
    use crate::cluster::join;
    let Some(servers) = a.server.clone() else {
        return Ok(None);
    };
    for s in servers.split(',') {
        anyhow::ensure!(
            s.trim().starts_with("https://"),
            "--server {s:?}: the control plane's port for boxes, https://HOST:PORT"
        );
    }
    // Joining and the membership check go to the first serve named.
    let server = servers
        .split(',')
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    let dir = root.join("agent").join("bundle");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    if dir.join("client.crt").exists() {
        eprintln!(
            "minifargate agent: joined before: the bundle in {} (--token not used)",
            dir.display()
        );
        match rt.block_on(join::check_member(&server, &dir)) {
            Ok(name) => eprintln!("minifargate agent: the control plane knows this box as {name}"),
            Err(e @ join::JoinError::Refused { .. }) => {
                return Err(anyhow::Error::from(e).context(format!(
                    "this box's certificate is refused: to join again, remove {} and start                      with a new token",
                    dir.display()
                )));
            }
            Err(e) => eprintln!(
                "minifargate agent: warning: {} (going on with the bundle)",
                crate::errors::error_chain(&e)
            ),
        }
    } else {
        let token = a.token.as_deref().with_context(|| {
            format!(
                "this box has not joined yet (no bundle in {}): the first start joins with \
                 --token TOKEN (or MINIFARGATE_JOIN_TOKEN), from `minifargate cluster token \
                 create` on a control-plane host",
                dir.display()
            )
        })?;
        let token = join::Token::parse(token)?;
        let name = box_name(a.name.as_deref())?;
        let mut addresses = Vec::new();
        if !a.listen.ip().is_unspecified() && !a.listen.ip().is_loopback() {
            addresses.push(a.listen.ip().to_string());
        }
        if let Some(ip) = a.advertise_address
            && !addresses.contains(&ip.to_string())
        {
            addresses.push(ip.to_string());
        }
        let answer = rt.block_on(join::enroll(&server, &token, &name, &addresses, &dir))?;
        eprintln!(
            "minifargate agent: joined the cluster as box {} (no etcd credentials: serve's port \
             for boxes checks and passes on its calls); certificate and key in {}",
            answer.name,
            dir.display()
        );
    }
    forget_password(&dir)?;
    a.etcd = EtcdTls {
        etcd_certs: Some(dir.clone()),
        ..a.etcd.clone()
    };
    Ok(std::fs::read_to_string(dir.join(join::CLUSTER_FILE))
        .ok()
        .map(|c| c.trim().to_string()))
}

/// The box's name: `--name`, else the host name's first label.
fn box_name(given: Option<&str>) -> anyhow::Result<String> {
    match given {
        Some(n) => Ok(n.to_string()),
        None => nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .map(|h| h.split('.').next().unwrap_or_default().to_string())
            .filter(|h| crate::cluster::pki::check_name(h).is_ok())
            .context("the host name is not a box name: pass --name"),
    }
}

/// A joined box holds no etcd credentials (docs/cluster.md "Boxes over one port"): the
/// password a join of before this version kept in the bundle is removed, said once.
fn forget_password(dir: &std::path::Path) -> anyhow::Result<()> {
    let old = dir.join(crate::cluster::pki::PASSWORD_FILE);
    match std::fs::remove_file(&old) {
        Ok(()) => eprintln!(
            "minifargate agent: removed {} (a join of an older version kept the box's etcd \
             password there): serve's port for boxes authenticates for this box, which holds \
             no etcd credentials",
            old.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(e).with_context(|| format!("failed to remove {}", old.display()));
        }
    }
    Ok(())
}

/// The agent's log filter without --log-level or ECS_LOGLEVEL: the cluster's own events
/// at info, the rest at warn.
pub const AGENT_LOG_LEVEL: &str = "warn,minifargate::cluster=info";

/// Reads --ecs-config (or /etc/ecs/ecs.config if present) before `main` sets up logging
/// and the MINIFARGATE_* settings: the log level is [`AGENT_LOG_LEVEL`] (info for the
/// cluster's events, as ECS's agent's default), or ECS_LOGLEVEL's, unless --log-level or
/// RUST_LOG is given; ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION is the stopped-task retention
/// unless MINIFARGATE_STOPPED_TASK_RETENTION is set (the returned fallback variables).
pub fn read_ecs_config(
    g: &mut GlobalOpts,
    a: &mut AgentArgs,
) -> anyhow::Result<Vec<(&'static str, String)>> {
    use crate::cluster::ecs_config::{DEFAULT_PATH, EcsConfig};
    // ECS's agent logs at `info` unless ECS_LOGLEVEL says otherwise: so does this one's
    // own work (its registration, task subnet, starts, routes), unless --log-level is
    // given; the rest (and the tasks' supervisors, which take the agent's level) stay at
    // the product's `warn`.
    let flag = std::env::args().any(|x| x == "--log-level" || x.starts_with("--log-level="));
    if !flag {
        g.log_level = AGENT_LOG_LEVEL.into();
    }
    let (path, required) = match &a.ecs_config {
        Some(p) => (p.clone(), true),
        None => (PathBuf::from(DEFAULT_PATH), false),
    };
    let Some(mut c) = EcsConfig::load(&path, required)? else {
        return Ok(Vec::new());
    };
    if let Some(level) = c.log_level {
        if flag || std::env::var_os("RUST_LOG").is_some() {
            c.notes.push(format!(
                "{}: ECS_LOGLEVEL={level}: --log-level or RUST_LOG is given and wins",
                path.display()
            ));
        } else {
            g.log_level = level.into();
        }
    }
    let fallback = c
        .task_cleanup_wait
        .map(|d| {
            (
                "MINIFARGATE_STOPPED_TASK_RETENTION",
                d.as_secs().to_string(),
            )
        })
        .into_iter()
        .collect();
    a.loaded = Some(c);
    Ok(fallback)
}

/// The instance's custom attributes: the file's ECS_INSTANCE_ATTRIBUTES, then each
/// `--attribute` (which wins over one of the same name), checked as ECS checks them.
fn attributes(
    file: Option<&crate::cluster::ecs_config::EcsConfig>,
    given: &[String],
) -> anyhow::Result<Vec<(String, Option<String>)>> {
    let mut attributes: Vec<(String, Option<String>)> = file
        .iter()
        .flat_map(|c| c.instance_attributes.iter().flatten())
        .map(|(n, v)| (n.clone(), Some(v.clone())))
        .collect();
    for spec in given {
        let (name, value) = match spec.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().to_string())),
            None => (spec.trim(), None),
        };
        anyhow::ensure!(
            crate::cluster::ecs_config::valid_attribute_name(name),
            "--attribute {spec:?}: a name of up to 128 letters, numbers, hyphens, \
             underscores, slashes or periods, not starting with `ecs.` (the built-in \
             attributes)"
        );
        attributes.retain(|(n, _)| n != name);
        attributes.push((name.to_string(), value));
    }
    // Serve leaves out a stored value ECS would not take (docs/cluster.md "Security"):
    // refused here rather than dropped there.
    if let Some((n, v)) = attributes.iter().find_map(|(n, v)| {
        v.as_deref()
            .filter(|v| !crate::cluster::instances::attribute_value_ok(v))
            .map(|v| (n, v))
    }) {
        anyhow::bail!(
            "attribute {n}'s value {v:?} (--attribute or ECS_INSTANCE_ATTRIBUTES): 1 to 128 \
             letters, numbers, hyphens, underscores, periods, at signs, slashes, back \
             slashes, colons or spaces, not starting or ending with a space"
        );
    }
    Ok(attributes)
}

/// `--simulate N`: N hollow boxes in this process (crate::cluster::hollow), joined with
/// `--token` at `--server`, each under `<root>/hollow/<i>/`.
fn hollow(
    g: &GlobalOpts,
    a: &AgentArgs,
    count: u32,
    chosen: Option<String>,
    attributes: Vec<(String, Option<String>)>,
) -> anyhow::Result<ExitCode> {
    let servers = a
        .server
        .clone()
        .context("--simulate needs --server (serve's port for boxes)")?;
    let servers: Vec<String> = servers.split(',').map(|s| s.trim().to_string()).collect();
    for s in &servers {
        anyhow::ensure!(
            s.starts_with("https://"),
            "--server {s:?}: the control plane's port for boxes, https://HOST:PORT"
        );
    }
    if let Some(l) = a.simulate_lifetime {
        anyhow::ensure!(
            l.is_finite() && l > 0.0 && l <= 31_536_000.0,
            "--simulate-lifetime {l}: seconds, more than 0 and at most a year"
        );
    }
    let prefix = box_name(a.name.as_deref())?;
    crate::cluster::hollow::run(crate::cluster::hollow::Options {
        root: g.root.clone(),
        servers,
        token: a
            .token
            .as_deref()
            .map(crate::cluster::join::Token::parse)
            .transpose()?,
        prefix,
        count: count as usize,
        chosen,
        attributes,
        lease_ttl: a.lease_ttl,
        stall_limit: std::time::Duration::from_secs(a.work_stall_limit),
        cpu: a.simulate_cpu,
        memory: a.simulate_memory,
        lifetime: a.simulate_lifetime.map(std::time::Duration::from_secs_f64),
    })?;
    Ok(ExitCode::SUCCESS)
}

pub fn agent(g: &GlobalOpts, mut a: AgentArgs) -> anyhow::Result<ExitCode> {
    let file = a.loaded.take();
    if let Some(c) = &file {
        eprintln!("minifargate agent: read {}", c.path.display());
        for note in &c.notes {
            eprintln!("minifargate agent: {note}");
        }
    }
    if a.leave {
        crate::cluster::data_plane::leave(&g.run_root)?;
        eprintln!("minifargate agent: the box's data plane is removed");
        return Ok(ExitCode::SUCCESS);
    }
    anyhow::ensure!(
        a.cluster.is_none() || a.server.is_none(),
        "--cluster with --server: a joined box holds no etcd credentials and reaches the \
         cluster's store only through serve's port for boxes (--server); drop --cluster \
         (docs/cluster.md \"Boxes over one port\")"
    );
    let chosen = a
        .cluster_name
        .clone()
        .or_else(|| file.as_ref().and_then(|c| c.cluster.clone()));
    let attributes = attributes(file.as_ref(), &a.attribute)?;
    if let Some(n) = a.simulate {
        return hollow(g, &a, n, chosen, attributes);
    }
    let token_cluster = joined(&g.root, &mut a)?;
    // A joined box's store calls go to serve's port for boxes (crate::cluster::gateway),
    // which checks each call and passes it on as serve: it needs no route to etcd.
    let endpoints = match (a.cluster.clone(), a.server.clone()) {
        (Some(etcd), _) => etcd,
        (None, Some(server)) => server,
        (None, None) => anyhow::bail!(
            "give --cluster ENDPOINTS (etcd) or --server URL (serve's port for boxes)"
        ),
    };
    let cluster = crate::cluster::agent::cluster_named(token_cluster, chosen)?;
    let applied = crate::cluster::ecs_config::Applied::from(file.as_ref());
    let (_, memory) = crate::ecs::container_instances::host_resources();
    anyhow::ensure!(
        applied.reserved_memory <= memory,
        "ECS_RESERVED_MEMORY={} in {} is more than this host's memory ({memory} MiB): \
         reserve less",
        applied.reserved_memory,
        file.as_ref()
            .map(|c| c.path.display().to_string())
            .unwrap_or_default()
    );
    crate::cluster::agent::run(crate::cluster::agent::Options {
        root: g.root.clone(),
        endpoints,
        tls: a.etcd.tls(),
        cluster,
        attributes,
        lease_ttl: a.lease_ttl,
        stall_limit: std::time::Duration::from_secs(a.work_stall_limit),
        ecs: g.ecs(),
        listen: a.listen,
        subnet: if crate::config::given("MINIFARGATE_SUBNET") {
            crate::cluster::subnets::Want::Pinned {
                subnet: crate::config::get().subnet,
                range: a.task_range,
            }
        } else {
            crate::cluster::subnets::Want::Lease {
                range: a.task_range,
                prefix: a.box_prefix,
            }
        },
        advertise: a.advertise_address,
        ecs_config: applied,
        front: crate::api::agent_front(),
        // Through serve's port only (no --cluster): reached through the tunnel it dials.
        tunnel: match (&a.cluster, &a.server) {
            (None, Some(servers)) => {
                Some(servers.split(',').map(|s| s.trim().to_string()).collect())
            }
            _ => None,
        },
    })?;
    Ok(ExitCode::SUCCESS)
}
