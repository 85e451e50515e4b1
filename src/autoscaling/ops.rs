//! Application Auto Scaling's operations on the box's [`AutoScaling`]: Register,
//! Describe and DeregisterScalableTarget; Put, Describe and DeleteScalingPolicy (target
//! tracking makes and deletes its own CloudWatch alarms); DescribeScalingActivities.
//! Requests decode into the model's members (unknown members refused); ECS services are
//! the one resource scaled here.
//!
//! Ref: Application Auto Scaling API Reference (RegisterScalableTarget, PutScalingPolicy,
//! …) and User Guide, "Target tracking scaling policies" (the alarms: AlarmHigh, 3
//! datapoints of one minute above the target; AlarmLow, 15 below 90 % of it).

use super::{
    Activity, AlarmRef, AsError, AsResult, AutoScaling, ECS_DIMENSION, Millis, Policy,
    ScalableTarget, ScalableTargetAction, ScheduledAction, StepScaling, SuspendedState,
    TargetTracking, policy_key, secs,
};
use crate::cloudwatch::CloudWatch;
use crate::cloudwatch::alarms::{Dimension, PutMetricAlarmInput};
use crate::cloudwatch::query::MetricDataQuery;
use crate::ecs::Ecs;
use serde::Deserialize;
use serde_json::{Value, json};

/// The namespaces of the model's `ServiceNamespace` enum.
const NAMESPACES: &[&str] = &[
    "ecs",
    "elasticmapreduce",
    "ec2",
    "appstream",
    "dynamodb",
    "rds",
    "sagemaker",
    "custom-resource",
    "comprehend",
    "lambda",
    "cassandra",
    "kafka",
    "elasticache",
    "neptune",
    "workspaces",
];

/// The role AWS answers for ECS targets registered without one (its service-linked role).
const ECS_ROLE: &str = "aws-service-role/ecs.application-autoscaling.amazonaws.com/AWSServiceRoleForApplicationAutoScaling_ECSService";

/// The operations [`call`] answers (the others of the model are UnknownOperation).
pub const OPERATIONS: &[&str] = &[
    "RegisterScalableTarget",
    "DescribeScalableTargets",
    "DeregisterScalableTarget",
    "PutScalingPolicy",
    "DescribeScalingPolicies",
    "DeleteScalingPolicy",
    "DescribeScalingActivities",
    "PutScheduledAction",
    "DescribeScheduledActions",
    "DeleteScheduledAction",
];

/// Runs `op` with its JSON request `body` at `now`.
pub fn call(
    aas: &AutoScaling,
    ecs: &Ecs,
    cw: &CloudWatch,
    op: &str,
    body: Value,
    now: Millis,
) -> AsResult<Value> {
    match op {
        "RegisterScalableTarget" => register(aas, ecs, decode(body)?, now),
        "DescribeScalableTargets" => describe_targets(aas, decode(body)?),
        "DeregisterScalableTarget" => deregister(aas, cw, decode(body)?),
        "PutScalingPolicy" => put_policy(aas, cw, decode(body)?, now),
        "DescribeScalingPolicies" => describe_policies(aas, decode(body)?),
        "DeleteScalingPolicy" => delete_policy(aas, cw, decode(body)?),
        "DescribeScalingActivities" => describe_activities(aas, decode(body)?),
        "PutScheduledAction" => put_scheduled(aas, decode(body)?, now),
        "DescribeScheduledActions" => describe_scheduled(aas, decode(body)?),
        "DeleteScheduledAction" => delete_scheduled(aas, decode(body)?),
        "GetPredictiveScalingForecast"
        | "TagResource"
        | "UntagResource"
        | "ListTagsForResource" => Err(AsError::UnknownOperation(format!(
            "{op} is not served by minifargate yet (docs/scaling.md, \"Not yet\")"
        ))),
        _ => Err(AsError::UnknownOperation(format!(
            "{op} is not an Application Auto Scaling operation"
        ))),
    }
}

fn decode<T: serde::de::DeserializeOwned>(body: Value) -> AsResult<T> {
    serde_path_to_error::deserialize(body).map_err(|e| {
        let path = e.path().to_string();
        AsError::Serialization(format!("{path}: {}", e.inner()))
    })
}

fn enum_error(value: &str, member: &str, set: &[&str]) -> AsError {
    AsError::Validation(format!(
        "1 validation error detected: Value '{value}' at '{member}' failed to satisfy \
         constraint: Member must satisfy enum value set: [{}]",
        set.join(", ")
    ))
}

/// The model's enum check of `ServiceNamespace`; Some(()) when it is `ecs`, None for a
/// namespace of the enum this host does not scale.
fn namespace(ns: &str) -> AsResult<Option<()>> {
    if !NAMESPACES.contains(&ns) {
        return Err(enum_error(ns, "serviceNamespace", NAMESPACES));
    }
    Ok((ns == "ecs").then_some(()))
}

fn unsupported() -> AsError {
    AsError::Validation("Unsupported service namespace, resource type or scalable dimension".into())
}

/// The cluster and service of `service/<cluster>/<service>`, checked against the
/// namespace and dimension as AWS checks them.
fn ecs_resource<'a>(ns: &str, id: &'a str, dimension: &str) -> AsResult<(&'a str, &'a str)> {
    if namespace(ns)?.is_none() {
        return Err(AsError::Validation(format!(
            "Service namespace {ns} is not scaled by minifargate: only ECS services \
             (ServiceNamespace ecs, ScalableDimension {ECS_DIMENSION}) are \
             (docs/scaling.md)"
        )));
    }
    if dimension != ECS_DIMENSION {
        return Err(unsupported());
    }
    let mut parts = id.split('/');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("service"), Some(c), Some(s), None) if !c.is_empty() && !s.is_empty() => Ok((c, s)),
        _ => Err(unsupported()),
    }
}

