//! Service deployments as ECS runs them: the deployment circuit breaker (its threshold, the
//! FAILED rollout, the rollback to the last completed deployment) and the service
//! deployment API (ListServiceDeployments, DescribeServiceDeployments,
//! StopServiceDeployment, DescribeServiceRevisions). The scheduler (`crate::scheduler`)
//! counts the failed tasks and calls [`trip`] and [`completed`]; a new deployment's record
//! is made by `services::new_deployment::new_record`.

use super::names::{self, cluster_name, service_name};
use super::services::{SERVICE_NOT_FOUND, changed, new_deployment_id, record_event};
use super::shapes::Failure;
use super::{Ecs, EcsError, EcsResult, now_ms};
use crate::store::{
    BlueGreenRecord, DeploymentRow, DeploymentStatus, LastStatus, LifecycleStage, RollbackRecord,
    RolloutState, ServiceDeploymentRecord, ServiceDeploymentStatus, ServiceRow, ServiceSpec, Store,
};
use crate::taskdef::AwsContext;
use crate::taskdef::timestamp::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The rolloutStateReason of a deployment the circuit breaker failed (ECS's words).
pub const FAILED_REASON: &str = "ECS deployment circuit breaker: tasks failed to start.";
/// The service deployment's statusReason and rollback reason when the circuit breaker
/// rolled it back (ECS's words, API_DescribeServiceDeployments' example).
pub const ROLLED_BACK_REASON: &str =
    "Service deployment rolled back because the circuit breaker threshold was exceeded.";
/// Without rollback (this host's words: ECS documents no text for it).
const STOPPED_REASON: &str =
    "Service deployment stopped because the circuit breaker threshold was exceeded.";
/// StopServiceDeployment's rollback (this host's words).
const STOP_REQUEST_REASON: &str = "Service deployment rolled back by StopServiceDeployment.";

/// What failed a deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tripped {
    /// Its failed tasks reached the circuit breaker's threshold.
    CircuitBreaker,
    /// These of its deployment alarms went into ALARM.
    Alarms(Vec<String>),
}

impl Tripped {
    /// The failed deployment's rolloutStateReason: ECS's words for the circuit breaker,
    /// this host's for the alarms (ECS documents none).
    fn rollout_reason(&self) -> String {
        match self {
            Tripped::CircuitBreaker => FAILED_REASON.into(),
            Tripped::Alarms(names) => format!(
                "ECS deployment alarms: {} went into the ALARM state.",
                names.join(", ")
            ),
        }
    }

    /// The service event's cause after "deployment failed: " (ECS's words).
    fn event(&self) -> &'static str {
        match self {
            Tripped::CircuitBreaker => "tasks failed to start.",
            Tripped::Alarms(_) => "alarm detected.",
        }
    }

    /// The service deployment's statusReason and rollback reason with a rollback.
    fn rolled_back(&self) -> String {
        match self {
            Tripped::CircuitBreaker => ROLLED_BACK_REASON.into(),
            // This host's words, after the circuit breaker's.
            Tripped::Alarms(names) => format!(
                "Service deployment rolled back because the deployment alarms went into the \
                 ALARM state: {}.",
                names.join(", ")
            ),
        }
    }

    /// Its statusReason without a rollback (this host's words).
    fn stopped(&self) -> String {
        match self {
            Tripped::CircuitBreaker => STOPPED_REASON.into(),
            Tripped::Alarms(names) => format!(
                "Service deployment stopped because the deployment alarms went into the \
                 ALARM state: {}.",
                names.join(", ")
            ),
        }
    }

    /// The rolloutStateReason of the deployment that rolls back.
    fn rolling_back(&self, to: &str) -> String {
        match self {
            Tripped::CircuitBreaker => {
                format!("ECS deployment circuit breaker: rolling back to deploymentId {to}.")
            }
            Tripped::Alarms(_) => {
                format!("ECS deployment alarms: rolling back to deploymentId {to}.")
            }
        }
    }
}

/// The number of failed tasks that fails a deployment: half the desired count, rounded
/// up, at least 3 and at most 200. Ref: API_ServiceDeploymentCircuitBreaker `threshold`
/// ("minimum threshold of 3 and a maximum threshold of 200 … 0.5 * desired task count").
pub fn threshold(desired: i64) -> i64 {
    ((desired.max(0) + 1) / 2).clamp(3, 200)
}

/// The failed tasks a deployment shows (`failedTasks`): the failures the scheduler has
/// counted (`failure_count`), and at least the deployment's tasks that never reached
/// RUNNING (`never_ran`: seen by an earlier serve too).
pub fn failed_tasks(failure_count: i64, never_ran: i64) -> i64 {
    failure_count.max(never_ran)
}

/// Whether the circuit breaker fails deployment `d` of a service of `desired` tasks: an
/// IN_PROGRESS deployment whose failed tasks reach the threshold. The count is the one
/// the deployment shows (`failedTasks`), so that DescribeServices never shows a count at
/// the threshold on a deployment still in progress. Ref: ECS Developer Guide, "How the
/// Amazon ECS deployment circuit breaker detects failures" (the deployment fails when its
/// failed tasks reach the threshold; API_ServiceDeploymentCircuitBreaker `threshold`).
pub fn breaker_trips(d: &DeploymentRow, desired: i64) -> bool {
    d.status == DeploymentStatus::Primary
        && d.rollout_state == RolloutState::InProgress
        && d.failed_tasks >= threshold(desired)
}

/// The last deployment of the service that COMPLETED, other than `not`.
fn last_completed(
    store: &Store,
    s: &ServiceRow,
    not: &str,
) -> anyhow::Result<Option<DeploymentRow>> {
    Ok(store
        .all_deployments(&s.cluster, &s.name)?
        .into_iter()
        .find(|d| d.id != not && d.rollout_state == RolloutState::Completed))
}

/// Starts the deployment that takes service `s` back from `d` to `target`'s task
/// definition: `d` becomes ACTIVE (its tasks stop as the new one's run), its service
/// deployment ROLLBACK_IN_PROGRESS.
fn roll_back(
    store: &mut Store,
    s: &ServiceRow,
    d: &mut DeploymentRow,
    target: &DeploymentRow,
    reason: &str,
    rollout_reason: String,
) -> anyhow::Result<()> {
    if s.spec.deployment_configuration.blue_green() {
        return roll_back_blue_green(store, s, d, target, reason);
    }
    let now = now_ms();
    let id = new_deployment_id()?;
    d.sd.status = Some(ServiceDeploymentStatus::RollbackInProgress);
    d.sd.status_reason = Some(reason.to_string());
    d.sd.rollback = Some(RollbackRecord {
        reason: reason.to_string(),
        started_at_ms: now,
        to: target.id.clone(),
        by: id.clone(),
    });
    d.updated_at_ms = now;
    store.save_deployment(d)?;
    let spec = target.sd.spec.clone().unwrap_or_else(|| s.spec.clone());
    store.start_deployment(&DeploymentRow {
        rollout_state_reason: rollout_reason,
        id,
        cluster: s.cluster.clone(),
        service: s.name.clone(),
        status: DeploymentStatus::Primary,
        task_definition_arn: target.task_definition_arn.clone(),
        desired_count: s.desired_count,
        rollout_state: RolloutState::InProgress,
        created_at_ms: now,
        updated_at_ms: now,
        sd: ServiceDeploymentRecord {
            sources: vec![d.id.clone()],
            spec: Some(spec),
            rollback_of: Some(d.id.clone()),
            ..Default::default()
        },
        ..Default::default()
    })?;
    d.status = DeploymentStatus::Active;
    service_back_to(store, s, target, now)
}

