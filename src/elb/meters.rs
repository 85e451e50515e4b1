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

/// One load balancer's counts (the sum of its listeners') over some time, and its
/// connections open at its end.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LbCounts {
    pub requests: u64,
    /// The load balancer's own answers, 2XX … 5XX.
    pub elb: [u64; 4],
    pub non_compliant: u64,
    pub new_flows: u64,
    /// A gauge: the connections open when the counts were taken.
    pub active_flows: u64,
    pub bytes: u64,
}

/// One target group's counts behind one load balancer over some time.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GroupCounts {
    pub requests: u64,
    /// The targets' answers, 2XX … 5XX.
    pub target: [u64; 4],
    /// TargetResponseTime, in seconds (none without an answer).
    pub rt: Option<Stats>,
}

/// What a data plane counted since its counts were last taken, by load balancer ARN (and
/// target group ARN): what a box sends its serves (docs/cloudwatch.md "In cluster mode"),
/// which sum every box's before they publish ([`Elb::publish`]).
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Traffic {
    pub load_balancers: BTreeMap<String, LbCounts>,
    pub groups: BTreeMap<String, BTreeMap<String, GroupCounts>>,
}

fn merge_rt(into: &mut Option<Stats>, rt: &Option<Stats>) {
    match (into.as_mut(), rt) {
        (Some(a), Some(b)) => a.merge(b),
        (None, Some(b)) => *into = Some(*b),
        (_, None) => {}
    }
}

impl GroupCounts {
    fn add(&mut self, o: &GroupCounts) {
        self.requests += o.requests;
        for (a, b) in self.target.iter_mut().zip(o.target) {
            *a += b;
        }
        merge_rt(&mut self.rt, &o.rt);
    }
}

impl LbCounts {
    /// Adds `o`'s counts; the connections open are `active_flows`.
    fn add(&mut self, o: &LbCounts, active_flows: u64) {
        self.requests += o.requests;
        for (a, b) in self.elb.iter_mut().zip(o.elb) {
            *a += b;
        }
        self.non_compliant += o.non_compliant;
        self.new_flows += o.new_flows;
        self.bytes += o.bytes;
        self.active_flows = active_flows;
    }
}

impl Traffic {
    /// Adds another data plane's counts of the same time: the counts and the
    /// connections open sum (every box's load balancer is one load balancer).
    pub fn add(&mut self, o: &Traffic) {
        for (lb, c) in &o.load_balancers {
            let e = self.load_balancers.entry(lb.clone()).or_default();
            let open = e.active_flows + c.active_flows;
            e.add(c, open);
        }
        self.add_groups(o);
    }

    /// Adds the same data plane's counts of the time after: the counts sum, the
    /// connections open are the later ones (none for a load balancer `later` lacks).
    pub fn then(&mut self, later: &Traffic) {
        for c in self.load_balancers.values_mut() {
            c.active_flows = 0;
        }
        for (lb, c) in &later.load_balancers {
            self.load_balancers
                .entry(lb.clone())
                .or_default()
                .add(c, c.active_flows);
        }
        self.add_groups(later);
    }

    fn add_groups(&mut self, o: &Traffic) {
        for (lb, gs) in &o.groups {
            let into = self.groups.entry(lb.clone()).or_default();
            for (g, c) in gs {
                into.entry(g.clone()).or_default().add(c);
            }
        }
    }
}

/// The readers of one data plane's counts (each serve of a cluster), each given what was
/// counted since its own last read: two serves asking one box do not take each other's
/// counts away. A reader that has not read for [`READER_IDLE`] is forgotten (its serve
/// is gone); a new one starts from the counts since the last read by anyone.
#[derive(Debug, Default)]
pub struct Readers {
    by: std::collections::HashMap<String, (Traffic, std::time::Instant)>,
}

/// How long a reader is kept without reading.
pub const READER_IDLE: Duration = Duration::from_secs(10 * 60);

