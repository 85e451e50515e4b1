//! `minifargate serve` started: the access keys, TLS, the Host rule and the console's mode
//! from its [`Options`] (`main` fills them from the verb's flags), what protects the API
//! said on stderr, the address on stdout, then [`super::serve`] until Ctrl-C or SIGTERM.

use super::auth::Keys;
use super::keygen;
use crate::ecs::Ecs;
use anyhow::Context;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// What `serve` is asked for (the flags of `minifargate serve`, docs/serve.md).
#[derive(Debug, Clone)]
pub struct Options {
    pub listen: SocketAddr,
    /// Access keys, one `ACCESS_KEY_ID SECRET_ACCESS_KEY` a line.
    pub credentials_file: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub insecure_no_auth: bool,
    /// Host names answered besides the listener's address (DNS rebinding).
    pub allowed_host: Vec<String>,
    pub no_aws_profile: bool,
    /// The console's actions off (`None`: off on a non-loopback address).
    pub read_only: Option<bool>,
    /// Cluster mode: container instances from the etcd at these endpoints (comma-separated).
    pub cluster: Option<String>,
    /// The leader's lease TTL (seconds).
    pub leader_ttl: u64,
    /// Seconds an instance may stay disconnected before its tasks are STOPPED.
    pub lost_instance_after: f64,
    /// serve's port for boxes (`--boxes-listen`), its certificate's names and the
    /// cluster's directory with the CA's key.
    pub boxes_listen: Option<SocketAddr>,
    pub boxes_names: Vec<String>,
    /// The task range boxes' subnet claims are held to (`--boxes-task-range`).
    pub boxes_task_range: Option<netns::Subnet>,
    pub cluster_dir: Option<PathBuf>,
    /// How etcd is reached (`--etcd-cacert/--etcd-cert/--etcd-key`).
    pub etcd_tls: crate::cluster::etcd::Tls,
    /// Whether any etcd TLS option was given (they are for `--cluster` only).
    pub etcd_tls_given: bool,
}

/// The access keys requests are signed with: those given (the environment, the
/// credentials file), or none with --insecure-no-auth, or the key generated under the root
/// (returned too: its file is named at start and in the AWS CLI profile).
fn api_keys(ecs: &Ecs, a: &Options) -> anyhow::Result<(Option<Keys>, Option<keygen::Generated>)> {
    let c = crate::config::get();
    let mut given =
        Keys::from_env_pair(c.api_access_key_id.clone(), c.api_secret_access_key.clone())?;
    if let Some(file) = &a.credentials_file {
        let from_file = Keys::load_file(file)?;
        anyhow::ensure!(
            !from_file.is_empty(),
            "the credentials file {} lists no access key (one `ACCESS_KEY_ID SECRET_ACCESS_KEY` a line)",
            file.display()
        );
        given.extend(from_file);
    }
    let mut generated = None;
    let keys = if a.insecure_no_auth {
        anyhow::ensure!(
            given.is_empty(),
            "--insecure-no-auth with access keys (MINIFARGATE_API_ACCESS_KEY_ID/\
             MINIFARGATE_API_SECRET_ACCESS_KEY): choose one"
        );
        None
    } else if !given.is_empty() {
        Some(given)
    } else {
        let k = keygen::generated_key(&ecs.root).with_context(|| {
            format!(
                "failed to set up the API's access key under {} (or pass --credentials-file)",
                ecs.root.display()
            )
        })?;
        let keys = k.keys();
        generated = Some(k);
        Some(keys)
    };
    Ok((keys, generated))
}

