//! The member rules CreateService and UpdateService both apply: count, launch type, network
//! configuration, tags propagation, platform version, and the task definition a service runs.

use super::Spec;
use crate::ecs::EcsError;
use crate::ecs::shapes::{self, PlacementConstraint};
use crate::store::Store;
use crate::taskdef::AwsContext;
use anyhow::bail;
use serde_json::Value;

pub(super) fn check_count(n: i64) -> anyhow::Result<()> {
    if n < 0 {
        bail!(EcsError::invalid(format!(
            "desiredCount {n}: must be 0 or more"
        )));
    }
    Ok(())
}

/// The ACTIVE task definition a service runs, as its ARN. A FARGATE service's definition
/// must pass the Fargate rules now, with RunTask's verdict, not at each task start.
pub(super) fn resolve_task_definition(
    store: &mut Store,
    ctx: &AwsContext,
    reference: &str,
    launch_type: Option<&str>,
    remote: bool,
    constraints: Option<&Value>,
) -> anyhow::Result<String> {
    if reference.starts_with("file://") {
        bail!(EcsError::client(format!(
            "taskDefinition {reference:?}: register it first (RegisterTaskDefinition)"
        )));
    }
    let r = crate::ecs::task_definitions::resolve(store, reference, ctx, None)?;
    if remote {
        crate::ecs::no_local_environment_files(&r.stored.definition)?;
    }
    if launch_type == Some("FARGATE") {
        crate::ecs::tasks::fargate_check(reference, &r.stored)?;
    }
    // The service's constraints and the definition's: at most 10 per task, as RunTask's.
    let asked: Vec<PlacementConstraint> = constraints
        .cloned()
        .map(serde_json::from_value)
        .transpose()?
        .unwrap_or_default();
    crate::ecs::tasks::check_constraint_count(&asked, &r.stored)?;
    Ok(r.stored
        .definition
        .task_definition_arn
        .clone()
        .unwrap_or_else(|| ctx.task_definition_arn(r.stored.family(), r.stored.revision())))
}

pub(super) fn network_configuration(v: Option<Value>) -> anyhow::Result<Option<Value>> {
    v.map(|v| {
        let text =
            crate::supervisor::isolation::network::parse_network_configuration(&v.to_string())
                .map_err(|e| EcsError::invalid(format!("networkConfiguration: {e}")))?;
        Ok(serde_json::from_str(&text)?)
    })
    .transpose()
}

pub(super) fn launch_type(v: Option<String>) -> anyhow::Result<Option<String>> {
    match v.as_deref() {
        None | Some("FARGATE") | Some("EC2") => Ok(v),
        Some(other) => bail!(EcsError::invalid(format!(
            "launchType {other:?}: must be FARGATE or EC2"
        ))),
    }
}

pub(super) fn propagate_tags(v: Option<String>) -> anyhow::Result<Option<String>> {
    match v.as_deref() {
        None | Some("NONE") | Some("SERVICE") | Some("TASK_DEFINITION") => Ok(v),
        Some(other) => bail!(EcsError::invalid(format!(
            "propagateTags {other:?}: must be NONE, SERVICE or TASK_DEFINITION"
        ))),
    }
}

/// RunTask's platform-version rule for the service's tasks: refused with the EC2 launch
/// type, a known version otherwise (the tasks record it).
pub(super) fn check_platform_version(spec: &Spec, v: Option<&str>) -> anyhow::Result<()> {
    shapes::platform_version(v, spec.launch_type.as_deref() != Some("EC2"))?;
    Ok(())
}
