//! `minifargate supervise --task-id ID` (hidden): the per-task supervisor. Detached in its
//! own session, child subreaper; runs the task's executor and serves its unix socket.
//! Its command line, socket protocol and client are in [`protocol`].

pub mod aws_http;
pub mod endpoints;
pub mod envfiles;
pub mod executor;
pub mod health;
pub mod isolation;
pub mod launch;
pub mod logs;
pub mod machine;
pub mod protocol;
pub mod reconcile;
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
use crate::task::{TaskPaths, process_start_time};
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

/// The task id the launcher writes on the `--wait-fd` pipe (one line), or `None` at end
/// of file or for anything that is not a task id (32 hex digits, a path component).
/// Before it, the launcher may name the images its task will have checked
/// (`launch::Waiting::announce_images`) and tell the task's id and number of containers
/// (`launch::Waiting::announce_cgroups`): each such line goes to `on_images` or
/// `on_cgroups` as it comes.
fn read_hand_over(
    pipe: std::fs::File,
    mut on_images: impl FnMut(rootfs_cache::Platform, Vec<String>),
    mut on_cgroups: impl FnMut(String, usize),
) -> Option<String> {
    use std::io::{BufRead, Read};
    let mut pipe = std::io::BufReader::new(pipe);
    let mut line = String::new();
    loop {
        line.clear();
        (&mut pipe)
            .take(launch::MAX_WAIT_LINE)
            .read_line(&mut line)
            .ok()?;
        let l = line.strip_suffix('\n')?;
        if let Some((id, containers)) = launch::parse_cgroups_line(l) {
            on_cgroups(id, containers);
            continue;
        }
        match launch::parse_images_line(l) {
            Some((platform, images)) => on_images(platform, images),
            None => {
                return (l.len() == 32 && l.bytes().all(|c| c.is_ascii_hexdigit()))
                    .then(|| l.to_string());
            }
        }
    }
}

/// What the supervisor starts while its launcher records the task, handed to the
/// executor. The fields drop in this order (the cgroups made ahead first), as the
/// locals they were did when the supervisor gave up.
#[derive(Default)]
struct Ahead {
    cgroups: Option<crate::supervisor::executor::CgroupAhead>,
    checks: Option<crate::supervisor::executor::EarlyChecks>,
    netns: Option<crate::supervisor::isolation::netns_ahead::Ahead>,
}

/// Runs the supervisor: returns when the task is STOPPED and torn down.
pub fn run(
    root: &Path,
    run_root: &Path,
    config: Option<PathBuf>,
    userns: crate::supervisor::isolation::userns::Mode,
    a: SuperviseArgs,
) -> anyhow::Result<()> {
    tracing::debug!(task_id = ?a.task_id, "supervisor started");
    // First, before anything starts a process that could inherit them.
    let done = inherited_pipe(a.done_fd, "--done-fd")?;
    let wait = inherited_pipe(a.wait_fd, "--wait-fd")?;
    // Own session: a terminal's Ctrl-C or hangup never reaches the task.
    if let Err(e) = nix::unistd::setsid() {
        tracing::debug!(error = %e, "setsid failed (already a session leader?)");
    }
    let (task_id, store, ahead) = match (a.task_id, wait) {
        (Some(id), _) => (id, None, Ahead::default()),
        (None, Some(pipe)) => {
            let taken = take_hand_over(root, run_root, &config, userns, a.pull, pipe)?;
            let Some(taken) = taken else {
                return Ok(());
            };
            taken
        }
        (None, None) => anyhow::bail!("supervise: neither --task-id nor --wait-fd"),
    };
    // Orphaned processes of the containers are reparented here, not to init.
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        tracing::warn!(error = %e, "failed to become a child subreaper");
    }
    let paths = TaskPaths::new(root, run_root, &task_id);
    let (store, task, containers) = record_supervisor(root, &paths, &task_id, store)?;
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
        root,
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
    let Ahead {
        cgroups,
        checks,
        netns,
    } = ahead;
    exec.set_netns_ahead(netns);
    exec.set_early_checks_ahead(checks);
    exec.set_cgroups_ahead(cgroups);
    // As early as possible (see there). Should this process fail before `run`, the next
    // command's reconcile removes the cgroup with the rest of the dead task.
    exec.prepare_task_cgroup(&def);

    let socket = paths.socket();
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket)
        .with_context(|| format!("failed to listen on {}", socket.display()))?;
    let sigterm = runtime::sigterm_pipe().context("failed to handle SIGTERM")?;
    threadgate::spawn(
        std::thread::Builder::new().name("socket".into()),
        move || serve(listener, sigterm, tx2),
    )
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
    exec.trim_store();
    crate::supervisor::executor::remove_scratch(&task_id, &scratch);
    drop(exec);
    Ok(())
}