/// The service runs `target`'s task definition again, with ECS's event.
fn service_back_to(
    store: &mut Store,
    s: &ServiceRow,
    target: &DeploymentRow,
    now: i64,
) -> anyhow::Result<()> {
    let mut svc = s.clone();
    svc.task_definition_arn = target.task_definition_arn.clone();
    svc.updated_at_ms = now;
    store.save_service(&svc)?;
    record_event(
        store,
        &s.cluster,
        &s.name,
        format!(
            "(service {}) rolling back to deployment {}.",
            s.name, target.id
        ),
    )?;
    Ok(())
}

/// A blue/green rollback: the blue deployment (`target`, whose tasks still run until the
/// green one's clean-up) is PRIMARY again, with production and test traffic back on its
/// target groups (the scheduler shifts them) and `d`'s green tasks stopped; no new
/// deployment starts. `d` is ROLLBACK_IN_PROGRESS until its tasks are gone. Ref: ECS
/// Developer Guide, "Amazon ECS blue/green service deployments workflow" ("A rollback
/// operation is initiated when issues are detected"; blue keeps serving production).
fn roll_back_blue_green(
    store: &mut Store,
    s: &ServiceRow,
    d: &mut DeploymentRow,
    target: &DeploymentRow,
    reason: &str,
) -> anyhow::Result<()> {
    let now = now_ms();
    d.sd.status = Some(ServiceDeploymentStatus::RollbackInProgress);
    d.sd.status_reason = Some(reason.to_string());
    d.sd.rollback = Some(RollbackRecord {
        reason: reason.to_string(),
        started_at_ms: now,
        to: target.id.clone(),
        by: target.id.clone(),
    });
    d.status = DeploymentStatus::Active;
    d.updated_at_ms = now;
    store.save_deployment(d)?;
    let mut blue = target.clone();
    blue.status = DeploymentStatus::Primary;
    blue.desired_count = s.desired_count;
    blue.updated_at_ms = now;
    store.save_deployment(&blue)?;
    service_back_to(store, s, target, now)
}

/// A blue/green deployment's next lifecycle stage, if it moves on now (at most one stage a
/// scheduler pass, so each is seen): from SCALE_UP and from POST_TEST_TRAFFIC_SHIFT once
/// its tasks are `ready` (the desired count running, and healthy in their target groups
/// that are in use: the alternate group may be in use only from the test traffic shift),
/// from BAKE_TIME once `bake_ms` passed in it, none after CLEAN_UP (the deployment
/// completes when the blue tasks are gone). Ref: ecs.json
/// `ServiceDeploymentLifecycleStage`.
pub fn next_stage(
    stage: LifecycleStage,
    since_ms: i64,
    now_ms: i64,
    ready: bool,
    bake_ms: i64,
) -> Option<LifecycleStage> {
    use LifecycleStage as L;
    match stage {
        L::PreScaleUp => Some(L::ScaleUp),
        L::ScaleUp => ready.then_some(L::PostScaleUp),
        L::PostScaleUp => Some(L::TestTrafficShift),
        L::TestTrafficShift => Some(L::PostTestTrafficShift),
        L::PostTestTrafficShift => ready.then_some(L::ProductionTrafficShift),
        L::ProductionTrafficShift => Some(L::PostProductionTrafficShift),
        L::PostProductionTrafficShift => Some(L::BakeTime),
        L::BakeTime => (now_ms.saturating_sub(since_ms) >= bake_ms).then_some(L::CleanUp),
        L::CleanUp => None,
    }
}

/// The production traffic's steps, in thousandths on green, and the wait in minutes after
/// each step but the last: BLUE_GREEN all at once; LINEAR `stepPercent` more at each step
/// (default 10.0) every `stepBakeTimeInMinutes` (default 6; "not applied after reaching
/// 100 percent traffic"); CANARY `canaryPercent` (default 5.0) for
/// `canaryBakeTimeInMinutes` (default 10), then the rest. Ref: ecs.json
/// `LinearConfiguration`, `CanaryConfiguration`.
pub fn production_steps(c: &crate::store::DeploymentConfiguration) -> (Vec<i64>, i64) {
    use crate::store::DeploymentStrategy as S;
    let permille = |p: f64| ((p * 10.0).round() as i64).clamp(1, 1000);
    match c.strategy {
        Some(S::Linear) => {
            let l = c.linear_configuration.unwrap_or_default();
            let step = permille(l.step_percent.unwrap_or(10.0));
            let mut steps: Vec<i64> = (1..).map(|k| k * step).take_while(|s| *s < 1000).collect();
            steps.push(1000);
            (steps, l.step_bake_time_in_minutes.unwrap_or(6))
        }
        Some(S::Canary) => {
            let k = c.canary_configuration.unwrap_or_default();
            let first = permille(k.canary_percent.unwrap_or(5.0));
            let steps = if first >= 1000 {
                vec![1000]
            } else {
                vec![first, 1000]
            };
            (steps, k.canary_bake_time_in_minutes.unwrap_or(10))
        }
        _ => (vec![1000], 0),
    }
}

/// A blue/green deployment's record after this pass, if it moves on: the next stage
/// (`next_stage`), or in PRODUCTION_TRAFFIC_SHIFT the next of `steps` once `step_wait_ms`
/// passed since the last one (the first is taken on entering the stage; the stage ends
/// the pass after the last).
pub fn advance(
    rec: BlueGreenRecord,
    now_ms: i64,
    ready: bool,
    bake_ms: i64,
    steps: &[i64],
    step_wait_ms: i64,
) -> Option<BlueGreenRecord> {
    use LifecycleStage as L;
    let first = steps.first().copied().unwrap_or(1000);
    match rec.stage {
        L::PostTestTrafficShift => ready.then_some(BlueGreenRecord {
            stage: L::ProductionTrafficShift,
            stage_at_ms: now_ms,
            production_permille: first,
            step_at_ms: now_ms,
            ..rec
        }),
        L::ProductionTrafficShift if rec.production_permille >= 1000 => Some(BlueGreenRecord {
            stage: L::PostProductionTrafficShift,
            stage_at_ms: now_ms,
            ..rec
        }),
        L::ProductionTrafficShift => {
            (now_ms.saturating_sub(rec.step_at_ms) >= step_wait_ms).then(|| BlueGreenRecord {
                production_permille: steps
                    .iter()
                    .copied()
                    .find(|s| *s > rec.production_permille)
                    .unwrap_or(1000),
                step_at_ms: now_ms,
                ..rec
            })
        }
        s => next_stage(s, rec.stage_at_ms, now_ms, ready, bake_ms).map(|n| BlueGreenRecord {
            stage: n,
            stage_at_ms: now_ms,
            ..rec
        }),
    }
}

