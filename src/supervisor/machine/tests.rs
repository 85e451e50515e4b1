//! The rules, case by case: slots built with a few words, events fed at a time in
//! seconds, the actions that come out asserted. The driver answers every `Start` and
//! `Restart` with `Started` (as the executor does once the container runs) unless the
//! case says the start fails.

use super::*;
use Action::*;
use ContainerCondition::{Complete, Healthy, Start as Started_, Success};

const ESSENTIAL: &str = "Essential container in task exited";

fn slot(name: &str) -> Slot {
    Slot::new(name)
}

impl Slot {
    fn optional(mut self) -> Slot {
        self.essential = false;
        self
    }
    fn after(mut self, dep: usize, condition: ContainerCondition) -> Slot {
        self.depends_on.push((dep, condition));
        self
    }
    fn checked(mut self) -> Slot {
        self.has_health_check = true;
        self
    }
    fn start_timeout(mut self, s: u64) -> Slot {
        self.start_timeout = Some(Duration::from_secs(s));
        self
    }
    fn stop_timeout(mut self, s: u64) -> Slot {
        self.stop_timeout = Duration::from_secs(s);
        self
    }
    fn restarts(mut self, ignored: &[i64], period: u64) -> Slot {
        self.restart = Some(RestartRule {
            ignored_exit_codes: ignored.to_vec(),
            attempt_period: Duration::from_secs(period),
        });
        self
    }
}

/// A machine, the time, and the starts that are to fail.
struct T {
    m: Machine,
    now: Duration,
    failing: Vec<(usize, String)>,
}

impl T {
    fn new(slots: Vec<Slot>) -> T {
        T {
            m: Machine::new(slots),
            now: Duration::ZERO,
            failing: Vec::new(),
        }
    }

    /// Provisioned at 0 s; the actions that follow.
    fn run(slots: Vec<Slot>) -> (T, Vec<Action>) {
        let mut t = T::new(slots);
        let a = t.ev(Event::Provisioned);
        (t, a)
    }

    fn at(&mut self, secs: u64) -> &mut T {
        self.now = Duration::from_secs(secs);
        self
    }

    fn at_ms(&mut self, ms: u64) -> &mut T {
        self.now = Duration::from_millis(ms);
        self
    }

    fn fail_start(&mut self, idx: usize, reason: &str) -> &mut T {
        self.failing.push((idx, reason.into()));
        self
    }

    /// Feeds `e`, then polls until nothing is left to do now.
    fn ev(&mut self, e: Event) -> Vec<Action> {
        self.m.handle(self.now, e);
        self.poll()
    }

    fn poll(&mut self) -> Vec<Action> {
        let mut out = Vec::new();
        while let Some(a) = self.m.poll(self.now) {
            if let Start(idx) | Restart(idx) = a {
                let answer = match self.failing.iter().position(|f| f.0 == idx) {
                    Some(p) => Event::StartFailed {
                        idx,
                        reason: self.failing.remove(p).1,
                    },
                    None => Event::Started { idx },
                };
                self.m.handle(self.now, answer);
            }
            out.push(a);
            assert!(out.len() < 100, "runaway: {out:?}");
        }
        out
    }

    fn exit(&mut self, idx: usize, code: i32) -> Vec<Action> {
        self.ev(Event::Exited {
            idx,
            code: Some(code),
        })
    }

    fn health(&mut self, idx: usize, healthy: bool) -> Vec<Action> {
        self.ev(Event::Health { idx, healthy })
    }

    fn stop(&mut self, force: bool) -> Vec<Action> {
        self.ev(Event::StopRequested {
            code: StopCode::UserInitiated,
            reason: "Task stopped by user".into(),
            force,
        })
    }
}

fn stop_task(code: StopCode, reason: &str) -> Action {
    StopTask {
        code,
        reason: reason.into(),
    }
}

fn fail(idx: usize, reason: &str) -> Action {
    Fail {
        idx,
        reason: reason.into(),
    }
}

fn never(dep: &str, target: &str, what: &str) -> String {
    format!("dependency graph: container ordering dependency [{dep}] for target [{target}] {what}")
}

