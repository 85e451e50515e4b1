//! The reconciler's rules as a table: each case a snapshot and the plan expected of it.
//!
//! Rule -> test (issue 75):
//! - rolling update at several min/max percents: `rolling_update_*`, `a_new_service_*`,
//!   `a_launch_is_a_batch_of_at_most_ten`, `a_service_at_its_desired_count_does_nothing`,
//!   `an_old_task_not_running_stops_at_once_and_running_ones_oldest_first`
//! - desired count changed mid-deployment:
//!   `a_desired_count_raised_mid_deployment_launches_the_difference_within_the_room`
//! - scale-in and its protection: `scale_in_*`
//! - replacement of UNHEALTHY tasks and the grace period: `an_unhealthy_task_*`,
//!   `the_grace_period_counts_from_the_task_start`,
//!   `a_task_unhealthy_in_its_target_group_is_replaced_with_elbs_reason`
//! - tasks on DRAINING instances: `a_task_on_a_draining_instance_is_replaced_first_then_stopped`
//! - a deleted service: `a_deleted_service_stops_every_task_then_goes_inactive`
//! - throttling and its event: `throttling_*`
//! - load-balancer registration and draining: `load_balancing_*`,
//!   `with_load_balancers_an_old_task_stops_only_as_new_ones_pass_their_health_checks`
//! - circuit breaker threshold and rollback: `circuit_breaker_*`,
//!   `a_failed_deployment_launches_no_more_tasks`
//! - deployment alarms: `deployment_alarms_*`
//! - blue/green / linear / canary steps and bake time: `blue_green_*`,
//!   `linear_production_traffic_moves_a_step_after_each_wait`,
//!   `canary_production_traffic_takes_its_share_then_the_rest`,
//!   `a_blue_green_rollback_succeeds_once_the_green_tasks_are_gone`
//! - completion and steady state (bake time with alarms): `completion_*`,
//!   `an_older_deployment_with_no_task_left_goes_inactive`, `bake_time_*`

use super::*;
use crate::store::{DeploymentConfiguration, StopCode};
use std::time::Duration;

const NOW_MS: i64 = 10_000_000;

/// A service of `desired` tasks, ECS's default percents (max 200, min 100), its PRIMARY
/// deployment `new`, no task yet.
fn service(desired: i64) -> Snapshot {
    let (max_total, min_healthy) = DeploymentConfiguration::default().bounds(desired);
    Snapshot {
        service: "web".into(),
        deleted: false,
        desired,
        max_total,
        min_healthy,
        grace_s: None,
        primary: Primary {
            id: "new".into(),
            rollout_state: RolloutState::InProgress,
            stage: None,
        },
        blue_green: false,
        routing: None,
        load_balanced: false,
        throttle: Throttle::default(),
        gone: Vec::new(),
        now: Instant::now(),
        now_ms: NOW_MS,
        tasks: Vec::new(),
    }
}

impl Snapshot {
    fn percents(mut self, max: i64, min: i64) -> Self {
        let c = DeploymentConfiguration {
            maximum_percent: max,
            minimum_healthy_percent: min,
            ..Default::default()
        };
        (self.max_total, self.min_healthy) = c.bounds(self.desired);
        self
    }
    fn with(mut self, tasks: impl IntoIterator<Item = TaskState>) -> Self {
        self.tasks.extend(tasks);
        self
    }
}

/// `n` RUNNING, healthy tasks of deployment `d`, named `d-1`…, created in that order.
fn running(d: &str, n: usize) -> Vec<TaskState> {
    (1..=n).map(|i| task(&format!("{d}-{i}"), d)).collect()
}

fn task(id: &str, d: &str) -> TaskState {
    let n: i64 = id
        .rsplit('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    TaskState {
        id: id.into(),
        deployment: Some(d.into()),
        created_at: n,
        started_at: Some(n),
        running: true,
        active: true,
        ..Default::default()
    }
}

impl TaskState {
    fn pending(mut self) -> Self {
        self.running = false;
        self.started_at = None;
        self
    }
    fn unhealthy(mut self) -> Self {
        self.containers_unhealthy = true;
        self
    }
    fn protected(mut self) -> Self {
        self.protected_until = Some(NOW_MS + 1);
        self
    }
    fn target(mut self, state: &'static str) -> Self {
        self.targets = Some(vec![TargetState {
            group: "tg".into(),
            port: 80,
            state: Some(state),
            description: None,
        }]);
        self
    }
}

/// The plan's stops as (task, why).
fn stops(p: &Plan) -> Vec<(&str, Why)> {
    p.stops.iter().map(|s| (s.task.as_str(), s.why)).collect()
}

#[test]
fn a_new_service_launches_its_desired_count() {
    let p = reconcile(&service(3));
    assert_eq!((p.launch, p.wanted), (3, 3));
    assert!(p.stops.is_empty() && p.events.is_empty());
}

