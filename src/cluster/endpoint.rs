//! The agent's endpoint (docs/cluster.md "Logs across boxes", "exec across boxes"): what
//! a serve or an operator asks of a box — the CloudWatch Logs its tasks' awslogs drivers
//! wrote into the box's own store, the console's views of its tasks, execs in them, and
//! samples of their ECS metrics (docs/cloudwatch.md "In cluster mode").
//!
//! Over TLS (the box has its bundle) a caller is who its client certificate says: one
//! of the cluster's CA whose role is serve's or the operator's ([`callers`]); a box's
//! certificate, another CA's or none is refused at the handshake, and no token is used
//! (boxes cannot read it). Without TLS (plain etcd, not secure: docs/security.md) every
//! request is signed with the cluster's token (HMAC-SHA256 over the time, the call and
//! the body; a signature more than [`super::signing::SKEW`] old or ahead is refused; an
//! exec is taken once), so the endpoint answers no one who cannot read the cluster's
//! state in etcd, and the token never crosses the network.

use super::etcd::{Etcd, EtcdError};
use super::keys;
use super::pki;
use super::signing::{SIGNATURE, SignatureError, sign, token, verify};
use crate::ecs::Ecs;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use rustls_pki_types::CertificateDer;
use serde_json::{Value, json};
use std::time::Duration;
use tokio_rustls::rustls;
use tokio_rustls::rustls::server::danger::ClientCertVerifier;

/// The metrics call of the endpoint (and its path under `/v1/`): `super::metrics`.
pub const METRICS_CALL: &str = "metrics/sample";

/// serve's ask: the sample's time (serve's clock, so every box's datum of one sample
/// falls in the same bucket), whether the metrics are high resolution (the box
/// period under a minute), and the clusters whose tasks give their Container Insights
/// figures in this sample (serve names them once a period; none in the others).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SampleRequest {
    pub at: crate::cloudwatch::metrics::Millis,
    pub high_resolution: bool,
    #[serde(default)]
    pub insights: Vec<String>,
    /// The serve asking (`registries::this_serve`): each serve's samples are rated
    /// against its own previous ones, so two serves asking the same box do not turn each
    /// other's readings, milliseconds apart, into rates (empty: an older serve).
    #[serde(default)]
    pub serve: String,
}

/// A serve's sampler is forgotten when it has not asked for this long (the serve is gone).
const SAMPLER_IDLE_MS: crate::cloudwatch::metrics::Millis = 10 * 60 * 1000;

/// A box's answer: how many tasks it sampled, and their datums by metric; what its
/// load balancers' listeners counted since this serve's last sample (none from a box
/// whose data plane did not answer, said in the box's log; or from an older box).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Sampled {
    pub sampled: usize,
    pub metrics: Vec<(
        crate::cloudwatch::metrics::MetricId,
        Vec<crate::cloudwatch::metrics::Datum>,
    )>,
    #[serde(default)]
    pub elb: Option<crate::elb::meters::Traffic>,
}

/// The box's samplers, one per serve that asks, with the time of its last ask.
type Samplers = std::collections::HashMap<
    String,
    (
        crate::ecs::metrics::Publisher,
        crate::cloudwatch::metrics::Millis,
    ),
>;

