//! exec across boxes (docs/cluster.md "exec across boxes"): `minifargate exec --etcd …`
//! finds the box that runs a task ([`super::remote::locate`]) and sends its agent an
//! exec (over TLS with the operator's certificate, or signed without TLS); the agent
//! starts the command as a local `exec` does ([`crate::host::exec::start`]) and the HTTP/1.1 connection is upgraded to a stream of
//! frames both ways: the command's stdout, stderr and exit code to the caller; stdin, its
//! end and the terminal's size to the command.
//!
//! A frame is one byte of kind, four of length (big-endian) and the payload. Without TLS
//! an exec is taken once ([`super::signing::Seen`]): its request carries a nonce, and a
//! signed request seen before is refused. Over TLS no one but its sender sees a request
//! to send it again.

use super::agents_client::{Stream, Upgrade};
use super::etcd::Etcd;
use super::remote::{Located, RemoteError, locate};
use super::signing::{SIGNATURE, sign, token};
use crate::host::exec::{ExecError, Request};
use std::fs::File;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The call an exec is signed as.
pub const CALL: &str = "exec";
/// The header that carries the exec's request (base64 of its JSON, the signed body).
pub const REQUEST: &str = "x-minifargate-exec";
/// The protocol named in `Upgrade:`.
pub const PROTOCOL: &str = "minifargate-exec";

/// Frames to the agent.
const STDIN: u8 = 0;
const STDIN_EOF: u8 = 1;
const RESIZE: u8 = 2;
/// Frames from the agent.
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const EXIT: u8 = 3;
/// The largest frame either side accepts.
const MAX_FRAME: usize = 1 << 20;

async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    kind: u8,
    payload: &[u8],
) -> std::io::Result<()> {
    // One write a frame: its head and payload in one segment.
    let mut frame = Vec::with_capacity(5 + payload.len());
    frame.push(kind);
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(payload);
    w.write_all(&frame).await?;
    w.flush().await
}

/// The next frame; None at the end of the stream between frames.
async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Option<(u8, Vec<u8>)>> {
    let mut head = [0u8; 5];
    match r.read_exact(&mut head[..1]).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    r.read_exact(&mut head[1..]).await?;
    let len = u32::from_be_bytes(head[1..].try_into().expect("four bytes")) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("a frame of {len} bytes (at most {MAX_FRAME})"),
        ));
    }
    let mut payload = vec![0; len];
    r.read_exact(&mut payload).await?;
    Ok(Some((head[0], payload)))
}

// ------------------------------------------------------------------ the agent's side

/// The pid of a started exec until it is reaped: a kill never reaches a reused pid.
#[derive(Clone, Default)]
struct Unreaped(Arc<Mutex<Option<i32>>>);

