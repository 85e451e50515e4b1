//! Load balancing, decided first in a pass (before [`super::reconcile`], which then sees
//! the tasks' targets as this leaves them): a task deregistered and draining stops once its
//! deregistration delay is over and counts as stopping until then; a registered task gone
//! since the last pass leaves every target group of the service; a RUNNING task, healthy in
//! its containers and not stopping, joins its deployment's side of the target groups.

use std::time::Instant;

/// A task of the service that is not STOPPED, as load balancing sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LbTask {
    pub id: String,
    /// desiredStatus is not STOPPED.
    pub active: bool,
    pub running: bool,
    /// UNHEALTHY in its containers past the grace period.
    pub unhealthy: bool,
    /// The scheduler registered it in its target groups.
    pub registered: bool,
    /// Deregistered and draining: until when, and the stoppedReason it stops with.
    pub draining: Option<(Instant, String)>,
    /// Its stop was asked and has not taken effect yet (in cluster mode a pass may still
    /// read it RUNNING and active).
    pub stop_asked: bool,
}

/// The service's tasks and targets as this pass finds them.
#[derive(Debug, Clone)]
pub struct LbView {
    pub now: Instant,
    /// The service has target groups this host applies (serve's ELB and `loadBalancers`).
    pub load_balanced: bool,
    pub tasks: Vec<LbTask>,
    /// Tasks registered by the scheduler that are gone (STOPPED) since.
    pub registered_gone: Vec<String>,
}

/// What load balancing does this pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LbPlan {
    /// Tasks whose stop is under way (asked, or draining): they count as stopping.
    pub stopping: Vec<String>,
    /// Draining tasks whose delay is over: stop them now, with their reason.
    pub drained: Vec<(String, String)>,
    /// Gone tasks to deregister from every target group of the service.
    pub deregister: Vec<String>,
    /// Tasks to register in their deployment's side of the target groups.
    pub register: Vec<String>,
}

/// What load balancing does for the tasks of `v`.
pub fn balance(v: &LbView) -> LbPlan {
    let mut p = LbPlan::default();
    for t in &v.tasks {
        if t.stop_asked || t.draining.is_some() {
            p.stopping.push(t.id.clone());
        }
        if let Some((until, reason)) = t.draining.as_ref().filter(|_| !t.stop_asked)
            && v.now >= *until
        {
            p.drained.push((t.id.clone(), reason.clone()));
        }
    }
    if !v.load_balanced {
        return p;
    }
    p.deregister = v.registered_gone.clone();
    p.register = v
        .tasks
        .iter()
        .filter(|t| {
            t.active && !p.stopping.contains(&t.id) && t.running && !t.unhealthy && !t.registered
        })
        .map(|t| t.id.clone())
        .collect();
    p
}
