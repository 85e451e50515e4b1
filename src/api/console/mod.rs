//! The web console `serve` answers at `/` (docs/console.md): embedded static pages whose
//! script reads everything through the ECS core — the ECS operations of its table
//! (`crate::api::call_json`, as the API calls them) — plus the few views ECS has no
//! operation for, each from the source its CLI verb uses: `inspect`'s report, the
//! metadata endpoint's cgroup stats, `timeline`'s recorded phases, `logs`' readers and
//! `validate`'s verdict. So the console can never disagree with the CLI or the API.

mod data;

use crate::ecs::Ecs;
use crate::ecs::operations::{Op, Service, ServiceError};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::sync::Arc;

/// How the console is offered.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Hide the actions (run, stop, scale) and refuse them (`serve --read-only`).
    pub read_only: bool,
}

struct Console {
    ecs: Arc<Ecs>,
    opts: Options,
}

type Shared = State<Arc<Console>>;

/// ECS operations the console reads with.
const READS: &[Op] = &[
    Op::ListClusters,
    Op::DescribeClusters,
    Op::ListServices,
    Op::DescribeServices,
    Op::ListTasks,
    Op::DescribeTasks,
    Op::ListTaskDefinitionFamilies,
    Op::ListTaskDefinitions,
    Op::DescribeTaskDefinition,
    Op::ListContainerInstances,
    Op::DescribeContainerInstances,
];

/// ECS operations behind the console's actions; refused when read-only.
const ACTIONS: &[Op] = &[Op::RunTask, Op::StopTask, Op::UpdateService];

/// The console's routes (everything but `GET /`, which shares its path with the API's
/// `POST /`: see [`index`]).
pub fn router(ecs: Arc<Ecs>, opts: Options) -> Router {
    Router::new()
        .route("/assets/{file}", get(asset))
        .route("/console/api/config", get(config))
        .route("/console/api/ecs/{op}", post(ecs_call))
        .route("/console/api/elbv2/{action}", post(elb_call))
        .route(
            "/console/api/target-health-history",
            get(target_health_history),
        )
        .route("/console/api/cloudwatch/{op}", post(cloudwatch_call))
        .route("/console/api/ecr/{op}", post(ecr_call))
        .route(
            "/console/api/servicediscovery/{op}",
            post(servicediscovery_call),
        )
        .route(
            "/console/api/repositories/lifecycle",
            get(repository_lifecycle),
        )
        .route(
            "/console/api/application-autoscaling/{op}",
            post(autoscaling_call),
        )
        .route("/console/api/tasks/{id}/isolation", get(isolation))
        .route("/console/api/tasks/{id}/stats", get(stats))
        .route("/console/api/tasks/{id}/timeline", get(timeline))
        .route("/console/api/tasks/{id}/logs", get(logs))
        .route(
            "/console/api/taskdefs/{family}/{revision}/findings",
            get(findings),
        )
        .with_state(Arc::new(Console { ecs, opts }))
}

/// Whether a request is the console's (its page, assets and calls) rather than the API's.
pub fn is_console(req: &axum::http::request::Parts) -> bool {
    use axum::http::Method;
    let path = req.uri.path();
    path.starts_with("/console/")
        || path.starts_with("/assets/")
        || (path == "/" && matches!(req.method, Method::GET | Method::HEAD))
}

/// With access keys, the console's requests carry one pair as HTTP Basic credentials
/// (`ACCESS_KEY_ID` as the user name, the secret as the password): a browser cannot sign
/// SigV4, and asks for these itself on the 401 this returns otherwise (None: signed in).
/// Ref: RFC 7617 (The 'Basic' HTTP Authentication Scheme).
pub fn sign_in(
    keys: &crate::api::auth::Keys,
    req: &axum::http::request::Parts,
) -> Option<Response> {
    use base64::Engine;
    let pair = req
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok());
    if let Some((id, secret)) = pair.as_deref().and_then(|p| p.split_once(':'))
        && keys.accepts(id, secret)
    {
        return None;
    }
    tracing::warn!(
        path = req.uri.path(),
        "console request refused: no valid access key"
    );
    let mut resp = error(
        StatusCode::UNAUTHORIZED,
        "sign in with one of serve's access keys: the access key id as the user name, \
         the secret access key as the password",
    );
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(r#"Basic realm="minifargate console", charset="UTF-8""#),
    );
    Some(resp)
}

