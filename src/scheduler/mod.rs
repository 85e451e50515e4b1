//! The service scheduler of `serve`: once a second (and at once after CreateService,
//! UpdateService or DeleteService) it brings every service's tasks to its desiredCount,
//! rolls deployments forward within maximumPercent/minimumHealthyPercent, replaces tasks
//! that stop or turn UNHEALTHY (with a backoff, like ECS's service throttling) and writes
//! the deployments' progress and the service events. Each pass over a service
//! (`reconcile_service`) reads it, has the pure functions of `reconcile/` decide (load
//! balancing, then the [`Plan`] of [`reconcile`], then after it is carried out the
//! deployments' `Progress`) and carries out what they say: tasks are started with
//! RunTask's own path (`ecs::tasks::run_task`) and stopped through their supervisors; the
//! pass's store writes (events, deployments, a trip and its rollback) commit together, in
//! one transaction at its end ([`write::commit`]).

mod reconcile;
mod write;

use crate::cloudwatch::CloudWatch;
use crate::ecs::fleet::TaskTarget;
use crate::ecs::services::{Spec, unhealthy};
use crate::ecs::tags::resource_of;
use crate::ecs::tasks::{Local, RunTaskRequest, run_task_with};
use crate::ecs::{Ecs, now_ms};
use crate::ecs::{deployments, fleet};
use crate::elb::Elb;
use crate::store::{
    DeploymentRow, DeploymentStatus, DesiredStatus, LastStatus, Resource, RolloutState, ServiceRow,
    ServiceStatus, StopCode, Store, TaskRow,
};
use anyhow::Context;
use reconcile::progress::{Alarms, Deployments, Done, progress};
use reconcile::{
    Gone, LbTask, LbView, Plan, Primary, Routing, RuleMove, Snapshot, TargetState, TaskState,
    Throttle, Why, in_grace_period, reconcile,
};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use write::{Said, Writes, commit, remember_progress};

/// One of a service's `loadBalancers` the scheduler applies: a target group of type `ip`
/// gets each RUNNING awsvpc task's `<task IP>:<containerPort>`, one of type `instance`
/// each bridge or host task's `<its box's instance id>:<the container port's host port>`;
/// with blue/green, the tasks of a deployment on the alternate side go to `alternate`
/// instead.
#[derive(Debug, Clone, PartialEq)]
struct LbTarget {
    group: String,
    /// `containerName`.
    container: Option<String>,
    port: u16,
    /// `advancedConfiguration.alternateTargetGroupArn`.
    alternate: Option<String>,
}

/// The target groups a task of a deployment on side `alternate` registers in.
fn groups_on(lbs: &[LbTarget], alternate: bool) -> Vec<LbTarget> {
    lbs.iter()
        .map(|l| LbTarget {
            group: match (&l.alternate, alternate) {
                (Some(a), true) => a.clone(),
                _ => l.group.clone(),
            },
            container: l.container.clone(),
            port: l.port,
            alternate: None,
        })
        .collect()
}

/// Every target group of the service, both sides: those a task leaves when it stops.
fn all_groups(lbs: &[LbTarget]) -> Vec<LbTarget> {
    let mut out = groups_on(lbs, false);
    out.extend(
        groups_on(lbs, true)
            .into_iter()
            .filter(|l| !out.contains(l))
            .collect::<Vec<_>>(),
    );
    out
}

/// The service's `loadBalancers` (stored as given: `ecs::services` keeps them with the
/// members it passes on): those naming a target group and a container port.
fn lb_targets(spec: &Spec) -> Vec<LbTarget> {
    let Some(list) = spec
        .not_applied
        .get("loadBalancers")
        .and_then(|v| v.as_array())
    else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|l| {
            Some(LbTarget {
                group: l["targetGroupArn"].as_str()?.to_string(),
                container: l["containerName"].as_str().map(str::to_string),
                port: u16::try_from(l["containerPort"].as_u64()?).ok()?,
                alternate: l["advancedConfiguration"]["alternateTargetGroupArn"]
                    .as_str()
                    .map(str::to_string),
            })
        })
        .collect()
}

/// What the scheduler remembers of a service's load balancing between passes.
#[derive(Default)]
struct Balanced {
    /// The tasks it registered: where their target groups reach them.
    registered: HashMap<String, TaskTarget>,
    /// Tasks deregistered and draining: when they stop, and why.
    draining: HashMap<String, (Instant, String)>,
    /// Events to write (registrations and their failures).
    events: Vec<String>,
    /// The target group of each target deregistered this pass (one event per group with
    /// their count, as ECS writes them).
    deregistered: Vec<String>,
    /// Tasks that began draining this pass (one event with their count).
    drains_begun: usize,
    /// Target groups a registration failed in (the event is written once).
    failing: HashSet<String>,
    /// Tasks whose stop was asked, until they are gone: they count as stopping and are
    /// not registered again while the stop takes effect (in cluster mode a pass may still
    /// read them RUNNING and active after it was asked).
    stop_asked: HashSet<String>,
}

/// The pace of the passes while nothing changes.
const TICK: Duration = Duration::from_secs(1);
/// How often a pass checks every running task's supervisor, not only its services' tasks
/// (one /proc read per task: ~10 ms a pass with 1000 tasks, 1 % of a CPU at one pass a
/// second): the dead tasks of no service are only there to be cleaned up.
const FULL_CHECK: Duration = Duration::from_secs(30);

