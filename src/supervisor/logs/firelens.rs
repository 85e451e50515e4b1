//! FireLens as the ECS agent runs it: the log router's generated Fluent Bit / Fluentd
//! configuration (mounted where the AWS for Fluent Bit image reads it) and, for each
//! container with the `awsfirelens` log driver, a log sink that sends its lines to the
//! router over the Fluent forward protocol, as Docker's fluentd driver does for the agent.
//!
//! Ref: amazon-ecs-agent agent/taskresource/firelens/firelens_unix.go (options, resource
//! dirs, S3 config), firelensconfig_unix.go (the generated sections), agent/api/task/task.go
//! (bind mounts, the START dependency on the router), agent/engine/docker_task_engine.go
//! `getFirelensLogConfig` (tag `<container>-firelens-<task id>`, socket address, async);
//! awslabs/go-config-generator-for-fluentd-and-fluentbit (the templates);
//! https://docs.aws.amazon.com/AmazonECS/latest/developerguide/using_firelens.html.

use crate::taskdef::model::{
    ContainerDefinition, FirelensType, LogConfiguration, LogDriver, NetworkMode, TaskDefinition,
};
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The forward input's unix socket inside the router; its directory is bind-mounted.
pub const SOCKET_IN_ROUTER: &str = "/var/run/fluent.sock";
/// Where the agent mounts the socket directory in the router (`firelensSocketBindFormat`).
pub const SOCKET_DIR_IN_ROUTER: &str = "/var/run";
/// The forward input's TCP port inside the task (`inputPortValue`).
pub const FORWARD_PORT: &str = "24224";
/// Docker's fluentd driver buffer when `log-driver-buffer-limit` is not set.
/// Ref: moby daemon/logger/fluentd/fluentd.go `defaultBufferLimit = 1024 * 1024`.
pub const DEFAULT_BUFFER_LIMIT: u64 = 1 << 20;
/// The awsfirelens option that sizes the driver's buffer; not passed to the router.
/// Ref: agent/api/task/task.go `FirelensLogDriverBufferLimitOption`.
pub const BUFFER_LIMIT_OPTION: &str = "log-driver-buffer-limit";
/// Fluent Bit's input buffer when the router has no memory setting (MiB).
/// Ref: firelensconfig_unix.go `defaultMemBufLimit`.
const DEFAULT_MEM_BUF_MIB: i64 = 25;
/// How long a stopping container's queued lines may wait for an unreachable router.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// A FireLens setting the agent refuses, or a file it could not write.
#[derive(Debug, thiserror::Error)]
pub enum FirelensError {
    /// Ref: firelens_unix.go parseOptions.
    #[error("invalid value {value} is specified for option config-file-type")]
    ConfigFileType { value: String },
    #[error("option config-file-type is specified but config-file-value is not specified")]
    NoConfigFileValue,
    /// Ref: firelensconfig_unix.go addOutputSection.
    #[error(
        "unable to apply log options of container {container} to firelens config: missing \
         output key {key} which is required for firelens configuration of type {kind}"
    )]
    MissingOutputKey {
        container: String,
        key: &'static str,
        kind: &'static str,
    },
    #[error("unable to parse bucket and key from s3 arn {0}")]
    S3Arn(String),
    #[error("{container}: log-driver-buffer-limit {value:?} is not a size (e.g. 2m)")]
    BufferLimit { container: String, value: String },
    #[error("unable to download firelens s3 config file: {0}")]
    S3Download(String),
    /// Ref: ecs-agent/utils/firelens/firelens.go SetOwnership.
    #[error("unable to set socket directory ownership: {why}")]
    Ownership { why: String },
    #[error("failed to write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Fluent Bit or Fluentd: the syntax of the generated file and where it is mounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    FluentBit,
    Fluentd,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::FluentBit => "fluentbit",
            Kind::Fluentd => "fluentd",
        }
    }
    /// Where the generated file is mounted in the router.
    /// Ref: task.go `firelensConfigBindFormatFluentbit` / `…Fluentd`.
    pub fn config_target(self) -> &'static str {
        match self {
            Kind::FluentBit => "/fluent-bit/etc/fluent-bit.conf",
            Kind::Fluentd => "/fluentd/etc/fluent.conf",
        }
    }
    /// Where a config file fetched from S3 is mounted (`S3ConfigPathFluentbit` / `…Fluentd`).
    pub fn s3_target(self) -> &'static str {
        match self {
            Kind::FluentBit => "/fluent-bit/etc/external.conf",
            Kind::Fluentd => "/fluentd/etc/external.conf",
        }
    }
    /// The key of an awsfirelens option naming the output plugin.
    fn output_key(self) -> &'static str {
        match self {
            Kind::FluentBit => "Name",
            Kind::Fluentd => "@type",
        }
    }
    fn wildcard(self) -> &'static str {
        match self {
            Kind::FluentBit => "*",
            Kind::Fluentd => "**",
        }
    }
}

/// `config-file-type` / `config-file-value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum External {
    /// A path inside the router's image.
    File(String),
    /// An S3 object, fetched with the execution role into the task's FireLens dir.
    S3(crate::supervisor::envfiles::S3Object),
}

/// A container whose logs go to the router.
#[derive(Debug, Clone)]
pub struct Routed {
    pub idx: usize,
    pub name: String,
    /// Its awsfirelens options, less `log-driver-buffer-limit`.
    pub options: BTreeMap<String, String>,
    /// The sink's buffer (`log-driver-buffer-limit`, else Docker's default).
    pub buffer_limit: u64,
}