/// `GET /`: the console's single page.
pub async fn index() -> Response {
    asset_response("index.html")
}

/// The embedded files: built into the binary, nothing fetched at run time (edge boxes are
/// air-gapped); zstd-compressed by build.rs (binary size budget, docs/packaging.md),
/// decompressed once on the first request.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!(concat!(env!("OUT_DIR"), "/index.html.zst")),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!(concat!(env!("OUT_DIR"), "/app.js.zst")),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_bytes!(concat!(env!("OUT_DIR"), "/style.css.zst")),
    ),
    // The page each isolation row links, readable without the repository at hand.
    (
        "how-isolation-works.md",
        "text/plain; charset=utf-8",
        include_bytes!(concat!(env!("OUT_DIR"), "/how-isolation-works.md.zst")),
    ),
];

/// The files of [`ASSETS`], decompressed.
fn assets() -> &'static [(&'static str, &'static str, Vec<u8>)] {
    static FILES: std::sync::OnceLock<Vec<(&str, &str, Vec<u8>)>> = std::sync::OnceLock::new();
    FILES.get_or_init(|| {
        ASSETS
            .iter()
            .map(|(name, kind, packed)| {
                let body =
                    zstd::decode_all(*packed).expect("an embedded console file decompresses");
                (*name, *kind, body)
            })
            .collect()
    })
}

async fn asset(Path(file): Path<String>) -> Response {
    asset_response(&file)
}

fn asset_response(file: &str) -> Response {
    let Some((_, kind, body)) = assets().iter().find(|(name, _, _)| *name == file) else {
        return (StatusCode::NOT_FOUND, "no such console asset").into_response();
    };
    let mut resp = body.as_slice().into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    // Everything the page loads is its own: no inline script, no other origin.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
             frame-ancestors 'none'",
        ),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

async fn config(State(c): Shared) -> Response {
    reply(Ok(json!({
        "readOnly": c.opts.read_only,
        "version": env!("CARGO_PKG_VERSION"),
        "metricsPeriod": crate::config::get().metrics_period.as_secs(),
    })))
}

/// `POST /console/api/ecs/<Operation>`: one ECS call, as the API makes it, for the
/// operations the console uses.
async fn ecs_call(
    State(c): Shared,
    Path(op): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(f) = same_origin_json(&headers) {
        return error(f.status, &f.message);
    }
    let called = Op::named(Service::Ecs, &op);
    let is_action = called.is_some_and(|o| ACTIONS.contains(&o));
    let Some(called) = called.filter(|o| is_action || READS.contains(o)) else {
        return error(
            StatusCode::NOT_FOUND,
            &format!("the console does not call {op}"),
        );
    };
    if is_action && c.opts.read_only {
        return error(
            StatusCode::FORBIDDEN,
            &format!(
                "{op} refused: this console is read-only (serve --read-only, the default on a \
                 non-loopback address; use the ECS API or `serve --read-only=false`)"
            ),
        );
    }
    let ecs = c.ecs.clone();
    // The API's own entry point (`serve --cluster`: the cluster's operations first), so the
    // console shows what the ECS API answers.
    blocking(move || {
        super::ecs::call(&ecs, called.name(), &body).map_err(|e| ecs_error(ServiceError::Ecs(e)))
    })
    .await
}

/// A console call to another service's API: a same-origin JSON request (as every console
/// call) for one of the `reads` the console makes; any other operation is 404, saying
/// what the console does with that service (`what`).
fn allowed_read(headers: &HeaderMap, op: &str, reads: &[&str], what: &str) -> Result<(), Failure> {
    same_origin_json(headers)?;
    if !reads.contains(&op) {
        return Err(Failure::not_found(format!(
            "the console does not call {op} ({what})"
        )));
    }
    Ok(())
}

/// The service a console read goes to: `op` must be one of `reads` (`what` they read, for
/// the refusal) and this serve must have the service (`missing` says it has not).
fn read_from<T>(
    ext: Option<axum::Extension<Arc<T>>>,
    headers: &HeaderMap,
    op: &str,
    reads: &[&str],
    what: &str,
    missing: &str,
) -> Result<Arc<T>, Failure> {
    allowed_read(headers, op, reads, what)?;
    ext.map(|axum::Extension(x)| x)
        .ok_or_else(|| Failure::not_found(missing.to_string()))
}

