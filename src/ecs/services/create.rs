//! CreateService: its request, the rules only it has (client token, role) and the new
//! service row with its first deployment.

use super::checks::{
    check_count, check_platform_version, launch_type, network_configuration, propagate_tags,
    resolve_task_definition,
};
use super::deployment_config::{DeploymentConfigurationInput, deployment_configuration};
use super::extras::{Extras, apply_extras, extras};
use super::load_balancers::{check_blue_green, check_target_types};
use super::new_deployment::{new_deployment_id, new_record};
use super::shape::{Service, ServiceResponse, service_json};
use super::wake::changed;
use super::{Spec, add_event, cluster_of};
use crate::ecs::clusters;
use crate::ecs::names::check_name;
use crate::ecs::shapes::{CapacityProviderStrategyItem, PlacementConstraint, PlacementStrategy};
use crate::ecs::tags::{Tag, checked_tags};
use crate::ecs::{Ecs, EcsError, EcsResult, now_ms};
use crate::store::{
    DeploymentConfiguration, DeploymentRow, DeploymentStatus, RolloutState, ServiceRow,
    ServiceStatus,
};
use crate::taskdef::AwsContext;
use anyhow::bail;
use serde::Deserialize;
use serde_json::Value;

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

/// CreateService.
///
/// `remote`: the request came over the API, so a task definition naming a local
/// `environmentFiles` path is refused ([`crate::ecs::no_local_environment_files`]).
pub fn create_service(
    ecs: &Ecs,
    req: CreateServiceRequest,
    remote: bool,
) -> EcsResult<ServiceResponse> {
    Ok(ServiceResponse {
        service: create(ecs, req, remote)?,
    })
}
