//! `minifargate agent --simulate N`: hollow boxes (docs/cluster.md "Scale"; kubemark's
//! hollow nodes), the agent without the supervisor, for the scale bench and tests. Each
//! is a client of the control plane of its own, as a real joined box is: its own key,
//! certificate (the real join, [`super::join::enroll`]; no etcd user), its bundle under
//! `<root>/hollow/<i>/`, and the agent's own steps through serve's port for boxes: the
//! binding ([`super::agent::admitted`]), the registration and lease
//! ([`super::agent::publish`], renewed by [`super::agent::Liveness`]), the assignments'
//! watch and the task reports ([`super::work`]'s). What it leaves out: containers (a task
//! placed on it is reported PENDING, then RUNNING, and STOPPED when asked or after
//! `--simulate-lifetime`), the task subnet (none claimed: its tasks have no address), the
//! data plane, the registries and the tunnel (its logs and exec cannot be reached), and
//! the watch of its own status (a deregistered hollow box learns it at its next
//! registration). All boxes share one runtime of two threads: a box is a few tasks and
//! its connections, not a thread.

use super::agent::{self as real, End, Liveness, Published};
use super::etcd::{Etcd, Tls};
use super::instances::{self, Registration};
use super::join::{self, Token};
use super::keys;
use super::records::{Assignment, decode};
use super::work::{
    Assignments, Change, Heartbeat, WorkError, report_never_started, report_task, reported_stopped,
};
use crate::store::{AttachmentStatus, DesiredStatus, LastStatus, StopCode};
use crate::supervisor::launch::Prepared;
use anyhow::Context;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// What `agent --simulate` is started with.
#[derive(Debug, Clone)]
pub struct Options {
    /// The process's state root: box `i` is kept in `<root>/hollow/<i>/`.
    pub root: PathBuf,
    /// Serve's ports for boxes (the first one joins the boxes).
    pub servers: Vec<String>,
    /// The join token, for the boxes that have not joined yet.
    pub token: Option<Token>,
    /// Box `i` is named `<prefix>-hollow-<i>`.
    pub prefix: String,
    pub count: usize,
    /// The ECS cluster chosen (`--cluster-name`, ECS_CLUSTER), if any.
    pub chosen: Option<String>,
    pub attributes: Vec<(String, Option<String>)>,
    pub lease_ttl: u64,
    pub stall_limit: Duration,
    /// Each box's registered CPU units and memory (MiB).
    pub cpu: i64,
    pub memory: i64,
    /// How long a task runs before its simulated essential container exits.
    pub lifetime: Option<Duration>,
}

/// How many boxes join at once (a join is a certificate signed and two etcd
/// transactions; kept at what it was when each join also cost etcd bcrypts, so the
/// bench's figures compare).
const JOINS_AT_ONCE: usize = 8;

/// How often a hollow box moves its tasks on (PENDING to RUNNING, a lifetime's end).
const STEP: Duration = Duration::from_millis(250);

/// The warning each hollow box's task carries (DescribeTasks' `attributes`): nothing of
/// it ran.
pub const WARNING: &str = "run by a hollow box (`minifargate agent --simulate`, a benchmark \
     and test tool): no container ran, and its statuses are simulated";

/// The descriptors a hollow box may hold: its calls' connection, its assignments' watch,
/// a renewal beside a call.
const FDS_PER_BOX: usize = 3;