#[test]
fn a_launch_is_a_batch_of_at_most_ten() {
    let p = reconcile(&service(25));
    assert_eq!(
        (p.launch, p.wanted),
        (10, 25),
        "the rest next pass, at once"
    );
}

#[test]
fn a_service_at_its_desired_count_does_nothing() {
    let p = reconcile(&service(2).with(running("new", 2)));
    assert_eq!(p.launch, 0);
    assert!(p.stops.is_empty());
}

#[test]
fn rolling_update_200_100_starts_the_new_tasks_before_stopping_any_old_one() {
    let p = reconcile(&service(4).with(running("old", 4)));
    assert_eq!(p.launch, 4);
    assert!(
        p.stops.is_empty(),
        "minimumHealthyPercent 100: no old task stops yet"
    );
}

#[test]
fn rolling_update_200_100_stops_the_old_tasks_once_the_new_ones_are_healthy() {
    let p = reconcile(&service(4).with(running("old", 4)).with(running("new", 4)));
    assert_eq!(p.launch, 0);
    let stopped = stops(&p);
    assert_eq!(stopped.len(), 4);
    assert!(
        stopped
            .iter()
            .all(|(t, w)| t.starts_with("old") && *w == Why::Retire)
    );
    assert_eq!(
        p.stops[0].reason,
        "Scaling activity initiated by (deployment old)"
    );
}

#[test]
fn rolling_update_counts_only_healthy_new_tasks() {
    // Two new tasks RUNNING, two still PENDING: two old ones may go.
    let mut new = running("new", 2);
    new.extend([
        task("new-3", "new").pending(),
        task("new-4", "new").pending(),
    ]);
    let p = reconcile(&service(4).with(running("old", 4)).with(new));
    assert_eq!(stops(&p), [("old-1", Why::Retire), ("old-2", Why::Retire)]);
}

#[test]
fn rolling_update_100_50_stops_half_first_and_launches_into_the_room() {
    let p = reconcile(&service(4).percents(100, 50).with(running("old", 4)));
    assert_eq!(
        p.launch, 0,
        "maximumPercent 100: no room while 4 tasks are left"
    );
    assert_eq!(stops(&p), [("old-1", Why::Retire), ("old-2", Why::Retire)]);
    // Next pass: two old tasks left, room for two new ones.
    let p = reconcile(&service(4).percents(100, 50).with(running("old", 2)));
    assert_eq!(p.launch, 2);
    assert!(p.stops.is_empty(), "2 healthy, minimum 2");
}

#[test]
fn rolling_update_100_0_stops_every_old_task_at_once() {
    let p = reconcile(&service(3).percents(100, 0).with(running("old", 3)));
    assert_eq!(stops(&p).len(), 3);
    assert_eq!(p.launch, 0);
}

#[test]
fn rolling_update_150_100_launches_within_maximum_percent() {
    let p = reconcile(&service(4).percents(150, 100).with(running("old", 4)));
    assert_eq!(p.launch, 2, "6 at most");
}

#[test]
fn an_old_task_not_running_stops_at_once_and_running_ones_oldest_first() {
    let old = [
        task("old-3", "old").pending(),
        task("old-1", "old"),
        task("old-2", "old"),
    ];
    let p = reconcile(
        &service(2)
            .percents(200, 50)
            .with(old)
            .with(running("new", 0)),
    );
    // Healthy 2, minimum 1: the PENDING one and the oldest RUNNING one.
    assert_eq!(stops(&p), [("old-3", Why::Retire), ("old-1", Why::Retire)]);
}

#[test]
fn a_desired_count_raised_mid_deployment_launches_the_difference_within_the_room() {
    let s = service(6).with(running("old", 2)).with(running("new", 2));
    let p = reconcile(&s);
    assert_eq!(p.launch, 4, "6 wanted, room 12 - 4");
    let s = service(3)
        .percents(100, 100)
        .with(running("old", 2))
        .with(running("new", 2));
    let p = reconcile(&s);
    assert_eq!(p.launch, 0, "no room: 4 of 3 at 100 %");
    assert_eq!(stops(&p), [("old-1", Why::Retire)], "4 healthy, minimum 3");
}

#[test]
fn scale_in_stops_tasks_not_running_first_then_the_newest() {
    let mut tasks = running("new", 3);
    tasks.push(task("new-4", "new").pending());
    let p = reconcile(&service(2).with(tasks));
    assert_eq!(
        stops(&p),
        [("new-4", Why::ScaleIn), ("new-3", Why::ScaleIn)]
    );
    assert_eq!(
        p.stops[0].reason,
        "Scaling activity initiated by (deployment new)"
    );
    assert_eq!(p.launch, 0);
}

