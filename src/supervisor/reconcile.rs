//! Notices tasks whose supervisor died (killed, crashed, host reboot) and finishes them:
//! the task becomes STOPPED with a clear reason; its containers, cgroups, mounts and network
//! (netns, veth, IP lease, published ports) go.

use crate::errors::error_chain;
use crate::store::{DesiredStatus, LastStatus, Liveness, StopCode, Store, StoreError};
use crate::supervisor::isolation::network;
use crate::task::{TaskPaths, cut_reason, process_start_time};
use runtime::Runtime;
use std::path::Path;

/// A supervisor gets this long to record its pid after the task row is written.
const STARTING_GRACE_MS: i64 = 60_000;

/// True when the task's supervisor is alive (or still starting: its launcher holds the
/// task's launch lock, for at most [`STARTING_GRACE_MS`]).
pub fn supervisor_alive(t: &Liveness, root: &Path, now_ms: i64) -> bool {
    match (t.supervisor_pid, t.supervisor_start_time) {
        (Some(pid), Some(start)) => process_start_time(pid) == Some(start),
        (Some(pid), None) => process_start_time(pid).is_some(),
        (None, _) => {
            now_ms - t.created_at < STARTING_GRACE_MS
                && crate::supervisor::launch::launch_in_progress(root, &t.id) != Some(false)
        }
    }
}

/// Supervisors known alive by a descriptor of each (pidfd_open(2)), which becomes
/// readable when its process exits: checking them is one poll(2) of the descriptors, where
/// checking by [`supervisor_alive`] reads `/proc/<pid>/stat` for each (the service
/// scheduler checks its services' tasks on every pass: at 200 tasks those reads were
/// most of an idle serve's CPU). A task is watched only once its supervisor was found
/// alive the usual way and is the process its row records (same start time).
/// Clones share what is watched.
#[derive(Default, Clone)]
pub struct Watched {
    fds: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, std::os::fd::OwnedFd>>>,
}

impl std::fmt::Debug for Watched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.fds.lock().map(|m| m.len()).unwrap_or(0);
        write!(f, "Watched({n} supervisors)")
    }
}

impl Watched {
    /// Forgets every task but `ids`; returns those of `ids` whose supervisor is watched
    /// and has not exited. One that has exited is forgotten (the caller checks it the
    /// usual way, and finishes its task).
    pub fn alive(&self, ids: &[&str]) -> std::collections::HashSet<String> {
        use rustix::event::{PollFd, PollFlags};
        let Ok(mut fds) = self.fds.lock() else {
            return Default::default();
        };
        let wanted: std::collections::HashSet<&str> = ids.iter().copied().collect();
        fds.retain(|id, _| wanted.contains(id.as_str()));
        let (ids, mut polled): (Vec<&String>, Vec<PollFd<'_>>) = fds
            .iter()
            .map(|(id, fd)| (id, PollFd::new(fd, PollFlags::IN)))
            .unzip();
        let zero = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        if rustix::event::poll(&mut polled, Some(&zero)).is_err() {
            return Default::default();
        }
        let alive: std::collections::HashSet<String> = ids
            .into_iter()
            .zip(&polled)
            .filter(|(_, p)| p.revents().is_empty())
            .map(|(id, _)| id.clone())
            .collect();
        drop(polled);
        fds.retain(|id, _| alive.contains(id));
        alive
    }

    /// Watches task `id`'s supervisor from now on, if it is the process `live` records (its
    /// pid's start time is the recorded one). Best effort: one not watched is checked the
    /// usual way.
    pub fn watch(&self, live: &Liveness) {
        let (Some(pid), Some(start)) = (live.supervisor_pid, live.supervisor_start_time) else {
            return;
        };
        let Some(p) = i32::try_from(pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        else {
            return;
        };
        let Ok(fd) = rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()) else {
            return;
        };
        // The descriptor is of whatever process has the pid now: the recorded one only if
        // it started when recorded (checked after the open, so a reuse of the pid before it
        // shows here).
        if process_start_time(pid) != Some(start) {
            return;
        }
        if let Ok(mut fds) = self.fds.lock() {
            fds.insert(live.id.clone(), fd);
        }
    }
}

/// How long STOPPED tasks stay describable, like ECS (about an hour); the
/// `MINIFARGATE_STOPPED_TASK_RETENTION` environment variable sets it in seconds
/// (src/config.rs).
pub fn retention() -> std::time::Duration {
    crate::config::get().stopped_task_retention
}

/// Forgets STOPPED tasks older than [`retention`] that stopped before `stopped_before_ms`
/// (epoch ms; `i64::MAX`: no such bound) and removes their directories (logs).
pub fn prune(
    store: &mut Store,
    root: &Path,
    run_root: &Path,
    stopped_before_ms: i64,
) -> Result<Vec<String>, StoreError> {
    let before = prune_before(
        chrono::Utc::now().timestamp_millis(),
        retention(),
        stopped_before_ms,
    );
    let ids = store.prune_stopped_tasks(before)?;
    for id in &ids {
        let paths = TaskPaths::new(root, run_root, id);
        if paths.dir.exists()
            && let Err(e) = std::fs::remove_dir_all(&paths.dir)
        {
            tracing::warn!(task_id = %id, error = %e, "failed to remove a pruned task's directory");
        }
    }
    Ok(ids)
}

/// The bound of [`prune`]: tasks that stopped before it go.
fn prune_before(now_ms: i64, retention: std::time::Duration, stopped_before_ms: i64) -> i64 {
    now_ms
        .saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX))
        .min(stopped_before_ms)
}

