//! The supervisor's boundary, in one place: its command line (`minifargate supervise
//! --task-id ID …`, built by [`SuperviseArgs::argv`] and parsed by clap from the same
//! struct), the requests its unix socket takes and the answers it gives, and the
//! [`Client`] every other process uses to reach it. Nothing else opens a supervisor's socket
//! or writes its bytes.
//!
//! Socket protocol (`<run-root>/tasks/<id>/sock`): one JSON request per connection, one
//! JSON line back. `{"op":"stop","stopCode":…,"reason":…,"force":false}` → `{"ok":true}`;
//! `{"op":"ping"}` → `{"ok":true,"pid":N}`; anything else → `{"ok":false,"error":…}`.

use crate::store::StopCode;
use crate::task::{PullPolicy, TaskPaths};
use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

/// Arguments of the hidden `supervise` verb.
#[derive(Debug, clap::Args)]
pub struct SuperviseArgs {
    /// The task to run; without it, `--wait-fd` says where it comes from.
    #[arg(long, required_unless_present = "wait_fd")]
    pub task_id: Option<String>,
    /// An inherited pipe (its descriptor number) on which the launcher writes the task's
    /// id, one line, once the task's rows are written: the supervisor is started before
    /// it (`launch::prestart_supervisor`). End of file instead: there is no task, and the
    /// supervisor exits having made nothing.
    #[arg(long, hide = true, conflicts_with = "task_id")]
    pub wait_fd: Option<i32>,
    #[arg(long, value_enum, default_value_t = PullPolicy::Default)]
    pub pull: PullPolicy,
    /// The task's secrets from this local file instead of SSM / Secrets Manager.
    #[arg(long)]
    pub secrets_file: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = TaskCredentialsFrom::Role)]
    pub task_credentials: TaskCredentialsFrom,
    #[arg(long, value_enum, default_value_t = ExecutionCredentialsFrom::Role)]
    pub execution_credentials: ExecutionCredentialsFrom,
    /// An inherited pipe (its descriptor number) on which to say, with one byte, that the
    /// task is STOPPED and torn down (`launch::Supervisor::done`).
    #[arg(long, hide = true)]
    pub done_fd: Option<i32>,
}

/// What the credentials endpoint hands a task (run-task `--task-credentials`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum TaskCredentialsFrom {
    /// The task role only (`taskRoleArn`, assumed through STS); none without one.
    #[default]
    Role,
    /// Without a task role: this host's own identity (temporary credentials).
    Host,
}

/// What the task's start-up calls act as (run-task `--execution-credentials`): ECR
/// GetAuthorizationToken, `repositoryCredentials`, `secrets`, S3 `environmentFiles`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ExecutionCredentialsFrom {
    /// The executionRoleArn, assumed through STS with this host's credentials (as the ECS
    /// agent uses it); this host's credentials when the task definition has none.
    #[default]
    Role,
    /// This host's credentials even when the task definition has an executionRoleArn.
    Host,
}

