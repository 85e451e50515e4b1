//! The registry's `/v2/` routes on serve's listener: the OCI distribution spec's pull,
//! push, content discovery and management endpoints over the ECR core (`crate::ecr`).
//! The guard lets these paths through unbuffered and unsigned (`is_registry`): blobs are
//! streamed to disk here, and the caller is checked here against ECR's token (HTTP Basic,
//! `AWS:<password>`), with a 401 and `WWW-Authenticate: Basic` that makes podman, skopeo
//! and docker log in. Ref: opencontainers/distribution-spec `spec.md`.

use crate::ecr::tokens::Tokens;
use crate::ecr::{Digest, Reference, Registry, RegistryError, RepoName};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use std::sync::Arc;
use std::time::Duration;

/// How long an upload may wait for its next bytes before it is cut.
const IDLE: Duration = Duration::from_secs(60);

/// The registry's front: the core and who may use it (None: no authentication,
/// `serve --insecure-no-auth`).
pub struct Front {
    pub registry: Arc<Registry>,
    pub tokens: Option<Arc<Tokens>>,
}

/// Whether a request is the registry's (`/v2/…`).
pub fn is_registry(req: &axum::http::request::Parts) -> bool {
    let p = req.uri.path();
    p == "/v2" || p.starts_with("/v2/")
}

pub fn router(front: Arc<Front>) -> axum::Router {
    axum::Router::new()
        .route("/v2", axum::routing::any(handle))
        .route("/v2/", axum::routing::any(handle))
        .route("/v2/{*rest}", axum::routing::any(handle))
        .with_state(front)
}

/// What a `/v2/` path names.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    Base,
    Tags(String),
    Manifest(String, String),
    /// `…/blobs/uploads/` (None) or `…/blobs/uploads/<id>`.
    Upload(String, Option<String>),
    Blob(String, String),
    Referrers(String, String),
}

fn target(path: &str) -> Option<Target> {
    let rest = path.strip_prefix("/v2")?;
    let rest = match rest {
        "" | "/" => return Some(Target::Base),
        r => r.strip_prefix('/')?,
    };
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Some(Target::Tags(name.into()));
    }
    if let Some((name, id)) = rest.rsplit_once("/blobs/uploads/") {
        return Some(Target::Upload(
            name.into(),
            (!id.is_empty()).then(|| id.to_string()),
        ));
    }
    if let Some(name) = rest.strip_suffix("/blobs/uploads") {
        return Some(Target::Upload(name.into(), None));
    }
    for (mark, f) in [
        (
            "/manifests/",
            Target::Manifest as fn(String, String) -> Target,
        ),
        ("/blobs/", Target::Blob),
        ("/referrers/", Target::Referrers),
    ] {
        if let Some((name, r)) = rest.rsplit_once(mark)
            && !r.is_empty()
            && !r.contains('/')
        {
            return Some(f(name.into(), r.into()));
        }
    }
    None
}

fn query(uri: &Uri) -> Vec<(String, String)> {
    form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn param<'a>(q: &'a [(String, String)], k: &str) -> Option<&'a str> {
    q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

/// A spec error body: `{"errors":[{"code","message","detail"}]}`.
fn error(e: &RegistryError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if status.is_server_error() {
        tracing::error!(error = %crate::errors::error_chain(e), "registry request failed");
    } else {
        tracing::debug!(code = e.code(), error = %e, "registry request refused");
    }
    let body = serde_json::json!({"errors": [{
        "code": e.code(),
        "message": crate::errors::error_chain(e),
        "detail": null,
    }]});
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn with_headers(mut r: Response, headers: &[(&'static str, String)]) -> Response {
    for (k, v) in headers {
        if let Ok(v) = HeaderValue::from_str(v) {
            r.headers_mut().insert(*k, v);
        }
    }
    r
}

/// The spec's `Range` of an upload holding `size` bytes (`0-<last byte>`; `0-0` for none,
/// as CNCF distribution answers).
fn range(size: u64) -> String {
    format!("0-{}", size.saturating_sub(1))
}

fn upload_headers(name: &RepoName, id: &str, size: u64) -> Vec<(&'static str, String)> {
    vec![
        ("location", format!("/v2/{name}/blobs/uploads/{id}")),
        ("range", range(size)),
        ("docker-upload-uuid", id.to_string()),
    ]
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RegistryError> + Send + 'static,
) -> Result<T, RegistryError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(RegistryError::Storage {
            what: "run a registry step".into(),
            source: std::io::Error::other(e.to_string()),
        })
    })
}

