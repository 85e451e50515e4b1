//! ECS's service throttling as the reconciler applies it: a task of the service that stopped
//! on its own is a failure; launches back off after repeated failures, and the service says
//! it "is unable to consistently start tasks" once they pile up.

use crate::store::StopCode;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Failed tasks older than this no longer slow down launches.
pub const THROTTLE_WINDOW: Duration = Duration::from_secs(15 * 60);
pub const THROTTLE_BASE: Duration = Duration::from_secs(5);
pub const THROTTLE_MAX: Duration = Duration::from_secs(15 * 60);
/// Failures in the window after which the service gets ECS's "unable to consistently
/// start tasks" event.
pub const THROTTLE_WARN_AT: usize = 3;

/// The service event (after "(service NAME) ") when its tasks keep failing (ECS's words).
pub const UNABLE_EVENT: &str = "is unable to consistently start tasks successfully. For more \
     information, see the Troubleshooting section of the Amazon ECS Developer Guide.";

/// The failures a service has had lately, and when it may launch again (kept by the
/// scheduler between passes, not stored: after a restart of `serve` throttling starts
/// afresh).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Throttle {
    pub failures: VecDeque<Instant>,
    /// Launches wait until then.
    pub next_launch: Option<Instant>,
    /// The "unable to consistently start tasks" event was written since the last steady
    /// state.
    pub warned: bool,
}

impl Throttle {
    /// Records a failed task; returns how many failures the window holds. The next launch
    /// waits 0 s after one failure, then 5 s, 10 s, 20 s … up to 15 minutes.
    pub fn failed(&mut self, now: Instant) -> usize {
        self.failures.push_back(now);
        while self
            .failures
            .front()
            .is_some_and(|t| now.duration_since(*t) > THROTTLE_WINDOW)
        {
            self.failures.pop_front();
        }
        let n = self.failures.len();
        let delay = if n <= 1 {
            Duration::ZERO
        } else {
            THROTTLE_BASE
                .saturating_mul(1 << (n - 2).min(20))
                .min(THROTTLE_MAX)
        };
        self.next_launch = Some(now + delay);
        n
    }

    /// A rollback started: its tasks start at once, not after the failed ones' backoff.
    pub fn forget(&mut self) {
        self.failures.clear();
        self.next_launch = None;
    }

    /// Whether a launch waits at `now`.
    pub fn holds(&self, now: Instant) -> bool {
        self.next_launch.is_some_and(|t| now < t)
    }
}

/// A task of the service seen not STOPPED at the last pass and gone from its live tasks
/// now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gone {
    pub id: String,
    /// `startedBy`: its deployment.
    pub deployment: Option<String>,
    /// Its lastStatus is STOPPED (false: a row not STOPPED yet, or moved on).
    pub stopped: bool,
    pub stop_code: Option<StopCode>,
}

impl Gone {
    /// A task stopped on its own (an essential container exited, it failed to start, its
    /// supervisor died) failed; one stopped by the scheduler, by a user, or because its
    /// host went away (a lost container instance in cluster mode) did not, and its
    /// replacement is not throttled.
    pub fn failed(&self) -> bool {
        let by_us_or_user = matches!(
            self.stop_code,
            Some(
                StopCode::ServiceSchedulerInitiated
                    | StopCode::UserInitiated
                    | StopCode::TerminationNotice
            )
        );
        self.stopped && !by_us_or_user
    }
}
