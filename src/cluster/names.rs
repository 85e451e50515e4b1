//! Cloud Map's DNS names across a cluster (docs/service-discovery.md "Cluster mode"): the
//! leader's serve, which registers every box's service tasks as instances, writes the
//! names its DNS namespaces answer (a `crate::dns::Source`, JSON) to one etcd key
//! ([`keys::dns_cloudmap`]); each box's agent runs the tasks' DNS server on its task
//! bridge's gateway (as a one-box `serve` does on its bridge), answering from that key,
//! and announces it to the supervisors of new tasks, so their resolv.conf points at it.
//! Names of no namespace are forwarded to the box's own resolvers. The leader publishes
//! its load balancers' target health the same way, for the other serves.

use super::etcd::{Etcd, EtcdError};
use super::keys;
use crate::dns::{Records, Source};
use std::sync::Arc;
use std::time::Duration;

/// How often a box reads the names.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);

/// The leader: makes `source` the cluster's Cloud Map names (when etcd has others).
pub async fn publish(etcd: &Etcd, source: &Source) -> Result<(), EtcdError> {
    put_json(etcd, &keys::dns_cloudmap(), source).await
}

/// The leader: makes `health` the load balancers' target health the other serves answer
/// DescribeTargetHealth with (when etcd has another).
pub async fn publish_health(
    etcd: &Etcd,
    health: &[crate::elb::PublishedHealth],
) -> Result<(), EtcdError> {
    put_json(etcd, &keys::elb_health(), &health).await
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

/// Puts `v` as JSON at `key`, unless etcd has it so already.
async fn put_json(etcd: &Etcd, key: &str, v: &impl serde::Serialize) -> Result<(), EtcdError> {
    let value = serde_json::to_vec(v).expect("a published value encodes");
    if etcd.get(key).await?.is_some_and(|kv| kv.value == value) {
        return Ok(());
    }
    etcd.put(key, &value, None).await
}

/// A box: the tasks' DNS server on the gateway of its task bridge (made if missing) in
/// `subnet`, answering the cluster's Cloud Map names; runs until aborted (the server
/// and its announcement go when the returned future is dropped).
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
    let mut have: Option<Vec<u8>> = None;
    let mut tick = tokio::time::interval(FOLLOW_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let value = match etcd.get(&keys::dns_cloudmap()).await {
            Ok(kv) => kv.map(|kv| kv.value).unwrap_or_default(),
            Err(e) => {
                tracing::debug!(error = %crate::errors::error_chain(&e), "cannot read the cluster's DNS names");
                continue;
            }
        };
        if have.as_ref() == Some(&value) {
            continue;
        }
        let source: Source = if value.is_empty() {
            Source::default()
        } else {
            match serde_json::from_slice(&value) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "the cluster's Cloud Map names in etcd do not decode");
                    have = Some(value);
                    continue;
                }
            }
        };
        records.replace_source("cloudmap", source);
        have = Some(value);
    }
}
