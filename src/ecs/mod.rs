//! The ECS core: every ECS operation this host serves, one file per resource. Each takes
//! the AWS request shape (ecs.json's member names) and returns the AWS response shape or
//! an [`EcsError`] named for the ECS exception; warnings are returned as values. The CLI,
//! the HTTP API and the service scheduler all call these functions, so they cannot
//! disagree. Nothing here prints.
//!
//! Below the core: `taskdef` (the model and its rules), `store` (state), `task` (what a
//! task becomes on this host) and the supervisor it starts. See docs/architecture.md.

pub mod account_settings;
#[cfg(test)]
pub(crate) mod botocore_model;
pub mod clusters;
pub mod container_instances;
pub mod deployments;
pub mod error;
pub mod events;
pub mod fleet;
pub mod insights;
pub mod metrics;
pub mod names;
pub mod on_box;
pub mod operations;
pub mod placement;
pub mod services;
pub mod shapes;
pub mod start_task;
pub mod table;
pub mod tags;
pub mod task_definition_errors;
pub mod task_definitions;
pub mod task_protection;
pub mod tasks;

pub use error::{EcsError, EcsResult};

use crate::store::Store;
use anyhow::Context;
use serde::Serialize;
use std::path::PathBuf;

/// The host the core works on: where its state and runtime files are, and what the
/// supervisors it starts are told.
#[derive(Debug, Clone)]
pub struct Ecs {
    /// All state (images, layers, tasks, state.db).
    pub root: PathBuf,
    /// Runtime files (sockets, locks, netns mounts).
    pub run_root: PathBuf,
    /// The registry configuration file the supervisors pull with.
    pub config: Option<PathBuf>,
    /// The log level the supervisors start with.
    pub log_level: String,
    /// Whether the supervisors give tasks user namespaces (`--userns`).
    pub userns: crate::supervisor::isolation::userns::Mode,
    /// The supervisors [`Ecs::reconcile_tasks`] found alive, watched by a descriptor each.
    pub supervisors: crate::supervisor::reconcile::Watched,
}

impl Ecs {
    /// A core over a scratch directory (`<dir>/root`, `<dir>/run`), quiet supervisors: for
    /// the tests and the API fuzzer, which drive the operations without a host set up.
    #[cfg(test)]
    pub fn scratch(dir: &std::path::Path) -> Ecs {
        Ecs {
            root: dir.join("root"),
            run_root: dir.join("run"),
            config: None,
            log_level: "error".into(),
            userns: Default::default(),
            supervisors: Default::default(),
        }
    }

    /// The state store.
    pub fn open_store(&self) -> anyhow::Result<Store> {
        Store::open(&self.root).with_context(|| {
            format!(
                "cannot use the state store under {} (set --root or MINIFARGATE_ROOT to a \
                 writable directory)",
                self.root.display()
            )
        })
    }

    /// Finishes tasks whose supervisor died and prunes old stopped ones; failures are
    /// logged, not fatal (see supervisor::reconcile).
    pub fn reconcile(&self, store: &mut Store) {
        match crate::supervisor::reconcile::reconcile(store, &self.root, &self.run_root) {
            Ok(ids) => {
                for id in ids {
                    tracing::warn!(task_id = %id, "the task's supervisor had died: task marked STOPPED and cleaned up");
                }
            }
            Err(e) => {
                tracing::error!(error = %crate::errors::error_chain(&e), "failed to check task supervisors")
            }
        }
        self.housekeeping(store);
    }

    /// As [`Ecs::reconcile`] for the tasks `ids` (ids, not ARNs) only: see
    /// `supervisor::reconcile::finish_dead`.
    pub fn reconcile_tasks(&self, store: &mut Store, ids: &[&str]) {
        // The supervisors watched since an earlier check, and still running, are not read
        // again (supervisor::reconcile::Watched).
        let alive = self.supervisors.alive(ids);
        for id in ids.iter().filter(|id| !alive.contains(**id)) {
            match crate::supervisor::reconcile::finish_dead(store, id, &self.root, &self.run_root) {
                Ok(true) => {
                    tracing::warn!(task_id = %id, "the task's supervisor had died: task marked STOPPED and cleaned up")
                }
                Ok(false) => {
                    if let Ok(Some(live)) = store.liveness(id) {
                        self.supervisors.watch(&live);
                    }
                }
                Err(e) => {
                    tracing::error!(task_id = %id, error = %crate::errors::error_chain(&e), "failed to check the task's supervisor")
                }
            }
        }
        self.housekeeping(store);
    }

    /// What [`Ecs::reconcile`] does besides checking every running task's supervisor:
    /// prunes stopped tasks past their retention and deleted task definitions no longer
    /// in use. RunTask does only this: the supervisor walk costs a /proc read per running
    /// task, and the new task's supervisor finishes dead tasks itself when it finds an
    /// address, a host port or an id range short (supervisor::executor).
    pub fn housekeeping(&self, store: &mut Store) {
        self.housekeeping_before(store, i64::MAX);
    }

