//! Plain serde types the store keeps in JSON columns (RunTask overrides, resource tags, a
//! service's settings, what a task's network step made). They live here so rows can carry them typed; `task` and `ecs`
//! re-export them where the API uses them.

use crate::taskdef::model::{EnvironmentFile, EphemeralStorage, KeyValuePair, ResourceRequirement};
use serde::{Deserialize, Serialize};

/// One ECS resource tag (clusters, task definitions, tasks, services).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub key: String,
    #[serde(default)]
    pub value: String,
}

/// RunTask `--overrides` (ECS shape `TaskOverride`, every member); unknown fields are ignored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskOverride {
    #[serde(default)]
    pub container_overrides: Vec<ContainerOverride>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_role_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_role_arn: Option<String>,
    /// Replaces the definition's `ephemeralStorage` (then as the definition's: see
    /// `supervisor::isolation::ephemeral`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ephemeral_storage: Option<EphemeralStorage>,
    /// Not applied here (`taskdef::coverage::RUN_TASK`); kept as given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inference_accelerator_overrides: Option<serde_json::Value>,
}

/// One entry of `containerOverrides`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerOverride {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<Vec<KeyValuePair>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_reservation: Option<i64>,
    /// Replace the container's `environmentFiles` (read as the definition's would be).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment_files: Option<Vec<EnvironmentFile>>,
    /// Replace the container's `resourceRequirements` (then as the definition's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_requirements: Option<Vec<ResourceRequirement>>,
}

/// What RunTask (or StartTask) recorded on a task besides its own columns (the `launch`
/// column): ECS shows the first two on the task; the rest is kept as given.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LaunchRecord {
    /// FARGATE or FARGATE_SPOT when a capacity provider strategy placed the task.
    pub capacity_provider_name: Option<String>,
    /// The platform version a FARGATE task reports (`LATEST` resolved).
    pub platform_version: Option<String>,
    pub reference_id: Option<String>,
    pub placement_constraints: Option<serde_json::Value>,
    pub placement_strategy: Option<serde_json::Value>,
    pub client_token: Option<String>,
    /// StartTask: the container instance the caller named (this host's, for the cluster).
    pub container_instance_arn: Option<String>,
}

/// A service's settings besides name, task definition and count (the `spec` column).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    pub launch_type: Option<String>,
    pub platform_version: Option<String>,
    /// RunTask's checked `awsvpcConfiguration`; stored as JSON text inside the spec.
    #[serde(default, with = "json_text")]
    pub network_configuration: Option<serde_json::Value>,
    #[serde(default)]
    pub deployment_configuration: DeploymentConfiguration,
    #[serde(default)]
    pub enable_execute_command: bool,
    /// NONE, SERVICE or TASK_DEFINITION.
    pub propagate_tags: Option<String>,
    pub health_check_grace_period_seconds: Option<i64>,
    /// The checked `capacityProviderStrategy` (the request's, or the cluster's default
    /// when neither it nor a launch type was given); its tasks resolve to FARGATE.
    pub capacity_provider_strategy: Option<serde_json::Value>,
    #[serde(default, rename = "enableECSManagedTags")]
    pub enable_ecs_managed_tags: bool,
    /// Checked and passed to each RunTask of the service (recorded on the tasks).
    pub placement_constraints: Option<serde_json::Value>,
    pub placement_strategy: Option<serde_json::Value>,
    /// ENABLED or DISABLED; recorded (one host has no Availability Zones).
    pub availability_zone_rebalancing: Option<String>,
    /// The load-balancer role as an ARN; recorded.
    pub role_arn: Option<String>,
    /// CreateService's idempotency token.
    pub client_token: Option<String>,
    /// Members recorded as given and not applied here, by name (loadBalancers,
    /// serviceRegistries, serviceConnectConfiguration, vpcLatticeConfigurations,
    /// volumeConfigurations): shown where ECS shows them, and named in a service event.
    #[serde(default)]
    pub not_applied: std::collections::BTreeMap<String, serde_json::Value>,
}

impl ServiceSpec {
    /// Whether the service's tasks are FARGATE tasks (its launch type, or a capacity
    /// provider strategy, which only names Fargate's providers here).
    pub fn fargate(&self) -> bool {
        self.launch_type.as_deref() == Some("FARGATE") || self.capacity_provider_strategy.is_some()
    }
}

/// One `networkBindings` entry of a container (ecs.json `NetworkBinding`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Binding {
    #[serde(rename = "bindIP")]
    pub bind_ip: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_port: Option<u16>,
    pub protocol: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_port_range: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_port_range: Option<String>,
}

