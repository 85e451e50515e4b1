//! The ECS JSON of a task (`Task` and `Container` shapes of ecs.json), as RunTask,
//! DescribeTasks and StopTask print it; timestamps as the AWS CLI prints them.

use super::network::Recorded;
use crate::store::{
    AttachmentStatus, Connectivity, ContainerRow, HealthStatus, NetworkRow, TaskRow,
    format_timestamp,
};
use serde_json::{Map, Value, json};

fn put(m: &mut Map<String, Value>, k: &str, v: Option<Value>) {
    if let Some(v) = v {
        m.insert(k.to_string(), v);
    }
}

fn ts(v: Option<i64>) -> Option<Value> {
    v.map(|ms| Value::String(format_timestamp(ms)))
}

/// `arn:aws:ecs:<region>:<account>:cluster/<name>` from a task ARN.
pub fn cluster_arn(task_arn: &str, cluster: &str) -> String {
    let prefix = task_arn.split(":task/").next().unwrap_or("");
    format!("{prefix}:cluster/{cluster}")
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
    fn attachment(&self, task_id: &str) -> Value {
        let cfg = &self.row.configuration;
        let subnet = cfg["subnets"][0]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| local_subnet_id(self.row));
        let mut details = vec![json!({"name": "subnetId", "value": subnet})];
        if let Some(rec) = &self.rec {
            let eni = format!("eni-{}", &task_id[..task_id.len().min(17)]);
            details.push(json!({"name": "networkInterfaceId", "value": eni}));
            if let Some(mac) = &rec.net.mac {
                details.push(json!({"name": "macAddress", "value": mac}));
            }
            if let Some(dns) = &rec.private_dns_name {
                details.push(json!({"name": "privateDnsName", "value": dns}));
            }
            if let Some(ip) = rec.net.ip {
                details.push(json!({"name": "privateIPv4Address", "value": ip.to_string()}));
            }
        }
        json!({
            "id": self.row.attachment_id,
            "type": "ElasticNetworkInterface",
            "status": self.row.attachment_status,
            "details": details,
        })
    }

    fn interfaces(&self) -> Value {
        match self.rec.as_ref().and_then(|r| r.net.ip) {
            Some(ip) if self.awsvpc() && self.row.attachment_status != AttachmentStatus::Failed => {
                json!([{"attachmentId": self.row.attachment_id, "privateIpv4Address": ip.to_string()}])
            }
            _ => json!([]),
        }
    }

    /// Host port bindings of one container (bridge and host mode; in awsvpc mode ECS
    /// reports none: the ports are on the task's ENI).
    fn bindings(&self, container: &str) -> Value {
        let Some(rec) = &self.rec else {
            return json!([]);
        };
        if self.awsvpc() || self.row.attachment_status == AttachmentStatus::Failed {
            return json!([]);
        }
        Value::Array(
            rec.bindings
                .iter()
                .filter(|b| b.container == container)
                .filter_map(|b| serde_json::to_value(&b.binding).ok())
                .collect(),
        )
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

fn container_json(t: &TaskRow, c: &ContainerRow, net: Option<&NetView>) -> Value {
    let mut m = Map::new();
    m.insert("containerArn".into(), json!(c.arn));
    m.insert("taskArn".into(), json!(t.arn));
    m.insert("name".into(), json!(c.name));
    m.insert("image".into(), json!(c.image));
    put(
        &mut m,
        "imageDigest",
        c.image_digest.clone().map(Value::from),
    );
    put(&mut m, "runtimeId", c.runtime_id.clone().map(Value::from));
    m.insert("lastStatus".into(), json!(c.last_status));
    put(&mut m, "exitCode", c.exit_code.map(Value::from));
    put(&mut m, "reason", c.reason.clone().map(Value::from));
    m.insert(
        "networkBindings".into(),
        net.map_or(json!([]), |n| n.bindings(&c.name)),
    );
    m.insert(
        "networkInterfaces".into(),
        net.map_or(json!([]), NetView::interfaces),
    );
    m.insert(
        "healthStatus".into(),
        json!(c.health_status.unwrap_or(HealthStatus::Unknown)),
    );
    put(&mut m, "cpu", c.cpu.clone().map(Value::from));
    put(&mut m, "memory", c.memory.clone().map(Value::from));
    put(
        &mut m,
        "memoryReservation",
        c.memory_reservation.clone().map(Value::from),
    );
    Value::Object(m)
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

pub fn task_json(t: &TaskRow, containers: &[ContainerRow], net: Option<&NetworkRow>) -> Value {
    let view = net.map(|row| NetView {
        row,
        rec: Recorded::of(row),
    });
    let mut m = Map::new();
    m.insert(
        "attachments".into(),
        match &view {
            Some(v) if v.awsvpc() => json!([v.attachment(&t.id)]),
            _ => json!([]),
        },
    );
    m.insert("attributes".into(), json!([]));
    m.insert("clusterArn".into(), json!(cluster_arn(&t.arn, &t.cluster)));
    m.insert("connectivity".into(), json!(Connectivity::Connected));
    put(&mut m, "connectivityAt", ts(Some(t.created_at)));
    m.insert(
        "containers".into(),
        Value::Array(
            containers
                .iter()
                .map(|c| container_json(t, c, view.as_ref()))
                .collect(),
        ),
    );
    put(&mut m, "cpu", t.cpu.clone().map(Value::from));
    put(&mut m, "createdAt", ts(Some(t.created_at)));
    m.insert("desiredStatus".into(), json!(t.desired_status));
    m.insert(
        "enableExecuteCommand".into(),
        json!(t.enable_execute_command),
    );
    put(&mut m, "executionStoppedAt", ts(t.execution_stopped_at));
    put(&mut m, "group", t.group.clone().map(Value::from));
    m.insert("healthStatus".into(), json!(task_health(containers)));
    m.insert("lastStatus".into(), json!(t.last_status));
    m.insert("launchType".into(), json!(t.launch_type));
    put(&mut m, "memory", t.memory.clone().map(Value::from));
    let mut overrides = json!(t.overrides);
    if overrides.get("containerOverrides").is_none() {
        overrides["containerOverrides"] = json!([]);
    }
    overrides["inferenceAcceleratorOverrides"] = json!([]);
    m.insert("overrides".into(), overrides);
    if t.launch_type == "FARGATE" {
        m.insert("platformVersion".into(), json!("1.4.0"));
        m.insert("platformFamily".into(), json!("Linux"));
    }
    put(&mut m, "pullStartedAt", ts(t.pull_started_at));
    put(&mut m, "pullStoppedAt", ts(t.pull_stopped_at));
    put(&mut m, "startedAt", ts(t.started_at));
    put(&mut m, "startedBy", t.started_by.clone().map(Value::from));
    put(&mut m, "stopCode", t.stop_code.map(|c| json!(c)));
    put(&mut m, "stoppedAt", ts(t.stopped_at));
    put(
        &mut m,
        "stoppedReason",
        t.stopped_reason.clone().map(Value::from),
    );
    put(&mut m, "stoppingAt", ts(t.stopping_at));
    // DescribeTasks blanks them unless `--include TAGS` (ecs::tasks::describe_tasks), as ECS does.
    m.insert("tags".into(), json!(t.tags));
    m.insert("taskArn".into(), json!(t.arn));
    m.insert("taskDefinitionArn".into(), json!(t.task_definition_arn));
    m.insert("version".into(), json!(t.version));
    m.insert("ephemeralStorage".into(), json!({"sizeInGiB": 20}));
    // Not an ECS field: what this host does differently, so nobody is misled.
    if !t.warnings.is_empty() {
        m.insert("minifargateWarnings".into(), json!(t.warnings));
    }
    Value::Object(m)
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
        let v = task_json(&t, &[c], None);
        assert_eq!(
            v["clusterArn"],
            "arn:aws:ecs:us-east-1:000000000000:cluster/default"
        );
        assert_eq!(v["containers"][0]["exitCode"], 0);
        assert_eq!(v["stoppedAt"], "2023-11-14T22:13:21.000000+00:00");
        assert_eq!(v["overrides"]["containerOverrides"], json!([]));
        assert!(v.get("startedAt").is_none());
        assert!(v.get("minifargateWarnings").is_none());
    }
}