/// Says at start what protects the API (stderr: stdout's first line is the address).
fn say_protection(
    a: &Options,
    keys: Option<&Keys>,
    generated: Option<&keygen::Generated>,
    tls: bool,
) {
    let loopback = a.listen.ip().is_loopback();
    match (keys, generated) {
        (None, _) => eprintln!(
            "minifargate: WARNING: API authentication is OFF (--insecure-no-auth): any \
             request is accepted, signed or not; anyone who can reach {}{} can run privileged \
             tasks, i.e. is root on this host (docs/security.md)",
            a.listen,
            if loopback {
                " (every local user, every networkMode host task)"
            } else {
                ""
            }
        ),
        (Some(_), Some(k)) => eprintln!(
            "minifargate: API requests must be SigV4-signed with the access key {} in {} \
             ({}; root only)",
            k.id,
            k.path.display(),
            if k.created {
                "generated now"
            } else {
                "generated on the first start"
            }
        ),
        (Some(keys), None) => eprintln!(
            "minifargate: API requests must be SigV4-signed with one of {} access key(s)",
            keys.len()
        ),
    }
    if keys.is_some() && !tls && !loopback {
        eprintln!(
            "minifargate: warning: plain HTTP on {}: requests (task definitions, \
             environment values) travel unencrypted; use --tls-cert/--tls-key",
            a.listen
        );
    }
}

pub fn serve(ecs: Ecs, a: Options) -> anyhow::Result<ExitCode> {
    let (keys, generated) = api_keys(&ecs, &a)?;
    let loopback = a.listen.ip().is_loopback();
    let mut allowed = Vec::new();
    for name in &a.allowed_host {
        anyhow::ensure!(
            !name.is_empty() && !name.contains([':', '/', '[', ']']) && !name.contains(' '),
            "--allowed-host {name:?}: a host name without a port (e.g. minifargate.lab)"
        );
        allowed.push(name.to_ascii_lowercase());
    }
    let tls = match (&a.tls_cert, &a.tls_key) {
        (Some(cert), Some(key)) => Some(super::server::tls_acceptor(cert, key, None)?),
        _ => None,
    };
    say_protection(&a, keys.as_ref(), generated.as_ref(), tls.is_some());
    let scheme = if tls.is_some() { "https" } else { "http" };
    let security = super::Security {
        hosts: super::guard::Hosts {
            // Loopback: the address a rebinding page points its name at. Without keys on
            // another address too (nothing else stands in the page's way there).
            enforce: loopback || keys.is_none(),
            allowed,
        },
        keys,
        tls,
        limits: Default::default(),
        console: super::console::Options {
            read_only: a.read_only.unwrap_or(!loopback),
        },
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    crate::cluster::replica::mark(&ecs.root, a.cluster.as_deref()).with_context(|| {
        format!(
            "failed to record in {} whether serve keeps a cluster's state",
            ecs.root.display()
        )
    })?;
    if let Some(endpoints) = &a.cluster {
        anyhow::ensure!(
            a.lost_instance_after.is_finite() && a.lost_instance_after >= 0.0,
            "--lost-instance-after {}: a number of seconds, 0 or more",
            a.lost_instance_after
        );
        cluster(&rt, endpoints, &a, &ecs.root)?;
    } else {
        anyhow::ensure!(
            !a.etcd_tls_given,
            "--etcd-cacert/--etcd-cert/--etcd-key are for --cluster"
        );
    }
    // The address on stdout, for scripts that pass port 0.
    let read_only = security.console.read_only;
    let sign_in = security.keys.is_some();
    let no_aws_profile = a.no_aws_profile;
    let listening = move |addr: SocketAddr| {
        // The AWS CLI profile first: the address line on stdout says serve is ready, and
        // a script (or a test) that runs `aws --profile minifargate` as soon as it reads
        // that line finds the profile written.
        if let Some(k) = &generated {
            aws_profile(k, &client_endpoint(scheme, addr), no_aws_profile);
        }
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
        let ctx = crate::taskdef::AwsContext::from_env();
        let at = client_endpoint(scheme, addr);
        let at = at.split_once("://").map_or(at.as_str(), |(_, a)| a);
        eprintln!(
            "minifargate: ECR registry at {at}: repository URIs \
             {}.dkr.ecr.{}.amazonaws.com/<name> resolve to it for this box's pulls; log in \
             with `aws ecr get-login-password | podman login --username AWS \
             --password-stdin {at}` (docs/registry.md)",
            ctx.account_id, ctx.region
        );
    };
    // One connection held open for serve's life, idle: a connection that opens the
    // database while no other is open rebuilds SQLite's WAL index from the whole WAL,
    // which each request (each opens the store) otherwise paid (issue 26).
    let _held = ecs.open_store().ok();
    let served = rt.block_on(super::serve(ecs, a.listen, security, listening));
    // Cluster mode: the etcd calls of threads outside the runtime (serve's scheduler and
    // replica threads) stop using it before it is dropped (crate::cluster::close_runtime).
    crate::cluster::close_runtime(std::time::Duration::from_secs(10));
    drop(rt);
    served?;
    Ok(ExitCode::SUCCESS)
}

/// Cluster mode: container instances answered from etcd (crate::cluster::api). etcd out
/// of reach at start is a warning, not a failure: each call says so, naming the endpoint.
fn cluster(
    rt: &tokio::runtime::Runtime,
    endpoints: &str,
    a: &Options,
    root: &std::path::Path,
) -> anyhow::Result<()> {
    let etcd = crate::cluster::etcd::Etcd::new(endpoints, &a.etcd_tls)?;
    match rt.block_on(etcd.get(crate::cluster::keys::ROOT)) {
        Ok(_) => eprintln!(
            "minifargate: cluster mode: container instances from etcd {}",
            etcd.endpoints().join(",")
        ),
        Err(e) => eprintln!(
            "minifargate: warning: cluster mode, but etcd is out of reach now ({}); \
             container-instance calls fail until it answers",
            crate::errors::error_chain(&e)
        ),
    }
    crate::cluster::serve_with(etcd, rt.handle().clone());
    if let Some(etcd) = crate::cluster::serving() {
        let host = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "localhost".into());
        let name = format!("{host} pid {}", std::process::id());
        // Task definitions, clusters and services: the cluster's, in etcd.
        crate::cluster::replica::start(etcd, root, name.clone(), rt.handle())
            .context("failed to keep the control plane's rows in etcd")?;
        if let Some(listen) = a.boxes_listen {
            let layout = crate::cluster::pki::Layout {
                dir: a
                    .cluster_dir
                    .clone()
                    .context("--boxes-listen needs --cluster-dir")?,
            };
            anyhow::ensure!(
                layout.ca_key().exists(),
                "--cluster-dir {}: no ca.key there (the directory `minifargate cluster init` \
                 made): serve issues joining boxes' certificates with it",
                layout.dir.display()
            );
            match a.boxes_task_range {
                Some(r) => crate::cluster::admission::hold_claims_to(r),
                None => eprintln!(
                    "minifargate: no --boxes-task-range: a joined box's task subnet claim is \
                     held to a private /16 or longer, not to the cluster's task range"
                ),
            }
            let at = rt
                .block_on(boxes_port(etcd, layout, listen, &a.boxes_names))
                .context("failed to open serve's port for boxes (--boxes-listen)")?;
            eprintln!(
                "minifargate: port for boxes at https://{at}: a box joins with `minifargate \
                 agent --server https://{at} --token TOKEN` (`minifargate cluster token create`)"
            );
        }
        rt.spawn(crate::cluster::leader::run(
            etcd,
            crate::cluster::leader::Options {
                name,
                ttl: a.leader_ttl,
                lost_after: std::time::Duration::from_secs_f64(a.lost_instance_after),
            },
        ));
    }
    Ok(())
}

