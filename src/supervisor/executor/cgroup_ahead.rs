//! The task's cgroups made on a thread of their own, beside the launch's first steps, and
//! the migration warmer started there once they exist ([`runtime::MigrationWarmer`]).
//!
//! On cgroup v1 that is ~50 cgroupfs calls (a dir per controller for the task and for each
//! container, the cpusets filled in): ~1 ms that was on the supervisor's path (or, before,
//! on its launcher's, ahead of the hand-over). The "task cgroup" step joins the thread and
//! reports what failed by making the rest itself; teardown joins it before it removes
//! the task's cgroup, so nothing the thread makes outlives the task.
//!
//! Two stages. A supervisor started ahead of its task is told the task's id and its
//! number of containers as soon as its launcher has read the definition (the `cgroups`
//! line of the wait pipe, `launch::Waiting::announce_cgroups`): it makes the dirs then,
//! without limits, and starts the warmer ([`CgroupAhead::start_early`]). The first
//! migration after a quiet spell waits for an RCU grace period (4–18 ms measured here,
//! docs/benchmarks.md "Stop 50"), and the earlier the warmer pays it, the less of it is
//! left for the container's own migration, inside libcontainer's create. Once the task
//! is handed over, [`CgroupAhead::start`] writes the limits into those dirs (or makes
//! everything, when nothing was made ahead).
//!
//! A [`CgroupAhead`] dropped without [`CgroupAhead::join`] (the launch failed before the
//! hand-over, the supervisor bailed out) removes what its thread made: the warmer leaves
//! the cgroup first, then the dirs go.

use crate::task::runtime_id;
use crate::taskdef::model::TaskDefinition;
use runtime::{Cgroups, MigrationWarmer, TaskLimits};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the thread made: whether the task's cgroup exists (with its limits, once the
/// second stage ran), and the warmer it started after it (and after the containers'
/// dirs).
#[derive(Default)]
pub(crate) struct Made {
    pub task_cgroup: bool,
    pub warmer: Option<MigrationWarmer>,
    /// How many of the containers' dirs it made (the first ones).
    pub containers: usize,
}

/// The thread at work; [`CgroupAhead::join`] waits for it.
pub(crate) struct CgroupAhead {
    thread: Option<JoinHandle<Made>>,
    cgroups: Cgroups,
    task_id: String,
}

impl CgroupAhead {
    /// The first stage, in a supervisor still waiting for its task: `task_id`'s cgroup
    /// and its `containers` containers' dirs, without limits, then the warmer. `None`
    /// when there is no cgroup filesystem or the thread could not start.
    pub fn start_early(task_id: String, containers: usize) -> Option<CgroupAhead> {
        let cgroups = Cgroups::detect().ok()?;
        let ids = (0..containers)
            .map(|idx| runtime_id(&task_id, idx))
            .collect();
        Self::spawn(cgroups, task_id, None, ids, None)
    }

    /// Starts making `task_id`'s cgroup with `limits` and its `containers`' dirs under
    /// it, or, after an `early` first stage for the same task, writing the limits into
    /// what it made; `None` when the thread could not start (the step makes them then).
    pub fn start(
        cgroups: Cgroups,
        task_id: String,
        limits: TaskLimits,
        containers: Vec<String>,
        early: Option<CgroupAhead>,
    ) -> Option<CgroupAhead> {
        Self::spawn(cgroups, task_id, Some(limits), containers, early)
    }

    fn spawn(
        cgroups: Cgroups,
        task_id: String,
        limits: Option<TaskLimits>,
        containers: Vec<String>,
        early: Option<CgroupAhead>,
    ) -> Option<CgroupAhead> {
        let (c, id) = (cgroups.clone(), task_id.clone());
        let made = move || {
            let early = early.map(CgroupAhead::join);
            make(&c, &id, limits.as_ref(), &containers, early)
        };
        // The thread not started: `early` went with the closure, and its drop removed
        // what it made.
        let thread = threadgate::spawn(
            std::thread::Builder::new().name("cgroup-ahead".into()),
            made,
        )
        .ok()?;
        Some(CgroupAhead {
            thread: Some(thread),
            cgroups,
            task_id,
        })
    }

