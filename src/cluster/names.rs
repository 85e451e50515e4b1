//! Cloud Map's DNS names across a cluster (docs/service-discovery.md "Cluster mode"): the
//! leader's serve, which registers every box's service tasks as instances, writes the
//! names its DNS namespaces answer (a `crate::dns::Source`, JSON) to one etcd key
//! ([`keys::dns_cloudmap`]); each box's data plane runs the tasks' DNS server on its task
//! bridge's gateway (as a one-box `serve` does on its bridge), answering from that key,
//! and announces it to the supervisors of new tasks, so their resolv.conf points at it.
//! Names of no namespace are forwarded to the box's own resolvers. The same way the
//! leader publishes Service Connect's aliases with their tasks (each box listens for them
//! on its bridge's gateway, as a one-box `serve` does:
//! `crate::servicediscovery::connect::Proxies`), and the load balancers with their
//! targets' health (each box runs their listeners: [`super::balancers`]).

use super::etcd::{Etcd, EtcdError};
use super::keys;
use crate::dns::{Records, Source};
use crate::servicediscovery::connect::{Alias, Proxies};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// How often a box reads the names.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);

/// The leader: makes `source` the cluster's Cloud Map names (when etcd has others).
pub async fn publish(etcd: &Etcd, source: &Source) -> Result<(), EtcdError> {
    super::balancers::put_json(etcd, &keys::dns_cloudmap(), source)
        .await
        .map(drop)
}

/// The leader: publishes Service Connect's aliases (by port) with their tasks.
pub async fn publish_aliases(etcd: &Etcd, aliases: &BTreeMap<u16, Alias>) -> Result<(), EtcdError> {
    if super::balancers::put_json(etcd, &keys::dns_serviceconnect(), aliases).await? {
        let shown: Vec<String> = aliases
            .iter()
            .map(|(port, a)| format!("{}:{port} ({} tasks)", a.dns_name, a.targets.len()))
            .collect();
        tracing::info!(aliases = %format!("[{}]", shown.join(", ")),
            "Service Connect aliases published to the boxes");
    }
    Ok(())
}

/// A box: the tasks' DNS server on the gateway of its task bridge (made if missing) in
/// `subnet`, answering the cluster's Cloud Map names and load balancers' names, the load
/// balancers' listeners on the box's `lo` and their names in the box's hosts file
/// ([`super::balancers`]), and Service Connect's aliases on the gateway; runs until
/// aborted (the server, its announcement, the listeners, addresses and names go when the
/// returned future is dropped).
pub async fn serve_tasks(etcd: Etcd, run_root: std::path::PathBuf, subnet: netns::Subnet) {
    let bridge = crate::config::get().bridge.clone();
    let net = match crate::supervisor::isolation::network::open(&run_root, &bridge, subnet) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %crate::errors::error_chain(&e),
                "no DNS server for tasks: cannot open the task network (Cloud Map names unresolved in tasks)");
            return;
        }
    };
    if let Err(e) = net.ensure_bridge() {
        tracing::warn!(%bridge, error = %crate::errors::error_chain(&e),
            "no DNS server for tasks: cannot make the task bridge");
        return;
    }
    let records = Arc::new(Records::default());
    let addr = std::net::SocketAddr::from((subnet.gateway(), 53));
    let upstreams = Arc::new(crate::dns::Upstreams::new("/etc/resolv.conf".into()));
    let allowed = crate::dns::Allowed {
        net: subnet.network(),
        prefix: subnet.prefix(),
    };
    let mut server =
        match crate::dns::Server::start(addr, records.clone(), upstreams, allowed).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %crate::errors::error_chain(&e),
                    "no DNS server for tasks: they use the box's resolvers");
                return;
            }
        };
    let marker = crate::dns::marker_path(&crate::supervisor::isolation::network::state_dir(
        &run_root, &bridge,
    ));
    if let Err(e) = server.announce(&marker) {
        tracing::warn!(error = %crate::errors::error_chain(&e),
            "cannot announce the DNS server to tasks");
    }
    let mut follower = Follower {
        balancers: super::balancers::Balancers::start(
            records.clone(),
            crate::config::get().hosts_file.clone(),
            &format!("{} (agent)", run_root.display()),
            &run_root,
        ),
        records,
        proxies: Proxies::new(subnet.gateway()),
        have: BTreeMap::new(),
    };
    let mut tick = tokio::time::interval(FOLLOW_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tick.tick().await;
        let read = async {
            Ok::<_, EtcdError>((
                etcd.get_prefix(&keys::dns()).await?,
                etcd.get_prefix(&keys::elb()).await?,
            ))
        };
        match read.await {
            Ok((names, balancers)) => {
                failing = false;
                follower.balancers.apply(&balancers);
                follower.apply(names).await
            }
            // Said once a streak: the box answers (and its listeners route) from its
            // copy meanwhile.
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %crate::errors::error_chain(&e),
                    "cannot read the cluster's names and load balancers: tasks get the last ones read");
            }
            Err(_) => {}
        }
    }
}

/// What a box made of the keys under `dns/` and `elb/`.
struct Follower {
    records: Arc<Records>,
    proxies: Proxies,
    /// The value of each key under `dns/` as last applied.
    have: BTreeMap<String, Vec<u8>>,
    /// The load balancers' listeners, addresses and names.
    balancers: super::balancers::Balancers,
}

impl Follower {
    async fn apply(&mut self, kvs: Vec<super::etcd::Kv>) {
        let got: BTreeMap<String, Vec<u8>> = kvs.into_iter().map(|kv| (kv.key, kv.value)).collect();
        for key in [keys::dns_cloudmap(), keys::dns_serviceconnect()] {
            let value = got.get(&key).cloned().unwrap_or_default();
            if self.have.get(&key) == Some(&value) {
                continue;
            }
            self.have.insert(key.clone(), value.clone());
            if key == keys::dns_cloudmap() {
                match decode::<Source>(&value, "Cloud Map names") {
                    Some(source) => self.records.replace_source("cloudmap", source),
                    None => continue,
                }
            } else {
                let Some(aliases) =
                    decode::<BTreeMap<u16, Alias>>(&value, "Service Connect aliases")
                else {
                    continue;
                };
                let names = self.proxies.apply(&aliases).await;
                self.records
                    .replace(crate::servicediscovery::connect::SOURCE, names);
            }
        }
    }
}

/// `value` decoded (empty: the default, nothing published); None, logged, when it does
/// not decode.
fn decode<T: serde::de::DeserializeOwned + Default>(value: &[u8], what: &str) -> Option<T> {
    if value.is_empty() {
        return Some(T::default());
    }
    match serde_json::from_slice(value) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(error = %e, "the cluster's {what} in etcd do not decode");
            None
        }
    }
}
