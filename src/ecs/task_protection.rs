//! Task scale-in protection: UpdateTaskProtection and GetTaskProtection. The rules are
//! `supervisor::endpoints::protection`'s (shared with the in-task endpoint); the service scheduler honours
//! the stored protection when it scales in or replaces a deployment's tasks.

use super::clusters::check_cluster;
use super::names::{cluster_name, task_id};
use super::{Ecs, EcsError, EcsResult, cluster_or_default};
use crate::supervisor::endpoints::protection::{self, Failure, ProtectedTask, reason};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateTaskProtectionRequest {
    pub cluster: Option<String>,
    /// Up to 10 task ids or ARNs.
    #[serde(default)]
    pub tasks: Vec<String>,
    pub protection_enabled: bool,
    /// 1-2,880; 120 when absent.
    pub expires_in_minutes: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetTaskProtectionRequest {
    pub cluster: Option<String>,
    /// Up to 100 task ids or ARNs.
    pub tasks: Option<Vec<String>>,
}

/// The response of both operations.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskProtectionResponse {
    pub protected_tasks: Vec<ProtectedTask>,
    pub failures: Vec<Failure>,
}

/// UpdateTaskProtection. Ref: ecs.json `UpdateTaskProtectionRequest` (`cluster`, `tasks`
/// and `protectionEnabled` required; up to 10 tasks).
pub fn update_task_protection(
    ecs: &Ecs,
    req: &UpdateTaskProtectionRequest,
) -> EcsResult<TaskProtectionResponse> {
    if req.tasks.is_empty() || req.tasks.len() > 10 {
        return Err(EcsError::invalid(format!(
            "tasks: {} given; name 1 to 10 task ids or ARNs",
            req.tasks.len()
        )));
    }
    let minutes = protection::minutes(req.protection_enabled, req.expires_in_minutes)
        .map_err(|e| EcsError::invalid(e.to_string()))?;
    let cluster = cluster_name(cluster_or_default(req.cluster.as_deref())).to_string();
    let mut store = ecs.open_store()?;
    check_cluster(&store, &cluster)?;
    ecs.reconcile(&mut store);
    let now = super::now_ms();
    let mut out = TaskProtectionResponse {
        protected_tasks: Vec::new(),
        failures: Vec::new(),
    };
    for t in &req.tasks {
        let Some((row, _)) = find(&store, t, &cluster)? else {
            out.failures.push(missing(t));
            continue;
        };
        match protection::update(&mut store, &row, minutes, now).map_err(anyhow::Error::from)? {
            Ok(p) => out.protected_tasks.push(p),
            Err(f) => out.failures.push(f),
        }
    }
    Ok(out)
}

/// GetTaskProtection: the named tasks' protection, or every service task of the cluster
/// that is not stopped when none is named.
pub fn get_task_protection(
    ecs: &Ecs,
    req: &GetTaskProtectionRequest,
) -> EcsResult<TaskProtectionResponse> {
    if req.tasks.as_ref().is_some_and(|t| t.len() > 100) {
        return Err(EcsError::invalid(
            "tasks: name at most 100 task ids or ARNs",
        ));
    }
    let cluster = cluster_name(cluster_or_default(req.cluster.as_deref())).to_string();
    let mut store = ecs.open_store()?;
    check_cluster(&store, &cluster)?;
    ecs.reconcile(&mut store);
    let now = super::now_ms();
    let mut out = TaskProtectionResponse {
        protected_tasks: Vec::new(),
        failures: Vec::new(),
    };
    match &req.tasks {
        Some(tasks) => {
            for t in tasks {
                match find(&store, t, &cluster)? {
                    Some((row, _)) => match protection::eligible(&row) {
                        Err(f) if f.reason == reason::NOT_VALID => out.failures.push(f),
                        _ => out.protected_tasks.push(protection::state(&row, now)),
                    },
                    None => out.failures.push(missing(t)),
                }
            }
        }
        None => {
            let rows = store
                .list_tasks(&crate::store::TaskFilter {
                    cluster: Some(cluster.clone()),
                    ..Default::default()
                })
                .map_err(anyhow::Error::from)?;
            for row in rows.iter().rev() {
                if protection::eligible(row).is_ok() {
                    out.protected_tasks.push(protection::state(row, now));
                }
            }
        }
    }
    Ok(out)
}

fn find(
    store: &crate::store::Store,
    task: &str,
    cluster: &str,
) -> EcsResult<Option<(crate::store::TaskRow, Vec<crate::store::ContainerRow>)>> {
    Ok(store
        .task(task_id(task))
        .map_err(anyhow::Error::from)?
        .filter(|(t, _)| t.cluster == cluster))
}

fn missing(task: &str) -> Failure {
    Failure {
        arn: task.to_string(),
        reason: reason::MISSING.into(),
        detail: "The task was not found in the cluster".into(),
    }
}