/// A request on the supervisor's socket.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum Request {
    #[serde(rename_all = "camelCase")]
    Stop {
        stop_code: StopCode,
        reason: String,
        #[serde(default)]
        force: bool,
    },
    Ping,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Response {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The hidden verb that starts a supervisor.
pub const VERB: &str = "supervise";

impl SuperviseArgs {
    /// The verb and its options as `minifargate` parses them back into this struct (the
    /// global options, `--root` and the rest, come before it).
    pub fn argv(&self) -> Vec<OsString> {
        let mut v: Vec<OsString> = vec![VERB.into()];
        if let Some(id) = &self.task_id {
            v.extend(["--task-id".into(), id.into()]);
        }
        if let Some(fd) = self.wait_fd {
            v.extend(["--wait-fd".into(), fd.to_string().into()]);
        }
        v.extend(["--pull".into(), self.pull.as_str().into()]);
        if let Some(f) = &self.secrets_file {
            v.push("--secrets-file".into());
            v.push(f.into());
        }
        if self.task_credentials == TaskCredentialsFrom::Host {
            v.extend(["--task-credentials".into(), "host".into()]);
        }
        if self.execution_credentials == ExecutionCredentialsFrom::Host {
            v.extend(["--execution-credentials".into(), "host".into()]);
        }
        if let Some(fd) = self.done_fd {
            v.extend(["--done-fd".into(), fd.to_string().into()]);
        }
        v
    }
}

/// What the client says it failed at: reaching the supervisor, or the supervisor's answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("failed to connect to the supervisor of task {task_id} at {}: {source}", socket.display())]
    Connect {
        task_id: String,
        socket: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to {op} task {task_id} through its supervisor at {}: {source}", socket.display())]
    Io {
        op: &'static str,
        task_id: String,
        socket: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to read the answer of the supervisor of task {task_id} at {}: {answer:?}: {source}", socket.display())]
    Answer {
        task_id: String,
        socket: PathBuf,
        answer: String,
        source: serde_json::Error,
    },
    #[error("the supervisor of task {task_id} at {} refused to {op}: {reason}", socket.display())]
    Refused {
        op: &'static str,
        task_id: String,
        socket: PathBuf,
        reason: String,
    },
}

/// A task's supervisor as another process reaches it: one request per call, answered on
/// the same connection within [`Client::TIMEOUT`].
#[derive(Debug, Clone)]
pub struct Client {
    task_id: String,
    socket: PathBuf,
}

impl Client {
    /// How long a call waits for the supervisor's answer.
    pub const TIMEOUT: Duration = Duration::from_secs(10);

    /// The supervisor of the task at `paths`.
    pub fn new(paths: &TaskPaths, task_id: &str) -> Client {
        Client::at(paths.socket(), task_id)
    }

    /// The supervisor listening on `socket` (task `task_id`, for the errors).
    pub fn at(socket: PathBuf, task_id: &str) -> Client {
        Client {
            task_id: task_id.to_string(),
            socket,
        }
    }

    /// Asks the supervisor to stop its task (`force`: kill the containers at once instead
    /// of stopTimeout's SIGTERM first). Returns once the supervisor has taken the request;
    /// the task is STOPPED later.
    pub fn stop(&self, stop_code: StopCode, reason: &str, force: bool) -> Result<(), ClientError> {
        let req = Request::Stop {
            stop_code,
            reason: reason.to_string(),
            force,
        };
        self.call("stop", &req).map(|_| ())
    }

    /// Asks whether the supervisor answers; its pid when it does. (No command needs it
    /// yet: liveness is the recorded pid and start time, `Ecs::reconcile`.)
    #[allow(dead_code)]
    pub fn ping(&self) -> Result<u32, ClientError> {
        let resp = self.call("ping", &Request::Ping)?;
        resp.pid.ok_or_else(|| ClientError::Refused {
            op: "ping",
            task_id: self.task_id.clone(),
            socket: self.socket.clone(),
            reason: "no pid in the answer".into(),
        })
    }

    fn call(&self, op: &'static str, req: &Request) -> Result<Response, ClientError> {
        let io = |source| ClientError::Io {
            op,
            task_id: self.task_id.clone(),
            socket: self.socket.clone(),
            source,
        };
        let mut s = UnixStream::connect(&self.socket).map_err(|source| ClientError::Connect {
            task_id: self.task_id.clone(),
            socket: self.socket.clone(),
            source,
        })?;
        s.set_read_timeout(Some(Self::TIMEOUT)).map_err(io)?;
        s.set_write_timeout(Some(Self::TIMEOUT)).map_err(io)?;
        s.write_all(&line(req)).map_err(io)?;
        let mut answer = String::new();
        BufReader::new(s).read_line(&mut answer).map_err(io)?;
        let resp: Response =
            serde_json::from_str(&answer).map_err(|source| ClientError::Answer {
                task_id: self.task_id.clone(),
                socket: self.socket.clone(),
                answer: answer.clone(),
                source,
            })?;
        if !resp.ok {
            return Err(ClientError::Refused {
                op,
                task_id: self.task_id.clone(),
                socket: self.socket.clone(),
                reason: resp.error.unwrap_or_default(),
            });
        }
        Ok(resp)
    }
}

/// One JSON value and a newline: a request or an answer on the wire.
fn line<T: Serialize>(v: &T) -> Vec<u8> {
    let mut out = serde_json::to_vec(v).unwrap_or_default();
    out.push(b'\n');
    out
}

/// The supervisor's side of one connection: reads the request (waiting at most 5 s for
/// it), answers what `handle` returns, or an error answer for a request it cannot read.
pub fn answer(conn: &UnixStream, handle: impl FnOnce(Request) -> Response) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let mut text = String::new();
    let resp = match BufReader::new(conn).read_line(&mut text) {
        Ok(_) => match serde_json::from_str::<Request>(&text) {
            Ok(req) => handle(req),
            Err(e) => Response::error(format!("bad request: {e}")),
        },
        Err(e) => Response::error(e.to_string()),
    };
    let _ = (&*conn).write_all(&line(&resp));
}

impl Response {
    pub fn ok() -> Response {
        Response {
            ok: true,
            ..Default::default()
        }
    }

    pub fn error(e: String) -> Response {
        Response {
            ok: false,
            error: Some(e),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn request_wire_format() {
        let r = Request::Stop {
            stop_code: StopCode::UserInitiated,
            reason: "Task stopped by user".into(),
            force: false,
        };
        let s = serde_json::to_string(&r).unwrap();
        assert_eq!(
            s,
            r#"{"op":"stop","stopCode":"UserInitiated","reason":"Task stopped by user","force":false}"#
        );
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"op":"ping"}"#).unwrap(),
            Request::Ping
        );
    }

    /// A supervisor socket served by a thread: answers `n` connections with `handle` and
    /// hands back the requests it read.
    fn serve(
        n: usize,
        handle: fn(&Request) -> Response,
    ) -> (
        tempfile::TempDir,
        PathBuf,
        std::thread::JoinHandle<Vec<Request>>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("sock");
        let l = UnixListener::bind(&sock).unwrap();
        let t = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for _ in 0..n {
                let (c, _) = l.accept().unwrap();
                answer(&c, |r| {
                    let resp = handle(&r);
                    seen.push(r);
                    resp
                });
            }
            seen
        });
        (dir, sock, t)
    }

    #[test]
    fn the_client_stops_and_pings_through_a_real_socket() {
        let (_d, sock, t) = serve(2, |r| match r {
            Request::Ping => Response {
                ok: true,
                pid: Some(4242),
                ..Default::default()
            },
            Request::Stop { .. } => Response::ok(),
        });
        let c = Client::at(sock, "t1");
        c.stop(StopCode::ServiceSchedulerInitiated, "scale in", true)
            .unwrap();
        assert_eq!(c.ping().unwrap(), 4242);
        assert_eq!(
            t.join().unwrap(),
            [
                Request::Stop {
                    stop_code: StopCode::ServiceSchedulerInitiated,
                    reason: "scale in".into(),
                    force: true,
                },
                Request::Ping
            ]
        );
    }

    #[test]
    fn a_refusal_names_the_task_the_socket_and_the_reason() {
        let (_d, sock, t) = serve(1, |_| Response::error("already stopping".into()));
        let e = Client::at(sock.clone(), "t2")
            .stop(StopCode::UserInitiated, "r", false)
            .unwrap_err();
        t.join().unwrap();
        assert!(matches!(e, ClientError::Refused { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(msg.contains("task t2"), "{msg}");
        assert!(msg.contains(&sock.display().to_string()), "{msg}");
        assert!(msg.contains("refused to stop: already stopping"), "{msg}");
    }

    #[test]
    fn no_supervisor_is_a_connect_error_naming_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("sock");
        let e = Client::at(sock.clone(), "t3").ping().unwrap_err();
        assert!(matches!(e, ClientError::Connect { .. }), "{e:?}");
        assert!(
            e.to_string().starts_with(&format!(
                "failed to connect to the supervisor of task t3 at {}",
                sock.display()
            )),
            "{e}"
        );
    }

    #[test]
    fn an_answer_that_is_not_json_is_an_answer_error() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("sock");
        let l = UnixListener::bind(&sock).unwrap();
        let t = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut s = String::new();
            BufReader::new(&c).read_line(&mut s).unwrap();
            c.write_all(b"hello\n").unwrap();
        });
        let e = Client::at(sock, "t4").ping().unwrap_err();
        t.join().unwrap();
        assert!(
            matches!(e, ClientError::Answer { ref answer, .. } if answer == "hello\n"),
            "{e:?}"
        );
    }

    #[test]
    fn a_request_the_supervisor_cannot_read_gets_an_error_answer() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("sock");
        let l = UnixListener::bind(&sock).unwrap();
        let t = std::thread::spawn(move || {
            let (c, _) = l.accept().unwrap();
            answer(&c, |_| unreachable!("not a request"));
        });
        let mut s = UnixStream::connect(&sock).unwrap();
        s.write_all(b"{\"op\":\"reboot\"}\n").unwrap();
        let mut a = String::new();
        BufReader::new(s).read_line(&mut a).unwrap();
        t.join().unwrap();
        let r: Response = serde_json::from_str(&a).unwrap();
        assert!(!r.ok);
        assert!(r.error.unwrap().starts_with("bad request"));
    }

    #[test]
    fn the_argv_parses_back_into_the_same_arguments() {
        use clap::{FromArgMatches, Subcommand};
        #[derive(Debug, clap::Subcommand)]
        enum Verb {
            Supervise(SuperviseArgs),
        }
        let a = SuperviseArgs {
            task_id: Some("abc".into()),
            wait_fd: None,
            pull: PullPolicy::Never,
            secrets_file: Some("/s/f".into()),
            task_credentials: TaskCredentialsFrom::Host,
            execution_credentials: ExecutionCredentialsFrom::Host,
            done_fd: Some(7),
        };
        let cmd = Verb::augment_subcommands(clap::Command::new("minifargate"));
        let argv = std::iter::once(OsString::from("minifargate")).chain(a.argv());
        let Verb::Supervise(back) = Verb::from_arg_matches(&cmd.get_matches_from(argv)).unwrap();
        assert_eq!(format!("{back:?}"), format!("{a:?}"));
        let plain = SuperviseArgs {
            secrets_file: None,
            task_credentials: TaskCredentialsFrom::Role,
            execution_credentials: ExecutionCredentialsFrom::Role,
            done_fd: None,
            ..a
        };
        assert_eq!(
            plain.argv(),
            ["supervise", "--task-id", "abc", "--pull", "never"]
        );
        // A supervisor started before its task: the id comes on the pipe.
        let waiting = SuperviseArgs {
            task_id: None,
            wait_fd: Some(5),
            ..plain
        };
        let cmd = Verb::augment_subcommands(clap::Command::new("minifargate"));
        let argv = std::iter::once(OsString::from("minifargate")).chain(waiting.argv());
        let Verb::Supervise(back) = Verb::from_arg_matches(&cmd.get_matches_from(argv)).unwrap();
        assert_eq!(format!("{back:?}"), format!("{waiting:?}"));
        // One of the two, never both, never neither.
        let cmd = Verb::augment_subcommands(clap::Command::new("minifargate"));
        assert!(
            cmd.clone()
                .try_get_matches_from(["minifargate", "supervise"])
                .is_err()
        );
        assert!(
            cmd.try_get_matches_from([
                "minifargate",
                "supervise",
                "--task-id",
                "abc",
                "--wait-fd",
                "5"
            ])
            .is_err()
        );
    }
}
