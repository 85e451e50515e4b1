//! A joined box's tunnel (issue 73; docs/cluster.md "Reaching a box through its tunnel"):
//! a box that joined with a token (`agent --server URL`, no `--cluster`) needs no inbound
//! port. It dials serve's port for boxes and holds one connection open (`GET /v1/tunnel`,
//! upgraded); on it serve sends `dial NONCE` whenever a caller wants the box's endpoint,
//! and the box opens a new connection to the same port (`GET /v1/tunnel/NONCE`, upgraded)
//! and joins it to its own endpoint on loopback. The caller (this serve, another serve,
//! the operator's CLI) speaks TLS inside that stream with the box's endpoint, end to end:
//! the box checks the caller's certificate as it checks a direct caller's, and the caller
//! checks the box's with the cluster's CA.
//!
//! - serve keeps, while a box's tunnel is up, the key [`keys::tunnel`] (which serve's
//!   port holds it), attached to a lease of its own: a serve that dies takes its claims
//!   with it. Boxes' etcd roles cannot read it.
//! - A caller asks the serve holding the tunnel to relay (`GET
//!   /v1/boxes/CLUSTER/INSTANCE/dial`, upgraded), authenticated by its certificate: serve's
//!   or the operator's role only, never a box's.
//! - What a box can do through its tunnel: answer. serve reads nothing from the held
//!   connection but signs of life, takes a dial-back only for a nonce it sent that box
//!   (within [`DIAL_WAIT`]), and relays bytes a caller asked for; it never calls anything
//!   on a box's word.

use super::agents_client::{self, Stream, Upgrade};
use super::etcd::{Compare, Etcd, EtcdError, Op};
use super::keys;
use super::pki;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

/// The protocol named in `Upgrade:` on the tunnel's connections.
pub const PROTOCOL: &str = "minifargate-tunnel";
/// What a joined box registers as its endpoint: reach it through its tunnel (it has no
/// address a caller could connect to).
pub const REGISTERED: &str = "tunnel";
/// How the cluster code names a box's tunnelled endpoint: `tunnel:CLUSTER/INSTANCE`.
const SCHEME: &str = "tunnel:";
/// serve's sign of life on a held tunnel, which the box answers.
const PING: Duration = Duration::from_secs(5);
/// A tunnel with no word from the other side for this long is dead (a box gone behind
/// NAT sends no FIN): serve drops it and its key, the box dials again.
const SILENT: Duration = Duration::from_secs(15);
/// How long a caller waits for the box to dial back.
pub const DIAL_WAIT: Duration = Duration::from_secs(5);
/// The TTL of serve's lease for its tunnels' keys (seconds).
const LEASE_TTL: u64 = 15;
/// The box's first and longest wait before dialing again.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(250), Duration::from_secs(30));

/// The endpoint of instance `instance` of cluster `cluster` reached through its tunnel.
pub fn endpoint(cluster: &str, instance: &str) -> String {
    format!("{SCHEME}{cluster}/{instance}")
}

/// A tunnelled endpoint's (cluster, instance); `None` for another endpoint.
pub fn parse(endpoint: &str) -> Option<(&str, &str)> {
    let (c, i) = endpoint.strip_prefix(SCHEME)?.split_once('/')?;
    (!c.is_empty() && !i.is_empty() && !i.contains('/')).then_some((c, i))
}

/// The endpoint callers reach instance `id` of cluster `c` at, from what its registration
/// says: a box that registered [`REGISTERED`] is reached through the tunnel of the
/// instance the registration's key names (a registration cannot point at another box's
/// tunnel); any other value as registered.
pub fn resolve(registered: Option<String>, c: &str, id: &str) -> Option<String> {
    match registered {
        Some(e) if e == REGISTERED || e.starts_with(SCHEME) => Some(endpoint(c, id)),
        other => other,
    }
}

/// The value of [`keys::tunnel`]: which serve holds the tunnel, for which box, since when.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Held {
    /// That serve's port for boxes (`https://HOST:PORT`), where callers ask it to relay.
    pub server: String,
    /// The box's name (its certificate's).
    pub r#box: String,
    pub since_ms: i64,
}

