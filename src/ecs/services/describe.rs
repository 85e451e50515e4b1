//! DescribeServices: the `Service` of each name or ARN asked for, INACTIVE ones too, and a
//! failure for each unknown one.

use super::shape::{Service, service_json};
use super::{check_cluster, cluster_of, service_name};
use crate::ecs::shapes::Failure;
use crate::ecs::{Ecs, EcsError, EcsResult};
use crate::taskdef::AwsContext;
use anyhow::bail;
use serde::{Deserialize, Serialize};

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct DescribeServicesRequest {
    cluster: Option<String>,
    services: Vec<String>,
    #[serde(default)]
    include: Vec<String>,
}

/// DescribeServices: `(services, failures)`; INACTIVE services are described too.
fn describe(ecs: &Ecs, i: DescribeServicesRequest) -> anyhow::Result<(Vec<Service>, Vec<Failure>)> {
    if i.services.is_empty() || i.services.len() > 10 {
        bail!(EcsError::invalid(format!(
            "services: between 1 and 10 service names or ARNs (got {})",
            i.services.len()
        )));
    }
    let ctx = AwsContext::from_env();
    let mut store = ecs.open_store()?;
    let cluster = cluster_of(i.cluster);
    check_cluster(&store, &cluster)?;
    // Counts read the task states: finish dead tasks first.
    ecs.reconcile(&mut store);
    let with_tags = i.include.iter().any(|s| s == "TAGS");
    let mut found = Vec::new();
    let mut failures = Vec::new();
    for w in &i.services {
        let name = service_name(w);
        match store.service(&cluster, name)? {
            Some(s) => found.push(service_json(&store, &s, with_tags)?),
            None => failures.push(Failure::missing(
                ctx.ecs_arn(&format!("service/{cluster}/{name}")),
            )),
        }
    }
    Ok((found, failures))
}

#[derive(Debug, Serialize)]
pub struct DescribeServicesResponse {
    pub services: Vec<Service>,
    pub failures: Vec<Failure>,
}

/// DescribeServices; INACTIVE services are described too.
pub fn describe_services(
    ecs: &Ecs,
    req: DescribeServicesRequest,
) -> EcsResult<DescribeServicesResponse> {
    let (services, failures) = describe(ecs, req)?;
    Ok(DescribeServicesResponse { services, failures })
}