/// Whether the agent's last ask of its data plane's load balancer counts failed.
static METERS_FAILING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// On the agent: samples the RUNNING service tasks of the box's store with the asking
/// serve's sampler of `samplers`.
fn sample_box(
    ecs: &Ecs,
    samplers: &std::sync::Mutex<Samplers>,
    req: &SampleRequest,
) -> anyhow::Result<serde_json::Value> {
    let sink = crate::cloudwatch::Metrics::new();
    let mut all = samplers.lock().unwrap_or_else(|p| p.into_inner());
    all.retain(|_, (_, last)| req.at - *last < SAMPLER_IDLE_MS);
    let (publisher, last) = all.entry(req.serve.clone()).or_default();
    *last = req.at;
    let sampled = publisher.sample(ecs, &sink, req.at, req.high_resolution, &req.insights)?;
    drop(all);
    let elb = match super::balancers::read_meters(&ecs.run_root, &req.serve) {
        Ok(t) => {
            if METERS_FAILING.swap(false, std::sync::atomic::Ordering::Relaxed) {
                tracing::info!(
                    "the load balancers' counts of this box are in serve's samples again"
                );
            }
            Some(t)
        }
        Err(e) => {
            // Said once a streak, not at every sample.
            if !METERS_FAILING.swap(true, std::sync::atomic::Ordering::Relaxed) {
                tracing::warn!(error = %crate::errors::error_chain(&e),
                    "the load balancers' counts of this box are left out of serve's samples");
            }
            None
        }
    };
    let answer = Sampled {
        sampled,
        metrics: sink.export(req.high_resolution),
        elb,
    };
    Ok(serde_json::to_value(answer)?)
}

/// The CloudWatch Logs operations an agent answers for its box.
pub const LOGS_OPERATIONS: [&str; 3] = ["GetLogEvents", "FilterLogEvents", "DescribeLogStreams"];

/// What the endpoint's routes share.
struct Shared {
    ecs: Ecs,
    front: Front,
    /// The cluster's token, once the agent has read it (empty until then); None over
    /// TLS, where the handshake checked the caller's certificate and role.
    token: Option<std::sync::Arc<std::sync::RwLock<Vec<u8>>>>,
    /// The execs already taken (each signed exec runs once).
    seen: super::signing::Seen,
    /// The box's ECS metrics samplers, one per serve, which serve's asks drive
    /// ([`super::metrics`]).
    samplers: std::sync::Mutex<Samplers>,
}

impl Shared {
    /// Checks a request's signature (and, with `once`, that it was not seen before).
    fn check(
        &self,
        headers: &axum::http::HeaderMap,
        call: &str,
        body: &[u8],
        once: bool,
    ) -> Result<(), SignatureError> {
        let Some(token) = &self.token else {
            // TLS: the caller's certificate is serve's or the operator's ([`callers`]).
            return Ok(());
        };
        let sig = headers.get(SIGNATURE).and_then(|v| v.to_str().ok());
        let token = token.read().expect("token lock").clone();
        if token.is_empty() {
            return Err(SignatureError::Mismatch);
        }
        let now = crate::ecs::now_ms();
        if once {
            self.seen.verify_once(&token, sig, call, body, now)
        } else {
            verify(&token, sig, call, body, now)
        }
    }
}

fn reply(status: axum::http::StatusCode, v: &Value) -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn denied(call: &str, e: SignatureError) -> axum::response::Response {
    tracing::warn!(call, error = %e, "a request to the agent's endpoint refused");
    reply(
        axum::http::StatusCode::FORBIDDEN,
        &json!({"__type": "AccessDeniedException", "message": e.to_string()}),
    )
}

/// What the agent's endpoint takes from the HTTP front-end above the cluster layer,
/// handed in by the CLI that starts the agent (serve's: [`crate::api::agent_front`]), so
/// the endpoint speaks TLS, bounds its connections and shows a task as serve does
/// without the cluster importing `api`.
#[derive(Clone, Copy)]
pub struct Front {
    /// The TLS acceptor for a certificate and its key, requiring a client certificate
    /// that the verifier accepts when given.
    pub tls_acceptor: fn(
        &std::path::Path,
        &std::path::Path,
        Option<Verifier>,
    ) -> anyhow::Result<tokio_rustls::TlsAcceptor>,
    /// One of the console's views of a task on this box: (HTTP status, JSON).
    pub task_view: fn(&Ecs, &str, &str, &str) -> (u16, Value),
    /// Serves `app` on the listener (TLS when given) behind serve's guard (no keys: the
    /// signature is checked per route) and its connection loop, until the process ends.
    pub run:
        fn(tokio::net::TcpListener, Option<tokio_rustls::TlsAcceptor>, axum::Router) -> Serving,
}

/// A check of the client certificates a TLS acceptor takes ([`callers`]).
pub type Verifier = std::sync::Arc<dyn ClientCertVerifier>;

