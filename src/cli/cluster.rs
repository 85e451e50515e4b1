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
                 --peer-client-cert-auth --peer-trusted-ca-file={d}/etcd/ca.crt \
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
