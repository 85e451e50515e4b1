//! The box as a container instance: ListContainerInstances, DescribeContainerInstances and
//! StartTask. This host is the one container instance of every ACTIVE cluster (EC2
//! semantics): its registered resources are the host's CPUs and memory, its remaining
//! ones what the cluster's EC2 tasks that are not STOPPED leave; FARGATE tasks run on no
//! container instance, as in ECS. RunTask and StartTask of an EC2 task place it on this
//! instance through `ecs::placement` ([`on_box`] is the candidate), so remaining
//! resources and placement use one accounting ([`Need::of`]).

use super::clusters::not_found_cluster;
use super::names::cluster_name;
use super::names::task_id;
use super::{Ecs, EcsError, EcsResult, cluster_or_default, page};
use crate::ecs::placement::{Candidate, Need};
use crate::store::{ClusterStatus, DesiredStatus, LastStatus, Tag};
use crate::task::shape;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The ports the ECS agent reserves on every container instance. Ref: amazon-ecs-agent
/// `agent/config/config.go` (`DefaultReservedPorts`: SSH 22, the Docker daemon 2375/2376,
/// the agent 51678/51679).
pub(crate) const RESERVED_PORTS: [u16; 5] = [22, 2375, 2376, 51678, 51679];

/// The agent version this host reports: this product's own (semver, Cargo.toml's
/// `version`), so `memberOf(agentVersion >= …)` tells builds apart.
pub(crate) const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The capabilities and attributes of this host, named as the ECS agent reports them
/// (`com.amazonaws.ecs.capability.*` for the older ones, `ecs.capability.*` after).
/// Ref: amazon-ecs-agent `agent/app/agent_capability.go`. Only what this host does.
const CAPABILITIES: &[&str] = &[
    "com.amazonaws.ecs.capability.task-iam-role",
    "com.amazonaws.ecs.capability.task-iam-role-network-host",
    "com.amazonaws.ecs.capability.logging-driver.awslogs",
    "com.amazonaws.ecs.capability.logging-driver.json-file",
    "com.amazonaws.ecs.capability.ecr-auth",
    "ecs.capability.task-eni",
    "ecs.capability.task-cpu-mem-limit",
    "ecs.capability.execution-role-ecr-pull",
    "ecs.capability.execution-role-awslogs",
    "ecs.capability.secrets.ssm.environment-variables",
    "ecs.capability.secrets.asm.environment-variables",
    "ecs.capability.private-registry-authentication.secretsmanager",
    "ecs.capability.container-health-check",
    "ecs.capability.container-ordering",
    "ecs.capability.env-files.s3",
    "ecs.capability.execute-command",
];

/// ecs.json `Attribute`: on a container instance its name and value; PutAttributes,
/// DeleteAttributes and ListAttributes also carry its target.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attribute {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_id: Option<String>,
}

/// ecs.json `Resource`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Resource {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub double_value: f64,
    pub long_value: i64,
    pub integer_value: i64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub string_set_value: Vec<String>,
}

impl Resource {
    pub(crate) fn integer(name: &str, v: i64) -> Resource {
        Resource {
            name: name.into(),
            kind: "INTEGER".into(),
            double_value: 0.0,
            long_value: 0,
            integer_value: v,
            string_set_value: Vec::new(),
        }
    }
    pub(crate) fn ports(name: &str, ports: &[u16]) -> Resource {
        Resource {
            name: name.into(),
            kind: "STRINGSET".into(),
            double_value: 0.0,
            long_value: 0,
            integer_value: 0,
            string_set_value: ports.iter().map(u16::to_string).collect(),
        }
    }
}

/// ecs.json `VersionInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionInfo {
    pub agent_version: String,
    pub agent_hash: String,
}