/// ELBv2 actions the console reads load balancers with (it changes none: `aws elbv2` does).
const ELB_READS: &[&str] = &[
    "DescribeLoadBalancers",
    "DescribeListeners",
    "DescribeRules",
    "DescribeTargetGroups",
    "DescribeTargetHealth",
];

/// `POST /console/api/elbv2/<Action>`: one ELBv2 read, as the API answers it (awsQuery's
/// XML, which the page's script reads with the browser's own DOMParser). The body is a
/// JSON object of the request's members by their flattened names (`Names.member.1`), so
/// the call carries the console's JSON content type as every other console call does.
async fn elb_call(
    elb: Option<axum::Extension<Arc<crate::elb::Elb>>>,
    Path(action): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let elb = match read_from(
        elb,
        &headers,
        &action,
        ELB_READS,
        "it reads load balancers; change them with `aws elbv2`",
        "this serve has no load balancers (Elastic Load Balancing is not served here)",
    ) {
        Ok(elb) => elb,
        Err(f) => return error(f.status, &f.message),
    };
    let form = match form_of(&body) {
        Ok(f) => f,
        Err(f) => return error(f.status, &f.message),
    };
    super::elb::handle(elb, action, Bytes::from(form)).await
}

/// `GET /console/api/target-health-history`: each target's changes of state and reason
/// (`crate::elb::history`, kept in `state.db` across restarts; ELB's API keeps none), as JSON
/// `{"targets": [{"targetGroupArn", "id", "port", "points": [{"at", "state", "reason"}]}]}`.
async fn target_health_history(elb: Option<axum::Extension<Arc<crate::elb::Elb>>>) -> Response {
    let Some(axum::Extension(elb)) = elb else {
        return error(
            StatusCode::NOT_FOUND,
            "this serve has no load balancers (Elastic Load Balancing is not served here)",
        );
    };
    let body = json!({ "targets": elb.health_history() }).to_string();
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// ECR reads the console shows repositories with (it changes none: `aws ecr` does).
const ECR_READS: &[&str] = &["DescribeRepositories", "DescribeImages"];

/// `POST /console/api/ecr/<Op>`: one ECR read in AWS JSON 1.1, as the API answers it.
async fn ecr_call(
    State(c): Shared,
    Path(op): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = allowed_read(
        &headers,
        &op,
        ECR_READS,
        "it reads repositories, images and lifecycle policies; change them with `aws ecr`",
    ) {
        return error(r.status, &r.message);
    }
    super::ecr::handle(c.ecs.clone(), op, body, None).await
}

/// `GET /console/api/repositories/lifecycle?repositoryName=`: a repository's lifecycle
/// policy and its last preview, as GetLifecyclePolicy and GetLifecyclePolicyPreview answer
/// them through the ECR core (`null` where they answer LifecyclePolicyNotFoundException /
/// LifecyclePolicyPreviewNotFoundException: no failed request in the browser's console),
/// and the images this serve's lifecycle runs expired (ECR has no operation for that; its
/// console reads CloudTrail).
async fn repository_lifecycle(RawQuery(q): RawQuery) -> Response {
    let name = query(q).remove("repositoryName").unwrap_or_default();
    let Some(registry) = super::registry() else {
        return error(
            StatusCode::NOT_FOUND,
            "the registry is not open on this serve",
        );
    };
    blocking(move || {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let body = json!({ "repositoryName": name }).to_string();
        let read = |op: &str, missing: &str| -> Result<Value, Failure> {
            match crate::ecr::api::call(&registry, op, body.as_bytes(), now) {
                Ok(v) => Ok(v),
                Err(e) if e.name() == missing => Ok(Value::Null),
                Err(e) => Err(Failure {
                    status: StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST),
                    message: format!("{op}: {}: {}", e.name(), e.message()),
                }),
            }
        };
        let policy = read("GetLifecyclePolicy", "LifecyclePolicyNotFoundException")?;
        let preview = read(
            "GetLifecyclePolicyPreview",
            "LifecyclePolicyPreviewNotFoundException",
        )?;
        let rows = registry.expired_images(&name).map_err(|e| Failure {
            status: StatusCode::BAD_REQUEST,
            message: crate::errors::error_chain(&e),
        })?;
        let expired: Vec<Value> = rows
            .iter()
            .map(|e| {
                json!({
                    "imageDigest": e.digest,
                    "imageTags": serde_json::from_str::<Value>(&e.tags).unwrap_or(json!([])),
                    "imagePushedAt": e.pushed_at,
                    "appliedRulePriority": e.rule,
                    "expiredAt": e.expired_at,
                })
            })
            .collect();
        Ok(json!({
            "repositoryName": name,
            "lifecyclePolicy": policy,
            "preview": preview,
            "expired": expired,
        }))
    })
    .await
}

