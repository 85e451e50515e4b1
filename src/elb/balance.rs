//! How a target group's requests are spread over its targets: its routing algorithm
//! (`load_balancing.algorithm.type`, ALB User Guide "Routing algorithm"), with what the
//! data plane counts per target for it.
//!
//! - `round_robin` (the default): the targets in turn (`super::Elb::route`; nothing counted).
//! - `least_outstanding_requests`: the target with the fewest requests in flight (sent to
//!   it, their response not yet complete), ties in turn. Each request holds an
//!   [`Outstanding`] until its response body ends.
//! - `weighted_random`: a random target, each with its weight: 1, or with
//!   `load_balancing.algorithm.anomaly_mitigation` `on` a lower one while the target is
//!   anomalous ([`Anomalies`], ALB's automatic target weights).
//!
//! Anomaly detection runs for every HTTP group, whatever its algorithm (ALB User Guide,
//! "Automatic target weights": detection on all HTTP target groups, mitigation only with
//! `weighted_random` and mitigation on): each request's outcome is counted on its
//! target's [`Load`] and the group's [`Anomalies`] look at them once a second.
//!
//! ALB refuses slow start with either of the last two (`super::ops`).
//!
//! Whatever the algorithm, it picks among the healthy targets while at least
//! [`minimum_healthy`] are, else among all registered ones (ELB's fail open).

use super::HashMap;
use super::model::{Target, TargetGroup};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Algorithm {
    RoundRobin,
    LeastOutstanding,
    WeightedRandom { mitigate: bool },
}

/// How many of group `g`'s targets must be healthy for requests and connections to go to
/// the healthy ones only; with fewer they go to all registered targets. Ref: the model's
/// TargetGroupAttribute: `target_group_health.unhealthy_state_routing.minimum_healthy_targets`
/// `.count` (default 1) and `.percentage` (of the registered targets, default off): "If
/// the number [percentage] of healthy targets is below this value, send traffic to all
/// targets, including unhealthy targets"; with both, each must be met.
pub fn minimum_healthy(g: &TargetGroup) -> usize {
    let a = |k: &str| g.attributes.get(k).and_then(|v| v.parse::<usize>().ok());
    let count = a("target_group_health.unhealthy_state_routing.minimum_healthy_targets.count")
        .unwrap_or(1)
        .max(1);
    // Of the registered targets, rounded up: 50 % of 3 targets needs 2 healthy.
    let percent =
        a("target_group_health.unhealthy_state_routing.minimum_healthy_targets.percentage")
            .map_or(0, |p| (g.targets.len() * p.min(100)).div_ceil(100));
    count.max(percent)
}

pub fn of(g: &TargetGroup) -> Algorithm {
    let a = |k: &str| g.attributes.get(k).map(String::as_str);
    match a("load_balancing.algorithm.type") {
        Some("least_outstanding_requests") => Algorithm::LeastOutstanding,
        Some("weighted_random") => Algorithm::WeightedRandom {
            mitigate: a("load_balancing.algorithm.anomaly_mitigation") == Some("on"),
        },
        _ => Algorithm::RoundRobin,
    }
}

/// What the data plane counts of one target: its requests in flight, and its answers and
/// errors (a 5XX from it, or no answer) since anomaly detection last looked; and when its
/// TCP connections are to be cut ([`Load::cut_at`]).
#[derive(Debug, Default)]
pub struct Load {
    pub outstanding: AtomicUsize,
    answered: AtomicU32,
    errors: AtomicU32,
    /// When the connections to the target end: each cut, at its time, the connections
    /// opened before it (those with a lower ticket than its bound).
    cuts: std::sync::Mutex<Vec<(Instant, u64)>>,
    /// The connections opened so far (each one's ticket).
    opened: std::sync::atomic::AtomicU64,
    /// Wakes the connections when `cuts` changes.
    cut_changed: tokio::sync::Notify,
}

