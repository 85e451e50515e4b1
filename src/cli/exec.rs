//! `exec`: run a command in a running container of a task, like `aws ecs
//! execute-command` / `docker exec`, exiting with the command's exit code.
//!
//! The CLI execs itself (through the runtime crate, on the task's runtime state dir)
//! rather than asking the supervisor: the command's stdio is this process's, its exit
//! status comes from waitpid, and it dies with this process (see docs/run-task.md, "exec").
//! The start is `crate::host::exec`'s, which an agent also runs for an exec sent from
//! another box: with `--etcd` this command is that sender (`crate::cluster::exec`,
//! docs/cluster.md "exec across boxes").

use super::GlobalOpts;
use crate::errors::error_chain;
use crate::host::exec::Request;
use anyhow::{Context, anyhow};
use clap::Args;
use runtime::ExecProcess;
use std::fs::File;
use std::io::{Read, Write};
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Docker's exit code when the exec itself fails (the runtime could not start the command).
const EXEC_FAILED: u8 = 126;

/// Run a command in a running container of a task (aws ecs execute-command, docker exec).
///
/// Exits with the command's exit code (128+N when killed by signal N); 127 when the
/// command is not found, 126 when it cannot be executed or the exec fails.
///
/// Example: minifargate exec 0123456789abcdef0123456789abcdef --container app -- cat /etc/hostname
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Task id or ARN.
    pub task: String,
    /// Only a task of this cluster.
    #[arg(long)]
    pub cluster: Option<String>,
    /// The container to run in (required when the task has more than one).
    #[arg(long)]
    pub container: Option<String>,
    /// Pass this command's stdin to the command.
    #[arg(long, short)]
    pub interactive: bool,
    /// Give the command a pseudo-terminal.
    #[arg(long, short)]
    pub tty: bool,
    /// Run as this user (`name`, `uid`, `uid:gid`; default: the container's user).
    #[arg(long, short)]
    pub user: Option<String>,
    /// Extra environment variables (KEY=VALUE), over the container's.
    #[arg(long = "env", short = 'e', value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Working directory inside the container (default: the container's).
    #[arg(long, short = 'w')]
    pub workdir: Option<String>,
    /// The task runs on a box of a cluster whose state is in etcd at these endpoints
    /// (comma-separated, as `agent --cluster`): reach it through its box's agent
    /// (docs/cluster.md "exec across boxes").
    #[arg(long, value_name = "ENDPOINTS")]
    pub etcd: Option<String>,
    #[command(flatten)]
    pub etcd_tls: super::agent::EtcdTls,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// Run a command in a running container of a task, as `aws ecs execute-command` does:
/// the command line is split into words as a shell would (no shell runs it), stdin is
/// passed, and it gets a terminal when stdin is one.
///
/// Exits with the command's exit code, as `exec` does.
#[derive(Debug, Args)]
pub struct ExecuteCommandArgs {
    /// Cluster name or ARN of the task (default: whichever cluster has it).
    #[arg(long)]
    pub cluster: Option<String>,
    /// The container to run in (required when the task has more than one).
    #[arg(long)]
    pub container: Option<String>,
    /// The command line to run, e.g. `"sh -c 'id; hostname'"` (split into words; use
    /// `sh -c` for pipes and redirections, as with ECS Exec).
    #[arg(long)]
    pub command: Option<String>,
    /// Run the command interactively (the only mode ECS supports; required, as in the AWS
    /// CLI).
    #[arg(long, overrides_with = "non_interactive")]
    pub interactive: bool,
    /// Refused, as ECS refuses it: only interactive commands are supported.
    #[arg(long, overrides_with = "interactive")]
    pub non_interactive: bool,
    /// Task id or ARN.
    #[arg(long)]
    pub task: Option<String>,
    /// The task runs on a box of a cluster whose state is in etcd at these endpoints:
    /// reach it through its box's agent (docs/cluster.md "exec across boxes").
    #[arg(long, value_name = "ENDPOINTS", help_heading = "Local options")]
    pub etcd: Option<String>,
    #[command(flatten)]
    pub etcd_tls: super::agent::EtcdTls,
    #[command(flatten)]
    pub input: super::aws::InputOpts,
}

/// ExecuteCommand's request members.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExecuteCommandRequest {
    cluster: Option<String>,
    container: Option<String>,
    command: String,
    interactive: bool,
    task: String,
}