/// Why a box's endpoint could not be reached through its tunnel.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error(
        "container instance {instance} (cluster {cluster}) has no tunnel to {at}: a box that \
         joined dials one out to serve's port for boxes when its agent starts, and again \
         after it drops (is its agent running, and can it reach that port?)"
    )]
    NoTunnel {
        cluster: String,
        instance: String,
        at: String,
    },
    #[error(
        "box {name} (container instance {instance}) did not dial back through its tunnel \
         within {} s",
        DIAL_WAIT.as_secs()
    )]
    NoAnswer { name: String, instance: String },
    #[error("failed to read the tunnel of container instance {instance}")]
    Store {
        instance: String,
        #[source]
        source: EtcdError,
    },
}

impl DialError {
    fn io(self) -> std::io::Error {
        let kind = match self {
            DialError::NoTunnel { .. } => std::io::ErrorKind::NotConnected,
            DialError::NoAnswer { .. } => std::io::ErrorKind::TimedOut,
            DialError::Store { .. } => std::io::ErrorKind::Other,
        };
        std::io::Error::new(kind, crate::errors::error_chain(&self))
    }
}

// ------------------------------------------------------------------ serve's side

/// A tunnel this serve holds.
struct Tunnel {
    /// Tells a replaced tunnel's holder from its successor's.
    serial: u64,
    name: String,
    /// Nonces to send the box (`dial NONCE`).
    dials: tokio::sync::mpsc::Sender<String>,
    /// The revision its key was put at (deleted only if still that one).
    revision: i64,
}

/// A dial sent to a box, waiting for its connection back.
struct Waiting {
    name: String,
    reply: tokio::sync::oneshot::Sender<OnUpgrade>,
}

/// The tunnels this serve holds, and the dials it waits for.
pub struct Hub {
    etcd: &'static Etcd,
    /// This serve's port for boxes as callers reach it.
    url: String,
    tunnels: Mutex<HashMap<(String, String), Tunnel>>,
    waiting: Mutex<HashMap<String, Waiting>>,
    lease: tokio::sync::Mutex<Option<i64>>,
    serial: AtomicU64,
}

/// The hub of this serve's port for boxes (none in another process).
static HUB: OnceLock<Arc<Hub>> = OnceLock::new();

impl Hub {
    /// The hub of serve's port for boxes at `url`, which callers reach; its lease kept
    /// until the process ends.
    pub fn start(etcd: &'static Etcd, url: String) -> Arc<Hub> {
        let hub = HUB
            .get_or_init(|| {
                Arc::new(Hub {
                    etcd,
                    url,
                    tunnels: Mutex::default(),
                    waiting: Mutex::default(),
                    lease: tokio::sync::Mutex::new(None),
                    serial: AtomicU64::new(0),
                })
            })
            .clone();
        tokio::spawn(hub.clone().keep_lease());
        hub
    }

    fn holds(&self, cluster: &str, instance: &str) -> bool {
        let key = (cluster.to_string(), instance.to_string());
        self.tunnels.lock().expect("tunnels").contains_key(&key)
    }

    async fn lease(&self) -> Result<i64, EtcdError> {
        let mut held = self.lease.lock().await;
        if let Some(l) = *held {
            return Ok(l);
        }
        let l = self.etcd.grant(LEASE_TTL).await?;
        *held = Some(l);
        Ok(l)
    }

    /// Puts the key of box `name`'s tunnel (its revision).
    async fn publish(&self, cluster: &str, instance: &str, name: &str) -> Result<i64, EtcdError> {
        let lease = self.lease().await?;
        let held = Held {
            server: self.url.clone(),
            r#box: name.to_string(),
            since_ms: crate::ecs::now_ms(),
        };
        let value = serde_json::to_vec(&held).expect("a tunnel's key encodes");
        let key = keys::tunnel(cluster, instance);
        let (_, revision) = self
            .etcd
            .txn_at(&[], &[Op::PutWithLease(key, value, lease)])
            .await?;
        Ok(revision)
    }

    /// Renews the lease of the tunnels' keys; one that expired (etcd was out of reach
    /// longer than its TTL) is replaced and every key put again.
    async fn keep_lease(self: Arc<Self>) {
        let mut failing = false;
        loop {
            tokio::time::sleep(Duration::from_secs(LEASE_TTL / 3)).await;
            let Some(l) = *self.lease.lock().await else {
                continue;
            };
            match self.etcd.keep_alive(l).await {
                Ok(Some(_)) => failing = false,
                Ok(None) => {
                    *self.lease.lock().await = None;
                    self.republish().await;
                }
                Err(e) => {
                    if !std::mem::replace(&mut failing, true) {
                        tracing::warn!(error = %crate::errors::error_chain(&e),
                            "cannot renew the lease of the boxes' tunnels' keys: trying again");
                    }
                }
            }
        }
    }

