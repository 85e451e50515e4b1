//! The coverage table: what this host does with every member of a task definition and of a
//! RunTask request — honoured, honoured with a local difference, not applied here, refused
//! here, or read-only (describe output) — and the warnings that follow for a given input.
//!
//! Nothing silent (issue 22): every member present that is not fully honoured yields a
//! warning with its JSON path and the reason, in `validate` and on the task. The tables are
//! checked against the serde model by [`super::members::paths`] (tests below and in
//! `ecs::tasks`), and `docs/taskdefs.md`'s parameter table is rendered from them.

use super::finding::{Finding, JsonPath};
use super::model::TaskDefinition;
use serde_json::Value;

/// What this host does with a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    /// Does what ECS does.
    Honoured,
    /// Does it, but differently in a way a user can notice (the note says how).
    LocalDifference,
    /// Accepted and ignored here (the note says why).
    NotApplied,
    /// ECS accepts it; `run-task` here refuses it before anything starts (the note says why).
    Refused,
    /// A describe-task-definition output member: accepted, ignored on input, filled in on
    /// register.
    ReadOnly,
}

impl Class {
    pub const ALL: [Class; 5] = [
        Class::Honoured,
        Class::LocalDifference,
        Class::NotApplied,
        Class::Refused,
        Class::ReadOnly,
    ];

    #[cfg(test)]
    pub fn label(self) -> &'static str {
        match self {
            Class::Honoured => "honoured",
            Class::LocalDifference => "local difference",
            Class::NotApplied => "not applied",
            Class::Refused => "refused here",
            Class::ReadOnly => "read-only",
        }
    }

    /// The rule id of the warning a present member of this class yields, if any.
    pub fn rule(self) -> Option<&'static str> {
        match self {
            Class::LocalDifference => Some("local-difference"),
            Class::NotApplied => Some("not-applied"),
            Class::Refused => Some("refused-here"),
            Class::Honoured | Class::ReadOnly => None,
        }
    }

    fn lead(self) -> &'static str {
        match self {
            Class::LocalDifference => "honoured with a local difference",
            Class::NotApplied => "not applied here",
            Class::Refused => "refused here by run-task",
            Class::Honoured | Class::ReadOnly => "",
        }
    }
}

/// The class of one value of a member, when it depends on the value: `Some((class,
/// reason))` replaces the row's own class and note.
pub type Refine = fn(&Value) -> Option<(Class, String)>;

/// One member: its JSON path (`[]` for list elements), its class and what happens here.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    pub path: &'static str,
    pub class: Class,
    /// What this host does with it, or why it does not.
    pub note: &'static str,
    /// Value-dependent classes (e.g. `networkMode` `bridge`).
    pub refine: Option<Refine>,
    /// `refine` reads the object holding the member (its siblings decide: a log driver's
    /// options), not the member's own value.
    pub in_parent: bool,
}

const fn h(path: &'static str, note: &'static str) -> Row {
    Row {
        path,
        class: Class::Honoured,
        note,
        refine: None,
        in_parent: false,
    }
}
const fn ld(path: &'static str, note: &'static str) -> Row {
    Row {
        path,
        class: Class::LocalDifference,
        note,
        refine: None,
        in_parent: false,
    }
}
const fn na(path: &'static str, note: &'static str) -> Row {
    Row {
        path,
        class: Class::NotApplied,
        note,
        refine: None,
        in_parent: false,
    }
}
const fn rf(path: &'static str, note: &'static str) -> Row {
    Row {
        path,
        class: Class::Refused,
        note,
        refine: None,
        in_parent: false,
    }
}
const fn ro(path: &'static str) -> Row {
    Row {
        path,
        class: Class::ReadOnly,
        note: "describe-task-definition output: accepted, ignored on input, filled in on register",
        refine: None,
        in_parent: false,
    }
}
impl Row {
    const fn by_value(self, f: Refine) -> Row {
        Row {
            refine: Some(f),
            ..self
        }
    }
    const fn by_parent(self, f: Refine) -> Row {
        Row {
            refine: Some(f),
            in_parent: true,
            ..self
        }
    }
}

const EFS: &str = "EFS is not reachable from this host: run-task refuses the volume unless \
                   `--volume-map NAME=/local/dir` serves it from a local directory";
const S3FILES: &str = "Amazon S3 Files is not reachable from this host: run-task refuses the \
                       volume unless `--volume-map NAME=/local/dir` serves it from a local \
                       directory";
const FSX: &str = "FSx for Windows File Server is not reachable from this host: run-task \
                   refuses the volume unless `--volume-map NAME=/local/dir` serves it from a \
                   local directory";

/// What happens to a task definition's `placementConstraints`: on one box they are not
/// evaluated (the RunTask request's are, against this host); cluster placement applies
/// them.
const PLACEMENT_CONSTRAINTS_NOTE: &str = "one host (no `serve --cluster`): the task \
    definition's memberOf constraints are not evaluated against this host, the cluster's one \
    container instance (a RunTask request's or a service's constraints are); with `serve \
    --cluster` they are applied on the cluster's instances together with the request's or \
    the service's, and a task that satisfies them nowhere is a `MemberOf placement constraint \
    unsatisfied.` failure (docs/cluster.md)";

/// Removes, from a task's warnings, the one saying its definition's `placementConstraints`
/// are not applied: cluster placement (`serve --cluster`) has applied them.
pub fn applied_placement_constraints(warnings: &mut Vec<String>) {
    let lead = format!("placementConstraints: {}", Class::NotApplied.lead());
    warnings.retain(|w| !w.starts_with(&lead));
}

