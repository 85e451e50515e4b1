//! Task verbs: `describe-tasks`, `list-tasks`, `stop-task`, `logs`, and the hidden
//! `supervise`. Each first notices tasks whose supervisor died (see task::reconcile).

use super::GlobalOpts;
use crate::store::{Store, TaskFilter};
use crate::supervisor::{self, Request};
use crate::task::{TaskPaths, json, reconcile as rec, status, stop};
use anyhow::{Context, bail};
use clap::Args;
use runtime::{LogEntry, LogFollower};
use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Describe tasks, like `aws ecs describe-tasks`.
///
/// Example: minifargate describe-tasks --tasks 0123456789abcdef0123456789abcdef
#[derive(Debug, Args)]
pub struct DescribeTasksArgs {
    /// Only tasks of this cluster.
    #[arg(long)]
    pub cluster: Option<String>,
    /// Task ids or ARNs.
    #[arg(long, required = true, num_args = 1..)]
    pub tasks: Vec<String>,
}

/// List task ARNs, like `aws ecs list-tasks` (RUNNING ones unless --desired-status STOPPED).
#[derive(Debug, Args)]
pub struct ListTasksArgs {
    #[arg(long, default_value = "default")]
    pub cluster: String,
    #[arg(long)]
    pub family: Option<String>,
    #[arg(long, default_value = "RUNNING", value_parser = ["RUNNING", "PENDING", "STOPPED"])]
    pub desired_status: String,
    #[arg(long)]
    pub started_by: Option<String>,
}

/// Stop a task, like `aws ecs stop-task`: containers get SIGTERM in reverse dependency
/// order, then SIGKILL after their stopTimeout.
#[derive(Debug, Args)]
pub struct StopTaskArgs {
    #[arg(long)]
    pub cluster: Option<String>,
    /// Task id or ARN.
    #[arg(long)]
    pub task: String,
    /// The task's stoppedReason (default "Task stopped by user").
    #[arg(long)]
    pub reason: Option<String>,
}

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
}

pub fn open_state(g: &GlobalOpts) -> anyhow::Result<Store> {
    Store::open(&g.root)
        .with_context(|| format!("failed to open the state store at {}", g.root.display()))
}

/// Finishes tasks whose supervisor died; failures are logged, not fatal.
pub fn reconcile(g: &GlobalOpts, store: &mut Store) {
    match rec::reconcile(store, &g.root, &g.run_root) {
        Ok(ids) => {
            for id in ids {
                tracing::warn!(task_id = %id, "the task's supervisor had died: task marked STOPPED and cleaned up");
            }
        }
        Err(e) => {
            tracing::error!(error = %runtime::error_chain(&e), "failed to check task supervisors")
        }
    }
    if let Err(e) = rec::prune(store, &g.root, &g.run_root) {
        tracing::error!(error = %runtime::error_chain(&e), "failed to prune stopped tasks");
    }
}

/// The task id in an id or a task ARN (`…:task/<cluster>/<id>`).
pub fn task_id(s: &str) -> &str {
    s.rsplit('/').next().unwrap_or(s)
}

pub fn task_json_by_id(store: &Store, id: &str) -> anyhow::Result<Option<serde_json::Value>> {
    Ok(store.task(id)?.map(|(t, containers)| {
        let net = store.task_network(id).ok().flatten();
        json::task_json(&t, &containers, net.as_ref())
    }))
}

pub fn print_entry(out: &mut impl Write, prefix: &str, e: &LogEntry) {
    let line = e.log.strip_suffix('\n').unwrap_or(&e.log);
    let _ = writeln!(out, "{prefix}{line}");
}

pub fn describe(g: &GlobalOpts, a: DescribeTasksArgs) -> anyhow::Result<ExitCode> {
    let mut store = open_state(g)?;
    reconcile(g, &mut store);
    let mut tasks = Vec::new();
    let mut failures = Vec::new();
    for t in &a.tasks {
        let found = store
            .task(task_id(t))?
            .filter(|(row, _)| a.cluster.as_ref().is_none_or(|c| *c == row.cluster));
        match found {
            Some((row, containers)) => {
                let net = store.task_network(&row.id)?;
                tasks.push(json::task_json(&row, &containers, net.as_ref()))
            }
            None => failures.push(serde_json::json!({"arn": t, "reason": "MISSING"})),
        }
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({"tasks": tasks, "failures": failures}))?
    );
    Ok(ExitCode::SUCCESS)
}