    async fn republish(&self) {
        let held: Vec<_> = {
            let t = self.tunnels.lock().expect("tunnels");
            t.iter()
                .map(|((c, i), t)| (c.clone(), i.clone(), t.name.clone(), t.serial))
                .collect()
        };
        for (c, i, name, serial) in held {
            match self.publish(&c, &i, &name).await {
                Ok(rev) => {
                    let mut t = self.tunnels.lock().expect("tunnels");
                    if let Some(t) = t.get_mut(&(c, i)).filter(|t| t.serial == serial) {
                        t.revision = rev;
                    }
                }
                Err(e) => tracing::warn!(r#box = %name, error = %crate::errors::error_chain(&e),
                    "cannot put a box's tunnel's key again"),
            }
        }
    }

    /// Holds box `name`'s tunnel for instance `instance` of `cluster` on `io` until it
    /// drops: its key put, `dial` lines and pings sent; nothing the box sends is read
    /// but as a sign of life. Then its key deleted (unless a newer tunnel replaced it).
    async fn hold(self: Arc<Self>, cluster: String, instance: String, name: String, io: Upgraded) {
        let revision = match self.publish(&cluster, &instance, &name).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(r#box = %name, error = %crate::errors::error_chain(&e),
                    "a box's tunnel refused: its key cannot be put");
                return;
            }
        };
        let (dials, mut asked) = tokio::sync::mpsc::channel(64);
        let serial = self.serial.fetch_add(1, Ordering::Relaxed);
        let at = (cluster.clone(), instance.clone());
        let tunnel = Tunnel {
            serial,
            name: name.clone(),
            dials,
            revision,
        };
        // A newer tunnel of the same instance replaces the older (its sender dropped ends it).
        self.tunnels
            .lock()
            .expect("tunnels")
            .insert(at.clone(), tunnel);
        tracing::info!(r#box = %name, %cluster, %instance, "a box's tunnel is up");
        let (mut rd, mut wr) = tokio::io::split(TokioIo::new(io));
        let mut ping = tokio::time::interval(PING);
        let mut heard = Instant::now();
        let mut buf = [0u8; 64];
        let why = loop {
            tokio::select! {
                d = asked.recv() => match d {
                    Some(nonce) => {
                        if let Err(e) = wr.write_all(format!("dial {nonce}\n").as_bytes()).await {
                            break e.to_string();
                        }
                    }
                    None => break "a newer tunnel of the instance replaced it".to_string(),
                },
                _ = ping.tick() => {
                    if heard.elapsed() > SILENT {
                        break format!("no word from the box for {} s", SILENT.as_secs());
                    }
                    if let Err(e) = wr.write_all(b"ping\n").await {
                        break e.to_string();
                    }
                }
                r = rd.read(&mut buf) => match r {
                    Ok(0) => break "the box closed it".to_string(),
                    Ok(_) => heard = Instant::now(),
                    Err(e) => break e.to_string(),
                },
            }
        };
        let mine = {
            let mut t = self.tunnels.lock().expect("tunnels");
            match t.get(&at) {
                Some(t0) if t0.serial == serial => t.remove(&at),
                _ => None,
            }
        };
        if let Some(t) = mine {
            let key = keys::tunnel(&cluster, &instance);
            let deleted = self
                .etcd
                .txn(
                    &[Compare::ModRevision(key.clone(), t.revision)],
                    &[Op::Delete(key)],
                )
                .await;
            if let Err(e) = deleted {
                tracing::warn!(r#box = %name, error = %crate::errors::error_chain(&e),
                    "cannot delete a box's tunnel's key (it goes with this serve's lease)");
            }
        }
        tracing::info!(r#box = %name, %cluster, %instance, why, "a box's tunnel is down");
    }

    /// A stream to the endpoint of instance `instance` of `cluster`, through its tunnel:
    /// a nonce sent to the box, and its connection back.
    async fn dial(&self, cluster: &str, instance: &str) -> Result<Upgraded, DialError> {
        let no_tunnel = || DialError::NoTunnel {
            cluster: cluster.into(),
            instance: instance.into(),
            at: format!("the serve at {}", self.url),
        };
        let (name, dials) = {
            let t = self.tunnels.lock().expect("tunnels");
            let t = t
                .get(&(cluster.to_string(), instance.to_string()))
                .ok_or_else(no_tunnel)?;
            (t.name.clone(), t.dials.clone())
        };
        let nonce = crate::task::new_id().map_err(|_| no_tunnel())?;
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.waiting.lock().expect("waiting").insert(
            nonce.clone(),
            Waiting {
                name: name.clone(),
                reply,
            },
        );
        let sent = dials.send(nonce.clone()).await.is_ok();
        let got = match sent {
            true => tokio::time::timeout(DIAL_WAIT, async { answer.await.ok()?.await.ok() })
                .await
                .ok()
                .flatten(),
            false => None,
        };
        self.waiting.lock().expect("waiting").remove(&nonce);
        match (sent, got) {
            (_, Some(up)) => Ok(up),
            (false, _) => Err(no_tunnel()),
            (true, None) => Err(DialError::NoAnswer {
                name,
                instance: instance.into(),
            }),
        }
    }
}

