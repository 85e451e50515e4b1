//! What starts a new deployment of a service: its ids as ECS writes them, its record, and
//! the deployment in progress it supersedes.

use super::Spec;
use super::load_balancers::side;
use crate::ecs::now_ms;
use crate::store::{DeploymentStatus, RolloutState, Store};

/// A new deployment id as ECS writes them: `ecs-svc/` and 19 digits.
pub fn new_deployment_id() -> anyhow::Result<String> {
    let hex = crate::task::new_id()?;
    let n = u64::from_str_radix(&hex[..16], 16)? % 10_000_000_000_000_000_000;
    Ok(format!("ecs-svc/{n:019}"))
}

/// A new service deployment id: 22 characters of `[A-Za-z0-9_-]`, as ECS's
/// (`…/service-deployment/MyCluster/MyService/r9i43YFjvgF_xlg7m2eJ1r`).
pub fn new_service_deployment_id() -> anyhow::Result<String> {
    use base64::Engine;
    let mut b = [0u8; 16];
    crate::task::fill_random(&mut b)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
}

/// The record of a new deployment of service `service`: its id, the deployments running
/// now (its sources) and the service's settings (its revision). A blue/green one starts
/// at PRE_SCALE_UP on the other side of the target group pairs than the last completed
/// deployment (the first one on `targetGroupArn`): the target groups alternate.
pub fn new_record(
    store: &Store,
    cluster: &str,
    service: &str,
    spec: &Spec,
) -> anyhow::Result<crate::store::ServiceDeploymentRecord> {
    let sources = store
        .deployments(cluster, service)?
        .into_iter()
        .map(|d| d.id)
        .collect();
    let blue_green = if spec.deployment_configuration.blue_green() {
        let serving = store
            .all_deployments(cluster, service)?
            .into_iter()
            .find(|d| d.rollout_state == RolloutState::Completed);
        Some(crate::store::BlueGreenRecord {
            stage: crate::store::LifecycleStage::PreScaleUp,
            stage_at_ms: now_ms(),
            alternate: serving.is_some_and(|d| !side(&d)),
            production_permille: 0,
            step_at_ms: 0,
        })
    } else {
        None
    };
    Ok(crate::store::ServiceDeploymentRecord {
        id: new_service_deployment_id()?,
        sources,
        spec: Some(spec.clone()),
        blue_green,
        ..Default::default()
    })
}

/// Before a new deployment of the service starts: the PRIMARY one, if still in progress,
/// is STOPPED (superseded), and so is the service deployment a rollback in progress rolls
/// back.
pub fn supersede(store: &mut Store, cluster: &str, service: &str) -> anyhow::Result<()> {
    let now = now_ms();
    for mut d in store.deployments(cluster, service)? {
        if d.status == DeploymentStatus::Primary
            && d.rollout_state == RolloutState::InProgress
            && d.sd.status.is_none()
        {
            d.sd.status = Some(crate::store::ServiceDeploymentStatus::Stopped);
            d.sd.stopped_at_ms = Some(now);
            d.sd.finished_at_ms = Some(now);
            d.updated_at_ms = now;
            store.save_deployment(&d)?;
            // A rollback in progress is stopped with it: the service deployment it rolls
            // back is STOPPED, not left ROLLBACK_IN_PROGRESS.
            if let Some(of) = &d.sd.rollback_of
                && let Some(mut failed) = store.deployment(of)?
                && failed.sd.status
                    == Some(crate::store::ServiceDeploymentStatus::RollbackInProgress)
            {
                failed.sd.status = Some(crate::store::ServiceDeploymentStatus::Stopped);
                failed.sd.stopped_at_ms = Some(now);
                failed.sd.finished_at_ms = Some(now);
                failed.updated_at_ms = now;
                store.save_deployment(&failed)?;
            }
        }
    }
    Ok(())
}
