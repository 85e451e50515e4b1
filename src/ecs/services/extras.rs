//! The members CreateService and UpdateService share beyond the basics (capacity providers,
//! placement, managed tags, the deployment controller) and those recorded and not applied.

use super::Spec;
use crate::ecs::EcsError;
use crate::ecs::clusters;
use crate::ecs::shapes::{
    self, CapacityProviderStrategyItem, PlacementConstraint, PlacementStrategy,
};
use crate::store::Store;
use anyhow::bail;
use serde_json::Value;

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
pub(super) struct Extras {
    pub(super) capacity_provider_strategy: Option<Vec<CapacityProviderStrategyItem>>,
    pub(super) enable_ecs_managed_tags: Option<bool>,
    pub(super) placement_constraints: Option<Vec<PlacementConstraint>>,
    pub(super) placement_strategy: Option<Vec<PlacementStrategy>>,
    pub(super) availability_zone_rebalancing: Option<String>,
    pub(super) deployment_controller: Option<Value>,
    /// The [`NOT_APPLIED`] members, in its order.
    pub(super) not_applied: [Option<Value>; 5],
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
pub(super) use extras;

/// Checks `x` and writes it into `spec`. Returns whether a new deployment starts (a
/// not-applied member that changed, as ECS starts one) and the service events that name
/// what is not applied. `create`: a launch type and a strategy exclude each other, and the
/// cluster's default strategy applies when neither is given.
pub(super) fn apply_extras(
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
    crate::ecs::on_box::plan(
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
    check_service_connect(store, x.not_applied[2].as_ref())?;
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

/// What ECS refuses of a `serviceConnectConfiguration` when the service is created or
/// updated:
/// - more than one client alias in a `services[]` entry: InvalidParameterException. Ref:
///   ecs.json `ServiceConnectService.clientAliases` ("The maximum number of client aliases
///   that you can have in this list is 1").
/// - a `namespace` (enabled) that is neither Cloud Map's (by name, ARN or id) nor a
///   cluster's `serviceConnectDefaults.namespace` (made in Cloud Map with the cluster):
///   NamespaceNotFoundException, "Failed to retrieve namespace for <namespace>". Ref:
///   ecs.json `CreateService`/`UpdateService` errors (NamespaceNotFoundException, "The
///   specified namespace wasn't found"); the message as ECS answered it, quoted in
///   terraform-aws-modules/terraform-aws-ecs issue 116.
///
/// What it accepts is kept: a service naming no namespace takes its cluster's default
/// (crate::servicediscovery::connect); aliases of two entries or services on one port
/// are accepted (ECS documents each alias's name and port as unique in the namespace, not
/// an error for it; here the first is served, docs/service-discovery.md).
fn check_service_connect(store: &Store, cfg: Option<&Value>) -> anyhow::Result<()> {
    let Some(cfg) = cfg.filter(|c| c.is_object()) else {
        return Ok(());
    };
    for (i, e) in cfg["services"].as_array().into_iter().flatten().enumerate() {
        if let Some(aliases) = e["clientAliases"].as_array()
            && aliases.len() > 1
        {
            bail!(EcsError::invalid(format!(
                "serviceConnectConfiguration.services[{i}].clientAliases: a Service Connect \
                 service has one client alias at most ({} given)",
                aliases.len()
            )));
        }
    }
    if cfg["enabled"] == true
        && let Some(ns) = cfg["namespace"].as_str().filter(|n| !n.is_empty())
        && !super::list::Namespaces::read(store)?.knows(ns)
    {
        bail!(EcsError::NamespaceNotFound(format!(
            "Failed to retrieve namespace for {ns}"
        )));
    }
    Ok(())
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
