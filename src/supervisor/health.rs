//! Container health checks as the ECS agent runs them: `CMD`/`CMD-SHELL` exec'd in the
//! container every `interval`, failing after `timeout`; `retries` consecutive failures
//! make it UNHEALTHY, failures within `startPeriod` do not count.
//!
//! Ref: ecs.json `HealthCheck` (defaults interval 30, timeout 5, retries 3, startPeriod 0).

use crate::store::HealthStatus;
use crate::taskdef::model::HealthCheck;
use runtime::{Container, ExecSpec};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A parsed `healthCheck`.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub args: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub retries: u32,
    pub start_period: Duration,
}

impl Check {
    /// `CMD args…` and `CMD-SHELL line` as Docker reads them; any other list is run whole
    /// in exec form, as Fargate does (see validate's `health-check-exec-form`). `None` for
    /// an empty command (validation rejects it).
    pub fn parse(h: &HealthCheck) -> Option<Check> {
        let cmd = h.command.as_ref()?;
        let (kind, rest) = cmd.split_first()?;
        let args = match kind.as_str() {
            "CMD" => rest.to_vec(),
            "CMD-SHELL" => vec!["/bin/sh".into(), "-c".into(), rest.join(" ")],
            _ => cmd.clone(),
        };
        if args.is_empty() {
            return None;
        }
        let secs = |v: Option<i64>, d: u64| Duration::from_secs(v.map_or(d, |v| v.max(0) as u64));
        Some(Check {
            args,
            interval: secs(h.interval, 30),
            timeout: secs(h.timeout, 5),
            retries: h.retries.map_or(3, |r| r.max(1) as u32),
            start_period: secs(h.start_period, 0),
        })
    }
}

/// The health of one container.
#[derive(Debug, Clone)]
pub struct Health {
    pub check: Check,
    pub status: HealthStatus,
    pub failures: u32,
    pub started: Instant,
    pub next: Instant,
    pub in_flight: bool,
}

impl Health {
    pub fn new(check: Check, started: Instant) -> Health {
        // The first check runs right away: dependents wait on HEALTHY.
        Health {
            check,
            status: HealthStatus::Unknown,
            failures: 0,
            started,
            next: started,
            in_flight: false,
        }
    }

    /// Records a result; returns true when the status changed.
    pub fn record(&mut self, ok: bool, now: Instant) -> bool {
        self.in_flight = false;
        self.next = now + self.check.interval;
        let before = self.status;
        if ok {
            self.failures = 0;
            self.status = HealthStatus::Healthy;
        } else if now.duration_since(self.started) >= self.check.start_period {
            self.failures += 1;
            if self.failures >= self.check.retries {
                self.status = HealthStatus::Unhealthy;
            }
        }
        before != self.status
    }
}

/// Runs one check in `container` on a thread; `done(ok)` is called with the result.
/// A check that outlives its timeout is killed and counts as failed.
pub fn run_check(
    container: Arc<Container>,
    check: &Check,
    done: impl FnOnce(bool) + Send + 'static,
) {
    let spec = ExecSpec {
        args: check.args.clone(),
        ..Default::default()
    };
    let timeout = check.timeout;
    threadgate::spawn(
        std::thread::Builder::new().name("health".into()),
        move || {
            let mut p = match container.exec(&spec) {
                Ok(p) => p,
                Err(e) => {
                    tracing::debug!(error = %crate::errors::error_chain(&e), "health check did not start");
                    return done(false);
                }
            };
            let finished = Arc::new(AtomicBool::new(false));
            let timed_out = Arc::new(AtomicBool::new(false));
            let (f, t, pid) = (finished.clone(), timed_out.clone(), p.pid);
            threadgate::spawn(
                std::thread::Builder::new().name("health".into()),
                move || {
                    let deadline = Instant::now() + timeout;
                    while Instant::now() < deadline {
                        if f.load(Ordering::SeqCst) {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    if !f.load(Ordering::SeqCst) {
                        t.store(true, Ordering::SeqCst);
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(pid),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                },
            )
            .expect("failed to spawn thread");
            let ok = matches!(p.output(), Ok((s, _, _)) if s.code == 0);
            finished.store(true, Ordering::SeqCst);
            drop(container);
            done(ok && !timed_out.load(Ordering::SeqCst));
        },
    )
    .expect("failed to spawn thread");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hc(json: &str) -> HealthCheck {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn parses_cmd_cmd_shell_and_exec_form_with_ecs_defaults() {
        let c = Check::parse(&hc(
            r#"{"command":["CMD-SHELL","curl -f localhost || exit 1"]}"#,
        ))
        .unwrap();
        assert_eq!(c.args, ["/bin/sh", "-c", "curl -f localhost || exit 1"]);
        assert_eq!(
            (c.interval, c.timeout, c.retries, c.start_period),
            (
                Duration::from_secs(30),
                Duration::from_secs(5),
                3,
                Duration::ZERO
            )
        );
        let c = Check::parse(&hc(
            r#"{"command":["CMD","true"],"retries":1,"interval":5}"#,
        ))
        .unwrap();
        assert_eq!(
            (c.args.as_slice(), c.retries),
            (&["true".to_string()][..], 1)
        );
        // Neither CMD nor CMD-SHELL: the whole list in exec form, as Fargate runs it.
        let c = Check::parse(&hc(r#"{"command":["/healthcheck","--port","13133"]}"#)).unwrap();
        assert_eq!(c.args, ["/healthcheck", "--port", "13133"]);
        assert!(Check::parse(&hc(r#"{"command":[]}"#)).is_none());
        assert!(Check::parse(&hc(r#"{"command":["CMD"]}"#)).is_none());
    }

    #[test]
    fn retries_and_start_period() {
        let t0 = Instant::now();
        let check = Check::parse(&hc(
            r#"{"command":["CMD","x"],"retries":2,"startPeriod":10}"#,
        ))
        .unwrap();
        let mut h = Health::new(check, t0);
        // Failures inside the start period do not count.
        assert!(!h.record(false, t0 + Duration::from_secs(1)));
        assert_eq!((h.status, h.failures), (HealthStatus::Unknown, 0));
        assert!(!h.record(false, t0 + Duration::from_secs(11)));
        assert!(h.record(false, t0 + Duration::from_secs(12)));
        assert_eq!(h.status, HealthStatus::Unhealthy);
        assert!(h.record(true, t0 + Duration::from_secs(13)));
        assert_eq!((h.status, h.failures), (HealthStatus::Healthy, 0));
    }
}
