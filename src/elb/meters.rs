//! What the data plane counts for CloudWatch, and its publication as the metrics ELB
//! publishes: `AWS/ApplicationELB` for application load balancers, `AWS/NetworkELB` for
//! network ones (Elastic Load Balancing User Guide, "CloudWatch metrics for your
//! Application Load Balancer" and "… for your Network Load Balancer").
//!
//! A request adds to atomics only: the [`Meter`] it counts on comes with its route
//! (`Elb::route`), under the lock routing takes anyway; [`Elb::publish`] swaps the
//! counts out once a sample and puts them into the box's metrics with the dimensions ELB
//! uses: `LoadBalancer` = `app/<name>/<id>` (`net/…`), `TargetGroup` =
//! `targetgroup/<name>/<id>`.

use super::Elb;
use crate::cloudwatch::Metrics;
use crate::cloudwatch::metrics::{Datum, MetricId, Millis, Stats};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// The counts of one listener (a load balancer's are the sum of its listeners').
#[derive(Debug, Default)]
pub struct ListenerMeter {
    requests: AtomicU64,
    /// The load balancer's own answers (fixed responses, redirects, 502/503/504), by class.
    elb: [AtomicU64; 4],
    /// Requests not compliant with RFC 7230 (`super::desync`: any class but Compliant),
    /// whatever the desync mitigation mode did with them.
    non_compliant: AtomicU64,
    new_flows: AtomicU64,
    active_flows: AtomicU64,
    processed_bytes: AtomicU64,
}

/// The counts of one target group behind one listener.
#[derive(Debug)]
pub struct GroupMeter {
    requests: AtomicU64,
    /// The targets' answers, by class (2XX … 5XX).
    target: [AtomicU64; 4],
    /// TargetResponseTime: count, sum, least and most, in microseconds.
    rt_count: AtomicU64,
    rt_sum_us: AtomicU64,
    rt_min_us: AtomicU64,
    rt_max_us: AtomicU64,
}

impl Default for GroupMeter {
    fn default() -> Self {
        GroupMeter {
            requests: AtomicU64::new(0),
            target: Default::default(),
            rt_count: AtomicU64::new(0),
            rt_sum_us: AtomicU64::new(0),
            rt_min_us: AtomicU64::new(u64::MAX),
            rt_max_us: AtomicU64::new(0),
        }
    }
}

/// 2XX … 5XX → 0 … 3 (1XX counts nowhere, as ELB has no such metric).
fn class(status: u16) -> Option<usize> {
    match status {
        200..=599 => Some(usize::from(status / 100 - 2)),
        _ => None,
    }
}

/// What one request or connection counts on.
#[derive(Debug, Clone, Default)]
pub struct Meter {
    pub(super) listener: Option<Arc<ListenerMeter>>,
    pub(super) group: Option<Arc<GroupMeter>>,
}

impl Meter {
    /// An HTTP request the load balancer received.
    pub fn request(&self) {
        if let Some(l) = &self.listener {
            l.requests.fetch_add(1, Relaxed);
        }
        if let Some(g) = &self.group {
            g.requests.fetch_add(1, Relaxed);
        }
    }

    /// The load balancer answered itself with `status` (HTTPCode_ELB_*).
    pub fn elb_answer(&self, status: u16) {
        if let (Some(l), Some(c)) = (&self.listener, class(status)) {
            l.elb[c].fetch_add(1, Relaxed);
        }
    }

    /// A request that does not comply with RFC 7230
    /// (DesyncMitigationMode_NonCompliant_Request_Count).
    pub fn non_compliant(&self) {
        if let Some(l) = &self.listener {
            l.non_compliant.fetch_add(1, Relaxed);
        }
    }

    /// A target answered with `status`, its head `took` after the request was sent
    /// (HTTPCode_Target_*, TargetResponseTime).
    pub fn target_answer(&self, status: u16, took: Duration) {
        let Some(g) = &self.group else { return };
        if let Some(c) = class(status) {
            g.target[c].fetch_add(1, Relaxed);
        }
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        g.rt_count.fetch_add(1, Relaxed);
        g.rt_sum_us.fetch_add(us, Relaxed);
        g.rt_min_us.fetch_min(us, Relaxed);
        g.rt_max_us.fetch_max(us, Relaxed);
    }

    /// A TCP connection passed to a target (NewFlowCount, ActiveFlowCount).
    pub fn flow_opened(&self) {
        if let Some(l) = &self.listener {
            l.new_flows.fetch_add(1, Relaxed);
            l.active_flows.fetch_add(1, Relaxed);
        }
    }

