//! `system reset`: back to a fresh install, like `podman system reset`. Every task of
//! this root is stopped (through its supervisor, gracefully first, then forced, then its
//! supervisor killed), whatever is left of their containers, cgroups and mounts is
//! removed, each task network this run root set up goes (namespaces, veths, the bridge,
//! the nftables table), and finally the root and run root directories themselves
//! (images, layers, tasks, task definitions, clusters, state.db).

use crate::cli::GlobalOpts;
use crate::cli::tasks::{open_state, reconcile};
use crate::store::{LastStatus, StopCode};
use crate::supervisor::Client;
use crate::supervisor::isolation::{mountns, network};
use crate::task::{TaskPaths, process_alive, process_start_time};
use anyhow::{Context, bail};
use std::collections::BTreeSet;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// The stoppedReason tasks get (ECS's stopCode stays UserInitiated).
pub const REASON: &str = "Task stopped by minifargate system reset";

/// How long forced stops (SIGKILL) get before the supervisors themselves are killed.
const FORCE_WAIT: Duration = Duration::from_secs(10);

pub fn reset(g: &GlobalOpts, force: bool, timeout: Duration) -> anyhow::Result<ExitCode> {
    for dir in [&g.root, &g.run_root] {
        refuse_system_dir(dir)?;
    }
    if !force && !confirmed(g)? {
        eprintln!("system reset: cancelled, nothing changed");
        return Ok(ExitCode::from(1));
    }
    let mut errors: Vec<String> = Vec::new();

    // 0. A cluster box's agent and data plane: refused while an agent runs on this run
    // root (it would start again what this removes); the data plane a stopped agent left
    // (the tasks' DNS server, Service Connect listeners, routes) goes, as `agent --leave`.
    if crate::cluster::data_plane::leave(&g.run_root).context("system reset: nothing changed")? {
        println!("stopped the box's data plane and removed its routes");
    }

    // 1. Tasks: graceful stop (SIGTERM, SIGKILL after each container's stopTimeout),
    // then forced, then the supervisor is killed and reconcile cleans up after it.
    let ours = stop_tasks(g, timeout, &mut errors)?;

    // 2. What a crash may have left of this root's tasks: containers (processes,
    // libcontainer state) and task cgroups. Tasks of other roots count as live.
    let mut containers = 0;
    let mut cgroups = 0;
    for id in &ours {
        let paths = TaskPaths::new(&g.root, &g.run_root, id);
        match runtime::Runtime::new(paths.runtime_state()) {
            Ok(rt) => {
                let mut report = rt.gc(&|t| !ours.contains(t));
                for _ in 0..20 {
                    containers += report.containers.len();
                    cgroups += report.task_cgroups.len();
                    if report.errors.is_empty() {
                        break;
                    }
                    // Killed processes must exit before their cgroup can go.
                    std::thread::sleep(Duration::from_millis(100));
                    report = rt.gc(&|t| !ours.contains(t));
                }
                errors.extend(report.errors.iter().map(|e| crate::errors::error_chain(e)));
            }
            Err(e) => errors.push(crate::errors::error_chain(&e)),
        }
    }
    if containers + cgroups > 0 {
        println!(
            "removed {containers} leftover container{} and {cgroups} task cgroup{}",
            plural(containers),
            plural(cgroups)
        );
    }

    // 3. Mounts under the root and run root: the template mount namespace supervisors copy
    // (its pin, its dir), then whatever else is left (overlay rootfs, tmpfs volumes, netns
    // pins).
    let template = mountns::Template::of(&g.run_root);
    match template.remove() {
        Ok(true) => println!(
            "removed the template mount namespace {}",
            template.pin().display()
        ),
        Ok(false) => {}
        Err(e) => errors.push(crate::errors::error_chain(&e)),
    }
    let (unmounted, mount_errors) = unmount_below(&[&g.root, &g.run_root]);
    errors.extend(mount_errors);
    if unmounted > 0 {
        println!("unmounted {unmounted} mount{}", plural(unmounted));
    }

    // 4. Task networks this run root set up: namespaces, veths, leases, the bridge and
    // the nftables table.
    for (bridge, result) in network::reset_all(&g.run_root) {
        match result {
            Ok(()) => {
                println!("removed network {bridge} (bridge, nftables table, task namespaces)")
            }
            Err(e) => errors.push(format!("network {bridge}: {e}")),
        }
    }

    // 5. The directories, only once nothing is mounted below them any more (removing
    // through a mount would delete what a bind-mounted host directory holds).
    let still: Vec<PathBuf> = crate::supervisor::isolation::volumes::mount_points()
        .into_iter()
        .filter(|p| p.starts_with(&g.root) || p.starts_with(&g.run_root))
        .collect();
    if still.is_empty() {
        for dir in [&g.root, &g.run_root] {
            match std::fs::remove_dir_all(dir) {
                Ok(()) => println!("removed {}", dir.display()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => errors.push(format!("failed to remove {}: {e}", dir.display())),
            }
        }
    } else {
        errors.push(format!(
            "not removing {} and {}: still mounted there: {}",
            g.root.display(),
            g.run_root.display(),
            still
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }

    if errors.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        for e in &errors {
            eprintln!("error: {e}");
        }
        bail!(
            "system reset left {} problem{} (listed above); run it again once fixed",
            errors.len(),
            plural(errors.len())
        )
    }
}

/// Step 1 of [`reset`]: every task of this root stopped (gracefully, then forced, then its
/// supervisor killed and reconciled); what did not stop goes to `errors`. The ids of this
/// root's tasks, for the clean-up of what a crash left.
fn stop_tasks(
    g: &GlobalOpts,
    timeout: Duration,
    errors: &mut Vec<String>,
) -> anyhow::Result<BTreeSet<String>> {
    let mut ours: BTreeSet<String> = task_dirs(g);
    if g.root.join("state.db").is_file() {
        let mut store = open_state(g)?;
        reconcile(g, &mut store);
        let rows = store.unstopped_tasks()?;
        let live: Vec<String> = rows.iter().map(|t| t.id.clone()).collect();
        // Each supervisor as recorded (pid and start time, so a reused pid is not taken
        // for it).
        let supervisors: Vec<(i64, Option<i64>)> = rows
            .iter()
            .filter_map(|t| t.supervisor_pid.map(|p| (p, t.supervisor_start_time)))
            .collect();
        let alive = |&(pid, start): &(i64, Option<i64>)| match start {
            Some(st) => process_start_time(pid) == Some(st),
            None => process_alive(pid),
        };
        let mut forced = 0;
        let mut killed = 0;
        if !live.is_empty() {
            stop_all(g, &live, false);
            let left = wait_stopped(g, &live, timeout)?;
            if !left.is_empty() {
                forced = left.len();
                stop_all(g, &left, true);
                wait_stopped(g, &left, FORCE_WAIT)?;
            }
            // A supervisor finishes its cleanup after recording STOPPED: wait for it to
            // exit, then kill what is still there; reconcile cleans up after those.
            let deadline = Instant::now() + FORCE_WAIT;
            while supervisors.iter().any(alive) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            for s in supervisors.iter().filter(|s| alive(s)) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(s.0 as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
                killed += 1;
            }
            if killed > 0 {
                let deadline = Instant::now() + Duration::from_secs(5);
                while supervisors.iter().any(alive) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(50));
                }
                reconcile(g, &mut store);
            }
            for id in &live {
                if store
                    .task(id)?
                    .is_some_and(|(t, _)| t.last_status != LastStatus::Stopped)
                {
                    errors.push(format!("task {id} did not stop"));
                }
            }
            for s in supervisors.iter().filter(|s| alive(s)) {
                errors.push(format!("task supervisor {} did not exit", s.0));
            }
        }
        println!(
            "stopped {} task{}{}",
            live.len(),
            if live.len() == 1 { "" } else { "s" },
            match (forced, killed) {
                (0, 0) => String::new(),
                (f, 0) => format!(" ({f} forced)"),
                (f, k) => format!(" ({f} forced, {k} supervisor{} killed)", plural(k)),
            }
        );
        ours.extend(
            store
                .list_tasks(&crate::store::TaskFilter::default())?
                .into_iter()
                .map(|t| t.id),
        );
    }
    Ok(ours)
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `/`, `/var`, `/run`… as --root would make the reset delete the system.
fn refuse_system_dir(dir: &Path) -> anyhow::Result<()> {
    let abs = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let normal = abs
        .components()
        .filter(|c| matches!(c, std::path::Component::Normal(_)))
        .count();
    if normal < 2
        || abs
            .components()
            .any(|c| c == std::path::Component::ParentDir)
    {
        bail!(
            "refusing to reset {}: --root and --run-root must be minifargate's own \
             directories (at least two levels below /, like /var/lib/minifargate)",
            dir.display()
        );
    }
    Ok(())
}

/// Asks on the terminal; without one, --force is required.
fn confirmed(g: &GlobalOpts) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!(
            "system reset stops every task and deletes every image, task definition, task \
             and network under {} and {}: pass --force to confirm (stdin is not a terminal \
             to ask on)",
            g.root.display(),
            g.run_root.display()
        );
    }
    eprint!(
        "This stops every task and deletes every image, task definition, task and network \
         under {} and {}.\nAre you sure you want to continue? [y/N] ",
        g.root.display(),
        g.run_root.display()
    );
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "Yes" | "YES"))
}

