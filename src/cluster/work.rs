//! The agent's work (docs/cluster.md "Tasks"): it reads the tasks assigned to its
//! instance, then watches them from the next revision (so nothing is missed across a
//! reconnect), creates each new one with the ids the placer chose and starts its
//! supervisor exactly as one box does, stops the ones whose desired status turns STOPPED
//! (or whose assignment disappears), and reports each local change of a task under its
//! box's prefix (the SubmitTaskStateChange equivalent), which serve's leader folds into
//! the task's record ([`super::reports`]). Once a STOPPED report is folded, the leader
//! deletes the assignment and takes the reservation out of the ledger; the agent then
//! forgets the task.

use super::etcd::{Compare, Etcd, EtcdError, Event, Op, WatchEnd};
use super::keys;
use super::records::{
    Assignment, Ledger, NeverStarted, Report, Reservation, decode, json_bytes, task_json,
};
use crate::ecs::Ecs;
use crate::store::{DesiredStatus, LastStatus, StopCode};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// How often the agent looks for local task changes (one `PRAGMA data_version`: the
/// tasks are read again only when a supervisor has committed something).
const REPORT_EVERY: Duration = Duration::from_millis(20);
/// Every this many looks, dead supervisors are looked for (one /proc read a task).
const RECONCILE_EVERY: u32 = 50;

/// Why the work loop ended (the session restarts it).
#[derive(Debug, thiserror::Error)]
pub enum WorkError {
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    #[error(transparent)]
    Watch(#[from] WatchEnd),
    /// This box's store could not be read: whether the task runs here is unknown, so
    /// nothing is decided on it (the session starts again and reads it again).
    #[error(
        "failed to read task {task} from this box's state store (read again when the agent's session restarts)"
    )]
    Store {
        task: String,
        #[source]
        source: anyhow::Error,
    },
}

/// The tasks one agent runs for its instance.
pub struct Work {
    pub ecs: Ecs,
    pub cluster: String,
    pub instance: String,
    pub arn: String,
    /// The tasks followed, with the local version last written to their records (-1:
    /// none yet).
    tracked: BTreeMap<String, i64>,
    ticks: u32,
    /// The connection changes are watched through, and the store's `data_version` at the
    /// last look.
    store: Option<(crate::store::Store, i64)>,
    /// A task was taken up since the last report: its first record is due.
    fresh: bool,
    /// Tasks this box still runs that are no longer assigned to it (a lost box's tasks,
    /// stopped in the cluster while it was away): their reservations stay in the
    /// instance's ledger until they are STOPPED here, so placement does not book their
    /// memory and ports twice.
    leaving: BTreeMap<String, Reservation>,
    /// The pull policy and default stop timeout of /etc/ecs/ecs.config.
    pub applied: super::ecs_config::Applied,
    /// The box name the reports are written under (`boxes/NAME/reports/`): its etcd
    /// user's, or the instance id on a plain etcd.
    pub reporter: String,
    /// Bumped each time the loop comes round: the liveness lease is renewed only while it
    /// is recent (`super::agent::Liveness`).
    pub heartbeat: std::sync::Arc<Heartbeat>,
}

