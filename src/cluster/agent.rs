//! `minifargate agent --cluster`: registers this box as a container instance in etcd and
//! keeps its liveness lease (docs/cluster.md). The lease is renewed on a thread of its
//! own, with its own runtime and etcd connections ([`Liveness`]): a store wait or a
//! teardown does not delay a renewal, but a work loop that stops coming round (a wedged
//! agent) stops the renewals after `--work-stall-limit`. It re-registers after etcd
//! comes back (a new lease once the old one expired, the keys put again) and, on SIGTERM
//! or SIGINT, revokes its lease so the instance is `agentConnected: false` at once (its
//! tasks keep running, and so does the box's data plane, [`super::data_plane`]; the
//! leader replaces them only after `serve --lost-instance-after`). Meanwhile it runs the
//! tasks placed on the box ([`super::work`]).

use super::etcd::{Etcd, EtcdError, Tls};
use super::instances::{self, Registration, Status};
use super::keys;
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// What the agent is started with.
#[derive(Debug, Clone)]
pub struct Options {
    /// The state root: the instance id is kept in `<root>/agent/instance-id`.
    pub root: PathBuf,
    pub endpoints: String,
    pub tls: Tls,
    pub cluster: String,
    /// Custom attributes (`--attribute name=value`, or `name` without a value).
    pub attributes: Vec<(String, Option<String>)>,
    /// The liveness lease's TTL (seconds).
    pub lease_ttl: u64,
    /// How long the work loop may go without coming round before the lease stops being
    /// renewed ([`Liveness`]).
    pub stall_limit: Duration,
    /// This box's stores and supervisors (the assigned tasks run through them).
    pub ecs: crate::ecs::Ecs,
    /// Where the agent's endpoint listens (serves read the box's logs there).
    pub listen: std::net::SocketAddr,
    /// Where the box's task subnet comes from (pinned, or leased from the cluster's range).
    pub subnet: super::subnets::Want,
    /// The box's address for the other boxes (`--advertise-address`); `None`: the source
    /// address of the route to etcd.
    pub advertise: Option<std::net::Ipv4Addr>,
    /// What /etc/ecs/ecs.config sets for the registration and the tasks ([`super::ecs_config`]).
    pub ecs_config: super::ecs_config::Applied,
    /// The HTTP front-end the agent's endpoint runs behind (serve's, from the CLI).
    pub front: super::endpoint::Front,
    /// A joined box's serves' ports for boxes (`--server` without `--cluster`): the box
    /// registers no endpoint of its own and is reached through the tunnel it dials there
    /// ([`super::tunnel`]).
    pub tunnel: Option<Vec<String>>,
}

/// Why a session with etcd ended.
#[derive(Debug, thiserror::Error)]
pub(super) enum End {
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    #[error(transparent)]
    Work(#[from] super::work::WorkError),
    #[error(transparent)]
    Subnet(#[from] super::subnets::SubnetError),
    #[error(
        "etcd's authentication is off: this box's etcd user would be every box (serve turns it on when its bundle sits next to the operator's, or run `minifargate cluster enable-auth`)"
    )]
    AuthOff,
    #[error(
        "the liveness lease expired before it was renewed (etcd was out of reach for longer than the lease TTL)"
    )]
    LeaseExpired,
    #[error(
        "container instance {arn} was deregistered (INACTIVE): remove {file} to register \
         this box as a new container instance"
    )]
    Deregistered { arn: String, file: String },
}

/// The first and the longest wait between two attempts to reach etcd.
pub(super) const BACKOFF: (Duration, Duration) =
    (Duration::from_millis(250), Duration::from_secs(2));

/// The container instance id of the box whose state root is `root`: made once (32 hex,
/// as ECS's ids), then the same on every start.
pub fn instance_id(root: &Path) -> anyhow::Result<String> {
    let file = root.join("agent").join("instance-id");
    if let Ok(s) = std::fs::read_to_string(&file) {
        let id = s.trim();
        anyhow::ensure!(
            id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{} holds {id:?}, not a container instance id (32 hex digits)",
            file.display()
        );
        return Ok(id.to_string());
    }
    let dir = file.parent().expect("a parent");
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let id = crate::task::new_id().context("failed to read /dev/urandom")?;
    let tmp = dir.join("instance-id.tmp");
    std::fs::write(&tmp, format!("{id}\n"))
        .and_then(|()| std::fs::rename(&tmp, &file))
        .with_context(|| format!("cannot write {}", file.display()))?;
    Ok(id)
}