/// Every member of a task definition (`model::TaskDefinition`), in the order of the docs.
pub static TASK_DEFINITION: &[Row] = &[
    h("family", "names the family; revisions are kept as ECS keeps them"),
    h("taskRoleArn", "the credentials endpoint (169.254.170.2) serves the role's credentials, assumed with STS from this host's credentials"),
    h("executionRoleArn", "assumed with STS (this host's credentials), as the ECS agent does, for the task's start-up calls: ECR authorization, repositoryCredentials, secrets, S3 environmentFiles; `run-task --execution-credentials host` uses this host's credentials instead"),
    h("networkMode", "awsvpc: one network namespace per task with its own address on a local bridge; host: the host's, with the metadata and credentials endpoints on the host's 127.0.0.1 under a per-task token (the URIs in the containers' environment); none: loopback only; bridge: a local difference, the task's containers share one network namespace").by_value(network_mode),
    h("containerDefinitions", "the task's containers, started in dependsOn order"),
    h("volumes", "see its members"),
    h("volumes[].name", "the name mountPoints refer to"),
    h("volumes[].host", "without sourcePath: a directory of the task shared by its containers, removed with it (Fargate's bind mount)"),
    h("volumes[].host.sourcePath", "a bind of the host path (created when missing, as Docker does)"),
    h("volumes[].dockerVolumeConfiguration", "a local volume: scope task is removed with the task, scope shared is kept under <root>/volumes"),
    h("volumes[].dockerVolumeConfiguration.scope", "task or shared, as above"),
    h("volumes[].dockerVolumeConfiguration.autoprovision", "a missing shared volume is created only with autoprovision, else run-task refuses it"),
    h("volumes[].dockerVolumeConfiguration.driver", "the local driver; run-task refuses any other").by_value(volume_driver),
    h("volumes[].dockerVolumeConfiguration.driverOpts", "the local driver's type=tmpfs and type=none,o=bind,device=PATH; run-task refuses other options").by_value(driver_opts),
    na("volumes[].dockerVolumeConfiguration.labels", "volumes here are directories, which carry no labels"),
    rf("volumes[].efsVolumeConfiguration", EFS),
    rf("volumes[].efsVolumeConfiguration.fileSystemId", EFS),
    rf("volumes[].efsVolumeConfiguration.rootDirectory", EFS),
    rf("volumes[].efsVolumeConfiguration.transitEncryption", EFS),
    rf("volumes[].efsVolumeConfiguration.transitEncryptionPort", EFS),
    rf("volumes[].efsVolumeConfiguration.authorizationConfig", EFS),
    rf("volumes[].efsVolumeConfiguration.authorizationConfig.accessPointId", EFS),
    rf("volumes[].efsVolumeConfiguration.authorizationConfig.iam", EFS),
    rf("volumes[].s3filesVolumeConfiguration", S3FILES),
    rf("volumes[].s3filesVolumeConfiguration.fileSystemArn", S3FILES),
    rf("volumes[].s3filesVolumeConfiguration.rootDirectory", S3FILES),
    rf("volumes[].s3filesVolumeConfiguration.transitEncryptionPort", S3FILES),
    rf("volumes[].s3filesVolumeConfiguration.accessPointArn", S3FILES),
    rf("volumes[].fsxWindowsFileServerVolumeConfiguration", FSX),
    rf("volumes[].fsxWindowsFileServerVolumeConfiguration.fileSystemId", FSX),
    rf("volumes[].fsxWindowsFileServerVolumeConfiguration.rootDirectory", FSX),
    rf("volumes[].fsxWindowsFileServerVolumeConfiguration.authorizationConfig", FSX),
    rf("volumes[].fsxWindowsFileServerVolumeConfiguration.authorizationConfig.credentialsParameter", FSX),
    rf("volumes[].fsxWindowsFileServerVolumeConfiguration.authorizationConfig.domain", FSX),
    h("volumes[].configuredAtLaunch", "false: an ordinary volume; true: run-task refuses the volume unless `--volume-map` serves it").by_value(configured_at_launch),
    na("placementConstraints", PLACEMENT_CONSTRAINTS_NOTE),
    na("placementConstraints[].type", "as placementConstraints"),
    na("placementConstraints[].expression", "as placementConstraints"),
    h("requiresCompatibilities", "FARGATE applies the Fargate rules and makes FARGATE the task's launch type"),
    h("runtimePlatform", "see its members"),
    h("runtimePlatform.cpuArchitecture", "that platform is pulled from an image index and must be the image's; another architecture than this host's runs through a binfmt_misc handler (qemu-user-static), or run-task refuses it before anything starts").by_value(cpu_architecture),
    rf("runtimePlatform.operatingSystemFamily", "a Windows family registers, as on ECS, but run-task refuses it: this host runs Linux containers only; LINUX is honoured").by_value(os_family),
    h("cpu", "the task cgroup's CPU limit (CFS quota = units / 1024 × period), as the ECS agent sets it"),
    h("memory", "the task cgroup's memory limit"),
    na("inferenceAccelerators", "no Elastic Inference accelerator is attached here"),
    na("inferenceAccelerators[].deviceName", "as inferenceAccelerators"),
    na("inferenceAccelerators[].deviceType", "as inferenceAccelerators"),
    h("pidMode", "task: the task's containers share one pid namespace, whose pid 1 is a holder process started before them and killed at teardown (the ECS agent's pause container); host: the host's"),
    h("ipcMode", "task: one ipc namespace and one /dev/shm shared by the task's containers; host: the host's ipc namespace and /dev/shm; none: a private one and no /dev/shm (Docker's --ipc none)"),
    na("proxyConfiguration", "no traffic is redirected to the App Mesh proxy container; it runs as an ordinary container"),
    na("proxyConfiguration.type", "as proxyConfiguration"),
    na("proxyConfiguration.containerName", "as proxyConfiguration"),
    na("proxyConfiguration.properties", "as proxyConfiguration"),
    na("proxyConfiguration.properties[].name", "as proxyConfiguration"),
    na("proxyConfiguration.properties[].value", "as proxyConfiguration"),
    ld("ephemeralStorage", "enforced only on a host that sets MINIFARGATE_EPHEMERAL_STORAGE=enforce (each task's writable layers and volumes on its own loop-mounted ext4 of that size); otherwise not applied, and the task says so; describe-tasks shows the size (Fargate's default 20 GiB when unset)"),
    ld("ephemeralStorage.sizeInGiB", "as ephemeralStorage"),
    na("enableFaultInjection", "the task metadata endpoint has no fault-injection paths"),
    h("tags", "stored with the revision (describe-task-definition --include TAGS, list-tags-for-resource)"),
    h("tags[].key", "as tags"),
    h("tags[].value", "as tags"),
    ro("taskDefinitionArn"),
    ro("revision"),
    ro("status"),
    ro("requiresAttributes"),
    ro("requiresAttributes[].name"),
    ro("requiresAttributes[].value"),
    ro("requiresAttributes[].targetType"),
    ro("requiresAttributes[].targetId"),
    ro("compatibilities"),
    ro("registeredAt"),
    ro("deregisteredAt"),
    ro("deleteRequestedAt"),
    ro("registeredBy"),
    // Containers.
    h("containerDefinitions[].name", "the container's name"),
    h("containerDefinitions[].image", "pulled over the registry API (ECR, Docker Hub, any OCI registry) for this host's platform; a cached image is run only after its registry, asked with the task's credentials, still serves it (a registry that cannot be reached runs the cache, with a task warning)"),
    h("containerDefinitions[].repositoryCredentials", "the Secrets Manager secret (ARN or name) is read with the execution role's credentials; its username and password authenticate to the container's registry only, for a cached image too"),
    h("containerDefinitions[].repositoryCredentials.credentialsParameter", "as repositoryCredentials"),
    h("containerDefinitions[].cpu", "the container cgroup's CPU shares (at least 2), as the ECS agent sets them"),
    h("containerDefinitions[].memory", "the container cgroup's hard memory limit"),
    h("containerDefinitions[].memoryReservation", "the container cgroup's soft memory limit"),
    h("containerDefinitions[].links", "the linked name and alias resolve to 127.0.0.1 in the linking container's own /etc/hosts: a task's containers share one network namespace here"),
    h("containerDefinitions[].portMappings", "the task answers at its own address; also published on the host from the task's network namespace (awsvpc: when the host port is free, else not published and said in a task warning, inspect and the console, the task still running)"),
    h("containerDefinitions[].portMappings[].containerPort", "as portMappings"),
    h("containerDefinitions[].portMappings[].hostPort", "the host port (bridge: absent or 0 picks one from 49153-65535, shown in networkBindings; bridge and host: another EC2 task's static host port is RunTask's `RESOURCE:PORTS` failure (placement, as ECS), a port a host process holds fails the task; awsvpc: the first task holding it keeps it, the others of the same port run unpublished with a warning)"),
    h("containerDefinitions[].portMappings[].protocol", "tcp or udp"),
    h("containerDefinitions[].portMappings[].name", "read by Service Connect: a service's clientAliases reach its tasks at the port mapping of this portName (docs/service-discovery.md)"),
    na("containerDefinitions[].portMappings[].appProtocol", "read only by Service Connect's proxy for its protocol-aware metrics and retries, which are not run here (connections are passed through as bytes): kept in the task definition and describe output, nothing else"),
    h("containerDefinitions[].portMappings[].containerPortRange", "each port of the range is published"),
    h("containerDefinitions[].essential", "an essential container's exit stops the task (EssentialContainerExited)"),
    h("containerDefinitions[].restartPolicy", "an exited container restarts in place, as the ECS agent does"),
    h("containerDefinitions[].restartPolicy.enabled", "as restartPolicy"),
    h("containerDefinitions[].restartPolicy.ignoredExitCodes", "as restartPolicy"),
    h("containerDefinitions[].restartPolicy.restartAttemptPeriod", "as restartPolicy"),
    h("containerDefinitions[].entryPoint", "replaces the image's Entrypoint (and drops its Cmd), by Docker's rules"),
    h("containerDefinitions[].command", "replaces the image's Cmd"),
    h("containerDefinitions[].environment", "over the image's Env and the ECS variables"),
    h("containerDefinitions[].environment[].name", "as environment"),
    h("containerDefinitions[].environment[].value", "as environment"),
    h("containerDefinitions[].environmentFiles", "KEY=VALUE lines under `environment`, as ECS reads them"),
    h("containerDefinitions[].environmentFiles[].value", "an S3 object ARN, the only form ECS takes, is read at task start with the execution role's credentials, by the ECS agent's file rules; a local path is read from this host's file system instead, for the local CLI only (a local difference; over the API, where ECS takes ARNs only, it is refused)").by_value(environment_file),
    h("containerDefinitions[].environmentFiles[].type", "s3, the only type"),
    h("containerDefinitions[].mountPoints", "bind mounts of the task's volumes"),
    h("containerDefinitions[].mountPoints[].sourceVolume", "as mountPoints"),
    h("containerDefinitions[].mountPoints[].containerPath", "as mountPoints"),
    h("containerDefinitions[].mountPoints[].readOnly", "as mountPoints"),
    h("containerDefinitions[].volumesFrom", "every mount of the source container"),
    h("containerDefinitions[].volumesFrom[].sourceContainer", "as volumesFrom"),
    h("containerDefinitions[].volumesFrom[].readOnly", "as volumesFrom"),
    h("containerDefinitions[].linuxParameters", "see its members"),
    h("containerDefinitions[].linuxParameters.capabilities", "added to and dropped from Docker's default set"),
    h("containerDefinitions[].linuxParameters.capabilities.add", "as capabilities"),
    h("containerDefinitions[].linuxParameters.capabilities.drop", "as capabilities"),
    h("containerDefinitions[].linuxParameters.devices", "host devices made available in the container (device cgroup)"),
    h("containerDefinitions[].linuxParameters.devices[].hostPath", "as devices"),
    h("containerDefinitions[].linuxParameters.devices[].containerPath", "as devices"),
    h("containerDefinitions[].linuxParameters.devices[].permissions", "as devices"),
    h("containerDefinitions[].linuxParameters.initProcessEnabled", "a static init runs as PID 1 (a task warning when the host has none)"),
    h("containerDefinitions[].linuxParameters.sharedMemorySize", "the size of /dev/shm"),
    h("containerDefinitions[].linuxParameters.tmpfs", "tmpfs mounts"),
    h("containerDefinitions[].linuxParameters.tmpfs[].containerPath", "as tmpfs"),
    h("containerDefinitions[].linuxParameters.tmpfs[].size", "as tmpfs"),
    h("containerDefinitions[].linuxParameters.tmpfs[].mountOptions", "as tmpfs"),
    h("containerDefinitions[].linuxParameters.maxSwap", "swap beyond `memory` (a task warning when the container has no `memory`)"),
    h("containerDefinitions[].linuxParameters.swappiness", "memory.swappiness on cgroup v1; cgroup v2 has no such setting, as with Docker"),
    h("containerDefinitions[].secrets", "SSM parameters and Secrets Manager secrets read at task start with the execution role (or from `--secrets-file`)"),
    h("containerDefinitions[].secrets[].name", "as secrets"),
    h("containerDefinitions[].secrets[].valueFrom", "as secrets"),
    h("containerDefinitions[].dependsOn", "START, COMPLETE, SUCCESS and HEALTHY, with the ECS agent's reasons"),
    h("containerDefinitions[].dependsOn[].containerName", "as dependsOn"),
    h("containerDefinitions[].dependsOn[].condition", "as dependsOn"),
    h("containerDefinitions[].startTimeout", "how long a dependency may take"),
    h("containerDefinitions[].stopTimeout", "SIGTERM, then SIGKILL after this many seconds (default 30)"),
    ld("containerDefinitions[].versionConsistency", "the digest the tag names is pinned by the first task of a RunTask call or service deployment and used by all its other tasks (ECS pins it when the deployment is created); disabled is honoured").by_value(version_consistency),
    h("containerDefinitions[].hostname", "the container's hostname (its own UTS namespace), in bridge, none and host mode (the host's name untouched); awsvpc refuses it, as ECS"),
    h("containerDefinitions[].user", "the user the process runs as (default the image's)"),
    h("containerDefinitions[].workingDirectory", "the process's working directory (default the image's)"),
    h("containerDefinitions[].disableNetworking", "true: the container gets a network namespace of its own with only the loopback (up), not the task's"),
    h("containerDefinitions[].privileged", "all capabilities, every host device under /dev (as Docker's --privileged; the container keeps its own devpts, /dev/shm and console), no seccomp filter, /sys and the cgroup tree writable"),
    h("containerDefinitions[].readonlyRootFilesystem", "the root file system is mounted read-only"),
    h("containerDefinitions[].dnsServers", "the nameservers of the container's own /etc/resolv.conf (other containers keep the task's), in every network mode"),
    h("containerDefinitions[].dnsSearchDomains", "the search line of the container's own /etc/resolv.conf (other containers keep the task's), in every network mode"),
    h("containerDefinitions[].extraHosts", "lines of the container's own /etc/hosts (in host mode a copy of the host's with them added), in every mode ECS allows them"),
    h("containerDefinitions[].extraHosts[].hostname", "as extraHosts"),
    h("containerDefinitions[].extraHosts[].ipAddress", "as extraHosts"),
    h("containerDefinitions[].dockerSecurityOptions", "parsed as Docker parses --security-opt: no-new-privileges and apparmor:PROFILE are applied (run-task refuses a profile this host cannot apply: no AppArmor, or not loaded), label:disable needs nothing; label:, seccomp: and credentialspec: are not applied; what Docker refuses fails the container as on EC2").by_value(security_options),
    h("containerDefinitions[].interactive", "stdin is kept open"),
    h("containerDefinitions[].pseudoTerminal", "the process gets a terminal"),
    h("containerDefinitions[].dockerLabels", "kept with the container; task metadata shows them as Labels"),
    h("containerDefinitions[].ulimits", "resource limits of the process (above this host's hard limit: clamped, with a task warning)"),
    h("containerDefinitions[].ulimits[].name", "as ulimits"),
    h("containerDefinitions[].ulimits[].softLimit", "as ulimits"),
    h("containerDefinitions[].ulimits[].hardLimit", "as ulimits"),
    ld("containerDefinitions[].logConfiguration", "awslogs: events go to this host's CloudWatch Logs store (serve's Logs API, `minifargate logs`), as the agent names them; awsfirelens: each line goes to the task's log router over the Fluent forward protocol, with the agent's generated router configuration (docs/logs.md); json-file: rotated by its max-size/max-file; other drivers are not used: the output is kept on this host (`minifargate logs`), nothing reaches Splunk; task metadata shows the driver and options").by_value(log_configuration),
    ld("containerDefinitions[].logConfiguration.logDriver", "as logConfiguration").by_value(log_driver),
    ld("containerDefinitions[].logConfiguration.options", "as logConfiguration").by_parent(log_options),
    na("containerDefinitions[].logConfiguration.secretOptions", "not read for awslogs, json-file and the drivers not used here; awsfirelens: resolved with the execution role and given to the log router as the agent's config variables (`${name_index}` in its generated configuration, the value in its environment)").by_parent(log_secret_options),
    h("containerDefinitions[].logConfiguration.secretOptions[].name", "as secretOptions"),
    h("containerDefinitions[].logConfiguration.secretOptions[].valueFrom", "as secretOptions"),
    h("containerDefinitions[].healthCheck", "run in the container; container and task healthStatus as ECS reports them"),
    h("containerDefinitions[].healthCheck.command", "as healthCheck"),
    h("containerDefinitions[].healthCheck.interval", "as healthCheck"),
    h("containerDefinitions[].healthCheck.timeout", "as healthCheck"),
    h("containerDefinitions[].healthCheck.retries", "as healthCheck"),
    h("containerDefinitions[].healthCheck.startPeriod", "as healthCheck"),
    h("containerDefinitions[].systemControls", "namespaced sysctls (IPC, net.*) set in the container; others are refused before the task starts"),
    h("containerDefinitions[].systemControls[].namespace", "as systemControls"),
    h("containerDefinitions[].systemControls[].value", "as systemControls"),
    na("containerDefinitions[].resourceRequirements", "no GPU or inference accelerator is assigned to the container"),
    na("containerDefinitions[].resourceRequirements[].value", "as resourceRequirements"),
    na("containerDefinitions[].resourceRequirements[].type", "as resourceRequirements"),
    h("containerDefinitions[].firelensConfiguration", "the log router: the agent's Fluent Bit / Fluentd configuration is generated and mounted at /fluent-bit/etc/fluent-bit.conf or /fluentd/etc/fluent.conf, its socket directory at /var/run; awsfirelens containers start after it and send it their lines (docs/logs.md)"),
    h("containerDefinitions[].firelensConfiguration.type", "fluentbit or fluentd: which configuration syntax and mount path"),
    h("containerDefinitions[].firelensConfiguration.options", "enable-ecs-log-metadata (ecs_cluster, ecs_task_arn, ecs_task_definition added to every record unless false), config-file-type file (@INCLUDE of a path in the router image) or s3 (fetched with the execution role, mounted and included), config-file-value"),
    na("containerDefinitions[].credentialSpecs", "no Active Directory (gMSA) credentials are set up here"),
];

