//! The tasks of `serve --cluster` ([`crate::ecs::fleet::Fleet`]): launched through
//! placement ([`super::tasks::Placer`]), followed through the task records the agents
//! write, stopped through their assignments. With it, RunTask, the service scheduler and
//! DescribeServices work on the cluster's boxes as they do on one box.

use super::instances::Status;
use super::records::{Record, decode};
use super::tasks::{Onto, Placer, desire_stopped};
use super::{block_on, keys, serving};
use crate::ecs::Ecs;
use crate::ecs::fleet::{Counts, Fleet, FleetTask, TaskTarget};
use crate::ecs::tasks::Launcher;
use crate::store::{ContainerRow, HealthStatus, StopCode, Store, TaskRow};
use anyhow::Context;

/// The cluster's tasks, from etcd.
pub struct Cluster;

/// The cluster's task records that decode, as records and as the scheduler's rows. One
/// that does not is reported (its key, once per serve) and left out: it does not stop
/// the scheduler for the rest of the cluster.
fn records(cluster: &str) -> anyhow::Result<Vec<(Record, TaskRow, Vec<ContainerRow>)>> {
    let etcd = serving().context("cluster mode without an etcd client")?;
    let kvs = block_on(etcd.get_prefix(&keys::tasks(cluster)))?;
    let mut out = Vec::new();
    for kv in &kvs {
        let decoded = decode::<Record>(&kv.key, &kv.value)
            .map_err(anyhow::Error::from)
            .and_then(|r| rows(&r).map(|(row, cs)| (r, row, cs)));
        match decoded {
            Ok(d) => out.push(d),
            Err(e) => undecodable(&kv.key, &e),
        }
    }
    Ok(out)
}

/// An ECS task's private IPv4 address (its ENI attachment's `privateIPv4Address`).
fn private_ip(task: &serde_json::Value) -> Option<String> {
    task["attachments"]
        .as_array()?
        .iter()
        .filter(|a| a["type"] == "ElasticNetworkInterface")
        .flat_map(|a| a["details"].as_array().into_iter().flatten())
        .find(|d| d["name"] == "privateIPv4Address")?["value"]
        .as_str()
        .map(str::to_string)
}

/// Reports a task record that does not decode, once per key and serve.
fn undecodable(key: &str, e: &anyhow::Error) {
    static SEEN: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
    if !seen.iter().any(|k| k == key) {
        seen.push(key.to_string());
        tracing::error!(key, error = %format!("{e:#}"),
            "a task record in etcd does not decode: left out of the scheduler and the counts \
             (fix or delete the key with etcdctl)");
    }
}

/// A record's task as the rows the scheduler reads (the members it uses).
fn rows(r: &Record) -> anyhow::Result<(TaskRow, Vec<ContainerRow>)> {
    let t = &r.task;
    let text = |k: &str| t[k].as_str().map(str::to_string);
    let ms = |k: &str| t[k].as_f64().map(|s| (s * 1000.0).round() as i64);
    let arn = text("taskArn").context("a task record without taskArn")?;
    let parse = |k: &str| -> anyhow::Result<String> {
        text(k).with_context(|| format!("task record {arn} without {k}"))
    };
    let row = TaskRow {
        id: arn.rsplit('/').next().unwrap_or_default().to_string(),
        cluster: text("clusterArn")
            .and_then(|c| c.rsplit('/').next().map(str::to_string))
            .unwrap_or_default(),
        task_definition_arn: text("taskDefinitionArn").unwrap_or_default(),
        launch_type: text("launchType").unwrap_or_default(),
        started_by: text("startedBy"),
        group: text("group"),
        last_status: parse("lastStatus")?.parse()?,
        desired_status: parse("desiredStatus")?.parse()?,
        stop_code: text("stopCode").map(|c| c.parse()).transpose()?,
        stopped_reason: text("stoppedReason"),
        created_at: ms("createdAt").unwrap_or_default(),
        started_at: ms("startedAt"),
        stopped_at: ms("stoppedAt"),
        arn,
        ..Default::default()
    };
    // The task's health is its essential containers' (what the scheduler replaces on).
    let health: Option<HealthStatus> = text("healthStatus").map(|h| h.parse()).transpose()?;
    let containers = vec![ContainerRow {
        task_id: row.id.clone(),
        essential: true,
        last_status: row.last_status,
        health_status: health,
        ..Default::default()
    }];
    Ok((row, containers))
}

impl Fleet for Cluster {
    fn launcher(&self) -> &dyn Launcher {
        &Placer
    }

    fn schedule(&self, pass: &mut dyn FnMut() -> anyhow::Result<()>) -> anyhow::Result<bool> {
        if !super::leader::leading() {
            return Ok(false);
        }
        let Some(r) = super::replica::get() else {
            return pass().map(|()| true);
        };
        // No service: no pass, and no lock (two etcd revisions each).
        if !r.has_services()? {
            return Ok(true);
        }
        r.write(pass)??;
        Ok(true)
    }

    fn pass_written(&self) -> anyhow::Result<()> {
        match super::replica::get() {
            Some(r) => Ok(r.publish_held()?),
            None => Ok(()),
        }
    }

    fn group_tasks(
        &self,
        _store: &Store,
        cluster: &str,
        group: &str,
    ) -> anyhow::Result<Vec<FleetTask>> {
        let etcd = serving().context("cluster mode without an etcd client")?;
        let draining: Vec<String> = block_on(etcd.get_prefix(&keys::status_all(cluster)))?
            .into_iter()
            .filter(|kv| kv.value == Status::Draining.as_str().as_bytes())
            .map(|kv| kv.key[keys::status_all(cluster).len()..].to_string())
            .collect();
        let mut out = Vec::new();
        for (r, row, containers) in records(cluster)? {
            if row.group.as_deref() == Some(group)
                && row.last_status != crate::store::LastStatus::Stopped
            {
                out.push(FleetTask {
                    row,
                    containers,
                    draining: draining.contains(&r.instance),
                });
            }
        }
        out.sort_by_key(|t| t.row.created_at);
        Ok(out)
    }