/// Cloud Map reads the console shows a service's discovery names and instances with.
const SERVICEDISCOVERY_READS: &[&str] = &["GetNamespace", "GetService", "DiscoverInstances"];

/// `POST /console/api/servicediscovery/<Op>`: one Cloud Map read in AWS JSON 1.1, as the
/// API answers it (in this process: DiscoverInstances' `data-` host prefix plays no part).
async fn servicediscovery_call(
    cm: Option<axum::Extension<Arc<crate::servicediscovery::CloudMap>>>,
    Path(op): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match read_from(
        cm,
        &headers,
        &op,
        SERVICEDISCOVERY_READS,
        "it reads namespaces, services and instances; change them with `aws servicediscovery`",
        "this serve has no Cloud Map",
    ) {
        Ok(cm) => super::servicediscovery::handle(cm, op, body).await,
        Err(f) => error(f.status, &f.message),
    }
}

/// CloudWatch reads the console charts a service's metrics and alarms with.
const CLOUDWATCH_READS: &[&str] = &["GetMetricData", "DescribeAlarms"];

/// `POST /console/api/cloudwatch/<Op>`: one CloudWatch read in AWS JSON 1.0, as the API
/// answers it.
async fn cloudwatch_call(
    cw: Option<axum::Extension<Arc<crate::cloudwatch::CloudWatch>>>,
    Path(op): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match read_from(
        cw,
        &headers,
        &op,
        CLOUDWATCH_READS,
        "it reads metrics and alarms",
        "this serve has no CloudWatch",
    ) {
        Ok(cw) => {
            super::cloudwatch::handle(cw, super::protocol::Protocol::Json10, op, &headers, body)
                .await
        }
        Err(f) => error(f.status, &f.message),
    }
}

/// Application Auto Scaling reads the console shows a service's scaling with.
const AUTOSCALING_READS: &[&str] = &[
    "DescribeScalableTargets",
    "DescribeScalingPolicies",
    "DescribeScalingActivities",
];

/// `POST /console/api/application-autoscaling/<Op>`: one Application Auto Scaling read, as
/// the API answers it.
async fn autoscaling_call(
    State(c): Shared,
    aas: Option<axum::Extension<Arc<crate::autoscaling::AutoScaling>>>,
    cw: Option<axum::Extension<Arc<crate::cloudwatch::CloudWatch>>>,
    Path(op): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = allowed_read(
        &headers,
        &op,
        AUTOSCALING_READS,
        "it reads scaling targets, policies and activities",
    ) {
        return error(r.status, &r.message);
    }
    let (Some(axum::Extension(aas)), Some(axum::Extension(cw))) = (aas, cw) else {
        return error(
            StatusCode::NOT_FOUND,
            "this serve has no Application Auto Scaling",
        );
    };
    super::autoscaling::handle(aas, c.ecs.clone(), cw, op, body).await
}

/// The form body of an ELB call from the console's JSON object of members.
fn form_of(body: &[u8]) -> Result<String, Failure> {
    let members = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => m,
        _ if body.is_empty() => serde_json::Map::new(),
        _ => {
            return Err(Failure {
                status: StatusCode::BAD_REQUEST,
                message: "an ELB call's body is a JSON object of its members by their \
                          flattened names"
                    .into(),
            });
        }
    };
    let mut form = form_urlencoded::Serializer::new(String::new());
    for (k, v) in &members {
        match v {
            Value::String(s) => form.append_pair(k, s),
            other => form.append_pair(k, &other.to_string()),
        };
    }
    Ok(form.finish())
}