/// Every member of a RunTask request (`ecs::tasks::RunTaskRequest`, its `overrides`).
pub static RUN_TASK: &[Row] = &[
    h(
        "cluster",
        "the cluster the task is recorded in (`default` when absent)",
    ),
    h(
        "taskDefinition",
        "FAMILY, FAMILY:REVISION or an ARN (the CLI also takes file://)",
    ),
    h("count", "1 to 10 tasks"),
    h("overrides", "see its members"),
    h("overrides.containerOverrides", "see its members"),
    h(
        "overrides.containerOverrides[].name",
        "the container overridden",
    ),
    h(
        "overrides.containerOverrides[].command",
        "replaces the container's command",
    ),
    h(
        "overrides.containerOverrides[].environment",
        "added to the container's environment, winning over it",
    ),
    h(
        "overrides.containerOverrides[].environment[].name",
        "as environment",
    ),
    h(
        "overrides.containerOverrides[].environment[].value",
        "as environment",
    ),
    h(
        "overrides.containerOverrides[].environmentFiles",
        "replace the container's environmentFiles, read as the task definition's are (S3 objects at task start)",
    ),
    h(
        "overrides.containerOverrides[].environmentFiles[].value",
        "as environmentFiles",
    ),
    h(
        "overrides.containerOverrides[].environmentFiles[].type",
        "as environmentFiles",
    ),
    h(
        "overrides.containerOverrides[].cpu",
        "replaces the container's cpu",
    ),
    h(
        "overrides.containerOverrides[].memory",
        "replaces the container's memory",
    ),
    h(
        "overrides.containerOverrides[].memoryReservation",
        "replaces the container's memoryReservation",
    ),
    na(
        "overrides.containerOverrides[].resourceRequirements",
        "no GPU or inference accelerator is assigned to a container here: kept in the task's overrides (describe-tasks), nothing else",
    ),
    na(
        "overrides.containerOverrides[].resourceRequirements[].value",
        "as resourceRequirements",
    ),
    na(
        "overrides.containerOverrides[].resourceRequirements[].type",
        "as resourceRequirements",
    ),
    h("overrides.cpu", "replaces the task's cpu"),
    h("overrides.memory", "replaces the task's memory"),
    h(
        "overrides.taskRoleArn",
        "the role the credentials endpoint serves",
    ),
    na(
        "overrides.executionRoleArn",
        "the task definition's executionRoleArn is used for the start-up calls (pulls, secrets, environment files)",
    ),
    h(
        "overrides.ephemeralStorage",
        "replaces the task definition's ephemeralStorage, then as that member (enforced with MINIFARGATE_EPHEMERAL_STORAGE=enforce, else the task says it is not applied)",
    ),
    h(
        "overrides.ephemeralStorage.sizeInGiB",
        "as overrides.ephemeralStorage",
    ),
    na(
        "overrides.inferenceAcceleratorOverrides",
        "no Elastic Inference accelerator is attached here",
    ),
    h(
        "launchType",
        "FARGATE applies the Fargate rules (PlatformTaskDefinitionIncompatibilityException) and is the task's launch type",
    ),
    h("startedBy", "recorded on the task"),
    h("group", "recorded on the task (default family:NAME)"),
    h("tags", "the task's tags"),
    h("tags[].key", "as tags"),
    h("tags[].value", "as tags"),
    h(
        "enableExecuteCommand",
        "recorded on the task; `minifargate exec` works without it",
    ),
    ld(
        "networkConfiguration",
        "the subnet and security groups are recorded in the task's ENI attachment; the task's address comes from this host's bridge subnet and security groups are not enforced",
    ),
    h(
        "capacityProviderStrategy",
        "FARGATE and FARGATE_SPOT (associated with the cluster) resolve to the FARGATE launch type; each task records its provider as capacityProviderName (base, then weight); the cluster's default strategy when neither this nor launchType is given",
    ),
    h(
        "capacityProviderStrategy[].capacityProvider",
        "as capacityProviderStrategy",
    ),
    h(
        "capacityProviderStrategy[].weight",
        "as capacityProviderStrategy",
    ),
    h(
        "capacityProviderStrategy[].base",
        "as capacityProviderStrategy",
    ),
    h(
        "placementConstraints",
        "an EC2 task is placed on the cluster's container instance (this host) only if it satisfies them: memberOf in the cluster query language (attributes, task:group, ...), distinctInstance per group; otherwise a `MemberOf placement constraint unsatisfied.` / `DistinctInstance placement constraint unsatisfied.` failure and no task; recorded on the task; a FARGATE task gets a warning (no container instance); with `serve --cluster`, applied on the cluster's instances together with the task definition's, at most 10 in all",
    ),
    h("placementConstraints[].type", "as placementConstraints"),
    h(
        "placementConstraints[].expression",
        "as placementConstraints",
    ),
    h(
        "placementStrategy",
        "checked (spread on instanceId, host or attribute:NAME; binpack on cpu or memory; random) and recorded; with one container instance every strategy chooses it (cluster placement: docs/cluster.md); a FARGATE task gets a warning",
    ),
    h("placementStrategy[].type", "as placementStrategy"),
    h("placementStrategy[].field", "as placementStrategy"),
    h(
        "platformVersion",
        "recorded and shown on a FARGATE task (LATEST is 1.4.0); refused for EC2, as ECS does; a version other than 1.4.0 gets a task warning (this host behaves as 1.4.0)",
    ),
    h(
        "propagateTags",
        "TASK_DEFINITION copies the task definition's tags to the task (a key the request sets keeps its value); SERVICE is refused, as ECS does",
    ),
    h("referenceId", "recorded on the task"),
    h(
        "enableECSManagedTags",
        "adds aws:ecs:clusterName (and aws:ecs:serviceName for a service's task) to the task's tags",
    ),
    h(
        "clientToken",
        "idempotency per cluster for 24 hours: the same token and request return the first call's tasks; the same token with another request is a ConflictException",
    ),
    na(
        "volumeConfigurations",
        "no EBS volumes: a volume configured at launch is refused unless `--volume-map` serves it",
    ),
];