/// What a task with a log router gets: the router, its settings and the routed containers.
#[derive(Debug, Clone)]
pub struct Plan {
    pub router: usize,
    pub kind: Kind,
    pub metadata: bool,
    pub external: Option<External>,
    /// Fluent Bit's forward input `Mem_Buf_Limit`, MiB.
    pub mem_buf_mib: i64,
    pub network: NetworkMode,
    pub cluster: String,
    pub task_arn: String,
    pub task_definition: String,
    pub task_id: String,
    pub routed: Vec<Routed>,
    /// The router's `user`: its socket directory is given to it.
    pub router_user: Option<String>,
}

/// Which of the task's values the metadata fields carry.
pub struct TaskIds<'a> {
    pub cluster: &'a str,
    pub task_arn: &'a str,
    /// `family:revision`, as the agent writes `ecs_task_definition`.
    pub task_definition: &'a str,
    pub task_id: &'a str,
}

/// Whether `c` sends its logs to the router.
pub fn uses_awsfirelens(c: &ContainerDefinition) -> bool {
    c.log_configuration
        .as_ref()
        .is_some_and(|l| l.log_driver == Some(LogDriver::Awsfirelens))
}

/// Go's strconv.ParseBool, which the agent uses for `enable-ecs-log-metadata`.
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// The FireLens plan of a task: None without a router (the first container with a
/// `firelensConfiguration`, as the agent picks it; validate refuses a second).
pub fn plan(
    def: &TaskDefinition,
    network: NetworkMode,
    ids: &TaskIds<'_>,
) -> Result<Option<Plan>, FirelensError> {
    let containers = def.container_definitions.as_deref().unwrap_or_default();
    let Some((router, fc)) = containers
        .iter()
        .enumerate()
        .find_map(|(i, c)| c.firelens_configuration.as_ref().map(|f| (i, f)))
    else {
        return Ok(None);
    };
    let kind = match fc.kind {
        Some(FirelensType::Fluentd) => Kind::Fluentd,
        _ => Kind::FluentBit,
    };
    let empty = BTreeMap::new();
    let opts = fc.options.as_ref().unwrap_or(&empty);
    // Ref: firelens_unix.go parseOptions: absent means on; a value that does not parse
    // is ignored with a warning (and so stays on).
    let metadata = match opts.get("enable-ecs-log-metadata") {
        None => true,
        Some(v) => parse_bool(v).unwrap_or_else(|| {
            tracing::warn!(value = %v, "invalid enable-ecs-log-metadata, ignored");
            true
        }),
    };
    let external = match opts.get("config-file-type").map(String::as_str) {
        None => None,
        Some(t @ ("file" | "s3")) => {
            let v = opts
                .get("config-file-value")
                .filter(|v| !v.is_empty())
                .ok_or(FirelensError::NoConfigFileValue)?;
            Some(if t == "file" {
                External::File(v.clone())
            } else {
                External::S3(
                    crate::supervisor::envfiles::parse_s3_arn(v)
                        .ok_or_else(|| FirelensError::S3Arn(v.clone()))?,
                )
            })
        }
        Some(other) => {
            return Err(FirelensError::ConfigFileType {
                value: other.to_string(),
            });
        }
    };
    // Ref: task.go initializeFirelensResource: memoryReservation, else memory, halved.
    let rc = &containers[router];
    let limit = rc
        .memory_reservation
        .filter(|m| *m > 0)
        .or(rc.memory.filter(|m| *m > 0))
        .unwrap_or(0);
    let mem_buf_mib = if limit / 2 > 0 {
        limit / 2
    } else {
        DEFAULT_MEM_BUF_MIB
    };
    let mut routed = Vec::new();
    for (idx, c) in containers.iter().enumerate() {
        if !uses_awsfirelens(c) {
            continue;
        }
        let mut options = c
            .log_configuration
            .as_ref()
            .and_then(|l: &LogConfiguration| l.options.clone())
            .unwrap_or_default();
        let buffer_limit = match options.remove(BUFFER_LIMIT_OPTION) {
            None => DEFAULT_BUFFER_LIMIT,
            Some(v) => crate::supervisor::logs::logging::parse_size(&v)
                .filter(|n| *n > 0)
                .ok_or_else(|| FirelensError::BufferLimit {
                    container: c.name_str().to_string(),
                    value: v.clone(),
                })?,
        };
        // Ref: task.go collectFirelensLogEnvOptions: a secret option becomes a config
        // variable the router resolves from its environment (`crate::supervisor::secrets::wanted`
        // puts the value there as `<name>_<index>`).
        let secret_options = c
            .log_configuration
            .as_ref()
            .and_then(|l| l.secret_options.as_deref())
            .unwrap_or_default();
        for s in secret_options {
            if let Some(name) = s.name.as_deref() {
                let var = format!("{name}_{idx}");
                let placeholder = match kind {
                    Kind::FluentBit => format!("${{{var}}}"),
                    Kind::Fluentd => format!("\"#{{ENV['{var}']}}\""),
                };
                options.insert(name.to_string(), placeholder);
            }
        }
        routed.push(Routed {
            idx,
            name: c.name_str().to_string(),
            options,
            buffer_limit,
        });
    }
    let plan = Plan {
        router,
        kind,
        metadata,
        external,
        mem_buf_mib,
        network,
        cluster: ids.cluster.to_string(),
        task_arn: ids.task_arn.to_string(),
        task_definition: ids.task_definition.to_string(),
        task_id: ids.task_id.to_string(),
        routed,
        router_user: rc.user.clone().filter(|u| !u.is_empty()),
    };
    // Fail now, as the agent fails the resource, rather than at the router's start.
    plan.render()?;
    Ok(Some(plan))
}

