//! The executor's teardown: every step runs, in reverse order of the setup, and every
//! error is recorded (the supervisor log and the task's warnings).

use super::{Executor, Steps, now_ms, now_us};
use crate::errors::error_chain;
use crate::store::{DesiredStatus, LastStatus};
use crate::supervisor::machine::Status;
use runtime::{Container, Signal};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

impl Executor {
    /// Deletes containers, unmounts rootfs, removes the task cgroup and the network.
    /// Returns the containers' state dirs, renamed to `.c<N>.removing` for the caller to
    /// delete (see [`Executor::run`]).
    pub(super) fn deprovision(&mut self) -> Vec<PathBuf> {
        let mut steps = Steps::new();
        // Whatever the thread making the cgroups ahead made is removed below, and the
        // warmer's thread leaves the task's cgroup before that.
        self.join_cgroup_ahead();
        self.warmer.take();
        self.task.last_status = LastStatus::Deprovisioning;
        self.save();
        steps.mark("save DEPROVISIONING");
        crate::task::test_pause(&self.paths.run_dir, "teardown");
        self.inside.stop();
        steps.mark("endpoint stop");
        let t0 = now_us();
        let mut errors: Vec<String> = Vec::new();
        // First: killing the holder (pid 1 of a shared pid namespace) kills every process
        // left in it, also those a container's exited main process left behind. It is
        // reaped once the containers are (`TaskNamespaces::stop` below).
        if let Err(e) = self.namespaces.kill() {
            errors.push(error_chain(&e));
        }
        for idx in 0..self.slots.len() {
            if let Some(c) = &self.slots[idx].container
                && matches!(self.machine.status(idx), Status::Running { .. })
            {
                let _ = c.kill(Signal::SIGKILL);
                let _ = c.wait();
            }
            self.finish_awslogs(idx);
        }
        steps.mark("kill, logs");
        // Every container's pid 1 has exited (and with it its pid namespace's processes):
        // the rest runs in three parts side by side, each in its order. The network (in
        // the host's mount namespace) and the rootfs unmounts on threads of their own; the
        // containers' state and cgroups, the holder, the volumes and the task's cgroup
        // here. When other processes may outlive a pid 1 (a shared or the host's pid
        // namespace), the network and the unmounts start once the containers' deletes have
        // killed what is left in their cgroups and the holder is reaped, as before.
        let task_id = self.task.id.clone();
        let early = !self.namespaces.processes_may_outlive_pid1();
        let mut net = early.then(|| self.net.begin_teardown(&task_id));
        let mut unmount = early.then(|| self.begin_unmount());
        for idx in 0..self.slots.len() {
            let container = self.slots[idx].container.take();
            // A health check still running holds a reference until its exec ends (it dies
            // with the container's pid namespace).
            match container.map(delete_when_free) {
                Some(Err(DeleteError::Referenced)) => errors.push(format!(
                    "container {} is still referenced; not deleted",
                    self.slots[idx].row.name
                )),
                Some(Err(e)) => errors.push(e.to_string()),
                _ => {}
            }
        }
        steps.mark("delete");
        if let Err(e) = self.namespaces.stop() {
            errors.push(error_chain(&e));
        }
        let net = net
            .take()
            .unwrap_or_else(|| self.net.begin_teardown(&task_id));
        let unmount = unmount.take().unwrap_or_else(|| self.begin_unmount());
        if self.userns.take().is_some()
            && let Err(e) = self.store.with(|s| s.release_userns_slot(&task_id))
        {
            errors.push(error_chain(&e));
        }
        // After the containers (their mount namespaces held the binds) are gone.
        for e in self.volumes.teardown() {
            errors.push(error_chain(&e));
        }
        if self.task_cgroup
            && let Some(rt) = &self.rt
            && let Err(e) = rt.remove_task_cgroup(&task_id)
        {
            errors.push(error_chain(&e));
        }
        steps.mark("holder, volumes, task cgroup");
        self.end_unmount(unmount, &mut errors);
        steps.mark("unmount (wait)");
        // Upper/work dirs go with the task (after the task is reported done, renamed out of
        // the way now); logs stay for `minifargate logs`.
        let mut scratch = Vec::new();
        for idx in 0..self.slots.len() {
            let d = self.paths.container_state(idx);
            if self.slots[idx].mounted || !d.exists() {
                continue;
            }
            let trash = self.paths.container_state_removing(idx);
            match std::fs::rename(&d, &trash) {
                Ok(()) => scratch.push(trash),
                Err(_) => {
                    if let Err(e) = std::fs::remove_dir_all(&d) {
                        errors.push(format!("failed to remove {}: {e}", d.display()));
                    }
                }
            }
        }
        // The task's ephemeral storage after everything in it is unmounted; its image
        // file is deleted with the scratch dirs.
        if let Some(e) = self.ephemeral.take() {
            match e.teardown() {
                Ok(img) => scratch.push(img),
                Err(e) => errors.push(error_chain(&e)),
            }
        }
        // The run dir (socket, pid file, runtime state) last, before STOPPED is written: a
        // STOPPED task has left nothing on the host, whoever looks. (Should this process die
        // in between, reconcile removes it with the rest of the task.)
        if let Err(e) = std::fs::remove_dir_all(&self.paths.run_dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            errors.push(format!(
                "failed to remove {}: {e}",
                self.paths.run_dir.display()
            ));
        }
        steps.mark("scratch rename, run dir");
        let (net_errors, network_row) = self.net.end_teardown(&task_id, net);
        errors.extend(net_errors.iter().map(|e| error_chain(e)));
        steps.mark("network (wait)");
        for e in &errors {
            tracing::error!(task_id = %self.task.id, error = %e, "teardown step failed");
            self.warnings.push(format!("teardown: {e}"));
        }
        self.phase(None, "teardown", t0);
        self.task.last_status = LastStatus::Stopped;
        self.task.desired_status = DesiredStatus::Stopped;
        self.task.stopped_at = Some(now_ms());
        // With the network's row, DELETED, in one transaction.
        self.save_with(network_row.as_ref());
        steps.mark("save STOPPED");
        tracing::debug!(task_id = %self.task.id, steps = %steps, "teardown steps (µs)");
        scratch
    }

