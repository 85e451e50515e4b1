//! CloudWatch Container Insights for ECS: the `ECS/ContainerInsights` metrics of the
//! clusters whose `containerInsights` setting is `enabled` or `enhanced`, once a metric
//! period. The task figures (CPU units and MiB used and reserved, network and storage
//! bytes, ephemeral storage) come from each task's cgroups, network namespace and
//! filesystem where it runs ([`super::metrics::Publisher`], on this box or a cluster's
//! agents); the counts (tasks, services, deployments) from ECS's own state, in serve.
//!
//! Ref: Amazon CloudWatch User Guide, "Amazon ECS Container Insights metrics" (the names,
//! dimension sets and units) and "Container Insights performance log events for Amazon
//! ECS" (the Task, Service and Cluster events, each one datum a minute, whose embedded
//! metric declarations give the units published: CpuUtilized/CpuReserved `None`, memory
//! `Megabytes`, network and storage `Bytes/Second` with storage bytes cumulative, counts
//! `Count`). So per task and period one datum per metric and dimension set: a period's
//! Sum is the resource's total, its Average the mean task's. What is not published here
//! (enhanced observability's task- and container-level dimensions, the EC2 instance
//! metrics of the CloudWatch agent) is said in docs/cloudwatch.md.

use super::Ecs;
use crate::cloudwatch::metrics::{Datum, MetricId, Millis, Stats};
use crate::store::{ServiceStatus, TaskRow};
use std::collections::BTreeMap;

/// The namespace Container Insights publishes ECS's metrics in.
pub const NAMESPACE: &str = "ECS/ContainerInsights";

/// Whether a cluster's `containerInsights` value turns the metrics on: `enhanced` is
/// `enabled` with more (ecs.json `ClusterSetting`).
pub fn on(value: &str) -> bool {
    matches!(value, "enabled" | "enhanced")
}

/// The ACTIVE clusters of `ecs`'s store whose `containerInsights` setting is on (in
/// cluster mode every serve's copy of the control plane has them).
pub fn clusters(ecs: &Ecs) -> anyhow::Result<Vec<String>> {
    let store = ecs.open_store()?;
    Ok(store
        .list_clusters()?
        .into_iter()
        .filter(|c| {
            c.settings
                .iter()
                .any(|s| s["name"] == "containerInsights" && s["value"].as_str().is_some_and(on))
        })
        .map(|c| c.name)
        .collect())
}

fn datum(at: Millis, unit: &str, v: f64, high_resolution: bool) -> Datum {
    Datum {
        at,
        unit: unit.into(),
        stats: Stats::one(v),
        raw: Some(vec![(v, 1.0)]),
        high_resolution,
    }
}