fn refused(status: u16, message: String) -> axum::response::Response {
    use axum::response::IntoResponse;
    let status =
        axum::http::StatusCode::from_u16(status).unwrap_or(axum::http::StatusCode::FORBIDDEN);
    let body = serde_json::json!({ "__type": "AccessDeniedException", "message": message });
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn switching() -> axum::response::Response {
    axum::http::Response::builder()
        .status(axum::http::StatusCode::SWITCHING_PROTOCOLS)
        .header(axum::http::header::CONNECTION, "upgrade")
        .header(axum::http::header::UPGRADE, PROTOCOL)
        .body(axum::body::Body::empty())
        .expect("a 101 response")
}

type Peer = Option<axum::Extension<crate::certs::PeerCertificate>>;

/// The request's upgrade to [`PROTOCOL`], or why it cannot be taken.
fn upgrading(req: axum::extract::Request) -> Result<OnUpgrade, (u16, String)> {
    let (mut parts, _) = req.into_parts();
    let asked = parts
        .headers
        .get(axum::http::header::UPGRADE)
        .and_then(|v| v.to_str().ok());
    if asked != Some(PROTOCOL) {
        return Err((
            400,
            format!("a tunnel's request is a GET with `Upgrade: {PROTOCOL}`"),
        ));
    }
    parts.extensions.remove::<OnUpgrade>().ok_or_else(|| {
        (
            400,
            "this connection cannot be upgraded (HTTP/1.1 only)".into(),
        )
    })
}

/// The box a request's client certificate is (not removed), or the refusal.
async fn the_box(etcd: &Etcd, peer: Peer) -> Result<String, (u16, String)> {
    let Some(axum::Extension(p)) = peer else {
        return Err((
            401,
            "a box's client certificate is required (a box gets one by joining with a token)"
                .into(),
        ));
    };
    super::join::whoami(etcd, &p.0)
        .await
        .map_err(|r| (r.status, r.message))
}

/// The instance a box opens its tunnel for (`?cluster=C&instance=I`).
#[derive(Debug, PartialEq)]
struct Which {
    cluster: String,
    instance: String,
}

impl Which {
    /// Parses the query: an ECS cluster name and a container instance id (32 hex).
    fn parse(query: &str) -> Option<Which> {
        let (mut cluster, mut instance) = (None, None);
        for pair in query.split('&') {
            match pair.split_once('=') {
                Some(("cluster", c)) => cluster = Some(c),
                Some(("instance", i)) => instance = Some(i),
                _ => return None,
            }
        }
        let (c, i) = (cluster?, instance?);
        let name = |c: &str| {
            !c.is_empty()
                && c.len() <= 255
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        (name(c) && i.len() == 32 && i.bytes().all(|b| b.is_ascii_hexdigit())).then(|| Which {
            cluster: c.into(),
            instance: i.into(),
        })
    }
}

/// `GET /v1/tunnel?cluster=C&instance=I` (upgraded), by a box: its tunnel for instance I,
/// which serve's leader must have bound to it.
async fn open(
    hub: Arc<Hub>,
    peer: Peer,
    which: Which,
    req: axum::extract::Request,
) -> axum::response::Response {
    let name = match the_box(hub.etcd, peer).await {
        Ok(n) => n,
        Err((status, why)) => return refused(status, why),
    };
    let bound = keys::box_bound(&name, &which.cluster, &which.instance);
    match hub.etcd.get(&bound).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            return refused(
                403,
                format!(
                    "box {name} holds no container instance {} of cluster {}: a box opens a \
                     tunnel only for an instance serve's leader bound to it",
                    which.instance, which.cluster
                ),
            );
        }
        Err(e) => return refused(503, crate::errors::error_chain(&e)),
    }
    let on_upgrade = match upgrading(req) {
        Ok(u) => u,
        Err((status, why)) => return refused(status, why),
    };
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(io) => hub.hold(which.cluster, which.instance, name, io).await,
            Err(e) => tracing::warn!(r#box = %name, error = %e, "a box's tunnel was not upgraded"),
        }
    });
    switching()
}

