//! Starting a command in a running container of a task on this box: what `minifargate
//! exec` does locally and what an agent does for an exec sent from another box
//! (docs/cluster.md "exec across boxes"), one code path, so both choose the container,
//! the user, the environment and the working directory alike.

use crate::ecs::Ecs;
use crate::ecs::names::task_id;
use crate::store::{ContainerRow, LastStatus};
use crate::task::TaskPaths;
use runtime::{ExecProcess, ExecSpec, Runtime};
use serde::{Deserialize, Serialize};

/// An exec: which task and container, and the command as `exec`'s options give it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Request {
    /// Task id or ARN.
    pub task: String,
    /// Only a task of this cluster.
    #[serde(default)]
    pub cluster: Option<String>,
    #[serde(default)]
    pub container: Option<String>,
    pub command: Vec<String>,
    #[serde(default)]
    pub user: Option<String>,
    /// KEY=VALUE, over the container's.
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub workdir: Option<String>,
    #[serde(default)]
    pub tty: bool,
    /// (rows, columns) of the caller's terminal.
    #[serde(default)]
    pub tty_size: Option<(u16, u16)>,
    /// The caller's stdin goes to the command (otherwise it is at EOF at once).
    #[serde(default)]
    pub interactive: bool,
    /// Makes each signed request unique (an agent takes a signed exec once).
    #[serde(default)]
    pub nonce: String,
}

/// Why an exec did not start.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("--env {0:?}: expected KEY=VALUE")]
    BadEnv(String),
    #[error("the command is empty")]
    NoCommand,
    #[error("failed to read this box's task store")]
    Store(#[source] anyhow::Error),
    #[error("task {0} not found (see `minifargate list-tasks`)")]
    NotFound(String),
    #[error("task {task} is {status}{why}: exec needs a RUNNING task")]
    TaskNotRunning {
        task: String,
        status: String,
        why: String,
    },
    #[error("task {task} has {count} containers ({names}): choose one with --container NAME")]
    ChooseContainer {
        task: String,
        count: usize,
        names: String,
    },
    #[error("task {task} has no container named {name:?} (its containers: {names})")]
    NoSuchContainer {
        task: String,
        name: String,
        names: String,
    },
    #[error(
        "container {container} of task {task} is {status}{why}: exec needs a RUNNING container"
    )]
    ContainerNotRunning {
        task: String,
        container: String,
        status: String,
        why: String,
    },
    #[error(
        "task {task} has no runtime state at {path} (is --run-root the one it was started with?)"
    )]
    NoRuntimeState { task: String, path: String },
    #[error("failed to open the runtime state of task {task}")]
    Attach {
        task: String,
        #[source]
        source: Box<runtime::RuntimeError>,
    },
    /// The runtime could not start the command (docker exec's 126).
    #[error("failed to exec in container {container} of task {task}")]
    Exec {
        task: String,
        container: String,
        #[source]
        source: Box<runtime::RuntimeError>,
    },
}

impl ExecError {
    /// The runtime failed to start the command (exit 126, as docker's exec), rather than
    /// the exec being refused before it.
    pub fn is_exec_failure(&self) -> bool {
        matches!(self, ExecError::Exec { .. })
    }

    /// The HTTP status an agent's endpoint answers it with.
    pub fn status(&self) -> u16 {
        match self {
            ExecError::NotFound(_) => 404,
            ExecError::TaskNotRunning { .. } | ExecError::ContainerNotRunning { .. } => 409,
            ExecError::BadEnv(_)
            | ExecError::NoCommand
            | ExecError::ChooseContainer { .. }
            | ExecError::NoSuchContainer { .. } => 400,
            _ => 500,
        }
    }
}

/// A started exec: the process (its stdio or pty master still in it) and the container.
pub struct Started {
    pub process: ExecProcess,
    pub container: String,
}

/// The container `name`, or the task's only container.
pub fn pick_container<'a>(
    task: &str,
    containers: &'a [ContainerRow],
    name: Option<&str>,
) -> Result<&'a ContainerRow, ExecError> {
    let names = || {
        containers
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match name {
        Some(n) => {
            containers
                .iter()
                .find(|c| c.name == n)
                .ok_or_else(|| ExecError::NoSuchContainer {
                    task: task.into(),
                    name: n.into(),
                    names: names(),
                })
        }
        None if containers.len() == 1 => Ok(&containers[0]),
        None => Err(ExecError::ChooseContainer {
            task: task.into(),
            count: containers.len(),
            names: names(),
        }),
    }
}