/// The endpoint being served ([`Front::run`]).
pub type Serving = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

impl std::fmt::Debug for Front {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Front")
    }
}

/// The endpoint's shared state, as its handlers take it.
type St = axum::extract::State<std::sync::Arc<Shared>>;

/// `POST /v1/logs/{op}`: a CloudWatch Logs call of the box's, signed.
async fn logs(
    State(s): St,
    Path(op): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    let call = format!("logs/{op}");
    if let Err(e) = s.check(&headers, &call, &body, false) {
        return denied(&call, e);
    }
    let s2 = s.clone();
    let answer = tokio::task::spawn_blocking(move || logs_call(&s2.ecs, &op, &body)).await;
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
/// `GET /v1/console/{view}/{id}`: the console's view of one of the box's tasks, signed.
async fn console(
    State(s): St,
    Path((view, id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> axum::response::Response {
    let query = query.unwrap_or_default();
    let call = super::remote::view_call(&view, &id);
    if let Err(e) = s.check(&headers, &call, query.as_bytes(), false) {
        return denied(&call, e);
    }
    let s2 = s.clone();
    let answer =
        tokio::task::spawn_blocking(move || (s2.front.task_view)(&s2.ecs, &view, &id, &query))
            .await;
    match answer {
        Ok((status, v)) => reply(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            &v,
        ),
        Err(e) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            &json!({"message": e.to_string()}),
        ),
    }
}
/// `GET /v1/exec`, upgraded: an exec in one of the box's tasks, signed and run once.
async fn exec(State(s): St, req: axum::extract::Request) -> axum::response::Response {
    use super::exec::{CALL, EXEC_FAILED, PROTOCOL, REQUEST};
    use base64::Engine;
    let (mut parts, _) = req.into_parts();
    let body = parts
        .headers
        .get(REQUEST)
        .and_then(|v| {
            base64::engine::general_purpose::STANDARD
                .decode(v.as_bytes())
                .ok()
        })
        .unwrap_or_default();
    // Nothing is looked at, let alone started, before the signature holds.
    if let Err(e) = s.check(&parts.headers, CALL, &body, true) {
        return denied(CALL, e);
    }
    let bad = |m: String| {
        reply(
            StatusCode::BAD_REQUEST,
            &json!({"__type": "InvalidParameterException", "message": m}),
        )
    };
    let upgrade = parts
        .headers
        .get(axum::http::header::UPGRADE)
        .and_then(|v| v.to_str().ok());
    if upgrade != Some(PROTOCOL) {
        return bad(format!("an exec is a GET with `Upgrade: {PROTOCOL}`"));
    }
    let Some(on_upgrade) = parts.extensions.remove::<hyper::upgrade::OnUpgrade>() else {
        return bad("this connection cannot be upgraded (HTTP/1.1 only)".into());
    };
    let req: crate::host::exec::Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return bad(format!("{REQUEST}: not an exec request: {e}")),
    };
    let session = match super::exec::start(s.ecs.clone(), req).await {
        Ok(session) => session,
        Err(e) => {
            let kind = if e.is_exec_failure() {
                EXEC_FAILED
            } else {
                "ClientException"
            };
            return reply(
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST),
                &json!({"__type": kind, "message": crate::errors::error_chain(&e)}),
            );
        }
    };
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(io) => super::exec::pump(session, hyper_util::rt::TokioIo::new(io)).await,
            // The caller left before the stream began: so does its command.
            Err(e) => {
                tracing::warn!(error = %e, "an exec's connection was not upgraded");
                session.abort()
            }
        }
    });
    axum::http::Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(axum::http::header::CONNECTION, "upgrade")
        .header(axum::http::header::UPGRADE, PROTOCOL)
        .body(axum::body::Body::empty())
        .expect("a 101 response")
}
/// `POST /v1/<METRICS_CALL>`: a sample of the box's ECS metrics, signed.
async fn metrics(
    State(s): St,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    let call = METRICS_CALL;
    if let Err(e) = s.check(&headers, call, &body, false) {
        return denied(call, e);
    }
    let req: SampleRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return reply(
                StatusCode::BAD_REQUEST,
                &json!({"__type": "InvalidParameterException", "message": format!("not a sample request: {e}")}),
            );
        }
    };
    let s2 = s.clone();
    let answer = tokio::task::spawn_blocking(move || sample_box(&s2.ecs, &s2.samplers, &req)).await;
    match answer {
        Ok(Ok(v)) => reply(StatusCode::OK, &v),
        Ok(Err(e)) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            &json!({"__type": "ServerException", "message": crate::errors::error_chain(e.as_ref())}),
        ),
        Err(e) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            &json!({"__type": "ServerException", "message": e.to_string()}),
        ),
    }
}

