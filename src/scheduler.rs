//! The service scheduler of `serve`: once a second (and at once after CreateService,
//! UpdateService or DeleteService) it brings every service's tasks to its desiredCount,
//! rolls deployments forward within maximumPercent/minimumHealthyPercent, replaces tasks
//! that stop or turn UNHEALTHY (with a backoff, like ECS's service throttling) and writes
//! the deployments' progress and the service events. Tasks are started with RunTask's
//! own path (`ecs::tasks::run_task`) and stopped through their supervisors.

use crate::cloudwatch::CloudWatch;
use crate::ecs::deployments::Tripped;
use crate::ecs::fleet::TaskTarget;
use crate::ecs::services::{Spec, add_event, unhealthy};
use crate::ecs::tags::resource_of;
use crate::ecs::tasks::{Local, RunTaskRequest, run_task_with};
use crate::ecs::{Ecs, now_ms};
use crate::ecs::{deployments, fleet};
use crate::elb::Elb;
use crate::store::{
    DeploymentRow, DeploymentStatus, DesiredStatus, LastStatus, LifecycleStage, Resource,
    RolloutState, ServiceRow, ServiceStatus, StopCode, Store, TaskRow,
};
use anyhow::Context;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// stoppedReason of a task replaced for failing its health checks (ECS's string).
pub const UNHEALTHY_REASON: &str = "Task failed container health checks";

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

/// The task's awsvpc address, once its network is set up.
const TICK: Duration = Duration::from_secs(1);
/// How often a pass checks every running task's supervisor, not only its services' tasks
/// (one /proc read per task: ~10 ms a pass with 1000 tasks, 1 % of a CPU at one pass a
/// second): the dead tasks of no service are only there to be cleaned up.
const FULL_CHECK: Duration = Duration::from_secs(30);
/// Failed tasks older than this no longer slow down launches.
const THROTTLE_WINDOW: Duration = Duration::from_secs(15 * 60);
const THROTTLE_BASE: Duration = Duration::from_secs(5);
const THROTTLE_MAX: Duration = Duration::from_secs(15 * 60);
/// Failures in the window after which the service gets ECS's "unable to consistently
/// start tasks" event.
const THROTTLE_WARN_AT: usize = 3;

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
    failures: VecDeque<Instant>,
    next_launch: Option<Instant>,
    warned: bool,
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
        self.failures.clear();
        self.next_launch = None;
        self.steady = false;
        crate::ecs::services::changed();
    }

    /// Records a failed task; returns how many failures the window holds. The next launch
    /// waits 0 s after one failure, then 5 s, 10 s, 20 s … up to 15 minutes.
    fn failed(&mut self, now: Instant) -> usize {
        self.failures.push_back(now);
        while self
            .failures
            .front()
            .is_some_and(|t| now.duration_since(*t) > THROTTLE_WINDOW)
        {
            self.failures.pop_front();
        }
        let n = self.failures.len();
        let delay = if n <= 1 {
            Duration::ZERO
        } else {
            THROTTLE_BASE
                .saturating_mul(1 << (n - 2).min(20))
                .min(THROTTLE_MAX)
        };
        self.next_launch = Some(now + delay);
        self.steady = false;
        n
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
        if let Err(e) = schedule(g, store, &s, m, parts) {
            tracing::error!(service = %s.name, cluster = %s.cluster,
                error = %crate::errors::error_chain(e.as_ref()), "failed to schedule a service");
        }
    }
    Ok(())
}

