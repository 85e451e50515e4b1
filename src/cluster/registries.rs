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

/// This serve's name in the cluster's registries: `<host>-<pid>`.
pub fn this_serve() -> String {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}-{}", std::process::id())
}

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

/// The header a serve's fetch from another serve carries: the other answers with what it
/// holds, never asking a third (two serves never ask each other in a loop).
pub const PEER_HEADER: &str = "x-minifargate-peer";

/// The most operations one etcd transaction takes (etcd's `--max-txn-ops`: 128).
const CHUNK: usize = 100;

/// How long a fetch from another serve may take to connect, and to send the whole blob.
const FETCH_CONNECT: Duration = Duration::from_secs(3);
const FETCH_TOTAL: Duration = Duration::from_secs(600);

/// This serve's side of the cluster's registry (docs/registry.md "One registry for the
/// whole cluster"): the rows it publishes and applies, the blobs it fetches.
struct Shared {
    etcd: &'static Etcd,
    /// This serve's advertisement name (`<host>-<pid>`): not fetched from.
    me: String,
    /// For each row key, the etcd revision of the value this serve's copy has: a change
    /// from the watch at or below it is older than what this serve has (its own write's
    /// echo, or a change its own write followed) and is not applied.
    have: std::sync::Mutex<std::collections::HashMap<String, i64>>,
}

/// Runs `f` on a thread of its own, waiting for it: the registry's hooks are called from
/// blocking threads and from the runtime's (its connection handed back), and block_on
/// may be called from neither.
fn off_thread<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(f)
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

fn row_key(r: &crate::ecr::shared::SharedRow) -> String {
    keys::ecr_row(&r.table, &r.key)
}

