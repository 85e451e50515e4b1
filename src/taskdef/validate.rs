//! The rules ECS applies to a task definition at RegisterTaskDefinition and RunTask, and the
//! Fargate rules on top, each reported with the ECS exception, a rule id and the JSON path.
//!
//! Sources: the ECS API model (ecs.json, member documentation of `RegisterTaskDefinitionRequest`,
//! `ContainerDefinition`, `PortMapping`, `HealthCheck`, `LinuxParameters`, `Volume` …), the
//! developer guide pages "Amazon ECS task definition differences for Fargate" and "Task
//! definition parameters", and ECS's own error strings as users quote them ("When
//! networkMode=awsvpc, the host ports and container ports in port mappings must match.",
//! "No Fargate configuration exists for given values: …", "Invalid setting for container 'x'.
//! At least one of 'memory' or 'memoryReservation' must be specified." …). Rules whose
//! enforcement by ECS is not documented are warnings, never errors: a file ECS accepts must
//! pass here.

use super::finding::{Code, Finding, JsonPath, Severity};
use super::model::*;
use super::parse::{Parsed, Shape, is_placeholder, placeholder};
use super::units::{
    CpuUnits, FARGATE_CPU_VALUES, MemoryMib, fargate_memory_choices, fargate_pair_is_valid,
};
use std::collections::{HashMap, HashSet};

/// The launch type a task definition is checked against, besides what its
/// `requiresCompatibilities` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum LaunchType {
    #[value(name = "FARGATE", alias = "fargate")]
    #[serde(rename = "FARGATE")]
    Fargate,
    #[value(name = "EC2", alias = "ec2")]
    #[serde(rename = "EC2")]
    Ec2,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    pub launch_type: Option<LaunchType>,
    /// A template checked before its values are filled in (`validate --template`): template
    /// placeholders are warnings. Otherwise they are errors, as for registering, which needs
    /// values.
    pub template: bool,
}

/// The outcome of validating one task definition.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub valid: bool,
    pub shape: Shape,
    /// Whether the Fargate rules were applied.
    pub fargate: bool,
    pub errors: usize,
    pub warnings: usize,
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn errors(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.is_error())
    }
}

/// Validates a parsed task definition: the parse findings plus every ECS rule, and the
/// Fargate rules when `requiresCompatibilities` names FARGATE or `opts` asks for FARGATE.
///
/// This is the one verdict `validate`, RegisterTaskDefinition, RunTask and a service
/// deployment give: a bare containerDefinitions array is checked as the task definition it
/// registers as (task-level rules included: see [`super::Parsed::as_registered`]), and
/// template placeholders are errors unless `opts.template`.
pub fn validate(parsed: &Parsed, opts: &Options) -> Report {
    let requires_fargate = parsed
        .def
        .requires_compatibilities
        .as_ref()
        .is_some_and(|c| c.contains(&Compatibility::Fargate));
    let fargate_code = if requires_fargate {
        Some(Code::ClientException)
    } else if opts.launch_type == Some(LaunchType::Fargate) {
        Some(Code::PlatformTaskDefinitionIncompatibilityException)
    } else {
        None
    };
    let mut findings = parsed.findings.clone();
    if parsed.shape != Shape::Unreadable {
        let rules = check(&parsed.def, true, fargate_code, &parsed.dropped);
        findings.extend(
            rules
                .into_iter()
                .chain(size(&parsed.def))
                .filter(|f| !parsed.dropped.iter().any(|d| f.path.starts_with(d))),
        );
        // Nothing silent: members this host does not fully honour (issue 22).
        findings.extend(super::coverage::task_definition(&parsed.def));
    }
    if !opts.template {
        for f in findings
            .iter_mut()
            .filter(|f| f.rule == "template-placeholder")
        {
            f.severity = Severity::Error;
            f.code = Code::ClientException;
            // ECS's own words for a placeholder image, which users search for. Ref:
            // aws-actions/amazon-ecs-render-task-definition#49 (an unexpanded
            // `$ECR_REGISTRY/…` image refused by RegisterTaskDefinition).
            let ecs = if f.path.to_string().ends_with(".image") {
                "Container.image repository contains invalid characters. "
            } else {
                ""
            };
            f.message = format!(
                "{ecs}{}; fill it in before registering (or check the template with `validate \
                 --template`)",
                f.message.trim_end_matches(": this member is not checked")
            );
        }
    }
    findings.sort_by_key(|f| f.severity);
    let errors = findings.iter().filter(|f| f.is_error()).count();
    Report {
        valid: errors == 0,
        shape: parsed.shape,
        fargate: fargate_code.is_some(),
        errors,
        warnings: findings.len() - errors,
        findings,
    }
}

/// The size of the definition as the AWS CLI sends it (compact JSON, without the members
/// only a describe output has) against ECS's quota.
/// Ref: ECS service quotas, "Task definition size": 64 KiB, not adjustable; ECS answers a
/// larger one with ClientException "Actual length: '66420'. Max allowed length is '65536'
/// bytes." (awsdocs/amazon-ecs-developer-guide#149, which corrected the quota from 32 KiB).
fn size(def: &TaskDefinition) -> Option<Finding> {
    const MAX: usize = 65536;
    let mut input = serde_json::to_value(def).ok()?;
    if let Some(m) = input.as_object_mut() {
        for k in super::unknown::READ_ONLY {
            m.remove(*k);
        }
    }
    let len = serde_json::to_vec(&input).map_or(0, |v| v.len());
    (len > MAX).then(|| {
        Finding::error(
            Code::ClientException,
            "task-definition-size",
            root(),
            format!(
                "Actual length: '{len}'. Max allowed length is '{MAX}' bytes. (ECS's quota on \
                 the size of a task definition: 64 KiB; move large values such as environment \
                 variables into environmentFiles or secrets.)"
            ),
        )
    })
}

/// Whether the definition satisfies the Fargate rules (for `compatibilities` on register).
pub fn fargate_compatible(def: &TaskDefinition) -> bool {
    !check(
        def,
        true,
        Some(Code::PlatformTaskDefinitionIncompatibilityException),
        &[],
    )
    .iter()
    .any(Finding::is_error)
}

/// Runs every rule; `task_level` is false for a bare container array, whose task-level
/// members live elsewhere; `fargate` is the exception to raise for Fargate rules, if they apply.
/// `dropped` are members the parser dropped (type errors, placeholders): rules that need them
/// are not checked.
pub fn check(
    def: &TaskDefinition,
    task_level: bool,
    fargate: Option<Code>,
    dropped: &[JsonPath],
) -> Vec<Finding> {
    let mut c = Checker {
        out: Vec::new(),
        fargate,
        dropped: dropped.to_vec(),
    };
    c.run(def, task_level);
    c.out
}

struct Checker {
    out: Vec<Finding>,
    fargate: Option<Code>,
    dropped: Vec<JsonPath>,
}

fn root() -> JsonPath {
    JsonPath::root()
}

fn cpath(i: usize) -> JsonPath {
    root().key("containerDefinitions").index(i)
}

/// Names of families, containers and volumes: "Up to 255 letters (uppercase and lowercase),
/// numbers, underscores, and hyphens are allowed." Ref: ecs.json `family`, `ContainerDefinition.name`.
fn is_ecs_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn non_empty<T>(v: &Option<Vec<T>>) -> bool {
    v.as_ref().is_some_and(|v| !v.is_empty())
}

fn blank(v: &Option<String>) -> bool {
    v.as_deref().is_none_or(|s| s.trim().is_empty())
}

/// Ref: ecs.json `KernelCapabilities.add` (valid values).
const CAPABILITIES: &[&str] = &[
    "ALL",
    "AUDIT_CONTROL",
    "AUDIT_WRITE",
    "BLOCK_SUSPEND",
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "IPC_LOCK",
    "IPC_OWNER",
    "KILL",
    "LEASE",
    "LINUX_IMMUTABLE",
    "MAC_ADMIN",
    "MAC_OVERRIDE",
    "MKNOD",
    "NET_ADMIN",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_RAW",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_CHROOT",
    "SYS_MODULE",
    "SYS_NICE",
    "SYS_PACCT",
    "SYS_PTRACE",
    "SYS_RAWIO",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "SYSLOG",
    "WAKE_ALARM",
];

/// Sysctls of a container's IPC namespace. Ref: ecs.json `SystemControl.value`; Docker
/// `opts.ValidateSysctl`.
pub fn is_ipc_sysctl(ns: &str) -> bool {
    matches!(
        ns,
        "kernel.msgmax"
            | "kernel.msgmnb"
            | "kernel.msgmni"
            | "kernel.sem"
            | "kernel.shmall"
            | "kernel.shmmax"
            | "kernel.shmmni"
            | "kernel.shm_rmid_forced"
    ) || ns.starts_with("fs.mqueue.")
}

/// Sysctls a container may set: those of its IPC and network namespaces (any other
/// would change the host). Ref: ecs.json `SystemControl.namespace`; Docker
/// `opts.ValidateSysctl`.
pub fn is_namespaced_sysctl(ns: &str) -> bool {
    is_ipc_sysctl(ns) || ns.starts_with("net.")
}

/// A private ECR image (`<account>.dkr.ecr.<region>.amazonaws.com/…`), which Fargate pulls
/// with the task execution role.
fn is_private_ecr(image: &str) -> bool {
    let host = image.split('/').next().unwrap_or("");
    let mut parts = host.split('.');
    let account = parts.next().unwrap_or("");
    account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && parts.next() == Some("dkr")
        && parts.next().is_some_and(|p| p.starts_with("ecr"))
}

impl Checker {
    /// Whether the parser dropped this member (or an enclosing one).
    fn was_dropped(&self, path: &JsonPath) -> bool {
        self.dropped.iter().any(|d| path.starts_with(d))
    }

    fn err(&mut self, rule: &'static str, path: JsonPath, msg: impl Into<String>) {
        self.out
            .push(Finding::error(Code::ClientException, rule, path, msg));
    }

    fn warn(&mut self, rule: &'static str, path: JsonPath, msg: impl Into<String>) {
        self.out.push(Finding::warning(rule, path, msg));
    }

    /// A Fargate rule: only reported when the Fargate rules apply.
    fn fargate_err(&mut self, rule: &'static str, path: JsonPath, msg: impl Into<String>) {
        if let Some(code) = self.fargate {
            self.out.push(Finding::error(code, rule, path, msg));
        }
    }

    /// Ref: developer guide, "Amazon ECS task definition differences for Fargate"
    /// (fargate-tasks-services.html#fargate-task-defs: the parameters that are not valid on
    /// Fargate), and the member docs in ecs.json that say so one by one.
    fn fargate_unsupported(&mut self, path: JsonPath, parameter: &str) {
        self.fargate_err(
            "fargate-unsupported-parameter",
            path,
            format!("Tasks using the Fargate launch type do not support {parameter}."),
        );
    }

    /// A member the ECS model marks `required` in its shape (ecs.json; botocore's
    /// service-2.json carries the same list, and the AWS CLI refuses the request before
    /// sending it) — every caller names one of those, unless its comment says otherwise.
    fn required(&mut self, path: JsonPath, what: &str) {
        let msg = format!("{what} is required.");
        self.err("required-member", path, msg);
    }