/// ecs.json `ContainerInstance`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerInstance {
    pub agent_connected: bool,
    /// The box's EC2 instance id (`store::instance_id`): kept in the state root on one
    /// box, in an agent's registration in a cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ec2_instance_id: Option<String>,
    pub attachments: Vec<Value>,
    pub attributes: Vec<Attribute>,
    pub container_instance_arn: String,
    pub pending_tasks_count: i64,
    pub registered_at: crate::taskdef::timestamp::Timestamp,
    pub registered_resources: Vec<Resource>,
    pub remaining_resources: Vec<Resource>,
    pub running_tasks_count: i64,
    pub status: String,
    pub tags: Vec<Tag>,
    pub version: i64,
    pub version_info: VersionInfo,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListContainerInstancesRequest {
    pub cluster: Option<String>,
    /// Cluster query language (`crate::taskdef::query`).
    pub filter: Option<String>,
    pub status: Option<String>,
    pub max_results: Option<i64>,
    pub next_token: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListContainerInstancesResponse {
    pub container_instance_arns: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeContainerInstancesRequest {
    pub cluster: Option<String>,
    #[serde(default)]
    pub container_instances: Vec<String>,
    #[serde(default)]
    pub include: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeContainerInstancesResponse {
    pub container_instances: Vec<ContainerInstance>,
    pub failures: Vec<super::shapes::Failure>,
}

/// The cluster's ACTIVE row: ClusterNotFoundException otherwise (`default` exists once a
/// task or CreateCluster made it).
pub(crate) fn active_cluster(
    store: &crate::store::Store,
    cluster: &str,
) -> EcsResult<crate::store::ClusterRow> {
    match store.cluster(cluster).map_err(anyhow::Error::from)? {
        Some(c) if c.status == ClusterStatus::Active => Ok(c),
        _ => Err(not_found_cluster(cluster)),
    }
}

fn attributes() -> Vec<Attribute> {
    let mut v: Vec<Attribute> = CAPABILITIES
        .iter()
        .map(|c| Attribute {
            name: (*c).into(),
            ..Default::default()
        })
        .collect();
    v.extend(builtin_attributes());
    v
}

/// The attributes ECS gives every Linux container instance, with this host's values.
/// Ref: ECS's built-in attributes (developerguide/task-placement-constraints.html,
/// "Attributes": ecs.cpu-architecture, ecs.os-type, ecs.os-family).
pub(crate) fn builtin_attributes() -> Vec<Attribute> {
    let arch = match std::env::consts::ARCH {
        "aarch64" => "arm64",
        other => other,
    };
    [
        ("ecs.cpu-architecture", arch),
        ("ecs.os-type", "linux"),
        ("ecs.os-family", "LINUX"),
    ]
    .into_iter()
    .map(|(n, val)| Attribute {
        name: n.into(),
        value: Some(val.into()),
        ..Default::default()
    })
    .collect()
}

/// The host's CPU units (1,024 a CPU) and memory (MiB), as the agent registers them.
pub(crate) fn host_resources() -> (i64, i64) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as i64;
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        })
        .unwrap_or(0);
    (cpus * 1024, mem_kib / 1024)
}

/// This host as cluster `c`'s container instance, as placement sees it, with how many of
/// the cluster's EC2 tasks run and are pending on it.
pub(crate) struct BoxUse {
    pub candidate: Candidate,
    pub registered_cpu: i64,
    pub registered_memory: i64,
    pub running: i64,
    pub pending: i64,
}

/// What cluster `c`'s EC2 tasks that are not STOPPED take from this host (their
/// [`Need::of`], the same accounting RunTask places with): a task's resources come back
/// when it is STOPPED, as the agent frees them; distinctInstance and `task:group` count the
/// tasks whose desired status is not STOPPED (ECS: "looks at the desired status").
pub(crate) fn on_box(
    store: &crate::store::Store,
    cluster: &str,
    cluster_arn: &str,
    registered_at_ms: i64,
) -> EcsResult<BoxUse> {
    let (cpu, mem) = host_resources();
    let arn = shape::container_instance_arn(cluster_arn);
    let mut candidate = Candidate {
        id: task_id(&arn).to_string(),
        arn,
        ec2_instance_id: store.ec2_instance_id().map_err(anyhow::Error::from)?,
        attributes: attributes()
            .into_iter()
            .map(|a| (a.name, a.value))
            .collect(),
        active: true,
        connected: true,
        agent_version: AGENT_VERSION.into(),
        registered_at_ms,
        remaining_cpu: cpu,
        remaining_memory: mem,
        used_ports: RESERVED_PORTS.into_iter().collect(),
        used_udp_ports: Default::default(),
        tasks: Vec::new(),
    };
    let (mut running, mut pending) = (0, 0);
    for t in store.placement_rows(cluster).map_err(anyhow::Error::from)? {
        match t.last_status {
            LastStatus::Running => running += 1,
            LastStatus::Stopped => continue,
            _ => pending += 1,
        }
        let group = t
            .group
            .clone()
            .unwrap_or_else(|| format!("family:{}", t.family));
        let mode = crate::supervisor::launch::network_mode(&t.definition, &t.launch_type);
        let need = Need::of(&t.definition, mode, group.clone());
        need.take(&mut candidate);
        if t.desired_status == DesiredStatus::Stopped {
            candidate.tasks.pop();
        }
    }
    Ok(BoxUse {
        candidate,
        registered_cpu: cpu,
        registered_memory: mem,
        running,
        pending,
    })
}

/// This host as cluster `c`'s container instance, with what its EC2 tasks use.
fn instance(ecs: &Ecs, c: &crate::store::ClusterRow) -> EcsResult<ContainerInstance> {
    let store = ecs.open_store()?;
    let BoxUse {
        candidate: b,
        registered_cpu: cpu,
        registered_memory: mem,
        running,
        pending,
    } = on_box(&store, &c.name, &c.arn, c.created_at_ms)?;
    let ports: Vec<u16> = b.used_ports.iter().copied().collect();
    let udp: Vec<u16> = b.used_udp_ports.iter().copied().collect();
    Ok(ContainerInstance {
        agent_connected: true,
        ec2_instance_id: Some(store.ec2_instance_id().map_err(anyhow::Error::from)?),
        attachments: Vec::new(),
        attributes: attributes(),
        container_instance_arn: b.arn,
        pending_tasks_count: pending,
        registered_at: crate::taskdef::timestamp::Timestamp::from_ms(c.created_at_ms),
        registered_resources: vec![
            Resource::integer("CPU", cpu),
            Resource::integer("MEMORY", mem),
            Resource::ports("PORTS", &RESERVED_PORTS),
            Resource::ports("PORTS_UDP", &[]),
        ],
        remaining_resources: vec![
            Resource::integer("CPU", b.remaining_cpu.max(0)),
            Resource::integer("MEMORY", b.remaining_memory.max(0)),
            Resource::ports("PORTS", &ports),
            Resource::ports("PORTS_UDP", &udp),
        ],
        running_tasks_count: running,
        status: "ACTIVE".into(),
        tags: Vec::new(),
        version: 1,
        version_info: VersionInfo {
            agent_version: AGENT_VERSION.into(),
            agent_hash: env!("CARGO_PKG_VERSION").into(),
        },
    })
}

