//! serve's port for boxes as a joined box's only way to the cluster's store (docs/cluster.md,
//! "Boxes over one port"). A box that joined with a token (`agent --server URL`) sends its
//! store calls here instead of to etcd: the same calls of etcd's JSON gateway its client
//! makes ([`super::etcd`]), over the TLS connection it dialed out, authenticated by the
//! certificate the join gave it. The box holds no etcd credentials and has no etcd user:
//! serve passes its calls on as serve itself (one etcd authentication a serve, not one a
//! box: a box's join and its bindings change nothing of etcd's users and roles, issue 76),
//! after deciding itself what the box may do:
//!
//! - only the calls a box makes pass (reads, writes and transactions of keys, its liveness
//!   lease, watches): nothing of etcd's authentication, users, roles, members, compaction
//!   or maintenance, and nothing else of serve's;
//! - a certificate that is not a box's, or whose box was removed (`cluster remove-box`),
//!   is refused: every serve follows the removed certificates with a watch, so a removal
//!   ends the box's calls at once on each;
//! - every key a call reads or touches (a range, a watch, a transaction's compares and
//!   both its branches, a delete) and every lease it names is checked against the box
//!   ([`super::rights`]: its own keys, the instances bound to it, what its tasks need;
//!   the leases granted to it here), and the body passed on is the one checked;
//! - every put, alone or in a transaction, is checked against who sends it
//!   ([`super::admission`]: values its readers take), and refused with the reason before
//!   etcd sees it.
//!
//! So a box needs no route to etcd and no port open to it, holds no secret of the
//! store's, and the control plane's etcd can listen where boxes cannot reach it.

use super::etcd::{Etcd, EtcdError, Event};
use super::join::Refusal;
use super::keys;
use super::rights::{self, BoxView, Op};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The calls a box's store client makes ([`super::etcd`]'s), the only ones passed on.
pub const CALLS: [&str; 8] = [
    "/v3/kv/range",
    "/v3/kv/put",
    "/v3/kv/txn",
    "/v3/kv/deleterange",
    "/v3/lease/grant",
    "/v3/lease/keepalive",
    "/v3/lease/revoke",
    "/v3/watch",
];

const AUTHENTICATE: &str = "/v3/auth/authenticate";

/// The largest call body passed on: etcd's own default request limit
/// (`--max-request-bytes`, 1.5 MiB) and some room for its JSON and base64.
pub const MAX_REQUEST: usize = 2 * 1024 * 1024;

/// How long a certificate's box is taken as known before it is looked up again. A
/// removal reaches every serve sooner, through its watch of the removed certificates:
/// this bounds a removal missed while that watch was down.
const KNOWN_FOR: Duration = Duration::from_secs(5);

/// How long a lease is taken as a box's before its owner key is read again.
const LEASE_KNOWN_FOR: Duration = Duration::from_secs(60);

/// The least time between two reads of a box's bindings for a call its cached ones
/// refuse: a binding just made is seen by the box's next call, and a box that keeps
/// asking for what it may not have costs etcd at most a few reads a second.
const BOUND_AGAIN_AFTER: Duration = Duration::from_millis(200);

/// A box's bindings as last read, and when.
struct Bound {
    view: BoxView,
    at: Instant,
}

struct Gateway {
    etcd: &'static Etcd,
    /// Certificates (their SHA-256) looked up lately: the box's name, and when.
    known: Mutex<HashMap<String, (String, Instant)>>,
    /// The removed boxes' certificates (SHA-256), as this serve's watch saw them.
    revoked: Mutex<HashSet<String>>,
    /// Each box's bindings, by box name.
    bound: Mutex<HashMap<String, Bound>>,
    /// The leases granted to boxes here (any serve): their box, and when it was read.
    leases: Mutex<HashMap<i64, (String, Instant)>>,
}

fn refuse(status: u16, message: String) -> Refusal {
    Refusal { status, message }
}

fn store_error(e: EtcdError) -> Refusal {
    unreachable(e)
}