#[test]
fn scale_in_protection_keeps_a_protected_task_and_counts_it() {
    let tasks = [
        task("new-1", "new"),
        task("new-2", "new").protected(),
        task("new-3", "new").protected(),
    ];
    let p = reconcile(&service(1).with(tasks));
    assert_eq!(stops(&p), [("new-1", Why::ScaleIn)]);
    assert_eq!(p.protected, 1, "two to stop, one could");
}

#[test]
fn scale_in_protection_that_lapsed_protects_nothing() {
    let mut t = task("new-2", "new");
    t.protected_until = Some(NOW_MS);
    let p = reconcile(&service(1).with([task("new-1", "new"), t]));
    assert_eq!(stops(&p), [("new-2", Why::ScaleIn)]);
    assert_eq!(p.protected, 0);
}

#[test]
fn scale_in_protection_keeps_an_older_deployments_task() {
    let old = [task("old-1", "old").protected(), task("old-2", "old")];
    let p = reconcile(&service(2).with(old).with(running("new", 2)));
    assert_eq!(stops(&p), [("old-2", Why::Retire)]);
    assert_eq!(p.protected, 1);
}

#[test]
fn an_unhealthy_task_is_replaced_and_said() {
    let tasks = [task("new-1", "new"), task("new-2", "new").unhealthy()];
    let p = reconcile(&service(2).with(tasks));
    assert_eq!(
        p.events,
        ["(service web) (task new-2) failed container health checks."]
    );
    assert_eq!(stops(&p), [("new-2", Why::Unhealthy)]);
    assert_eq!(p.stops[0].reason, UNHEALTHY_REASON);
    assert_eq!(p.stops[0].deployment.as_deref(), Some("new"));
    assert_eq!(p.launch, 1, "its replacement starts in the same pass");
}

#[test]
fn an_unhealthy_task_in_its_grace_period_is_kept_and_counts_as_unhealthy_after() {
    let mut s = service(1).with([task("new-1", "new").unhealthy()]);
    s.grace_s = Some(60);
    s.tasks[0].started_at = Some(NOW_MS - 59_999);
    let p = reconcile(&s);
    assert!(p.stops.is_empty() && p.events.is_empty());
    s.tasks[0].started_at = Some(NOW_MS - 60_000);
    assert_eq!(stops(&reconcile(&s)), [("new-1", Why::Unhealthy)]);
}

#[test]
fn the_grace_period_counts_from_the_task_start() {
    assert!(!in_grace_period(Some(1_000), None, 1_000));
    assert!(!in_grace_period(Some(1_000), Some(0), 1_000));
    assert!(in_grace_period(Some(1_000), Some(10), 10_999));
    assert!(!in_grace_period(Some(1_000), Some(10), 11_000));
    assert!(in_grace_period(None, Some(10), 0));
    assert!(!in_grace_period(Some(0), Some(-5), 0));
}

#[test]
fn a_task_unhealthy_in_its_target_group_is_replaced_with_elbs_reason() {
    let mut s = service(2).with([task("new-1", "new").target("healthy")]);
    let mut bad = task("new-2", "new").target("unhealthy");
    bad.targets.as_mut().unwrap()[0].description =
        Some("Health checks failed with these codes: [500]".into());
    s = s.with([bad]);
    s.load_balanced = true;
    let p = reconcile(&s);
    assert_eq!(
        p.events,
        [
            "(service web) (task new-2) (port 80) is unhealthy in (target-group tg) due to \
          (reason Health checks failed with these codes: [500])."
        ]
    );
    assert_eq!(stops(&p), [("new-2", Why::LbUnhealthy)]);
    assert_eq!(
        p.stops[0].reason,
        "Task failed ELB health checks in (target-group tg)"
    );
    // In the grace period it stays.
    s.grace_s = Some(60);
    s.tasks[1].started_at = Some(NOW_MS - 1);
    assert!(reconcile(&s).stops.is_empty());
}

#[test]
fn with_load_balancers_an_old_task_stops_only_as_new_ones_pass_their_health_checks() {
    let new = [
        task("new-1", "new").target("healthy"),
        task("new-2", "new").target("initial"),
    ];
    let old = running("old", 2).into_iter().map(|t| t.target("healthy"));
    let mut s = service(2).with(old).with(new);
    s.load_balanced = true;
    assert_eq!(stops(&reconcile(&s)), [("old-1", Why::Retire)]);
    // A task not registered yet is not healthy either.
    s.tasks[3].targets = None;
    assert_eq!(stops(&reconcile(&s)), [("old-1", Why::Retire)]);
}

#[test]
fn throttling_holds_the_launch_until_the_backoff_is_over() {
    let mut s = service(2);
    s.throttle.next_launch = Some(s.now + Duration::from_secs(5));
    let p = reconcile(&s);
    assert_eq!(p.launch, 0);
    assert!(p.throttled);
    s.throttle.next_launch = Some(s.now);
    let p = reconcile(&s);
    assert_eq!(p.launch, 2);
    assert!(!p.throttled);
}