/// `GET /v1/tunnel/NONCE` (upgraded), by a box: its connection back for a dial serve sent
/// it, handed to the caller waiting for it.
async fn back(
    hub: Arc<Hub>,
    peer: Peer,
    nonce: String,
    req: axum::extract::Request,
) -> axum::response::Response {
    let name = match the_box(hub.etcd, peer).await {
        Ok(n) => n,
        Err((status, why)) => return refused(status, why),
    };
    let waiting = {
        let mut w = hub.waiting.lock().expect("waiting");
        match w.get(&nonce) {
            Some(d) if d.name == name => w.remove(&nonce),
            _ => None,
        }
    };
    let Some(waiting) = waiting else {
        return refused(
            403,
            format!(
                "box {name}: not a dial this serve sent it, or one that waited longer than {} s",
                DIAL_WAIT.as_secs()
            ),
        );
    };
    let on_upgrade = match upgrading(req) {
        Ok(u) => u,
        Err((status, why)) => return refused(status, why),
    };
    let _ = waiting.reply.send(on_upgrade);
    switching()
}

/// Why a caller may not ask for a relay: `None` for serve's and the operator's
/// certificates.
fn relay_refused(peer: &Peer) -> Option<(u16, String)> {
    let Some(axum::Extension(p)) = peer else {
        return Some((
            401,
            "a client certificate of the cluster with serve's or the operator's role is required"
                .into(),
        ));
    };
    let uris = pki::uri_names(&p.0);
    if uris
        .iter()
        .any(|u| u == pki::ROLE_SERVE || u == pki::ROLE_OPERATOR)
    {
        return None;
    }
    Some((
        403,
        match uris.iter().find(|u| u.starts_with(pki::ROLE_BOX)) {
            Some(b) => format!(
                "a box's certificate ({b}): a box reaches no other box's endpoint; only serve \
                 and the operator do"
            ),
            None => format!(
                "a certificate with neither {} nor {} among its names",
                pki::ROLE_SERVE,
                pki::ROLE_OPERATOR
            ),
        },
    ))
}

/// `GET /v1/boxes/CLUSTER/INSTANCE/dial` (upgraded), by another serve or the operator's
/// CLI: a stream to the instance's endpoint through the tunnel this serve holds.
async fn relay(
    hub: Arc<Hub>,
    peer: Peer,
    (cluster, instance): (String, String),
    req: axum::extract::Request,
) -> axum::response::Response {
    if let Some((status, why)) = relay_refused(&peer) {
        tracing::warn!(%cluster, %instance, why, "a relay to a box's endpoint refused");
        return refused(status, why);
    }
    let on_upgrade = match upgrading(req) {
        Ok(u) => u,
        Err((status, why)) => return refused(status, why),
    };
    let to_box = match hub.dial(&cluster, &instance).await {
        Ok(b) => b,
        Err(e) => return refused(502, crate::errors::error_chain(&e)),
    };
    tokio::spawn(async move {
        if let Ok(caller) = on_upgrade.await {
            let mut caller = TokioIo::new(caller);
            let mut to_box = TokioIo::new(to_box);
            let _ = tokio::io::copy_bidirectional(&mut caller, &mut to_box).await;
        }
    });
    switching()
}

