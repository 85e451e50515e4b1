//! The writes of one service's pass ([`commit`]): held while the pass acts ([`Writes`]),
//! then committed with the deployments' [`Progress`] in one store transaction; what the
//! pass remembers having said is given back when they do not commit ([`Said`]).

use super::reconcile::progress::Progress;
use super::*;
use crate::ecs::services::record_event;

/// The store writes of one service's pass, held while the pass acts (launches, stops,
/// target groups, listener rules) and committed together at its end, with the
/// deployments' [`Progress`], in one transaction ([`commit`]).
#[derive(Default)]
pub(super) struct Writes {
    /// Service events, in the order the pass met them.
    pub(super) events: Vec<String>,
    /// The deleted service has no task left: it and its deployments go INACTIVE.
    pub(super) retire: bool,
    /// Of the UNHEALTHY tasks stopped, those the events say were replaced (given back to
    /// [`Memory::unhealthy`] when the events are not written).
    pub(super) replaced: usize,
}

impl Writes {
    /// The service event "(service NAME) `what`".
    pub(super) fn say(&mut self, s: &ServiceRow, what: impl std::fmt::Display) {
        self.events.push(format!("(service {}) {what}", s.name));
    }
}

/// What a pass remembers having said (an event written once, until it changes), put back
/// when the pass's writes do not commit: the next pass says it again.
pub(super) struct Said {
    unplaced: Option<String>,
    shift_failed: Option<String>,
    protected: usize,
    warned: bool,
    lb: (Vec<String>, Vec<String>, usize, HashSet<String>),
}

impl Said {
    pub(super) fn of(m: &Memory) -> Said {
        Said {
            unplaced: m.unplaced.clone(),
            shift_failed: m.shift_failed.clone(),
            protected: m.protected,
            warned: m.throttle.warned,
            lb: (
                m.lb.events.clone(),
                m.lb.deregistered.clone(),
                m.lb.drains_begun,
                m.lb.failing.clone(),
            ),
        }
    }

    pub(super) fn restore(self, m: &mut Memory, w: &Writes) {
        m.unplaced = self.unplaced;
        m.shift_failed = self.shift_failed;
        m.protected = self.protected;
        m.throttle.warned = self.warned;
        (
            m.lb.events,
            m.lb.deregistered,
            m.lb.drains_begun,
            m.lb.failing,
        ) = self.lb;
        m.unhealthy += w.replaced;
    }
}

/// What a pass's commit changed.
#[derive(Default)]
pub(super) struct Committed {
    /// It wrote a row.
    pub(super) wrote: bool,
    /// A rollback started.
    pub(super) rolled_back: bool,
}

/// The pass's store writes, in one transaction: the events of what it did, the deleted
/// service retired, the deployments as [`progress`] made them (a completion, a trip and
/// its rollback). All or nothing: a store error midway (or a crash) leaves the service,
/// its deployments and its events as before the pass.
///
/// In a cluster the pass runs as a write of the control plane (`cluster::replica`): the
/// rows this transaction changed are logged in the same transaction (a rollback logs
/// nothing) and go to etcd right after it (`Fleet::pass_written`), in one etcd
/// transaction that holds only while this serve still has the control plane's write lock
/// (a service's pass changes a few rows, far below the 100 of one etcd transaction). A
/// lost lock makes etcd refuse the whole change, and the local copy takes etcd's rows
/// back: before the pass there too.
pub(super) fn commit(
    store: &mut Store,
    s: &ServiceRow,
    w: &Writes,
    retired: &[DeploymentRow],
    progressed: Option<&(Deployments, Progress)>,
) -> anyhow::Result<Committed> {
    let wrote = !w.events.is_empty()
        || w.retire
        || progressed.is_some_and(|(read, p)| {
            !p.events.is_empty() || p.trip.is_some() || read.rows != p.rows
        });
    if !wrote {
        return Ok(Committed::default());
    }
    store.in_transaction("write a service scheduler pass", |store| {
        for e in &w.events {
            record_event(store, &s.cluster, &s.name, e.clone())?;
        }
        if w.retire {
            retire_service(store, s, retired)?;
        }
        let rolled_back = match progressed {
            Some((read, p)) => save_progress(store, s, read, p)?,
            None => false,
        };
        Ok(Committed { wrote, rolled_back })
    })
}

