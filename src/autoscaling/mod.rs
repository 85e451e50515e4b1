//! Application Auto Scaling for ECS services in the core: scalable targets
//! (`ecs:service:DesiredCount` of `service/<cluster>/<service>`), scaling policies
//! (target tracking and step scaling) with the CloudWatch alarms that drive them, and
//! the scaling activities they leave ([`ops`]: the operations, with the model's member
//! names, application-autoscaling service-2.json, API version 2016-02-06); [`scaling`]
//! carries out a policy when an alarm names it among the actions of its state, moving
//! the service's desiredCount through UpdateService's own path. `serve` answers the operations as
//! `AnyScaleFrontendService` (AWS JSON 1.1, `api::autoscaling`).
//!
//! Kept in `<root>/autoscaling/state.json` (written whole, temp + rename, at each change),
//! as the CloudWatch alarms are; in `serve --cluster`, in the rows the serves share
//! (`crate::store::json_state`; the leader runs the policies and scheduled actions).
//! docs/scaling.md says what is honoured.

pub mod decision;
pub mod ops;
pub mod scaling;
pub mod schedule;

use crate::store::json_state::Held;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Milliseconds since the epoch (CloudWatch's clock).
pub type Millis = i64;

/// The one scalable dimension served here.
pub const ECS_DIMENSION: &str = "ecs:service:DesiredCount";

/// An Application Auto Scaling exception: the model's shape name (`__type`).
#[derive(Debug, thiserror::Error)]
pub enum AsError {
    #[error("ValidationException: {0}")]
    Validation(String),
    #[error("ObjectNotFoundException: {0}")]
    ObjectNotFound(String),
    #[error("InvalidNextTokenException: {0}")]
    InvalidNextToken(String),
    #[error("LimitExceededException: {0}")]
    LimitExceeded(String),
    #[error("UnknownOperationException: {0}")]
    UnknownOperation(String),
    /// A body that does not decode, or whose members do not have the model's types.
    #[error("SerializationException: {0}")]
    Serialization(String),
    #[error("InternalServiceException: {0}")]
    Internal(String),
}

pub type AsResult<T> = Result<T, AsError>;

impl AsError {
    /// The exception's shape name in the model (`__type`).
    pub fn name(&self) -> &'static str {
        match self {
            AsError::Validation(_) => "ValidationException",
            AsError::ObjectNotFound(_) => "ObjectNotFoundException",
            AsError::InvalidNextToken(_) => "InvalidNextTokenException",
            AsError::LimitExceeded(_) => "LimitExceededException",
            AsError::UnknownOperation(_) => "UnknownOperationException",
            AsError::Serialization(_) => "SerializationException",
            AsError::Internal(_) => "InternalServiceException",
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            AsError::Internal(_) => 500,
            _ => 400,
        }
    }

    pub fn message(&self) -> String {
        match self {
            AsError::Validation(m)
            | AsError::ObjectNotFound(m)
            | AsError::InvalidNextToken(m)
            | AsError::LimitExceeded(m)
            | AsError::UnknownOperation(m)
            | AsError::Serialization(m)
            | AsError::Internal(m) => m.clone(),
        }
    }
}

/// The model's `SuspendedState` (all three false unless set).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct SuspendedState {
    #[serde(default)]
    pub dynamic_scaling_in_suspended: bool,
    #[serde(default)]
    pub dynamic_scaling_out_suspended: bool,
    #[serde(default)]
    pub scheduled_scaling_suspended: bool,
}

