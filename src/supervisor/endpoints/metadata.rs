//! Inside each task: the task metadata endpoint (v4, plus the v3 and v2 paths) and the
//! credentials endpoint, served by the task's supervisor at 169.254.170.2:80 inside the
//! task's own network namespace, and the secrets resolved for its containers.
//!
//! The listening socket is made inside the task's namespace (where the netns crate put
//! 169.254.170.2 on `lo`), so only that task reaches it; the serving thread itself stays in
//! the host's namespace, so STS is reached the way the host reaches it. One blocking thread
//! answers one request per connection (`Connection: close`), parsed with `httparse` (the
//! parser hyper uses): measured against hyper's server on a tokio runtime, it costs the
//! same idle memory and less CPU, latency and private memory per request and task
//! (docs/benchmarks.md, "Task metadata endpoint"). Data comes from the store and the
//! task's cgroups at each request, so it is never stale; stored data that does not decode
//! is a 500 naming its column, never an empty default.
//! `host` mode has no namespace of its own, and binding 169.254.170.2 on the host would be
//! shared by every host-mode task: the supervisor serves the same endpoint on a port of the
//! host's 127.0.0.1 instead, every path under a random per-task token
//! (`http://127.0.0.1:<port>/<token>/v4/<id>`), and containers get the URIs with that base
//! and the credentials as `AWS_CONTAINER_CREDENTIALS_FULL_URI` (the SDKs take a loopback
//! full URI). Loopback is open to every local process: only the unguessable token and
//! credentials id keep other processes out, as the agent's ids do for host-mode tasks on
//! EC2 (docs/security.md). `none` mode has a namespace, with only `lo`: served there.
//!
//! Ref: ecs-reference.md §3 (paths, Task/Container JSON keys, stats shape, credentials JSON).

use crate::store::{
    ContainerRow, DesiredStatus, HealthStatus, NetworkRow, Store, StoreError, TaskRow,
};
use crate::supervisor::endpoints::credentials::{Execution, Source as CredSource, TaskCredentials};
use crate::supervisor::isolation::network::Recorded;
use crate::supervisor::secrets::{Resolver, SecretEnv};
use crate::task::stats::{self, Sample};
use crate::taskdef::model::TaskDefinition;
use crate::taskdef::units::{CpuUnits, MemoryMib, UnitError};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// The endpoint's address and port inside every task namespace, as containers see it.
pub const ADDRESS: Ipv4Addr = netns::METADATA_ADDRESS;
pub const PORT: u16 = 80;
/// The port the endpoint really listens on; a stateless port rewrite in the task
/// namespace sends `ADDRESS:PORT` there and answers from `PORT` (see
/// [`netns::redirect_metadata_port`]).
pub const LISTEN_PORT: u16 = netns::METADATA_LISTEN_PORT;

#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("failed to listen on {ADDRESS}:{port} inside {netns}")]
    Listen {
        netns: PathBuf,
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to enter the task network namespace {netns}")]
    Enter {
        netns: PathBuf,
        #[source]
        source: netns::NsError,
    },
    #[error("failed to listen on 127.0.0.1 for the endpoint of host-mode task {task}")]
    ListenLoopback {
        task: String,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to make the endpoint token of host-mode task {task}")]
    Token {
        task: String,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to start the metadata endpoint thread")]
    Thread(#[source] std::io::Error),
}

/// Why the endpoint cannot answer from the store. Answered as a 500 naming the table and
/// column, never with a made-up empty task definition (DESIGN.md: nothing silent).
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("failed to open the state database")]
    OpenStore(#[source] Box<StoreError>),
    #[error("failed to read {table} of task {task_id} from the state database")]
    Read {
        task_id: String,
        table: &'static str,
        #[source]
        source: Box<StoreError>,
    },
    #[error("task {task_id} is not in the state database")]
    NotInStore { task_id: String },
    #[error("failed to decode the stored {column} of task {task_id}")]
    Unit {
        task_id: String,
        column: &'static str,
        #[source]
        source: UnitError,
    },
    #[error(
        "failed to decode the stored {column} of container {container} of task {task_id}: {value:?}"
    )]
    Number {
        task_id: String,
        container: String,
        column: &'static str,
        value: String,
        #[source]
        source: std::num::ParseFloatError,
    },
}

/// What only the running executor knows, shared with the endpoint.
#[derive(Debug, Default)]
pub struct Live {
    /// restartPolicy restarts per container index.
    pub restarts: Vec<AtomicU32>,
}

/// The endpoint: a thread answering on a listener inside the task's namespace.
pub struct Server {
    stop: Arc<AtomicBool>,
    listener: TcpListener,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Serves 169.254.170.2:80 inside `netns_path` from a thread: it listens on
    /// [`LISTEN_PORT`] behind a rewrite of port 80 (no connection tracking), so port 80
    /// stays free for the task's own servers; where nf_tables refuses the rule it listens
    /// on port 80 itself, with a warning.
    pub fn start(netns_path: &Path, state: Endpoint) -> Result<Server, MetadataError> {
        let port = match netns::redirect_metadata_port(netns_path) {
            Ok(()) => LISTEN_PORT,
            Err(e) => {
                tracing::warn!(
                    error = %crate::errors::error_chain(&e),
                    "the metadata endpoint listens on port 80 itself: a container cannot bind port 80"
                );
                PORT
            }
        };
        let listener = netns::nsfs::in_netns(netns_path, || TcpListener::bind((ADDRESS, port)))
            .map_err(|source| MetadataError::Enter {
                netns: netns_path.into(),
                source,
            })?
            .map_err(|source| MetadataError::Listen {
                netns: netns_path.into(),
                port,
                source,
            })?;
        let l2 = listener
            .try_clone()
            .map_err(|source| MetadataError::Listen {
                netns: netns_path.into(),
                port,
                source,
            })?;
        Self::spawn(listener, l2, state, None)
    }

