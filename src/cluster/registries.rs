//! The cluster's registries (docs/registry.md "A cluster's boxes"): every `serve
//! --cluster` puts its registry's advertisement (ECR host, the address the boxes reach it
//! at, its CA, a pull-only token) under `registries/<serve>`, attached to a lease of its
//! own, so it goes when the serve stops or dies (within [`TTL`]); every agent reads them
//! and writes them into its box's `registry/cluster.json`, which the box's pulls read
//! (`crate::task::local_registry`). A repository URI in a task definition then resolves,
//! on any box, to every serve's registry in turn (mirrors of the ECR host).

use super::etcd::{Etcd, EtcdError};
use super::keys;
use crate::task::local_registry::{ClusterRegistries, ClusterRegistry};
use std::path::PathBuf;
use std::time::Duration;

/// The advertisement's lease: a serve gone is no longer advertised after this long.
pub const TTL: u64 = 10;

/// How often an agent reads the advertisements.
const FOLLOW_EVERY: Duration = Duration::from_secs(2);

/// How often a serve puts its advertisement again with a fresh token (valid 12 h).
const REFRESH_EVERY: Duration = Duration::from_secs(3600);

/// The address the boxes reach a serve listening on `listen` at: the configured one,
/// the listen address when it is a specific one, else this machine's address toward
/// etcd (the source address of the route to its first endpoint) with serve's port.
pub fn advertised_address(
    configured: Option<&str>,
    listen: std::net::SocketAddr,
    etcd: &Etcd,
) -> Option<String> {
    if let Some(c) = configured {
        return Some(c.to_string());
    }
    if !listen.ip().is_unspecified() {
        return Some(listen.to_string());
    }
    let ip = super::subnets::box_address(None, etcd)?;
    Some(std::net::SocketAddr::from((ip, listen.port())).to_string())
}

/// Keeps this serve's advertisement in etcd, forever (the caller aborts it, then calls
/// [`withdraw`]): a lease of [`TTL`] s renewed every third of it, the key put again
/// with a fresh `make()` every hour and whenever the lease was lost (etcd out of reach
/// longer than the TTL).
pub async fn advertise(
    etcd: &'static Etcd,
    name: String,
    make: impl Fn() -> ClusterRegistry + Send + 'static,
) {
    let key = keys::registry(&name);
    let mut backoff = Duration::from_millis(250);
    loop {
        match term(etcd, &key, &make).await {
            Ok(()) => backoff = Duration::from_millis(250),
            Err(e) => {
                tracing::warn!(error = %crate::errors::error_chain(&e), key,
                    "cannot advertise the registry to the cluster's boxes: again");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// One lease: put, renewed until it is lost (then `Ok`, to grant another) or etcd fails.
async fn term(
    etcd: &Etcd,
    key: &str,
    make: &impl Fn() -> ClusterRegistry,
) -> Result<(), EtcdError> {
    let lease = etcd.grant(TTL).await?;
    let put = |lease| async move {
        let value = serde_json::to_vec(&make()).unwrap_or_default();
        etcd.put(key, &value, Some(lease)).await
    };
    put(lease).await?;
    tracing::info!(key, "the registry is advertised to the cluster's boxes");
    let mut renew = tokio::time::interval(Duration::from_secs(TTL) / 3);
    renew.tick().await;
    let mut refreshed = tokio::time::Instant::now();
    loop {
        renew.tick().await;
        if etcd.keep_alive(lease).await?.is_none() {
            tracing::warn!(key, "the registry's advertisement lease expired: put again");
            return Ok(());
        }
        if refreshed.elapsed() >= REFRESH_EVERY {
            put(lease).await?;
            refreshed = tokio::time::Instant::now();
        }
    }
}

/// Removes this serve's advertisement (serve stopping): the boxes stop pulling from it
/// at their next read, not a lease TTL later.
pub async fn withdraw(etcd: &Etcd, name: &str) {
    let key = keys::registry(name);
    match tokio::time::timeout(Duration::from_secs(3), etcd.delete(&key)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!(error = %crate::errors::error_chain(&e), key,
            "could not withdraw the registry's advertisement: it goes with its lease"),
        Err(_) => tracing::warn!(
            key,
            "etcd did not answer the withdrawal in 3 s: the advertisement goes with its lease"
        ),
    }
}

/// The advertisements under `registries/` (those that do not decode are skipped, said).
async fn read(etcd: &Etcd) -> Result<Vec<ClusterRegistry>, EtcdError> {
    let mut out = Vec::new();
    for kv in etcd.get_prefix(&keys::registries()).await? {
        match serde_json::from_slice::<ClusterRegistry>(&kv.value) {
            Ok(r) => out.push(r),
            Err(e) => tracing::warn!(key = kv.key, error = %e,
                "ignoring a registry advertisement that does not decode"),
        }
    }
    Ok(out)
}

/// The agent's side: reads the advertisements every [`FOLLOW_EVERY`] and writes them
/// for the box's pulls when they change; forever (the caller aborts it and removes the
/// file). etcd out of reach keeps the file as it was (its tokens expire on their own).
pub async fn follow(etcd: Etcd, root: PathBuf) {
    let mut last: Option<Vec<ClusterRegistry>> = None;
    let mut failing = false;
    loop {
        match read(&etcd).await {
            Ok(now) => {
                failing = false;
                if last.as_ref() != Some(&now) {
                    let file = ClusterRegistries {
                        pid: std::process::id(),
                        registries: now.clone(),
                    };
                    let root2 = root.clone();
                    match tokio::task::spawn_blocking(move || file.write(&root2)).await {
                        Ok(Ok(())) => {
                            tracing::info!(
                                registries = %now.iter().map(|r| format!("{} ({})", r.endpoint, r.serve)).collect::<Vec<_>>().join(", "),
                                "the cluster's registries for this box's pulls"
                            );
                            last = Some(now);
                        }
                        Ok(Err(e)) => tracing::warn!(error = %e,
                            "cannot write registry/cluster.json: this box's pulls will not find the cluster's registries"),
                        Err(_) => {}
                    }
                }
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %crate::errors::error_chain(&e),
                        "cannot read the cluster's registries (a box bundle made before them \
                         lacks the permission: run `cluster enable-auth` again)");
                }
                failing = true;
            }
        }
        tokio::time::sleep(FOLLOW_EVERY).await;
    }
}