// Value-dependent classes.

fn network_mode(v: &Value) -> Option<(Class, String)> {
    (v.as_str() == Some("bridge")).then(|| (Class::LocalDifference, BRIDGE.to_string()))
}

/// This host's architecture in ECS's spelling.
pub fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "X86_64",
        "aarch64" => "ARM64",
        other => other,
    }
}

fn cpu_architecture(v: &Value) -> Option<(Class, String)> {
    let want = v.as_str()?;
    let host = host_architecture();
    Some(if want == host {
        (
            Class::Honoured,
            format!("{want} is this host's architecture"),
        )
    } else {
        (
            Class::LocalDifference,
            format!(
                "{want} is not this host's architecture ({host}): the containers run under \
                 emulation through binfmt_misc (qemu-user-static), slower than natively, and \
                 run-task refuses the task when no handler is registered"
            ),
        )
    })
}

fn os_family(v: &Value) -> Option<(Class, String)> {
    let want = v.as_str()?;
    Some(if want == "LINUX" {
        (
            Class::Honoured,
            "the containers run on this Linux host".to_string(),
        )
    } else {
        (
            Class::Refused,
            format!("{want}: run-task refuses it, this host runs Linux containers only"),
        )
    })
}

fn security_options(v: &Value) -> Option<(Class, String)> {
    use super::security_options::SecurityOption;
    let reasons: Vec<String> = v
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .map(SecurityOption::parse)
        // What Docker refuses fails the container, as on ECS: `validate` warns of it.
        .filter(|o| !matches!(o, SecurityOption::Invalid(_)))
        .filter_map(|o| o.not_applied())
        .collect();
    if reasons.is_empty() {
        return Some((Class::Honoured, String::new()));
    }
    Some((Class::NotApplied, reasons.join("; ")))
}

