//! ListServices (a cluster's services, filtered and paged) and ListServicesByNamespace
//! (the services of a Service Connect namespace).

use super::checks::launch_type;
use super::{check_cluster, cluster_of};
use crate::ecs::{Ecs, EcsError, EcsResult};
use anyhow::bail;
use serde::{Deserialize, Serialize};

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

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListServicesResponse {
    pub service_arns: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// ListServices: 10 a page unless asked (ecs.json `ListServicesRequest.maxResults`).
pub fn list_services(ecs: &Ecs, req: &ListServicesRequest) -> EcsResult<ListServicesResponse> {
    let arns = list_arns(ecs, req)?;
    let (service_arns, next_token) =
        crate::ecs::page(arns, req.max_results, 10, req.next_token.as_deref())?;
    Ok(ListServicesResponse {
        service_arns,
        next_token,
    })
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

/// ListServicesByNamespace: the services, of any cluster, that use Service Connect in a
/// namespace (`serviceConnectConfiguration` enabled with that `namespace`, or with none and
/// their cluster's `serviceConnectDefaults.namespace`), ACTIVE and DRAINING ones, by
/// cluster then name. The namespace is given by name or ARN; the namespaces known are
/// Cloud Map's (by name, ARN or id) and the clusters' `serviceConnectDefaults.namespace`;
/// any other is NamespaceNotFoundException, as ECS answers. Ref: ecs.json
/// `ListServicesByNamespace` ("all of the services that are associated with a Cloud Map
/// namespace. This list might include services in different clusters"; `namespace`
/// required: name or ARN; `maxResults` 1-100, 10 when not given).
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
    let known = Namespaces::read(&store)?;
    if !known.knows(&req.namespace) {
        return Err(EcsError::NamespaceNotFound(format!(
            "Namespace {} not found (the namespaces here are Cloud Map's and the clusters' \
             serviceConnectDefaults.namespace)",
            req.namespace
        )));
    }
    let wanted = known.name_of(&req.namespace);
    let mut arns = Vec::new();
    for s in store.list_services(None).map_err(anyhow::Error::from)? {
        if s.status == crate::store::ServiceStatus::Inactive {
            continue;
        }
        let Some(cfg) = s.spec.not_applied.get("serviceConnectConfiguration") else {
            continue;
        };
        if cfg["enabled"] != true {
            continue;
        }
        let ns = match cfg["namespace"].as_str() {
            Some(n) if !n.is_empty() => Some(known.name_of(n)),
            _ => known.defaults.get(s.cluster.as_str()).cloned(),
        };
        if ns.as_deref() == Some(&wanted) {
            arns.push((s.cluster, s.name, s.arn));
        }
    }
    arns.sort();
    let (service_arns, next_token) = crate::ecs::page(
        arns.into_iter().map(|(_, _, arn)| arn).collect(),
        req.max_results,
        10,
        req.next_token.as_deref(),
    )?;
    Ok(ListServicesByNamespaceResponse {
        service_arns,
        next_token,
    })
}

/// The Service Connect namespaces known here: Cloud Map's (by name, ARN or id) and every
/// cluster's `serviceConnectDefaults.namespace` (made in Cloud Map with the cluster:
/// `crate::ecs::clusters`; one deleted from Cloud Map since is still the cluster's).
pub(super) struct Namespaces {
    cloud_map: Vec<crate::servicediscovery::model::Namespace>,
    /// Each cluster's default namespace, as its name ([`Namespaces::name_of`]).
    defaults: std::collections::HashMap<String, String>,
}

impl Namespaces {
    pub(super) fn read(store: &crate::store::Store) -> EcsResult<Namespaces> {
        let mut cloud_map = Vec::new();
        for (kind, id, doc) in store
            .servicediscovery_resources()
            .map_err(anyhow::Error::from)?
        {
            if kind != "namespace" {
                continue;
            }
            let ns: crate::servicediscovery::model::Namespace = serde_json::from_str(&doc)
                .map_err(|e| {
                    EcsError::Server(anyhow::anyhow!(
                        "stored Cloud Map namespace {id} does not decode: {e}"
                    ))
                })?;
            cloud_map.push(ns);
        }
        let mut known = Namespaces {
            cloud_map,
            defaults: Default::default(),
        };
        for c in store.list_clusters().map_err(anyhow::Error::from)? {
            if let Some(n) = c.configuration["serviceConnectDefaults"]["namespace"]
                .as_str()
                .filter(|n| !n.is_empty())
            {
                let name = known.name_of(n);
                known.defaults.insert(c.name.clone(), name);
            }
        }
        Ok(known)
    }

    /// A namespace as its name: Cloud Map's by name, ARN or id; else as given (a cluster's
    /// default namespace that Cloud Map does not have).
    pub(super) fn name_of(&self, x: &str) -> String {
        self.cloud_map
            .iter()
            .find(|n| n.name == x || n.arn == x || n.id == x)
            .map_or_else(|| x.to_string(), |n| n.name.clone())
    }

    /// Whether `x` (a name, ARN or id) is one of these namespaces.
    pub(super) fn knows(&self, x: &str) -> bool {
        let name = self.name_of(x);
        self.cloud_map.iter().any(|n| n.name == name) || self.defaults.values().any(|n| *n == name)
    }
}