    /// Serves the endpoint of a host-mode task on a free port of the host's 127.0.0.1,
    /// every path under `/<token>` with a fresh random token; returns the server and the
    /// base URL containers get (`http://127.0.0.1:<port>/<token>`).
    pub fn start_loopback(state: Endpoint) -> Result<(Server, String), MetadataError> {
        let task = state.task_id.clone();
        let token = crate::task::new_id().map_err(|source| MetadataError::Token {
            task: task.clone(),
            source,
        })?;
        let listen_err = |source| MetadataError::ListenLoopback {
            task: task.clone(),
            source,
        };
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(listen_err)?;
        let port = listener.local_addr().map_err(listen_err)?.port();
        let l2 = listener.try_clone().map_err(listen_err)?;
        let prefix = format!("/{token}");
        let base = format!("http://127.0.0.1:{port}{prefix}");
        Ok((Self::spawn(listener, l2, state, Some(prefix))?, base))
    }

    fn spawn(
        listener: TcpListener,
        l2: TcpListener,
        state: Endpoint,
        prefix: Option<String>,
    ) -> Result<Server, MetadataError> {
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        // The endpoint starts beside the containers' creates (executor/wiring.rs): through
        // the thread gate, so that no create clones this process while the thread starts
        // or ends (threadgate).
        let thread = threadgate::spawn(
            std::thread::Builder::new().name("metadata".into()),
            move || serve(l2, state, &stop2, prefix.as_deref()),
        )
        .map_err(MetadataError::Thread)?;
        Ok(Server {
            stop,
            listener,
            thread: Some(thread),
        })
    }

    /// Stops answering: a shutdown listener wakes the blocked accept().
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = socket2::SockRef::from(&self.listener).shutdown(std::net::Shutdown::Both);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `prefix`: every path must start with it (the host-mode token), and is routed without.
fn serve(listener: TcpListener, mut ep: Endpoint, stop: &AtomicBool, prefix: Option<&str>) {
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(conn) = conn else { continue };
        if let Err(e) = answer(conn, &mut ep, prefix) {
            tracing::debug!(task_id = %ep.task_id, error = %e, "metadata request failed");
        }
    }
}

/// Reads one request (16 KiB at most, 5 s), answers it, closes.
///
/// Never inlined: its frame (~45 KiB in the release build, the snapshot and its JSON) would
/// become `serve`'s, whose stack probe touches every page of it before the first accept,
/// and the idle supervisor would keep those pages for the task's life (docs/benchmarks.md
/// "Stop 49"). Apart, they are touched only while a request is answered.
#[inline(never)]
fn answer(mut conn: TcpStream, ep: &mut Endpoint, prefix: Option<&str>) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    conn.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = vec![0u8; 16 * 1024];
    let mut len = 0;
    let (method, path, body_at, body_len) = loop {
        let n = conn.read(&mut buf[len..])?;
        if n == 0 {
            return Ok(());
        }
        len += n;
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf[..len]) {
            Ok(httparse::Status::Complete(at)) => {
                let body_len = req
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
                    .unwrap_or(0usize);
                break (
                    req.method.unwrap_or("").to_string(),
                    req.path.unwrap_or("").to_string(),
                    at,
                    body_len,
                );
            }
            Ok(httparse::Status::Partial) if len < buf.len() => continue,
            _ => return respond(&mut conn, 400, &json!({"error": "bad HTTP request"}), false),
        }
    };
    let path = match prefix {
        None => path,
        Some(p) => match path.strip_prefix(p).filter(|rest| rest.starts_with('/')) {
            Some(rest) => rest.to_string(),
            // Not this task's token: as if nothing were here (no hint for guessing).
            None => {
                return respond(&mut conn, 404, &json!({"error": "no such endpoint"}), false);
            }
        },
    };
    let head = method == "HEAD";
    // The agent API's task protection takes a PUT with a JSON body.
    if let Route::TaskProtection(id) = route(&path) {
        if body_at + body_len > buf.len() {
            return respond(
                &mut conn,
                400,
                &json!({"error": "request too large"}),
                false,
            );
        }
        while len < body_at + body_len {
            let n = conn.read(&mut buf[len..])?;
            if n == 0 {
                break;
            }
            len += n;
        }
        let body = &buf[body_at..(body_at + body_len).min(len)];
        let (status, v) = ep.task_protection(&id, &method, body);
        return respond(&mut conn, status, &v, head);
    }
    if method != "GET" && !head {
        return respond(
            &mut conn,
            405,
            &json!({"error": format!("{method} is not allowed; use GET")}),
            false,
        );
    }
    let (status, body) = ep.handle(&path);
    respond(&mut conn, status, &body, head)
}

/// A timestamp as Go's `time.Time` marshals it (RFC 3339, `Z`).
fn rfc3339_utc(t: crate::taskdef::timestamp::Timestamp) -> String {
    t.to_datetime()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn respond(conn: &mut TcpStream, status: u16, body: &Value, head: bool) -> std::io::Result<()> {
    let text = serde_json::to_vec(body).unwrap_or_default();
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        _ => "Internal Server Error",
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        text.len()
    )
    .into_bytes();
    if !head {
        out.extend_from_slice(&text);
    }
    conn.write_all(&out)?;
    conn.flush()
}

/// What a request path asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// The container `id`'s own metadata (`/v4/<id>`, `/v3/<id>`, `/v2/metadata/<id>`).
    Container(String),
    /// The task (`/v4/<id>/task`, `/v2/metadata`); `tags` for `/taskWithTags`.
    Task {
        id: Option<String>,
        tags: bool,
    },
    /// The container's stats (`/v4/<id>/stats`, `/v2/stats/<id>`).
    Stats(String),
    /// Every container's stats by id (`/v4/<id>/task/stats`, `/v2/stats`).
    TaskStats(Option<String>),
    Credentials(String),
    /// The agent API's task protection (`$ECS_AGENT_URI/task-protection/v1/state`).
    TaskProtection(String),
    NotFound,
}