    /// A bound documented in the member's ecs.json doc (each caller cites it).
    fn range(&mut self, path: JsonPath, v: i64, lo: i64, hi: i64, what: &str) {
        if v < lo || v > hi {
            self.err(
                "out-of-range",
                path,
                format!("Invalid {what} {v}: must be between {lo} and {hi}."),
            );
        }
    }

    fn run(&mut self, def: &TaskDefinition, task_level: bool) {
        let fargate = self.fargate.is_some();
        let declared_mode = def.network_mode;
        // A bare container array validated for Fargate runs in Fargate's only mode.
        let mode = match declared_mode {
            Some(m) => m,
            None if fargate && !task_level => NetworkMode::Awsvpc,
            None => NetworkMode::Bridge,
        };
        let containers: &[ContainerDefinition] =
            def.container_definitions.as_deref().unwrap_or(&[]);

        let (task_cpu, task_memory) = if task_level {
            self.task_level(def, declared_mode)
        } else {
            (None, None)
        };

        if containers.is_empty() {
            // Ref: ECS answers `--container-definitions '[]'` with "ClientException: Container
            // list cannot be empty." (quoted from a deployed account in the public corpus; fog's
            // ECS mock raises the same).
            self.err(
                "containers-required",
                root().key("containerDefinitions"),
                "Container list cannot be empty: a task definition needs at least one container \
                 definition.",
            );
        } else if containers.len() > 10 {
            // Ref: ECS service quota "Containers per task definition": 10; ECS answers
            // "ClientException: Too many containers." (aws/amazon-ecs-cli#184).
            self.err(
                "too-many-containers",
                root().key("containerDefinitions"),
                format!(
                    "Too many containers. This task definition has {} (a task definition holds \
                     at most 10).",
                    containers.len()
                ),
            );
        }

        let mut index_of: HashMap<&str, usize> = HashMap::new();
        for (i, c) in containers.iter().enumerate() {
            let p = cpath(i);
            // Ref: ecs.json `ContainerDefinition.name` ("Up to 255 letters (uppercase and
            // lowercase), numbers, underscores, and hyphens are allowed"); ECS's message for a
            // missing one is "Container.name should not be null or empty." Unique names: no ECS
            // text found; ECS keys dependsOn, links, volumesFrom and containerOverrides by
            // name, so two containers of one name cannot be told apart.
            match c.name.as_deref() {
                None | Some("") => self.err(
                    "container-name-required",
                    p.key("name"),
                    "Container.name should not be null or empty.",
                ),
                Some(n) if is_placeholder(n) => {
                    self.out.push(placeholder(&p.key("name"), n));
                    index_of.entry(n).or_insert(i);
                }
                Some(n) if !is_ecs_name(n) => self.err(
                    "container-name-format",
                    p.key("name"),
                    format!(
                        "Invalid container name '{n}': up to 255 letters (uppercase and \
                         lowercase), numbers, underscores, and hyphens are allowed."
                    ),
                ),
                Some(n) => {
                    if let Some(first) = index_of.get(n) {
                        self.err(
                            "container-name-unique",
                            p.key("name"),
                            format!(
                                "Container names must be unique within a task definition: '{n}' \
                                 is also the name of containerDefinitions[{first}]."
                            ),
                        );
                    } else {
                        index_of.insert(n, i);
                    }
                }
            }
        }

        let volume_names: HashSet<&str> = def
            .volumes
            .iter()
            .flatten()
            .filter_map(|v| v.name.as_deref())
            .collect();
        let accelerator_names: HashSet<&str> = def
            .inference_accelerators
            .iter()
            .flatten()
            .filter_map(|a| a.device_name.as_deref())
            .collect();
        let has_log_router = containers
            .iter()
            .any(|c| c.firelens_configuration.is_some());

        let mut cpu_sum: i64 = 0;
        let mut reserved_sum: i64 = 0;
        let mut reservation_sum: i64 = 0;
        let mut essential = 0;
        let mut ports_seen: HashMap<(i64, TransportProtocol), String> = HashMap::new();
        for (i, c) in containers.iter().enumerate() {
            let name = c.name_str();
            let p = cpath(i);
            if c.is_essential() {
                essential += 1;
            }

            // Image. Ref: ecs.json `ContainerDefinition.image`; ECS refuses a definition without
            // one (aws/aws-cli#5924, "RegisterTaskDefinition operation no longer accepts
            // task-definitions without an image"). A blank image (`" "`) names no image either: refused like an empty one, where
            // ECS would only fail at the pull.
            match c.image.as_deref().filter(|i| !i.trim().is_empty()) {
                None => self.err(
                    "image-required",
                    p.key("image"),
                    "Container.image should not be null or empty.",
                ),
                Some(img) if is_placeholder(img) => {
                    self.out.push(placeholder(&p.key("image"), img))
                }
                Some(img) => {
                    // Ref: ecs.json `ContainerDefinition.image`: up to 255 letters, numbers,
                    // `-_:./#`; for `repository@digest` the 255 limit applies before the `@`.
                    // Enforcement at register is not documented, so a warning.
                    let odd = img
                        .chars()
                        .any(|ch| !(ch.is_ascii_alphanumeric() || "-_:./#@".contains(ch)));
                    let named = img.split_once('@').map_or(img, |(name, _)| name);
                    if odd || named.len() > 255 {
                        self.warn(
                            "image-format",
                            p.key("image"),
                            format!(
                                "image '{img}' has characters ECS does not accept in an image \
                                 reference (or is longer than 255): is it a template placeholder?"
                            ),
                        );
                    }
                    // Ref: the ECS message users quote, "Fargate requires task definition to
                    // have execution role ARN to support ECR images." (developer guide, task
                    // execution IAM role: required for private ECR images on Fargate).
                    if fargate
                        && task_level
                        && is_private_ecr(img)
                        && blank(&def.execution_role_arn)
                    {
                        self.fargate_err(
                            "fargate-execution-role",
                            p.key("image"),
                            "Fargate requires task definition to have execution role ARN to \
                             support ECR images.",
                        );
                    }
                }
            }

            // CPU and memory. Ref: ecs.json `ContainerDefinition.cpu`, `.memory`,
            // `.memoryReservation`.
            if let Some(cpu) = c.cpu {
                if cpu < 0 {
                    // Ref: ecs.json `ContainerDefinition.cpu`: "you can use CPU values below 2
                    // … in your container definitions" (the agent passes them as 2 shares). No
                    // refusal of a negative value is documented, so a warning.
                    self.warn(
                        "container-cpu",
                        p.key("cpu"),
                        format!("'cpu' of container '{name}' is {cpu}: a value below 2 gives the container 2 CPU shares, the kernel's minimum."),
                    );
                } else {
                    cpu_sum = cpu_sum.saturating_add(cpu);
                    // Implied by the sum rule below; reported on the container that alone
                    // exceeds the task.
                    if let Some(t) = task_cpu
                        && cpu > i64::from(t.0)
                    {
                        self.err(
                            "container-cpu-exceeds-task",
                            p.key("cpu"),
                            format!("The 'cpu' setting for container '{name}' ({cpu}) is greater than for the task ({t})."),
                        );
                    }
                }
            }
            for (field, value) in [
                ("memory", c.memory),
                ("memoryReservation", c.memory_reservation),
            ] {
                let Some(m) = value else { continue };
                // Ref: aws/amazon-ecs-agent#876 (ECS requires a value > 0 for memory and
                // memoryReservation); the 6 MiB minimum is the ecs.json `memory` doc's advice
                // for Docker 20.10, a warning.
                if m <= 0 {
                    self.err(
                        "container-memory",
                        p.key(field),
                        format!("Invalid '{field}' setting for container '{name}': {m} is not a positive number of MiB."),
                    );
                    continue;
                }
                if m < 6 {
                    self.warn(
                        "container-memory-minimum",
                        p.key(field),
                        format!("'{field}' of container '{name}' is {m} MiB: Docker 20.10 and later refuse less than 6 MiB."),
                    );
                }
                // Ref: ECS's "The 'memory' setting for container 'x' is greater than for the
                // task." (pulumi/pulumi-awsx#188).
                if let Some(t) = task_memory
                    && m as u64 > t.0
                {
                    self.err(
                        "container-memory-exceeds-task",
                        p.key(field),
                        format!("The '{field}' setting for container '{name}' ({m}) is greater than for the task ({t})."),
                    );
                }
            }
            // Ref: ecs.json `memory` ("memory must be greater than memoryReservation"); ECS
            // accepts equal values (awsdocs/amazon-ecs-developer-guide#242), so only less is
            // refused.
            if let (Some(m), Some(r)) = (c.memory, c.memory_reservation)
                && m > 0
                && r > 0
                && m < r
            {
                self.err(
                    "memory-reservation",
                    p.key("memoryReservation"),
                    format!(
                        "Invalid setting for container '{name}'. 'memory' ({m}) must be greater \
                         than or equal to 'memoryReservation' ({r})."
                    ),
                );
            }
            // Task memory that is set but invalid or a placeholder is reported on its own.
            // Ref: ecs.json `memoryReservation` ("If a task-level memory value is not
            // specified, you must specify a non-zero integer for one or both of memory or
            // memoryReservation"); ECS's words in sil-org/ecs-deploy#59.
            if task_level
                && def.memory.is_none()
                && c.memory.is_none()
                && c.memory_reservation.is_none()
                && !self.was_dropped(&p.key("memory"))
                && !self.was_dropped(&p.key("memoryReservation"))
            {
                self.err(
                    "container-memory-required",
                    p.key("memory"),
                    format!(
                        "Invalid setting for container '{name}'. At least one of 'memory' or \
                         'memoryReservation' must be specified (or set the task-level memory)."
                    ),
                );
            }
            reservation_sum =
                reservation_sum.saturating_add(c.memory_reservation.unwrap_or(0).max(0));
            reserved_sum =
                reserved_sum.saturating_add(c.memory_reservation.or(c.memory).unwrap_or(0).max(0));

            self.ports(c, &p, mode, &mut ports_seen);
            self.links(c, &p, mode, &index_of);
            // Ref: ecs.json `ContainerDefinition.hostname` ("not supported if you're using the
            // awsvpc network mode") and `.extraHosts` (likewise).
            if let Some(h) = c.hostname.as_deref().filter(|h| !h.is_empty()) {
                if fargate {
                    self.fargate_unsupported(p.key("hostname"), "hostname");
                } else if mode == NetworkMode::Awsvpc {
                    self.err(
                        "awsvpc-hostname",
                        p.key("hostname"),
                        format!("hostname is not supported on container when networkMode=awsvpc (hostname '{h}')."),
                    );
                }
            }
            if let Some(hosts) = &c.extra_hosts {
                // Ref: ecs.json `HostEntry` requires hostname and ipAddress.
                for (k, h) in hosts.iter().enumerate() {
                    if blank(&h.hostname) {
                        self.required(
                            p.key("extraHosts").index(k).key("hostname"),
                            "extraHosts hostname",
                        );
                    }
                    if blank(&h.ip_address) {
                        self.required(
                            p.key("extraHosts").index(k).key("ipAddress"),
                            "extraHosts ipAddress",
                        );
                    }
                }
                if !hosts.is_empty() {
                    if fargate {
                        self.fargate_unsupported(p.key("extraHosts"), "extraHosts");
                    } else if mode == NetworkMode::Awsvpc {
                        self.err(
                            "awsvpc-extra-hosts",
                            p.key("extraHosts"),
                            "extraHosts is not supported when networkMode=awsvpc.",
                        );
                    }
                }
            }

            self.depends_on(c, &p, containers, &index_of);
            self.timeouts(c, &p);
            self.health_check(c, &p);
            self.mounts(c, &p, task_level, &volume_names, &index_of);
            self.secrets_and_env(c, &p);
            self.logging(def, c, &p, task_level, has_log_router);
            self.linux_parameters(c, &p);
            self.misc_container(c, &p, mode, def.ipc_mode, &accelerator_names);
        }

        // Ref: ecs.json `ContainerDefinition.essential`: "All tasks must have at least one
        // essential container."
        if !containers.is_empty() && essential == 0 {
            self.err(
                "essential-required",
                root().key("containerDefinitions"),
                "A task definition must have at least one essential container (essential \
                 defaults to true when omitted).",
            );
        }
        // Ref: ECS refuses it at register: "ClientException: The sum of all container 'cpu'
        // values cannot be greater than the value of the task 'cpu'."
        // (cloudnativedaysjp/dreamkast-infra#4726, 2025).
        if let Some(t) = task_cpu
            && cpu_sum > i64::from(t.0)
        {
            self.err(
                "container-cpu-sum",
                root().key("containerDefinitions"),
                format!(
                    "The sum of all container 'cpu' values cannot be greater than the value of \
                     the task 'cpu' ({cpu_sum} > {t})."
                ),
            );
        }
        // Ref: ECS refuses it at register: "ClientException: The sum of all container
        // 'memoryReservation' values cannot be greater than the value of the task 'memory'."
        // (cloudnativedaysjp/dreamkast-infra#4766, 2025). Counting `memory` for containers
        // without a reservation is ECS's placement arithmetic (ecs.json `memory`), not a
        // documented refusal: a warning.
        if let Some(t) = task_memory
            && reservation_sum as u64 > t.0
        {
            self.err(
                "container-memory-sum",
                root().key("containerDefinitions"),
                format!(
                    "The sum of all container 'memoryReservation' values cannot be greater than \
                     the value of the task 'memory' ({reservation_sum} > {t})."
                ),
            );
        } else if let Some(t) = task_memory
            && reserved_sum as u64 > t.0
        {
            self.warn(
                "container-memory-reserved",
                root().key("containerDefinitions"),
                format!("The containers reserve {reserved_sum} MiB in total (memoryReservation, else memory), more than the task's {t} MiB."),
            );
        }
        self.firelens(containers);
        self.cycles(containers, &index_of, Graph::DependsOn);
        self.cycles(containers, &index_of, Graph::Links);
        if task_level {
            self.volumes(def);
            self.proxy(def, &index_of);
        }
    }

