//! The guard in front of every API dispatcher and the console: checks the Host a request
//! is addressed to (DNS rebinding), reads the body within a size and time limit, verifies
//! its SigV4 signature when `serve` has access keys, and caps the requests in progress.
//! It wraps the whole router as one layer, so no route can be reached around it.

use super::auth::{Keys, verify};
use super::aws_error;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::Semaphore;

/// The body bound of ECR's UploadLayerPart: 20 MiB as base64, and the JSON around it.
const LAYER_PART_BODY: usize = 20 * 1024 * 1024 / 3 * 4 + 64 * 1024;

/// The bounds of the API (docs/security.md says why each value).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request body. ECS's largest request is RegisterTaskDefinition, whose task
    /// definition may be at most 64 KiB of compact JSON (Ref: ECS service quotas, "Task
    /// definition size", 64 KiB, not adjustable; src/taskdef/validate.rs); four times that
    /// leaves room for indentation and tags, so no request ECS accepts is refused here.
    pub max_body: usize,
    /// Time to receive a request's headers; also how long an idle keep-alive connection
    /// stays open (hyper's header read timeout runs while waiting for the next request).
    pub header_timeout: Duration,
    /// Time to receive a request's body once its headers are in.
    pub body_timeout: Duration,
    /// TLS handshake deadline.
    pub handshake_timeout: Duration,
    /// Open connections; further clients wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Requests past the guard and in a dispatcher at once; more are answered
    /// ThrottlingException (which the AWS CLI and SDKs retry with backoff).
    pub max_in_flight: usize,
    /// Largest request head (request line + headers), hyper's read buffer.
    pub max_head: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body: 256 * 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            max_connections: 256,
            max_in_flight: 32,
            max_head: 64 * 1024,
        }
    }
}

/// The Host header values the server answers (docs/security.md, "DNS rebinding"). A web
/// page whose own name is re-pointed at 127.0.0.1 makes the visitor's browser send
/// same-origin requests to this server with `Host: <that name>`; a request addressed to
/// an IP address or `localhost` cannot come from such a page.
#[derive(Debug, Clone, Default)]
pub struct Hosts {
    /// Check the Host at all: on a loopback listener (the rebinding target), and on any
    /// listener without authentication.
    pub enforce: bool,
    /// Names allowed besides IP literals and `localhost` (`serve --allowed-host`),
    /// lowercase, without a port.
    pub allowed: Vec<String>,
}

impl Hosts {
    /// Whether a request with Host `host` (None: no Host header) is answered.
    pub fn admits(&self, host: Option<&str>) -> bool {
        if !self.enforce {
            return true;
        }
        let Some(host) = host else { return false };
        let name = match host.strip_prefix('[') {
            Some(rest) => {
                return rest
                    .split(']')
                    .next()
                    .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok());
            }
            None => host.rsplit_once(':').map_or(host, |(n, _)| n),
        };
        name.eq_ignore_ascii_case("localhost")
            || name.parse::<std::net::Ipv4Addr>().is_ok()
            || self.allowed.iter().any(|a| a.eq_ignore_ascii_case(name))
    }
}

/// The guard's state: the accepted keys (None: authentication off), the Host rule and the
/// request cap.
pub struct Guard {
    keys: Option<Keys>,
    hosts: Hosts,
    limits: Limits,
    in_flight: Arc<Semaphore>,
}

impl Guard {
    /// A guard that answers any Host; see [`Guard::with_hosts`].
    pub fn new(keys: Option<Keys>, limits: Limits) -> Guard {
        Guard {
            keys,
            hosts: Hosts::default(),
            limits,
            in_flight: Arc::new(Semaphore::new(limits.max_in_flight)),
        }
    }

    pub fn with_hosts(mut self, hosts: Hosts) -> Guard {
        self.hosts = hosts;
        self
    }
}

/// The middleware: Host → body within limits → signature → a slot among the requests in
/// flight. An RPC v2 CBOR caller gets the guard's refusals in CBOR.
pub async fn guard(state: State<Arc<Guard>>, req: Request, next: Next) -> Response {
    let cbor = super::cloudwatch::is_cbor(req.headers());
    let resp = checked(state, req, next).await;
    let refused = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"application/x-amz-json"));
    if cbor && refused && !resp.status().is_success() {
        return super::cloudwatch::cbor_error(resp).await;
    }
    resp
}