/// Task ids with a directory under the root or run root (also when state.db is gone).
fn task_dirs(g: &GlobalOpts) -> BTreeSet<String> {
    [g.root.join("tasks"), g.run_root.join("tasks")]
        .iter()
        .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

fn stop_all(g: &GlobalOpts, ids: &[String], force: bool) {
    for id in ids {
        let client = Client::new(&TaskPaths::new(&g.root, &g.run_root, id), id);
        if let Err(e) = client.stop(StopCode::UserInitiated, REASON, force) {
            tracing::warn!(task_id = %id, error = %e, "could not reach the task's supervisor");
        }
    }
}

/// Waits up to `timeout` for `ids` to be STOPPED; returns those that are not.
fn wait_stopped(g: &GlobalOpts, ids: &[String], timeout: Duration) -> anyhow::Result<Vec<String>> {
    let store = open_state(g)?;
    let deadline = Instant::now() + timeout;
    loop {
        let mut left = Vec::new();
        for id in ids {
            if store
                .task(id)?
                .is_some_and(|(t, _)| t.last_status != LastStatus::Stopped)
            {
                left.push(id.clone());
            }
        }
        if left.is_empty() || Instant::now() >= deadline {
            return Ok(left);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Detaches every mount at or below `dirs`, deepest first.
fn unmount_below(dirs: &[&Path]) -> (usize, Vec<String>) {
    let mut points: Vec<PathBuf> = crate::supervisor::isolation::volumes::mount_points()
        .into_iter()
        .filter(|p| dirs.iter().any(|d| p.starts_with(d)))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    points.dedup();
    let mut errors = Vec::new();
    let mut n = 0;
    for p in points {
        match nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) => n += 1,
            // Stacked mounts on one point: an earlier detach took it already.
            Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => errors.push(format!("failed to unmount {}: {e}", p.display())),
        }
    }
    (n, errors)
}