async fn handle(
    State(front): State<Arc<Front>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut r = match route(&front, &method, &uri, &headers, body).await {
        Ok(r) => r,
        Err(e) => {
            let unauthorized = matches!(e, RegistryError::Unauthorized(_));
            let r = error(&e);
            if let RegistryError::RangeInvalid { size, .. } = &e {
                // Where the upload stands, so the client resends from there.
                with_headers(r, &[("range", range(*size))])
            } else if unauthorized {
                // Ref: RFC 7617; ECR answers `Basic realm="https://<registry>/",service="ecr.amazonaws.com"`.
                let realm = format!(
                    "Basic realm=\"https://{}/\",service=\"ecr.amazonaws.com\"",
                    front.registry.host()
                );
                with_headers(r, &[("www-authenticate", realm)])
            } else {
                r
            }
        }
    };
    r.headers_mut().insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
    r
}

/// Whether a request carries no credentials: no `Authorization`, or Basic with an empty
/// user and password (what skopeo's `--no-creds` and docker's anonymous pulls send).
fn no_credentials(auth: Option<&str>) -> bool {
    let Some(v) = auth else { return true };
    v.strip_prefix("Basic ")
        .or_else(|| v.strip_prefix("basic "))
        .and_then(|b| {
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b.trim()).ok()
        })
        .is_some_and(|d| d.is_empty() || d == b":")
}

/// Whether repository `name`'s policy lets anyone do `action` (a read of the registry's
/// database, off the async threads).
async fn allowed_anonymous(front: &Front, name: String, action: &'static str) -> bool {
    let reg = front.registry.clone();
    tokio::task::spawn_blocking(move || reg.allows_anonymous(&name, action))
        .await
        .unwrap_or(false)
}

/// The token endpoint of the Bearer exchange (the distribution token protocol's realm):
/// the registry challenges with Basic as ECR does, and a client that asks here with the
/// ECR Basic credentials (checked before this, as every request's) gets a Bearer token
/// the registry takes: the same password, under the same MAC, expiring with it.
pub const TOKEN_PATH: &str = "/v2/token";

fn token_answer(headers: &HeaderMap) -> Response {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let (token, expires_in) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|a| crate::ecr::tokens::Tokens::bearer(a, now))
        // serve without authentication: any token goes.
        .unwrap_or_else(|| ("anonymous".to_string(), crate::ecr::tokens::VALIDITY_SECS));
    let body = serde_json::json!({
        "token": token,
        "access_token": token,
        "expires_in": expires_in,
    });
    with_headers(
        (StatusCode::OK, body.to_string()).into_response(),
        &[("content-type", "application/json".to_string())],
    )
}