/// What the store keeps of a set-up task network (the `network` column).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recorded {
    pub net: netns::TaskNetwork,
    /// The full private DNS name (awsvpc and bridge modes).
    pub private_dns_name: Option<String>,
    pub bindings: Vec<StoredBinding>,
}

/// A [`Binding`] with its container, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredBinding {
    pub container: String,
    #[serde(flatten)]
    pub binding: Binding,
}

/// A JSON value kept as a JSON string (how the `spec` column has always held it).
mod json_text {
    use serde::{Deserialize, Deserializer, Serialize, Serializer, de::Error};

    pub fn serialize<S: Serializer>(
        v: &Option<serde_json::Value>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        v.as_ref().map(|v| v.to_string()).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<serde_json::Value>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|text| serde_json::from_str(&text).map_err(D::Error::custom))
            .transpose()
    }
}

/// Ref: ecs.json `DeploymentConfiguration` (REPLICA defaults 200 and 100).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentConfiguration {
    pub maximum_percent: i64,
    pub minimum_healthy_percent: i64,
    /// Absent: off (ECS's default for a service created through the API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_circuit_breaker: Option<CircuitBreakerConfig>,
    /// Absent: no deployment alarms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alarms: Option<DeploymentAlarms>,
    /// Absent: ROLLING (ECS's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<DeploymentStrategy>,
    /// BLUE_GREEN: how long both revisions run after production traffic shifted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bake_time_in_minutes: Option<i64>,
    /// `lifecycleHooks` as given (checked; recorded, not invoked: no Lambda here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle_hooks: Option<serde_json::Value>,
    /// LINEAR: the production traffic's steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linear_configuration: Option<LinearConfiguration>,
    /// CANARY: the canary's share and bake time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_configuration: Option<CanaryConfiguration>,
}

impl DeploymentConfiguration {
    /// Whether deployments run a green revision beside the blue one and move the load
    /// balancers' traffic to it: BLUE_GREEN, and LINEAR and CANARY, which shift production
    /// traffic in steps ("Application Load Balancer resources for blue/green, linear, and
    /// canary deployments").
    pub fn blue_green(&self) -> bool {
        matches!(
            self.strategy,
            Some(
                DeploymentStrategy::BlueGreen
                    | DeploymentStrategy::Linear
                    | DeploymentStrategy::Canary
            )
        )
    }
}

/// Ref: ecs.json `LinearConfiguration` (stepPercent default 10.0, stepBakeTimeInMinutes
/// default 6).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LinearConfiguration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_percent: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_bake_time_in_minutes: Option<i64>,
}

/// Ref: ecs.json `CanaryConfiguration` (canaryPercent default 5.0,
/// canaryBakeTimeInMinutes default 10).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CanaryConfiguration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_percent: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_bake_time_in_minutes: Option<i64>,
}

/// Ref: ecs.json `DeploymentStrategy`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeploymentStrategy {
    Rolling,
    BlueGreen,
    Linear,
    Canary,
}

impl DeploymentStrategy {
    /// The name ECS writes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rolling => "ROLLING",
            Self::BlueGreen => "BLUE_GREEN",
            Self::Linear => "LINEAR",
            Self::Canary => "CANARY",
        }
    }
}

/// A blue/green deployment's lifecycle stage, in the order they come. Ref: ecs.json
/// `ServiceDeploymentLifecycleStage` (RECONCILE_SERVICE is not a stage here: it only
/// happens with more than one ACTIVE service revision, which a new deployment here has
/// not).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LifecycleStage {
    PreScaleUp,
    ScaleUp,
    PostScaleUp,
    TestTrafficShift,
    PostTestTrafficShift,
    ProductionTrafficShift,
    PostProductionTrafficShift,
    BakeTime,
    CleanUp,
}

impl LifecycleStage {
    /// The name ECS writes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PreScaleUp => "PRE_SCALE_UP",
            Self::ScaleUp => "SCALE_UP",
            Self::PostScaleUp => "POST_SCALE_UP",
            Self::TestTrafficShift => "TEST_TRAFFIC_SHIFT",
            Self::PostTestTrafficShift => "POST_TEST_TRAFFIC_SHIFT",
            Self::ProductionTrafficShift => "PRODUCTION_TRAFFIC_SHIFT",
            Self::PostProductionTrafficShift => "POST_PRODUCTION_TRAFFIC_SHIFT",
            Self::BakeTime => "BAKE_TIME",
            Self::CleanUp => "CLEAN_UP",
        }
    }
}