impl Shared {
    fn have(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, i64>> {
        self.have.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether change `r` of the cluster is newer than this serve's copy (and then notes
    /// that the copy has it).
    fn newer(&self, r: &crate::ecr::shared::SharedRow) -> bool {
        let mut have = self.have();
        let k = row_key(r);
        if have.get(&k).is_some_and(|h| *h >= r.revision) {
            return false;
        }
        have.insert(k, r.revision);
        true
    }

    async fn put_rows(&self, rows: &[crate::ecr::shared::SharedRow]) -> Result<(), EtcdError> {
        use super::etcd::Op;
        for chunk in rows.chunks(CHUNK) {
            let ops: Vec<Op> = chunk
                .iter()
                .map(|r| match &r.row {
                    Some(row) => Op::Put(row_key(r), serde_json::to_vec(row).unwrap_or_default()),
                    None => Op::Delete(row_key(r)),
                })
                .collect();
            let (_, rev) = self.etcd.txn_at(&[], &ops).await?;
            let mut have = self.have();
            for r in chunk {
                have.insert(row_key(r), rev);
            }
        }
        Ok(())
    }

    /// [`Shared::put_rows`] in one transaction that holds only while row `guard` is in
    /// etcd what this serve's copy has (unchanged since the revision the copy has, or
    /// absent when the copy never had it): `None` once put; else the rows' keys as etcd
    /// has them now (the copy then takes them).
    async fn put_rows_unless_changed(
        &self,
        rows: &[crate::ecr::shared::SharedRow],
        guard: &str,
    ) -> Result<Option<Vec<crate::ecr::shared::SharedRow>>, EtcdError> {
        use super::etcd::{Compare, Op};
        if rows.len() > CHUNK {
            self.put_rows(rows).await?;
            return Ok(None);
        }
        let compare = match self.have().get(guard) {
            Some(rev) => Compare::UnchangedUnderSince(guard.to_string(), *rev),
            None => Compare::Absent(guard.to_string()),
        };
        let ops: Vec<Op> = rows
            .iter()
            .map(|r| match &r.row {
                Some(row) => Op::Put(row_key(r), serde_json::to_vec(row).unwrap_or_default()),
                None => Op::Delete(row_key(r)),
            })
            .collect();
        let (ok, rev) = self.etcd.txn_at(&[compare], &ops).await?;
        if ok {
            let mut have = self.have();
            for r in rows {
                have.insert(row_key(r), rev);
            }
            return Ok(None);
        }
        let mut theirs = Vec::new();
        for r in rows {
            let k = row_key(r);
            let kv = self.etcd.get(&k).await?;
            let row = kv
                .as_ref()
                .and_then(|kv| serde_json::from_slice(&kv.value).ok());
            if let Some(kv) = &kv {
                self.have().insert(k, kv.mod_revision);
            }
            theirs.push(crate::ecr::shared::SharedRow {
                row,
                revision: kv.map(|kv| kv.mod_revision).unwrap_or_default(),
                ..r.clone()
            });
        }
        Ok(Some(theirs))
    }

    /// Blob `d` of `repo` from the first other serve that has it, into `into`.
    async fn fetch(
        &self,
        repo: &crate::ecr::RepoName,
        d: &crate::ecr::Digest,
        into: &std::path::Path,
    ) -> Result<(), String> {
        let ads = read(self.etcd)
            .await
            .map_err(|e| format!("cannot read the serves' advertisements: {e}"))?;
        let mut tried = Vec::new();
        for ad in ads.iter().filter(|a| a.serve != self.me) {
            match fetch_from(ad, repo, d, into).await {
                Ok(()) => return Ok(()),
                Err(why) => {
                    let _ = std::fs::remove_file(into);
                    tried.push(format!("{} at {}: {why}", ad.serve, ad.endpoint));
                }
            }
        }
        if tried.is_empty() {
            return Err("no other serve of the cluster advertises its registry \
                 (the serves that held it are gone)"
                .into());
        }
        Err(format!("tried {}", tried.join("; ")))
    }
}

/// One GET of blob `d` from serve `ad`'s registry, with its pull-only token, its CA as
/// the only root, the body streamed into `into`.
async fn fetch_from(
    ad: &ClusterRegistry,
    repo: &crate::ecr::RepoName,
    d: &crate::ecr::Digest,
    into: &std::path::Path,
) -> Result<(), String> {
    let mut b = reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(FETCH_CONNECT)
        .timeout(FETCH_TOTAL);
    if let Some(pem) = &ad.ca_pem {
        let ca = reqwest::Certificate::from_pem(pem.as_bytes())
            .map_err(|e| format!("its CA does not decode: {e}"))?;
        b = b.tls_built_in_root_certs(false).add_root_certificate(ca);
    }
    let client = b.build().map_err(|e| e.to_string())?;
    let mut req = client
        .get(format!("https://{}/v2/{repo}/blobs/{d}", ad.endpoint))
        .header(PEER_HEADER, "1");
    if let (Some(u), Some(p)) = (&ad.username, &ad.password) {
        req = req.basic_auth(u, Some(p));
    }
    let mut resp = req
        .send()
        .await
        .map_err(|e| crate::errors::error_chain(&e))?;
    if !resp.status().is_success() {
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        let code = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["errors"][0]["code"].as_str().map(str::to_string))
            .unwrap_or_default();
        return Err(format!("{status} {code}"));
    }
    use std::io::Write;
    let mut f = std::fs::File::create_new(into).map_err(|e| format!("{}: {e}", into.display()))?;
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| crate::errors::error_chain(&e))?
    {
        f.write_all(&chunk)
            .map_err(|e| format!("{}: {e}", into.display()))?;
    }
    Ok(())
}

/// The registry's hook into the cluster (crate::ecr::shared::Cluster).
struct Hook(std::sync::Arc<Shared>);

impl crate::ecr::shared::Cluster for Hook {
    fn publish(&self, rows: Vec<crate::ecr::shared::SharedRow>) {
        let s = &self.0;
        if let Err(e) = off_thread(|| super::block_on(s.put_rows(&rows))) {
            tracing::error!(error = %crate::errors::error_chain(&e), rows = rows.len(),
                "the cluster did not take this serve's registry change (etcd out of reach?): \
                 the other serves do not see it until it is made again");
        }
    }

