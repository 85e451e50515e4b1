//! dependsOn: whether a container may start now, must wait, or never will, and the
//! start order (stop order is its reverse).
//!
//! Ref: ecs.json `ContainerDependency`; amazon-ecs-agent agent/engine/dependencygraph/graph.go
//! L283-305 for the messages.

use crate::taskdef::model::ContainerCondition;
use std::time::Duration;

/// What the executor knows about a dependency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DepState {
    /// Not started yet; `waited` is how long the task has waited for it so far.
    Pending { waited: Duration },
    /// Started `for_` ago, still running.
    Running { for_: Duration },
    /// Ran and exited with this code.
    Exited(i32),
    /// Will never run (failed to pull/create/start, or its own dependencies failed).
    Failed,
}

/// One dependency of a container, with what the executor knows of it.
#[derive(Debug, Clone)]
pub struct Dep {
    pub name: String,
    pub condition: ContainerCondition,
    pub state: DepState,
    /// The dependency's `startTimeout`.
    pub start_timeout: Option<Duration>,
    pub has_health_check: bool,
    /// The dependency's health check says HEALTHY.
    pub healthy: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Ready,
    Wait,
    /// The container can never start; the reason for it.
    Never(String),
}

/// Decides for container `target` from its dependencies.
pub fn evaluate(target: &str, deps: &[Dep]) -> Verdict {
    let mut verdict = Verdict::Ready;
    for d in deps {
        let never = |what: &str| {
            Verdict::Never(format!(
                "dependency graph: container ordering dependency [{}] for target [{target}] {what}",
                d.name
            ))
        };
        let met = match (d.condition, d.state) {
            (_, DepState::Failed) => return never("will never start"),
            (ContainerCondition::Start, DepState::Running { .. } | DepState::Exited(_)) => true,
            (ContainerCondition::Complete, DepState::Exited(_)) => true,
            (ContainerCondition::Success, DepState::Exited(0)) => true,
            (ContainerCondition::Success, DepState::Exited(_)) => {
                return never("did not exit successfully.");
            }
            (ContainerCondition::Healthy, _) if !d.has_health_check => {
                return never("will never become HEALTHY: it has no healthCheck.");
            }
            (ContainerCondition::Healthy, DepState::Exited(_)) => {
                return never("exited before it became HEALTHY.");
            }
            (ContainerCondition::Healthy, DepState::Running { .. }) if d.healthy => true,
            (ContainerCondition::Healthy, _) => false,
            (ContainerCondition::Start, DepState::Pending { .. })
            | (
                ContainerCondition::Complete | ContainerCondition::Success,
                DepState::Pending { .. } | DepState::Running { .. },
            ) => false,
        };
        if !met {
            let waited = match d.state {
                DepState::Pending { waited } => waited,
                DepState::Running { for_ } => for_,
                _ => Duration::ZERO,
            };
            if d.start_timeout.is_some_and(|t| waited >= t) {
                return never("has timed out.");
            }
            verdict = Verdict::Wait;
        }
    }
    verdict
}

/// A start order over `names` where every container comes after its dependencies
/// (`deps[i]` are indexes into `names`); definition order among equals. Cycles (which
/// validation rejects) fall back to definition order for the rest.
pub fn start_order(deps: &[Vec<usize>]) -> Vec<usize> {
    let n = deps.len();
    let mut placed = vec![false; n];
    let mut order = Vec::with_capacity(n);
    while order.len() < n {
        let next = (0..n).find(|&i| !placed[i] && deps[i].iter().all(|&d| d >= n || placed[d]));
        let i = next.unwrap_or_else(|| (0..n).find(|&i| !placed[i]).expect("one left"));
        placed[i] = true;
        order.push(i);
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dep(condition: ContainerCondition, state: DepState) -> Dep {
        Dep {
            name: "init".into(),
            condition,
            state,
            start_timeout: None,
            has_health_check: false,
            healthy: false,
        }
    }

    #[test]
    fn conditions() {
        use ContainerCondition::*;
        let run = DepState::Running {
            for_: Duration::ZERO,
        };
        assert_eq!(evaluate("app", &[dep(Start, run)]), Verdict::Ready);
        assert_eq!(evaluate("app", &[dep(Complete, run)]), Verdict::Wait);
        assert_eq!(
            evaluate("app", &[dep(Complete, DepState::Exited(3))]),
            Verdict::Ready
        );
        assert_eq!(
            evaluate("app", &[dep(Success, DepState::Exited(0))]),
            Verdict::Ready
        );
        assert_eq!(
            evaluate("app", &[dep(Success, DepState::Exited(1))]),
            Verdict::Never(
                "dependency graph: container ordering dependency [init] for target [app] did not \
                 exit successfully."
                    .into()
            )
        );
        assert!(matches!(
            evaluate("app", &[dep(Start, DepState::Failed)]),
            Verdict::Never(m) if m.ends_with("will never start")
        ));
        assert!(matches!(
            evaluate("app", &[dep(Healthy, run)]),
            Verdict::Never(_)
        ));
        let mut d = dep(Healthy, run);
        d.has_health_check = true;
        assert_eq!(evaluate("app", std::slice::from_ref(&d)), Verdict::Wait);
        d.healthy = true;
        assert_eq!(evaluate("app", &[d]), Verdict::Ready);
    }

    #[test]
    fn start_timeout_of_the_dependency() {
        let mut d = dep(
            ContainerCondition::Complete,
            DepState::Running {
                for_: Duration::from_secs(3),
            },
        );
        assert_eq!(evaluate("app", std::slice::from_ref(&d)), Verdict::Wait);
        d.start_timeout = Some(Duration::from_secs(2));
        assert!(matches!(
            evaluate("app", &[d]),
            Verdict::Never(m) if m.ends_with("has timed out.")
        ));
    }

    #[test]
    fn order_puts_dependencies_first() {
        // 0 depends on 2, 1 on 0.
        assert_eq!(start_order(&[vec![2], vec![0], vec![]]), [2, 0, 1]);
        assert_eq!(start_order(&[vec![1], vec![0]]), [0, 1]);
    }
}
