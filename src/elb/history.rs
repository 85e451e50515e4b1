//! What each target's health was over time, for the console: every change of the state
//! and reason DescribeTargetHealth reports for a target, with its time. ELB itself keeps
//! no such history (its API answers the present only; CloudWatch has HealthyHostCount per
//! group), so this is the console's own record, bounded ([`POINTS`] changes per target,
//! [`GONE_KEPT`] of targets no longer listed), kept in memory and, in `serve`, in
//! `state.db` (`elb_target_health_history`) so that a restarted `serve` has it too.
//!
//! [`run`] records: it wakes on a health change, a change of the resources (a target
//! registered or deregistered) and at the end of a drain, never on a timer of its own, so
//! an idle load balancer costs it nothing; it writes each new point to the store off the
//! runtime's workers ([`Elb::save_history`] in `spawn_blocking`).

use super::{Elb, Health};
use crate::store::{TargetHealthPoint, TargetHealthReason, TargetHealthState};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
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
    /// Seconds since the Unix epoch, to the millisecond (as stored).
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
    /// The points not yet in the store, in the order they happened (None: this history is
    /// not stored, as in the CLI's processes).
    unsaved: Option<Vec<(Key, Point)>>,
}

/// `t` in seconds since the epoch, to the millisecond: what the store keeps (epoch ms)
/// reads back as the same number.
fn seconds(t: SystemTime) -> f64 {
    let ms = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    from_millis(i64::try_from(ms).unwrap_or(i64::MAX))
}

