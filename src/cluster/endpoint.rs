//! The agent's endpoint (docs/cluster.md "Logs across boxes"): what a serve asks of a
//! box — the CloudWatch Logs its tasks' awslogs drivers wrote into the box's own store.
//! Every request is signed with the cluster's token (HMAC-SHA256 over the time, the call
//! and the body; a signature more than [`SKEW`] old or ahead is refused), so the endpoint
//! answers no one who cannot read the cluster's state in etcd, and the token never
//! crosses the network.

use super::etcd::{Etcd, EtcdError};
use super::keys;
use crate::ecs::Ecs;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use std::time::Duration;

/// The header that carries a request's signature: `MS:HEX`.
pub const SIGNATURE: &str = "x-minifargate-signature";
/// How far a signature's time may be from the receiver's clock.
pub const SKEW: Duration = Duration::from_secs(60);
/// The CloudWatch Logs operations an agent answers for its box.
pub const LOGS_OPERATIONS: [&str; 3] = ["GetLogEvents", "FilterLogEvents", "DescribeLogStreams"];

/// The cluster's token (32 random bytes, hex), made by whoever needs it first.
pub async fn token(etcd: &Etcd) -> Result<Vec<u8>, EtcdError> {
    let key = keys::token();
    if let Some(kv) = etcd.get(&key).await? {
        return Ok(kv.value);
    }
    let fresh = format!(
        "{}{}",
        crate::task::new_id().unwrap_or_default(),
        crate::task::new_id().unwrap_or_default()
    );
    etcd.put_if_absent(&key, fresh.as_bytes()).await?;
    Ok(etcd.get(&key).await?.map(|kv| kv.value).unwrap_or_default())
}

fn mac(token: &[u8], ms: i64, call: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut m = Hmac::<Sha256>::new_from_slice(token).expect("HMAC takes any key length");
    m.update(ms.to_string().as_bytes());
    m.update(b"\n");
    m.update(call.as_bytes());
    m.update(b"\n");
    m.update(body);
    m
}

/// The signature of `call` with `body` at `ms` (epoch milliseconds).
pub fn sign(token: &[u8], ms: i64, call: &str, body: &[u8]) -> String {
    format!(
        "{ms}:{}",
        hex::encode(mac(token, ms, call, body).finalize().into_bytes())
    )
}

/// Why a request's signature was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("no {SIGNATURE} header")]
    Missing,
    #[error("the {SIGNATURE} header is not MS:HEX")]
    Malformed,
    #[error("the signature's time is more than {} s from this box's clock", SKEW.as_secs())]
    Stale,
    #[error("the signature does not match (another cluster's token?)")]
    Mismatch,
}

/// Checks `header` for `call` with `body` at `now_ms`.
pub fn verify(
    token: &[u8],
    header: Option<&str>,
    call: &str,
    body: &[u8],
    now_ms: i64,
) -> Result<(), SignatureError> {
    let h = header.ok_or(SignatureError::Missing)?;
    let (ms, sig) = h.split_once(':').ok_or(SignatureError::Malformed)?;
    let ms: i64 = ms.parse().map_err(|_| SignatureError::Malformed)?;
    let sig = hex::decode(sig).map_err(|_| SignatureError::Malformed)?;
    if (now_ms - ms).unsigned_abs() > SKEW.as_millis() as u64 {
        return Err(SignatureError::Stale);
    }
    mac(token, ms, call, body)
        .verify_slice(&sig)
        .map_err(|_| SignatureError::Mismatch)
}

/// The agent's endpoint on `listener` until the process ends.
/// `token` is the cluster's, once the agent has read it (empty until then: every request
/// is refused).
pub async fn serve(
    listener: tokio::net::TcpListener,
    ecs: Ecs,
    token: std::sync::Arc<std::sync::RwLock<Vec<u8>>>,
) {
    use axum::extract::{Path, State};
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;
    use std::sync::Arc;
    type Shared = State<Arc<(Ecs, Arc<std::sync::RwLock<Vec<u8>>>)>>;
    fn reply(status: StatusCode, v: &Value) -> axum::response::Response {
        (
            status,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            v.to_string(),
        )
            .into_response()
    }
    async fn logs(
        State(s): Shared,
        Path(op): Path<String>,
        headers: HeaderMap,
        body: axum::body::Bytes,
    ) -> axum::response::Response {
        let sig = headers.get(SIGNATURE).and_then(|v| v.to_str().ok());
        let call = format!("logs/{op}");
        let token = s.1.read().expect("token lock").clone();
        let checked = if token.is_empty() {
            Err(SignatureError::Mismatch)
        } else {
            verify(&token, sig, &call, &body, crate::ecs::now_ms())
        };
        if let Err(e) = checked {
            return reply(
                StatusCode::FORBIDDEN,
                &json!({"__type": "AccessDeniedException", "message": e.to_string()}),
            );
        }
        let s2 = s.clone();
        let answer = tokio::task::spawn_blocking(move || logs_call(&s2.0, &op, &body)).await;
        match answer {
            Ok(Ok(v)) => reply(StatusCode::OK, &v),
            Ok(Err(e)) => reply(
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST),
                &json!({"__type": e.name(), "message": e.message()}),
            ),
            Err(e) => reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                &json!({"__type": "ServiceUnavailableException", "message": e.to_string()}),
            ),
        }
    }
    let app = axum::Router::new()
        .route("/v1/logs/{op}", axum::routing::post(logs))
        .with_state(Arc::new((ecs, token)));
    if let Err(e) = axum::serve(listener, app).await {
        eprintln!("minifargate agent: its endpoint stopped: {e}");
    }
}