/// One section of the generated file, as the generator's template writes it.
struct Section<'a> {
    name: &'a str,
    tag: Option<&'a str>,
    options: BTreeMap<&'a str, String>,
}

/// One output of the generated file: the plugin, the tag it matches, its options.
type Output<'a> = (String, String, BTreeMap<&'a str, String>);

/// The generated file's sections, in the generator's order, to write in either syntax.
struct Sections<'a> {
    inputs: Vec<Section<'a>>,
    /// Grep filters: (tag, pattern).
    include: Vec<(String, String)>,
    exclude: Vec<(String, String)>,
    /// The ECS metadata fields added to every record, when `enable-ecs-log-metadata`.
    metadata: Option<BTreeMap<&'static str, String>>,
    include_path: Option<&'a str>,
    outputs: Vec<Output<'a>>,
}

impl Sections<'_> {
    /// Fluent Bit's syntax.
    fn fluent_bit(&self, wild: &str) -> String {
        let mut s = String::new();
        for i in &self.inputs {
            let _ = write!(s, "\n[INPUT]\n    Name {}", i.name);
            if let Some(t) = i.tag {
                let _ = write!(s, "\n    Tag {t}");
            }
            for (k, v) in &i.options {
                let _ = write!(s, "\n    {k} {v}");
            }
            s.push('\n');
        }
        for (tag, re) in &self.include {
            let _ = write!(
                s,
                "\n[FILTER]\n    Name   grep\n    Match {tag}\n    Regex  log {re}\n"
            );
        }
        for (tag, re) in &self.exclude {
            let _ = write!(
                s,
                "\n[FILTER]\n    Name   grep\n    Match {tag}\n    Exclude log {re}\n"
            );
        }
        if let Some(fields) = &self.metadata {
            let _ = write!(s, "\n[FILTER]\n    Name record_modifier\n    Match {wild}");
            for (k, v) in fields {
                let _ = write!(s, "\n    Record {k} {v}");
            }
            s.push('\n');
        }
        if let Some(p) = self.include_path {
            let _ = write!(s, "\n@INCLUDE {p}\n");
        }
        for (name, tag, opts) in &self.outputs {
            let _ = write!(s, "\n[OUTPUT]\n    Name {name}\n    Match {tag}");
            for (k, v) in opts {
                let _ = write!(s, "\n    {k} {v}");
            }
            s.push('\n');
        }
        s
    }

    /// Fluentd's syntax.
    fn fluentd(&self, wild: &str) -> String {
        let mut s = String::new();
        for i in &self.inputs {
            let _ = write!(s, "\n<source>\n    @type {}", i.name);
            if let Some(t) = i.tag {
                let _ = write!(s, "\n    tag {t}");
            }
            for (k, v) in &i.options {
                let _ = write!(s, "\n    {k} {v}");
            }
            s.push_str("\n</source>\n");
        }
        for (tag, re) in &self.include {
            let _ = write!(
                s,
                "\n<filter {tag}>\n    @type  grep\n    <regexp>\n        key log\n        \
                 pattern {re}\n    </regexp>\n</filter>\n"
            );
        }
        for (tag, re) in &self.exclude {
            let _ = write!(
                s,
                "\n<filter {tag}>\n    @type  grep\n    <exclude>\n        key log\n        \
                 pattern {re}\n    </exclude>\n</filter>\n"
            );
        }
        if let Some(fields) = &self.metadata {
            let _ = write!(
                s,
                "\n<filter {wild}>\n    @type record_transformer\n    <record>"
            );
            for (k, v) in fields {
                let _ = write!(s, "\n        {k} {v}");
            }
            s.push_str("\n    </record>\n</filter>\n");
        }
        if let Some(p) = self.include_path {
            let _ = write!(s, "\n@include {p}\n");
        }
        for (name, tag, opts) in &self.outputs {
            let _ = write!(s, "\n<match {tag}>\n    @type {name}");
            for (k, v) in opts {
                let _ = write!(s, "\n    {k} {v}");
            }
            s.push_str("\n</match>\n");
        }
        s
    }
}

impl Plan {
    /// The Fluent tag of container `name`'s records (`fluentTagDockerFormat`).
    pub fn tag(&self, name: &str) -> String {
        format!("{name}-firelens-{}", self.task_id)
    }

    /// The generated configuration, byte for byte as the agent's generator writes it
    /// (sections in its order, options sorted by key as Go's templates range over maps),
    /// containers in task-definition order (the agent's follow Go's map order).
    pub fn render(&self) -> Result<String, FirelensError> {
        let (inputs, mut outputs) = self.inputs();
        let (include, exclude, routed) = self.routed_sections()?;
        outputs.extend(routed);
        let include_path = match &self.external {
            None => None,
            Some(External::File(p)) => Some(p.as_str()),
            Some(External::S3(_)) => Some(self.kind.s3_target()),
        };
        let metadata = self.metadata.then(|| {
            BTreeMap::from([
                ("ecs_cluster", self.cluster.clone()),
                ("ecs_task_arn", self.task_arn.clone()),
                ("ecs_task_definition", self.task_definition.clone()),
            ])
        });
        let sections = Sections {
            inputs,
            include,
            exclude,
            metadata,
            include_path,
            outputs,
        };
        Ok(match self.kind {
            Kind::FluentBit => sections.fluent_bit(self.kind.wildcard()),
            Kind::Fluentd => sections.fluentd(self.kind.wildcard()),
        })
    }