/// A task of deployment `d` gone since the last pass, STOPPED with `code`.
fn gone(id: &str, d: &str, code: Option<StopCode>) -> Gone {
    Gone {
        id: id.into(),
        deployment: Some(d.into()),
        stopped: true,
        stop_code: code,
    }
}

#[test]
fn throttling_backs_off_and_forgets_old_failures() {
    let mut t = Throttle::default();
    let t0 = Instant::now();
    assert_eq!(t.failed(t0), 1);
    assert_eq!(
        t.next_launch,
        Some(t0),
        "the first failure is replaced at once"
    );
    t.failed(t0);
    assert_eq!(t.next_launch, Some(t0 + Duration::from_secs(5)));
    t.failed(t0);
    assert_eq!(t.next_launch, Some(t0 + Duration::from_secs(10)));
    for _ in 0..20 {
        t.failed(t0);
    }
    assert_eq!(t.next_launch, Some(t0 + throttle::THROTTLE_MAX));
    let later = t0 + throttle::THROTTLE_WINDOW + Duration::from_secs(1);
    assert_eq!(t.failed(later), 1);
    assert_eq!(t.next_launch, Some(later));
}

#[test]
fn throttling_counts_a_task_that_stopped_on_its_own_as_a_failure_of_its_deployment() {
    let mut s = service(2).with(running("new", 1));
    s.gone = vec![
        gone("new-2", "new", Some(StopCode::EssentialContainerExited)),
        gone("old-1", "old", Some(StopCode::TaskFailedToStart)),
        gone("new-3", "new", Some(StopCode::ServiceSchedulerInitiated)),
        gone("new-4", "new", Some(StopCode::UserInitiated)),
        gone("new-5", "new", Some(StopCode::TerminationNotice)),
        Gone {
            stopped: false,
            ..gone("new-6", "new", None)
        },
    ];
    let p = reconcile(&s);
    assert_eq!(p.failed_tasks, ["new-2", "old-1"]);
    assert_eq!(
        p.failed,
        HashMap::from([("new".into(), 1), ("old".into(), 1)])
    );
    assert_eq!(p.throttle.failures.len(), 2);
    assert_eq!(
        p.throttle.next_launch,
        Some(s.now + Duration::from_secs(5)),
        "the second failure backs off"
    );
    assert_eq!((p.launch, p.throttled), (0, true));
    assert!(p.events.is_empty(), "two failures: no event yet");
}

#[test]
fn throttling_says_the_service_cannot_start_tasks_once_at_three_failures() {
    let mut s = service(1);
    s.gone = (1..=3)
        .map(|i| gone(&format!("new-{i}"), "new", None))
        .collect();
    let p = reconcile(&s);
    assert_eq!(p.events, [format!("(service web) {UNABLE_EVENT}")]);
    assert!(p.throttle.warned);
    s.throttle = p.throttle;
    s.gone = vec![gone("new-4", "new", None)];
    assert!(reconcile(&s).events.is_empty(), "said once");
}

#[test]
fn a_failed_deployment_launches_no_more_tasks() {
    let mut s = service(2);
    s.primary.rollout_state = RolloutState::Failed;
    assert_eq!(reconcile(&s).launch, 0);
}

#[test]
fn a_task_on_a_draining_instance_is_replaced_first_then_stopped() {
    let mut tasks = running("new", 2);
    tasks[0].on_draining_instance = true;
    let s = service(2).with(tasks);
    let p = reconcile(&s);
    assert_eq!(p.launch, 1);
    assert!(
        p.stops.is_empty(),
        "1 healthy of 2 desired: it stays for now"
    );
    let s = s.with(running("new", 3).into_iter().skip(2));
    assert_eq!(stops(&reconcile(&s)), [("new-1", Why::Retire)]);
}

#[test]
fn a_deleted_service_stops_every_task_then_goes_inactive() {
    let mut s = service(2).with(running("new", 2));
    s.deleted = true;
    s.tasks[1].active = false;
    s.tasks.push(TaskState {
        deployment: None,
        ..task("x-1", "")
    });
    let p = reconcile(&s);
    assert_eq!(stops(&p), [("new-1", Why::Deleted), ("x-1", Why::Deleted)]);
    assert_eq!(
        p.stops[1].reason,
        "Scaling activity initiated by (deployment new)"
    );
    assert_eq!(p.launch, 0);
    assert!(!p.inactive);
    s.tasks.clear();
    assert!(reconcile(&s).inactive);
}

#[test]
fn blue_green_starts_the_whole_green_fleet_beside_blue() {
    let mut s = service(4).percents(100, 100).with(running("old", 4));
    s.blue_green = true;
    s.primary.stage = Some(LifecycleStage::ScaleUp);
    let p = reconcile(&s);
    assert_eq!(p.launch, 4, "maximumPercent does not bound green");
    assert!(p.stops.is_empty());
}