    /// The task this thread makes the cgroups of.
    pub fn task_id(&self) -> &str {
        &self.task_id
    }

    /// Waits for the thread; a thread that panicked made nothing the caller can count on
    /// (the step makes the cgroup again, and removes it at teardown either way).
    pub fn join(mut self) -> Made {
        self.thread
            .take()
            .map(|t| t.join().unwrap_or_default())
            .unwrap_or_default()
    }
}

impl Drop for CgroupAhead {
    /// Not joined: nobody will use what the thread made. The warmer leaves the cgroup
    /// (its drop joins it) before the cgroup is removed: [`Cgroups::remove`] kills what
    /// it finds inside, and the warmer is a thread of this process.
    fn drop(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        let made = thread.join().unwrap_or_default();
        drop(made.warmer);
        if let Err(e) = self.cgroups.remove(&Cgroups::task_path(&self.task_id)) {
            tracing::warn!(task_id = %self.task_id, error = %e, "failed to remove the cgroup made ahead");
        }
    }
}

fn make(
    cgroups: &Cgroups,
    task_id: &str,
    limits: Option<&TaskLimits>,
    containers: &[String],
    early: Option<Made>,
) -> Made {
    if let Some(made) = early
        && made.task_cgroup
    {
        // The dirs and the warmer are there: the limits only. On failure the warmer
        // leaves before the cgroup is removed (see the Drop above), and the step makes
        // the cgroup itself and reports what failed.
        let limits = limits.cloned().unwrap_or_default();
        let updated = cgroups.update_task(task_id, &limits).and_then(|()| {
            // Only the containers beyond those the launcher announced (none, when the
            // definition is the one it read).
            let rest = containers.get(made.containers..).unwrap_or_default();
            cgroups.precreate_containers(task_id, rest)
        });
        if let Err(e) = updated {
            tracing::debug!(task_id, error = %e, "limits not written ahead");
            drop(made.warmer);
            let _ = cgroups.remove(&Cgroups::task_path(task_id));
            return Made::default();
        }
        return Made {
            containers: containers.len(),
            ..made
        };
    }
    let limits = limits.cloned().unwrap_or_default();
    if let Err(e) = cgroups.create_task(task_id, &limits) {
        tracing::debug!(task_id, error = %e, "task cgroup not made ahead");
        return Made::default();
    }
    // The containers' dirs before the warmer: its first migration holds the kernel's
    // cgroup mutex through an RCU grace period, which a mkdir would wait for. On failure
    // each container's create makes its own and reports what failed.
    let made = match cgroups.precreate_containers(task_id, containers) {
        Ok(()) => containers.len(),
        Err(e) => {
            tracing::debug!(task_id, error = %e, "container cgroups not made ahead");
            0
        }
    };
    Made {
        task_cgroup: true,
        warmer: cgroups.warm_migrations(task_id, Duration::from_secs(2)),
        containers: made,
    }
}

impl super::Executor {
    /// The first stage made while this supervisor waited for its task (the same task:
    /// the caller checked), taken over by [`Self::prepare_task_cgroup`].
    pub fn set_cgroups_ahead(&mut self, early: Option<CgroupAhead>) {
        self.early_cgroups = early;
    }