/// Actions are POSTs with a JSON body: a form on another site cannot send one (the
/// content type forces a CORS preflight, which this server never grants), and a page
/// from another origin that tries is refused by its Origin header.
fn same_origin_json(headers: &HeaderMap) -> Result<(), Failure> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json {
        return Err(Failure {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            message: "console calls are POSTs with Content-Type: application/json".into(),
        });
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let origin_host = origin.split_once("://").map(|(_, h)| h);
        if origin_host != host {
            return Err(Failure {
                status: StatusCode::FORBIDDEN,
                message: format!("cross-origin console call from {origin} refused"),
            });
        }
    }
    Ok(())
}

async fn isolation(State(c): Shared, Path(id): Path<String>) -> Response {
    task_view_here_or_there(c, "isolation", id, None).await
}

async fn stats(State(c): Shared, Path(id): Path<String>) -> Response {
    task_view_here_or_there(c, "stats", id, None).await
}

async fn timeline(State(c): Shared, Path(id): Path<String>) -> Response {
    task_view_here_or_there(c, "timeline", id, None).await
}

async fn logs(State(c): Shared, Path(id): Path<String>, RawQuery(q): RawQuery) -> Response {
    task_view_here_or_there(c, "logs", id, q).await
}

/// The task views the console has besides ECS's operations.
pub const TASK_VIEWS: [&str; 4] = ["isolation", "stats", "timeline", "logs"];

/// Task view `view` of task `id` from this box's store (`query`: the page's query
/// string): the HTTP status and the JSON body the page reads. Also what an agent answers
/// a serve that asks for a task of its box (docs/cluster.md "The console across boxes").
pub fn task_view(ecs: &Ecs, view: &str, id: &str, query: &str) -> (u16, Value) {
    let q = self::query(Some(query.to_string()));
    let r = match view {
        "isolation" => data::isolation(ecs, id),
        "stats" => data::stats(ecs, id),
        "timeline" => data::timeline(ecs, id),
        "logs" => data::logs(
            ecs,
            id,
            q.get("container").map(String::as_str),
            q.get("since").map(String::as_str),
            q.get("tail").map(String::as_str),
        ),
        _ => Err(Failure::not_found(format!(
            "no task view {view:?} (the views: {})",
            TASK_VIEWS.join(", ")
        ))),
    };
    match r {
        Ok(v) => (200, v),
        Err(f) => (f.status.as_u16(), json!({ "message": f.message })),
    }
}

/// A task view from this box's store; in `serve --cluster`, a task this box does not have
/// is asked of the agent of the box that runs it (its record in etcd names it).
async fn task_view_here_or_there(
    c: Arc<Console>,
    view: &'static str,
    id: String,
    query: Option<String>,
) -> Response {
    let query = query.unwrap_or_default();
    let (ecs, q, i) = (c.ecs.clone(), query.clone(), id.clone());
    let here = match tokio::task::spawn_blocking(move || task_view(&ecs, view, &i, &q)).await {
        Ok(r) => r,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let there = match (here.0, crate::cluster::serving()) {
        (404, Some(etcd)) => crate::cluster::remote::console_view(etcd, view, &id, &query).await,
        _ => Ok(here),
    };
    match there {
        Ok((status, v)) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            if status.is_success() {
                reply(Ok(v))
            } else {
                error(status, v["message"].as_str().unwrap_or("failed"))
            }
        }
        Err(e) => error(
            StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_GATEWAY),
            &crate::errors::error_chain(&e),
        ),
    }
}

async fn findings(State(c): Shared, Path((family, revision)): Path<(String, String)>) -> Response {
    blocking(move || data::findings(&c.ecs, &family, &revision)).await
}