    /// The inputs (the router's socket; a TCP forward input, and Fluent Bit's health
    /// check input, in bridge and awsvpc modes only) and the output of the health check.
    fn inputs(&self) -> (Vec<Section<'_>>, Vec<Output<'_>>) {
        let kind = self.kind;
        let mut inputs: Vec<Section<'_>> = Vec::new();
        match kind {
            Kind::FluentBit => inputs.push(Section {
                name: "forward",
                tag: None,
                options: BTreeMap::from([
                    ("unix_path", SOCKET_IN_ROUTER.to_string()),
                    ("Mem_Buf_Limit", format!("{}MB", self.mem_buf_mib)),
                ]),
            }),
            Kind::Fluentd => inputs.push(Section {
                name: "unix",
                tag: None,
                options: BTreeMap::from([("path", SOCKET_IN_ROUTER.to_string())]),
            }),
        }
        // Ref: firelensconfig_unix.go: a TCP forward input (and Fluent Bit's health check
        // input) in bridge and awsvpc modes only; awsvpc binds loopback, bridge all.
        let bind = match self.network {
            NetworkMode::Awsvpc => Some("127.0.0.1"),
            NetworkMode::Bridge => Some("0.0.0.0"),
            _ => None,
        };
        let mut outputs: Vec<Output<'_>> = Vec::new();
        if let Some(bind) = bind {
            let (listen, port) = match kind {
                Kind::FluentBit => ("Listen", "Port"),
                Kind::Fluentd => ("bind", "port"),
            };
            inputs.push(Section {
                name: "forward",
                tag: None,
                options: BTreeMap::from([
                    (listen, bind.to_string()),
                    (port, FORWARD_PORT.to_string()),
                ]),
            });
            if kind == Kind::FluentBit {
                inputs.push(Section {
                    name: "tcp",
                    tag: Some("firelens-healthcheck"),
                    options: BTreeMap::from([
                        ("Listen", "127.0.0.1".to_string()),
                        ("Port", "8877".to_string()),
                    ]),
                });
                outputs.push((
                    "null".into(),
                    "firelens-healthcheck".into(),
                    BTreeMap::new(),
                ));
            }
        }
        (inputs, outputs)
    }

    /// Each routed container's grep filters (include, exclude: tag and pattern) and its
    /// output, from its `logConfiguration` options; refused without the output key when
    /// it has other options.
    #[allow(clippy::type_complexity)]
    fn routed_sections(
        &self,
    ) -> Result<
        (
            Vec<(String, String)>,
            Vec<(String, String)>,
            Vec<Output<'_>>,
        ),
        FirelensError,
    > {
        let kind = self.kind;
        let wild = kind.wildcard();
        let mut outputs = Vec::new();
        let mut include = Vec::new();
        let mut exclude = Vec::new();
        for r in &self.routed {
            let tag = format!("{}-firelens{wild}", r.name);
            let out_key = kind.output_key();
            let mut opts = BTreeMap::new();
            for (k, v) in &r.options {
                match k.as_str() {
                    k if k == out_key => {}
                    "include-pattern" => include.push((tag.clone(), v.clone())),
                    "exclude-pattern" => exclude.push((tag.clone(), v.clone())),
                    _ => {
                        opts.insert(k.as_str(), v.clone());
                    }
                }
            }
            match r.options.get(out_key) {
                Some(plugin) => outputs.push((plugin.clone(), tag, opts)),
                // Without an output key the output may come from an external config.
                None if opts.is_empty() => {}
                None => {
                    return Err(FirelensError::MissingOutputKey {
                        container: r.name.clone(),
                        key: out_key,
                        kind: kind.name(),
                    });
                }
            }
        }
        Ok((include, exclude, outputs))
    }

    /// What the agent adds to the router's environment: a Fluentd router runs as root
    /// (`FLUENT_UID=0`) to reach the socket. Ref: docker_task_engine.go createContainer.
    pub fn router_env(&self) -> Vec<String> {
        match self.kind {
            Kind::Fluentd => vec!["FLUENT_UID=0".to_string()],
            Kind::FluentBit => Vec::new(),
        }
    }

    /// The environment the agent gives a routed container in awsvpc mode (bridge: the
    /// router's address; one netns per task here, so loopback in both).
    /// Ref: docker_task_engine.go `FLUENT_HOST`/`FLUENT_PORT`.
    pub fn env(&self) -> Vec<String> {
        match self.network {
            NetworkMode::Awsvpc | NetworkMode::Bridge => vec![
                "FLUENT_HOST=127.0.0.1".to_string(),
                format!("FLUENT_PORT={FORWARD_PORT}"),
            ],
            _ => Vec::new(),
        }
    }
}

/// The task's FireLens files on this host: `<dir>/config/fluent.conf` (and `external.conf`
/// from S3), `<dir>/socket/` (the router's `/var/run`). Ref: firelens_unix.go createDirectories.
#[derive(Debug, Clone)]
pub struct Files {
    pub dir: PathBuf,
}

impl Files {
    pub fn new(dir: PathBuf) -> Files {
        Files { dir }
    }
    pub fn config(&self) -> PathBuf {
        self.dir.join("config").join("fluent.conf")
    }
    pub fn external(&self) -> PathBuf {
        self.dir.join("config").join("external.conf")
    }
    pub fn socket_dir(&self) -> PathBuf {
        self.dir.join("socket")
    }
    pub fn socket(&self) -> PathBuf {
        self.socket_dir().join("fluent.sock")
    }

