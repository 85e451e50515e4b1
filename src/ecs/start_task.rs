//! StartTask: one task on each named container instance (EC2 semantics), through RunTask's
//! path with the EC2 launch type, so it is placed (resources checked) as RunTask's are.

use super::container_instances::{active_cluster, is_ours};
use super::names::cluster_name;
use super::tasks::{Local, RunTaskRequest, Started, run_task};
use super::{Ecs, EcsError, EcsResult, cluster_or_default};
use crate::store::{Tag, TaskOverride};
use serde::Deserialize;
use serde_json::Value;

/// ecs.json `StartTaskRequest`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartTaskRequest {
    pub cluster: Option<String>,
    pub task_definition: String,
    /// Up to 10 container instances: one task on each.
    #[serde(default)]
    pub container_instances: Vec<String>,
    #[serde(default)]
    pub overrides: TaskOverride,
    pub started_by: Option<String>,
    pub group: Option<String>,
    #[serde(default)]
    pub tags: Vec<Tag>,
    #[serde(default)]
    pub enable_execute_command: bool,
    pub network_configuration: Option<Value>,
    pub propagate_tags: Option<String>,
    pub reference_id: Option<String>,
    #[serde(rename = "enableECSManagedTags")]
    pub enable_ecs_managed_tags: Option<bool>,
    pub volume_configurations: Option<Value>,
}

/// StartTask: one task on each named container instance (EC2 semantics), through RunTask's
/// path with the EC2 launch type; an instance that is not this host's is a failure
/// (MISSING), as ECS reports it.
pub fn start_task(ecs: &Ecs, req: StartTaskRequest, local: Local) -> EcsResult<Started> {
    if req.container_instances.is_empty() || req.container_instances.len() > 10 {
        return Err(EcsError::invalid(format!(
            "containerInstances: {} given; name 1 to 10 container instance ids or ARNs",
            req.container_instances.len()
        )));
    }
    let cluster = cluster_name(cluster_or_default(req.cluster.as_deref())).to_string();
    let (ours, failures): (Vec<&String>, Vec<&String>) = {
        let store = ecs.open_store()?;
        let c = active_cluster(&store, &cluster)?;
        req.container_instances.iter().partition(|r| is_ours(&c, r))
    };
    let failures: Vec<super::shapes::Failure> = failures
        .into_iter()
        .map(|r| super::shapes::Failure::missing(r.clone()))
        .collect();
    if ours.is_empty() {
        let store = ecs.open_store()?;
        return Ok(Started::none(store, failures));
    }
    let run = RunTaskRequest {
        cluster: Some(cluster),
        task_definition: req.task_definition,
        count: Some(ours.len() as u32),
        overrides: req.overrides,
        launch_type: Some("EC2".into()),
        started_by: req.started_by,
        group: req.group,
        tags: req.tags,
        enable_execute_command: req.enable_execute_command,
        network_configuration: req.network_configuration,
        propagate_tags: req.propagate_tags,
        reference_id: req.reference_id,
        enable_ecs_managed_tags: req.enable_ecs_managed_tags,
        volume_configurations: req.volume_configurations,
        ..Default::default()
    };
    let mut started = run_task(ecs, run, local)?;
    started.response.failures.extend(failures);
    Ok(started)
}
