//! StartTask: one task on each named container instance (EC2 semantics), through RunTask's
//! path with the EC2 launch type, so it is placed (resources checked) as RunTask's are: on
//! this host (one box), or on the named instances of the cluster (`serve --cluster`,
//! `crate::cluster::tasks::Onto`).

use super::container_instances::{active_cluster, is_ours};
use super::names::cluster_name;
use super::tasks::{Local, RunTaskRequest, Started, run_task, run_task_with};
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
    // In cluster mode each task goes on the instance it names, wherever it is.
    if let Some(onto) = super::fleet::get().launcher_onto(&req.container_instances) {
        let count = req.container_instances.len() as u32;
        return run_task_with(ecs, run_request(cluster, req, count), local, &*onto);
    }
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
    let count = ours.len() as u32;
    let run = run_request(cluster, req, count);
    let mut started = run_task(ecs, run, local)?;
    started.response.failures.extend(failures);
    Ok(started)
}

/// StartTask's request as RunTask's: `count` tasks of the EC2 launch type.
fn run_request(cluster: String, req: StartTaskRequest, count: u32) -> RunTaskRequest {
    RunTaskRequest {
        cluster: Some(cluster),
        task_definition: req.task_definition,
        count: Some(count),
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
    }
}
