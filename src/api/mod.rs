//! `minifargate serve`: the ECS API (AWS JSON 1.1) over HTTP, for the AWS CLI and SDKs.
//! Every operation calls the ECS core (`crate::ecs`), as the CLI verb of the same name
//! does, over the same store, so tasks started either way are visible both ways; `serve`
//! also runs the service scheduler (`crate::scheduler`).

pub mod ecs;
pub mod logs;

use crate::ecs::Ecs;
use anyhow::Context;
use axum::Router;
use axum::routing::post;
use std::net::SocketAddr;
use std::sync::Arc;

/// Serves the ECS API on `listen` until Ctrl-C or SIGTERM; `listening` is told the bound
/// address (port 0 picks one) once requests are accepted.
pub async fn serve(
    g: Ecs,
    listen: SocketAddr,
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
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("failed to listen on {listen}"))?;
    let addr = listener.local_addr().unwrap_or(listen);
    listening(addr);
    tracing::info!(%addr, "ECS API listening");
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown())
        .await
        .context("the HTTP server failed");
    // Services' tasks keep running (they belong to their supervisors); the next `serve`
    // picks the services up from the store.
    tokio::task::spawn_blocking(move || scheduler.stop())
        .await
        .context("failed to stop the service scheduler")?;
    served
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
