//! Container `restartPolicy`: the override of its attempt period. The rules (ignored exit
//! codes, attempt period, no restart while the task stops) are the executor's state
//! machine's, `crate::supervisor::machine`.

use std::time::Duration;

/// Overrides every container's `restartAttemptPeriod` (seconds, any value). For tests and
/// demos: ECS's minimum of 60 s makes a crash loop slow to watch.
pub const PERIOD_ENV: &str = "MINIFARGATE_RESTART_ATTEMPT_PERIOD";

/// The period override from [`PERIOD_ENV`], read once by the supervisor.
pub fn period_override() -> Option<Duration> {
    std::env::var(PERIOD_ENV)
        .ok()?
        .parse::<f64>()
        .ok()
        .filter(|s| *s >= 0.0)
        .map(Duration::from_secs_f64)
}
