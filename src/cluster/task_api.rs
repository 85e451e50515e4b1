//! The task operations of `serve --cluster` (docs/cluster.md "Tasks"): RunTask places
//! through [`super::tasks::Placer`] (the cluster's fleet, `super::fleet`); DescribeTasks and ListTasks read the task records the
//! agents keep up to date; StopTask sets the assignment's desired status, which the task's
//! agent acts on. StartTask goes through RunTask's path with [`super::tasks::Onto`], which
//! places each task on the instance it names.

use super::etcd::Etcd;
use super::keys;
use super::records::{Record, decode};
use super::tasks::server;
use crate::ecs::shapes::Failure;
use crate::ecs::tasks::{
    DescribeTasksRequest, ListTasksRequest, ListTasksResponse, StopTaskRequest,
};
use crate::ecs::{Ecs, EcsError, EcsResult, cluster_or_default, names, page};
use crate::store::DesiredStatus;
use serde_json::{Value, json};

fn cluster_of(c: Option<&str>) -> String {
    names::cluster_name(cluster_or_default(c)).to_string()
}

/// The last part of a task id or ARN.
fn task_id(t: &str) -> &str {
    t.rsplit('/').next().unwrap_or(t)
}

async fn record(etcd: &Etcd, cluster: &str, id: &str) -> EcsResult<Option<(Record, i64)>> {
    let key = keys::task(cluster, id);
    match etcd.get(&key).await.map_err(server)? {
        Some(kv) => Ok(Some((
            decode(&key, &kv.value).map_err(|e| EcsError::Server(e.into()))?,
            kv.mod_revision,
        ))),
        None => Ok(None),
    }
}

/// Cluster `cluster`'s task records, raw (key, mod revision, bytes), for ECS's events
/// (`crate::ecs::events`); from a blocking thread.
pub fn task_records(etcd: &Etcd, cluster: &str) -> anyhow::Result<Vec<(String, i64, Vec<u8>)>> {
    let kvs = super::block_on(etcd.get_prefix(&keys::tasks(cluster)))?;
    Ok(kvs
        .into_iter()
        .map(|kv| (kv.key, kv.mod_revision, kv.value))
        .collect())
}

/// DescribeTasks from the task records.
pub async fn describe_tasks(
    _ecs: &Ecs,
    etcd: &Etcd,
    req: DescribeTasksRequest,
) -> EcsResult<Value> {
    if req.tasks.is_empty() || req.tasks.len() > 100 {
        return Err(EcsError::invalid(format!(
            "tasks: {} given; name 1 to 100 task ids or ARNs",
            req.tasks.len()
        )));
    }
    let cluster = cluster_of(req.cluster.as_deref());
    let include_tags = req.include.iter().any(|s| s == "TAGS");
    let mut tasks = Vec::new();
    let mut failures = Vec::new();
    for t in &req.tasks {
        match record(etcd, &cluster, task_id(t)).await? {
            Some((r, _)) => {
                let mut task = r.task;
                if !include_tags {
                    task["tags"] = json!([]);
                }
                tasks.push(task);
            }
            None => failures.push(Failure::missing(t.clone())),
        }
    }
    Ok(json!({ "tasks": tasks, "failures": failures }))
}

/// ListTasks from the task records, oldest first.
pub async fn list_tasks(_ecs: &Ecs, etcd: &Etcd, req: ListTasksRequest) -> EcsResult<Value> {
    let desired = match req.desired_status.as_deref() {
        None => DesiredStatus::Running,
        Some(s) => s.parse::<DesiredStatus>().map_err(|_| {
            EcsError::invalid(format!(
                "desiredStatus {s:?}: must be RUNNING, PENDING or STOPPED"
            ))
        })?,
    };
    if req.family.is_some() && req.service_name.is_some() {
        return Err(EcsError::invalid(
            "family and serviceName cannot both be given",
        ));
    }
    let cluster = cluster_of(req.cluster.as_deref());
    let prefix = keys::tasks(&cluster);
    let mut found: Vec<(f64, String)> = Vec::new();
    for kv in etcd.get_prefix(&prefix).await.map_err(server)? {
        // One record that does not decode is not a failure of the whole list: it is left
        // out and named (DescribeTasks on its id says what is wrong with it).
        let r: Record = match decode(&kv.key, &kv.value) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(key = %kv.key, error = %e, "a task record that does not decode: not listed");
                continue;
            }
        };
        let t = &r.task;
        let s = |k: &str| t[k].as_str();
        if s("desiredStatus") != Some(desired.as_str()) {
            continue;
        }
        if let Some(f) = &req.family
            && s("taskDefinitionArn")
                .and_then(|a| a.rsplit('/').next())
                .and_then(|fr| fr.split(':').next())
                != Some(f.as_str())
        {
            continue;
        }
        if let Some(sv) = &req.service_name
            && s("group") != Some(format!("service:{}", task_id(sv)).as_str())
        {
            continue;
        }
        if req.started_by.is_some() && s("startedBy") != req.started_by.as_deref() {
            continue;
        }
        if req.launch_type.is_some() && s("launchType") != req.launch_type.as_deref() {
            continue;
        }
        if let Some(ci) = &req.container_instance
            && task_id(ci) != r.instance
        {
            continue;
        }
        if let Some(arn) = s("taskArn") {
            found.push((t["createdAt"].as_f64().unwrap_or(0.0), arn.to_string()));
        }
    }
    found.sort_by(|a, b| a.0.total_cmp(&b.0));
    let arns = found.into_iter().map(|(_, a)| a).collect();
    let (task_arns, next_token) = page(arns, req.max_results, 100, req.next_token.as_deref())?;
    serde_json::to_value(ListTasksResponse {
        task_arns,
        next_token,
    })
    .map_err(|e| EcsError::Server(e.into()))
}

/// StopTask: the assignment's desired status becomes STOPPED (its agent stops the task
/// and records it); the answer is the task with that desired status, as ECS's.
pub async fn stop_task(_ecs: &Ecs, etcd: &Etcd, req: StopTaskRequest) -> EcsResult<Value> {
    let cluster = cluster_of(req.cluster.as_deref());
    let id = task_id(&req.task).to_string();
    let Some((r, _)) = record(etcd, &cluster, &id).await? else {
        return Err(EcsError::invalid(format!(
            "The referenced task was not found: {} (cluster {cluster})",
            req.task
        )));
    };
    let reason = req
        .reason
        .clone()
        .unwrap_or_else(|| "Task stopped by user".into());
    super::tasks::desire_stopped(
        etcd,
        &cluster,
        &r.instance,
        &id,
        crate::store::StopCode::UserInitiated,
        &reason,
    )
    .await?;
    // The answer shows what was asked, as ECS's does at once; the record follows as the
    // agent stops the task.
    let mut task = r.task;
    if task["desiredStatus"] != json!("STOPPED") {
        task["desiredStatus"] = json!("STOPPED");
        task["stoppedReason"] = json!(reason);
        task["stopCode"] = json!("UserInitiated");
    }
    Ok(json!({ "task": task }))
}
