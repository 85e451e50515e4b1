//! The serves' leader (docs/cluster.md "The leader"): every `serve --cluster` answers the
//! API; one of them, elected through etcd, also runs what must run once — the reaper of
//! lost instances ([`Reaper`]). The election is etcd's usual one: a key created only if
//! absent (a transaction), attached to the candidate's lease; the others watch the key
//! and campaign again when it is deleted (the leader stopped and revoked its lease) or
//! expires with the lease (the leader died or was cut off). Killing the leader moves the
//! role within one lease TTL.

use super::etcd::{Compare, Etcd, EtcdError, Event, Op};
use super::keys;
use super::records::{Ledger, Record, decode, json_bytes, mark_stopped};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// How the leader is elected and what it does.
#[derive(Debug, Clone)]
pub struct Options {
    /// This serve's name in the leader key (host name and pid).
    pub name: String,
    /// The leadership lease's TTL (seconds).
    pub ttl: u64,
    /// How long an instance's agent may be disconnected before its tasks are STOPPED.
    pub lost_after: Duration,
}

/// Whether this serve leads now (its service scheduler runs only then).
static LEADING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether this serve is the cluster's leader now.
pub fn leading() -> bool {
    LEADING.load(std::sync::atomic::Ordering::SeqCst)
}

/// Follows [`leading`] (what runs only in the leader's serve: the load balancers' data
/// plane).
static LEADERSHIP: std::sync::LazyLock<tokio::sync::watch::Sender<bool>> =
    std::sync::LazyLock::new(|| tokio::sync::watch::Sender::new(false));

/// A receiver of this serve's leadership (true while it leads).
pub fn leadership() -> tokio::sync::watch::Receiver<bool> {
    LEADERSHIP.subscribe()
}

fn set_leading(on: bool) {
    LEADING.store(on, std::sync::atomic::Ordering::SeqCst);
    LEADERSHIP.send_replace(on);
}

/// How often the leader compacts etcd's history (to the revision it saw at the previous
/// compaction, so a watcher may fall this far behind and still resume), as
/// kube-apiserver does for its etcd.
const COMPACT_EVERY: Duration = Duration::from_secs(300);

/// How often the leader reads every key under the boxes' prefix (claims of instances,
/// task reports) besides watching it: a safety net for a change the watch did not pass
/// on (a fold that failed on an etcd error, a watch made again).
const BOXES_EVERY: Duration = Duration::from_secs(5);

/// How often the reaper looks at the instances.
const REAP_EVERY: Duration = Duration::from_secs(1);
/// How often the leader removes the records of tasks STOPPED longer than the retention.
const PRUNE_EVERY: Duration = Duration::from_secs(30);
/// How many tasks one reaping transaction stops (3 operations each: etcd takes 128 per
/// transaction by default).
const REAP_BATCH: usize = 40;