fn essential_exited() -> Action {
    stop_task(StopCode::EssentialContainerExited, ESSENTIAL)
}

// --- starting ---------------------------------------------------------------------------

#[test]
fn nothing_starts_before_provisioning() {
    let mut t = T::new(vec![slot("app")]);
    assert_eq!(t.poll(), []);
    assert_eq!(t.m.wakeup(t.now), None);
}

#[test]
fn independent_containers_start_in_definition_order() {
    let (t, a) = T::run(vec![slot("a"), slot("b")]);
    assert_eq!(a, [Start(0), Start(1), TaskRunning]);
    assert_eq!(t.m.phase(), Phase::Running);
}

#[test]
fn dependencies_start_first() {
    // 0 depends on 2, 1 on 0.
    let (_, a) = T::run(vec![
        slot("app").after(2, Started_),
        slot("sidecar").after(0, Started_),
        slot("init"),
    ]);
    assert_eq!(a, [Start(2), Start(0), Start(1), TaskRunning]);
}

#[test]
fn start_order_with_a_cycle_falls_back_to_definition_order() {
    assert_eq!(start_order(&[vec![2], vec![0], vec![]]), [2, 0, 1]);
    assert_eq!(start_order(&[vec![1], vec![0]]), [0, 1]);
}

// --- dependsOn START ----------------------------------------------------------------------

#[test]
fn start_condition_is_met_once_the_dependency_runs() {
    let (_, a) = T::run(vec![slot("db"), slot("app").after(0, Started_)]);
    assert_eq!(a, [Start(0), Start(1), TaskRunning]);
}

#[test]
fn start_condition_never_met_when_the_dependency_fails_to_start() {
    let mut t = T::new(vec![slot("db").optional(), slot("app").after(0, Started_)]);
    t.fail_start(0, "CannotStartContainerError: boom");
    let a = t.ev(Event::Provisioned);
    let why = never("db", "app", "will never start");
    assert_eq!(
        a,
        [
            Start(0),
            fail(0, "CannotStartContainerError: boom"),
            fail(1, &why),
            stop_task(StopCode::TaskFailedToStart, &why),
            BeginStop,
            Done,
        ]
    );
}

// --- dependsOn COMPLETE -------------------------------------------------------------------

#[test]
fn complete_waits_for_any_exit() {
    let (mut t, a) = T::run(vec![
        slot("init").optional(),
        slot("app").after(0, Complete),
    ]);
    assert_eq!(a, [Start(0)]);
    assert_eq!(t.m.waiting_for(1, t.now), [0]);
    assert_eq!(t.m.wakeup(t.now), Some(DEPENDENCY_POLL));
    assert_eq!(t.at(1).exit(0, 7), [Exited(0), Start(1), TaskRunning]);
}

#[test]
fn complete_not_yet_met_while_the_dependency_runs() {
    let (mut t, _) = T::run(vec![
        slot("init").optional(),
        slot("app").after(0, Complete),
    ]);
    assert_eq!(t.at(60).poll(), []);
    assert_eq!(t.m.status(1), Status::Pending);
}

// --- dependsOn SUCCESS --------------------------------------------------------------------

#[test]
fn success_is_met_by_exit_code_zero() {
    let (mut t, _) = T::run(vec![slot("init").optional(), slot("app").after(0, Success)]);
    assert_eq!(t.exit(0, 0), [Exited(0), Start(1), TaskRunning]);
}

#[test]
fn success_never_met_by_a_non_zero_exit() {
    let (mut t, _) = T::run(vec![slot("init").optional(), slot("app").after(0, Success)]);
    let why = never("init", "app", "did not exit successfully.");
    assert_eq!(
        t.exit(0, 1),
        [
            Exited(0),
            fail(1, &why),
            stop_task(StopCode::TaskFailedToStart, &why),
            BeginStop,
            Done,
        ]
    );
}

#[test]
fn a_non_essential_dependent_that_never_starts_does_not_stop_the_task() {
    let (mut t, _) = T::run(vec![
        slot("init").optional(),
        slot("extra").optional().after(0, Success),
        slot("app"),
    ]);
    let why = never("init", "extra", "did not exit successfully.");
    assert_eq!(t.exit(0, 3), [Exited(0), fail(1, &why), TaskRunning]);
    assert!(!t.m.stopping());
}