    /// The connection ended after `bytes` both ways (ProcessedBytes).
    pub fn flow_closed(&self, bytes: u64) {
        if let Some(l) = &self.listener {
            l.active_flows.fetch_sub(1, Relaxed);
            l.processed_bytes.fetch_add(bytes, Relaxed);
        }
    }
}

/// `arn:…:loadbalancer/app/web/0123` → `app/web/0123`; `arn:…:targetgroup/tg/0123` →
/// `targetgroup/tg/0123`: the dimension values ELB publishes with.
pub fn dimension_of(arn: &str) -> &str {
    match arn.split_once(":loadbalancer/") {
        Some((_, rest)) => rest,
        None => arn.rsplit(':').next().unwrap_or(arn),
    }
}

/// One sample's figures, taken from the meters under the ELB lock, put after it.
#[derive(Debug, Default)]
struct Sample {
    points: Vec<(MetricId, &'static str, Stats)>,
}

impl Sample {
    fn add(&mut self, ns: &str, name: &str, dims: &[(&str, &str)], unit: &'static str, s: Stats) {
        let id = MetricId {
            namespace: ns.to_string(),
            name: name.to_string(),
            dimensions: dims
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        self.points.push((id, unit, s));
    }

    /// A count: put only when not zero (ELB reports counts only when there is traffic).
    fn count(&mut self, ns: &str, name: &str, dims: &[(&str, &str)], n: u64, unit: &'static str) {
        if n > 0 {
            self.add(ns, name, dims, unit, Stats::one(n as f64));
        }
    }
}

const ALB: &str = "AWS/ApplicationELB";
const NLB: &str = "AWS/NetworkELB";

impl Elb {
    /// Takes the counts since the last sample and the targets' health, and puts them into
    /// `sink` at `now` (high resolution for box periods under a minute).
    pub fn publish(&self, sink: &Metrics, now: Millis, high_resolution: bool) {
        let sample = self.take_sample();
        let mut by_id: BTreeMap<MetricId, Vec<Datum>> = BTreeMap::new();
        for (id, unit, stats) in sample.points {
            by_id.entry(id).or_default().push(Datum {
                at: now,
                unit: unit.to_string(),
                stats,
                raw: (stats.count == 1.0).then(|| vec![(stats.sum, 1.0)]),
                high_resolution,
            });
        }
        for (id, data) in by_id {
            sink.put(&id, &data, now);
        }
    }