/// Campaigns, leads while elected, campaigns again when the role is lost; forever.
pub async fn run(etcd: &'static Etcd, o: Options) {
    let mut backoff = Duration::from_millis(250);
    loop {
        match term(etcd, &o).await {
            Ok(()) => backoff = Duration::from_millis(250),
            Err(e) => {
                tracing::warn!(error = %crate::errors::error_chain(&e),
                    retry_ms = backoff.as_millis() as u64, "cluster leader election failed: again");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum TermError {
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    #[error(transparent)]
    Watch(#[from] super::etcd::WatchEnd),
    #[error(transparent)]
    Users(#[from] super::users::UsersError),
}

/// One campaign: wins and leads until the lease is lost, or waits for the leader key to
/// go.
async fn term(etcd: &Etcd, o: &Options) -> Result<(), TermError> {
    // No lead on an etcd open to every certificate of the cluster (turned on here when
    // this serve can, refused otherwise: docs/security.md).
    super::users::ensure_auth(etcd).await?;
    // The cluster's token is made by a serve: a box's etcd user may read it, not make it.
    super::signing::token(etcd).await?;
    let key = keys::leader();
    let lease = etcd.grant(o.ttl).await?;
    if etcd
        .put_if_absent_with_lease(&key, o.name.as_bytes(), lease)
        .await?
    {
        tracing::info!(
            serve = %o.name,
            lost_after_s = o.lost_after.as_secs_f64(),
            "cluster leader: this serve; reaping instances disconnected that long"
        );
        set_leading(true);
        crate::ecs::services::changed();
        let ended = lead(etcd, o, lease).await;
        set_leading(false);
        let _ = etcd.revoke(lease).await;
        tracing::warn!(why = %ended, "cluster leader: this serve is no longer the leader");
        return Ok(());
    }
    let _ = etcd.revoke(lease).await;
    // Someone else leads: wait for the key to go.
    let Some(kv) = etcd.get(&key).await? else {
        return Ok(());
    };
    tracing::info!(leader = %String::from_utf8_lossy(&kv.value), "cluster leader: another serve");
    let mut watch = etcd.watch(&key, kv.mod_revision + 1).await?;
    loop {
        for e in watch.next().await? {
            if matches!(e, Event::Delete { .. }) {
                return Ok(());
            }
        }
    }
}

/// Leads: keeps the lease alive and, beside it, reaps and follows the boxes, until the
/// lease is lost; why it ended. The renewal is its own future, polled whenever its timer
/// fires: a pass of the leader's work that takes longer than the TTL (a slow etcd, a
/// machine under load, many boxes' claims at the start of a term) must not starve it, or
/// the leader loses its lease while busy and every new term starts the same long pass.
async fn lead(etcd: &Etcd, o: &Options, lease: i64) -> String {
    lead_with(etcd, o.ttl, lease, work(etcd, o)).await
}

/// [`lead`] with the leader's work given: `work` runs beside the renewal and is dropped
/// when the lease is lost.
async fn lead_with(
    etcd: &Etcd,
    ttl: u64,
    lease: i64,
    work: impl std::future::Future<Output = std::convert::Infallible>,
) -> String {
    tokio::select! {
        why = keep_lease(etcd, ttl, lease) => why,
        never = work => match never {},
    }
}

/// Renews the leadership lease every third of its TTL until it is lost; why.
async fn keep_lease(etcd: &Etcd, ttl: u64, lease: i64) -> String {
    let every = Duration::from_millis((ttl * 1000 / 3).max(300));
    let mut renew = tokio::time::interval(every);
    let mut renewed = Instant::now();
    loop {
        renew.tick().await;
        match etcd.keep_alive(lease).await {
            Ok(Some(_)) => renewed = Instant::now(),
            Ok(None) => return "its lease expired".into(),
            Err(e) => {
                if renewed.elapsed() >= Duration::from_secs(ttl) {
                    return format!(
                        "etcd out of reach for a lease TTL: {}",
                        crate::errors::error_chain(&e)
                    );
                }
            }
        }
    }
}

/// The leader's own work, for as long as it leads: the reaper, pruning, compaction and
/// the boxes' claims and reports. Ends only when [`lead`] drops it.
async fn work(etcd: &Etcd, o: &Options) -> std::convert::Infallible {
    let mut reap = tokio::time::interval(REAP_EVERY);
    let mut reaper = Reaper::default();
    let mut prune = tokio::time::interval(PRUNE_EVERY);
    let mut compact = tokio::time::interval(COMPACT_EVERY);
    let mut compact_to: Option<i64> = None;
    let mut boxes_poll = tokio::time::interval(BOXES_EVERY);
    let mut boxes = Boxes::default();
    loop {
        tokio::select! {
            _ = boxes_poll.tick() => boxes.pass(etcd).await,
            events = boxes.next() => boxes.changed(etcd, events).await,
            _ = compact.tick() => {
                if let Some(rev) = compact_to.take()
                    && let Err(e) = etcd.compact(rev).await
                    && !crate::errors::error_chain(&e).contains("compacted")
                {
                    tracing::warn!(error = %crate::errors::error_chain(&e), "cluster: compacting etcd's history failed");
                }
                compact_to = etcd.revision().await.ok();
            }
            _ = prune.tick() => {
                let keep = crate::config::get().stopped_task_retention;
                if let Err(e) = prune_stopped(etcd, keep).await {
                    tracing::warn!(error = %crate::errors::error_chain(&e), "cluster: pruning stopped tasks failed");
                }
            }
            _ = reap.tick() => {
                if let Err(e) = reaper.pass(etcd, o.lost_after).await {
                    tracing::warn!(error = %crate::errors::error_chain(&e), "cluster reaper failed");
                }
            }
        }
    }
}

/// What the leader follows under the boxes' prefix: their claims of instances
/// ([`super::users::bind_claim`]) and their task reports ([`super::reports::fold`]),
/// read in full at the start of a term and every [`BOXES_EVERY`], and watched between.
#[derive(Default)]
struct Boxes {
    watch: Option<super::etcd::Watch>,
    /// The claims this leader settled (each granted once a term).
    bound: BTreeSet<String>,
}

impl Boxes {
    /// Reads every key under the prefix and settles each; watches from there if no watch
    /// runs.
    async fn pass(&mut self, etcd: &Etcd) {
        let r: Result<(), TermError> = async {
            let (kvs, rev) = etcd.get_prefix_at(&keys::boxes()).await?;
            for kv in &kvs {
                self.settle(etcd, kv).await?;
            }
            if self.watch.is_none() {
                self.watch = Some(etcd.watch(&keys::boxes(), rev + 1).await?);
            }
            Ok(())
        }
        .await;
        if let Err(e) = r {
            tracing::warn!(error = %crate::errors::error_chain(&e), "cluster: the boxes' claims and reports: a pass failed");
        }
    }

    async fn settle(&mut self, etcd: &Etcd, kv: &super::etcd::Kv) -> Result<(), EtcdError> {
        super::users::bind_claim(etcd, &kv.key, &mut self.bound).await?;
        super::reports::fold(etcd, kv).await
    }

    /// The next changes the watch saw (never, without a watch).
    async fn next(&mut self) -> Result<Vec<Event>, super::etcd::WatchEnd> {
        match self.watch.as_mut() {
            Some(w) => w.next().await,
            None => std::future::pending().await,
        }
    }

    /// Settles what changed; a watch that ended is dropped, and everything read again.
    async fn changed(&mut self, etcd: &Etcd, events: Result<Vec<Event>, super::etcd::WatchEnd>) {
        match events {
            Ok(events) => {
                for e in events {
                    if let Event::Put(kv) = e
                        && let Err(e) = self.settle(etcd, &kv).await
                    {
                        tracing::warn!(error = %crate::errors::error_chain(&e), key = %kv.key,
                            "cluster: a box's claim or report not settled: again at the next pass");
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %crate::errors::error_chain(&e), "cluster: the watch of the boxes' claims and reports ended: read again");
                self.watch = None;
                self.pass(etcd).await;
            }
        }
    }
}

/// Stops the tasks of instances whose agent has been disconnected for longer than the
/// grace, so that they can be replaced elsewhere; a box that comes back finds them no
/// longer assigned and stops them (`super::work`).
#[derive(Debug, Default)]
pub struct Reaper {
    /// (cluster, instance) → when this leader first saw it disconnected with tasks.
    since: BTreeMap<(String, String), Instant>,
}

impl Reaper {
    pub async fn pass(&mut self, etcd: &Etcd, lost_after: Duration) -> Result<(), EtcdError> {
        let mut ledgers = BTreeSet::new();
        let mut alive = BTreeSet::new();
        for k in etcd.keys_with_prefix(&keys::clusters()).await? {
            let Some((c, kind, id)) = keys::parse(&k) else {
                continue;
            };
            match kind {
                "ledger" => ledgers.insert((c.to_string(), id.to_string())),
                "alive" => alive.insert((c.to_string(), id.to_string())),
                _ => false,
            };
        }
        let now = Instant::now();
        self.since
            .retain(|k, _| ledgers.contains(k) && !alive.contains(k));
        for k in ledgers.difference(&alive) {
            let since = *self.since.entry(k.clone()).or_insert(now);
            if now.duration_since(since) >= lost_after {
                reap(etcd, &k.0, &k.1, lost_after).await?;
            }
        }
        Ok(())
    }
}

/// Stops every task of lost instance `id`, while it is still disconnected.
async fn reap(etcd: &Etcd, cluster: &str, id: &str, lost_after: Duration) -> Result<(), EtcdError> {
    let arn = super::instances::arn(cluster, id);
    let host = match etcd.get(&keys::instance(cluster, id)).await? {
        Some(kv) => serde_json::from_slice::<super::instances::Registration>(&kv.value)
            .map(|r| r.hostname)
            .unwrap_or_else(|_| id.to_string()),
        None => id.to_string(),
    };
    let reason = format!(
        "Host {host} (container instance {arn}) lost: its agent was disconnected for more \
         than {} s",
        lost_after.as_secs_f64()
    );
    let n = stop_instance_tasks(etcd, cluster, id, &reason, true).await?;
    if n > 0 {
        tracing::warn!(instance = %arn, tasks = n, "cluster reaper: the lost instance's tasks STOPPED");
    }
    Ok(())
}

/// Stops every task placed on instance `id` in the cluster (records STOPPED with
/// `TerminationNotice` and `reason`, assignments deleted, ledger emptied), in
/// transactions that hold only while its ledger is unchanged (and, with
/// `while_disconnected`, its agent still disconnected); how many it stopped.
pub async fn stop_instance_tasks(
    etcd: &Etcd,
    cluster: &str,
    id: &str,
    reason: &str,
    while_disconnected: bool,
) -> Result<usize, EtcdError> {
    let ledger_key = keys::ledger(cluster, id);
    let mut stopped = 0;
    loop {
        let Some(kv) = etcd.get(&ledger_key).await? else {
            return Ok(stopped);
        };
        let mut ledger: Ledger = match decode(&ledger_key, &kv.value) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(instance = %id, error = %e, "cluster reaper: the instance's ledger does not decode: its tasks left as they are");
                return Ok(stopped);
            }
        };
        if ledger.tasks.is_empty() {
            return Ok(stopped);
        }
        let batch: Vec<String> = ledger.tasks.keys().take(REAP_BATCH).cloned().collect();
        let mut ops = Vec::new();
        let mut record_compares = Vec::new();
        for task in &batch {
            ledger.tasks.remove(task);
            ops.push(Op::Delete(keys::assignment(cluster, id, task)));
            let rkey = keys::task(cluster, task);
            if let Some(r) = etcd.get(&rkey).await? {
                match decode::<Record>(&rkey, &r.value) {
                    Ok(mut rec) => {
                        // Written only as read: a box's own STOPPED (with its exit
                        // codes) reported meanwhile is not replaced by this verdict.
                        if rec.task["lastStatus"] != "STOPPED" {
                            mark_stopped(&mut rec.task, "TerminationNotice", reason);
                            record_compares
                                .push(Compare::ModRevision(rkey.clone(), r.mod_revision));
                            ops.push(Op::Put(rkey, json_bytes(&rec)));
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cluster reaper: a task record that does not decode")
                    }
                }
            }
        }
        ops.push(Op::Put(ledger_key.clone(), json_bytes(&ledger)));
        let mut compares = vec![Compare::ModRevision(ledger_key.clone(), kv.mod_revision)];
        compares.extend(record_compares);
        if while_disconnected {
            compares.push(Compare::Absent(keys::alive(cluster, id)));
        }
        if etcd.txn(&compares, &ops).await? {
            stopped += batch.len();
        } else if while_disconnected && etcd.get(&keys::alive(cluster, id)).await?.is_some() {
            // The agent came back meanwhile: its tasks stay.
            return Ok(stopped);
        }
    }
}

/// Deletes the records of tasks STOPPED for longer than `keep` (MINIFARGATE_STOPPED_TASK_
/// RETENTION, an hour by default: ECS shows stopped tasks about that long), each only if
/// unchanged since it was read.
async fn prune_stopped(etcd: &Etcd, keep: Duration) -> Result<(), EtcdError> {
    let clusters = keys::cluster_names(&etcd.keys_with_prefix(&keys::clusters()).await?, "tasks");
    let cutoff = (crate::ecs::now_ms() - keep.as_millis() as i64) as f64 / 1000.0;
    for c in clusters {
        for kv in etcd.get_prefix(&keys::tasks(&c)).await? {
            let Ok(r) = decode::<Record>(&kv.key, &kv.value) else {
                continue;
            };
            let stopped_at = r.task["stoppedAt"].as_f64();
            if r.task["lastStatus"] == "STOPPED" && stopped_at.is_some_and(|t| t < cutoff) {
                etcd.txn(
                    &[Compare::ModRevision(kv.key.clone(), kv.mod_revision)],
                    &[Op::Delete(kv.key.clone())],
                )
                .await?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// An etcd gateway that knows one lease of `ttl` seconds: a keep-alive within the
    /// TTL of the previous one renews it, a later one finds it expired (TTL 0, as etcd
    /// answers for a lease it no longer has).
    async fn lease_gateway(ttl: u64) -> String {
        let last = Arc::new(Mutex::new(Instant::now()));
        let app = axum::Router::new().route(
            "/v3/lease/keepalive",
            axum::routing::post(move || {
                let last = last.clone();
                async move {
                    let mut last = last.lock().unwrap();
                    let alive = last.elapsed() < Duration::from_secs(ttl);
                    *last = Instant::now();
                    let left = if alive { ttl } else { 0 };
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        serde_json::json!({ "result": { "ID": "7", "TTL": left.to_string() } })
                            .to_string(),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn a_pass_of_the_leader_s_work_longer_than_the_ttl_keeps_the_lease() {
        let etcd = Etcd::new(&lease_gateway(2).await, &super::super::etcd::Tls::default()).unwrap();
        // One pass of the leader's work takes 3 s, more than the 2 s TTL (a slow etcd, many
        // boxes' claims): the lease is renewed meanwhile all the same.
        let slow_work = async {
            loop {
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
        };
        tokio::select! {
            why = lead_with(&etcd, 2, 7, slow_work) => panic!("the leader lost its lease while busy: {why}"),
            _ = tokio::time::sleep(Duration::from_millis(3500)) => {}
        }
        // And a lease that lapsed is seen lost.
        let etcd = Etcd::new(&lease_gateway(1).await, &super::super::etcd::Tls::default()).unwrap();
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let why = lead_with(&etcd, 1, 7, std::future::pending()).await;
        assert_eq!(why, "its lease expired");
    }
}