/// Whether `reference` (an id or ARN) names cluster `c`'s container instance.
pub(crate) fn is_ours(c: &crate::store::ClusterRow, reference: &str) -> bool {
    let ours = shape::container_instance_arn(&c.arn);
    reference == ours || reference == task_id(&ours)
}

/// ListContainerInstances. Ref: ecs.json `ListContainerInstancesRequest.status` (ACTIVE,
/// DRAINING, REGISTERING, DEREGISTERING, REGISTRATION_FAILED); this host is always ACTIVE.
pub fn list_container_instances(
    ecs: &Ecs,
    req: &ListContainerInstancesRequest,
) -> EcsResult<ListContainerInstancesResponse> {
    const STATUSES: [&str; 5] = [
        "ACTIVE",
        "DRAINING",
        "REGISTERING",
        "DEREGISTERING",
        "REGISTRATION_FAILED",
    ];
    if let Some(s) = req.status.as_deref()
        && !STATUSES.contains(&s)
    {
        return Err(EcsError::invalid(format!(
            "status {s:?}: must be one of {}",
            STATUSES.join(", ")
        )));
    }
    let cluster = cluster_name(cluster_or_default(req.cluster.as_deref()));
    let store = ecs.open_store()?;
    let c = active_cluster(&store, cluster)?;
    let mut arns = Vec::new();
    let status_ok = req.status.as_deref().is_none_or(|s| s == "ACTIVE");
    if status_ok && matches_filter(&store, &c, req.filter.as_deref())? {
        arns.push(shape::container_instance_arn(&c.arn));
    }
    let (container_instance_arns, next_token) =
        page(arns, req.max_results, 100, req.next_token.as_deref())?;
    Ok(ListContainerInstancesResponse {
        container_instance_arns,
        next_token,
    })
}

/// Whether this host, as cluster `c`'s container instance, is selected by `filter`, in the
/// cluster query language (`crate::taskdef::query`: attributes, `agentConnected`,
/// `ec2InstanceId`, `runningTasksCount`, `task:group`, ...). Ref:
/// developerguide/cluster-query-language.html. A filter that does not parse is
/// InvalidParameterException naming what was expected.
fn matches_filter(
    store: &crate::store::Store,
    c: &crate::store::ClusterRow,
    filter: Option<&str>,
) -> EcsResult<bool> {
    let Some(f) = filter.map(str::trim).filter(|f| !f.is_empty()) else {
        return Ok(true);
    };
    let q = crate::taskdef::query::Query::parse(f)
        .map_err(|e| EcsError::invalid(format!("filter {f:?}: {e}")))?;
    let b = on_box(store, &c.name, &c.arn, c.created_at_ms)?;
    Ok(q.matches(&b.candidate))
}

/// DescribeContainerInstances. Ref: ecs.json `DescribeContainerInstancesRequest`
/// (`containerInstances` required, up to 100; `include` TAGS or CONTAINER_INSTANCE_HEALTH).
pub fn describe_container_instances(
    ecs: &Ecs,
    req: &DescribeContainerInstancesRequest,
) -> EcsResult<DescribeContainerInstancesResponse> {
    if req.container_instances.is_empty() || req.container_instances.len() > 100 {
        return Err(EcsError::invalid(format!(
            "containerInstances: {} given; name 1 to 100 container instance ids or ARNs",
            req.container_instances.len()
        )));
    }
    for i in &req.include {
        if i != "TAGS" && i != "CONTAINER_INSTANCE_HEALTH" {
            return Err(EcsError::invalid(format!(
                "include {i:?}: must be TAGS or CONTAINER_INSTANCE_HEALTH"
            )));
        }
    }
    let cluster = cluster_name(cluster_or_default(req.cluster.as_deref()));
    let mut store = ecs.open_store()?;
    ecs.reconcile(&mut store);
    let c = active_cluster(&store, cluster)?;
    let mut out = DescribeContainerInstancesResponse {
        container_instances: Vec::new(),
        failures: Vec::new(),
    };
    for r in &req.container_instances {
        if is_ours(&c, r) {
            out.container_instances.push(instance(ecs, &c)?);
        } else {
            out.failures
                .push(super::shapes::Failure::missing(r.clone()));
        }
    }
    Ok(out)
}
