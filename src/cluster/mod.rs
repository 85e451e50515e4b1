//! Cluster mode (issue 38, step 1; docs/cluster.md): container instances registered in
//! etcd by `minifargate agent --cluster`, and answered by `serve --cluster` for
//! List/Describe/DeregisterContainerInstance(s), UpdateContainerInstancesState and
//! Put/Delete/ListAttributes. Without `--cluster` nothing here runs: no etcd, no new
//! process, and the API answers as on one box.
//!
//! - [`etcd`]: the client (etcd's v3 JSON gateway), with typed errors naming the endpoint
//!   and the call.
//! - [`keys`]: the key layout.
//! - [`instances`]: the container-instance records and the view the API shapes.
//! - [`query`]: ECS's cluster query language.
//! - [`placement`]: ECS task placement, a pure function (resources, constraints, strategies).
//! - [`pki`]: the cluster's CA and certificates (`cluster init`, `cluster add-box`).
//! - [`users`]: etcd's users and roles (`cluster enable-auth`).
//! - [`join`]: join tokens, a box's join and its removal (`cluster token`, `agent --server`).
//! - [`gateway`], [`rights`], [`admission`]: serve's port for a joined box's store calls,
//!   what the box may read and write, and what its puts may hold.
//! - [`reports`]: the leader folds the boxes' task reports into the task records.
//! - [`agent`]: `minifargate agent`, the box's registration and liveness lease.
//! - [`hollow`]: `agent --simulate N`, hollow boxes for the scale bench and tests.
//! - [`ecs_config`]: `/etc/ecs/ecs.config`, the agent's settings as ECS's agent reads them.
//! - [`api`]: the ECS operations on etcd, chosen once at `serve` start.
//! - [`tunnel`]: a joined box's tunnel, through which serve and the CLI reach its endpoint.
//! - [`registries`]: the serves' registries advertised to every box's pulls.

pub mod admission;
pub mod agent;
pub mod agents_client;
pub mod api;
pub mod balancers;
pub mod data_plane;
pub mod ecs_config;
pub mod endpoint;
pub mod etcd;
pub mod exec;
pub mod fleet;
pub mod gateway;
pub mod hollow;
pub mod instances;
pub mod join;
pub mod keys;
pub mod leader;
pub mod logs;
pub mod metrics;
pub mod names;
pub mod nofile;
pub mod pki;
pub mod records;
pub mod registries;
pub mod remote;
pub mod replica;
pub mod reports;
pub mod rights;
pub mod signing;
pub mod subnets;
pub mod task_api;
pub mod tasks;
pub mod tunnel;
pub mod txn;
pub mod users;
pub mod work;

use std::sync::OnceLock;

/// The etcd `serve --cluster` answers container instances from; unset on one box.
static SERVING: OnceLock<etcd::Etcd> = OnceLock::new();

/// serve's runtime, for the etcd calls of threads outside it (the service scheduler's).
static RUNTIME: OnceLock<tokio::runtime::Handle> = OnceLock::new();

/// Makes `serve` answer from `etcd` (once, at its start), its tasks run on the cluster's
/// boxes, its etcd calls made on `runtime`.
pub fn serve_with(etcd: etcd::Etcd, runtime: tokio::runtime::Handle) {
    let _ = SERVING.set(etcd);
    let _ = RUNTIME.set(runtime);
    crate::ecs::fleet::set(Box::new(fleet::Cluster));
}

/// The etcd `serve --cluster` uses, if any.
pub fn serving() -> Option<&'static etcd::Etcd> {
    SERVING.get()
}

/// serve's runtime going away: set (and the calls running on it waited for) before the
/// runtime is dropped, so no etcd call polls a timer of a runtime whose drivers are shut
/// down (tokio panics: "A Tokio 1.x context was found, but it is being shutdown").
static SERVE_GATE: Gate = Gate::new();

/// Whether serve's runtime still takes etcd calls, and how many run on it now.
struct Gate {
    state: std::sync::Mutex<GateState>,
    idle: std::sync::Condvar,
}

struct GateState {
    closed: bool,
    in_flight: usize,
}

/// One etcd call running on serve's runtime: counted while it lives.
struct InFlight<'a>(&'a Gate);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut s = self.0.lock();
        s.in_flight -= 1;
        if s.in_flight == 0 {
            self.0.idle.notify_all();
        }
    }
}