/// When the agent's work loop last came round (docs/cluster.md "A wedged agent"): the
/// loop bumps it, the liveness thread reads its age. A loop whose thread is blocked, or
/// whose step never returns, stops bumping it.
#[derive(Debug)]
pub struct Heartbeat {
    since: std::time::Instant,
    /// Milliseconds from `since` to the last bump.
    last_ms: std::sync::atomic::AtomicU64,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Heartbeat {
            since: std::time::Instant::now(),
            last_ms: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

impl Heartbeat {
    /// The loop made progress now.
    pub fn bump(&self) {
        let now = self.since.elapsed().as_millis() as u64;
        self.last_ms
            .store(now, std::sync::atomic::Ordering::Relaxed);
    }

    /// How long ago the loop last made progress.
    pub fn age(&self) -> Duration {
        let last = self.last_ms.load(std::sync::atomic::Ordering::Relaxed);
        self.since
            .elapsed()
            .saturating_sub(Duration::from_millis(last))
    }
}

/// The test-only way to wedge the work loop (docs/cluster.md "A wedged agent"): with
/// `MINIFARGATE_TEST_WEDGE_FILE` set, while that file exists the loop blocks its thread
/// (a live process whose work makes no progress, as a deadlock or a hung system call
/// would leave it). Not for production use: nothing else reads the variable.
fn wedged_while_told() {
    let Some(file) = std::env::var_os("MINIFARGATE_TEST_WEDGE_FILE") else {
        return;
    };
    let file = std::path::PathBuf::from(file);
    if !file.exists() {
        return;
    }
    tracing::warn!(file = %file.display(), "the work loop is wedged (test only) until the file goes");
    while file.exists() {
        std::thread::sleep(Duration::from_millis(100));
    }
    tracing::warn!("the work loop is no longer wedged (test only)");
}

impl Work {
    pub fn new(ecs: Ecs, cluster: &str, instance: &str, arn: &str) -> Work {
        Work {
            ecs,
            cluster: cluster.into(),
            instance: instance.into(),
            arn: arn.into(),
            tracked: BTreeMap::new(),
            ticks: 0,
            store: None,
            fresh: false,
            leaving: BTreeMap::new(),
            applied: Default::default(),
            reporter: instance.into(),
            heartbeat: Default::default(),
        }
    }

    /// Reads the assignments, acts on them, then follows them until etcd fails.
    pub async fn run(&mut self, etcd: &Etcd) -> WorkError {
        match self.session(etcd).await {
            Ok(never) => match never {},
            Err(e) => e,
        }
    }

    /// Before the instance is connected again: the local tasks no longer assigned here
    /// (stopped in the cluster while the box was away) are stopped and their reservations
    /// put back into the ledger, so placement never sees their memory and ports free
    /// while they still run.
    pub async fn before_connect(&mut self, etcd: &Etcd) -> Result<(), WorkError> {
        let assigned = self.assigned_ids(etcd).await?;
        self.stop_unassigned(&assigned)?;
        self.square_ledger(etcd).await
    }

    async fn session(&mut self, etcd: &Etcd) -> Result<std::convert::Infallible, WorkError> {
        let (now, mut follow) = Assignments::read(etcd, &self.cluster, &self.instance).await?;
        let mut assigned = BTreeSet::new();
        for a in now {
            self.assignment(etcd, &a.id, &a.key, &a.value).await?;
            assigned.insert(a.id);
        }
        // What is no longer assigned here is no longer this agent's to record.
        self.tracked.retain(|id, _| assigned.contains(id));
        self.stop_unassigned(&assigned)?;
        self.square_ledger(etcd).await?;
        let mut tick = tokio::time::interval(REPORT_EVERY);
        loop {
            self.heartbeat.bump();
            tokio::select! {
                changes = follow.next() => {
                    for c in changes? {
                        match c {
                            Change::Assigned(a) => {
                                self.assignment(etcd, &a.id, &a.key, &a.value).await?;
                            }
                            Change::Unassigned(id) => {
                                let leaving = self.leaving.len();
                                self.unassigned(&id)?;
                                if self.leaving.len() != leaving {
                                    self.square_ledger(etcd).await?;
                                }
                            }
                        }
                    }
                }
                _ = tick.tick() => {
                    wedged_while_told();
                    self.report(etcd).await?;
                    self.settle_leaving(etcd).await?;
                }
            }
        }
    }

    /// Acts on task `id`'s assignment.
    async fn assignment(
        &mut self,
        etcd: &Etcd,
        id: &str,
        key: &str,
        raw: &[u8],
    ) -> Result<(), WorkError> {
        let a: Assignment = match decode(key, raw) {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(task = %id, error = %e, "an assignment that does not decode");
                return self
                    .never_started(
                        etcd,
                        id,
                        "TaskFailedToStart",
                        &format!("the agent could not read its assignment: {e}"),
                    )
                    .await;
            }
        };
        let local = self.local(id)?;
        // Whatever this does, the records are looked at on the next report.
        self.fresh = true;
        match (a.desired_status, local) {
            (DesiredStatus::Stopped, None) => {
                let reason = a
                    .stopped_reason
                    .unwrap_or_else(|| "Task stopped by user".into());
                let code = a.stop_code.unwrap_or(StopCode::UserInitiated);
                self.never_started(etcd, id, code.as_str(), &reason).await
            }
            // Reported STOPPED and not yet folded by serve's leader (which then deletes
            // the assignment): not started again (a box that reported a start failure
            // sees the assignment again in its next session).
            (_, None) if self.reported_stopped(etcd, id).await? => {
                self.tracked.remove(id);
                Ok(())
            }
            (_, None) => match self.start(&a) {
                Ok(()) => {
                    self.tracked.insert(id.into(), -1);
                    self.fresh = true;
                    Ok(())
                }
                Err(e) => {
                    let why = crate::errors::error_chain(&*e);
                    tracing::warn!(task = %id, error = %why, "task failed to start");
                    self.never_started(etcd, id, "TaskFailedToStart", &why)
                        .await
                }
            },
            (DesiredStatus::Stopped, Some((last, desired))) => {
                if last != LastStatus::Stopped && desired != DesiredStatus::Stopped {
                    let reason = a
                        .stopped_reason
                        .unwrap_or_else(|| "Task stopped by user".into());
                    self.stop(id, a.stop_code.unwrap_or(StopCode::UserInitiated), &reason);
                }
                self.tracked.entry(id.into()).or_insert(-1);
                Ok(())
            }
            (_, Some(_)) => {
                self.tracked.entry(id.into()).or_insert(-1);
                Ok(())
            }
        }
    }

    /// Task `id`'s report key.
    fn report_key(&self, id: &str) -> String {
        keys::box_report(&self.reporter, &self.cluster, id)
    }

    /// Whether this box's report of task `id`, not yet folded, says STOPPED.
    async fn reported_stopped(&self, etcd: &Etcd, id: &str) -> Result<bool, WorkError> {
        Ok(reported_stopped(etcd, &self.report_key(id)).await?)
    }

    /// Task `id`'s local statuses, if this box has it. A store that cannot be read is an
    /// error, never "not here": a running task taken for absent would be recorded
    /// STOPPED and forgotten while it runs.
    fn local(&self, id: &str) -> Result<Option<(LastStatus, DesiredStatus)>, WorkError> {
        let failed = |source: anyhow::Error| WorkError::Store {
            task: id.into(),
            source,
        };
        let store = self.ecs.open_store().map_err(failed)?;
        let row = store.task(id).map_err(|e| failed(e.into()))?;
        Ok(row.map(|(t, _)| (t.last_status, t.desired_status)))
    }

    /// Creates the assigned task with the placer's ids and starts its supervisor.
    fn start(&self, a: &Assignment) -> anyhow::Result<()> {
        let ctx = a.context();
        let mut stored = a.stored();
        self.applied.fill(&mut stored.definition);
        let prepared = crate::supervisor::launch::prepare_task(
            &ctx,
            &stored,
            &a.request.request(),
            &self.ecs.root,
            &a.ids,
        )?;
        crate::ecs::tasks::start_prepared(&self.ecs, &ctx, &prepared, self.applied.pull)?;
        tracing::info!(
            task = %a.ids.task,
            definition = a.definition.task_definition_arn.as_deref().unwrap_or_default(),
            "started task"
        );
        Ok(())
    }

    fn stop(&self, id: &str, code: StopCode, reason: &str) {
        use crate::ecs::fleet::Fleet;
        let t = crate::store::TaskRow {
            id: id.into(),
            ..Default::default()
        };
        if !crate::ecs::fleet::Local.stop(&self.ecs, &t, code, reason) {
            tracing::warn!(task = %id, "could not ask the task's supervisor to stop it");
        }
    }

    /// Task `id`'s assignment is gone while this box still runs it: it was taken off this
    /// instance (a lost box's task replaced elsewhere), so it stops here.
    fn unassigned(&mut self, id: &str) -> Result<(), WorkError> {
        if !self.tracked.contains_key(id) {
            return Ok(());
        }
        let store = self.ecs.open_store().map_err(|source| WorkError::Store {
            task: id.into(),
            source,
        })?;
        let row = store.task(id).map_err(|e| WorkError::Store {
            task: id.into(),
            source: e.into(),
        })?;
        if let Some((t, _)) = row
            && t.last_status != LastStatus::Stopped
        {
            self.leave(&t);
        }
        self.tracked.remove(id);
        Ok(())
    }

    /// This instance is INACTIVE (deregistered): every local task placed on it stops.
    pub fn stop_all(&mut self) -> Result<(), WorkError> {
        self.stop_unassigned(&BTreeSet::new())
    }

    /// After a restart: the local tasks placed on this instance that are no longer
    /// assigned to it stop, and so do the ones an earlier instance of this box left
    /// running (a box reprovisioned as a new instance after its old one was deregistered
    /// while its agent was away: nothing assigns them to anyone any more).
    fn stop_unassigned(&mut self, assigned: &BTreeSet<String>) -> Result<(), WorkError> {
        let failed = |source: anyhow::Error| WorkError::Store {
            task: "(every task not STOPPED)".into(),
            source,
        };
        let store = self.ecs.open_store().map_err(failed)?;
        let rows = store.unstopped_tasks().map_err(|e| failed(e.into()))?;
        for t in rows {
            let placed_here = t.launch.container_instance_arn.as_deref() == Some(self.arn.as_str());
            if (placed_here && !assigned.contains(&t.id)) || self.of_an_earlier_instance(&t) {
                // Its record is no longer this agent's to write (the leader stopped it
                // there, or another box runs its replacement).
                self.tracked.remove(&t.id);
                self.leave(&t);
            }
        }
        Ok(())
    }

    /// Whether local task `t` was placed on another instance of this agent's cluster
    /// than its own: one this box was before (the agent's state root is its own; the
    /// one-box instance of the cluster, `task::shape::container_instance_arn`, is not
    /// one of them).
    fn of_an_earlier_instance(&self, t: &crate::store::TaskRow) -> bool {
        let Some(arn) = t.launch.container_instance_arn.as_deref() else {
            return false;
        };
        let ours = super::instances::arn(&self.cluster, "");
        let cluster_arn =
            crate::taskdef::AwsContext::from_env().ecs_arn(&format!("cluster/{}", self.cluster));
        arn != self.arn
            && arn.starts_with(&ours)
            && arn != crate::task::shape::container_instance_arn(&cluster_arn)
    }

    /// Stops local task `t`, no longer assigned here, and counts its reservation until it
    /// is STOPPED.
    fn leave(&mut self, t: &crate::store::TaskRow) {
        if t.desired_status != DesiredStatus::Stopped {
            self.stop(
                &t.id,
                StopCode::TerminationNotice,
                &format!(
                    "Task is no longer assigned to container instance {}",
                    t.launch
                        .container_instance_arn
                        .as_deref()
                        .unwrap_or(&self.arn)
                ),
            );
        }
        self.leaving
            .entry(t.id.clone())
            .or_insert_with(|| reservation_of(t));
    }

    /// The ids of the tasks assigned to this instance in etcd now.
    async fn assigned_ids(&self, etcd: &Etcd) -> Result<BTreeSet<String>, WorkError> {
        let prefix = keys::assignments(&self.cluster, &self.instance);
        Ok(etcd
            .keys_with_prefix(&prefix)
            .await?
            .into_iter()
            .map(|k| k[prefix.len()..].to_string())
            .collect())
    }

    /// Squares the instance's ledger with what the box holds: the leaving tasks'
    /// reservations are put back (the leader took them out when it stopped them in the
    /// cluster), and a reservation of a task neither assigned here nor leaving (one that
    /// stopped while this agent was down) is taken out; one transaction on the ledger as
    /// read, each taken-out task's assignment still absent.
    async fn square_ledger(&self, etcd: &Etcd) -> Result<(), WorkError> {
        let key = keys::ledger(&self.cluster, &self.instance);
        loop {
            let assigned = self.assigned_ids(etcd).await?;
            let (mut ledger, rev) = match etcd.get(&key).await? {
                Some(kv) => match decode::<Ledger>(&key, &kv.value) {
                    Ok(l) => (l, kv.mod_revision),
                    Err(e) => {
                        tracing::error!(error = %e,
                            "the ledger does not decode: the reservations of the tasks \
                             stopping here are not counted");
                        return Ok(());
                    }
                },
                None => (Ledger::default(), 0),
            };
            let stale: Vec<String> = ledger
                .tasks
                .keys()
                .filter(|id| !assigned.contains(*id) && !self.leaving.contains_key(*id))
                .cloned()
                .collect();
            let mut changed = !stale.is_empty();
            for id in &stale {
                ledger.tasks.remove(id);
            }
            for (id, r) in &self.leaving {
                if !ledger.tasks.contains_key(id) {
                    ledger.tasks.insert(id.clone(), r.clone());
                    changed = true;
                }
            }
            if !changed {
                return Ok(());
            }
            let mut compares = vec![Compare::ModRevision(key.clone(), rev)];
            compares.extend(
                stale
                    .iter()
                    .map(|id| Compare::Absent(keys::assignment(&self.cluster, &self.instance, id))),
            );
            if etcd
                .txn(&compares, &[Op::Put(key.clone(), json_bytes(&ledger))])
                .await?
            {
                return Ok(());
            }
        }
    }

    /// Releases the reservation of each leaving task that is STOPPED here (or no longer
    /// here at all).
    async fn settle_leaving(&mut self, etcd: &Etcd) -> Result<(), WorkError> {
        if self.leaving.is_empty() || !self.ticks.is_multiple_of(5) {
            return Ok(());
        }
        let mut gone = Vec::new();
        for id in self.leaving.keys() {
            if !matches!(self.local(id)?, Some((last, _)) if last != LastStatus::Stopped) {
                gone.push(id.clone());
            }
        }
        for id in gone {
            self.release(etcd, &id).await?;
            self.leaving.remove(&id);
        }
        Ok(())
    }

    /// Writes the followed tasks' local changes to their records; a STOPPED one leaves
    /// the ledger and its assignment is deleted.
    async fn report(&mut self, etcd: &Etcd) -> Result<(), WorkError> {
        if self.tracked.is_empty() && self.leaving.is_empty() {
            return Ok(());
        }
        if self.store.is_none() {
            match self.ecs.open_store() {
                Ok(s) => self.store = Some((s, -1)),
                Err(e) => {
                    tracing::warn!(error = %crate::errors::error_chain(&*e), "cannot open the box's store to report");
                    return Ok(());
                }
            }
        }
        let Some((store, seen)) = self.store.as_mut() else {
            return Ok(());
        };
        self.ticks = self.ticks.wrapping_add(1);
        let reconcile = self.ticks.is_multiple_of(RECONCILE_EVERY);
        if reconcile {
            let ids: Vec<&str> = self
                .tracked
                .keys()
                .chain(self.leaving.keys())
                .map(String::as_str)
                .collect();
            self.ecs.reconcile_tasks(store, &ids);
        }
        let now = store.data_version().unwrap_or(-1);
        if now == *seen && now != -1 && !reconcile && !std::mem::take(&mut self.fresh) {
            return Ok(());
        }
        *seen = now;
        let store = &*store;
        for (id, reported) in self.tracked.iter_mut() {
            let Ok(Some((row, _))) = store.task(id) else {
                continue;
            };
            if row.version == *reported {
                continue;
            }
            let Ok(Some(task)) = crate::ecs::tasks::task_by_id(store, id) else {
                continue;
            };
            // The newest local state replaces a report not yet folded; serve's leader
            // applies it only while the task is assigned here, never over a STOPPED
            // record, and releases the task with a STOPPED one (issue 54).
            let key = keys::box_report(&self.reporter, &self.cluster, id);
            report_task(etcd, &key, &self.instance, &task).await?;
            *reported = row.version;
        }
        Ok(())
    }

    /// Takes task `id`'s reservation out of the ledger and deletes its assignment (one
    /// transaction).
    async fn release(&self, etcd: &Etcd, id: &str) -> Result<(), WorkError> {
        let key = keys::ledger(&self.cluster, &self.instance);
        let assignment = keys::assignment(&self.cluster, &self.instance, id);
        loop {
            let held = match etcd.get(&key).await? {
                Some(kv) => match decode::<Ledger>(&key, &kv.value) {
                    Ok(mut ledger) => ledger.tasks.remove(id).map(|_| (ledger, kv.mod_revision)),
                    Err(e) => {
                        tracing::error!(task = %id, error = %e, "the ledger does not decode: the task's reservation stays");
                        None
                    }
                },
                None => None,
            };
            let Some((ledger, rev)) = held else {
                etcd.delete(&assignment).await?;
                return Ok(());
            };
            if etcd
                .txn(
                    &[Compare::ModRevision(key.clone(), rev)],
                    &[
                        Op::Put(key.clone(), json_bytes(&ledger)),
                        Op::Delete(assignment.clone()),
                    ],
                )
                .await?
            {
                return Ok(());
            }
        }
    }

    /// Reports task `id`, which this box never started, as STOPPED with `reason` (serve's
    /// leader marks its record so and releases it).
    async fn never_started(
        &mut self,
        etcd: &Etcd,
        id: &str,
        code: &str,
        reason: &str,
    ) -> Result<(), WorkError> {
        report_never_started(etcd, &self.report_key(id), &self.instance, code, reason).await?;
        self.tracked.remove(id);
        Ok(())
    }
}

/// What local task `t`, leaving this instance, reserves on it as placement booked it
/// (`stopping`: it is being stopped).
fn reservation_of(t: &crate::store::TaskRow) -> Reservation {
    let mode = crate::supervisor::launch::network_mode(&t.definition, &t.launch_type);
    let group = t.group.clone().unwrap_or_default();
    let need = crate::ecs::placement::Need::of(&t.definition, mode, group.clone());
    Reservation {
        cpu: need.cpu,
        memory: need.memory,
        ports: need.ports,
        udp_ports: need.udp_ports,
        group,
        task_definition_arn: t.task_definition_arn.clone(),
        stopping: true,
    }
}

/// An instance's assignments as read, then as they change: what the agent's work and a
/// hollow box ([`super::hollow`]) follow.
pub(super) struct Assignments {
    prefix: String,
    watch: super::etcd::Watch,
}

/// One task's assignment: its id, key and value.
pub(super) struct AssignedKv {
    pub id: String,
    pub key: String,
    pub value: Vec<u8>,
}

/// A change of an instance's assignments.
pub(super) enum Change {
    Assigned(AssignedKv),
    Unassigned(String),
}

impl Assignments {
    /// The assignments of `instance` of `cluster` now, and their changes from the next
    /// revision on (nothing missed in between).
    pub(super) async fn read(
        etcd: &Etcd,
        cluster: &str,
        instance: &str,
    ) -> Result<(Vec<AssignedKv>, Assignments), WorkError> {
        let prefix = keys::assignments(cluster, instance);
        let (kvs, revision) = etcd.get_prefix_at(&prefix).await?;
        let now = kvs
            .into_iter()
            .map(|kv| AssignedKv {
                id: kv.key[prefix.len()..].to_string(),
                key: kv.key,
                value: kv.value,
            })
            .collect();
        let watch = etcd.watch(&prefix, revision + 1).await?;
        Ok((now, Assignments { prefix, watch }))
    }