    fn task(&self, _store: &Store, cluster: &str, id: &str) -> anyhow::Result<Option<TaskRow>> {
        let etcd = serving().context("cluster mode without an etcd client")?;
        let key = keys::task(cluster, id);
        match block_on(etcd.get(&key))? {
            Some(kv) => Ok(Some(rows(&decode::<Record>(&key, &kv.value)?)?.0)),
            None => Ok(None),
        }
    }

    /// From the task's record (its agent reports the ENI's address in the attachment's
    /// details, as DescribeTasks shows it).
    fn task_ip(&self, _store: &Store, cluster: &str, id: &str) -> Option<String> {
        let etcd = serving()?;
        let key = keys::task(cluster, id);
        let kv = block_on(etcd.get(&key)).ok()??;
        let r = decode::<Record>(&key, &kv.value).ok()?;
        private_ip(&r.task)
    }

    /// An awsvpc task: its address; a bridge or host task: the EC2 instance id of the
    /// box it was placed on (its registration) with its containers' `networkBindings`
    /// (as its box reports them: none yet, no target; none at all in a task RUNNING
    /// without an ENI, host mode: each container port is its host port).
    fn task_target(&self, _store: &Store, cluster: &str, id: &str) -> Option<TaskTarget> {
        let etcd = serving()?;
        let key = keys::task(cluster, id);
        let kv = block_on(etcd.get(&key)).ok()??;
        let r = decode::<Record>(&key, &kv.value).ok()?;
        if let Some(ip) = private_ip(&r.task) {
            return Some(TaskTarget::Ip(ip));
        }
        let reg_key = keys::instance(cluster, &r.instance);
        let reg = block_on(etcd.get(&reg_key)).ok()??;
        let reg: super::instances::Registration = serde_json::from_slice(&reg.value).ok()?;
        let mut ports = Vec::new();
        for c in r.task["containers"].as_array().into_iter().flatten() {
            let name = c["name"].as_str().unwrap_or_default();
            for b in c["networkBindings"].as_array().into_iter().flatten() {
                let port = |m: &str| b[m].as_u64().and_then(|p| u16::try_from(p).ok());
                if let (Some(cp), Some(hp)) = (port("containerPort"), port("hostPort")) {
                    ports.push((name.to_string(), cp, hp));
                }
            }
        }
        let host = ports.is_empty()
            && r.task["lastStatus"] == "RUNNING"
            && r.task["attachments"]
                .as_array()
                .is_none_or(|a| !a.iter().any(|a| a["type"] == "ElasticNetworkInterface"));
        Some(TaskTarget::Instance {
            id: reg.ec2_instance_id(),
            ports,
            host,
        })
    }

    fn stop(&self, _ecs: &Ecs, t: &TaskRow, code: StopCode, reason: &str) -> bool {
        let Some(etcd) = serving() else {
            return false;
        };
        let key = keys::task(&t.cluster, &t.id);
        let asked = block_on(async {
            let kv = etcd.get(&key).await.map_err(super::tasks::server)?;
            let Some(kv) = kv else {
                return Ok(false);
            };
            let r: Record =
                decode(&key, &kv.value).map_err(|e| crate::ecs::EcsError::Server(e.into()))?;
            desire_stopped(etcd, &t.cluster, &r.instance, &t.id, code, reason).await?;
            Ok::<bool, crate::ecs::EcsError>(true)
        });
        match asked {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(task_id = %t.id, error = %e, "could not ask the cluster to stop a task");
                false
            }
        }
    }

    fn reconcile(&self, _ecs: &Ecs, _store: &mut Store, _ids: Option<&[&str]>) {
        // The agents find their dead supervisors; the leader reaps lost boxes.
    }

    fn launcher_onto(&self, instances: &[String]) -> Option<Box<dyn Launcher>> {
        Some(Box::new(Onto(instances.to_vec())))
    }

    fn counts(&self, cluster: &str) -> anyhow::Result<Option<Counts>> {
        let etcd = serving().context("cluster mode without an etcd client")?;
        let instances = block_on(super::instances::load(etcd, cluster))?;
        let mut counts = Counts {
            registered_container_instances: instances
                .iter()
                .filter(|i| matches!(i.status, Status::Active | Status::Draining))
                .count() as i64,
            ..Counts::default()
        };
        for (r, _, _) in records(cluster)? {
            // As one box counts them: every state before RUNNING is pending.
            let fargate = i64::from(r.task["launchType"] == "FARGATE");
            match r.task["lastStatus"].as_str() {
                Some("RUNNING") => {
                    counts.running_tasks += 1;
                    counts.running_fargate_tasks += fargate;
                }
                Some("PROVISIONING" | "PENDING") => {
                    counts.pending_tasks += 1;
                    counts.pending_fargate_tasks += fargate;
                }
                _ => {}
            }
        }
        Ok(Some(counts))
    }

    fn failed_deployment_tasks(
        &self,
        _store: &Store,
        cluster: &str,
        id: &str,
    ) -> anyhow::Result<i64> {
        let mut n = 0;
        for (_, t, _) in records(cluster)? {
            if t.started_by.as_deref() == Some(id)
                && t.last_status == crate::store::LastStatus::Stopped
                && t.started_at.is_none()
            {
                n += 1;
            }
        }
        Ok(n)
    }
}
