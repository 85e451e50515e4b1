//! Threads that never start or end while their process is being cloned.
//!
//! libcontainer creates a container (and an exec) by cloning the calling process with a
//! raw `clone3`: the child is a copy of the caller's memory at that instant, every lock
//! included, and its intermediate process ends with `std::process::exit`, whose clean-up
//! takes std's thread-info lock (the stack-overflow handler's table, which every std
//! thread locks for a moment as it starts and as it ends). If another thread of the
//! process was starting or ending at the instant of the clone, the child inherits that
//! lock held by a thread it does not have, waits for it forever, and the create waits for
//! the child (docs/reliability.md, "Known problems": seen with the task metadata
//! endpoint's thread starting and with the network's namespace threads).
//!
//! The gate: a thread started with [`spawn`] or [`spawn_scoped`] is *in motion* from
//! before it is spawned until its start-up is over, and again from the end of its work
//! until its thread-local destructors run, after std's end-of-thread bookkeeping.
//! [`close`] waits until no thread is in motion and keeps others from starting or ending
//! until its [`Closed`] is dropped: hold it across a call that clones the process.
//! A thread that wants to start or end meanwhile waits (a clone takes milliseconds).
//!
//! Not covered: threads started by code that does not come through here (a tokio
//! runtime's blocking pool), and glibc's own clean-up after the thread-local destructors
//! (its malloc cache handed back to the arenas).

use std::cell::Cell;
use std::marker::PhantomData;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::thread::{Builder, JoinHandle, Scope, ScopedJoinHandle, ThreadId};

struct State {
    /// Threads starting or ending now.
    moving: usize,
    /// The thread that closed the gate, and how many times (nested [`close`]).
    closed_by: Option<(ThreadId, usize)>,
}

static STATE: Mutex<State> = Mutex::new(State {
    moving: 0,
    closed_by: None,
});
static CHANGED: Condvar = Condvar::new();

fn state() -> MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(|p| p.into_inner())
}

fn wait(s: MutexGuard<'static, State>) -> MutexGuard<'static, State> {
    CHANGED.wait(s).unwrap_or_else(|p| p.into_inner())
}

/// A thread goes into motion: waits while another thread holds the gate closed. The
/// closing thread itself passes (it does not clone while it spawns).
fn set_moving(me: ThreadId) {
    let mut s = state();
    while s.closed_by.is_some_and(|(t, _)| t != me) {
        s = wait(s);
    }
    s.moving += 1;
}

fn clear_moving() {
    let mut s = state();
    s.moving = s.moving.saturating_sub(1);
    if s.moving == 0 {
        CHANGED.notify_all();
    }
}

/// After a spawn by the thread that holds the gate closed: waits until the new thread
/// has started, so that its next clone finds no thread in motion.
fn settle_if_closer(me: ThreadId) {
    let mut s = state();
    if s.closed_by.is_some_and(|(t, _)| t == me) {
        while s.moving > 0 {
            s = wait(s);
        }
    }
}

/// Held by a thread from the end of its work until its thread-local destructors run.
struct Ending(Cell<bool>);

impl Drop for Ending {
    fn drop(&mut self) {
        if self.0.get() {
            clear_moving();
        }
    }
}

thread_local! {
    static ENDING: Ending = const { Ending(Cell::new(false)) };
}

/// Dropped when the thread's work returns (or unwinds): the thread is in motion until
/// [`ENDING`]'s destructor, which std runs after its own end-of-thread bookkeeping.
struct WorkDone;

impl Drop for WorkDone {
    fn drop(&mut self) {
        set_moving(std::thread::current().id());
        if ENDING.try_with(|e| e.0.set(true)).is_err() {
            clear_moving();
        }
    }
}

fn gated<T>(f: impl FnOnce() -> T) -> impl FnOnce() -> T {
    move || {
        // Running: std's start-up bookkeeping is over.
        clear_moving();
        let _done = WorkDone;
        f()
    }
}

/// Spawns a thread with `spawn` while the calling thread holds it in motion: the new
/// thread ends that at its start ([`gated`]), or the caller does if there is no thread.
fn through_gate<H>(spawn: impl FnOnce() -> std::io::Result<H>) -> std::io::Result<H> {
    let me = std::thread::current().id();
    set_moving(me);
    let spawned = spawn();
    match &spawned {
        Ok(_) => settle_if_closer(me),
        Err(_) => clear_moving(),
    }
    spawned
}

/// [`Builder::spawn`] through the gate: the thread neither starts nor ends while the
/// process is cloned under [`close`].
pub fn spawn<F, T>(builder: Builder, f: F) -> std::io::Result<JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    through_gate(|| builder.spawn(gated(f)))
}

