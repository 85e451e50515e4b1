//! Cloud Map's DNS names across a cluster (docs/service-discovery.md "Cluster mode"): the
//! leader's serve, which registers every box's service tasks as instances, writes the
//! names its DNS namespaces answer (a `crate::dns::Source`, JSON) to one etcd key
//! ([`keys::dns_cloudmap`]); each box's agent runs the tasks' DNS server on its task
//! bridge's gateway (as a one-box `serve` does on its bridge), answering from that key,
//! and announces it to the supervisors of new tasks, so their resolv.conf points at it.
//! Names of no namespace are forwarded to the box's own resolvers. The same way the
//! leader publishes its load balancers' names and addresses with the address the boxes
//! route them via (its own, [`LoadBalancers`]: each box answers the names and routes the
//! load balancers' range there), and Service Connect's aliases with their tasks (each box
//! listens for them on its bridge's gateway, as a one-box `serve` does:
//! `crate::servicediscovery::connect::Proxies`); and its load balancers' target health,
//! for the other serves.

use super::etcd::{Etcd, EtcdError};
use super::keys;
use crate::dns::{Records, Source};
use crate::servicediscovery::connect::{Alias, Proxies};
use netns::routes::PeerRoute;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

/// How often a box reads the names.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);

/// The leader: makes `source` the cluster's Cloud Map names (when etcd has others).
pub async fn publish(etcd: &Etcd, source: &Source) -> Result<(), EtcdError> {
    put_json(etcd, &keys::dns_cloudmap(), source)
        .await
        .map(drop)
}

/// The load balancers as the boxes need them: each one's `DNSName` and address, the range
/// of those addresses (`MINIFARGATE_LB_SUBNET`), and the address of the leader's serve
/// the boxes route that range via (none: the leader found no box to reach).
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LoadBalancers {
    pub names: BTreeMap<String, Ipv4Addr>,
    pub subnet: String,
    pub via: Option<Ipv4Addr>,
}

/// The leader: publishes its load balancers' `names` (name -> address) in `subnet`, with
/// the address the boxes reach this serve at ([`address_for_boxes`]).
pub async fn publish_load_balancers(
    etcd: &Etcd,
    names: BTreeMap<String, Ipv4Addr>,
    subnet: netns::Subnet,
) -> Result<(), EtcdError> {
    let via = address_for_boxes(etcd).await?;
    let lbs = LoadBalancers {
        names,
        subnet: subnet.to_string(),
        via,
    };
    if put_json(etcd, &keys::dns_elb(), &lbs).await? {
        tracing::info!(load_balancers = lbs.names.len(), via = ?lbs.via,
            "load balancers' names published to the boxes");
    }
    Ok(())
}

/// The leader: publishes Service Connect's aliases (by port) with their tasks.
pub async fn publish_aliases(etcd: &Etcd, aliases: &BTreeMap<u16, Alias>) -> Result<(), EtcdError> {
    if put_json(etcd, &keys::dns_serviceconnect(), aliases).await? {
        let shown: Vec<String> = aliases
            .iter()
            .map(|(port, a)| format!("{}:{port} ({} tasks)", a.dns_name, a.targets.len()))
            .collect();
        tracing::info!(aliases = %format!("[{}]", shown.join(", ")),
            "Service Connect aliases published to the boxes");
    }
    Ok(())
}

/// This host's address toward the boxes: the source address of its route to the first
/// box (in `subnets/`) that is not this host itself (no packet is sent); none when every
/// box is this host or there is none.
async fn address_for_boxes(etcd: &Etcd) -> Result<Option<Ipv4Addr>, EtcdError> {
    let kvs = etcd.get_prefix(&keys::subnets()).await?;
    let mut boxes: Vec<Ipv4Addr> = kvs
        .iter()
        .filter_map(|kv| serde_json::from_slice::<super::subnets::Holder>(&kv.value).ok())
        .filter_map(|h| h.address)
        .collect();
    boxes.sort();
    boxes.dedup();
    Ok(boxes
        .into_iter()
        .filter(|a| !super::subnets::local(*a))
        .find_map(|a| {
            let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
            s.connect((a, 9)).ok()?;
            match s.local_addr().ok()?.ip() {
                IpAddr::V4(v) if !v.is_loopback() => Some(v),
                _ => None,
            }
        }))
}

/// The leader: makes `health` the load balancers' target health the other serves answer
/// DescribeTargetHealth with (when etcd has another).
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
async fn put_json(etcd: &Etcd, key: &str, v: &impl serde::Serialize) -> Result<bool, EtcdError> {
    let value = serde_json::to_vec(v).expect("a published value encodes");
    if etcd.get(key).await?.is_some_and(|kv| kv.value == value) {
        return Ok(false);
    }
    etcd.put(key, &value, None).await.map(|()| true)
}