    fn publish_unless_changed(
        &self,
        rows: Vec<crate::ecr::shared::SharedRow>,
        table: &str,
        key: &str,
    ) -> Result<Option<Vec<crate::ecr::shared::SharedRow>>, String> {
        let s = &self.0;
        let guard = keys::ecr_row(table, key);
        off_thread(|| super::block_on(s.put_rows_unless_changed(&rows, &guard)))
            .map_err(|e| crate::errors::error_chain(&e))
    }

    fn fetch(
        &self,
        repo: &crate::ecr::RepoName,
        d: &crate::ecr::Digest,
        into: &std::path::Path,
    ) -> Result<(), String> {
        let s = &self.0;
        off_thread(|| super::block_on(s.fetch(repo, d, into)))
    }
}

/// The rows under `ecr/rows/` as the registry's, with their revisions.
fn decode(
    kv_key: &str,
    value: Option<&[u8]>,
    revision: i64,
) -> Option<crate::ecr::shared::SharedRow> {
    let (table, key) = keys::parse_ecr_row(kv_key)?;
    let row = match value {
        None => None,
        Some(v) => match serde_json::from_slice(v) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(key = kv_key, error = %e, "ignoring a registry row that does not decode");
                return None;
            }
        },
    };
    Some(crate::ecr::shared::SharedRow {
        table: table.into(),
        key: key.into(),
        row,
        revision,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum ShareError {
    #[error("cannot read or write the cluster's registry rows in etcd")]
    Etcd(#[from] EtcdError),
    #[error("cannot apply the cluster's registry rows to this serve's registry.db")]
    Registry(#[from] crate::ecr::RegistryError),
    #[error("applying the cluster's registry rows: the thread failed: {0}")]
    Thread(String),
    #[error("cannot write {path}")]
    Marker {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Makes `reg` the cluster's registry: its repositories, settings, manifests and tags
/// from etcd (the first serve of a cluster, finding none there, publishes its own), its
/// changes to etcd from now on, the other serves' changes applied as they come (a task
/// of `rt`, forever), and a blob it lacks fetched from another serve. `me` is this serve's
/// advertisement name.
pub async fn share(
    etcd: &'static Etcd,
    reg: std::sync::Arc<crate::ecr::Registry>,
    me: String,
) -> Result<tokio::task::JoinHandle<()>, ShareError> {
    let shared = std::sync::Arc::new(Shared {
        etcd,
        me,
        have: Default::default(),
    });
    // The cluster's registry id, and whether this registry.db joined it before: a serve
    // joining for the first time (the cluster's first serve, or a serve that was a
    // registry of its own) adds the rows etcd lacks, so its images become the cluster's
    // and none is lost; a serve that had joined takes etcd's rows as they are (what the
    // cluster deleted meanwhile stays deleted).
    let id = {
        let mut b = [0u8; 16];
        getrandom::getrandom(&mut b).expect("the kernel's random numbers");
        hex::encode(b)
    };
    etcd.put_if_absent(&keys::ecr_id(), id.as_bytes()).await?;
    let id = etcd
        .get(&keys::ecr_id())
        .await?
        .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
        .unwrap_or(id);
    let marker = reg.dir().join("cluster-id");
    let joined = std::fs::read_to_string(&marker).is_ok_and(|m| m.trim() == id);
    let (mut kvs, mut rev) = etcd.get_prefix_at(&keys::ecr_rows()).await?;
    if !joined {
        let reg2 = reg.clone();
        let rows = tokio::task::spawn_blocking(move || reg2.shared_rows())
            .await
            .map_err(|e| ShareError::Thread(e.to_string()))??;
        let there: std::collections::HashSet<&str> = kvs.iter().map(|kv| kv.key.as_str()).collect();
        let new: Vec<_> = rows
            .into_iter()
            .filter(|r| !there.contains(row_key(r).as_str()))
            .collect();
        let mut added = 0;
        for r in &new {
            let value = serde_json::to_vec(&r.row).unwrap_or_default();
            if etcd.put_if_absent(&row_key(r), &value).await? {
                added += 1;
            }
        }
        if added > 0 {
            tracing::info!(
                rows = added,
                "this serve's registry joined the cluster's: its repositories, manifests and tags the cluster lacked are the cluster's now"
            );
        }
        std::fs::write(&marker, &id).map_err(|e| ShareError::Marker {
            path: marker.clone(),
            source: e,
        })?;
        (kvs, rev) = etcd.get_prefix_at(&keys::ecr_rows()).await?;
    }
    snapshot(&shared, &reg, kvs, rev).await?;
    reg.share(Box::new(Hook(shared.clone())))?;
    Ok(tokio::spawn(follow_rows(shared, reg, rev + 1)))
}

/// Makes this serve's copy the cluster's rows `kvs` read at `rev`.
async fn snapshot(
    shared: &std::sync::Arc<Shared>,
    reg: &std::sync::Arc<crate::ecr::Registry>,
    kvs: Vec<super::etcd::Kv>,
    rev: i64,
) -> Result<(), ShareError> {
    let rows: Vec<_> = kvs
        .iter()
        .filter_map(|kv| decode(&kv.key, Some(&kv.value), kv.mod_revision))
        .collect();
    let (s, r) = (shared.clone(), reg.clone());
    let n = tokio::task::spawn_blocking(move || {
        r.apply_shared(rows, Some(rev), &mut |row| s.newer(row))
    })
    .await
    .map_err(|e| ShareError::Thread(e.to_string()))??;
    tracing::info!(
        rows = n,
        rev,
        "this serve's registry rows are the cluster's"
    );
    Ok(())
}

/// Applies the other serves' changes from revision `from` on, forever; a watch that ends
/// (compacted) is a snapshot again.
async fn follow_rows(
    shared: std::sync::Arc<Shared>,
    reg: std::sync::Arc<crate::ecr::Registry>,
    mut from: i64,
) {
    use super::etcd::{Event, WatchEnd};
    let prefix = keys::ecr_rows();
    loop {
        let mut w = match shared.etcd.watch(&prefix, from).await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %crate::errors::error_chain(&e), "cannot watch the cluster's registry rows: again in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        loop {
            match w.next().await {
                Ok(events) => {
                    let rows: Vec<_> = events
                        .iter()
                        .filter_map(|e| match e {
                            Event::Put(kv) => decode(&kv.key, Some(&kv.value), kv.mod_revision),
                            Event::Delete { key, revision } => decode(key, None, *revision),
                        })
                        .collect();
                    let last = events.iter().map(Event::revision).max();
                    if !rows.is_empty() {
                        let (s, r) = (shared.clone(), reg.clone());
                        let applied = tokio::task::spawn_blocking(move || {
                            r.apply_shared(rows, None, &mut |row| s.newer(row))
                        })
                        .await;
                        match applied {
                            Ok(Ok(_)) => {}
                            Ok(Err(e)) => tracing::error!(error = %crate::errors::error_chain(&e),
                                "cannot apply the cluster's registry rows"),
                            Err(e) => {
                                tracing::error!(error = %e, "cannot apply the cluster's registry rows")
                            }
                        }
                    }
                    if let Some(l) = last {
                        from = from.max(l + 1);
                    }
                }
                Err(WatchEnd::Compacted { .. }) => {
                    match shared.etcd.get_prefix_at(&prefix).await {
                        Ok((kvs, rev)) => match snapshot(&shared, &reg, kvs, rev).await {
                            Ok(()) => from = rev + 1,
                            Err(e) => tracing::error!(error = %crate::errors::error_chain(&e),
                                "cannot take the cluster's registry rows again"),
                        },
                        Err(e) => tracing::warn!(error = %crate::errors::error_chain(&e),
                            "cannot read the cluster's registry rows"),
                    }
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %crate::errors::error_chain(&e), "the registry rows' watch ended: again");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    break;
                }
            }
        }
    }
}
