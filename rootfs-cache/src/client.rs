//! HTTP client for the OCI distribution API: manifests and blobs, with auth, retries
//! with backoff on 429/5xx (`Retry-After`), and blob downloads that resume with `Range`.
//! Ref: OCI distribution-spec v1.1 "Pull"; RFC 9110 §10.2.3 (Retry-After), §14 (Range).

use crate::auth::{AuthError, Authenticator, Overrides};
use crate::config::Endpoint;
use crate::digest::Digest;
use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, RANGE, RETRY_AFTER, WWW_AUTHENTICATE};
use std::collections::HashMap;
use std::io;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::mpsc;

/// Manifest media types we ask for, most preferred first.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.v1+prettyjws;q=0.5";

/// Manifests, indexes and configs above this size are refused (hostile registries).
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;
pub const MAX_CONFIG_BYTES: u64 = 8 << 20;

pub use crate::config::RetryPolicy;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("failed to reach registry {host}")]
    Connect {
        host: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{what} not found in {host}/{repository}{detail}")]
    NotFound {
        what: String,
        host: String,
        repository: String,
        detail: String,
    },
    #[error("registry {host} answered {status} for {url}{detail}")]
    Status {
        host: String,
        url: String,
        status: StatusCode,
        detail: String,
    },
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("{what} from {host} is larger than {limit} bytes; refusing it")]
    TooLarge {
        what: String,
        host: String,
        limit: u64,
    },
    #[error("failed to download {what} from {host} after {attempts} attempts")]
    Body {
        what: String,
        host: String,
        attempts: u32,
        #[source]
        source: reqwest::Error,
    },
    #[error("blob {digest} from {host} is longer than the {expected} bytes its descriptor says")]
    Oversized {
        digest: Digest,
        host: String,
        expected: u64,
    },
    #[error("failed to build the HTTP client")]
    Build(#[source] reqwest::Error),
}

impl RegistryError {
    /// Whether the registry, or its token service, could not be reached at all: no
    /// connection (refused, no route, no such name, TLS failed), no answer in time, or
    /// 502/503/504 after the retries. A registry that answered 401, 403 or 404 was reached.
    pub fn is_unreachable(&self) -> bool {
        match self {
            RegistryError::Connect { .. } => true,
            RegistryError::Status { status, .. } => matches!(status.as_u16(), 502..=504),
            RegistryError::Auth(a) => a.is_unreachable(),
            _ => false,
        }
    }
}

/// A manifest as fetched: raw bytes (digests are over these) and the server's type.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    pub bytes: Vec<u8>,
    pub content_type: Option<String>,
}

pub struct RegistryClient {
    /// Verified TLS, built on first use: loading the system trust store costs ~15 ms per
    /// client, which a check of an `insecure` registry (plain HTTP on loopback, say) never
    /// needs.
    secure: std::sync::OnceLock<reqwest::Client>,
    /// Unverified TLS (`insecure` registries), built on first use; it loads no trust store.
    insecure: std::sync::OnceLock<reqwest::Client>,
    auth: Authenticator,
    /// Hosts found to speak plain HTTP (loopback or insecure registries only).
    plain_http: Mutex<HashMap<String, bool>>,
    retry: RetryPolicy,
    /// The CA each of some hosts is verified with ([`Overrides::roots`]), and the client
    /// built with it alone (on first use).
    roots: HashMap<String, Vec<u8>>,
    pinned: Mutex<HashMap<String, reqwest::Client>>,
}

