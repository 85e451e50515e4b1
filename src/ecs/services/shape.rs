//! The ECS `Service` shape a service answers with (its deployments, events and deployment
//! configuration), built from its store rows.

use crate::ecs::tags::Tag;
use crate::store::{DeploymentStatus, LastStatus, RolloutState, ServiceRow, ServiceStatus, Store};
use crate::taskdef::AwsContext;
use crate::taskdef::timestamp::Timestamp;
use serde::Serialize;
use serde_json::Value;

/// The response of CreateService, UpdateService and DeleteService: the ECS `Service`
/// shape.
#[derive(Debug, Serialize)]
pub struct ServiceResponse {
    pub service: Service,
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
    let tasks: Vec<crate::store::TaskRow> = crate::ecs::fleet::get()
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