/// Where a blue/green service's traffic goes: the thousandths of its (production, test)
/// traffic on the PRIMARY deployment's side of the target group pairs, the rest on the
/// last completed deployment's (blue). Test traffic moves at TEST_TRAFFIC_SHIFT,
/// production traffic at PRODUCTION_TRAFFIC_SHIFT (by its steps); all of it is green's
/// once it completed, blue's if it failed. `all`: the service's deployments, newest
/// first.
pub fn traffic(primary: &DeploymentRow, all: &[DeploymentRow]) -> (i64, i64) {
    let mine = super::services::side(primary);
    let serving = all
        .iter()
        .find(|d| d.id != primary.id && d.rollout_state == RolloutState::Completed)
        .map(super::services::side)
        .unwrap_or(mine);
    if serving == mine {
        return (1000, 1000);
    }
    match primary.rollout_state {
        RolloutState::Completed => (1000, 1000),
        RolloutState::Failed => (0, 0),
        RolloutState::InProgress => {
            let Some(b) = primary.sd.blue_green else {
                return (0, 0);
            };
            use LifecycleStage as L;
            let test = if b.stage >= L::TestTrafficShift {
                1000
            } else {
                0
            };
            let production = match b.stage {
                s if s < L::ProductionTrafficShift => 0,
                L::ProductionTrafficShift => b.production_permille,
                _ => 1000,
            };
            (production, test)
        }
    }
}

/// The circuit breaker trips on deployment `d` (the PRIMARY, IN_PROGRESS) of service `s`:
/// `d` is FAILED and launches no more tasks; with `rollback`, a new deployment takes the
/// service back to the last COMPLETED one's task definition. A rollback that fails is not
/// rolled back again: the failed deployment's service deployment is ROLLBACK_FAILED.
/// Returns whether a rollback started. Its writes belong together: the scheduler runs it
/// inside its pass's transaction (`scheduler::commit`), so a failure midway leaves none of
/// them. Ref: API_DeploymentCircuitBreaker ("a service
/// deployment will transition to a failed state and stop launching new tasks … roll back
/// your service to the last completed deployment after a failure").
pub fn trip(
    store: &mut Store,
    s: &ServiceRow,
    d: &mut DeploymentRow,
    rollback: bool,
    why: &Tripped,
) -> anyhow::Result<bool> {
    let now = now_ms();
    d.rollout_state = RolloutState::Failed;
    d.rollout_state_reason = why.rollout_reason();
    match why {
        Tripped::CircuitBreaker => d.sd.circuit_breaker_triggered = true,
        Tripped::Alarms(names) => d.sd.triggered_alarms = names.clone(),
    }
    d.updated_at_ms = now;
    record_event(
        store,
        &s.cluster,
        &s.name,
        format!(
            "(service {}) (deployment {}) deployment failed: {}",
            s.name,
            d.id,
            why.event()
        ),
    )?;
    if let Some(of) = d.sd.rollback_of.clone() {
        store.save_deployment(d)?;
        if let Some(mut failed) = store.deployment(&of)? {
            failed.sd.status = Some(ServiceDeploymentStatus::RollbackFailed);
            failed.sd.finished_at_ms = Some(now);
            failed.updated_at_ms = now;
            store.save_deployment(&failed)?;
        }
        return Ok(false);
    }
    if rollback && let Some(target) = last_completed(store, s, &d.id)? {
        let reason = why.rolled_back();
        roll_back(store, s, d, &target, &reason, why.rolling_back(&target.id))?;
        return Ok(true);
    }
    d.sd.status = Some(ServiceDeploymentStatus::Stopped);
    d.sd.status_reason = Some(why.stopped());
    d.sd.stopped_at_ms = Some(now);
    d.sd.finished_at_ms = Some(now);
    store.save_deployment(d)?;
    Ok(false)
}

/// Deployment `d` reached a steady state (COMPLETED, saved by the caller): its service
/// deployment finished; the one it rolled back is ROLLBACK_SUCCESSFUL.
pub fn completed(store: &mut Store, d: &mut DeploymentRow) -> anyhow::Result<()> {
    let now = now_ms();
    d.sd.finished_at_ms = Some(now);
    if let Some(of) = d.sd.rollback_of.clone()
        && let Some(mut failed) = store.deployment(&of)?
    {
        failed.sd.status = Some(ServiceDeploymentStatus::RollbackSuccessful);
        failed.sd.finished_at_ms = Some(now);
        failed.updated_at_ms = now;
        store.save_deployment(&failed)?;
    }
    Ok(())
}

/// A deployment's service deployment status: the one set, or its rolloutState's.
pub fn status(d: &DeploymentRow) -> ServiceDeploymentStatus {
    d.sd.status.unwrap_or(match d.rollout_state {
        RolloutState::InProgress => ServiceDeploymentStatus::InProgress,
        RolloutState::Completed => ServiceDeploymentStatus::Successful,
        RolloutState::Failed => ServiceDeploymentStatus::Stopped,
    })
}

/// The service deployment id of `d`; none for the deployment a rollback started (part of
/// the failed one's). A deployment from before this record existed uses its digits.
fn sd_id(d: &DeploymentRow) -> Option<String> {
    if d.sd.rollback_of.is_some() {
        None
    } else if d.sd.id.is_empty() {
        Some(digits(&d.id).to_string())
    } else {
        Some(d.sd.id.clone())
    }
}

/// `ecs-svc/4980306466373577095` → `4980306466373577095`: the service revision's id.
fn digits(deployment: &str) -> &str {
    deployment.strip_prefix("ecs-svc/").unwrap_or(deployment)
}

fn sd_arn(ctx: &AwsContext, d: &DeploymentRow, id: &str) -> String {
    ctx.ecs_arn(&format!(
        "service-deployment/{}/{}/{id}",
        d.cluster, d.service
    ))
}

fn revision_arn(ctx: &AwsContext, cluster: &str, service: &str, deployment: &str) -> String {
    ctx.ecs_arn(&format!(
        "service-revision/{cluster}/{service}/{}",
        digits(deployment)
    ))
}