    /// Creates the dirs (the socket dir owned by the router's `user`, as the agent sets it)
    /// and writes the generated file (and the S3 one, already fetched), each through a temp
    /// file and a rename, mode 0644 as the agent writes them.
    pub fn write(
        &self,
        config: &str,
        external: Option<&[u8]>,
        user: Option<&str>,
        ids: Option<runtime::IdRange>,
    ) -> Result<(), FirelensError> {
        let mk = |p: &Path| {
            std::fs::create_dir_all(p).map_err(|source| FirelensError::Write {
                path: p.to_path_buf(),
                source,
            })
        };
        mk(&self.dir.join("config"))?;
        mk(&self.socket_dir())?;
        // The router's user, as a host id when the task has a user namespace (`ids`): the
        // router's root there, without a user.
        let owner = match (user, ids) {
            (Some(u), _) => Some(socket_owner(u)?),
            (None, Some(_)) => Some((0, Some(0))),
            (None, None) => None,
        };
        if let Some((uid, gid)) = owner {
            let host = |id: u32| match ids {
                Some(r) => r.host_id(id).ok_or_else(|| FirelensError::Ownership {
                    why: format!(
                        "id {id} is outside the task's user namespace (0-{})",
                        r.count - 1
                    ),
                }),
                None => Ok(id),
            };
            let gid = gid.map(host).transpose()?;
            std::os::unix::fs::chown(self.socket_dir(), Some(host(uid)?), gid)
                .map_err(|e| FirelensError::Ownership { why: e.to_string() })?;
        }
        let put = |path: PathBuf, data: &[u8]| {
            use std::os::unix::fs::PermissionsExt;
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, data)
                .and_then(|()| {
                    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))
                })
                .and_then(|()| std::fs::rename(&tmp, &path))
                .map_err(|source| FirelensError::Write { path, source })
        };
        if let Some(data) = external {
            put(self.external(), data)?;
        }
        put(self.config(), config.as_bytes())
    }

    /// The router's bind mounts: the generated file, the socket dir, the S3 file.
    /// Ref: task.go AddFirelensContainerBindMounts (read-write, as Docker binds default).
    pub fn mounts(&self, plan: &Plan) -> Vec<runtime::Mount> {
        let bind = |source: PathBuf, target: &str| runtime::Mount::Bind {
            source,
            destination: target.into(),
            read_only: false,
        };
        let mut v = vec![
            bind(self.config(), plan.kind.config_target()),
            bind(self.socket_dir(), SOCKET_DIR_IN_ROUTER),
        ];
        if matches!(plan.external, Some(External::S3(_))) {
            v.push(bind(self.external(), plan.kind.s3_target()));
        }
        v
    }
}

/// The owner of the socket dir for the router's `user`: `uid`, `uid:gid` or `uid:group`
/// (a group name keeps this process's group), as the agent's SetOwnership parses it.
fn socket_owner(user: &str) -> Result<(u32, Option<u32>), FirelensError> {
    let (u, g) = user.split_once(':').unwrap_or((user, ""));
    let uid = u.parse().map_err(|_| FirelensError::Ownership {
        why: format!(
            "unable to determine the user ID: {u:?} is not a number (the log router's user \
             must be uid, uid:gid or uid:group)"
        ),
    })?;
    Ok((uid, g.parse().ok()))
}

/// Encodes one Fluent forward "Message mode" entry: `[tag, EventTime, record]`, the time
/// as the EventTime extension (type 0: seconds and nanoseconds, big-endian u32 each), as
/// Docker's driver sends it with `fluentd-sub-second-precision` (the agent sets it).
/// Ref: fluent/fluentd wiki "Forward Protocol Specification v1" (Message Modes, EventTime).
pub fn encode_entry(
    tag: &str,
    time: chrono::DateTime<chrono::Utc>,
    record: &[(&str, &str)],
) -> Vec<u8> {
    use rmpv::Value;
    let mut ext = Vec::with_capacity(8);
    ext.extend_from_slice(&(time.timestamp() as u32).to_be_bytes());
    ext.extend_from_slice(&time.timestamp_subsec_nanos().to_be_bytes());
    let map = record
        .iter()
        .map(|(k, v)| (Value::from(*k), Value::from(*v)))
        .collect();
    let entry = Value::Array(vec![Value::from(tag), Value::Ext(0, ext), Value::Map(map)]);
    let mut buf = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = rmpv::encode::write_value(&mut buf, &entry);
    buf
}

#[derive(Default)]
struct Queue {
    entries: VecDeque<Vec<u8>>,
    bytes: u64,
    closed: bool,
}

/// The awsfirelens driver of one container: a [`runtime::LogSink`] that never blocks the
/// container. Lines wait in a bounded buffer while the router is not up (the agent turns
/// on the fluentd driver's async mode: `fluentd-async`), a thread sends them and
/// reconnects; past the buffer a line is dropped and counted, as the driver does.
pub struct Sink {
    tag: String,
    container_id: String,
    container_name: String,
    /// The metadata fields, when `enable-ecs-log-metadata` is on.
    ecs: Vec<(&'static str, String)>,
    limit: u64,
    socket: PathBuf,
    queue: Mutex<Queue>,
    wake: Condvar,
    pub dropped: AtomicU64,
    pub sent: AtomicU64,
    sender: Mutex<Option<JoinHandle<()>>>,
}

impl Sink {
    /// The sink of routed container `r`, sending to the router's socket at `socket`.
    pub fn start(plan: &Plan, r: &Routed, container_id: &str, socket: PathBuf) -> Arc<Sink> {
        // The record carries the metadata fields itself too: the same values the router's
        // generated filter adds, so a router that does not apply the filter (the tests'
        // receiver) still sees them, and one that does gets the same record.
        let ecs = if plan.metadata {
            vec![
                ("ecs_cluster", plan.cluster.clone()),
                ("ecs_task_arn", plan.task_arn.clone()),
                ("ecs_task_definition", plan.task_definition.clone()),
            ]
        } else {
            Vec::new()
        };
        let me = Arc::new(Sink {
            tag: plan.tag(&r.name),
            container_id: container_id.to_string(),
            container_name: r.name.clone(),
            ecs,
            limit: r.buffer_limit,
            socket,
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            dropped: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            sender: Mutex::new(None),
        });
        let worker = me.clone();
        match threadgate::spawn(
            std::thread::Builder::new().name("firelens".into()),
            move || worker.send_loop(),
        ) {
            Ok(h) => *me.sender.lock().unwrap_or_else(|p| p.into_inner()) = Some(h),
            Err(e) => {
                tracing::warn!(error = %e, "firelens: failed to start the sender thread");
                me.queue.lock().unwrap_or_else(|p| p.into_inner()).closed = true;
            }
        }
        me
    }

