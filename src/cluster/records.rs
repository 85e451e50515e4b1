//! The records cluster mode keeps in etcd besides the instances' (docs/cluster.md "Key
//! layout"): a task's assignment to an instance, an instance's ledger of reservations, a
//! task's record; and how they are encoded and decoded.

use crate::store::{DesiredStatus, LaunchRecord, StoredTaskDefinition, Tag, TaskOverride};
use crate::supervisor::launch::{self, Ids};
use crate::taskdef::AwsContext;
use crate::taskdef::model::TaskDefinition;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// A task placed on a container instance: everything its agent needs to create the task
/// the RunTask answer showed, and the status the cluster wants it in.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Assignment {
    /// The task's ids (task, containers, attachment) and creation time.
    pub ids: Ids,
    /// The account and region its ARNs are in (the placer's).
    pub account_id: String,
    pub region: String,
    /// The registered task definition RunTask resolved (with its ARN and revision).
    pub definition: TaskDefinition,
    pub request: Assigned,
    pub desired_status: DesiredStatus,
    /// StopTask's reason, once the desired status is STOPPED.
    pub stopped_reason: Option<String>,
    /// Who asked: UserInitiated (StopTask, the default) or ServiceSchedulerInitiated.
    #[serde(default)]
    pub stop_code: Option<crate::store::StopCode>,
}

impl Assignment {
    /// The AWS context its ARNs are built with.
    pub fn context(&self) -> AwsContext {
        AwsContext {
            region: self.region.clone(),
            account_id: self.account_id.clone(),
        }
    }

    /// The task definition as the launch path takes it.
    pub fn stored(&self) -> StoredTaskDefinition {
        StoredTaskDefinition {
            definition: self.definition.clone(),
            tags: Vec::new(),
        }
    }
}

/// The members of a launch request that travel to another box (the rest are the local
/// CLI's: env files, volume maps, secrets files, host credentials).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Assigned {
    pub cluster: String,
    pub launch_type: Option<String>,
    pub started_by: Option<String>,
    pub group: Option<String>,
    pub overrides: TaskOverride,
    pub tags: Vec<Tag>,
    pub enable_execute_command: bool,
    pub network_configuration: Option<String>,
    pub warnings: Vec<String>,
    pub image_scope: Option<String>,
    pub launch: LaunchRecord,
}

impl Assigned {
    pub fn of(r: &launch::Request) -> Assigned {
        Assigned {
            cluster: r.cluster.clone(),
            launch_type: r.launch_type.clone(),
            started_by: r.started_by.clone(),
            group: r.group.clone(),
            overrides: r.overrides.clone(),
            tags: r.tags.clone(),
            enable_execute_command: r.enable_execute_command,
            network_configuration: r.network_configuration.clone(),
            warnings: r.warnings.clone(),
            image_scope: r.image_scope.clone(),
            launch: r.launch.clone(),
        }
    }

    /// As the launch path's request.
    pub fn request(&self) -> launch::Request {
        launch::Request {
            cluster: self.cluster.clone(),
            launch_type: self.launch_type.clone(),
            started_by: self.started_by.clone(),
            group: self.group.clone(),
            overrides: self.overrides.clone(),
            tags: self.tags.clone(),
            enable_execute_command: self.enable_execute_command,
            network_configuration: self.network_configuration.clone(),
            warnings: self.warnings.clone(),
            image_scope: self.image_scope.clone(),
            launch: self.launch.clone(),
            ..Default::default()
        }
    }
}

/// What one placed task reserves on its instance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Reservation {
    pub cpu: i64,
    pub memory: i64,
    #[serde(default)]
    pub ports: Vec<u16>,
    #[serde(default)]
    pub udp_ports: Vec<u16>,
    /// The task's group (`family:NAME`, `service:NAME` or RunTask's).
    pub group: String,
    pub task_definition_arn: String,
    /// Its desired status is STOPPED and it has not stopped yet: its resources stay booked
    /// until it is STOPPED (the agent frees them then), but spread, `distinctInstance` and
    /// `task:group` no longer count it, as ECS "looks at the desired status" and as one
    /// box places (`ecs::container_instances::on_box`). Written only when true.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stopping: bool,
}

/// An instance's ledger: the reservations of the tasks placed on it and not yet STOPPED.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ledger {
    pub tasks: BTreeMap<String, Reservation>,
}

impl Ledger {
    pub fn cpu(&self) -> i64 {
        self.tasks.values().map(|r| r.cpu).sum()
    }

    pub fn memory(&self) -> i64 {
        self.tasks.values().map(|r| r.memory).sum()
    }
}

/// A task's record: the instance it is on and the task as DescribeTasks shows it (its
/// timestamps as the API's epoch seconds).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub instance: String,
    pub task: Value,
}

/// A box's report of one of its tasks (`boxes/NAME/reports/<cluster>/<task>`, the
/// SubmitTaskStateChange equivalent): serve's leader folds it into the task's record
/// ([`super::reports`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Report {
    /// The instance the box runs the task for.
    pub instance: String,
    /// The task as the box's store shows it (DescribeTasks' JSON); `None` when the box
    /// never started it ([`Report::never_started`] says why).
    #[serde(default)]
    pub task: Option<Value>,
    #[serde(default)]
    pub never_started: Option<NeverStarted>,
}

/// Why a box never started a task assigned to it: the record is marked STOPPED so.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NeverStarted {
    pub stop_code: String,
    pub reason: String,
}

impl Report {
    /// Whether it says the task is STOPPED on the box.
    pub fn stopped(&self) -> bool {
        match &self.task {
            Some(t) => t["lastStatus"] == "STOPPED",
            None => self.never_started.is_some(),
        }
    }
}

/// Decodes what a key holds, or says which key holds what.
pub fn decode<T: serde::de::DeserializeOwned>(key: &str, raw: &[u8]) -> Result<T, Undecodable> {
    serde_json::from_slice(raw).map_err(|e| Undecodable {
        key: key.into(),
        why: e.to_string(),
    })
}

/// A value in etcd that is not what minifargate writes there.
#[derive(Debug, thiserror::Error)]
#[error("etcd key {key} does not hold what minifargate writes there: {why}")]
pub struct Undecodable {
    pub key: String,
    pub why: String,
}

/// The ECS `Task` of a task's rows, as a record's JSON (epoch-second timestamps).
pub fn task_json(task: &crate::task::shape::Task) -> Value {
    crate::taskdef::timestamp::epoch_seconds(|| {
        serde_json::to_value(task).expect("a task encodes as JSON")
    })
}

/// A record as the JSON etcd keeps.
pub fn json_bytes<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("a cluster record encodes as JSON")
}

/// Marks a record's task STOPPED now, with `code` and `reason` (its containers too).
pub fn mark_stopped(task: &mut Value, code: &str, reason: &str) {
    let now = serde_json::json!(crate::ecs::now_ms() as f64 / 1000.0);
    task["lastStatus"] = "STOPPED".into();
    task["desiredStatus"] = "STOPPED".into();
    task["stopCode"] = code.into();
    task["stoppedReason"] = crate::task::cut_reason(reason).into();
    if task["stoppingAt"].is_null() {
        task["stoppingAt"] = now.clone();
    }
    task["stoppedAt"] = now;
    if let Some(cs) = task["containers"].as_array_mut() {
        for c in cs {
            c["lastStatus"] = "STOPPED".into();
        }
    }
}