/// `arn:…:service-deployment/<cluster>/<service>/<id>` (or `service-revision/…`) → its
/// three parts.
fn parse_arn<'a>(arn: &'a str, kind: &str) -> Option<(&'a str, &'a str, &'a str)> {
    let rest = arn.split_once(&format!(":{kind}/"))?.1;
    let mut parts = rest.splitn(3, '/');
    let (c, s, id) = (parts.next()?, parts.next()?, parts.next()?);
    (!c.is_empty() && !s.is_empty() && !id.is_empty() && !id.contains('/')).then_some((c, s, id))
}

fn cluster_of(c: Option<&str>) -> String {
    cluster_name(c.filter(|c| !c.is_empty()).unwrap_or(names::DEFAULT)).to_string()
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedAtFilter {
    before: Option<Timestamp>,
    after: Option<Timestamp>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListServiceDeploymentsRequest {
    service: String,
    cluster: Option<String>,
    status: Option<Vec<String>>,
    created_at: Option<CreatedAtFilter>,
    next_token: Option<String>,
    max_results: Option<i64>,
}

/// ecs.json `ServiceDeploymentBrief`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceDeploymentBrief {
    service_deployment_arn: String,
    service_arn: String,
    cluster_arn: String,
    started_at: Timestamp,
    created_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    finished_at: Option<Timestamp>,
    target_service_revision_arn: String,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_reason: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListServiceDeploymentsResponse {
    service_deployments: Vec<ServiceDeploymentBrief>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

fn cluster_arn(ctx: &AwsContext, cluster: &str) -> String {
    ctx.ecs_arn(&format!("cluster/{cluster}"))
}

/// A service of the request, in any status (a deleted service's deployments stay
/// listed), or ServiceNotFoundException.
fn service_row(store: &Store, cluster: &str, service: &str) -> EcsResult<ServiceRow> {
    super::clusters::check_cluster(store, cluster)?;
    store
        .service(cluster, service_name(service))
        .map_err(|e| EcsError::Server(e.into()))?
        .ok_or_else(|| {
            EcsError::ServiceNotFound(format!(
                "{SERVICE_NOT_FOUND} ({} in cluster {cluster})",
                service_name(service)
            ))
        })
}

/// ListServiceDeployments: the service's deployments, newest first, 20 a page unless
/// asked. Ref: ecs.json `ListServiceDeploymentsRequest`.
pub fn list_service_deployments(
    ecs: &Ecs,
    req: &ListServiceDeploymentsRequest,
) -> EcsResult<ListServiceDeploymentsResponse> {
    if req.service.is_empty() {
        return Err(EcsError::invalid(
            "service: a service name or ARN is required",
        ));
    }
    let wanted: Option<Vec<ServiceDeploymentStatus>> = req
        .status
        .as_ref()
        .map(|l| {
            l.iter()
                .map(|s| {
                    serde_json::from_value(Value::String(s.clone())).map_err(|_| {
                        EcsError::invalid(format!(
                            "status {s:?}: must be one of PENDING, SUCCESSFUL, STOPPED, \
                             STOP_REQUESTED, IN_PROGRESS, ROLLBACK_REQUESTED, \
                             ROLLBACK_IN_PROGRESS, ROLLBACK_SUCCESSFUL, ROLLBACK_FAILED"
                        ))
                    })
                })
                .collect::<EcsResult<Vec<_>>>()
        })
        .transpose()?;
    let ctx = AwsContext::from_env();
    let store = ecs.open_store()?;
    let cluster = cluster_of(req.cluster.as_deref());
    let s = service_row(&store, &cluster, &req.service)?;
    let all = store
        .all_deployments(&s.cluster, &s.name)
        .map_err(|e| EcsError::Server(e.into()))?;
    let (before, after) = req
        .created_at
        .as_ref()
        .map(|c| (c.before, c.after))
        .unwrap_or_default();
    let briefs: Vec<ServiceDeploymentBrief> = all
        .iter()
        .filter(|d| wanted.as_ref().is_none_or(|w| w.contains(&status(d))))
        .filter(|d| before.is_none_or(|b| Timestamp::from_ms(d.created_at_ms) <= b))
        .filter(|d| after.is_none_or(|a| Timestamp::from_ms(d.created_at_ms) >= a))
        .filter_map(|d| {
            let id = sd_id(d)?;
            Some(ServiceDeploymentBrief {
                service_deployment_arn: sd_arn(&ctx, d, &id),
                service_arn: s.arn.clone(),
                cluster_arn: cluster_arn(&ctx, &s.cluster),
                started_at: Timestamp::from_ms(d.created_at_ms),
                created_at: Timestamp::from_ms(d.created_at_ms),
                finished_at: d.sd.finished_at_ms.map(Timestamp::from_ms),
                target_service_revision_arn: revision_arn(&ctx, &s.cluster, &s.name, &d.id),
                status: status(d).as_str(),
                status_reason: d.sd.status_reason.clone(),
            })
        })
        .collect();
    let (service_deployments, next_token) =
        super::page(briefs, req.max_results, 20, req.next_token.as_deref())?;
    Ok(ListServiceDeploymentsResponse {
        service_deployments,
        next_token,
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeServiceDeploymentsRequest {
    service_deployment_arns: Vec<String>,
}

/// ecs.json `ServiceRevisionSummary`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceRevisionSummary {
    arn: String,
    requested_task_count: i64,
    running_task_count: usize,
    pending_task_count: usize,
}

/// ecs.json `Rollback`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RollbackShape {
    reason: String,
    started_at: Timestamp,
    service_revision_arn: String,
}

/// ecs.json `ServiceDeploymentCircuitBreaker`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CircuitBreakerState {
    status: &'static str,
    failure_count: i64,
    threshold: i64,
}

/// ecs.json `ServiceDeployment`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceDeployment {
    service_deployment_arn: String,
    service_arn: String,
    cluster_arn: String,
    created_at: Timestamp,
    started_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    finished_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stopped_at: Option<Timestamp>,
    updated_at: Timestamp,
    source_service_revisions: Vec<ServiceRevisionSummary>,
    target_service_revision: ServiceRevisionSummary,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_reason: Option<String>,
    deployment_configuration: Value,
    /// A blue/green deployment's stage (ecs.json `ServiceDeploymentLifecycleStage`).
    #[serde(skip_serializing_if = "Option::is_none")]
    lifecycle_stage: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rollback: Option<RollbackShape>,
    deployment_circuit_breaker: CircuitBreakerState,
    alarms: Value,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeServiceDeploymentsResponse {
    service_deployments: Vec<ServiceDeployment>,
    failures: Vec<Failure>,
}

/// Deployment `id`'s tasks: (RUNNING, PROVISIONING or PENDING).
fn task_counts(store: &Store, d: &DeploymentRow) -> anyhow::Result<(usize, usize)> {
    let tasks =
        super::fleet::get().group_tasks(store, &d.cluster, &format!("service:{}", d.service))?;
    let mine = tasks
        .iter()
        .filter(|t| t.row.started_by.as_deref() == Some(d.id.as_str()));
    let running = mine
        .clone()
        .filter(|t| t.row.last_status == LastStatus::Running)
        .count();
    let pending = mine
        .filter(|t| {
            matches!(
                t.row.last_status,
                LastStatus::Provisioning | LastStatus::Pending
            )
        })
        .count();
    Ok((running, pending))
}

fn summary(
    ctx: &AwsContext,
    store: &Store,
    d: &DeploymentRow,
) -> anyhow::Result<ServiceRevisionSummary> {
    let (running, pending) = task_counts(store, d)?;
    Ok(ServiceRevisionSummary {
        arn: revision_arn(ctx, &d.cluster, &d.service, &d.id),
        requested_task_count: d.desired_count,
        running_task_count: running,
        pending_task_count: pending,
    })
}

/// The deployment of service deployment `arn`, if there is one.
fn find_sd(store: &Store, arn: &str) -> anyhow::Result<Option<DeploymentRow>> {
    let Some((cluster, service, id)) = parse_arn(arn, "service-deployment") else {
        return Ok(None);
    };
    Ok(store
        .all_deployments(cluster, service)?
        .into_iter()
        .find(|d| sd_id(d).as_deref() == Some(id)))
}

fn describe_one(
    ctx: &AwsContext,
    store: &Store,
    d: &DeploymentRow,
) -> anyhow::Result<ServiceDeployment> {
    let id = sd_id(d).unwrap_or_default();
    let service_arn = ctx.ecs_arn(&format!("service/{}/{}", d.cluster, d.service));
    let mut sources = Vec::new();
    for s in &d.sd.sources {
        if let Some(src) = store.deployment(s)? {
            sources.push(summary(ctx, store, &src)?);
        }
    }
    let config =
        d.sd.spec
            .as_ref()
            .map(|s| s.deployment_configuration.clone())
            .unwrap_or_default();
    let breaker = config.deployment_circuit_breaker.unwrap_or_default();
    let cb_status = if !breaker.enable {
        "DISABLED"
    } else if d.sd.circuit_breaker_triggered {
        "TRIGGERED"
    } else if d.rollout_state == RolloutState::InProgress {
        "MONITORING"
    } else {
        "MONITORING_COMPLETE"
    };
    let rollback = d.sd.rollback.as_ref().map(|r| RollbackShape {
        reason: r.reason.clone(),
        started_at: Timestamp::from_ms(r.started_at_ms),
        service_revision_arn: revision_arn(ctx, &d.cluster, &d.service, &r.to),
    });
    Ok(ServiceDeployment {
        service_deployment_arn: sd_arn(ctx, d, &id),
        service_arn,
        cluster_arn: cluster_arn(ctx, &d.cluster),
        created_at: Timestamp::from_ms(d.created_at_ms),
        started_at: Timestamp::from_ms(d.created_at_ms),
        finished_at: d.sd.finished_at_ms.map(Timestamp::from_ms),
        stopped_at: d.sd.stopped_at_ms.map(Timestamp::from_ms),
        updated_at: Timestamp::from_ms(d.updated_at_ms),
        source_service_revisions: sources,
        target_service_revision: summary(ctx, store, d)?,
        status: status(d).as_str(),
        status_reason: d.sd.status_reason.clone(),
        deployment_configuration: {
            let mut c = serde_json::json!({
                "deploymentCircuitBreaker": {"enable": breaker.enable, "rollback": breaker.rollback},
                "maximumPercent": config.maximum_percent,
                "minimumHealthyPercent": config.minimum_healthy_percent,
            });
            if let Some(a) = &config.alarms {
                c["alarms"] = serde_json::json!(a);
            }
            c["strategy"] = serde_json::json!(
                config
                    .strategy
                    .unwrap_or(crate::store::DeploymentStrategy::Rolling)
                    .as_str()
            );
            if let Some(b) = config.bake_time_in_minutes {
                c["bakeTimeInMinutes"] = serde_json::json!(b);
            }
            if let Some(h) = &config.lifecycle_hooks {
                c["lifecycleHooks"] = h.clone();
            }
            if let Some(l) = &config.linear_configuration {
                c["linearConfiguration"] = serde_json::json!(l);
            }
            if let Some(k) = &config.canary_configuration {
                c["canaryConfiguration"] = serde_json::json!(k);
            }
            c
        },
        lifecycle_stage: d.sd.blue_green.map(|b| b.stage.as_str()),
        rollback,
        deployment_circuit_breaker: CircuitBreakerState {
            status: cb_status,
            failure_count: d.sd.failure_count,
            threshold: threshold(d.desired_count),
        },
        alarms: alarms_state(d, config.alarms.as_ref()),
    })
}

/// ecs.json `ServiceDeploymentAlarms`: DISABLED without enabled alarms, TRIGGERED once
/// one failed the deployment, MONITORING while it runs (and bakes), then
/// MONITORING_COMPLETE.
fn alarms_state(d: &DeploymentRow, alarms: Option<&crate::store::DeploymentAlarms>) -> Value {
    let Some(a) = alarms.filter(|a| a.enable) else {
        return serde_json::json!({"status": "DISABLED"});
    };
    let status = if !d.sd.triggered_alarms.is_empty() {
        "TRIGGERED"
    } else if d.rollout_state == RolloutState::InProgress {
        "MONITORING"
    } else {
        "MONITORING_COMPLETE"
    };
    let mut v = serde_json::json!({"status": status, "alarmNames": a.alarm_names});
    if !d.sd.triggered_alarms.is_empty() {
        v["triggeredAlarmNames"] = serde_json::json!(d.sd.triggered_alarms);
    }
    v
}

fn check_arn_count(n: usize, member: &str) -> EcsResult<()> {
    if n == 0 || n > 20 {
        return Err(EcsError::invalid(format!(
            "{member}: between 1 and 20 ARNs (got {n})"
        )));
    }
    Ok(())
}

/// DescribeServiceDeployments: up to 20; an unknown ARN is a MISSING failure.
pub fn describe_service_deployments(
    ecs: &Ecs,
    req: &DescribeServiceDeploymentsRequest,
) -> EcsResult<DescribeServiceDeploymentsResponse> {
    check_arn_count(req.service_deployment_arns.len(), "serviceDeploymentArns")?;
    let ctx = AwsContext::from_env();
    let mut store = ecs.open_store()?;
    ecs.reconcile(&mut store);
    let mut service_deployments = Vec::new();
    let mut failures = Vec::new();
    for arn in &req.service_deployment_arns {
        match find_sd(&store, arn)? {
            Some(d) => service_deployments.push(describe_one(&ctx, &store, &d)?),
            None => failures.push(Failure::missing(arn.clone())),
        }
    }
    Ok(DescribeServiceDeploymentsResponse {
        service_deployments,
        failures,
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StopServiceDeploymentRequest {
    service_deployment_arn: String,
    stop_type: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StopServiceDeploymentResponse {
    service_deployment_arn: String,
}

/// StopServiceDeployment with the ROLLBACK stop type (the default; ECS's only valid
/// value): an IN_PROGRESS deployment rolls back to the last completed one; one already
/// rolling back continues. Ref: developerguide/stop-service-deployment.html.
pub fn stop_service_deployment(
    ecs: &Ecs,
    req: &StopServiceDeploymentRequest,
) -> EcsResult<StopServiceDeploymentResponse> {
    match req.stop_type.as_deref() {
        None | Some("ROLLBACK") => {}
        Some("ABORT") => {
            return Err(EcsError::invalid(
                "stopType ABORT: not supported for a rolling update deployment (the valid \
                 value is ROLLBACK)",
            ));
        }
        Some(o) => {
            return Err(EcsError::invalid(format!(
                "stopType {o:?}: must be ROLLBACK"
            )));
        }
    }
    let arn = &req.service_deployment_arn;
    let mut store = ecs.open_store()?;
    let Some(mut d) = find_sd(&store, arn)? else {
        return Err(EcsError::ServiceDeploymentNotFound(format!(
            "The service deployment does not exist. ({arn})"
        )));
    };
    let answer = StopServiceDeploymentResponse {
        service_deployment_arn: arn.clone(),
    };
    match status(&d) {
        ServiceDeploymentStatus::Pending | ServiceDeploymentStatus::InProgress => {}
        ServiceDeploymentStatus::StopRequested
        | ServiceDeploymentStatus::RollbackRequested
        | ServiceDeploymentStatus::RollbackInProgress => return Ok(answer),
        other => {
            return Err(EcsError::Conflict(format!(
                "The service deployment is {}: only a PENDING or IN_PROGRESS one can be \
                 stopped. ({arn})",
                other.as_str()
            )));
        }
    }
    let s = store
        .service(&d.cluster, &d.service)
        .map_err(|e| EcsError::Server(e.into()))?
        .filter(|s| s.status == crate::store::ServiceStatus::Active)
        .ok_or_else(|| EcsError::Conflict(format!("The service of {arn} is not ACTIVE.")))?;
    let Some(target) = last_completed(&store, &s, &d.id)? else {
        return Err(EcsError::Conflict(format!(
            "The service has no completed deployment to roll back to. ({arn})"
        )));
    };
    if d.status != DeploymentStatus::Primary {
        return Err(EcsError::Conflict(format!(
            "A newer deployment of the service has started. ({arn})"
        )));
    }
    d.rollout_state = RolloutState::Failed;
    d.rollout_state_reason = STOP_REQUEST_REASON.into();
    let rolling = Tripped::CircuitBreaker.rolling_back(&target.id);
    // The failed deployment, the one rolling back and the service change together.
    store.in_transaction("roll back a service deployment", |store| {
        roll_back(store, &s, &mut d, &target, STOP_REQUEST_REASON, rolling)
    })?;
    changed();
    Ok(answer)
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeServiceRevisionsRequest {
    service_revision_arns: Vec<String>,
}

/// ecs.json `ServiceRevision` (the members this host has).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceRevision {
    service_revision_arn: String,
    service_arn: String,
    cluster_arn: String,
    task_definition: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    capacity_provider_strategy: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    launch_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    platform_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    platform_family: Option<String>,
    load_balancers: Vec<Value>,
    service_registries: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    network_configuration: Option<Value>,
    container_images: Vec<Value>,
    guard_duty_enabled: bool,
    created_at: Timestamp,
    /// A blue/green revision's target groups (its side of each pair) and production rules.
    #[serde(skip_serializing_if = "Option::is_none")]
    resolved_configuration: Option<Value>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeServiceRevisionsResponse {
    service_revisions: Vec<ServiceRevision>,
    failures: Vec<Failure>,
}

fn revision(
    ctx: &AwsContext,
    store: &Store,
    d: &DeploymentRow,
    current: &ServiceSpec,
) -> anyhow::Result<ServiceRevision> {
    let spec = d.sd.spec.as_ref().unwrap_or(current);
    let fargate = spec.fargate();
    let list = |k: &str| match spec.not_applied.get(k) {
        Some(Value::Array(a)) => a.clone(),
        _ => Vec::new(),
    };
    let container_images = match crate::taskdef::arn::TaskDefRef::parse(&d.task_definition_arn) {
        Ok(crate::taskdef::arn::TaskDefRef::Revision(family, rev)) => store
            .task_definition(&family, Some(rev))?
            .and_then(|t| t.definition.container_definitions)
            .unwrap_or_default()
            .iter()
            .map(|c| serde_json::json!({"containerName": c.name, "image": c.image}))
            .collect(),
        _ => Vec::new(),
    };
    Ok(ServiceRevision {
        service_revision_arn: revision_arn(ctx, &d.cluster, &d.service, &d.id),
        service_arn: ctx.ecs_arn(&format!("service/{}/{}", d.cluster, d.service)),
        cluster_arn: cluster_arn(ctx, &d.cluster),
        task_definition: d.task_definition_arn.clone(),
        capacity_provider_strategy: spec.capacity_provider_strategy.clone(),
        launch_type: spec.launch_type.clone(),
        platform_version: fargate.then(|| spec.platform_version.clone().unwrap_or("LATEST".into())),
        platform_family: fargate.then(|| "Linux".to_string()),
        load_balancers: list("loadBalancers"),
        service_registries: list("serviceRegistries"),
        network_configuration: spec
            .network_configuration
            .clone()
            .map(|a| serde_json::json!({ "awsvpcConfiguration": a })),
        container_images,
        guard_duty_enabled: false,
        created_at: Timestamp::from_ms(d.created_at_ms),
        // Ref: ecs.json `ResolvedConfiguration`, `ServiceRevisionLoadBalancer`.
        resolved_configuration: d.sd.blue_green.map(|b| {
            let lbs: Vec<Value> = super::services::lb_pairs(spec)
                .into_iter()
                .map(|p| {
                    serde_json::json!({
                        "targetGroupArn": if b.alternate { p.alternate } else { p.primary },
                        "productionListenerRule": p.production,
                    })
                })
                .collect();
            serde_json::json!({ "loadBalancers": lbs })
        }),
    })
}

/// DescribeServiceRevisions: a service revision is a deployment's settings; its id is the
/// deployment's digits (`ecs-svc/<id>`). An unknown ARN is a MISSING failure.
pub fn describe_service_revisions(
    ecs: &Ecs,
    req: &DescribeServiceRevisionsRequest,
) -> EcsResult<DescribeServiceRevisionsResponse> {
    check_arn_count(req.service_revision_arns.len(), "serviceRevisionArns")?;
    let ctx = AwsContext::from_env();
    let store = ecs.open_store()?;
    let mut service_revisions = Vec::new();
    let mut failures = Vec::new();
    for arn in &req.service_revision_arns {
        let found = match parse_arn(arn, "service-revision") {
            Some((cluster, service, id)) => store
                .deployment(&format!("ecs-svc/{id}"))
                .map_err(|e| EcsError::Server(e.into()))?
                .filter(|d| d.cluster == cluster && d.service == service)
                .zip(
                    store
                        .service(cluster, service)
                        .map_err(|e| EcsError::Server(e.into()))?,
                ),
            None => None,
        };
        match found {
            Some((d, s)) => service_revisions.push(revision(&ctx, &store, &d, &s.spec)?),
            None => failures.push(Failure::missing(arn.clone())),
        }
    }
    Ok(DescribeServiceRevisionsResponse {
        service_revisions,
        failures,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn the_threshold_is_half_the_desired_count_within_3_and_200() {
        assert_eq!(threshold(0), 3);
        assert_eq!(threshold(1), 3);
        assert_eq!(threshold(6), 3);
        assert_eq!(threshold(7), 4);
        assert_eq!(threshold(25), 13);
        assert_eq!(threshold(400), 200);
        assert_eq!(threshold(1000), 200);
    }

    #[test]
    fn the_breaker_trips_on_the_failed_tasks_the_deployment_shows() {
        // (failures counted, tasks that never ran, rollout, desired) → failedTasks, trips
        for (counted, never_ran, state, desired, shown, trips) in [
            (3, 0, RolloutState::InProgress, 1, 3, true),
            (2, 0, RolloutState::InProgress, 1, 2, false),
            // Tasks that never reached RUNNING (an earlier serve saw them fail): the shown
            // count reaches 3 while the failures counted here are 1; it trips.
            (1, 3, RolloutState::InProgress, 1, 3, true),
            (0, 4, RolloutState::InProgress, 7, 4, true),
            (0, 3, RolloutState::InProgress, 7, 3, false),
            (5, 5, RolloutState::Completed, 1, 5, false),
        ] {
            let mut d = deployment("ecs-svc/1", "td:1", 1);
            d.status = DeploymentStatus::Primary;
            d.rollout_state = state;
            d.sd.failure_count = counted;
            d.failed_tasks = failed_tasks(counted, never_ran);
            assert_eq!(d.failed_tasks, shown, "{counted} {never_ran}");
            assert_eq!(
                breaker_trips(&d, desired),
                trips,
                "{counted} {never_ran} {desired}"
            );
        }
    }

    /// Service web of the default cluster, of 1 task of `td`.
    pub(crate) fn service(td: &str) -> ServiceRow {
        ServiceRow {
            cluster: "default".into(),
            name: "web".into(),
            arn: "arn:aws:ecs:us-east-1:1:service/default/web".into(),
            task_definition_arn: td.into(),
            desired_count: 1,
            ..Default::default()
        }
    }

    /// Deployment `id` of service web, of `td`, created at `at`.
    pub(crate) fn deployment(id: &str, td: &str, at: i64) -> DeploymentRow {
        DeploymentRow {
            id: id.into(),
            cluster: "default".into(),
            service: "web".into(),
            task_definition_arn: td.into(),
            desired_count: 1,
            created_at_ms: at,
            updated_at_ms: at,
            sd: ServiceDeploymentRecord {
                id: format!("sd-{at}"),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn a_tripped_deployment_rolls_back_to_the_last_completed_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        store.create_cluster("default", "arn:c", 1).unwrap();
        let mut good = deployment("ecs-svc/1", "td:1", 1);
        assert!(store.create_service(&service("td:1"), &good).unwrap());
        good.rollout_state = RolloutState::Completed;
        store.save_deployment(&good).unwrap();
        store
            .start_deployment(&deployment("ecs-svc/2", "td:2", 2))
            .unwrap();
        let s = service("td:2");
        let mut bad = store.deployment("ecs-svc/2").unwrap().unwrap();
        assert!(trip(&mut store, &s, &mut bad, true, &Tripped::CircuitBreaker).unwrap());

        let failed = store.deployment("ecs-svc/2").unwrap().unwrap();
        assert_eq!(failed.status, DeploymentStatus::Active);
        assert_eq!(failed.rollout_state, RolloutState::Failed);
        assert_eq!(failed.rollout_state_reason, FAILED_REASON);
        assert_eq!(status(&failed), ServiceDeploymentStatus::RollbackInProgress);
        let r = failed.sd.rollback.clone().unwrap();
        assert_eq!(
            (r.to.as_str(), r.reason.as_str()),
            ("ecs-svc/1", ROLLED_BACK_REASON)
        );
        let ds = store.deployments("default", "web").unwrap();
        let mut back = ds[0].clone();
        assert_eq!(back.id, r.by);
        assert_eq!(back.status, DeploymentStatus::Primary);
        assert_eq!(back.task_definition_arn, "td:1");
        assert_eq!(
            back.rollout_state_reason,
            "ECS deployment circuit breaker: rolling back to deploymentId ecs-svc/1."
        );
        assert_eq!(back.sd.rollback_of.as_deref(), Some("ecs-svc/2"));
        assert_eq!(sd_id(&back), None, "part of the failed service deployment");
        let svc = store.service("default", "web").unwrap().unwrap();
        assert_eq!(svc.task_definition_arn, "td:1");
        let events: Vec<String> = store
            .service_events("default", "web")
            .unwrap()
            .into_iter()
            .map(|e| e.message)
            .collect();
        assert_eq!(
            events,
            [
                "(service web) rolling back to deployment ecs-svc/1.",
                "(service web) (deployment ecs-svc/2) deployment failed: tasks failed to start.",
            ]
        );

        back.rollout_state = RolloutState::Completed;
        completed(&mut store, &mut back).unwrap();
        let failed = store.deployment("ecs-svc/2").unwrap().unwrap();
        assert_eq!(status(&failed), ServiceDeploymentStatus::RollbackSuccessful);
        assert!(failed.sd.finished_at_ms.is_some());
    }

    #[test]
    fn without_a_completed_deployment_or_rollback_a_trip_only_fails() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        store.create_cluster("default", "arn:c", 1).unwrap();
        assert!(
            store
                .create_service(&service("td:1"), &deployment("ecs-svc/1", "td:1", 1))
                .unwrap()
        );
        let s = service("td:1");
        let mut d = store.deployment("ecs-svc/1").unwrap().unwrap();
        assert!(!trip(&mut store, &s, &mut d, true, &Tripped::CircuitBreaker).unwrap());
        let d = store.deployment("ecs-svc/1").unwrap().unwrap();
        assert_eq!(d.status, DeploymentStatus::Primary);
        assert_eq!(d.rollout_state, RolloutState::Failed);
        assert_eq!(status(&d), ServiceDeploymentStatus::Stopped);
        assert_eq!(store.deployments("default", "web").unwrap().len(), 1);
    }

    #[test]
    fn a_blue_green_deployment_moves_one_stage_a_pass_and_waits_for_green_and_the_bake() {
        use LifecycleStage as L;
        assert_eq!(next_stage(L::PreScaleUp, 0, 0, false, 0), Some(L::ScaleUp));
        assert_eq!(
            next_stage(L::ScaleUp, 0, 9, false, 0),
            None,
            "green not ready"
        );
        assert_eq!(next_stage(L::ScaleUp, 0, 9, true, 0), Some(L::PostScaleUp));
        assert_eq!(
            next_stage(L::PostTestTrafficShift, 0, 9, false, 0),
            None,
            "green not healthy under test traffic"
        );
        let mut s = L::PostScaleUp;
        let mut seen = vec![s];
        while let Some(n) = next_stage(s, 0, 0, true, 5_000) {
            s = n;
            seen.push(s);
        }
        assert_eq!(
            seen,
            [
                L::PostScaleUp,
                L::TestTrafficShift,
                L::PostTestTrafficShift,
                L::ProductionTrafficShift,
                L::PostProductionTrafficShift,
                L::BakeTime
            ],
            "the bake time holds it"
        );
        assert_eq!(next_stage(L::BakeTime, 1_000, 5_999, true, 5_000), None);
        assert_eq!(
            next_stage(L::BakeTime, 1_000, 6_000, true, 5_000),
            Some(L::CleanUp)
        );
        assert_eq!(next_stage(L::CleanUp, 0, 99_999, true, 0), None);
    }

    #[test]
    fn traffic_goes_to_green_by_stage_and_back_to_blue_when_it_fails() {
        let with = |id: &str, at: i64, state, stage, alternate, permille| {
            let mut d = deployment(id, "td", at);
            d.rollout_state = state;
            d.sd.blue_green = Some(BlueGreenRecord {
                stage,
                stage_at_ms: 0,
                alternate,
                production_permille: permille,
                step_at_ms: 0,
            });
            d
        };
        use LifecycleStage as L;
        use RolloutState::{Completed, Failed, InProgress};
        let blue = with("ecs-svc/1", 1, Completed, L::CleanUp, false, 1000);
        let all = |g: &DeploymentRow| vec![g.clone(), blue.clone()];
        let green = with("ecs-svc/2", 2, InProgress, L::ScaleUp, true, 0);
        assert_eq!(traffic(&green, &all(&green)), (0, 0));
        let green = with("ecs-svc/2", 2, InProgress, L::TestTrafficShift, true, 0);
        assert_eq!(traffic(&green, &all(&green)), (0, 1000), "test first");
        let green = with(
            "ecs-svc/2",
            2,
            InProgress,
            L::ProductionTrafficShift,
            true,
            100,
        );
        assert_eq!(traffic(&green, &all(&green)), (100, 1000), "a step");
        let green = with("ecs-svc/2", 2, InProgress, L::BakeTime, true, 1000);
        assert_eq!(traffic(&green, &all(&green)), (1000, 1000));
        let failed = with("ecs-svc/2", 2, Failed, L::BakeTime, true, 1000);
        assert_eq!(traffic(&failed, &all(&failed)), (0, 0));
        // After a rollback blue is PRIMARY (completed) again.
        assert_eq!(traffic(&blue, &all(&failed)), (1000, 1000));
        let done = with("ecs-svc/2", 2, Completed, L::CleanUp, true, 1000);
        assert_eq!(traffic(&done, &all(&done)), (1000, 1000));
    }

    #[test]
    fn linear_and_canary_shift_production_traffic_in_steps() {
        use crate::store::{
            CanaryConfiguration, DeploymentConfiguration, DeploymentStrategy, LinearConfiguration,
        };
        let c = |strategy, linear, canary| DeploymentConfiguration {
            strategy: Some(strategy),
            linear_configuration: linear,
            canary_configuration: canary,
            ..Default::default()
        };
        assert_eq!(
            production_steps(&c(DeploymentStrategy::BlueGreen, None, None)),
            (vec![1000], 0)
        );
        let (steps, wait) = production_steps(&c(DeploymentStrategy::Linear, None, None));
        assert_eq!((steps.len(), steps[0], steps[9], wait), (10, 100, 1000, 6));
        let linear = LinearConfiguration {
            step_percent: Some(30.0),
            step_bake_time_in_minutes: Some(1),
        };
        assert_eq!(
            production_steps(&c(DeploymentStrategy::Linear, Some(linear), None)),
            (vec![300, 600, 900, 1000], 1)
        );
        let canary = CanaryConfiguration {
            canary_percent: Some(12.5),
            canary_bake_time_in_minutes: Some(2),
        };
        assert_eq!(
            production_steps(&c(DeploymentStrategy::Canary, None, Some(canary))),
            (vec![125, 1000], 2)
        );
        assert_eq!(
            production_steps(&c(DeploymentStrategy::Canary, None, None)),
            (vec![50, 1000], 10)
        );

        use LifecycleStage as L;
        let rec = BlueGreenRecord {
            stage: L::PostTestTrafficShift,
            stage_at_ms: 0,
            alternate: true,
            production_permille: 0,
            step_at_ms: 0,
        };
        let steps = [300, 600, 900, 1000];
        assert_eq!(
            advance(rec, 5, false, 0, &steps, 60),
            None,
            "green not ready"
        );
        let r = advance(rec, 5, true, 0, &steps, 60).unwrap();
        assert_eq!(
            (r.stage, r.production_permille),
            (L::ProductionTrafficShift, 300)
        );
        assert_eq!(
            advance(r, 64, true, 0, &steps, 60),
            None,
            "the step bake time"
        );
        let r = advance(r, 65, true, 0, &steps, 60).unwrap();
        assert_eq!(
            (r.stage, r.production_permille),
            (L::ProductionTrafficShift, 600)
        );
        let r = advance(r, 125, true, 0, &steps, 60).unwrap();
        let r = advance(r, 185, true, 0, &steps, 60).unwrap();
        assert_eq!(r.production_permille, 1000);
        let r = advance(r, 186, true, 0, &steps, 60).unwrap();
        assert_eq!(
            r.stage,
            L::PostProductionTrafficShift,
            "no wait after 100 %"
        );
    }

    #[test]
    fn arns_parse_into_cluster_service_and_id() {
        assert_eq!(
            parse_arn(
                "arn:aws:ecs:us-east-1:1:service-deployment/c/web/r9i43YFjvgF_xlg7m2eJ1r",
                "service-deployment"
            ),
            Some(("c", "web", "r9i43YFjvgF_xlg7m2eJ1r"))
        );
        assert_eq!(
            parse_arn(
                "arn:aws:ecs:us-east-1:1:service-revision/c/web/12",
                "service-revision"
            ),
            Some(("c", "web", "12"))
        );
        assert_eq!(
            parse_arn("arn:aws:ecs:us-east-1:1:service/c/web", "service-revision"),
            None
        );
        assert_eq!(
            parse_arn("x:service-revision/c/web/1/2", "service-revision"),
            None
        );
        assert_eq!(
            super::super::services::new_deployment::new_service_deployment_id()
                .unwrap()
                .len(),
            22
        );
    }
}
