//! UpdateService: its request and what it changes; a change that needs new tasks starts
//! a deployment, a count alone resizes the one running.

use super::checks::{
    check_count, check_platform_version, network_configuration, propagate_tags,
    resolve_task_definition,
};
use super::deployment_config::{DeploymentConfigurationInput, deployment_configuration};
use super::extras::{Extras, apply_extras, extras};
use super::load_balancers::{check_blue_green, check_target_types};
use super::new_deployment::{new_deployment_id, new_record, supersede};
use super::shape::{Service, ServiceResponse, service_json};
use super::wake::changed;
use super::{add_event, cluster_of, existing};
use crate::ecs::shapes::{CapacityProviderStrategyItem, PlacementConstraint, PlacementStrategy};
use crate::ecs::{Ecs, EcsError, EcsResult, now_ms};
use crate::store::{DeploymentRow, DeploymentStatus, RolloutState, ServiceStatus};
use crate::taskdef::AwsContext;
use anyhow::bail;
use serde::Deserialize;
use serde_json::Value;

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