fn is_loopback_host(host: &str) -> bool {
    let h = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        host.rsplit_once(':').map_or(host, |(h, p)| {
            if p.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                host
            }
        })
    };
    h == "localhost"
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The `errors` array of a distribution error body, as "CODE: message" text.
pub(crate) fn error_detail(body: &str) -> String {
    #[derive(serde::Deserialize)]
    struct Body {
        errors: Vec<Item>,
    }
    #[derive(serde::Deserialize)]
    struct Item {
        code: Option<String>,
        message: Option<String>,
    }
    match serde_json::from_str::<Body>(body) {
        Ok(b) if !b.errors.is_empty() => {
            let items: Vec<String> = b
                .errors
                .iter()
                .map(|e| {
                    format!(
                        "{}: {}",
                        e.code.as_deref().unwrap_or("?"),
                        e.message.as_deref().unwrap_or("")
                    )
                })
                .collect();
            format!(" ({})", items.join("; "))
        }
        _ => {
            let t = body.trim();
            if t.is_empty() || t.len() > 200 {
                String::new()
            } else {
                format!(" ({t})")
            }
        }
    }
}

fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    let v = resp.headers().get(RETRY_AFTER)?.to_str().ok()?;
    if let Ok(secs) = v.trim().parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate_parse(v)?;
    when.duration_since(std::time::SystemTime::now()).ok()
}

fn httpdate_parse(v: &str) -> Option<std::time::SystemTime> {
    chrono::DateTime::parse_from_rfc2822(v.trim())
        .ok()
        .map(std::time::SystemTime::from)
}

/// HTTP(S)_PROXY / ALL_PROXY / NO_PROXY from the environment, like reqwest's default,
/// except that loopback is never proxied (as Go's ProxyFromEnvironment, so Docker and
/// podman, behave): a local registry keeps working behind a corporate proxy.
pub(crate) fn with_env_proxies(b: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
    let env = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| std::env::var(k).ok())
            .filter(|v| !v.trim().is_empty())
    };
    let mut no_proxy = env(&["NO_PROXY", "no_proxy"]).unwrap_or_default();
    no_proxy.push_str(",localhost,127.0.0.0/8,::1");
    let no_proxy = reqwest::NoProxy::from_string(&no_proxy);
    let mut b = b.no_proxy();
    let all = env(&["ALL_PROXY", "all_proxy"]);
    type MakeProxy = fn(&str) -> reqwest::Result<reqwest::Proxy>;
    let choices: [(MakeProxy, Option<String>); 2] = [
        (
            |u| reqwest::Proxy::http(u),
            env(&["HTTP_PROXY", "http_proxy"]).or(all.clone()),
        ),
        (
            |u| reqwest::Proxy::https(u),
            env(&["HTTPS_PROXY", "https_proxy"]).or(all),
        ),
    ];
    for (make, url) in choices {
        let Some(url) = url else { continue };
        match make(&url) {
            Ok(p) => b = b.proxy(p.no_proxy(no_proxy.clone())),
            Err(e) => {
                tracing::warn!(proxy = %url, error = %e, "ignoring an unusable proxy setting")
            }
        }
    }
    b
}

impl RegistryClient {
    pub fn new(retry: RetryPolicy) -> Result<Self, RegistryError> {
        Self::with_overrides(retry, Overrides::default())
    }

    /// A client that authenticates with `overrides` before the host's credentials (a
    /// task's execution role and `repositoryCredentials`).
    pub fn with_overrides(
        retry: RetryPolicy,
        mut overrides: Overrides,
    ) -> Result<Self, RegistryError> {
        let roots = std::mem::take(&mut overrides.roots);
        Ok(RegistryClient {
            secure: std::sync::OnceLock::new(),
            insecure: std::sync::OnceLock::new(),
            auth: Authenticator::with_overrides(overrides),
            plain_http: Mutex::new(HashMap::new()),
            retry,
            roots,
            pinned: Mutex::new(HashMap::new()),
        })
    }

    /// Keeps registry tokens in `dir` from one process to the next ([`crate::kept_tokens`]).
    pub fn keep_tokens_in(mut self, dir: std::path::PathBuf) -> Self {
        self.auth.keep_tokens_in(dir);
        self
    }