    /// [`Ecs::housekeeping`] after a launch that began at `began_ms` (epoch ms) started
    /// its supervisors: off the launch's path, and blind to what stopped since it began.
    /// At a retention of 0 (`MINIFARGATE_STOPPED_TASK_RETENTION=0`) a task of this very
    /// launch may already be STOPPED; its launcher, which may be following it, must not
    /// forget it.
    pub fn housekeeping_before(&self, store: &mut Store, began_ms: i64) {
        use crate::supervisor::reconcile as rec;
        if let Err(e) = rec::prune(store, &self.root, &self.run_root, began_ms) {
            tracing::error!(error = %crate::errors::error_chain(&e), "failed to prune stopped tasks");
        }
        match store.purge_deleted_task_definitions() {
            Ok(arns) => {
                for arn in arns {
                    tracing::info!(%arn, "a deleted task definition revision no longer in use is gone");
                }
            }
            Err(e) => {
                tracing::error!(error = %crate::errors::error_chain(&e), "failed to remove deleted task definitions")
            }
        }
    }
}

/// A finding that did not stop an operation (an unsupported member, a rule this host
/// does not apply): the CLI prints it, the API logs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    pub message: String,
}

/// The cluster a request names, ECS's `default` when absent or empty.
pub fn cluster_or_default(c: Option<&str>) -> &str {
    match c {
        Some(c) if !c.is_empty() => c,
        _ => names::DEFAULT,
    }
}

/// One page of `items`: ECS's `maxResults` (1-100; `default_max` when absent) and an
/// opaque `nextToken` (here: the offset of the next item).
pub fn page<T>(
    mut items: Vec<T>,
    max_results: Option<i64>,
    default_max: usize,
    next_token: Option<&str>,
) -> EcsResult<(Vec<T>, Option<String>)> {
    let max = match max_results {
        None => default_max,
        Some(n @ 1..=100) => n as usize,
        Some(n) => {
            return Err(EcsError::invalid(format!(
                "maxResults {n}: must be between 1 and 100"
            )));
        }
    };
    let start = match next_token {
        None | Some("") => 0,
        Some(t) => t
            .strip_prefix("mf1.")
            .and_then(|h| usize::from_str_radix(h, 16).ok())
            .filter(|n| *n <= items.len())
            .ok_or_else(|| EcsError::invalid("Invalid nextToken"))?,
    };
    let end = (start + max).min(items.len());
    let token = (end < items.len()).then(|| format!("mf1.{end:x}"));
    items.truncate(end);
    Ok((items.split_off(start), token))
}

/// A value of an ECS enum member as ECS spells it (`ACTIVE`, `DESC`, `FARGATE` …):
/// InvalidParameterException for any other.
pub fn enum_member<T: clap::ValueEnum>(member: &str, v: Option<&str>) -> EcsResult<Option<T>> {
    v.map(|s| {
        T::from_str(s, false)
            .map_err(|_| EcsError::invalid(format!("{member}: {s:?} is not a valid value")))
    })
    .transpose()
}

/// A task definition reference in a request names a registered one: `file://` is a CLI
/// convenience (the CLI registers the file first), never read by the core for a remote
/// caller.
pub fn no_files(reference: &str) -> EcsResult<()> {
    if reference.starts_with("file://") {
        return Err(EcsError::client(format!(
            "taskDefinition {reference:?}: register it first (RegisterTaskDefinition); file \
             references are a CLI convenience"
        )));
    }
    Ok(())
}

/// Over the API, a task definition's `environmentFiles` name S3 objects, as on ECS (Ref:
/// ecs.json `EnvironmentFile.value`: "The Amazon Resource Name (ARN) of the Amazon S3
/// object containing the environment variable file."): a local path is read on this host
/// for its own CLI only (root on the box), never for a remote caller, who would read the
/// server's files into a container. The one rule for RegisterTaskDefinition and for a
/// RunTask, StartTask, CreateService or UpdateService naming a definition that carries one.
pub fn no_local_environment_files(def: &crate::taskdef::model::TaskDefinition) -> EcsResult<()> {
    for (i, c) in def.container_definitions.iter().flatten().enumerate() {
        for (k, f) in c.environment_files.iter().flatten().enumerate() {
            let value = f.value.as_deref().unwrap_or_default();
            if !crate::supervisor::envfiles::is_s3(value, f.kind) {
                return Err(EcsError::client(format!(
                    "containerDefinitions[{i}].environmentFiles[{k}].value {value:?}: not an \
                     S3 object ARN (arn:aws:s3:::<bucket>/<key>.env); a local file is read \
                     only for this host's own CLI, never for a request over the API"
                )));
            }
        }
    }
    Ok(())
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_and_tokens() {
        let items: Vec<String> = (0..5).map(|i| i.to_string()).collect();
        let (p, t) = page(items.clone(), Some(2), 100, None).unwrap();
        assert_eq!(p, ["0", "1"]);
        let (p, t) = page(items.clone(), Some(2), 100, t.as_deref()).unwrap();
        assert_eq!(p, ["2", "3"]);
        let (p, t) = page(items.clone(), Some(2), 100, t.as_deref()).unwrap();
        assert_eq!((p, t), (vec!["4".to_string()], None));
        let (p, t) = page(items.clone(), None, 100, None).unwrap();
        assert_eq!((p.len(), t), (5, None));
        assert!(page(items.clone(), Some(0), 100, None).is_err());
        assert!(page(items, None, 100, Some("garbage")).is_err());
    }
}
