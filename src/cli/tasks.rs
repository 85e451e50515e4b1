//! Task verbs: `describe-tasks`, `list-tasks`, `stop-task`, `logs`, and the hidden
//! `supervise`. Each first notices tasks whose supervisor died (see task::reconcile).

use super::GlobalOpts;
use super::clusters::{check_cluster, cluster_name};
use super::output::{self, OutputFormat};
use crate::api::error::EcsError;
use crate::store::{Store, TaskFilter, TaskRow};
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
    /// `TAGS`: include the tasks' tags (left empty otherwise, as ECS does).
    #[arg(long, value_parser = ["TAGS"])]
    pub include: Vec<String>,
    #[command(flatten)]
    pub output: output::OutputArg,
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
    #[command(flatten)]
    pub output: output::OutputArg,
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

/// Task `task` (an id or ARN), in `cluster` (a name or ARN) when one is given, with its
/// containers; a clear error when there is none.
pub fn find_task(
    store: &Store,
    task: &str,
    cluster: Option<&str>,
) -> anyhow::Result<(crate::store::TaskRow, Vec<crate::store::ContainerRow>)> {
    store
        .task(task_id(task))?
        .filter(|(t, _)| cluster.is_none_or(|c| super::clusters::cluster_name(c) == t.cluster))
        .ok_or_else(|| anyhow::anyhow!("task {task} not found (see `minifargate list-tasks`)"))
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

/// The launch timeline of task `id` (see output::timeline).
pub fn timeline_text(store: &Store, id: &str) -> anyhow::Result<String> {
    let (t, containers) = store
        .task(id)?
        .with_context(|| format!("task {id} not found"))?;
    Ok(output::timeline(&t, &containers, &store.phases(id)?))
}

pub fn timeline(g: &GlobalOpts, a: TimelineArgs) -> anyhow::Result<ExitCode> {
    let mut store = open_state(g)?;
    reconcile(g, &mut store);
    print!("{}", timeline_text(&store, task_id(&a.task))?);
    Ok(ExitCode::SUCCESS)
}

/// DescribeTasks (CLI and API): `(tasks, failures)`; tags only with `include_tags`.
pub fn describe_json(
    g: &GlobalOpts,
    cluster: Option<&str>,
    wanted: &[String],
    include_tags: bool,
) -> anyhow::Result<(Vec<serde_json::Value>, Vec<serde_json::Value>)> {
    let mut store = open_state(g)?;
    if let Some(c) = cluster {
        check_cluster(&store, c)?;
    }
    reconcile(g, &mut store);
    let mut tasks = Vec::new();
    let mut failures = Vec::new();
    for t in wanted {
        let found = store
            .task(task_id(t))?
            .filter(|(row, _)| cluster.is_none_or(|c| cluster_name(c) == row.cluster));
        match found {
            Some((row, containers)) => {
                let net = store.task_network(&row.id)?;
                let mut v = json::task_json(&row, &containers, net.as_ref());
                if !include_tags {
                    v["tags"] = serde_json::json!([]);
                }
                tasks.push(v)
            }
            None => failures.push(serde_json::json!({"arn": t, "reason": "MISSING"})),
        }
    }
    Ok((tasks, failures))
}

pub fn describe(g: &GlobalOpts, a: DescribeTasksArgs) -> anyhow::Result<ExitCode> {
    let include_tags = a.include.iter().any(|i| i == "TAGS");
    let (tasks, failures) = describe_json(g, a.cluster.as_deref(), &a.tasks, include_tags)?;
    match a.output.output {
        OutputFormat::Json => {
            output::print_json(&serde_json::json!({"tasks": tasks, "failures": failures}))?
        }
        OutputFormat::Table => output::tasks_table(&tasks, &failures),
    }
    Ok(ExitCode::SUCCESS)
}

/// ListTasks (CLI and API): the matching tasks, oldest first.
pub fn list_rows(g: &GlobalOpts, filter: &TaskFilter) -> anyhow::Result<Vec<TaskRow>> {
    let mut store = open_state(g)?;
    if let Some(c) = &filter.cluster {
        check_cluster(&store, c)?;
    }
    reconcile(g, &mut store);
    Ok(store.list_tasks(filter)?)
}

pub fn list(g: &GlobalOpts, a: ListTasksArgs) -> anyhow::Result<ExitCode> {
    let rows = list_rows(
        g,
        &TaskFilter {
            cluster: Some(cluster_name(&a.cluster).to_string()),
            family: a.family,
            desired_status: Some(a.desired_status),
            started_by: a.started_by,
        },
    )?;
    if a.output.output == OutputFormat::Table {
        output::task_rows_table(&rows);
        return Ok(ExitCode::SUCCESS);
    }
    let arns: Vec<_> = rows.into_iter().map(|t| t.arn).collect();
    output::print_json(&serde_json::json!({ "taskArns": arns }))?;
    Ok(ExitCode::SUCCESS)
}

/// StopTask (CLI and API): asks the task's supervisor to stop it and returns the `Task`
/// JSON once its desiredStatus is STOPPED.
pub fn stop_json(
    g: &GlobalOpts,
    cluster: Option<&str>,
    task: &str,
    reason: Option<&str>,
) -> anyhow::Result<serde_json::Value> {
    let mut store = open_state(g)?;
    if let Some(c) = cluster {
        check_cluster(&store, c)?;
    }
    reconcile(g, &mut store);
    let id = task_id(task).to_string();
    let Some((t, _)) = store
        .task(&id)?
        .filter(|(row, _)| cluster.is_none_or(|c| cluster_name(c) == row.cluster))
    else {
        bail!(EcsError::invalid(format!(
            "The referenced task was not found: {task}"
        )));
    };
    if t.last_status != status::STOPPED {
        let sock = TaskPaths::new(&g.root, &g.run_root, &id).socket();
        let r = supervisor::request(
            &sock,
            &Request::Stop {
                stop_code: stop::USER_INITIATED.into(),
                reason: reason.map_or_else(|| stop::USER_REASON.into(), str::to_string),
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
    task_json_by_id(&store, &id)?.context("task vanished from the store")
}

pub fn stop_task(g: &GlobalOpts, a: StopTaskArgs) -> anyhow::Result<ExitCode> {
    let task = stop_json(g, a.cluster.as_deref(), &a.task, a.reason.as_deref())?;
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
            let mut mine: Vec<LogEntry> = lf.drain()?.into_iter().filter(|e| recent(e)).collect();
            if let Some(n) = a.tail {
                mine.drain(..mine.len().saturating_sub(n));
            }
            entries.extend(mine.into_iter().map(|e| (e.time.clone(), p.clone(), e)));
            *f = Some(lf);
        }
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    for (_, p, e) in &entries {
        show(&mut out, p, e);
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
                    if recent(&e) {
                        show(&mut out, p, &e);
                    }
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