    fn take_sample(&self) -> Sample {
        let mut s = self.lock();
        // Meters of listeners or groups that are gone go with them.
        let st = &mut *s;
        st.meters
            .listeners
            .retain(|l, _| st.listeners.contains_key(l));
        st.meters.groups.retain(|l, _| st.listeners.contains_key(l));
        for gs in st.meters.groups.values_mut() {
            gs.retain(|g, _| st.groups.contains_key(g));
        }
        let mut out = Sample::default();
        // Per load balancer: the sum of its listeners'.
        #[derive(Default)]
        struct LbSum {
            requests: u64,
            elb: [u64; 4],
            non_compliant: u64,
            new_flows: u64,
            active_flows: u64,
            bytes: u64,
        }
        let mut lbs: BTreeMap<&str, LbSum> = BTreeMap::new();
        for (l, m) in &st.meters.listeners {
            let Some(lb) = st.listeners.get(l).map(|l| l.load_balancer_arn.as_str()) else {
                continue;
            };
            let e = lbs.entry(lb).or_default();
            e.requests += m.requests.swap(0, Relaxed);
            for (c, a) in m.elb.iter().enumerate() {
                e.elb[c] += a.swap(0, Relaxed);
            }
            e.non_compliant += m.non_compliant.swap(0, Relaxed);
            e.new_flows += m.new_flows.swap(0, Relaxed);
            e.active_flows += m.active_flows.load(Relaxed);
            e.bytes += m.processed_bytes.swap(0, Relaxed);
        }
        for (arn, sum) in &lbs {
            let Some(lb) = st.lbs.get(*arn) else { continue };
            let lbd = dimension_of(arn);
            if lb.kind == super::model::LbType::Network {
                let d = [("LoadBalancer", lbd)];
                out.count(NLB, "NewFlowCount", &d, sum.new_flows, "Count");
                out.count(NLB, "ProcessedBytes", &d, sum.bytes, "Bytes");
                out.add(
                    NLB,
                    "ActiveFlowCount",
                    &d,
                    "Count",
                    Stats::one(sum.active_flows as f64),
                );
            } else {
                let d = [("LoadBalancer", lbd)];
                out.count(ALB, "RequestCount", &d, sum.requests, "Count");
                for (c, n) in sum.elb.iter().enumerate() {
                    let name = format!("HTTPCode_ELB_{}XX_Count", c + 2);
                    out.count(ALB, &name, &d, *n, "Count");
                }
                // Ref: ALB User Guide, "CloudWatch metrics for your Application Load
                // Balancer": the number of requests that do not comply with RFC 7230.
                out.count(
                    ALB,
                    "DesyncMitigationMode_NonCompliant_Request_Count",
                    &d,
                    sum.non_compliant,
                    "Count",
                );
            }
        }
        // Per (load balancer, target group): the groups' counts over the listeners of one
        // load balancer, then their health.
        #[derive(Default)]
        struct GroupSum {
            requests: u64,
            target: [u64; 4],
            rt: Option<Stats>,
        }
        let mut groups: BTreeMap<(&str, &str), GroupSum> = BTreeMap::new();
        for (l, g, m) in st
            .meters
            .groups
            .iter()
            .flat_map(|(l, gs)| gs.iter().map(move |(g, m)| (l, g, m)))
        {
            let Some(lb) = st.listeners.get(l).map(|l| l.load_balancer_arn.as_str()) else {
                continue;
            };
            let e = groups.entry((lb, g.as_str())).or_default();
            e.requests += m.requests.swap(0, Relaxed);
            for (c, a) in m.target.iter().enumerate() {
                e.target[c] += a.swap(0, Relaxed);
            }
            let n = m.rt_count.swap(0, Relaxed);
            let sum = m.rt_sum_us.swap(0, Relaxed);
            let min = m.rt_min_us.swap(u64::MAX, Relaxed);
            let max = m.rt_max_us.swap(0, Relaxed);
            if n > 0 {
                let secs = |us: u64| us as f64 / 1e6;
                let st = Stats {
                    count: n as f64,
                    sum: secs(sum),
                    min: secs(min.min(max)),
                    max: secs(max),
                };
                match &mut e.rt {
                    Some(r) => r.merge(&st),
                    None => e.rt = Some(st),
                }
            }
        }
        // The load balancer's HTTPCode_Target_* and TargetResponseTime: its groups'.
        let mut by_lb: BTreeMap<&str, GroupSum> = BTreeMap::new();
        for ((lb, _), g) in &groups {
            let e = by_lb.entry(lb).or_default();
            for c in 0..4 {
                e.target[c] += g.target[c];
            }
            if let Some(rt) = &g.rt {
                match &mut e.rt {
                    Some(r) => r.merge(rt),
                    None => e.rt = Some(*rt),
                }
            }
        }
        for (lb, sum) in &by_lb {
            let d = [("LoadBalancer", dimension_of(lb))];
            for (c, n) in sum.target.iter().enumerate() {
                let name = format!("HTTPCode_Target_{}XX_Count", c + 2);
                out.count(ALB, &name, &d, *n, "Count");
            }
            if let Some(rt) = sum.rt {
                out.add(ALB, "TargetResponseTime", &d, "Seconds", rt);
            }
        }
        // Every group in use by each load balancer has its host counts, traffic or not.
        let now = std::time::Instant::now();
        for g in st.groups.values() {
            for lb in st.lbs_of_group(&g.arn) {
                let Some(lb_row) = st.lbs.get(&lb) else {
                    continue;
                };
                let healthy = g
                    .targets
                    .iter()
                    .filter(|t| st.health_of(g, t, now).state == "healthy")
                    .count();
                let unhealthy = g
                    .targets
                    .iter()
                    .filter(|t| st.health_of(g, t, now).state == "unhealthy")
                    .count();
                let ns = if lb_row.kind == super::model::LbType::Network {
                    NLB
                } else {
                    ALB
                };
                let lbd = dimension_of(&lb).to_string();
                let d = [
                    ("LoadBalancer", lbd.as_str()),
                    ("TargetGroup", dimension_of(&g.arn)),
                ];
                out.add(
                    ns,
                    "HealthyHostCount",
                    &d,
                    "Count",
                    Stats::one(healthy as f64),
                );
                out.add(
                    ns,
                    "UnHealthyHostCount",
                    &d,
                    "Count",
                    Stats::one(unhealthy as f64),
                );
                if ns == ALB && g.protocol.starts_with("HTTP") {
                    // Anomaly detection's counts (every HTTP group; mitigated ones only
                    // in weighted random groups with mitigation on).
                    let (anomalous, mitigated) = st
                        .anomalies
                        .get(&g.arn)
                        .map(|a| {
                            a.read()
                                .unwrap_or_else(|p| p.into_inner())
                                .counts(g.targets.iter())
                        })
                        .unwrap_or((0, 0));
                    for (name, n) in [
                        ("AnomalousHostCount", anomalous),
                        ("MitigatedHostCount", mitigated),
                    ] {
                        out.add(ALB, name, &d, "Count", Stats::one(n as f64));
                    }
                }
                let Some(sum) = groups.get(&(lb.as_str(), g.arn.as_str())) else {
                    continue;
                };
                if ns == NLB {
                    continue;
                }
                out.count(ALB, "RequestCount", &d, sum.requests, "Count");
                for (c, n) in sum.target.iter().enumerate() {
                    let name = format!("HTTPCode_Target_{}XX_Count", c + 2);
                    out.count(ALB, &name, &d, *n, "Count");
                }
                if let Some(rt) = sum.rt {
                    out.add(ALB, "TargetResponseTime", &d, "Seconds", rt);
                }
                // RequestCountPerTarget: the group's requests over its healthy targets
                // (all registered ones when none is healthy, as traffic goes then).
                let per = if healthy > 0 {
                    healthy
                } else {
                    g.targets.len()
                };
                if sum.requests > 0 && per > 0 {
                    let v = sum.requests as f64 / per as f64;
                    out.add(ALB, "RequestCountPerTarget", &d, "None", Stats::one(v));
                    out.add(ALB, "RequestCountPerTarget", &d[1..], "None", Stats::one(v));
                }
            }
        }
        out
    }
}

/// The meters of a listener's requests, created on first use.
#[derive(Debug, Default)]
pub(super) struct Meters {
    pub(super) listeners: super::HashMap<String, Arc<ListenerMeter>>,
    /// By listener, then target group.
    pub(super) groups: super::HashMap<String, super::HashMap<String, Arc<GroupMeter>>>,
}

impl Meters {
    pub(super) fn listener(&mut self, listener: &str) -> Arc<ListenerMeter> {
        if let Some(m) = self.listeners.get(listener) {
            return m.clone();
        }
        let m = Arc::new(ListenerMeter::default());
        self.listeners.insert(listener.to_string(), m.clone());
        m
    }