    fn build(insecure: bool, read_timeout: Duration) -> Result<reqwest::Client, RegistryError> {
        with_env_proxies(reqwest::Client::builder())
            .user_agent(concat!("minifargate/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(15))
            .read_timeout(read_timeout)
            .danger_accept_invalid_certs(insecure)
            // Real ECR redirects blob GETs to pre-signed S3 URLs; reqwest drops
            // the Authorization header when a redirect changes host.
            .redirect(reqwest::redirect::Policy::limited(10))
            // Unverified TLS needs no trust store.
            .tls_built_in_root_certs(!insecure)
            .build()
            .map_err(RegistryError::Build)
    }

    /// A client that verifies TLS with `ca` (PEM) alone.
    fn build_pinned(ca: &[u8], read_timeout: Duration) -> Result<reqwest::Client, RegistryError> {
        let cert = reqwest::Certificate::from_pem(ca).map_err(RegistryError::Build)?;
        with_env_proxies(reqwest::Client::builder())
            .user_agent(concat!("minifargate/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(15))
            .read_timeout(read_timeout)
            .redirect(reqwest::redirect::Policy::limited(10))
            .tls_built_in_root_certs(false)
            .add_root_certificate(cert)
            .build()
            .map_err(RegistryError::Build)
    }

    /// The HTTP client for `ep`: unverified TLS for an `insecure` registry, TLS verified
    /// with the host's own CA when one is given ([`Overrides::roots`]), else verified TLS
    /// with the system trust store. Each is built the first time it is needed.
    fn http_for(&self, ep: &Endpoint) -> Result<reqwest::Client, RegistryError> {
        if !ep.insecure
            && let Some(ca) = self.roots.get(&ep.host)
        {
            let mut pinned = self.pinned.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(c) = pinned.get(&ep.host) {
                return Ok(c.clone());
            }
            let c = Self::build_pinned(ca, self.retry.read_timeout)?;
            pinned.insert(ep.host.clone(), c.clone());
            return Ok(c);
        }
        let (cell, insecure) = if ep.insecure {
            (&self.insecure, true)
        } else {
            (&self.secure, false)
        };
        if let Some(c) = cell.get() {
            return Ok(c.clone());
        }
        let built = Self::build(insecure, self.retry.read_timeout)?;
        // Another request of this client may have built one meanwhile; either will do.
        Ok(cell.get_or_init(|| built).clone())
    }

    fn may_use_plain_http(ep: &Endpoint) -> bool {
        ep.insecure || is_loopback_host(&ep.host)
    }

    /// Sends GET `/v2/<repo><path>` with auth, retrying connection errors, 429 and 5xx.
    async fn get(
        &self,
        ep: &Endpoint,
        path: &str,
        accept: Option<&str>,
        range_from: u64,
    ) -> Result<reqwest::Response, RegistryError> {
        self.send(
            reqwest::Method::GET,
            ep,
            path,
            accept,
            range_from,
            self.retry.attempts,
        )
        .await
    }

    /// Sends `method` `/v2/<repo><path>` with auth; connection errors, 429 and 5xx are
    /// tried up to `attempts` times in all.
    async fn send(
        &self,
        method: reqwest::Method,
        ep: &Endpoint,
        path: &str,
        accept: Option<&str>,
        range_from: u64,
        attempts: u32,
    ) -> Result<reqwest::Response, RegistryError> {
        let attempts = attempts.max(1);
        let scope = format!("repository:{}:pull", ep.repository);
        self.auth.prime(&ep.host).await?;
        if self.auth.header_for(&ep.host, &scope).is_none() {
            self.auth.prime_kept_bearer(&ep.host, &scope).await;
        }
        let mut answered_challenge = false;
        let mut renewed_kept = false;
        let mut attempt = 0u32;
        loop {
            let plain = *self
                .plain_http
                .lock()
                .expect("scheme lock")
                .get(&ep.host)
                .unwrap_or(&false);
            let scheme = if plain { "http" } else { "https" };
            let url = format!("{scheme}://{}/v2/{}{}", ep.host, ep.repository, path);
            let mut req = self.http_for(ep)?.request(method.clone(), &url);
            if let Some(a) = accept {
                req = req.header(ACCEPT, a);
            }
            if range_from > 0 {
                req = req.header(RANGE, format!("bytes={range_from}-"));
            }
            if let Some(h) = self.auth.header_for(&ep.host, &scope) {
                req = req.header(AUTHORIZATION, h);
            }
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    if !plain && e.is_connect() && Self::may_use_plain_http(ep) {
                        // Like Docker for localhost and insecure registries: HTTPS first,
                        // then plain HTTP.
                        tracing::debug!(host = %ep.host, error = %e, "HTTPS failed; trying plain HTTP");
                        self.plain_http
                            .lock()
                            .expect("scheme lock")
                            .insert(ep.host.clone(), true);
                        continue;
                    }
                    attempt += 1;
                    if attempt >= attempts {
                        return Err(RegistryError::Connect {
                            host: ep.host.clone(),
                            source: e,
                        });
                    }
                    let wait = self.retry.backoff(attempt);
                    tracing::warn!(host = %ep.host, error = %e, attempt, wait_ms = wait.as_millis() as u64,
                        "registry request failed; retrying");
                    tokio::time::sleep(wait).await;
                    continue;
                }
            };
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED {
                if answered_challenge {
                    let source_name = self.auth.source_of(&ep.host);
                    // An ECR token kept from an earlier process that the registry refuses
                    // is thrown away and asked of ECR anew, once.
                    if self.auth.forget(&ep.host) && !renewed_kept {
                        tracing::info!(host = %ep.host, "the registry refused the kept ECR token; asking ECR for a new one");
                        renewed_kept = true;
                        answered_challenge = false;
                        self.auth.prime(&ep.host).await?;
                        continue;
                    }
                    return Err(AuthError::Rejected {
                        host: ep.host.clone(),
                        source_name,
                    }
                    .into());
                }
                let www = resp
                    .headers()
                    .get(WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("Basic realm=\"registry\"")
                    .to_string();
                self.auth
                    .answer_challenge(&self.http_for(ep)?, &ep.host, &www, &scope)
                    .await?;
                answered_challenge = true;
                continue;
            }
            let retriable = status == StatusCode::TOO_MANY_REQUESTS
                || matches!(status.as_u16(), 500 | 502 | 503 | 504);
            if retriable && attempt + 1 < attempts {
                attempt += 1;
                let wait = retry_after(&resp)
                    .map(|d| d.min(Duration::from_secs(60)))
                    .unwrap_or_else(|| self.retry.backoff(attempt));
                tracing::warn!(host = %ep.host, %status, attempt, wait_ms = wait.as_millis() as u64,
                    "registry is busy or failing; retrying");
                tokio::time::sleep(wait).await;
                continue;
            }
            return Ok(resp);
        }
    }

    async fn fail(ep: &Endpoint, what: String, resp: reqwest::Response) -> RegistryError {
        let status = resp.status();
        let url = resp.url().to_string();
        let body = resp.text().await.unwrap_or_default();
        let detail = error_detail(&body);
        if status == StatusCode::NOT_FOUND {
            return RegistryError::NotFound {
                what,
                host: ep.host.clone(),
                repository: ep.repository.clone(),
                detail,
            };
        }
        RegistryError::Status {
            host: ep.host.clone(),
            url,
            status,
            detail,
        }
    }

    async fn read_limited(
        ep: &Endpoint,
        what: &str,
        resp: reqwest::Response,
        limit: u64,
    ) -> Result<Vec<u8>, RegistryError> {
        if resp.content_length().is_some_and(|n| n > limit) {
            return Err(RegistryError::TooLarge {
                what: what.to_string(),
                host: ep.host.clone(),
                limit,
            });
        }
        let mut out = Vec::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|source| RegistryError::Body {
                what: what.to_string(),
                host: ep.host.clone(),
                attempts: 1,
                source,
            })?;
            if out.len() as u64 + chunk.len() as u64 > limit {
                return Err(RegistryError::TooLarge {
                    what: what.to_string(),
                    host: ep.host.clone(),
                    limit,
                });
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    /// GET a small document whole (manifest, index, config), fetching it again if the
    /// connection drops mid-body. Returns the bytes and the Content-Type.
    async fn get_small(
        &self,
        ep: &Endpoint,
        path: &str,
        accept: Option<&str>,
        what: String,
        limit: u64,
    ) -> Result<(Vec<u8>, Option<String>), RegistryError> {
        let mut attempt = 0u32;
        loop {
            let resp = self.get(ep, path, accept, 0).await?;
            if !resp.status().is_success() {
                return Err(Self::fail(ep, what, resp).await);
            }
            let content_type = resp
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(|s| s.split(';').next().unwrap_or(s).trim().to_string());
            match Self::read_limited(ep, &what, resp, limit).await {
                Ok(bytes) => return Ok((bytes, content_type)),
                Err(RegistryError::Body { source, .. }) if attempt + 1 < self.retry.attempts => {
                    attempt += 1;
                    tracing::warn!(host = %ep.host, what = %what, error = %source,
                        "download interrupted; fetching it again");
                    tokio::time::sleep(self.retry.backoff(attempt)).await;
                }
                Err(RegistryError::Body { source, .. }) => {
                    return Err(RegistryError::Body {
                        what,
                        host: ep.host.clone(),
                        attempts: attempt + 1,
                        source,
                    });
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// GET a manifest by tag or digest.
    pub async fn manifest(
        &self,
        ep: &Endpoint,
        reference: &str,
    ) -> Result<FetchedManifest, RegistryError> {
        let what = if reference.contains(':') {
            format!("manifest {reference}")
        } else {
            format!("tag {reference:?}")
        };
        let (bytes, content_type) = self
            .get_small(
                ep,
                &format!("/manifests/{reference}"),
                Some(MANIFEST_ACCEPT),
                what,
                MAX_MANIFEST_BYTES,
            )
            .await?;
        Ok(FetchedManifest {
            bytes,
            content_type,
        })
    }

    /// HEAD a manifest by tag or digest: the digest the registry names for it
    /// (`Docker-Content-Digest`), or `None` when it names none (the caller then GETs it).
    /// Connection errors, 429 and 5xx are tried `attempts` times in all.
    /// Ref: OCI distribution-spec v1.1 "Checking if content exists in the registry".
    pub async fn manifest_digest(
        &self,
        ep: &Endpoint,
        reference: &str,
        attempts: u32,
    ) -> Result<Option<Digest>, RegistryError> {
        let what = if reference.contains(':') {
            format!("manifest {reference}")
        } else {
            format!("tag {reference:?}")
        };
        let resp = self
            .send(
                reqwest::Method::HEAD,
                ep,
                &format!("/manifests/{reference}"),
                Some(MANIFEST_ACCEPT),
                0,
                attempts,
            )
            .await?;
        if !resp.status().is_success() {
            return Err(Self::fail(ep, what, resp).await);
        }
        Ok(resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok()))
    }

    /// GET a small blob (an image config) whole.
    pub async fn blob_bytes(
        &self,
        ep: &Endpoint,
        digest: &Digest,
        limit: u64,
    ) -> Result<Vec<u8>, RegistryError> {
        let what = format!("blob {digest}");
        let (bytes, _) = self
            .get_small(ep, &format!("/blobs/{digest}"), None, what, limit)
            .await?;
        Ok(bytes)
    }

    /// Streams blob `digest` of `size` bytes into `tx`, resuming with `Range` after a
    /// dropped or stalled connection. On failure an error is also sent into `tx`, so
    /// the reader never mistakes a cut stream for its end. Returns early (Ok) if the
    /// receiver goes away. `progress` is called with the bytes received so far.
    pub async fn blob_stream(
        &self,
        ep: &Endpoint,
        digest: &Digest,
        size: u64,
        tx: mpsc::Sender<io::Result<Bytes>>,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<(), RegistryError> {
        let res = self
            .blob_stream_inner(ep, digest, size, &tx, progress)
            .await;
        if let Err(e) = &res {
            let _ = tx.send(Err(io::Error::other(e.to_string()))).await;
        }
        res
    }

    async fn blob_stream_inner(
        &self,
        ep: &Endpoint,
        digest: &Digest,
        size: u64,
        tx: &mpsc::Sender<io::Result<Bytes>>,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<(), RegistryError> {
        let what = format!("blob {digest}");
        let mut offset = 0u64;
        let mut drops = 0u32;
        // For the debug log: when the first bytes came, and how long the unpacker, its
        // channel full, kept this download waiting.
        let t0 = std::time::Instant::now();
        let (mut chunks, mut full_us, mut first_us) = (0u64, 0u64, 0u64);
        'request: loop {
            let resp = self
                .get(ep, &format!("/blobs/{digest}"), None, offset)
                .await?;
            let status = resp.status();
            if !status.is_success() {
                return Err(Self::fail(ep, what, resp).await);
            }
            // A server that ignores Range sends the whole blob again: skip what we have.
            let mut skip = if status == StatusCode::PARTIAL_CONTENT {
                0
            } else {
                offset
            };
            let mut stream = resp.bytes_stream();
            while let Some(chunk) = stream.next().await {
                let mut chunk = match chunk {
                    Ok(c) => c,
                    Err(source) => {
                        drops += 1;
                        if drops >= self.retry.attempts {
                            return Err(RegistryError::Body {
                                what,
                                host: ep.host.clone(),
                                attempts: drops,
                                source,
                            });
                        }
                        let wait = self.retry.backoff(drops);
                        tracing::warn!(host = %ep.host, %digest, offset, error = %source,
                            "blob download interrupted; resuming with Range");
                        tokio::time::sleep(wait).await;
                        continue 'request;
                    }
                };
                if skip > 0 {
                    let n = skip.min(chunk.len() as u64);
                    skip -= n;
                    chunk = chunk.slice(n as usize..);
                    if chunk.is_empty() {
                        continue;
                    }
                }
                offset += chunk.len() as u64;
                if offset > size {
                    return Err(RegistryError::Oversized {
                        digest: digest.clone(),
                        host: ep.host.clone(),
                        expected: size,
                    });
                }
                chunks += 1;
                if first_us == 0 {
                    first_us = t0.elapsed().as_micros() as u64;
                }
                let permit = match tx.try_reserve() {
                    Ok(p) => Ok(p),
                    Err(mpsc::error::TrySendError::Full(())) => {
                        let t1 = std::time::Instant::now();
                        let p = tx.reserve().await;
                        full_us += t1.elapsed().as_micros() as u64;
                        p.map_err(|_| ())
                    }
                    Err(mpsc::error::TrySendError::Closed(())) => Err(()),
                };
                let Ok(permit) = permit else {
                    return Ok(());
                };
                permit.send(Ok(chunk));
                progress(offset);
            }
            if offset < size {
                // The body ended early without a transport error: resume as well.
                drops += 1;
                if drops >= self.retry.attempts {
                    return Err(RegistryError::Status {
                        host: ep.host.clone(),
                        url: format!("/v2/{}/blobs/{digest}", ep.repository),
                        status,
                        detail: format!(" (body ended at {offset} of {size} bytes)"),
                    });
                }
                tokio::time::sleep(self.retry.backoff(drops)).await;
                continue;
            }
            tracing::debug!(host = %ep.host, %digest, size, chunks,
                first_byte_ms = first_us / 1000, download_ms = t0.elapsed().as_millis() as u64,
                unpacker_full_ms = full_us / 1000, "blob downloaded");
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A registry that cannot be reached said nothing about access; one that answered did.
    #[test]
    fn unreachable_is_only_no_answer_or_unavailable() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // Nothing listens on a port just freed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let ep = Endpoint {
            host: format!("127.0.0.1:{port}"),
            repository: "x".into(),
            insecure: false,
            is_mirror: false,
        };
        let client = RegistryClient::new(RetryPolicy {
            base_delay: Duration::from_millis(1),
            ..Default::default()
        })
        .unwrap();
        let e = rt
            .block_on(client.manifest_digest(&ep, "latest", 2))
            .unwrap_err();
        assert!(matches!(e, RegistryError::Connect { .. }), "{e:?}");
        assert!(e.is_unreachable());

        let status = |code: u16| RegistryError::Status {
            host: "h".into(),
            url: "u".into(),
            status: StatusCode::from_u16(code).unwrap(),
            detail: String::new(),
        };
        for code in [502, 503, 504] {
            assert!(status(code).is_unreachable(), "{code}");
        }
        for code in [400, 401, 403, 429, 500] {
            assert!(!status(code).is_unreachable(), "{code}");
        }
        let not_found = RegistryError::NotFound {
            what: "tag".into(),
            host: "h".into(),
            repository: "r".into(),
            detail: String::new(),
        };
        assert!(!not_found.is_unreachable());
        let refused = RegistryError::Auth(AuthError::Rejected {
            host: "h".into(),
            source_name: "s".into(),
        });
        assert!(!refused.is_unreachable());
        let ecr_down = RegistryError::Auth(AuthError::EcrUnreachable {
            host: "h".into(),
            region: "r".into(),
            detail: "dispatch failure".into(),
        });
        assert!(ecr_down.is_unreachable());
    }

    /// A check of an `insecure` registry (plain HTTP on loopback here, as a local registry
    /// is) builds no verified-TLS client: the system trust store is not loaded for it.
    #[test]
    fn an_insecure_registry_needs_no_trust_store() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let digest = format!("sha256:{}", "a".repeat(64));
        let answer = digest.clone();
        let server = std::thread::spawn(move || {
            // The HTTPS attempt first (its ClientHello is dropped), then plain HTTP.
            for conn in listener.incoming().take(2) {
                let mut conn = conn.unwrap();
                let mut buf = [0u8; 4096];
                let n = conn.read(&mut buf).unwrap_or(0);
                if n == 0 || buf[0] == 0x16 {
                    continue;
                }
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                assert!(head.starts_with("HEAD /v2/x/manifests/latest "), "{head}");
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nDocker-Content-Digest: {answer}\r\n\
                     Content-Length: 0\r\nConnection: close\r\n\r\n"
                );
                conn.write_all(reply.as_bytes()).unwrap();
            }
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let ep = Endpoint {
            host: format!("127.0.0.1:{port}"),
            repository: "x".into(),
            insecure: true,
            is_mirror: false,
        };
        let client = RegistryClient::new(RetryPolicy::default()).unwrap();
        let got = rt
            .block_on(client.manifest_digest(&ep, "latest", 1))
            .unwrap();
        server.join().unwrap();
        assert_eq!(got.map(|d| d.to_string()), Some(digest));
        assert!(client.insecure.get().is_some());
        assert!(
            client.secure.get().is_none(),
            "the verified-TLS client (system trust store) was built for an insecure registry"
        );
    }

    #[test]
    fn loopback_detection() {
        assert!(is_loopback_host("127.0.0.1:5000"));
        assert!(is_loopback_host("localhost:5000"));
        assert!(is_loopback_host("localhost"));
        assert!(is_loopback_host("[::1]:5000"));
        assert!(is_loopback_host("127.1.2.3"));
        assert!(!is_loopback_host("10.0.0.1:5000"));
        assert!(!is_loopback_host("registry.local:5000"));
        assert!(!is_loopback_host("public.ecr.aws"));
    }

    #[test]
    fn error_bodies_are_summarised() {
        let d = error_detail(
            r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}"#,
        );
        assert_eq!(d, " (MANIFEST_UNKNOWN: manifest unknown)");
        assert_eq!(error_detail(""), "");
    }

    #[test]
    fn backoff_grows_and_caps() {
        let p = RetryPolicy::default();
        assert!(p.backoff(1) < p.backoff(2));
        assert_eq!(p.backoff(30), p.max_delay);
    }
}
