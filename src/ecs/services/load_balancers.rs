//! A service's `loadBalancers`: the blue/green target group pairs, their rules against the
//! deployment strategy and the task definition's network mode, and the side a deployment is on.

use super::Spec;
use crate::ecs::EcsError;
use crate::store::{DeploymentRow, Store};
use crate::taskdef::AwsContext;
use anyhow::bail;
use serde_json::Value;

/// Whether deployment `d`'s tasks register in the alternate target groups (a deployment
/// that is not blue/green registers in `targetGroupArn`).
pub fn side(d: &DeploymentRow) -> bool {
    d.sd.blue_green.is_some_and(|b| b.alternate)
}

/// The service's load balancers with `advancedConfiguration` (its `loadBalancers` as
/// stored): their target group pairs and listener rules.
pub fn lb_pairs(spec: &Spec) -> Vec<crate::elb::bluegreen::Pair> {
    let Some(list) = spec
        .not_applied
        .get("loadBalancers")
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|l| {
            let a = l.get("advancedConfiguration")?;
            let s = |v: &Value| v.as_str().map(str::to_string);
            Some(crate::elb::bluegreen::Pair {
                primary: s(&l["targetGroupArn"])?,
                alternate: s(&a["alternateTargetGroupArn"])?,
                production: s(&a["productionListenerRule"])?,
                test: s(&a["testListenerRule"]),
            })
        })
        .collect()
}

/// The service's `loadBalancers` against its strategy: with BLUE_GREEN, each target group
/// needs an `advancedConfiguration` whose alternate target group and production listener
/// rule are given (ECS shifts traffic between the two groups with that rule) and whose
/// rules exist and forward to them (`crate::elb::bluegreen::check_pair`); `roleArn` is
/// recorded (no IAM here: serve's scheduler changes its own rules). With ROLLING an
/// `advancedConfiguration` is recorded and not applied: the returned events say so.
/// Ref: ECS Developer Guide, "Application Load Balancer resources for blue/green, linear,
/// and canary deployments"; AWS::ECS::Service AdvancedConfiguration
/// (`AlternateTargetGroupArn`: "Required: Yes").
pub(super) fn check_blue_green(store: &Store, spec: &Spec) -> anyhow::Result<Vec<String>> {
    let Some(list) = spec
        .not_applied
        .get("loadBalancers")
        .and_then(Value::as_array)
    else {
        return Ok(Vec::new());
    };
    let blue_green = spec.deployment_configuration.blue_green();
    let strategy = spec
        .deployment_configuration
        .strategy
        .unwrap_or(crate::store::DeploymentStrategy::Rolling)
        .as_str();
    let mut events = Vec::new();
    for (i, l) in list.iter().enumerate() {
        let at = format!("loadBalancers[{i}]");
        let advanced = l.get("advancedConfiguration").filter(|a| !a.is_null());
        if !blue_green {
            if advanced.is_some() {
                events.push(format!(
                    "{at}.advancedConfiguration: not applied here: it is for the BLUE_GREEN \
                     strategy (this service's is ROLLING)"
                ));
            }
            continue;
        }
        let Some(group) = l["targetGroupArn"].as_str() else {
            continue;
        };
        let Some(a) = advanced else {
            bail!(EcsError::invalid(format!(
                "{at}.advancedConfiguration: required with the {strategy} strategy (the \
                 alternate target group and the production listener rule that ECS shifts \
                 traffic with)"
            )));
        };
        let member = |m: &str| -> anyhow::Result<String> {
            match a[m].as_str() {
                Some(v) if !v.is_empty() => Ok(v.to_string()),
                _ => bail!(EcsError::invalid(format!(
                    "{at}.advancedConfiguration.{m}: required with the {strategy} strategy"
                ))),
            }
        };
        let pair = crate::elb::bluegreen::Pair {
            primary: group.to_string(),
            alternate: member("alternateTargetGroupArn")?,
            production: member("productionListenerRule")?,
            test: a["testListenerRule"].as_str().map(str::to_string),
        };
        crate::elb::bluegreen::check_pair(store, &pair)
            .map_err(|e| EcsError::invalid(format!("{at}.{e}")))?;
    }
    Ok(events)
}

/// The service's `loadBalancers` against the network mode of its task definition `td`:
/// an awsvpc task is reached at its address (a target group of type `ip`), a bridge or
/// host task at its box's instance and host port (`instance`); ECS refuses the other
/// pairings with these words. Ref: ECS Developer Guide, alb.html ("If your service's
/// task definition uses the awsvpc network mode … you must choose ip as the target
/// type"); ECS's message as hashicorp/terraform-provider-aws#12252 quotes it.
pub(super) fn check_target_types(
    store: &mut Store,
    ctx: &AwsContext,
    spec: &Spec,
    td: &str,
) -> anyhow::Result<()> {
    let Some(list) = spec
        .not_applied
        .get("loadBalancers")
        .and_then(Value::as_array)
    else {
        return Ok(());
    };
    let r = crate::ecs::task_definitions::resolve(store, td, ctx, None)?;
    let launch_type = if spec.fargate() { "FARGATE" } else { "EC2" };
    let mode = crate::supervisor::launch::network_mode(&r.stored.definition, launch_type);
    let mode = mode.as_str();
    for l in list {
        let groups = [
            l["targetGroupArn"].as_str(),
            l["advancedConfiguration"]["alternateTargetGroupArn"].as_str(),
        ];
        for arn in groups.into_iter().flatten() {
            let Some(kind) = crate::elb::stored_target_type(store, arn) else {
                continue;
            };
            let fits = match mode {
                "awsvpc" => kind == "ip",
                "bridge" | "host" => kind == "instance",
                _ => true,
            };
            if !fits {
                bail!(EcsError::invalid(format!(
                    "The provided target group {arn} has target type {kind}, which is \
                     incompatible with the {mode} network mode specified in the task definition."
                )));
            }
        }
    }
    Ok(())
}