/// The drivers this host runs: awslogs (into the local CloudWatch Logs store), awsfirelens
/// (to the task's log router) and json-file.
fn driver_honoured(d: &str) -> bool {
    matches!(d, "awslogs" | "awsfirelens" | "json-file")
}

fn log_configuration(v: &Value) -> Option<(Class, String)> {
    log_driver(v.get("logDriver")?)
}

fn log_driver(v: &Value) -> Option<(Class, String)> {
    let d = v.as_str()?;
    if driver_honoured(d) {
        return Some((Class::Honoured, String::new()));
    }
    Some((
        Class::LocalDifference,
        format!(
            "the {d} log driver is not used here: the output is kept on this host (`minifargate \
             logs`), nothing reaches Splunk or another destination"
        ),
    ))
}

/// Options of the honoured drivers: awsfirelens's all go to the router's configuration
/// (`supervisor::logs::firelens`); awslogs and json-file's known ones are honoured; others as their
/// driver. `v` is the logConfiguration holding them.
fn log_options(v: &Value) -> Option<(Class, String)> {
    if v.get("logDriver").and_then(Value::as_str) == Some("awsfirelens") {
        return Some((Class::Honoured, String::new()));
    }
    let o = v.get("options")?.as_object()?;
    let known = |k: &str| {
        k.starts_with("awslogs-")
            || matches!(k, "mode" | "max-buffer-size" | "max-size" | "max-file")
    };
    let unused: Vec<&str> = o.keys().map(String::as_str).filter(|k| !known(k)).collect();
    if unused.is_empty() {
        return Some((Class::Honoured, String::new()));
    }
    Some((
        Class::LocalDifference,
        format!(
            "{} not used here (this host runs the awslogs and json-file drivers; other \
             drivers' output is kept on this host)",
            unused.join(", ")
        ),
    ))
}

