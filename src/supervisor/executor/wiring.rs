//! The task network's second half beside the launch: once the network step has made what a
//! container needs before its create (the namespace pinned, the address leased, the hosts
//! and resolv.conf files written: `TaskNetwork::prepare`), its wiring (veth pair, `lo` and
//! `eth0` addresses, default route, published ports) and then the task metadata endpoint
//! (it listens on `lo`'s 169.254.170.2) run on a thread of their own, while this thread
//! pulls, mounts the rootfs and creates the containers. The launch waits for them before
//! the first container starts ([`Executor::join_wiring`]): no user code runs before the
//! task's network and endpoint are there.
//!
//! A failure on either side joins the other first; a failure of the wiring is the task's
//! reason whatever failed beside it, as the network step came first when the steps ran
//! one after the other (`Executor::fail_all`, `Executor::fail_container`).
//!
//! libcontainer starts each container's intermediate process with a raw `clone3` from this
//! thread (docs/reliability.md, "Known problems"): the child inherits every malloc lock as
//! it is at that instant. So the wiring thread, which runs during those creates, frees
//! none of what this thread hands it (glibc's arena of this thread could be locked for
//! it at that instant): what it works on is borrowed and handed back ([`Wired`], [`PendingEndpoint`]), and the
//! thread does not exit (its exit hands its cached chunks back to their arenas) until the
//! launch joins it, after the creates.

use super::{Executor, Phase, now_us};
use crate::errors::error_chain;
use crate::supervisor::endpoints::metadata::{PendingEndpoint, ProvisionError, Server};
use crate::supervisor::isolation::network::{NetworkError, Wired, Wiring};
use crate::task::reason;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// Why the task's network or its metadata endpoint did not come up. Its text is the
/// task's reason, as when the steps ran one after the other.
#[derive(Debug, thiserror::Error)]
pub(super) enum WiringError {
    /// The wiring thread panicked.
    #[error("{init}: {0}", init = reason::RESOURCE_INIT)]
    Panicked(#[source] NetworkError),
    /// The wiring, or recording what it made, failed (the text holds the whole chain).
    #[error("{init}: {chain}", init = reason::RESOURCE_INIT, chain = error_chain(.0))]
    Network(#[source] NetworkError),
    /// The task metadata endpoint did not start (its text says so, with the reason).
    #[error(transparent)]
    Endpoint(#[from] ProvisionError),
}

/// The wiring thread, until joined.
pub(super) struct Beside {
    handle: JoinHandle<Done>,
    gate: Arc<Gate>,
}

/// What the wiring thread did.
struct Done {
    wired: Wired,
    /// When the wiring ran (µs), for the `network-config` phase.
    start_us: i64,
    end_us: i64,
    /// The endpoint handed back, and how its start went (`None`: not started, as the
    /// wiring failed or the launch gave it none).
    pending: Option<PendingEndpoint>,
    endpoint: Option<Result<Server, ProvisionError>>,
}

/// What the launch tells the wiring thread.
#[derive(Default)]
struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
}

#[derive(Default)]
struct GateState {
    endpoint: Option<PendingEndpoint>,
    /// No (more) endpoint comes.
    closed: bool,
    /// The launch joins: the thread may end.
    joining: bool,
}

impl Gate {
    fn update(&self, f: impl FnOnce(&mut GateState)) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut st);
        self.changed.notify_all();
    }

    /// Waits until `f` has something to say.
    fn wait<T>(&self, mut f: impl FnMut(&mut GateState) -> Option<T>) -> T {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(v) = f(&mut st) {
                return v;
            }
            st = self.changed.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// Why the wiring thread could not be had.
#[derive(Debug, thiserror::Error)]
#[error("{ri}: failed to start the task network's configuration thread", ri = reason::RESOURCE_INIT)]
pub(super) struct SpawnError(#[source] std::io::Error);

/// Starts `wiring` on a thread of its own (see the module doc).
pub(super) fn spawn(wiring: Wiring, task_id: &str) -> Result<Beside, SpawnError> {
    let gate = Arc::new(Gate::default());
    let g = gate.clone();
    let task = task_id.to_string();
    let handle = threadgate::spawn(
        std::thread::Builder::new().name("net-wiring".into()),
        move || {
            let start_us = now_us();
            let wired = wiring.run();
            let end_us = now_us();
            tracing::debug!(task_id = %task, ok = wired.result.is_ok(),
                config_ms = (end_us - start_us) as f64 / 1000.0, "task network configured");
            let mut pending = g.wait(|st| {
                st.endpoint
                    .take()
                    .map(Some)
                    .or_else(|| st.closed.then_some(None))
            });
            let endpoint = match &mut pending {
                Some(p) if wired.result.is_ok() => p.start(),
                _ => None,
            };
            g.wait(|st| st.joining.then_some(()));
            Done {
                wired,
                start_us,
                end_us,
                pending,
                endpoint,
            }
        },
    )
    .map_err(SpawnError)?;
    Ok(Beside { handle, gate })
}

impl Executor {
    /// Hands the task's endpoint to the wiring thread, which starts it once `lo` has its
    /// address; without one (the wiring already joined), it is started here.
    pub(super) fn start_endpoint(
        &mut self,
        mut pending: PendingEndpoint,
    ) -> Result<(), WiringError> {
        if let Some(b) = &self.wiring {
            b.gate.update(|st| st.endpoint = Some(pending));
            return Ok(());
        }
        match pending.start() {
            Some(Ok(server)) => {
                self.inside.serving(server);
                Ok(())
            }
            Some(Err(e)) => Err(WiringError::Endpoint(e)),
            None => Ok(()),
        }
    }

    /// Waits for the wiring thread, if one runs, and takes in what it did: the
    /// `network-config` phase, the attachment's status, the endpoint. `Err` is the task's
    /// reason (the network's or the endpoint's, as when they ran in line).
    pub(super) fn join_wiring(&mut self) -> Result<(), WiringError> {
        let Some(b) = self.wiring.take() else {
            return Ok(());
        };
        let t0 = now_us();
        b.gate.update(|st| {
            st.closed = true;
            st.joining = true;
        });
        let done = b.handle.join();
        let waited = now_us() - t0;
        let Ok(done) = done else {
            let err = NetworkError::WiringPanicked {
                task: self.task.id.clone(),
            };
            if let Err(e) = self.net.finish(&self.task.id, Err(&err)) {
                tracing::error!(task_id = %self.task.id, error = %error_chain(&e), "failed to record the network");
            }
            return Err(WiringError::Panicked(err));
        };
        tracing::debug!(task_id = %self.task.id, waited_ms = waited as f64 / 1000.0,
            "task network configuration joined");
        self.phases.push(Phase {
            container: String::new(),
            phase: "network-config",
            start: done.start_us,
            end: done.end_us,
        });
        let Done {
            wired: Wired { result, wiring },
            pending,
            endpoint,
            ..
        } = done;
        // Dropped here, where they were made.
        drop((wiring, pending));
        let finished = self.net.finish(&self.task.id, result.as_ref());
        if let Err(e) = result {
            return Err(WiringError::Network(e));
        }
        if let Err(e) = finished {
            return Err(WiringError::Network(e));
        }
        match endpoint {
            Some(Ok(server)) => self.inside.serving(server),
            Some(Err(e)) => return Err(WiringError::Endpoint(e)),
            None => {}
        }
        Ok(())
    }
}
