//! The task's cgroups made on a thread of their own as soon as the supervisor has its
//! task, beside the launch's first steps (the network, the mount namespace, the rootfs),
//! and the migration warmer started there once they exist ([`runtime::MigrationWarmer`]).
//!
//! On cgroup v1 that is ~50 cgroupfs calls (a dir per controller for the task and for each
//! container, the cpusets filled in): ~1 ms that was on the supervisor's path (or, before,
//! on its launcher's, ahead of the hand-over). The "task cgroup" step joins the thread and
//! reports what failed by making the rest itself; teardown joins it before it removes
//! the task's cgroup, so nothing the thread makes outlives the task.

use crate::task::runtime_id;
use crate::taskdef::model::TaskDefinition;
use runtime::{Cgroups, MigrationWarmer, TaskLimits};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the thread made: whether the task's cgroup exists with its limits, and the
/// warmer it started after it (and after the containers' dirs).
#[derive(Default)]
pub(super) struct Made {
    pub task_cgroup: bool,
    pub warmer: Option<MigrationWarmer>,
}

/// The thread at work; [`CgroupAhead::join`] waits for it.
pub(super) struct CgroupAhead(JoinHandle<Made>);

impl CgroupAhead {
    /// Starts making `task_id`'s cgroup with `limits` and its `containers`' dirs under
    /// it; `None` when the thread could not start (the step makes them then).
    pub fn start(
        cgroups: Cgroups,
        task_id: String,
        limits: TaskLimits,
        containers: Vec<String>,
    ) -> Option<CgroupAhead> {
        let made = move || make(&cgroups, &task_id, &limits, &containers);
        threadgate::spawn(
            std::thread::Builder::new().name("cgroup-ahead".into()),
            made,
        )
        .ok()
        .map(CgroupAhead)
    }

    /// Waits for the thread; a thread that panicked made nothing the caller can count on
    /// (the step makes the cgroup again, and removes it at teardown either way).
    pub fn join(self) -> Made {
        self.0.join().unwrap_or_default()
    }
}

fn make(cgroups: &Cgroups, task_id: &str, limits: &TaskLimits, containers: &[String]) -> Made {
    if let Err(e) = cgroups.create_task(task_id, limits) {
        tracing::debug!(task_id, error = %e, "task cgroup not made ahead");
        return Made::default();
    }
    // The containers' dirs before the warmer: its first migration holds the kernel's
    // cgroup mutex through an RCU grace period, which a mkdir would wait for. On failure
    // each container's create makes its own and reports what failed.
    if let Err(e) = cgroups.precreate_containers(task_id, containers) {
        tracing::debug!(task_id, error = %e, "container cgroups not made ahead");
    }
    Made {
        task_cgroup: true,
        warmer: cgroups.warm_migrations(task_id, Duration::from_secs(2)),
    }
}

impl super::Executor {
    /// Starts making the task's cgroups, with their limits, on a thread beside the first
    /// steps, and the cgroup migration lock warmed there once they exist (`cgroup_ahead`):
    /// the ~7 ms grace period the first migration after a quiet spell waits for passes
    /// while the network and the rootfs are set up. The "task cgroup" step joins it.
    pub fn prepare_task_cgroup(&mut self, def: &TaskDefinition) {
        if self.task_cgroup || self.cgroup_ahead.is_some() {
            return;
        }
        let Ok(rt) = self.new_runtime() else {
            return;
        };
        let containers = (0..self.slots.len())
            .map(|idx| runtime_id(&self.task.id, idx))
            .collect();
        self.cgroup_ahead = CgroupAhead::start(
            rt.cgroups().clone(),
            self.task.id.clone(),
            self.limits(def),
            containers,
        );
        self.rt = Some(rt);
    }

    /// Waits for the cgroups made ahead, if any; `task_cgroup` then says if they exist.
    pub(super) fn join_cgroup_ahead(&mut self) {
        if let Some(ahead) = self.cgroup_ahead.take() {
            let made = ahead.join();
            self.task_cgroup |= made.task_cgroup;
            self.warmer = made.warmer;
        }
    }
}