impl Gate {
    const fn new() -> Gate {
        Gate {
            state: std::sync::Mutex::new(GateState {
                closed: false,
                in_flight: 0,
            }),
            idle: std::sync::Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A call may run on serve's runtime: counted until the guard drops. `None` once
    /// [`Gate::close`] was called.
    fn enter(&self) -> Option<InFlight<'_>> {
        let mut s = self.lock();
        if s.closed {
            return None;
        }
        s.in_flight += 1;
        Some(InFlight(self))
    }

    /// No call starts on serve's runtime from now on; waits (at most `wait`) for those
    /// running on it to end. False if some were still running after `wait`.
    fn close(&self, wait: std::time::Duration) -> bool {
        let mut s = self.lock();
        s.closed = true;
        let (s, _) = self
            .idle
            .wait_timeout_while(s, wait, |s| s.in_flight > 0)
            .unwrap_or_else(|p| p.into_inner());
        s.in_flight == 0
    }
}

/// serve is stopping: the etcd calls of threads outside its runtime (the scheduler's, the
/// replica's) no longer run on it, and those running are waited for (at most `wait`).
/// Call before dropping the runtime given to [`serve_with`].
pub fn close_runtime(wait: std::time::Duration) {
    if RUNTIME.get().is_some() && !SERVE_GATE.close(wait) {
        tracing::warn!(
            wait_s = wait.as_secs_f64(),
            "etcd calls still running as serve stops"
        );
    }
}

/// Runs an etcd call from one of the API's blocking threads (inside serve's runtime), or
/// on a runtime of its own elsewhere, and once serve is stopping ([`close_runtime`]).
pub(crate) fn block_on<F: std::future::Future>(f: F) -> F::Output {
    block_on_with(&SERVE_GATE, RUNTIME.get(), f)
}

/// [`block_on`] with serve's gate and runtime given.
fn block_on_with<F: std::future::Future>(
    gate: &Gate,
    serve_rt: Option<&tokio::runtime::Handle>,
    f: F,
) -> F::Output {
    // The etcd client's pooled connections live on the runtime that made them: serve's
    // calls all run on serve's, while it runs. A stopping serve's calls (a thread that was
    // mid-way) get a runtime of their own: new connections, never the old one's timers.
    if let Some(_counted) = gate.enter()
        && let Some(h) = tokio::runtime::Handle::try_current()
            .ok()
            .or_else(|| serve_rt.cloned())
    {
        return h.block_on(f);
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime")
        .block_on(f)
}

/// Whether stored value `key`, as written at `revision`, is reported for the first time by
/// this process: a value left out of what a reader believes (issue 73: a box's garbled or
/// out-of-bounds keys) is said once, not at every read. Bounded: past [`REPORTED_MAX`]
/// remembered, it starts over (a key may then be said again).
pub(crate) fn first_report(key: &str, revision: i64) -> bool {
    static SAID: std::sync::Mutex<std::collections::BTreeSet<(String, i64)>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let mut said = SAID.lock().unwrap_or_else(|p| p.into_inner());
    if said.len() >= REPORTED_MAX {
        said.clear();
    }
    said.insert((key.to_string(), revision))
}

/// How many reported (key, revision) pairs [`first_report`] remembers.
const REPORTED_MAX: usize = 10_000;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A thread outside serve's runtime keeps making calls with timers (as the scheduler's
    /// does) while the runtime is closed and dropped: none panics, and each completes.
    #[test]
    fn calls_while_the_runtime_is_dropped_do_not_panic() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let gate: &'static Gate = Box::leak(Box::new(Gate::new()));
        let handle = rt.handle().clone();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        let caller = std::thread::spawn(move || {
            let mut done = 0u32;
            while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                block_on_with(gate, Some(&handle), async {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                });
                done += 1;
            }
            done
        });
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            gate.close(Duration::from_secs(5)),
            "the calls in flight ended"
        );
        drop(rt);
        // Calls go on after the runtime is gone.
        std::thread::sleep(Duration::from_millis(50));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let done = caller.join().expect("no call panicked");
        assert!(done > 2, "{done} calls");
    }
}