fn from_millis(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

fn to_millis(at: f64) -> i64 {
    (at * 1000.0).round() as i64
}

/// The stored history does not decode: `serve` starts without it.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("failed to read the targets' health history from the state database")]
    Read(#[source] crate::store::StoreError),
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
                let p = push(track, at, h.state, h.reason);
                if let Some(u) = &mut self.unsaved {
                    u.push((key.clone(), p));
                }
            }
            seen.insert(key);
        }
        for (key, track) in &mut self.tracks {
            if track.gone.is_none() && !seen.contains(key) {
                track.gone = Some(at);
                let p = push(track, at, GONE, None);
                if let Some(u) = &mut self.unsaved {
                    u.push((key.clone(), p));
                }
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

    /// The history `points` (as [`crate::store::Store::target_health_history`] reads them:
    /// by target, in order) hold, written to the store from now on.
    fn stored(points: Vec<TargetHealthPoint>) -> History {
        let mut h = History {
            unsaved: Some(Vec::new()),
            ..History::default()
        };
        for p in points {
            let key = (p.target_group, p.target_id, p.port);
            let track = h.tracks.entry(key).or_default();
            let state = p.state.as_str();
            let at = from_millis(p.at_ms);
            push(track, at, state, p.reason.map(TargetHealthReason::as_str));
            track.gone = (state == GONE).then_some(at);
        }
        h
    }

    /// A history that is written to the store, empty.
    fn stored_from_now() -> History {
        History::stored(Vec::new())
    }

    /// The points not yet written to the store, as its rows; a state or reason the store
    /// has no spelling for (one a newer leader published, in cluster mode) is left out with
    /// an error in the log.
    fn take_unsaved(&mut self) -> Vec<TargetHealthPoint> {
        let Some(unsaved) = self.unsaved.as_mut() else {
            return Vec::new();
        };
        let mut rows = Vec::with_capacity(unsaved.len());
        for ((group, id, port), p) in unsaved.drain(..) {
            let state = p.state.parse::<TargetHealthState>();
            let reason = p.reason.map(str::parse::<TargetHealthReason>).transpose();
            match (state, reason) {
                (Ok(state), Ok(reason)) => rows.push(TargetHealthPoint {
                    target_group: group,
                    target_id: id,
                    port,
                    at_ms: to_millis(p.at),
                    state,
                    reason,
                }),
                (Err(e), _) | (_, Err(e)) => tracing::error!(
                    group = %group, target = %id, port, error = %e,
                    "a target health change is not stored (the console shows it until serve stops)"
                ),
            }
        }
        rows
    }
}

fn push(track: &mut Track, at: f64, state: &'static str, reason: Option<&'static str>) -> Point {
    if track.points.len() == POINTS {
        track.points.pop_front();
    }
    let p = Point { at, state, reason };
    track.points.push_back(p.clone());
    p
}

/// Where `serve` writes the history: its own connection to the store, and a wake-up for
/// [`run`] when a point is waiting for it.
#[derive(Default)]
pub struct Writer {
    store: Mutex<Option<crate::store::Store>>,
    waiting: tokio::sync::Notify,
}

/// Records the targets' changes until the runtime stops, and writes them to the store
/// (after [`Elb::load_history`]).
pub async fn run(elb: Arc<Elb>) {
    let mut health = elb.health_changes();
    let mut resources = elb.changes();
    loop {
        let next_drain_end = elb.record_history();
        if elb.history_unsaved() {
            let e = elb.clone();
            let _ = tokio::task::spawn_blocking(move || e.save_history()).await;
        }
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
            () = elb.history_writer.waiting.notified() => {}
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
        let unsaved = history.unsaved.as_ref().is_some_and(|u| !u.is_empty());
        drop(history);
        if unsaved {
            self.history_writer.waiting.notify_one();
        }
        next
    }

    /// `serve`, at its start (before anything is recorded): the history as the store has
    /// it, and every change from now on written to the store ([`Self::save_history`]).
    /// A stored history that does not decode is an error in the log, and the history
    /// starts afresh (the stored rows stay as they are). Records the targets as they are
    /// now.
    pub fn load_history(&self) {
        let loaded = crate::store::Store::open(&self.root)
            .and_then(|store| {
                let points = store.target_health_history();
                *self
                    .history_writer
                    .store
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(store);
                points
            })
            .map_err(LoadError::Read);
        let history = match loaded {
            Ok(points) => History::stored(points),
            Err(e) => {
                tracing::error!(
                    error = %crate::errors::error_chain(&e),
                    "the targets' health history of before this start is not shown: the console's history starts now"
                );
                History::stored_from_now()
            }
        };
        *self.history.lock().unwrap_or_else(|p| p.into_inner()) = history;
        // What DescribeTargetHealth reports at this start, before the first check can
        // change it (every target `initial` again: a restarted serve checks afresh).
        self.record_history();
    }

    /// Whether points wait to be written ([`Self::save_history`]).
    fn history_unsaved(&self) -> bool {
        let history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        history.unsaved.as_ref().is_some_and(|u| !u.is_empty())
    }

    /// Writes the points recorded since the last call to the store, pruning it to the
    /// history's bounds in the same transaction (blocking: `spawn_blocking` from async
    /// code). Nothing after [`Self::load_history`] was never called.
    pub fn save_history(&self) {
        let mut store = self
            .history_writer
            .store
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let rows = self
            .history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take_unsaved();
        if rows.is_empty() {
            return;
        }
        if store.is_none() {
            match crate::store::Store::open(&self.root) {
                Ok(s) => *store = Some(s),
                Err(e) => {
                    tracing::error!(error = %crate::errors::error_chain(&e), points = rows.len(),
                        "the targets' health changes are not stored (the console shows them until serve stops)");
                    return;
                }
            }
        }
        if let Some(s) = store.as_ref()
            && let Err(e) = s.append_target_health(&rows, POINTS, GONE_KEPT)
        {
            tracing::error!(error = %crate::errors::error_chain(&e), points = rows.len(),
                "the targets' health changes are not stored (the console shows them until serve stops)");
        }
    }

    /// Every target's history (the console's).
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

    fn stored_point(id: &str, at_ms: i64, state: TargetHealthState) -> TargetHealthPoint {
        TargetHealthPoint {
            target_group: "g".into(),
            target_id: id.into(),
            port: 80,
            at_ms,
            state,
            reason: None,
        }
    }

    #[test]
    fn a_stored_history_goes_on_with_what_the_next_serve_sees_and_only_that_is_written() {
        let t = |ms: i64| UNIX_EPOCH + Duration::from_millis(ms as u64);
        let mut hist = History::stored(vec![
            stored_point("a", 1_000, TargetHealthState::Healthy),
            stored_point("b", 1_500, TargetHealthState::Healthy),
            stored_point("b", 2_000, TargetHealthState::Deregistered),
            stored_point("c", 1_200, TargetHealthState::Healthy),
        ]);
        assert!(
            hist.take_unsaved().is_empty(),
            "what was read is not written again"
        );
        // After the restart: `a` is initial again (health checks start over), `b` stays
        // gone (no second gone point), `c` is no longer listed (gone now).
        let init = h("initial", Some("Elb.RegistrationInProgress"));
        hist.observe(t(9_001), [("g", "a", 80, &init)]);
        let all = hist.all();
        let pts = |i: usize| -> Vec<(f64, &str)> {
            all[i].points.iter().map(|p| (p.at, p.state)).collect()
        };
        assert_eq!(pts(0), [(1.0, "healthy"), (9.001, "initial")]);
        assert_eq!(pts(1), [(1.5, "healthy"), (2.0, GONE)]);
        assert_eq!(pts(2), [(1.2, "healthy"), (9.001, GONE)]);
        let rows = hist.take_unsaved();
        let written: Vec<(&str, i64, TargetHealthState, Option<TargetHealthReason>)> = rows
            .iter()
            .map(|r| (r.target_id.as_str(), r.at_ms, r.state, r.reason))
            .collect();
        assert_eq!(
            written,
            [
                (
                    "a",
                    9_001,
                    TargetHealthState::Initial,
                    Some(TargetHealthReason::RegistrationInProgress)
                ),
                ("c", 9_001, TargetHealthState::Deregistered, None),
            ]
        );
        assert!(hist.take_unsaved().is_empty());
        // The CLI's processes keep nothing to write.
        let mut cli = History::default();
        cli.observe(t(1), [("g", "a", 80, &init)]);
        assert!(cli.take_unsaved().is_empty());
        assert_eq!(GONE, TargetHealthState::Deregistered.as_str());
    }

    #[test]
    fn serve_reads_the_stored_history_writes_what_follows_and_starts_afresh_on_a_bad_row() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(dir.path()).unwrap();
        store
            .append_target_health(
                &[stored_point("a", 1_000, TargetHealthState::Healthy)],
                POINTS,
                GONE_KEPT,
            )
            .unwrap();
        let elb = Elb::open(dir.path().to_path_buf()).unwrap();
        elb.load_history();
        // Group `g` is not there any more: `a` is no longer listed.
        let all = elb.health_history();
        let states: Vec<&str> = all[0].points.iter().map(|p| p.state).collect();
        assert_eq!(states, ["healthy", GONE]);
        assert_eq!(all[0].points[0].at, 1.0);
        elb.save_history();
        let stored: Vec<TargetHealthState> = store
            .target_health_history()
            .unwrap()
            .into_iter()
            .map(|p| p.state)
            .collect();
        assert_eq!(
            stored,
            [TargetHealthState::Healthy, TargetHealthState::Deregistered]
        );
        let next = Elb::open(dir.path().to_path_buf()).unwrap();
        next.load_history();
        assert_eq!(next.health_history(), all, "the next serve's is the same");

        // A row that does not decode: serve starts with a history from now on.
        rusqlite::Connection::open(dir.path().join("state.db"))
            .unwrap()
            .execute(
                "INSERT INTO elb_target_health_history (target_group, target_id, port, at_ms, state)
                 VALUES ('g', 'z', 80, 3000, 'sleepy')",
                [],
            )
            .unwrap();
        let afresh = Elb::open(dir.path().to_path_buf()).unwrap();
        afresh.load_history();
        assert!(afresh.health_history().is_empty());
    }
}
