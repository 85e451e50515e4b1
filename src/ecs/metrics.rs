//! The metrics ECS publishes for a service: `AWS/ECS` `CPUUtilization` and
//! `MemoryUtilization` by `ClusterName, ServiceName`, in percent of what each task
//! reserved, read from the tasks' cgroups as ECS's agent reads them.
//!
//! Ref: Amazon ECS Developer Guide, "Amazon ECS service utilization metrics": the
//! Average is (total CPU units used by the service's tasks × 100) / (CPU units of the
//! task definition × number of tasks), Minimum and Maximum the least and most used
//! task; the agent samples every 20 seconds and ECS sends one-minute data, only for
//! services with RUNNING tasks ("Amazon ECS CloudWatch metrics"). Here each sample of
//! each task is one datum of the service's metric, so CloudWatch's Average, Minimum,
//! Maximum and SampleCount over a period are those statistics over the tasks' samples.
//! The period is the box's (`MINIFARGATE_METRICS_PERIOD`, 60 s by default): three samples
//! a period, stored at high resolution when the period is under a minute. The same
//! sampler reads the Container Insights figures of the clusters serve names
//! (`super::insights`), once a period.

use crate::cloudwatch::Metrics;
use crate::cloudwatch::metrics::{Datum, MetricId, Millis, Stats};
use crate::store::{ContainerRow, TaskRow};
use crate::taskdef::units::{CpuUnits, MemoryMib};
use std::collections::{BTreeMap, HashMap};

/// The namespace ECS publishes in.
pub const NAMESPACE: &str = "AWS/ECS";

/// What a task reserved: CPU units and memory bytes (the task's size, else the sum of its
/// containers'), `None` where nothing is reserved (no utilization is computed then).
fn reserved(t: &TaskRow, containers: &[ContainerRow]) -> (Option<f64>, Option<f64>) {
    let cpu = t
        .cpu
        .as_deref()
        .and_then(|c| CpuUnits::parse(c).ok())
        .map(|c| f64::from(c.0))
        .or_else(|| {
            let sum: u32 = containers
                .iter()
                .filter_map(|c| c.cpu.as_deref().and_then(|v| v.parse::<u32>().ok()))
                .sum();
            (sum > 0).then_some(f64::from(sum))
        });
    let mem = t
        .memory
        .as_deref()
        .and_then(|m| MemoryMib::parse(m).ok())
        .map(|m| m.bytes() as f64)
        .or_else(|| {
            let sum: u64 = containers
                .iter()
                .filter_map(|c| {
                    c.memory
                        .as_deref()
                        .or(c.memory_reservation.as_deref())
                        .and_then(|v| v.parse::<u64>().ok())
                })
                .sum();
            (sum > 0).then_some((sum << 20) as f64)
        });
    (cpu.filter(|c| *c > 0.0), mem.filter(|m| *m > 0.0))
}

/// One reading of a task: its containers' CPU time (ns) and memory in use (bytes).
#[derive(Debug, Clone, Copy)]
struct Reading {
    at: Millis,
    cpu_ns: u64,
    mem: u64,
}

/// The sampler: the previous reading of each task, to turn CPU time into a rate, and
/// the reading of each task's last Container Insights sample (`super::insights`).
#[derive(Debug, Default)]
pub struct Publisher {
    previous: HashMap<String, Reading>,
    insights: HashMap<String, super::insights::Usage>,
}

impl Publisher {
    pub fn new() -> Publisher {
        Publisher::default()
    }