#[test]
fn blue_green_holds_blue_until_clean_up_with_the_traffic_routed() {
    let mut s = service(2).with(running("old", 2)).with(running("new", 2));
    s.blue_green = true;
    for stage in [
        LifecycleStage::ProductionTrafficShift,
        LifecycleStage::BakeTime,
    ] {
        s.primary.stage = Some(stage);
        assert!(reconcile(&s).stops.is_empty(), "{stage:?}");
    }
    s.primary.stage = Some(LifecycleStage::CleanUp);
    let p = reconcile(&s);
    assert_eq!(stops(&p), [("old-1", Why::Retire), ("old-2", Why::Retire)]);
    assert!(
        p.stops.iter().all(|x| x.after_routing),
        "asked once the rules moved: a rule may still send to blue"
    );
    // A rollback made blue PRIMARY and completed: the green tasks all go at once.
    s.primary.stage = Some(LifecycleStage::ProductionTrafficShift);
    s.primary.rollout_state = RolloutState::Completed;
    assert_eq!(stops(&reconcile(&s)).len(), 2);
}

#[test]
fn blue_green_green_is_ready_once_its_tasks_are_healthy_or_unused() {
    let mut s = service(2).with([
        task("new-1", "new").target("healthy"),
        task("new-2", "new").target("initial"),
    ]);
    s.blue_green = true;
    s.load_balanced = true;
    assert!(!reconcile(&s).green_ready);
    s.tasks[1] = task("new-2", "new").target("unused");
    assert!(reconcile(&s).green_ready);
    s.tasks[1] = task("new-2", "new").target("unused").unhealthy();
    assert!(!reconcile(&s).green_ready, "UNHEALTHY in its containers");
}

// The deployments' progress after the tasks' plan ([`progress`]).

use crate::ecs::deployments::Tripped;
use crate::store::{BlueGreenRecord, DeploymentRow, DeploymentStatus, ServiceDeploymentStatus};
use progress::{Alarms, Deployments, Done, Progress, Trip, progress};

fn deployment(id: &str, status: DeploymentStatus) -> DeploymentRow {
    DeploymentRow {
        id: id.into(),
        status,
        rollout_state: RolloutState::InProgress,
        ..Default::default()
    }
}

/// The PRIMARY deployment `new` and, with `old`, an ACTIVE one.
fn rows(old: bool) -> Deployments {
    let mut rows = vec![deployment("new", DeploymentStatus::Primary)];
    if old {
        rows.push(deployment("old", DeploymentStatus::Active));
    }
    Deployments {
        rows,
        ..Default::default()
    }
}

fn row<'a>(p: &'a Progress, id: &str) -> &'a DeploymentRow {
    p.rows.iter().find(|r| r.id == id).unwrap()
}

#[test]
fn an_older_deployment_with_no_task_left_goes_inactive() {
    let s = service(2).with(running("new", 2)).with(running("old", 1));
    let p = progress(&s, &rows(true), &Done::default());
    assert_eq!(row(&p, "old").status, DeploymentStatus::Active);
    assert!(p.completed.is_none(), "an older deployment still has tasks");
    let s = service(2).with(running("new", 2));
    let p = progress(&s, &rows(true), &Done::default());
    assert_eq!(row(&p, "old").status, DeploymentStatus::Inactive);
    assert_eq!(row(&p, "old").updated_at_ms, NOW_MS);
}

#[test]
fn circuit_breaker_counts_the_failures_and_shows_at_least_the_tasks_that_never_ran() {
    let s = service(4).with(running("new", 4));
    let mut d = rows(false);
    d.rows[0].sd.failure_count = 1;
    d.never_ran = HashMap::from([("new".into(), 2)]);
    let done = Done {
        failed: HashMap::from([("new".into(), 1)]),
        ..Done::default()
    };
    let p = progress(&s, &d, &done);
    assert_eq!(row(&p, "new").sd.failure_count, 2);
    assert_eq!(row(&p, "new").failed_tasks, 2);
    d.never_ran.clear();
    d.rows[0].failed_tasks = 2;
    let p = progress(&s, &d, &Done::default());
    assert_eq!(
        row(&p, "new").failed_tasks,
        1,
        "the count seen, nothing else"
    );
    assert_eq!(p.rows[0].updated_at_ms, NOW_MS, "changed: saved");
}

