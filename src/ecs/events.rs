//! ECS's events in EventBridge's JSON shapes ("ECS Task State Change", "ECS Deployment
//! State Change", "ECS Service Action"; Amazon ECS Developer Guide, "Amazon ECS events"),
//! written to the CloudWatch Logs group [`LOG_GROUP`] through the box's Logs store, as
//! many set up on AWS with an EventBridge rule whose target is a log group: `aws logs
//! tail /aws/events/ecs --follow` follows them.
//!
//! A [`Watcher`] compares what the store holds once a second with what it saw the time
//! before (tasks' lastStatus and desiredStatus, deployments' rolloutState, services' new
//! events) and writes an event for each change; its first look only remembers.
//!
//! In cluster mode the tasks run on the boxes: their state is the cluster's task records
//! in etcd (which the boxes' reports keep current), read through a [`ClusterTasks`] the
//! API layer gives; each serve writes the events to its own Logs store (services and
//! deployments are in every serve's replicated store), so any serve shows them.

use super::Ecs;
use crate::store::logs::LogStore;
use crate::store::{DeploymentRow, RolloutState, Store};
use crate::taskdef::AwsContext;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};

/// The log group the events go to (the name a rule's log group target often has).
pub const LOG_GROUP: &str = "/aws/events/ecs";
/// Its one stream.
pub const LOG_STREAM: &str = "ecs-events";

fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// EventBridge's envelope around `detail` (source `aws.ecs`; `time` to the second).
pub fn envelope(
    ctx: &AwsContext,
    detail_type: &str,
    resources: Vec<String>,
    detail: Value,
    now_ms: i64,
) -> Value {
    let id = crate::task::new_uuid().unwrap_or_default();
    let time = chrono::DateTime::from_timestamp_millis(now_ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    json!({
        "version": "0",
        "id": id,
        "detail-type": detail_type,
        "source": "aws.ecs",
        "account": ctx.account_id,
        "time": time,
        "region": ctx.region,
        "resources": resources,
        "detail": detail,
    })
}

/// "ECS Deployment State Change" of deployment `d`: IN_PROGRESS, COMPLETED or FAILED.
/// Ref: developerguide/ecs_service_deployment_events.html.
pub fn deployment_event(ctx: &AwsContext, service_arn: &str, d: &DeploymentRow, now: i64) -> Value {
    let (kind, name, reason) = match d.rollout_state {
        RolloutState::InProgress => (
            "INFO",
            "SERVICE_DEPLOYMENT_IN_PROGRESS",
            format!("ECS deployment {} in progress.", d.id),
        ),
        RolloutState::Completed => (
            "INFO",
            "SERVICE_DEPLOYMENT_COMPLETED",
            format!("ECS deployment {} completed.", d.id),
        ),
        RolloutState::Failed => (
            "ERROR",
            "SERVICE_DEPLOYMENT_FAILED",
            d.rollout_state_reason.clone(),
        ),
    };
    envelope(
        ctx,
        "ECS Deployment State Change",
        vec![service_arn.to_string()],
        json!({"eventType": kind, "eventName": name, "deploymentId": d.id,
            "updatedAt": iso(d.updated_at_ms.max(d.created_at_ms)), "reason": reason}),
        now,
    )
}

/// "ECS Task State Change" of `task`: the task as DescribeTasks shows it, with
/// `updatedAt` and `version`.
fn task_event(
    ctx: &AwsContext,
    task: &crate::task::shape::Task,
    now: i64,
) -> anyhow::Result<Value> {
    let mut detail = serde_json::to_value(task)?;
    detail["updatedAt"] = json!(iso(now));
    detail["version"] = json!(1);
    let arn = detail["taskArn"].as_str().unwrap_or_default().to_string();
    Ok(envelope(
        ctx,
        "ECS Task State Change",
        vec![arn],
        detail,
        now,
    ))
}

/// The "ECS Service Action" a service event of the scheduler stands for, if any: (event
/// type, event name). Ref: developerguide/ecs_service_events.html.
pub fn service_action(message: &str) -> Option<(&'static str, &'static str)> {
    if message.ends_with("has reached a steady state.") {
        Some(("INFO", "SERVICE_STEADY_STATE"))
    } else if message.contains("is unable to consistently start tasks successfully") {
        Some(("WARN", "SERVICE_TASK_START_IMPAIRED"))
    } else if message.contains("was unable to place a task") {
        Some(("ERROR", "SERVICE_TASK_PLACEMENT_FAILURE"))
    } else {
        None
    }
}

/// One cluster's task records in cluster mode (`serve --cluster`): each record's key,
/// etcd mod revision and bytes (`{"instance": …, "task": <DescribeTasks' task>}`).
pub type ClusterTasks<'a> = &'a dyn Fn(&str) -> anyhow::Result<Vec<(String, i64, Vec<u8>)>>;

/// What the watcher saw last.
#[derive(Default)]
pub struct Watcher {
    started: bool,
    tasks: HashMap<String, (String, String)>,
    /// Cluster mode: each task record's mod revision when last read (an unchanged record
    /// is not decoded again).
    revisions: HashMap<String, i64>,
    deployments: HashMap<String, RolloutState>,
    service_events: HashSet<String>,
    /// The store it reads, opened on the first look and kept (not opened every second).
    store: Option<Store>,
    /// On one box, the store's `data_version` at the last look: while no other
    /// connection commits, nothing changed and a look reads nothing more.
    data_version: Option<i64>,
}

impl Watcher {
    /// One look: the events of what changed since the last, written to [`LOG_GROUP`].
    /// Returns how many were written.
    pub fn poll(
        &mut self,
        ecs: &Ecs,
        now: i64,
        cluster: Option<ClusterTasks<'_>>,
    ) -> anyhow::Result<usize> {
        let ctx = AwsContext::from_env();
        let store = match self.store.take() {
            Some(s) => s,
            None => ecs.open_store()?,
        };
        let version = match cluster {
            Some(_) => None,
            None => store.data_version().ok(),
        };
        if self.started && version.is_some() && version == self.data_version {
            self.store = Some(store);
            return Ok(0);
        }
        let mut out = Vec::new();
        let looked = match cluster {
            Some(records) => self.cluster_tasks_changed(&ctx, &store, records, now, &mut out),
            None => self.tasks_changed(&ctx, &store, now, &mut out),
        }
        .and_then(|()| self.services_changed(&ctx, &store, now, &mut out));
        self.store = Some(store);
        looked?;
        self.data_version = version;
        let first = !self.started;
        self.started = true;
        if first || out.is_empty() {
            return Ok(0);
        }
        let mut logs = LogStore::open(&ecs.root)?;
        logs.create_group(LOG_GROUP, now)?;
        let lines: Vec<(i64, String)> = out.iter().map(|v| (now, v.to_string())).collect();
        logs.put_events(LOG_GROUP, LOG_STREAM, &lines, now, true)?;
        Ok(lines.len())
    }

    fn tasks_changed(
        &mut self,
        ctx: &AwsContext,
        store: &Store,
        now: i64,
        out: &mut Vec<Value>,
    ) -> anyhow::Result<()> {
        let live = store.unstopped_statuses()?;
        let mut seen: HashMap<String, (String, String)> = HashMap::new();
        let mut changed: Vec<String> = Vec::new();
        for (id, last, desired) in live {
            let k = (last.to_string(), desired.to_string());
            if self.tasks.get(&id) != Some(&k) {
                changed.push(id.clone());
            }
            seen.insert(id, k);
        }
        // Tasks gone from the live ones since: stopped (their last change).
        for id in self.tasks.keys().filter(|id| !seen.contains_key(*id)) {
            changed.push(id.clone());
        }
        for id in changed {
            let Some((t, containers)) = store.task(&id)? else {
                continue;
            };
            let net = store.task_network(&id)?;
            let task = crate::task::shape::task(&t, &containers, net.as_ref());
            out.push(task_event(ctx, &task, now)?);
        }
        self.tasks = seen;
        Ok(())
    }

    /// Cluster mode: the task records of every cluster whose lastStatus or desiredStatus
    /// changed. A record that does not decode is named in the log and left out.
    fn cluster_tasks_changed(
        &mut self,
        ctx: &AwsContext,
        store: &Store,
        records: ClusterTasks<'_>,
        now: i64,
        out: &mut Vec<Value>,
    ) -> anyhow::Result<()> {
        let mut seen = HashMap::new();
        let mut revisions = HashMap::new();
        // `default` has tasks before anything made it (RunTask without a cluster).
        let mut clusters: Vec<String> =
            store.list_clusters()?.into_iter().map(|c| c.name).collect();
        if !clusters.iter().any(|c| c == super::names::DEFAULT) {
            clusters.push(super::names::DEFAULT.to_string());
        }
        for cluster in clusters {
            for (key, rev, bytes) in records(&cluster)? {
                if let (Some(old), Some(k)) = (self.revisions.get(&key), self.tasks.get(&key))
                    && *old == rev
                {
                    seen.insert(key.clone(), k.clone());
                    revisions.insert(key, rev);
                    continue;
                }
                let task = serde_json::from_slice::<Value>(&bytes)
                    .map_err(anyhow::Error::from)
                    .and_then(|r| {
                        Ok(serde_json::from_value::<crate::task::shape::Task>(
                            r["task"].clone(),
                        )?)
                    });
                let task = match task {
                    Ok(t) => t,
                    Err(e) => {
                        tracing::warn!(key = %key, error = %e, "ECS events: a task record that does not decode is left out");
                        continue;
                    }
                };
                let k = (
                    task.last_status.to_string(),
                    task.desired_status.to_string(),
                );
                if self.tasks.get(&key) != Some(&k) {
                    out.push(task_event(ctx, &task, now)?);
                }
                seen.insert(key.clone(), k);
                revisions.insert(key, rev);
            }
        }
        self.tasks = seen;
        self.revisions = revisions;
        Ok(())
    }

    fn services_changed(
        &mut self,
        ctx: &AwsContext,
        store: &Store,
        now: i64,
        out: &mut Vec<Value>,
    ) -> anyhow::Result<()> {
        let mut deployments = HashMap::new();
        let mut events = HashSet::new();
        for s in store.list_services(None)? {
            for d in store.deployments(&s.cluster, &s.name)? {
                if self.deployments.get(&d.id) != Some(&d.rollout_state) {
                    out.push(deployment_event(ctx, &s.arn, &d, now));
                }
                deployments.insert(d.id.clone(), d.rollout_state);
            }
            let cluster_arn = ctx.ecs_arn(&format!("cluster/{}", s.cluster));
            let mut new: Vec<_> = store
                .service_events(&s.cluster, &s.name)?
                .into_iter()
                .filter(|e| events.insert(e.id.clone()) && !self.service_events.contains(&e.id))
                .collect();
            new.reverse();
            for e in new {
                let Some((kind, name)) = service_action(&e.message) else {
                    continue;
                };
                out.push(envelope(
                    ctx,
                    "ECS Service Action",
                    vec![s.arn.clone()],
                    json!({"eventType": kind, "eventName": name, "clusterArn": cluster_arn,
                        "createdAt": iso(e.created_at_ms)}),
                    now,
                ));
            }
        }
        self.deployments = deployments;
        self.service_events = events;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_as_eventbridge_delivers_them() {
        let ctx = AwsContext::from_env();
        let d = DeploymentRow {
            id: "ecs-svc/1".into(),
            rollout_state: RolloutState::Failed,
            rollout_state_reason: "ECS deployment circuit breaker: tasks failed to start.".into(),
            updated_at_ms: 1_700_000_000_000,
            ..Default::default()
        };
        let e = deployment_event(&ctx, "arn:svc", &d, 1_700_000_000_500);
        assert_eq!(e["detail-type"], "ECS Deployment State Change");
        assert_eq!(e["source"], "aws.ecs");
        assert_eq!(e["resources"][0], "arn:svc");
        assert_eq!(e["detail"]["eventType"], "ERROR");
        assert_eq!(e["detail"]["eventName"], "SERVICE_DEPLOYMENT_FAILED");
        assert_eq!(e["detail"]["updatedAt"], "2023-11-14T22:13:20.000Z");
        assert_eq!(e["time"], "2023-11-14T22:13:20Z");
        assert_eq!(
            service_action("(service web) has reached a steady state."),
            Some(("INFO", "SERVICE_STEADY_STATE"))
        );
        assert_eq!(service_action("(service web) has started 1 tasks"), None);
    }

    #[test]
    fn a_look_writes_the_changes_another_connection_committed_and_only_those() {
        let dir = tempfile::tempdir().unwrap();
        let ecs = Ecs::scratch(dir.path());
        std::fs::create_dir_all(&ecs.root).unwrap();
        let mut writer = Store::open(&ecs.root).unwrap();
        writer.ensure_cluster("default", "arn:c", 1).unwrap();
        let mut w = Watcher::default();
        assert_eq!(
            w.poll(&ecs, 1, None).unwrap(),
            0,
            "the first look sets the scene"
        );
        let mut t = crate::store::TaskRow {
            id: "t1".into(),
            arn: "arn:aws:ecs:us-east-1:000000000000:task/default/t1".into(),
            cluster: "default".into(),
            family: "f".into(),
            last_status: crate::store::LastStatus::Running,
            desired_status: crate::store::DesiredStatus::Running,
            version: 1,
            ..Default::default()
        };
        writer.insert_task(&t, &[]).unwrap();
        assert_eq!(w.poll(&ecs, 2, None).unwrap(), 1, "RUNNING");
        assert_eq!(w.poll(&ecs, 3, None).unwrap(), 0, "nothing committed since");
        t.desired_status = crate::store::DesiredStatus::Stopped;
        t.version = 2;
        writer.save_task(&t).unwrap();
        assert_eq!(w.poll(&ecs, 4, None).unwrap(), 1, "desiredStatus STOPPED");
    }
}