/// The ECS cluster a box joins: the one its token named (`token`), else the one chosen
/// (`--cluster-name` or ECS_CLUSTER), else `default`; a choice that contradicts the token
/// is refused, and so is a name ECS would refuse.
pub fn cluster_named(token: Option<String>, chosen: Option<String>) -> anyhow::Result<String> {
    if let (Some(t), Some(c)) = (&token, &chosen) {
        anyhow::ensure!(
            t == c,
            "this box joined with a token for ECS cluster {t}, but --cluster-name (or \
             ECS_CLUSTER) says {c}"
        );
    }
    let name = chosen.or(token).unwrap_or_else(|| "default".into());
    let cluster = crate::ecs::names::cluster_name(&name).to_string();
    anyhow::ensure!(
        !cluster.is_empty()
            && cluster.len() <= 255
            && cluster
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        "--cluster-name (or ECS_CLUSTER) {name:?}: up to 255 letters, numbers, hyphens and \
         underscores (an ECS cluster name)"
    );
    Ok(cluster)
}

/// Runs the agent until SIGTERM or SIGINT.
pub fn run(o: Options) -> anyhow::Result<()> {
    let etcd = Etcd::new(&o.endpoints, &o.tls)?;
    let id = instance_id(&o.root)?;
    let held = super::data_plane::hold_agent_lock(&o.ecs.run_root)?;
    let liveness = Liveness::start(
        Etcd::new(&o.endpoints, &o.tls)?,
        o.lease_ttl,
        Arc::default(),
        o.stall_limit,
    )?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    let r = rt.block_on(agent(o, id, etcd, liveness));
    drop(held);
    r
}

/// The liveness lease the agent holds: which one (`None`: none granted yet, or lost),
/// renewed by a thread of its own that touches neither the store nor a supervisor, on a
/// runtime of its own with its own etcd client (so its own connections): a work loop
/// that blocks its thread for a while (a store busy for seconds) does not delay a
/// renewal. But it is renewed only while the work loop has come round within
/// `stall_limit` (its [`super::work::Heartbeat`]): a wedged agent (a live process whose
/// loop is stuck) lets the lease lapse, and is seen disconnected, then lost (docs/
/// cluster.md "A wedged agent"). The session learns here that the lease is lost (etcd
/// answered it expired), and re-registers.
pub struct Liveness {
    lease: tokio::sync::watch::Sender<Option<i64>>,
    /// The work loop's progress.
    heartbeat: Arc<super::work::Heartbeat>,
    stall_limit: Duration,
}

impl Liveness {
    fn new(heartbeat: Arc<super::work::Heartbeat>, stall_limit: Duration) -> Arc<Liveness> {
        Arc::new(Liveness {
            lease: tokio::sync::watch::channel(None).0,
            heartbeat,
            stall_limit,
        })
    }

    /// Starts the renewing thread (renewals every third of `ttl`, while `heartbeat` is
    /// younger than `stall_limit`).
    fn start(
        etcd: Etcd,
        ttl: u64,
        heartbeat: Arc<super::work::Heartbeat>,
        stall_limit: Duration,
    ) -> anyhow::Result<Arc<Liveness>> {
        let live = Liveness::new(heartbeat, stall_limit);
        let keeper = live.clone();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("failed to start the liveness thread's async runtime")?;
        std::thread::Builder::new()
            .name("liveness".into())
            .spawn(move || rt.block_on(keeper.renew(Arc::new(etcd), ttl)))
            .context("failed to start the liveness thread")?;
        Ok(live)
    }

    /// The same renewals as a task of the current runtime, through `etcd` (a hollow box's:
    /// [`super::hollow`], thousands of them in one process, where a thread each would
    /// cost more than the box). The task ends when the handle is aborted.
    pub(super) fn spawn(
        etcd: Arc<Etcd>,
        ttl: u64,
        heartbeat: Arc<super::work::Heartbeat>,
        stall_limit: Duration,
    ) -> (Arc<Liveness>, tokio::task::JoinHandle<()>) {
        let live = Liveness::new(heartbeat, stall_limit);
        let task = tokio::spawn(live.clone().renew(etcd, ttl));
        (live, task)
    }