/// awsfirelens's secret options go to the router (`supervisor::secrets::wanted`); other drivers'
/// are not read. `v` is the logConfiguration holding them.
fn log_secret_options(v: &Value) -> Option<(Class, String)> {
    (v.get("logDriver").and_then(Value::as_str) == Some("awsfirelens"))
        .then(|| (Class::Honoured, String::new()))
}

fn environment_file(v: &Value) -> Option<(Class, String)> {
    let f = v.as_str()?;
    (!(f.starts_with("arn:") || f.starts_with("s3:"))).then(|| {
        (
            Class::LocalDifference,
            format!(
                "{f} is a local file, read from this host's file system at RunTask (ECS takes \
                 only S3 object ARNs here); its variables rank above the task's S3 files"
            ),
        )
    })
}

fn version_consistency(v: &Value) -> Option<(Class, String)> {
    (v.as_str() == Some("disabled")).then(|| {
        (
            Class::Honoured,
            "the tag is resolved when each image is pulled".to_string(),
        )
    })
}

fn volume_driver(v: &Value) -> Option<(Class, String)> {
    let d = v.as_str()?;
    (d != "local").then(|| {
        (
            Class::Refused,
            format!("driver {d:?} is not available here; only the local driver is"),
        )
    })
}

fn driver_opts(v: &Value) -> Option<(Class, String)> {
    let m = v.as_object()?;
    let other: Vec<&str> = m
        .keys()
        .map(String::as_str)
        .filter(|k| !matches!(*k, "type" | "o" | "device"))
        .collect();
    let kind = m.get("type").and_then(Value::as_str);
    if !other.is_empty() || !matches!(kind, None | Some("tmpfs" | "none")) {
        return Some((
            Class::Refused,
            "only the local driver's type=tmpfs and type=none,o=bind,device=PATH are available here"
                .to_string(),
        ));
    }
    None
}

fn configured_at_launch(v: &Value) -> Option<(Class, String)> {
    (v.as_bool() == Some(true)).then(|| {
        (
            Class::Refused,
            "run-task has no volumeConfigurations here: the volume is refused unless \
             `--volume-map NAME=/local/dir` serves it from a local directory"
                .to_string(),
        )
    })
}