/// The running scheduler thread.
pub struct Scheduler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Scheduler {
    /// Starts the scheduler; with `elb`, services' `loadBalancers` are applied, with `cw`
    /// their deployment alarms.
    pub fn start(
        g: Ecs,
        elb: Option<Arc<Elb>>,
        cw: Option<Arc<CloudWatch>>,
    ) -> std::io::Result<Scheduler> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("service-scheduler".into())
            .spawn(move || {
                let parts = Parts {
                    elb: elb.as_deref(),
                    cw: cw.as_deref(),
                };
                run(&g, &flag, parts)
            })?;
        Ok(Scheduler { stop, thread })
    }

    /// Stops after the current pass (a pass never leaves a launch half done).
    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        crate::ecs::services::changed();
        let _ = self.thread.join();
    }
}

/// The other services the scheduler applies a service's settings with.
#[derive(Clone, Copy)]
struct Parts<'a> {
    /// Elastic Load Balancing: `loadBalancers`.
    elb: Option<&'a Elb>,
    /// CloudWatch: `deploymentConfiguration.alarms`.
    cw: Option<&'a CloudWatch>,
}

/// What the scheduler remembers of a service between passes (not stored: after a restart
/// of `serve` throttling starts afresh).
#[derive(Default)]
struct Memory {
    /// Tasks seen not STOPPED in the last pass: one that has stopped since, on its own, is a
    /// failure.
    known: HashSet<String>,
    throttle: Throttle,
    steady: bool,
    /// Tasks stopped as UNHEALTHY whose replacements are not started yet.
    unhealthy: usize,
    /// Protected tasks the last pass could not stop (the event is written when it changes).
    protected: usize,
    /// The last "unable to place a task" event: written again only when it changes, as
    /// ECS omits duplicate events until the cause is resolved.
    unplaced: Option<String>,
    lb: Balanced,
    /// The deployment alarms named that do not exist (the event is written when it
    /// changes).
    missing_alarms: Vec<String>,
    /// The last failure to shift blue/green traffic (the event is written when it
    /// changes).
    shift_failed: Option<String>,
    /// Set by a pass that launched a full batch of the service's tasks and wants more: the
    /// next pass runs at once (`run`), not a tick later.
    again: bool,
}

impl Memory {
    /// A rollback started: its tasks start at once, not after the failed ones' backoff.
    fn rolled_back(&mut self) {
        self.throttle.forget();
        self.steady = false;
        crate::ecs::services::changed();
    }

    /// A task failed outside the plan (its launch failed).
    fn failed(&mut self, now: Instant) {
        self.throttle.failed(now);
        self.steady = false;
    }
}

fn run(g: &Ecs, stop: &AtomicBool, parts: Parts) {
    let mut memory: HashMap<(String, String), Memory> = HashMap::new();
    let mut store: Option<Store> = None;
    let mut last_full: Option<Instant> = None;
    while !stop.load(Ordering::SeqCst) {
        if store.is_none() {
            match g.open_store() {
                Ok(s) => store = Some(s),
                Err(e) => {
                    tracing::error!(error = %crate::errors::error_chain(e.as_ref()), "service scheduler")
                }
            }
        }
        let full = last_full.is_none_or(|t| t.elapsed() >= FULL_CHECK);
        if full {
            last_full = Some(Instant::now());
        }
        if let Some(s) = store.as_mut() {
            let scheduled = fleet::get().schedule(&mut || pass(g, s, &mut memory, full, parts));
            match scheduled {
                Ok(true) => {}
                // Another serve schedules: what this one remembers is stale when it
                // schedules again.
                Ok(false) => memory.clear(),
                Err(e) => {
                    tracing::error!(error = %crate::errors::error_chain(e.as_ref()), "service scheduler pass failed")
                }
            }
        }
        let mut again = false;
        for m in memory.values_mut() {
            again |= std::mem::take(&mut m.again);
        }
        if again {
            continue;
        }
        crate::ecs::services::wait_for_change(TICK);
    }
}

/// One pass over every ACTIVE or DRAINING service; with `full`, every running task's
/// supervisor is checked first, otherwise only those of the tasks the services had running
/// at the last pass (the first pass is a full one, so none is missed).
fn pass(
    g: &Ecs,
    store: &mut Store,
    memory: &mut HashMap<(String, String), Memory>,
    full: bool,
    parts: Parts,
) -> anyhow::Result<()> {
    // Tasks whose supervisor died are finished first: they need replacing too.
    if full {
        fleet::get().reconcile(g, store, None);
    } else {
        let known: Vec<&str> = memory
            .values()
            .flat_map(|m| m.known.iter().map(String::as_str))
            .collect();
        fleet::get().reconcile(g, store, Some(&known));
    }
    let services = store.list_services(None)?;
    memory.retain(|(c, n), _| services.iter().any(|s| &s.cluster == c && &s.name == n));
    for s in services {
        let m = memory
            .entry((s.cluster.clone(), s.name.clone()))
            .or_default();
        if let Err(e) = reconcile_service(g, store, &s, m, parts) {
            tracing::error!(service = %s.name, cluster = %s.cluster,
                error = %crate::errors::error_chain(e.as_ref()), "failed to schedule a service");
        }
    }
    Ok(())
}

