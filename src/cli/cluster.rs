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
    /// Issue box NAME's client certificate (DIR/boxes/NAME: ca.crt, client.crt,
    /// client.key, common name minifargate-box-NAME) with the CA in DIR; copy that
    /// directory to the box (e.g. over ssh) and start its agent with --etcd-certs.
    AddBox(AddBoxArgs),
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
                 --key {d}/admin/client.key\n\
                 each box: minifargate cluster add-box NAME --dir {d}, copy {d}/boxes/NAME to \
                 the box, then\n  agent --cluster https://HOST:2379 --etcd-certs DIR"
            );
        }
        ClusterCommand::AddBox(b) => {
            let layout = Layout { dir: b.dir };
            pki::add_box(&layout, &b.name, &b.addresses)?;
            println!("{}", layout.box_bundle(&b.name).display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
