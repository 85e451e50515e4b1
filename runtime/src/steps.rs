//! Step timings, for debug logs: a launch's and a teardown's in the supervisor, a
//! container create's here.

use std::time::Instant;

/// How long each step took, in µs, since the previous mark (or the start): the
/// supervisor's launch (`provision`) and teardown, and [`crate::Runtime::create`], for
/// their debug logs (`scripts/bench-phases` and docs/benchmarks.md, "Teardown").
pub struct Steps {
    last: Instant,
    steps: Vec<(&'static str, u128)>,
}

impl Default for Steps {
    fn default() -> Steps {
        Steps::new()
    }
}

impl Steps {
    pub fn new() -> Steps {
        Steps {
            last: Instant::now(),
            steps: Vec::new(),
        }
    }

    pub fn mark(&mut self, step: &'static str) {
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