/// `execute-command`: ExecuteCommand's options, run as `exec` runs a command.
pub fn execute_command(g: &GlobalOpts, a: ExecuteCommandArgs) -> anyhow::Result<ExitCode> {
    use serde_json::{Map, Value, json};
    let mut m = Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            m.insert(k.to_string(), v);
        }
    };
    put("cluster", a.cluster.map(Value::String));
    put("container", a.container.map(Value::String));
    put("command", a.command.map(Value::String));
    put("task", a.task.map(Value::String));
    put(
        "interactive",
        (a.interactive || a.non_interactive).then(|| json!(a.interactive)),
    );
    let Some(req) = super::aws::request("ExecuteCommand", m, &a.input)? else {
        return Ok(ExitCode::SUCCESS);
    };
    let req: ExecuteCommandRequest = super::aws::decode("ExecuteCommand", req)?;
    if !req.interactive {
        // Ref: ECS answers ExecuteCommand with interactive=false so (API_ExecuteCommand,
        // `interactive`: "Use this flag to run your command in interactive mode").
        return Err(crate::ecs::EcsError::invalid(
            "Interactive is the only mode supported currently.",
        )
        .into());
    }
    let command = shlex::split(&req.command)
        .filter(|c| !c.is_empty())
        .ok_or_else(|| {
            super::aws::UsageError(format!(
                "--command {:?}: not a command line (unbalanced quotes, or empty)",
                req.command
            ))
        })?;
    use std::io::IsTerminal;
    exec(
        g,
        ExecArgs {
            task: req.task,
            cluster: req.cluster,
            container: req.container,
            interactive: true,
            tty: std::io::stdin().is_terminal(),
            user: None,
            env: Vec::new(),
            workdir: None,
            etcd: a.etcd,
            etcd_tls: a.etcd_tls,
            command,
        },
    )
}

/// The size of our terminal, if stdin is one.
fn window_size() -> Option<(u16, u16)> {
    rustix::termios::tcgetwinsize(std::io::stdin())
        .ok()
        .filter(|w| w.ws_row > 0 && w.ws_col > 0)
        .map(|w| (w.ws_row, w.ws_col))
}

pub fn exec(g: &GlobalOpts, a: ExecArgs) -> anyhow::Result<ExitCode> {
    let req = Request {
        task: a.task.clone(),
        cluster: a.cluster.clone(),
        container: a.container.clone(),
        command: a.command.clone(),
        user: a.user.clone(),
        env: a.env.clone(),
        workdir: a.workdir.clone(),
        tty: a.tty,
        tty_size: window_size(),
        interactive: a.interactive,
        nonce: String::new(),
    };
    crate::host::exec::check(&req)?;
    if a.etcd.is_none() && a.etcd_tls.given() {
        return Err(super::aws::UsageError(
            "--etcd-cacert, --etcd-cert and --etcd-key are for --etcd (a task on another box \
             of a cluster)"
                .into(),
        )
        .into());
    }
    if let Some(endpoints) = &a.etcd {
        return remote(endpoints, &a.etcd_tls, &req);
    }
    let started = match crate::host::exec::start(&g.ecs(), &req, true) {
        Ok(s) => s,
        Err(e) if e.is_exec_failure() => {
            eprintln!("minifargate: {}", error_chain(&e));
            return Ok(ExitCode::from(EXEC_FAILED));
        }
        Err(e) => return Err(e.into()),
    };
    let code = if a.tty {
        run_tty(started.process, a.interactive)?
    } else {
        run_pipes(started.process, a.interactive)?
    };
    Ok(ExitCode::from(code))
}

/// `exec --etcd`: the task's box found in etcd, the command run by its agent.
fn remote(endpoints: &str, tls: &super::agent::EtcdTls, req: &Request) -> anyhow::Result<ExitCode> {
    use crate::cluster::exec::{RemoteExecError, open, run};
    let etcd = crate::cluster::etcd::Etcd::new(endpoints, &tls.tls())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    let opened = match rt.block_on(open(&etcd, req)) {
        Ok(o) => o,
        Err(e @ RemoteExecError::ExecFailed { .. }) => {
            eprintln!("minifargate: {}", error_chain(&e));
            return Ok(ExitCode::from(EXEC_FAILED));
        }
        Err(e) => return Err(e.into()),
    };
    tracing::debug!(task_id = %req.task, cluster = %opened.at.cluster, instance = %opened.at.instance, "remote exec started");
    // The terminal raw only once the command runs (errors before print as usual).
    let raw = if req.tty { RawTerminal::enter() } else { None };
    let code = rt.block_on(run(opened, req.interactive, req.tty && raw.is_some()));
    drop(raw);
    Ok(ExitCode::from(u8::try_from(code?).unwrap_or(255)))
}