/// A target's cuts are kept to this many (the newest: each reaches every older connection).
const CUTS_KEPT: usize = 16;

impl Load {
    /// A new connection to the target: its ticket.
    pub fn open(&self) -> u64 {
        self.opened.fetch_add(1, Ordering::Relaxed)
    }

    /// The connections open now end at `at` (at once when it has passed): a TCP target
    /// that turns unhealthy, or whose deregistration delay ends, with connection
    /// termination on (`super::State::cut_unhealthy`, `super::State::drain`).
    pub fn cut_at(&self, at: Instant) {
        {
            let mut cuts = self.cuts.lock().unwrap_or_else(|p| p.into_inner());
            cuts.push((at, self.opened.load(Ordering::Relaxed)));
            let extra = cuts.len().saturating_sub(CUTS_KEPT);
            cuts.drain(..extra);
        }
        self.cut_changed.notify_waiters();
    }

    /// No connection is to be cut any more (the target registered again).
    pub fn keep(&self) {
        self.cuts.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.cut_changed.notify_waiters();
    }

    /// Resolves when connection `ticket` is to end.
    pub async fn cut(&self, ticket: u64) {
        loop {
            let changed = self.cut_changed.notified();
            tokio::pin!(changed);
            // Registered before the cuts are read: a change after the read wakes it.
            changed.as_mut().enable();
            let at = self
                .cuts
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .filter(|(_, bound)| ticket < *bound)
                .map(|(at, _)| *at)
                .min();
            match at {
                Some(at) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at.into()) => return,
                        () = &mut changed => {}
                    }
                }
                None => changed.await,
            }
        }
    }
}

/// One request's hold on its target's [`Load`]: counted in flight from the choice of the
/// target until dropped (the data plane drops it when the response body ends), and its
/// outcome recorded when anomaly detection runs for the group. Empty (no cost) for a
/// group whose algorithm counts nothing.
#[derive(Default)]
pub struct Outstanding {
    load: Option<Arc<Load>>,
    /// Whether the request counts in flight (least outstanding requests).
    in_flight: bool,
    /// Whether its outcome is recorded (anomaly mitigation).
    outcome: bool,
}

impl Outstanding {
    pub fn new(load: Arc<Load>, in_flight: bool, outcome: bool) -> Outstanding {
        if in_flight {
            load.outstanding.fetch_add(1, Ordering::Relaxed);
        }
        Outstanding {
            load: Some(load),
            in_flight,
            outcome,
        }
    }

    /// The target's load, when the pick holds it.
    pub fn load(&self) -> Option<&Arc<Load>> {
        self.load.as_ref()
    }

