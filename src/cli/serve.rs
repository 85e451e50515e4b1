//! `serve`: the ECS API over HTTP (see crate::api, docs/serve.md and docs/security.md).

use super::GlobalOpts;
use crate::api::auth::Keys;
use anyhow::Context;
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// Serve the ECS API (AWS JSON 1.1) for the AWS CLI and SDKs:
/// `aws ecs --endpoint-url http://127.0.0.1:8080 list-tasks`.
///
/// With access keys (`--credentials-file`, or MINIFARGATE_API_ACCESS_KEY_ID and
/// MINIFARGATE_API_SECRET_ACCESS_KEY), every request's SigV4 signature is verified. Without
/// any, requests are not authenticated, which is allowed on a loopback address only
/// (or with --insecure-no-auth).
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address and port to listen on (port 0 picks a free one; the address is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// File of access keys the API accepts: one `ACCESS_KEY_ID SECRET_ACCESS_KEY` pair a
    /// line, `#` comments; it must not be readable by group or others (chmod 600).
    #[arg(long, env = "MINIFARGATE_API_CREDENTIALS_FILE", value_name = "FILE")]
    pub credentials_file: Option<PathBuf>,

    /// Serve HTTPS with this PEM certificate chain (with --tls-key).
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Accept unauthenticated requests on a non-loopback address: anyone who can reach it
    /// can run privileged tasks, i.e. is root on this host.
    #[arg(long)]
    pub insecure_no_auth: bool,

    /// The web console at `/` shows but does not act: no run, stop or scale (the ECS API
    /// itself is unaffected). On by default on a non-loopback address; `--read-only=false`
    /// turns the actions on there.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub read_only: Option<bool>,
}

pub fn serve(g: &GlobalOpts, a: ServeArgs) -> anyhow::Result<ExitCode> {
    let mut keys = Keys::from_env_pair(
        std::env::var("MINIFARGATE_API_ACCESS_KEY_ID").ok(),
        std::env::var("MINIFARGATE_API_SECRET_ACCESS_KEY").ok(),
    )?;
    if let Some(file) = &a.credentials_file {
        let from_file = Keys::load_file(file)?;
        anyhow::ensure!(
            !from_file.is_empty(),
            "the credentials file {} lists no access key (one `ACCESS_KEY_ID SECRET_ACCESS_KEY` a line)",
            file.display()
        );
        keys.extend(from_file);
    }
    let loopback = a.listen.ip().is_loopback();
    if keys.is_empty() && !loopback && !a.insecure_no_auth {
        anyhow::bail!(
            "refusing to serve the API on {} without authentication: anyone who can reach it \
             could run privileged tasks (root on this host). Give access keys \
             (--credentials-file FILE, or MINIFARGATE_API_ACCESS_KEY_ID and \
             MINIFARGATE_API_SECRET_ACCESS_KEY), listen on 127.0.0.1, or pass \
             --insecure-no-auth if something in front authenticates",
            a.listen
        );
    }
    let tls = match (&a.tls_cert, &a.tls_key) {
        (Some(cert), Some(key)) => Some(crate::api::server::tls_acceptor(cert, key)?),
        _ => None,
    };
    // What protects the API, said at start (stderr: stdout's first line is the address).
    if keys.is_empty() {
        eprintln!(
            "minifargate: API authentication is OFF: any request is accepted, signed or not{}",
            if loopback {
                " (loopback only; see docs/security.md)"
            } else {
                " (--insecure-no-auth on a non-loopback address)"
            }
        );
    } else {
        eprintln!(
            "minifargate: API requests must be SigV4-signed with one of {} access key(s)",
            keys.len()
        );
        if tls.is_none() && !loopback {
            eprintln!(
                "minifargate: warning: plain HTTP on {}: requests (task definitions, \
                 environment values) travel unencrypted; use --tls-cert/--tls-key",
                a.listen
            );
        }
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    let no_keys = keys.is_empty();
    let security = crate::api::Security {
        keys: (!keys.is_empty()).then_some(keys),
        tls,
        limits: Default::default(),
        console: crate::api::console::Options {
            read_only: a.read_only.unwrap_or(!loopback),
            // Loopback without keys: only a rebinding page could reach it from elsewhere.
            literal_host_only: no_keys && loopback,
        },
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    // The address on stdout, for scripts that pass port 0.
    let read_only = security.console.read_only;
    let sign_in = security.keys.is_some();
    let listening = move |addr| {
        println!("minifargate: ECS API listening on {scheme}://{addr}");
        eprintln!(
            "minifargate: web console at {scheme}://{addr}/{}{}",
            if read_only { " (read-only)" } else { "" },
            if sign_in {
                " (sign in with an access key: its id as the user name, the secret as the password)"
            } else {
                ""
            }
        );
    };
    // One connection held open for serve's life, idle: a connection that opens the
    // database while no other is open rebuilds SQLite's WAL index from the whole WAL,
    // which each request (each opens the store) otherwise paid (issue 26).
    let _held = g.ecs().open_store().ok();
    rt.block_on(crate::api::serve(g.ecs(), a.listen, security, listening))?;
    Ok(ExitCode::SUCCESS)
}