impl Readers {
    /// What `elb` counted since `reader` last read (taking the counts from `elb`).
    pub fn read(&mut self, elb: &Elb, reader: &str) -> Traffic {
        self.read_taken(elb.take_traffic(), reader, std::time::Instant::now())
    }

    fn read_taken(&mut self, fresh: Traffic, reader: &str, now: std::time::Instant) -> Traffic {
        self.by
            .retain(|_, (_, last)| now.duration_since(*last) < READER_IDLE);
        for (t, _) in self.by.values_mut() {
            t.then(&fresh);
        }
        match self.by.get_mut(reader) {
            Some((t, last)) => {
                *last = now;
                std::mem::take(t)
            }
            None => {
                self.by
                    .insert(reader.to_string(), (Traffic::default(), now));
                fresh
            }
        }
    }
}

impl Elb {
    /// Takes this data plane's counts since the last sample, adds `others` (the boxes'
    /// data planes' of the same time, in cluster mode) and puts the sum and the targets'
    /// health into `sink` at `now` (high resolution for box periods under a minute).
    pub fn publish(&self, sink: &Metrics, now: Millis, high_resolution: bool, others: &Traffic) {
        let mut traffic = self.take_traffic();
        traffic.add(others);
        let sample = self.points(&traffic);
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

    /// The counts since they were last taken, by load balancer and target group (the
    /// meters of listeners or groups that are gone go with them).
    pub fn take_traffic(&self) -> Traffic {
        let mut s = self.lock();
        let st = &mut *s;
        st.meters
            .listeners
            .retain(|l, _| st.listeners.contains_key(l));
        st.meters.groups.retain(|l, _| st.listeners.contains_key(l));
        for gs in st.meters.groups.values_mut() {
            gs.retain(|g, _| st.groups.contains_key(g));
        }
        let lb_of = |l: &str| st.listeners.get(l).map(|l| l.load_balancer_arn.clone());
        let mut out = Traffic::default();
        for (l, m) in &st.meters.listeners {
            let Some(lb) = lb_of(l) else { continue };
            let taken = m.take();
            let e = out.load_balancers.entry(lb).or_default();
            let open = e.active_flows + taken.active_flows;
            e.add(&taken, open);
        }
        for (l, gs) in &st.meters.groups {
            let Some(lb) = lb_of(l) else { continue };
            let into = out.groups.entry(lb).or_default();
            for (g, m) in gs {
                into.entry(g.clone()).or_default().add(&m.take());
            }
        }
        out
    }

    /// The figures ELB publishes of `t`, with this ELB's load balancers, groups and
    /// targets' health.
    fn points(&self, t: &Traffic) -> Sample {
        let st = self.read();
        let mut out = Sample::default();
        for (arn, sum) in &t.load_balancers {
            if let Some(lb) = st.lbs.get(arn) {
                out.lb_counts(dimension_of(arn), lb.kind, sum);
            }
        }
        for (lb, groups) in &t.groups {
            if st.lbs.contains_key(lb) {
                out.lb_target_counts(dimension_of(lb), groups.values());
            }
        }
        // Every group in use by each load balancer has its host counts, traffic or not.
        let now = std::time::Instant::now();
        for g in st.groups.values() {
            for lb in st.lbs_of_group(&g.arn) {
                let Some(lb_row) = st.lbs.get(&lb) else {
                    continue;
                };
                let counted = t.groups.get(&lb).and_then(|gs| gs.get(&g.arn));
                out.group_figures(&st, lb_row, g, counted, now);
            }
        }
        out
    }
}

impl ListenerMeter {
    /// The counts since the last take (the connections open stay).
    fn take(&self) -> LbCounts {
        let mut elb = [0; 4];
        for (c, a) in self.elb.iter().enumerate() {
            elb[c] = a.swap(0, Relaxed);
        }
        LbCounts {
            requests: self.requests.swap(0, Relaxed),
            elb,
            non_compliant: self.non_compliant.swap(0, Relaxed),
            new_flows: self.new_flows.swap(0, Relaxed),
            active_flows: self.active_flows.load(Relaxed),
            bytes: self.processed_bytes.swap(0, Relaxed),
        }
    }
}

impl GroupMeter {
    /// The counts since the last take.
    fn take(&self) -> GroupCounts {
        let mut target = [0; 4];
        for (c, a) in self.target.iter().enumerate() {
            target[c] = a.swap(0, Relaxed);
        }
        let n = self.rt_count.swap(0, Relaxed);
        let sum = self.rt_sum_us.swap(0, Relaxed);
        let min = self.rt_min_us.swap(u64::MAX, Relaxed);
        let max = self.rt_max_us.swap(0, Relaxed);
        let secs = |us: u64| us as f64 / 1e6;
        GroupCounts {
            requests: self.requests.swap(0, Relaxed),
            target,
            rt: (n > 0).then(|| Stats {
                count: n as f64,
                sum: secs(sum),
                min: secs(min.min(max)),
                max: secs(max),
            }),
        }
    }
}

impl Sample {
    /// A load balancer's own figures: its flows (NLB), or its requests and answers (ALB).
    fn lb_counts(&mut self, lbd: &str, kind: super::model::LbType, sum: &LbCounts) {
        let d = [("LoadBalancer", lbd)];
        if kind == super::model::LbType::Network {
            self.count(NLB, "NewFlowCount", &d, sum.new_flows, "Count");
            self.count(NLB, "ProcessedBytes", &d, sum.bytes, "Bytes");
            let open = Stats::one(sum.active_flows as f64);
            self.add(NLB, "ActiveFlowCount", &d, "Count", open);
            return;
        }
        self.count(ALB, "RequestCount", &d, sum.requests, "Count");
        for (c, n) in sum.elb.iter().enumerate() {
            let name = format!("HTTPCode_ELB_{}XX_Count", c + 2);
            self.count(ALB, &name, &d, *n, "Count");
        }
        // Ref: ALB User Guide, "CloudWatch metrics for your Application Load
        // Balancer": the number of requests that do not comply with RFC 7230.
        let name = "DesyncMitigationMode_NonCompliant_Request_Count";
        self.count(ALB, name, &d, sum.non_compliant, "Count");
    }

