//! The signal that wakes the scheduler when a service changed, instead of at its next tick.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

static CHANGED: Mutex<bool> = Mutex::new(false);
static CHANGED_CV: Condvar = Condvar::new();

/// Says a service changed: whoever waits in [`wait_for_change`] (the scheduler) wakes
/// now instead of at its next tick.
pub fn changed() {
    if let Ok(mut c) = CHANGED.lock() {
        *c = true;
        CHANGED_CV.notify_all();
    }
}

/// Waits up to `d` for a [`changed`] service.
pub fn wait_for_change(d: Duration) {
    let Ok(mut c) = CHANGED.lock() else {
        std::thread::sleep(d);
        return;
    };
    if !*c {
        c = match CHANGED_CV.wait_timeout(c, d) {
            Ok((c, _)) => c,
            Err(_) => return,
        };
    }
    *c = false;
}
