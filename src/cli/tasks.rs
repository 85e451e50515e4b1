//! Task verbs: `describe-tasks`, `stop-task` (crate::ecs::tasks does the work), `logs` and
//! `timeline`. Each first notices tasks whose supervisor died (see
//! supervisor::reconcile).

use super::GlobalOpts;
use super::aws::{self, Generic};
use super::output;
use crate::ecs::operations::{self as ops, Op};
use crate::ecs::tasks::{self as core, Unset};
use crate::host::logs::{ContainerLog, read_merged};
use crate::store::{LastStatus, Store};
use crate::task::TaskPaths;
use anyhow::{Context, bail};
use clap::Args;
use runtime::LogEntry;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

/// Show a task's container output (kept after the task stops).
///
/// Example: minifargate logs 0123456789abcdef0123456789abcdef --container app --follow
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Task id or ARN.
    pub task: String,
    /// Only this container.
    #[arg(long)]
    pub container: Option<String>,
    /// Keep following until the task stops.
    #[arg(long, short)]
    pub follow: bool,
    /// Only lines newer than this: a duration (`10m`, `1h30m`, `45s`) or an RFC 3339
    /// time (`2024-05-01T10:00:00Z`).
    #[arg(long, value_parser = parse_since)]
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Prefix each line with the time it was written (RFC 3339, nanoseconds, UTC).
    #[arg(long, short)]
    pub timestamps: bool,
    /// Only the last N lines of each container (before following).
    #[arg(long, short = 'n')]
    pub tail: Option<usize>,
    /// The task runs on a box of a cluster whose state is in etcd at these endpoints
    /// (comma-separated, as `agent --cluster`): its lines come from its box's agent
    /// (docs/cluster.md "Logs across boxes").
    #[arg(long, value_name = "ENDPOINTS")]
    pub etcd: Option<String>,
    #[command(flatten)]
    pub etcd_tls: super::agent::EtcdTls,
}

/// Show how long each launch phase of a task took: pull, network, rootfs, create, start,
/// first healthy, stop — per container, plus the task's milestones.
///
/// Example: minifargate timeline 0123456789abcdef0123456789abcdef
#[derive(Debug, Args)]
pub struct TimelineArgs {
    /// Task id or ARN.
    pub task: String,
}

/// `--since`: a duration before now, or an RFC 3339 time.
fn parse_since(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    let d = humantime::parse_duration(s).map_err(|_| {
        format!("{s:?} is neither a duration (10m, 1h30m, 45s) nor an RFC 3339 time")
    })?;
    let d = chrono::Duration::from_std(d).map_err(|e| e.to_string())?;
    Ok(chrono::Utc::now() - d)
}

pub use crate::ecs::names::task_id;

pub fn open_state(g: &GlobalOpts) -> anyhow::Result<Store> {
    g.ecs().open_store()
}

/// Finishes tasks whose supervisor died; failures are logged, not fatal.
pub fn reconcile(g: &GlobalOpts, store: &mut Store) {
    g.ecs().reconcile(store)
}

pub fn print_entry(out: &mut impl Write, prefix: &str, e: &LogEntry) {
    let line = e.log.strip_suffix('\n').unwrap_or(&e.log);
    let _ = writeln!(out, "{prefix}{line}");
}

/// The launch timeline of task `id` (see output::timeline).
pub fn timeline_text(store: &Store, id: &str) -> anyhow::Result<String> {
    let (t, containers) = store
        .task(id)?
        .with_context(|| format!("task {id} not found"))?;
    Ok(output::timeline(&t, &containers, &store.phases(id)?))
}

pub fn timeline(g: &GlobalOpts, a: TimelineArgs) -> anyhow::Result<ExitCode> {
    let mut store = open_state(g)?;
    g.ecs().reconcile_tasks(&mut store, &[task_id(&a.task)]);
    print!("{}", timeline_text(&store, task_id(&a.task))?);
    Ok(ExitCode::SUCCESS)
}

