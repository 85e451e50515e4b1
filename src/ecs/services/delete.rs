//! DeleteService: a service goes DRAINING; the scheduler stops its tasks and marks it
//! INACTIVE.

use super::shape::{Service, ServiceResponse, service_json};
use super::wake::changed;
use super::{cluster_of, existing};
use crate::ecs::{Ecs, EcsError, EcsResult, now_ms};
use crate::store::ServiceStatus;
use anyhow::bail;
use serde::Deserialize;

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct DeleteServiceRequest {
    cluster: Option<String>,
    service: String,
    #[serde(default)]
    force: bool,
}

/// DeleteService: the service, DRAINING; the scheduler stops its tasks and then marks it
/// INACTIVE. Ref: ECS refuses a service scaled above 0 unless `force`.
fn delete(ecs: &Ecs, i: DeleteServiceRequest) -> anyhow::Result<Service> {
    let mut store = ecs.open_store()?;
    let cluster = cluster_of(i.cluster);
    let mut s = existing(&store, &cluster, &i.service)?;
    if s.status == ServiceStatus::Active {
        if s.desired_count > 0 && !i.force {
            bail!(EcsError::invalid(format!(
                "The service cannot be stopped while it is scaled above 0. ({} has desiredCount \
                 {}: update it to 0 first, or delete with force)",
                s.name, s.desired_count
            )));
        }
        s.status = ServiceStatus::Draining;
        s.desired_count = 0;
        s.updated_at_ms = now_ms();
        store.save_service(&s)?;
        changed();
    }
    service_json(&store, &s, false)
}

/// DeleteService.
pub fn delete_service(ecs: &Ecs, req: DeleteServiceRequest) -> EcsResult<ServiceResponse> {
    Ok(ServiceResponse {
        service: delete(ecs, req)?,
    })
}