#[test]
fn circuit_breaker_trips_at_its_threshold_with_or_without_rollback() {
    // 4 desired: the threshold is 3 (at least 3).
    let s = service(4).with(running("new", 4));
    let mut d = rows(false);
    d.rows[0].sd.failure_count = 2;
    let one = Done {
        failed: HashMap::from([("new".into(), 1)]),
        ..Done::default()
    };
    d.breaker = Some(true);
    assert!(progress(&s, &d, &Done::default()).trip.is_none(), "2 of 3");
    let p = progress(&s, &d, &one);
    assert_eq!(
        p.trip,
        Some(Trip {
            deployment: "new".into(),
            rollback: true,
            why: Tripped::CircuitBreaker,
        })
    );
    assert!(p.completed.is_none() && p.events.is_empty(), "nothing else");
    d.breaker = Some(false);
    assert!(!progress(&s, &d, &one).trip.unwrap().rollback);
    d.breaker = None;
    assert!(progress(&s, &d, &one).trip.is_none(), "no breaker");
    // A deployment that failed already does not trip again.
    d.breaker = Some(true);
    d.rows[0].rollout_state = RolloutState::Failed;
    assert!(progress(&s, &d, &one).trip.is_none());
}

#[test]
fn deployment_alarms_fail_the_rolling_deployment_and_name_the_missing_ones_once() {
    let s = service(1).with(running("new", 1));
    let mut d = rows(false);
    d.alarms = Some(Alarms {
        rollback: true,
        fired: Vec::new(),
        missing: vec!["gone".into()],
        window_ms: 0,
    });
    let p = progress(&s, &d, &Done::default());
    assert!(p.trip.is_none());
    assert_eq!(
        p.events[0],
        "(service web) deployment alarms not found in CloudWatch, not watched: gone."
    );
    d.missing_said = p.missing_said.clone();
    let p = progress(&s, &d, &Done::default());
    assert!(
        !p.events.iter().any(|e| e.contains("not found")),
        "said once"
    );
    d.alarms.as_mut().unwrap().fired = vec!["cpu".into()];
    let p = progress(&s, &d, &Done::default());
    assert_eq!(
        p.trip,
        Some(Trip {
            deployment: "new".into(),
            rollback: true,
            why: Tripped::Alarms(vec!["cpu".into()]),
        })
    );
    d.rows[0].rollout_state = RolloutState::Completed;
    assert!(
        progress(&s, &d, &Done::default()).trip.is_none(),
        "only while it rolls out"
    );
}

#[test]
fn completion_comes_with_the_steady_state_and_is_said() {
    let s = service(2).with(running("new", 2));
    let p = progress(&s, &rows(false), &Done::default());
    assert_eq!(p.completed.as_deref(), Some("new"));
    assert_eq!(row(&p, "new").rollout_state, RolloutState::Completed);
    assert_eq!(
        row(&p, "new").rollout_state_reason,
        "ECS deployment new completed."
    );
    assert_eq!(
        p.events,
        [
            "(service web) (deployment new) deployment completed.",
            "(service web) has reached a steady state."
        ]
    );
    assert!(p.steady_said && p.steady_now);
    // Said once; a pass that started or stopped a task is not steady.
    let mut d = rows(false);
    d.steady_said = true;
    d.rows[0].rollout_state = RolloutState::Completed;
    assert!(progress(&s, &d, &Done::default()).events.is_empty());
    let changed = Done {
        started: vec!["new-3".into()],
        ..Done::default()
    };
    let p = progress(&s, &d, &changed);
    assert!(!p.steady_said && p.events.is_empty());
}

#[test]
fn completion_waits_for_every_task_to_run_healthy() {
    let mut tasks = running("new", 1);
    tasks.push(task("new-2", "new").pending());
    let p = progress(&service(2).with(tasks), &rows(false), &Done::default());
    assert!(p.completed.is_none() && p.events.is_empty());
    let s = service(2).with([task("new-1", "new"), task("new-2", "new").unhealthy()]);
    assert!(
        progress(&s, &rows(false), &Done::default())
            .completed
            .is_none()
    );
}

#[test]
fn bake_time_with_deployment_alarms_holds_the_completion_from_the_first_steady_state() {
    let s = service(1).with(running("new", 1));
    let mut d = rows(false);
    d.alarms = Some(Alarms {
        window_ms: 60_000,
        ..Alarms::default()
    });
    let p = progress(&s, &d, &Done::default());
    assert!(p.completed.is_none());
    assert_eq!(row(&p, "new").sd.steady_at_ms, Some(NOW_MS));
    d.rows[0].sd.steady_at_ms = Some(NOW_MS - 59_999);
    assert!(progress(&s, &d, &Done::default()).completed.is_none());
    d.rows[0].sd.steady_at_ms = Some(NOW_MS - 60_000);
    assert_eq!(
        progress(&s, &d, &Done::default()).completed.as_deref(),
        Some("new")
    );
}

/// A blue/green service of 2 tasks, green (`new`) in `stage` since `since`, blue (`old`)
/// running beside it.
fn blue_green(stage: LifecycleStage, since: i64) -> (Snapshot, Deployments) {
    let mut s = service(2).with(running("new", 2)).with(running("old", 2));
    s.blue_green = true;
    s.primary.stage = Some(stage);
    let mut d = rows(true);
    d.rows[0].sd.blue_green = Some(BlueGreenRecord {
        stage,
        stage_at_ms: since,
        alternate: true,
        production_permille: 0,
        step_at_ms: since,
    });
    d.steps = vec![1000];
    (s, d)
}