/// What a blue/green deployment keeps: its stage, since when, and the side of the
/// service's target group pairs its tasks register in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlueGreenRecord {
    pub stage: LifecycleStage,
    pub stage_at_ms: i64,
    /// Its tasks register in each load balancer's `alternateTargetGroupArn` (else its
    /// `targetGroupArn`).
    pub alternate: bool,
    /// During PRODUCTION_TRAFFIC_SHIFT: the share of production traffic on green, in
    /// thousandths (LINEAR and CANARY move it in steps; BLUE_GREEN at once to 1000).
    #[serde(default)]
    pub production_permille: i64,
    /// When the last production step was taken.
    #[serde(default)]
    pub step_at_ms: i64,
}

impl Default for DeploymentConfiguration {
    fn default() -> Self {
        DeploymentConfiguration {
            maximum_percent: 200,
            minimum_healthy_percent: 100,
            deployment_circuit_breaker: None,
            alarms: None,
            strategy: None,
            bake_time_in_minutes: None,
            lifecycle_hooks: None,
            linear_configuration: None,
            canary_configuration: None,
        }
    }
}

/// Ref: ecs.json `DeploymentAlarms` (`alarmNames`, `enable`, `rollback`, all required).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeploymentAlarms {
    pub alarm_names: Vec<String>,
    pub enable: bool,
    pub rollback: bool,
}

/// Ref: ecs.json `DeploymentCircuitBreaker` (`enable`, `rollback`, both required).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CircuitBreakerConfig {
    pub enable: bool,
    pub rollback: bool,
}

/// A service deployment's status. Ref: ecs.json `ServiceDeploymentStatus`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ServiceDeploymentStatus {
    Pending,
    Successful,
    Stopped,
    StopRequested,
    InProgress,
    RollbackRequested,
    RollbackInProgress,
    RollbackSuccessful,
    RollbackFailed,
}

impl ServiceDeploymentStatus {
    /// The name ECS writes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Successful => "SUCCESSFUL",
            Self::Stopped => "STOPPED",
            Self::StopRequested => "STOP_REQUESTED",
            Self::InProgress => "IN_PROGRESS",
            Self::RollbackRequested => "ROLLBACK_REQUESTED",
            Self::RollbackInProgress => "ROLLBACK_IN_PROGRESS",
            Self::RollbackSuccessful => "ROLLBACK_SUCCESSFUL",
            Self::RollbackFailed => "ROLLBACK_FAILED",
        }
    }
}

/// What a deployment keeps for the service deployment API (ListServiceDeployments …
/// DescribeServiceRevisions): the `service_deployment` column, JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceDeploymentRecord {
    /// The service deployment's id (the last part of its ARN). Empty for the deployment a
    /// rollback starts: it is part of the failed one's service deployment, as on ECS.
    #[serde(default)]
    pub id: String,
    /// Set once the deployment is stopped, rolled back or superseded; an IN_PROGRESS or
    /// SUCCESSFUL one follows its rolloutState.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ServiceDeploymentStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_at_ms: Option<i64>,
    /// The deployments (ids) whose tasks ran when it started: its source revisions.
    #[serde(default)]
    pub sources: Vec<String>,
    /// The service's settings when it started: its service revision and configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<ServiceSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackRecord>,
    /// On the deployment a rollback started: the failed deployment's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_of: Option<String>,
    /// The circuit breaker tripped on it.
    #[serde(default)]
    pub circuit_breaker_triggered: bool,
    /// The deployment alarms that went into ALARM while it was watched (it failed for them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub triggered_alarms: Vec<String>,
    /// When it first reached a steady state: its deployment alarms' bake time runs from
    /// then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steady_at_ms: Option<i64>,
    /// Its tasks the circuit breaker counts as failed: those that stopped on their own,
    /// were stopped for failing their health checks, or failed to launch (not those the
    /// scheduler or a user stopped, e.g. a scale-in of PENDING tasks).
    #[serde(default)]
    pub failure_count: i64,
    /// A blue/green deployment's stage and side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blue_green: Option<BlueGreenRecord>,
}

/// A rollback of a service deployment. Ref: ecs.json `Rollback`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RollbackRecord {
    pub reason: String,
    pub started_at_ms: i64,
    /// The deployment whose revision the service goes back to.
    pub to: String,
    /// The deployment that runs the rollback.
    pub by: String,
}