/// The row of a JSON path (`[]` for list elements).
pub fn row(table: &'static [Row], path: &str) -> Option<&'static Row> {
    table.iter().find(|r| r.path == path)
}

/// How many members of `table` are in each class.
#[cfg(test)]
pub fn counts(table: &[Row]) -> Vec<(Class, usize)> {
    Class::ALL
        .iter()
        .map(|c| (*c, table.iter().filter(|r| r.class == *c).count()))
        .collect()
}

/// A warning for every member present in `value` (a task definition or a RunTask request
/// as JSON) that is not fully honoured. Below a member that was reported, its members of
/// the same class are not reported again (one warning for `efsVolumeConfiguration`, not
/// one per member of it).
pub fn findings(table: &'static [Row], value: &Value) -> Vec<Finding> {
    let mut out = Vec::new();
    walk(table, value, &JsonPath::root(), "", None, &mut out);
    // Whatever order serde_json keeps object members in, the same input warns the same way.
    out.sort_by_cached_key(|f| f.path.to_string());
    out
}

/// [`findings`] for the members a task definition has.
pub fn members(def: &TaskDefinition) -> Vec<Finding> {
    match serde_json::to_value(def) {
        Ok(v) => findings(TASK_DEFINITION, &v),
        Err(_) => Vec::new(),
    }
}

/// What `validate` says: [`members`], and the bridge mode a definition gets on EC2 without
/// a `networkMode` (a task launched as FARGATE gets awsvpc instead, so at run time the
/// launch decides: [`implicit_bridge`]).
pub fn task_definition(def: &TaskDefinition) -> Vec<Finding> {
    let mut out = members(def);
    let fargate = def
        .requires_compatibilities
        .iter()
        .flatten()
        .any(|c| *c == super::model::Compatibility::Fargate);
    if def.network_mode.is_none() && !fargate {
        out.push(Finding::warning(
            "local-difference",
            JsonPath::root().key("networkMode"),
            implicit_bridge(),
        ));
        out.sort_by_cached_key(|f| f.path.to_string());
    }
    out
}

/// The warning for a task that runs in bridge mode because its definition names none
/// (ECS's default on EC2). Ref: ecs.json `RegisterTaskDefinitionRequest.networkMode`.
pub fn implicit_bridge() -> String {
    format!(
        "{}: absent, so bridge (ECS's default on EC2): {}",
        Class::LocalDifference.lead(),
        BRIDGE
    )
}

const BRIDGE: &str = "the task's containers share one network namespace (Docker gives each \
                      container its own, joined by links), so they also reach each other on \
                      localhost";

fn walk(
    table: &'static [Row],
    v: &Value,
    at: &JsonPath,
    generic: &str,
    reported: Option<Class>,
    out: &mut Vec<Finding>,
) {
    match v {
        Value::Array(items) => {
            let g = format!("{generic}[]");
            for (i, item) in items.iter().enumerate() {
                walk(table, item, &at.index(i), &g, reported, out);
            }
        }
        Value::Object(members) => {
            for (k, child) in members {
                let g = if generic.is_empty() {
                    k.clone()
                } else {
                    format!("{generic}.{k}")
                };
                // Not a member (a key of a map such as dockerLabels): not walked.
                let Some(r) = row(table, &g) else { continue };
                // Unset, as the parser reads it (`null`, `""`, `[]`, `{}`), or `false`: ECS's
                // default, which is what happens here too (`disableNetworking: false`).
                if is_unset(child) {
                    continue;
                }
                let refined = r
                    .refine
                    .and_then(|f| if r.in_parent { f(v) } else { f(child) });
                let (class, reason) = match refined {
                    Some((c, why)) => (c, why),
                    None => (r.class, r.note.to_string()),
                };
                let p = at.key(k);
                let mut below = reported;
                if let Some(rule) = class.rule()
                    && reported != Some(class)
                {
                    out.push(Finding::warning(
                        rule,
                        p.clone(),
                        format!("{}: {reason}", class.lead()),
                    ));
                    below = Some(class);
                }
                walk(table, child, &p, &g, below, out);
            }
        }
        _ => {}
    }
}

/// Whether a finding's rule is one of this table's (`not-applied`, `local-difference`,
/// `refused-here`).
pub fn is_coverage_rule(rule: &str) -> bool {
    Class::ALL.iter().any(|c| c.rule() == Some(rule))
}

/// ECS's defaults: an absent, null, false or empty member asks for nothing (the service
/// coverage tables, `api::coverage`, read requests so too).
pub fn is_unset(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
        _ => false,
    }
}

/// Task warnings for [`findings`]: `PATH: MESSAGE`. Refused members are not among them:
/// a task that has one is refused before it exists.
pub fn task_warnings(findings: &[Finding]) -> Vec<String> {
    findings
        .iter()
        .filter(|f| f.rule != "refused-here")
        .map(|f| format!("{}: {}", f.path, f.message))
        .collect()
}

/// The parameter table of docs/taskdefs.md: member, class, what happens here.
#[cfg(test)]
pub fn markdown(table: &[Row]) -> String {
    let mut s = String::from("| Member | Class | What happens here |\n|---|---|---|\n");
    for r in table {
        let note = if r.refine.is_some() {
            format!("{} (the class depends on the value)", r.note)
        } else {
            r.note.to_string()
        };
        s.push_str(&format!(
            "| `{}` | {} | {} |\n",
            r.path,
            r.class.label(),
            note.replace('|', "\\|")
        ));
    }
    s
}