/// A box: the tasks' DNS server on the gateway of its task bridge (made if missing) in
/// `subnet`, answering the cluster's Cloud Map names and load balancers' names, the route
/// to the load balancers and their names in the box's hosts file, and Service Connect's
/// aliases on the gateway; runs until
/// aborted (the server, its announcement and the aliases' listeners go when the
/// returned future is dropped; the route goes with the others,
/// `super::subnets::remove_routes`).
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
        records,
        proxies: Proxies::new(subnet.gateway()),
        have: BTreeMap::new(),
        routed: None,
        hosts: crate::config::get().hosts_file.clone(),
        tag: format!("{} (agent)", run_root.display()),
        named: false,
    };
    let mut tick = tokio::time::interval(FOLLOW_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tick.tick().await;
        match etcd.get_prefix(&keys::dns()).await {
            Ok(kvs) => {
                failing = false;
                follower.apply(kvs).await
            }
            // Said once a streak: the box answers from its copy meanwhile.
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %crate::errors::error_chain(&e),
                    "cannot read the cluster's names: tasks get the last ones read");
            }
            Err(_) => {}
        }
    }
}

/// What a box made of the keys under `dns/`.
struct Follower {
    records: Arc<Records>,
    proxies: Proxies,
    /// The value of each key as last applied.
    have: BTreeMap<String, Vec<u8>>,
    /// The route to the load balancers as last made.
    routed: Option<Vec<PeerRoute>>,
    /// The box's hosts file (`MINIFARGATE_HOSTS_FILE`), where the load balancers' names
    /// go for the box itself, in a block of this agent's (`tag`); whether one is there.
    hosts: Option<std::path::PathBuf>,
    tag: String,
    named: bool,
}

impl Drop for Follower {
    /// The agent stops: its block of load balancers' names leaves the hosts file.
    fn drop(&mut self) {
        if let (Some(path), true) = (&self.hosts, self.named) {
            let _ = crate::elb::names::write_block(path, &self.tag, &BTreeMap::new());
        }
    }
}

impl Follower {
    async fn apply(&mut self, kvs: Vec<super::etcd::Kv>) {
        let got: BTreeMap<String, Vec<u8>> = kvs.into_iter().map(|kv| (kv.key, kv.value)).collect();
        for key in [
            keys::dns_cloudmap(),
            keys::dns_elb(),
            keys::dns_serviceconnect(),
        ] {
            let value = got.get(&key).cloned().unwrap_or_default();
            let same = self.have.get(&key) == Some(&value);
            // The route is made again until it is in place.
            if same && (key != keys::dns_elb() || self.routed.is_some()) {
                continue;
            }
            self.have.insert(key.clone(), value.clone());
            if key == keys::dns_cloudmap() {
                match decode::<Source>(&value, "Cloud Map names") {
                    Some(source) => self.records.replace_source("cloudmap", source),
                    None => continue,
                }
            } else if key == keys::dns_elb() {
                let Some(lbs) = decode::<LoadBalancers>(&value, "load balancers") else {
                    continue;
                };
                self.records.replace(
                    "elb",
                    lbs.names
                        .iter()
                        .map(|(n, ip)| {
                            (
                                n.clone(),
                                vec![crate::dns::Record {
                                    data: crate::dns::Data::A(*ip),
                                    ttl: crate::elb::names::TTL,
                                }],
                            )
                        })
                        .collect(),
                );
                self.route(&lbs);
                if let Some(path) = &self.hosts {
                    match crate::elb::names::write_block(path, &self.tag, &lbs.names) {
                        Ok(()) => self.named = !lbs.names.is_empty(),
                        Err(e) => tracing::warn!(error = %crate::errors::error_chain(&e),
                            "cannot write the load balancers' names in the hosts file"),
                    }
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

    /// Routes the load balancers' range via the leader's box (nothing when that is this
    /// box: the addresses are its own; or when there is no load balancer).
    fn route(&mut self, lbs: &LoadBalancers) {
        let want: Vec<PeerRoute> = match (lbs.subnet.parse::<netns::Subnet>(), lbs.via) {
            (Ok(subnet), Some(via)) if !lbs.names.is_empty() && !super::subnets::local(via) => {
                vec![PeerRoute { subnet, via }]
            }
            _ => Vec::new(),
        };
        if self.routed.as_ref() == Some(&want) {
            return;
        }
        if !want.is_empty() {
            super::subnets::forwarding_on();
        }
        match netns::routes::sync_routes(netns::routes::SERVICE_PROTOCOL, &want) {
            Ok(failed) if failed.is_empty() => {
                let shown: Vec<String> = want.iter().map(|r| r.to_string()).collect();
                tracing::info!(route = %format!("[{}]", shown.join(", ")), "route to the load balancers");
                self.routed = Some(want);
            }
            Ok(failed) => {
                for (r, e) in &failed {
                    tracing::warn!(route = %r, error = %crate::errors::error_chain(e),
                        "cannot route the load balancers' addresses");
                }
                self.routed = None;
            }
            Err(e) => {
                tracing::warn!(error = %crate::errors::error_chain(&e), "cannot list this box's routes");
                self.routed = None;
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