    /// Starts making the task's cgroups, with their limits, on a thread beside the first
    /// steps, and the cgroup migration lock warmed there once they exist (`cgroup_ahead`):
    /// the grace period the first migration after a quiet spell waits for passes while
    /// the network and the rootfs are set up. The "task cgroup" step joins it.
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
            self.early_cgroups.take(),
        );
        self.rt = Some(rt);
    }

    /// Waits for the cgroups made ahead, if any; `task_cgroup` then says if they exist.
    pub(super) fn join_cgroup_ahead(&mut self) {
        // A first stage no second one took over (its limits were never written): gone,
        // warmer and dirs, and the step makes the cgroup as it would without it.
        drop(self.early_cgroups.take());
        if let Some(ahead) = self.cgroup_ahead.take() {
            let made = ahead.join();
            self.task_cgroup |= made.task_cgroup;
            self.warmer = made.warmer;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtime::CgroupVersion;
    use std::path::PathBuf;

    /// The task's dir in `ctrl` (v1) or in the unified tree (v2).
    fn task_dir(cg: &Cgroups, ctrl: &str, id: &str) -> PathBuf {
        match cg.version() {
            CgroupVersion::V1 => cg.root().join(ctrl).join("minifargate").join(id),
            CgroupVersion::V2 => cg.root().join("minifargate").join(id),
        }
    }

    /// Every dir of task `id`, in any hierarchy.
    fn dirs_of(cg: &Cgroups, id: &str) -> Vec<PathBuf> {
        let tops: Vec<PathBuf> = match cg.version() {
            CgroupVersion::V1 => std::fs::read_dir(cg.root())
                .unwrap()
                .flatten()
                .map(|e| e.path())
                .collect(),
            CgroupVersion::V2 => vec![cg.root().to_path_buf()],
        };
        tops.into_iter()
            .map(|t| t.join("minifargate").join(id))
            .filter(|d| d.exists())
            .collect()
    }

    fn new_task_id() -> String {
        crate::task::new_id().unwrap()
    }

    /// A supervisor told a task id that never comes (its launcher failed after
    /// announcing it) leaves nothing: the dirs made ahead go when the handle is dropped,
    /// the warmer (a thread of this process, inside the cgroup) out of it first, so the
    /// removal, which kills what it finds inside, finds nothing.
    #[test]
    fn cgroups_made_ahead_and_never_taken_are_removed() {
        let Ok(cg) = Cgroups::detect() else {
            eprintln!("skipped: no cgroup filesystem");
            return;
        };
        let id = new_task_id();
        let early = CgroupAhead::start_early(id.clone(), 2).expect("the thread starts");
        // The dirs exist while the handle lives (the thread may still be at work).
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while dirs_of(&cg, &id).is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(!dirs_of(&cg, &id).is_empty(), "nothing was made ahead");
        drop(early);
        assert_eq!(dirs_of(&cg, &id), Vec::<PathBuf>::new(), "left behind");
    }

    /// The second stage, once the task is handed over, writes the task's limits into the
    /// dirs made ahead and keeps their warmer; the containers' dirs are there for
    /// libcontainer to find.
    #[test]
    fn the_limits_go_into_the_cgroups_made_ahead() {
        let Ok(cg) = Cgroups::detect() else {
            eprintln!("skipped: no cgroup filesystem");
            return;
        };
        let id = new_task_id();
        let early = CgroupAhead::start_early(id.clone(), 1).expect("the thread starts");
        let limits = TaskLimits {
            memory: Some(256 << 20),
            pids: Some(123),
            ..Default::default()
        };
        let containers = vec![runtime_id(&id, 0), runtime_id(&id, 1)];
        let made = CgroupAhead::start(cg.clone(), id.clone(), limits, containers, Some(early))
            .expect("the thread starts")
            .join();
        assert!(made.task_cgroup);
        assert_eq!(made.warmer.is_some(), cg.version() == CgroupVersion::V1);
        let (mem_file, pids_file) = match cg.version() {
            CgroupVersion::V1 => ("memory.limit_in_bytes", "pids.max"),
            CgroupVersion::V2 => ("memory.max", "pids.max"),
        };
        let read = |ctrl: &str, f: &str| {
            std::fs::read_to_string(task_dir(&cg, ctrl, &id).join(f))
                .unwrap()
                .trim()
                .to_string()
        };
        assert_eq!(read("memory", mem_file), (256u64 << 20).to_string());
        assert_eq!(read("pids", pids_file), "123");
        if cg.version() == CgroupVersion::V1 {
            // Both containers' dirs: the one announced, and the one the definition has
            // beyond it.
            for c in 0..2 {
                let d = task_dir(&cg, "memory", &id).join(runtime_id(&id, c));
                assert!(d.is_dir(), "{} missing", d.display());
            }
        }
        drop(made.warmer);
        cg.remove(&Cgroups::task_path(&id)).unwrap();
        assert_eq!(dirs_of(&cg, &id), Vec::<PathBuf>::new());
    }
}
