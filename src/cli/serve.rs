//! `serve`: the ECS API over HTTP (see crate::api and docs/serve.md).

use super::GlobalOpts;
use anyhow::Context;
use clap::Args;
use std::net::SocketAddr;
use std::process::ExitCode;

/// Serve the ECS API (AWS JSON 1.1) for the AWS CLI and SDKs:
/// `aws ecs --endpoint-url http://127.0.0.1:8080 list-tasks`.
///
/// Requests are not authenticated (SigV4 signatures are accepted unchecked): keep it on
/// loopback.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address and port to listen on (port 0 picks a free one; the address is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
}

pub fn serve(g: &GlobalOpts, a: ServeArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    // The address on stdout, for scripts that pass port 0.
    let listening = |addr| println!("minifargate: ECS API listening on http://{addr}");
    rt.block_on(crate::api::serve(g.ecs(), a.listen, listening))?;
    Ok(ExitCode::SUCCESS)
}