// --- dependsOn HEALTHY --------------------------------------------------------------------

#[test]
fn healthy_waits_for_the_health_check() {
    let (mut t, a) = T::run(vec![slot("db").checked(), slot("app").after(0, Healthy)]);
    assert_eq!(a, [Start(0)]);
    assert_eq!(t.at(5).health(0, true), [Start(1), TaskRunning]);
}

#[test]
fn healthy_never_met_without_a_health_check() {
    let (_, a) = T::run(vec![slot("db"), slot("app").after(0, Healthy)]);
    let why = never(
        "db",
        "app",
        "will never become HEALTHY: it has no healthCheck.",
    );
    assert_eq!(
        a,
        [
            Start(0),
            fail(1, &why),
            stop_task(StopCode::TaskFailedToStart, &why),
            BeginStop,
            Term(0),
        ]
    );
}

#[test]
fn healthy_never_met_when_the_dependency_exits_first() {
    let (mut t, _) = T::run(vec![
        slot("db").checked().optional(),
        slot("app").after(0, Healthy),
    ]);
    let why = never("db", "app", "exited before it became HEALTHY.");
    assert_eq!(
        t.exit(0, 0),
        [
            Exited(0),
            fail(1, &why),
            stop_task(StopCode::TaskFailedToStart, &why),
            BeginStop,
            Done,
        ]
    );
}

#[test]
fn unhealthy_dependency_keeps_its_dependent_waiting_until_start_timeout() {
    // As the executor always did: UNHEALTHY is "not HEALTHY yet" (see the report).
    let (mut t, _) = T::run(vec![
        slot("db").checked().start_timeout(10),
        slot("app").after(0, Healthy),
    ]);
    assert_eq!(t.at(2).health(0, false), []);
    assert_eq!(t.m.waiting_for(1, t.now), [0]);
    let why = never("db", "app", "has timed out.");
    assert_eq!(
        t.at(10).poll(),
        [
            fail(1, &why),
            stop_task(StopCode::TaskFailedToStart, &why),
            BeginStop,
            Term(0)
        ]
    );
}

#[test]
fn health_of_a_container_that_is_not_running_is_ignored() {
    let (mut t, _) = T::run(vec![slot("db").checked().optional(), slot("app")]);
    t.exit(0, 0);
    assert_eq!(t.health(0, true), []);
    assert!(!t.m.healthy[0]);
}

#[test]
fn a_restart_makes_the_dependency_unhealthy_again() {
    let (mut t, _) = T::run(vec![
        slot("db").checked().restarts(&[], 0),
        slot("app").after(0, Complete),
    ]);
    t.health(0, true);
    assert_eq!(t.exit(0, 1), [Restart(0)]);
    assert!(!t.m.healthy[0]);
}

// --- startTimeout -------------------------------------------------------------------------

#[test]
fn start_timeout_counts_from_the_dependency_start() {
    let (mut t, _) = T::run(vec![
        slot("init").optional().start_timeout(5),
        slot("app").after(0, Complete),
    ]);
    assert_eq!(t.at_ms(4_900).poll(), []);
    let why = never("init", "app", "has timed out.");
    assert_eq!(
        t.at(5).poll(),
        [
            fail(1, &why),
            stop_task(StopCode::TaskFailedToStart, &why),
            BeginStop,
            Term(0)
        ]
    );
}

#[test]
fn start_timeout_of_a_pending_dependency_counts_from_provisioning() {
    // init waits (COMPLETE of pre), app waits for init to START: init's startTimeout of
    // 3 s gives up on it from the task's containers being allowed to start.
    let mut t = T::new(vec![
        slot("pre").optional(),
        slot("init").optional().after(0, Complete).start_timeout(3),
        slot("app").after(1, Started_),
    ]);
    t.at(100);
    assert_eq!(t.ev(Event::Provisioned), [Start(0)]);
    assert_eq!(t.at(102).poll(), []);
    let why = never("init", "app", "has timed out.");
    assert_eq!(
        t.at(103).poll(),
        [
            fail(2, &why),
            stop_task(StopCode::TaskFailedToStart, &why),
            BeginStop,
            Term(0)
        ]
    );
}