/// A registered scalable target (the model's `ScalableTarget`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ScalableTarget {
    pub service_namespace: String,
    pub resource_id: String,
    pub scalable_dimension: String,
    pub min_capacity: i64,
    pub max_capacity: i64,
    #[serde(rename = "RoleARN")]
    pub role_arn: String,
    pub creation_time: f64,
    pub suspended_state: SuspendedState,
    #[serde(rename = "ScalableTargetARN")]
    pub scalable_target_arn: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct MetricDimension {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct PredefinedMetricSpecification {
    pub predefined_metric_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_label: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct CustomizedMetricSpecification {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dimensions: Vec<MetricDimension>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statistic: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// Metric math (refused: not evaluated here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<serde_json::Value>,
}

/// The model's `TargetTrackingScalingPolicyConfiguration`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct TargetTracking {
    pub target_value: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predefined_metric_specification: Option<PredefinedMetricSpecification>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customized_metric_specification: Option<CustomizedMetricSpecification>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_out_cooldown: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_in_cooldown: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_scale_in: Option<bool>,
}

/// The model's `StepAdjustment`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct StepAdjustment {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric_interval_lower_bound: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric_interval_upper_bound: Option<f64>,
    pub scaling_adjustment: i64,
}

/// The model's `StepScalingPolicyConfiguration`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct StepScaling {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adjustment_type: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub step_adjustments: Vec<StepAdjustment>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_adjustment_magnitude: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric_aggregation_type: Option<String>,
}

/// The model's `Alarm` (of a policy).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct AlarmRef {
    pub alarm_name: String,
    #[serde(rename = "AlarmARN")]
    pub alarm_arn: String,
}

/// A scaling policy (the model's `ScalingPolicy`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Policy {
    #[serde(rename = "PolicyARN")]
    pub policy_arn: String,
    pub policy_name: String,
    pub service_namespace: String,
    pub resource_id: String,
    pub scalable_dimension: String,
    pub policy_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_scaling_policy_configuration: Option<StepScaling>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_tracking_scaling_policy_configuration: Option<TargetTracking>,
    pub alarms: Vec<AlarmRef>,
    pub creation_time: f64,
}

/// A scaling activity (the model's `ScalingActivity`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Activity {
    pub activity_id: String,
    pub service_namespace: String,
    pub resource_id: String,
    pub scalable_dimension: String,
    pub description: String,
    pub cause: String,
    pub start_time: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<f64>,
    pub status_code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
    /// Why a policy run did not scale (a *not scaled activity*), listed only when
    /// DescribeScalingActivities asks with `IncludeNotScaledActivities`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_scaled_reasons: Option<Vec<NotScaledReason>>,
}

/// The model's `NotScaledReason`: a code (AlreadyAtMaxCapacity, AlreadyAtMinCapacity,
/// AlreadyAtDesiredCapacity here) and the capacity that held the scaling back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NotScaledReason {
    pub code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_capacity: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_capacity: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_capacity: Option<i64>,
}

/// The model's `ScalableTargetAction`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ScalableTargetAction {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_capacity: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_capacity: Option<i64>,
}

/// A scheduled action (the model's `ScheduledAction`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ScheduledAction {
    pub scheduled_action_name: String,
    #[serde(rename = "ScheduledActionARN")]
    pub scheduled_action_arn: String,
    pub service_namespace: String,
    pub schedule: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    pub resource_id: String,
    pub scalable_dimension: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<f64>,
    pub scalable_target_action: ScalableTargetAction,
    pub creation_time: f64,
}

/// When a target last scaled, for the cooldowns (ms).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct LastScaled {
    #[serde(default)]
    pub out: Option<Millis>,
    /// The desired count before the scale-out that started the scale-out cooldown: what
    /// a larger scale-out within the cooldown counts from (`decision`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_from: Option<i64>,
    #[serde(default)]
    pub r#in: Option<Millis>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct Saved {
    /// By resource id (one dimension: ecs:service:DesiredCount).
    targets: BTreeMap<String, ScalableTarget>,
    /// By (resource id, policy name).
    policies: BTreeMap<String, Policy>,
    /// Newest last; the last [`ACTIVITIES_KEPT`] a target.
    activities: Vec<Activity>,
    #[serde(default)]
    last_scaled: BTreeMap<String, LastScaled>,
    /// By (resource id, action name).
    #[serde(default)]
    scheduled: BTreeMap<String, ScheduledAction>,
    /// When each scheduled action last ran or was last put (ms): its next run is the
    /// schedule's first time after it.
    #[serde(default)]
    scheduled_since: BTreeMap<String, Millis>,
    /// When each alarm last ran its policies (ms): an alarm staying in the state whose
    /// actions name them runs them once a period. Kept with the rest, so that a cluster's
    /// next leader does not run them again (docs/scaling.md "In a cluster").
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    fired: BTreeMap<String, Millis>,
}

