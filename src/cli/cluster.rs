//! `cluster init` and `cluster add-box`: the cluster's CA and certificates
//! (crate::cluster::pki, docs/cluster.md "Security").

use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// The certificates of a cluster: etcd with client-certificate authentication, serve and
/// every box with a client certificate of their own.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    #[command(subcommand)]
    pub command: ClusterCommand,
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Make the cluster's CA, etcd's server and peer certificates, and the client
    /// bundles of serve (DIR/serve) and the operator (DIR/admin, etcd's `root`); every
    /// file root-only. Prints etcd's, serve's and etcdctl's TLS flags.
    Init(InitArgs),
    /// Issue box NAME's bundle (DIR/boxes/NAME: ca.crt, client.crt, client.key, and etcd
    /// user minifargate-box-NAME with its password) with the CA in DIR; with --cluster,
    /// also create that user in etcd. Copy the directory to the box (e.g. over ssh) and
    /// start its agent with --etcd-certs.
    AddBox(AddBoxArgs),
    /// Once etcd runs with the certificates of `cluster init`: create etcd's users and
    /// roles from DIR's bundles (root and minifargate-serve with role root, each box's
    /// own) through the operator's bundle, and turn etcd's authentication on. Run again,
    /// it sets the passwords again and adds the boxes issued since.
    EnableAuth(EnableAuthArgs),
    /// Join tokens: a box joins with `agent --server URL --token TOKEN` (docs/cluster.md
    /// "Joining a box with a token").
    Token(TokenArgs),
    /// Remove box NAME from the cluster: its etcd user and role deleted, its certificate
    /// revoked (serve's port for boxes refuses it). Its instances show agentConnected
    /// false once its lease runs out, and the leader replaces their tasks after
    /// --lost-instance-after; `deregister-container-instance --force` first moves them at once.
    RemoveBox(RemoveBoxArgs),
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    pub command: TokenCommand,
}

/// Where the operator reaches etcd: the cluster's directory (its `admin` bundle) and
/// etcd's endpoints.
#[derive(Debug, Args)]
pub struct Operator {
    /// The cluster's directory (`cluster init --dir`).
    #[arg(long, value_name = "DIR", default_value = "/etc/minifargate/cluster")]
    pub dir: PathBuf,
    /// etcd's client endpoints, comma-separated (https://HOST:2379).
    #[arg(long, value_name = "ENDPOINTS")]
    pub etcd: String,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a join token and print it (once: etcd keeps only its secret's hash). It pins
    /// the cluster's CA; by default it joins one box within 24 hours.
    Create(TokenCreateArgs),
    /// The tokens not yet used up or revoked: id, cluster, expiry, joins left (no secret).
    List(Operator),
    /// Revoke token ID: it joins no box from then on (boxes joined with it stay).
    Revoke(TokenRevokeArgs),
}

#[derive(Debug, Args)]
pub struct TokenCreateArgs {
    #[command(flatten)]
    pub at: Operator,
    /// How long it joins boxes: a duration (`30m`, `24h`, `7d`); `0`: no expiry.
    #[arg(long, value_name = "DURATION", default_value = "24h")]
    pub ttl: String,
    /// How many boxes it joins (`0`: any number until it expires or is revoked).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub uses: u32,
    /// The ECS cluster a box joined with it registers in (its agent's --cluster-name
    /// must then be this or unset).
    #[arg(long = "cluster", value_name = "NAME")]
    pub cluster: Option<String>,
    /// What the token is for (shown by `token list`).
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub description: String,
}

#[derive(Debug, Args)]
pub struct TokenRevokeArgs {
    #[command(flatten)]
    pub at: Operator,
    /// The token's id (the 12 hex digits after `::`, as `token list` shows).
    #[arg(value_name = "ID")]
    pub id: String,
}

#[derive(Debug, Args)]
pub struct RemoveBoxArgs {
    #[command(flatten)]
    pub at: Operator,
    /// The box's name (its certificate's `urn:minifargate:box:NAME`).
    #[arg(value_name = "NAME")]
    pub name: String,
}

#[derive(Debug, Args)]
pub struct EnableAuthArgs {
    /// The cluster's directory (`cluster init --dir`).
    #[arg(long, value_name = "DIR", default_value = "/etc/minifargate/cluster")]
    pub dir: PathBuf,
    /// etcd's client endpoints, comma-separated (https://HOST:2379).
    #[arg(long, value_name = "ENDPOINTS")]
    pub cluster: String,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Where the CA and the certificates go (made 0700; refused if it holds a CA).
    #[arg(long, value_name = "DIR", default_value = "/etc/minifargate/cluster")]
    pub dir: PathBuf,
    /// An address or DNS name etcd's members are reached at (repeatable), besides
    /// 127.0.0.1, ::1 and localhost: the server and peer certificates' names.
    #[arg(long = "etcd-host", value_name = "HOST")]
    pub etcd_hosts: Vec<String>,
}

#[derive(Debug, Args)]
pub struct AddBoxArgs {
    /// The box's name: its certificate's common name is minifargate-box-NAME.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// The cluster's directory (`cluster init --dir`), holding ca.key.
    #[arg(long, value_name = "DIR", default_value = "/etc/minifargate/cluster")]
    pub dir: PathBuf,
    /// The box's address (or DNS name) on the boxes' network, its agent's `--listen`
    /// (repeatable), besides 127.0.0.1, ::1 and localhost: its certificate is also its
    /// agent's endpoint's TLS certificate, valid for these names.
    #[arg(long = "address", value_name = "HOST")]
    pub addresses: Vec<String>,
    /// etcd's client endpoints, comma-separated: create the box's etcd user there now
    /// (through DIR/admin), as `cluster enable-auth` would.
    #[arg(long, value_name = "ENDPOINTS")]
    pub cluster: Option<String>,
}

/// A client of etcd as the operator (DIR/admin).
fn admin_etcd(
    layout: &crate::cluster::pki::Layout,
    endpoints: &str,
) -> anyhow::Result<crate::cluster::etcd::Etcd> {
    let admin = layout.admin();
    let tls = crate::cluster::etcd::Tls {
        cacert: Some(admin.join("ca.crt")),
        cert: Some(admin.join("client.crt")),
        key: Some(admin.join("client.key")),
        insecure_plaintext: false,
        credentials: Some(admin),
    };
    Ok(crate::cluster::etcd::Etcd::new(endpoints, &tls)?)
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> anyhow::Result<T> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f))
}

