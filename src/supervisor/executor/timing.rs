//! Step timings of a launch and a teardown, for the supervisor's debug log.

use std::time::Instant;

/// How long each step of the launch (`provision`) or the teardown took, for the
/// supervisor's debug log (`scripts/bench-phases` and docs/benchmarks.md, "Teardown").
pub(super) struct Steps {
    last: Instant,
    steps: Vec<(&'static str, u128)>,
}

impl Steps {
    pub(super) fn new() -> Steps {
        Steps {
            last: Instant::now(),
            steps: Vec::new(),
        }
    }

    pub(super) fn mark(&mut self, step: &'static str) {
        let now = Instant::now();
        self.steps
            .push((step, now.duration_since(self.last).as_micros()));
        self.last = now;
    }
}

impl std::fmt::Display for Steps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (step, us)) in self.steps.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{step} {us}")?;
        }
        Ok(())
    }
}