    /// Samples every RUNNING service task of the box's store at `now` and puts its
    /// utilization into `sink`; `high_resolution` for periods under a minute. The tasks of
    /// the clusters `insights` names (serve names them once a period) also give their
    /// Container Insights figures, whether of a service or not. Returns how many tasks
    /// were sampled.
    pub fn sample(
        &mut self,
        ecs: &super::Ecs,
        sink: &Metrics,
        now: Millis,
        high_resolution: bool,
        insights: &[String],
    ) -> anyhow::Result<usize> {
        let store = ecs.open_store()?;
        let cg = runtime::Cgroups::detect().ok();
        let mut seen = HashMap::new();
        let mut seen_insights = HashMap::new();
        let mut data: BTreeMap<MetricId, Vec<Datum>> = BTreeMap::new();
        let mut containers_of = store.unstopped_containers()?;
        for t in store.unstopped_tasks()? {
            let service = t
                .group
                .as_deref()
                .and_then(|g| g.strip_prefix("service:"))
                .map(str::to_string);
            let with_insights = insights.contains(&t.cluster);
            if service.is_none() && !with_insights {
                continue;
            }
            if t.last_status != crate::store::LastStatus::Running {
                continue;
            }
            let containers = containers_of.remove(&t.id).unwrap_or_default();
            let Some(cg) = cg.as_ref() else { continue };
            let Some((mut usage, net, pid)) = read_usage(cg, &t, &containers, with_insights, now)
            else {
                continue;
            };
            let now_reading = Reading {
                at: now,
                cpu_ns: usage.cpu_ns,
                mem: usage.mem,
            };
            let (cpu_res, mem_res) = reserved(&t, &containers);
            if let Some(service) = service.as_deref() {
                let at = (&t.cluster, service, self.previous.get(&t.id));
                utilization(
                    &mut data,
                    at,
                    now_reading,
                    (cpu_res, mem_res),
                    high_resolution,
                );
            }
            if with_insights {
                // Ref: "Amazon ECS Container Insights metrics": network figures only in
                // the awsvpc and bridge modes (host's would be the box's interfaces).
                let mode = store.task_network(&t.id)?.map(|n| n.mode);
                if matches!(mode.as_deref(), Some("awsvpc" | "bridge")) {
                    usage.net = net;
                }
                let reserved =
                    (crate::task::ephemeral::size_gib(&t.definition).max(0) as u64) << 30;
                usage.ephemeral = pid
                    .and_then(|pid| ephemeral_used(ecs, &t.id, pid, reserved))
                    .map(|used| (used, reserved));
                let before = self
                    .insights
                    .get(&t.id)
                    .copied()
                    .unwrap_or_else(|| super::insights::Usage::at_start(&t));
                super::insights::task_data(
                    &mut data,
                    &t,
                    service.as_deref(),
                    (cpu_res, mem_res),
                    &usage,
                    &before,
                    high_resolution,
                );
                seen_insights.insert(t.id.clone(), usage);
            }
            seen.insert(t.id.clone(), now_reading);
        }
        let sampled = seen.len();
        // A task no longer running is forgotten.
        self.previous = seen;
        if !insights.is_empty() {
            self.insights = seen_insights;
        }
        for (id, d) in &data {
            sink.put(id, d, now);
        }
        Ok(sampled)
    }
}

/// A task's containers' usage now (for Container Insights, `with_insights`, the whole
/// sample: I/O, network, its first process), `None` when none could be read.
#[allow(clippy::type_complexity)]
fn read_usage(
    cg: &runtime::Cgroups,
    t: &TaskRow,
    containers: &[ContainerRow],
    with_insights: bool,
    now: Millis,
) -> Option<(super::insights::Usage, Option<(u64, u64)>, Option<u32>)> {
    let mut usage = super::insights::Usage {
        at: now,
        read: super::now_ms(),
        ..Default::default()
    };
    let (mut net, mut read, mut pid) = (None, false, None);
    for c in containers {
        let rid = c
            .runtime_id
            .clone()
            .unwrap_or_else(|| crate::task::runtime_id(&t.id, c.idx as usize));
        // The service metrics need two figures of a container; Container
        // Insights the whole sample.
        if !with_insights {
            if let Some((cpu, mem)) = crate::task::stats::usage(cg, &t.id, &rid) {
                usage.cpu_ns += cpu;
                usage.mem += mem;
                read = true;
            }
            continue;
        }
        if let Some(s) =
            crate::task::stats::sample(cg, &t.id, &rid, None, std::path::Path::new("/proc"))
        {
            usage.cpu_ns += s.cpu_total_ns;
            // What the agent sends: the usage less the page cache (`mem_in_use`).
            usage.mem += s.mem_in_use(cg.version());
            for e in &s.io_bytes {
                match e.op.to_ascii_lowercase().as_str() {
                    "read" => usage.io.0 += e.value,
                    "write" => usage.io.1 += e.value,
                    _ => {}
                }
            }
            // The containers share the task's network namespace: one counts it.
            if net.is_none() && !s.networks.is_empty() {
                net = Some(
                    s.networks
                        .values()
                        .fold((0, 0), |(rx, tx), c| (rx + c[0], tx + c[4])),
                );
            }
            pid = pid.or(s.pid);
            read = true;
        }
    }
    read.then_some((usage, net, pid))
}