/// [`Builder::spawn_scoped`] through the gate (see [`spawn`]).
pub fn spawn_scoped<'scope, 'env, F, T>(
    scope: &'scope Scope<'scope, 'env>,
    builder: Builder,
    f: F,
) -> std::io::Result<ScopedJoinHandle<'scope, T>>
where
    F: FnOnce() -> T + Send + 'scope,
    T: Send + 'scope,
{
    through_gate(|| builder.spawn_scoped(scope, gated(f)))
}

/// The gate held closed (see the crate doc); opened again when dropped. Not `Send`: the
/// thread that closed it opens it.
#[must_use = "the gate opens again when this is dropped"]
pub struct Closed(PhantomData<*const ()>);

/// Closes the gate: waits until no thread started through it is starting or ending, then
/// keeps them from doing so until the [`Closed`] is dropped. Nested calls by the same
/// thread are allowed.
pub fn close() -> Closed {
    let me = std::thread::current().id();
    let mut s = state();
    if let Some((t, n)) = s.closed_by.as_mut()
        && *t == me
    {
        *n += 1;
        return Closed(PhantomData);
    }
    while s.closed_by.is_some() {
        s = wait(s);
    }
    s.closed_by = Some((me, 1));
    while s.moving > 0 {
        s = wait(s);
    }
    Closed(PhantomData)
}

impl Drop for Closed {
    fn drop(&mut self) {
        let mut s = state();
        if let Some((_, n)) = s.closed_by.as_mut() {
            *n -= 1;
            if *n == 0 {
                s.closed_by = None;
                CHANGED.notify_all();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, mpsc};
    use std::time::Duration;

    // The gate is process-wide: these tests run one at a time.
    static SERIAL: Mutex<()> = Mutex::new(());

    fn moving() -> usize {
        state().moving
    }

    #[test]
    fn a_thread_is_in_motion_until_its_thread_locals_are_destroyed() {
        let _s = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        let (ready, go) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let (r, g) = (ready.clone(), go.clone());
        let h = spawn(Builder::new(), move || {
            r.store(true, Ordering::SeqCst);
            while !g.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
        })
        .unwrap();
        while !ready.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
        // Running: not in motion.
        assert_eq!(moving(), 0);
        go.store(true, Ordering::SeqCst);
        h.join().unwrap();
        // join returns once the thread is gone, its destructors run.
        assert_eq!(moving(), 0);
    }

    #[test]
    fn no_thread_starts_or_ends_while_the_gate_is_closed() {
        let _s = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        let started = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = mpsc::channel::<()>();
        // A thread whose work is over as soon as it is told.
        let h = spawn(Builder::new(), move || {
            let _ = rx.recv();
        })
        .unwrap();
        let closed = close();
        // Its end waits for the gate.
        tx.send(()).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert!(!h.is_finished(), "a thread ended while the gate was closed");
        // A thread spawned by another thread does not start meanwhile.
        let s2 = started.clone();
        let spawner = std::thread::spawn(move || {
            spawn(Builder::new(), move || {
                s2.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap()
            .join()
            .unwrap();
        });
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(started.load(Ordering::SeqCst), 0);
        drop(closed);
        h.join().unwrap();
        spawner.join().unwrap();
        assert_eq!(started.load(Ordering::SeqCst), 1);
        assert_eq!(moving(), 0);
    }

    #[test]
    fn the_closing_thread_may_spawn_and_its_thread_has_started_when_spawn_returns() {
        let _s = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        let closed = close();
        let (tx, rx) = mpsc::channel::<()>();
        let h = spawn(Builder::new(), move || {
            let _ = rx.recv();
        })
        .unwrap();
        assert_eq!(moving(), 0);
        let nested = close();
        drop(nested);
        drop(closed);
        tx.send(()).unwrap();
        h.join().unwrap();
    }

    #[test]
    fn scoped_threads_pass_the_gate_too() {
        let _s = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        let n = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|i| spawn_scoped(s, Builder::new(), move || i * 2).unwrap())
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum::<i32>()
        });
        assert_eq!(n, 12);
        // A scope returns when the work is done; the ends may still be under way.
        let _closed = close();
        assert_eq!(moving(), 0);
    }
}