/// serve's port for boxes on `listen` (docs/cluster.md "Joining a box with a token"): TLS
/// with a certificate the CA in `layout` issues now for loopback, the listen address and
/// `names`, [`crate::cluster::join::router`]'s routes, until the process ends. The bound
/// address.
async fn boxes_port(
    etcd: &'static crate::cluster::etcd::Etcd,
    layout: crate::cluster::pki::Layout,
    listen: SocketAddr,
    names: &[String],
) -> anyhow::Result<SocketAddr> {
    let mut names = names.to_vec();
    if !listen.ip().is_unspecified() {
        names.push(listen.ip().to_string());
    }
    let (cert, key) = crate::cluster::pki::control_plane_identity(&layout, &names)?;
    let clients = crate::cluster::join::client_verifier(&layout)?;
    let acceptor = super::server::tls_acceptor_pem(&cert, &key, Some(clients))?;
    let l = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("failed to listen for boxes on {listen}"))?;
    let at = l.local_addr()?;
    // Where callers (the other serves, the operator's CLI) ask this serve to relay to a
    // box whose tunnel it holds: the first --boxes-name for a wildcard listener, else
    // the listen address (its certificate names both).
    let host = match (at.ip().is_unspecified(), names.first()) {
        (true, Some(n)) => n.clone(),
        (true, None) => "127.0.0.1".into(),
        (false, _) => at.ip().to_string(),
    };
    let url = match host.contains(':') {
        true => format!("https://[{host}]:{}", at.port()),
        false => format!("https://{host}:{}", at.port()),
    };
    let app = crate::cluster::join::router(etcd, layout)?
        .merge(crate::cluster::gateway::router(etcd))
        .merge(crate::cluster::tunnel::router(etcd, url));
    tokio::spawn(super::server::run(
        l,
        Some(acceptor),
        app,
        boxes_limits(),
        std::future::pending(),
    ));
    Ok(at)
}