/// The pipe inherited as `fd` (`flag` names it in the error), when one was given.
fn inherited_pipe(fd: Option<i32>, flag: &str) -> anyhow::Result<Option<std::fs::File>> {
    let Some(fd) = fd else { return Ok(None) };
    let pipe = runtime::take_inherited_pipe(fd)
        .with_context(|| format!("{flag} {fd}: not an inherited pipe"))?;
    Ok(Some(std::fs::File::from(pipe)))
}

/// Started ahead of its task (launch::prestart_supervisor): what can be made while the
/// launcher records the task is started, then the task's id is read from `pipe` and
/// stdout and stderr go to the task's supervisor log. `None` when no task comes (the
/// launch failed or its launcher died): nothing is left.
fn take_hand_over(
    root: &Path,
    run_root: &Path,
    config: &Option<PathBuf>,
    userns: crate::supervisor::isolation::userns::Mode,
    pull: crate::task::PullPolicy,
    pipe: std::fs::File,
) -> anyhow::Result<Option<(String, Option<crate::store::Store>, Ahead)>> {
    let mut netns_ahead = None;
    let mut checks_ahead = None;
    let mut cgroups_ahead: Option<crate::supervisor::executor::CgroupAhead> = None;
    // The task's network namespace, made while its launcher records the task
    // (isolation::netns_ahead); not when every task gets a user namespace, whose
    // holder makes it.
    if userns != crate::supervisor::isolation::userns::Mode::On {
        netns_ahead = crate::supervisor::isolation::netns_ahead::Ahead::start();
        // As libcontainer's create would make it, off the launch's path.
        runtime::prepare_procfs();
    }
    // The store is opened while the launcher writes the task, if there is one to open (a
    // first launch on a new root makes it; a launch that fails must leave nothing behind).
    let store = if root.join("state.db").exists() {
        crate::store::Store::open(root).ok()
    } else {
        None
    };
    // The images its launcher names, asked of their registries while it writes
    // the task (executor::images_to_check_ahead); only with a cache to look in.
    let checks = |platform, images: Vec<String>| {
        if pull != crate::task::PullPolicy::Default
            || checks_ahead.is_some()
            || !root.join("images").is_dir()
        {
            return;
        }
        let asks = images.into_iter().map(|i| (i, None)).collect();
        checks_ahead = crate::supervisor::executor::EarlyChecks::start(
            root.to_path_buf(),
            config.clone(),
            platform,
            asks,
            String::new(),
        );
    };
    // The task's cgroups, made and the migration lock warmed while its launcher
    // writes the task (executor::CgroupAhead::start_early).
    let cgroups = |id: String, containers: usize| {
        if cgroups_ahead.is_none() {
            cgroups_ahead = crate::supervisor::executor::CgroupAhead::start_early(id, containers);
        }
    };
    let Some(id) = read_hand_over(pipe, checks, cgroups) else {
        // No task: the launch failed or its launcher died. Nothing is left: the
        // cgroups made ahead go with their handle.
        drop(cgroups_ahead);
        return Ok(None);
    };
    // Made for another task than the one given (no launcher does that): gone.
    if cgroups_ahead.as_ref().is_some_and(|c| c.task_id() != id) {
        cgroups_ahead = None;
    }
    // From now on, the task's own log (the launcher left us /dev/null).
    let paths = TaskPaths::new(root, run_root, &id);
    let log = launch::open_supervisor_log(&paths.supervisor_log())?;
    for fd in [1, 2] {
        nix::unistd::dup2(log.as_raw_fd(), fd)
            .with_context(|| format!("failed to write to {}", paths.supervisor_log().display()))?;
    }
    tracing::debug!(task_id = %id, "supervisor given its task");
    let ahead = Ahead {
        cgroups: cgroups_ahead,
        checks: checks_ahead,
        netns: netns_ahead,
    };
    Ok(Some((id, store, ahead)))
}

