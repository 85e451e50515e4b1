//! serve's port for boxes as a joined box's only way to the cluster's store (docs/cluster.md,
//! "Boxes over one port"). A box that joined with a token (`agent --server URL`) sends its
//! store calls here instead of to etcd: the same calls of etcd's JSON gateway its client
//! makes ([`super::etcd`]), over the TLS connection it dialed out, authenticated by the
//! certificate the join gave it. The box holds no etcd credentials: serve authenticates
//! as the box's etcd user for it, with a password only the control plane can derive
//! ([`super::join::PasswordKey`]), keeps the token per box, and authenticates again when
//! etcd says it lapsed. Each call goes on to etcd with that token and never serve's own,
//! so etcd's RBAC decides what the box may read and write (the role its join made: its
//! own keys, reads of what its tasks need); what serve adds:
//!
//! - only the calls a box makes pass (reads, writes and transactions of keys, its liveness
//!   lease, watches): nothing of etcd's authentication, users, roles, members, compaction
//!   or maintenance, and nothing else of serve's;
//! - a certificate that is not a box's, or whose box was removed (`cluster remove-box`),
//!   is refused; a removed box has no etcd user left to act as;
//! - every put, alone or in a transaction, is checked against who sends it
//!   ([`super::admission`]: the box's own keys, values its readers take), and refused
//!   with the reason before etcd sees it.
//!
//! So a box needs no route to etcd and no port open to it, holds no secret of the
//! store's, and the control plane's etcd can listen where boxes cannot reach it.

use super::etcd::{Etcd, EtcdError};
use super::join::{PasswordKey, Refusal};
use super::{keys, pki};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
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

/// How long a certificate's box (and that it was not removed) is taken as known before
/// it is looked up again. A removed box's etcd user is deleted at once, which ends its
/// calls at etcd before this lapses.
const KNOWN_FOR: Duration = Duration::from_secs(5);

/// A box's etcd token as serve got it for the box (`None`: none yet, or it lapsed).
type Slot = Arc<tokio::sync::Mutex<Option<String>>>;

struct Gateway {
    etcd: &'static Etcd,
    passwords: PasswordKey,
    /// Certificates (their SHA-256) looked up lately: the box's name, and when.
    known: tokio::sync::Mutex<HashMap<String, (String, Instant)>>,
    /// Each box's etcd token, by box name: one authentication at a time a box (etcd
    /// checks a password with bcrypt).
    tokens: std::sync::Mutex<HashMap<String, Slot>>,
}

fn refuse(status: u16, message: String) -> Refusal {
    Refusal { status, message }
}