/// With tokens (serve's authentication): whether the request may go on: a pull the
/// repository's policy allows anyone (or a blob URL GetDownloadUrlForLayer signed) without
/// credentials, else a valid token, and a pull-only token only pulls.
async fn authorize(
    front: &Front,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<(), RegistryError> {
    let Some(tokens) = &front.tokens else {
        return Ok(());
    };
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    // Without credentials: a pull the repository's policy allows anyone
    // (crate::ecr::policy), else the challenge.
    let anonymous = no_credentials(auth)
        && matches!(*method, Method::GET | Method::HEAD)
        && match target(uri.path()) {
            Some(Target::Manifest(n, _)) => allowed_anonymous(front, n, "ecr:BatchGetImage").await,
            Some(Target::Blob(n, d)) => {
                // A URL GetDownloadUrlForLayer signed, or the repository's policy.
                let q = query(uri);
                match (param(&q, "X-Expires"), param(&q, "X-Signature")) {
                    (Some(e), Some(sig)) => tokens.verify_blob(&n, &d, e, sig, now),
                    _ => allowed_anonymous(front, n, "ecr:GetDownloadUrlForLayer").await,
                }
            }
            Some(Target::Tags(n)) => allowed_anonymous(front, n, "ecr:ListImages").await,
            _ => false,
        };
    let scope = if anonymous {
        crate::ecr::tokens::Scope::Pull
    } else {
        tokens.verify(auth, now).map_err(|why| {
        // A client's first request carries no credentials: the challenge asks for
        // them (not worth a warning); wrong ones are.
        if !no_credentials(auth) {
            tracing::warn!(path = uri.path(), reason = %why, "registry request refused: authentication");
        } else {
            tracing::debug!(path = uri.path(), "registry request without credentials: challenged");
        }
        RegistryError::Unauthorized(why)
    })?
    };
    if scope == crate::ecr::tokens::Scope::Pull && !matches!(*method, Method::GET | Method::HEAD) {
        return Err(RegistryError::Denied(format!(
            "{method} {}: this token only pulls (a cluster box's token)",
            uri.path()
        )));
    }
    Ok(())
}

async fn route(
    front: &Front,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, RegistryError> {
    authorize(front, method, uri, headers).await?;
    if uri.path() == TOKEN_PATH && matches!(*method, Method::GET | Method::POST) {
        return Ok(token_answer(headers));
    }
    let Some(t) = target(uri.path()) else {
        return Err(RegistryError::NameInvalid(format!(
            "{}: not a path of the distribution API",
            uri.path()
        )));
    };
    let reg = front.registry.clone();
    let name = |n: &str| {
        let reg = reg.clone();
        let n = n.to_string();
        async move { blocking(move || reg.registry_repo(&n)).await }
    };
    let q = query(uri);
    use Method as M;
    match (t, method.clone()) {
        (Target::Base, M::GET | M::HEAD) => Ok((StatusCode::OK, "{}").into_response()),
        (Target::Tags(n), M::GET) => {
            let repo = name(&n).await?;
            tags(reg, repo, &q).await
        }
        (Target::Blob(n, d), m @ (M::GET | M::HEAD)) => {
            let repo = name(&n).await?;
            get_blob(reg, headers, (repo, &d), m).await
        }
        (Target::Blob(n, d), M::DELETE) => {
            let repo = name(&n).await?;
            let d = Digest::parse(&d)?;
            blocking(move || {
                reg.delete_blob(&repo, &d)?;
                reg.collect_garbage_logged();
                Ok(())
            })
            .await?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        (Target::Upload(n, None), M::POST) => {
            let repo = name(&n).await?;
            start_upload(reg, repo, &q, body).await
        }
        (Target::Upload(n, Some(id)), M::GET) => {
            let repo = name(&n).await?;
            let (r2, id2) = (repo.clone(), id.clone());
            let size = blocking(move || reg.upload_size(&r2, &id2)).await?;
            Ok(with_headers(
                StatusCode::NO_CONTENT.into_response(),
                &upload_headers(&repo, &id, size),
            ))
        }
        (Target::Upload(n, Some(id)), M::PATCH) => {
            let repo = name(&n).await?;
            let start = content_range_start(headers)?;
            let size = append(&reg, &repo, &id, start, body).await?;
            Ok(with_headers(
                StatusCode::ACCEPTED.into_response(),
                &upload_headers(&repo, &id, size),
            ))
        }
        (Target::Upload(n, Some(id)), M::PUT) => {
            let repo = name(&n).await?;
            let Some(d) = param(&q, "digest") else {
                return Err(RegistryError::DigestInvalid(
                    "the closing PUT of an upload needs ?digest=<digest>".into(),
                ));
            };
            let d = Digest::parse(d)?;
            let start = content_range_start(headers)?;
            append(&reg, &repo, &id, start, body).await?;
            let (r2, d2) = (repo.clone(), d.clone());
            blocking(move || reg.finish_upload(&r2, &id, &d2)).await?;
            Ok(created_blob(&repo, &d))
        }
        (Target::Upload(n, Some(id)), M::DELETE) => {
            let repo = name(&n).await?;
            blocking(move || reg.cancel_upload(&repo, &id)).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        (Target::Manifest(n, r), m @ (M::GET | M::HEAD)) => {
            let repo = name(&n).await?;
            let r = Reference::parse(&r)?;
            let pull = m == M::GET;
            let man = blocking(move || reg.manifest(&repo, &r, pull)).await?;
            let hdrs = [
                ("content-type", man.media_type.clone()),
                ("docker-content-digest", man.digest.to_string()),
                ("content-length", man.bytes.len().to_string()),
            ];
            let resp = if pull {
                (StatusCode::OK, man.bytes).into_response()
            } else {
                StatusCode::OK.into_response()
            };
            Ok(with_headers(resp, &hdrs))
        }
        (Target::Manifest(n, r), M::PUT) => {
            let repo = name(&n).await?;
            put_manifest(reg, headers, (repo, &r), body).await
        }
        (Target::Manifest(n, r), M::DELETE) => {
            let repo = name(&n).await?;
            let r = Reference::parse(&r)?;
            blocking(move || {
                reg.delete_manifest(&repo, &r)?;
                reg.collect_garbage_logged();
                Ok(())
            })
            .await?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        (Target::Referrers(n, d), M::GET) => {
            let repo = name(&n).await?;
            referrers(reg, (repo, &d), &q).await
        }
        (_, m) => Err(RegistryError::Unsupported(format!(
            "{m} {}: not an operation of the distribution API",
            uri.path()
        ))),
    }
}

/// `GET`/`HEAD /v2/<name>/blobs/<digest>`: the blob, whole or the range asked.
async fn get_blob(
    reg: Arc<Registry>,
    headers: &HeaderMap,
    (repo, d): (RepoName, &str),
    m: Method,
) -> Result<Response, RegistryError> {
    use Method as M;
    let d = Digest::parse(d)?;
    let d2 = d.clone();
    // Another serve of the cluster fetching it (crate::cluster::registries):
    // what this serve holds, never asked of a third.
    let here = headers.contains_key(crate::cluster::registries::PEER_HEADER);
    let blob = blocking(move || {
        if here {
            reg.blob_here(&repo, &d2)
        } else {
            reg.blob(&repo, &d2)
        }
    })
    .await?;
    let hdrs = [
        ("content-length", blob.size.to_string()),
        ("docker-content-digest", d.to_string()),
        ("content-type", "application/octet-stream".to_string()),
    ];
    if m == M::HEAD {
        return Ok(with_headers(StatusCode::OK.into_response(), &hdrs));
    }
    let mut f =
        tokio::fs::File::open(&blob.path)
            .await
            .map_err(|source| RegistryError::Storage {
                what: format!("open blob {}", blob.path.display()),
                source,
            })?;
    // A client resuming a download asks for the rest (`Range: bytes=N-`).
    // Ref: RFC 9110 §14.2; distribution-spec "Pulling blobs" (Range is optional).
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(|r| byte_range(r, blob.size));
    let (status, start, len, mut hdrs) = match range {
        None => (StatusCode::OK, 0, blob.size, hdrs.to_vec()),
        Some(None) => {
            return Ok(with_headers(
                StatusCode::RANGE_NOT_SATISFIABLE.into_response(),
                &[("content-range", format!("bytes */{}", blob.size))],
            ));
        }
        Some(Some((a, b))) => {
            let mut h = hdrs.to_vec();
            h[0].1 = (b - a + 1).to_string();
            h.push(("content-range", format!("bytes {a}-{b}/{}", blob.size)));
            (StatusCode::PARTIAL_CONTENT, a, b - a + 1, h)
        }
    };
    if start > 0 {
        use tokio::io::AsyncSeekExt;
        f.seek(std::io::SeekFrom::Start(start))
            .await
            .map_err(|source| RegistryError::Storage {
                what: format!("seek blob {}", blob.path.display()),
                source,
            })?;
    }
    use tokio::io::AsyncReadExt;
    let body = Body::from_stream(tokio_util::io::ReaderStream::with_capacity(
        f.take(len),
        256 * 1024,
    ));
    hdrs.push(("accept-ranges", "bytes".to_string()));
    Ok(with_headers((status, body).into_response(), &hdrs))
}

/// `GET /v2/<name>/tags/list`: its tags, a page of `n` after `last` with a link to the next.
async fn tags(
    reg: Arc<Registry>,
    repo: RepoName,
    q: &[(String, String)],
) -> Result<Response, RegistryError> {
    let n_param = match param(q, "n") {
        Some(v) => Some(
            v.parse::<usize>()
                .map_err(|_| RegistryError::Unsupported(format!("n={v:?}: not a number")))?,
        ),
        None => None,
    };
    let last = param(q, "last").map(str::to_string);
    let r2 = repo.clone();
    let (tags, more) = blocking(move || reg.tags(&r2, n_param, last.as_deref())).await?;
    let body = serde_json::json!({"name": repo.as_str(), "tags": tags});
    let mut out = vec![("content-type", "application/json".to_string())];
    if more && let (Some(n), Some(last)) = (n_param, tags.last()) {
        out.push((
            "link",
            format!("</v2/{repo}/tags/list?n={n}&last={last}>; rel=\"next\""),
        ));
    }
    Ok(with_headers(
        (StatusCode::OK, body.to_string()).into_response(),
        &out,
    ))
}

/// `PUT /v2/<name>/manifests/<reference>`: the manifest stored, its digest answered.
async fn put_manifest(
    reg: Arc<Registry>,
    headers: &HeaderMap,
    (repo, r): (RepoName, &str),
    body: Body,
) -> Result<Response, RegistryError> {
    let r = Reference::parse(r)?;
    let bytes = read_limited(body, crate::ecr::manifests_max()).await?;
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let r2 = repo.clone();
    let subject = crate::ecr::manifests_subject(&bytes);
    let d = blocking(move || reg.put_manifest(&r2, &r, ct.as_deref(), &bytes)).await?;
    let mut hdrs = vec![
        ("location", format!("/v2/{repo}/manifests/{d}")),
        ("docker-content-digest", d.to_string()),
    ];
    // The spec: a registry that serves the referrers API says so for a manifest
    // with a subject.
    if let Some(s) = subject {
        hdrs.push(("oci-subject", s));
    }
    Ok(with_headers(StatusCode::CREATED.into_response(), &hdrs))
}

/// `GET /v2/<name>/referrers/<digest>`: the manifests whose subject it is, as an index.
async fn referrers(
    reg: Arc<Registry>,
    (repo, d): (RepoName, &str),
    q: &[(String, String)],
) -> Result<Response, RegistryError> {
    let subject = crate::ecr::Digest::parse(d)?;
    let filter = param(q, "artifactType").map(str::to_string);
    let f2 = filter.clone();
    let manifests = blocking(move || reg.referrers(&repo, &subject, f2.as_deref())).await?;
    let body = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    });
    let mut hdrs = vec![(
        "content-type",
        "application/vnd.oci.image.index.v1+json".to_string(),
    )];
    if filter.is_some() {
        hdrs.push(("oci-filters-applied", "artifactType".to_string()));
    }
    Ok(with_headers(
        (StatusCode::OK, body.to_string()).into_response(),
        &hdrs,
    ))
}

/// `POST /v2/<name>/blobs/uploads/`: a blob mounted from another repository when it can
/// be, else an upload session (the whole blob in this POST with `?digest=`).
async fn start_upload(
    reg: Arc<Registry>,
    repo: RepoName,
    q: &[(String, String)],
    body: Body,
) -> Result<Response, RegistryError> {
    if let (Some(mount), from) = (param(q, "mount"), param(q, "from")) {
        let d = Digest::parse(mount)?;
        let from = from.and_then(|f| RepoName::parse(f).ok());
        if let Some(from) = from {
            let (r2, d2) = (repo.clone(), d.clone());
            let reg2 = reg.clone();
            if blocking(move || reg2.mount(&r2, &d2, &from)).await? {
                return Ok(created_blob(&repo, &d));
            }
        }
        // Not mountable: an ordinary upload session, as the spec says.
    }
    let r2 = repo.clone();
    let reg2 = reg.clone();
    let id = blocking(move || reg2.start_upload(&r2)).await?;
    if let Some(d) = param(q, "digest") {
        // Monolithic: the whole blob in this POST.
        return monolithic(reg, repo, id, d, body).await;
    }
    Ok(with_headers(
        StatusCode::ACCEPTED.into_response(),
        &upload_headers(&repo, &id, 0),
    ))
}

/// The first and last byte of `Range: bytes=<a>-[<b>]` (or `bytes=-<n>`, the last n)
/// within a blob of `size` bytes; None when it is not satisfiable or not one range.
fn byte_range(value: &str, size: u64) -> Option<(u64, u64)> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') || size == 0 {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().ok()?;
            (size.checked_sub(n.min(size))?, size - 1)
        }
        (a, "") => (a.parse().ok()?, size - 1),
        (a, b) => (a.parse().ok()?, b.parse::<u64>().ok()?.min(size - 1)),
    };
    (a <= b && a < size).then_some((a, b))
}

