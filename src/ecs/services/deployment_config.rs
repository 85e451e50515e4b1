//! A service's `deploymentConfiguration`: the request's members, their rules (strategy,
//! percentages, bake times, lifecycle hooks) and what this host records and does not apply.

use crate::ecs::EcsError;
use crate::store::DeploymentConfiguration;
use anyhow::bail;
use serde::{Deserialize, Serialize};
use serde_json::Value;

impl DeploymentConfiguration {
    /// The most tasks a service may have at once (ECS rounds down) and the fewest healthy
    /// ones it keeps during a deployment (rounded up). Ref: ecs.json
    /// `DeploymentConfiguration.maximumPercent`, `.minimumHealthyPercent`.
    pub fn bounds(&self, desired: i64) -> (i64, i64) {
        let max = desired * self.maximum_percent / 100;
        let min = (desired * self.minimum_healthy_percent + 99) / 100;
        (max, min)
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct DeploymentConfigurationInput {
    maximum_percent: Option<i64>,
    minimum_healthy_percent: Option<i64>,
    deployment_circuit_breaker: Option<crate::store::CircuitBreakerConfig>,
    alarms: Option<crate::store::DeploymentAlarms>,
    strategy: Option<String>,
    bake_time_in_minutes: Option<i64>,
    lifecycle_hooks: Option<Vec<LifecycleHookInput>>,
    linear_configuration: Option<crate::store::LinearConfiguration>,
    canary_configuration: Option<crate::store::CanaryConfiguration>,
}

/// ecs.json `DeploymentLifecycleHook`, as given (recorded as it is once checked).
#[derive(Deserialize, Serialize, Default, Clone)]
#[serde(rename_all = "camelCase")]
struct LifecycleHookInput {
    #[serde(skip_serializing_if = "Option::is_none")]
    target_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hook_target_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    role_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lifecycle_stages: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hook_details: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeout_configuration: Option<Value>,
}

/// Ref: ecs.json `DeploymentLifecycleHookStage`.
const HOOK_STAGES: &[&str] = &[
    "RECONCILE_SERVICE",
    "PRE_SCALE_UP",
    "POST_SCALE_UP",
    "TEST_TRAFFIC_SHIFT",
    "POST_TEST_TRAFFIC_SHIFT",
    "PRE_PRODUCTION_TRAFFIC_SHIFT",
    "PRODUCTION_TRAFFIC_SHIFT",
    "POST_PRODUCTION_TRAFFIC_SHIFT",
];

/// Checks `lifecycleHooks` and returns them as they are recorded. Ref: ecs.json
/// `DeploymentLifecycleHook`: `targetType` AWS_LAMBDA (the default) or PAUSE;
/// `hookTargetArn` ("You must provide this parameter", a Lambda function's ARN) and
/// `lifecycleStages` ("You must provide this parameter") of the stages a hook can run at.
fn lifecycle_hooks(hooks: &[LifecycleHookInput]) -> anyhow::Result<Value> {
    for (i, h) in hooks.iter().enumerate() {
        let at = format!("deploymentConfiguration.lifecycleHooks[{i}]");
        let target = h.target_type.as_deref().unwrap_or("AWS_LAMBDA");
        if !matches!(target, "AWS_LAMBDA" | "PAUSE") {
            bail!(EcsError::invalid(format!(
                "{at}.targetType {target:?}: must be AWS_LAMBDA or PAUSE"
            )));
        }
        if target == "AWS_LAMBDA" && h.hook_target_arn.as_deref().is_none_or(str::is_empty) {
            bail!(EcsError::invalid(format!(
                "{at}.hookTargetArn: required (the ARN of the Lambda function the hook invokes)"
            )));
        }
        let stages = h.lifecycle_stages.as_deref().unwrap_or_default();
        if stages.is_empty() {
            bail!(EcsError::invalid(format!(
                "{at}.lifecycleStages: required (the stages the hook runs at)"
            )));
        }
        if let Some(s) = stages.iter().find(|s| !HOOK_STAGES.contains(&s.as_str())) {
            bail!(EcsError::invalid(format!(
                "{at}.lifecycleStages {s:?}: must be one of {}",
                HOOK_STAGES.join(", ")
            )));
        }
    }
    Ok(serde_json::to_value(hooks)?)
}

impl DeploymentConfigurationInput {
    /// The members given that this host accepts and does not apply with `strategy` (the
    /// service's after the request), as service events. Ref: ecs.json
    /// `DeploymentConfiguration`.
    pub(super) fn not_applied(
        &self,
        strategy: Option<crate::store::DeploymentStrategy>,
    ) -> Vec<String> {
        use crate::store::DeploymentStrategy as S;
        let strategy = strategy.unwrap_or(S::Rolling);
        let mut events = Vec::new();
        if self.bake_time_in_minutes.is_some() && strategy == S::Rolling {
            events.push(
                "deploymentConfiguration.bakeTimeInMinutes: not applied here: a bake time is \
                 for the BLUE_GREEN, LINEAR and CANARY strategies (this service's is ROLLING)"
                    .to_string(),
            );
        }
        if self.lifecycle_hooks.as_ref().is_some_and(|h| !h.is_empty()) {
            events.push(
                "deploymentConfiguration.lifecycleHooks: not applied here: no AWS Lambda \
                 here, the hooks are recorded and not invoked (a PAUSE hook does not pause)"
                    .to_string(),
            );
        }
        for (name, given, applies) in [
            (
                "linearConfiguration",
                self.linear_configuration.is_some(),
                S::Linear,
            ),
            (
                "canaryConfiguration",
                self.canary_configuration.is_some(),
                S::Canary,
            ),
        ] {
            if given && strategy != applies {
                events.push(format!(
                    "deploymentConfiguration.{name}: not applied here: it is for the {} \
                     strategy (this service's is {})",
                    applies.as_str(),
                    strategy.as_str()
                ));
            }
        }
        events
    }
}

/// Whether `p` is a multiple of 0.1 within `min..=100.0`. Ref: ecs.json
/// `LinearConfiguration.stepPercent` ("multiples of 0.1 from 3.0 to 100.0"),
/// `CanaryConfiguration.canaryPercent` ("multiples of 0.1 from 0.1 to 100.0").
fn tenths(p: f64, min: f64) -> bool {
    p.is_finite() && (min..=100.0).contains(&p) && ((p * 10.0).round() - p * 10.0).abs() < 1e-6
}

/// Ref: ecs.json `LinearConfiguration` and `CanaryConfiguration` (bake times "0 to 1440
/// minutes").
fn check_steps(i: &DeploymentConfigurationInput) -> anyhow::Result<()> {
    let minutes = |m: Option<i64>, member: &str| -> anyhow::Result<()> {
        match m {
            Some(m) if !(0..=1440).contains(&m) => bail!(EcsError::invalid(format!(
                "deploymentConfiguration.{member} {m}: must be 0 to 1440 minutes"
            ))),
            _ => Ok(()),
        }
    };
    if let Some(l) = &i.linear_configuration {
        if let Some(p) = l.step_percent.filter(|p| !tenths(*p, 3.0)) {
            bail!(EcsError::invalid(format!(
                "deploymentConfiguration.linearConfiguration.stepPercent {p}: must be a \
                 multiple of 0.1 from 3.0 to 100.0"
            )));
        }
        minutes(
            l.step_bake_time_in_minutes,
            "linearConfiguration.stepBakeTimeInMinutes",
        )?;
    }
    if let Some(c) = &i.canary_configuration {
        if let Some(p) = c.canary_percent.filter(|p| !tenths(*p, 0.1)) {
            bail!(EcsError::invalid(format!(
                "deploymentConfiguration.canaryConfiguration.canaryPercent {p}: must be a \
                 multiple of 0.1 from 0.1 to 100.0"
            )));
        }
        minutes(
            c.canary_bake_time_in_minutes,
            "canaryConfiguration.canaryBakeTimeInMinutes",
        )?;
    }
    Ok(())
}

pub(super) fn deployment_configuration(
    base: DeploymentConfiguration,
    input: Option<&DeploymentConfigurationInput>,
) -> anyhow::Result<DeploymentConfiguration> {
    let Some(i) = input else { return Ok(base) };
    // Ref: ecs.json `DeploymentStrategy`: ROLLING, BLUE_GREEN, LINEAR, CANARY.
    use crate::store::DeploymentStrategy as S;
    check_steps(i)?;
    let strategy = match i.strategy.as_deref() {
        None => base.strategy,
        Some("ROLLING") => Some(S::Rolling),
        Some("BLUE_GREEN") => Some(S::BlueGreen),
        Some("LINEAR") => Some(S::Linear),
        Some("CANARY") => Some(S::Canary),
        Some(s) => bail!(EcsError::invalid(format!(
            "deploymentConfiguration.strategy {s:?}: must be ROLLING, BLUE_GREEN, LINEAR or \
             CANARY"
        ))),
    };
    let lifecycle_hooks = match &i.lifecycle_hooks {
        Some(h) if h.is_empty() => None,
        Some(h) => Some(lifecycle_hooks(h)?),
        None => base.lifecycle_hooks,
    };
    let c = DeploymentConfiguration {
        maximum_percent: i.maximum_percent.unwrap_or(base.maximum_percent),
        minimum_healthy_percent: i
            .minimum_healthy_percent
            .unwrap_or(base.minimum_healthy_percent),
        // Ref: ecs.json `DeploymentCircuitBreaker`: applied by the scheduler
        // (`ecs::deployments`).
        deployment_circuit_breaker: i
            .deployment_circuit_breaker
            .or(base.deployment_circuit_breaker),
        // Ref: ecs.json `DeploymentAlarms`: applied by the scheduler (`ecs::deployments`).
        alarms: i.alarms.clone().or(base.alarms),
        strategy,
        bake_time_in_minutes: i.bake_time_in_minutes.or(base.bake_time_in_minutes),
        lifecycle_hooks,
        linear_configuration: i.linear_configuration.or(base.linear_configuration),
        canary_configuration: i.canary_configuration.or(base.canary_configuration),
    };
    // Ref: ecs.json `DeploymentConfiguration.bakeTimeInMinutes`: "You must provide this
    // parameter when you use the BLUE_GREEN deployment strategy" (LINEAR and CANARY: none
    // given is 0 here, ECS documents no default).
    if c.blue_green() {
        match c.bake_time_in_minutes {
            None if c.strategy == Some(S::BlueGreen) => bail!(EcsError::invalid(
                "deploymentConfiguration.bakeTimeInMinutes: required with the BLUE_GREEN \
                 strategy (how long both revisions run after production traffic shifted)"
            )),
            Some(m) if m < 0 => bail!(EcsError::invalid(format!(
                "deploymentConfiguration.bakeTimeInMinutes {m}: must be 0 or more"
            ))),
            _ => {}
        }
    }

    if !(0..=100).contains(&c.minimum_healthy_percent) {
        bail!(EcsError::invalid(format!(
            "deploymentConfiguration.minimumHealthyPercent {}: must be between 0 and 100",
            c.minimum_healthy_percent
        )));
    }
    if c.maximum_percent < 100 || c.maximum_percent <= c.minimum_healthy_percent {
        bail!(EcsError::invalid(format!(
            "deploymentConfiguration.maximumPercent {}: must be at least 100 and more than \
             minimumHealthyPercent ({}), or a deployment could never replace a task",
            c.maximum_percent, c.minimum_healthy_percent
        )));
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_configuration_rules() {
        let base = DeploymentConfiguration::default();
        let input = |max, min| {
            Some(DeploymentConfigurationInput {
                maximum_percent: max,
                minimum_healthy_percent: min,
                ..Default::default()
            })
        };
        assert_eq!(deployment_configuration(base.clone(), None).unwrap(), base);
        assert!(deployment_configuration(base.clone(), input(Some(100), Some(0)).as_ref()).is_ok());
        assert!(deployment_configuration(base.clone(), input(Some(100), None).as_ref()).is_err());
        assert!(deployment_configuration(base.clone(), input(None, Some(101)).as_ref()).is_err());
        // BLUE_GREEN needs its bake time; LINEAR and CANARY do not run; a rolling
        // service's bake time is said not applied; deployment alarms are applied.
        let mut blue = DeploymentConfigurationInput {
            strategy: Some("BLUE_GREEN".into()),
            ..Default::default()
        };
        assert!(deployment_configuration(base.clone(), Some(&blue)).is_err());
        blue.bake_time_in_minutes = Some(2);
        let c = deployment_configuration(base.clone(), Some(&blue)).unwrap();
        assert!(c.blue_green() && c.bake_time_in_minutes == Some(2));
        assert!(blue.not_applied(c.strategy).is_empty());
        let linear = |percent: f64, minutes: i64| DeploymentConfigurationInput {
            strategy: Some("LINEAR".into()),
            linear_configuration: Some(crate::store::LinearConfiguration {
                step_percent: Some(percent),
                step_bake_time_in_minutes: Some(minutes),
            }),
            ..Default::default()
        };
        let c = deployment_configuration(base.clone(), Some(&linear(12.5, 1))).unwrap();
        assert!(c.blue_green() && c.bake_time_in_minutes.is_none());
        for (p, m) in [(2.9, 1), (12.55, 1), (100.1, 1), (10.0, 1441), (10.0, -1)] {
            assert!(
                deployment_configuration(base.clone(), Some(&linear(p, m))).is_err(),
                "{p} {m}"
            );
        }
        let canary_on_linear = DeploymentConfigurationInput {
            canary_configuration: Some(Default::default()),
            ..linear(10.0, 1)
        };
        let said = canary_on_linear.not_applied(c.strategy);
        assert_eq!(said.len(), 1, "{said:?}");
        assert!(said[0].contains("it is for the CANARY strategy (this service's is LINEAR)"));
        let hooks = |v: Value| DeploymentConfigurationInput {
            strategy: Some("BLUE_GREEN".into()),
            bake_time_in_minutes: Some(0),
            lifecycle_hooks: Some(serde_json::from_value(v).unwrap()),
            ..Default::default()
        };
        let ok = hooks(
            serde_json::json!([{"hookTargetArn": "arn:aws:lambda:us-east-1:1:function:f",
            "roleArn": "arn:aws:iam::1:role/r", "lifecycleStages": ["POST_TEST_TRAFFIC_SHIFT"]}]),
        );
        let c = deployment_configuration(base.clone(), Some(&ok)).unwrap();
        assert_eq!(
            c.lifecycle_hooks.unwrap()[0]["lifecycleStages"],
            serde_json::json!(["POST_TEST_TRAFFIC_SHIFT"])
        );
        let said = ok.not_applied(c.strategy);
        assert!(said[0].starts_with("deploymentConfiguration.lifecycleHooks: not applied"));
        for bad in [
            serde_json::json!([{"lifecycleStages": ["POST_SCALE_UP"]}]),
            serde_json::json!([{"hookTargetArn": "arn:f"}]),
            serde_json::json!([{"hookTargetArn": "arn:f", "lifecycleStages": ["BAKE_TIME"]}]),
            serde_json::json!([{"targetType": "SNS", "hookTargetArn": "arn:f", "lifecycleStages": ["POST_SCALE_UP"]}]),
        ] {
            assert!(
                deployment_configuration(base.clone(), Some(&hooks(bad.clone()))).is_err(),
                "{bad}"
            );
        }
        let pause = hooks(
            serde_json::json!([{"targetType": "PAUSE", "lifecycleStages": ["POST_SCALE_UP"]}]),
        );
        assert!(deployment_configuration(base.clone(), Some(&pause)).is_ok());
        let alarms = DeploymentConfigurationInput {
            strategy: Some("ROLLING".into()),
            alarms: Some(crate::store::DeploymentAlarms {
                alarm_names: vec!["a".into()],
                enable: true,
                rollback: true,
            }),
            bake_time_in_minutes: Some(5),
            ..Default::default()
        };
        let c = deployment_configuration(base.clone(), Some(&alarms)).unwrap();
        assert_eq!(c.alarms, alarms.alarms);
        let said = alarms.not_applied(c.strategy);
        assert_eq!(said.len(), 1, "{said:?}");
        assert!(said[0].starts_with("deploymentConfiguration.bakeTimeInMinutes: not applied"));

        let breaker = DeploymentConfigurationInput {
            deployment_circuit_breaker: Some(crate::store::CircuitBreakerConfig {
                enable: true,
                rollback: true,
            }),
            ..Default::default()
        };
        let c = deployment_configuration(base.clone(), Some(&breaker)).unwrap();
        assert!(
            c.deployment_circuit_breaker
                .is_some_and(|b| b.enable && b.rollback)
        );
        assert!(breaker.not_applied(c.strategy).is_empty());
    }
}