    /// Task-level members; returns the task cpu and memory when they parse.
    fn task_level(
        &mut self,
        def: &TaskDefinition,
        declared_mode: Option<NetworkMode>,
    ) -> (Option<CpuUnits>, Option<MemoryMib>) {
        // Ref: ecs.json `RegisterTaskDefinitionRequest.family` (required; "Up to 255 letters
        // (uppercase and lowercase), numbers, underscores, and hyphens are allowed").
        match def.family.as_deref() {
            None | Some("") => self.err(
                "family-required",
                root().key("family"),
                "family is required.",
            ),
            Some(f) if is_placeholder(f) => self.out.push(placeholder(&root().key("family"), f)),
            Some(f) if !is_ecs_name(f) => self.err(
                "family-format",
                root().key("family"),
                format!(
                    "Invalid family '{f}': up to 255 letters (uppercase and lowercase), numbers, \
                     underscores, and hyphens are allowed."
                ),
            ),
            Some(_) => {}
        }

        // Ref: ecs.json `RegisterTaskDefinitionRequest.cpu`: "Supported values are between 128
        // CPU units (0.125 vCPUs) and 196608 CPU units (192 vCPUs)"; ECS's message "Invalid
        // 'cpu' setting for task." (developer guide, task-cpu-memory-error.html). Memory: the
        // same page; a memory that does not parse or is 0 is "Invalid 'memory' setting".
        let unchecked = |raw: &SizeValue| is_placeholder(raw.as_str());
        for (field, v) in [("cpu", &def.cpu), ("memory", &def.memory)] {
            if let Some(raw) = v.as_ref().filter(|r| unchecked(r)) {
                self.out.push(placeholder(&root().key(field), raw.as_str()));
            }
        }
        let cpu = def.cpu.as_ref().filter(|r| !unchecked(r)).and_then(|raw| match CpuUnits::parse(raw.as_str()) {
            Ok(u) if (128..=196_608).contains(&u.0) => Some(u),
            Ok(u) => {
                self.err(
                    "task-cpu",
                    root().key("cpu"),
                    format!("Invalid 'cpu' setting for task: {u} CPU units is outside 128 to 196608 (0.125 to 192 vCPU)."),
                );
                None
            }
            Err(e) => {
                self.err("task-cpu", root().key("cpu"), format!("Invalid 'cpu' setting for task: {e}."));
                None
            }
        });
        let memory = def
            .memory
            .as_ref()
            .filter(|r| !unchecked(r))
            .and_then(|raw| match MemoryMib::parse(raw.as_str()) {
                Ok(m) if m.0 > 0 => Some(m),
                Ok(_) => {
                    self.err(
                        "task-memory",
                        root().key("memory"),
                        "Invalid 'memory' setting for task: 0 MiB.",
                    );
                    None
                }
                Err(e) => {
                    self.err(
                        "task-memory",
                        root().key("memory"),
                        format!("Invalid 'memory' setting for task: {e}."),
                    );
                    None
                }
            });

        // Ref: ecs.json `RegisterTaskDefinitionRequest.networkMode` ("If you're using
        // Fargate, the awsvpc network mode is required"), `.cpu`/`.memory` ("This field is
        // required for Fargate" and the table of pairs, also task-cpu-memory-error.html with
        // ECS's "No Fargate configuration exists for given values"; Windows needs 1 vCPU),
        // `.ipcMode` (not supported on Fargate), `.pidMode` ("On Fargate for Linux
        // containers, the only valid value is task"), placementConstraints (developer guide,
        // Fargate differences).
        if self.fargate.is_some() {
            if declared_mode != Some(NetworkMode::Awsvpc) {
                let found =
                    declared_mode.map_or("absent, so bridge".to_string(), |m| m.to_string());
                self.fargate_err(
                    "fargate-network-mode",
                    root().key("networkMode"),
                    format!(
                        "Fargate only supports network mode 'awsvpc' (networkMode is {found})."
                    ),
                );
            }
            if def.cpu.is_none() {
                self.fargate_err(
                    "fargate-task-size",
                    root().key("cpu"),
                    "Fargate requires that 'cpu' be defined at the task level.",
                );
            }
            if def.memory.is_none() {
                self.fargate_err(
                    "fargate-task-size",
                    root().key("memory"),
                    "Fargate requires that 'memory' be defined at the task level.",
                );
            }
            if let (Some(c), Some(m)) = (cpu, memory)
                && !fargate_pair_is_valid(c, m)
            {
                let hint = match fargate_memory_choices(c) {
                    Some(choices) => format!("with {c} CPU units Fargate offers {choices} MiB"),
                    None => format!("Fargate CPU sizes are {FARGATE_CPU_VALUES}"),
                };
                self.fargate_err(
                    "fargate-task-size",
                    root().key("memory"),
                    format!(
                        "No Fargate configuration exists for given values: {c} CPU, {m} memory. \
                         See the Amazon ECS documentation for the valid values ({hint})."
                    ),
                );
            }
            let windows = def
                .runtime_platform
                .as_ref()
                .and_then(|r| r.operating_system_family)
                .is_some_and(OsFamily::is_windows);
            if windows && cpu.is_some_and(|c| c.0 < 1024) {
                self.fargate_err(
                    "fargate-task-size",
                    root().key("cpu"),
                    "The CPU units cannot be less than 1 vCPU when you use Windows containers on Fargate.",
                );
            }
            if def.ipc_mode.is_some() {
                self.fargate_unsupported(root().key("ipcMode"), "ipcMode");
            }
            if def.pid_mode == Some(PidMode::Host) {
                self.fargate_err(
                    "fargate-pid-mode",
                    root().key("pidMode"),
                    "On Fargate the only valid pidMode is 'task'.",
                );
            }
            if non_empty(&def.placement_constraints) {
                self.fargate_unsupported(
                    root().key("placementConstraints"),
                    "placementConstraints",
                );
            }
        }

        // Ref: ecs.json `TaskDefinitionPlacementConstraint` has no required member and
        // `type` has one value (memberOf), so a constraint without one means nothing: a
        // warning, not a refusal.
        for (k, pc) in def.placement_constraints.iter().flatten().enumerate() {
            if pc.kind.is_none() {
                self.warn(
                    "placement-constraint-type",
                    root().key("placementConstraints").index(k).key("type"),
                    "placementConstraints entry without a type (memberOf): it constrains nothing.",
                );
            }
        }
        // Ref: ecs.json `InferenceAccelerator` requires deviceName and deviceType.
        for (k, a) in def.inference_accelerators.iter().flatten().enumerate() {
            let p = root().key("inferenceAccelerators").index(k);
            if blank(&a.device_name) {
                self.required(p.key("deviceName"), "inferenceAccelerators deviceName");
            }
            if blank(&a.device_type) {
                self.required(p.key("deviceType"), "inferenceAccelerators deviceType");
            }
        }
        if let Some(es) = &def.ephemeral_storage {
            // Ref: ecs.json `EphemeralStorage.sizeInGiB`: 20 to 200 GiB.
            match es.size_in_gib {
                None => self.required(
                    root().key("ephemeralStorage").key("sizeInGiB"),
                    "ephemeralStorage sizeInGiB",
                ),
                Some(s) => self.range(
                    root().key("ephemeralStorage").key("sizeInGiB"),
                    s,
                    20,
                    200,
                    "ephemeralStorage sizeInGiB",
                ),
            }
        }
        self.tags(def.tags.as_deref().unwrap_or(&[]));
        (cpu, memory)
    }

    fn tags(&mut self, tags: &[Tag]) {
        // Ref: ecs.json `Tags` (at most 50), `TagKey` (1-128), `TagValue` (0-256); keys unique;
        // the aws: prefix is reserved.
        if tags.len() > 50 {
            self.err(
                "tags",
                root().key("tags"),
                format!("Too many tags: {} (at most 50).", tags.len()),
            );
        }
        let mut seen = HashSet::new();
        for (k, t) in tags.iter().enumerate() {
            let p = root().key("tags").index(k);
            match t.key.as_deref() {
                None | Some("") => self.err(
                    "tags",
                    p.key("key"),
                    "Tag key is required (1 to 128 characters).",
                ),
                Some(key) => {
                    if key.chars().count() > 128 {
                        self.err(
                            "tags",
                            p.key("key"),
                            "Tag key is longer than 128 characters.",
                        );
                    }
                    if key.to_ascii_lowercase().starts_with("aws:") {
                        self.err(
                            "tags",
                            p.key("key"),
                            format!("Tag key '{key}' uses the reserved prefix aws:."),
                        );
                    }
                    if !seen.insert(key) {
                        self.err("tags", p.key("key"), format!("Duplicate tag key '{key}'."));
                    }
                }
            }
            if t.value.as_deref().is_some_and(|v| v.chars().count() > 256) {
                self.err(
                    "tags",
                    p.key("value"),
                    "Tag value is longer than 256 characters.",
                );
            }
        }
    }