impl Unreaped {
    fn kill(&self) {
        if let Some(pid) = *self.0.lock().expect("pid lock") {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// The stdio of a started exec.
struct Handles {
    stdin: Option<File>,
    stdout: Option<File>,
    stderr: Option<File>,
    tty: Option<File>,
}

/// What an exec came to on the agent: its stdio (then the exit code follows), or why it
/// did not start.
pub struct Session {
    handles: Handles,
    pid: Unreaped,
    exit: tokio::sync::oneshot::Receiver<i32>,
    interactive: bool,
}

/// Starts `req` on this box, on a thread of its own that lives as long as the command
/// (the command dies with it, `PR_SET_PDEATHSIG`, so it never outlives the agent) and
/// reaps it.
pub async fn start(ecs: crate::ecs::Ecs, req: Request) -> Result<Session, ExecError> {
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let (exit_tx, exit_rx) = tokio::sync::oneshot::channel();
    let pid = Unreaped::default();
    let held = pid.clone();
    let interactive = req.interactive;
    std::thread::spawn(move || {
        let mut s = match crate::host::exec::start(&ecs, &req, true) {
            Ok(s) => s,
            Err(e) => {
                let _ = started_tx.send(Err(e));
                return;
            }
        };
        tracing::info!(task = %req.task, container = %s.container, command = ?req.command, "exec from another box started");
        let p = &mut s.process;
        *held.0.lock().expect("pid lock") = Some(p.pid);
        let handles = Handles {
            stdin: p.stdin.take(),
            stdout: p.stdout.take(),
            stderr: p.stderr.take(),
            tty: p.tty.take(),
        };
        let _ = started_tx.send(Ok(handles));
        // Exited, not yet reaped: from here on no kill is sent to the pid.
        use nix::sys::wait::{Id, WaitPidFlag, waitid};
        let target = nix::unistd::Pid::from_raw(p.pid);
        while let Err(nix::Error::EINTR) =
            waitid(Id::Pid(target), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT)
        {}
        held.0.lock().expect("pid lock").take();
        let code = p.wait().map(|st| st.code).unwrap_or(255);
        let _ = exit_tx.send(code);
    });
    let handles = started_rx.await.unwrap_or_else(|_| {
        Err(ExecError::Store(anyhow::anyhow!(
            "the exec thread ended before it started the command"
        )))
    })?;
    Ok(Session {
        handles,
        pid,
        exit: exit_rx,
        interactive,
    })
}

impl Session {
    /// Kills the command (its caller never took the stream).
    pub fn abort(self) {
        self.pid.kill();
    }
}

/// Copies `from` into frames of `kind` until EOF.
fn output(mut from: File, kind: u8, to: tokio::sync::mpsc::Sender<(u8, Vec<u8>)>) {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.blocking_send((kind, buf[..n].to_vec())).is_err() {
                        break;
                    }
                }
            }
        }
    });
}

