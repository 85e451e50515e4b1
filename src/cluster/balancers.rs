//! The load balancers on every box (docs/load-balancing.md "Cluster mode"), as kube-proxy
//! runs a Service on every node: the leader's serve publishes what a listener forwards by
//! ([`keys::elb_config`]) and its targets' health ([`keys::elb_health`]); the leader
//! writes them with [`publish`]. Each box's data plane ([`Balancers`]) runs the same
//! listeners as serve (`crate::elb::dataplane`) on the load balancers' addresses on its
//! own `lo`, so its tasks' and its host's connections to a load balancer end on the box
//! and go straight to a healthy target on any box: no host carries the cluster's
//! load-balanced traffic, and the leader's death cuts none of it. What the box's listeners
//! count goes to every serve that samples the box ([`meters_socket`], [`read_meters`]):
//! the agent asks its data plane at each serve's sample, for that serve.

use super::etcd::{Etcd, EtcdError, Kv};
use super::keys;
use crate::elb::Elb;
use crate::elb::meters::{Readers, Traffic};
use crate::elb::names::{Names, Place};
use crate::elb::snapshot::Config;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The leader: puts the load balancers' configuration (when etcd has another) and then
/// their targets' health. `adopt` (the first time since it leads): takes the sticky
/// cookie key the cluster's load balancers already use, so a cookie any box set before
/// still opens on every box.
pub async fn publish(etcd: &Etcd, elb: &Elb, adopt: bool) -> Result<(), EtcdError> {
    if adopt
        && let Some(kv) = etcd.get(&keys::elb_config()).await?
        && let Ok(c) = serde_json::from_slice::<Config>(&kv.value)
        && let Err(e) = elb.adopt_sticky_key(&c.sticky_key)
    {
        tracing::warn!(error = %e, "load balancers: the published cookie key is not taken: sticky cookies set before this serve led do not open");
    }
    let c = elb.config();
    if put_json(etcd, &keys::elb_config(), &c).await? {
        tracing::info!(
            load_balancers = c.load_balancers.len(),
            listeners = c.listeners.len(),
            target_groups = c.target_groups.len(),
            "load balancers' configuration published to the boxes"
        );
    }
    publish_health(etcd, &elb.published_health()).await
}

/// The leader: makes `health` the load balancers' target health the other serves answer
/// DescribeTargetHealth with and the boxes' listeners route by (when etcd has another).
pub async fn publish_health(
    etcd: &Etcd,
    health: &[crate::elb::PublishedHealth],
) -> Result<(), EtcdError> {
    put_json(etcd, &keys::elb_health(), &health).await.map(drop)
}

/// The target health the leader published last (none when it published none, or it
/// does not decode: the targets then show what this serve knows).
pub async fn published_health(etcd: &Etcd) -> Result<Vec<crate::elb::PublishedHealth>, EtcdError> {
    Ok(etcd
        .get(&keys::elb_health())
        .await?
        .and_then(|kv| serde_json::from_slice(&kv.value).ok())
        .unwrap_or_default())
}

/// Puts `v` as JSON at `key`, unless etcd has it so already; whether it did.
pub(super) async fn put_json(
    etcd: &Etcd,
    key: &str,
    v: &impl serde::Serialize,
) -> Result<bool, EtcdError> {
    let value = serde_json::to_vec(v).expect("a published value encodes");
    if etcd.get(key).await?.is_some_and(|kv| kv.value == value) {
        return Ok(false);
    }
    etcd.put(key, &value, None).await.map(|()| true)
}

/// A box's load balancers: their listeners (on the data plane's threads), addresses on
/// `lo`, names (the tasks' DNS server, the box's hosts file), and the values of the
/// published keys they were made from.
pub struct Balancers {
    elb: Arc<Elb>,
    names: Arc<Mutex<Names>>,
    listeners: tokio::task::JoinHandle<()>,
    meters: Option<tokio::task::JoinHandle<()>>,
    socket: PathBuf,
    config: Vec<u8>,
    health: Vec<u8>,
}

/// Where a box's data plane answers for its listeners' counts (root's only): under the
/// agent's directory of the run root.
pub fn meters_socket(run_root: &Path) -> PathBuf {
    run_root.join("agent").join("elb-meters.sock")
}

/// How long the agent waits for its data plane's counts.
const METERS_WAIT: Duration = Duration::from_secs(2);