fn created_blob(repo: &RepoName, d: &Digest) -> Response {
    with_headers(
        StatusCode::CREATED.into_response(),
        &[
            ("location", format!("/v2/{repo}/blobs/{d}")),
            ("docker-content-digest", d.to_string()),
        ],
    )
}

/// Cancels an upload when dropped armed: a monolithic upload that fails, or whose
/// request is dropped with its connection (hyper drops the handler of a connection that
/// closes mid-body, so cleanup cannot wait for an error to come back).
struct CancelOnDrop(Option<(Arc<Registry>, RepoName, String)>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some((reg, repo, id)) = self.0.take() else {
            return;
        };
        let cancel = move || {
            if let Err(e) = reg.cancel_upload(&repo, &id) {
                tracing::warn!(upload = %id, error = %e, "failed to remove a failed upload");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) => drop(h.spawn_blocking(cancel)),
            Err(_) => cancel(),
        }
    }
}

/// A POST carrying the whole blob: written, checked, stored; on any failure, or when the
/// client goes away, the upload is dropped, so nothing is left.
async fn monolithic(
    reg: Arc<Registry>,
    repo: RepoName,
    id: String,
    digest: &str,
    body: Body,
) -> Result<Response, RegistryError> {
    let mut armed = CancelOnDrop(Some((reg.clone(), repo.clone(), id.clone())));
    let d = Digest::parse(digest)?;
    append(&reg, &repo, &id, None, body).await?;
    let (reg2, r2, id2, d2) = (reg.clone(), repo.clone(), id.clone(), d.clone());
    // finish_upload removes the upload itself on a wrong digest; past it, nothing to cancel.
    armed.0 = None;
    blocking(move || reg2.finish_upload(&r2, &id2, &d2)).await?;
    Ok(created_blob(&repo, &d))
}