fn routed(green_ready: bool) -> Done {
    Done {
        routed: true,
        green_ready,
        ..Done::default()
    }
}

fn stage(p: &Progress) -> BlueGreenRecord {
    row(p, "new").sd.blue_green.unwrap()
}

#[test]
fn blue_green_moves_one_stage_a_pass_once_the_rules_are_routed() {
    use LifecycleStage as L;
    let (s, d) = blue_green(L::PreScaleUp, 0);
    assert_eq!(
        stage(&progress(&s, &d, &Done::default())).stage,
        L::PreScaleUp,
        "a shift failed: no stage moves"
    );
    let p = progress(&s, &d, &routed(false));
    assert_eq!(stage(&p).stage, L::ScaleUp);
    assert_eq!(stage(&p).stage_at_ms, NOW_MS);
    let (s, d) = blue_green(L::ScaleUp, 0);
    assert_eq!(
        stage(&progress(&s, &d, &routed(false))).stage,
        L::ScaleUp,
        "green not ready"
    );
    assert_eq!(
        stage(&progress(&s, &d, &routed(true))).stage,
        L::PostScaleUp
    );
    let (s, d) = blue_green(L::PostTestTrafficShift, 0);
    let p = progress(&s, &d, &routed(true));
    assert_eq!(
        (stage(&p).stage, stage(&p).production_permille),
        (L::ProductionTrafficShift, 1000)
    );
}

#[test]
fn blue_green_bake_time_is_a_stage_and_completion_comes_at_clean_up() {
    use LifecycleStage as L;
    let (s, mut d) = blue_green(L::BakeTime, NOW_MS - 59_999);
    d.bake_time_ms = 60_000;
    let p = progress(&s, &d, &routed(true));
    assert_eq!(stage(&p).stage, L::BakeTime);
    assert!(p.completed.is_none());
    d.rows[0].sd.blue_green.as_mut().unwrap().stage_at_ms = NOW_MS - 60_000;
    assert_eq!(stage(&progress(&s, &d, &routed(true))).stage, L::CleanUp);
    // At CLEAN_UP, once blue's tasks are gone, green completes.
    let (mut s, mut d) = blue_green(L::CleanUp, 0);
    s.tasks.retain(|t| t.deployment.as_deref() == Some("new"));
    d.rows.truncate(1);
    assert_eq!(
        progress(&s, &d, &routed(true)).completed.as_deref(),
        Some("new")
    );
}

#[test]
fn linear_production_traffic_moves_a_step_after_each_wait() {
    use LifecycleStage as L;
    let (s, mut d) = blue_green(L::ProductionTrafficShift, 0);
    d.steps = vec![300, 600, 900, 1000];
    d.step_wait_ms = 60_000;
    let rec = d.rows[0].sd.blue_green.as_mut().unwrap();
    rec.production_permille = 300;
    rec.step_at_ms = NOW_MS - 59_999;
    assert_eq!(
        stage(&progress(&s, &d, &routed(true))).production_permille,
        300
    );
    d.rows[0].sd.blue_green.as_mut().unwrap().step_at_ms = NOW_MS - 60_000;
    let p = progress(&s, &d, &routed(true));
    assert_eq!(
        (stage(&p).production_permille, stage(&p).step_at_ms),
        (600, NOW_MS)
    );
    // The last step taken, the stage ends the pass after.
    d.rows[0]
        .sd
        .blue_green
        .as_mut()
        .unwrap()
        .production_permille = 1000;
    assert_eq!(
        stage(&progress(&s, &d, &routed(true))).stage,
        L::PostProductionTrafficShift
    );
}

#[test]
fn a_blue_green_rollback_succeeds_once_the_green_tasks_are_gone() {
    // Blue (`new` here) PRIMARY and COMPLETED again; green (`old`) rolling back.
    let s = service(2).with(running("new", 2));
    let mut d = rows(true);
    d.rows[0].rollout_state = RolloutState::Completed;
    d.rows[1].sd.status = Some(ServiceDeploymentStatus::RollbackInProgress);
    d.rows[1].sd.rollback = Some(crate::store::RollbackRecord {
        by: "new".into(),
        ..Default::default()
    });
    let p = progress(&s, &d, &Done::default());
    assert_eq!(row(&p, "old").status, DeploymentStatus::Inactive);
    assert_eq!(
        row(&p, "old").sd.status,
        Some(ServiceDeploymentStatus::RollbackSuccessful)
    );
    assert_eq!(row(&p, "old").sd.finished_at_ms, Some(NOW_MS));
}