/// The agent's endpoint on `listener` until the process ends: the box's CloudWatch Logs
/// (`POST /v1/logs/{op}`), the console's views of its tasks (`GET
/// /v1/console/{view}/{id}`) and execs in them (`GET /v1/exec`, upgraded).
/// `token` is the cluster's, once the agent has read it (empty until then: every request
/// is refused); None when `tls` checks the callers' certificates ([`callers`]).
pub async fn serve(
    front: Front,
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    ecs: Ecs,
    token: Option<std::sync::Arc<std::sync::RwLock<Vec<u8>>>>,
) {
    // serve's bounds (docs/security.md "Bounds"), through the front: its guard without
    // keys (the body's size and time, the requests in progress; the signature is checked
    // per route) and its connection loop (open connections, header and idle timeouts,
    // head size; every connection without Nagle's delay, as an exec's small frames need).
    let app = axum::Router::new()
        .route("/v1/logs/{op}", axum::routing::post(logs))
        .route("/v1/console/{view}/{id}", axum::routing::get(console))
        .route("/v1/exec", axum::routing::get(exec))
        .route(
            &format!("/v1/{}", METRICS_CALL),
            axum::routing::post(metrics),
        )
        .with_state(std::sync::Arc::new(Shared {
            ecs,
            front,
            token,
            seen: Default::default(),
            samplers: Default::default(),
        }));
    (front.run)(listener, tls, app).await;
}

/// Why the endpoint refused a caller's certificate.
#[derive(Debug, thiserror::Error)]
#[error("the agent's endpoint refuses {0}")]
struct NotACaller(String);