    fn ports(
        &mut self,
        c: &ContainerDefinition,
        p: &JsonPath,
        mode: NetworkMode,
        seen: &mut HashMap<(i64, TransportProtocol), String>,
    ) {
        let name = c.name_str();
        let Some(mappings) = &c.port_mappings else {
            return;
        };
        // Ref: ecs.json `ContainerDefinition.portMappings`: "If the network mode of a task
        // definition is set to none, then you can't specify port mappings. If the network
        // mode of a task definition is set to host, then host ports must either be undefined
        // or they must match the container port"; `PortMapping.hostPort` says the same of
        // awsvpc, in ECS's words "When networkMode=awsvpc, the host ports and container ports
        // in port mappings must match."
        if mode == NetworkMode::None && !mappings.is_empty() {
            self.err(
                "network-mode-none-ports",
                p.key("portMappings"),
                "Port mappings are not allowed when networkMode=none.",
            );
            return;
        }
        let mut local_names: HashSet<&str> = HashSet::new();
        let ranges = mappings
            .iter()
            .filter(|m| m.container_port_range.is_some())
            .count();
        if ranges > 100 {
            self.err(
                "port-range",
                p.key("portMappings"),
                format!("{ranges} port ranges in container '{name}': ECS takes at most 100 per container."),
            );
        }
        for (j, m) in mappings.iter().enumerate() {
            let mp = p.key("portMappings").index(j);
            let protocol = m.protocol.unwrap_or(TransportProtocol::Tcp);
            if let Some(range) = m.container_port_range.as_deref() {
                // Ref: ecs.json `PortMapping.containerPortRange`: bridge or awsvpc only, 1 to
                // 65535, first < last, no hostPortRange/hostPort, at most 100 per container.
                let parsed = range.split_once('-').and_then(|(a, b)| {
                    Some((a.trim().parse::<i64>().ok()?, b.trim().parse::<i64>().ok()?))
                });
                match parsed {
                    Some((a, b))
                        if (1..=65535).contains(&a) && (1..=65535).contains(&b) && a < b => {}
                    _ => self.err(
                        "port-range",
                        mp.key("containerPortRange"),
                        format!(
                            "Invalid containerPortRange '{range}' for container '{name}': use \
                             FIRST-LAST with 1 <= FIRST < LAST <= 65535."
                        ),
                    ),
                }
                if m.container_port.is_some() {
                    self.err(
                        "port-range",
                        mp.key("containerPort"),
                        "Specify either containerPort or containerPortRange, not both.",
                    );
                }
                if m.host_port.is_some_and(|h| h != 0) {
                    self.err(
                        "port-range",
                        mp.key("hostPort"),
                        "Leave hostPort empty when containerPortRange is set.",
                    );
                }
                if !matches!(mode, NetworkMode::Bridge | NetworkMode::Awsvpc) {
                    self.err(
                        "port-range",
                        mp.key("containerPortRange"),
                        format!(
                            "containerPortRange needs networkMode bridge or awsvpc, not {mode}."
                        ),
                    );
                }
                continue;
            }
            // Ref: ecs.json `PortMapping.containerPort` (required unless a containerPortRange;
            // 1 to 65535) and `.hostPort` (0 to 65535; 0 or absent picks one).
            let Some(cp) = m.container_port else {
                self.err(
                    "port-range",
                    mp.key("containerPort"),
                    format!("Invalid 'containerPort' setting for container '{name}': containerPort is required."),
                );
                continue;
            };
            if !(1..=65535).contains(&cp) {
                self.err(
                    "port-range",
                    mp.key("containerPort"),
                    format!("Invalid 'containerPort' setting for container '{name}': {cp} is outside 1 to 65535."),
                );
                continue;
            }
            if let Some(hp) = m.host_port {
                if !(0..=65535).contains(&hp) {
                    self.err(
                        "port-range",
                        mp.key("hostPort"),
                        format!("Invalid 'hostPort' setting for container '{name}': {hp} is outside 1 to 65535."),
                    );
                } else if hp != 0 && hp != cp {
                    match mode {
                        NetworkMode::Awsvpc => self.err(
                            "awsvpc-host-port",
                            mp.key("hostPort"),
                            format!(
                                "When networkMode=awsvpc, the host ports and container ports in \
                                 port mappings must match (hostPort {hp}, containerPort {cp})."
                            ),
                        ),
                        NetworkMode::Host => self.err(
                            "host-network-host-port",
                            mp.key("hostPort"),
                            format!(
                                "When networkMode=host, the host ports and container ports in port \
                                 mappings must match (hostPort {hp}, containerPort {cp})."
                            ),
                        ),
                        _ => {}
                    }
                }
            }
            // Containers of an awsvpc or host task share one network stack: one port, one owner.
            // ECS documents "A port can only be included in one port mapping per container"
            // (`containerPortRange`), not a refusal across containers: a warning.
            if matches!(mode, NetworkMode::Awsvpc | NetworkMode::Host) {
                let here = format!("{name} ({mp})");
                if let Some(prev) = seen.insert((cp, protocol), here) {
                    self.warn(
                        "duplicate-port",
                        mp.key("containerPort"),
                        format!("Port {cp}/{protocol} is also mapped by {prev}: containers of a {mode} task share one network stack."),
                    );
                }
            }
            if let Some(pn) = m.name.as_deref() {
                // Ref: ecs.json `PortMapping.name` (Service Connect): lowercase letters,
                // numbers, underscores and hyphens, at most 64, not starting with a hyphen.
                let ok = !pn.is_empty()
                    && pn.len() <= 64
                    && !pn.starts_with('-')
                    && pn.chars().all(|ch| {
                        ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_' || ch == '-'
                    });
                if !ok {
                    self.err(
                        "port-mapping-name",
                        mp.key("name"),
                        format!(
                            "Invalid port mapping name '{pn}': up to 64 lowercase letters, \
                             numbers, underscores and hyphens, not starting with a hyphen."
                        ),
                    );
                } else if !local_names.insert(pn) {
                    self.warn(
                        "port-mapping-name",
                        mp.key("name"),
                        format!("Port mapping name '{pn}' is used twice."),
                    );
                }
            }
        }
    }

    fn links(
        &mut self,
        c: &ContainerDefinition,
        p: &JsonPath,
        mode: NetworkMode,
        index_of: &HashMap<&str, usize>,
    ) {
        let Some(links) = &c.links else { return };
        if links.is_empty() {
            return;
        }
        // Ref: ecs.json `ContainerDefinition.links`: "only supported if the network mode of a
        // task definition is bridge".
        if self.fargate.is_some() {
            self.fargate_unsupported(p.key("links"), "links");
        } else if mode != NetworkMode::Bridge {
            self.err(
                "links-network-mode",
                p.key("links"),
                format!(
                    "Links are only supported when networkMode=bridge (this task uses {mode})."
                ),
            );
        }
        // A link to itself or to no container: no ECS text found; Docker refuses both at
        // container create ("could not get container for …"), so the task could never
        // start — kept as errors.
        for (k, l) in links.iter().enumerate() {
            let target = l.split(':').next().unwrap_or("");
            if target == c.name_str() {
                self.err(
                    "link-target",
                    p.key("links").index(k),
                    format!("Container '{target}' cannot link to itself."),
                );
            } else if !index_of.contains_key(target) {
                self.err(
                    "link-target",
                    p.key("links").index(k),
                    format!("Cannot link to container '{target}' because it does not exist."),
                );
            }
        }
    }

    fn depends_on(
        &mut self,
        c: &ContainerDefinition,
        p: &JsonPath,
        containers: &[ContainerDefinition],
        index_of: &HashMap<&str, usize>,
    ) {
        // Ref: ecs.json `ContainerDependency` (containerName and condition required;
        // COMPLETE and SUCCESS "can't be set on an essential container", in ECS's words "A
        // dependency container with SUCCESS or COMPLETE condition cannot be an essential
        // container"; HEALTHY "requires that the dependent container has health checks
        // configured" — not known to be refused at register, a warning). A target that is not
        // a container of the task: the agent's graph could never resolve it (amazon-ecs-agent
        // agent/engine/dependencygraph/graph.go, "dependency will never start"), kept as an
        // error.
        for (k, d) in c.depends_on.iter().flatten().enumerate() {
            let dp = p.key("dependsOn").index(k);
            let Some(target) = d.container_name.as_deref().filter(|t| !t.is_empty()) else {
                self.required(dp.key("containerName"), "dependsOn containerName");
                continue;
            };
            let Some(cond) = d.condition else {
                self.err(
                    "depends-on-condition",
                    dp.key("condition"),
                    "dependsOn condition is required: START, COMPLETE, SUCCESS or HEALTHY.",
                );
                continue;
            };
            if target == c.name_str() {
                self.err(
                    "depends-on-target",
                    dp.key("containerName"),
                    format!("Container '{target}' cannot depend on itself."),
                );
                continue;
            }
            let Some(&ti) = index_of.get(target) else {
                self.err(
                    "depends-on-target",
                    dp.key("containerName"),
                    format!("Cannot depend on container '{target}' because it does not exist."),
                );
                continue;
            };
            let t = &containers[ti];
            match cond {
                ContainerCondition::Complete | ContainerCondition::Success if t.is_essential() => self.err(
                    "depends-on-essential",
                    dp.key("condition"),
                    format!(
                        "A dependency container with SUCCESS or COMPLETE condition cannot be an \
                         essential container ('{target}' is essential; set \"essential\": false on it)."
                    ),
                ),
                ContainerCondition::Healthy if t.health_check.is_none() => self.warn(
                    "depends-on-healthy",
                    dp.key("condition"),
                    format!("Container '{target}' has no healthCheck, so the HEALTHY condition on it can never be met."),
                ),
                _ => {}
            }
        }
    }

    fn timeouts(&mut self, c: &ContainerDefinition, p: &JsonPath) {
        // Ref: ecs.json `startTimeout` / `stopTimeout`: "The valid values for Fargate are
        // 2-120 seconds." EC2 documents no bound, so outside Fargate it is a warning.
        for (field, v) in [
            ("startTimeout", c.start_timeout),
            ("stopTimeout", c.stop_timeout),
        ] {
            let Some(v) = v else { continue };
            if (2..=120).contains(&v) {
                continue;
            }
            let msg = format!("Invalid {field} {v}: must be between 2 and 120 seconds.");
            if self.fargate.is_some() {
                self.fargate_err("container-timeout", p.key(field), msg);
            } else if v < 0 {
                self.err("container-timeout", p.key(field), msg);
            } else {
                self.warn(
                    "container-timeout",
                    p.key(field),
                    format!("{field} {v} is outside 2 to 120 seconds, the range Fargate accepts."),
                );
            }
        }
    }