    /// The load balancer's HTTPCode_Target_* and TargetResponseTime: its groups'.
    fn lb_target_counts<'a>(&mut self, lbd: &str, groups: impl Iterator<Item = &'a GroupCounts>) {
        let mut sum = GroupCounts::default();
        for g in groups {
            sum.add(g);
        }
        self.target_counts(&[("LoadBalancer", lbd)], &sum);
    }

    /// HTTPCode_Target_* and TargetResponseTime of `sum` by `d`.
    fn target_counts(&mut self, d: &[(&str, &str)], sum: &GroupCounts) {
        for (c, n) in sum.target.iter().enumerate() {
            let name = format!("HTTPCode_Target_{}XX_Count", c + 2);
            self.count(ALB, &name, d, *n, "Count");
        }
        if let Some(rt) = sum.rt {
            self.add(ALB, "TargetResponseTime", d, "Seconds", rt);
        }
    }

    /// A group's figures behind load balancer `lb`: its hosts' counts, and (ALB) what
    /// `counted` of its requests.
    fn group_figures(
        &mut self,
        st: &super::State,
        lb: &super::model::LoadBalancer,
        g: &super::model::TargetGroup,
        counted: Option<&GroupCounts>,
        now: std::time::Instant,
    ) {
        let count_in = |state: &str| {
            g.targets
                .iter()
                .filter(|t| st.health_of(g, t, now).state == state)
                .count()
        };
        let (healthy, unhealthy) = (count_in("healthy"), count_in("unhealthy"));
        let ns = if lb.kind == super::model::LbType::Network {
            NLB
        } else {
            ALB
        };
        let d = [
            ("LoadBalancer", dimension_of(&lb.arn)),
            ("TargetGroup", dimension_of(&g.arn)),
        ];
        self.add(
            ns,
            "HealthyHostCount",
            &d,
            "Count",
            Stats::one(healthy as f64),
        );
        let unhealthy = Stats::one(unhealthy as f64);
        self.add(ns, "UnHealthyHostCount", &d, "Count", unhealthy);
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
                self.add(ALB, name, &d, "Count", Stats::one(n as f64));
            }
        }
        let Some(sum) = counted.filter(|_| ns == ALB) else {
            return;
        };
        self.count(ALB, "RequestCount", &d, sum.requests, "Count");
        self.target_counts(&d, sum);
        // RequestCountPerTarget: the group's requests over its healthy targets
        // (all registered ones when none is healthy, as traffic goes then).
        let per = if healthy > 0 {
            healthy
        } else {
            g.targets.len()
        };
        if sum.requests > 0 && per > 0 {
            let v = Stats::one(sum.requests as f64 / per as f64);
            self.add(ALB, "RequestCountPerTarget", &d, "None", v);
            self.add(ALB, "RequestCountPerTarget", &d[1..], "None", v);
        }
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

    fn lb_counts(requests: u64, active_flows: u64) -> Traffic {
        let mut t = Traffic::default();
        t.load_balancers.insert(
            "lb".into(),
            LbCounts {
                requests,
                active_flows,
                ..LbCounts::default()
            },
        );
        t
    }

    #[test]
    fn each_reader_gets_every_count_once_and_the_connections_open_last() {
        let mut r = Readers::default();
        let t0 = std::time::Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        // The first reader gets what was counted before it asked.
        assert_eq!(r.read_taken(lb_counts(3, 2), "a", at(0)), lb_counts(3, 2));
        // A second reader starts from what was counted since the last read by anyone.
        assert_eq!(r.read_taken(lb_counts(5, 1), "b", at(1)), lb_counts(5, 1));
        // Each gets what it has not read, with the connections open now.
        assert_eq!(r.read_taken(lb_counts(1, 0), "a", at(2)), lb_counts(6, 0));
        assert_eq!(
            r.read_taken(Traffic::default(), "b", at(3)),
            lb_counts(1, 0)
        );
        // A reader silent too long is forgotten: it starts again from the last read.
        let late = at(3) + READER_IDLE;
        assert_eq!(r.read_taken(lb_counts(4, 0), "b", late), lb_counts(4, 0));
        assert_eq!(r.read_taken(lb_counts(2, 0), "a", late), lb_counts(2, 0));
    }

    #[test]
    fn boxes_counts_sum_with_their_connections_open_and_response_times() {
        let mut a = lb_counts(3, 2);
        let rt = |n: f64, sum: f64, min: f64, max: f64| Stats {
            count: n,
            sum,
            min,
            max,
        };
        a.groups.entry("lb".into()).or_default().insert(
            "tg".into(),
            GroupCounts {
                requests: 3,
                target: [3, 0, 0, 0],
                rt: Some(rt(3.0, 0.25, 0.05, 0.2)),
            },
        );
        let mut b = lb_counts(4, 1);
        b.groups.entry("lb".into()).or_default().insert(
            "tg".into(),
            GroupCounts {
                requests: 4,
                target: [2, 0, 2, 0],
                rt: Some(rt(4.0, 0.125, 0.01, 0.04)),
            },
        );
        a.add(&b);
        let lb = &a.load_balancers["lb"];
        assert_eq!((lb.requests, lb.active_flows), (7, 3));
        let g = &a.groups["lb"]["tg"];
        assert_eq!((g.requests, g.target), (7, [5, 0, 2, 0]));
        assert_eq!(g.rt, Some(rt(7.0, 0.375, 0.01, 0.2)));
    }

    /// `n` requests on `listener` of `elb`, each answered 200 by the target it is routed to.
    fn requests(elb: &Elb, listener: &str, n: usize) {
        for _ in 0..n {
            let req = crate::elb::rules::Request {
                method: "GET",
                host: Some("sum"),
                path: "/",
                query: None,
                headers: &[],
                source: std::net::Ipv4Addr::LOCALHOST.into(),
            };
            let mut meter = Meter::default();
            let pick = elb.route(listener, Some(&req), req.source, &mut meter);
            assert!(matches!(pick, crate::elb::Pick::Target(..)), "{pick:?}");
            meter.request();
            meter.target_answer(200, Duration::from_millis(1));
        }
    }

    /// The cluster's sum (docs/cloudwatch.md "In cluster mode"): a serve publishes its own
    /// listeners' requests and those a box's data plane counted, read for that serve; what
    /// ALBRequestCountPerTarget tracks is their sum over the healthy targets.
    #[test]
    fn a_serve_publishes_the_sum_of_its_own_and_a_box_s_counts() {
        use crate::elb::tests::{call, group_in_use};
        let dir = tempfile::tempdir().unwrap();
        let serve = Elb::open(dir.path().to_path_buf()).unwrap();
        let tg = group_in_use(&serve, "sum");
        let targets = [
            ("TargetGroupArn", tg.as_str()),
            ("Targets.member.1.Id", "10.0.0.1"),
            ("Targets.member.2.Id", "10.0.0.2"),
        ];
        call(&serve, "RegisterTargets", &targets);
        for h in serve.lock().health.values_mut() {
            h.state = "healthy";
        }
        let a_box = Elb::from_config();
        a_box.apply_config(&serve.config()).unwrap();
        let (listener, lb) = {
            let s = serve.lock();
            let (arn, l) = s.listeners.iter().next().unwrap();
            (arn.clone(), l.load_balancer_arn.clone())
        };
        requests(&serve, &listener, 3);
        requests(&a_box, &listener, 5);
        let mut readers = Readers::default();
        let from_box = readers.read(&a_box, "serve-1");
        let sink = Metrics::new();
        serve.publish(&sink, 60_000, false, &from_box);
        let sum = |name: &str, dims: &[(&str, &str)]| {
            let id = MetricId {
                namespace: ALB.into(),
                name: name.into(),
                dimensions: dims
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            };
            let got = sink.query(&id, 0, 120_000, 60_000, None);
            assert_eq!(got.len(), 1, "{name} {dims:?}: {got:?}");
            got[0].stats.sum
        };
        let lbd = [("LoadBalancer", dimension_of(&lb))];
        let both = [
            ("LoadBalancer", dimension_of(&lb)),
            ("TargetGroup", dimension_of(&tg)),
        ];
        assert_eq!(sum("RequestCount", &lbd), 8.0);
        assert_eq!(sum("HTTPCode_Target_2XX_Count", &lbd), 8.0);
        assert_eq!(sum("RequestCount", &both), 8.0);
        // 8 requests over 2 healthy targets, in the dimensions ALBRequestCountPerTarget
        // tracks (`autoscaling::ops::alb_request_count`).
        assert_eq!(sum("RequestCountPerTarget", &both), 4.0);
        // The box's counts went to this serve once.
        assert_eq!(
            readers.read(&a_box, "serve-1"),
            Traffic {
                load_balancers: from_box
                    .load_balancers
                    .keys()
                    .map(|k| (k.clone(), LbCounts::default()))
                    .collect(),
                groups: from_box
                    .groups
                    .iter()
                    .map(|(lb, gs)| (
                        lb.clone(),
                        gs.keys()
                            .map(|g| (g.clone(), GroupCounts::default()))
                            .collect()
                    ))
                    .collect(),
            }
        );
    }
}
