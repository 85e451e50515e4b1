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
//! - [`reports`]: the leader folds the boxes' task reports into the task records.
//! - [`agent`]: `minifargate agent`, the box's registration and liveness lease.
//! - [`ecs_config`]: `/etc/ecs/ecs.config`, the agent's settings as ECS's agent reads them.
//! - [`api`]: the ECS operations on etcd, chosen once at `serve` start.
//! - [`registries`]: the serves' registries advertised to every box's pulls.

pub mod agent;
pub mod agents_client;
pub mod api;
pub mod ecs_config;
pub mod endpoint;
pub mod etcd;
pub mod exec;
pub mod fleet;
pub mod instances;
pub mod keys;
pub mod leader;
pub mod logs;
pub mod metrics;
pub mod names;
pub mod pki;
pub mod records;
pub mod registries;
pub mod remote;
pub mod replica;
pub mod reports;
pub mod signing;
pub mod subnets;
pub mod task_api;
pub mod tasks;
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

/// Runs an etcd call from one of the API's blocking threads (inside serve's runtime), or
/// on a runtime of its own elsewhere.
pub(crate) fn block_on<F: std::future::Future>(f: F) -> F::Output {
    // The etcd client's pooled connections live on the runtime that made them: serve's
    // calls all run on serve's.
    match tokio::runtime::Handle::try_current()
        .ok()
        .or_else(|| RUNTIME.get().cloned())
    {
        Some(h) => h.block_on(f),
        None => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime")
            .block_on(f),
    }
}