    fn health_check(&mut self, c: &ContainerDefinition, p: &JsonPath) {
        let Some(hc) = &c.health_check else { return };
        let hp = p.key("healthCheck");
        // Ref: ecs.json `HealthCheck` (command required; interval 5-300, timeout 2-60,
        // retries 1-10, startPeriod 0-300).
        match hc.command.as_deref() {
            None | Some([]) => self.err(
                "health-check-command",
                hp.key("command"),
                "healthCheck.command is required.",
            ),
            Some([first, rest @ ..]) => {
                if first != "CMD" && first != "CMD-SHELL" {
                    // ECS registers such a command and Fargate runs the whole list as an
                    // exec-form command, which is what ADOT's scratch images rely on
                    // (`["/healthcheck"]`). Ref: aws-observability/aws-otel-community#1320,
                    // aws/aws-cdk#34389.
                    self.warn(
                        "health-check-exec-form",
                        hp.key("command").index(0),
                        format!(
                            "healthCheck.command starts with '{first}', not CMD or CMD-SHELL: ECS \
                             accepts it and runs the whole list as one command (exec form), as \
                             this host does; write [\"CMD\", \"{first}\", …] to say so."
                        ),
                    );
                } else if rest.is_empty() {
                    // Not known to be refused at register; Docker's health check fails on
                    // it at run time, so a warning.
                    self.warn(
                        "health-check-command",
                        hp.key("command"),
                        format!("healthCheck.command has nothing to run after {first}: the check will fail every time."),
                    );
                }
            }
        }
        let bounds = [
            ("interval", hc.interval, 5, 300),
            ("timeout", hc.timeout, 2, 60),
            ("retries", hc.retries, 1, 10),
            ("startPeriod", hc.start_period, 0, 300),
        ];
        for (field, v, lo, hi) in bounds {
            if let Some(v) = v
                && !(lo..=hi).contains(&v)
            {
                self.err(
                    "health-check-range",
                    hp.key(field),
                    format!("Invalid healthCheck {field} {v}: must be between {lo} and {hi}."),
                );
            }
        }
    }

    fn mounts(
        &mut self,
        c: &ContainerDefinition,
        p: &JsonPath,
        task_level: bool,
        volume_names: &HashSet<&str>,
        index_of: &HashMap<&str, usize>,
    ) {
        let name = c.name_str();
        // Ref: ecs.json `MountPoint.sourceVolume` ("Must be a volume name referenced in the
        // name parameter of task definition volume"); ECS answers a missing or unknown one
        // with "ClientException: Unknown volume 'null'." / "Unknown volume 'x'."
        // (blinkist/terraform-aws-airship-ecs-service#46). containerPath is not required by
        // the model and no refusal is documented: a warning (Docker fails the mount).
        for (k, m) in c.mount_points.iter().flatten().enumerate() {
            let mp = p.key("mountPoints").index(k);
            match m.source_volume.as_deref() {
                None | Some("") => self.err(
                    "mount-point-volume",
                    mp.key("sourceVolume"),
                    format!("Unknown volume 'null': container '{name}' has a mountPoint without a sourceVolume."),
                ),
                Some(v) if task_level && !volume_names.contains(v) => self.err(
                    "mount-point-volume",
                    mp.key("sourceVolume"),
                    format!(
                        "Unknown volume '{v}': container '{name}' mounts a volume that is not \
                         defined in the task definition's volumes."
                    ),
                ),
                Some(_) => {}
            }
            if blank(&m.container_path) {
                self.warn(
                    "mount-point-path",
                    mp.key("containerPath"),
                    format!("Container '{name}' has a mountPoint without a containerPath: the container will fail to start."),
                );
            }
        }
        // Ref: ecs.json `VolumeFrom.sourceContainer` ("The name of another container within
        // the same task definition"); no ECS text found for a refusal, but Docker refuses
        // `--volumes-from` of a container that does not exist at create, so the task could
        // never start — kept as errors.
        for (k, v) in c.volumes_from.iter().flatten().enumerate() {
            let vp = p.key("volumesFrom").index(k).key("sourceContainer");
            match v.source_container.as_deref() {
                None | Some("") => self.err(
                    "volumes-from-container",
                    vp,
                    "volumesFrom without a sourceContainer names no container.",
                ),
                Some(s) if s == name => self.err(
                    "volumes-from-container",
                    vp,
                    format!("Container '{s}' cannot take volumes from itself."),
                ),
                Some(s) if !index_of.contains_key(s) => self.err(
                    "volumes-from-container",
                    vp,
                    format!("Cannot take volumes from container '{s}' because it does not exist."),
                ),
                Some(_) => {}
            }
        }
    }

    fn secrets_and_env(&mut self, c: &ContainerDefinition, p: &JsonPath) {
        // Ref: ecs.json `Secret` requires name and valueFrom; `EnvironmentFile` requires type
        // and value; `RepositoryCredentials` requires credentialsParameter. Environment
        // names: unnamed or repeated ones are Docker's business, not refused by ECS (a
        // warning); the `.env` extension is documented ("must have a .env file extension",
        // developer guide, use-environment-file.html) but its enforcement at register is not,
        // so a warning.
        for (k, s) in c.secrets.iter().flatten().enumerate() {
            let sp = p.key("secrets").index(k);
            if blank(&s.name) {
                self.required(sp.key("name"), "secrets name");
            }
            if blank(&s.value_from) {
                self.required(sp.key("valueFrom"), "secrets valueFrom");
            }
        }
        let mut env_names = HashSet::new();
        for (k, e) in c.environment.iter().flatten().enumerate() {
            match e.name.as_deref() {
                None | Some("") => self.warn(
                    "environment-name",
                    p.key("environment").index(k).key("name"),
                    "Environment variable without a name: it is ignored.",
                ),
                Some(n) => {
                    if !env_names.insert(n) {
                        self.warn(
                            "environment-name",
                            p.key("environment").index(k).key("name"),
                            format!("Environment variable '{n}' is set twice; the last one wins."),
                        );
                    }
                }
            }
        }
        // Ref: ecs.json `ContainerDefinition.environmentFiles`: "You can specify up to ten
        // environment files."
        let files = c.environment_files.as_deref().unwrap_or_default();
        if files.len() > 10 {
            self.err(
                "environment-file-count",
                p.key("environmentFiles"),
                format!("{} environment files; ECS takes at most 10.", files.len()),
            );
        }
        for (k, f) in c.environment_files.iter().flatten().enumerate() {
            let fp = p.key("environmentFiles").index(k);
            if f.kind.is_none() {
                self.required(fp.key("type"), "environmentFiles type");
            }
            match f.value.as_deref() {
                None | Some("") => self.required(fp.key("value"), "environmentFiles value"),
                Some(v) if !v.ends_with(".env") => self.warn(
                    "environment-file",
                    fp.key("value"),
                    format!(
                        "Environment file '{v}' does not have the .env extension ECS requires."
                    ),
                ),
                Some(_) => {}
            }
        }
        if let Some(rc) = &c.repository_credentials
            && blank(&rc.credentials_parameter)
        {
            self.required(
                p.key("repositoryCredentials").key("credentialsParameter"),
                "repositoryCredentials credentialsParameter",
            );
        }
    }

    fn logging(
        &mut self,
        def: &TaskDefinition,
        c: &ContainerDefinition,
        p: &JsonPath,
        task_level: bool,
        has_router: bool,
    ) {
        // Ref: ecs.json `LogConfiguration` (logDriver required; `secretOptions` are
        // `Secret`s), `.logDriver` (Fargate: awslogs, splunk, awsfirelens), `.options`
        // ("awslogs-stream-prefix … is required when using the Fargate launch type" — not
        // known to be refused at register, so a warning), and `FirelensConfiguration`.
        if let Some(lc) = &c.log_configuration {
            let lp = p.key("logConfiguration");
            for (k, s) in lc.secret_options.iter().flatten().enumerate() {
                if blank(&s.name) {
                    self.required(
                        lp.key("secretOptions").index(k).key("name"),
                        "secretOptions name",
                    );
                }
                if blank(&s.value_from) {
                    self.required(
                        lp.key("secretOptions").index(k).key("valueFrom"),
                        "secretOptions valueFrom",
                    );
                }
            }
            match lc.log_driver {
                None => self.required(lp.key("logDriver"), "logConfiguration logDriver"),
                Some(driver) => {
                    // Ref: ecs.json `LogConfiguration.logDriver`: "For tasks on Fargate, the
                    // supported log drivers are awslogs, splunk, and awsfirelens."
                    if !matches!(
                        driver,
                        LogDriver::Awslogs | LogDriver::Splunk | LogDriver::Awsfirelens
                    ) {
                        self.fargate_err(
                            "fargate-log-driver",
                            lp.key("logDriver"),
                            format!("Fargate supports the awslogs, splunk and awsfirelens log drivers, not {driver}."),
                        );
                    }
                    if driver == LogDriver::Awslogs && self.fargate.is_some() {
                        if task_level && blank(&def.execution_role_arn) {
                            self.fargate_err(
                                "fargate-execution-role",
                                lp.key("logDriver"),
                                "Fargate requires task definition to have execution role ARN to \
                                 support log driver awslogs.",
                            );
                        }
                        let has_prefix = lc
                            .options
                            .as_ref()
                            .is_some_and(|o| o.contains_key("awslogs-stream-prefix"));
                        if !has_prefix {
                            self.warn(
                                "awslogs-stream-prefix",
                                lp.key("options"),
                                "awslogs-stream-prefix is required for the awslogs driver on Fargate.",
                            );
                        }
                    }
                    // Ref: RegisterTaskDefinition's ClientException, as users report it
                    // (turnerlabs/fargate#60, fabfuel/ecs-deploy#164, OctopusDeploy/Issues#7821).
                    if driver == LogDriver::Awsfirelens && !has_router {
                        self.err(
                            "firelens-router",
                            lp.key("logDriver"),
                            "When awsfirelens log driver is specified in log configuration, a \
                             firelens configuration object must be configured in one of the \
                             containers.",
                        );
                    }
                }
            }
        }
        if let Some(fc) = &c.firelens_configuration {
            let fp = p.key("firelensConfiguration");
            if fc.kind.is_none() {
                self.required(fp.key("type"), "firelensConfiguration type");
            }
            // The agent refuses these when it creates the task's FireLens resource (the
            // task fails to start); ECS is not known to refuse them at register: warnings.
            // Ref: amazon-ecs-agent agent/taskresource/firelens/firelens_unix.go parseOptions.
            let opt = |k: &str| fc.options.as_ref().and_then(|o| o.get(k));
            match opt("config-file-type").map(String::as_str) {
                Some(t) if t != "s3" && t != "file" => self.warn(
                    "firelens-config-file-type",
                    fp.key("options").key("config-file-type"),
                    format!(
                        "invalid value {t} is specified for option config-file-type (use file or \
                         s3): the task will fail to start."
                    ),
                ),
                Some(_) if opt("config-file-value").is_none_or(|v| v.is_empty()) => self.warn(
                    "firelens-config-file-value",
                    fp.key("options"),
                    "option config-file-type is specified but config-file-value is not \
                     specified: the task will fail to start.",
                ),
                _ => {}
            }
            // Ref: ecs.json `FirelensConfiguration.options`: "Tasks hosted on Fargate only
            // support the file configuration file type."
            if fc
                .options
                .as_ref()
                .and_then(|o| o.get("config-file-type"))
                .is_some_and(|t| t == "s3")
            {
                self.fargate_err(
                    "fargate-firelens-s3",
                    fp.key("options").key("config-file-type"),
                    "Tasks hosted on Fargate only support the file configuration file type for \
                     FireLens (not s3).",
                );
            }
        }
    }