/// Finishes every unstopped task whose supervisor is gone; returns their ids.
pub fn reconcile(
    store: &mut Store,
    root: &Path,
    run_root: &Path,
) -> Result<Vec<String>, StoreError> {
    let now = chrono::Utc::now().timestamp_millis();
    let mut done = Vec::new();
    // The commands that list tasks walk this list: only the columns liveness needs are read.
    for t in store.unstopped_liveness()? {
        if supervisor_alive(&t, root, now) {
            continue;
        }
        let id = t.id.clone();
        if finish_dead(store, &id, root, run_root)? {
            done.push(id);
        }
    }
    // The safety net: whatever network state a task that is no longer live still holds
    // (e.g. a supervisor killed between recording and setting up) is given back.
    network::gc(store, run_root);
    Ok(done)
}

/// Cleans up and stops task `id` if its supervisor is gone; false when there was nothing
/// to do. The row is read here: the list [`reconcile`] walks was read before its liveness
/// check, and a supervisor that finished normally in between has already stopped its task
/// (that is not a death to report).
///
/// It is also [`reconcile`] for task `id` alone: a command about one task (describe, stop,
/// logs, exec, inspect, timeline) checks that task's supervisor only, not every running
/// task's (one /proc read each: ~10 ms with 1000 tasks running). A dead supervisor of
/// another task is noticed by the next command that lists tasks, by `serve`'s scheduler,
/// or by a new task short of an address, a host port or an id range.
pub fn finish_dead(
    store: &mut Store,
    id: &str,
    root: &Path,
    run_root: &Path,
) -> Result<bool, StoreError> {
    // Its supervisor first, from the row's few columns: the whole task is read only for a
    // dead one.
    let Some(live) = store.liveness(id)? else {
        return Ok(false);
    };
    if supervisor_alive(&live, root, chrono::Utc::now().timestamp_millis()) {
        return Ok(false);
    }
    let Some((mut t, containers)) = store.task(id)? else {
        return Ok(false);
    };
    if t.last_status == LastStatus::Stopped {
        return Ok(false);
    }
    tracing::warn!(task_id = %t.id, pid = ?t.supervisor_pid, "task supervisor is gone: cleaning up");
    let paths = TaskPaths::new(root, run_root, &t.id);
    let mut errors = Vec::new();
    // Containers (processes, libcontainer state, cgroups) and the task cgroup of this task
    // only: every other task counts as live.
    match Runtime::new(paths.runtime_state()) {
        Ok(rt) => {
            let mut report = rt.gc(&|id| id != t.id);
            // A cgroup cannot be removed until its killed processes are gone: once more.
            for _ in 0..5 {
                if report.errors.is_empty() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
                report = rt.gc(&|id| id != t.id);
            }
            errors.extend(report.errors.iter().map(|e| error_chain(e)));
        }
        Err(e) => errors.push(error_chain(&e)),
    }
    for (idx, _) in containers.iter().enumerate() {
        if let Err(e) = rootfs_cache::rootfs::unmount(&paths.rootfs(idx))
            .and_then(|()| rootfs_cache::rootfs::detach_mapped_layers(&paths.rootfs(idx)))
        {
            errors.push(error_chain(&e));
            continue;
        }
        for d in [
            paths.container_state(idx),
            paths.container_state_removing(idx),
        ] {
            if d.exists()
                && let Err(e) = std::fs::remove_dir_all(&d)
            {
                errors.push(format!("failed to remove {}: {e}", d.display()));
            }
        }
    }
    if let Err(e) = paths.remove_rootfs_dir(containers.len()) {
        errors.push(format!(
            "failed to remove {}: {e}",
            paths.rootfs_dir.display()
        ));
    }
    errors.extend(
        crate::supervisor::isolation::volumes::cleanup_dead(&paths.dir)
            .iter()
            .map(|e| error_chain(e)),
    );
    if let Err(e) = crate::supervisor::isolation::ephemeral::cleanup_dead(&paths.dir) {
        errors.push(error_chain(&e));
    }
    errors.extend(network::teardown_dead(store, run_root, &t.id));
    if paths.run_dir.exists()
        && let Err(e) = std::fs::remove_dir_all(&paths.run_dir)
    {
        errors.push(format!("failed to remove {}: {e}", paths.run_dir.display()));
    }
    let _ = std::fs::remove_file(crate::supervisor::launch::launch_lock(&paths.dir));
    let why = match t.supervisor_pid {
        Some(pid) => format!(
            "Task supervisor (pid {pid}) exited unexpectedly; minifargate stopped the task and \
             cleaned up its resources"
        ),
        None => "Task supervisor was never started: the minifargate process that created the \
                 task exited first; minifargate stopped the task"
            .to_string(),
    };
    for mut c in containers {
        if c.last_status != LastStatus::Stopped {
            c.last_status = LastStatus::Stopped;
            c.reason.get_or_insert_with(|| cut_reason(&why));
            store.save_container(&c)?;
        }
    }
    let now = chrono::Utc::now().timestamp_millis();
    for e in errors {
        tracing::error!(task_id = %t.id, error = %e, "cleanup of a dead task failed");
        t.warnings.push(format!("teardown: {e}"));
    }
    t.last_status = LastStatus::Stopped;
    t.desired_status = DesiredStatus::Stopped;
    t.stopped_reason.get_or_insert(why);
    // Ref: ECS gives TaskFailedToStart to a task that stops before it ran.
    if t.started_at.is_none() {
        t.stop_code.get_or_insert(StopCode::TaskFailedToStart);
    }
    t.stopping_at.get_or_insert(now);
    t.execution_stopped_at.get_or_insert(now);
    t.stopped_at = Some(now);
    store.save_task(&t)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_watched_supervisor_is_alive_until_it_exits_and_only_if_it_is_the_recorded_one() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = i64::from(child.id());
        let start = process_start_time(pid).expect("sleep is running");
        let live = |id: &str, start| Liveness {
            id: id.into(),
            supervisor_pid: Some(pid),
            supervisor_start_time: Some(start),
            created_at: 0,
        };
        let w = Watched::default();
        assert!(w.alive(&["t"]).is_empty(), "nothing watched yet");
        w.watch(&live("t", start));
        // Another process that had the same pid before: not the one recorded.
        w.watch(&live("reused", start - 1));
        assert_eq!(
            w.alive(&["t", "reused"]),
            ["t".to_string()].into_iter().collect()
        );
        assert!(
            w.alive(&[]).is_empty(),
            "a task not asked about is forgotten"
        );
        w.watch(&live("t", start));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(w.alive(&["t"]).is_empty(), "its process exited");
        assert_eq!(format!("{w:?}"), "Watched(0 supervisors)");
    }

    #[test]
    fn a_launch_prunes_only_what_stopped_before_it_began() {
        // Retention 0 (the tests'): everything stopped before now, but not what stopped
        // after the launch began (a task of that very launch).
        assert_eq!(prune_before(1_000, Duration::ZERO, 900), 900);
        // Otherwise the retention is the tighter bound.
        assert_eq!(
            prune_before(4_000_000, Duration::from_secs(3600), 3_999_000),
            400_000
        );
        assert_eq!(prune_before(1_000, Duration::ZERO, i64::MAX), 1_000);
        assert_eq!(
            prune_before(1_000, Duration::MAX, i64::MAX),
            i64::MIN + 1_001
        );
    }
}