/// A service task's CPUUtilization (from the previous reading) and MemoryUtilization,
/// in percent of what it reserves.
fn utilization(
    data: &mut BTreeMap<MetricId, Vec<Datum>>,
    (cluster, service, previous): (&String, &str, Option<&Reading>),
    now_reading: Reading,
    (cpu_res, mem_res): (Option<f64>, Option<f64>),
    high_resolution: bool,
) {
    let now = now_reading.at;
    let dims = BTreeMap::from([
        ("ClusterName".to_string(), cluster.clone()),
        ("ServiceName".to_string(), service.to_string()),
    ]);
    let datum = |v: f64| Datum {
        at: now,
        unit: "Percent".into(),
        stats: Stats::one(v),
        raw: Some(vec![(v, 1.0)]),
        high_resolution,
    };
    if let (Some(prev), Some(units)) = (previous, cpu_res) {
        let elapsed_ns = (now_reading.at - prev.at).max(1) as f64 * 1e6;
        let used_ns = now_reading.cpu_ns.saturating_sub(prev.cpu_ns) as f64;
        // One vCPU busy for the whole interval is 1,024 CPU units.
        let used_units = used_ns / elapsed_ns * 1024.0;
        data.entry(metric("CPUUtilization", &dims))
            .or_default()
            .push(datum(used_units * 100.0 / units));
    }
    if let Some(bytes) = mem_res {
        data.entry(metric("MemoryUtilization", &dims))
            .or_default()
            .push(datum(now_reading.mem as f64 * 100.0 / bytes));
    }
}

/// A task's own ephemeral filesystem (`MINIFARGATE_EPHEMERAL_STORAGE=enforce`: an ext4
/// of `ephemeralStorage.sizeInGiB`, `reserved` bytes, that holds its writable layers):
/// the bytes used in it. It is mounted in the task's own mount namespace, so it is read
/// through a container process (`pid`): the statfs of an overlay root is its upper
/// layer's filesystem's (kernel Documentation/filesystems/overlayfs.rst), here the
/// task's. A filesystem larger than the reservation is not it (the task dir without its
/// image, or a layer elsewhere): None, as for a task whose writable layers share the
/// host's disk, where their size would cost a walk of every task's files each period
/// (docs/cloudwatch.md).
fn ephemeral_used(ecs: &super::Ecs, task_id: &str, pid: u32, reserved: u64) -> Option<u64> {
    let dir = crate::task::TaskPaths::new(&ecs.root, &ecs.run_root, task_id).dir;
    if !dir.join("ephemeral.img").exists() {
        return None;
    }
    let fs =
        nix::sys::statvfs::statvfs(&std::path::PathBuf::from(format!("/proc/{pid}/root"))).ok()?;
    let size = fs.blocks() * fs.fragment_size();
    if size == 0 || size > reserved {
        return None;
    }
    Some(fs.blocks().saturating_sub(fs.blocks_free()) * fs.fragment_size())
}

fn metric(name: &str, dims: &BTreeMap<String, String>) -> MetricId {
    MetricId {
        namespace: NAMESPACE.into(),
        name: name.into(),
        dimensions: dims.clone(),
    }
}