    /// Task-wide FireLens rules: one log router, and a router only with a container that
    /// routes its logs through it.
    fn firelens(&mut self, containers: &[ContainerDefinition]) {
        let routers: Vec<usize> = containers
            .iter()
            .enumerate()
            .filter(|(_, c)| c.firelens_configuration.is_some())
            .map(|(i, _)| i)
            .collect();
        let Some(&first) = routers.first() else {
            return;
        };
        // Ref: RegisterTaskDefinition's ClientException (aws/amazon-cloudwatch-logs-for-fluent-bit#20,
        // cloudposse/terraform-aws-ecs-container-definition#47).
        let routed = containers.iter().any(|c| {
            c.log_configuration
                .as_ref()
                .is_some_and(|l| l.log_driver == Some(LogDriver::Awsfirelens))
        });
        if !routed {
            self.err(
                "firelens-unused",
                cpath(first).key("firelensConfiguration"),
                "When a firelensConfiguration object is specified, at least one container has \
                 to be configured with the awsfirelens log driver.",
            );
        }
        // The agent builds one FireLens resource per task, for the first router it finds
        // (agent/api/task/task.go `initializeFirelensResource`), and ECS documents a single
        // log router container; ECS's exact words for a second one are not known here.
        for &i in &routers[1..] {
            self.err(
                "firelens-single-router",
                cpath(i).key("firelensConfiguration"),
                format!(
                    "Only one container in a task can have a firelensConfiguration (the log \
                     router); {} has one already.",
                    containers[first].name_str()
                ),
            );
        }
    }

    fn linux_parameters(&mut self, c: &ContainerDefinition, p: &JsonPath) {
        let Some(lp) = &c.linux_parameters else {
            return;
        };
        let pp = p.key("linuxParameters");
        // Ref: ecs.json `KernelCapabilities.add` (the valid values; Fargate: SYS_PTRACE
        // only), `Device` (hostPath required), `LinuxParameters.sharedMemorySize`, `.tmpfs`
        // (`Tmpfs` requires containerPath and size), `.maxSwap` ("0 or any positive
        // integer"), `.swappiness` ("whole numbers between 0 and 100"); each "isn't supported"
        // on Fargate.
        if let Some(caps) = &lp.capabilities {
            for (field, list) in [("add", &caps.add), ("drop", &caps.drop)] {
                for (k, cap) in list.iter().flatten().enumerate() {
                    let bare = cap.strip_prefix("CAP_").unwrap_or(cap);
                    let cp = pp.key("capabilities").key(field).index(k);
                    if !CAPABILITIES.contains(&bare) {
                        self.err(
                            "capability-name",
                            cp,
                            format!("Unknown Linux capability '{cap}'."),
                        );
                    } else if field == "add" && bare != "SYS_PTRACE" {
                        // Ref: ecs.json `KernelCapabilities.add`: "Tasks launched on Fargate
                        // only support adding the SYS_PTRACE kernel capability."
                        self.fargate_err(
                            "fargate-capabilities",
                            cp,
                            format!("Tasks launched on Fargate only support adding the SYS_PTRACE kernel capability, not {cap}."),
                        );
                    }
                }
            }
        }
        for (k, d) in lp.devices.iter().flatten().enumerate() {
            if blank(&d.host_path) {
                self.required(
                    pp.key("devices").index(k).key("hostPath"),
                    "devices hostPath",
                );
            }
        }
        if non_empty(&lp.devices) {
            self.fargate_unsupported(pp.key("devices"), "devices");
        }
        if let Some(s) = lp.shared_memory_size {
            if s <= 0 {
                self.err(
                    "out-of-range",
                    pp.key("sharedMemorySize"),
                    format!("Invalid sharedMemorySize {s}: must be a positive number of MiB."),
                );
            }
            self.fargate_unsupported(pp.key("sharedMemorySize"), "sharedMemorySize");
        }
        for (k, t) in lp.tmpfs.iter().flatten().enumerate() {
            let tp = pp.key("tmpfs").index(k);
            if blank(&t.container_path) {
                self.required(tp.key("containerPath"), "tmpfs containerPath");
            }
            match t.size {
                None => self.required(tp.key("size"), "tmpfs size"),
                Some(s) if s <= 0 => self.err(
                    "out-of-range",
                    tp.key("size"),
                    format!("Invalid tmpfs size {s}: must be a positive number of MiB."),
                ),
                Some(_) => {}
            }
        }
        if non_empty(&lp.tmpfs) {
            self.fargate_unsupported(pp.key("tmpfs"), "tmpfs");
        }
        if let Some(s) = lp.max_swap {
            if s < 0 {
                self.err(
                    "out-of-range",
                    pp.key("maxSwap"),
                    format!("Invalid maxSwap {s}: must be 0 or more MiB."),
                );
            }
            self.fargate_unsupported(pp.key("maxSwap"), "maxSwap");
        }
        if let Some(s) = lp.swappiness {
            self.range(pp.key("swappiness"), s, 0, 100, "swappiness");
            self.fargate_unsupported(pp.key("swappiness"), "swappiness");
        }
    }

    fn misc_container(
        &mut self,
        c: &ContainerDefinition,
        p: &JsonPath,
        mode: NetworkMode,
        ipc: Option<IpcMode>,
        accelerators: &HashSet<&str>,
    ) {
        let name = c.name_str();
        // Ref: developer guide, Fargate differences: privileged, disableNetworking,
        // dnsServers, dnsSearchDomains and dockerSecurityOptions are not valid on Fargate
        // (ecs.json `privileged`, `dockerSecurityOptions` say so too).
        if c.privileged == Some(true) {
            self.fargate_unsupported(p.key("privileged"), "privileged");
        }
        if c.disable_networking == Some(true) {
            self.fargate_unsupported(p.key("disableNetworking"), "disableNetworking");
        }
        for (field, v) in [
            ("dnsServers", &c.dns_servers),
            ("dnsSearchDomains", &c.dns_search_domains),
            ("dockerSecurityOptions", &c.docker_security_options),
        ] {
            if non_empty(v) {
                self.fargate_unsupported(p.key(field), field);
            }
        }
        // What this host does not apply is the coverage table's (`not-applied`); what Docker
        // refuses at container create registers on ECS and fails the container later.
        for (k, o) in c.docker_security_options.iter().flatten().enumerate() {
            let o = super::security_options::SecurityOption::parse(o);
            if let super::security_options::SecurityOption::Invalid(_) = o
                && let Some(why) = o.not_applied()
            {
                self.warn(
                    "docker-security-options",
                    p.key("dockerSecurityOptions").index(k),
                    why,
                );
            }
        }
        // Ref: ecs.json `Ulimit` requires name, softLimit, hardLimit; soft above hard is
        // Docker's refusal at create, not ECS's at register (a warning).
        for (k, u) in c.ulimits.iter().flatten().enumerate() {
            let up = p.key("ulimits").index(k);
            if u.name.is_none() {
                self.required(up.key("name"), "ulimits name");
            }
            match (u.soft_limit, u.hard_limit) {
                (None, _) => self.required(up.key("softLimit"), "ulimits softLimit"),
                (_, None) => self.required(up.key("hardLimit"), "ulimits hardLimit"),
                (Some(s), Some(h)) if s > h => self.warn(
                    "ulimit",
                    up.key("softLimit"),
                    format!("ulimit softLimit {s} is above hardLimit {h}: the container will fail to start."),
                ),
                _ => {}
            }
        }
        for (k, sc) in c.system_controls.iter().flatten().enumerate() {
            // `SystemControl` has no required member in ecs.json; an entry without a
            // namespace sets nothing (a warning).
            let Some(ns) = sc.namespace.as_deref() else {
                self.warn(
                    "system-controls",
                    p.key("systemControls").index(k).key("namespace"),
                    "systemControls entry without a namespace: it sets nothing.",
                );
                continue;
            };
            // Ref: ecs.json `TaskDefinition.ipcMode` ("For tasks that use the host IPC mode,
            // IPC namespace related systemControls are not supported") and the developer
            // guide's systemControls notes for the host network mode.
            if ipc == Some(IpcMode::Host) && is_ipc_sysctl(ns) {
                self.err(
                    "system-controls",
                    p.key("systemControls").index(k).key("namespace"),
                    format!(
                        "IPC namespace systemControls ('{ns}') are not supported with ipcMode=host."
                    ),
                );
            }
            if mode == NetworkMode::Host && ns.starts_with("net.") {
                self.err(
                    "system-controls",
                    p.key("systemControls").index(k).key("namespace"),
                    format!("Network namespace systemControls ('{ns}') are not supported with networkMode=host."),
                );
            }
        }
        // Ref: ecs.json `ResourceRequirement` (type and value required; for GPU "the number
        // of physical GPUs"; for InferenceAccelerator "should match the deviceName for an
        // InferenceAccelerator specified in a task definition"); GPUs are not valid on
        // Fargate (developer guide, Fargate differences).
        for (k, r) in c.resource_requirements.iter().flatten().enumerate() {
            let rp = p.key("resourceRequirements").index(k);
            let value = r.value.as_deref().unwrap_or("");
            match r.kind {
                None => self.required(rp.key("type"), "resourceRequirements type"),
                Some(ResourceType::Gpu) => {
                    if !value.parse::<u32>().is_ok_and(|n| n > 0) {
                        self.err(
                            "resource-requirement",
                            rp.key("value"),
                            format!("Invalid GPU count '{value}' for container '{name}': must be a positive integer."),
                        );
                    }
                    self.fargate_unsupported(rp, "gpu");
                }
                Some(ResourceType::InferenceAccelerator) => {
                    if !accelerators.contains(value) {
                        self.err(
                            "resource-requirement",
                            rp.key("value"),
                            format!("InferenceAccelerator '{value}' is not a deviceName in the task's inferenceAccelerators."),
                        );
                    }
                }
            }
        }
        // Ref: ecs.json `ContainerDefinition.credentialSpecs`: "The maximum number of ARNs is 1."
        if let Some(specs) = &c.credential_specs
            && specs.len() > 1
        {
            self.err(
                "credential-specs",
                p.key("credentialSpecs"),
                "At most one credentialSpecs ARN is allowed.",
            );
        }
        // Ref: ecs.json `ContainerRestartPolicy` (enabled required; at most 50
        // ignoredExitCodes; restartAttemptPeriod 60-1800).
        if let Some(rp) = &c.restart_policy {
            let pp = p.key("restartPolicy");
            if rp.enabled.is_none() {
                self.required(pp.key("enabled"), "restartPolicy enabled");
            }
            if rp.ignored_exit_codes.as_ref().is_some_and(|v| v.len() > 50) {
                self.err(
                    "out-of-range",
                    pp.key("ignoredExitCodes"),
                    "At most 50 ignoredExitCodes are allowed.",
                );
            }
            if let Some(period) = rp.restart_attempt_period {
                self.range(
                    pp.key("restartAttemptPeriod"),
                    period,
                    60,
                    1800,
                    "restartAttemptPeriod",
                );
            }
        }
    }