/// The tunnel's routes on serve's port for boxes at `url` (as callers reach it).
pub fn router(etcd: &'static Etcd, url: String) -> axum::Router {
    use axum::extract::{Path, RawQuery};
    use axum::routing::get;
    let hub = Hub::start(etcd, url);
    let (h1, h2, h3) = (hub.clone(), hub.clone(), hub);
    axum::Router::new()
        .route(
            "/v1/tunnel",
            get(
                move |peer: Peer, RawQuery(q): RawQuery, req: axum::extract::Request| {
                    let hub = h1.clone();
                    async move {
                        match Which::parse(q.as_deref().unwrap_or_default()) {
                            Some(w) => open(hub, peer, w, req).await,
                            None => refused(
                                400,
                                "a tunnel is opened with ?cluster=NAME&instance=ID (32 hex)".into(),
                            ),
                        }
                    }
                },
            ),
        )
        .route(
            "/v1/tunnel/{nonce}",
            get(
                move |peer: Peer, Path(nonce): Path<String>, req: axum::extract::Request| {
                    back(h2.clone(), peer, nonce, req)
                },
            ),
        )
        .route(
            "/v1/boxes/{cluster}/{instance}/dial",
            get(
                move |peer: Peer, Path(at): Path<(String, String)>, req: axum::extract::Request| {
                    relay(h3.clone(), peer, at, req)
                },
            ),
        )
}

// ------------------------------------------------------------------ the caller's side

/// A raw stream to the endpoint of instance `instance` of `cluster` through its tunnel:
/// from this serve's own hub when it holds the tunnel, else relayed by the serve its key
/// names (over TLS with this caller's certificate, which that serve checks).
pub async fn through(etcd: &Etcd, cluster: &str, instance: &str) -> std::io::Result<Stream> {
    if let Some(hub) = HUB.get()
        && hub.holds(cluster, instance)
    {
        let up = hub.dial(cluster, instance).await.map_err(DialError::io)?;
        return Ok(Box::new(TokioIo::new(up)));
    }
    let key = keys::tunnel(cluster, instance);
    let kv = etcd.get(&key).await.map_err(|source| {
        DialError::Store {
            instance: instance.into(),
            source,
        }
        .io()
    })?;
    let Some(kv) = kv else {
        return Err(DialError::NoTunnel {
            cluster: cluster.into(),
            instance: instance.into(),
            at: "the control plane".into(),
        }
        .io());
    };
    let held: Held = serde_json::from_slice(&kv.value).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{key} does not decode: {e}"),
        )
    })?;
    let addr = held
        .server
        .strip_prefix("https://")
        .unwrap_or(&held.server)
        .trim_end_matches('/');
    let tls = agents_client::agents_tls(etcd)
        .map_err(|e| std::io::Error::other(crate::errors::error_chain(&e)))?
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "a box's tunnel is relayed over TLS: give the cluster's CA and this caller's \
                 certificate (--etcd-certs DIR)",
            )
        })?;
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    let s = agents_client::tls_over(&tls, host, agents_client::tcp(addr).await?).await?;
    let path = format!("/v1/boxes/{cluster}/{instance}/dial");
    let wait = DIAL_WAIT + Duration::from_secs(5);
    match agents_client::upgrade(s, addr, &path, PROTOCOL, &[], wait).await? {
        // The caller speaks first inside (TLS's hello): nothing can come before.
        Upgrade::Upgraded(s, rest) if rest.is_empty() => Ok(s),
        Upgrade::Upgraded(..) => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "the serve at {} sent bytes before the box spoke",
                held.server
            ),
        )),
        Upgrade::Refused(status, body) => Err(std::io::Error::other(format!(
            "the serve at {} holding box {}'s tunnel refused to relay (HTTP {status}): {}",
            held.server,
            held.r#box,
            body["message"].as_str().unwrap_or_default()
        ))),
    }
}

// ------------------------------------------------------------------ the box's side

/// A joined box's side: the tunnel dialed out to serve's port for boxes, dialed again
/// when it drops, and each dial answered with a connection joined to the box's endpoint.
pub struct Dialer {
    /// serve's port for boxes (`https://HOST:PORT`), tried in order.
    pub servers: Vec<String>,
    /// The cluster's CA and the box's certificate.
    pub tls: tokio_rustls::TlsConnector,
    pub cluster: String,
    pub instance: String,
    /// The box's endpoint (on loopback).
    pub local: std::net::SocketAddr,
}