/// Runs `o.count` hollow boxes until SIGTERM or SIGINT, which disconnect them at once
/// (their leases revoked).
pub fn run(o: Options) -> anyhow::Result<()> {
    let nofile = super::nofile::raise();
    let fit = super::nofile::clamp("hollow boxes", o.count, FDS_PER_BOX, nofile, 256);
    anyhow::ensure!(
        fit == o.count,
        "--simulate {}: this process's open-file limit ({nofile}) holds the connections of \
         {fit} hollow boxes ({FDS_PER_BOX} each): run fewer a process (several processes with \
         different --name and --root), or raise the hard limit",
        o.count
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    rt.block_on(all(Arc::new(o)))
}

/// One hollow box once joined.
struct Hollow {
    name: String,
    dir: PathBuf,
    id: String,
    etcd: Arc<Etcd>,
    lease: Arc<Liveness>,
    heartbeat: Arc<Heartbeat>,
    renewing: tokio::task::JoinHandle<()>,
}

async fn all(o: Arc<Options>) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let started = Instant::now();
    let (boxes, token_cluster) = tokio::select! {
        r = join_all(&o) => r?,
        _ = term.recv() => return Ok(()),
        _ = int.recv() => return Ok(()),
    };
    let cluster = real::cluster_named(token_cluster, o.chosen.clone())?;
    tracing::info!(boxes = boxes.len(), seconds = started.elapsed().as_secs_f64(),
        cluster = %cluster, "hollow boxes joined");
    let registered = Arc::new(AtomicUsize::new(0));
    let mut set = tokio::task::JoinSet::new();
    for b in &boxes {
        set.spawn(run_box(
            b.clone(),
            o.clone(),
            cluster.clone(),
            registered.clone(),
        ));
    }
    let mut said = false;
    let mut every = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            Some(ended) = set.join_next() => {
                if let Ok((name, e)) = ended {
                    tracing::error!(r#box = %name, error = %crate::errors::error_chain(&e),
                        "a hollow box stopped");
                }
            }
            _ = every.tick(), if !said => {
                if registered.load(Ordering::Relaxed) == boxes.len() {
                    said = true;
                    let rss = rss_kib();
                    tracing::info!(boxes = boxes.len(),
                        seconds = started.elapsed().as_secs_f64(), rss_kib = rss,
                        rss_kib_per_box = rss / boxes.len().max(1) as u64,
                        "hollow boxes registered");
                }
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    set.abort_all();
    disconnect(&boxes).await;
    Ok(())
}

/// The process's resident memory (KiB), from /proc/self/statm.
fn rss_kib() -> u64 {
    let page_kib = 4;
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * page_kib)
}

/// Stopping: each box's lease revoked, so its instance is disconnected at once.
async fn disconnect(boxes: &[Arc<Hollow>]) {
    let mut set = tokio::task::JoinSet::new();
    for b in boxes {
        b.renewing.abort();
        if let Some(l) = b.lease.take() {
            let etcd = b.etcd.clone();
            set.spawn(async move { etcd.revoke(l).await });
        }
    }
    let all = async { while set.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(10), all)
        .await
        .is_err()
    {
        tracing::warn!("some hollow boxes' leases were not revoked in 10 s: they expire");
    }
    tracing::info!(boxes = boxes.len(), "hollow boxes stopped; leases revoked");
}

/// Joins every box not joined yet (`JOINS_AT_ONCE` at a time), then makes each one's
/// client. The boxes, and the ECS cluster their token named.
async fn join_all(o: &Options) -> anyhow::Result<(Vec<Arc<Hollow>>, Option<String>)> {
    let gate = Arc::new(tokio::sync::Semaphore::new(JOINS_AT_ONCE));
    let mut set = tokio::task::JoinSet::new();
    for i in 0..o.count {
        let (o, gate) = (o.clone(), gate.clone());
        set.spawn(async move {
            let _turn = gate.acquire_owned().await;
            (i, join_one(&o, i).await)
        });
    }
    let mut boxes = Vec::with_capacity(o.count);
    while let Some(r) = set.join_next().await {
        let (i, joined) = r.context("a hollow box's join panicked")?;
        boxes.push((i, joined.with_context(|| format!("hollow box {i}"))?));
    }
    boxes.sort_by_key(|(i, _)| *i);
    let first = o.root.join("hollow").join("0").join("agent").join("bundle");
    let cluster = std::fs::read_to_string(first.join(join::CLUSTER_FILE))
        .ok()
        .map(|c| c.trim().to_string());
    Ok((boxes.into_iter().map(|(_, b)| b).collect(), cluster))
}

/// How many times a hollow box's join is tried when the control plane answers it is busy
/// (503: its store out of reach, as under many joins at once: "Scale").
const JOIN_TRIES: u32 = 5;