pub fn list(g: &GlobalOpts, a: ListTasksArgs) -> anyhow::Result<ExitCode> {
    let mut store = open_state(g)?;
    reconcile(g, &mut store);
    let rows = store.list_tasks(&TaskFilter {
        cluster: Some(a.cluster),
        family: a.family,
        desired_status: Some(a.desired_status),
        started_by: a.started_by,
    })?;
    let arns: Vec<_> = rows.into_iter().map(|t| t.arn).collect();
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({ "taskArns": arns }))?
    );
    Ok(ExitCode::SUCCESS)
}

pub fn stop_task(g: &GlobalOpts, a: StopTaskArgs) -> anyhow::Result<ExitCode> {
    let mut store = open_state(g)?;
    reconcile(g, &mut store);
    let id = task_id(&a.task).to_string();
    let Some((t, _)) = store
        .task(&id)?
        .filter(|(row, _)| a.cluster.as_ref().is_none_or(|c| *c == row.cluster))
    else {
        bail!(
            "InvalidParameterException: The referenced task was not found: {}",
            a.task
        );
    };
    if t.last_status != status::STOPPED {
        let sock = TaskPaths::new(&g.root, &g.run_root, &id).socket();
        let r = supervisor::request(
            &sock,
            &Request::Stop {
                stop_code: stop::USER_INITIATED.into(),
                reason: a.reason.clone().unwrap_or_else(|| stop::USER_REASON.into()),
                force: false,
            },
        );
        match r {
            Ok(resp) if resp.ok => {}
            Ok(resp) => bail!(
                "the supervisor of task {id} refused to stop it: {}",
                resp.error.unwrap_or_default()
            ),
            // It may have just finished; otherwise reconcile notices it is gone.
            Err(e) => {
                tracing::warn!(error = %e, "could not reach the supervisor");
                reconcile(g, &mut store);
            }
        }
        // StopTask answers once desiredStatus is STOPPED.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if store
                .task(&id)?
                .is_some_and(|(t, _)| t.desired_status == status::STOPPED)
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let task = task_json_by_id(&store, &id)?.context("task vanished from the store")?;
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({ "task": task }))?
    );
    Ok(ExitCode::SUCCESS)
}

pub fn logs(g: &GlobalOpts, a: LogsArgs) -> anyhow::Result<ExitCode> {
    let mut store = open_state(g)?;
    reconcile(g, &mut store);
    let id = task_id(&a.task).to_string();
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
    let mut out = std::io::stdout().lock();
    // Everything so far, merged by time.
    let mut followers: Vec<(String, std::path::PathBuf, Option<LogFollower>)> = names
        .iter()
        .map(|n| (prefix(n), paths.log(n), None))
        .collect();
    let mut entries = Vec::new();
    for (p, path, f) in &mut followers {
        if path.exists() {
            let mut lf = LogFollower::open(path)?;
            for e in lf.drain()? {
                entries.push((e.time.clone(), p.clone(), e));
            }
            *f = Some(lf);
        }
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    for (_, p, e) in &entries {
        print_entry(&mut out, p, e);
    }
    out.flush().ok();
    if !a.follow {
        return Ok(ExitCode::SUCCESS);
    }
    loop {
        let stopped = store
            .task(&id)?
            .is_none_or(|(t, _)| t.last_status == status::STOPPED);
        for (p, path, f) in &mut followers {
            if f.is_none() && path.exists() {
                *f = LogFollower::open(path).ok();
            }
            if let Some(f) = f {
                while let Ok(Some(e)) = f.next_entry() {
                    print_entry(&mut out, p, &e);
                }
            }
        }
        out.flush().ok();
        if stopped {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_millis(50));
        reconcile(g, &mut store);
    }
}