/// Copies `from` to our stdout or stderr until EOF (or an error such as EIO on a pty
/// whose last slave closed), then reports on `done`.
fn copier(mut from: File, to_stderr: bool, done: mpsc::Sender<()>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let r = if to_stderr {
                        let mut e = std::io::stderr().lock();
                        e.write_all(&buf[..n]).and_then(|_| e.flush())
                    } else {
                        let mut o = std::io::stdout().lock();
                        o.write_all(&buf[..n]).and_then(|_| o.flush())
                    };
                    if r.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = done.send(());
    });
}

/// Copies our stdin to `to` until EOF, then closes `to` (the command sees EOF).
fn feed_stdin(mut to: File) {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut to);
    });
}

/// Waits for the output copiers after the command exited: they end at EOF, unless a
/// process the command left in the background still holds the pipe (then we stop
/// waiting, as `docker exec` does when its process exits).
fn drain(done: mpsc::Receiver<()>, copiers: usize) {
    let deadline = Instant::now() + Duration::from_millis(500);
    for _ in 0..copiers {
        let left = deadline.saturating_duration_since(Instant::now());
        if done.recv_timeout(left).is_err() {
            break;
        }
    }
}

fn exit_code(p: &mut ExecProcess) -> anyhow::Result<u8> {
    let st = p.wait().context("failed to wait for the exec'd command")?;
    Ok(u8::try_from(st.code).unwrap_or(255))
}

fn run_pipes(mut p: ExecProcess, interactive: bool) -> anyhow::Result<u8> {
    let (tx, rx) = mpsc::channel();
    let mut copiers = 0;
    if let Some(out) = p.stdout.take() {
        copier(out, false, tx.clone());
        copiers += 1;
    }
    if let Some(err) = p.stderr.take() {
        copier(err, true, tx.clone());
        copiers += 1;
    }
    match (interactive, p.stdin.take()) {
        (true, Some(w)) => feed_stdin(w),
        // Not interactive: the command's stdin is at EOF at once.
        (_, w) => drop(w),
    }
    let code = exit_code(&mut p)?;
    drain(rx, copiers);
    Ok(code)
}

/// Our terminal in raw mode while the command runs on its pty; restored on drop.
struct RawTerminal {
    saved: rustix::termios::Termios,
}

impl RawTerminal {
    fn enter() -> Option<Self> {
        use rustix::termios::{OptionalActions, isatty, tcgetattr, tcsetattr};
        let stdin = std::io::stdin();
        if !isatty(&stdin) {
            return None;
        }
        let saved = tcgetattr(&stdin).ok()?;
        let mut raw = saved.clone();
        raw.make_raw();
        tcsetattr(&stdin, OptionalActions::Now, &raw).ok()?;
        Some(Self { saved })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        let _ = rustix::termios::tcsetattr(
            std::io::stdin(),
            rustix::termios::OptionalActions::Now,
            &self.saved,
        );
    }
}

/// Copies our terminal's size to the pty on every SIGWINCH, on a thread of its own
/// (a small tokio runtime: its signal API needs no unsafe handler code here).
fn follow_window_size(master: File) {
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let Ok(mut winch) = signal(SignalKind::window_change()) else {
                return;
            };
            while winch.recv().await.is_some() {
                if let Ok(size) = rustix::termios::tcgetwinsize(std::io::stdin()) {
                    let _ = rustix::termios::tcsetwinsize(&master, size);
                }
            }
        });
    });
}

fn run_tty(mut p: ExecProcess, interactive: bool) -> anyhow::Result<u8> {
    let master = p
        .tty
        .take()
        .ok_or_else(|| anyhow!("the runtime returned no pseudo-terminal"))?;
    let raw = RawTerminal::enter();
    if raw.is_some()
        && let Ok(m) = master.try_clone()
    {
        follow_window_size(m);
    }
    let (tx, rx) = mpsc::channel();
    copier(
        master
            .try_clone()
            .context("failed to clone the pty master")?,
        false,
        tx,
    );
    if interactive {
        feed_stdin(master);
    } else {
        drop(master);
    }
    let code = exit_code(&mut p);
    drain(rx, 1);
    drop(raw);
    code
}