    /// Ref: ecs.json `Volume.name` ("Up to 255 letters (uppercase and lowercase), numbers,
    /// underscores, and hyphens"; required "when a volume is using the
    /// efsVolumeConfiguration" or s3filesVolumeConfiguration, and for a volume configured at
    /// launch). Unique names: no ECS text found; mountPoints name volumes by name, so two of
    /// one name are ambiguous — kept as an error. One volume type per volume: the model's
    /// members are alternatives ("This parameter is specified when you use …"), no refusal
    /// text found — a warning.
    fn volumes(&mut self, def: &TaskDefinition) {
        let mut seen = HashSet::new();
        for (k, v) in def.volumes.iter().flatten().enumerate() {
            let vp = root().key("volumes").index(k);
            match v.name.as_deref() {
                None | Some("") => {
                    if v.efs_volume_configuration.is_some()
                        || v.s3files_volume_configuration.is_some()
                        || v.configured_at_launch == Some(true)
                    {
                        self.err("volume-name", vp.key("name"), "The volume name is required for EFS and S3 Files volumes and volumes configured at launch.");
                    } else {
                        self.warn("volume-name", vp.key("name"), "A volume without a name cannot be mounted by any container.");
                    }
                }
                Some(n) if is_placeholder(n) => self.out.push(placeholder(&vp.key("name"), n)),
                Some(n) if !is_ecs_name(n) => self.err(
                    "volume-name",
                    vp.key("name"),
                    format!("Invalid volume name '{n}': up to 255 letters, numbers, underscores, and hyphens are allowed."),
                ),
                Some(n) => {
                    if !seen.insert(n) {
                        self.err("volume-name", vp.key("name"), format!("Volume names must be unique: '{n}' is defined twice."));
                    }
                }
            }
            let kinds = [
                v.host.is_some(),
                v.docker_volume_configuration.is_some(),
                v.efs_volume_configuration.is_some(),
                v.fsx_windows_file_server_volume_configuration.is_some(),
                v.s3files_volume_configuration.is_some(),
            ];
            if kinds.iter().filter(|b| **b).count() > 1 {
                self.warn(
                    "volume-config",
                    vp.clone(),
                    "A volume takes one of host, dockerVolumeConfiguration, \
                     efsVolumeConfiguration, fsxWindowsFileServerVolumeConfiguration and \
                     s3filesVolumeConfiguration; with several, which one applies is undefined.",
                );
            }
            if let Some(h) = &v.host
                && !blank(&h.source_path)
            {
                // Ref: ecs.json `HostVolumeProperties.sourcePath`.
                self.fargate_err(
                    "fargate-host-source-path",
                    vp.key("host").key("sourcePath"),
                    "Fargate does not support host volumes with a sourcePath (use a bind mount \
                     without one, or EFS).",
                );
            }
            if v.docker_volume_configuration.is_some() {
                self.fargate_unsupported(
                    vp.key("dockerVolumeConfiguration"),
                    "dockerVolumeConfiguration",
                );
            }
            // Ref: ecs.json `FSxWindowsFileServerVolumeConfiguration` (fileSystemId,
            // rootDirectory, authorizationConfig required) and its authorizationConfig
            // (credentialsParameter, domain required); ecs.json `Volume.dockerVolumeConfiguration`
            // ("Docker volumes aren't supported by tasks run on Fargate").
            if let Some(fsx) = &v.fsx_windows_file_server_volume_configuration {
                let fp = vp.key("fsxWindowsFileServerVolumeConfiguration");
                if blank(&fsx.file_system_id) {
                    self.required(fp.key("fileSystemId"), "fileSystemId");
                }
                if blank(&fsx.root_directory) {
                    self.required(fp.key("rootDirectory"), "rootDirectory");
                }
                match &fsx.authorization_config {
                    None => self.required(fp.key("authorizationConfig"), "authorizationConfig"),
                    Some(a) => {
                        if blank(&a.credentials_parameter) {
                            self.required(
                                fp.key("authorizationConfig").key("credentialsParameter"),
                                "credentialsParameter",
                            );
                        }
                        if blank(&a.domain) {
                            self.required(fp.key("authorizationConfig").key("domain"), "domain");
                        }
                    }
                }
                self.fargate_unsupported(fp, "fsxWindowsFileServerVolumeConfiguration");
            }
            if let Some(efs) = &v.efs_volume_configuration {
                self.efs(efs, &vp.key("efsVolumeConfiguration"));
            }
            if let Some(s3) = &v.s3files_volume_configuration {
                self.s3files(def, s3, &vp.key("s3filesVolumeConfiguration"));
            }
        }
    }

    /// Ref: ecs.json `S3FilesVolumeConfiguration` (fileSystemArn required; with an
    /// accessPointArn, rootDirectory "must either be omitted or set to /"; "Your task
    /// definition must include a Task IAM Role" — when ECS checks it is not documented, so a
    /// warning).
    fn s3files(&mut self, def: &TaskDefinition, s3: &S3FilesVolumeConfiguration, sp: &JsonPath) {
        if blank(&s3.file_system_arn) {
            self.required(
                sp.key("fileSystemArn"),
                "s3filesVolumeConfiguration fileSystemArn",
            );
        }
        if !blank(&s3.access_point_arn) && s3.root_directory.as_deref().is_some_and(|r| r != "/") {
            self.err(
                "volume-config",
                sp.key("rootDirectory"),
                "With an S3 Files access point, rootDirectory must be omitted or \"/\".",
            );
        }
        if let Some(port) = s3.transit_encryption_port {
            self.range(
                sp.key("transitEncryptionPort"),
                port,
                1,
                65535,
                "transitEncryptionPort",
            );
        }
        if blank(&def.task_role_arn) {
            self.warn(
                "volume-config",
                sp.clone(),
                "An S3 Files volume needs a task IAM role (taskRoleArn) to attach the file system.",
            );
        }
    }

    fn efs(&mut self, efs: &EfsVolumeConfiguration, ep: &JsonPath) {
        // Ref: ecs.json `EFSVolumeConfiguration` (fileSystemId required),
        // `EFSAuthorizationConfig.iam` ("If it is turned on, transit encryption must be turned
        // on") and `.accessPointId` ("the root directory value … must either be omitted or
        // set to /"; "transit encryption must be on").
        if blank(&efs.file_system_id) {
            self.required(
                ep.key("fileSystemId"),
                "efsVolumeConfiguration fileSystemId",
            );
        }
        let auth = efs.authorization_config.as_ref();
        let iam = auth.and_then(|a| a.iam) == Some(EnabledDisabled::Enabled);
        let access_point = auth.is_some_and(|a| !blank(&a.access_point_id));
        if (iam || access_point) && efs.transit_encryption != Some(EnabledDisabled::Enabled) {
            self.err(
                "volume-config",
                ep.key("transitEncryption"),
                "transitEncryption must be ENABLED when EFS IAM authorization or an access point is used.",
            );
        }
        if access_point && efs.root_directory.as_deref().is_some_and(|r| r != "/") {
            self.err(
                "volume-config",
                ep.key("rootDirectory"),
                "With an EFS access point, rootDirectory must be omitted or \"/\".",
            );
        }
        if let Some(port) = efs.transit_encryption_port {
            self.range(
                ep.key("transitEncryptionPort"),
                port,
                1,
                65535,
                "transitEncryptionPort",
            );
        }
    }

    fn proxy(&mut self, def: &TaskDefinition, index_of: &HashMap<&str, usize>) {
        let Some(pc) = &def.proxy_configuration else {
            return;
        };
        // Ref: ecs.json `ProxyConfiguration.containerName` (required; "The name of the
        // container that will serve as the App Mesh proxy" — a container of the task).
        let pp = root().key("proxyConfiguration").key("containerName");
        match pc.container_name.as_deref() {
            None | Some("") => self.required(pp, "proxyConfiguration containerName"),
            Some(n) if !index_of.contains_key(n) => self.err(
                "proxy-container",
                pp,
                format!("proxyConfiguration names container '{n}', which does not exist."),
            ),
            Some(_) => {}
        }
    }