fn metric(name: &str, dims: &[(&str, &str)]) -> MetricId {
    MetricId {
        namespace: NAMESPACE.into(),
        name: name.into(),
        dimensions: dims
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

/// What a task had used by a time: counters since it started (CPU ns, network bytes,
/// storage bytes) and its memory in use.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    /// The sample's time, which its datums carry.
    pub at: Millis,
    /// When the reading was taken (0: at `at`): rates are over the readings' own times.
    /// A sample's `at` is the time serve asked for, and a task may start between that and
    /// the reading: its first rate, against its start, over `at` would divide what it used
    /// by a few milliseconds (or less than none).
    pub read: Millis,
    pub cpu_ns: u64,
    pub mem: u64,
    /// Received and sent bytes of the task's network namespace (not loopback); `None` in
    /// the `host` and `none` network modes, where there is no task interface to count.
    pub net: Option<(u64, u64)>,
    /// Bytes read from and written to block devices by the task's containers.
    pub io: (u64, u64),
    /// The task's own ephemeral filesystem: (bytes used, bytes its definition reserved),
    /// when it has one.
    pub ephemeral: Option<(u64, u64)>,
}

impl Usage {
    /// What a task had used when it started: nothing (its cgroups and network namespace
    /// are its own and new).
    pub fn at_start(t: &TaskRow) -> Usage {
        let at = t.started_at.unwrap_or(t.created_at);
        Usage {
            at,
            read: at,
            ..Usage::default()
        }
    }

    /// When the reading was taken.
    fn taken(&self) -> Millis {
        if self.read != 0 { self.read } else { self.at }
    }
}

/// A task's datums of one period into `out`: `now` against `before` (its previous
/// Container Insights sample, or [`Usage::at_start`]), with the task's reservation (CPU
/// units, memory bytes; `None` where its definition reserves none, as ECS then publishes
/// neither figure).
pub fn task_data(
    out: &mut BTreeMap<MetricId, Vec<Datum>>,
    t: &TaskRow,
    service: Option<&str>,
    reserved: (Option<f64>, Option<f64>),
    now: &Usage,
    before: &Usage,
    high_resolution: bool,
) {
    let mut sets: Vec<Vec<(&str, &str)>> = vec![
        vec![("ClusterName", t.cluster.as_str())],
        vec![
            ("ClusterName", t.cluster.as_str()),
            ("TaskDefinitionFamily", t.family.as_str()),
        ],
    ];
    if let Some(s) = service {
        sets.push(vec![
            ("ClusterName", t.cluster.as_str()),
            ("ServiceName", s),
        ]);
    }
    let secs = (now.taken() - before.taken()).max(1) as f64 / 1000.0;
    let mut figures: Vec<(&str, &str, f64)> = Vec::new();
    if let Some(units) = reserved.0 {
        // One vCPU busy for the whole interval is 1,024 CPU units.
        let used = now.cpu_ns.saturating_sub(before.cpu_ns) as f64 / (secs * 1e9) * 1024.0;
        figures.push(("CpuUtilized", "None", used));
        figures.push(("CpuReserved", "None", units));
    }
    if let Some(bytes) = reserved.1 {
        let mib = (1u64 << 20) as f64;
        figures.push(("MemoryUtilized", "Megabytes", now.mem as f64 / mib));
        figures.push(("MemoryReserved", "Megabytes", bytes / mib));
    }
    if let Some((rx, tx)) = now.net {
        let (rx0, tx0) = before.net.unwrap_or((0, 0));
        figures.push((
            "NetworkRxBytes",
            "Bytes/Second",
            rx.saturating_sub(rx0) as f64 / secs,
        ));
        figures.push((
            "NetworkTxBytes",
            "Bytes/Second",
            tx.saturating_sub(tx0) as f64 / secs,
        ));
    }
    // Cumulative bytes under the unit the performance log events declare.
    figures.push(("StorageReadBytes", "Bytes/Second", now.io.0 as f64));
    figures.push(("StorageWriteBytes", "Bytes/Second", now.io.1 as f64));
    if let Some((used, size)) = now.ephemeral {
        let gib = (1u64 << 30) as f64;
        figures.push(("EphemeralStorageUtilized", "Gigabytes", used as f64 / gib));
        figures.push(("EphemeralStorageReserved", "Gigabytes", size as f64 / gib));
    }
    for dims in &sets {
        for (name, unit, v) in &figures {
            out.entry(metric(name, dims)).or_default().push(datum(
                now.at,
                unit,
                *v,
                high_resolution,
            ));
        }
    }
}

/// The counts of `clusters` at `now` from ECS's state (DescribeClusters' and
/// DescribeServices' figures, so on one box and in cluster mode alike): per cluster
/// TaskCount, ServiceCount, ContainerInstanceCount; per ACTIVE service DesiredTaskCount,
/// RunningTaskCount, PendingTaskCount, DeploymentCount and TaskSetCount (0: the ECS
/// deployment controller has no task sets).
pub fn counts(
    ecs: &Ecs,
    clusters: &[String],
    now: Millis,
    high_resolution: bool,
) -> anyhow::Result<Vec<(MetricId, Vec<Datum>)>> {
    let store = ecs.open_store()?;
    let mut out = Vec::new();
    let mut put = |name: &str, dims: &[(&str, &str)], v: usize| {
        out.push((
            metric(name, dims),
            vec![datum(now, "Count", v as f64, high_resolution)],
        ));
    };
    for name in clusters {
        let Some(row) = store.cluster(name)? else {
            continue;
        };
        let elsewhere = super::fleet::get().counts(name)?;
        let running = elsewhere.map_or(row.running_tasks, |c| c.running_tasks);
        // This box is the one container instance of an ACTIVE cluster (DescribeClusters).
        let instances = elsewhere.map_or(1, |c| c.registered_container_instances);
        let dims = [("ClusterName", name.as_str())];
        put("TaskCount", &dims, running.max(0) as usize);
        put("ServiceCount", &dims, row.active_services.max(0) as usize);
        put("ContainerInstanceCount", &dims, instances.max(0) as usize);
        for s in store.list_services(Some(name))? {
            if s.status != ServiceStatus::Active {
                continue;
            }
            let shape = super::services::service_json(&store, &s, false)?;
            let dims = [("ClusterName", name.as_str()), ("ServiceName", &s.name)];
            put(
                "DesiredTaskCount",
                &dims,
                shape.desired_count.max(0) as usize,
            );
            put("RunningTaskCount", &dims, shape.running_count);
            put("PendingTaskCount", &dims, shape.pending_count);
            put("DeploymentCount", &dims, shape.deployments.len());
            put("TaskSetCount", &dims, 0);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(service: bool) -> TaskRow {
        TaskRow {
            id: "t1".into(),
            cluster: "c".into(),
            family: "web".into(),
            group: service.then(|| "service:svc".to_string()),
            ..Default::default()
        }
    }

    #[test]
    fn a_task_started_after_the_sample_s_time_is_rated_over_what_it_ran() {
        // serve asked for the sample at 30.000 s; the task started at 30.200 s and was
        // read at 31.200 s, having used a quarter of a vCPU for that second: 256 units,
        // not its use divided by the 1 ms its start and the sample's time are apart.
        let mut t = task(true);
        t.started_at = Some(30_200);
        let before = Usage::at_start(&t);
        let now = Usage {
            at: 30_000,
            read: 31_200,
            cpu_ns: 250_000_000,
            ..Usage::default()
        };
        let mut out = BTreeMap::new();
        task_data(
            &mut out,
            &t,
            Some("svc"),
            (Some(256.0), None),
            &now,
            &before,
            false,
        );
        let used = &out[&metric("CpuUtilized", &[("ClusterName", t.cluster.as_str())])];
        assert_eq!(used[0].at, 30_000, "the datum carries the sample's time");
        assert!((used[0].stats.sum - 256.0).abs() < 1.0, "{used:?}");
    }

    #[test]
    fn a_task_gives_each_figure_per_dimension_set_in_container_insights_units() {
        let t = task(true);
        let before = Usage {
            at: 0,
            cpu_ns: 0,
            net: Some((0, 0)),
            ..Usage::default()
        };
        // Half a vCPU for 10 s, 64 MiB in use, 1000 B/s in, 500 B/s out.
        let now = Usage {
            at: 10_000,
            read: 0,
            cpu_ns: 5_000_000_000,
            mem: 64 << 20,
            net: Some((10_000, 5_000)),
            io: (4096, 8192),
            ephemeral: Some((1 << 30, 20 << 30)),
        };
        let mut out = BTreeMap::new();
        task_data(
            &mut out,
            &t,
            Some("svc"),
            (Some(256.0), Some((512u64 << 20) as f64)),
            &now,
            &before,
            false,
        );
        let get = |name: &str, dims: &[(&str, &str)]| {
            let d = &out[&metric(name, dims)];
            assert_eq!(d.len(), 1, "{name}");
            (d[0].stats.sum, d[0].unit.clone())
        };
        let svc = [("ClusterName", "c"), ("ServiceName", "svc")];
        assert_eq!(get("CpuUtilized", &svc), (512.0, "None".into()));
        assert_eq!(get("CpuReserved", &svc), (256.0, "None".into()));
        assert_eq!(get("MemoryUtilized", &svc), (64.0, "Megabytes".into()));
        assert_eq!(
            get("MemoryReserved", &[("ClusterName", "c")]),
            (512.0, "Megabytes".into())
        );
        let fam = [("ClusterName", "c"), ("TaskDefinitionFamily", "web")];
        assert_eq!(get("NetworkRxBytes", &fam), (1000.0, "Bytes/Second".into()));
        assert_eq!(get("NetworkTxBytes", &fam), (500.0, "Bytes/Second".into()));
        assert_eq!(
            get("StorageWriteBytes", &fam),
            (8192.0, "Bytes/Second".into())
        );
        assert_eq!(
            get("EphemeralStorageReserved", &fam),
            (20.0, "Gigabytes".into())
        );
        assert_eq!(
            get("EphemeralStorageUtilized", &fam),
            (1.0, "Gigabytes".into())
        );
        // Three dimension sets × 10 figures.
        assert_eq!(out.len(), 30);

        // A task of no service, without a reservation or a task interface: no CPU,
        // memory or network figures, and no ServiceName set.
        let mut out = BTreeMap::new();
        let host = Usage {
            net: None,
            ephemeral: None,
            ..now
        };
        task_data(
            &mut out,
            &task(false),
            None,
            (None, None),
            &host,
            &before,
            false,
        );
        let names: std::collections::BTreeSet<_> = out.keys().map(|m| m.name.clone()).collect();
        assert_eq!(
            names.into_iter().collect::<Vec<_>>(),
            ["StorageReadBytes", "StorageWriteBytes"]
        );
        assert!(
            out.keys()
                .all(|m| !m.dimensions.contains_key("ServiceName"))
        );
    }

    #[test]
    fn enabled_and_enhanced_turn_the_metrics_on() {
        assert!(on("enabled") && on("enhanced"));
        assert!(!on("disabled") && !on(""));
    }
}