/// The deleted service has no task left: it and its deployments go INACTIVE.
fn retire_service(
    store: &mut Store,
    s: &ServiceRow,
    deployments: &[DeploymentRow],
) -> anyhow::Result<()> {
    let mut gone = s.clone();
    gone.status = ServiceStatus::Inactive;
    gone.updated_at_ms = now_ms();
    store.save_service(&gone)?;
    for d in deployments {
        let mut d = d.clone();
        d.status = DeploymentStatus::Inactive;
        d.updated_at_ms = now_ms();
        store.save_deployment(&d)?;
    }
    Ok(())
}

/// The deployments' side of the pass, in [`commit`]'s transaction: what [`progress`] made
/// of them, saved (a completion finishing the deployment it rolled back), its events
/// written, a trip carried out (`deployments::trip`: FAILED, and the rollback when
/// asked). Whether a rollback started.
fn save_progress(
    store: &mut Store,
    s: &ServiceRow,
    read: &Deployments,
    p: &Progress,
) -> anyhow::Result<bool> {
    for (before, after) in read.rows.iter().zip(&p.rows) {
        if before == after {
            continue;
        }
        let mut row = after.clone();
        if p.completed.as_ref() == Some(&row.id) {
            deployments::completed(store, &mut row)?;
        }
        if before.sd.blue_green != row.sd.blue_green
            && let Some(b) = row.sd.blue_green
        {
            tracing::info!(service = %s.name, deployment = %row.id, stage = b.stage.as_str(),
                production_permille = b.production_permille, "blue/green lifecycle stage");
        }
        store.save_deployment(&row)?;
    }
    for e in &p.events {
        record_event(store, &s.cluster, &s.name, e.clone())?;
    }
    let Some(t) = &p.trip else {
        return Ok(false);
    };
    let Some(mut row) = p.rows.iter().find(|r| r.id == t.deployment).cloned() else {
        return Ok(false);
    };
    tracing::warn!(service = %s.name, deployment = %row.id, failed = row.failed_tasks,
        rollback = t.rollback, why = ?t.why, "the deployment failed");
    deployments::trip(store, s, &mut row, t.rollback, &t.why)
}

