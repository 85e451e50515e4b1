//! The ECS shape of a task (ecs.json `Task`, `Container`, `Attachment`), as RunTask,
//! DescribeTasks and StopTask answer it; timestamps rendered by each protocol.

use crate::store::Recorded;
use crate::store::{
    AttachmentStatus, Binding, Connectivity, ContainerRow, DesiredStatus, HealthStatus, LastStatus,
    NetworkRow, StopCode, Tag, TaskOverride, TaskRow,
};
use crate::taskdef::timestamp::Timestamp;
use serde::{Deserialize, Serialize};

/// The name of the task `attributes` that carry the task's warnings (ecs.json `Attribute`:
/// name and value; ECS's own task attributes are named like `ecs.cpu-architecture`).
pub const WARNING_ATTRIBUTE: &str = "minifargate.warning";

fn ts(v: Option<i64>) -> Option<Timestamp> {
    v.map(Timestamp::from_ms)
}

/// ecs.json `Task`, as RunTask, DescribeTasks and StopTask answer it. Members in
/// alphabetical order, as the AWS CLI prints them; timestamps rendered by each protocol
/// (`taskdef::timestamp`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    pub attachments: Vec<Attachment>,
    pub attributes: Vec<KeyValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity_provider_name: Option<String>,
    pub cluster_arn: String,
    pub connectivity: Connectivity,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connectivity_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_instance_arn: Option<String>,
    pub containers: Vec<Container>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
    pub desired_status: DesiredStatus,
    pub enable_execute_command: bool,
    pub ephemeral_storage: EphemeralStorage,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_stopped_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    pub health_status: HealthStatus,
    pub last_status: LastStatus,
    pub launch_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// Not an ECS member: what this host does differently, so nobody is misled.
    #[serde(
        rename = "minifargateWarnings",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub minifargate_warnings: Vec<String>,
    pub overrides: Overrides,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform_family: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pull_started_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pull_stopped_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_code: Option<StopCode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopping_at: Option<Timestamp>,
    pub tags: Vec<Tag>,
    pub task_arn: String,
    pub task_definition_arn: String,
    pub version: i64,
}

/// ecs.json `Container`, within a [`Task`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    pub container_arn: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    pub health_status: HealthStatus,
    pub image: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    pub last_status: LastStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_reservation: Option<String>,
    pub name: String,
    pub network_bindings: Vec<Binding>,
    pub network_interfaces: Vec<NetworkInterface>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime_id: Option<String>,
    pub task_arn: String,
}

/// ecs.json `Attachment`: the ENI of an awsvpc task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    pub details: Vec<KeyValue>,
    pub id: String,
    pub status: AttachmentStatus,
    #[serde(rename = "type")]
    pub kind: String,
}

/// ecs.json `KeyValuePair` (attachment details) and `Attribute` without a target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    pub name: String,
    pub value: String,
}

impl KeyValue {
    fn new(name: &str, value: impl Into<String>) -> KeyValue {
        KeyValue {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// ecs.json `NetworkInterface` of a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkInterface {
    pub attachment_id: String,
    pub private_ipv4_address: String,
}

/// ecs.json `TaskEphemeralStorage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EphemeralStorage {
    #[serde(rename = "sizeInGiB")]
    pub size_in_gib: u32,
}

/// ecs.json `TaskOverride` as a task reports it: the RunTask overrides, with the lists
/// ECS always shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Overrides {
    #[serde(flatten)]
    pub run_task: TaskOverride,
    pub inference_accelerator_overrides: Vec<KeyValue>,
}

/// `arn:aws:ecs:<region>:<account>:cluster/<name>` from a task ARN.
pub fn cluster_arn(task_arn: &str, cluster: &str) -> String {
    let prefix = task_arn.split(":task/").next().unwrap_or("");
    format!("{prefix}:cluster/{cluster}")
}

/// The Fargate platform version `LATEST` means, and every FARGATE task reports when none
/// was asked for. Ref: docs.aws.amazon.com/AmazonECS/latest/developerguide/platform-linux-fargate.html
/// ("1.4.0 ... LATEST").
pub const FARGATE_LATEST: &str = "1.4.0";

/// The ARN of this host as the one container instance of the cluster `cluster_arn`
/// (`…:container-instance/<cluster>/<32 hex>`): a stable id derived from the cluster ARN,
/// so it is the same on every call without being stored.
/// Ref: API_ContainerInstance `containerInstanceArn` ("arn:aws:ecs:region:aws_account_id:
/// container-instance/cluster-name/container-instance-id").
pub fn container_instance_arn(cluster_arn: &str) -> String {
    let (prefix, name) = cluster_arn
        .rsplit_once(":cluster/")
        .unwrap_or((cluster_arn, "default"));
    let mut h: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    for b in cluster_arn.bytes() {
        h ^= u128::from(b);
        h = h.wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013B);
    }
    format!("{prefix}:container-instance/{name}/{h:032x}")
}

