//! Services: CreateService, UpdateService, DescribeServices, ListServices, DeleteService.
//! These write what a service should be; the scheduler (`crate::scheduler`) does the rest:
//! it keeps each service's tasks running and writes its deployments' progress and events.
//! One file per operation and per concept they share; this file holds what all of them
//! use (the service a request names, its events) and the API the rest of the crate calls.

mod checks;
mod create;
mod delete;
mod deployment_config;
mod describe;
mod extras;
mod list;
mod load_balancers;
pub(super) mod new_deployment;
mod shape;
mod update;
mod wake;

pub use create::{CreateServiceRequest, create_service};
pub use delete::{DeleteServiceRequest, delete_service};
pub use describe::{DescribeServicesRequest, DescribeServicesResponse, describe_services};
pub use list::{
    ListServicesByNamespaceRequest, ListServicesByNamespaceResponse, ListServicesRequest,
    ListServicesResponse, list_services, list_services_by_namespace,
};
pub use load_balancers::{lb_pairs, side};
pub use new_deployment::new_deployment_id;
pub use shape::{ServiceResponse, service_json};
pub use update::{UpdateServiceRequest, update_service};
pub use wake::{changed, wait_for_change};

use super::EcsError;
use super::clusters::check_cluster;
use super::names::{self, cluster_name, service_name};
use super::now_ms;
use crate::store::{EventRow, HealthStatus, ServiceRow, ServiceStatus, Store};
use crate::task::shape::task_health;
use anyhow::bail;

pub const SERVICE_NOT_FOUND: &str = "Service not found.";

/// A service's settings besides name, task definition and count (the store keeps them).
pub use crate::store::ServiceSpec as Spec;

fn cluster_of(c: Option<String>) -> String {
    cluster_name(
        &c.filter(|c| !c.is_empty())
            .unwrap_or_else(|| names::DEFAULT.to_string()),
    )
    .to_string()
}

/// Records event `message` for a service; a failure is logged, not answered (an event
/// beside an operation that took place).
pub fn add_event(store: &mut Store, cluster: &str, service: &str, message: String) {
    if let Err(err) = record_event(store, cluster, service, message) {
        tracing::error!(service, error = %crate::errors::error_chain(&err), "failed to record a service event");
    }
}

/// Records event `message` for a service, failing when the store does: an event written in
/// a transaction with the changes it tells of (the scheduler's pass, a rollback).
pub fn record_event(
    store: &mut Store,
    cluster: &str,
    service: &str,
    message: String,
) -> Result<(), crate::store::StoreError> {
    let id = crate::task::new_uuid().unwrap_or_else(|_| format!("{}", now_ms()));
    let e = EventRow {
        id,
        created_at_ms: now_ms(),
        message,
    };
    store.add_service_event(cluster, service, &e)
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

/// Whether a task's essential containers make it UNHEALTHY (the scheduler replaces it).
pub fn unhealthy(containers: &[crate::store::ContainerRow]) -> bool {
    task_health(containers) == HealthStatus::Unhealthy
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ecs::names::check_name;
    use crate::store::DeploymentConfiguration;

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
}