/// A task of the service that is not STOPPED.
struct Live {
    row: TaskRow,
    /// RUNNING with an essential container UNHEALTHY (the grace period not applied).
    containers_unhealthy: bool,
    /// The same, past the health check grace period: not registered in target groups.
    unhealthy: bool,
    /// On a DRAINING container instance: replaced like an older deployment's task.
    draining: bool,
}

impl Live {
    fn active(&self) -> bool {
        self.row.desired_status != DesiredStatus::Stopped
    }
    fn running(&self) -> bool {
        self.row.last_status == LastStatus::Running
    }
}

/// "(task a) (task b)" as ECS lists tasks in events.
fn task_list(ids: &[String]) -> String {
    ids.iter()
        .map(|id| format!("(task {id})"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The service event ECS writes after it stopped tasks of service `s`.
fn stopped_event(w: &mut Writes, s: &ServiceRow, stopped: &[String]) {
    w.say(
        s,
        format!(
            "has stopped {} running tasks: {}.",
            stopped.len(),
            task_list(stopped)
        ),
    );
}

/// The load-balancing events of this pass; keeps the tasks now draining out of `stopped`
/// (their "has stopped" event comes when they stop, after the delay).
fn flush_lb_events(w: &mut Writes, s: &ServiceRow, m: &mut Memory, stopped: &mut Vec<String>) {
    let mut groups: Vec<(String, usize)> = Vec::new();
    for g in m.lb.deregistered.drain(..) {
        match groups.iter_mut().find(|(x, _)| *x == g) {
            Some((_, n)) => *n += 1,
            None => groups.push((g, 1)),
        }
    }
    let mut events: Vec<String> = groups
        .into_iter()
        .map(|(g, n)| format!("deregistered {n} targets in (target-group {g})"))
        .collect();
    let begun = std::mem::take(&mut m.lb.drains_begun);
    if begun > 0 {
        events.push(format!("has begun draining connections on {begun} tasks."));
    }
    events.append(&mut m.lb.events);
    for e in events {
        w.say(s, e);
    }
    stopped.retain(|id| !m.lb.draining.contains_key(id));
}

/// Asks for a task to stop with ServiceSchedulerInitiated; false when it could not be
/// asked (a later pass tries again). A task registered in the service's target groups is
/// deregistered first and stops after the deregistration delay (a later pass stops it), as
/// ECS does; it counts as stopping meanwhile.
fn stop_task(
    g: &Ecs,
    lb: (Option<&Elb>, &[LbTarget], &mut Balanced),
    t: &mut TaskRow,
    reason: &str,
) -> bool {
    let (elb, groups, mem) = lb;
    if let (Some(elb), Some(at)) = (elb, mem.registered.get(&t.id).cloned()) {
        let mut delay = Duration::ZERO;
        for l in groups {
            let Some((id, port)) = at.target(l.container.as_deref(), l.port) else {
                continue;
            };
            match elb.deregister_target(&l.group, id, port) {
                Ok(Some(d)) => {
                    delay = delay.max(d);
                    mem.deregistered.push(l.group.clone());
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(task_id = %t.id, group = %l.group, error = %e, "failed to deregister a task")
                }
            }
        }
        mem.registered.remove(&t.id);
        if !delay.is_zero() {
            mem.drains_begun += 1;
            mem.draining
                .insert(t.id.clone(), (Instant::now() + delay, reason.to_string()));
            t.desired_status = DesiredStatus::Stopped;
            return true;
        }
    }
    if mem.draining.contains_key(&t.id) {
        t.desired_status = DesiredStatus::Stopped;
        return true;
    }
    let asked = fleet::get().stop(g, t, StopCode::ServiceSchedulerInitiated, reason);
    if asked {
        t.desired_status = DesiredStatus::Stopped;
        mem.stop_asked.insert(t.id.clone());
    }
    asked
}

/// Starts `n` tasks of deployment `d` through RunTask's path; returns their ids.
fn launch(
    g: &Ecs,
    store: &Store,
    s: &ServiceRow,
    spec: &Spec,
    d: &DeploymentRow,
    n: i64,
) -> anyhow::Result<(Vec<String>, Vec<crate::ecs::shapes::Failure>)> {
    let tags = match spec.propagate_tags.as_deref() {
        Some("SERVICE") => s.tags.clone(),
        Some("TASK_DEFINITION") => match resource_of(&d.task_definition_arn) {
            Ok(r @ Resource::TaskDefinition(..)) => store.resource_tags(&r)?.unwrap_or_default(),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    };
    let network_configuration = spec
        .network_configuration
        .clone()
        .map(|awsvpc| serde_json::json!({ "awsvpcConfiguration": awsvpc }));
    // What the service stored was checked when it was written; a value that no longer
    // decodes is an error for this launch, not a silently dropped member.
    fn stored<T: serde::de::DeserializeOwned>(
        v: &Option<serde_json::Value>,
        member: &str,
    ) -> anyhow::Result<Option<T>> {
        v.clone()
            .map(serde_json::from_value)
            .transpose()
            .with_context(|| format!("the service's stored {member} does not decode"))
    }
    let started = run_task_with(
        g,
        RunTaskRequest {
            cluster: Some(s.cluster.clone()),
            task_definition: d.task_definition_arn.clone(),
            count: Some(n.clamp(1, 10) as u32),
            launch_type: spec.launch_type.clone(),
            started_by: Some(d.id.clone()),
            group: Some(format!("service:{}", s.name)),
            tags,
            enable_execute_command: spec.enable_execute_command,
            network_configuration,
            capacity_provider_strategy: stored(
                &spec.capacity_provider_strategy,
                "capacityProviderStrategy",
            )?,
            placement_constraints: stored(&spec.placement_constraints, "placementConstraints")?,
            placement_strategy: stored(&spec.placement_strategy, "placementStrategy")?,
            platform_version: spec.platform_version.clone(),
            enable_ecs_managed_tags: spec.enable_ecs_managed_tags.then_some(true),
            volume_configurations: spec.not_applied.get("volumeConfigurations").cloned(),
            ..Default::default()
        },
        Local {
            deployment: Some(d.id.clone()),
            ..Default::default()
        },
        fleet::get().launcher(),
    )?;
    for w in &started.warnings {
        tracing::warn!(service = %s.name, warning = %w.message, "service task");
    }
    // Reap the supervisors when they exit (they run detached, in their own sessions).
    for mut sup in started.supervisors {
        std::thread::spawn(move || sup.child.wait());
    }
    Ok((started.ids, started.response.failures))
}

/// The service's load balancers as this pass applies them (none without serve's ELB).
struct Lbs {
    /// The service's `loadBalancers`.
    cfg: Vec<LbTarget>,
    /// Every target group of the service, both sides.
    all: Vec<LbTarget>,
    /// Each deployment's blue/green side (`services::side`).
    sides: HashMap<String, bool>,
}

impl Lbs {
    fn of(s: &ServiceRow, elb: Option<&Elb>, deployments: &[DeploymentRow]) -> Lbs {
        let cfg = if elb.is_some() {
            lb_targets(&s.spec)
        } else {
            Vec::new()
        };
        Lbs {
            all: all_groups(&cfg),
            cfg,
            sides: deployments
                .iter()
                .map(|d| (d.id.clone(), crate::ecs::services::side(d)))
                .collect(),
        }
    }

    /// The target groups task `t` registers in: its deployment's side of them.
    fn groups_of(&self, t: &TaskRow) -> Vec<LbTarget> {
        let side = t
            .started_by
            .as_ref()
            .and_then(|d| self.sides.get(d))
            .copied()
            .unwrap_or(false);
        groups_on(&self.cfg, side)
    }
}

/// The service's tasks that are not STOPPED, with their health and their instance's state.
fn read_live(store: &Store, s: &ServiceRow, now: i64) -> anyhow::Result<Vec<Live>> {
    let grace = s.spec.health_check_grace_period_seconds;
    let group = format!("service:{}", s.name);
    Ok(fleet::get()
        .group_tasks(store, &s.cluster, &group)?
        .into_iter()
        .map(|t| {
            let containers_unhealthy =
                t.row.last_status == LastStatus::Running && unhealthy(&t.containers);
            let unhealthy = containers_unhealthy && !in_grace_period(t.row.started_at, grace, now);
            Live {
                row: t.row,
                containers_unhealthy,
                unhealthy,
                draining: t.draining,
            }
        })
        .collect())
}

/// The tasks seen at the last pass that are gone from the service's live tasks now, as
/// their rows say (the reconciler counts those that failed); remembers the live ones.
fn read_gone(
    store: &Store,
    s: &ServiceRow,
    m: &mut Memory,
    live: &[Live],
) -> anyhow::Result<Vec<Gone>> {
    let ids: HashSet<String> = live.iter().map(|l| l.row.id.clone()).collect();
    let mut gone = Vec::new();
    for id in m.known.difference(&ids) {
        let Some(t) = fleet::get().task(store, &s.cluster, id)? else {
            continue;
        };
        gone.push(Gone {
            id: id.clone(),
            deployment: t.started_by.clone(),
            stopped: t.last_status == LastStatus::Stopped,
            stop_code: t.stop_code,
        });
    }
    m.known = ids;
    Ok(gone)
}

/// Load balancing as this pass finds it: the service's tasks (what remembers of their
/// targets, drains and stops asked) and the registered ones gone since.
fn lb_view(m: &mut Memory, elb: Option<&Elb>, lbs: &Lbs, live: &[Live], now: Instant) -> LbView {
    let live_ids: HashSet<&str> = live.iter().map(|l| l.row.id.as_str()).collect();
    m.lb.draining.retain(|id, _| live_ids.contains(id.as_str()));
    m.lb.stop_asked.retain(|id| live_ids.contains(id.as_str()));
    LbView {
        now,
        load_balanced: elb.is_some() && !lbs.all.is_empty(),
        tasks: live
            .iter()
            .map(|l| LbTask {
                id: l.row.id.clone(),
                active: l.active(),
                running: l.running(),
                unhealthy: l.unhealthy,
                registered: m.lb.registered.contains_key(&l.row.id),
                draining: m.lb.draining.get(&l.row.id).cloned(),
                stop_asked: m.lb.stop_asked.contains(&l.row.id),
            })
            .collect(),
        registered_gone: m
            .lb
            .registered
            .keys()
            .filter(|id| !live_ids.contains(id.as_str()))
            .cloned()
            .collect(),
    }
}

/// Carries out load balancing's plan ([`reconcile::balance`]): tasks stopping count as
/// such, drained ones are stopped (with ServiceSchedulerInitiated), gone ones leave every
/// target group of the service, the others join their deployment's side of them. Returns
/// the tasks whose stop was asked.
fn balance(
    g: &Ecs,
    store: &Store,
    m: &mut Memory,
    (elb, lbs): (Option<&Elb>, &Lbs),
    (live, now): (&mut [Live], Instant),
) -> Vec<String> {
    let plan = reconcile::balance(&lb_view(m, elb, lbs, live, now));
    let mut stopped = Vec::new();
    for l in live.iter_mut() {
        if plan.stopping.contains(&l.row.id) {
            l.row.desired_status = DesiredStatus::Stopped;
        }
    }
    for (id, reason) in &plan.drained {
        let Some(l) = live.iter().find(|l| &l.row.id == id) else {
            continue;
        };
        if fleet::get().stop(g, &l.row, StopCode::ServiceSchedulerInitiated, reason) {
            m.lb.draining.remove(id);
            m.lb.stop_asked.insert(id.clone());
            stopped.push(id.clone());
        }
    }
    if let Some(elb) = elb {
        deregister_gone(elb, m, &lbs.all, &plan.deregister);
        register_running(store, elb, m, lbs, (live, &plan.register));
    }
    stopped
}

/// Tasks gone since the last pass leave every target group of the service.
fn deregister_gone(elb: &Elb, m: &mut Memory, all: &[LbTarget], gone: &[String]) {
    for id in gone {
        let Some(at) = m.lb.registered.remove(id) else {
            continue;
        };
        for t in all {
            let Some((id, port)) = at.target(t.container.as_deref(), t.port) else {
                continue;
            };
            if let Ok(Some(_)) = elb.deregister_target(&t.group, id, port) {
                m.lb.deregistered.push(t.group.clone());
            }
        }
    }
}

/// The tasks of `to` join their target groups.
fn register_running(
    store: &Store,
    elb: &Elb,
    m: &mut Memory,
    lbs: &Lbs,
    (live, to): (&[Live], &[String]),
) {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for l in live.iter().filter(|l| to.contains(&l.row.id)) {
        let Some(at) = fleet::get().task_target(store, &l.row.cluster, &l.row.id) else {
            continue;
        };
        let mut all = true;
        for t in &lbs.groups_of(&l.row) {
            let registered = match at.target(t.container.as_deref(), t.port) {
                Some((id, port)) => elb.register_target(&t.group, id, port),
                None => Err(crate::elb::ElbError::InvalidTarget(format!(
                    "the task publishes no host port for container port {}{}",
                    t.port,
                    t.container
                        .as_deref()
                        .map(|c| format!(" of container {c}"))
                        .unwrap_or_default()
                ))),
            };
            match registered {
                Ok(new) => {
                    m.lb.failing.remove(&t.group);
                    if new {
                        match counts.iter_mut().find(|(g, _)| *g == t.group) {
                            Some((_, n)) => *n += 1,
                            None => counts.push((t.group.clone(), 1)),
                        }
                    }
                }
                Err(e) => {
                    all = false;
                    if m.lb.failing.insert(t.group.clone()) {
                        m.lb.events.push(format!(
                            "failed to register targets in (target-group {}) (error {})",
                            t.group,
                            e.message()
                        ));
                    }
                }
            }
        }
        if all {
            m.lb.registered.insert(l.row.id.clone(), at);
        }
    }
    for (group, n) in counts {
        m.lb.events
            .push(format!("registered {n} targets in (target-group {group})"));
    }
}

/// The reconciler's view of the service now (after this pass's load balancing).
fn snapshot(
    s: &ServiceRow,
    primary: &DeploymentRow,
    live: &[Live],
    m: &Memory,
    (elb, lbs): (Option<&Elb>, &Lbs),
    (routing, gone): (Option<Routing>, Vec<Gone>),
    (now, at): (Instant, i64),
) -> Snapshot {
    let spec = &s.spec;
    let (max_total, min_healthy) = spec.deployment_configuration.bounds(s.desired_count);
    let load_balanced = elb.is_some() && !lbs.all.is_empty();
    let targets = |l: &Live| {
        let elb = elb.filter(|_| load_balanced)?;
        let at = m.lb.registered.get(&l.row.id)?;
        let states = lbs.groups_of(&l.row).into_iter().map(|t| {
            let health = at
                .target(t.container.as_deref(), t.port)
                .and_then(|(id, port)| elb.health_of_target(&t.group, id, port));
            TargetState {
                port: t.port,
                state: health.as_ref().map(|h| h.state),
                description: health.and_then(|h| h.description),
                group: t.group,
            }
        });
        Some(states.collect())
    };
    Snapshot {
        service: s.name.clone(),
        deleted: s.status == ServiceStatus::Draining,
        desired: s.desired_count,
        max_total,
        min_healthy,
        grace_s: spec.health_check_grace_period_seconds,
        primary: Primary {
            id: primary.id.clone(),
            rollout_state: primary.rollout_state,
            stage: primary.sd.blue_green.map(|b| b.stage),
        },
        blue_green: spec.deployment_configuration.blue_green(),
        routing,
        load_balanced,
        throttle: m.throttle.clone(),
        gone,
        now,
        now_ms: at,
        tasks: live
            .iter()
            .map(|l| TaskState {
                id: l.row.id.clone(),
                deployment: l.row.started_by.clone(),
                created_at: l.row.created_at,
                started_at: l.row.started_at,
                running: l.running(),
                active: l.active(),
                containers_unhealthy: l.containers_unhealthy,
                on_draining_instance: l.draining,
                protected_until: l.row.protected_until,
                targets: targets(l),
            })
            .collect(),
    }
}

/// Asks for the plan's stops of `phase` (before or after the launch); counts what each
/// stop means (a failure of its deployment, a replacement for an unhealthy task).
fn carry_stops(
    g: &Ecs,
    (elb, lbs): (Option<&Elb>, &Lbs),
    m: &mut Memory,
    plan: &Plan,
    after_launch: bool,
    live: &mut [Live],
    done: &mut Done,
) {
    for stop in plan
        .stops
        .iter()
        .filter(|x| (x.why == Why::Retire) == after_launch)
        .filter(|x| done.routed || !x.after_routing)
    {
        let Some(l) = live.iter_mut().find(|l| l.row.id == stop.task) else {
            continue;
        };
        if !stop_task(g, (elb, &lbs.all, &mut m.lb), &mut l.row, &stop.reason) {
            continue;
        }
        match stop.why {
            Why::Unhealthy => {
                if let Some(d) = &stop.deployment {
                    *done.failed.entry(d.clone()).or_default() += 1;
                }
                m.unhealthy += 1;
            }
            Why::LbUnhealthy => m.unhealthy += 1,
            Why::Deleted | Why::ScaleIn | Why::Retire => {}
        }
        done.stopped.push(stop.task.clone());
    }
}

/// Starts the plan's tasks of the PRIMARY deployment and writes ECS's events for them; a
/// launch that fails counts as a failure of the deployment.
fn carry_launch(
    g: &Ecs,
    (store, w): (&Store, &mut Writes),
    s: &ServiceRow,
    (primary, plan): (&DeploymentRow, &Plan),
    m: &mut Memory,
    failed: &mut HashMap<String, i64>,
    now: Instant,
) -> Vec<String> {
    let name = &s.name;
    if plan.throttled {
        tracing::debug!(service = %name, "launch throttled");
    }
    let n = plan.launch;
    if n <= 0 {
        return Vec::new();
    }
    match launch(g, store, s, &s.spec, primary, n) {
        Ok((ids, failures)) => {
            if plan.wanted > n && failures.is_empty() && ids.len() as i64 == n {
                m.again = true;
            }
            // Tasks that fit nowhere: ECS's service event, and the next pass retries.
            if failures.is_empty() {
                m.unplaced = None;
            } else {
                let event = crate::ecs::placement::service_event(name, &failures);
                if m.unplaced.as_ref() != Some(&event) {
                    tracing::warn!(service = %name, event = %event, "service task not placed");
                    w.events.push(event.clone());
                    m.unplaced = Some(event);
                }
            }
            if ids.is_empty() {
                return ids;
            }
            let mut msg = format!(
                "(service {name}) has started {} tasks: {}.",
                ids.len(),
                task_list(&ids)
            );
            if m.unhealthy > 0 {
                let r = m.unhealthy.min(ids.len());
                msg.push_str(&format!(
                    " Amazon ECS replaced {r} tasks due to an unhealthy status."
                ));
                m.unhealthy -= r;
                w.replaced += r;
            }
            w.events.push(msg);
            m.known.extend(ids.iter().cloned());
            ids
        }
        Err(e) => {
            let why = crate::errors::error_chain(e.as_ref());
            tracing::warn!(service = %name, error = %why, "failed to launch service tasks");
            w.say(s, format!("failed to launch a task with (error {why})."));
            *failed.entry(primary.id.clone()).or_default() += 1;
            m.failed(now);
            Vec::new()
        }
    }
}

/// The events of the stops this pass asked, and of the tasks kept for their protection.
fn stop_events(w: &mut Writes, s: &ServiceRow, m: &mut Memory, plan: &Plan, done: &Done) {
    let mut stopped = done.stopped.clone();
    flush_lb_events(w, s, m, &mut stopped);
    if !stopped.is_empty() {
        stopped_event(w, s, &stopped);
    }
    if s.status == ServiceStatus::Draining || plan.protected == m.protected {
        return;
    }
    m.protected = plan.protected;
    if plan.protected > 0 {
        w.say(
            s,
            format!(
                "was unable to scale in due to (reason {} tasks under \
                 protection).",
                plan.protected
            ),
        );
    }
}

/// What a pass read of one service: the reconciler's [`Snapshot`], and what carrying out
/// its plan needs.
struct Read {
    snap: Snapshot,
    /// The service's deployments (PRIMARY and ACTIVE), as read at the start of the pass.
    deployments: Vec<DeploymentRow>,
    primary: DeploymentRow,
    live: Vec<Live>,
    lbs: Lbs,
    /// The stops load balancing asked (drained tasks).
    drained: Vec<String>,
}

/// Reads one service for this pass, load balancing first ([`reconcile::balance`], carried
/// out: the snapshot sees the targets it leaves); `None` without a PRIMARY deployment.
fn read(
    g: &Ecs,
    store: &mut Store,
    s: &ServiceRow,
    m: &mut Memory,
    elb: Option<&Elb>,
) -> anyhow::Result<Option<Read>> {
    let now = Instant::now();
    let deployments = store.deployments(&s.cluster, &s.name)?;
    let Some(primary) = deployments
        .iter()
        .find(|d| d.status == DeploymentStatus::Primary)
        .cloned()
    else {
        return Ok(None);
    };
    // One reading of the clock for the whole pass: the reconciler's rules and the reading
    // of the snapshot agree on what is past.
    let at = now_ms();
    let mut live = read_live(store, s, at)?;
    let gone = read_gone(store, s, m, &live)?;
    let lbs = Lbs::of(s, elb, &deployments);
    let drained = balance(g, store, m, (elb, &lbs), (&mut live, now));
    let routing = read_routing(store, s, elb, &deployments)?;
    let snap = snapshot(
        s,
        &primary,
        &live,
        m,
        (elb, &lbs),
        (routing, gone),
        (now, at),
    );
    Ok(Some(Read {
        snap,
        deployments,
        primary,
        live,
        lbs,
        drained,
    }))
}

/// Carries out the plan for the service's tasks: the listener rules, the stops (those
/// retiring older tasks after the launch), the launch; their events go to `w`. What it did,
/// for [`progress`]; `None` for a deleted service (gone INACTIVE once no task is left).
fn carry(
    g: &Ecs,
    (store, w): (&Store, &mut Writes),
    s: &ServiceRow,
    m: &mut Memory,
    elb: Option<&Elb>,
    (r, plan): (&mut Read, &Plan),
) -> Option<Done> {
    // Blue/green: the listener rules first, so that no task is stopped while a rule still
    // sends it production traffic (a rollback's green tasks, before production is back on
    // blue).
    let mut done = Done {
        stopped: std::mem::take(&mut r.drained),
        routed: carry_rules(w, s, m, elb, &plan.rules),
        failed: plan.failed.clone(),
        green_ready: plan.green_ready,
        ..Default::default()
    };
    if !plan.failed_tasks.is_empty() {
        tracing::info!(service = %s.name, tasks = ?plan.failed_tasks,
            failures = plan.throttle.failures.len(), "service tasks stopped");
        m.steady = false;
    }
    m.throttle = plan.throttle.clone();
    w.events.extend(plan.events.iter().cloned());
    let carried = (elb, &r.lbs);
    carry_stops(g, carried, m, plan, false, &mut r.live, &mut done);
    if s.status == ServiceStatus::Draining {
        stop_events(w, s, m, plan, &done);
        w.retire = plan.inactive;
        return None;
    }
    let now = r.snap.now;
    let launched = (&r.primary, plan);
    done.started = carry_launch(g, (store, w), s, launched, m, &mut done.failed, now);
    carry_stops(g, carried, m, plan, true, &mut r.live, &mut done);
    stop_events(w, s, m, plan, &done);
    Some(done)
}

/// One service, one pass: read its snapshot, have the reconciler decide ([`reconcile`]),
/// carry out the plan; then what its deployments become ([`progress`]); then the pass's
/// store writes, committed together ([`commit`]).
///
/// What a pass does outside the store comes first, each step in its order: load balancing
/// (`balance`, in [`read`]), the listener rules, the stops (asked of the tasks'
/// supervisors, or in a cluster of etcd: a task's desired status is its supervisor's to
/// write), the launch (RunTask's path, with its own transactions for the task rows). None
/// of these can be in the transaction: they are other processes, etcd, the load
/// balancer's state, and the store's write lock must not be held while a supervisor
/// waits on it to record its stop. A crash or a lost leadership after them and before
/// the commit leaves their effects (tasks started or stopping, targets moved) and nothing
/// of the pass's own rows (events, deployments' counts and states, a trip or a
/// rollback): the service is as before the pass, and its tasks as the next pass reads
/// them, which decides again from what it finds (a started task counts toward its
/// deployment, a stopping one is replaced; only the events of those steps are lost).
fn reconcile_service(
    g: &Ecs,
    store: &mut Store,
    s: &ServiceRow,
    m: &mut Memory,
    parts: Parts,
) -> anyhow::Result<()> {
    let Some(mut r) = read(g, store, s, m, parts.elb)? else {
        return Ok(());
    };
    let plan = reconcile(&r.snap);
    let said = Said::of(m);
    let mut w = Writes::default();
    let done = carry(g, (store, &mut w), s, m, parts.elb, (&mut r, &plan));
    let deployments = std::mem::take(&mut r.deployments);
    let written = (|| {
        // A deleted service's pass ends with `carry` (its deployments retired, if any).
        let (progressed, retired) = match done {
            Some(done) => {
                let read = read_deployments(store, s, m, parts.cw, deployments)?;
                let p = progress(&r.snap, &read, &done);
                (Some((read, p)), Vec::new())
            }
            None => (None, deployments),
        };
        let changed = commit(store, s, &w, &retired, progressed.as_ref())?;
        if changed.wrote {
            // In a cluster: this service's rows go to etcd now, as one change of their own
            // (refused whole, and taken back here, when the lock was lost).
            fleet::get().pass_written()?;
        }
        anyhow::Ok((progressed, changed))
    })();
    let (progressed, changed) = match written {
        Ok(written) => written,
        Err(e) => {
            said.restore(m, &w);
            return Err(e);
        }
    };
    if let Some((_, p)) = progressed {
        remember_progress(m, p, changed.rolled_back);
    }
    Ok(())
}

/// What the deployments' rules read ([`progress`]): the deployments read at the start of
/// the pass, their tasks that never ran, the circuit breaker, the deployment alarms as
/// CloudWatch has them, the bake times and production steps.
fn read_deployments(
    store: &Store,
    s: &ServiceRow,
    m: &Memory,
    cw: Option<&CloudWatch>,
    rows: Vec<DeploymentRow>,
) -> anyhow::Result<Deployments> {
    let config = &s.spec.deployment_configuration;
    let mut never_ran = HashMap::new();
    for r in &rows {
        let n = fleet::get().failed_deployment_tasks(store, &s.cluster, &r.id)?;
        never_ran.insert(r.id.clone(), n);
    }
    let watched = config
        .alarms
        .as_ref()
        .filter(|a| a.enable && !a.alarm_names.is_empty());
    let rolling = rows
        .iter()
        .find(|d| d.status == DeploymentStatus::Primary)
        .filter(|p| p.rollout_state == RolloutState::InProgress);
    let alarms = watched.zip(cw).map(|(a, cw)| {
        let (fired, missing) = match rolling {
            Some(p) => cw.alarms.went_into_alarm(&a.alarm_names, p.created_at_ms),
            None => Default::default(),
        };
        Alarms {
            rollback: a.rollback,
            fired,
            missing,
            window_ms: cw.alarms.longest_window(&a.alarm_names),
        }
    });
    let (steps, wait_minutes) = deployments::production_steps(config);
    Ok(Deployments {
        rows,
        never_ran,
        breaker: config
            .deployment_circuit_breaker
            .filter(|b| b.enable)
            .map(|b| b.rollback),
        alarms,
        missing_said: m.missing_alarms.clone(),
        steady_said: m.steady,
        bake_time_ms: minutes_ms(config.bake_time_in_minutes.unwrap_or(0)),
        steps,
        step_wait_ms: minutes_ms(wait_minutes),
    })
}

/// Where a blue/green service's traffic goes this pass (`deployments::traffic`), when there
/// are rules to point: not for a deleted service, nor once the service has settled on one
/// COMPLETED deployment, nor without serve's ELB.
fn read_routing(
    store: &Store,
    s: &ServiceRow,
    elb: Option<&Elb>,
    ds: &[DeploymentRow],
) -> anyhow::Result<Option<Routing>> {
    let bg = s.spec.deployment_configuration.blue_green();
    let Some(p) = ds.iter().find(|d| d.status == DeploymentStatus::Primary) else {
        return Ok(None);
    };
    let settled = ds.len() == 1 && p.rollout_state == RolloutState::Completed;
    if !bg || s.status == ServiceStatus::Draining || settled || elb.is_none() {
        return Ok(None);
    }
    let all = store.all_deployments(&s.cluster, &s.name)?;
    let (production, test) = deployments::traffic(p, &all);
    Ok(Some(Routing {
        production,
        test,
        side: crate::ecs::services::side(p),
        pairs: crate::ecs::services::lb_pairs(&s.spec),
    }))
}

/// Points the plan's listener rules, before any task stops; whether every rule is where it
/// should be. A shift that fails is said in an event (once, until it changes), and then
/// neither the stage moves on nor is a task the rules may still send to stopped.
fn carry_rules(
    w: &mut Writes,
    s: &ServiceRow,
    m: &mut Memory,
    elb: Option<&Elb>,
    rules: &[RuleMove],
) -> bool {
    let name = &s.name;
    let Some(elb) = elb else {
        return true;
    };
    let mut shifted = true;
    for r in rules {
        let said = &r.said;
        match elb.shift_traffic(&r.rule, &r.blue, &r.green, r.permille) {
            Ok(true) => {
                m.shift_failed = None;
                tracing::info!(service = %name, rule = %r.rule, "shifted {said}");
                w.say(s, format!("shifted {said}."));
            }
            Ok(false) => {}
            Err(e) => {
                shifted = false;
                let event = format!(
                    "(service {name}) failed to shift {said} with (error {})",
                    e.message()
                );
                if m.shift_failed.as_ref() != Some(&event) {
                    tracing::warn!(service = %name, "{event}");
                    w.events.push(event.clone());
                    m.shift_failed = Some(event);
                }
            }
        }
    }
    shifted
}

/// `minutes` of AWS's time as this box lasts them, in milliseconds: scaled by the box's
/// metric period as every derived period is (`autoscaling::scaled_secs`: N minutes last
/// N × the period).
fn minutes_ms(minutes: i64) -> i64 {
    crate::autoscaling::scaled_secs(minutes.max(0).saturating_mul(60)).saturating_mul(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_task_lists() {
        assert_eq!(task_list(&["a".into(), "b".into()]), "(task a) (task b)");
    }
}