    /// Reports every cycle of `dependsOn` (or `links`) edges, with an iterative depth-first
    /// search so that no input can recurse deeply or loop forever.
    /// Ref: no ECS text found for a refusal at register; a dependsOn cycle can never start
    /// (the agent's graph waits for a dependency that "will never start",
    /// amazon-ecs-agent agent/engine/dependencygraph/graph.go) and Docker refuses circular
    /// links ("Cannot link to …, as it does not belong to …") — kept as errors.
    fn cycles(
        &mut self,
        containers: &[ContainerDefinition],
        index_of: &HashMap<&str, usize>,
        graph: Graph,
    ) {
        let n = containers.len();
        let edges: Vec<Vec<usize>> = containers
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let targets: Vec<&str> = match graph {
                    Graph::DependsOn => c
                        .depends_on
                        .iter()
                        .flatten()
                        .filter_map(|d| d.container_name.as_deref())
                        .collect(),
                    Graph::Links => c
                        .links
                        .iter()
                        .flatten()
                        .map(|l| l.split(':').next().unwrap_or(""))
                        .collect(),
                };
                targets
                    .into_iter()
                    .filter_map(|t| index_of.get(t).copied())
                    // Self-references are reported by their own rule.
                    .filter(|&t| t != i && index_of.get(c.name_str()) == Some(&i))
                    .collect()
            })
            .collect();
        #[derive(Clone, Copy, PartialEq)]
        enum Color {
            White,
            Gray,
            Black,
        }
        let mut color = vec![Color::White; n];
        for start in 0..n {
            if color[start] != Color::White {
                continue;
            }
            let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
            color[start] = Color::Gray;
            while let Some(top) = stack.last_mut() {
                let node = top.0;
                if let Some(&to) = edges[node].get(top.1) {
                    top.1 += 1;
                    match color[to] {
                        Color::White => {
                            color[to] = Color::Gray;
                            stack.push((to, 0));
                        }
                        Color::Gray => {
                            let from = stack.iter().position(|(v, _)| *v == to).unwrap_or(0);
                            let mut names: Vec<&str> = stack[from..]
                                .iter()
                                .map(|(v, _)| containers[*v].name_str())
                                .collect();
                            names.push(containers[to].name_str());
                            let chain = names.join(" -> ");
                            let (rule, field, what) = match graph {
                                Graph::DependsOn => {
                                    ("depends-on-cycle", "dependsOn", "Container dependencies")
                                }
                                Graph::Links => ("links-cycle", "links", "Container links"),
                            };
                            self.err(
                                rule,
                                cpath(to).key(field),
                                format!("{what} should not have a cycle: {chain}."),
                            );
                        }
                        Color::Black => {}
                    }
                } else {
                    color[node] = Color::Black;
                    stack.pop();
                }
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Graph {
    DependsOn,
    Links,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::taskdef::parse::parse_str;

    fn run(json: &str, launch_type: Option<LaunchType>) -> Report {
        validate(
            &parse_str(json),
            &Options {
                launch_type,
                template: false,
            },
        )
    }

    fn rules(r: &Report) -> Vec<&'static str> {
        r.errors().map(|f| f.rule).collect()
    }

    const FARGATE_OK: &str = r#"{"family":"f","networkMode":"awsvpc","requiresCompatibilities":["FARGATE"],
        "cpu":"256","memory":"512","containerDefinitions":[{"name":"a","image":"busybox"}]}"#;

    #[test]
    fn a_placeholder_image_is_refused_in_ecs_words() {
        for img in ["<IMAGE1_NAME>", "{{image}}", "${IMAGE}"] {
            let r = run(
                &format!(
                    r#"{{"family":"f","containerDefinitions":[{{"name":"a","image":"{img}","memory":64}}]}}"#
                ),
                None,
            );
            let f = r
                .errors()
                .find(|f| f.rule == "template-placeholder")
                .unwrap_or_else(|| panic!("{img}: {:?}", r.findings));
            assert_eq!(f.path.to_string(), "containerDefinitions[0].image");
            assert_eq!(f.code, Code::ClientException);
            assert!(
                f.message.starts_with(&format!(
                    "Container.image repository contains invalid characters. {img:?} looks like"
                )),
                "{}",
                f.message
            );
        }
    }

    #[test]
    fn at_most_ten_environment_files() {
        let files = |n: usize| vec![r#"{"value":"arn:aws:s3:::b/k.env","type":"s3"}"#; n].join(",");
        let def = |n| {
            format!(
                r#"{{"family":"f","containerDefinitions":[{{"name":"a","image":"b","memory":64,"environmentFiles":[{}]}}]}}"#,
                files(n)
            )
        };
        let r = run(&def(10), None);
        assert!(
            !rules(&r).contains(&"environment-file-count"),
            "{:?}",
            r.findings
        );
        let r = run(&def(11), None);
        assert!(
            !r.valid && rules(&r).contains(&"environment-file-count"),
            "{:?}",
            r.findings
        );
    }

    #[test]
    fn minimal_fargate_definition_is_valid() {
        let r = run(FARGATE_OK, None);
        assert!(r.valid, "{:?}", r.findings);
        assert!(r.fargate);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let r = run(
            r#"{"family":"f","networkMode":"awsvpc","containerDefinitions":[
                {"name":"a","memory":64,"portMappings":[{"containerPort":80,"hostPort":81}]},
                {"name":"a","image":"x","memory":64,"hostname":"h","essential":false}]}"#,
            None,
        );
        let got = rules(&r);
        for want in [
            "image-required",
            "awsvpc-host-port",
            "container-name-unique",
            "awsvpc-hostname",
        ] {
            assert!(got.contains(&want), "{want} missing from {got:?}");
        }
    }

    #[test]
    fn launch_type_fargate_uses_the_platform_exception() {
        let r = run(
            r#"{"family":"f","containerDefinitions":[{"name":"a","image":"b","memory":8,"privileged":true}]}"#,
            Some(LaunchType::Fargate),
        );
        let priv_f = r
            .errors()
            .find(|f| f.path.to_string().ends_with("privileged"))
            .unwrap();
        assert_eq!(
            priv_f.code,
            Code::PlatformTaskDefinitionIncompatibilityException
        );
        let r2 = run(
            r#"{"family":"f","containerDefinitions":[{"name":"a","image":"b","memory":8,"privileged":true}]}"#,
            Some(LaunchType::Ec2),
        );
        assert!(r2.valid, "{:?}", r2.findings);
    }

    #[test]
    fn false_and_empty_fargate_parameters_are_fine() {
        let r = run(
            r#"{"family":"f","networkMode":"awsvpc","requiresCompatibilities":["FARGATE"],"cpu":"256","memory":"512",
               "containerDefinitions":[{"name":"a","image":"b","privileged":false,"links":[],
               "dnsServers":[],"disableNetworking":false,"extraHosts":null,"hostname":null}],
               "placementConstraints":[]}"#,
            None,
        );
        assert!(r.valid, "{:?}", r.findings);
    }

    #[test]
    fn type_errors_suppress_their_consequences() {
        // memory is a string: one type error, not also "memory is required".
        let r = run(
            r#"{"family":"f","containerDefinitions":[{"name":"a","image":"b","memory":"lots"}]}"#,
            None,
        );
        assert_eq!(rules(&r), ["json-type"]);
    }

    #[test]
    fn bare_arrays_get_the_register_verdict() {
        // What register-task-definition would refuse, validate refuses: a bare array has no
        // task-level memory unless the flags give it one.
        let mut parsed = parse_str(r#"[{"name":"a","image":"b"}]"#);
        parsed.as_registered(None, Some("from-file-name".into()));
        let r = validate(&parsed, &Options::default());
        assert_eq!(rules(&r), ["container-memory-required"]);
        parsed.def.memory = Some(SizeValue("512".into()));
        assert!(validate(&parsed, &Options::default()).valid);
    }

    #[test]
    fn blank_image_and_oversized_definitions_are_refused() {
        let r = run(
            r#"{"family":"f","containerDefinitions":[{"name":"a","image":"  ","memory":8}]}"#,
            None,
        );
        assert_eq!(rules(&r), ["image-required"]);
        // Variables of 57 bytes each: 1,200 are over ECS's 64 KiB, 1,000 are under it.
        let with_vars = |n: usize| {
            let env: Vec<String> = (0..n)
                .map(|i| format!(r#"{{"name":"VARIABLE_{i:05}","value":"{i:020}"}}"#))
                .collect();
            format!(
                r#"{{"family":"f","containerDefinitions":[{{"name":"a","image":"b","memory":8,"environment":[{}]}}]}}"#,
                env.join(",")
            )
        };
        let r = run(&with_vars(1200), None);
        assert_eq!(rules(&r), ["task-definition-size"]);
        let msg = &r.errors().next().unwrap().message;
        assert!(
            msg.starts_with("Actual length: '") && msg.contains("Max allowed length is '65536'"),
            "{msg}"
        );
        let r = run(&with_vars(1000), None);
        assert!(r.valid, "{:?}", rules(&r));
    }

    #[test]
    fn s3_files_volumes_register_with_their_rules() {
        // ecs.json `S3FilesVolumeConfiguration`: accepted (ECS has it), refused only by
        // run-task here; an access point with a rootDirectory other than "/" is an error.
        let def = |cfg: &str| {
            format!(
                r#"{{"family":"f","taskRoleArn":"arn:aws:iam::1:role/t","containerDefinitions":[{{"name":"a","image":"b","memory":8,
                    "mountPoints":[{{"sourceVolume":"s3","containerPath":"/data"}}]}}],
                    "volumes":[{{"name":"s3","s3filesVolumeConfiguration":{cfg}}}]}}"#
            )
        };
        let r = run(
            &def(r#"{"fileSystemArn":"arn:aws:s3files:us-east-1:1:file-system/fs-1"}"#),
            None,
        );
        assert!(r.valid, "{:?}", r.findings);
        assert!(
            r.findings.iter().any(|f| f.rule == "refused-here"
                && f.path.to_string() == "volumes[0].s3filesVolumeConfiguration"),
            "{:?}",
            r.findings
        );
        let r = run(
            &def(r#"{"fileSystemArn":"arn:x","accessPointArn":"arn:y","rootDirectory":"/sub"}"#),
            None,
        );
        assert_eq!(rules(&r), ["volume-config"]);
    }

    #[test]
    fn container_sums_are_refused_as_ecs_refuses_them() {
        // ECS: "The sum of all container 'cpu' values cannot be greater than the value of the
        // task 'cpu'." and the same for memoryReservation against task memory.
        let r = run(
            r#"{"family":"f","cpu":"256","memory":"512","containerDefinitions":[
                {"name":"a","image":"b","cpu":200,"memoryReservation":300},
                {"name":"c","image":"b","cpu":100,"memoryReservation":100,"essential":false}]}"#,
            None,
        );
        assert_eq!(rules(&r), ["container-cpu-sum"]);
        let r = run(
            r#"{"family":"f","memory":"512","containerDefinitions":[
                {"name":"a","image":"b","memory":400},
                {"name":"c","image":"b","memory":400,"essential":false}]}"#,
            None,
        );
        // memory (not memoryReservation) above the task's in sum: not refused by ECS.
        assert!(r.valid, "{:?}", rules(&r));
        assert!(
            r.findings
                .iter()
                .any(|f| f.rule == "container-memory-reserved")
        );
    }

    #[test]
    fn cycles_are_found_without_hanging() {
        // A ring of 10 containers and a self-loop-free chain: one cycle reported.
        let mut cs = Vec::new();
        for i in 0..10 {
            cs.push(format!(
                r#"{{"name":"c{i}","image":"b","memory":8,"dependsOn":[{{"containerName":"c{}","condition":"START"}}]}}"#,
                (i + 1) % 10
            ));
        }
        let json = format!(
            r#"{{"family":"f","containerDefinitions":[{}]}}"#,
            cs.join(",")
        );
        let r = run(&json, None);
        let cyc: Vec<_> = r
            .errors()
            .filter(|f| f.rule == "depends-on-cycle")
            .collect();
        assert_eq!(cyc.len(), 1, "{:?}", r.findings);
        assert!(cyc[0].message.contains("c0 -> c1"), "{}", cyc[0].message);
        // A dense graph (every container depends on every other) finishes quickly too.
        let mut dense = Vec::new();
        for i in 0..10 {
            let deps: Vec<String> = (0..10)
                .filter(|j| *j != i)
                .map(|j| format!(r#"{{"containerName":"c{j}","condition":"START"}}"#))
                .collect();
            dense.push(format!(
                r#"{{"name":"c{i}","image":"b","memory":8,"dependsOn":[{}]}}"#,
                deps.join(",")
            ));
        }
        let r = run(
            &format!(
                r#"{{"family":"f","containerDefinitions":[{}]}}"#,
                dense.join(",")
            ),
            None,
        );
        assert!(r.errors().any(|f| f.rule == "depends-on-cycle"));
    }

    #[test]
    fn private_ecr_detection() {
        assert!(is_private_ecr(
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/app:1"
        ));
        assert!(is_private_ecr(
            "123456789012.dkr.ecr-fips.us-east-1.amazonaws.com/app"
        ));
        assert!(!is_private_ecr("public.ecr.aws/docker/library/busybox"));
        assert!(!is_private_ecr("busybox"));
    }

    #[test]
    fn compatibility_with_fargate() {
        let def = parse_str(FARGATE_OK).def;
        assert!(fargate_compatible(&def));
        let bridge = parse_str(
            r#"{"family":"f","containerDefinitions":[{"name":"a","image":"b","memory":8}]}"#,
        )
        .def;
        assert!(!fargate_compatible(&bridge));
    }
}
