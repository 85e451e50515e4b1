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
//! - [`agent`]: `minifargate agent`, the box's registration and liveness lease.
//! - [`api`]: the ECS operations on etcd, chosen once at `serve` start.

pub mod agent;
pub mod api;
pub mod etcd;
pub mod instances;
pub mod keys;
pub mod leader;
pub mod query;
pub mod records;
pub mod task_api;
pub mod tasks;
pub mod work;

use std::sync::OnceLock;

/// The etcd `serve --cluster` answers container instances from; unset on one box.
static SERVING: OnceLock<etcd::Etcd> = OnceLock::new();

/// Makes `serve` answer container instances from `etcd` (once, at its start).
pub fn serve_with(etcd: etcd::Etcd) {
    let _ = SERVING.set(etcd);
}

/// The etcd `serve --cluster` uses, if any.
pub fn serving() -> Option<&'static etcd::Etcd> {
    SERVING.get()
}

/// Runs an etcd call from one of the API's blocking threads (inside serve's runtime), or
/// on a runtime of its own elsewhere.
pub(crate) fn block_on<F: std::future::Future>(f: F) -> F::Output {
    match tokio::runtime::Handle::try_current() {
        Ok(h) => h.block_on(f),
        Err(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime")
            .block_on(f),
    }
}
