//! `serve`'s options: the ECS API over HTTP (docs/serve.md and docs/security.md). `main`
//! hands them to the API front-end's `start`, which the CLI does not import.

use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Serve the ECS API (AWS JSON 1.1) for the AWS CLI and SDKs:
/// `aws --profile minifargate ecs list-tasks`.
///
/// Every request's SigV4 signature is verified. Without access keys given
/// (`--credentials-file`, or MINIFARGATE_API_ACCESS_KEY_ID and
/// MINIFARGATE_API_SECRET_ACCESS_KEY), serve uses the key pair it generates on its first
/// start in <root>/api/credentials (root only) and writes the AWS CLI profile `minifargate`
/// (that key, the region and this endpoint) into the invoking user's ~/.aws, never over a
/// profile of that name it did not write. `--insecure-no-auth` turns authentication off.
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

    /// Accept unauthenticated requests: anyone who can reach the address (on loopback:
    /// every local user and every networkMode host task) can run privileged tasks, i.e. is
    /// root on this host. For a proxy in front that authenticates.
    #[arg(long, conflicts_with = "credentials_file")]
    pub insecure_no_auth: bool,

    /// A host name requests may be addressed to (the Host header), besides IP addresses
    /// and localhost, which are all a loopback listener answers otherwise (DNS rebinding,
    /// docs/security.md). Repeatable.
    #[arg(long, value_name = "NAME")]
    pub allowed_host: Vec<String>,

    /// Do not write the AWS CLI profile `minifargate` into ~/.aws; print its lines.
    #[arg(long)]
    pub no_aws_profile: bool,

    /// The web console at `/` shows but does not act: no run, stop or scale (the ECS API
    /// itself is unaffected). On by default on a non-loopback address; `--read-only=false`
    /// turns the actions on there.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub read_only: Option<bool>,

    /// Answer container instances (list, describe, deregister, state, attributes) from
    /// the cluster kept in etcd at these endpoints (comma-separated), which `minifargate
    /// agent --cluster` registers boxes in (docs/cluster.md).
    #[arg(long, value_name = "ENDPOINTS")]
    pub cluster: Option<String>,

    /// With --cluster: seconds the elected leader's lease lives without renewal (how soon
    /// another serve takes over when the leader dies).
    #[arg(long, value_name = "SECONDS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(2..=600), requires = "cluster")]
    pub leader_ttl: u64,

    /// With --cluster: seconds an instance's agent may stay disconnected before the
    /// leader stops its tasks (services then replace them elsewhere). 300 (Kubernetes'
    /// not-ready toleration): an agent restarted or cut off for less keeps its tasks;
    /// demos and tests pass 1-5 (docs/cluster.md, "A lost box").
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 300.0,
        requires = "cluster"
    )]
    pub lost_instance_after: f64,

    /// With --cluster: serve's port for boxes (HTTPS with a certificate of the cluster's
    /// CA, made at start from --cluster-dir): boxes join there with a token (`agent
    /// --server https://ADDR:PORT --token TOKEN`; docs/cluster.md "Joining a box with a
    /// token").
    #[arg(long, value_name = "ADDR:PORT", requires_all = ["cluster", "cluster_dir"])]
    pub boxes_listen: Option<SocketAddr>,

    /// A name or address boxes reach --boxes-listen at (repeatable): its certificate's
    /// names, besides loopback and the listen address.
    #[arg(long, value_name = "HOST", requires = "boxes_listen")]
    pub boxes_name: Vec<String>,

    /// The cluster's task address range (the agents' --task-range): a joined box's claim
    /// of a task subnet outside it is refused at --boxes-listen. Without it, a claim is
    /// held only to a private /16 or longer, and each agent honours the others' claims
    /// within its own --task-range.
    #[arg(long, value_name = "CIDR", requires = "boxes_listen")]
    pub boxes_task_range: Option<netns::Subnet>,

    /// The cluster's directory (`cluster init --dir`) holding the CA's key, with which
    /// --boxes-listen issues joining boxes' certificates.
    #[arg(long, value_name = "DIR", requires = "boxes_listen")]
    pub cluster_dir: Option<PathBuf>,

    #[command(flatten)]
    pub etcd: super::agent::EtcdTls,
}
