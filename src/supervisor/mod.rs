//! `minifargate supervise --task-id ID` (hidden): the per-task supervisor. Detached in its
//! own session, child subreaper; runs the task's executor and serves its unix socket.
//! Its command line, socket protocol and client are in [`protocol`].

pub mod aws_http;
pub mod endpoints;
pub mod envfiles;
pub mod executor;
pub mod health;
pub mod isolation;
pub mod logs;
pub mod machine;
pub mod protocol;
pub mod restart;
pub mod secrets;
pub mod spec;
pub mod support;

pub use protocol::{
    Client, ClientError, ExecutionCredentialsFrom, Request, Response, SuperviseArgs,
    TaskCredentialsFrom,
};

use crate::store::{LastStatus, StopCode};
use crate::supervisor::executor::{Event, Executor, Options};
use crate::supervisor::isolation::network::NetworkStep;
use crate::task::{TaskPaths, launch, process_start_time};
use crate::taskdef::AwsContext;
use anyhow::Context;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;

/// The socket's requests and SIGTERM (shutdown, `kill PID`), in one thread: SIGTERM stops
/// the task properly instead of leaving it to the next command's clean-up.
fn serve(listener: UnixListener, sigterm: OwnedFd, tx: Sender<Event>) {
    loop {
        let ready = match runtime::poll_readable(&[listener.as_fd(), sigterm.as_fd()]) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "the supervisor socket failed: no more requests");
                return;
            }
        };
        if ready[1] {
            let mut buf = [0u8; 64];
            while matches!(nix::unistd::read(sigterm.as_raw_fd(), &mut buf), Ok(n) if n > 0) {}
            let _ = tx.send(Event::Stop {
                stop_code: StopCode::UserInitiated,
                reason: "Task supervisor received SIGTERM".into(),
                force: false,
            });
        }
        if ready[0] {
            answer(&listener, &tx);
        }
    }
}

/// Answers one request on the socket (`serve` saw a connection waiting).
fn answer(listener: &UnixListener, tx: &Sender<Event>) {
    let Ok((conn, _)) = listener.accept() else {
        return;
    };
    protocol::answer(&conn, |req| match req {
        Request::Stop {
            stop_code,
            reason,
            force,
        } => {
            let sent = tx.send(Event::Stop {
                stop_code,
                reason,
                force,
            });
            match sent {
                Ok(()) => Response::ok(),
                Err(_) => Response::error("the task is already stopped".into()),
            }
        }
        Request::Ping => Response {
            ok: true,
            pid: Some(std::process::id()),
            ..Default::default()
        },
    });
}

/// Runs the supervisor: returns when the task is STOPPED and torn down.
pub fn run(
    root: &Path,
    run_root: &Path,
    config: Option<PathBuf>,
    userns: crate::supervisor::isolation::userns::Mode,
    a: SuperviseArgs,
) -> anyhow::Result<()> {
    tracing::debug!(task_id = %a.task_id, "supervisor started");
    // First, before anything starts a process that could inherit it.
    let done = match a.done_fd {
        Some(fd) => Some(std::fs::File::from(
            runtime::take_inherited_pipe(fd)
                .with_context(|| format!("--done-fd {fd}: not an inherited pipe"))?,
        )),
        None => None,
    };
    // Own session: a terminal's Ctrl-C or hangup never reaches the task.
    if let Err(e) = nix::unistd::setsid() {
        tracing::debug!(error = %e, "setsid failed (already a session leader?)");
    }
    // Orphaned processes of the containers are reparented here, not to init.
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        tracing::warn!(error = %e, "failed to become a child subreaper");
    }
    let paths = TaskPaths::new(root, run_root, &a.task_id);
    paths
        .make_run_dir()
        .with_context(|| format!("failed to create {}", paths.run_dir.display()))?;
    let mut store = crate::store::Store::open(root)?;
    let (mut task, containers) = store
        .task(&a.task_id)?
        .with_context(|| format!("task {} is not in the store", a.task_id))?;
    if task.last_status == LastStatus::Stopped {
        // Reconcile stopped it while we were starting (its launcher had died): nothing to run.
        let _ = std::fs::remove_dir_all(&paths.run_dir);
        anyhow::bail!("task {} is already STOPPED", task.id);
    }
    let pid = std::process::id();
    task.supervisor_pid = Some(i64::from(pid));
    task.supervisor_start_time = process_start_time(i64::from(pid));
    store.set_supervisor(&task.id, i64::from(pid), task.supervisor_start_time)?;
    std::fs::write(paths.pid_file(), format!("{pid}\n"))
        .with_context(|| format!("failed to write {}", paths.pid_file().display()))?;
    let def = task.definition.clone();
    let mode = launch::network_mode(&def, &task.launch_type);

    let (tx, rx) = std::sync::mpsc::channel();
    let tx2 = tx.clone();
    let opts = Options {
        root: root.to_path_buf(),
        run_root: run_root.to_path_buf(),
        config,
        pull: a.pull,
        region: AwsContext::from_env().region,
        secrets_file: a.secrets_file,
        host_credentials: a.task_credentials == TaskCredentialsFrom::Host,
        host_execution_credentials: a.execution_credentials == ExecutionCredentialsFrom::Host,
        userns,
    };
    let store = crate::store::SharedStore::new(store);
    let net = Box::new(NetworkStep::new(
        store.clone(),
        run_root,
        &def,
        &opts.region,
    ));
    let mut exec = Executor::new(
        store,
        task,
        containers,
        &def,
        paths.clone(),
        opts,
        net,
        (tx, rx),
    );
    // As early as possible (see there). Should this process fail before `run`, the next
    // command's reconcile removes the cgroup with the rest of the dead task.
    exec.prepare_task_cgroup(&def);

    let socket = paths.socket();
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket)
        .with_context(|| format!("failed to listen on {}", socket.display()))?;
    let sigterm = runtime::sigterm_pipe().context("failed to handle SIGTERM")?;
    std::thread::Builder::new()
        .name("socket".into())
        .spawn(move || serve(listener, sigterm, tx2))
        .context("failed to start the socket thread")?;
    // Returns STOPPED and torn down, the run dir included.
    let scratch = exec.run(mode, &def);
    crate::task::test_pause(&paths.dir, "stopped");
    // Done: whoever follows the task need not wait for this process to end, which takes a
    // few milliseconds more (closing its netfilter socket waits for an RCU grace period),
    // nor for the containers' unmounted scratch dirs to be deleted, nor for the executor's
    // drop (the store's connection closed, a thread started to close the netfilter socket
    // once its grace period is over: ~1 ms here, after the done byte).
    if let Some(mut f) = done {
        let _ = f.write_all(b"1");
    }
    crate::supervisor::executor::remove_scratch(&a.task_id, &scratch);
    drop(exec);
    Ok(())
}
