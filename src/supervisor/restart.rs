//! Container `restartPolicy`: the override of its attempt period. The rules (ignored exit
//! codes, attempt period, no restart while the task stops) are the executor's state
//! machine's, `crate::supervisor::machine`.

use std::time::Duration;

/// `MINIFARGATE_RESTART_ATTEMPT_PERIOD` (seconds, any value; src/config.rs): replaces every
/// container's `restartAttemptPeriod`. For tests and demos: ECS's minimum of 60 s makes a
/// crash loop slow to watch.
pub fn period_override() -> Option<Duration> {
    crate::config::get().restart_attempt_period
}
