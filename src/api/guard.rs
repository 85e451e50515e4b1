//! The guard in front of every API dispatcher (ECS today, any other `X-Amz-Target` family
//! added to the router later): reads the body within a size and time limit, verifies its
//! SigV4 signature when `serve` has access keys, and caps the requests in progress.
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

/// The guard's state: the accepted keys (None: authentication off) and the request cap.
pub struct Guard {
    keys: Option<Keys>,
    limits: Limits,
    in_flight: Arc<Semaphore>,
}

impl Guard {
    pub fn new(keys: Option<Keys>, limits: Limits) -> Guard {
        Guard {
            keys,
            limits,
            in_flight: Arc::new(Semaphore::new(limits.max_in_flight)),
        }
    }
}

/// The middleware: body within limits → signature → a slot among the requests in flight.
pub async fn guard(State(g): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let max = g.limits.max_body;
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
