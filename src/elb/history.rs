//! What each target's health was over time, for the console: every change of the state
//! and reason DescribeTargetHealth reports for a target, with its time, since this serve
//! started. ELB itself keeps no such history (its API answers the present only; CloudWatch
//! has HealthyHostCount per group), so this is the console's own record, kept in memory,
//! bounded ([`POINTS`] changes per target, [`GONE_KEPT`] of targets no longer listed).
//!
//! [`run`] records: it wakes on a health change, a change of the resources (a target
//! registered or deregistered) and at the end of a drain, never on a timer of its own, so
//! an idle load balancer costs it nothing.

use super::{Elb, Health};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Changes kept per target (the oldest go first).
pub const POINTS: usize = 64;
/// Targets no longer listed whose history is still kept (the longest gone go first).
pub const GONE_KEPT: usize = 256;

/// The state a target is recorded in once DescribeTargetHealth no longer lists it (its
/// drain ended, or its group went): ELB has no state by that name; the console shows it
/// as the end of the target's history.
pub const GONE: &str = "deregistered";

/// One change: from `at` on, the target was in `state` for `reason`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Point {
    /// Seconds since the Unix epoch.
    pub at: f64,
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

/// One target's history, as the console reads it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetHistory {
    pub target_group_arn: String,
    pub id: String,
    pub port: u16,
    pub points: Vec<Point>,
}

type Key = (String, String, u16);

#[derive(Default)]
struct Track {
    points: VecDeque<Point>,
    /// When it stopped being listed (None while it is).
    gone: Option<f64>,
}

/// The record of every target's changes.
#[derive(Default)]
pub struct History {
    tracks: HashMap<Key, Track>,
}

fn seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl History {
    /// Records what DescribeTargetHealth lists at `now` (`listed`: group ARN, target id,
    /// port, health): a point for each target whose state or reason differs from its last
    /// one, and [`GONE`] for each target listed before and not now.
    pub fn observe<'a>(
        &mut self,
        now: SystemTime,
        listed: impl IntoIterator<Item = (&'a str, &'a str, u16, &'a Health)>,
    ) {
        let at = seconds(now);
        let mut seen = std::collections::HashSet::new();
        for (group, id, port, h) in listed {
            let key = (group.to_string(), id.to_string(), port);
            let track = self.tracks.entry(key.clone()).or_default();
            track.gone = None;
            let last = track.points.back().map(|p| (p.state, p.reason));
            if last != Some((h.state, h.reason)) {
                push(track, at, h.state, h.reason);
            }
            seen.insert(key);
        }
        for (key, track) in &mut self.tracks {
            if track.gone.is_none() && !seen.contains(key) {
                track.gone = Some(at);
                push(track, at, GONE, None);
            }
        }
        let gone = self.tracks.values().filter(|t| t.gone.is_some()).count();
        if gone > GONE_KEPT {
            let mut by_age: Vec<(f64, Key)> = self
                .tracks
                .iter()
                .filter_map(|(k, t)| t.gone.map(|g| (g, k.clone())))
                .collect();
            by_age.sort_by(|a, b| a.0.total_cmp(&b.0));
            for (_, k) in by_age.into_iter().take(gone - GONE_KEPT) {
                self.tracks.remove(&k);
            }
        }
    }

    /// Every target's history, by group, target and port.
    pub fn all(&self) -> Vec<TargetHistory> {
        let mut out: Vec<TargetHistory> = self
            .tracks
            .iter()
            .map(|((group, id, port), t)| TargetHistory {
                target_group_arn: group.clone(),
                id: id.clone(),
                port: *port,
                points: t.points.iter().cloned().collect(),
            })
            .collect();
        out.sort_by(|a, b| {
            (&a.target_group_arn, &a.id, a.port).cmp(&(&b.target_group_arn, &b.id, b.port))
        });
        out
    }
}

fn push(track: &mut Track, at: f64, state: &'static str, reason: Option<&'static str>) {
    if track.points.len() == POINTS {
        track.points.pop_front();
    }
    track.points.push_back(Point { at, state, reason });
}