pub fn cluster(a: ClusterArgs) -> anyhow::Result<ExitCode> {
    use crate::cluster::pki::{self, Layout};
    match a.command {
        ClusterCommand::Init(i) => {
            let layout = Layout { dir: i.dir };
            pki::init(&layout, &i.etcd_hosts)?;
            let d = layout.dir.display();
            println!(
                "made the cluster's CA and certificates in {d} (root-only)\n\n\
                 etcd (each member):\n  --client-cert-auth --trusted-ca-file={d}/etcd/ca.crt \
                 --cert-file={d}/etcd/server.crt --key-file={d}/etcd/server.key\n  \
                 --peer-client-cert-auth --peer-trusted-ca-file={d}/etcd/peer-ca.crt \
                 --peer-cert-file={d}/etcd/peer.crt --peer-key-file={d}/etcd/peer.key\n\
                 serve:\n  --cluster https://HOST:2379 --etcd-certs {d}/serve\n\
                 etcdctl (the operator):\n  --cacert {d}/admin/ca.crt --cert {d}/admin/client.crt \
                 --key {d}/admin/client.key --user root:$(cat {d}/admin/etcd-password)\n\
                 exec --etcd / logs --etcd (the operator; agents admit only serve's and \
                 this bundle's certificates):\n  --etcd-certs {d}/admin\n\
                 once etcd runs: minifargate cluster enable-auth --dir {d} --cluster https://HOST:2379\n\
                 each box: minifargate cluster add-box NAME --dir {d}, copy {d}/boxes/NAME to \
                 the box, then\n  agent --cluster https://HOST:2379 --etcd-certs DIR"
            );
        }
        ClusterCommand::AddBox(b) => {
            let layout = Layout { dir: b.dir };
            pki::add_box(&layout, &b.name, &b.addresses)?;
            if let Some(endpoints) = &b.cluster {
                let etcd = admin_etcd(&layout, endpoints)?;
                block_on(crate::cluster::users::add_box(&etcd, &layout, &b.name))??;
            }
            println!("{}", layout.box_bundle(&b.name).display());
        }
        ClusterCommand::Token(t) => token(t.command)?,
        ClusterCommand::RemoveBox(r) => {
            let layout = Layout { dir: r.at.dir };
            let etcd = admin_etcd(&layout, &r.at.etcd)?;
            let offline = layout.box_bundle(&r.name);
            let done = block_on(crate::cluster::join::remove_box(
                &etcd,
                &r.name,
                Some(&offline),
            ))??;
            println!("box {} removed: {}", r.name, done.join("; "));
        }
        ClusterCommand::EnableAuth(e) => {
            let layout = Layout { dir: e.dir };
            let etcd = admin_etcd(&layout, &e.cluster)?;
            let boxes = block_on(crate::cluster::users::enable(&etcd, &layout))??;
            println!(
                "etcd's authentication is on: users root and {} (role root){}",
                pki::SERVE_USER,
                boxes
                    .iter()
                    .map(|b| format!(", {}", pki::box_user(b)))
                    .collect::<String>()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `cluster token create|list|revoke`.
fn token(c: TokenCommand) -> anyhow::Result<()> {
    use crate::cluster::join;
    use crate::cluster::pki::{self, Layout};
    match c {
        TokenCommand::Create(t) => {
            let layout = Layout { dir: t.at.dir };
            let ttl = match t.ttl.trim() {
                "0" => None,
                s => Some(humantime::parse_duration(s).map_err(|e| {
                    anyhow::anyhow!("--ttl {s:?}: a duration such as 30m, 24h or 7d ({e})")
                })?),
            };
            if let Some(c) = &t.cluster {
                anyhow::ensure!(
                    !c.is_empty()
                        && c.len() <= 255
                        && c.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
                    "--cluster {c:?}: up to 255 letters, numbers, hyphens and underscores (an \
                     ECS cluster name)"
                );
            }
            let (pin, _) = pki::layout_ca(&layout)?;
            let etcd = admin_etcd(&layout, &t.at.etcd)?;
            let uses = (t.uses > 0).then_some(t.uses);
            let (token, record) = block_on(join::create_token(
                &etcd,
                &pin,
                t.cluster,
                ttl,
                uses,
                t.description,
            ))??;
            println!("{token}");
            eprintln!(
                "token {} joins {} {}{}: on the box, `minifargate agent --server \
                 https://CONTROL_PLANE:PORT --token TOKEN` (serve's --boxes-listen port, the \
                 only one the box needs to reach); `minifargate cluster token revoke {}` \
                 withdraws it",
                token.id,
                match record.uses_left {
                    Some(1) => "one box".to_string(),
                    Some(n) => format!("{n} boxes"),
                    None => "any number of boxes".into(),
                },
                match record.expires_at {
                    Some(at) => format!("until {}", rfc3339(at)),
                    None => "with no expiry".into(),
                },
                record
                    .cluster
                    .map(|c| format!(" into ECS cluster {c}"))
                    .unwrap_or_default(),
                token.id
            );
        }
        TokenCommand::List(at) => {
            let layout = Layout { dir: at.dir };
            let etcd = admin_etcd(&layout, &at.etcd)?;
            let now = join::now();
            println!(
                "ID            CLUSTER          EXPIRES                   JOINS LEFT  DESCRIPTION"
            );
            for (id, r) in block_on(join::list_tokens(&etcd))?? {
                match r {
                    Ok(r) => println!(
                        "{id:<13} {:<16} {:<25} {:<11} {}",
                        r.cluster.as_deref().unwrap_or("-"),
                        match r.expires_at {
                            Some(at) if at <= now => "expired".to_string(),
                            Some(at) => rfc3339(at),
                            None => "never".into(),
                        },
                        r.uses_left
                            .map(|n| n.to_string())
                            .unwrap_or_else(|| "any".into()),
                        r.description
                    ),
                    Err(e) => println!("{id:<13} (its record does not decode: {e})"),
                }
            }
        }
        TokenCommand::Revoke(r) => {
            let layout = Layout { dir: r.at.dir };
            let etcd = admin_etcd(&layout, &r.at.etcd)?;
            anyhow::ensure!(
                block_on(join::revoke_token(&etcd, &r.id))??,
                "no token {} (used up, revoked, or never made: `cluster token list`)",
                r.id
            );
            println!("token {} revoked", r.id);
        }
    }
    Ok(())
}

/// Seconds since the epoch as RFC 3339 (UTC).
fn rfc3339(at: i64) -> String {
    humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(at.max(0) as u64),
    )
    .to_string()
}