/// The endpoint's check of its callers over TLS: a certificate of the cluster's CA (the
/// WebPKI checks, as rustls makes them) whose role ([`pki::uri_names`]) is serve's or the
/// operator's. A box's certificate is refused: root on one box does not reach the tasks
/// of another.
#[derive(Debug)]
struct Callers(std::sync::Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for Callers {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        true
    }
    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.0.root_hint_subjects()
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        self.0.verify_client_cert(end_entity, intermediates, now)?;
        let uris = pki::uri_names(end_entity);
        if uris
            .iter()
            .any(|u| u == pki::ROLE_SERVE || u == pki::ROLE_OPERATOR)
        {
            return Ok(rustls::server::danger::ClientCertVerified::assertion());
        }
        let why = match uris.iter().find(|u| u.starts_with(pki::ROLE_BOX)) {
            Some(b) => format!("a box's certificate ({b}): boxes do not call other boxes"),
            None => format!(
                "a certificate of the cluster's CA with neither {} nor {} among its names \
                 (issued before roles: issue serve's and the operator's bundles again)",
                pki::ROLE_SERVE,
                pki::ROLE_OPERATOR
            ),
        };
        tracing::warn!(
            why,
            "a caller of the agent's endpoint refused at the handshake"
        );
        Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::Other(rustls::OtherError(std::sync::Arc::new(NotACaller(
                why,
            )))),
        ))
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The check of the endpoint's callers ([`Callers`]) against the cluster's CA in `ca`.
pub fn callers(ca: &std::path::Path) -> Result<std::sync::Arc<dyn ClientCertVerifier>, EtcdError> {
    use rustls_pki_types::pem::PemObject;
    let bad = |why: String| EtcdError::Tls {
        path: ca.display().to_string(),
        why,
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| bad(e.to_string()))? {
        roots
            .add(cert.map_err(|e| bad(e.to_string()))?)
            .map_err(|e| bad(e.to_string()))?;
    }
    let webpki = rustls::server::WebPkiClientVerifier::builder_with_provider(
        std::sync::Arc::new(roots),
        std::sync::Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .map_err(|e| bad(e.to_string()))?;
    Ok(std::sync::Arc::new(Callers(webpki)))
}

/// One CloudWatch Logs operation of [`LOGS_OPERATIONS`] on this box's store.
fn logs_call(ecs: &Ecs, op: &str, body: &[u8]) -> crate::logs::LogsResult<Value> {
    use crate::logs::{self as l, LogsError};
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

/// The endpoints of every connected agent of every cluster (a joined box's: its tunnel,
/// [`super::tunnel::resolve`]).
pub async fn agent_endpoints(etcd: &Etcd) -> Result<Vec<String>, EtcdError> {
    let clusters = keys::cluster_names(
        &etcd.keys_with_prefix(&keys::clusters()).await?,
        "instances",
    );
    let mut endpoints = Vec::new();
    for c in &clusters {
        for i in super::instances::load(etcd, c).await? {
            let endpoint = super::tunnel::resolve(i.reg.endpoint.clone(), c, &i.reg.id);
            if let (true, Some(e)) = (i.connected, endpoint) {
                endpoints.push(e);
            }
        }
    }
    Ok(endpoints)
}

/// Asks each agent of `asks` (endpoint, request body) `call` (`POST /v1/<call>`, signed:
/// `logs/<op>`, [`METRICS_CALL`]), side by side, each within `total`: each endpoint
/// with its answer, or why it could not be reached.
pub async fn ask_agents(
    etcd: &'static Etcd,
    call: &str,
    asks: Vec<(String, Vec<u8>)>,
    total: Duration,
) -> Result<Vec<(String, Result<Answer, String>)>, EtcdError> {
    // An http:// endpoint knows its caller by the token's signature; the others (https://,
    // a tunnel, TLS inside) by its certificate.
    let signed = |e: &str| e.starts_with("http://");
    let token = match asks.iter().any(|(e, _)| signed(e)) {
        true => token(etcd).await?,
        false => Vec::new(),
    };
    let mut running = tokio::task::JoinSet::new();
    for (endpoint, body) in asks {
        let sig = signed(&endpoint).then(|| sign(&token, crate::ecs::now_ms(), call, &body));
        let call = call.to_string();
        running.spawn(async move {
            let answer =
                match tokio::time::timeout(total, ask(etcd, &endpoint, &call, sig, body)).await {
                    Ok(a) => a,
                    Err(_) => Err(format!(
                        "agent {endpoint}: no answer within {} s",
                        total.as_secs()
                    )),
                };
            (endpoint, answer)
        });
    }
    let mut out = Vec::new();
    while let Some(r) = running.join_next().await {
        match r {
            Ok(a) => out.push(a),
            Err(e) => out.push((String::new(), Err(format!("an agent call failed: {e}")))),
        }
    }
    Ok(out)
}

/// One call to the agent at `endpoint` (signed when `sig` is given).
async fn ask(
    etcd: &Etcd,
    endpoint: &str,
    call: &str,
    sig: Option<String>,
    body: Vec<u8>,
) -> Result<Answer, String> {
    let failed =
        |e: std::io::Error| format!("agent {endpoint}: {}", crate::errors::error_chain(&e));
    let io = super::tunnel::connect(etcd, endpoint)
        .await
        .map_err(failed)?;
    let headers: Vec<(&str, String)> = sig.map(|s| (SIGNATURE, s)).into_iter().collect();
    let (status, body) = super::agents_client::call(
        io,
        axum::http::Method::POST,
        &format!("/v1/{call}"),
        &headers,
        body,
    )
    .await
    .map_err(failed)?;
    Ok(Answer { status, body })
}