/// `describe-tasks`: as DescribeTasks, except that without --cluster a task is found in any
/// cluster (ids are unique on this host).
pub fn describe(g: &GlobalOpts, a: Generic<ops::DescribeTasks>) -> anyhow::Result<ExitCode> {
    let Some(req) = a.request()? else {
        return Ok(ExitCode::SUCCESS);
    };
    let req: core::DescribeTasksRequest = aws::decode(Op::DescribeTasks.name(), req)?;
    let r = core::describe_tasks(&g.ecs(), &req, Unset::AnyCluster)?;
    aws::print_response(Op::DescribeTasks.name(), &r, &a.output)?;
    Ok(ExitCode::SUCCESS)
}

/// `stop-task`: as StopTask, except that without --cluster the task is found in any cluster.
pub fn stop_task(g: &GlobalOpts, a: Generic<ops::StopTask>) -> anyhow::Result<ExitCode> {
    let Some(req) = a.request()? else {
        return Ok(ExitCode::SUCCESS);
    };
    let req: core::StopTaskRequest = aws::decode(Op::StopTask.name(), req)?;
    let r = core::stop_task(&g.ecs(), &req, Unset::AnyCluster)?;
    aws::print_response(Op::StopTask.name(), &r, &a.output)?;
    Ok(ExitCode::SUCCESS)
}

pub fn logs(g: &GlobalOpts, a: LogsArgs) -> anyhow::Result<ExitCode> {
    if a.etcd.is_none() && a.etcd_tls.given() {
        bail!("--etcd-cacert, --etcd-cert and --etcd-key are for --etcd (a task on another box)");
    }
    let mut store = open_state(g)?;
    let id = task_id(&a.task).to_string();
    g.ecs().reconcile_tasks(&mut store, &[id.as_str()]);
    let (_, containers) = store
        .task(&id)?
        .with_context(|| format!("task {} not found", a.task))?;
    let names: Vec<String> = containers
        .iter()
        .map(|c| c.name.clone())
        .filter(|n| a.container.as_ref().is_none_or(|c| c == n))
        .collect();
    if names.is_empty() {
        bail!(
            "task {id} has no container {:?} (its containers: {})",
            a.container.unwrap_or_default(),
            containers
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let paths = TaskPaths::new(&g.root, &g.run_root, &id);
    let width = names.iter().map(|n| n.len()).max().unwrap_or(0);
    let prefix = |n: &str| {
        if names.len() > 1 {
            format!("{n:<width$} | ")
        } else {
            String::new()
        }
    };
    let show = |out: &mut std::io::StdoutLock<'_>, p: &str, e: &LogEntry| {
        if a.timestamps {
            print_entry(out, &format!("{p}{} ", e.time), e);
        } else {
            print_entry(out, p, e);
        }
    };
    let since = a.since;
    let recent = |e: &LogEntry| {
        since.is_none_or(|s| chrono::DateTime::parse_from_rfc3339(&e.time).is_ok_and(|t| t > s))
    };
    let def = store.task(&id)?.map(|(t, _)| t.definition);
    let ecs = g.ecs();
    let mut out = std::io::stdout().lock();
    let prefixes: Vec<String> = names.iter().map(|n| prefix(n)).collect();
    let mut logs: Vec<ContainerLog> = names
        .iter()
        .map(|n| ContainerLog::new(def.as_deref(), &paths, &id, n))
        .collect();
    // Everything so far, merged by time.
    for (i, e) in read_merged(&mut logs, &ecs, a.tail)? {
        if recent(&e) {
            show(&mut out, &prefixes[i], &e);
        }
    }
    out.flush().ok();
    if !a.follow {
        return Ok(ExitCode::SUCCESS);
    }
    loop {
        let stopped = store
            .task(&id)?
            .is_none_or(|(t, _)| t.last_status == LastStatus::Stopped);
        for (p, l) in prefixes.iter().zip(&mut logs) {
            for e in l.more(&ecs)? {
                if recent(&e) {
                    show(&mut out, p, &e);
                }
            }
        }
        out.flush().ok();
        if stopped {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_millis(50));
        ecs.reconcile_tasks(&mut store, &[id.as_str()]);
    }
}