    /// The lease held now.
    fn current(&self) -> Option<i64> {
        *self.lease.borrow()
    }

    /// Holds lease `l` from now on (the thread renews it). A registration is progress.
    fn hold(&self, l: i64) {
        self.heartbeat.bump();
        self.lease.send_replace(Some(l));
    }

    /// Whether the lease may be renewed now: the work loop came round within the
    /// stall limit. Said once a change.
    fn progressing(&self, stalled: &mut bool) -> bool {
        let age = self.heartbeat.age();
        let now_stalled = age > self.stall_limit;
        if now_stalled != *stalled {
            *stalled = now_stalled;
            if now_stalled {
                tracing::error!(
                    stalled_s = age.as_secs(),
                    limit_s = self.stall_limit.as_secs(),
                    "the agent's work loop has made no progress for longer than \
                     --work-stall-limit: the liveness lease is no longer renewed (the \
                     instance goes agentConnected false when it lapses, and its tasks are \
                     replaced after serve's --lost-instance-after)"
                );
            } else {
                tracing::info!(
                    "the agent's work loop makes progress again: renewing the liveness lease"
                );
            }
        }
        !now_stalled
    }

    /// Gives the lease up (to revoke it): the thread stops renewing it.
    pub(super) fn take(&self) -> Option<i64> {
        self.lease.send_replace(None)
    }

    /// Returns once lease `l` is no longer held (etcd said it expired).
    pub(super) async fn lost(&self, l: i64) {
        let mut rx = self.lease.subscribe();
        let _ = rx.wait_for(|held| *held != Some(l)).await;
    }