#[test]
fn without_start_timeout_the_dependent_waits_forever() {
    let (mut t, _) = T::run(vec![
        slot("init").optional(),
        slot("app").after(0, Complete),
    ]);
    assert_eq!(t.at(86_400).poll(), []);
    assert_eq!(t.m.wakeup(t.now), Some(DEPENDENCY_POLL));
}

#[test]
fn a_met_dependency_does_not_time_out() {
    let (mut t, _) = T::run(vec![
        slot("init").optional().start_timeout(1),
        slot("app").after(0, Started_),
    ]);
    assert_eq!(
        t.m.status(1),
        Status::Running {
            since: Duration::ZERO
        }
    );
    assert_eq!(t.at(10).poll(), []);
}

// --- start failures -----------------------------------------------------------------------

#[test]
fn an_essential_start_failure_fails_the_task_to_start() {
    let mut t = T::new(vec![slot("app")]);
    t.fail_start(0, "CannotStartContainerError: no");
    assert_eq!(
        t.ev(Event::Provisioned),
        [
            Start(0),
            fail(0, "CannotStartContainerError: no"),
            stop_task(StopCode::TaskFailedToStart, "CannotStartContainerError: no"),
            BeginStop,
            Done,
        ]
    );
}

#[test]
fn a_non_essential_start_failure_leaves_the_task_running() {
    let mut t = T::new(vec![slot("extra").optional(), slot("app")]);
    t.fail_start(0, "CannotCreateContainerError: x");
    assert_eq!(
        t.ev(Event::Provisioned),
        [
            Start(0),
            fail(0, "CannotCreateContainerError: x"),
            Start(1),
            TaskRunning
        ]
    );
}

#[test]
fn provisioning_failure_fails_every_container() {
    let mut t = T::new(vec![slot("a"), slot("b").optional()]);
    let r = "ResourceInitializationError: no network";
    assert_eq!(
        t.ev(Event::ProvisionFailed { reason: r.into() }),
        [
            fail(0, r),
            fail(1, r),
            stop_task(StopCode::TaskFailedToStart, r),
            BeginStop,
            Done,
        ]
    );
}

#[test]
fn a_container_failing_during_provisioning() {
    // A pull failure of a non-essential container: the executor then stops the task.
    let mut t = T::new(vec![slot("a").optional(), slot("b")]);
    assert_eq!(
        t.ev(Event::StartFailed {
            idx: 0,
            reason: "CannotPullContainerError: x".into()
        }),
        [fail(0, "CannotPullContainerError: x")]
    );
    assert_eq!(
        t.ev(Event::StopRequested {
            code: StopCode::TaskFailedToStart,
            reason: "CannotPullContainerError: x".into(),
            force: false
        }),
        [
            stop_task(StopCode::TaskFailedToStart, "CannotPullContainerError: x"),
            BeginStop,
            NeverRan(1),
            Done
        ]
    );
}

#[test]
fn an_essential_failure_after_running_is_an_essential_exit() {
    let (mut t, _) = T::run(vec![slot("app").restarts(&[], 0)]);
    t.fail_start(0, "CannotStartContainerError: gone");
    assert_eq!(
        t.exit(0, 1),
        [
            Restart(0),
            fail(0, "CannotStartContainerError: gone"),
            stop_task(
                StopCode::EssentialContainerExited,
                "CannotStartContainerError: gone"
            ),
            BeginStop,
            Done,
        ]
    );
}

// --- exits --------------------------------------------------------------------------------

#[test]
fn essential_exit_stops_the_task() {
    let (mut t, _) = T::run(vec![slot("app"), slot("side")]);
    assert_eq!(
        t.at(3).exit(0, 0),
        [Exited(0), essential_exited(), BeginStop, Term(1)]
    );
}

