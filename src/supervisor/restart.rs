//! Container `restartPolicy`: whether a container that exited is restarted in place (same
//! rootfs, same network namespace) instead of taking the normal exit path.
//!
//! Ref: ecs.json `ContainerRestartPolicy` and the ECS developer guide "Restart individual
//! containers in Amazon ECS tasks with container restart policies": no restart when the
//! task is stopping, when the exit code is in `ignoredExitCodes`, or when the container ran
//! less than `restartAttemptPeriod` (default 300 s) since it last started; a container is
//! restarted at most once per period.

use crate::taskdef::model::RestartPolicy;
use std::time::Duration;

/// ECS default `restartAttemptPeriod`.
pub const DEFAULT_ATTEMPT_PERIOD: Duration = Duration::from_secs(300);

/// The restart state of one container.
#[derive(Debug, Clone, Default)]
pub struct Tracker {
    enabled: bool,
    ignored: Vec<i64>,
    period: Duration,
    /// Restarts so far (TMDS v4 `RestartCount`).
    pub count: u32,
}

/// Why a container is not restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoRestart {
    Disabled,
    Stopping,
    Ignored,
    TooSoon,
}

impl Tracker {
    pub fn new(policy: Option<&RestartPolicy>, period_override: Option<Duration>) -> Tracker {
        let Some(p) = policy.filter(|p| p.enabled == Some(true)) else {
            return Tracker::default();
        };
        Tracker {
            enabled: true,
            ignored: p.ignored_exit_codes.clone().unwrap_or_default(),
            period: period_override.unwrap_or_else(|| {
                p.restart_attempt_period
                    .map(|s| Duration::from_secs(s.max(0) as u64))
                    .unwrap_or(DEFAULT_ATTEMPT_PERIOD)
            }),
            count: 0,
        }
    }

    /// Whether a container that exited with `code` after running `ran` since its last
    /// (re)start is restarted.
    pub fn decide(&self, code: i32, ran: Duration, stopping: bool) -> Result<(), NoRestart> {
        if !self.enabled {
            return Err(NoRestart::Disabled);
        }
        if stopping {
            return Err(NoRestart::Stopping);
        }
        if self.ignored.contains(&i64::from(code)) {
            return Err(NoRestart::Ignored);
        }
        if ran < self.period {
            return Err(NoRestart::TooSoon);
        }
        Ok(())
    }
}

/// `MINIFARGATE_RESTART_ATTEMPT_PERIOD` (seconds, any value; src/config.rs): replaces every
/// container's `restartAttemptPeriod`. For tests and demos: ECS's minimum of 60 s makes a
/// crash loop slow to watch.
pub fn period_override() -> Option<Duration> {
    crate::config::get().restart_attempt_period
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(json: &str) -> RestartPolicy {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn ecs_rules() {
        let s = Duration::from_secs;
        assert_eq!(
            Tracker::new(None, None).decide(1, s(999), false),
            Err(NoRestart::Disabled)
        );
        let off = policy(r#"{"enabled":false}"#);
        assert_eq!(
            Tracker::new(Some(&off), None).decide(1, s(999), false),
            Err(NoRestart::Disabled)
        );
        let p = policy(r#"{"enabled":true,"ignoredExitCodes":[0,3]}"#);
        let t = Tracker::new(Some(&p), None);
        assert_eq!(t.decide(1, s(299), false), Err(NoRestart::TooSoon));
        assert_eq!(t.decide(1, s(300), false), Ok(()));
        assert_eq!(t.decide(3, s(300), false), Err(NoRestart::Ignored));
        assert_eq!(t.decide(1, s(300), true), Err(NoRestart::Stopping));
        let p = policy(r#"{"enabled":true,"restartAttemptPeriod":60}"#);
        assert_eq!(
            Tracker::new(Some(&p), None).decide(0, s(59), false),
            Err(NoRestart::TooSoon)
        );
        // Exit code 0 is restarted too unless ignored, as in ECS.
        assert_eq!(
            Tracker::new(Some(&p), Some(Duration::ZERO)).decide(0, s(0), false),
            Ok(())
        );
    }
}