/// The service's desiredCount, or ValidationException as AWS says a missing service.
pub(super) fn desired_count(ecs: &Ecs, cluster: &str, service: &str) -> Option<i64> {
    let req: crate::ecs::services::DescribeServicesRequest =
        serde_json::from_value(json!({"cluster": cluster, "services": [service]})).ok()?;
    let d = crate::ecs::services::describe_services(ecs, req).ok()?;
    d.services
        .into_iter()
        .find(|s| matches!(s.status, crate::store::ServiceStatus::Active))
        .map(|s| s.desired_count)
}

fn not_found_target(ns: &str, id: &str, dim: &str) -> AsError {
    AsError::ObjectNotFound(format!(
        "No scalable target found for service namespace: {ns}, resource ID: {id}, scalable \
         dimension: {dim}"
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct RegisterInput {
    service_namespace: String,
    resource_id: String,
    scalable_dimension: String,
    min_capacity: Option<i64>,
    max_capacity: Option<i64>,
    #[serde(rename = "RoleARN")]
    role_arn: Option<String>,
    suspended_state: Option<SuspendedState>,
    tags: Option<std::collections::BTreeMap<String, String>>,
}

fn register(aas: &AutoScaling, ecs: &Ecs, req: RegisterInput, now: Millis) -> AsResult<Value> {
    let (cluster, service) = ecs_resource(
        &req.service_namespace,
        &req.resource_id,
        &req.scalable_dimension,
    )?;
    if desired_count(ecs, cluster, service).is_none() {
        return Err(AsError::Validation(format!(
            "ECS service doesn't exist: {}",
            req.resource_id
        )));
    }
    if req.tags.as_ref().is_some_and(|t| !t.is_empty()) {
        return Err(AsError::Validation(
            "Tags are not kept by minifargate yet (docs/scaling.md): register the target \
             without them"
                .into(),
        ));
    }
    for (name, v) in [
        ("MinCapacity", req.min_capacity),
        ("MaxCapacity", req.max_capacity),
    ] {
        if let Some(v) = v
            && v < 0
        {
            return Err(AsError::Validation(format!(
                "1 validation error detected: Value '{v}' at '{}' failed to satisfy \
                 constraint: Member must have value greater than or equal to 0",
                lower_first(name)
            )));
        }
    }
    let mut s = aas.lock();
    let target = match s.targets.get(&req.resource_id).cloned() {
        Some(mut t) => {
            t.min_capacity = req.min_capacity.unwrap_or(t.min_capacity);
            t.max_capacity = req.max_capacity.unwrap_or(t.max_capacity);
            if let Some(st) = req.suspended_state {
                t.suspended_state = st;
            }
            t
        }
        None => {
            let (Some(min), Some(max)) = (req.min_capacity, req.max_capacity) else {
                return Err(AsError::Validation(
                    "MinCapacity and MaxCapacity are required when registering a new \
                     scalable target."
                        .into(),
                ));
            };
            let mut id = [0u8; 18];
            crate::task::fill_random(&mut id)
                .map_err(|e| AsError::Internal(format!("failed to draw an id: {e}")))?;
            ScalableTarget {
                service_namespace: req.service_namespace.clone(),
                resource_id: req.resource_id.clone(),
                scalable_dimension: req.scalable_dimension.clone(),
                min_capacity: min,
                max_capacity: max,
                role_arn: req
                    .role_arn
                    .clone()
                    .unwrap_or_else(|| format!("arn:aws:iam::{}:role/{ECS_ROLE}", aas.account)),
                creation_time: secs(now),
                suspended_state: req.suspended_state.unwrap_or_default(),
                scalable_target_arn: format!(
                    "arn:aws:application-autoscaling:{}:{}:scalable-target/{}",
                    aas.region,
                    aas.account,
                    crate::task::hex_id(&id)
                ),
            }
        }
    };
    if target.min_capacity > target.max_capacity {
        return Err(AsError::Validation(
            "Minimum capacity cannot be greater than maximum capacity".into(),
        ));
    }
    let arn = target.scalable_target_arn.clone();
    s.targets.insert(req.resource_id.clone(), target);
    aas.save(&s)?;
    Ok(json!({"ScalableTargetARN": arn}))
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_lowercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

/// A page of `items` from `next_token` (an index), `max` at most.
fn page<T: Clone>(
    items: &[T],
    next_token: Option<&str>,
    max_results: Option<i64>,
    most: i64,
) -> AsResult<(Vec<T>, Option<String>)> {
    let max = match max_results {
        Some(m) if !(1..=most).contains(&m) => {
            return Err(AsError::Validation(format!(
                "1 validation error detected: Value '{m}' at 'maxResults' failed to satisfy \
                 constraint: Member must have value less than or equal to {most}"
            )));
        }
        Some(m) => m as usize,
        None => most as usize,
    };
    let start = match next_token {
        Some(t) => t
            .parse::<usize>()
            .ok()
            .filter(|i| *i <= items.len())
            .ok_or_else(|| AsError::InvalidNextToken(format!("Invalid token: {t}")))?,
        None => 0,
    };
    let end = (start + max).min(items.len());
    let next = (end < items.len()).then(|| end.to_string());
    Ok((items[start..end].to_vec(), next))
}

/// A Describe answer: a [`page`] of `items` under `key`, with `NextToken` when more follow.
fn listed<T: Clone + serde::Serialize>(
    key: &str,
    items: &[T],
    next_token: Option<&str>,
    max_results: Option<i64>,
    most: i64,
) -> AsResult<Value> {
    let (items, next) = page(items, next_token, max_results, most)?;
    let mut out = json!({ key: items });
    if let Some(n) = next {
        out["NextToken"] = json!(n);
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct DescribeTargetsInput {
    service_namespace: String,
    #[serde(default)]
    resource_ids: Vec<String>,
    scalable_dimension: Option<String>,
    max_results: Option<i64>,
    next_token: Option<String>,
}

fn describe_targets(aas: &AutoScaling, req: DescribeTargetsInput) -> AsResult<Value> {
    namespace(&req.service_namespace)?;
    let s = aas.lock();
    let all: Vec<ScalableTarget> = s
        .targets
        .values()
        .filter(|t| t.service_namespace == req.service_namespace)
        .filter(|t| req.resource_ids.is_empty() || req.resource_ids.contains(&t.resource_id))
        .filter(|t| {
            req.scalable_dimension
                .as_ref()
                .is_none_or(|d| *d == t.scalable_dimension)
        })
        .cloned()
        .collect();
    listed(
        "ScalableTargets",
        &all,
        req.next_token.as_deref(),
        req.max_results,
        50,
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct TargetKey {
    service_namespace: String,
    resource_id: String,
    scalable_dimension: String,
}

fn deregister(aas: &AutoScaling, cw: &CloudWatch, req: TargetKey) -> AsResult<Value> {
    namespace(&req.service_namespace)?;
    let mut s = aas.lock();
    let found = s.targets.get(&req.resource_id).is_some_and(|t| {
        t.service_namespace == req.service_namespace
            && t.scalable_dimension == req.scalable_dimension
    });
    if !found {
        return Err(not_found_target(
            &req.service_namespace,
            &req.resource_id,
            &req.scalable_dimension,
        ));
    }
    // Ref: "Deregistering a scalable target deletes the scaling policies and the scheduled
    // actions that are associated with it."
    let gone: Vec<String> = s
        .policies
        .iter()
        .filter(|(_, p)| p.resource_id == req.resource_id)
        .map(|(k, _)| k.clone())
        .collect();
    for k in gone {
        if let Some(p) = s.policies.remove(&k) {
            delete_own_alarms(cw, &p);
        }
    }
    let gone: Vec<String> = s
        .scheduled
        .iter()
        .filter(|(_, a)| a.resource_id == req.resource_id)
        .map(|(k, _)| k.clone())
        .collect();
    for k in gone {
        s.scheduled.remove(&k);
        s.scheduled_since.remove(&k);
    }
    s.targets.remove(&req.resource_id);
    s.last_scaled.remove(&req.resource_id);
    aas.save(&s)?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct PutPolicyInput {
    policy_name: String,
    service_namespace: String,
    resource_id: String,
    scalable_dimension: String,
    policy_type: Option<String>,
    step_scaling_policy_configuration: Option<StepScaling>,
    target_tracking_scaling_policy_configuration: Option<TargetTracking>,
    predictive_scaling_policy_configuration: Option<Value>,
}

const POLICY_TYPES: &[&str] = &["PredictiveScaling", "StepScaling", "TargetTrackingScaling"];

fn put_policy(
    aas: &AutoScaling,
    cw: &CloudWatch,
    req: PutPolicyInput,
    now: Millis,
) -> AsResult<Value> {
    let (cluster, service) = ecs_resource(
        &req.service_namespace,
        &req.resource_id,
        &req.scalable_dimension,
    )?;
    if req.policy_name.is_empty() || req.policy_name.chars().count() > 256 {
        return Err(AsError::Validation(
            "1 validation error detected: Value at 'policyName' failed to satisfy constraint: \
             Member must have length between 1 and 256"
                .into(),
        ));
    }
    // Ref: PutScalingPolicy, PolicyType: "If the policy type is null, the value is treated
    // as StepScaling."
    let policy_type = req
        .policy_type
        .clone()
        .unwrap_or_else(|| "StepScaling".into());
    if !POLICY_TYPES.contains(&policy_type.as_str()) {
        return Err(enum_error(&policy_type, "policyType", POLICY_TYPES));
    }
    if policy_type == "PredictiveScaling" || req.predictive_scaling_policy_configuration.is_some() {
        return Err(AsError::Validation(
            "PredictiveScaling is not supported for ECS services by minifargate (no forecast \
             is made here; docs/scaling.md)"
                .into(),
        ));
    }
    let mut s = aas.lock();
    if !s.targets.contains_key(&req.resource_id) {
        return Err(AsError::ObjectNotFound(format!(
            "No scalable target registered for service namespace: {}, resource ID: {}, \
             scalable dimension: {}",
            req.service_namespace, req.resource_id, req.scalable_dimension
        )));
    }
    let key = policy_key(&req.resource_id, &req.policy_name);
    let old = s.policies.get(&key).cloned();
    // Ref: Application Auto Scaling quotas, "Scaling policies per scalable target": 50.
    let of_target = s
        .policies
        .values()
        .filter(|p| p.resource_id == req.resource_id)
        .count();
    if old.is_none() && of_target >= 50 {
        return Err(AsError::LimitExceeded(format!(
            "{} has 50 scaling policies, the most a scalable target may have",
            req.resource_id
        )));
    }
    let policy_arn = match &old {
        Some(p) => p.policy_arn.clone(),
        None => format!(
            "arn:aws:autoscaling:{}:{}:scalingPolicy:{}:resource/ecs/{}:policyName/{}",
            aas.region,
            aas.account,
            uuid()?,
            req.resource_id,
            req.policy_name
        ),
    };
    let mut policy = Policy {
        policy_arn: policy_arn.clone(),
        policy_name: req.policy_name.clone(),
        service_namespace: req.service_namespace.clone(),
        resource_id: req.resource_id.clone(),
        scalable_dimension: req.scalable_dimension.clone(),
        policy_type: policy_type.clone(),
        step_scaling_policy_configuration: None,
        target_tracking_scaling_policy_configuration: None,
        alarms: Vec::new(),
        creation_time: old.as_ref().map(|p| p.creation_time).unwrap_or(secs(now)),
    };
    let mut made = Vec::new();
    if policy_type == "StepScaling" {
        let cfg = req.step_scaling_policy_configuration.ok_or_else(|| {
            AsError::Validation(
                "StepScalingPolicyConfiguration is required when PolicyType is StepScaling".into(),
            )
        })?;
        if req.target_tracking_scaling_policy_configuration.is_some() {
            return Err(AsError::Validation(
                "TargetTrackingScalingPolicyConfiguration is not allowed for PolicyType \
                 StepScaling"
                    .into(),
            ));
        }
        check_step(&cfg)?;
        policy.step_scaling_policy_configuration = Some(cfg);
    } else {
        let cfg = req
            .target_tracking_scaling_policy_configuration
            .ok_or_else(|| {
                AsError::Validation(
                    "TargetTrackingScalingPolicyConfiguration is required when PolicyType is \
                 TargetTrackingScaling"
                        .into(),
                )
            })?;
        if req.step_scaling_policy_configuration.is_some() {
            return Err(AsError::Validation(
                "StepScalingPolicyConfiguration is not allowed for PolicyType \
                 TargetTrackingScaling"
                    .into(),
            ));
        }
        let metric = tracked_metric(&cfg, cluster, service)?;
        made = make_alarms(cw, &policy_arn, &req.resource_id, &cfg, &metric, now)?;
        policy.alarms = made.clone();
        policy.target_tracking_scaling_policy_configuration = Some(cfg);
    }
    if let Some(old) = &old {
        delete_own_alarms(cw, old);
    }
    s.policies.insert(key, policy);
    if let Err(e) = aas.save(&s) {
        for a in &made {
            let _ = cw.alarms.delete(std::slice::from_ref(&a.alarm_name));
        }
        return Err(e);
    }
    let mut out = json!({"PolicyARN": policy_arn});
    if !made.is_empty() {
        out["Alarms"] = json!(made);
    }
    Ok(out)
}

fn uuid() -> AsResult<String> {
    crate::task::new_uuid().map_err(|e| AsError::Internal(format!("failed to draw a UUID: {e}")))
}

fn check_step(cfg: &StepScaling) -> AsResult<()> {
    const TYPES: &[&str] = &[
        "ChangeInCapacity",
        "PercentChangeInCapacity",
        "ExactCapacity",
    ];
    match cfg.adjustment_type.as_deref() {
        None => {
            return Err(AsError::Validation(
                "AdjustmentType is required for a step scaling policy".into(),
            ));
        }
        Some(t) if !TYPES.contains(&t) => return Err(enum_error(t, "adjustmentType", TYPES)),
        _ => {}
    }
    if let Some(m) = &cfg.metric_aggregation_type
        && !["Average", "Minimum", "Maximum"].contains(&m.as_str())
    {
        return Err(enum_error(
            m,
            "metricAggregationType",
            &["Average", "Minimum", "Maximum"],
        ));
    }
    if cfg.step_adjustments.is_empty() {
        return Err(AsError::Validation(
            "StepAdjustments must contain at least one step adjustment".into(),
        ));
    }
    if cfg.cooldown.is_some_and(|c| c < 0) || cfg.min_adjustment_magnitude.is_some_and(|m| m < 0) {
        return Err(AsError::Validation(
            "Cooldown and MinAdjustmentMagnitude must not be negative".into(),
        ));
    }
    // Ref: "The ranges of your step adjustments can't overlap or have a gap"; at most one
    // step without a lower bound and one without an upper bound.
    let mut steps: Vec<(f64, f64)> = cfg
        .step_adjustments
        .iter()
        .map(|s| {
            (
                s.metric_interval_lower_bound.unwrap_or(f64::NEG_INFINITY),
                s.metric_interval_upper_bound.unwrap_or(f64::INFINITY),
            )
        })
        .collect();
    if steps.iter().any(|(l, u)| l >= u) {
        return Err(AsError::Validation(
            "Step adjustment's upper bound must be greater than its lower bound".into(),
        ));
    }
    steps.sort_by(|a, b| a.0.total_cmp(&b.0));
    if steps.windows(2).any(|w| w[0].1 != w[1].0) {
        return Err(AsError::Validation(
            "Step adjustments must not overlap or have gaps between them".into(),
        ));
    }
    Ok(())
}

/// The metric a target tracking policy follows, and whether it is a percentage (the
/// predefined ones).
#[derive(Debug, Clone)]
struct Tracked {
    namespace: String,
    name: String,
    dimensions: Vec<Dimension>,
    statistic: String,
    unit: Option<String>,
    /// Metric math (a customized specification's `Metrics`): the alarms watch these
    /// queries instead of the metric above.
    metrics: Option<Vec<MetricDataQuery>>,
}

const PREDEFINED_ECS: &[&str] = &[
    "ECSServiceAverageCPUUtilization",
    "ECSServiceAverageMemoryUtilization",
    "ALBRequestCountPerTarget",
];

fn tracked_metric(cfg: &TargetTracking, cluster: &str, service: &str) -> AsResult<Tracked> {
    if !(cfg.target_value.is_finite() && cfg.target_value > 0.0) {
        return Err(AsError::Validation(
            "TargetValue must be greater than 0 (Application Auto Scaling's lower bound is \
             8.515920e-109)"
                .into(),
        ));
    }
    for (name, v) in [
        ("ScaleOutCooldown", cfg.scale_out_cooldown),
        ("ScaleInCooldown", cfg.scale_in_cooldown),
    ] {
        if v.is_some_and(|v| v < 0) {
            return Err(AsError::Validation(format!("{name} must not be negative")));
        }
    }
    match (
        &cfg.predefined_metric_specification,
        &cfg.customized_metric_specification,
    ) {
        (Some(_), Some(_)) | (None, None) => Err(AsError::Validation(
            "Exactly one of PredefinedMetricSpecification and CustomizedMetricSpecification \
             must be given"
                .into(),
        )),
        (Some(p), None) => {
            let name = match p.predefined_metric_type.as_str() {
                "ECSServiceAverageCPUUtilization" => "CPUUtilization",
                "ECSServiceAverageMemoryUtilization" => "MemoryUtilization",
                "ALBRequestCountPerTarget" => return alb_request_count(p),
                other => {
                    return Err(AsError::Validation(format!(
                        "Unsupported predefined metric type {other} for service namespace \
                         ecs: {}",
                        PREDEFINED_ECS.join(", ")
                    )));
                }
            };
            Ok(Tracked {
                namespace: crate::ecs::metrics::NAMESPACE.into(),
                name: name.into(),
                dimensions: vec![
                    Dimension {
                        name: "ClusterName".into(),
                        value: cluster.into(),
                    },
                    Dimension {
                        name: "ServiceName".into(),
                        value: service.into(),
                    },
                ],
                statistic: "Average".into(),
                unit: Some("Percent".into()),
                metrics: None,
            })
        }
        (None, Some(c)) => {
            if let Some(m) = &c.metrics {
                return math_metric(c, m);
            }
            let (Some(ns), Some(name), Some(stat)) = (&c.namespace, &c.metric_name, &c.statistic)
            else {
                return Err(AsError::Validation(
                    "CustomizedMetricSpecification needs Namespace, MetricName and Statistic"
                        .into(),
                ));
            };
            const STATS: &[&str] = &["Average", "Minimum", "Maximum", "SampleCount", "Sum"];
            if !STATS.contains(&stat.as_str()) {
                return Err(enum_error(
                    stat,
                    "targetTrackingScalingPolicyConfiguration.customizedMetricSpecification.statistic",
                    STATS,
                ));
            }
            Ok(Tracked {
                namespace: ns.clone(),
                name: name.clone(),
                dimensions: c
                    .dimensions
                    .iter()
                    .map(|d| Dimension {
                        name: d.name.clone(),
                        value: d.value.clone(),
                    })
                    .collect(),
                statistic: stat.clone(),
                unit: c.unit.clone(),
                metrics: None,
            })
        }
    }
}

/// A customized specification on metric math (`Metrics`: TargetTrackingMetricDataQuery,
/// CloudWatch's MetricDataQuery without periods): the alarms' `Metrics`, each MetricStat
/// at the alarms' period. Given with MetricName, Namespace, Dimensions, Statistic or Unit:
/// refused (the model: "either … or"). The queries are checked as PutMetricAlarm checks
/// them when the alarms are made.
fn math_metric(
    c: &super::CustomizedMetricSpecification,
    m: &serde_json::Value,
) -> AsResult<Tracked> {
    if c.metric_name.is_some()
        || c.namespace.is_some()
        || !c.dimensions.is_empty()
        || c.statistic.is_some()
        || c.unit.is_some()
    {
        return Err(AsError::Validation(
            "CustomizedMetricSpecification: give either Metrics (metric math) or MetricName, \
             Namespace, Dimensions, Statistic and Unit, not both"
                .into(),
        ));
    }
    let mut queries: Vec<MetricDataQuery> = serde_json::from_value(m.clone()).map_err(|e| {
        AsError::Validation(format!(
            "CustomizedMetricSpecification.Metrics is not a list of \
             TargetTrackingMetricDataQuery: {e}"
        ))
    })?;
    for q in &mut queries {
        if let Some(ms) = &mut q.metric_stat {
            if ms.period.is_some() {
                return Err(AsError::Validation(format!(
                    "CustomizedMetricSpecification.Metrics {}: a TargetTrackingMetricStat has \
                     no Period (the policy's alarms set it)",
                    q.id
                )));
            }
            ms.period = Some(super::alarm_period());
        }
    }
    Ok(Tracked {
        namespace: String::new(),
        name: String::new(),
        dimensions: Vec::new(),
        statistic: String::new(),
        unit: None,
        metrics: Some(queries),
    })
}

/// ALBRequestCountPerTarget: the load balancer's `AWS/ApplicationELB`
/// `RequestCountPerTarget` (Sum) of the target group its `ResourceLabel` names,
/// `app/<load-balancer-name>/<load-balancer-id>/targetgroup/<target-group-name>/<target-group-id>`
/// (API_PredefinedMetricSpecification), by `LoadBalancer` and `TargetGroup` as the data
/// plane publishes it (`elb::meters`).
fn alb_request_count(p: &super::PredefinedMetricSpecification) -> AsResult<Tracked> {
    let label = p.resource_label.as_deref().unwrap_or("");
    let parts: Vec<&str> = label.split('/').collect();
    let ok = parts.len() == 6
        && parts[0] == "app"
        && parts[3] == "targetgroup"
        && parts.iter().all(|p| !p.is_empty());
    if !ok {
        return Err(AsError::Validation(format!(
            "ResourceLabel {label:?} is not valid for ALBRequestCountPerTarget: it must be \
             app/<load-balancer-name>/<load-balancer-id>/targetgroup/<target-group-name>/\
             <target-group-id>"
        )));
    }
    Ok(Tracked {
        namespace: "AWS/ApplicationELB".into(),
        name: "RequestCountPerTarget".into(),
        dimensions: vec![
            Dimension {
                name: "LoadBalancer".into(),
                value: parts[..3].join("/"),
            },
            Dimension {
                name: "TargetGroup".into(),
                value: parts[3..].join("/"),
            },
        ],
        statistic: "Sum".into(),
        unit: None,
        metrics: None,
    })
}

/// Target tracking's alarms, as Application Auto Scaling makes them: AlarmHigh (above
/// the target for 3 of 3 periods), and unless scale-in is disabled AlarmLow (below 90 %
/// of the target for 15 of 15), both acting on the policy; the period is the box's.
fn make_alarms(
    cw: &CloudWatch,
    policy_arn: &str,
    resource_id: &str,
    cfg: &TargetTracking,
    m: &Tracked,
    now: Millis,
) -> AsResult<Vec<AlarmRef>> {
    let mut specs = vec![("AlarmHigh", "GreaterThanThreshold", cfg.target_value, 3)];
    if cfg.disable_scale_in != Some(true) {
        specs.push(("AlarmLow", "LessThanThreshold", cfg.target_value * 0.9, 15));
    }
    let mut made: Vec<AlarmRef> = Vec::new();
    let math = m.metrics.is_some();
    for (kind, op, threshold, n) in specs {
        let name = format!("TargetTracking-{resource_id}-{kind}-{}", uuid()?);
        let req = PutMetricAlarmInput {
            alarm_name: name.clone(),
            alarm_description: Some(format!(
                "DO NOT EDIT OR DELETE. For TargetTrackingScaling policy {policy_arn}."
            )),
            actions_enabled: Some(true),
            ok_actions: Vec::new(),
            alarm_actions: vec![policy_arn.to_string()],
            insufficient_data_actions: Vec::new(),
            metric_name: (!math).then(|| m.name.clone()),
            namespace: (!math).then(|| m.namespace.clone()),
            statistic: (!math).then(|| m.statistic.clone()),
            extended_statistic: None,
            dimensions: m.dimensions.clone(),
            period: (!math).then(super::alarm_period),
            unit: m.unit.clone(),
            evaluation_periods: Some(n),
            datapoints_to_alarm: Some(n),
            threshold: Some(threshold),
            comparison_operator: Some(op.into()),
            treat_missing_data: None,
            evaluate_low_sample_count_percentile: None,
            metrics: m.metrics.clone(),
            tags: None,
            threshold_metric_id: None,
        };
        match cw.alarms.put_managed(req, now) {
            Ok(arn) => made.push(AlarmRef {
                alarm_name: name,
                alarm_arn: arn,
            }),
            Err(e) => {
                for a in &made {
                    let _ = cw.alarms.delete(std::slice::from_ref(&a.alarm_name));
                }
                return Err(AsError::Validation(format!(
                    "failed to create the policy's alarm {name}: {}",
                    e.message()
                )));
            }
        }
    }
    Ok(made)
}

/// Deletes the alarms a target tracking policy made (one already gone is not an error:
/// someone deleted it by hand, against the description's advice).
fn delete_own_alarms(cw: &CloudWatch, p: &Policy) {
    let have: std::collections::HashSet<String> =
        cw.alarms.all().into_iter().map(|a| a.alarm_name).collect();
    let names: Vec<String> = p
        .alarms
        .iter()
        .filter(|_| p.target_tracking_scaling_policy_configuration.is_some())
        .map(|a| a.alarm_name.clone())
        .filter(|n| have.contains(n))
        .collect();
    if !names.is_empty()
        && let Err(e) = cw.alarms.delete(&names)
    {
        tracing::warn!(policy = %p.policy_name, error = %e, "Application Auto Scaling: deleting a policy's alarms failed");
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct DescribePoliciesInput {
    #[serde(default)]
    policy_names: Vec<String>,
    service_namespace: String,
    resource_id: Option<String>,
    scalable_dimension: Option<String>,
    max_results: Option<i64>,
    next_token: Option<String>,
}

fn describe_policies(aas: &AutoScaling, req: DescribePoliciesInput) -> AsResult<Value> {
    namespace(&req.service_namespace)?;
    let s = aas.lock();
    // Step scaling policies list the alarms that name them (AWS lists them too).
    let all: Vec<Policy> = s
        .policies
        .values()
        .filter(|p| p.service_namespace == req.service_namespace)
        .filter(|p| req.policy_names.is_empty() || req.policy_names.contains(&p.policy_name))
        .filter(|p| req.resource_id.as_ref().is_none_or(|r| *r == p.resource_id))
        .filter(|p| {
            req.scalable_dimension
                .as_ref()
                .is_none_or(|d| *d == p.scalable_dimension)
        })
        .cloned()
        .collect();
    listed(
        "ScalingPolicies",
        &all,
        req.next_token.as_deref(),
        req.max_results,
        10,
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct DeletePolicyInput {
    policy_name: String,
    service_namespace: String,
    resource_id: String,
    scalable_dimension: String,
}

fn delete_policy(aas: &AutoScaling, cw: &CloudWatch, req: DeletePolicyInput) -> AsResult<Value> {
    namespace(&req.service_namespace)?;
    let mut s = aas.lock();
    let key = policy_key(&req.resource_id, &req.policy_name);
    let found = s.policies.get(&key).is_some_and(|p| {
        p.service_namespace == req.service_namespace
            && p.scalable_dimension == req.scalable_dimension
    });
    if !found {
        return Err(AsError::ObjectNotFound(format!(
            "No scaling policy found for service namespace: {}, resource ID: {}, scalable \
             dimension: {}, policy name: {}",
            req.service_namespace, req.resource_id, req.scalable_dimension, req.policy_name
        )));
    }
    if let Some(p) = s.policies.remove(&key) {
        delete_own_alarms(cw, &p);
    }
    aas.save(&s)?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct DescribeActivitiesInput {
    service_namespace: String,
    resource_id: Option<String>,
    scalable_dimension: Option<String>,
    max_results: Option<i64>,
    next_token: Option<String>,
    include_not_scaled_activities: Option<bool>,
}

fn describe_activities(aas: &AutoScaling, req: DescribeActivitiesInput) -> AsResult<Value> {
    namespace(&req.service_namespace)?;
    let not_scaled = req.include_not_scaled_activities == Some(true);
    let s = aas.lock();
    // Newest first, as AWS lists them.
    let all: Vec<Activity> = s
        .activities
        .iter()
        .rev()
        .filter(|a| a.service_namespace == req.service_namespace)
        .filter(|a| not_scaled || a.not_scaled_reasons.is_none())
        .filter(|a| req.resource_id.as_ref().is_none_or(|r| *r == a.resource_id))
        .filter(|a| {
            req.scalable_dimension
                .as_ref()
                .is_none_or(|d| *d == a.scalable_dimension)
        })
        .cloned()
        .collect();
    listed(
        "ScalingActivities",
        &all,
        req.next_token.as_deref(),
        req.max_results,
        50,
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct PutScheduledInput {
    service_namespace: String,
    schedule: Option<String>,
    timezone: Option<String>,
    scheduled_action_name: String,
    resource_id: String,
    scalable_dimension: String,
    start_time: Option<f64>,
    end_time: Option<f64>,
    scalable_target_action: Option<ScalableTargetAction>,
}

fn put_scheduled(aas: &AutoScaling, req: PutScheduledInput, now: Millis) -> AsResult<Value> {
    ecs_resource(
        &req.service_namespace,
        &req.resource_id,
        &req.scalable_dimension,
    )?;
    let name = &req.scheduled_action_name;
    if name.is_empty() || name.chars().count() > 256 || name.contains([':', '/', '|']) {
        return Err(AsError::Validation(format!(
            "1 validation error detected: Value '{name}' at 'scheduledActionName' failed to \
             satisfy constraint: Member must have length between 1 and 256 and contain no \
             ':', '/' or '|'"
        )));
    }
    let mut s = aas.lock();
    if !s.targets.contains_key(&req.resource_id) {
        return Err(AsError::ObjectNotFound(format!(
            "No scalable target registered for service namespace: {}, resource ID: {}, \
             scalable dimension: {}",
            req.service_namespace, req.resource_id, req.scalable_dimension
        )));
    }
    let key = policy_key(&req.resource_id, name);
    let old = s.scheduled.get(&key).cloned();
    let schedule = match (&req.schedule, &old) {
        (Some(x), _) => x.clone(),
        (None, Some(o)) => o.schedule.clone(),
        (None, None) => {
            return Err(AsError::Validation(
                "Schedule is required when creating a scheduled action".into(),
            ));
        }
    };
    let timezone = req
        .timezone
        .clone()
        .or_else(|| old.as_ref().and_then(|o| o.timezone.clone()));
    let invalid = |e: super::schedule::ScheduleError| AsError::Validation(e.to_string());
    super::schedule::Schedule::parse(&schedule).map_err(invalid)?;
    super::schedule::time_zone(timezone.as_deref()).map_err(invalid)?;
    let action = req
        .scalable_target_action
        .or(old.as_ref().map(|o| o.scalable_target_action))
        .unwrap_or_default();
    if let (Some(min), Some(max)) = (action.min_capacity, action.max_capacity)
        && min > max
    {
        return Err(AsError::Validation(
            "Minimum capacity cannot be greater than maximum capacity".into(),
        ));
    }
    if action.min_capacity.is_some_and(|v| v < 0) || action.max_capacity.is_some_and(|v| v < 0) {
        return Err(AsError::Validation(
            "ScalableTargetAction's MinCapacity and MaxCapacity must not be negative".into(),
        ));
    }
    if let (Some(a), Some(b)) = (req.start_time, req.end_time)
        && a > b
    {
        return Err(AsError::Validation(
            "StartTime must be before EndTime".into(),
        ));
    }
    let arn = match &old {
        Some(o) => o.scheduled_action_arn.clone(),
        None => format!(
            "arn:aws:autoscaling:{}:{}:scheduledAction:{}:resource/ecs/{}:scheduledActionName/{}",
            aas.region,
            aas.account,
            uuid()?,
            req.resource_id,
            name
        ),
    };
    let a = ScheduledAction {
        scheduled_action_name: name.clone(),
        scheduled_action_arn: arn,
        service_namespace: req.service_namespace.clone(),
        schedule,
        timezone,
        resource_id: req.resource_id.clone(),
        scalable_dimension: req.scalable_dimension.clone(),
        start_time: req.start_time.or(old.as_ref().and_then(|o| o.start_time)),
        end_time: req.end_time.or(old.as_ref().and_then(|o| o.end_time)),
        scalable_target_action: action,
        creation_time: old.as_ref().map(|o| o.creation_time).unwrap_or(secs(now)),
    };
    s.scheduled.insert(key.clone(), a);
    s.scheduled_since.insert(key, now);
    aas.save(&s)?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct DescribeScheduledInput {
    #[serde(default)]
    scheduled_action_names: Vec<String>,
    service_namespace: String,
    resource_id: Option<String>,
    scalable_dimension: Option<String>,
    max_results: Option<i64>,
    next_token: Option<String>,
}

fn describe_scheduled(aas: &AutoScaling, req: DescribeScheduledInput) -> AsResult<Value> {
    namespace(&req.service_namespace)?;
    let s = aas.lock();
    let all: Vec<ScheduledAction> = s
        .scheduled
        .values()
        .filter(|a| a.service_namespace == req.service_namespace)
        .filter(|a| {
            req.scheduled_action_names.is_empty()
                || req
                    .scheduled_action_names
                    .contains(&a.scheduled_action_name)
        })
        .filter(|a| req.resource_id.as_ref().is_none_or(|r| *r == a.resource_id))
        .filter(|a| {
            req.scalable_dimension
                .as_ref()
                .is_none_or(|d| *d == a.scalable_dimension)
        })
        .cloned()
        .collect();
    listed(
        "ScheduledActions",
        &all,
        req.next_token.as_deref(),
        req.max_results,
        50,
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct DeleteScheduledInput {
    service_namespace: String,
    scheduled_action_name: String,
    resource_id: String,
    scalable_dimension: String,
}

fn delete_scheduled(aas: &AutoScaling, req: DeleteScheduledInput) -> AsResult<Value> {
    namespace(&req.service_namespace)?;
    let mut s = aas.lock();
    let key = policy_key(&req.resource_id, &req.scheduled_action_name);
    let found = s.scheduled.get(&key).is_some_and(|a| {
        a.service_namespace == req.service_namespace
            && a.scalable_dimension == req.scalable_dimension
    });
    if !found {
        return Err(AsError::ObjectNotFound(format!(
            "No scheduled action found for service namespace: {}, resource ID: {}, scalable \
             dimension: {}, scheduled action name: {}",
            req.service_namespace,
            req.resource_id,
            req.scalable_dimension,
            req.scheduled_action_name
        )));
    }
    s.scheduled.remove(&key);
    s.scheduled_since.remove(&key);
    aas.save(&s)?;
    Ok(json!({}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_is_what_call_answers() {
        // OPERATIONS is the list the coverage table (api::coverage) walks: every operation of
        // the model that `call` answers is in it, and no other ({} is refused before any
        // change by each, its required members missing).
        let dir = tempfile::tempdir().unwrap();
        let ecs = Ecs::scratch(dir.path());
        let aas = AutoScaling::open(None, "us-east-1", "000000000000").unwrap();
        let cw = CloudWatch {
            metrics: std::sync::Arc::new(crate::cloudwatch::metrics::Metrics::new()),
            alarms: crate::cloudwatch::Alarms::open(None, "us-east-1", "000000000000").unwrap(),
        };
        let model = crate::ecs::botocore_model::model_of("application-autoscaling", "2016-02-06");
        let mut wrong = Vec::new();
        for op in model["operations"].as_object().unwrap().keys() {
            let r = call(&aas, &ecs, &cw, op, json!({}), 0);
            let unknown = matches!(r, Err(AsError::UnknownOperation(_)));
            if unknown == OPERATIONS.contains(&op.as_str()) {
                wrong.push(op.clone());
            }
        }
        assert!(
            wrong.is_empty(),
            "listed and unknown, or answered and not listed: {wrong:?}"
        );
    }

    fn step(l: Option<f64>, u: Option<f64>, a: i64) -> super::super::StepAdjustment {
        super::super::StepAdjustment {
            metric_interval_lower_bound: l,
            metric_interval_upper_bound: u,
            scaling_adjustment: a,
        }
    }

    #[test]
    fn resource_ids_are_ecs_services_only() {
        assert_eq!(
            ecs_resource("ecs", "service/default/web", ECS_DIMENSION).unwrap(),
            ("default", "web")
        );
        for bad in [
            "service/default",
            "cluster/default/web",
            "service/a/b/c",
            "service//b",
        ] {
            let e = ecs_resource("ecs", bad, ECS_DIMENSION).unwrap_err();
            assert_eq!(e.name(), "ValidationException", "{bad}");
        }
        let e =
            ecs_resource("dynamodb", "table/t", "dynamodb:table:ReadCapacityUnits").unwrap_err();
        assert!(e.message().contains("only ECS services"), "{e}");
        let e = ecs_resource("nope", "service/a/b", ECS_DIMENSION).unwrap_err();
        assert!(e.message().contains("at 'serviceNamespace'"), "{e}");
    }

    #[test]
    fn step_adjustments_must_not_overlap_or_leave_gaps() {
        let cfg = |steps| StepScaling {
            adjustment_type: Some("ChangeInCapacity".into()),
            step_adjustments: steps,
            min_adjustment_magnitude: None,
            cooldown: None,
            metric_aggregation_type: None,
        };
        assert!(
            check_step(&cfg(vec![
                step(Some(0.0), Some(10.0), 1),
                step(Some(10.0), None, 2)
            ]))
            .is_ok()
        );
        assert!(
            check_step(&cfg(vec![
                step(Some(0.0), Some(10.0), 1),
                step(Some(20.0), None, 2)
            ]))
            .is_err()
        );
        assert!(check_step(&cfg(vec![step(None, None, 1), step(Some(0.0), None, 2)])).is_err());
        assert!(check_step(&cfg(vec![])).is_err());
    }

    #[test]
    fn pages_follow_their_token() {
        let items: Vec<i32> = (0..25).collect();
        let (a, n) = page(&items, None, Some(10), 50).unwrap();
        assert_eq!((a.len(), n.as_deref()), (10, Some("10")));
        let (b, n) = page(&items, Some("20"), Some(10), 50).unwrap();
        assert_eq!((b, n), ((20..25).collect::<Vec<_>>(), None));
        assert_eq!(
            page(&items, Some("x"), None, 50).unwrap_err().name(),
            "InvalidNextTokenException"
        );
    }
}