pub fn route(path: &str) -> Route {
    let path = path.split('?').next().unwrap_or("").trim_end_matches('/');
    let parts: Vec<&str> = path.split('/').skip(1).collect();
    let id = |s: &str| s.to_string();
    match parts.as_slice() {
        ["v4" | "v3", c] => Route::Container(id(c)),
        ["v4" | "v3", c, "task"] => Route::Task {
            id: Some(id(c)),
            tags: false,
        },
        ["v4", c, "taskWithTags"] => Route::Task {
            id: Some(id(c)),
            tags: true,
        },
        ["v4" | "v3", c, "stats"] => Route::Stats(id(c)),
        ["v4" | "v3", c, "task", "stats"] => Route::TaskStats(Some(id(c))),
        ["v2", "metadata"] => Route::Task {
            id: None,
            tags: false,
        },
        ["v2", "metadata", c] => Route::Container(id(c)),
        ["v2", "stats"] => Route::TaskStats(None),
        ["v2", "stats", c] => Route::Stats(id(c)),
        ["v2", "credentials", c] => Route::Credentials(id(c)),
        ["api", c, "task-protection", "v1", "state"] => Route::TaskProtection(id(c)),
        _ => Route::NotFound,
    }
}

/// The endpoint's state, owned by its thread.
pub struct Endpoint {
    pub root: PathBuf,
    pub task_id: String,
    pub region: String,
    pub credentials: TaskCredentials,
    pub live: Arc<Live>,
    store: Option<Store>,
    prev: HashMap<String, Sample>,
}

impl Endpoint {
    pub fn new(
        root: &Path,
        task_id: &str,
        region: &str,
        credentials: TaskCredentials,
        live: Arc<Live>,
    ) -> Endpoint {
        Endpoint {
            root: root.into(),
            task_id: task_id.into(),
            region: region.into(),
            credentials,
            live,
            store: None,
            prev: HashMap::new(),
        }
    }

    /// One read of the store, decoded.
    fn load(&mut self) -> Result<Snapshot, SnapshotError> {
        if self.store.is_none() {
            self.store =
                Some(Store::open(&self.root).map_err(|e| SnapshotError::OpenStore(Box::new(e)))?);
        }
        let store = self.store.as_ref().expect("opened above");
        let read = |table| {
            let task_id = self.task_id.clone();
            move |source| SnapshotError::Read {
                task_id,
                table,
                source: Box::new(source),
            }
        };
        let (task, containers) = store
            .task(&self.task_id)
            .map_err(read("tasks"))?
            .ok_or_else(|| SnapshotError::NotInStore {
                task_id: self.task_id.clone(),
            })?;
        let net = store
            .task_network(&self.task_id)
            .map_err(read("task_networks"))?;
        let phases = store.phases(&self.task_id).map_err(read("task_phases"))?;
        let created = phases
            .into_iter()
            .filter(|p| p.phase == "create")
            .map(|p| (p.container, p.started_at_us / 1000))
            .collect();
        let restarts = self
            .live
            .restarts
            .iter()
            .map(|r| r.load(Ordering::Relaxed))
            .collect();
        Snapshot::decode(task, containers, net, created, restarts, &self.region)
    }

    /// Answers one GET of `path`.
    pub fn handle(&mut self, path: &str) -> (u16, Value) {
        let r = route(path);
        if let Route::Credentials(id) = &r {
            return self.credentials.answer(id);
        }
        if let Route::TaskProtection(id) = &r {
            return self.task_protection(id, "GET", b"");
        }
        if r == Route::NotFound {
            return (404, json!({"error": format!("no such endpoint: {path}")}));
        }
        let snap = match self.load() {
            Ok(s) => s,
            Err(e) => return unavailable(&self.task_id, &e),
        };
        let known = |id: &str| snap.containers.iter().any(|c| runtime_id(&snap, c) == id);
        match r {
            Route::Container(id)
            | Route::Stats(id)
            | Route::TaskStats(Some(id))
            | Route::Task { id: Some(id), .. }
                if !known(&id) =>
            {
                (
                    404,
                    json!({"error": format!("unable to get container metadata: unknown container id {id} in task {}", snap.task.id)}),
                )
            }
            Route::Container(id) => {
                let i = snap
                    .containers
                    .iter()
                    .position(|c| runtime_id(&snap, c) == id)
                    .expect("known");
                (200, container_meta(&snap, i))
            }
            Route::Task { tags, .. } => (200, task_meta(&snap, tags)),
            Route::Stats(id) => {
                let c = snap
                    .containers
                    .iter()
                    .find(|c| runtime_id(&snap, c) == id)
                    .expect("known")
                    .clone();
                (200, self.container_stats(&snap, &c))
            }
            Route::TaskStats(_) => {
                let mut m = Map::new();
                for c in snap.containers.clone() {
                    m.insert(runtime_id(&snap, &c), self.container_stats(&snap, &c));
                }
                (200, Value::Object(m))
            }
            Route::Credentials(_) | Route::TaskProtection(_) | Route::NotFound => {
                unreachable!("handled above")
            }
        }
    }