#[test]
fn blue_green_listener_rules_follow_the_stage_and_are_pointed_before_any_stop() {
    let mut s = service(2).with(running("new", 2)).with(running("old", 2));
    s.blue_green = true;
    s.routing = Some(Routing {
        production: 250,
        test: 1000,
        side: true,
        pairs: vec![crate::elb::bluegreen::Pair {
            primary: "tg-a".into(),
            alternate: "tg-b".into(),
            production: "prod".into(),
            test: Some("test".into()),
        }],
    });
    let p = reconcile(&s);
    let rule = |r: &RuleMove| (r.rule.clone(), r.blue.clone(), r.green.clone(), r.permille);
    assert_eq!(
        p.rules.iter().map(rule).collect::<Vec<_>>(),
        [
            ("prod".into(), "tg-a".into(), "tg-b".into(), 250),
            ("test".into(), "tg-a".into(), "tg-b".into(), 1000)
        ]
    );
    assert_eq!(
        p.rules[0].said,
        "25.0% of production traffic to (target-group tg-b)"
    );
    assert_eq!(p.rules[1].said, "test traffic to (target-group tg-b)");
    // A rollback: blue (side a) PRIMARY again, all traffic back on it.
    let r = s.routing.as_mut().unwrap();
    (r.production, r.test, r.side) = (1000, 1000, false);
    r.pairs[0].test = None;
    let p = reconcile(&s);
    assert_eq!(p.rules.len(), 1);
    assert_eq!(
        (p.rules[0].green.as_str(), p.rules[0].said.as_str()),
        ("tg-a", "production traffic to (target-group tg-a)")
    );
}

// Load balancing, first in a pass ([`balance`]).

fn lb_task(id: &str) -> LbTask {
    LbTask {
        id: id.into(),
        active: true,
        running: true,
        ..Default::default()
    }
}

fn lb_view(tasks: impl IntoIterator<Item = LbTask>) -> LbView {
    LbView {
        now: Instant::now(),
        load_balanced: true,
        tasks: tasks.into_iter().collect(),
        registered_gone: Vec::new(),
    }
}

#[test]
fn load_balancing_registers_running_healthy_tasks_not_registered_yet() {
    let v = lb_view([
        lb_task("a"),
        LbTask {
            registered: true,
            ..lb_task("b")
        },
        LbTask {
            running: false,
            ..lb_task("c")
        },
        LbTask {
            unhealthy: true,
            ..lb_task("d")
        },
        LbTask {
            active: false,
            ..lb_task("e")
        },
    ]);
    assert_eq!(balance(&v).register, ["a"]);
    let v = LbView {
        load_balanced: false,
        ..v
    };
    assert!(balance(&v).register.is_empty(), "no load balancers");
}

#[test]
fn load_balancing_deregisters_the_registered_tasks_gone_since_the_last_pass() {
    let mut v = lb_view([]);
    v.registered_gone = vec!["x".into()];
    assert_eq!(balance(&v).deregister, ["x"]);
}

#[test]
fn load_balancing_drains_then_stops_after_the_deregistration_delay() {
    let now = Instant::now();
    let draining = |until| LbTask {
        draining: Some((
            until,
            "Scaling activity initiated by (deployment old)".into(),
        )),
        registered: false,
        ..lb_task("a")
    };
    let mut v = lb_view([draining(now + Duration::from_secs(1))]);
    v.now = now;
    let p = balance(&v);
    assert_eq!(p.stopping, ["a"], "it counts as stopping while it drains");
    assert!(p.drained.is_empty() && p.register.is_empty());
    v.tasks = vec![draining(now)];
    assert_eq!(
        balance(&v).drained,
        [(
            "a".to_string(),
            "Scaling activity initiated by (deployment old)".to_string()
        )]
    );
    // A task whose stop was asked counts as stopping and is not registered again.
    v.tasks = vec![LbTask {
        stop_asked: true,
        ..lb_task("b")
    }];
    let p = balance(&v);
    assert_eq!(
        (p.stopping.as_slice(), p.register.len()),
        (&["b".to_string()][..], 0)
    );
}

#[test]
fn canary_production_traffic_takes_its_share_then_the_rest() {
    use LifecycleStage as L;
    let (s, mut d) = blue_green(L::PostTestTrafficShift, 0);
    d.steps = vec![50, 1000];
    d.step_wait_ms = 600_000;
    let p = progress(&s, &d, &routed(true));
    assert_eq!(
        (stage(&p).stage, stage(&p).production_permille),
        (L::ProductionTrafficShift, 50)
    );
    d.rows = p.rows;
    d.rows[0].sd.blue_green.as_mut().unwrap().step_at_ms = NOW_MS - 599_999;
    assert_eq!(
        stage(&progress(&s, &d, &routed(true))).production_permille,
        50
    );
    d.rows[0].sd.blue_green.as_mut().unwrap().step_at_ms = NOW_MS - 600_000;
    assert_eq!(
        stage(&progress(&s, &d, &routed(true))).production_permille,
        1000
    );
}