/// What the service's memory keeps of the deployments' side, once it is committed.
pub(super) fn remember_progress(m: &mut Memory, p: Progress, rolled_back: bool) {
    m.missing_alarms = p.missing_said;
    m.steady = p.steady_said;
    if p.steady_now {
        m.throttle.warned = false;
    }
    if rolled_back {
        m.rolled_back();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Service web of 1 task, its COMPLETED deployment 1 (td:1) and its PRIMARY
    /// deployment 2 (td:2) in progress.
    fn rolling_service(store: &mut Store) -> ServiceRow {
        use crate::ecs::deployments::tests::{deployment, service};
        store.create_cluster("default", "arn:c", 1).unwrap();
        let mut good = deployment("ecs-svc/1", "td:1", 1);
        assert!(store.create_service(&service("td:1"), &good).unwrap());
        good.rollout_state = RolloutState::Completed;
        store.save_deployment(&good).unwrap();
        store
            .start_deployment(&deployment("ecs-svc/2", "td:2", 2))
            .unwrap();
        let s = service("td:2");
        store.save_service(&s).unwrap();
        s
    }

    /// Every row of the service a pass may write: its own, its deployments, its events.
    fn written(store: &Store) -> (ServiceRow, Vec<DeploymentRow>, Vec<String>) {
        let events = store.service_events("default", "web").unwrap();
        (
            store.service("default", "web").unwrap().unwrap(),
            store.all_deployments("default", "web").unwrap(),
            events.into_iter().map(|e| e.message).collect(),
        )
    }

    /// A pass that stopped a failed task and whose circuit breaker trips: the stop's event,
    /// deployment 2's failed count, its trip and the rollback to deployment 1.
    fn tripping_pass(store: &Store) -> (Writes, Deployments, Progress) {
        let mut w = Writes::default();
        w.events
            .push("(service web) has stopped 1 running tasks: (task t1).".into());
        let rows = store.deployments("default", "web").unwrap();
        let mut after = rows.clone();
        after[0].failed_tasks = 3;
        let p = Progress {
            rows: after,
            trip: Some(reconcile::progress::Trip {
                deployment: "ecs-svc/2".into(),
                rollback: true,
                why: deployments::Tripped::CircuitBreaker,
            }),
            ..Default::default()
        };
        let read = Deployments {
            rows,
            ..Default::default()
        };
        (w, read, p)
    }

    #[test]
    fn a_pass_whose_store_write_fails_midway_leaves_nothing_of_it_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let s = rolling_service(&mut store);
        let before = written(&store);
        let (w, read, p) = tripping_pass(&store);
        // The rollback's last write fails: by then the pass has written its event, saved
        // deployment 2, failed it, started the rollback's deployment and pointed the
        // service back at td:1.
        store
            .execute_batch_for_tests(
                "CREATE TEMP TRIGGER fail_rollback BEFORE INSERT ON main.service_events \
                 WHEN NEW.message LIKE '%rolling back to deployment%' \
                 BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
            )
            .unwrap();
        let progressed = Some((read, p));
        let e = commit(&mut store, &s, &w, &[], progressed.as_ref())
            .err()
            .expect("the injected failure");
        assert!(format!("{e:#}").contains("injected failure"), "{e:#}");
        assert_eq!(written(&store), before, "a part of the pass was written");

        // The same pass without the failure: every part of it, in order.
        store
            .execute_batch_for_tests("DROP TRIGGER fail_rollback")
            .unwrap();
        let c = commit(&mut store, &s, &w, &[], progressed.as_ref()).unwrap();
        assert!(c.wrote && c.rolled_back);
        let (svc, ds, events) = written(&store);
        assert_eq!(svc.task_definition_arn, "td:1");
        assert_eq!(ds.len(), 3, "the rollback's deployment");
        let failed = ds.iter().find(|d| d.id == "ecs-svc/2").unwrap();
        assert_eq!(
            (failed.status, failed.rollout_state, failed.failed_tasks),
            (DeploymentStatus::Active, RolloutState::Failed, 3)
        );
        assert_eq!(ds[0].status, DeploymentStatus::Primary);
        assert_eq!(ds[0].sd.rollback_of.as_deref(), Some("ecs-svc/2"));
        assert_eq!(
            events,
            [
                "(service web) rolling back to deployment ecs-svc/1.",
                "(service web) (deployment ecs-svc/2) deployment failed: tasks failed to start.",
                "(service web) has stopped 1 running tasks: (task t1).",
            ]
        );
    }

    #[test]
    fn a_pass_that_changes_nothing_opens_no_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let s = rolling_service(&mut store);
        let rows = store.deployments("default", "web").unwrap();
        let p = Progress {
            rows: rows.clone(),
            ..Default::default()
        };
        let read = Deployments {
            rows,
            ..Default::default()
        };
        // A transaction would fail: the store refuses every write.
        store
            .execute_batch_for_tests("PRAGMA query_only = ON")
            .unwrap();
        let c = commit(&mut store, &s, &Writes::default(), &[], Some(&(read, p))).unwrap();
        assert!(!c.wrote && !c.rolled_back);
    }

    #[test]
    fn a_failed_commit_gives_back_what_the_pass_said_so_the_next_pass_says_it_again() {
        let mut m = Memory::default();
        m.lb.events
            .push("registered 1 targets in (target-group tg)".into());
        m.unhealthy = 2;
        let said = Said::of(&m);
        // The pass: it said the placement failure, a protection and the replacements.
        m.unplaced = Some("unable to place".into());
        m.protected = 1;
        m.lb.events.clear();
        m.unhealthy = 0;
        let w = Writes {
            replaced: 2,
            ..Default::default()
        };
        said.restore(&mut m, &w);
        assert_eq!(m.unplaced, None);
        assert_eq!(m.protected, 0);
        assert_eq!(m.lb.events, ["registered 1 targets in (target-group tg)"]);
        assert_eq!(m.unhealthy, 2);
    }
}