/// Joins box `name` with `token`, keeping its bundle in `dir`; a join the control plane
/// could not complete (503) is tried again, a refusal is not.
async fn enroll(
    o: &Options,
    token: &Token,
    name: &str,
    dir: &std::path::Path,
) -> anyhow::Result<()> {
    let mut tries = 1;
    loop {
        match join::enroll(&o.servers[0], token, name, &[], dir).await {
            Ok(_) => return Ok(()),
            Err(join::JoinError::Refused {
                status: 503,
                message,
                ..
            }) if tries < JOIN_TRIES => {
                tracing::warn!(r#box = %name, why = %message, "a hollow box's join could not complete: again");
                tokio::time::sleep(real::BACKOFF.1 * tries).await;
                tries += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Box `i`: joined now with the token unless its bundle is there, its client, its
/// instance id and its liveness.
async fn join_one(o: &Options, i: usize) -> anyhow::Result<Arc<Hollow>> {
    let name = format!("{}-hollow-{i}", o.prefix);
    super::pki::check_name(&name).with_context(|| {
        format!(
            "--name {:?}: the hollow boxes' names are NAME-hollow-<i>",
            o.prefix
        )
    })?;
    let root = o.root.join("hollow").join(i.to_string());
    let dir = root.join("agent").join("bundle");
    if !dir.join("client.crt").exists() {
        let token = o.token.as_ref().with_context(|| {
            format!(
                "{name} has not joined yet (no bundle in {}): give --token (`cluster token \
                 create --uses N`)",
                dir.display()
            )
        })?;
        enroll(o, token, &name, &dir).await?;
    }
    let tls = Tls {
        cacert: Some(dir.join("ca.crt")),
        cert: Some(dir.join("client.crt")),
        key: Some(dir.join("client.key")),
        insecure_plaintext: false,
        credentials: Some(dir.clone()),
    };
    let etcd = Arc::new(Etcd::new(&o.servers.join(","), &tls)?);
    let id = real::instance_id(&root)?;
    let heartbeat = Arc::new(Heartbeat::default());
    let (lease, renewing) =
        Liveness::spawn(etcd.clone(), o.lease_ttl, heartbeat.clone(), o.stall_limit);
    Ok(Arc::new(Hollow {
        name,
        dir: root,
        id,
        etcd,
        lease,
        heartbeat,
        renewing,
    }))
}

/// Box `b`'s sessions, one after another as the agent's, until its instance is
/// deregistered: why it ended.
async fn run_box(
    b: Arc<Hollow>,
    o: Arc<Options>,
    cluster: String,
    registered: Arc<AtomicUsize>,
) -> (String, End) {
    let mut attributes_put = false;
    let mut backoff = real::BACKOFF.0;
    let mut tasks = Tasks {
        cluster: cluster.clone(),
        instance: b.id.clone(),
        reporter: b.name.clone(),
        root: b.dir.clone(),
        lifetime: o.lifetime,
        heartbeat: b.heartbeat.clone(),
        held: BTreeMap::new(),
        registered,
        counted: false,
    };
    loop {
        let mut connected = false;
        let ended = session(
            &b,
            &o,
            &cluster,
            &mut attributes_put,
            &mut connected,
            &mut tasks,
        );
        let ended = ended.await;
        if matches!(ended, End::Deregistered { .. }) {
            return (b.name.clone(), ended);
        }
        if connected {
            backoff = real::BACKOFF.0;
        }
        tracing::warn!(r#box = %b.name, error = %crate::errors::error_chain(&ended),
            retry_ms = backoff.as_millis() as u64, "a hollow box's session ended: retrying");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(real::BACKOFF.1);
    }
}

/// One session of box `b`: bound, registered with a lease, then its tasks followed until
/// the lease is lost or a call fails.
async fn session(
    b: &Hollow,
    o: &Options,
    cluster: &str,
    attributes_put: &mut bool,
    connected: &mut bool,
    tasks: &mut Tasks,
) -> End {
    let etcd = &*b.etcd;
    let arn = instances::arn(cluster, &b.id);
    let file = b.dir.join("agent").join("instance-id");
    let registered = async {
        real::admitted(etcd, cluster, &b.id).await?;
        let at = real::registered_at(etcd, cluster, &b.id, &arn, &file).await?;
        let put = Published {
            attributes: &o.attributes,
            attributes_put,
            lease_ttl: o.lease_ttl,
        };
        real::publish(etcd, cluster, &registration(b, o, at), &b.lease, put).await
    };
    let l = match registered.await {
        Ok(l) => l,
        Err(e) => return e,
    };
    *connected = true;
    tracing::debug!(r#box = %b.name, instance = %arn, "hollow box registered");
    if !std::mem::replace(&mut tasks.counted, true) {
        tasks.registered.fetch_add(1, Ordering::Relaxed);
    }
    tokio::select! {
        () = b.lease.lost(l) => End::LeaseExpired,
        e = tasks.run(etcd) => e.into(),
    }
}

/// Box `b`'s registration: the agent's, with the simulated resources, the box's name as
/// its host name, and the tunnel's endpoint (serve's port for boxes takes no other from a
/// joined box; none is dialed, so its logs and exec are out of reach).
fn registration(b: &Hollow, o: &Options, registered_at: i64) -> Registration {
    let mut r = Registration::of_this_box(&b.id, registered_at);
    r.hostname = b.name.clone();
    r.cpu = o.cpu;
    r.memory = o.memory;
    r.endpoint = Some(super::tunnel::REGISTERED.to_string());
    r
}

/// The tasks a hollow box "runs": the rows the launch path prepares for each (nothing
/// written), their statuses moved on as a supervisor would move them, reported as the
/// agent reports its tasks.
struct Tasks {
    cluster: String,
    instance: String,
    /// The box name the reports are written under.
    reporter: String,
    /// The box's state root (the launch path checks volumes against it).
    root: PathBuf,
    lifetime: Option<Duration>,
    heartbeat: Arc<Heartbeat>,
    held: BTreeMap<String, Held>,
    /// The boxes of the process registered once at least, and whether this one counts.
    registered: Arc<AtomicUsize>,
    counted: bool,
}

/// One task a hollow box holds.
struct Held {
    rows: Prepared,
    /// When it last changed status.
    since: Instant,
    /// Its current status is reported.
    reported: bool,
}

impl Tasks {
    async fn run(&mut self, etcd: &Etcd) -> WorkError {
        match self.session(etcd).await {
            Ok(never) => match never {},
            Err(e) => e,
        }
    }

    /// Reads the assignments, acts on them, then follows them until etcd fails.
    async fn session(&mut self, etcd: &Etcd) -> Result<std::convert::Infallible, WorkError> {
        let (now, mut follow) = Assignments::read(etcd, &self.cluster, &self.instance).await?;
        let mut assigned = BTreeSet::new();
        for a in now {
            self.assignment(etcd, &a.id, &a.key, &a.value).await?;
            assigned.insert(a.id);
        }
        self.held.retain(|id, _| assigned.contains(id));
        let mut tick = tokio::time::interval(STEP);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
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
                                self.held.remove(&id);
                            }
                        }
                    }
                }
                _ = tick.tick() => self.step(etcd).await?,
            }
        }
    }

    /// Acts on task `id`'s assignment as the agent does ([`super::work`]), with a
    /// simulated task in place of a supervisor.
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
                let why = format!("the hollow box could not read its assignment: {e}");
                return self
                    .never_started(etcd, id, StopCode::TaskFailedToStart, &why)
                    .await;
            }
        };
        let reason = || {
            a.stopped_reason
                .clone()
                .unwrap_or_else(|| "Task stopped by user".into())
        };
        let code = a.stop_code.unwrap_or(StopCode::UserInitiated);
        match (a.desired_status, self.held.get_mut(id)) {
            (DesiredStatus::Stopped, None) => self.never_started(etcd, id, code, &reason()).await,
            (DesiredStatus::Stopped, Some(h)) => {
                if h.rows.task.last_status != LastStatus::Stopped {
                    stopped(&mut h.rows, crate::ecs::now_ms(), code, &reason(), None);
                    h.moved();
                }
                self.step(etcd).await
            }
            (_, Some(_)) => Ok(()),
            (_, None) => self.take_up(etcd, id, &a).await,
        }
    }

    /// Takes up task `id`, assigned here and not held: PENDING, reported at once; unless
    /// this box reported it STOPPED already (not folded yet), as the agent does.
    async fn take_up(&mut self, etcd: &Etcd, id: &str, a: &Assignment) -> Result<(), WorkError> {
        let report = keys::box_report(&self.reporter, &self.cluster, id);
        if reported_stopped(etcd, &report).await? {
            return Ok(());
        }
        match self.prepare(a) {
            Ok(mut rows) => {
                pending(&mut rows, crate::ecs::now_ms());
                let held = Held {
                    rows,
                    since: Instant::now(),
                    reported: false,
                };
                self.held.insert(id.to_string(), held);
                self.step(etcd).await
            }
            Err(e) => {
                let why = crate::errors::error_chain(&*e);
                self.never_started(etcd, id, StopCode::TaskFailedToStart, &why)
                    .await
            }
        }
    }

    /// The rows of assigned task `a` as the launch path prepares them, with the warning.
    fn prepare(&self, a: &Assignment) -> anyhow::Result<Prepared> {
        let mut rows = crate::supervisor::launch::prepare_task(
            &a.context(),
            &a.stored(),
            &a.request.request(),
            &self.root,
            &a.ids,
        )?;
        rows.task.warnings.push(WARNING.to_string());
        Ok(rows)
    }

    /// Moves the tasks on (a PENDING one to RUNNING, a RUNNING one past its lifetime to
    /// STOPPED) and reports each one whose status is not reported yet.
    async fn step(&mut self, etcd: &Etcd) -> Result<(), WorkError> {
        let now = crate::ecs::now_ms();
        for (id, h) in self.held.iter_mut() {
            match h.rows.task.last_status {
                LastStatus::Pending if h.reported => {
                    running(&mut h.rows, now);
                    h.moved();
                }
                LastStatus::Running
                    if h.reported && self.lifetime.is_some_and(|l| h.since.elapsed() >= l) =>
                {
                    let reason = "Essential container in task exited";
                    stopped(
                        &mut h.rows,
                        now,
                        StopCode::EssentialContainerExited,
                        reason,
                        Some(0),
                    );
                    h.moved();
                }
                _ => {}
            }
            if !h.reported {
                let task = crate::task::shape::task(
                    &h.rows.task,
                    &h.rows.containers,
                    Some(&h.rows.network),
                );
                let key = keys::box_report(&self.reporter, &self.cluster, id);
                report_task(etcd, &key, &self.instance, &task).await?;
                h.reported = true;
            }
        }
        Ok(())
    }

    async fn never_started(
        &mut self,
        etcd: &Etcd,
        id: &str,
        code: StopCode,
        reason: &str,
    ) -> Result<(), WorkError> {
        let key = keys::box_report(&self.reporter, &self.cluster, id);
        report_never_started(etcd, &key, &self.instance, code.as_str(), reason).await?;
        self.held.remove(id);
        Ok(())
    }
}