/// Runs `session` over the upgraded connection `io` until the command has exited and its
/// exit code is sent. A caller that goes away first has the command killed.
pub async fn pump<IO: AsyncRead + AsyncWrite + Send + 'static>(session: Session, io: IO) {
    let Session {
        handles,
        pid,
        mut exit,
        interactive,
    } = session;
    let (mut rd, mut wr) = tokio::io::split(io);
    let (out_tx, mut out_rx) = tokio::sync::mpsc::channel(16);
    let master = handles.tty;
    let resize = master.as_ref().and_then(|m| m.try_clone().ok());
    let stdin = match (&master, handles.stdin) {
        (Some(m), _) => m.try_clone().ok(),
        (None, s) => s,
    };
    for (f, kind) in [
        (master, STDOUT),
        (handles.stdout, STDOUT),
        (handles.stderr, STDERR),
    ] {
        if let Some(f) = f {
            output(f, kind, out_tx.clone());
        }
    }
    drop(out_tx);
    // stdin, written on a thread (a full pipe blocks).
    let mut feed = match (interactive, stdin) {
        (true, Some(mut w)) => {
            let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
            std::thread::spawn(move || {
                for chunk in rx {
                    if w.write_all(&chunk).is_err() {
                        break;
                    }
                }
            });
            Some(tx)
        }
        _ => None,
    };
    let gone = pid.clone();
    let caller = tokio::spawn(async move {
        loop {
            match read_frame(&mut rd).await {
                Ok(Some((STDIN, data))) => {
                    if let Some(tx) = &feed {
                        let _ = tx.send(data);
                    }
                }
                Ok(Some((STDIN_EOF, _))) => feed = None,
                Ok(Some((RESIZE, d))) if d.len() == 4 => {
                    if let Some(m) = &resize {
                        let size = rustix::termios::Winsize {
                            ws_row: u16::from_be_bytes([d[0], d[1]]),
                            ws_col: u16::from_be_bytes([d[2], d[3]]),
                            ws_xpixel: 0,
                            ws_ypixel: 0,
                        };
                        let _ = rustix::termios::tcsetwinsize(m, size);
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => {
                    // The caller went away: so does its command, as a local exec's.
                    gone.kill();
                    return;
                }
            }
        }
    });
    let code = loop {
        tokio::select! {
            biased;
            f = out_rx.recv() => match f {
                Some((kind, data)) => {
                    if write_frame(&mut wr, kind, &data).await.is_err() {
                        pid.kill();
                        caller.abort();
                        return;
                    }
                }
                None => break (&mut exit).await.unwrap_or(255),
            },
            c = &mut exit => {
                // What is left, for at most 500 ms: a process the command left in the
                // background may hold its output open (docker exec stops waiting too).
                let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
                while let Ok(Some((kind, data))) = tokio::time::timeout_at(deadline, out_rx.recv()).await {
                    if write_frame(&mut wr, kind, &data).await.is_err() {
                        break;
                    }
                }
                break c.unwrap_or(255);
            }
        }
    };
    let _ = write_frame(&mut wr, EXIT, &code.to_be_bytes()).await;
    let _ = wr.shutdown().await;
    caller.abort();
}

// ------------------------------------------------------------------ the caller's side

/// Why a remote exec ended without the command's exit code.
#[derive(Debug, thiserror::Error)]
pub enum RemoteExecError {
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// The agent's runtime could not start the command (exit 126, as a local exec).
    #[error("container instance {instance} ({host}): {message}")]
    ExecFailed {
        instance: String,
        host: String,
        message: String,
    },
}

/// An exec the agent started: the upgraded connection (what was read past the 101's
/// head first), and where it is.
pub struct Opened {
    rd: tokio::io::Chain<std::io::Cursor<Vec<u8>>, tokio::io::ReadHalf<Stream>>,
    wr: tokio::io::WriteHalf<Stream>,
    pub at: Located,
}

/// The error type the agent answers an exec that failed in the runtime with.
pub const EXEC_FAILED: &str = "ExecFailedException";

/// How long the agent may take to answer an exec's request (its start included).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// Finds `req`'s task and asks its agent to start the command.
pub async fn open(etcd: &Etcd, req: &Request) -> Result<Opened, RemoteExecError> {
    let at = locate(etcd, req.cluster.as_deref(), &req.task).await?;
    if at.last_status == "STOPPED" {
        return Err(RemoteError::Stopped {
            task: at.task.clone(),
            why: at
                .stopped_reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default(),
        }
        .into());
    }
    let endpoint = at.reachable()?.to_string();
    let mut req = req.clone();
    req.nonce = crate::task::new_id().unwrap_or_default();
    let body = serde_json::to_vec(&req).expect("an exec request encodes");
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(&body);
    let mut headers = vec![(REQUEST, encoded)];
    // Over TLS the agent knows the caller by its certificate; without, by the signature.
    if endpoint.starts_with("http://") {
        let token = token(etcd).await.map_err(RemoteError::from)?;
        headers.push((SIGNATURE, sign(&token, crate::ecs::now_ms(), CALL, &body)));
    }
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // The one way to the box's endpoint (direct, or through its tunnel); then the exec's
    // HTTP/1.1 upgrade by hand: one request, its answer's head, then the raw stream.
    let answer = async {
        let io = super::tunnel::connect(etcd, &endpoint).await?;
        super::agents_client::upgrade(
            io,
            "127.0.0.1",
            "/v1/exec",
            PROTOCOL,
            &headers,
            ANSWER_TIMEOUT,
        )
        .await
    };
    let answer = answer.await.map_err(|e| at.unreachable(e))?;
    match answer {
        Upgrade::Upgraded(stream, rest) => {
            let (rd, wr) = tokio::io::split(stream);
            Ok(Opened {
                rd: AsyncReadExt::chain(std::io::Cursor::new(rest), rd),
                wr,
                at,
            })
        }
        Upgrade::Refused(_, body) if body["__type"] == EXEC_FAILED => {
            Err(RemoteExecError::ExecFailed {
                instance: at.instance.clone(),
                host: at.hostname.clone(),
                message: body["message"].as_str().unwrap_or_default().into(),
            })
        }
        Upgrade::Refused(status, body) => Err(at.answered(status, &body).into()),
    }
}

/// Our stdin in chunks (None at its end), read on a thread.
fn read_stdin() -> tokio::sync::mpsc::Receiver<Option<Vec<u8>>> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = tx.blocking_send(None);
                    return;
                }
                Ok(n) => {
                    if tx.blocking_send(Some(buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

/// Runs an opened exec with this process's stdio: stdin to the command when
/// `interactive`, the terminal's size when `tty` (at every SIGWINCH), its output to
/// stdout and stderr. The command's exit code.
pub async fn run(o: Opened, interactive: bool, tty: bool) -> Result<i32, RemoteExecError> {
    let endpoint = o.at.endpoint.clone().unwrap_or_default();
    let task = o.at.task.clone();
    let lost = |source| RemoteError::Lost {
        task: task.clone(),
        endpoint: endpoint.clone(),
        source,
    };
    let (mut rd, mut wr) = (o.rd, o.wr);
    // Frames are read on a task of their own: a read cut by select! would lose bytes.
    let (frames_tx, mut frames) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            let f = read_frame(&mut rd).await;
            let end = !matches!(f, Ok(Some(_)));
            if frames_tx.send(f).await.is_err() || end {
                return;
            }
        }
    });
    let mut stdin = if interactive {
        Some(read_stdin())
    } else {
        let _ = write_frame(&mut wr, STDIN_EOF, &[]).await;
        None
    };
    let mut winch = if tty {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()).ok()
    } else {
        None
    };
    loop {
        tokio::select! {
            f = frames.recv() => match f {
                Some(Ok(Some((EXIT, code)))) if code.len() == 4 => {
                    return Ok(i32::from_be_bytes(code[..].try_into().expect("four bytes")));
                }
                Some(Ok(Some((STDOUT, data)))) => {
                    let mut o = std::io::stdout().lock();
                    let _ = o.write_all(&data).and_then(|_| o.flush());
                }
                Some(Ok(Some((STDERR, data)))) => {
                    let mut e = std::io::stderr().lock();
                    let _ = e.write_all(&data).and_then(|_| e.flush());
                }
                Some(Ok(Some(_))) => {}
                Some(Err(e)) => return Err(lost(Some(e)).into()),
                Some(Ok(None)) | None => return Err(lost(None).into()),
            },
            chunk = async { stdin.as_mut().expect("guarded").recv().await }, if stdin.is_some() => {
                let sent = match chunk.flatten() {
                    Some(data) => write_frame(&mut wr, STDIN, &data).await,
                    None => {
                        stdin = None;
                        write_frame(&mut wr, STDIN_EOF, &[]).await
                    }
                };
                if let Err(e) = sent {
                    return Err(lost(Some(e)).into());
                }
            }
            _ = async { winch.as_mut().expect("guarded").recv().await }, if winch.is_some() => {
                if let Ok(w) = rustix::termios::tcgetwinsize(std::io::stdin()) {
                    let mut d = w.ws_row.to_be_bytes().to_vec();
                    d.extend_from_slice(&w.ws_col.to_be_bytes());
                    let _ = write_frame(&mut wr, RESIZE, &d).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_a_clean_end_is_none() {
        let mut buf = Vec::new();
        write_frame(&mut buf, STDOUT, b"hello").await.unwrap();
        write_frame(&mut buf, EXIT, &7i32.to_be_bytes())
            .await
            .unwrap();
        let mut r = &buf[..];
        assert_eq!(
            read_frame(&mut r).await.unwrap(),
            Some((STDOUT, b"hello".to_vec()))
        );
        assert_eq!(
            read_frame(&mut r).await.unwrap(),
            Some((EXIT, 7i32.to_be_bytes().to_vec()))
        );
        assert_eq!(read_frame(&mut r).await.unwrap(), None);
        // A frame cut short is an error, not an end.
        let mut cut = &buf[..3];
        assert!(read_frame(&mut cut).await.is_err());
    }
}