/// Records the targets' changes until the runtime stops.
pub async fn run(elb: Arc<Elb>) {
    let mut health = elb.health_changes();
    let mut resources = elb.changes();
    loop {
        let next_drain_end = elb.record_history();
        let drained = async {
            match next_drain_end {
                // A moment after the drain's end, so that it has ended when looked at.
                Some(t) => {
                    tokio::time::sleep_until((t + std::time::Duration::from_millis(50)).into())
                        .await
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = health.changed() => if r.is_err() { break },
            r = resources.changed() => if r.is_err() { break },
            () = drained => {}
        }
    }
}

impl Elb {
    /// Records what DescribeTargetHealth would list now into the history; when the next
    /// drain ends (the next change no other event announces).
    pub fn record_history(&self) -> Option<Instant> {
        let now = Instant::now();
        let s = self.lock();
        let mut listed: Vec<(&str, &str, u16, Health)> = Vec::new();
        for g in s.groups.values() {
            for t in &g.targets {
                listed.push((&g.arn, &t.id, t.port, s.health_of(g, t, now)));
            }
        }
        let mut next = None::<Instant>;
        for d in &s.draining {
            if d.until <= now {
                continue;
            }
            next = Some(next.map_or(d.until, |n| n.min(d.until)));
            let registered = s
                .groups
                .get(&d.group)
                .is_some_and(|g| g.targets.contains(&d.target));
            if !registered {
                listed.push((&d.group, &d.target.id, d.target.port, Health::draining()));
            }
        }
        let mut history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        history.observe(
            SystemTime::now(),
            listed.iter().map(|(g, id, port, h)| (*g, *id, *port, h)),
        );
        next
    }

    /// Every target's history since this serve started (the console's).
    pub fn health_history(&self) -> Vec<TargetHistory> {
        self.record_history();
        self.history.lock().unwrap_or_else(|p| p.into_inner()).all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn h(state: &'static str, reason: Option<&'static str>) -> Health {
        Health {
            state,
            reason,
            description: None,
            passed: 0,
            failed: 0,
        }
    }

    #[test]
    fn a_change_of_state_or_reason_is_a_point_and_a_target_no_longer_listed_is_gone() {
        let mut hist = History::default();
        let t0 = UNIX_EPOCH + Duration::from_secs(1000);
        let init = h("initial", Some("Elb.RegistrationInProgress"));
        let checking = h("initial", Some("Elb.InitialHealthChecking"));
        let healthy = h("healthy", None);
        hist.observe(t0, [("g", "10.0.0.2", 80, &init)]);
        // The same again: no new point.
        hist.observe(t0 + Duration::from_secs(1), [("g", "10.0.0.2", 80, &init)]);
        hist.observe(
            t0 + Duration::from_secs(2),
            [("g", "10.0.0.2", 80, &checking)],
        );
        hist.observe(
            t0 + Duration::from_secs(3),
            [
                ("g", "10.0.0.2", 80, &healthy),
                ("g", "10.0.0.3", 80, &init),
            ],
        );
        hist.observe(t0 + Duration::from_secs(4), [("g", "10.0.0.3", 80, &init)]);
        let all = hist.all();
        assert_eq!(all.len(), 2);
        let states: Vec<(f64, &str, Option<&str>)> = all[0]
            .points
            .iter()
            .map(|p| (p.at, p.state, p.reason))
            .collect();
        assert_eq!(
            states,
            vec![
                (1000.0, "initial", Some("Elb.RegistrationInProgress")),
                (1002.0, "initial", Some("Elb.InitialHealthChecking")),
                (1003.0, "healthy", None),
                (1004.0, GONE, None),
            ]
        );
        assert_eq!(all[1].id, "10.0.0.3");
        assert_eq!(all[1].points.len(), 1);
        // Listed again: it comes back, and the gone point stays in its past.
        hist.observe(t0 + Duration::from_secs(5), [("g", "10.0.0.2", 80, &init)]);
        let back = &hist.all()[0];
        assert_eq!(back.points.len(), 5);
        assert_eq!(back.points[4].state, "initial");
    }

    #[test]
    fn the_history_is_bounded_per_target_and_in_targets_gone() {
        let mut hist = History::default();
        let t0 = UNIX_EPOCH + Duration::from_secs(1000);
        let a = h("healthy", None);
        let b = h("unhealthy", Some("Target.Timeout"));
        for i in 0..(POINTS as u64 + 10) {
            let x = if i % 2 == 0 { &a } else { &b };
            hist.observe(t0 + Duration::from_secs(i), [("g", "t", 1, x)]);
        }
        let all = hist.all();
        assert_eq!(all[0].points.len(), POINTS);
        assert_eq!(all[0].points[0].at, 1010.0, "the oldest went first");
        let ids: Vec<String> = (0..GONE_KEPT + 5)
            .map(|i| format!("10.1.{}.{}", i / 250, i % 250))
            .collect();
        for (i, id) in ids.iter().enumerate() {
            hist.observe(
                t0 + Duration::from_secs(100 + i as u64),
                [("g", id.as_str(), 1, &a)],
            );
        }
        hist.observe(t0 + Duration::from_secs(10_000), []);
        assert_eq!(hist.all().len(), GONE_KEPT);
    }
}