impl Held {
    fn moved(&mut self) {
        self.since = Instant::now();
        self.reported = false;
    }
}

/// Task rows `p` PENDING at `now` (ms): its image pull done at once (there is none).
fn pending(p: &mut Prepared, now: i64) {
    let t = &mut p.task;
    t.last_status = LastStatus::Pending;
    t.pull_started_at = Some(now);
    t.pull_stopped_at = Some(now);
    t.version += 1;
    for c in &mut p.containers {
        c.last_status = LastStatus::Pending;
    }
}

/// Task rows `p` RUNNING at `now` (ms), its containers too.
fn running(p: &mut Prepared, now: i64) {
    let t = &mut p.task;
    t.last_status = LastStatus::Running;
    t.started_at = Some(now);
    t.version += 1;
    p.network.attachment_status = AttachmentStatus::Attached;
    for c in &mut p.containers {
        c.last_status = LastStatus::Running;
        c.started_at = Some(now);
    }
}

/// Task rows `p` STOPPED at `now` (ms) with `code` and `reason`; its containers exited
/// with `exit` (`None`: stopped from outside, no exit code to tell).
fn stopped(p: &mut Prepared, now: i64, code: StopCode, reason: &str, exit: Option<i64>) {
    let t = &mut p.task;
    t.last_status = LastStatus::Stopped;
    t.desired_status = DesiredStatus::Stopped;
    t.stop_code = Some(code);
    t.stopped_reason = Some(reason.to_string());
    t.stopping_at = t.stopping_at.or(Some(now));
    t.execution_stopped_at = Some(now);
    t.stopped_at = Some(now);
    t.version += 1;
    p.network.attachment_status = AttachmentStatus::Deleted;
    for c in &mut p.containers {
        if c.last_status != LastStatus::Stopped {
            c.last_status = LastStatus::Stopped;
            c.exit_code = exit;
            c.finished_at = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoredTaskDefinition;
    use crate::supervisor::launch::{Ids, Request, prepare_task};
    use crate::taskdef::AwsContext;

    /// A task's rows as the launch path prepares them for a hollow box.
    fn rows() -> Prepared {
        let parsed = crate::taskdef::parse::parse_str(
            r#"{"family": "web", "requiresCompatibilities": ["EC2"], "cpu": "256",
                "memory": "128", "containerDefinitions": [{"name": "app",
                "image": "public.ecr.aws/docker/library/busybox:1.36", "essential": true}]}"#,
        );
        let mut definition = parsed.def;
        definition.revision = Some(1);
        let stored = StoredTaskDefinition {
            definition,
            tags: Vec::new(),
        };
        let ctx = AwsContext {
            region: "us-east-1".into(),
            account_id: "000000000000".into(),
        };
        let req = Request {
            cluster: "default".into(),
            ..Default::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let mut p = prepare_task(&ctx, &stored, &req, dir.path(), &Ids::new(1).unwrap()).unwrap();
        p.task.warnings.push(WARNING.into());
        p
    }

    fn shown(p: &Prepared) -> serde_json::Value {
        super::super::records::task_json(&crate::task::shape::task(
            &p.task,
            &p.containers,
            Some(&p.network),
        ))
    }

    #[test]
    fn a_hollow_task_goes_pending_running_stopped_as_describe_tasks_shows_a_real_one() {
        let mut p = rows();
        pending(&mut p, 1_000);
        let t = shown(&p);
        assert_eq!(t["lastStatus"], "PENDING", "{t:#}");
        assert_eq!(t["containers"][0]["lastStatus"], "PENDING", "{t:#}");
        assert_eq!(t["pullStoppedAt"], 1.0, "{t:#}");
        assert!(t.get("startedAt").is_none_or(|v| v.is_null()), "{t:#}");
        // It says it ran nothing.
        assert!(t.to_string().contains("run by a hollow box"), "{t:#}");

        running(&mut p, 2_000);
        let t = shown(&p);
        assert_eq!(t["lastStatus"], "RUNNING", "{t:#}");
        assert_eq!(t["desiredStatus"], "RUNNING", "{t:#}");
        assert_eq!(t["startedAt"], 2.0, "{t:#}");
        assert_eq!(t["containers"][0]["lastStatus"], "RUNNING", "{t:#}");

        // Its lifetime over: the essential container exited 0.
        let mut ended = p.clone();
        let why = "Essential container in task exited";
        stopped(
            &mut ended,
            3_000,
            StopCode::EssentialContainerExited,
            why,
            Some(0),
        );
        let t = shown(&ended);
        assert_eq!(t["lastStatus"], "STOPPED", "{t:#}");
        assert_eq!(t["desiredStatus"], "STOPPED", "{t:#}");
        assert_eq!(t["stopCode"], "EssentialContainerExited", "{t:#}");
        assert_eq!(t["stoppedReason"], why, "{t:#}");
        assert_eq!(t["containers"][0]["exitCode"], 0, "{t:#}");
        assert_eq!(t["stoppedAt"], 3.0, "{t:#}");
        assert!(
            super::super::records::Report {
                instance: "i".into(),
                task: Some(t),
                never_started: None,
            }
            .stopped()
        );

        // Stopped by the user: no exit code to tell (no process ran).
        stopped(
            &mut p,
            3_000,
            StopCode::UserInitiated,
            "Task stopped by user",
            None,
        );
        let t = shown(&p);
        assert_eq!(t["stopCode"], "UserInitiated", "{t:#}");
        assert!(
            t["containers"][0]
                .get("exitCode")
                .is_none_or(|v| v.is_null()),
            "{t:#}"
        );
    }
}