/// A task of the service that is not STOPPED.
struct Live {
    row: TaskRow,
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
/// Whether a task that started at `started_at_ms` is still in the service's health check
/// grace period. Ref: ecs.json `CreateServiceRequest.healthCheckGracePeriodSeconds` ("the
/// period of time, in seconds, that the Amazon ECS service scheduler ignores unhealthy
/// Elastic Load Balancing, VPC Lattice, and container health checks after a task has first
/// started"; default 0).
fn in_grace_period(started_at_ms: Option<i64>, grace_s: Option<i64>, now: i64) -> bool {
    let grace_ms = grace_s.unwrap_or(0).max(0).saturating_mul(1000);
    match started_at_ms {
        Some(t) => now.saturating_sub(t) < grace_ms,
        None => grace_ms > 0,
    }
}

fn task_list(ids: &[String]) -> String {
    ids.iter()
        .map(|id| format!("(task {id})"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The service event ECS writes after it stopped tasks of service `s`.
fn stopped_event(store: &mut Store, s: &ServiceRow, stopped: &[String]) {
    let name = &s.name;
    add_event(
        store,
        &s.cluster,
        name,
        format!(
            "(service {name}) has stopped {} running tasks: {}.",
            stopped.len(),
            task_list(stopped)
        ),
    );
}

/// Writes the load-balancing events of this pass, and keeps the tasks now draining out of
/// `stopped` (their "has stopped" event comes when they stop, after the delay).
fn flush_lb_events(store: &mut Store, s: &ServiceRow, m: &mut Memory, stopped: &mut Vec<String>) {
    let name = &s.name;
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
        add_event(store, &s.cluster, name, format!("(service {name}) {e}"));
    }
    stopped.retain(|id| !m.lb.draining.contains_key(id));
}

fn scaling_reason(deployment: &str) -> String {
    // Ref: the stoppedReason ECS gives tasks its scheduler stops.
    format!("Scaling activity initiated by (deployment {deployment})")
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

/// One service: replace, launch, stop, and record what happened.
fn schedule(
    g: &Ecs,
    store: &mut Store,
    s: &ServiceRow,
    m: &mut Memory,
    parts: Parts,
) -> anyhow::Result<()> {
    let elb = parts.elb;
    let now = Instant::now();
    let name = &s.name;
    let spec = &s.spec;
    let mut deployments = store.deployments(&s.cluster, name)?;
    let Some(primary) = deployments
        .iter()
        .find(|d| d.status == DeploymentStatus::Primary)
        .cloned()
    else {
        return Ok(());
    };
    let mut live = Vec::new();
    for fleet::FleetTask {
        row,
        containers,
        draining,
    } in fleet::get().group_tasks(store, &s.cluster, &format!("service:{name}"))?
    {
        // Within healthCheckGracePeriodSeconds of its start, an UNHEALTHY task counts as
        // neither failed nor replaced.
        let unhealthy = row.last_status == LastStatus::Running
            && unhealthy(&containers)
            && !in_grace_period(
                row.started_at,
                spec.health_check_grace_period_seconds,
                now_ms(),
            );
        live.push(Live {
            row,
            unhealthy,
            draining,
        });
    }

    // Tasks that stopped on their own since the last pass (an essential container exited,
    // the task failed to start, its supervisor died): failures, for throttling and for
    // their deployment's circuit breaker (`failed`, by deployment id).
    let mut failed: HashMap<String, i64> = HashMap::new();
    let ids: HashSet<String> = live.iter().map(|l| l.row.id.clone()).collect();
    for gone in m.known.difference(&ids).cloned().collect::<Vec<_>>() {
        let Some(t) = fleet::get().task(store, &s.cluster, &gone)? else {
            continue;
        };
        // A task stopped because its host went away (a lost container instance in cluster
        // mode) did not fail: its replacement is not throttled.
        let by_us_or_user = matches!(
            t.stop_code,
            Some(
                StopCode::ServiceSchedulerInitiated
                    | StopCode::UserInitiated
                    | StopCode::TerminationNotice
            )
        );
        if t.last_status == LastStatus::Stopped && !by_us_or_user {
            if let Some(d) = &t.started_by {
                *failed.entry(d.clone()).or_default() += 1;
            }
            let n = m.failed(now);
            tracing::info!(service = %name, task_id = %gone, failures = n, "a service task stopped");
            if n >= THROTTLE_WARN_AT && !m.warned {
                m.warned = true;
                add_event(
                    store,
                    &s.cluster,
                    name,
                    format!(
                        "(service {name}) is unable to consistently start tasks successfully. \
                         For more information, see the Troubleshooting section of the Amazon \
                         ECS Developer Guide."
                    ),
                );
            }
        }
    }
    m.known = ids;

    let mut stopped = Vec::new();
    let mut started = Vec::new();

    // Load balancing (the service's loadBalancers, with serve's ELB): draining tasks stop
    // once their delay is over and count as stopping until then; tasks that stopped on
    // their own leave their target groups; RUNNING tasks join them.
    // With blue/green, a task registers in its deployment's side of the target group
    // pairs; it leaves every group of the service when it stops.
    let bg = spec.deployment_configuration.blue_green();
    let lb_cfg = if elb.is_some() {
        lb_targets(spec)
    } else {
        Vec::new()
    };
    let lbs = all_groups(&lb_cfg);
    let sides: HashMap<String, bool> = deployments
        .iter()
        .map(|d| (d.id.clone(), crate::ecs::services::side(d)))
        .collect();
    let groups_of = |t: &TaskRow| {
        let side = t
            .started_by
            .as_ref()
            .and_then(|d| sides.get(d))
            .copied()
            .unwrap_or(false);
        groups_on(&lb_cfg, side)
    };
    let live_ids: HashSet<String> = live.iter().map(|l| l.row.id.clone()).collect();
    m.lb.draining.retain(|id, _| live_ids.contains(id));
    m.lb.stop_asked.retain(|id| live_ids.contains(id));
    for l in live.iter_mut() {
        if m.lb.stop_asked.contains(&l.row.id) {
            l.row.desired_status = DesiredStatus::Stopped;
            continue;
        }
        let Some((until, reason)) = m.lb.draining.get(&l.row.id).cloned() else {
            continue;
        };
        if now >= until
            && fleet::get().stop(g, &l.row, StopCode::ServiceSchedulerInitiated, &reason)
        {
            m.lb.draining.remove(&l.row.id);
            m.lb.stop_asked.insert(l.row.id.clone());
            stopped.push(l.row.id.clone());
        }
        l.row.desired_status = DesiredStatus::Stopped;
    }
    if let Some(elb) = elb.filter(|_| !lbs.is_empty()) {
        let gone: Vec<String> =
            m.lb.registered
                .keys()
                .filter(|id| !live_ids.contains(*id))
                .cloned()
                .collect();
        for id in gone {
            let Some(at) = m.lb.registered.remove(&id) else {
                continue;
            };
            for t in &lbs {
                let Some((id, port)) = at.target(t.container.as_deref(), t.port) else {
                    continue;
                };
                if let Ok(Some(_)) = elb.deregister_target(&t.group, id, port) {
                    m.lb.deregistered.push(t.group.clone());
                }
            }
        }
        let mut counts: Vec<(String, usize)> = Vec::new();
        for l in live
            .iter()
            .filter(|l| l.active() && l.running() && !l.unhealthy)
        {
            if m.lb.registered.contains_key(&l.row.id) {
                continue;
            }
            let Some(at) = fleet::get().task_target(store, &l.row.cluster, &l.row.id) else {
                continue;
            };
            let mut all = true;
            for t in &groups_of(&l.row) {
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

    if s.status == ServiceStatus::Draining {
        for l in live.iter_mut().filter(|l| l.active()) {
            let d = l
                .row
                .started_by
                .clone()
                .unwrap_or_else(|| primary.id.clone());
            if stop_task(g, (elb, &lbs, &mut m.lb), &mut l.row, &scaling_reason(&d)) {
                stopped.push(l.row.id.clone());
            }
        }
        flush_lb_events(store, s, m, &mut stopped);
        if !stopped.is_empty() {
            stopped_event(store, s, &stopped);
        }
        if live.is_empty() {
            let mut gone = s.clone();
            gone.status = ServiceStatus::Inactive;
            gone.updated_at_ms = now_ms();
            store.save_service(&gone)?;
            for d in &mut deployments {
                d.status = DeploymentStatus::Inactive;
                d.updated_at_ms = now_ms();
                store.save_deployment(d)?;
            }
        }
        return Ok(());
    }

    // A task whose essential container is UNHEALTHY is replaced. Ref: ecs-reference.md §1
    // (only a service replaces an unhealthy task).
    for l in live.iter_mut().filter(|l| l.active() && l.unhealthy) {
        let id = l.row.id.clone();
        add_event(
            store,
            &s.cluster,
            name,
            format!("(service {name}) (task {id}) failed container health checks."),
        );
        if stop_task(g, (elb, &lbs, &mut m.lb), &mut l.row, UNHEALTHY_REASON) {
            if let Some(d) = &l.row.started_by {
                *failed.entry(d.clone()).or_default() += 1;
            }
            m.unhealthy += 1;
            stopped.push(id);
        }
    }

    // A registered task its target group finds unhealthy is replaced (after the service's
    // healthCheckGracePeriodSeconds), with ECS's reason.
    if let Some(elb) = elb {
        for l in live
            .iter_mut()
            .filter(|l| l.active() && l.running() && !l.unhealthy)
        {
            let Some(at) = m.lb.registered.get(&l.row.id).cloned() else {
                continue;
            };
            if in_grace_period(
                l.row.started_at,
                spec.health_check_grace_period_seconds,
                now_ms(),
            ) {
                continue;
            }
            let mine = groups_of(&l.row);
            let Some((t, h)) = mine.iter().find_map(|t| {
                let (id, port) = at.target(t.container.as_deref(), t.port)?;
                let h = elb.health_of_target(&t.group, id, port)?;
                (h.state == "unhealthy").then_some((t, h))
            }) else {
                continue;
            };
            let id = l.row.id.clone();
            add_event(
                store,
                &s.cluster,
                name,
                format!(
                    "(service {name}) (task {id}) (port {}) is unhealthy in (target-group {}) due to (reason {}).",
                    t.port,
                    t.group,
                    h.description.as_deref().unwrap_or("Health checks failed")
                ),
            );
            let reason = format!(
                "Task failed ELB health checks in (target-group {})",
                t.group
            );
            if stop_task(g, (Some(elb), &lbs, &mut m.lb), &mut l.row, &reason) {
                m.unhealthy += 1;
                stopped.push(id);
            }
        }
    }

    let desired = s.desired_count;
    let (max_total, min_healthy) = spec.deployment_configuration.bounds(desired);
    // A task on a DRAINING instance counts as an older deployment's: its replacement
    // starts first, within maximumPercent, and it stops as minimumHealthyPercent allows.
    // Ref: developerguide/container-instance-draining.html.
    let is_primary =
        |l: &Live| !l.draining && l.row.started_by.as_deref() == Some(primary.id.as_str());

    // Scale in: the primary's surplus, tasks not yet RUNNING first, then the newest; a
    // protected task is kept until its protection lapses (UpdateTaskProtection). Ref:
    // docs.aws.amazon.com/AmazonECS/latest/developerguide/task-scale-in-protection.html.
    let at = now_ms();
    let mut blocked = 0;
    let mut surplus: Vec<usize> = (0..live.len())
        .filter(|&i| live[i].active() && is_primary(&live[i]))
        .collect();
    if surplus.len() as i64 > desired {
        surplus.sort_by_key(|&i| (live[i].running(), std::cmp::Reverse(live[i].row.created_at)));
        let excess = surplus.len() - desired as usize;
        let (free, protected): (Vec<usize>, Vec<usize>) = surplus
            .iter()
            .partition(|&&i| !live[i].row.protected_at(at));
        blocked += excess.saturating_sub(free.len()).min(protected.len());
        for &i in free.iter().take(excess) {
            if stop_task(
                g,
                (elb, &lbs, &mut m.lb),
                &mut live[i].row,
                &scaling_reason(&primary.id),
            ) {
                stopped.push(live[i].row.id.clone());
            }
        }
    }

    // Launch the primary's missing tasks, within maximumPercent, unless throttled.
    let primary_active = live.iter().filter(|l| l.active() && is_primary(l)).count() as i64;
    // Blue/green: the green tasks start at the full desired count beside the blue ones.
    let room = if bg {
        i64::MAX
    } else {
        max_total - live.len() as i64
    };
    let wanted = (desired - primary_active).min(room);
    // RunTask's batch of at most 10; a service that wants more has the next pass run at
    // once (`Memory::again`) instead of a tick later, so a scale-out is bounded by how fast tasks
    // launch, not by the passes' pace.
    let mut n = wanted.min(10);
    // A deployment the circuit breaker failed launches no more tasks.
    if primary.rollout_state == RolloutState::Failed {
        n = 0;
    }
    if n > 0 && m.next_launch.is_some_and(|t| now < t) {
        tracing::debug!(service = %name, "launch throttled");
        n = 0;
    }
    if n > 0 {
        match launch(g, store, s, spec, &primary, n) {
            Ok((ids, failures)) => {
                if wanted > n && failures.is_empty() && ids.len() as i64 == n {
                    m.again = true;
                }
                // Tasks that fit nowhere: ECS's service event, and the next pass retries.
                if failures.is_empty() {
                    m.unplaced = None;
                } else {
                    let event = crate::ecs::placement::service_event(name, &failures);
                    if m.unplaced.as_ref() != Some(&event) {
                        tracing::warn!(service = %name, event = %event, "service task not placed");
                        add_event(store, &s.cluster, name, event.clone());
                        m.unplaced = Some(event);
                    }
                }
                if !ids.is_empty() {
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
                    }
                    add_event(store, &s.cluster, name, msg);
                    m.known.extend(ids.iter().cloned());
                    started = ids;
                }
            }
            Err(e) => {
                let why = crate::errors::error_chain(e.as_ref());
                tracing::warn!(service = %name, error = %why, "failed to launch service tasks");
                add_event(
                    store,
                    &s.cluster,
                    name,
                    format!("(service {name}) failed to launch a task with (error {why})."),
                );
                *failed.entry(primary.id.clone()).or_default() += 1;
                m.failed(now);
            }
        }
    }

    // Stop older deployments' tasks while minimumHealthyPercent stays healthy: tasks not
    // RUNNING at once, RUNNING ones (oldest first) only as the healthy surplus allows.
    // With load balancers, a task counts as healthy once it is healthy in each of the
    // service's target groups (ECS: "healthy … and, with a load balancer, passing its
    // health checks"), so a deployment never takes away the targets serving traffic
    // before their replacements can.
    let lb_ok = |l: &Live| match (elb, m.lb.registered.get(&l.row.id)) {
        _ if lbs.is_empty() => true,
        (Some(elb), Some(at)) => groups_of(&l.row).iter().all(|t| {
            at.target(t.container.as_deref(), t.port)
                .and_then(|(id, port)| elb.health_of_target(&t.group, id, port))
                .is_some_and(|h| h.state == "healthy")
        }),
        _ => false,
    };
    let healthy_now: Vec<bool> = live
        .iter()
        .map(|l| l.active() && l.running() && !l.unhealthy && lb_ok(l))
        .collect();
    let healthy = healthy_now.iter().filter(|h| **h).count() as i64;
    let mut can_stop = healthy - min_healthy;
    // Blue/green: the blue tasks all stop at the green deployment's CLEAN_UP (or once a
    // rollback made blue PRIMARY again, the green ones), not before.
    // The listener rules first, so that no task is stopped while a rule still sends it
    // production traffic (a rollback's green tasks, before production is back on blue).
    let routed = !bg || route_blue_green(store, s, m, elb, &deployments)?;
    let bg_stage = primary.sd.blue_green.map(|b| b.stage);
    let bg_hold = bg
        && (!routed
            || !(primary.rollout_state == RolloutState::Completed
                || (primary.rollout_state == RolloutState::InProgress
                    && bg_stage.is_none_or(|s| s >= LifecycleStage::CleanUp))));
    if bg {
        can_stop = i64::MAX;
    }
    // Green is ready once its tasks run, registered and healthy in each of their target
    // groups that is in use (a group no rule forwards to yet has no health checks: before
    // the test traffic shift, the alternate group of a service with a test rule).
    let lb_ready = |l: &Live| match (elb, m.lb.registered.get(&l.row.id)) {
        _ if lbs.is_empty() => true,
        (Some(elb), Some(at)) => groups_of(&l.row).iter().all(|t| {
            at.target(t.container.as_deref(), t.port)
                .and_then(|(id, port)| elb.health_of_target(&t.group, id, port))
                .is_some_and(|h| h.state == "healthy" || h.state == "unused")
        }),
        _ => false,
    };
    let green_ready = live
        .iter()
        .filter(|l| l.active() && l.running() && !l.unhealthy && is_primary(l) && lb_ready(l))
        .count() as i64
        >= desired;
    let mut old: Vec<usize> = (0..live.len())
        .filter(|&i| !bg_hold && live[i].active() && !is_primary(&live[i]))
        .collect();
    old.sort_by_key(|&i| (live[i].running(), live[i].row.created_at));
    for i in old {
        let healthy_one = healthy_now[i];
        if healthy_one && can_stop <= 0 {
            continue;
        }
        // A protected task of an older deployment stays until its protection lapses.
        if live[i].row.protected_at(at) {
            blocked += 1;
            continue;
        }
        let d = live[i].row.started_by.clone().unwrap_or_default();
        if stop_task(
            g,
            (elb, &lbs, &mut m.lb),
            &mut live[i].row,
            &scaling_reason(&d),
        ) {
            stopped.push(live[i].row.id.clone());
            if healthy_one {
                can_stop -= 1;
            }
        }
    }
    let changed = !stopped.is_empty() || !started.is_empty();
    flush_lb_events(store, s, m, &mut stopped);
    if !stopped.is_empty() {
        stopped_event(store, s, &stopped);
    }
    if blocked != m.protected {
        m.protected = blocked;
        if blocked > 0 {
            add_event(
                store,
                &s.cluster,
                name,
                format!(
                    "(service {name}) was unable to scale in due to (reason {blocked} tasks \
                     under protection)."
                ),
            );
        }
    }

    // Deployments: an older one is done once none of its tasks is left; failedTasks.
    let mut olds_left = false;
    for d in &mut deployments {
        let mut dirty = false;
        if d.status == DeploymentStatus::Active {
            if live
                .iter()
                .any(|l| l.row.started_by.as_deref() == Some(d.id.as_str()))
            {
                olds_left = true;
            } else {
                d.status = DeploymentStatus::Inactive;
                dirty = true;
                // A blue/green rollback is done once the green tasks are gone.
                deployments::blue_green_rolled_back(store, d, &primary)?;
            }
        }
        // The circuit breaker's count: the failures seen now. `failedTasks` shows it, and
        // at least the tasks that never reached RUNNING (seen by an earlier serve too).
        if let Some(&seen) = failed.get(&d.id) {
            d.sd.failure_count += seen;
            dirty = true;
        }
        let never_ran = fleet::get().failed_deployment_tasks(store, &s.cluster, &d.id)?;
        let n = deployments::failed_tasks(d.sd.failure_count, never_ran);
        if n != d.failed_tasks {
            d.failed_tasks = n;
            dirty = true;
        }
        if dirty {
            d.updated_at_ms = now_ms();
            store.save_deployment(d)?;
        }
    }
    // The circuit breaker: the PRIMARY deployment fails at its threshold of failed tasks
    // (the `failedTasks` it shows).
    let breaker = spec
        .deployment_configuration
        .deployment_circuit_breaker
        .filter(|b| b.enable);
    if let Some(b) = breaker
        && let Some(p) = deployments
            .iter_mut()
            .find(|d| deployments::breaker_trips(d, desired))
    {
        tracing::warn!(service = %name, deployment = %p.id, failed = p.failed_tasks,
            rollback = b.rollback, "the deployment circuit breaker tripped");
        if deployments::trip(store, s, p, b.rollback, &Tripped::CircuitBreaker)? {
            m.rolled_back();
        }
        return Ok(());
    }
    // The deployment alarms: the PRIMARY deployment fails once one of them goes into
    // ALARM, while it rolls out and for its bake time after. Ref: developerguide/
    // deployment-alarm-failure.html.
    let watched = spec
        .deployment_configuration
        .alarms
        .as_ref()
        .filter(|a| a.enable && !a.alarm_names.is_empty());
    if let (Some(a), Some(cw)) = (watched, parts.cw)
        && let Some(p) = deployments
            .iter_mut()
            .find(|d| d.status == DeploymentStatus::Primary)
        && p.rollout_state == RolloutState::InProgress
    {
        let (fired, missing) = cw.alarms.went_into_alarm(&a.alarm_names, p.created_at_ms);
        if missing != m.missing_alarms {
            if !missing.is_empty() {
                add_event(
                    store,
                    &s.cluster,
                    name,
                    format!(
                        "(service {name}) deployment alarms not found in CloudWatch, not \
                         watched: {}.",
                        missing.join(", ")
                    ),
                );
            }
            m.missing_alarms = missing;
        }
        if !fired.is_empty() {
            tracing::warn!(service = %name, deployment = %p.id, alarms = ?fired,
                rollback = a.rollback, "a deployment alarm went into ALARM");
            if deployments::trip(store, s, p, a.rollback, &Tripped::Alarms(fired))? {
                m.rolled_back();
            }
            return Ok(());
        }
    }
    let running = live
        .iter()
        .filter(|l| l.active() && l.running() && !l.unhealthy && is_primary(l))
        .count() as i64;
    let steady = !changed
        && !olds_left
        && running == desired
        && live.iter().all(|l| l.active() && l.running());
    // With deployment alarms, a deployment completes after its bake time: the longest
    // Period × EvaluationPeriods of its alarms, from its first steady state (ECS "computes
    // this time period based on the alarm configuration"; this host's reading of it).
    let bake_ms = match (watched, parts.cw) {
        (Some(a), Some(cw)) => cw.alarms.longest_window(&a.alarm_names),
        _ => 0,
    };
    // Blue/green: the stages, and the listener rules where they say traffic goes; the
    // deployment completes at the end of CLEAN_UP (its bake time is a stage before).
    if bg {
        let bake_ms = bake_ms.max(minutes_ms(
            spec.deployment_configuration
                .bake_time_in_minutes
                .unwrap_or(0),
        ));
        advance_blue_green(store, s, &mut deployments, routed, green_ready, bake_ms)?;
    }
    let bg_done = |p: &DeploymentRow| {
        !bg || p
            .sd
            .blue_green
            .is_none_or(|b| b.stage == LifecycleStage::CleanUp)
    };
    if steady
        && let Some(p) = deployments
            .iter_mut()
            .find(|d| d.status == DeploymentStatus::Primary)
        && p.rollout_state == RolloutState::InProgress
        && bg_done(p)
        && (bg || baked(store, p, bake_ms)?)
    {
        p.rollout_state = RolloutState::Completed;
        p.rollout_state_reason = format!("ECS deployment {} completed.", p.id);
        p.updated_at_ms = now_ms();
        deployments::completed(store, p)?;
        store.save_deployment(p)?;
        add_event(
            store,
            &s.cluster,
            name,
            format!(
                "(service {name}) (deployment {}) deployment completed.",
                p.id
            ),
        );
    }
    if changed {
        m.steady = false;
    } else if steady && !m.steady {
        m.steady = true;
        m.warned = false;
        add_event(
            store,
            &s.cluster,
            name,
            format!("(service {name}) has reached a steady state."),
        );
    }
    Ok(())
}

/// Blue/green (and LINEAR and CANARY), once a pass, before any task of an older
/// deployment is stopped: each listener rule of the service's load balancers is pointed
/// where the PRIMARY deployment's stage says (`deployments::traffic`: test traffic to
/// green from TEST_TRAFFIC_SHIFT, production traffic from PRODUCTION_TRAFFIC_SHIFT by its
/// steps, both back to blue when a rollback made it PRIMARY again). Whether every rule is
/// where it should be: a shift that fails is said in an event, and then neither the stage
/// moves on ([`advance_blue_green`]) nor is a task the rules may still send to stopped.
fn route_blue_green(
    store: &mut Store,
    s: &ServiceRow,
    m: &mut Memory,
    elb: Option<&Elb>,
    ds: &[DeploymentRow],
) -> anyhow::Result<bool> {
    let name = &s.name;
    let Some(pi) = ds
        .iter()
        .position(|d| d.status == DeploymentStatus::Primary)
    else {
        return Ok(true);
    };
    let all = store.all_deployments(&s.cluster, name)?;
    let (production, test) = deployments::traffic(&ds[pi], &all);
    let mine = crate::ecs::services::side(&ds[pi]);
    let settled = ds.len() == 1 && ds[pi].rollout_state == RolloutState::Completed;
    let mut shifted = true;
    if let Some(elb) = elb.filter(|_| !settled) {
        for pair in crate::ecs::services::lb_pairs(&s.spec) {
            let group = |alternate: bool| {
                if alternate {
                    pair.alternate.clone()
                } else {
                    pair.primary.clone()
                }
            };
            let (green, blue) = (group(mine), group(!mine));
            let rules = [
                (Some(pair.production.clone()), production, "production"),
                (pair.test.clone(), test, "test"),
            ];
            for (rule, permille, what) in rules {
                let Some(rule) = rule else { continue };
                // This host's words (ECS documents none).
                let said = match permille {
                    p if p >= 1000 => format!("{what} traffic to (target-group {green})"),
                    p if p <= 0 => format!("{what} traffic to (target-group {blue})"),
                    p => format!(
                        "{}.{}% of {what} traffic to (target-group {green})",
                        p / 10,
                        p % 10
                    ),
                };
                match elb.shift_traffic(&rule, &blue, &green, permille) {
                    Ok(true) => {
                        m.shift_failed = None;
                        tracing::info!(service = %name, rule = %rule, "shifted {said}");
                        add_event(
                            store,
                            &s.cluster,
                            name,
                            format!("(service {name}) shifted {said}."),
                        );
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
                            add_event(store, &s.cluster, name, event.clone());
                            m.shift_failed = Some(event);
                        }
                    }
                }
            }
        }
    }
    Ok(shifted)
}

/// The PRIMARY deployment of a blue/green (LINEAR, CANARY) service moves on to its next
/// lifecycle stage when it is due (`deployments::advance`), once [`route_blue_green`] has
/// the rules where its stage says (`shifted`).
fn advance_blue_green(
    store: &mut Store,
    s: &ServiceRow,
    ds: &mut [DeploymentRow],
    shifted: bool,
    green_ready: bool,
    bake_ms: i64,
) -> anyhow::Result<()> {
    let name = &s.name;
    let Some(p) = ds
        .iter_mut()
        .find(|d| d.status == DeploymentStatus::Primary)
    else {
        return Ok(());
    };
    if p.rollout_state != RolloutState::InProgress || !shifted {
        return Ok(());
    }
    let now = now_ms();
    let rec = p.sd.blue_green.unwrap_or(crate::store::BlueGreenRecord {
        stage: LifecycleStage::PreScaleUp,
        stage_at_ms: now,
        alternate: false,
        production_permille: 0,
        step_at_ms: now,
    });
    let (steps, wait_minutes) = deployments::production_steps(&s.spec.deployment_configuration);
    let step_wait_ms = minutes_ms(wait_minutes);
    if let Some(next) = deployments::advance(rec, now, green_ready, bake_ms, &steps, step_wait_ms) {
        tracing::info!(service = %name, deployment = %p.id, stage = next.stage.as_str(),
            production_permille = next.production_permille, "blue/green lifecycle stage");
        p.sd.blue_green = Some(next);
        p.updated_at_ms = now;
        store.save_deployment(p)?;
    }
    Ok(())
}

/// `minutes` of AWS's time as this box lasts them, in milliseconds: scaled by the box's
/// metric period as every derived period is (`autoscaling::scaled_secs`: N minutes last
/// N × the period).
fn minutes_ms(minutes: i64) -> i64 {
    crate::autoscaling::scaled_secs(minutes.max(0).saturating_mul(60)).saturating_mul(1000)
}

/// Whether deployment `d`, steady now, has baked for `bake_ms` since it first was (the
/// time is recorded at the first call).
fn baked(store: &mut Store, d: &mut DeploymentRow, bake_ms: i64) -> anyhow::Result<bool> {
    if bake_ms <= 0 {
        return Ok(true);
    }
    let now = now_ms();
    let since = match d.sd.steady_at_ms {
        Some(t) => t,
        None => {
            d.sd.steady_at_ms = Some(now);
            d.updated_at_ms = now;
            store.save_deployment(d)?;
            now
        }
    };
    Ok(now.saturating_sub(since) >= bake_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_backs_off_and_forgets_old_failures() {
        let mut m = Memory::default();
        let t0 = Instant::now();
        assert_eq!(m.failed(t0), 1);
        assert_eq!(
            m.next_launch,
            Some(t0),
            "the first failure is replaced at once"
        );
        m.failed(t0);
        assert_eq!(m.next_launch, Some(t0 + Duration::from_secs(5)));
        m.failed(t0);
        assert_eq!(m.next_launch, Some(t0 + Duration::from_secs(10)));
        for _ in 0..20 {
            m.failed(t0);
        }
        assert_eq!(m.next_launch, Some(t0 + THROTTLE_MAX));
        let later = t0 + THROTTLE_WINDOW + Duration::from_secs(1);
        assert_eq!(m.failed(later), 1);
        assert_eq!(m.next_launch, Some(later));
    }

    #[test]
    fn the_grace_period_counts_from_the_task_start() {
        assert!(!in_grace_period(Some(1_000), None, 1_000));
        assert!(!in_grace_period(Some(1_000), Some(0), 1_000));
        assert!(in_grace_period(Some(1_000), Some(10), 10_999));
        assert!(!in_grace_period(Some(1_000), Some(10), 11_000));
        assert!(in_grace_period(None, Some(10), 0));
        assert!(!in_grace_period(Some(0), Some(-5), 0));
    }

    #[test]
    fn event_task_lists() {
        assert_eq!(task_list(&["a".into(), "b".into()]), "(task a) (task b)");
        assert_eq!(
            scaling_reason("ecs-svc/1"),
            "Scaling activity initiated by (deployment ecs-svc/1)"
        );
    }
}