    /// How many requests on `listener` were not compliant, since the counts were last
    /// published.
    #[cfg(test)]
    pub(super) fn non_compliant_of(&self, listener: &str) -> u64 {
        self.listeners
            .get(listener)
            .map_or(0, |m| m.non_compliant.load(Relaxed))
    }

    /// The meter of `listener`, when it has one yet.
    pub(super) fn find_listener(&self, listener: &str) -> Option<Arc<ListenerMeter>> {
        self.listeners.get(listener).cloned()
    }

    /// The meter of `group` behind `listener`, when it has one yet.
    pub(super) fn find_group(&self, listener: &str, group: &str) -> Option<Arc<GroupMeter>> {
        self.groups.get(listener)?.get(group).cloned()
    }

    pub(super) fn group(&mut self, listener: &str, group: &str) -> Arc<GroupMeter> {
        // Looked up without allocating; keys are made the first time only.
        if let Some(m) = self.groups.get(listener).and_then(|g| g.get(group)) {
            return m.clone();
        }
        let m = Arc::new(GroupMeter::default());
        self.groups
            .entry(listener.to_string())
            .or_default()
            .insert(group.to_string(), m.clone());
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dimensions_and_classes() {
        assert_eq!(
            dimension_of(
                "arn:aws:elasticloadbalancing:us-east-1:000000000000:loadbalancer/app/web/50dc6c495c0c9188"
            ),
            "app/web/50dc6c495c0c9188"
        );
        assert_eq!(
            dimension_of(
                "arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/tg/73e2d6bc24d8a067"
            ),
            "targetgroup/tg/73e2d6bc24d8a067"
        );
        assert_eq!(class(200), Some(0));
        assert_eq!(class(503), Some(3));
        assert_eq!(class(101), None);
    }

    #[test]
    fn a_meter_counts_without_a_lock() {
        let m = Meter {
            listener: Some(Arc::new(ListenerMeter::default())),
            group: Some(Arc::new(GroupMeter::default())),
        };
        m.request();
        m.target_answer(200, Duration::from_millis(3));
        m.request();
        m.target_answer(503, Duration::from_millis(1));
        let g = m.group.as_ref().unwrap();
        assert_eq!(g.requests.load(Relaxed), 2);
        assert_eq!(g.target[0].load(Relaxed), 1);
        assert_eq!(g.target[3].load(Relaxed), 1);
        assert_eq!(g.rt_min_us.load(Relaxed), 1000);
        assert_eq!(g.rt_max_us.load(Relaxed), 3000);
        assert_eq!(g.rt_sum_us.load(Relaxed), 4000);
    }
}