    /// `GET`/`PUT $ECS_AGENT_URI/task-protection/v1/state` for the container `id`: the task's
    /// protection, as the ECS agent answers it — `{"protection": ProtectedTask}`, `{"failure":
    /// Failure}` (404 MISSING, 409 otherwise) or `{"error": {Arn, Code, Message}}`, members
    /// named as the agent's Go types marshal them. Ref: amazon-ecs-agent
    /// `agent/handlers/agentapi/taskprotection/v1/handlers/handlers.go` and `…/types`.
    pub fn task_protection(&mut self, id: &str, method: &str, body: &[u8]) -> (u16, Value) {
        use crate::supervisor::endpoints::protection;
        let error = |status: u16, arn: &str, code: &str, message: String| {
            let mut e = json!({"Code": code, "Message": message});
            if !arn.is_empty() {
                e["Arn"] = json!(arn);
            }
            (status, json!({ "error": e }))
        };
        let snap = match self.load() {
            Ok(s) => s,
            Err(e) => return unavailable(&self.task_id, &e),
        };
        if !snap.containers.iter().any(|c| runtime_id(&snap, c) == id) {
            return error(
                404,
                "",
                "ResourceNotFoundException",
                "Invalid request: no task was found".into(),
            );
        }
        let task = snap.task.clone();
        let now = chrono::Utc::now().timestamp_millis();
        let minutes = match method {
            "GET" | "HEAD" => None,
            "PUT" => {
                #[derive(serde::Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Put {
                    #[serde(rename = "ProtectionEnabled")]
                    protection_enabled: Option<bool>,
                    #[serde(rename = "ExpiresInMinutes")]
                    expires_in_minutes: Option<i64>,
                }
                let Ok(put) = serde_json::from_slice::<Put>(body) else {
                    return error(
                        400,
                        "",
                        "InvalidParameterException",
                        "UpdateTaskProtection: failed to decode request".into(),
                    );
                };
                let Some(enabled) = put.protection_enabled else {
                    return error(
                        400,
                        &task.arn,
                        "InvalidParameterException",
                        "Invalid request: does not contain 'ProtectionEnabled' field".into(),
                    );
                };
                match protection::minutes(enabled, put.expires_in_minutes) {
                    Ok(m) => Some(m),
                    Err(e) => {
                        return error(400, &task.arn, "InvalidParameterException", e.to_string());
                    }
                }
            }
            other => {
                return (
                    405,
                    json!({"error": format!("{other} is not allowed; use GET or PUT")}),
                );
            }
        };
        let outcome = match minutes {
            None => match protection::eligible(&task) {
                Err(f) if f.reason == protection::reason::NOT_VALID => Err(f),
                _ => Ok(protection::state(&task, now)),
            },
            Some(m) => {
                let store = self.store.as_mut().expect("opened by load");
                match protection::update(store, &task, m, now) {
                    Ok(o) => o,
                    Err(e) => {
                        return error(
                            500,
                            &task.arn,
                            "ServerException",
                            crate::errors::error_chain(&e),
                        );
                    }
                }
            }
        };
        match outcome {
            Ok(p) => (
                200,
                json!({"protection": {
                    "ExpirationDate": p.expiration_date.map(rfc3339_utc),
                    "ProtectionEnabled": p.protection_enabled,
                    "TaskArn": p.task_arn,
                }}),
            ),
            Err(f) => (
                if f.reason == protection::reason::MISSING {
                    404
                } else {
                    409
                },
                json!({"failure": {"Arn": f.arn, "Detail": f.detail, "Reason": f.reason}}),
            ),
        }
    }

    fn container_stats(&mut self, snap: &Snapshot, c: &ContainerRow) -> Value {
        let id = runtime_id(snap, c);
        let limit = snap.memory.map(|m| m.bytes());
        let cg = runtime::Cgroups::detect().ok();
        let now = cg
            .as_ref()
            .and_then(|cg| stats::sample(cg, &snap.task.id, &id, limit, Path::new("/proc")));
        match now {
            Some(s) => {
                let v = stats::stats_json(&c.name, &id, &s, self.prev.get(&id));
                self.prev.insert(id, s);
                v
            }
            // Not running (yet, or any more): Docker answers null for a stopped container.
            None => Value::Null,
        }
    }
}

/// The 500 for a store that cannot be read or decoded, logged where it happens.
fn unavailable(task_id: &str, e: &SnapshotError) -> (u16, Value) {
    let error = crate::errors::error_chain(e);
    tracing::error!(task_id, error = %error, "task metadata unavailable");
    (
        500,
        json!({"error": format!("task metadata unavailable: {error}")}),
    )
}

/// One read of the store for one request, decoded.
struct Snapshot {
    task: TaskRow,
    containers: Vec<ContainerRow>,
    /// Each container's `Limits` (CPU units, MiB), in `containers` order.
    limits: Vec<(Option<f64>, Option<f64>)>,
    net: Option<NetworkRow>,
    /// What the network step recorded in `net` (`None` before it ran).
    recorded: Option<Recorded>,
    def: TaskDefinition,
    cpu: Option<CpuUnits>,
    memory: Option<MemoryMib>,
    tags: Map<String, Value>,
    /// container name → created at (ms)
    created: HashMap<String, i64>,
    restarts: Vec<u32>,
    region: String,
}