/// The most connections serve's port for boxes holds at once. A box holds a few (its
/// calls, its assignments' and its status's watches, its tunnel), so the API's own cap
/// (256) would stop a cluster at a few dozen boxes (docs/cluster.md "Scale").
const BOXES_MAX_CONNECTIONS: usize = 16_384;

/// The limits of serve's port for boxes: the API's, with as many connections as
/// [`BOXES_MAX_CONNECTIONS`] and the open-file limit allow (raised to its hard limit; a
/// box's connection may hold one to etcd too, a watch passed on: two descriptors each).
fn boxes_limits() -> super::guard::Limits {
    let nofile = crate::cluster::nofile::raise();
    super::guard::Limits {
        max_connections: crate::cluster::nofile::clamp(
            "serve's port for boxes",
            BOXES_MAX_CONNECTIONS,
            2,
            nofile,
            1024,
        ),
        ..Default::default()
    }
}

/// The URL a client on this host uses: the bound address, with a wildcard listener's
/// address replaced by loopback.
fn client_endpoint(scheme: &str, addr: SocketAddr) -> String {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let ip = match addr.ip() {
        IpAddr::V4(v) if v.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v) if v.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("{scheme}://{}", SocketAddr::new(ip, addr.port()))
}

/// Writes (or, when it may not, prints) the AWS CLI profile of the generated key, saying
/// on stderr what it did.
fn aws_profile(k: &keygen::Generated, endpoint: &str, no_write: bool) {
    let region = crate::taskdef::AwsContext::from_env().region;
    let (config, _) = keygen::profile_sections(k, endpoint, &region);
    let p = keygen::PROFILE;
    let print = |why: &str| {
        eprintln!(
            "minifargate: {why}. For `aws --profile {p} …`, add to ~/.aws/config:\n{}\
             and to ~/.aws/credentials:\n[{p}]\naws_access_key_id = {}\n\
             aws_secret_access_key = <the second word of the last line of {}>",
            config,
            k.id,
            k.path.display()
        )
    };
    if no_write {
        return print("not writing the AWS CLI profile (--no-aws-profile)");
    }
    let Some(files) = keygen::profile_files() else {
        return print("no home directory ($HOME unset) to write the AWS CLI profile to");
    };
    match keygen::write_profile(&files, k, endpoint, &region) {
        Ok(keygen::ProfileOutcome::Written) => eprintln!(
            "minifargate: AWS CLI profile `{p}` (this key, region {region}, endpoint \
             {endpoint}) written to {} and {}{}: `aws --profile {p} ecs list-tasks`, \
             boto3.Session(profile_name=\"{p}\")",
            files.config.display(),
            files.credentials.display(),
            files
                .owner
                .as_ref()
                .map(|(_, _, user)| format!(" (user {user}, who ran sudo)"))
                .unwrap_or_default()
        ),
        Ok(keygen::ProfileOutcome::Foreign(path)) => print(&format!(
            "not writing the AWS CLI profile `{p}`: {} has a profile of that name that serve \
             did not write (left as it is)",
            path.display()
        )),
        Err(e) => print(&format!(
            "failed to write the AWS CLI profile `{p}`: {:#}",
            anyhow::Error::from(e)
        )),
    }
}
