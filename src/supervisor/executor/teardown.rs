//! The executor's teardown: every step runs, in reverse order of the setup, and every
//! error is recorded (the supervisor log and the task's warnings).

use super::{Executor, now_ms, now_us};
use crate::error_chain;
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
        // Its thread leaves the task's cgroup before the cgroup is removed below.
        self.warmer.take();
        self.task.last_status = LastStatus::Deprovisioning;
        self.save();
        crate::task::test_pause(&self.paths.run_dir, "teardown");
        self.inside.stop();
        let t0 = now_us();
        let mut errors: Vec<String> = Vec::new();
        // First: killing the holder (pid 1 of a shared pid namespace) kills every process
        // left in it, also those a container's exited main process left behind. It is
        // reaped once the containers are (`TaskNamespaces::stop` below).
        if let Err(e) = self.namespaces.kill() {
            errors.push(error_chain(&e));
        }
        for idx in 0..self.slots.len() {
            let container = self.slots[idx].container.take();
            if let Some(c) = &container
                && matches!(self.machine.status(idx), Status::Running { .. })
            {
                let _ = c.kill(Signal::SIGKILL);
                let _ = c.wait();
            }
            self.finish_awslogs(idx);
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
            if self.slots[idx].mounted {
                let target = self.paths.rootfs(idx);
                match rootfs_cache::rootfs::unmount(&target) {
                    Ok(()) => self.slots[idx].mounted = false,
                    Err(e) => errors.push(error_chain(&e)),
                }
            }
        }
        if let Err(e) = self.paths.remove_rootfs_dir(self.slots.len()) {
            errors.push(format!(
                "failed to remove {}: {e}",
                self.paths.rootfs_dir.display()
            ));
        }
        if let Err(e) = self.namespaces.stop() {
            errors.push(error_chain(&e));
        }
        if self.userns.take().is_some()
            && let Err(e) = self.store.with(|s| s.release_userns_slot(&self.task.id))
        {
            errors.push(error_chain(&e));
        }
        // After the containers (their mount namespaces held the binds) are gone.
        for e in self.volumes.teardown() {
            errors.push(error_chain(&e));
        }
        if self.task_cgroup
            && let Some(rt) = &self.rt
            && let Err(e) = rt.remove_task_cgroup(&self.task.id)
        {
            errors.push(error_chain(&e));
        }
        for e in self.net.teardown(&self.task.id) {
            errors.push(error_chain(&e));
        }
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
        for e in &errors {
            tracing::error!(task_id = %self.task.id, error = %e, "teardown step failed");
            self.warnings.push(format!("teardown: {e}"));
        }
        self.phase(None, "teardown", t0);
        self.task.last_status = LastStatus::Stopped;
        self.task.desired_status = DesiredStatus::Stopped;
        self.task.stopped_at = Some(now_ms());
        self.save();
        scratch
    }
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