/// Why the agent has no counts from its data plane.
#[derive(Debug, thiserror::Error)]
pub enum MetersError {
    #[error("failed to reach the data plane's load balancer counts at {path}")]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to read the data plane's load balancer counts at {path}")]
    Exchange {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the data plane's load balancer counts at {path} do not decode")]
    Decode {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// The agent: what the box's listeners counted since serve `serve` last asked (all of it
/// the first time that serve asks), from the data plane at `run_root`.
pub fn read_meters(run_root: &Path, serve: &str) -> Result<Traffic, MetersError> {
    let path = meters_socket(run_root);
    let mut conn =
        std::os::unix::net::UnixStream::connect(&path).map_err(|source| MetersError::Connect {
            path: path.clone(),
            source,
        })?;
    let exchange = |conn: &mut std::os::unix::net::UnixStream| {
        conn.set_read_timeout(Some(METERS_WAIT))?;
        conn.set_write_timeout(Some(METERS_WAIT))?;
        conn.write_all(serve.as_bytes())?;
        conn.shutdown(std::net::Shutdown::Write)?;
        let mut answer = Vec::new();
        conn.read_to_end(&mut answer)?;
        Ok(answer)
    };
    let answer = exchange(&mut conn).map_err(|source| MetersError::Exchange {
        path: path.clone(),
        source,
    })?;
    serde_json::from_slice(&answer).map_err(|source| MetersError::Decode { path, source })
}

/// The longest serve's name a reader of the counts may give.
const READER_NAME_MAX: u64 = 1024;

/// The data plane: answers each connection on `listener` (the asking serve's name, then
/// end of input) with what that serve has not read yet of `elb`'s counts.
async fn answer_meters(listener: tokio::net::UnixListener, elb: Arc<Elb>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let readers = Arc::new(Mutex::new(Readers::default()));
    loop {
        let Ok((conn, _)) = listener.accept().await else {
            continue;
        };
        let (elb, readers) = (elb.clone(), readers.clone());
        tokio::spawn(async move {
            let mut name = Vec::new();
            let mut conn = conn;
            let mut limited = (&mut conn).take(READER_NAME_MAX);
            let read = limited.read_to_end(&mut name);
            if tokio::time::timeout(METERS_WAIT, read).await.is_err() {
                return;
            }
            let serve = String::from_utf8_lossy(&name);
            let t = readers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .read(&elb, &serve);
            let body = serde_json::to_vec(&t).expect("counts encode");
            let _ = tokio::time::timeout(METERS_WAIT, conn.write_all(&body)).await;
        });
    }
}

/// Listens at [`meters_socket`] (a stale socket of an earlier data plane removed first;
/// the data plane's lock says none other runs), root's only.
fn listen_meters(run_root: &Path) -> std::io::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = meters_socket(run_root);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let l = tokio::net::UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}

impl Balancers {
    /// Starts with no load balancer: `records` is the table of the tasks' DNS server;
    /// `hosts` the box's hosts file, whose block is marked `tag`; the counts are
    /// answered at [`meters_socket`] of `run_root`.
    pub fn start(
        records: Arc<crate::dns::Records>,
        hosts: Option<std::path::PathBuf>,
        tag: &str,
        run_root: &Path,
    ) -> Balancers {
        let elb = Arc::new(Elb::from_config());
        let names = Arc::new(Mutex::new(Names::new(
            Place::Link("lo".into()),
            hosts,
            std::path::Path::new(tag),
            records,
        )));
        // A route to the load balancers via the leader, made by a data plane of an
        // earlier build, would take the box's own addresses' traffic away.
        if let Err(e) = netns::routes::sync_routes(netns::routes::SERVICE_PROTOCOL, &[]) {
            tracing::warn!(error = %crate::errors::error_chain(&e),
                "cannot remove an earlier route to the load balancers");
        }
        let listeners = tokio::spawn(crate::elb::dataplane::run(elb.clone(), names.clone()));
        let meters = match listen_meters(run_root) {
            Ok(l) => Some(tokio::spawn(answer_meters(l, elb.clone()))),
            Err(e) => {
                tracing::warn!(path = %meters_socket(run_root).display(), error = %e,
                    "the load balancers' counts of this box cannot be asked for: CloudWatch lacks its traffic");
                None
            }
        };
        Balancers {
            elb,
            names,
            listeners,
            meters,
            socket: meters_socket(run_root),
            config: Vec::new(),
            health: Vec::new(),
        }
    }

    /// Follows the keys under [`keys::elb`] as read (`kvs`): a new configuration is
    /// routed by (the listeners, addresses and names follow), then the health (again
    /// after a new configuration: a target it adds starts `initial`). A key that does not
    /// decode is logged and the box keeps routing by what it had.
    pub fn apply(&mut self, kvs: &[Kv]) {
        let value = |key: String| {
            kvs.iter()
                .find(|kv| kv.key == key)
                .map(|kv| kv.value.clone())
                .unwrap_or_default()
        };
        let (config, health) = (value(keys::elb_config()), value(keys::elb_health()));
        let mut routed_anew = false;
        if config != self.config {
            let c = if config.is_empty() {
                Ok(Config {
                    format: crate::elb::snapshot::FORMAT,
                    ..Config::default()
                })
            } else {
                serde_json::from_slice::<Config>(&config).map_err(|e| e.to_string())
            };
            match c.map(|c| self.elb.apply_config(&c).map_err(|e| e.to_string())) {
                Ok(Ok(())) => {
                    self.config = config;
                    routed_anew = true;
                }
                Ok(Err(e)) | Err(e) => {
                    tracing::warn!(error = %e, "the cluster's load balancers in etcd cannot be routed by: this box keeps the last ones");
                    // Said once for this value.
                    self.config = config;
                }
            }
        }
        if health != self.health || routed_anew {
            match serde_json::from_slice::<Vec<crate::elb::PublishedHealth>>(&health) {
                Ok(rows) => self.elb.take_health(&rows),
                Err(_) if health.is_empty() => {}
                Err(e) => {
                    tracing::warn!(error = %e, "the targets' health in etcd does not decode: this box keeps the last")
                }
            }
            self.health = health;
        }
    }
}

impl Drop for Balancers {
    /// The data plane stops: the listeners end, the addresses leave `lo`, the names the
    /// hosts file and the DNS table, the counts' socket its directory.
    fn drop(&mut self) {
        self.listeners.abort();
        if let Some(m) = &self.meters {
            m.abort();
            let _ = std::fs::remove_file(&self.socket);
        }
        self.names.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}