impl Gateway {
    /// The box whose certificate `cert` (DER) is, or why it is refused.
    async fn who(&self, cert: &[u8]) -> Result<String, Refusal> {
        let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(cert));
        if let Some((name, at)) = self.known.lock().await.get(&sha)
            && at.elapsed() < KNOWN_FOR
        {
            return Ok(name.clone());
        }
        let name = super::join::whoami(self.etcd, cert).await?;
        let mut known = self.known.lock().await;
        known.retain(|_, (_, at)| at.elapsed() < KNOWN_FOR);
        known.insert(sha, (name.clone(), Instant::now()));
        Ok(name)
    }

    fn slot(&self, name: &str) -> Slot {
        let mut tokens = self.tokens.lock().expect("tokens lock");
        tokens.entry(name.to_string()).or_default().clone()
    }

    /// Box `name`'s etcd token: the one kept, else a new one.
    async fn token(&self, name: &str) -> Result<String, Refusal> {
        let slot = self.slot(name);
        let mut held = slot.lock().await;
        if let Some(t) = &*held {
            return Ok(t.clone());
        }
        let t = self.authenticate(name).await?;
        *held = Some(t.clone());
        Ok(t)
    }

    /// Forgets box `name`'s token `stale` (etcd refused it): the next call authenticates.
    async fn forget(&self, name: &str, stale: &str) {
        let slot = self.slot(name);
        let mut held = slot.lock().await;
        if held.as_deref() == Some(stale) {
            *held = None;
        }
    }

    /// One authentication as `user` with `password`: the token, or etcd's message.
    async fn authenticate_once(
        &self,
        user: &str,
        password: &str,
    ) -> Result<Result<String, String>, Refusal> {
        let body = json!({ "name": user, "password": password }).to_string();
        let r = self
            .etcd
            .forward(AUTHENTICATE, Bytes::from(body), None)
            .await
            .map_err(unreachable)?;
        let ok = r.status().is_success();
        let v: serde_json::Value = r.json().await.unwrap_or_default();
        Ok(match (ok, v["token"].as_str()) {
            (true, Some(t)) => Ok(t.to_string()),
            _ => Err(v["message"]
                .as_str()
                .or(v["error"].as_str())
                .unwrap_or("no token in etcd's answer")
                .to_string()),
        })
    }

    /// Authenticates as box `name`'s etcd user with the password the control plane
    /// derives for it. A box joined by an older version, whose user has the password that
    /// join sent it, gets the derived one set first (serve is etcd's root), as long as
    /// its join record is there: a removed box's user stays gone.
    async fn authenticate(&self, name: &str) -> Result<String, Refusal> {
        let user = pki::box_user(name);
        let password = self.passwords.password(name);
        let failed = |m: String| {
            if m.contains("authentication is not enabled") {
                return refuse(
                    503,
                    "etcd's authentication is off, so a box's calls would act as anyone's: \
                     a serve with the cluster's directory turns it on at its campaign, or run \
                     `minifargate cluster enable-auth`"
                        .into(),
                );
            }
            refuse(
                403,
                format!("serve cannot act as box {name}'s etcd user {user}: {m}"),
            )
        };
        match self.authenticate_once(&user, &password).await? {
            Ok(t) => return Ok(t),
            Err(m) if !m.contains("authentication failed") => return Err(failed(m)),
            Err(_) => {}
        }
        let joined = self
            .etcd
            .get(&keys::joined_box(name))
            .await
            .map_err(unreachable)?;
        if joined.is_none() {
            return Err(refuse(
                403,
                format!(
                    "box {name} was removed from the cluster (`cluster remove-box`), or never \
                     joined with a token: it has no join record, and serve acts only as a \
                     joined box's etcd user"
                ),
            ));
        }
        self.etcd
            .auth_call(
                "/v3/auth/user/changepw",
                json!({ "name": user, "password": password }),
            )
            .await
            .map_err(|e| failed(crate::errors::error_chain(&e)))?;
        tracing::info!(r#box = %name, etcd_user = %user,
            "a box joined by an older version: its etcd user's password is now the control \
             plane's (the box's own copy opens nothing)");
        self.authenticate_once(&user, &password)
            .await?
            .map_err(failed)
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
pub fn router(etcd: &'static Etcd, passwords: PasswordKey) -> axum::Router {
    use axum::extract::DefaultBodyLimit;
    let g = Arc::new(Gateway {
        etcd,
        passwords,
        known: tokio::sync::Mutex::new(HashMap::new()),
        tokens: std::sync::Mutex::new(HashMap::new()),
    });
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
                "{asked}: a box does not authenticate to etcd: serve's port for boxes acts as \
                 its etcd user for it (the box holds no etcd credentials)"
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

/// Call `call` as box `name`, with its token; sent again with a new token when etcd
/// refuses the one kept (lapsed or old: the call was not applied), up to
/// [`super::etcd::TOKEN_TRIES`] times.
async fn as_box(
    g: &Gateway,
    name: &str,
    call: &'static str,
    body: Bytes,
) -> Result<Response, Refusal> {
    let mut tries = 1;
    loop {
        let token = g.token(name).await?;
        let r = g
            .etcd
            .forward(call, body.clone(), Some(&token))
            .await
            .map_err(unreachable)?;
        if r.status().is_success() {
            return Ok(pass_on(r));
        }
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let bytes = r.bytes().await.unwrap_or_default();
        let message = String::from_utf8_lossy(&bytes);
        if tries < super::etcd::TOKEN_TRIES && super::etcd::refused_for_token(status, &message) {
            tracing::debug!(r#box = %name, call, "etcd refused a box's token: authenticating again");
            g.forget(name, &token).await;
            tries += 1;
            continue;
        }
        let mut out = (
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
            bytes,
        )
            .into_response();
        if let Some(ct) = headers.get(reqwest::header::CONTENT_TYPE)
            && let Ok(v) = header::HeaderValue::from_bytes(ct.as_bytes())
        {
            out.headers_mut().insert(header::CONTENT_TYPE, v);
        }
        return Ok(out);
    }
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
    // Whatever `authorization` the box sends is never passed on: serve sends the box's
    // own token.
    let answer = match super::admission::vet(g.etcd, &name, call, &body).await {
        Ok(()) => as_box(&g, &name, call, body).await,
        Err(r) => Err(r),
    };
    answer.unwrap_or_else(|r| {
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
        assert!(why.contains("acts as its etcd user for it"), "{why}");
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