impl Snapshot {
    /// Decodes the stored JSON and numbers of the rows; any that does not decode is an
    /// error naming its column, never a default.
    fn decode(
        task: TaskRow,
        containers: Vec<ContainerRow>,
        net: Option<NetworkRow>,
        created: HashMap<String, i64>,
        restarts: Vec<u32>,
        region: &str,
    ) -> Result<Snapshot, SnapshotError> {
        let unit_error = |column| {
            let task_id = task.id.clone();
            move |source| SnapshotError::Unit {
                task_id,
                column,
                source,
            }
        };
        let def = (*task.definition).clone();
        let tags = task
            .tags
            .iter()
            .map(|kv| (kv.key.clone(), Value::String(kv.value.clone())))
            .collect();
        let recorded = net.as_ref().and_then(|n| n.network.clone());
        let cpu = task
            .cpu
            .as_deref()
            .map(CpuUnits::parse)
            .transpose()
            .map_err(unit_error("tasks.cpu"))?;
        let memory = task
            .memory
            .as_deref()
            .map(MemoryMib::parse)
            .transpose()
            .map_err(unit_error("tasks.memory"))?;
        let limits = containers
            .iter()
            .map(|c| {
                let num = |column, v: &Option<String>| {
                    v.as_deref()
                        .map(|s| {
                            s.parse::<f64>().map_err(|source| SnapshotError::Number {
                                task_id: task.id.clone(),
                                container: c.name.clone(),
                                column,
                                value: s.to_string(),
                                source,
                            })
                        })
                        .transpose()
                };
                Ok((
                    num("task_containers.cpu", &c.cpu)?,
                    num("task_containers.memory", &c.memory)?,
                ))
            })
            .collect::<Result<_, SnapshotError>>()?;
        Ok(Snapshot {
            task,
            containers,
            limits,
            net,
            recorded,
            def,
            cpu,
            memory,
            tags,
            created,
            restarts,
            region: region.to_string(),
        })
    }
}

fn runtime_id(snap: &Snapshot, c: &ContainerRow) -> String {
    c.runtime_id
        .clone()
        .unwrap_or_else(|| crate::task::runtime_id(&snap.task.id, c.idx as usize))
}

/// Timestamps as the agent's Go `time.Time` marshals them (RFC 3339, UTC).
fn ts(ms: Option<i64>) -> Option<Value> {
    let t = chrono::DateTime::from_timestamp_millis(ms?)?;
    Some(json!(
        t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    ))
}

fn put(m: &mut Map<String, Value>, k: &str, v: Option<Value>) {
    if let Some(v) = v {
        m.insert(k.into(), v);
    }
}

/// The revision at the end of a task definition ARN (`…:task-definition/web:3`).
fn revision(arn: &str) -> String {
    arn.rsplit(':').next().unwrap_or("").to_string()
}

/// `nameserver` and `search` entries of the task's resolv.conf.
fn resolv(path: Option<&Path>) -> (Vec<String>, Vec<String>) {
    let text = path
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default();
    let mut ns = Vec::new();
    let mut search = Vec::new();
    for l in text.lines() {
        let mut f = l.split_whitespace();
        match f.next() {
            Some("nameserver") => ns.extend(f.map(str::to_string)),
            Some("search") => search.extend(f.map(str::to_string)),
            _ => {}
        }
    }
    (ns, search)
}

fn networks(snap: &Snapshot) -> Value {
    let Some(row) = &snap.net else {
        return json!([]);
    };
    let mut n = Map::new();
    n.insert("NetworkMode".into(), json!(row.mode));
    if let Some(rec) = &snap.recorded
        && let Some(ip) = rec.net.ip
    {
        n.insert("IPv4Addresses".into(), json!([ip.to_string()]));
        n.insert("AttachmentIndex".into(), json!(0));
        put(&mut n, "MACAddress", rec.net.mac.clone().map(Value::from));
        put(
            &mut n,
            "IPv4SubnetCIDRBlock",
            row.subnet.clone().map(Value::from),
        );
        let (ns, search) = resolv(rec.net.resolv_conf.as_deref());
        n.insert("DomainNameServers".into(), json!(ns));
        n.insert("DomainNameSearchList".into(), json!(search));
        put(
            &mut n,
            "PrivateDNSName",
            rec.private_dns_name.clone().map(Value::from),
        );
        if let (Some(gw), Some(p)) = (rec.net.gateway, rec.net.prefix_len) {
            n.insert(
                "SubnetGatewayIpv4Address".into(),
                json!(format!("{gw}/{p}")),
            );
        }
    }
    json!([n])
}

/// The metadata of `snap.containers[i]`.
fn container_meta(snap: &Snapshot, i: usize) -> Value {
    let t = &snap.task;
    let c = &snap.containers[i];
    let def = snap
        .def
        .container_definitions
        .iter()
        .flatten()
        .find(|d| d.name_str() == c.name);
    let id = runtime_id(snap, c);
    let cluster = crate::task::shape::cluster_arn(&t.arn, &t.cluster);
    let mut labels = Map::new();
    labels.insert("com.amazonaws.ecs.cluster".into(), json!(cluster));
    labels.insert("com.amazonaws.ecs.container-name".into(), json!(c.name));
    labels.insert("com.amazonaws.ecs.task-arn".into(), json!(t.arn));
    labels.insert(
        "com.amazonaws.ecs.task-definition-family".into(),
        json!(t.family),
    );
    labels.insert(
        "com.amazonaws.ecs.task-definition-version".into(),
        json!(revision(&t.task_definition_arn)),
    );
    for (k, v) in def
        .and_then(|d| d.docker_labels.as_ref())
        .into_iter()
        .flatten()
    {
        labels.insert(k.clone(), json!(v));
    }
    let mut m = Map::new();
    m.insert("DockerId".into(), json!(id));
    m.insert("Name".into(), json!(c.name));
    m.insert("DockerName".into(), json!(id));
    m.insert("Image".into(), json!(c.image));
    put(&mut m, "ImageID", c.image_digest.clone().map(Value::from));
    m.insert("Labels".into(), Value::Object(labels));
    let desired = if t.desired_status == DesiredStatus::Stopped {
        DesiredStatus::Stopped
    } else {
        DesiredStatus::Running
    };
    m.insert("DesiredStatus".into(), json!(desired));
    m.insert("KnownStatus".into(), json!(c.last_status));
    put(&mut m, "ExitCode", c.exit_code.map(Value::from));
    let (cpu, memory) = snap.limits[i];
    let mut limits = Map::new();
    // A container without cpu shares the task's: 0, as the agent reports it.
    limits.insert("CPU".into(), json!(cpu.unwrap_or(0.0)));
    put(&mut limits, "Memory", memory.map(|m| json!(m as u64)));
    m.insert("Limits".into(), Value::Object(limits));
    put(&mut m, "CreatedAt", ts(snap.created.get(&c.name).copied()));
    put(&mut m, "StartedAt", ts(c.started_at));
    put(&mut m, "FinishedAt", ts(c.finished_at));
    m.insert("Type".into(), json!("NORMAL"));
    if def.is_some_and(|d| d.health_check.is_some()) {
        m.insert(
            "Health".into(),
            json!({"status": c.health_status.unwrap_or(HealthStatus::Unknown)}),
        );
    }
    m.insert("ContainerARN".into(), json!(c.arn));
    if let Some(lc) = def.and_then(|d| d.log_configuration.as_ref()) {
        put(
            &mut m,
            "LogDriver",
            lc.log_driver
                .as_ref()
                .and_then(|d| serde_json::to_value(d).ok()),
        );
        put(&mut m, "LogOptions", lc.options.as_ref().map(|o| json!(o)));
    }
    m.insert("Networks".into(), networks(snap));
    m.insert("Snapshotter".into(), json!("overlayfs"));
    if def
        .and_then(|d| d.restart_policy.as_ref())
        .is_some_and(|r| r.enabled == Some(true))
    {
        m.insert(
            "RestartCount".into(),
            json!(snap.restarts.get(c.idx as usize).copied().unwrap_or(0)),
        );
    }
    Value::Object(m)
}