/// The task's rows, read from the store under `root` (`store` when it was opened ahead),
/// with this process recorded as the task's supervisor and its run dir made. An error
/// when the state under the root is gone, or the task is not there or already STOPPED.
fn record_supervisor(
    root: &Path,
    paths: &TaskPaths,
    task_id: &str,
    store: Option<crate::store::Store>,
) -> anyhow::Result<(
    crate::store::Store,
    crate::store::TaskRow,
    Vec<crate::store::ContainerRow>,
)> {
    // No state under the root (removed since this process started, by `system reset` or
    // by deleting the directory; or the wrong `--root`): the task's rows are not there,
    // and nothing is made for it (a store, a run dir) under a root that is gone.
    anyhow::ensure!(
        root.join("state.db").is_file(),
        "task {task_id}: there is no state under {} (removed while the task was handed          over, or the wrong --root): nothing to run",
        root.display()
    );
    let mut store = match store {
        Some(s) => s,
        None => crate::store::Store::open(root)?,
    };
    let (mut task, containers) = store
        .task(task_id)?
        .with_context(|| format!("task {task_id} is not in the store"))?;
    if task.last_status == LastStatus::Stopped {
        // Reconcile stopped it while we were starting (its launcher had died): nothing to
        // run; the run dir its launcher may have made goes.
        let _ = std::fs::remove_dir_all(&paths.run_dir);
        anyhow::bail!("task {} is already STOPPED", task.id);
    }
    paths
        .make_run_dir()
        .with_context(|| format!("failed to create {}", paths.run_dir.display()))?;
    let pid = std::process::id();
    let start_time = process_start_time(i64::from(pid));
    // A launcher that started us ahead recorded us already (launch::hand_over).
    if task.supervisor_pid != Some(i64::from(pid)) || task.supervisor_start_time != start_time {
        task.supervisor_pid = Some(i64::from(pid));
        task.supervisor_start_time = start_time;
        store.set_supervisor(&task.id, i64::from(pid), task.supervisor_start_time)?;
    }
    std::fs::write(paths.pid_file(), format!("{pid}\n"))
        .with_context(|| format!("failed to write {}", paths.pid_file().display()))?;
    Ok((store, task, containers))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipe_with(bytes: &[u8]) -> std::fs::File {
        let (r, mut w) = std::io::pipe().unwrap();
        w.write_all(bytes).unwrap();
        drop(w);
        std::fs::File::from(OwnedFd::from(r))
    }

    #[test]
    fn the_task_id_on_the_wait_pipe_is_one_line_of_32_hex_digits() {
        let read_task_id = |pipe| {
            read_hand_over(
                pipe,
                |_, _| panic!("no images named"),
                |_, _| panic!("no cgroups announced"),
            )
        };
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            read_task_id(pipe_with(format!("{id}\n").as_bytes())).as_deref(),
            Some(id)
        );
        // End of file first: the launch failed; nothing to run.
        assert_eq!(read_task_id(pipe_with(b"")), None);
        // Anything else is not taken for a task (it becomes a path).
        assert_eq!(read_task_id(pipe_with(b"../../etc\n")), None);
        assert_eq!(read_task_id(pipe_with(&id.as_bytes()[..31])), None);
        assert_eq!(read_task_id(pipe_with(&[b'a'; 80])), None);
        assert_eq!(read_task_id(pipe_with(format!("{id}x\n").as_bytes())), None);
    }

    #[test]
    fn the_images_to_check_come_before_the_task_id_and_are_not_taken_for_it() {
        let id = "0123456789abcdef0123456789abcdef";
        let mut named = Vec::new();
        let got = read_hand_over(
            pipe_with(
                format!(
                    "images linux/arm64 127.0.0.1:5000/a/b:1 busybox@sha256:{}\n{id}\n",
                    "0".repeat(64)
                )
                .as_bytes(),
            ),
            |p, i| named.push((p.to_string(), i)),
            |_, _| panic!("no cgroups announced"),
        );
        assert_eq!(got.as_deref(), Some(id));
        assert_eq!(
            named,
            [(
                "linux/arm64".to_string(),
                vec![
                    "127.0.0.1:5000/a/b:1".to_string(),
                    format!("busybox@sha256:{}", "0".repeat(64))
                ]
            )]
        );
        // The images but no task (the launch failed after naming them): nothing to run.
        let mut calls = 0;
        assert_eq!(
            read_hand_over(
                pipe_with(b"images linux/amd64 busybox\n"),
                |_, _| calls += 1,
                |_, _| panic!("no cgroups announced")
            ),
            None
        );
        assert_eq!(calls, 1);
        // A line that names no valid image, or a line longer than the pipe carries, is
        // no task either.
        for bad in [
            "images linux/amd64\n".to_string(),
            "images amd64 busybox\n".to_string(),
            format!("images linux/amd64 {}\n", "a".repeat(20_000)),
        ] {
            let got = read_hand_over(
                pipe_with(format!("{bad}{id}\n").as_bytes()),
                |_, _| panic!("not an images line: {bad:?}"),
                |_, _| panic!("not a cgroups line: {bad:?}"),
            );
            assert_eq!(got, None, "{bad:?}");
        }
    }

    /// The task's id and number of containers come before the task id (with the images
    /// or without them); a line that is almost one is no task.
    #[test]
    fn the_cgroups_line_comes_before_the_task_id_and_is_not_taken_for_it() {
        let id = "0123456789abcdef0123456789abcdef";
        let mut told = Vec::new();
        let got = read_hand_over(
            pipe_with(format!("cgroups {id} 2\nimages linux/amd64 busybox:1\n{id}\n").as_bytes()),
            |_, _| {},
            |i, n| told.push((i, n)),
        );
        assert_eq!(got.as_deref(), Some(id));
        assert_eq!(told, [(id.to_string(), 2)]);
        let got = read_hand_over(
            pipe_with(format!("cgroups {id} 0\n{id}\n").as_bytes()),
            |_, _| {},
            |_, _| panic!("not a cgroups line"),
        );
        assert_eq!(got, None);
    }
}