/// One CloudWatch Logs operation of [`LOGS_OPERATIONS`] on this box's store.
fn logs_call(ecs: &Ecs, op: &str, body: &[u8]) -> crate::ecs::logs::LogsResult<Value> {
    use crate::ecs::logs::{self as l, LogsError};
    fn input<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, LogsError> {
        serde_json::from_slice(body).map_err(|e| LogsError::Serialization(e.to_string()))
    }
    match op {
        "GetLogEvents" => l::get_log_events(ecs, &input(body)?),
        "FilterLogEvents" => l::filter_log_events(ecs, &input(body)?),
        "DescribeLogStreams" => l::describe_log_streams(ecs, &input(body)?),
        _ => Err(LogsError::UnknownOperation(format!(
            "{op}: an agent answers {}",
            LOGS_OPERATIONS.join(", ")
        ))),
    }
}

/// What an agent answered: its HTTP status and JSON body.
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

/// Asks every connected agent of every cluster `op` with `body` (signed), side by side;
/// the answers of those that could be reached, and the errors of those that could not.
pub async fn ask_agents(
    etcd: &Etcd,
    op: &str,
    body: &[u8],
) -> Result<(Vec<Answer>, Vec<String>), EtcdError> {
    let token = token(etcd).await?;
    let clusters = keys::cluster_names(
        &etcd.keys_with_prefix(&keys::clusters()).await?,
        "instances",
    );
    let mut endpoints = Vec::new();
    for c in &clusters {
        for i in super::instances::load(etcd, c).await? {
            if let (true, Some(e)) = (i.connected, i.reg.endpoint.clone()) {
                endpoints.push(e);
            }
        }
    }
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTP client");
    let call = format!("logs/{op}");
    let mut asks = tokio::task::JoinSet::new();
    for endpoint in endpoints {
        let http = http.clone();
        let sig = sign(&token, crate::ecs::now_ms(), &call, body);
        let body = body.to_vec();
        let op = op.to_string();
        asks.spawn(async move {
            let sent = http
                .post(format!("{endpoint}/v1/logs/{op}"))
                .header(SIGNATURE, sig)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await;
            match sent {
                Ok(r) => {
                    let status = r.status().as_u16();
                    match r.json::<Value>().await {
                        Ok(body) => Ok(Answer { status, body }),
                        Err(e) => Err(format!("agent {endpoint}: {}", crate::error_chain(&e))),
                    }
                }
                Err(e) => Err(format!("agent {endpoint}: {}", crate::error_chain(&e))),
            }
        });
    }
    let mut answers = Vec::new();
    let mut errors = Vec::new();
    while let Some(r) = asks.join_next().await {
        match r {
            Ok(Ok(a)) => answers.push(a),
            Ok(Err(e)) => errors.push(e),
            Err(e) => errors.push(format!("an agent call failed: {e}")),
        }
    }
    Ok((answers, errors))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_bind_the_token_the_call_the_body_and_the_time() {
        let t = b"token";
        let s = sign(t, 1_000_000, "logs/GetLogEvents", b"{}");
        assert_eq!(
            verify(t, Some(&s), "logs/GetLogEvents", b"{}", 1_000_500),
            Ok(())
        );
        assert_eq!(
            verify(b"other", Some(&s), "logs/GetLogEvents", b"{}", 1_000_500),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(t, Some(&s), "logs/FilterLogEvents", b"{}", 1_000_500),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(t, Some(&s), "logs/GetLogEvents", b"{\"a\":1}", 1_000_500),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(t, Some(&s), "logs/GetLogEvents", b"{}", 1_000_000 + 61_000),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(t, None, "logs/GetLogEvents", b"{}", 0),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify(t, Some("12"), "logs/GetLogEvents", b"{}", 0),
            Err(SignatureError::Malformed)
        );
    }
}