fn task_meta(snap: &Snapshot, with_tags: bool) -> Value {
    let t = &snap.task;
    let mut m = Map::new();
    m.insert(
        "Cluster".into(),
        json!(crate::task::shape::cluster_arn(&t.arn, &t.cluster)),
    );
    m.insert("TaskARN".into(), json!(t.arn));
    m.insert("Family".into(), json!(t.family));
    m.insert("Revision".into(), json!(revision(&t.task_definition_arn)));
    m.insert("DesiredStatus".into(), json!(t.desired_status));
    m.insert("KnownStatus".into(), json!(t.last_status));
    let mut limits = Map::new();
    // Ref: ecs-reference.md §3 — CPU in vCPU (units / 1024), Memory in MiB.
    put(
        &mut limits,
        "CPU",
        snap.cpu.map(|c| json!(f64::from(c.0) / 1024.0)),
    );
    put(
        &mut limits,
        "Memory",
        snap.memory.map(|m| json!(m.bytes() >> 20)),
    );
    m.insert("Limits".into(), Value::Object(limits));
    put(&mut m, "PullStartedAt", ts(t.pull_started_at));
    put(&mut m, "PullStoppedAt", ts(t.pull_stopped_at));
    put(&mut m, "ExecutionStoppedAt", ts(t.execution_stopped_at));
    m.insert(
        "AvailabilityZone".into(),
        json!(format!("{}a", snap.region)),
    );
    m.insert("LaunchType".into(), json!(t.launch_type));
    m.insert(
        "Containers".into(),
        Value::Array(
            (0..snap.containers.len())
                .map(|i| container_meta(snap, i))
                .collect(),
        ),
    );
    if with_tags {
        m.insert("TaskTags".into(), Value::Object(snap.tags.clone()));
    }
    Value::Object(m)
}

/// Everything "inside the task" the executor drives: secrets, the credentials id, the
/// endpoint. The executor calls [`Inside::provision`] once the network exists (and, in a
/// task namespace, starts the endpoint it returns once `lo` has its address:
/// [`PendingEndpoint::start`], [`Inside::serving`]), [`Inside::env`] / [`Inside::secrets`]
/// for each container, [`Inside::stop`] in teardown.
#[derive(Default)]
pub struct Inside {
    /// The container env the ECS agent adds for the credentials endpoint.
    creds_uri: Option<String>,
    /// The endpoint's base URL as containers reach it: `None` for 169.254.170.2 (the
    /// task's own namespace), `http://127.0.0.1:<port>/<token>` in host mode.
    base: Option<String>,
    secrets: SecretEnv,
    /// Variables from S3 `environmentFiles` (`crate::supervisor::envfiles`).
    file_env: crate::supervisor::envfiles::FileEnv,
    /// `repositoryCredentials` per container (`crate::supervisor::endpoints::registry_auth`).
    pub registry_auth: crate::supervisor::endpoints::registry_auth::RegistryAuth,
    /// What the start-up calls act as: the execution role, or the host's credentials.
    pub execution: Execution,
    pub live: Arc<Live>,
    server: Option<Server>,
}

/// Why [`Inside::provision`] failed: the task's stopped reason.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error(transparent)]
    Secrets(#[from] crate::supervisor::secrets::ResolveError),
    #[error(transparent)]
    RegistryAuth(#[from] crate::supervisor::endpoints::registry_auth::RegistryAuthError),
    #[error(transparent)]
    EnvironmentFiles(#[from] crate::supervisor::envfiles::EnvFileError),
    #[error(
        "{init}: failed to make the credentials id: {0}",
        init = crate::task::reason::RESOURCE_INIT
    )]
    CredentialsId(#[source] std::io::Error),
    /// The endpoint could not start (the reason holds the whole chain of causes).
    #[error(
        "{init}: task metadata endpoint: {chain}",
        init = crate::task::reason::RESOURCE_INIT,
        chain = crate::errors::error_chain(.0)
    )]
    Endpoint(#[source] MetadataError),
}

