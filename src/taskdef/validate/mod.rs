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

use crate::taskdef::finding::{Code, Finding, JsonPath, Severity};
use crate::taskdef::model::*;
use crate::taskdef::parse::{Parsed, Shape, is_placeholder, placeholder};
use crate::taskdef::units::{
    CpuUnits, FARGATE_CPU_VALUES, MemoryMib, fargate_memory_choices, fargate_pair_is_valid,
};
use std::collections::{HashMap, HashSet};

mod containers;
mod logging;
mod volumes;

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
/// registers as (task-level rules included: see [`crate::taskdef::Parsed::as_registered`]), and
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
        findings.extend(crate::taskdef::coverage::task_definition(&parsed.def));
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
        for k in crate::taskdef::unknown::READ_ONLY {
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

/// What the containers add up to, for the task-level rules ([`Checker::task_sums`]).
#[derive(Default)]
struct Sums {
    cpu: i64,
    /// memoryReservation.
    reservation: i64,
    /// memoryReservation, else memory.
    reserved: i64,
    essential: usize,
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
        self.container_count(containers);
        let index_of = self.container_names(containers);

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

        let mut sums = Sums::default();
        let mut ports_seen: HashMap<(i64, TransportProtocol), String> = HashMap::new();
        for (i, c) in containers.iter().enumerate() {
            let p = cpath(i);
            if c.is_essential() {
                sums.essential += 1;
            }
            self.image(def, c, &p, task_level);
            self.container_cpu(c, &p, task_cpu, &mut sums);
            self.container_memory(def, c, &p, (task_level, task_memory), &mut sums);
            self.ports(c, &p, mode, &mut ports_seen);
            self.links(c, &p, mode, &index_of);
            self.hosts(c, &p, mode);
            self.depends_on(c, &p, containers, &index_of);
            self.timeouts(c, &p);
            self.health_check(c, &p);
            self.mounts(c, &p, task_level, &volume_names, &index_of);
            self.secrets_and_env(def, c, &p, task_level);
            self.logging(def, c, &p, task_level, has_log_router);
            self.linux_parameters(c, &p);
            self.misc_container(c, &p, mode, def.ipc_mode, &accelerator_names);
        }
        self.task_sums(containers, &sums, (task_cpu, task_memory));
        self.firelens(containers);
        self.cycles(containers, &index_of, Graph::DependsOn);
        self.cycles(containers, &index_of, Graph::Links);
        if task_level {
            self.volumes(def);
            self.proxy(def, &index_of);
        }
    }

    /// At least one container, at most 10.
    fn container_count(&mut self, containers: &[ContainerDefinition]) {
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
    }

    /// Each container's name: given, of ECS's characters, unique. The index of each name.
    fn container_names<'d>(
        &mut self,
        containers: &'d [ContainerDefinition],
    ) -> HashMap<&'d str, usize> {
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
        index_of
    }

    /// A container's image: given, of ECS's characters; on Fargate a private ECR image needs
    /// the execution role.
    fn image(
        &mut self,
        def: &TaskDefinition,
        c: &ContainerDefinition,
        p: &JsonPath,
        task_level: bool,
    ) {
        let fargate = self.fargate.is_some();
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
            Some(img) if is_placeholder(img) => self.out.push(placeholder(&p.key("image"), img)),
            Some(img) => {
                // Ref: ecs.json `ContainerDefinition.image`: up to 255 letters, numbers,
                // `-_:./#`; for `repository@digest` the 255 limit applies before the `@`.
                // Other characters: RegisterTaskDefinition's ClientException "Container.
                // image contains invalid characters." as users quote it (aws-actions/
                // amazon-ecs-render-task-definition#49, an unexpanded `$ECR_REGISTRY`;
                // Shippable/support#3094). The length's enforcement is not documented,
                // so a warning.
                let odd = img
                    .chars()
                    .any(|ch| !(ch.is_ascii_alphanumeric() || "-_:./#@".contains(ch)));
                let named = img.split_once('@').map_or(img, |(name, _)| name);
                if odd {
                    self.err(
                        "image-format",
                        p.key("image"),
                        format!(
                            "Container.image contains invalid characters. ('{img}': ECS \
                             takes letters, numbers and -_:./# , and @ before a digest; is \
                             it a template placeholder?)"
                        ),
                    );
                } else if named.len() > 255 {
                    self.warn(
                        "image-format",
                        p.key("image"),
                        format!(
                            "image '{img}' is longer than the 255 characters ECS documents \
                             for an image reference."
                        ),
                    );
                }
                // Ref: the ECS message users quote, "Fargate requires task definition to
                // have execution role ARN to support ECR images." (developer guide, task
                // execution IAM role: required for private ECR images on Fargate).
                if fargate && task_level && is_private_ecr(img) && blank(&def.execution_role_arn) {
                    self.fargate_err(
                        "fargate-execution-role",
                        p.key("image"),
                        "Fargate requires task definition to have execution role ARN to \
                         support ECR images.",
                    );
                }
            }
        }
    }

    /// A container's cpu, counted into the task's sum.
    fn container_cpu(
        &mut self,
        c: &ContainerDefinition,
        p: &JsonPath,
        task_cpu: Option<CpuUnits>,
        sums: &mut Sums,
    ) {
        let name = c.name_str();
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
                sums.cpu = sums.cpu.saturating_add(cpu);
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
    }

    /// A container's memory and memoryReservation, counted into the task's sums.
    fn container_memory(
        &mut self,
        def: &TaskDefinition,
        c: &ContainerDefinition,
        p: &JsonPath,
        (task_level, task_memory): (bool, Option<MemoryMib>),
        sums: &mut Sums,
    ) {
        let name = c.name_str();
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
        sums.reservation = sums
            .reservation
            .saturating_add(c.memory_reservation.unwrap_or(0).max(0));
        sums.reserved = sums
            .reserved
            .saturating_add(c.memory_reservation.or(c.memory).unwrap_or(0).max(0));
    }

    /// A container's hostname and extraHosts.
    fn hosts(&mut self, c: &ContainerDefinition, p: &JsonPath, mode: NetworkMode) {
        let fargate = self.fargate.is_some();
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
    }

    /// What the containers add up to: an essential one, their cpu and memory within the
    /// task's.
    fn task_sums(
        &mut self,
        containers: &[ContainerDefinition],
        sums: &Sums,
        (task_cpu, task_memory): (Option<CpuUnits>, Option<MemoryMib>),
    ) {
        let (cpu_sum, reservation_sum, reserved_sum) = (sums.cpu, sums.reservation, sums.reserved);
        // Ref: ecs.json `ContainerDefinition.essential`: "All tasks must have at least one
        // essential container."
        if !containers.is_empty() && sums.essential == 0 {
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
    }

    /// Task-level members; returns the task cpu and memory when they parse.
    fn task_level(
        &mut self,
        def: &TaskDefinition,
        declared_mode: Option<NetworkMode>,
    ) -> (Option<CpuUnits>, Option<MemoryMib>) {
        self.family(def);
        let (cpu, memory) = self.task_size(def);
        self.fargate_task(def, declared_mode, (cpu, memory));
        self.placement_constraints(def);
        self.accelerators_and_storage(def);
        self.tags(def.tags.as_deref().unwrap_or(&[]));
        (cpu, memory)
    }

    /// The family: given, of ECS's characters.
    fn family(&mut self, def: &TaskDefinition) {
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
    }

    /// The task's cpu and memory, when they parse and are in range.
    fn task_size(&mut self, def: &TaskDefinition) -> (Option<CpuUnits>, Option<MemoryMib>) {
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
        (cpu, memory)
    }

    /// The task-level rules of Fargate (only when they apply).
    /// Ref: ecs.json `RegisterTaskDefinitionRequest.networkMode` ("If you're using
    /// Fargate, the awsvpc network mode is required"), `.cpu`/`.memory` ("This field is
    /// required for Fargate" and the table of pairs, also task-cpu-memory-error.html with
    /// ECS's "No Fargate configuration exists for given values"; Windows needs 1 vCPU),
    /// `.ipcMode` (not supported on Fargate), `.pidMode` ("On Fargate for Linux
    /// containers, the only valid value is task"), placementConstraints (developer guide,
    /// Fargate differences).
    fn fargate_task(
        &mut self,
        def: &TaskDefinition,
        declared_mode: Option<NetworkMode>,
        (cpu, memory): (Option<CpuUnits>, Option<MemoryMib>),
    ) {
        if self.fargate.is_none() {
            return;
        }
        if declared_mode != Some(NetworkMode::Awsvpc) {
            let found = declared_mode.map_or("absent, so bridge".to_string(), |m| m.to_string());
            self.fargate_err(
                "fargate-network-mode",
                root().key("networkMode"),
                format!("Fargate only supports network mode 'awsvpc' (networkMode is {found})."),
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
            self.fargate_unsupported(root().key("placementConstraints"), "placementConstraints");
        }
    }

    /// The placement constraints: each with a type and an expression that parses.
    fn placement_constraints(&mut self, def: &TaskDefinition) {
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
            } else if let Err(e) =
                crate::taskdef::query::Query::parse(pc.expression.as_deref().unwrap_or_default())
            {
                // Ref: ecs.json `TaskDefinitionPlacementConstraint.expression` ("A cluster
                // query language expression"); ECS documents no refusal at registration,
                // so a warning: cluster placement refuses the tasks of this definition.
                self.warn(
                    "placement-constraint-expression",
                    root()
                        .key("placementConstraints")
                        .index(k)
                        .key("expression"),
                    format!(
                        "not a cluster query language expression ({e}): RunTask and \
                         StartTask with `serve --cluster` refuse this definition's tasks."
                    ),
                );
            }
        }
    }

    /// The inference accelerators' required members and the ephemeral storage's size.
    fn accelerators_and_storage(&mut self, def: &TaskDefinition) {
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
}

#[derive(Clone, Copy)]
enum Graph {
    DependsOn,
    Links,
}

#[cfg(test)]
mod tests;
