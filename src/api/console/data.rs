//! The console's views ECS has no operation for, each read from the source its CLI verb
//! uses, so the page and the verb always agree: `inspect`'s report (isolation), the task
//! metadata endpoint's cgroup sampler (stats), the phases `timeline` prints, the readers
//! `logs` uses, and `validate`'s verdict on a registered revision.

use super::Failure;
use crate::ecs::Ecs;
use crate::host::logs::{ContainerLog, read_merged};
use crate::store::Store;
use serde_json::{Value, json};

/// Lines of each container a first logs read returns (later reads return what is newer).
const LOG_TAIL: usize = 500;

fn store(ecs: &Ecs) -> Result<Store, Failure> {
    let mut store = ecs.open_store()?;
    ecs.reconcile(&mut store);
    Ok(store)
}

type Task = (crate::store::TaskRow, Vec<crate::store::ContainerRow>);

fn task(store: &Store, id: &str) -> Result<Task, Failure> {
    let id = crate::ecs::names::task_id(id);
    store
        .task(id)
        .map_err(anyhow::Error::from)?
        .ok_or_else(|| Failure::not_found(format!("task {id} not found")))
}

/// `inspect --output json` of the task.
pub fn isolation(ecs: &Ecs, id: &str) -> Result<Value, Failure> {
    // Not found is the usual failure here (a stopped, pruned task): say so as a 404. The
    // report runs the reconcile pass itself, so this look-up does not.
    task(&ecs.open_store()?, id)?;
    Ok(crate::host::inspect::report(ecs, id, None)?)
}

/// One cgroup reading per container, as the metadata endpoint's `/stats` takes it:
/// CPU time (ns), memory in use and limit (bytes), with the host's CPU count. The page
/// turns two readings into a rate. Memory in use is the usage less the page cache, what
/// ECS's console charts (Container Insights' `MemoryUtilized`) and `MemoryUtilization`
/// count (`stats::mem_in_use`), not the raw usage `/stats` gives.
pub fn stats(ecs: &Ecs, id: &str) -> Result<Value, Failure> {
    let (t, containers) = task(&store(ecs)?, id)?;
    let limit = t
        .memory
        .as_deref()
        .and_then(|m| crate::taskdef::units::MemoryMib::parse(m).ok())
        .map(|m| m.bytes());
    let cg = runtime::Cgroups::detect().ok();
    let mut out = Vec::new();
    for c in &containers {
        let rid = c
            .runtime_id
            .clone()
            .unwrap_or_else(|| crate::task::runtime_id(&t.id, c.idx as usize));
        let s = cg.as_ref().and_then(|cg| {
            crate::task::stats::sample(cg, &t.id, &rid, limit, std::path::Path::new("/proc"))
                .map(|s| (s.mem_in_use(cg.version()), s))
        });
        out.push(match s {
            Some((in_use, s)) => json!({
                "name": c.name,
                "read": s.read.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "cpuTotalNs": s.cpu_total_ns,
                "onlineCpus": s.online_cpus,
                "memUsage": in_use,
                "memLimit": s.mem_limit,
                "pids": s.pids,
            }),
            None => json!({ "name": c.name }),
        });
    }
    Ok(json!({
        "taskCpu": t.cpu,
        "taskMemory": t.memory,
        "containers": out,
    }))
}

/// The launch phases `run-task --timeline` records, in µs since the task was created, with
/// the task's milestones.
pub fn timeline(ecs: &Ecs, id: &str) -> Result<Value, Failure> {
    let store = store(ecs)?;
    let (t, containers) = task(&store, id)?;
    let created_us = t.created_at * 1000;
    let phases: Vec<Value> = store
        .phases(&t.id)
        .map_err(anyhow::Error::from)?
        .into_iter()
        .map(|p| {
            json!({
                "container": p.container,
                "phase": p.phase,
                "startUs": p.started_at_us - created_us,
                "endUs": p.ended_at_us - created_us,
            })
        })
        .collect();
    let since = |ms: Option<i64>| ms.map(|ms| ms * 1000 - created_us);
    let ran: Vec<Value> = containers
        .iter()
        .map(|c| {
            json!({
                "container": c.name,
                "startUs": since(c.started_at),
                "endUs": since(c.finished_at.or(t.execution_stopped_at)),
            })
        })
        .collect();
    Ok(json!({
        "taskId": t.id,
        "lastStatus": t.last_status.to_string(),
        "containers": containers.iter().map(|c| &c.name).collect::<Vec<_>>(),
        "phases": phases,
        "ran": ran,
        "milestones": {
            "runningUs": since(t.started_at),
            "stoppingUs": since(t.stopping_at),
            "stoppedUs": since(t.stopped_at),
        },
    }))
}