#[test]
fn non_essential_exit_keeps_the_task_running() {
    let (mut t, _) = T::run(vec![slot("job").optional(), slot("app")]);
    assert_eq!(t.exit(0, 1), [Exited(0)]);
    assert!(!t.m.stopping());
}

#[test]
fn last_non_essential_exit_stops_the_task() {
    let (mut t, _) = T::run(vec![slot("a").optional(), slot("b").optional()]);
    assert_eq!(t.exit(0, 0), [Exited(0)]);
    assert_eq!(
        t.exit(1, 0),
        [Exited(1), essential_exited(), BeginStop, Done]
    );
}

#[test]
fn exit_with_unknown_status_counts_as_255() {
    let (mut t, _) = T::run(vec![slot("a").optional().restarts(&[], 0), slot("b")]);
    assert_eq!(t.ev(Event::Exited { idx: 0, code: None }), [Exited(0)]);
    assert_eq!(t.m.status(0), Status::Exited { code: 255 });
}

#[test]
fn exit_of_a_container_that_is_not_running_is_ignored() {
    let (mut t, _) = T::run(vec![slot("a").optional(), slot("b")]);
    t.exit(0, 0);
    assert_eq!(t.exit(0, 0), []);
}

// --- restartPolicy ------------------------------------------------------------------------

#[test]
fn restart_after_the_attempt_period() {
    let (mut t, _) = T::run(vec![slot("app").restarts(&[], 60)]);
    assert_eq!(t.at(60).exit(0, 1), [Restart(0)]);
    assert_eq!(t.m.restart_count(0), 1);
    assert_eq!(t.m.status(0), Status::Running { since: t.now });
}

#[test]
fn no_restart_within_the_attempt_period_of_the_last_start() {
    let (mut t, _) = T::run(vec![slot("app").restarts(&[], 60)]);
    t.at(60).exit(0, 1);
    // Restarted at 60 s: 59 s later is too soon.
    assert_eq!(
        t.at(119).exit(0, 1),
        [Exited(0), essential_exited(), BeginStop, Done]
    );
    assert_eq!(t.m.restart_count(0), 1);
    let m = Machine::new(vec![slot("app").restarts(&[], 60)]);
    assert_eq!(
        m.restart_decision(0, Some(1), Duration::from_secs(59)),
        Err(NoRestart::TooSoon)
    );
}

#[test]
fn exit_code_zero_restarts_too_unless_ignored() {
    let (mut t, _) = T::run(vec![slot("app").restarts(&[], 0)]);
    assert_eq!(t.exit(0, 0), [Restart(0)]);
}

#[test]
fn ignored_exit_codes_are_not_restarted() {
    let (mut t, _) = T::run(vec![slot("app").restarts(&[0, 3], 0)]);
    assert_eq!(
        t.exit(0, 3),
        [Exited(0), essential_exited(), BeginStop, Done]
    );
    assert_eq!(t.m.restart_count(0), 0);
}

#[test]
fn restarts_are_counted() {
    let (mut t, _) = T::run(vec![slot("app").restarts(&[], 0)]);
    for n in 1..=5 {
        assert_eq!(t.exit(0, 1), [Restart(0)]);
        assert_eq!(t.m.restart_count(0), n);
    }
}

#[test]
fn no_restart_while_the_task_stops() {
    let (mut t, _) = T::run(vec![slot("app").restarts(&[], 0)]);
    assert_eq!(
        t.stop(false),
        [
            stop_task(StopCode::UserInitiated, "Task stopped by user"),
            BeginStop,
            Term(0)
        ]
    );
    assert_eq!(t.exit(0, 143), [Exited(0), Stopped(0), Done]);
}

#[test]
fn no_restart_without_a_status() {
    let m = Machine::new(vec![slot("app").restarts(&[], 0)]);
    assert_eq!(
        m.restart_decision(0, None, Duration::from_secs(1)),
        Err(NoRestart::NoStatus)
    );
    let m = Machine::new(vec![slot("app")]);
    assert_eq!(
        m.restart_decision(0, Some(1), Duration::from_secs(999)),
        Err(NoRestart::Disabled)
    );
}