    /// Records the request's outcome: `error` when the target answered a 5XX or did not
    /// answer (the load balancer's 502/504).
    pub fn outcome(&self, error: bool) {
        if let (Some(l), true) = (&self.load, self.outcome) {
            l.answered.fetch_add(1, Ordering::Relaxed);
            if error {
                l.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl Drop for Outstanding {
    fn drop(&mut self) {
        if let (Some(l), true) = (&self.load, self.in_flight) {
            l.outstanding.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl std::fmt::Debug for Outstanding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outstanding")
            .field("in_flight", &self.in_flight)
            .field("outcome", &self.outcome)
            .finish()
    }
}

/// A pick compares equal to another whatever it holds (`super::Pick`'s equality is about
/// where a request goes).
impl PartialEq for Outstanding {
    fn eq(&self, _: &Outstanding) -> bool {
        true
    }
}

impl Clone for Outstanding {
    fn clone(&self) -> Outstanding {
        match &self.load {
            Some(l) => Outstanding::new(l.clone(), self.in_flight, self.outcome),
            None => Outstanding::default(),
        }
    }
}

/// How often anomaly detection looks at a group's targets.
pub const LOOK_EVERY: Duration = Duration::from_secs(1);
/// The answers a target needs since its last verdict for a new one.
const EVIDENCE: u32 = 10;
/// The least weight mitigation lowers a target to ("a negligible level").
const FLOOR: f64 = 1.0 / 32.0;

/// Automatic target weights of one group (ALB: "Anomaly detection" and "anomaly
/// mitigation"): with at least 3 healthy targets, a target whose share of errors (5XX
/// answers and connection errors) over its last answers is at least 20 % and at least
/// twice the others' is anomalous; while it is, mitigation halves its weight at each
/// verdict (down to 1/32); once it is not, its weight doubles back to 1 at each verdict.
/// A verdict needs 10 answers since the last one, so a target whose traffic was lowered
/// is judged again as its few requests come in.
#[derive(Debug, Default)]
pub struct Anomalies {
    weights: HashMap<Target, f64>,
    /// The targets whose last verdict was anomalous.
    anomalous: std::collections::HashSet<Target>,
    last: Option<Instant>,
}

impl Anomalies {
    pub fn weight(&self, t: &Target) -> f64 {
        self.weights.get(t).copied().unwrap_or(1.0)
    }

    /// What DescribeTargetHealth's `AnomalyDetection` says of `t`: its last verdict was
    /// anomalous, and mitigation lowers its weight.
    pub fn detection(&self, t: &Target) -> (bool, bool) {
        (self.anomalous.contains(t), self.weight(t) < 1.0)
    }

    /// Whether [`Anomalies::look`] would look at `now` (once per [`LOOK_EVERY`]).
    pub fn due(&self, now: Instant) -> bool {
        self.last
            .is_none_or(|l| now.duration_since(l) >= LOOK_EVERY)
    }

    /// How many of `targets` are anomalous, and how many have their weight lowered
    /// (CloudWatch's `AnomalousHostCount`, `MitigatedHostCount`).
    pub fn counts<'a>(&self, targets: impl Iterator<Item = &'a Target>) -> (usize, usize) {
        targets.fold((0, 0), |(a, m), t| {
            let (anomalous, mitigated) = self.detection(t);
            (a + usize::from(anomalous), m + usize::from(mitigated))
        })
    }

    /// Looks at `targets` (the healthy ones, with their loads) once per [`LOOK_EVERY`]:
    /// a verdict for each; with `mitigate`, weights lowered and raised by them (without,
    /// every weight stays 1: detection only).
    pub fn look(&mut self, targets: &[(&Target, &Load)], now: Instant, mitigate: bool) {
        if !self.due(now) {
            return;
        }
        self.last = Some(now);
        if !mitigate {
            self.weights.clear();
        }
        self.weights
            .retain(|t, _| targets.iter().any(|(have, _)| *have == t));
        self.anomalous
            .retain(|t| targets.iter().any(|(have, _)| *have == t));
        if targets.len() < 3 {
            return;
        }
        let counts: Vec<(u32, u32)> = targets
            .iter()
            .map(|(_, l)| {
                (
                    l.answered.load(Ordering::Relaxed),
                    l.errors.load(Ordering::Relaxed),
                )
            })
            .collect();
        let rate = |(n, e): (u32, u32)| f64::from(e) / f64::from(n.max(1));
        for (i, (t, l)) in targets.iter().enumerate() {
            if counts[i].0 < EVIDENCE {
                continue;
            }
            let others: Vec<f64> = counts
                .iter()
                .enumerate()
                .filter(|(j, c)| *j != i && c.0 > 0)
                .map(|(_, c)| rate(*c))
                .collect();
            let mine = rate(counts[i]);
            let theirs = others.iter().sum::<f64>() / others.len().max(1) as f64;
            let anomalous = !others.is_empty() && mine >= 0.2 && mine >= 2.0 * theirs;
            if anomalous {
                self.anomalous.insert((*t).clone());
            } else {
                self.anomalous.remove(*t);
            }
            let w = self.weight(t);
            let w = if !mitigate {
                1.0
            } else if anomalous {
                (w / 2.0).max(FLOOR)
            } else {
                (w * 2.0).min(1.0)
            };
            if w >= 1.0 {
                self.weights.remove(*t);
            } else {
                self.weights.insert((*t).clone(), w);
            }
            l.answered.store(0, Ordering::Relaxed);
            l.errors.store(0, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(port: u16) -> Target {
        Target {
            id: "10.0.0.1".into(),
            port,
            availability_zone: None,
        }
    }

    fn answers(l: &Load, n: u32, errors: u32) {
        l.answered.fetch_add(n, Ordering::Relaxed);
        l.errors.fetch_add(errors, Ordering::Relaxed);
    }

    #[test]
    fn an_erring_target_loses_weight_and_regains_it_when_it_recovers() {
        let (a, b, c) = (t(1), t(2), t(3));
        let (la, lb, lc) = (Load::default(), Load::default(), Load::default());
        let mut m = Anomalies::default();
        let mut now = Instant::now();
        for _ in 0..3 {
            answers(&la, 20, 0);
            answers(&lb, 20, 1);
            answers(&lc, 20, 10);
            m.look(&[(&a, &la), (&b, &lb), (&c, &lc)], now, true);
            now += LOOK_EVERY;
        }
        assert_eq!(m.weight(&a), 1.0);
        assert_eq!(m.weight(&b), 1.0);
        assert_eq!(m.weight(&c), 0.125);
        assert_eq!(m.detection(&c), (true, true));
        assert_eq!(m.detection(&a), (false, false));
        // Not enough answers: no verdict, the weight stays.
        answers(&lc, 3, 0);
        m.look(&[(&a, &la), (&b, &lb), (&c, &lc)], now, true);
        now += LOOK_EVERY;
        assert_eq!(m.weight(&c), 0.125);
        for _ in 0..3 {
            answers(&lc, 10, 0);
            m.look(&[(&a, &la), (&b, &lb), (&c, &lc)], now, true);
            now += LOOK_EVERY;
        }
        assert_eq!(m.weight(&c), 1.0);
        assert_eq!(m.detection(&c), (false, false));
        // All failing alike: nobody is anomalous.
        for l in [&la, &lb, &lc] {
            answers(l, 20, 20);
        }
        m.look(&[(&a, &la), (&b, &lb), (&c, &lc)], now, true);
        assert_eq!(m.weight(&a), 1.0);
    }

    #[test]
    fn without_mitigation_an_erring_target_is_anomalous_and_keeps_its_weight() {
        let (a, b, c) = (t(1), t(2), t(3));
        let (la, lb, lc) = (Load::default(), Load::default(), Load::default());
        let mut m = Anomalies::default();
        let mut now = Instant::now();
        for _ in 0..3 {
            answers(&la, 20, 0);
            answers(&lb, 20, 0);
            answers(&lc, 20, 20);
            m.look(&[(&a, &la), (&b, &lb), (&c, &lc)], now, false);
            now += LOOK_EVERY;
        }
        assert_eq!(m.detection(&c), (true, false));
        assert_eq!(m.weight(&c), 1.0);
        assert_eq!(m.counts([&a, &b, &c].into_iter()), (1, 0));
        assert!(!m.due(now - LOOK_EVERY / 2));
        assert!(m.due(now));
    }

    #[test]
    fn outstanding_counts_while_held() {
        let l = Arc::new(Load::default());
        let a = Outstanding::new(l.clone(), true, false);
        let b = a.clone();
        assert_eq!(l.outstanding.load(Ordering::Relaxed), 2);
        drop(a);
        drop(b);
        assert_eq!(l.outstanding.load(Ordering::Relaxed), 0);
        drop(Outstanding::new(l.clone(), false, true));
        assert_eq!(l.outstanding.load(Ordering::Relaxed), 0);
    }
}