async fn checked(State(g): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let host_ok = || {
        g.hosts.admits(
            parts
                .headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok()),
        )
    };
    if super::registry::is_registry(&parts) && (g.keys.is_some() || host_ok()) {
        // The registry's routes stream blobs of any size and check ECR's token themselves
        // (api::registry); in flight they count against the connection cap only. The Host
        // is not checked with authentication on: clients address
        // the registry by its ECR name, and a rebinding page cannot know a token.
        return next.run(Request::from_parts(parts, body)).await;
    }
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok());
    if !g.hosts.admits(host) {
        tracing::warn!(
            host,
            path = parts.uri.path(),
            "API request refused: addressed to a host name"
        );
        // Ref: RFC 9110 15.5.20, 421 Misdirected Request: "the request was directed at a
        // server that is unable or unwilling to produce an authoritative response for the
        // target URI". AccessDeniedException is ECS's common error for a refused caller
        // (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/CommonErrors.html).
        return aws_error(
            StatusCode::MISDIRECTED_REQUEST,
            "AccessDeniedException",
            &format!(
                "Host {:?}: this server answers requests addressed to an IP address or \
                 localhost only (a host name pointed at this address is how a DNS-rebinding \
                 web page reaches it); use the address, or allow the name with \
                 `serve --allowed-host NAME` (docs/security.md)",
                host.unwrap_or_default()
            ),
        );
    }
    // ECR's UploadLayerPart carries a part of up to 20 MiB (the model's LayerPartBlob),
    // base64 in JSON: its own bound.
    let max = match parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
    {
        Some("AmazonEC2ContainerRegistry_V20150921.UploadLayerPart") => LAYER_PART_BODY,
        _ => g.limits.max_body,
    };
    let too_large = || {
        aws_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "ClientException",
            &format!(
                "The request body is over {max} bytes, this server's limit (ECS's largest \
                 request, RegisterTaskDefinition, carries a task definition of at most 64 KiB)."
            ),
        )
    };
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        tracing::warn!(
            bytes = declared,
            limit = max,
            "API request refused: body too large"
        );
        return too_large();
    }
    let bytes =
        match tokio::time::timeout(g.limits.body_timeout, axum::body::to_bytes(body, max)).await {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                // A length limit or a broken connection; either way nothing to dispatch.
                tracing::warn!(error = %e, "API request refused: body unreadable or too large");
                return too_large();
            }
            Err(_) => {
                tracing::warn!(
                    secs = g.limits.body_timeout.as_secs(),
                    "API request refused: body not received in time"
                );
                return aws_error(
                    StatusCode::REQUEST_TIMEOUT,
                    "ClientException",
                    &format!(
                        "The request body was not received within {} seconds.",
                        g.limits.body_timeout.as_secs()
                    ),
                );
            }
        };
    if let Some(keys) = &g.keys
        && super::console::is_console(&parts)
    {
        // The web console signs in with HTTP Basic (docs/console.md).
        if let Some(refused) = super::console::sign_in(keys, &parts) {
            return refused;
        }
    } else if let Some(keys) = &g.keys
        && let Err(e) = verify(keys, &parts, &bytes, SystemTime::now())
    {
        tracing::warn!(error = e.name(), reason = %e, "API request refused: authentication");
        return aws_error(StatusCode::BAD_REQUEST, e.name(), &e.to_string());
    }
    // Ref: ThrottlingException, HTTP 400, "The request was denied due to request
    // throttling." (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/CommonErrors.html)
    let Ok(_slot) = g.in_flight.clone().try_acquire_owned() else {
        tracing::warn!(
            limit = g.limits.max_in_flight,
            "API request refused: too many in flight"
        );
        return aws_error(
            StatusCode::BAD_REQUEST,
            "ThrottlingException",
            "The request was denied due to request throttling.",
        );
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

#[cfg(test)]
mod tests {
    use super::Hosts;

    #[test]
    fn hosts_literal_addresses_localhost_and_allowed_names() {
        let h = Hosts {
            enforce: true,
            allowed: vec!["ecs.lab".into()],
        };
        for ok in [
            "127.0.0.1:8080",
            "127.0.0.1",
            "[::1]:8080",
            "[::1]",
            "localhost:8080",
            "LOCALHOST",
            "10.0.0.5:80",
            "ecs.lab:8080",
            "ECS.lab",
        ] {
            assert!(h.admits(Some(ok)), "{ok}");
        }
        for bad in [
            "rebound.example:8080",
            "rebound.example",
            "127.0.0.1.nip.io:8080",
            "localhost.evil:8080",
            "[not-an-ip]:80",
            "",
        ] {
            assert!(!h.admits(Some(bad)), "{bad}");
        }
        assert!(!h.admits(None));
        assert!(Hosts::default().admits(Some("anything")));
    }
}