/// How the state is kept in a cluster's rows: a target's activities in one item.
const GROUPS: &[crate::store::json_state::Group] = &[crate::store::json_state::Group {
    field: "activities",
    by: "ResourceId",
    order: "StartTime",
}];

/// A target's activities are kept to this many (Application Auto Scaling keeps six weeks).
const ACTIVITIES_KEPT: usize = 100;

fn policy_key(resource_id: &str, name: &str) -> String {
    format!("{resource_id}\n{name}")
}

/// The box's (in `serve --cluster`, the cluster's) scalable targets, policies and
/// activities.
#[derive(Debug)]
pub struct AutoScaling {
    held: Held<Saved>,
    region: String,
    account: String,
}

impl AutoScaling {
    /// The state kept under `root` (None: in memory only, for unit tests); an undecodable
    /// file is an error naming it, never an empty set.
    pub fn open(
        root: Option<&std::path::Path>,
        region: &str,
        account: &str,
    ) -> AsResult<AutoScaling> {
        Self::open_kept(root, region, account, false)
    }

    /// `serve --cluster`: the state the cluster's serves share, kept in the store's
    /// replicated rows under `root` (`crate::store::json_state`).
    pub fn open_shared(
        root: &std::path::Path,
        region: &str,
        account: &str,
    ) -> AsResult<AutoScaling> {
        Self::open_kept(Some(root), region, account, true)
    }

    fn open_kept(
        root: Option<&std::path::Path>,
        region: &str,
        account: &str,
        rows: bool,
    ) -> AsResult<AutoScaling> {
        let file = "autoscaling/state.json";
        let what = "Application Auto Scaling";
        let held = Held::open(root, file, "autoscaling", GROUPS, rows, what)
            .map_err(|e| AsError::Internal(crate::errors::error_chain(&e)))?;
        Ok(AutoScaling {
            held,
            region: region.to_string(),
            account: account.to_string(),
        })
    }

    /// The state, as another serve of the cluster may have changed it.
    fn lock(&self) -> std::sync::MutexGuard<'_, Saved> {
        self.held.lock()
    }

    fn save(&self, s: &Saved) -> AsResult<()> {
        self.held
            .save(s)
            .map_err(|e| AsError::Internal(crate::errors::error_chain(&e)))
    }

    fn record(s: &mut Saved, a: Activity) {
        let id = a.resource_id.clone();
        s.activities.push(a);
        let of_target = s.activities.iter().filter(|a| a.resource_id == id).count();
        if of_target > ACTIVITIES_KEPT
            && let Some(i) = s.activities.iter().position(|a| a.resource_id == id)
        {
            s.activities.remove(i);
        }
    }
}

/// A duration AWS gives for its one-minute period (cooldowns: ECS's 300 s), scaled to the
/// box's metric period (`MINIFARGATE_METRICS_PERIOD`): 300 s at 60 s, 25 s at 5 s.
pub fn scaled_secs(aws_secs: i64) -> i64 {
    scaled_to(aws_secs, alarm_period())
}

/// `aws_secs` (for AWS's one-minute period) at a metric period of `period_secs`.
pub fn scaled_to(aws_secs: i64, period_secs: i64) -> i64 {
    aws_secs * period_secs.max(1) / 60
}

/// The box's metric period in seconds: the period of the alarms a target tracking policy
/// makes (AWS's 60 s).
pub fn alarm_period() -> i64 {
    crate::config::get().metrics_period.as_secs().max(1) as i64
}

fn secs(ms: Millis) -> f64 {
    ms as f64 / 1000.0
}
