//! `minifargate serve`: the ECS API (AWS JSON 1.1) over HTTP, for the AWS CLI and SDKs.
//! Every operation calls the ECS core (`crate::ecs`), as the CLI verb of the same name
//! does, over the same store, so tasks started either way are visible both ways; `serve`
//! also runs the service scheduler (`crate::scheduler`). Every request first passes the
//! guard (`guard`: body limits, SigV4 verification in `auth`, a request cap), over the
//! connection loop of `server` (timeouts, TLS).

pub mod auth;
pub mod ecs;
#[cfg(test)]
mod fuzz;
pub mod guard;
pub mod logs;
pub mod operations;
pub mod server;

use crate::ecs::Ecs;
use anyhow::Context;
use axum::Router;
use axum::routing::post;
use std::net::SocketAddr;
use std::sync::Arc;

/// How `serve` protects the API: the access keys it accepts (None: any request, the
/// loopback-only mode), TLS, and the bounds.
#[derive(Default)]
pub struct Security {
    pub keys: Option<auth::Keys>,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub limits: guard::Limits,
}

/// Serves the ECS API on `listen` until Ctrl-C or SIGTERM; `listening` is told the bound
/// address (port 0 picks one) once requests are accepted.
pub async fn serve(
    g: Ecs,
    listen: SocketAddr,
    security: Security,
    listening: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    // Each call opens the store as the CLI verbs do. This connection stays open for the
    // server's lifetime so that closing theirs is never closing the last one, which
    // would checkpoint the WAL and fsync on every request (16 ms a call here, see
    // docs/serve.md); SQLite checkpoints by itself as the WAL grows.
    let _keep_open = g.open_store()?;
    let scheduler = crate::scheduler::Scheduler::start(g.clone())
        .context("failed to start the service scheduler")?;
    let app = Router::new()
        .route("/", post(dispatch))
        .with_state(Arc::new(g));
    // Last, so that it wraps every route and the fallback.
    let app = app.layer(axum::middleware::from_fn_with_state(
        Arc::new(guard::Guard::new(security.keys, security.limits)),
        guard::guard,
    ));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("failed to listen on {listen}"))?;
    let addr = listener.local_addr().unwrap_or(listen);
    listening(addr);
    tracing::info!(%addr, "ECS API listening");
    server::run(listener, security.tls, app, security.limits, shutdown()).await;
    // Services' tasks keep running (they belong to their supervisors); the next `serve`
    // picks the services up from the store.
    tokio::task::spawn_blocking(move || scheduler.stop())
        .await
        .context("failed to stop the service scheduler")?;
    Ok(())
}

/// `POST /`: by `X-Amz-Target`, a CloudWatch Logs call (`Logs_20140328.`) or an ECS one.
async fn dispatch(
    state: axum::extract::State<Arc<Ecs>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    let logs_op = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.strip_prefix(logs::TARGET_PREFIX))
        .map(str::to_string);
    match logs_op {
        Some(op) => logs::handle(state.0, op, body).await,
        None => ecs::handle(state, headers, body).await,
    }
}

async fn shutdown() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
}