/// What [`Inside::provision`] needs to know.
pub struct Settings<'a> {
    pub root: &'a Path,
    pub task: &'a TaskRow,
    pub def: &'a TaskDefinition,
    pub region: &'a str,
    /// The task's own namespace; `None` in host mode: the endpoint is served on the
    /// host's 127.0.0.1 ([`Server::start_loopback`]).
    pub netns: Option<&'a Path>,
    pub secrets_file: Option<PathBuf>,
    /// `--task-credentials host`: hand a task without a role the host's identity.
    pub host_credentials: bool,
    /// `--execution-credentials host`: start-up calls use the host's credentials even when
    /// the task has an execution role.
    pub host_execution_credentials: bool,
}

/// The endpoint of a task with a namespace of its own, made but not yet listening: it
/// listens on 169.254.170.2, which the network's wiring puts on the namespace's `lo`.
pub struct PendingEndpoint {
    netns: PathBuf,
    endpoint: Option<Endpoint>,
}

impl PendingEndpoint {
    /// Starts serving ([`Server::start`]); `None` once started. The path stays here, so
    /// a thread that starts the endpoint frees nothing the caller's thread allocated but
    /// on failure.
    pub fn start(&mut self) -> Option<Result<Server, ProvisionError>> {
        let ep = self.endpoint.take()?;
        Some(Server::start(&self.netns, ep).map_err(ProvisionError::Endpoint))
    }
}

impl Inside {
    /// Resolves the secrets, registry credentials and S3 environment files (with the
    /// execution identity, as ECS does in one step before the pulls) and makes the
    /// endpoint: started on the host's loopback in host mode; returned, to start once the
    /// task namespace's `lo` has its address, otherwise. `Err` is the task's stopped
    /// reason.
    pub fn provision(
        &mut self,
        s: Settings<'_>,
    ) -> Result<Option<PendingEndpoint>, ProvisionError> {
        let containers = s.def.container_definitions.as_ref().map_or(0, Vec::len);
        self.live = Arc::new(Live {
            restarts: (0..containers).map(|_| AtomicU32::new(0)).collect(),
        });
        self.execution = Execution::new(
            s.def.execution_role_arn.as_deref(),
            s.host_execution_credentials,
            s.region,
            &s.task.id,
        );
        self.secrets = Resolver {
            file: s.secrets_file,
            region: s.region.to_string(),
        }
        .resolve(s.def, &mut self.execution)?;
        self.registry_auth = crate::supervisor::endpoints::registry_auth::resolve(
            s.def,
            &mut self.execution,
            s.region,
        )?;
        self.file_env = crate::supervisor::envfiles::resolve(s.def, &mut self.execution, s.region)?;
        let role = s
            .task
            .overrides
            .task_role_arn
            .as_deref()
            .or(s.def.task_role_arn.as_deref());
        let id = crate::task::new_uuid().map_err(ProvisionError::CredentialsId)?;
        let creds = TaskCredentials::new(
            id,
            CredSource::pick(role, s.host_credentials),
            &s.task.id,
            s.region,
        );
        self.creds_uri = Some(creds.relative_uri());
        let ep = Endpoint::new(s.root, &s.task.id, s.region, creds, self.live.clone());
        if let Some(netns) = s.netns {
            return Ok(Some(PendingEndpoint {
                netns: netns.to_path_buf(),
                endpoint: Some(ep),
            }));
        }
        let (server, base) = Server::start_loopback(ep).map_err(ProvisionError::Endpoint)?;
        self.server = Some(server);
        self.base = Some(base);
        Ok(None)
    }

    /// The endpoint [`Inside::provision`] returned, now serving.
    pub fn serving(&mut self, server: Server) {
        self.server = Some(server);
    }

    /// The endpoint's base URL as containers reach it, for [`crate::supervisor::spec::ecs_env`].
    pub fn base(&self) -> &str {
        self.base
            .as_deref()
            .unwrap_or(crate::supervisor::spec::ENDPOINT_BASE)
    }

    /// Variables for every container (besides [`crate::supervisor::spec::ecs_env`]): the relative
    /// credentials URI (SDKs prefix 169.254.170.2), or in host mode the full loopback URI.
    pub fn env(&self) -> Vec<String> {
        self.creds_uri
            .iter()
            .map(|u| match &self.base {
                None => format!("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI={u}"),
                Some(base) => format!("AWS_CONTAINER_CREDENTIALS_FULL_URI={base}{u}"),
            })
            .collect()
    }

    /// `NAME=value` from container `idx`'s S3 environment files.
    pub fn file_env(&self, idx: usize) -> Vec<String> {
        self.file_env.get(&idx).cloned().unwrap_or_default()
    }

    /// `NAME=value` of container `idx`'s secrets.
    pub fn secrets(&self, idx: usize) -> Vec<String> {
        self.secrets.get(&idx).cloned().unwrap_or_default()
    }