#[test]
fn restart_policy_from_the_task_definition() {
    let p = |json: &str| serde_json::from_str::<RestartPolicy>(json).unwrap();
    assert_eq!(RestartRule::from_policy(None, None), None);
    assert_eq!(
        RestartRule::from_policy(Some(&p(r#"{"enabled":false}"#)), None),
        None
    );
    assert_eq!(
        RestartRule::from_policy(
            Some(&p(r#"{"enabled":true,"ignoredExitCodes":[0,3]}"#)),
            None
        ),
        Some(RestartRule {
            ignored_exit_codes: vec![0, 3],
            attempt_period: DEFAULT_ATTEMPT_PERIOD
        })
    );
    let sixty = p(r#"{"enabled":true,"restartAttemptPeriod":60}"#);
    assert_eq!(
        RestartRule::from_policy(Some(&sixty), None)
            .unwrap()
            .attempt_period,
        Duration::from_secs(60)
    );
    assert_eq!(
        RestartRule::from_policy(Some(&sixty), Some(Duration::ZERO))
            .unwrap()
            .attempt_period,
        Duration::ZERO
    );
}

#[test]
fn a_restarted_non_essential_container_keeps_the_task() {
    let (mut t, _) = T::run(vec![slot("side").optional().restarts(&[], 0), slot("app")]);
    assert_eq!(t.exit(0, 2), [Restart(0)]);
    assert!(!t.m.stopping());
}

// --- stopping -----------------------------------------------------------------------------

#[test]
fn user_stop_terms_dependents_first() {
    let (mut t, _) = T::run(vec![
        slot("app").after(1, Started_),
        slot("db"),
        slot("web").after(0, Started_),
    ]);
    assert_eq!(t.m.order(), [1, 0, 2]);
    assert_eq!(
        t.stop(false),
        [
            stop_task(StopCode::UserInitiated, "Task stopped by user"),
            BeginStop,
            Term(2)
        ]
    );
    assert_eq!(t.exit(2, 143), [Exited(2), Stopped(2), Term(0)]);
    assert_eq!(t.exit(0, 143), [Exited(0), Stopped(0), Term(1)]);
    assert_eq!(t.exit(1, 0), [Exited(1), Stopped(1), Done]);
    assert_eq!(t.m.phase(), Phase::Done);
}

#[test]
fn stop_timeout_then_sigkill() {
    let (mut t, _) = T::run(vec![slot("app").stop_timeout(5)]);
    t.at(10).stop(false);
    assert_eq!(t.m.wakeup(t.now), Some(Duration::from_secs(5)));
    assert_eq!(t.at(14).poll(), []);
    assert_eq!(t.at(15).poll(), [Kill(0)]);
    assert_eq!(t.exit(0, 137), [Exited(0), Stopped(0), Done]);
}

#[test]
fn default_stop_timeout_is_30_seconds() {
    let (mut t, _) = T::run(vec![slot("app")]);
    t.stop(false);
    assert_eq!(t.at(29).poll(), []);
    assert_eq!(t.at(30).poll(), [Kill(0)]);
}

#[test]
fn a_container_that_survives_sigkill_is_abandoned() {
    let (mut t, _) = T::run(vec![slot("a"), slot("b").stop_timeout(0)]);
    assert_eq!(
        t.stop(false),
        [
            stop_task(StopCode::UserInitiated, "Task stopped by user"),
            BeginStop,
            Term(1),
            Kill(1)
        ]
    );
    assert_eq!(t.m.wakeup(t.now), Some(KILL_GRACE));
    assert_eq!(t.at(10).poll(), [Abandon(1), Stopped(1), Term(0)]);
}

#[test]
fn forced_stop_kills_without_sigterm() {
    let (mut t, _) = T::run(vec![slot("a"), slot("b")]);
    assert_eq!(
        t.stop(true),
        [
            stop_task(StopCode::UserInitiated, "Task stopped by user"),
            BeginStop,
            Kill(1)
        ]
    );
    assert_eq!(t.exit(1, 137), [Exited(1), Stopped(1), Kill(0)]);
}

#[test]
fn forced_stop_during_a_stop_hurries_that_container() {
    let (mut t, _) = T::run(vec![slot("a"), slot("b")]);
    t.stop(false);
    assert_eq!(t.at(1).stop(true), [Kill(1)]);
    // As the executor always did: the next container still gets SIGTERM.
    assert_eq!(t.exit(1, 137), [Exited(1), Stopped(1), Term(0)]);
}

#[test]
fn first_stop_reason_wins() {
    let (mut t, _) = T::run(vec![slot("app"), slot("b")]);
    t.exit(0, 1);
    assert_eq!(t.stop(false), []);
    assert_eq!(
        t.m.stop_reason(),
        Some(&(StopCode::EssentialContainerExited, ESSENTIAL.to_string()))
    );
}

#[test]
fn stop_while_dependents_wait_marks_them_never_ran() {
    let (mut t, _) = T::run(vec![slot("init").optional(), slot("app").after(0, Success)]);
    assert_eq!(
        t.stop(false),
        [
            stop_task(StopCode::UserInitiated, "Task stopped by user"),
            BeginStop,
            Term(0)
        ]
    );
    assert_eq!(t.exit(0, 0), [Exited(0), Stopped(0), NeverRan(1), Done]);
}

#[test]
fn stop_during_provisioning() {
    let mut t = T::new(vec![slot("a"), slot("b")]);
    assert_eq!(
        t.stop(false),
        [
            stop_task(StopCode::UserInitiated, "Task stopped by user"),
            BeginStop,
            NeverRan(0),
            NeverRan(1),
            Done
        ]
    );
    // Provisioned afterwards: nothing starts.
    assert_eq!(t.ev(Event::Provisioned), []);
}

#[test]
fn exits_of_other_containers_during_the_stop_are_recorded() {
    let (mut t, _) = T::run(vec![slot("a"), slot("b")]);
    t.stop(false);
    assert_eq!(t.exit(0, 0), [Exited(0)]);
    assert_eq!(t.exit(1, 0), [Exited(1), Stopped(1), Done]);
}

#[test]
fn a_stopped_task_is_done_for_good() {
    let (mut t, _) = T::run(vec![slot("a")]);
    t.exit(0, 0);
    assert_eq!(t.m.phase(), Phase::Done);
    assert_eq!(t.stop(true), []);
    assert_eq!(t.at(1000).poll(), []);
}

// --- more than one dependency -------------------------------------------------------------

#[test]
fn every_dependency_must_be_met() {
    let (mut t, a) = T::run(vec![
        slot("a").optional(),
        slot("b").optional(),
        slot("app").after(0, Complete).after(1, Success),
    ]);
    assert_eq!(a, [Start(0), Start(1)]);
    assert_eq!(t.exit(0, 0), [Exited(0)]);
    assert_eq!(t.m.waiting_for(2, t.now), [1]);
    assert_eq!(t.exit(1, 0), [Exited(1), Start(2), TaskRunning]);
}

#[test]
fn one_dependency_that_never_will_fails_the_dependent_at_once() {
    let (mut t, _) = T::run(vec![
        slot("a").optional(),
        slot("b").optional(),
        slot("app").after(0, Complete).after(1, Success),
    ]);
    // a still runs, b failed: app will never start.
    let why = never("b", "app", "did not exit successfully.");
    assert_eq!(
        t.exit(1, 2),
        [
            Exited(1),
            fail(2, &why),
            stop_task(StopCode::TaskFailedToStart, &why),
            BeginStop,
            Term(0)
        ]
    );
}

#[test]
fn task_running_is_reported_once() {
    let (mut t, a) = T::run(vec![slot("side").optional().restarts(&[], 0), slot("app")]);
    assert_eq!(a, [Start(0), Start(1), TaskRunning]);
    assert_eq!(t.exit(0, 1), [Restart(0)]);
    assert_eq!(t.at(5).poll(), []);
}

#[test]
fn an_essential_exit_while_a_dependent_waits_leaves_it_never_ran() {
    let (mut t, _) = T::run(vec![slot("db"), slot("app").after(0, Complete).optional()]);
    assert_eq!(
        t.exit(0, 0),
        [Exited(0), essential_exited(), BeginStop, NeverRan(1), Done]
    );
}
