//! serve's port for boxes as a joined box's only way to the cluster's store (docs/cluster.md,
//! "Boxes over one port"). A box that joined with a token (`agent --server URL`) sends its
//! store calls here instead of to etcd: the same calls of etcd's JSON gateway its client
//! makes ([`super::etcd`]), over the TLS connection it dialed out, authenticated by the
//! certificate the join gave it. serve passes each call on to etcd with the box's own etcd
//! token and never its own, so etcd's RBAC decides what the box may read and write (the
//! role `cluster token`'s join made for it: its own keys, reads of what its tasks need),
//! exactly as for a box with a direct etcd connection; what serve adds:
//!
//! - only the calls a box makes pass (reads, writes and transactions of keys, its liveness
//!   lease, watches, authenticating): nothing of etcd's users, roles, members, compaction
//!   or maintenance, which a box's etcd user could not do anyway, and nothing else of
//!   serve's;
//! - a certificate that is not a box's, or whose box was removed (`cluster remove-box`),
//!   is refused; a box authenticates only as its own etcd user;
//! - every call except authenticating carries the box's token: without one etcd would
//!   take the call as serve's.
//!
//! So a box needs no route to etcd and no port open to it, and the control plane's etcd
//! can listen where boxes cannot reach it.

use super::etcd::{Etcd, EtcdError};
use super::pki;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The calls a box's store client makes ([`super::etcd`]'s), the only ones passed on.
pub const CALLS: [&str; 9] = [
    "/v3/kv/range",
    "/v3/kv/put",
    "/v3/kv/txn",
    "/v3/kv/deleterange",
    "/v3/lease/grant",
    "/v3/lease/keepalive",
    "/v3/lease/revoke",
    "/v3/watch",
    "/v3/auth/authenticate",
];

const AUTHENTICATE: &str = "/v3/auth/authenticate";

/// The largest call body passed on: etcd's own default request limit
/// (`--max-request-bytes`, 1.5 MiB) and some room for its JSON and base64.
pub const MAX_REQUEST: usize = 2 * 1024 * 1024;

/// How long a certificate's box (and that it was not removed) is taken as known before
/// it is looked up again. A removed box's etcd user is deleted at once, which ends its
/// calls at etcd before this lapses.
const KNOWN_FOR: Duration = Duration::from_secs(5);

struct Gateway {
    etcd: &'static Etcd,
    /// Certificates (their SHA-256) looked up lately: the box's name, and when.
    known: tokio::sync::Mutex<HashMap<String, (String, Instant)>>,
}

impl Gateway {
    /// The box whose certificate `cert` (DER) is, or why it is refused.
    async fn who(&self, cert: &[u8]) -> Result<String, super::join::Refusal> {
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
}

/// The gateway's route on serve's port for boxes: `POST /v3/...`.
pub fn router(etcd: &'static Etcd) -> axum::Router {
    use axum::extract::DefaultBodyLimit;
    let g = Arc::new(Gateway {
        etcd,
        known: tokio::sync::Mutex::new(HashMap::new()),
    });
    axum::Router::new()
        .route("/v3/{*call}", axum::routing::post(call))
        .layer(DefaultBodyLimit::max(MAX_REQUEST))
        .with_state(g)
}

fn refused(status: u16, message: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
    // etcd's own error shape, which the box's client reads its message from.
    let body = serde_json::json!({ "error": message, "message": message, "code": 7 });
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Why a call is not passed on, if it is not: which call, the box's certificate, its
/// etcd user, and its token.
fn check(
    call: &str,
    name: &str,
    body: &[u8],
    authorization: Option<&str>,
) -> Result<(), (u16, String)> {
    let user = pki::box_user(name);
    if call == AUTHENTICATE {
        let asked = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v["name"].as_str().map(str::to_string));
        if asked.as_deref() != Some(user.as_str()) {
            return Err((
                403,
                format!(
                    "box {name} authenticates only as its own etcd user {user}, not as {}",
                    asked.map_or("no user".into(), |a| format!("{a:?}"))
                ),
            ));
        }
    } else if authorization.is_none() {
        return Err((
            401,
            format!(
                "box {name}: authenticate first ({AUTHENTICATE} as etcd user {user}) and send \
                 the token with each call"
            ),
        ));
    }
    Ok(())
}

async fn call(
    State(g): State<Arc<Gateway>>,
    Path(rest): Path<String>,
    peer: Option<axum::Extension<crate::certs::PeerCertificate>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let asked = format!("/v3/{rest}");
    let Some(call) = CALLS.iter().copied().find(|c| *c == asked) else {
        tracing::warn!(call = %asked, "serve's port for boxes: a call no box makes, refused");
        return refused(
            403,
            format!(
                "{asked}: not a call a box makes here (these pass: {})",
                CALLS.join(", ")
            ),
        );
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
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.trim().is_empty());
    if let Err((status, message)) = check(call, &name, &body, authorization) {
        tracing::warn!(r#box = %name, call, status, reason = %message, "serve's port for boxes: a call refused");
        return refused(status, message);
    }
    let token = if call == AUTHENTICATE {
        None
    } else {
        authorization
    };
    match g.etcd.forward(call, body, token).await {
        Ok(r) => {
            let status =
                StatusCode::from_u16(r.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            let content_type = r
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("application/json")
                .to_string();
            let body = axum::body::Body::new(reqwest::Body::from(r));
            (status, [(header::CONTENT_TYPE, content_type)], body).into_response()
        }
        // Sent and not answered: 504, which the box's client takes as "maybe applied".
        Err(e @ EtcdError::OutcomeUnknown { .. }) => refused(504, crate::errors::error_chain(&e)),
        Err(e) => {
            tracing::warn!(r#box = %name, call, error = %crate::errors::error_chain(&e), "serve's port for boxes: etcd out of reach");
            refused(503, crate::errors::error_chain(&e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_box_authenticates_only_as_its_own_user_and_calls_only_with_a_token() {
        let own = format!(r#"{{"name":"{}","password":"p"}}"#, pki::box_user("edge-1"));
        assert_eq!(check(AUTHENTICATE, "edge-1", own.as_bytes(), None), Ok(()));
        let other = format!(r#"{{"name":"{}","password":"p"}}"#, pki::box_user("edge-2"));
        let (status, why) = check(AUTHENTICATE, "edge-1", other.as_bytes(), None).unwrap_err();
        assert_eq!(status, 403);
        assert!(why.contains("only as its own etcd user"), "{why}");
        for body in [
            &br#"{"name":"root","password":"p"}"#[..],
            b"{}",
            b"not json",
        ] {
            assert_eq!(
                check(AUTHENTICATE, "edge-1", body, None).unwrap_err().0,
                403
            );
        }
        let (status, why) = check("/v3/kv/range", "edge-1", b"{}", None).unwrap_err();
        assert_eq!(status, 401);
        assert!(why.contains("authenticate first"), "{why}");
        assert_eq!(check("/v3/kv/range", "edge-1", b"{}", Some("tok")), Ok(()));
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