    pub fn restarted(&self, idx: usize) {
        if let Some(r) = self.live.restarts.get(idx) {
            r.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn stop(&mut self) {
        if let Some(s) = self.server.take() {
            s.stop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{LastStatus, Tag};

    #[test]
    fn routes() {
        assert_eq!(route("/v4/t-0"), Route::Container("t-0".into()));
        assert_eq!(route("/v4/t-0/"), Route::Container("t-0".into()));
        assert_eq!(
            route("/v4/t-0/task"),
            Route::Task {
                id: Some("t-0".into()),
                tags: false
            }
        );
        assert_eq!(
            route("/v4/t-0/taskWithTags"),
            Route::Task {
                id: Some("t-0".into()),
                tags: true
            }
        );
        assert_eq!(route("/v4/t-0/stats"), Route::Stats("t-0".into()));
        assert_eq!(
            route("/v4/t-0/task/stats"),
            Route::TaskStats(Some("t-0".into()))
        );
        assert_eq!(
            route("/v3/t-0/task/stats?x=1"),
            Route::TaskStats(Some("t-0".into()))
        );
        assert_eq!(
            route("/v2/credentials/abc"),
            Route::Credentials("abc".into())
        );
        assert_eq!(
            route("/v2/metadata"),
            Route::Task {
                id: None,
                tags: false
            }
        );
        assert_eq!(
            route("/api/t-0/task-protection/v1/state"),
            Route::TaskProtection("t-0".into())
        );
        assert_eq!(route("/v4"), Route::NotFound);
        assert_eq!(route("/v4/t-0/nope"), Route::NotFound);
    }

    fn rows() -> (TaskRow, ContainerRow) {
        let task = TaskRow {
            id: "abc".into(),
            arn: "arn:aws:ecs:us-east-1:123456789012:task/default/abc".into(),
            cluster: "default".into(),
            task_definition_arn: "arn:aws:ecs:us-east-1:123456789012:task-definition/web:3".into(),
            family: "web".into(),
            definition: serde_json::from_str(
                r#"{"family":"web","containerDefinitions":[{"name":"app","image":"busybox",
                "dockerLabels":{"team":"core"},"healthCheck":{"command":["CMD","true"]},
                "restartPolicy":{"enabled":true},
                "logConfiguration":{"logDriver":"awslogs","options":{"awslogs-group":"g"}}}]}"#,
            )
            .unwrap(),
            cpu: Some("256".into()),
            memory: Some("512".into()),
            launch_type: "FARGATE".into(),
            last_status: LastStatus::Running,
            desired_status: DesiredStatus::Running,
            tags: vec![Tag {
                key: "team".into(),
                value: "core".into(),
            }],
            started_at: Some(1_700_000_000_000),
            ..Default::default()
        };
        let c = ContainerRow {
            task_id: "abc".into(),
            name: "app".into(),
            image: "busybox".into(),
            image_digest: Some("sha256:00".into()),
            runtime_id: Some("abc-0".into()),
            last_status: LastStatus::Running,
            health_status: Some(HealthStatus::Healthy),
            cpu: Some("0".into()),
            memory: Some("128".into()),
            started_at: Some(1_700_000_000_500),
            ..Default::default()
        };
        (task, c)
    }

    fn decode(task: TaskRow, c: ContainerRow) -> Result<Snapshot, SnapshotError> {
        Snapshot::decode(
            task,
            vec![c],
            None,
            HashMap::from([("app".to_string(), 1_700_000_000_400)]),
            vec![2],
            "us-east-1",
        )
    }

    fn snapshot() -> Snapshot {
        let (task, c) = rows();
        decode(task, c).unwrap()
    }

    /// Stored values that do not decode are a 500 naming the column and the task, never
    /// a default (no limits). The store refuses undecodable JSON columns itself
    /// (`StoreError::BadRow`, store::tasks' tests).
    #[test]
    fn undecodable_stored_data_is_an_error_naming_the_column() {
        type Spoil = fn(&mut TaskRow, &mut ContainerRow);
        let cases: [(&str, Spoil); 3] = [
            ("tasks.memory", |t, _| t.memory = Some("lots".into())),
            ("task_containers.cpu", |_, c| c.cpu = Some("x".into())),
            ("task_containers.memory", |_, c| c.memory = Some("".into())),
        ];
        for (column, spoil) in cases {
            let (mut t, mut c) = rows();
            spoil(&mut t, &mut c);
            let e = decode(t, c)
                .err()
                .unwrap_or_else(|| panic!("{column} decoded"));
            let (status, body) = unavailable("abc", &e);
            assert_eq!(status, 500, "{column}");
            let msg = body["error"].as_str().unwrap();
            assert!(
                msg.contains(&format!("failed to decode the stored {column} of "))
                    && msg.contains("task abc"),
                "{column}: {msg}"
            );
        }
    }

    /// Missing values are not errors: a task without cpu/memory, a network row the
    /// network step has not filled in yet.
    #[test]
    fn absent_values_decode() {
        let (mut t, mut c) = rows();
        t.cpu = None;
        t.memory = None;
        c.cpu = None;
        let net = NetworkRow {
            task_id: "abc".into(),
            mode: "awsvpc".into(),
            network: None,
            ..Default::default()
        };
        let s =
            Snapshot::decode(t, vec![c], Some(net), HashMap::new(), vec![0], "us-east-1").unwrap();
        assert_eq!(task_meta(&s, false)["Limits"], json!({}));
        assert_eq!(
            container_meta(&s, 0)["Limits"],
            json!({"CPU": 0.0, "Memory": 128})
        );
        assert_eq!(
            container_meta(&s, 0)["Networks"],
            json!([{"NetworkMode": "awsvpc"}])
        );
    }

    #[test]
    fn task_and_container_shapes() {
        let s = snapshot();
        let v = task_meta(&s, true);
        assert_eq!(
            v["Cluster"],
            "arn:aws:ecs:us-east-1:123456789012:cluster/default"
        );
        assert_eq!(v["Revision"], "3");
        assert_eq!(v["Limits"], json!({"CPU": 0.25, "Memory": 512}));
        assert_eq!(v["AvailabilityZone"], "us-east-1a");
        assert_eq!(v["TaskTags"], json!({"team": "core"}));
        let c = &v["Containers"][0];
        assert_eq!(c["DockerId"], "abc-0");
        assert_eq!(c["Labels"]["team"], "core");
        assert_eq!(
            c["Labels"]["com.amazonaws.ecs.task-definition-version"],
            "3"
        );
        assert_eq!(c["Limits"], json!({"CPU": 0.0, "Memory": 128}));
        assert_eq!(c["Health"]["status"], "HEALTHY");
        assert_eq!(c["RestartCount"], 2);
        assert_eq!(c["LogDriver"], "awslogs");
        assert_eq!(c["CreatedAt"], "2023-11-14T22:13:20.400Z");
        assert!(task_meta(&s, false).get("TaskTags").is_none());
    }
}
