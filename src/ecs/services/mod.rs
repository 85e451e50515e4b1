//! Services: CreateService, UpdateService, DescribeServices, ListServices, DeleteService.
//! These write what a service should be; the scheduler (`crate::scheduler`) does the rest:
//! it keeps each service's tasks running and writes its deployments' progress and events.

use super::clusters::{self, check_cluster};
use super::names::{self, check_name, cluster_name, service_name};
use super::shapes::{
    self, CapacityProviderStrategyItem, Failure, PlacementConstraint, PlacementStrategy,
};
use super::tags::{Tag, checked_tags};
use super::{Ecs, EcsError, EcsResult, now_ms};
use crate::store::{
    DeploymentRow, DeploymentStatus, EventRow, HealthStatus, LastStatus, RolloutState, ServiceRow,
    ServiceStatus, Store,
};
use crate::task::shape::task_health;
use crate::taskdef::AwsContext;
use crate::taskdef::timestamp::Timestamp;
use anyhow::bail;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

pub const SERVICE_NOT_FOUND: &str = "Service not found.";

/// A service's settings besides name, task definition and count (the store keeps them).
pub use crate::store::{DeploymentConfiguration, ServiceSpec as Spec};

impl DeploymentConfiguration {
    /// The most tasks a service may have at once (ECS rounds down) and the fewest healthy
    /// ones it keeps during a deployment (rounded up). Ref: ecs.json
    /// `DeploymentConfiguration.maximumPercent`, `.minimumHealthyPercent`.
    pub fn bounds(&self, desired: i64) -> (i64, i64) {
        let max = desired * self.maximum_percent / 100;
        let min = (desired * self.minimum_healthy_percent + 99) / 100;
        (max, min)
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct DeploymentConfigurationInput {
    maximum_percent: Option<i64>,
    minimum_healthy_percent: Option<i64>,
    deployment_circuit_breaker: Option<crate::store::CircuitBreakerConfig>,
    alarms: Option<crate::store::DeploymentAlarms>,
    strategy: Option<String>,
    bake_time_in_minutes: Option<i64>,
    lifecycle_hooks: Option<Vec<LifecycleHookInput>>,
    linear_configuration: Option<crate::store::LinearConfiguration>,
    canary_configuration: Option<crate::store::CanaryConfiguration>,
}

/// ecs.json `DeploymentLifecycleHook`, as given (recorded as it is once checked).
#[derive(Deserialize, Serialize, Default, Clone)]
#[serde(rename_all = "camelCase")]
struct LifecycleHookInput {
    #[serde(skip_serializing_if = "Option::is_none")]
    target_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hook_target_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    role_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lifecycle_stages: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hook_details: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeout_configuration: Option<Value>,
}

/// Ref: ecs.json `DeploymentLifecycleHookStage`.
const HOOK_STAGES: &[&str] = &[
    "RECONCILE_SERVICE",
    "PRE_SCALE_UP",
    "POST_SCALE_UP",
    "TEST_TRAFFIC_SHIFT",
    "POST_TEST_TRAFFIC_SHIFT",
    "PRE_PRODUCTION_TRAFFIC_SHIFT",
    "PRODUCTION_TRAFFIC_SHIFT",
    "POST_PRODUCTION_TRAFFIC_SHIFT",
];

/// Checks `lifecycleHooks` and returns them as they are recorded. Ref: ecs.json
/// `DeploymentLifecycleHook`: `targetType` AWS_LAMBDA (the default) or PAUSE;
/// `hookTargetArn` ("You must provide this parameter", a Lambda function's ARN) and
/// `lifecycleStages` ("You must provide this parameter") of the stages a hook can run at.
fn lifecycle_hooks(hooks: &[LifecycleHookInput]) -> anyhow::Result<Value> {
    for (i, h) in hooks.iter().enumerate() {
        let at = format!("deploymentConfiguration.lifecycleHooks[{i}]");
        let target = h.target_type.as_deref().unwrap_or("AWS_LAMBDA");
        if !matches!(target, "AWS_LAMBDA" | "PAUSE") {
            bail!(EcsError::invalid(format!(
                "{at}.targetType {target:?}: must be AWS_LAMBDA or PAUSE"
            )));
        }
        if target == "AWS_LAMBDA" && h.hook_target_arn.as_deref().is_none_or(str::is_empty) {
            bail!(EcsError::invalid(format!(
                "{at}.hookTargetArn: required (the ARN of the Lambda function the hook invokes)"
            )));
        }
        let stages = h.lifecycle_stages.as_deref().unwrap_or_default();
        if stages.is_empty() {
            bail!(EcsError::invalid(format!(
                "{at}.lifecycleStages: required (the stages the hook runs at)"
            )));
        }
        if let Some(s) = stages.iter().find(|s| !HOOK_STAGES.contains(&s.as_str())) {
            bail!(EcsError::invalid(format!(
                "{at}.lifecycleStages {s:?}: must be one of {}",
                HOOK_STAGES.join(", ")
            )));
        }
    }
    Ok(serde_json::to_value(hooks)?)
}

impl DeploymentConfigurationInput {
    /// The members given that this host accepts and does not apply with `strategy` (the
    /// service's after the request), as service events. Ref: ecs.json
    /// `DeploymentConfiguration`.
    fn not_applied(&self, strategy: Option<crate::store::DeploymentStrategy>) -> Vec<String> {
        use crate::store::DeploymentStrategy as S;
        let strategy = strategy.unwrap_or(S::Rolling);
        let mut events = Vec::new();
        if self.bake_time_in_minutes.is_some() && strategy == S::Rolling {
            events.push(
                "deploymentConfiguration.bakeTimeInMinutes: not applied here: a bake time is \
                 for the BLUE_GREEN, LINEAR and CANARY strategies (this service's is ROLLING)"
                    .to_string(),
            );
        }
        if self.lifecycle_hooks.as_ref().is_some_and(|h| !h.is_empty()) {
            events.push(
                "deploymentConfiguration.lifecycleHooks: not applied here: no AWS Lambda \
                 here, the hooks are recorded and not invoked (a PAUSE hook does not pause)"
                    .to_string(),
            );
        }
        for (name, given, applies) in [
            (
                "linearConfiguration",
                self.linear_configuration.is_some(),
                S::Linear,
            ),
            (
                "canaryConfiguration",
                self.canary_configuration.is_some(),
                S::Canary,
            ),
        ] {
            if given && strategy != applies {
                events.push(format!(
                    "deploymentConfiguration.{name}: not applied here: it is for the {} \
                     strategy (this service's is {})",
                    applies.as_str(),
                    strategy.as_str()
                ));
            }
        }
        events
    }
}

/// Whether `p` is a multiple of 0.1 within `min..=100.0`. Ref: ecs.json
/// `LinearConfiguration.stepPercent` ("multiples of 0.1 from 3.0 to 100.0"),
/// `CanaryConfiguration.canaryPercent` ("multiples of 0.1 from 0.1 to 100.0").
fn tenths(p: f64, min: f64) -> bool {
    p.is_finite() && (min..=100.0).contains(&p) && ((p * 10.0).round() - p * 10.0).abs() < 1e-6
}

/// Ref: ecs.json `LinearConfiguration` and `CanaryConfiguration` (bake times "0 to 1440
/// minutes").
fn check_steps(i: &DeploymentConfigurationInput) -> anyhow::Result<()> {
    let minutes = |m: Option<i64>, member: &str| -> anyhow::Result<()> {
        match m {
            Some(m) if !(0..=1440).contains(&m) => bail!(EcsError::invalid(format!(
                "deploymentConfiguration.{member} {m}: must be 0 to 1440 minutes"
            ))),
            _ => Ok(()),
        }
    };
    if let Some(l) = &i.linear_configuration {
        if let Some(p) = l.step_percent.filter(|p| !tenths(*p, 3.0)) {
            bail!(EcsError::invalid(format!(
                "deploymentConfiguration.linearConfiguration.stepPercent {p}: must be a \
                 multiple of 0.1 from 3.0 to 100.0"
            )));
        }
        minutes(
            l.step_bake_time_in_minutes,
            "linearConfiguration.stepBakeTimeInMinutes",
        )?;
    }
    if let Some(c) = &i.canary_configuration {
        if let Some(p) = c.canary_percent.filter(|p| !tenths(*p, 0.1)) {
            bail!(EcsError::invalid(format!(
                "deploymentConfiguration.canaryConfiguration.canaryPercent {p}: must be a \
                 multiple of 0.1 from 0.1 to 100.0"
            )));
        }
        minutes(
            c.canary_bake_time_in_minutes,
            "canaryConfiguration.canaryBakeTimeInMinutes",
        )?;
    }
    Ok(())
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct CreateServiceRequest {
    cluster: Option<String>,
    service_name: String,
    task_definition: Option<String>,
    desired_count: Option<i64>,
    launch_type: Option<String>,
    platform_version: Option<String>,
    network_configuration: Option<Value>,
    deployment_configuration: Option<DeploymentConfigurationInput>,
    #[serde(default)]
    enable_execute_command: bool,
    propagate_tags: Option<String>,
    #[serde(default)]
    tags: Vec<Tag>,
    scheduling_strategy: Option<String>,
    deployment_controller: Option<Value>,
    health_check_grace_period_seconds: Option<i64>,
    availability_zone_rebalancing: Option<String>,
    capacity_provider_strategy: Option<Vec<CapacityProviderStrategyItem>>,
    client_token: Option<String>,
    #[serde(rename = "enableECSManagedTags")]
    enable_ecs_managed_tags: Option<bool>,
    placement_constraints: Option<Vec<PlacementConstraint>>,
    placement_strategy: Option<Vec<PlacementStrategy>>,
    role: Option<String>,
    load_balancers: Option<Value>,
    service_registries: Option<Value>,
    service_connect_configuration: Option<Value>,
    volume_configurations: Option<Value>,
    vpc_lattice_configurations: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct UpdateServiceRequest {
    cluster: Option<String>,
    service: String,
    desired_count: Option<i64>,
    task_definition: Option<String>,
    #[serde(default)]
    force_new_deployment: bool,
    deployment_configuration: Option<DeploymentConfigurationInput>,
    network_configuration: Option<Value>,
    platform_version: Option<String>,
    enable_execute_command: Option<bool>,
    propagate_tags: Option<String>,
    health_check_grace_period_seconds: Option<i64>,
    availability_zone_rebalancing: Option<String>,
    capacity_provider_strategy: Option<Vec<CapacityProviderStrategyItem>>,
    deployment_controller: Option<Value>,
    #[serde(rename = "enableECSManagedTags")]
    enable_ecs_managed_tags: Option<bool>,
    placement_constraints: Option<Vec<PlacementConstraint>>,
    placement_strategy: Option<Vec<PlacementStrategy>>,
    load_balancers: Option<Value>,
    service_registries: Option<Value>,
    service_connect_configuration: Option<Value>,
    volume_configurations: Option<Value>,
    vpc_lattice_configurations: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct DescribeServicesRequest {
    cluster: Option<String>,
    services: Vec<String>,
    #[serde(default)]
    include: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ListServicesRequest {
    cluster: Option<String>,
    launch_type: Option<String>,
    scheduling_strategy: Option<String>,
    resource_management_type: Option<String>,
    pub max_results: Option<i64>,
    pub next_token: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct DeleteServiceRequest {
    cluster: Option<String>,
    service: String,
    #[serde(default)]
    force: bool,
}

fn cluster_of(c: Option<String>) -> String {
    cluster_name(
        &c.filter(|c| !c.is_empty())
            .unwrap_or_else(|| names::DEFAULT.to_string()),
    )
    .to_string()
}

/// A new deployment id as ECS writes them: `ecs-svc/` and 19 digits.
pub fn new_deployment_id() -> anyhow::Result<String> {
    let hex = crate::task::new_id()?;
    let n = u64::from_str_radix(&hex[..16], 16)? % 10_000_000_000_000_000_000;
    Ok(format!("ecs-svc/{n:019}"))
}

/// A new service deployment id: 22 characters of `[A-Za-z0-9_-]`, as ECS's
/// (`…/service-deployment/MyCluster/MyService/r9i43YFjvgF_xlg7m2eJ1r`).
pub fn new_service_deployment_id() -> anyhow::Result<String> {
    use base64::Engine;
    let mut b = [0u8; 16];
    crate::task::fill_random(&mut b)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
}

/// The record of a new deployment of service `service`: its id, the deployments running
/// now (its sources) and the service's settings (its revision). A blue/green one starts
/// at PRE_SCALE_UP on the other side of the target group pairs than the last completed
/// deployment (the first one on `targetGroupArn`): the target groups alternate.
pub fn new_record(
    store: &Store,
    cluster: &str,
    service: &str,
    spec: &Spec,
) -> anyhow::Result<crate::store::ServiceDeploymentRecord> {
    let sources = store
        .deployments(cluster, service)?
        .into_iter()
        .map(|d| d.id)
        .collect();
    let blue_green = if spec.deployment_configuration.blue_green() {
        let serving = store
            .all_deployments(cluster, service)?
            .into_iter()
            .find(|d| d.rollout_state == RolloutState::Completed);
        Some(crate::store::BlueGreenRecord {
            stage: crate::store::LifecycleStage::PreScaleUp,
            stage_at_ms: now_ms(),
            alternate: serving.is_some_and(|d| !side(&d)),
            production_permille: 0,
            step_at_ms: 0,
        })
    } else {
        None
    };
    Ok(crate::store::ServiceDeploymentRecord {
        id: new_service_deployment_id()?,
        sources,
        spec: Some(spec.clone()),
        blue_green,
        ..Default::default()
    })
}

/// Whether deployment `d`'s tasks register in the alternate target groups (a deployment
/// that is not blue/green registers in `targetGroupArn`).
pub fn side(d: &DeploymentRow) -> bool {
    d.sd.blue_green.is_some_and(|b| b.alternate)
}

/// The service's load balancers with `advancedConfiguration` (its `loadBalancers` as
/// stored): their target group pairs and listener rules.
pub fn lb_pairs(spec: &Spec) -> Vec<crate::elb::bluegreen::Pair> {
    let Some(list) = spec
        .not_applied
        .get("loadBalancers")
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|l| {
            let a = l.get("advancedConfiguration")?;
            let s = |v: &Value| v.as_str().map(str::to_string);
            Some(crate::elb::bluegreen::Pair {
                primary: s(&l["targetGroupArn"])?,
                alternate: s(&a["alternateTargetGroupArn"])?,
                production: s(&a["productionListenerRule"])?,
                test: s(&a["testListenerRule"]),
            })
        })
        .collect()
}

/// The service's `loadBalancers` against its strategy: with BLUE_GREEN, each target group
/// needs an `advancedConfiguration` whose alternate target group and production listener
/// rule are given (ECS shifts traffic between the two groups with that rule) and whose
/// rules exist and forward to them (`crate::elb::bluegreen::check_pair`); `roleArn` is
/// recorded (no IAM here: serve's scheduler changes its own rules). With ROLLING an
/// `advancedConfiguration` is recorded and not applied: the returned events say so.
/// Ref: ECS Developer Guide, "Application Load Balancer resources for blue/green, linear,
/// and canary deployments"; AWS::ECS::Service AdvancedConfiguration
/// (`AlternateTargetGroupArn`: "Required: Yes").
fn check_blue_green(store: &Store, spec: &Spec) -> anyhow::Result<Vec<String>> {
    let Some(list) = spec
        .not_applied
        .get("loadBalancers")
        .and_then(Value::as_array)
    else {
        return Ok(Vec::new());
    };
    let blue_green = spec.deployment_configuration.blue_green();
    let strategy = spec
        .deployment_configuration
        .strategy
        .unwrap_or(crate::store::DeploymentStrategy::Rolling)
        .as_str();
    let mut events = Vec::new();
    for (i, l) in list.iter().enumerate() {
        let at = format!("loadBalancers[{i}]");
        let advanced = l.get("advancedConfiguration").filter(|a| !a.is_null());
        if !blue_green {
            if advanced.is_some() {
                events.push(format!(
                    "{at}.advancedConfiguration: not applied here: it is for the BLUE_GREEN \
                     strategy (this service's is ROLLING)"
                ));
            }
            continue;
        }
        let Some(group) = l["targetGroupArn"].as_str() else {
            continue;
        };
        let Some(a) = advanced else {
            bail!(EcsError::invalid(format!(
                "{at}.advancedConfiguration: required with the {strategy} strategy (the \
                 alternate target group and the production listener rule that ECS shifts \
                 traffic with)"
            )));
        };
        let member = |m: &str| -> anyhow::Result<String> {
            match a[m].as_str() {
                Some(v) if !v.is_empty() => Ok(v.to_string()),
                _ => bail!(EcsError::invalid(format!(
                    "{at}.advancedConfiguration.{m}: required with the {strategy} strategy"
                ))),
            }
        };
        let pair = crate::elb::bluegreen::Pair {
            primary: group.to_string(),
            alternate: member("alternateTargetGroupArn")?,
            production: member("productionListenerRule")?,
            test: a["testListenerRule"].as_str().map(str::to_string),
        };
        crate::elb::bluegreen::check_pair(store, &pair)
            .map_err(|e| EcsError::invalid(format!("{at}.{e}")))?;
    }
    Ok(events)
}

/// Before a new deployment of the service starts: the PRIMARY one, if still in progress,
/// is STOPPED (superseded), and so is the service deployment a rollback in progress rolls
/// back.
pub fn supersede(store: &mut Store, cluster: &str, service: &str) -> anyhow::Result<()> {
    let now = now_ms();
    for mut d in store.deployments(cluster, service)? {
        if d.status == DeploymentStatus::Primary
            && d.rollout_state == RolloutState::InProgress
            && d.sd.status.is_none()
        {
            d.sd.status = Some(crate::store::ServiceDeploymentStatus::Stopped);
            d.sd.stopped_at_ms = Some(now);
            d.sd.finished_at_ms = Some(now);
            d.updated_at_ms = now;
            store.save_deployment(&d)?;
            // A rollback in progress is stopped with it: the service deployment it rolls
            // back is STOPPED, not left ROLLBACK_IN_PROGRESS.
            if let Some(of) = &d.sd.rollback_of
                && let Some(mut failed) = store.deployment(of)?
                && failed.sd.status
                    == Some(crate::store::ServiceDeploymentStatus::RollbackInProgress)
            {
                failed.sd.status = Some(crate::store::ServiceDeploymentStatus::Stopped);
                failed.sd.stopped_at_ms = Some(now);
                failed.sd.finished_at_ms = Some(now);
                failed.updated_at_ms = now;
                store.save_deployment(&failed)?;
            }
        }
    }
    Ok(())
}

/// Records event `message` for a service.
pub fn add_event(store: &mut Store, cluster: &str, service: &str, message: String) {
    let id = crate::task::new_uuid().unwrap_or_else(|_| format!("{}", now_ms()));
    let e = EventRow {
        id,
        created_at_ms: now_ms(),
        message,
    };
    if let Err(err) = store.add_service_event(cluster, service, &e) {
        tracing::error!(service, error = %crate::errors::error_chain(&err), "failed to record a service event");
    }
}

/// Members of CreateService and UpdateService recorded as given (in `Spec::not_applied`)
/// and not applied here, each with the reason its service event gives; an empty reason is
/// a member `serve` applies from there (`loadBalancers`: crate::scheduler,
/// docs/load-balancing.md; `serviceRegistries`: crate::servicediscovery::ecs;
/// `serviceConnectConfiguration`: crate::servicediscovery::connect;
/// docs/service-discovery.md). Ref: ecs.json `UpdateServiceRequest.*` (each of these
/// "triggers a new service deployment" when it changes, as here).
const NOT_APPLIED: &[(&str, &str)] = &[
    ("loadBalancers", ""),
    ("serviceRegistries", ""),
    ("serviceConnectConfiguration", ""),
    (
        "vpcLatticeConfigurations",
        "no VPC Lattice here: nothing routes traffic to the tasks",
    ),
    (
        "volumeConfigurations",
        "no Amazon EBS here: a task whose definition has a volume configured at launch is \
         refused when it starts",
    ),
];

/// What CreateService and UpdateService both set beyond the basics.
struct Extras {
    capacity_provider_strategy: Option<Vec<CapacityProviderStrategyItem>>,
    enable_ecs_managed_tags: Option<bool>,
    placement_constraints: Option<Vec<PlacementConstraint>>,
    placement_strategy: Option<Vec<PlacementStrategy>>,
    availability_zone_rebalancing: Option<String>,
    deployment_controller: Option<Value>,
    /// The [`NOT_APPLIED`] members, in its order.
    not_applied: [Option<Value>; 5],
}

/// The [`Extras`] of a CreateService or UpdateService request `$i` (both name these members
/// alike).
macro_rules! extras {
    ($i:ident) => {
        Extras {
            capacity_provider_strategy: $i.capacity_provider_strategy,
            enable_ecs_managed_tags: $i.enable_ecs_managed_tags,
            placement_constraints: $i.placement_constraints,
            placement_strategy: $i.placement_strategy,
            availability_zone_rebalancing: $i.availability_zone_rebalancing,
            deployment_controller: $i.deployment_controller,
            not_applied: [
                $i.load_balancers,
                $i.service_registries,
                $i.service_connect_configuration,
                $i.vpc_lattice_configurations,
                $i.volume_configurations,
            ],
        }
    };
}

/// Checks `x` and writes it into `spec`. Returns whether a new deployment starts (a
/// not-applied member that changed, as ECS starts one) and the service events that name
/// what is not applied. `create`: a launch type and a strategy exclude each other, and the
/// cluster's default strategy applies when neither is given.
fn apply_extras(
    store: &Store,
    cluster: &str,
    spec: &mut Spec,
    x: Extras,
    create: bool,
) -> anyhow::Result<(bool, Vec<String>)> {
    check_deployment_controller(x.deployment_controller.as_ref())?;
    shapes::check_placement(
        x.placement_constraints.as_deref(),
        x.placement_strategy.as_deref(),
    )?;
    super::on_box::plan(
        x.placement_constraints.as_deref(),
        x.placement_strategy.as_deref(),
    )?;
    // Ref: ecs.json `CreateServiceRequest.serviceRegistries`: "Each service may be
    // associated with one service registry. Multiple service registries for each service
    // isn't supported."
    if let Some(list) = x.not_applied[1].as_ref().and_then(|v| v.as_array())
        && list.len() > 1
    {
        bail!(EcsError::invalid(format!(
            "serviceRegistries: a service has one service registry at most ({} given)",
            list.len()
        )));
    }
    if let Some(z) = x.availability_zone_rebalancing.as_deref()
        && !matches!(z, "ENABLED" | "DISABLED")
    {
        bail!(EcsError::invalid(format!(
            "availabilityZoneRebalancing {z:?}: must be ENABLED or DISABLED"
        )));
    }
    // Ref: ecs.json `CreateServiceRequest.capacityProviderStrategy`: "If a
    // capacityProviderStrategy is specified, the launchType parameter must be omitted. If
    // no capacityProviderStrategy or launchType is specified, the
    // defaultCapacityProviderStrategy for the cluster is used."
    let cluster_row = store.cluster(cluster)?;
    let strategy = match x.capacity_provider_strategy {
        Some(_) if create && spec.launch_type.is_some() => {
            bail!(EcsError::invalid(
                "Specifying both a launch type and capacity provider strategy is not supported. \
                 Remove one and try again."
            ));
        }
        // Ref: `UpdateServiceRequest.capacityProviderStrategy`: an empty list goes back to
        // the launch type.
        Some(s) if s.is_empty() && !create => Some(None),
        Some(s) => Some(Some(s)),
        None if create && spec.launch_type.is_none() => {
            let default: Vec<CapacityProviderStrategyItem> = cluster_row
                .iter()
                .flat_map(|c| c.default_capacity_provider_strategy.iter())
                .map(|v| serde_json::from_value(v.clone()))
                .collect::<Result<_, _>>()
                .map_err(|e| {
                    anyhow::anyhow!("cluster {cluster}: its stored default capacity provider strategy does not decode: {e}")
                })?;
            (!default.is_empty()).then_some(Some(default))
        }
        None => None,
    };
    if let Some(strategy) = strategy {
        if let Some(items) = &strategy {
            clusters::check_request_strategy(cluster_row.as_ref(), items, cluster)?;
            // A strategy replaces the launch type (its providers are Fargate's).
            spec.launch_type = None;
        } else if spec.capacity_provider_strategy.is_some() {
            spec.launch_type = Some("FARGATE".into());
        }
        spec.capacity_provider_strategy = strategy.map(serde_json::to_value).transpose()?;
    }
    if let Some(e) = x.enable_ecs_managed_tags {
        spec.enable_ecs_managed_tags = e;
    }
    if let Some(c) = x.placement_constraints {
        spec.placement_constraints = Some(serde_json::to_value(c)?);
    }
    if let Some(c) = x.placement_strategy {
        spec.placement_strategy = Some(serde_json::to_value(c)?);
    }
    if let Some(z) = x.availability_zone_rebalancing {
        spec.availability_zone_rebalancing = Some(z);
    } else if create {
        // Ref: ecs.json `CreateServiceRequest.availabilityZoneRebalancing`: "For create
        // service requests, when no value is specified … Amazon ECS defaults the value to
        // ENABLED."
        spec.availability_zone_rebalancing = Some("ENABLED".into());
    }
    let mut redeploy = false;
    let mut events = Vec::new();
    for ((name, why), v) in NOT_APPLIED.iter().zip(x.not_applied) {
        let Some(v) = v else { continue };
        let empty = v.is_null() || v.as_array().is_some_and(Vec::is_empty);
        let old = spec.not_applied.get(*name);
        redeploy |= old != Some(&v) && !(empty && old.is_none());
        if empty {
            spec.not_applied.remove(*name);
        } else {
            if !why.is_empty() {
                events.push(format!("{name}: not applied here: {why}"));
            }
            spec.not_applied.insert((*name).to_string(), v);
        }
    }
    Ok((!create && redeploy, events))
}

/// Ref: ecs.json `DeploymentControllerType`: ECS, CODE_DEPLOY, EXTERNAL; only ECS's own
/// rolling update runs here (the others hand deployments to CodeDeploy or the caller's
/// task sets, which this host has no API for).
fn check_deployment_controller(c: Option<&Value>) -> anyhow::Result<()> {
    match c.map(|c| c["type"].as_str()) {
        None | Some(Some("ECS")) => Ok(()),
        Some(Some(t @ ("CODE_DEPLOY" | "EXTERNAL"))) => bail!(EcsError::invalid(format!(
            "deploymentController {t:?}: not supported here: only the ECS rolling update \
             controller runs deployments (there is no CodeDeploy or task-set API)"
        ))),
        Some(t) => bail!(EcsError::invalid(format!(
            "deploymentController.type {t:?}: must be ECS, CODE_DEPLOY or EXTERNAL"
        ))),
    }
}

/// Ref: ecs.json `CreateServiceRequest.clientToken`: "Up to 36 ASCII characters in the
/// range of 33-126 (inclusive) are allowed."
fn check_service_token(t: Option<&str>) -> anyhow::Result<()> {
    if let Some(t) = t
        && (t.is_empty() || t.len() > 36 || !t.bytes().all(|b| (33..=126).contains(&b)))
    {
        bail!(EcsError::invalid(format!(
            "clientToken {t:?}: up to 36 ASCII characters in the range 33-126"
        )));
    }
    Ok(())
}

/// The role's ARN: a name becomes `arn:aws:iam::<account>:role/<name>`, as ECS shows
/// `roleArn`.
fn role_arn(ctx: &AwsContext, role: &str) -> String {
    if role.starts_with("arn:") {
        role.to_string()
    } else {
        format!("arn:aws:iam::{}:role/{role}", ctx.account_id)
    }
}

fn check_count(n: i64) -> anyhow::Result<()> {
    if n < 0 {
        bail!(EcsError::invalid(format!(
            "desiredCount {n}: must be 0 or more"
        )));
    }
    Ok(())
}

fn deployment_configuration(
    base: DeploymentConfiguration,
    input: Option<&DeploymentConfigurationInput>,
) -> anyhow::Result<DeploymentConfiguration> {
    let Some(i) = input else { return Ok(base) };
    // Ref: ecs.json `DeploymentStrategy`: ROLLING, BLUE_GREEN, LINEAR, CANARY.
    use crate::store::DeploymentStrategy as S;
    check_steps(i)?;
    let strategy = match i.strategy.as_deref() {
        None => base.strategy,
        Some("ROLLING") => Some(S::Rolling),
        Some("BLUE_GREEN") => Some(S::BlueGreen),
        Some("LINEAR") => Some(S::Linear),
        Some("CANARY") => Some(S::Canary),
        Some(s) => bail!(EcsError::invalid(format!(
            "deploymentConfiguration.strategy {s:?}: must be ROLLING, BLUE_GREEN, LINEAR or \
             CANARY"
        ))),
    };
    let lifecycle_hooks = match &i.lifecycle_hooks {
        Some(h) if h.is_empty() => None,
        Some(h) => Some(lifecycle_hooks(h)?),
        None => base.lifecycle_hooks,
    };
    let c = DeploymentConfiguration {
        maximum_percent: i.maximum_percent.unwrap_or(base.maximum_percent),
        minimum_healthy_percent: i
            .minimum_healthy_percent
            .unwrap_or(base.minimum_healthy_percent),
        // Ref: ecs.json `DeploymentCircuitBreaker`: applied by the scheduler
        // (`ecs::deployments`).
        deployment_circuit_breaker: i
            .deployment_circuit_breaker
            .or(base.deployment_circuit_breaker),
        // Ref: ecs.json `DeploymentAlarms`: applied by the scheduler (`ecs::deployments`).
        alarms: i.alarms.clone().or(base.alarms),
        strategy,
        bake_time_in_minutes: i.bake_time_in_minutes.or(base.bake_time_in_minutes),
        lifecycle_hooks,
        linear_configuration: i.linear_configuration.or(base.linear_configuration),
        canary_configuration: i.canary_configuration.or(base.canary_configuration),
    };
    // Ref: ecs.json `DeploymentConfiguration.bakeTimeInMinutes`: "You must provide this
    // parameter when you use the BLUE_GREEN deployment strategy" (LINEAR and CANARY: none
    // given is 0 here, ECS documents no default).
    if c.blue_green() {
        match c.bake_time_in_minutes {
            None if c.strategy == Some(S::BlueGreen) => bail!(EcsError::invalid(
                "deploymentConfiguration.bakeTimeInMinutes: required with the BLUE_GREEN \
                 strategy (how long both revisions run after production traffic shifted)"
            )),
            Some(m) if m < 0 => bail!(EcsError::invalid(format!(
                "deploymentConfiguration.bakeTimeInMinutes {m}: must be 0 or more"
            ))),
            _ => {}
        }
    }

    if !(0..=100).contains(&c.minimum_healthy_percent) {
        bail!(EcsError::invalid(format!(
            "deploymentConfiguration.minimumHealthyPercent {}: must be between 0 and 100",
            c.minimum_healthy_percent
        )));
    }
    if c.maximum_percent < 100 || c.maximum_percent <= c.minimum_healthy_percent {
        bail!(EcsError::invalid(format!(
            "deploymentConfiguration.maximumPercent {}: must be at least 100 and more than \
             minimumHealthyPercent ({}), or a deployment could never replace a task",
            c.maximum_percent, c.minimum_healthy_percent
        )));
    }
    Ok(c)
}

/// The ACTIVE task definition a service runs, as its ARN. A FARGATE service's definition
/// must pass the Fargate rules now, with RunTask's verdict, not at each task start.
fn resolve_task_definition(
    store: &mut Store,
    ctx: &AwsContext,
    reference: &str,
    launch_type: Option<&str>,
    remote: bool,
    constraints: Option<&Value>,
) -> anyhow::Result<String> {
    if reference.starts_with("file://") {
        bail!(EcsError::client(format!(
            "taskDefinition {reference:?}: register it first (RegisterTaskDefinition)"
        )));
    }
    let r = super::task_definitions::resolve(store, reference, ctx, None)?;
    if remote {
        super::no_local_environment_files(&r.stored.definition)?;
    }
    if launch_type == Some("FARGATE") {
        super::tasks::fargate_check(reference, &r.stored)?;
    }
    // The service's constraints and the definition's: at most 10 per task, as RunTask's.
    let asked: Vec<PlacementConstraint> = constraints
        .cloned()
        .map(serde_json::from_value)
        .transpose()?
        .unwrap_or_default();
    super::tasks::check_constraint_count(&asked, &r.stored)?;
    Ok(r.stored
        .definition
        .task_definition_arn
        .clone()
        .unwrap_or_else(|| ctx.task_definition_arn(r.stored.family(), r.stored.revision())))
}

/// The service's `loadBalancers` against the network mode of its task definition `td`:
/// an awsvpc task is reached at its address (a target group of type `ip`), a bridge or
/// host task at its box's instance and host port (`instance`); ECS refuses the other
/// pairings with these words. Ref: ECS Developer Guide, alb.html ("If your service's
/// task definition uses the awsvpc network mode … you must choose ip as the target
/// type"); ECS's message as hashicorp/terraform-provider-aws#12252 quotes it.
fn check_target_types(
    store: &mut Store,
    ctx: &AwsContext,
    spec: &Spec,
    td: &str,
) -> anyhow::Result<()> {
    let Some(list) = spec
        .not_applied
        .get("loadBalancers")
        .and_then(Value::as_array)
    else {
        return Ok(());
    };
    let r = super::task_definitions::resolve(store, td, ctx, None)?;
    let launch_type = if spec.fargate() { "FARGATE" } else { "EC2" };
    let mode = crate::supervisor::launch::network_mode(&r.stored.definition, launch_type);
    let mode = mode.as_str();
    for l in list {
        let groups = [
            l["targetGroupArn"].as_str(),
            l["advancedConfiguration"]["alternateTargetGroupArn"].as_str(),
        ];
        for arn in groups.into_iter().flatten() {
            let Some(kind) = crate::elb::stored_target_type(store, arn) else {
                continue;
            };
            let fits = match mode {
                "awsvpc" => kind == "ip",
                "bridge" | "host" => kind == "instance",
                _ => true,
            };
            if !fits {
                bail!(EcsError::invalid(format!(
                    "The provided target group {arn} has target type {kind}, which is \
                     incompatible with the {mode} network mode specified in the task definition."
                )));
            }
        }
    }
    Ok(())
}

fn network_configuration(v: Option<Value>) -> anyhow::Result<Option<Value>> {
    v.map(|v| {
        let text =
            crate::supervisor::isolation::network::parse_network_configuration(&v.to_string())
                .map_err(|e| EcsError::invalid(format!("networkConfiguration: {e}")))?;
        Ok(serde_json::from_str(&text)?)
    })
    .transpose()
}

fn launch_type(v: Option<String>) -> anyhow::Result<Option<String>> {
    match v.as_deref() {
        None | Some("FARGATE") | Some("EC2") => Ok(v),
        Some(other) => bail!(EcsError::invalid(format!(
            "launchType {other:?}: must be FARGATE or EC2"
        ))),
    }
}

fn propagate_tags(v: Option<String>) -> anyhow::Result<Option<String>> {
    match v.as_deref() {
        None | Some("NONE") | Some("SERVICE") | Some("TASK_DEFINITION") => Ok(v),
        Some(other) => bail!(EcsError::invalid(format!(
            "propagateTags {other:?}: must be NONE, SERVICE or TASK_DEFINITION"
        ))),
    }
}

/// A service of a request that must exist: ServiceNotFoundException otherwise (also for an
/// INACTIVE one, as ECS answers).
fn existing(store: &Store, cluster: &str, service: &str) -> anyhow::Result<ServiceRow> {
    check_cluster(store, cluster)?;
    match store.service(cluster, service_name(service))? {
        Some(s) if s.status != ServiceStatus::Inactive => Ok(s),
        _ => bail!(EcsError::ServiceNotFound(format!(
            "{SERVICE_NOT_FOUND} ({} in cluster {cluster})",
            service_name(service)
        ))),
    }
}

/// CreateService: the `Service` JSON.
fn create(ecs: &Ecs, i: CreateServiceRequest, remote: bool) -> anyhow::Result<Service> {
    check_name("serviceName", &i.service_name)?;
    if let Some(s) = i.scheduling_strategy.as_deref().filter(|s| *s != "REPLICA") {
        bail!(EcsError::invalid(format!(
            "schedulingStrategy {s:?}: only REPLICA is supported (there is one host)"
        )));
    }
    let desired = i.desired_count.ok_or_else(|| {
        EcsError::invalid("desiredCount: required for a service with the REPLICA strategy")
    })?;
    check_count(desired)?;
    let reference = i
        .task_definition
        .ok_or_else(|| EcsError::invalid("taskDefinition: required"))?;
    checked_tags(&i.tags)?;
    check_service_token(i.client_token.as_deref())?;
    // Ref: ecs.json `CreateServiceRequest.role`: "If you specify the role parameter, you
    // must also specify a load balancer object with the loadBalancers parameter."
    if i.role.is_some()
        && i.load_balancers
            .as_ref()
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty)
    {
        bail!(EcsError::invalid(
            "role: a role is only for a service with loadBalancers (ECS refuses it without one)"
        ));
    }
    let ctx = AwsContext::from_env();
    let mut spec = Spec {
        launch_type: launch_type(i.launch_type)?,
        network_configuration: network_configuration(i.network_configuration)?,
        deployment_configuration: deployment_configuration(
            DeploymentConfiguration::default(),
            i.deployment_configuration.as_ref(),
        )?,
        enable_execute_command: i.enable_execute_command,
        propagate_tags: propagate_tags(i.propagate_tags)?,
        health_check_grace_period_seconds: i.health_check_grace_period_seconds,
        role_arn: i.role.as_deref().map(|r| role_arn(&ctx, r)),
        client_token: i.client_token,
        ..Default::default()
    };
    let mut store = ecs.open_store()?;
    let cluster = clusters::for_run(&mut store, &ctx, &cluster_of(i.cluster))?;
    let not_applied = i
        .deployment_configuration
        .as_ref()
        .map(|d| d.not_applied(spec.deployment_configuration.strategy))
        .unwrap_or_default();
    let (_, mut events) = apply_extras(&store, &cluster, &mut spec, extras!(i), true)?;
    events.extend(not_applied);
    events.extend(check_blue_green(&store, &spec)?);
    check_platform_version(&spec, i.platform_version.as_deref())?;
    spec.platform_version = i.platform_version;
    let td = resolve_task_definition(
        &mut store,
        &ctx,
        &reference,
        spec.fargate()
            .then_some("FARGATE")
            .or(spec.launch_type.as_deref()),
        remote,
        spec.placement_constraints.as_ref(),
    )?;
    check_target_types(&mut store, &ctx, &spec, &td)?;
    let now = now_ms();
    // `default` is created with its first task or service, as ECS does.
    store.ensure_cluster(&cluster, &ctx.ecs_arn(&format!("cluster/{cluster}")), now)?;
    let name = i.service_name;
    let row = ServiceRow {
        arn: ctx.ecs_arn(&format!("service/{cluster}/{name}")),
        cluster: cluster.clone(),
        name: name.clone(),
        status: ServiceStatus::Active,
        task_definition_arn: td.clone(),
        desired_count: desired,
        spec,
        tags: i.tags,
        created_at_ms: now,
        updated_at_ms: now,
    };
    let sd = new_record(&store, &cluster, &name, &row.spec)?;
    let first = DeploymentRow {
        sd,
        id: new_deployment_id()?,
        cluster: cluster.clone(),
        service: name.clone(),
        status: DeploymentStatus::Primary,
        task_definition_arn: td,
        desired_count: desired,
        rollout_state: RolloutState::InProgress,
        created_at_ms: now,
        updated_at_ms: now,
        ..Default::default()
    };
    if !store.create_service(&row, &first)? {
        // Ref: ECS_Idempotency.html: a retried CreateService with the same clientToken
        // returns the service it created.
        if let Some(token) = &row.spec.client_token
            && let Some(s) = store.service(&cluster, &name)?
            && s.spec.client_token.as_ref() == Some(token)
        {
            return service_json(&store, &s, true);
        }
        // Ref: ECS's answer to a second CreateService of an active name.
        bail!(EcsError::invalid(format!(
            "Creation of service was not idempotent. (service {name} already exists in cluster \
             {cluster}: use UpdateService)"
        )));
    }
    let mut first = first;
    first.rollout_state_reason = format!("ECS deployment {} in progress.", first.id);
    store.save_deployment(&first)?;
    for e in events {
        tracing::warn!(service = %name, "{e}");
        add_event(&mut store, &cluster, &name, format!("(service {name}) {e}"));
    }
    changed();
    service_json(&store, &row, true)
}

/// RunTask's platform-version rule for the service's tasks: refused with the EC2 launch
/// type, a known version otherwise (the tasks record it).
fn check_platform_version(spec: &Spec, v: Option<&str>) -> anyhow::Result<()> {
    shapes::platform_version(v, spec.launch_type.as_deref() != Some("EC2"))?;
    Ok(())
}

/// UpdateService: the `Service` JSON. A new task definition, network configuration or
/// `forceNewDeployment` starts a deployment; a count alone does not.
fn update(ecs: &Ecs, i: UpdateServiceRequest, remote: bool) -> anyhow::Result<Service> {
    let ctx = AwsContext::from_env();
    let mut store = ecs.open_store()?;
    let cluster = cluster_of(i.cluster);
    let mut s = existing(&store, &cluster, &i.service)?;
    if s.status != ServiceStatus::Active {
        bail!(EcsError::ServiceNotActive(format!(
            "Service was not ACTIVE. ({} is {})",
            s.name, s.status
        )));
    }
    let mut spec = s.spec.clone();
    if let Some(n) = i.desired_count {
        check_count(n)?;
        s.desired_count = n;
    }
    spec.deployment_configuration = deployment_configuration(
        spec.deployment_configuration,
        i.deployment_configuration.as_ref(),
    )?;
    let not_applied = i
        .deployment_configuration
        .as_ref()
        .map(|d| d.not_applied(spec.deployment_configuration.strategy))
        .unwrap_or_default();
    let (mut redeploy, mut events) = apply_extras(&store, &cluster, &mut spec, extras!(i), false)?;
    events.extend(not_applied);
    events.extend(check_blue_green(&store, &spec)?);
    redeploy |= i.force_new_deployment;
    if let Some(reference) = &i.task_definition {
        let lt = spec
            .fargate()
            .then_some("FARGATE")
            .or(spec.launch_type.as_deref());
        let td = resolve_task_definition(
            &mut store,
            &ctx,
            reference,
            lt,
            remote,
            spec.placement_constraints.as_ref(),
        )?;
        redeploy |= td != s.task_definition_arn;
        s.task_definition_arn = td;
    }
    check_target_types(&mut store, &ctx, &spec, &s.task_definition_arn)?;
    if let Some(n) = network_configuration(i.network_configuration)? {
        redeploy |= spec.network_configuration.as_ref() != Some(&n);
        spec.network_configuration = Some(n);
    }
    if let Some(p) = i.platform_version {
        check_platform_version(&spec, Some(&p))?;
        spec.platform_version = Some(p);
    }
    if let Some(e) = i.enable_execute_command {
        spec.enable_execute_command = e;
    }
    if let Some(p) = propagate_tags(i.propagate_tags)? {
        spec.propagate_tags = Some(p);
    }
    if let Some(h) = i.health_check_grace_period_seconds {
        spec.health_check_grace_period_seconds = Some(h);
    }
    for e in events {
        tracing::warn!(service = %s.name, "{e}");
        add_event(
            &mut store,
            &cluster,
            &s.name,
            format!("(service {}) {e}", s.name),
        );
    }
    let now = now_ms();
    s.spec = spec;
    s.updated_at_ms = now;
    store.save_service(&s)?;
    if redeploy {
        let id = new_deployment_id()?;
        let sd = new_record(&store, &s.cluster, &s.name, &s.spec)?;
        supersede(&mut store, &s.cluster, &s.name)?;
        store.start_deployment(&DeploymentRow {
            sd,
            rollout_state_reason: format!("ECS deployment {id} in progress."),
            id,
            cluster: s.cluster.clone(),
            service: s.name.clone(),
            status: DeploymentStatus::Primary,
            task_definition_arn: s.task_definition_arn.clone(),
            desired_count: s.desired_count,
            rollout_state: RolloutState::InProgress,
            created_at_ms: now,
            updated_at_ms: now,
            ..Default::default()
        })?;
    } else if let Some(mut p) = store
        .deployments(&s.cluster, &s.name)?
        .into_iter()
        .find(|d| d.status == DeploymentStatus::Primary)
        && p.desired_count != s.desired_count
    {
        p.desired_count = s.desired_count;
        p.updated_at_ms = now;
        store.save_deployment(&p)?;
    }
    changed();
    service_json(&store, &s, false)
}

/// DeleteService: the service, DRAINING; the scheduler stops its tasks and then marks it
/// INACTIVE. Ref: ECS refuses a service scaled above 0 unless `force`.
fn delete(ecs: &Ecs, i: DeleteServiceRequest) -> anyhow::Result<Service> {
    let mut store = ecs.open_store()?;
    let cluster = cluster_of(i.cluster);
    let mut s = existing(&store, &cluster, &i.service)?;
    if s.status == ServiceStatus::Active {
        if s.desired_count > 0 && !i.force {
            bail!(EcsError::invalid(format!(
                "The service cannot be stopped while it is scaled above 0. ({} has desiredCount \
                 {}: update it to 0 first, or delete with force)",
                s.name, s.desired_count
            )));
        }
        s.status = ServiceStatus::Draining;
        s.desired_count = 0;
        s.updated_at_ms = now_ms();
        store.save_service(&s)?;
        changed();
    }
    service_json(&store, &s, false)
}

/// DescribeServices: `(services, failures)`; INACTIVE services are described too.
fn describe(ecs: &Ecs, i: DescribeServicesRequest) -> anyhow::Result<(Vec<Service>, Vec<Failure>)> {
    if i.services.is_empty() || i.services.len() > 10 {
        bail!(EcsError::invalid(format!(
            "services: between 1 and 10 service names or ARNs (got {})",
            i.services.len()
        )));
    }
    let ctx = AwsContext::from_env();
    let mut store = ecs.open_store()?;
    let cluster = cluster_of(i.cluster);
    check_cluster(&store, &cluster)?;
    // Counts read the task states: finish dead tasks first.
    ecs.reconcile(&mut store);
    let with_tags = i.include.iter().any(|s| s == "TAGS");
    let mut found = Vec::new();
    let mut failures = Vec::new();
    for w in &i.services {
        let name = service_name(w);
        match store.service(&cluster, name)? {
            Some(s) => found.push(service_json(&store, &s, with_tags)?),
            None => failures.push(Failure::missing(
                ctx.ecs_arn(&format!("service/{cluster}/{name}")),
            )),
        }
    }
    Ok((found, failures))
}

/// ListServices: the ARNs of the cluster's ACTIVE and DRAINING services, by name.
fn list_arns(ecs: &Ecs, i: &ListServicesRequest) -> anyhow::Result<Vec<String>> {
    let store = ecs.open_store()?;
    let cluster = cluster_of(i.cluster.clone());
    check_cluster(&store, &cluster)?;
    let launch = launch_type(i.launch_type.clone())?;
    if let Some(s) = i.scheduling_strategy.as_deref()
        && s != "REPLICA"
        && s != "DAEMON"
    {
        bail!(EcsError::invalid(format!(
            "schedulingStrategy {s:?}: must be REPLICA or DAEMON"
        )));
    }
    let daemon = i.scheduling_strategy.as_deref() == Some("DAEMON");
    // Ref: ecs.json `Service.resourceManagementType`: ECS (an Express Service managed by
    // ECS) or CUSTOMER; every service here is the caller's own.
    let ecs_managed = match i.resource_management_type.as_deref() {
        None | Some("CUSTOMER") => false,
        Some("ECS") => true,
        Some(other) => bail!(EcsError::invalid(format!(
            "resourceManagementType {other:?}: must be CUSTOMER or ECS"
        ))),
    };
    Ok(store
        .list_services(Some(&cluster))?
        .into_iter()
        .filter(|_| !daemon && !ecs_managed)
        .filter(|s| {
            let lt = if s.spec.fargate() { "FARGATE" } else { "EC2" };
            launch.as_deref().is_none_or(|l| l == lt)
        })
        .map(|s| s.arn)
        .collect())
}

static CHANGED: Mutex<bool> = Mutex::new(false);
static CHANGED_CV: Condvar = Condvar::new();

/// Says a service changed: whoever waits in [`wait_for_change`] (the scheduler) wakes
/// now instead of at its next tick.
pub fn changed() {
    if let Ok(mut c) = CHANGED.lock() {
        *c = true;
        CHANGED_CV.notify_all();
    }
}

/// Waits up to `d` for a [`changed`] service.
pub fn wait_for_change(d: Duration) {
    let Ok(mut c) = CHANGED.lock() else {
        std::thread::sleep(d);
        return;
    };
    if !*c {
        c = match CHANGED_CV.wait_timeout(c, d) {
            Ok((c, _)) => c,
            Err(_) => return,
        };
    }
    *c = false;
}

/// The response of CreateService, UpdateService and DeleteService: the ECS `Service`
/// shape.
#[derive(Debug, Serialize)]
pub struct ServiceResponse {
    pub service: Service,
}

#[derive(Debug, Serialize)]
pub struct DescribeServicesResponse {
    pub services: Vec<Service>,
    pub failures: Vec<Failure>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListServicesResponse {
    pub service_arns: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// CreateService.
///
/// `remote`: the request came over the API, so a task definition naming a local
/// `environmentFiles` path is refused ([`super::no_local_environment_files`]).
pub fn create_service(
    ecs: &Ecs,
    req: CreateServiceRequest,
    remote: bool,
) -> EcsResult<ServiceResponse> {
    Ok(ServiceResponse {
        service: create(ecs, req, remote)?,
    })
}

/// UpdateService: a new task definition, network configuration or `forceNewDeployment`
/// starts a deployment; a count alone does not.
/// `remote` as for [`create_service`].
pub fn update_service(
    ecs: &Ecs,
    req: UpdateServiceRequest,
    remote: bool,
) -> EcsResult<ServiceResponse> {
    Ok(ServiceResponse {
        service: update(ecs, req, remote)?,
    })
}

/// DeleteService.
pub fn delete_service(ecs: &Ecs, req: DeleteServiceRequest) -> EcsResult<ServiceResponse> {
    Ok(ServiceResponse {
        service: delete(ecs, req)?,
    })
}

/// DescribeServices; INACTIVE services are described too.
pub fn describe_services(
    ecs: &Ecs,
    req: DescribeServicesRequest,
) -> EcsResult<DescribeServicesResponse> {
    let (services, failures) = describe(ecs, req)?;
    Ok(DescribeServicesResponse { services, failures })
}

/// ListServices: 10 a page unless asked (ecs.json `ListServicesRequest.maxResults`).
pub fn list_services(ecs: &Ecs, req: &ListServicesRequest) -> EcsResult<ListServicesResponse> {
    let arns = list_arns(ecs, req)?;
    let (service_arns, next_token) =
        super::page(arns, req.max_results, 10, req.next_token.as_deref())?;
    Ok(ListServicesResponse {
        service_arns,
        next_token,
    })
}

/// ecs.json `Service`, members in alphabetical order as the AWS CLI prints them.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub availability_zone_rebalancing: Option<String>,
    /// Omitted for a service created with a launch type (ecs.json `Service.
    /// capacityProviderStrategy`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity_provider_strategy: Option<Value>,
    pub cluster_arn: String,
    pub created_at: Timestamp,
    pub created_by: String,
    pub deployment_configuration: DeploymentConfigurationShape,
    pub deployment_controller: DeploymentController,
    pub deployments: Vec<Deployment>,
    pub desired_count: i64,
    #[serde(rename = "enableECSManagedTags")]
    pub enable_ecs_managed_tags: bool,
    pub enable_execute_command: bool,
    pub events: Vec<ServiceEvent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_check_grace_period_seconds: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub launch_type: Option<String>,
    pub load_balancers: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_configuration: Option<Value>,
    pub pending_count: usize,
    pub placement_constraints: Vec<Value>,
    pub placement_strategy: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform_family: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform_version: Option<String>,
    pub propagate_tags: String,
    /// CUSTOMER: every service here is the caller's own (no ECS Express services).
    pub resource_management_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    pub running_count: usize,
    pub scheduling_strategy: String,
    pub service_arn: String,
    pub service_name: String,
    pub service_registries: Vec<Value>,
    pub status: ServiceStatus,
    /// Only where asked for (`include: ["TAGS"]`) or just set (CreateService).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<Tag>>,
    pub task_definition: String,
}

/// ecs.json `Deployment`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity_provider_strategy: Option<Value>,
    pub created_at: Timestamp,
    pub desired_count: i64,
    pub failed_tasks: i64,
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub launch_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_configuration: Option<Value>,
    pub pending_count: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform_family: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform_version: Option<String>,
    pub rollout_state: RolloutState,
    pub rollout_state_reason: String,
    pub running_count: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_connect_configuration: Option<Value>,
    pub status: DeploymentStatus,
    pub task_definition: String,
    pub updated_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume_configurations: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vpc_lattice_configurations: Option<Value>,
}

/// ecs.json `ServiceEvent`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceEvent {
    pub created_at: Timestamp,
    pub id: String,
    pub message: String,
}

/// ecs.json `DeploymentConfiguration` as a service reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentConfigurationShape {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alarms: Option<crate::store::DeploymentAlarms>,
    pub deployment_circuit_breaker: CircuitBreaker,
    pub maximum_percent: i64,
    pub minimum_healthy_percent: i64,
    /// ROLLING unless the service chose BLUE_GREEN.
    pub strategy: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bake_time_in_minutes: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifecycle_hooks: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub linear_configuration: Option<crate::store::LinearConfiguration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary_configuration: Option<crate::store::CanaryConfiguration>,
}

/// ecs.json `DeploymentCircuitBreaker`: off unless the service turned it on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CircuitBreaker {
    pub enable: bool,
    pub rollback: bool,
}

/// ecs.json `DeploymentController`: always the ECS rolling update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeploymentController {
    #[serde(rename = "type")]
    pub kind: String,
}

/// The ECS `Service` of a service's row, with its deployments and events.
pub fn service_json(store: &Store, s: &ServiceRow, with_tags: bool) -> anyhow::Result<Service> {
    let spec = &s.spec;
    let cluster_arn = s
        .arn
        .split(":service/")
        .next()
        .map(|p| format!("{p}:cluster/{}", s.cluster))
        .unwrap_or_default();
    let tasks: Vec<crate::store::TaskRow> = super::fleet::get()
        .group_tasks(store, &s.cluster, &format!("service:{}", s.name))?
        .into_iter()
        .map(|t| t.row)
        .collect();
    let count = |d: Option<&str>, st: &[LastStatus]| {
        tasks
            .iter()
            .filter(|t| d.is_none_or(|d| t.started_by.as_deref() == Some(d)))
            .filter(|t| st.contains(&t.last_status))
            .count()
    };
    const PENDING: &[LastStatus] = &[LastStatus::Provisioning, LastStatus::Pending];
    let fargate = spec.fargate();
    let strategy = spec.capacity_provider_strategy.clone();
    let not_applied = |k: &str| spec.not_applied.get(k).cloned();
    let list = |v: Option<Value>| -> Vec<Value> {
        match v {
            Some(Value::Array(a)) => a,
            _ => Vec::new(),
        }
    };
    let platform_version =
        fargate.then(|| spec.platform_version.clone().unwrap_or("LATEST".into()));
    let platform_family = fargate.then(|| "Linux".to_string());
    let network = spec.network_configuration.clone();
    let deployments = store
        .deployments(&s.cluster, &s.name)?
        .into_iter()
        .map(|d| Deployment {
            created_at: Timestamp::from_ms(d.created_at_ms),
            desired_count: d.desired_count,
            failed_tasks: d.failed_tasks,
            launch_type: spec.launch_type.clone(),
            capacity_provider_strategy: strategy.clone(),
            service_connect_configuration: not_applied("serviceConnectConfiguration"),
            volume_configurations: not_applied("volumeConfigurations"),
            vpc_lattice_configurations: not_applied("vpcLatticeConfigurations"),
            network_configuration: network.clone(),
            pending_count: count(Some(&d.id), PENDING),
            platform_family: platform_family.clone(),
            platform_version: platform_version.clone(),
            rollout_state: d.rollout_state,
            rollout_state_reason: d.rollout_state_reason,
            running_count: count(Some(&d.id), &[LastStatus::Running]),
            status: d.status,
            task_definition: d.task_definition_arn,
            updated_at: Timestamp::from_ms(d.updated_at_ms),
            id: d.id,
        })
        .collect();
    let events = store
        .service_events(&s.cluster, &s.name)?
        .into_iter()
        .map(|e| ServiceEvent {
            created_at: Timestamp::from_ms(e.created_at_ms),
            id: e.id,
            message: e.message,
        })
        .collect();
    Ok(Service {
        cluster_arn,
        created_at: Timestamp::from_ms(s.created_at_ms),
        created_by: AwsContext::from_env().principal(),
        deployment_configuration: DeploymentConfigurationShape {
            alarms: spec.deployment_configuration.alarms.clone(),
            deployment_circuit_breaker: {
                let b = spec
                    .deployment_configuration
                    .deployment_circuit_breaker
                    .unwrap_or_default();
                CircuitBreaker {
                    enable: b.enable,
                    rollback: b.rollback,
                }
            },
            maximum_percent: spec.deployment_configuration.maximum_percent,
            minimum_healthy_percent: spec.deployment_configuration.minimum_healthy_percent,
            strategy: spec
                .deployment_configuration
                .strategy
                .unwrap_or(crate::store::DeploymentStrategy::Rolling)
                .as_str(),
            bake_time_in_minutes: spec.deployment_configuration.bake_time_in_minutes,
            lifecycle_hooks: spec.deployment_configuration.lifecycle_hooks.clone(),
            linear_configuration: spec.deployment_configuration.linear_configuration,
            canary_configuration: spec.deployment_configuration.canary_configuration,
        },
        deployment_controller: DeploymentController { kind: "ECS".into() },
        deployments,
        desired_count: s.desired_count,
        enable_ecs_managed_tags: spec.enable_ecs_managed_tags,
        enable_execute_command: spec.enable_execute_command,
        events,
        health_check_grace_period_seconds: spec.health_check_grace_period_seconds,
        launch_type: spec.launch_type.clone(),
        load_balancers: list(not_applied("loadBalancers")),
        network_configuration: network,
        pending_count: count(None, PENDING),
        placement_constraints: list(spec.placement_constraints.clone()),
        placement_strategy: list(spec.placement_strategy.clone()),
        platform_family,
        platform_version,
        propagate_tags: spec.propagate_tags.clone().unwrap_or_else(|| "NONE".into()),
        running_count: count(None, &[LastStatus::Running]),
        scheduling_strategy: "REPLICA".into(),
        service_arn: s.arn.clone(),
        service_name: s.name.clone(),
        service_registries: list(not_applied("serviceRegistries")),
        status: s.status,
        availability_zone_rebalancing: spec.availability_zone_rebalancing.clone(),
        capacity_provider_strategy: strategy,
        resource_management_type: "CUSTOMER".into(),
        role_arn: spec.role_arn.clone(),
        tags: with_tags.then(|| s.tags.clone()),
        task_definition: s.task_definition_arn.clone(),
    })
}

/// Whether a task's essential containers make it UNHEALTHY (the scheduler replaces it).
pub fn unhealthy(containers: &[crate::store::ContainerRow]) -> bool {
    task_health(containers) == HealthStatus::Unhealthy
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListServicesByNamespaceRequest {
    pub namespace: String,
    pub max_results: Option<i64>,
    pub next_token: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListServicesByNamespaceResponse {
    pub service_arns: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// ListServicesByNamespace: the services of a Service Connect namespace. The namespaces it
/// knows are the clusters' `serviceConnectDefaults.namespace` (CreateCluster/UpdateCluster;
/// Cloud Map's own and the services using Service Connect in them are not looked up yet,
/// docs/service-discovery.md), so a known namespace lists none; any other is NamespaceNotFoundException, as ECS
/// answers. Ref: ecs.json `ListServicesByNamespaceRequest` (`namespace` required: name or
/// ARN).
pub fn list_services_by_namespace(
    ecs: &Ecs,
    req: &ListServicesByNamespaceRequest,
) -> EcsResult<ListServicesByNamespaceResponse> {
    if req.namespace.is_empty() {
        return Err(EcsError::invalid(
            "namespace: a namespace name or ARN is required",
        ));
    }
    let store = ecs.open_store()?;
    let known = store
        .list_clusters()
        .map_err(anyhow::Error::from)?
        .iter()
        .filter_map(|c| {
            c.configuration["serviceConnectDefaults"]["namespace"]
                .as_str()
                .map(str::to_string)
        })
        .any(|n| n == req.namespace || req.namespace.ends_with(&format!("/{n}")));
    if !known {
        return Err(EcsError::NamespaceNotFound(format!(
            "Namespace {} not found (the namespaces here are the clusters' \
             serviceConnectDefaults.namespace)",
            req.namespace
        )));
    }
    let (service_arns, next_token) = super::page(
        Vec::<String>::new(),
        req.max_results,
        10,
        req.next_token.as_deref(),
    )?;
    Ok(ListServicesByNamespaceResponse {
        service_arns,
        next_token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_arns_and_bounds() {
        assert_eq!(
            service_name("arn:aws:ecs:us-east-1:000000000000:service/dev/web"),
            "web"
        );
        assert_eq!(service_name("arn:aws:ecs:us-east-1:1:service/web"), "web");
        assert_eq!(service_name("web"), "web");
        let id = new_deployment_id().unwrap();
        assert!(id.starts_with("ecs-svc/") && id.len() == 8 + 19, "{id}");
        let c = DeploymentConfiguration::default();
        assert_eq!(c.bounds(2), (4, 2));
        let c = DeploymentConfiguration {
            maximum_percent: 150,
            minimum_healthy_percent: 50,
            ..Default::default()
        };
        assert_eq!(c.bounds(3), (4, 2));
        assert_eq!(c.bounds(0), (0, 0));
        assert!(check_name("serviceName", "web_1-a").is_ok());
        assert!(check_name("serviceName", "web 1").is_err());
    }

    #[test]
    fn deployment_configuration_rules() {
        let base = DeploymentConfiguration::default();
        let input = |max, min| {
            Some(DeploymentConfigurationInput {
                maximum_percent: max,
                minimum_healthy_percent: min,
                ..Default::default()
            })
        };
        assert_eq!(deployment_configuration(base.clone(), None).unwrap(), base);
        assert!(deployment_configuration(base.clone(), input(Some(100), Some(0)).as_ref()).is_ok());
        assert!(deployment_configuration(base.clone(), input(Some(100), None).as_ref()).is_err());
        assert!(deployment_configuration(base.clone(), input(None, Some(101)).as_ref()).is_err());
        // BLUE_GREEN needs its bake time; LINEAR and CANARY do not run; a rolling
        // service's bake time is said not applied; deployment alarms are applied.
        let mut blue = DeploymentConfigurationInput {
            strategy: Some("BLUE_GREEN".into()),
            ..Default::default()
        };
        assert!(deployment_configuration(base.clone(), Some(&blue)).is_err());
        blue.bake_time_in_minutes = Some(2);
        let c = deployment_configuration(base.clone(), Some(&blue)).unwrap();
        assert!(c.blue_green() && c.bake_time_in_minutes == Some(2));
        assert!(blue.not_applied(c.strategy).is_empty());
        let linear = |percent: f64, minutes: i64| DeploymentConfigurationInput {
            strategy: Some("LINEAR".into()),
            linear_configuration: Some(crate::store::LinearConfiguration {
                step_percent: Some(percent),
                step_bake_time_in_minutes: Some(minutes),
            }),
            ..Default::default()
        };
        let c = deployment_configuration(base.clone(), Some(&linear(12.5, 1))).unwrap();
        assert!(c.blue_green() && c.bake_time_in_minutes.is_none());
        for (p, m) in [(2.9, 1), (12.55, 1), (100.1, 1), (10.0, 1441), (10.0, -1)] {
            assert!(
                deployment_configuration(base.clone(), Some(&linear(p, m))).is_err(),
                "{p} {m}"
            );
        }
        let canary_on_linear = DeploymentConfigurationInput {
            canary_configuration: Some(Default::default()),
            ..linear(10.0, 1)
        };
        let said = canary_on_linear.not_applied(c.strategy);
        assert_eq!(said.len(), 1, "{said:?}");
        assert!(said[0].contains("it is for the CANARY strategy (this service's is LINEAR)"));
        let hooks = |v: Value| DeploymentConfigurationInput {
            strategy: Some("BLUE_GREEN".into()),
            bake_time_in_minutes: Some(0),
            lifecycle_hooks: Some(serde_json::from_value(v).unwrap()),
            ..Default::default()
        };
        let ok = hooks(
            serde_json::json!([{"hookTargetArn": "arn:aws:lambda:us-east-1:1:function:f",
            "roleArn": "arn:aws:iam::1:role/r", "lifecycleStages": ["POST_TEST_TRAFFIC_SHIFT"]}]),
        );
        let c = deployment_configuration(base.clone(), Some(&ok)).unwrap();
        assert_eq!(
            c.lifecycle_hooks.unwrap()[0]["lifecycleStages"],
            serde_json::json!(["POST_TEST_TRAFFIC_SHIFT"])
        );
        let said = ok.not_applied(c.strategy);
        assert!(said[0].starts_with("deploymentConfiguration.lifecycleHooks: not applied"));
        for bad in [
            serde_json::json!([{"lifecycleStages": ["POST_SCALE_UP"]}]),
            serde_json::json!([{"hookTargetArn": "arn:f"}]),
            serde_json::json!([{"hookTargetArn": "arn:f", "lifecycleStages": ["BAKE_TIME"]}]),
            serde_json::json!([{"targetType": "SNS", "hookTargetArn": "arn:f", "lifecycleStages": ["POST_SCALE_UP"]}]),
        ] {
            assert!(
                deployment_configuration(base.clone(), Some(&hooks(bad.clone()))).is_err(),
                "{bad}"
            );
        }
        let pause = hooks(
            serde_json::json!([{"targetType": "PAUSE", "lifecycleStages": ["POST_SCALE_UP"]}]),
        );
        assert!(deployment_configuration(base.clone(), Some(&pause)).is_ok());
        let alarms = DeploymentConfigurationInput {
            strategy: Some("ROLLING".into()),
            alarms: Some(crate::store::DeploymentAlarms {
                alarm_names: vec!["a".into()],
                enable: true,
                rollback: true,
            }),
            bake_time_in_minutes: Some(5),
            ..Default::default()
        };
        let c = deployment_configuration(base.clone(), Some(&alarms)).unwrap();
        assert_eq!(c.alarms, alarms.alarms);
        let said = alarms.not_applied(c.strategy);
        assert_eq!(said.len(), 1, "{said:?}");
        assert!(said[0].starts_with("deploymentConfiguration.bakeTimeInMinutes: not applied"));

        let breaker = DeploymentConfigurationInput {
            deployment_circuit_breaker: Some(crate::store::CircuitBreakerConfig {
                enable: true,
                rollback: true,
            }),
            ..Default::default()
        };
        let c = deployment_configuration(base.clone(), Some(&breaker)).unwrap();
        assert!(
            c.deployment_circuit_breaker
                .is_some_and(|b| b.enable && b.rollback)
        );
        assert!(breaker.not_applied(c.strategy).is_empty());
    }
}