/// Checks what can be checked before anything reaches the box (the options alone).
pub fn check(req: &Request) -> Result<(), ExecError> {
    for e in &req.env {
        if !e.contains('=') || e.starts_with('=') {
            return Err(ExecError::BadEnv(e.clone()));
        }
    }
    if req.command.is_empty() {
        return Err(ExecError::NoCommand);
    }
    Ok(())
}

/// Starts `req`'s command in its container on this box. With `kill_with_caller` the
/// command is SIGKILLed when the calling thread ends (`PR_SET_PDEATHSIG`).
pub fn start(ecs: &Ecs, req: &Request, kill_with_caller: bool) -> Result<Started, ExecError> {
    check(req)?;
    let mut store = ecs.open_store().map_err(ExecError::Store)?;
    let id = task_id(&req.task).to_string();
    ecs.reconcile_tasks(&mut store, &[id.as_str()]);
    let (task, containers) = store
        .task(&id)
        .map_err(|e| ExecError::Store(e.into()))?
        .filter(|(t, _)| {
            req.cluster
                .as_deref()
                .is_none_or(|c| crate::ecs::names::cluster_name(c) == t.cluster)
        })
        .ok_or_else(|| ExecError::NotFound(req.task.clone()))?;
    if task.last_status != LastStatus::Running {
        return Err(ExecError::TaskNotRunning {
            task: id,
            status: task.last_status.to_string(),
            why: task
                .stopped_reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default(),
        });
    }
    let c = pick_container(&id, &containers, req.container.as_deref())?;
    let rid = match (&c.runtime_id, c.last_status) {
        (Some(rid), LastStatus::Running) => rid.clone(),
        _ => {
            return Err(ExecError::ContainerNotRunning {
                task: id,
                container: c.name.clone(),
                status: c.last_status.to_string(),
                why: c
                    .reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .or_else(|| c.exit_code.map(|x| format!(" (exit code {x})")))
                    .unwrap_or_default(),
            });
        }
    };
    let state = TaskPaths::new(&ecs.root, &ecs.run_root, &id).runtime_state();
    if !state.is_dir() {
        return Err(ExecError::NoRuntimeState {
            task: id,
            path: state.display().to_string(),
        });
    }
    let rt = Runtime::attach(&state).map_err(|source| ExecError::Attach {
        task: id.clone(),
        source: Box::new(source),
    })?;
    let spec = ExecSpec {
        args: req.command.clone(),
        env: req.env.clone(),
        cwd: req.workdir.clone(),
        user: req.user.clone(),
        tty: req.tty,
        tty_size: req.tty_size.filter(|(r, c)| *r > 0 && *c > 0),
        kill_with_caller,
    };
    let process = rt.exec(&rid, &spec).map_err(|source| ExecError::Exec {
        task: id.clone(),
        container: c.name.clone(),
        source: Box::new(source),
    })?;
    tracing::debug!(task_id = %id, container = %c.name, pid = process.pid, "exec started");
    Ok(Started {
        process,
        container: c.name.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str) -> ContainerRow {
        ContainerRow {
            name: name.into(),
            ..Default::default()
        }
    }

    #[test]
    fn container_choice_names_the_candidates() {
        let one = [row("app")];
        assert_eq!(pick_container("t", &one, None).unwrap().name, "app");
        let two = [row("app"), row("sidecar")];
        let e = pick_container("t", &two, None).unwrap_err().to_string();
        assert_eq!(
            e,
            "task t has 2 containers (app, sidecar): choose one with --container NAME"
        );
        assert_eq!(
            pick_container("t", &two, Some("sidecar")).unwrap().name,
            "sidecar"
        );
        let e = pick_container("t", &two, Some("db"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "task t has no container named \"db\" (its containers: app, sidecar)"
        );
    }

    #[test]
    fn requests_travel_as_json() {
        let r = Request {
            task: "t".into(),
            command: vec!["sh".into(), "-c".into(), "id".into()],
            env: vec!["A=1".into()],
            tty_size: Some((24, 80)),
            ..Default::default()
        };
        let back: Request = serde_json::from_slice(&serde_json::to_vec(&r).unwrap()).unwrap();
        assert_eq!(back, r);
        assert!(matches!(
            check(&Request {
                env: vec!["=x".into()],
                ..r.clone()
            }),
            Err(ExecError::BadEnv(_))
        ));
    }
}