/// The task's output, merged by time: at first the last [`LOG_TAIL`] lines of each
/// container (or of `container`), then — with `since`, the time of the last line the page
/// has — the lines written after it. awslogs containers are read from the local CloudWatch
/// Logs store, others from their json-file, as `logs` does.
pub fn logs(
    ecs: &Ecs,
    id: &str,
    container: Option<&str>,
    since: Option<&str>,
    tail: Option<&str>,
) -> Result<Value, Failure> {
    // `tail`: at most this many lines of each container, `all` for every line (what
    // `minifargate logs --etcd` asks a task's box for); the page's last LOG_TAIL without.
    let tail =
        match tail {
            None => Some(LOG_TAIL),
            Some("all") => None,
            Some(n) => Some(n.parse::<usize>().map_err(|_| {
                Failure::bad_request(format!("tail {n:?}: a number of lines, or all"))
            })?),
        };
    let store = store(ecs)?;
    let (t, containers) = task(&store, id)?;
    let paths = crate::task::TaskPaths::new(&ecs.root, &ecs.run_root, &t.id);
    let mut logs: Vec<ContainerLog> = containers
        .iter()
        .filter(|c| container.is_none_or(|n| n == c.name))
        .map(|c| ContainerLog::new(Some(&t.definition), &paths, &t.id, &c.name))
        .collect();
    let mut entries = read_merged(&mut logs, ecs, tail)?;
    // RFC 3339 with nanoseconds in UTC: the strings order as the times do. Lines at the
    // `since` instant itself come again; the page drops the ones it has.
    if let Some(s) = since {
        entries.retain(|(_, e)| e.time.as_str() >= s);
    }
    let lines: Vec<Value> = entries
        .into_iter()
        .map(|(i, e)| {
            json!({
                "container": logs[i].name,
                "time": e.time,
                "stream": e.stream,
                "log": e.log.strip_suffix('\n').unwrap_or(&e.log),
            })
        })
        .collect();
    Ok(json!({
        "lastStatus": t.last_status.to_string(),
        "containers": containers.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        "lines": lines,
    }))
}

/// `validate`'s verdict on revision `family:revision` as registered (the members
/// DescribeTaskDefinition adds left out, as RegisterTaskDefinition takes it).
pub fn findings(ecs: &Ecs, family: &str, revision: &str) -> Result<Value, Failure> {
    let req = json!({ "taskDefinition": format!("{family}:{revision}") });
    let op = crate::ecs::operations::Op::DescribeTaskDefinition;
    let d = crate::api::call_json(ecs, op, req.to_string().as_bytes()).map_err(super::ecs_error)?;
    let mut def = d["taskDefinition"].clone();
    if let Some(m) = def.as_object_mut() {
        // Ref: DescribeTaskDefinition's TaskDefinition members that RegisterTaskDefinition
        // does not take (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_TaskDefinition.html).
        for k in [
            "taskDefinitionArn",
            "revision",
            "status",
            "requiresAttributes",
            "compatibilities",
            "registeredAt",
            "registeredBy",
            "deregisteredAt",
        ] {
            m.remove(k);
        }
    }
    let parsed = crate::taskdef::parse::parse_value(def);
    let report =
        crate::taskdef::validate::validate(&parsed, &crate::taskdef::validate::Options::default());
    Ok(serde_json::to_value(&report).map_err(anyhow::Error::from)?)
}