impl Dialer {
    /// Until the process ends.
    pub async fn run(self: Arc<Self>) {
        let mut backoff = BACKOFF.0;
        let mut next = 0;
        loop {
            let server = self.servers[next % self.servers.len()].clone();
            match self.session(&server).await {
                Ok(why) => {
                    backoff = BACKOFF.0;
                    tracing::warn!(%server, why, "the tunnel to the control plane dropped: dialing again");
                }
                Err(why) => {
                    next += 1;
                    tracing::warn!(%server, why, retry_ms = backoff.as_millis() as u64,
                        "cannot open a tunnel to the control plane");
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF.1);
        }
    }

    /// A connection to `server` upgraded at `path`.
    async fn open(&self, server: &str, path: &str) -> std::io::Result<Upgrade> {
        let addr = server
            .strip_prefix("https://")
            .unwrap_or(server)
            .trim_end_matches('/');
        let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
        let s = agents_client::tls_over(&self.tls, host, agents_client::tcp(addr).await?).await?;
        agents_client::upgrade(s, addr, path, PROTOCOL, &[], Duration::from_secs(10)).await
    }

    /// One tunnel through `server`, held until it drops (why it did), or why it could not
    /// be opened.
    async fn session(self: &Arc<Self>, server: &str) -> Result<String, String> {
        let path = format!(
            "/v1/tunnel?cluster={}&instance={}",
            self.cluster, self.instance
        );
        let (io, rest) = match self.open(server, &path).await {
            Ok(Upgrade::Upgraded(io, rest)) => (io, rest),
            Ok(Upgrade::Refused(status, body)) => {
                return Err(format!(
                    "HTTP {status}: {}",
                    body["message"].as_str().unwrap_or_default()
                ));
            }
            Err(e) => return Err(e.to_string()),
        };
        tracing::info!(%server, "tunnel to the control plane up: serve reaches this box's endpoint through it");
        let (rd, mut wr) = tokio::io::split(io);
        let mut lines = tokio::io::BufReader::new(std::io::Cursor::new(rest).chain(rd)).lines();
        loop {
            let line = match tokio::time::timeout(SILENT, lines.next_line()).await {
                Err(_) => return Ok(format!("no word from serve for {} s", SILENT.as_secs())),
                Ok(Err(e)) => return Ok(e.to_string()),
                Ok(Ok(None)) => return Ok("serve closed it".into()),
                Ok(Ok(Some(l))) => l,
            };
            if line == "ping" {
                if let Err(e) = wr.write_all(b"pong\n").await {
                    return Ok(e.to_string());
                }
            } else if let Some(nonce) = line
                .strip_prefix("dial ")
                .filter(|n| n.len() == 32 && n.bytes().all(|b| b.is_ascii_hexdigit()))
            {
                tokio::spawn(self.clone().answer(server.to_string(), nonce.to_string()));
            } else {
                return Ok(format!(
                    "serve sent what is not a tunnel message: {:?}",
                    line.chars().take(64).collect::<String>()
                ));
            }
        }
    }

    /// Dials back for `nonce` and joins that connection to the box's endpoint.
    async fn answer(self: Arc<Self>, server: String, nonce: String) {
        let joined = async {
            let (mut io, rest) = match self.open(&server, &format!("/v1/tunnel/{nonce}")).await? {
                Upgrade::Upgraded(io, rest) => (io, rest),
                Upgrade::Refused(status, body) => {
                    return Err(std::io::Error::other(format!(
                        "HTTP {status}: {}",
                        body["message"].as_str().unwrap_or_default()
                    )));
                }
            };
            let mut local = tokio::net::TcpStream::connect(self.local).await?;
            local.set_nodelay(true)?;
            local.write_all(&rest).await?;
            tokio::io::copy_bidirectional(&mut io, &mut local).await?;
            Ok(())
        };
        if let Err(e) = joined.await {
            tracing::debug!(%server, error = %e, "a dial through the tunnel ended");
        }
    }
}

/// The one way to an agent's endpoint, for every caller (logs, metrics samples, the
/// console's views, exec): `http://HOST:PORT` and `https://HOST:PORT` directly (TLS
/// checked with the cluster's CA, this client's certificate presented), a
/// tunnel endpoint (`tunnel:CLUSTER/INSTANCE`) through the tunnel the box
/// dialed out to a serve, with TLS inside it end to end to the box. The stream is ready
/// for the endpoint's HTTP.
pub async fn connect(etcd: &Etcd, endpoint: &str) -> std::io::Result<Stream> {
    let tls = || {
        agents_client::agents_tls(etcd)
            .map_err(|e| std::io::Error::other(crate::errors::error_chain(&e)))?
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!(
                        "{endpoint} serves TLS: give the cluster's CA (--etcd-certs DIR or \
                         --etcd-cacert) to check it"
                    ),
                )
            })
    };
    if let Some((cluster, instance)) = parse(endpoint) {
        let raw = through(etcd, cluster, instance).await?;
        // The box's certificate names loopback (its endpoint listens there; the tunnel
        // ends there): checked with the cluster's CA as a direct endpoint's is.
        return agents_client::tls_over(&tls()?, "127.0.0.1", raw).await;
    }
    let (addr, secure) = match (
        endpoint.strip_prefix("https://"),
        endpoint.strip_prefix("http://"),
    ) {
        (Some(a), _) => (a.trim_end_matches('/'), true),
        (None, Some(a)) => (a.trim_end_matches('/'), false),
        _ => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "{endpoint}: an agent's endpoint is https://HOST:PORT, http://HOST:PORT \
                     or a tunnel"
                ),
            ));
        }
    };
    let tcp = agents_client::tcp(addr).await?;
    if !secure {
        return Ok(Box::new(tcp));
    }
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    agents_client::tls_over(&tls()?, host, tcp).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registration_names_no_other_box_s_tunnel() {
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            resolve(Some(REGISTERED.into()), "lab", id),
            Some(format!("tunnel:lab/{id}"))
        );
        // A box that writes another instance's tunnel into its registration is reached
        // through its own, the one its registration's key names.
        assert_eq!(
            resolve(Some("tunnel:lab/ffff".into()), "lab", id),
            Some(format!("tunnel:lab/{id}"))
        );
        assert_eq!(
            resolve(Some("https://10.0.0.5:51680".into()), "lab", id),
            Some("https://10.0.0.5:51680".into())
        );
        assert_eq!(resolve(None, "lab", id), None);
        assert_eq!(parse(&endpoint("lab", id)), Some(("lab", id)));
        for not in [
            "https://h:1",
            "tunnel:",
            "tunnel:lab",
            "tunnel:/x",
            "tunnel:a/b/c",
        ] {
            assert_eq!(parse(not), None, "{not}");
        }
    }

    fn peer(cert: Vec<u8>) -> Peer {
        Some(axum::Extension(crate::certs::PeerCertificate(Arc::new(
            cert,
        ))))
    }

    #[test]
    fn only_serve_s_and_the_operator_s_certificates_may_ask_for_a_relay() {
        let dir = tempfile::tempdir().unwrap();
        let layout = pki::Layout {
            dir: dir.path().to_path_buf(),
        };
        pki::init(&layout, &[]).unwrap();
        let der = |p: std::path::PathBuf| {
            use rustls_pki_types::pem::PemObject;
            rustls_pki_types::CertificateDer::from_pem_file(p)
                .unwrap()
                .to_vec()
        };
        assert!(relay_refused(&peer(der(layout.serve().join("client.crt")))).is_none());
        assert!(relay_refused(&peer(der(layout.admin().join("client.crt")))).is_none());
        pki::add_box(&layout, "edge-9", &[]).unwrap();
        let (status, why) =
            relay_refused(&peer(der(layout.box_bundle("edge-9").join("client.crt")))).unwrap();
        assert_eq!(status, 403);
        assert!(
            why.contains("urn:minifargate:box:edge-9") && why.contains("no other box"),
            "{why}"
        );
        assert_eq!(relay_refused(&None).unwrap().0, 401);
    }

    #[test]
    fn a_tunnel_names_one_cluster_and_one_instance() {
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            Which::parse(&format!("cluster=lab&instance={id}")),
            Some(Which {
                cluster: "lab".into(),
                instance: id.into()
            })
        );
        for bad in [
            "cluster=lab".to_string(),
            format!("cluster=../x&instance={id}"),
            "cluster=lab&instance=zz".into(),
            format!("cluster=lab&instance={id}&more=1"),
            String::new(),
        ] {
            assert_eq!(Which::parse(&bad), None, "{bad}");
        }
    }
}
