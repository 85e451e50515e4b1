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
    let (service_arns, next_token) = crate::ecs::page(
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