/// A task's network as describe-tasks shows it.
struct NetView<'a> {
    row: &'a NetworkRow,
    rec: Option<Recorded>,
}

impl NetView<'_> {
    fn awsvpc(&self) -> bool {
        self.row.mode == "awsvpc"
    }

    /// The ENI attachment of an awsvpc task. Ref: ecs.json `Attachment`; a RunTask
    /// response (PRECREATED) has only the subnet.
    fn attachment(&self, task_id: &str) -> Attachment {
        let cfg = &self.row.configuration;
        let subnet = cfg["subnets"][0]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| local_subnet_id(self.row));
        let mut details = vec![KeyValue::new("subnetId", subnet)];
        if let Some(rec) = &self.rec {
            let eni = format!("eni-{}", &task_id[..task_id.len().min(17)]);
            details.push(KeyValue::new("networkInterfaceId", eni));
            if let Some(mac) = &rec.net.mac {
                details.push(KeyValue::new("macAddress", mac.clone()));
            }
            if let Some(dns) = &rec.private_dns_name {
                details.push(KeyValue::new("privateDnsName", dns.clone()));
            }
            if let Some(ip) = rec.net.ip {
                details.push(KeyValue::new("privateIPv4Address", ip.to_string()));
            }
        }
        Attachment {
            details,
            id: self.row.attachment_id.clone(),
            status: self.row.attachment_status,
            kind: "ElasticNetworkInterface".into(),
        }
    }

    fn interfaces(&self) -> Vec<NetworkInterface> {
        match self.rec.as_ref().and_then(|r| r.net.ip) {
            Some(ip) if self.awsvpc() && self.row.attachment_status != AttachmentStatus::Failed => {
                vec![NetworkInterface {
                    attachment_id: self.row.attachment_id.clone(),
                    private_ipv4_address: ip.to_string(),
                }]
            }
            _ => Vec::new(),
        }
    }

    /// Host port bindings of one container (bridge and host mode; in awsvpc mode ECS
    /// reports none: the ports are on the task's ENI).
    fn bindings(&self, container: &str) -> Vec<Binding> {
        let Some(rec) = &self.rec else {
            return Vec::new();
        };
        if self.awsvpc() || self.row.attachment_status == AttachmentStatus::Failed {
            return Vec::new();
        }
        rec.bindings
            .iter()
            .filter(|b| b.container == container)
            .map(|b| b.binding.clone())
            .collect()
    }
}

/// A stable stand-in `subnet-…` id for this host's bridge when RunTask named no subnet.
fn local_subnet_id(row: &NetworkRow) -> String {
    let key = format!(
        "{}/{}",
        row.bridge.as_deref().unwrap_or(""),
        row.subnet.as_deref().unwrap_or("")
    );
    let h = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("subnet-{h:017x}")
}

fn container(t: &TaskRow, c: &ContainerRow, net: Option<&NetView>) -> Container {
    Container {
        container_arn: c.arn.clone(),
        cpu: c.cpu.clone(),
        exit_code: c.exit_code,
        health_status: c.health_status.unwrap_or(HealthStatus::Unknown),
        image: c.image.clone(),
        image_digest: c.image_digest.clone(),
        last_status: c.last_status,
        memory: c.memory.clone(),
        memory_reservation: c.memory_reservation.clone(),
        name: c.name.clone(),
        network_bindings: net.map_or_else(Vec::new, |n| n.bindings(&c.name)),
        network_interfaces: net.map_or_else(Vec::new, NetView::interfaces),
        reason: c.reason.clone(),
        runtime_id: c.runtime_id.clone(),
        task_arn: t.arn.clone(),
    }
}

/// Task health: the worst over essential containers with a health check (UNHEALTHY >
/// UNKNOWN > HEALTHY); UNKNOWN when none has one. Ref: ecs.json `Task.healthStatus`.
pub fn task_health(containers: &[ContainerRow]) -> HealthStatus {
    let states: Vec<HealthStatus> = containers
        .iter()
        .filter(|c| c.essential)
        .filter_map(|c| c.health_status)
        .collect();
    if states.contains(&HealthStatus::Unhealthy) {
        HealthStatus::Unhealthy
    } else if states.is_empty() || states.contains(&HealthStatus::Unknown) {
        HealthStatus::Unknown
    } else {
        HealthStatus::Healthy
    }
}

