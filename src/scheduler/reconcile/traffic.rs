//! Blue/green's (LINEAR's, CANARY's) listener rules: each production and test rule of the
//! service's load balancers sends its traffic where the PRIMARY deployment's stage says
//! (`deployments::traffic`): test traffic to green from TEST_TRAFFIC_SHIFT, production
//! traffic from PRODUCTION_TRAFFIC_SHIFT by its steps, both back to blue when a rollback
//! made blue PRIMARY again.

use crate::elb::bluegreen::Pair;

/// Where a blue/green service's traffic goes this pass.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Routing {
    /// Thousandths of the production and the test traffic on green (the PRIMARY
    /// deployment's side), the rest on blue.
    pub production: i64,
    pub test: i64,
    /// The PRIMARY deployment's side (`services::side`): its tasks are in each pair's
    /// alternate target group.
    pub side: bool,
    /// The service's target group pairs and their listener rules.
    pub pairs: Vec<Pair>,
}

/// A listener rule pointed where the stage says (unchanged when it is there already).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleMove {
    pub rule: String,
    pub blue: String,
    pub green: String,
    /// Thousandths of its traffic to `green`.
    pub permille: i64,
    /// What the service event says of it (this host's words: ECS documents none).
    pub said: String,
}

/// Every rule of the service, where `r` says its traffic goes.
pub fn moves(r: &Routing) -> Vec<RuleMove> {
    let mut out = Vec::new();
    for pair in &r.pairs {
        let group = |alternate: bool| {
            if alternate {
                pair.alternate.clone()
            } else {
                pair.primary.clone()
            }
        };
        let (green, blue) = (group(r.side), group(!r.side));
        let rules = [
            (Some(&pair.production), r.production, "production"),
            (pair.test.as_ref(), r.test, "test"),
        ];
        for (rule, permille, what) in rules {
            let Some(rule) = rule else { continue };
            let said = match permille {
                p if p >= 1000 => format!("{what} traffic to (target-group {green})"),
                p if p <= 0 => format!("{what} traffic to (target-group {blue})"),
                p => format!(
                    "{}.{}% of {what} traffic to (target-group {green})",
                    p / 10,
                    p % 10
                ),
            };
            out.push(RuleMove {
                rule: rule.clone(),
                blue: blue.clone(),
                green: green.clone(),
                permille,
                said,
            });
        }
    }
    out
}