fn query(q: Option<String>) -> std::collections::HashMap<String, String> {
    form_urlencoded::parse(q.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

/// A console view's failure: the status and the message the page shows.
#[derive(Debug)]
pub struct Failure {
    status: StatusCode,
    message: String,
}

impl Failure {
    fn not_found(message: String) -> Failure {
        Failure {
            status: StatusCode::NOT_FOUND,
            message,
        }
    }

    fn bad_request(message: String) -> Failure {
        Failure {
            status: StatusCode::BAD_REQUEST,
            message,
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Failure {
        Failure {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: format!("{e:#}"),
        }
    }
}

fn ecs_error(e: ServiceError) -> Failure {
    Failure {
        status: StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST),
        message: format!("{}: {}", e.name(), e.message()),
    }
}

/// Runs a store/filesystem read off the async workers.
async fn blocking(f: impl FnOnce() -> Result<Value, Failure> + Send + 'static) -> Response {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => reply(r),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

fn reply(r: Result<Value, Failure>) -> Response {
    match r {
        Ok(v) => {
            let mut resp = v.to_string().into_response();
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            resp
        }
        Err(f) => error(f.status, &f.message),
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    if status.is_server_error() {
        tracing::error!(status = status.as_u16(), message, "console request failed");
    }
    let mut resp = (status, json!({ "message": message }).to_string()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_embedded_and_unknown_ones_are_404() {
        for (name, _, body) in assets() {
            assert!(!body.is_empty(), "{name}");
            assert_eq!(asset_response(name).status(), StatusCode::OK);
        }
        // What is served is the file itself.
        let js = &assets().iter().find(|a| a.0 == "app.js").unwrap().2;
        assert_eq!(js.as_slice(), include_bytes!("assets/app.js"));
        assert_eq!(
            asset_response("../Cargo.toml").status(),
            StatusCode::NOT_FOUND
        );
    }

    /// app.js is one script: two functions of one name at its top level are one
    /// function, the last, and every page calling the first one gets the other's (the
    /// container instances page once showed Cloud Map instances so).
    #[test]
    fn no_two_top_level_functions_of_app_js_share_a_name() {
        let js = include_str!("assets/app.js");
        let mut seen = std::collections::HashMap::new();
        for (n, line) in js.lines().enumerate() {
            let Some(rest) = line.strip_prefix("  ") else {
                continue;
            };
            let rest = rest.strip_prefix("async ").unwrap_or(rest);
            let Some(name) = rest.strip_prefix("function ") else {
                continue;
            };
            let name = name.split('(').next().unwrap_or_default().trim();
            if let Some(first) = seen.insert(name.to_string(), n + 1) {
                panic!("app.js declares `{name}` at lines {first} and {}", n + 1);
            }
        }
        assert!(seen.len() > 50, "{} functions found", seen.len());
    }

    #[test]
    fn calls_must_be_json_and_same_origin() {
        let mut h = HeaderMap::new();
        assert!(same_origin_json(&h).is_err());
        h.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        h.insert(header::HOST, "127.0.0.1:8080".parse().unwrap());
        assert!(same_origin_json(&h).is_ok());
        h.insert(header::ORIGIN, "http://127.0.0.1:8080".parse().unwrap());
        assert!(same_origin_json(&h).is_ok());
        h.insert(header::ORIGIN, "http://evil.example".parse().unwrap());
        assert!(same_origin_json(&h).is_err());
    }

    #[test]
    fn with_keys_the_console_signs_in_with_basic_credentials() {
        let mut keys = crate::api::auth::Keys::default();
        keys.insert("AKID", "s3cret:with:colons");
        let req = |path: &str, auth: Option<&str>| {
            let mut b = axum::http::Request::get(path);
            if let Some(a) = auth {
                b = b.header(header::AUTHORIZATION, a);
            }
            b.body(()).unwrap().into_parts().0
        };
        use base64::Engine;
        let basic = |s: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(s)
            )
        };
        let good = basic("AKID:s3cret:with:colons");
        assert!(sign_in(&keys, &req("/", Some(&good))).is_none());
        for bad in [
            None,
            Some(basic("AKID:wrong")),
            Some(basic("OTHER:s3cret:with:colons")),
            Some("Basic !!".to_string()),
            Some("AWS4-HMAC-SHA256 Credential=AKID".to_string()),
        ] {
            let r = sign_in(&keys, &req("/", bad.as_deref())).unwrap();
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{bad:?}");
            assert!(r.headers().contains_key(header::WWW_AUTHENTICATE));
        }
        assert!(is_console(&req("/", None)));
        assert!(is_console(&req("/assets/app.js", None)));
        assert!(is_console(&req("/console/api/config", None)));
        let post = axum::http::Request::post("/")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        assert!(!is_console(&post), "the API's POST / stays SigV4");
    }

    #[test]
    fn the_page_loads_only_its_own_assets() {
        let html = String::from_utf8(assets()[0].2.clone()).unwrap();
        for src in ["/assets/app.js", "/assets/style.css"] {
            assert!(html.contains(src), "{src}");
        }
        assert!(!html.contains("http://") && !html.contains("https://"));
    }
}