    pub fn buffer_limit(&self) -> u64 {
        self.limit
    }

    /// Waits (at most [`DRAIN_TIMEOUT`]) for the queued lines to reach the router; what
    /// is still queued then is dropped and counted.
    pub fn finish(&self) {
        {
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            q.closed = true;
        }
        self.wake.notify_all();
        if let Some(h) = self.sender.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = h.join();
        }
    }

    /// Sends what is queued, all of it in one write (the queue's byte count keeps covering
    /// a batch until it is written, so the bound holds while the router is away).
    fn send_loop(&self) {
        let mut conn: Option<UnixStream> = None;
        let mut backoff = Duration::from_millis(50);
        let mut closed_at: Option<Instant> = None;
        // A batch not yet written: the bytes, and how many entries they hold.
        let mut batch: Vec<u8> = Vec::new();
        let mut count: u64 = 0;
        loop {
            let closed = {
                let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
                while count == 0 && q.entries.is_empty() && !q.closed {
                    q = self.wake.wait(q).unwrap_or_else(|p| p.into_inner());
                }
                for e in q.entries.drain(..) {
                    batch.extend_from_slice(&e);
                    count += 1;
                }
                q.closed
            };
            if count == 0 {
                return; // closed, and everything was sent
            }
            if closed && closed_at.is_none() {
                closed_at = Some(Instant::now());
            }
            if closed_at.is_some_and(|t| t.elapsed() > DRAIN_TIMEOUT) {
                self.dropped.fetch_add(count, Ordering::Relaxed);
                tracing::warn!(tag = %self.tag, lost = count, "firelens: the log router did not take the last lines");
                let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
                q.bytes = 0;
                return;
            }
            if conn.is_none() {
                match UnixStream::connect(&self.socket) {
                    Ok(s) => {
                        let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
                        conn = Some(s);
                        backoff = Duration::from_millis(50);
                    }
                    Err(e) => {
                        tracing::debug!(socket = %self.socket.display(), error = %e, "firelens: router not reachable yet");
                        let q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
                        let _ = self.wake.wait_timeout(q, backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                        continue;
                    }
                }
            }
            let Some(s) = conn.as_mut() else { continue };
            match s.write_all(&batch) {
                Ok(()) => {
                    let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
                    q.bytes = q.bytes.saturating_sub(batch.len() as u64);
                    drop(q);
                    self.sent.fetch_add(count, Ordering::Relaxed);
                    batch.clear();
                    count = 0;
                }
                Err(e) => {
                    // The router restarted or went away: the batch is sent again whole on
                    // the next connection (a router drops the broken tail of the old one).
                    tracing::debug!(error = %e, "firelens: lost the connection to the router");
                    conn = None;
                }
            }
        }
    }
}

impl runtime::LogSink for Sink {
    fn write(&self, stream: &'static str, line: &[u8], time: chrono::DateTime<chrono::Utc>) {
        let text = String::from_utf8_lossy(line);
        let text = text.strip_suffix('\n').unwrap_or(&text);
        // Docker's driver skips empty lines as every driver does.
        if text.is_empty() {
            return;
        }
        let mut record: Vec<(&str, &str)> = vec![
            ("container_id", &self.container_id),
            ("container_name", &self.container_name),
            ("source", stream),
            ("log", text),
        ];
        record.extend(self.ecs.iter().map(|(k, v)| (*k, v.as_str())));
        let entry = encode_entry(&self.tag, time, &record);
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        if q.closed || q.bytes + entry.len() as u64 > self.limit {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        q.bytes += entry.len() as u64;
        q.entries.push_back(entry);
        drop(q);
        self.wake.notify_all();
    }
}

/// Fetches `o` with the execution role, as the agent downloads the S3 config file.
pub fn fetch_s3(
    exec: &mut crate::supervisor::endpoints::credentials::Execution,
    region: &str,
    o: &crate::supervisor::envfiles::S3Object,
) -> Result<Vec<u8>, FirelensError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| FirelensError::S3Download(format!("failed to start the AWS client: {e}")))?;
    let who = exec.describe();
    rt.block_on(crate::supervisor::envfiles::get_object(exec, region, o))
        .map_err(|why| {
            FirelensError::S3Download(format!(
                "unable to download s3 config {} from bucket {} as {who}: {why}",
                o.key, o.bucket
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtime::LogSink;

    const TASK: &str = "0123456789abcdef0123456789abcdef";

    fn def(json: serde_json::Value) -> TaskDefinition {
        serde_json::from_value(json).unwrap()
    }

    /// The router and the containers named in `keep`.
    fn fixture(router_opts: serde_json::Value, kind: &str, keep: &[&str]) -> TaskDefinition {
        let mut d = def(serde_json::json!({
            "family": "orders",
            "networkMode": "awsvpc",
            "containerDefinitions": [
                {"name": "log_router", "image": "fluent-bit", "memoryReservation": 50,
                 "firelensConfiguration": {"type": kind, "options": router_opts}},
                {"name": "app", "image": "app",
                 "logConfiguration": {"logDriver": "awsfirelens", "options": {
                    "Name": "cloudwatch_logs", "region": "us-east-1",
                    "log_group_name": "/ecs/orders", "auto_create_group": "true",
                    "exclude-pattern": "^DEBUG", "log-driver-buffer-limit": "2m"}}},
                {"name": "sidecar", "image": "x",
                 "logConfiguration": {"logDriver": "awsfirelens", "options": {
                    "@type": "forward", "include-pattern": "ERROR"}}}
            ]
        }));
        d.container_definitions
            .as_mut()
            .unwrap()
            .retain(|c| c.name_str() == "log_router" || keep.contains(&c.name_str()));
        d
    }

    fn ids() -> TaskIds<'static> {
        TaskIds {
            cluster: "default",
            task_arn: "arn:aws:ecs:us-east-1:123456789012:task/default/0123456789abcdef0123456789abcdef",
            task_definition: "orders:3",
            task_id: TASK,
        }
    }

    #[test]
    fn fluent_bit_config_is_the_agents() {
        let opts = serde_json::json!({"enable-ecs-log-metadata": "true",
            "config-file-type": "file", "config-file-value": "/extra.conf"});
        // `@type` is not Fluent Bit's output key: the sidecar's options would make an
        // output without a plugin, which the agent refuses.
        let d = fixture(opts.clone(), "fluentbit", &["app", "sidecar"]);
        let e = plan(&d, NetworkMode::Awsvpc, &ids())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("container sidecar") && e.contains("missing output key Name"),
            "{e}"
        );
        let d = fixture(opts, "fluentbit", &["app"]);
        let p = plan(&d, NetworkMode::Awsvpc, &ids()).unwrap().unwrap();
        assert_eq!(p.router, 0);
        assert_eq!(p.routed.len(), 1);
        assert_eq!(p.routed[0].buffer_limit, 2 << 20);
        assert_eq!(p.mem_buf_mib, 25, "memoryReservation 50 halved");
        let want = "
[INPUT]
    Name forward
    Mem_Buf_Limit 25MB
    unix_path /var/run/fluent.sock

[INPUT]
    Name forward
    Listen 127.0.0.1
    Port 24224

[INPUT]
    Name tcp
    Tag firelens-healthcheck
    Listen 127.0.0.1
    Port 8877

[FILTER]
    Name   grep
    Match app-firelens*
    Exclude log ^DEBUG

[FILTER]
    Name record_modifier
    Match *
    Record ecs_cluster default
    Record ecs_task_arn arn:aws:ecs:us-east-1:123456789012:task/default/0123456789abcdef0123456789abcdef
    Record ecs_task_definition orders:3

@INCLUDE /extra.conf

[OUTPUT]
    Name null
    Match firelens-healthcheck

[OUTPUT]
    Name cloudwatch_logs
    Match app-firelens*
    auto_create_group true
    log_group_name /ecs/orders
    region us-east-1
";
        assert_eq!(p.render().unwrap(), want);
        assert_eq!(p.kind.config_target(), "/fluent-bit/etc/fluent-bit.conf");
        assert_eq!(p.tag("app"), format!("app-firelens-{TASK}"));
    }

    #[test]
    fn fluentd_config_metadata_off_host_mode_and_s3() {
        let d = fixture(
            serde_json::json!({"enable-ecs-log-metadata": "false",
                "config-file-type": "s3", "config-file-value": "arn:aws:s3:::cfg/fluent.conf"}),
            "fluentd",
            &["sidecar"],
        );
        let p = plan(&d, NetworkMode::Host, &ids()).unwrap().unwrap();
        assert_eq!(
            p.external,
            Some(External::S3(crate::supervisor::envfiles::S3Object {
                bucket: "cfg".into(),
                key: "fluent.conf".into()
            }))
        );
        let want = "
<source>
    @type unix
    path /var/run/fluent.sock
</source>

<filter sidecar-firelens**>
    @type  grep
    <regexp>
        key log
        pattern ERROR
    </regexp>
</filter>

@include /fluentd/etc/external.conf

<match sidecar-firelens**>
    @type forward
</match>
";
        assert_eq!(p.render().unwrap(), want);
        assert_eq!(p.kind.config_target(), "/fluentd/etc/fluent.conf");
        let files = Files::new("/x/firelens".into());
        let targets: Vec<String> = files
            .mounts(&p)
            .iter()
            .map(|m| match m {
                runtime::Mount::Bind {
                    source,
                    destination,
                    ..
                } => format!("{}:{destination}", source.display()),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(
            targets,
            [
                "/x/firelens/config/fluent.conf:/fluentd/etc/fluent.conf",
                "/x/firelens/socket:/var/run",
                "/x/firelens/config/external.conf:/fluentd/etc/external.conf"
            ]
        );
        assert!(p.env().is_empty());
    }

    #[test]
    fn secret_options_become_config_variables_in_the_routers_environment() {
        let mut d = fixture(serde_json::json!({}), "fluentbit", &["app"]);
        let app = &mut d.container_definitions.as_mut().unwrap()[1];
        app.log_configuration.as_mut().unwrap().secret_options = Some(vec![
            serde_json::from_value(serde_json::json!(
                {"name": "apikey", "valueFrom": "arn:aws:ssm:us-east-1:123456789012:parameter/k"}
            ))
            .unwrap(),
        ]);
        let p = plan(&d, NetworkMode::Awsvpc, &ids()).unwrap().unwrap();
        assert!(
            p.render().unwrap().contains("\n    apikey ${apikey_1}\n"),
            "{}",
            p.render().unwrap()
        );
        // The value goes to the router's environment under that name: the secrets step's
        // test `a_routed_containers_secret_options_go_to_the_router`.
        // Fluentd reads it from its environment with Ruby's syntax.
        let r = &mut d.container_definitions.as_mut().unwrap()[0];
        r.firelens_configuration.as_mut().unwrap().kind = Some(FirelensType::Fluentd);
        let app = &mut d.container_definitions.as_mut().unwrap()[1];
        let o = app
            .log_configuration
            .as_mut()
            .unwrap()
            .options
            .as_mut()
            .unwrap();
        o.insert("@type".into(), "datadog".into());
        o.remove("Name");
        let p = plan(&d, NetworkMode::Awsvpc, &ids()).unwrap().unwrap();
        assert!(
            p.render()
                .unwrap()
                .contains("\n    apikey \"#{ENV['apikey_1']}\"\n"),
            "{}",
            p.render().unwrap()
        );
    }

    #[test]
    fn the_socket_dir_belongs_to_the_routers_user() {
        assert_eq!(socket_owner("1000").unwrap(), (1000, None));
        assert_eq!(socket_owner("1000:2000").unwrap(), (1000, Some(2000)));
        assert_eq!(socket_owner("1000:adm").unwrap(), (1000, None));
        let e = socket_owner("fluent").unwrap_err().to_string();
        assert!(
            e.starts_with(
                "unable to set socket directory ownership: unable to determine the user ID"
            ),
            "{e}"
        );
        let d = tempfile::tempdir().unwrap();
        let files = Files::new(d.path().join("firelens"));
        files.write("x", None, Some("1000:2000"), None).unwrap();
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(files.socket_dir()).unwrap();
        if nix::unistd::Uid::effective().is_root() {
            assert_eq!((m.uid(), m.gid()), (1000, 2000));
        }
        assert_eq!(std::fs::read_to_string(files.config()).unwrap(), "x");
    }

    #[test]
    fn bad_options_fail_with_the_agents_words() {
        let e = plan(
            &fixture(
                serde_json::json!({"config-file-type": "http"}),
                "fluentbit",
                &[],
            ),
            NetworkMode::Awsvpc,
            &ids(),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "invalid value http is specified for option config-file-type"
        );
        let e = plan(
            &fixture(
                serde_json::json!({"config-file-type": "file"}),
                "fluentbit",
                &[],
            ),
            NetworkMode::Awsvpc,
            &ids(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("config-file-value is not specified"), "{e}");
        let none = def(serde_json::json!({"containerDefinitions": [{"name": "a"}]}));
        assert!(plan(&none, NetworkMode::Awsvpc, &ids()).unwrap().is_none());
    }

    #[test]
    fn entries_are_forward_messages_and_the_sink_buffers_until_the_router_listens() {
        let d = fixture(serde_json::json!({}), "fluentd", &["sidecar"]);
        let p = plan(&d, NetworkMode::Awsvpc, &ids()).unwrap().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("fluent.sock");
        let sink = Sink::start(&p, &p.routed[0], "t-2", sock.clone());
        let t = chrono::DateTime::parse_from_rfc3339("2024-05-01T10:00:00.5Z")
            .unwrap()
            .to_utc();
        // Written before the router listens: kept, then sent once it does.
        sink.write("stdout", b"hello\n", t);
        sink.write("stderr", b"oops\n", t);
        std::thread::sleep(Duration::from_millis(100));
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let (mut conn, _) = listener.accept().unwrap();
        let mut got = Vec::new();
        for _ in 0..2 {
            let v = rmpv::decode::read_value(&mut conn).unwrap();
            got.push(v);
        }
        sink.finish();
        let a = got[0].as_array().unwrap();
        assert_eq!(
            a[0].as_str(),
            Some(format!("sidecar-firelens-{TASK}").as_str())
        );
        let rmpv::Value::Ext(0, ext) = &a[1] else {
            panic!("{:?}", a[1])
        };
        assert_eq!(ext[..4], (t.timestamp() as u32).to_be_bytes());
        assert_eq!(ext[4..], 500_000_000u32.to_be_bytes());
        let rec: BTreeMap<&str, &str> = a[2]
            .as_map()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.as_str().unwrap(), v.as_str().unwrap()))
            .collect();
        assert_eq!(rec["log"], "hello");
        assert_eq!(rec["source"], "stdout");
        assert_eq!(rec["container_name"], "sidecar");
        assert_eq!(rec["container_id"], "t-2");
        assert_eq!(rec["ecs_task_definition"], "orders:3");
        assert_eq!(
            got[1].as_array().unwrap()[2].as_map().unwrap()[2]
                .1
                .as_str(),
            Some("stderr")
        );
        assert_eq!(sink.sent.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_full_buffer_drops_and_counts_without_blocking() {
        let d = fixture(serde_json::json!({}), "fluentbit", &["app"]);
        let mut p = plan(&d, NetworkMode::Awsvpc, &ids()).unwrap().unwrap();
        p.routed[0].buffer_limit = 1024;
        let dir = tempfile::tempdir().unwrap();
        // Nobody listens: everything past 1 KiB is dropped, at once.
        let sink = Sink::start(&p, &p.routed[0], "t-1", dir.path().join("none.sock"));
        let t0 = Instant::now();
        for _ in 0..100 {
            sink.write("stdout", "x".repeat(100).as_bytes(), chrono::Utc::now());
        }
        assert!(t0.elapsed() < Duration::from_secs(1));
        assert!(sink.dropped.load(Ordering::Relaxed) > 80);
    }
}