    /// Starts unmounting the containers' rootfs and removing their mount points on a
    /// thread of its own (in this process's mount namespace, where they are mounted).
    fn begin_unmount(&self) -> Unmount {
        let targets: Vec<(usize, PathBuf)> = (0..self.slots.len())
            .filter(|&idx| self.slots[idx].mounted)
            .map(|idx| (idx, self.paths.rootfs(idx)))
            .collect();
        let paths = self.paths.clone();
        let containers = self.slots.len();
        let work = move || {
            let unmounted: Vec<(usize, Result<(), UnmountError>)> = targets
                .iter()
                .map(|(idx, target)| {
                    let r = rootfs_cache::rootfs::unmount(target).map_err(UnmountError::Unmount);
                    (*idx, r)
                })
                .collect();
            let dir =
                paths
                    .remove_rootfs_dir(containers)
                    .map_err(|source| UnmountError::RemoveDir {
                        dir: paths.rootfs_dir.clone(),
                        source,
                    });
            (unmounted, dir)
        };
        match threadgate::spawn(
            std::thread::Builder::new().name("unmount".into()),
            work.clone(),
        ) {
            Ok(h) => Unmount::Running(h),
            // No thread: done here and now.
            Err(_) => Unmount::Done(work()),
        }
    }

    /// Waits for [`Executor::begin_unmount`]'s work; records what it unmounted and its errors.
    fn end_unmount(&mut self, unmount: Unmount, errors: &mut Vec<String>) {
        let (unmounted, dir) = match unmount {
            Unmount::Running(h) => h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
            Unmount::Done(r) => r,
        };
        for (idx, r) in unmounted {
            match r {
                Ok(()) => self.slots[idx].mounted = false,
                Err(e) => errors.push(e.to_string()),
            }
        }
        if let Err(e) = dir {
            errors.push(e.to_string());
        }
    }
}

/// What [`Executor::begin_unmount`] reports: each container's unmount, then the removal of
/// the rootfs dir.
type Unmounted = (
    Vec<(usize, Result<(), UnmountError>)>,
    Result<(), UnmountError>,
);

/// A step of [`Executor::begin_unmount`] that failed; its text is one of the task's
/// teardown warnings.
#[derive(Debug, thiserror::Error)]
enum UnmountError {
    /// A container's rootfs did not unmount (the text holds the whole chain of causes).
    #[error("{}", error_chain(.0))]
    Unmount(#[source] rootfs_cache::rootfs::RootfsError),
    #[error("failed to remove {}: {source}", .dir.display())]
    RemoveDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The rootfs unmounts, running or done.
enum Unmount {
    Running(std::thread::JoinHandle<Unmounted>),
    Done(Unmounted),
}

/// Why a container was not deleted.
#[derive(Debug, thiserror::Error)]
pub(super) enum DeleteError {
    #[error("it is still referenced")]
    Referenced,
    #[error("{0}")]
    Delete(String),
}

/// Deletes `container` once nothing else holds it: a health check still running holds a
/// reference until its exec ends (10 s at most).
pub(super) fn delete_when_free(container: Arc<Container>) -> Result<(), DeleteError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Arc::strong_count(&container) > 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let c = Arc::try_unwrap(container).map_err(|_| DeleteError::Referenced)?;
    c.delete().map_err(|e| DeleteError::Delete(error_chain(&e)))
}

/// Deletes the scratch dirs [`Executor::run`] returned; failures are logged (the task is
/// STOPPED by then; its directory, and anything left in it, goes when it is pruned).
pub fn remove_scratch(task_id: &str, dirs: &[PathBuf]) {
    for d in dirs {
        // A state dir, or the link to it in the ephemeral storage; or that storage's file.
        let removed = if d.is_file() {
            std::fs::remove_file(d)
        } else {
            std::fs::remove_dir_all(d)
        };
        if let Err(e) = removed {
            tracing::warn!(task_id, path = %d.display(), error = %e, "failed to remove a container's scratch dir");
        }
    }
}