/// The `Task` of a task's rows.
pub fn task(t: &TaskRow, containers: &[ContainerRow], net: Option<&NetworkRow>) -> Task {
    let view = net.map(|row| NetView {
        row,
        rec: Recorded::of(row),
    });
    let fargate = t.launch_type == "FARGATE";
    Task {
        attachments: match &view {
            Some(v) if v.awsvpc() => vec![v.attachment(&t.id)],
            _ => Vec::new(),
        },
        // The task's warnings where the AWS CLI and boto3 show them: they drop response
        // members their model lacks (minifargateWarnings), but print `attributes`.
        attributes: t
            .warnings
            .iter()
            .map(|w| KeyValue::new(WARNING_ATTRIBUTE, w.clone()))
            .collect(),
        capacity_provider_name: t.launch.capacity_provider_name.clone(),
        cluster_arn: cluster_arn(&t.arn, &t.cluster),
        connectivity: Connectivity::Connected,
        connectivity_at: ts(Some(t.created_at)),
        // EC2 semantics: every task that is not FARGATE runs on this host, the cluster's one
        // container instance. In cluster mode every task names the instance it was placed on
        // (FARGATE ones too: a box of the cluster runs them).
        container_instance_arn: t.launch.container_instance_arn.clone().or_else(|| {
            (!fargate).then(|| container_instance_arn(&cluster_arn(&t.arn, &t.cluster)))
        }),
        containers: containers
            .iter()
            .map(|c| container(t, c, view.as_ref()))
            .collect(),
        cpu: t.cpu.clone(),
        created_at: ts(Some(t.created_at)),
        desired_status: t.desired_status,
        enable_execute_command: t.enable_execute_command,
        // Ref: ecs.json `TaskEphemeralStorage`: the definition's size, Fargate's 20 GiB when
        // not set (enforced or not: docs/run-task.md, Ephemeral storage).
        ephemeral_storage: EphemeralStorage {
            size_in_gib: u32::try_from(crate::task::ephemeral::size_gib(&t.definition))
                .unwrap_or(crate::task::ephemeral::DEFAULT_GIB as u32),
        },
        execution_stopped_at: ts(t.execution_stopped_at),
        group: t.group.clone(),
        health_status: task_health(containers),
        last_status: t.last_status,
        launch_type: t.launch_type.clone(),
        memory: t.memory.clone(),
        minifargate_warnings: t.warnings.clone(),
        overrides: Overrides {
            run_task: t.overrides.clone(),
            inference_accelerator_overrides: Vec::new(),
        },
        platform_family: fargate.then(|| "Linux".into()),
        platform_version: fargate.then(|| {
            t.launch
                .platform_version
                .clone()
                .unwrap_or_else(|| FARGATE_LATEST.into())
        }),
        pull_started_at: ts(t.pull_started_at),
        pull_stopped_at: ts(t.pull_stopped_at),
        started_at: ts(t.started_at),
        started_by: t.started_by.clone(),
        stop_code: t.stop_code,
        stopped_at: ts(t.stopped_at),
        stopped_reason: t.stopped_reason.clone(),
        stopping_at: ts(t.stopping_at),
        // DescribeTasks blanks them unless `--include TAGS` (ecs::tasks::describe_tasks),
        // as ECS does.
        tags: t.tags.clone(),
        task_arn: t.arn.clone(),
        task_definition_arn: t.task_definition_arn.clone(),
        version: t.version,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_of_a_stopped_task() {
        use crate::store::{DesiredStatus, LastStatus, StopCode};
        let t = TaskRow {
            id: "0123456789abcdef0123456789abcdef".into(),
            arn: "arn:aws:ecs:us-east-1:000000000000:task/default/0123456789abcdef0123456789abcdef"
                .into(),
            cluster: "default".into(),
            launch_type: "FARGATE".into(),
            last_status: LastStatus::Stopped,
            desired_status: DesiredStatus::Stopped,
            stop_code: Some(StopCode::EssentialContainerExited),
            created_at: 1_700_000_000_000,
            stopped_at: Some(1_700_000_001_000),
            ..Default::default()
        };
        let c = ContainerRow {
            name: "app".into(),
            exit_code: Some(0),
            last_status: LastStatus::Stopped,
            ..Default::default()
        };
        let v = serde_json::to_value(task(&t, &[c], None)).unwrap();
        assert_eq!(
            v["clusterArn"],
            "arn:aws:ecs:us-east-1:000000000000:cluster/default"
        );
        assert_eq!(v["containers"][0]["exitCode"], 0);
        assert_eq!(v["stoppedAt"], "2023-11-14T22:13:21.000000+00:00");
        assert_eq!(v["overrides"]["containerOverrides"], serde_json::json!([]));
        assert!(v.get("startedAt").is_none());
        assert!(v.get("minifargateWarnings").is_none());
    }
}