    /// Renews the lease held, every third of `ttl`, forever. A renewal that fails (etcd
    /// out of reach) is tried again at the next period; only etcd saying the lease is gone
    /// makes it lost.
    async fn renew(self: Arc<Self>, etcd: Arc<Etcd>, ttl: u64) {
        let every = Duration::from_millis((ttl * 1000 / 3).max(500));
        let mut rx = self.lease.subscribe();
        let mut failing = false;
        let mut stalled = false;
        loop {
            let held = *rx.borrow_and_update();
            if let Some(l) = held.filter(|_| self.progressing(&mut stalled)) {
                match etcd.keep_alive(l).await {
                    Ok(Some(_)) => {
                        if std::mem::take(&mut failing) {
                            tracing::info!(lease = %format!("{l:x}"), "liveness lease renewed again");
                        }
                    }
                    Ok(None) => {
                        self.lease.send_if_modified(|h| {
                            let mine = *h == Some(l);
                            if mine {
                                *h = None;
                            }
                            mine
                        });
                        continue;
                    }
                    Err(e) => {
                        if !std::mem::replace(&mut failing, true) {
                            tracing::warn!(error = %crate::errors::error_chain(&e),
                                retry_ms = every.as_millis() as u64,
                                "cannot renew the liveness lease: trying again");
                        }
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = rx.changed() => {}
            }
        }
    }
}

async fn agent(o: Options, id: String, etcd: Etcd, lease: Arc<Liveness>) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let listener = tokio::net::TcpListener::bind(o.listen)
        .await
        .with_context(|| format!("--listen {}: cannot listen there", o.listen))?;
    // With the box's bundle (the cluster's CA, its certificate and key) the endpoint
    // serves TLS with the box's certificate: callers check it with the cluster's CA, and
    // it takes callers whose certificate of that CA is serve's or the operator's (no
    // token then: the box's etcd user cannot read it). Without, requests are signed with
    // the cluster's token.
    let tls = match (&o.tls.cacert, &o.tls.cert, &o.tls.key) {
        (Some(ca), Some(cert), Some(key)) => Some(
            (o.front.tls_acceptor)(cert, key, Some(super::endpoint::callers(ca)?))
                .context("the agent's endpoint serves TLS with the box's etcd certificate")?,
        ),
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let local = listener.local_addr()?;
    // A joined box is reached through its tunnel, not at an address: it registers none.
    let endpoint = match &o.tunnel {
        Some(_) => super::tunnel::REGISTERED.to_string(),
        None => format!("{scheme}://{local}"),
    };
    let token = tls
        .is_none()
        .then(|| std::sync::Arc::new(std::sync::RwLock::new(Vec::new())));
    tokio::spawn(super::endpoint::serve(
        o.front,
        listener,
        tls,
        o.ecs.clone(),
        token.clone(),
    ));
    // The serves' registries, for the box's pulls of repository URIs (own client).
    let registries = tokio::spawn(super::registries::follow(
        Etcd::new(&o.endpoints, &o.tls)?,
        o.root.clone(),
    ));
    let mut attributes_put = false;
    let mut backoff = BACKOFF.0;
    let arn = instances::arn(&o.cluster, &id);
    let file = o.root.join("agent").join("instance-id");
    let mut work = super::work::Work::new(o.ecs.clone(), &o.cluster, &id, &arn);
    work.applied = o.ecs_config.clone();
    work.heartbeat = lease.heartbeat.clone();
    // Its reports go under its box's prefix (its etcd role's), or, on a plain etcd,
    // under its instance id (serve's leader folds them: super::reports).
    if let Some(name) = etcd.user().and_then(|u| u.strip_prefix("minifargate-box-")) {
        work.reporter = name.to_string();
    }
    // Its task subnet's key goes under the same name (its role writes there only).
    let owner = work.reporter.clone();
    let me = super::subnets::Holder {
        cluster: o.cluster.clone(),
        instance: id.clone(),
        address: super::subnets::box_address(o.advertise, &etcd),
    };
    let stopped = loop {
        let mut connected = false;
        let ended = tokio::select! {
            r = session(&etcd, &o, &me, &lease, &mut attributes_put, &mut connected, &arn, &file, &mut work, (&endpoint, token.as_deref(), local)) => r,
            _ = term.recv() => break None,
            _ = int.recv() => break None,
        };
        match ended {
            End::Deregistered { .. } => {
                // An INACTIVE instance runs nothing: what this box still runs of it stops
                // (with force the API stops their records; without, there were none).
                if let Err(e) = work.stop_all() {
                    tracing::error!(error = %crate::errors::error_chain(&e),
                        "cannot stop this instance's tasks");
                }
                // Its subnet goes with the instance (the API released it too, unless the
                // agent was away then).
                if let Err(e) = super::subnets::release(&etcd, &o.cluster, &id, Some(&owner)).await
                {
                    tracing::warn!(error = %crate::errors::error_chain(&e),
                        "cannot release the task subnet");
                }
                break Some(ended);
            }
            End::Subnet(
                super::subnets::SubnetError::Overlaps { .. }
                | super::subnets::SubnetError::Taken { .. }
                | super::subnets::SubnetError::Exhausted { .. }
                | super::subnets::SubnetError::BadPrefix { .. },
            ) => break Some(ended),
            e => {
                if connected {
                    backoff = BACKOFF.0;
                }
                tracing::warn!(error = %crate::errors::error_chain(&e),
                    retry_ms = backoff.as_millis() as u64, "session with etcd ended: retrying");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = term.recv() => break None,
            _ = int.recv() => break None,
        }
        backoff = (backoff * 2).min(BACKOFF.1);
    };
    registries.abort();
    crate::task::local_registry::ClusterRegistries::remove(&o.root);
    // What the box's tasks use (the routes to the other boxes and the load balancers,
    // their DNS server and Service Connect listeners: the data plane) stays for a
    // restart or an upgrade, and goes with the instance (docs/cluster.md "The data plane
    // outlives the agent").
    if matches!(stopped, Some(End::Deregistered { .. })) {
        super::data_plane::remove(&o.ecs.run_root);
    } else {
        tracing::info!(
            "the box's data plane stays for its tasks (routes, DNS, Service Connect): a \
             restarted agent adopts it; `minifargate agent --leave` removes it"
        );
    }
    // Stopping: the instance is disconnected at once, not a lease TTL later.
    let held = lease.take();
    if let Some(l) = held {
        match tokio::time::timeout(Duration::from_secs(3), etcd.revoke(l)).await {
            Ok(Ok(())) => tracing::info!(
                instance = %arn,
                "stopped; lease revoked, the instance is agentConnected false"
            ),
            Ok(Err(e)) => tracing::warn!(
                instance = %arn, error = %crate::errors::error_chain(&e),
                "stopped; could not revoke the lease: the instance is disconnected when it expires"
            ),
            Err(_) => tracing::warn!(
                instance = %arn,
                "stopped; etcd did not answer the lease revocation in 3 s: the instance is \
                 disconnected when the lease expires"
            ),
        }
    }
    match stopped {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

/// One session: registration put, lease granted, liveness key put, then the lease kept
/// alive until etcd fails. Returns why it ended.
#[allow(clippy::too_many_arguments)]
async fn session(
    etcd: &Etcd,
    o: &Options,
    me: &super::subnets::Holder,
    lease: &Liveness,
    attributes_put: &mut bool,
    connected: &mut bool,
    arn: &str,
    file: &Path,
    work: &mut super::work::Work,
    endpoint: (
        &str,
        Option<&std::sync::RwLock<Vec<u8>>>,
        std::net::SocketAddr,
    ),
) -> End {
    // The token, for an endpoint without TLS only.
    if let Some(token) = endpoint.1 {
        match super::signing::token(etcd).await {
            Ok(t) => *token.write().expect("token lock") = t,
            Err(e) => return e.into(),
        }
    }
    let id = me.instance.as_str();
    if let Err(e) = admitted(etcd, &o.cluster, id).await {
        return e;
    }
    let current = crate::supervisor::isolation::network::box_subnet();
    let owner = etcd
        .user()
        .and_then(|u| u.strip_prefix("minifargate-box-"))
        .unwrap_or(id);
    let own = match super::subnets::claim(etcd, o.subnet, me, owner, current).await {
        Ok(s) => s,
        Err(e) => return e.into(),
    };
    if current.is_none() {
        let _ = crate::supervisor::isolation::network::use_box_subnet(own);
        tracing::info!(
            task_subnet = %own,
            from = %match o.subnet {
                super::subnets::Want::Pinned { .. } => "MINIFARGATE_SUBNET".to_string(),
                super::subnets::Want::Lease { range, .. } => format!("leased from {range}"),
            },
            box_address = %me
                .address
                .map_or_else(|| "unknown".to_string(), |a| a.to_string()),
            "task subnet"
        );
    }
    let box_net = (me.address, own);
    // The tasks' DNS server on the box's bridge, for the cluster's Cloud Map and load
    // balancers' names, the route to the load balancers and Service Connect's aliases
    // (crate::cluster::names), once the box's subnet is known: in the data plane's own
    // process, adopted when one runs already (super::data_plane).
    static DATA_PLANE: std::sync::Once = std::sync::Once::new();
    DATA_PLANE.call_once(|| {
        let spec = super::data_plane::Spec {
            endpoints: o.endpoints.clone(),
            tls: o.tls.clone(),
            subnet: own.to_string(),
        };
        if let Err(e) = super::data_plane::ensure(&o.ecs, &spec) {
            tracing::warn!(error = %crate::errors::error_chain(&*e),
                "no DNS server or Service Connect listeners for tasks: cannot start the data plane");
        }
    });
    if let Err(e) = work.before_connect(etcd).await {
        return e.into();
    }
    // A joined box's tunnel, dialed once its instance is bound to it (serve checks that),
    // and again whenever it drops, until the agent stops.
    static TUNNEL: std::sync::Once = std::sync::Once::new();
    if let Some(servers) = &o.tunnel {
        TUNNEL.call_once(|| match dialer(o, servers, id, endpoint.2) {
            Ok(d) => {
                tokio::spawn(d.run());
            }
            Err(e) => tracing::error!(error = %format!("{e:#}"),
                "no tunnel to the control plane: serve cannot reach this box's endpoint"),
        });
    }
    match register(
        etcd,
        o,
        id,
        lease,
        attributes_put,
        arn,
        file,
        endpoint.0,
        box_net,
    )
    .await
    {
        Ok(l) => {
            *connected = true;
            // The lease is renewed by the liveness thread; a failing work session does not
            // lose it (the next session keeps it), and a lost lease ends the session.
            tokio::select! {
                () = lease.lost(l) => End::LeaseExpired,
                e = work.run(etcd) => e.into(),
                e = super::subnets::follow(
                    etcd, me, own, super::subnets::Bounds::within(o.subnet.range()),
                ) => e.into(),
                e = own_status(etcd, &o.cluster, id, arn, file) => e,
            }
        }
        Err(e) => e,
    }
}

/// A box with an etcd user registers only once etcd's users are on (secure by default),
/// and once serve's leader bound instance `id` of cluster `c` to it ([`bound`]).
pub(super) async fn admitted(etcd: &Etcd, c: &str, id: &str) -> Result<(), End> {
    if etcd.auth_on().await? == Some(false) {
        return Err(End::AuthOff);
    }
    if let Some(name) = etcd.user().and_then(|u| u.strip_prefix("minifargate-box-")) {
        bound(etcd, name, c, id).await?;
    }
    Ok(())
}

/// The tunnel of a joined box whose endpoint listens at `local`, to `servers`, with the
/// box's certificate.
fn dialer(
    o: &Options,
    servers: &[String],
    id: &str,
    local: std::net::SocketAddr,
) -> anyhow::Result<Arc<super::tunnel::Dialer>> {
    let tls = super::agents_client::agents_tls(&Etcd::new(&o.endpoints, &o.tls)?)?
        .context("a joined box's tunnel needs its bundle (the cluster's CA, its certificate)")?;
    let local = match local.ip().is_unspecified() {
        true => std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), local.port()),
        false => local,
    };
    Ok(Arc::new(super::tunnel::Dialer {
        servers: servers.to_vec(),
        tls,
        cluster: o.cluster.clone(),
        instance: id.to_string(),
        local,
    }))
}

/// Claims instance `id` for box `name` and waits until serve's leader bound it to the
/// box: only then may the box write the instance's keys (its etcd role, or serve's port
/// for a joined box: docs/cluster.md "Security").
async fn bound(etcd: &Etcd, name: &str, cluster: &str, id: &str) -> Result<(), EtcdError> {
    let done = keys::box_bound(name, cluster, id);
    if etcd.get(&done).await?.is_some() {
        return Ok(());
    }
    etcd.put(&keys::box_claim(name, cluster, id), b"", None)
        .await?;
    let mut said = false;
    loop {
        if etcd.get(&done).await?.is_some() {
            return Ok(());
        }
        if !std::mem::replace(&mut said, true) {
            tracing::info!(instance = %id, r#box = %name,
                "waiting for serve's leader to bind this instance to this box (then the box may write the instance's keys)");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Watches this instance's own status key, so a change is seen at once rather than at
/// the next registration: DRAINING and ACTIVE are said, INACTIVE (deregistered) ends the
/// session (the agent then stops the instance's tasks and exits). A watch that breaks
/// is made again from the key's current value.
async fn own_status(etcd: &Etcd, cluster: &str, id: &str, arn: &str, file: &Path) -> End {
    let key = keys::status(cluster, id);
    let deregistered = || End::Deregistered {
        arn: arn.into(),
        file: file.display().to_string(),
    };
    let mut said: Option<Vec<u8>> = None;
    loop {
        let from = match etcd.get(&key).await {
            Ok(Some(kv)) => {
                if kv.value == Status::Inactive.as_str().as_bytes() {
                    return deregistered();
                }
                said = Some(kv.value);
                kv.mod_revision + 1
            }
            Ok(None) => match etcd.revision().await {
                Ok(r) => r + 1,
                Err(e) => return e.into(),
            },
            Err(e) => return e.into(),
        };
        let mut watch = match etcd.watch(&key, from).await {
            Ok(w) => w,
            Err(e) => return e.into(),
        };
        while let Ok(events) = watch.next().await {
            for e in events {
                let super::etcd::Event::Put(kv) = e else {
                    tracing::warn!(instance = %arn, key = %key, "the instance's status key was deleted");
                    continue;
                };
                if kv.value == Status::Inactive.as_str().as_bytes() {
                    return deregistered();
                }
                if said.as_ref() != Some(&kv.value) {
                    tracing::info!(
                        instance = %arn,
                        "container instance is now {}",
                        String::from_utf8_lossy(&kv.value)
                    );
                    said = Some(kv.value);
                }
            }
        }
        tokio::time::sleep(BACKOFF.0).await;
    }
}

/// Instance `id`'s status, once it has one. With a box's etcd user the box only reads it:
/// serve's leader created it (ACTIVE) when it bound the instance, before `bound` was
/// written, and the API changes it (docs/cluster.md "Security": a box cannot undo its own
/// DRAINING or INACTIVE). On a plain etcd, with no leader binding instances, the agent
/// creates it ACTIVE if absent.
async fn status_made(etcd: &Etcd, c: &str, id: &str) -> Result<Vec<u8>, EtcdError> {
    let key = keys::status(c, id);
    let box_user = etcd
        .user()
        .is_some_and(|u| u.starts_with("minifargate-box-"));
    if !box_user {
        etcd.put_if_absent(&key, Status::Active.as_str().as_bytes())
            .await?;
    }
    let mut said = false;
    loop {
        if let Some(kv) = etcd.get(&key).await? {
            return Ok(kv.value);
        }
        if !std::mem::replace(&mut said, true) {
            tracing::warn!(instance = %id, key = %key,
                "this instance has no status: waiting for serve's leader to create it (a serve \
                 older than this agent does not: upgrade serve first)");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[allow(clippy::too_many_arguments)]
async fn register(
    etcd: &Etcd,
    o: &Options,
    id: &str,
    lease: &Liveness,
    attributes_put: &mut bool,
    arn: &str,
    file: &Path,
    endpoint: &str,
    box_net: (Option<std::net::Ipv4Addr>, netns::Subnet),
) -> Result<i64, End> {
    let registered_at = registered_at(etcd, &o.cluster, id, arn, file).await?;
    let mut reg = Registration::of_this_box(id, registered_at);
    o.ecs_config.apply(&mut reg);
    reg.endpoint = Some(endpoint.to_string());
    reg.address = box_net.0;
    reg.task_subnet = Some(box_net.1.to_string());
    let put = Published {
        attributes: &o.attributes,
        attributes_put,
        lease_ttl: o.lease_ttl,
    };
    let l = publish(etcd, &o.cluster, &reg, lease, put).await?;
    tracing::info!(
        instance = %arn,
        hostname = %reg.hostname,
        cpu = reg.cpu,
        memory_mib = reg.memory,
        endpoint = %endpoint,
        store = %etcd.endpoints().join(","),
        lease_s = o.lease_ttl,
        "registered: running the tasks placed here"
    );
    Ok(l)
}

/// When instance `id` of cluster `c` first registered (now, for a new one), once its
/// status says it may register: a new instance is ACTIVE, an existing one keeps its
/// status (DRAINING stays), and a deregistered one is not brought back.
pub(super) async fn registered_at(
    etcd: &Etcd,
    c: &str,
    id: &str,
    arn: &str,
    file: &Path,
) -> Result<i64, End> {
    if status_made(etcd, c, id).await? == Status::Inactive.as_str().as_bytes() {
        return Err(End::Deregistered {
            arn: arn.into(),
            file: file.display().to_string(),
        });
    }
    Ok(match etcd.get(&keys::instance(c, id)).await? {
        Some(kv) => serde_json::from_slice::<Registration>(&kv.value)
            .map(|r| r.registered_at_ms)
            .unwrap_or_else(|_| crate::ecs::now_ms()),
        None => crate::ecs::now_ms(),
    })
}

/// What a registration puts besides the registration itself.
pub(super) struct Published<'a> {
    /// The custom attributes, put once an agent's run (`attributes_put`).
    pub attributes: &'a [(String, Option<String>)],
    pub attributes_put: &'a mut bool,
    pub lease_ttl: u64,
}

/// Puts registration `reg` of cluster `c` (and the custom attributes, once), takes a
/// lease (the one still held, else a new one) and puts the liveness key with it: the
/// instance is connected. The lease.
pub(super) async fn publish(
    etcd: &Etcd,
    c: &str,
    reg: &Registration,
    lease: &Liveness,
    put: Published<'_>,
) -> Result<i64, End> {
    let id = reg.id.as_str();
    etcd.put(
        &keys::instance(c, id),
        &serde_json::to_vec(reg).expect("a registration encodes"),
        None,
    )
    .await?;
    if !*put.attributes_put {
        for (name, value) in put.attributes {
            etcd.put(
                &keys::attribute(c, id, name),
                &instances::attribute_bytes(value.as_deref()),
                None,
            )
            .await?;
        }
        *put.attributes_put = true;
    }
    // The lease still held (the previous session ended on a work error, not a lost
    // lease) is kept: the instance stays connected throughout.
    let l = match lease.current() {
        Some(l) if etcd.keep_alive(l).await?.is_some() => l,
        _ => etcd.grant(put.lease_ttl).await?,
    };
    lease.hold(l);
    etcd.put(&keys::alive(c, id), reg.hostname.as_bytes(), Some(l))
        .await?;
    Ok(l)
}