/// Fails for a model member without a row, and for a row naming no model member (the
/// tests of this module and of `ecs::tasks` for the RunTask request).
#[cfg(test)]
pub fn check_table(table: &[Row], members: Vec<String>) {
    use std::collections::BTreeSet;
    {
        let model: BTreeSet<&str> = members.iter().map(String::as_str).collect();
        let rows: Vec<&str> = table.iter().map(|r| r.path).collect();
        let missing: Vec<&&str> = model.iter().filter(|p| !rows.contains(p)).collect();
        assert!(
            missing.is_empty(),
            "members without a classification in taskdef::coverage: {missing:#?}"
        );
        let stale: Vec<&&str> = rows.iter().filter(|p| !model.contains(*p)).collect();
        assert!(
            stale.is_empty(),
            "rows of taskdef::coverage naming no member of the model: {stale:#?}"
        );
        let unique: BTreeSet<&&str> = rows.iter().collect();
        assert_eq!(unique.len(), rows.len(), "a member classified twice");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_definition_member_is_classified() {
        check_table(
            TASK_DEFINITION,
            super::super::members::paths::<TaskDefinition>(),
        );
    }

    #[test]
    fn the_check_fails_on_a_missing_or_stale_row() {
        let mut members = super::super::members::paths::<TaskDefinition>();
        members.push("containerDefinitions[].brandNew".into());
        assert!(std::panic::catch_unwind(|| check_table(TASK_DEFINITION, members)).is_err());
        let members: Vec<String> = super::super::members::paths::<TaskDefinition>()
            .into_iter()
            .filter(|p| p != "pidMode")
            .collect();
        assert!(std::panic::catch_unwind(|| check_table(TASK_DEFINITION, members)).is_err());
    }

    fn warnings(json: &str) -> Vec<(String, &'static str, String)> {
        let def: TaskDefinition = serde_json::from_str(json).unwrap();
        members(&def)
            .into_iter()
            .map(|f| (f.path.to_string(), f.rule, f.message))
            .collect()
    }

    #[test]
    fn awsfirelens_options_and_secret_options_are_honoured() {
        let w = warnings(
            r#"{"networkMode":"awsvpc","containerDefinitions":[
                {"name":"r","firelensConfiguration":{"type":"fluentbit",
                  "options":{"enable-ecs-log-metadata":"true"}}},
                {"name":"a","logConfiguration":{"logDriver":"awsfirelens",
                  "options":{"Name":"datadog","apikey":"x"},
                  "secretOptions":[{"name":"apikey","valueFrom":"arn:aws:ssm:us-east-1:1:parameter/k"}]}}]}"#,
        );
        assert!(w.is_empty(), "{w:?}");
        // Another driver's secret options are not read, and say so once.
        let w = warnings(
            r#"{"networkMode":"awsvpc","containerDefinitions":[{"name":"a","logConfiguration":
                {"logDriver":"awslogs","options":{"awslogs-group":"g"},
                 "secretOptions":[{"name":"k","valueFrom":"p"}]}}]}"#,
        );
        let paths: Vec<&str> = w.iter().map(|(p, _, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            ["containerDefinitions[0].logConfiguration.secretOptions"]
        );
    }

    #[test]
    fn present_members_that_are_not_honoured_are_warned_about() {
        let w = warnings(
            r#"{"family":"a","pidMode":"task","ipcMode":"host","networkMode":"awsvpc",
                "containerDefinitions":[{"name":"x","image":"busybox","memory":64,
                  "dockerLabels":{"pidMode":"x"},
                  "dockerSecurityOptions":["no-new-privileges","apparmor:x","label:type:x"],
                  "logConfiguration":{"logDriver":"awslogs","options":{"a":"b"},
                    "secretOptions":[{"name":"k","valueFrom":"arn:aws:ssm:x"}]}}],
                "volumes":[{"name":"v","efsVolumeConfiguration":{"fileSystemId":"fs-1"}}]}"#,
        );
        let paths: Vec<(&str, &str)> = w.iter().map(|(p, r, _)| (p.as_str(), *r)).collect();
        assert_eq!(
            paths,
            [
                (
                    "containerDefinitions[0].dockerSecurityOptions",
                    "not-applied"
                ),
                (
                    "containerDefinitions[0].logConfiguration.options",
                    "local-difference"
                ),
                (
                    "containerDefinitions[0].logConfiguration.secretOptions",
                    "not-applied"
                ),
                ("volumes[0].efsVolumeConfiguration", "refused-here"),
            ]
        );
        // pidMode, ipcMode, no-new-privileges and apparmor are honoured: not named.
        assert!(
            w[0].2
                .starts_with("not applied here: label:type:x: this host does not label"),
            "{}",
            w[0].2
        );
        assert!(!w[0].2.contains("apparmor"), "{}", w[0].2);
        assert!(w[2].2.starts_with("not applied here: "), "{}", w[2].2);
        // Honoured values of value-dependent members say nothing.
        assert!(
            warnings(
                r#"{"networkMode":"awsvpc","containerDefinitions":[{"dockerSecurityOptions":
                ["no-new-privileges"],"environmentFiles":[{"value":"arn:aws:s3:::b/a.env","type":"s3"}]}]}"#
            )
            .is_empty()
        );
        let bridge = warnings(r#"{"networkMode":"bridge"}"#);
        assert_eq!(bridge[0].1, "local-difference");
        assert!(warnings(r#"{"runtimePlatform":{"operatingSystemFamily":"LINUX"}}"#).is_empty());
        let win =
            warnings(r#"{"runtimePlatform":{"operatingSystemFamily":"WINDOWS_SERVER_2022_CORE"}}"#);
        assert_eq!(win[0].0, "runtimePlatform.operatingSystemFamily");
    }

    #[test]
    fn unset_and_false_members_are_ecs_defaults() {
        assert!(
            warnings(
                r#"{"networkMode":"awsvpc","enableFaultInjection":false,"placementConstraints":[],
                "containerDefinitions":[{"disableNetworking":false,"versionConsistency":"disabled",
                  "resourceRequirements":[]}]}"#
            )
            .is_empty()
        );
        // Honoured (its own network namespace, loopback only): nothing to say.
        assert!(warnings(r#"{"containerDefinitions":[{"disableNetworking":true}]}"#).is_empty());
    }

    #[test]
    fn an_absent_network_mode_is_bridge_outside_fargate() {
        let warnings = |json: &str| -> Vec<(String, &'static str, String)> {
            task_definition(&serde_json::from_str(json).unwrap())
                .into_iter()
                .map(|f| (f.path.to_string(), f.rule, f.message))
                .collect()
        };
        let w = warnings(r#"{"family":"a"}"#);
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(
            (w[0].0.as_str(), w[0].1),
            ("networkMode", "local-difference")
        );
        assert!(w[0].2.contains("absent, so bridge"), "{w:?}");
        assert!(warnings(r#"{"requiresCompatibilities":["FARGATE"]}"#).is_empty());
        assert!(warnings(r#"{"networkMode":"awsvpc"}"#).is_empty());
    }

    #[test]
    fn task_warnings_leave_out_refusals() {
        let def: TaskDefinition = serde_json::from_str(
            r#"{"placementConstraints":[{"type":"memberOf","expression":"x"}],"volumes":[{"name":"v","efsVolumeConfiguration":{"fileSystemId":"fs-1"}}]}"#,
        )
        .unwrap();
        let w = task_warnings(&members(&def));
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("placementConstraints: not applied here: "),
            "{w:?}"
        );
    }

    /// docs/taskdefs.md holds the rendered tables between markers; `UPDATE_DOCS=1` rewrites
    /// them.
    #[test]
    fn docs_parameter_table_is_the_coverage_table() {
        let file = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/taskdefs.md");
        let text = std::fs::read_to_string(file).unwrap();
        let mut want = text.clone();
        for (name, table) in [("task-definition", TASK_DEFINITION), ("run-task", RUN_TASK)] {
            let begin = format!("<!-- coverage:{name}:begin -->\n");
            let end = format!("<!-- coverage:{name}:end -->");
            let (Some(b), Some(e)) = (want.find(&begin), want.find(&end)) else {
                panic!("docs/taskdefs.md lacks the markers {begin:?} and {end:?}");
            };
            let counts = counts(table)
                .into_iter()
                .map(|(c, n)| format!("{} {n}", c.label()))
                .collect::<Vec<_>>()
                .join(", ");
            let body = format!("{}\n{counts}.\n", markdown(table));
            want.replace_range(b + begin.len()..e, &body);
        }
        if want != text {
            if std::env::var_os("UPDATE_DOCS").is_some() {
                std::fs::write(file, &want).unwrap();
            } else {
                panic!(
                    "docs/taskdefs.md's parameter tables differ from taskdef::coverage; \
                     run `UPDATE_DOCS=1 cargo test --bin minifargate taskdef::coverage` to \
                     rewrite them"
                );
            }
        }
    }
}