    /// The next changes.
    pub(super) async fn next(&mut self) -> Result<Vec<Change>, WorkError> {
        let n = self.prefix.len();
        Ok(self
            .watch
            .next()
            .await?
            .into_iter()
            .map(|e| match e {
                Event::Put(kv) => Change::Assigned(AssignedKv {
                    id: kv.key[n..].to_string(),
                    key: kv.key,
                    value: kv.value,
                }),
                Event::Delete { key, .. } => Change::Unassigned(key[n..].to_string()),
            })
            .collect())
    }
}

/// Whether a box's report `key` (not yet folded by the leader) says STOPPED: the task it
/// names is not started again.
pub(super) async fn reported_stopped(etcd: &Etcd, key: &str) -> Result<bool, EtcdError> {
    Ok(etcd
        .get(key)
        .await?
        .is_some_and(|kv| serde_json::from_slice::<Report>(&kv.value).is_ok_and(|r| r.stopped())))
}

/// Reports `task` as instance `instance` runs it, at report key `key`.
pub(super) async fn report_task(
    etcd: &Etcd,
    key: &str,
    instance: &str,
    task: &crate::task::shape::Task,
) -> Result<(), EtcdError> {
    let report = Report {
        instance: instance.to_string(),
        task: Some(task_json(task)),
        never_started: None,
    };
    put_report(etcd, key, &report).await
}

/// Reports at `key` that instance `instance` never started the task, as STOPPED with
/// stop code `code` and `reason`.
pub(super) async fn report_never_started(
    etcd: &Etcd,
    key: &str,
    instance: &str,
    code: &str,
    reason: &str,
) -> Result<(), EtcdError> {
    let report = Report {
        instance: instance.to_string(),
        task: None,
        never_started: Some(NeverStarted {
            stop_code: code.into(),
            reason: reason.into(),
        }),
    };
    put_report(etcd, key, &report).await
}

/// Puts report `key`. One that serve's port for boxes refuses because the task is no
/// longer assigned to this instance (taken off it meanwhile) is dropped and said, as the
/// leader would drop it: the work goes on.
async fn put_report(etcd: &Etcd, key: &str, report: &Report) -> Result<(), EtcdError> {
    match etcd.put(key, &json_bytes(report), None).await {
        Err(EtcdError::Refused {
            status: 403,
            message,
            ..
        }) if message.contains(super::admission::NOT_ASSIGNED) => {
            tracing::warn!(report = %key, why = %message, "a task report dropped");
            Ok(())
        }
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_that_cannot_be_read_is_an_error_never_an_absent_task() {
        let dir = tempfile::tempdir().unwrap();
        // A state root under a file: the store cannot be opened.
        let file = dir.path().join("file");
        std::fs::write(&file, "not a directory").unwrap();
        let work = Work::new(Ecs::scratch(&file), "default", "i", "arn");
        match work.local("0123456789abcdef0123456789abcdef") {
            Err(WorkError::Store { task, .. }) => {
                assert_eq!(task, "0123456789abcdef0123456789abcdef")
            }
            other => panic!("a store error read as {other:?}"),
        }
        // A store that opens and has no such task: absent.
        let work = Work::new(Ecs::scratch(dir.path()), "default", "i", "arn");
        assert!(matches!(
            work.local("0123456789abcdef0123456789abcdef"),
            Ok(None)
        ));
    }
}
