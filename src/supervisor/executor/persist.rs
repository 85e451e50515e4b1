//! The executor's writes to the store: the task's and its containers' rows, the network
//! row, and the phases of `run-task --timeline`, batched while `defer_saves` holds.

use super::{Executor, Phase, now_us};
use crate::errors::error_chain;
use crate::store::{SharedStore, Store, StoreError};

impl Executor {
    pub(super) fn save(&mut self) {
        self.save_with(None);
    }

    /// Saves the task, and `network` (its network row) in the same transaction, with
    /// the containers whose rows wait (`defer_saves`).
    pub(super) fn save_with(&mut self, network: Option<&crate::store::NetworkRow>) {
        if self.defer_saves && network.is_none() {
            self.task_dirty = true;
            return;
        }
        self.task_dirty = true;
        self.write(network);
    }

    pub(super) fn save_container(&mut self, idx: usize) {
        if !self.containers_dirty.contains(&idx) {
            self.containers_dirty.push(idx);
        }
        if !self.defer_saves {
            self.write(None);
        }
    }

    /// Writes what waits (see `defer_saves`), if anything does.
    pub(super) fn flush_saves(&mut self) {
        if self.task_dirty || !self.containers_dirty.is_empty() {
            self.write(None);
        }
    }

    /// Writes the task's row (when it changed), the changed containers' rows, `network`
    /// and the pending phases, in one transaction.
    pub(super) fn write(&mut self, network: Option<&crate::store::NetworkRow>) {
        if self.task_dirty {
            self.task.warnings.clone_from(&self.warnings);
        }
        let (task, slots) = (&self.task, &self.slots);
        let (task_dirty, dirty) = (self.task_dirty, &self.containers_dirty);
        let what = if task_dirty {
            "save the task"
        } else {
            "save a container"
        };
        write_with_phases(&self.store, &mut self.phases, &task.id, what, |s| {
            for &idx in dirty {
                s.save_container(&slots[idx].row)?;
            }
            if let Some(row) = network {
                s.save_network(row)?;
            }
            if task_dirty {
                s.save_task(task)?;
            }
            Ok(())
        });
        self.task_dirty = false;
        self.containers_dirty.clear();
    }

    /// Notes that `phase` of container `idx` (the task's when `None`) ran from `start`
    /// (µs) until now, for `run-task --timeline`. Written with the next save (each of
    /// which follows a phase soon): one store transaction fewer per phase.
    pub(super) fn phase(&mut self, idx: Option<usize>, phase: &'static str, start: i64) {
        let container = idx.map_or(String::new(), |i| self.slots[i].row.name.clone());
        self.phases.push(Phase {
            container,
            phase,
            start,
            end: now_us(),
        });
    }
}

/// Writes with `f`, and task `task_id`'s pending `phases`, in one transaction; the
/// phases are cleared once written. A failure is logged (`what` names the write).
fn write_with_phases(
    store: &SharedStore,
    phases: &mut Vec<Phase>,
    task_id: &str,
    what: &'static str,
    f: impl FnOnce(&mut Store) -> Result<(), StoreError>,
) {
    let r = store.with(|s| {
        s.in_transaction(what, |s| {
            f(s)?;
            for p in phases.iter() {
                s.record_phase(task_id, &p.container, p.phase, p.start, p.end)?;
            }
            Ok(())
        })
    });
    match r {
        Ok(()) => phases.clear(),
        Err(e) => tracing::error!(task_id, error = %error_chain(&e), "failed to {what}"),
    }
}