/// The first byte of a chunk's `Content-Range: <start>-<end>` (None without one).
fn content_range_start(headers: &HeaderMap) -> Result<Option<u64>, RegistryError> {
    let Some(v) = headers.get(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let s = v.to_str().unwrap_or("");
    let s = s.strip_prefix("bytes ").unwrap_or(s);
    let start = s
        .split_once('-')
        .and_then(|(a, _)| a.trim().parse::<u64>().ok());
    match start {
        Some(n) => Ok(Some(n)),
        None => Err(RegistryError::BlobUploadInvalid(format!(
            "Content-Range {s:?}: expected <start>-<end>"
        ))),
    }
}

/// Appends `body` to upload `id` (starting at `start` when given); the upload's size after.
/// A body cut off leaves the bytes received in the upload (it can be resumed, as the spec
/// allows, or cancelled), never in the blob store.
async fn append(
    reg: &Arc<Registry>,
    repo: &RepoName,
    id: &str,
    start: Option<u64>,
    mut body: Body,
) -> Result<u64, RegistryError> {
    let (reg2, r2, id2) = (reg.clone(), repo.clone(), id.to_string());
    let (file, mut size) = blocking(move || reg2.upload_writer(&r2, &id2, start)).await?;
    let mut file = tokio::fs::File::from_std(file);
    let cut = |why: String| RegistryError::BlobUploadInvalid(why);
    loop {
        let frame = match tokio::time::timeout(IDLE, body.frame()).await {
            Err(_) => {
                return Err(cut(format!(
                    "no bytes for {} s after {size} bytes; the upload keeps what came",
                    IDLE.as_secs()
                )));
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                return Err(cut(format!(
                    "the request body was cut off after {size} bytes ({e})"
                )));
            }
            Ok(Some(Ok(f))) => f,
        };
        if let Ok(data) = frame.into_data() {
            use tokio::io::AsyncWriteExt;
            file.write_all(&data)
                .await
                .map_err(|source| RegistryError::Storage {
                    what: format!("write upload {id}"),
                    source,
                })?;
            size += data.len() as u64;
        }
    }
    use tokio::io::AsyncWriteExt;
    file.flush()
        .await
        .map_err(|source| RegistryError::Storage {
            what: format!("write upload {id}"),
            source,
        })?;
    Ok(size)
}

async fn read_limited(body: Body, max: usize) -> Result<Vec<u8>, RegistryError> {
    match tokio::time::timeout(IDLE, axum::body::to_bytes(body, max)).await {
        Ok(Ok(b)) => Ok(b.to_vec()),
        Ok(Err(e)) => Err(RegistryError::SizeInvalid(format!(
            "the manifest could not be read within {max} bytes: {e}"
        ))),
        Err(_) => Err(RegistryError::BlobUploadInvalid(
            "the manifest was not received in time".into(),
        )),
    }
}

/// The registry's HTTPS on serve's port: its certificate (signed by the box's registry CA,
/// `crate::ecr::tls`) for the ECR host name, localhost, the loopback addresses, the listen
/// address, `allowed` names and `at_443` (the registry's own loopback address,
/// `super::ecr_host`); and the trust clients read, removed when serve stops: for podman,
/// skopeo and buildah in `MINIFARGATE_REGISTRY_CERTS_D` (default /etc/containers/certs.d;
/// `off`: none), for `127.0.0.1:<port>`, `localhost:<port>` and the listen address; with
/// `at_443`, for the ECR host name there and in `MINIFARGATE_DOCKER_CERTS_D` (Docker's).
pub fn https(
    reg: &Registry,
    addr: std::net::SocketAddr,
    allowed: &[String],
    cluster_at: Option<&str>,
    at_443: Option<std::net::Ipv4Addr>,
) -> anyhow::Result<(crate::ecr::tls::Files, Vec<crate::ecr::tls::Trust>)> {
    use anyhow::Context;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let mut dns = vec![reg.host(), "localhost".to_string()];
    dns.extend(allowed.iter().cloned());
    let mut ips = vec![
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ];
    if !addr.ip().is_unspecified() && !ips.contains(&addr.ip()) {
        ips.push(addr.ip());
    }
    if let Some(ip) = at_443 {
        ips.push(IpAddr::V4(ip));
    }
    // The host the cluster's boxes reach it at (an address or a name).
    if let Some(at) = cluster_at {
        let host = match at.parse::<std::net::SocketAddr>() {
            Ok(a) => a.ip().to_string(),
            Err(_) => at.rsplit_once(':').map_or(at, |(h, _)| h).to_string(),
        };
        match host.trim_matches(['[', ']']).parse::<IpAddr>() {
            Ok(ip) if !ips.contains(&ip) => ips.push(ip),
            Ok(_) => {}
            Err(_) if !dns.contains(&host) => dns.push(host),
            Err(_) => {}
        }
    }
    let files = crate::ecr::tls::prepare(&reg.dir().join("tls"), &dns, &ips)
        .context("failed to set up the registry's certificate")?;
    let ca = std::fs::read(&files.ca_cert)
        .with_context(|| format!("failed to read {}", files.ca_cert.display()))?;
    let port = addr.port();
    let mut hosts = vec![format!("127.0.0.1:{port}"), format!("localhost:{port}")];
    if !addr.ip().is_unspecified() && !addr.ip().is_loopback() {
        hosts.push(addr.to_string());
    }
    if at_443.is_some() {
        hosts.push(reg.host());
    }
    let cfg = crate::config::get();
    let docker_hosts: Vec<String> = at_443.iter().map(|_| reg.host()).collect();
    let mut trust = Vec::new();
    for (certs_d, hosts, clients) in [
        (&cfg.registry_certs_d, &hosts, "podman, skopeo and buildah"),
        (&cfg.docker_certs_d, &docker_hosts, "Docker"),
    ] {
        let Some(certs_d) = certs_d else { continue };
        if hosts.is_empty() {
            continue;
        }
        let dirs: Vec<_> = hosts.iter().map(|h| certs_d.join(h)).collect();
        match crate::ecr::tls::Trust::install(&dirs, &ca) {
            Ok(t) => {
                if !t.files().is_empty() {
                    eprintln!(
                        "minifargate: the registry's CA is trusted by {clients} through {}",
                        t.files()
                            .iter()
                            .map(|f| f.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
                trust.push(t);
            }
            // Not fatal: the registry still answers HTTPS; clients are told the CA.
            Err(e) => eprintln!(
                "minifargate: warning: {}: {clients} will not trust the registry's \
                 certificate until {} is copied to {}/<host>/ca.crt",
                crate::errors::error_chain(&e),
                files.ca_cert.display(),
                certs_d.display()
            ),
        }
    }
    eprintln!(
        "minifargate: registry HTTPS on port {port} with a certificate of the CA {}",
        files.ca_cert.display(),
    );
    Ok((files, trust))
}

/// This serve's registry advertised to the cluster's boxes (`crate::cluster::registries`).
pub struct ClusterAdvert {
    etcd: &'static crate::cluster::etcd::Etcd,
    name: String,
    task: tokio::task::JoinHandle<()>,
}

/// Advertises the registry at `at` (HTTPS, certificate of `ca_pem`'s CA) to the boxes
/// of the cluster in `etcd`, with a pull-only token (none without authentication).
pub fn advertise_to_cluster(
    etcd: &'static crate::cluster::etcd::Etcd,
    front: &Front,
    at: String,
    ca_pem: Option<String>,
) -> ClusterAdvert {
    let name = crate::cluster::registries::this_serve();
    let (registry_host, tokens, serve) =
        (front.registry.host(), front.tokens.clone(), name.clone());
    eprintln!(
        "minifargate: ECR registry advertised to the cluster's boxes at {at}: repository \
         URIs {registry_host}/<name> resolve to it on every box"
    );
    let make = move || {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let (username, password, expires_at) = match &tokens {
            Some(t) => {
                let issued = t.issue_pull(now);
                let plain = base64::Engine::decode(
                    &base64::engine::general_purpose::STANDARD,
                    &issued.authorization_token,
                )
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .unwrap_or_default();
                (
                    Some(crate::ecr::tokens::USER.to_string()),
                    plain.split_once(':').map(|(_, p)| p.to_string()),
                    issued.expires_at,
                )
            }
            None => (None, None, now + crate::ecr::tokens::VALIDITY_SECS),
        };
        crate::task::local_registry::ClusterRegistry {
            serve: serve.clone(),
            host: registry_host.clone(),
            endpoint: at.clone(),
            ca_pem: ca_pem.clone(),
            username,
            password,
            expires_at,
        }
    };
    let task = tokio::spawn(crate::cluster::registries::advertise(
        etcd,
        name.clone(),
        make,
    ));
    ClusterAdvert { etcd, name, task }
}

impl ClusterAdvert {
    /// Stops advertising and removes the advertisement (serve stopping).
    pub async fn withdraw(self) {
        self.task.abort();
        crate::cluster::registries::withdraw(self.etcd, &self.name).await;
    }
}

/// Tells the pulls on this box where the registry answers (`task::local_registry`):
/// written now and every hour with a fresh token (valid 12 h), removed when serve stops.
pub struct Advertised {
    root: std::path::PathBuf,
    refresh: tokio::task::JoinHandle<()>,
}

impl Advertised {
    pub fn start(root: &std::path::Path, front: &Front, addr: std::net::SocketAddr) -> Advertised {
        use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
        let ip = match addr.ip() {
            IpAddr::V4(v) if v.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(v) if v.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let endpoint = std::net::SocketAddr::new(ip, addr.port()).to_string();
        let (root2, host, tokens) = (
            root.to_path_buf(),
            front.registry.host(),
            front.tokens.clone(),
        );
        let write = move || {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default();
            let (username, password, expires_at) = match &tokens {
                Some(t) => {
                    let issued = t.issue(now);
                    let plain = base64::Engine::decode(
                        &base64::engine::general_purpose::STANDARD,
                        &issued.authorization_token,
                    )
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .unwrap_or_default();
                    let pw = plain.split_once(':').map(|(_, p)| p.to_string());
                    (
                        Some(crate::ecr::tokens::USER.to_string()),
                        pw,
                        issued.expires_at,
                    )
                }
                None => (None, None, now + crate::ecr::tokens::VALIDITY_SECS),
            };
            let l = crate::task::local_registry::LocalRegistry {
                host: host.clone(),
                endpoint: endpoint.clone(),
                // Loopback: plain HTTP, or TLS with serve's own certificate.
                insecure: true,
                username,
                password,
                expires_at,
                pid: std::process::id(),
            };
            if let Err(e) = l.write(&root2) {
                tracing::warn!(error = %e, "failed to write registry/local.json: this box's pulls will not find its registry");
            }
        };
        write();
        let refresh = tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(3600));
            every.tick().await;
            loop {
                every.tick().await;
                let w = write.clone();
                let _ = tokio::task::spawn_blocking(w).await;
            }
        });
        Advertised {
            root: root.to_path_buf(),
            refresh,
        }
    }
}

impl Drop for Advertised {
    fn drop(&mut self) {
        self.refresh.abort();
        let _ = std::fs::remove_file(crate::task::local_registry::path(&self.root));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_ranges() {
        assert_eq!(byte_range("bytes=0-", 10), Some((0, 9)));
        assert_eq!(byte_range("bytes=4-", 10), Some((4, 9)));
        assert_eq!(byte_range("bytes=2-5", 10), Some((2, 5)));
        assert_eq!(byte_range("bytes=2-50", 10), Some((2, 9)));
        assert_eq!(byte_range("bytes=-3", 10), Some((7, 9)));
        assert_eq!(byte_range("bytes=10-", 10), None);
        assert_eq!(byte_range("bytes=5-2", 10), None);
        assert_eq!(byte_range("bytes=0-1,4-5", 10), None);
        assert_eq!(byte_range("items=0-1", 10), None);
    }

    #[test]
    fn paths_name_their_targets() {
        assert_eq!(target("/v2/"), Some(Target::Base));
        assert_eq!(target("/v2"), Some(Target::Base));
        assert_eq!(
            target("/v2/a/b/tags/list"),
            Some(Target::Tags("a/b".into()))
        );
        assert_eq!(
            target("/v2/a/b/manifests/v1"),
            Some(Target::Manifest("a/b".into(), "v1".into()))
        );
        assert_eq!(
            target("/v2/web/blobs/uploads/"),
            Some(Target::Upload("web".into(), None))
        );
        assert_eq!(
            target("/v2/web/blobs/uploads/abc"),
            Some(Target::Upload("web".into(), Some("abc".into())))
        );
        assert_eq!(
            target("/v2/web/blobs/sha256:00"),
            Some(Target::Blob("web".into(), "sha256:00".into()))
        );
        assert_eq!(target("/v2/web/other"), None);
        assert_eq!(target("/v3/web"), None);
    }
}