impl Gateway {
    /// The box whose certificate `cert` (DER) is, or why it is refused.
    async fn who(&self, cert: &[u8]) -> Result<String, Refusal> {
        let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(cert));
        let removed = self.revoked.lock().expect("revoked lock").contains(&sha);
        let cached = self
            .known
            .lock()
            .expect("known lock")
            .get(&sha)
            .filter(|(_, at)| at.elapsed() < KNOWN_FOR)
            .map(|(n, _)| n.clone());
        if let Some(name) = cached
            && !removed
        {
            return Ok(name);
        }
        // A removed certificate is refused by whoami, with the reason.
        let name = super::join::whoami(self.etcd, cert).await?;
        let mut known = self.known.lock().expect("known lock");
        known.retain(|_, (_, at)| at.elapsed() < KNOWN_FOR);
        known.insert(sha, (name.clone(), Instant::now()));
        Ok(name)
    }

    /// Box `name`'s bindings read from etcd now.
    async fn read_bound(&self, name: &str) -> Result<BoxView, Refusal> {
        let kvs = self
            .etcd
            .get_prefix(&keys::box_bound_all(name))
            .await
            .map_err(store_error)?;
        let view = BoxView::of(name, &kvs);
        self.bound.lock().expect("bound lock").insert(
            name.to_string(),
            Bound {
                view: view.clone(),
                at: Instant::now(),
            },
        );
        Ok(view)
    }

    /// Box `name`'s bindings as cached (`None`: none yet), and whether they may be read
    /// again now.
    fn cached_bound(&self, name: &str) -> Option<(BoxView, bool)> {
        let bound = self.bound.lock().expect("bound lock");
        bound
            .get(name)
            .map(|b| (b.view.clone(), b.at.elapsed() >= BOUND_AGAIN_AFTER))
    }

    /// Of `ids`, the leases of box `v`: granted to it through a serve's port for boxes,
    /// or (granted before ports recorded owners) holding only keys the box writes, then
    /// recorded as its own.
    async fn leases_of(&self, v: &BoxView, ids: BTreeSet<i64>) -> Result<BTreeSet<i64>, Refusal> {
        let name = v.name.as_str();
        let mut owned = BTreeSet::new();
        for id in ids {
            let known = self
                .leases
                .lock()
                .expect("leases lock")
                .get(&id)
                .is_some_and(|(n, at)| n == name && at.elapsed() < LEASE_KNOWN_FOR);
            if known {
                owned.insert(id);
                continue;
            }
            let owner = self
                .etcd
                .get(&keys::box_lease(id))
                .await
                .map_err(store_error)?;
            let mine = match owner {
                Some(kv) => kv.value == name.as_bytes(),
                None => match self.etcd.lease_keys(id).await.map_err(store_error)? {
                    // Expired (its owner key went with it), or never granted: etcd says
                    // so to the box (a keep-alive's TTL 0, a put's "lease not found"),
                    // and the agent takes a new lease. Nothing of anyone's is touched.
                    None => {
                        owned.insert(id);
                        continue;
                    }
                    Some(on) => self.adopt(v, id, &on).await?,
                },
            };
            if mine {
                self.lease_is(id, name);
                owned.insert(id);
            }
        }
        Ok(owned)
    }

    /// Whether live lease `id`, with no owner recorded and keys `on`, is box `v`'s (every
    /// key on it one the box writes): then recorded as its own.
    async fn adopt(&self, v: &BoxView, id: i64, on: &[String]) -> Result<bool, Refusal> {
        if !rights::holds_only_its_own(v, on) {
            return Ok(false);
        }
        self.etcd
            .put(&keys::box_lease(id), v.name.as_bytes(), Some(id))
            .await
            .map_err(store_error)?;
        tracing::info!(r#box = %v.name, lease = id, "a lease granted before this version: recorded as the box's (it holds only the box's keys)");
        Ok(true)
    }

    fn lease_is(&self, id: i64, name: &str) {
        let mut leases = self.leases.lock().expect("leases lock");
        if leases.len() > 100_000 {
            leases.retain(|_, (_, at)| at.elapsed() < LEASE_KNOWN_FOR);
        }
        leases.insert(id, (name.to_string(), Instant::now()));
    }

    /// Whether box `name` may do every op of `ops`: checked with its cached bindings,
    /// and once more with them read again when those refuse (a binding just made).
    async fn check(&self, name: &str, ops: &[Op]) -> Result<(), Refusal> {
        let wanted = rights::leases(ops);
        let cached = self.cached_bound(name);
        if let Some((view, again)) = cached {
            let r = self.check_with(view, &wanted, ops).await;
            if r.is_ok() || !again {
                return r;
            }
            tracing::debug!(r#box = %name, "a box's call refused by its kept bindings: read again");
        }
        let view = self.read_bound(name).await?;
        self.check_with(view, &wanted, ops).await
    }

    async fn check_with(
        &self,
        mut view: BoxView,
        wanted: &BTreeSet<i64>,
        ops: &[Op],
    ) -> Result<(), Refusal> {
        view.leases = self.leases_of(&view, wanted.clone()).await?;
        ops.iter().try_for_each(|op| rights::may(&view, op))
    }

    /// Lease grant `body` for box `name`: granted as serve, then its owner key (the box's
    /// name, attached to the lease) written, so any serve lets the box use it.
    async fn grant(&self, name: &str, body: Vec<u8>) -> Result<Response, Refusal> {
        let (status, bytes) = self.as_serve_whole("/v3/lease/grant", body).await?;
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        let id = match &v["ID"] {
            serde_json::Value::String(s) => s.parse::<i64>().unwrap_or(0),
            n => n.as_i64().unwrap_or(0),
        };
        if !status.is_success() || id == 0 {
            return Ok(whole(status, bytes));
        }
        if let Err(e) = self
            .etcd
            .put(&keys::box_lease(id), name.as_bytes(), Some(id))
            .await
        {
            let _ = self.etcd.revoke(id).await;
            return Err(refuse(
                503,
                format!(
                    "lease {id} granted but not recorded as box {name}'s (revoked): {}",
                    crate::errors::error_chain(&e)
                ),
            ));
        }
        self.lease_is(id, name);
        Ok(whole(status, bytes))
    }

    /// Call `call` as serve, answered whole.
    async fn as_serve_whole(
        &self,
        call: &'static str,
        body: Vec<u8>,
    ) -> Result<(StatusCode, Bytes), Refusal> {
        let r = as_serve(self.etcd, call, body).await?;
        let status = StatusCode::from_u16(r.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        let bytes = r.bytes().await.map_err(|e| {
            refuse(
                504,
                format!(
                    "etcd's answer to {call} was cut: {}",
                    crate::errors::error_chain(&e)
                ),
            )
        })?;
        Ok((status, bytes))
    }
}

fn whole(status: StatusCode, bytes: Bytes) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

/// Follows the removed certificates (`cluster remove-box`): each one, as it is written,
/// refused by this serve's next call of its box, whatever the cache says.
async fn follow_removals(g: Arc<Gateway>) {
    let prefix = keys::revoked_certificates();
    loop {
        let followed = async {
            let (kvs, rev) = g
                .etcd
                .get_prefix_at(&prefix)
                .await
                .map_err(|e| e.to_string())?;
            let add = |key: &str| {
                if let Some(sha) = key.strip_prefix(&prefix) {
                    g.revoked
                        .lock()
                        .expect("revoked lock")
                        .insert(sha.to_string());
                    g.known.lock().expect("known lock").remove(sha);
                }
            };
            kvs.iter().for_each(|kv| add(&kv.key));
            let mut w = g
                .etcd
                .watch(&prefix, rev + 1)
                .await
                .map_err(|e| e.to_string())?;
            loop {
                for e in w.next().await.map_err(|e| e.to_string())? {
                    if let Event::Put(kv) = e {
                        add(&kv.key);
                    }
                }
            }
            #[allow(unreachable_code)]
            Ok::<(), String>(())
        };
        if let Err(why) = followed.await {
            tracing::debug!(error = %why, "serve's port for boxes: the watch of removed boxes broke: again in 1 s");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn unreachable(e: EtcdError) -> Refusal {
    match e {
        // Sent and not answered: 504, which the box's client takes as "maybe applied".
        e @ EtcdError::OutcomeUnknown { .. } => refuse(504, crate::errors::error_chain(&e)),
        e => refuse(503, crate::errors::error_chain(&e)),
    }
}

/// The gateway's route on serve's port for boxes: `POST /v3/...`.
pub fn router(etcd: &'static Etcd) -> axum::Router {
    use axum::extract::DefaultBodyLimit;
    let g = Arc::new(Gateway {
        etcd,
        known: Mutex::new(HashMap::new()),
        revoked: Mutex::new(HashSet::new()),
        bound: Mutex::new(HashMap::new()),
        leases: Mutex::new(HashMap::new()),
    });
    tokio::spawn(follow_removals(g.clone()));
    axum::Router::new()
        .route("/v3/{*call}", axum::routing::post(call))
        .layer(DefaultBodyLimit::max(MAX_REQUEST))
        .with_state(g)
}

fn refused(status: u16, message: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
    // etcd's own error shape, which the box's client reads its message from.
    let body = json!({ "error": message, "message": message, "code": 7 });
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Which call `asked` is, if a box makes it here.
fn known_call(asked: &str) -> Result<&'static str, (u16, String)> {
    if let Some(c) = CALLS.iter().copied().find(|c| *c == asked) {
        return Ok(c);
    }
    Err((
        403,
        if asked == AUTHENTICATE {
            format!(
                "{asked}: a box does not authenticate to etcd: serve's port for boxes passes \
                 its calls on as serve, once it checked them (the box holds no etcd \
                 credentials)"
            )
        } else {
            format!(
                "{asked}: not a call a box makes here (these pass: {})",
                CALLS.join(", ")
            )
        },
    ))
}

/// etcd's answer, passed on as it is (streamed: a watch is one long response).
fn pass_on(r: reqwest::Response) -> Response {
    let status = StatusCode::from_u16(r.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let content_type = r
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_string();
    let body = axum::body::Body::new(reqwest::Body::from(r));
    (status, [(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// Call `call` with `body` as serve (its own etcd token); sent again with a new token
/// when etcd refuses the one kept (lapsed, or old after a change of the auth store: the
/// call was not applied), up to [`super::etcd::TOKEN_TRIES`] times.
async fn as_serve(
    etcd: &Etcd,
    call: &'static str,
    body: Vec<u8>,
) -> Result<reqwest::Response, Refusal> {
    let body = Bytes::from(body);
    let mut tries = 1;
    loop {
        let token = etcd.own_token().await.map_err(unreachable)?;
        let r = etcd
            .forward(call, body.clone(), token.as_deref())
            .await
            .map_err(unreachable)?;
        if r.status().is_success() || tries >= super::etcd::TOKEN_TRIES {
            return Ok(r);
        }
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let bytes = r.bytes().await.unwrap_or_default();
        if super::etcd::refused_for_token(status, &String::from_utf8_lossy(&bytes)) {
            tracing::debug!(call, "etcd refused serve's token: authenticating again");
            etcd.forget_own_token(token.as_deref()).await;
            tries += 1;
            continue;
        }
        // etcd's refusal, passed on as it came.
        let mut out = axum::http::Response::builder().status(status);
        if let Some(ct) = headers.get(reqwest::header::CONTENT_TYPE) {
            out = out.header(reqwest::header::CONTENT_TYPE, ct);
        }
        let out = out
            .body(bytes)
            .expect("a status and a content type make a response");
        return Ok(reqwest::Response::from(out));
    }
}

/// Box `name`'s call `call` with `body`: checked ([`rights`], [`super::admission`]), then
/// passed on as serve; etcd's answer, or why it was refused.
async fn as_box(
    g: &Gateway,
    name: &str,
    call: &'static str,
    body: &[u8],
) -> Result<Response, Refusal> {
    let (ops, body) = rights::parse(call, body)?;
    // The puts' own rules first (their refusals name the rule: a status is serve's, an
    // assignment the placer's), then every key and lease against the box.
    super::admission::vet(g.etcd, name, call, &body).await?;
    g.check(name, &ops).await?;
    if call == "/v3/lease/grant" {
        return g.grant(name, body).await;
    }
    let r = as_serve(g.etcd, call, body).await?;
    if call == "/v3/lease/revoke" && r.status().is_success() {
        let mut leases = g.leases.lock().expect("leases lock");
        for id in rights::leases(&ops) {
            leases.remove(&id);
        }
    }
    Ok(pass_on(r))
}

async fn call(
    State(g): State<Arc<Gateway>>,
    Path(rest): Path<String>,
    peer: Option<axum::Extension<crate::certs::PeerCertificate>>,
    body: Bytes,
) -> Response {
    let asked = format!("/v3/{rest}");
    let call = match known_call(&asked) {
        Ok(c) => c,
        Err((status, message)) => {
            tracing::warn!(call = %asked, "serve's port for boxes: a call no box makes, refused");
            return refused(status, message);
        }
    };
    let Some(axum::Extension(peer)) = peer else {
        return refused(
            401,
            "a box's client certificate is required (a box gets one by joining with a token)"
                .into(),
        );
    };
    let name = match g.who(&peer.0).await {
        Ok(n) => n,
        Err(r) => {
            tracing::warn!(call, status = r.status, reason = %r.message, "serve's port for boxes: a call refused");
            return refused(r.status, r.message);
        }
    };
    // Whatever `authorization` the box sends is never passed on: serve sends its own.
    as_box(&g, &name, call, &body).await.unwrap_or_else(|r| {
        if r.status != 504 {
            tracing::warn!(r#box = %name, call, status = r.status, reason = %r.message,
                "serve's port for boxes: a box's call refused");
        }
        refused(r.status, r.message)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_box_does_not_authenticate_and_makes_only_its_client_s_calls() {
        let (status, why) = known_call(AUTHENTICATE).unwrap_err();
        assert_eq!(status, 403);
        assert!(why.contains("passes its calls on as serve"), "{why}");
        let (status, why) = known_call("/v3/auth/user/add").unwrap_err();
        assert_eq!(status, 403);
        assert!(why.contains("not a call a box makes"), "{why}");
        assert_eq!(known_call("/v3/kv/range"), Ok("/v3/kv/range"));
    }

    #[test]
    fn the_calls_passed_on_are_the_ones_the_store_client_makes() {
        // Every call the client in super::etcd makes as a box, and none of etcd's
        // administration.
        let client = include_str!("etcd.rs");
        for c in CALLS {
            assert!(
                client.contains(&format!("\"{c}\"")),
                "{c} is not a call of the client"
            );
        }
        for admin in [
            AUTHENTICATE,
            "/v3/auth/user/add",
            "/v3/auth/role/grant",
            "/v3/auth/enable",
            "/v3/kv/compaction",
            "/v3/maintenance/defragment",
            "/v3/cluster/member/list",
        ] {
            assert!(!CALLS.contains(&admin), "{admin}");
        }
    }
}
