//! `minifargate serve`: the ECS API (AWS JSON 1.1) over HTTP, for the AWS CLI and SDKs.
//! Every operation calls the same functions as the CLI verb of the same name (in
//! `crate::cli`), over the same store, so tasks started either way are visible both ways;
//! services and their scheduler live here (`services`, `scheduler`).

pub mod ecs;
pub mod error;
pub mod scheduler;
pub mod services;

use crate::cli::GlobalOpts;
use anyhow::Context;
use axum::Router;
use axum::routing::post;
use std::net::SocketAddr;
use std::sync::Arc;

/// Serves the ECS API on `listen` until Ctrl-C or SIGTERM.
pub async fn serve(g: GlobalOpts, listen: SocketAddr) -> anyhow::Result<()> {
    // Each call opens the store as the CLI verbs do. This connection stays open for the
    // server's lifetime so that closing theirs is never closing the last one, which
    // would checkpoint the WAL and fsync on every request (16 ms a call here, see
    // docs/serve.md); SQLite checkpoints by itself as the WAL grows.
    let _keep_open = crate::store::Store::open(&g.root)
        .with_context(|| format!("cannot use the state store under {}", g.root.display()))?;
    let scheduler =
        scheduler::Scheduler::start(g.clone()).context("failed to start the service scheduler")?;
    let app = Router::new()
        .route("/", post(ecs::handle))
        .with_state(Arc::new(g));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("failed to listen on {listen}"))?;
    let addr = listener.local_addr().unwrap_or(listen);
    // The address on stdout, for scripts that pass port 0.
    println!("minifargate: ECS API listening on http://{addr}");
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
