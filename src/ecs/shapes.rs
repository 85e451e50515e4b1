//! ECS shapes more than one resource file takes or returns (a Describe's failures, a
//! capacity provider strategy, placement constraints and strategy) and the rules a request
//! naming them must follow, whichever operation it is (RunTask, CreateService,
//! UpdateService).

use super::{EcsError, EcsResult};
use crate::task::shape;
use serde::{Deserialize, Serialize};

/// One resource a Describe operation did not find: `{"arn", "reason": "MISSING"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    pub arn: String,
    pub reason: String,
}

impl Failure {
    pub fn missing(arn: impl Into<String>) -> Failure {
        Failure {
            arn: arn.into(),
            reason: "MISSING".into(),
        }
    }
}

/// ecs.json `CapacityProviderStrategyItem`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CapacityProviderStrategyItem {
    pub capacity_provider: String,
    #[serde(default)]
    pub weight: i64,
    #[serde(default)]
    pub base: i64,
}

/// ecs.json `PlacementConstraint`.
#[serde_with::skip_serializing_none]
#[derive(Debug, Default, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlacementConstraint {
    /// distinctInstance or memberOf.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub expression: Option<String>,
}

/// ecs.json `PlacementStrategy`.
#[serde_with::skip_serializing_none]
#[derive(Debug, Default, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlacementStrategy {
    /// random, spread or binpack.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub field: Option<String>,
}

/// The Fargate platform versions a request may name (LATEST is 1.4.0). Ref:
/// docs.aws.amazon.com/AmazonECS/latest/developerguide/platform-linux-fargate.html.
const PLATFORM_VERSIONS: [&str; 3] = ["LATEST", "1.4.0", "1.3.0"];

/// Ref: ecs.json `PlacementConstraintType` (distinctInstance, memberOf; memberOf needs an
/// `expression`), `PlacementStrategyType` (random, spread, binpack); RunTask takes up to 10
/// constraints and 5 strategy rules (API_RunTask).
pub fn check_placement(
    constraints: Option<&[PlacementConstraint]>,
    strategy: Option<&[PlacementStrategy]>,
) -> EcsResult<()> {
    let constraints = constraints.unwrap_or_default();
    let strategy = strategy.unwrap_or_default();
    if constraints.len() > 10 {
        return Err(EcsError::invalid(format!(
            "placementConstraints: {} constraints; at most 10 per task",
            constraints.len()
        )));
    }
    if strategy.len() > 5 {
        return Err(EcsError::invalid(format!(
            "placementStrategy: {} rules; at most 5 per task",
            strategy.len()
        )));
    }
    for (i, c) in constraints.iter().enumerate() {
        match c.kind.as_deref() {
            Some("distinctInstance") => {}
            Some("memberOf") if c.expression.as_deref().is_some_and(|e| !e.is_empty()) => {}
            Some("memberOf") => {
                return Err(EcsError::invalid(format!(
                    "placementConstraints[{i}]: a memberOf constraint needs an expression"
                )));
            }
            other => {
                return Err(EcsError::invalid(format!(
                    "placementConstraints[{i}].type {other:?}: must be distinctInstance or \
                     memberOf"
                )));
            }
        }
    }
    for (i, st) in strategy.iter().enumerate() {
        if !matches!(st.kind.as_deref(), Some("random" | "spread" | "binpack")) {
            return Err(EcsError::invalid(format!(
                "placementStrategy[{i}].type {:?}: must be random, spread or binpack",
                st.kind
            )));
        }
    }
    Ok(())
}

/// The platform version a task (or a service's tasks) records: `LATEST` resolved, `None`
/// off Fargate. Ref: ecs.json `RunTaskRequest.platformVersion`: "A platform version is only
/// specified for tasks hosted on Fargate. If one isn't specified, the LATEST platform
/// version is used."
pub fn platform_version(v: Option<&str>, fargate: bool) -> EcsResult<Option<String>> {
    Ok(match v {
        Some(_) if !fargate => {
            return Err(EcsError::invalid(
                "The platform version must be null when specifying an EC2 launch type.",
            ));
        }
        Some(v) if !PLATFORM_VERSIONS.contains(&v) => {
            return Err(EcsError::invalid(format!(
                "platformVersion {v:?}: the specified platform version does not exist (Linux \
                 Fargate: LATEST, 1.4.0, 1.3.0)"
            )));
        }
        Some("LATEST") | None => fargate.then(|| shape::FARGATE_LATEST.to_string()),
        Some(v) => Some(v.to_string()),
    })
}
