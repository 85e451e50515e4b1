//! The control plane in etcd (docs/cluster.md "The control plane in etcd"): task
//! definitions, clusters, services (their deployments and events), RunTask's idempotency
//! tokens and account settings are the same on every `serve --cluster`, and the leader's
//! scheduler runs every service, whichever serve created it.
//!
//! Each serve keeps a full copy of those rows in its own SQLite (reads stay local
//! queries, and the ECS code that answers them is the one-box code). etcd holds the rows
//! too, one key each (`crate::cluster::keys::db_row`), and orders the writes:
//! - **A write** (any operation that is not a Describe/List/Get) runs under the cluster's
//!   write lock, a key created only if absent and attached to the writer's lease, so a
//!   dead writer's lock goes with its lease. Before it runs, the serve has applied every
//!   row written before the lock (it waits for the revision of `db/written`); the
//!   operation then runs on the local copy as on one box, and the rows it changed
//!   (`crate::store::replica`'s change log) go to etcd in a transaction that holds only
//!   while the lock is still this writer's. If that fails, the changed rows are read
//!   back from etcd, so the local copy never keeps what the cluster did not take.
//! - **Every serve** watches the rows from the revision of its snapshot and applies each
//!   change; a compacted or broken watch is a new snapshot.
//! - **The first serve** of a cluster (no `db/written` yet) publishes the rows its store
//!   already has; every later one replaces its copy with etcd's.
//!
//! Writes are rare (registering, creating and updating services, and the leader's
//! scheduler passes), so one lock for the control plane costs nothing that matters; task
//! launches and their state are not in these rows (records and assignments, with their
//! own transactions).

use super::etcd::{Compare, Etcd, EtcdError, Event, Op};
use super::keys;
use crate::store::replica::{ReplicaError, RowChange};
use crate::store::{Store, StoreError};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Duration;

/// The lock's lease TTL (seconds); the holder renews it while it runs.
const LOCK_TTL: u64 = 10;
/// How long a writer waits for the lock, and for its copy to catch up.
const WAIT: Duration = Duration::from_secs(30);
/// The most operations one etcd transaction takes (etcd's `--max-txn-ops` is 128 by
/// default; one more goes with each chunk).
const CHUNK: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    #[error(transparent)]
    Watch(#[from] super::etcd::WatchEnd),
    #[error(transparent)]
    Rows(#[from] ReplicaError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("applying the cluster's rows: the thread failed: {0}")]
    Thread(String),
    #[error("row {key} in etcd does not decode: {why}")]
    Undecodable { key: String, why: String },
    #[error(
        "the control plane's write lock in etcd ({holder}) was not released within {} s",
        WAIT.as_secs()
    )]
    LockBusy { holder: String },
    #[error(
        "this serve's copy of the control plane did not catch up with etcd's revision \
         {want} within {} s (applied: {have})", WAIT.as_secs()
    )]
    Behind { want: i64, have: i64 },
    #[error(
        "the control plane's write lock was lost while the change was made (its lease \
         expired: etcd out of reach?); the change was not kept"
    )]
    LockLost,
}

/// This serve's replica.
pub struct Replica {
    etcd: &'static Etcd,
    root: PathBuf,
    name: String,
    /// The etcd revision this serve's copy has applied.
    applied: Mutex<i64>,
    caught_up: Condvar,
    /// One writer of this serve at a time (the others wait here, not in etcd).
    writer: Mutex<()>,
    /// Held while a write changes the local copy and publishes it: a snapshot waits for
    /// it (never for a writer waiting to catch up, which waits for the snapshot).
    running: Mutex<()>,
}

static REPLICA: OnceLock<Replica> = OnceLock::new();

/// Counts the batches of other serves' rows applied to this serve's store.
static APPLIED: std::sync::LazyLock<tokio::sync::watch::Sender<u64>> =
    std::sync::LazyLock::new(|| tokio::sync::watch::Sender::new(0));

/// A receiver that sees a new value each time rows from etcd were applied to this
/// serve's store (what keeps resources in memory, the load balancers', follows it).
pub fn applied() -> tokio::sync::watch::Receiver<u64> {
    APPLIED.subscribe()
}

fn rows_applied() {
    APPLIED.send_modify(|n| *n += 1);
    crate::ecs::services::changed();
}

/// The replica, in `serve --cluster`.
pub fn get() -> Option<&'static Replica> {
    REPLICA.get()
}

/// Makes this serve keep its control plane in etcd: logs the store's changes from now
/// on and follows etcd's rows on `rt` (forever).
pub fn start(
    etcd: &'static Etcd,
    root: &Path,
    name: String,
    rt: &tokio::runtime::Handle,
) -> Result<(), StoreError> {
    let store = Store::open(root)?;
    crate::store::replica::log_changes(&store)?;
    let r = REPLICA.get_or_init(|| Replica {
        etcd,
        root: root.to_path_buf(),
        name,
        applied: Mutex::new(-1),
        caught_up: Condvar::new(),
        writer: Mutex::new(()),
        running: Mutex::new(()),
    });
    rt.spawn(follow_forever(r));
    Ok(())
}

/// The file under the state root that says its store is a cluster's replica: `serve
/// --cluster` writes it (the etcd endpoints), a serve of one box removes it. The CLI's
/// verbs that write the load balancers and Cloud Map in the store refuse while it is
/// there: a box-local change would not be the cluster's (docs/load-balancing.md "From
/// the CLI").
const MARKER: &str = "cluster-serve";

/// Records whether serve under `root` keeps the cluster's replica (`Some(endpoints)`).
pub fn mark(root: &Path, endpoints: Option<&str>) -> std::io::Result<()> {
    let path = root.join(MARKER);
    match endpoints {
        Some(e) => {
            std::fs::create_dir_all(root).and_then(|()| std::fs::write(path, format!("{e}\n")))
        }
        None => match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        },
    }
}

/// The etcd endpoints of the cluster whose replica the store under `root` is, if the
/// last serve there ran with `--cluster`.
pub fn marked(root: &Path) -> Option<String> {
    std::fs::read_to_string(root.join(MARKER))
        .ok()
        .map(|s| s.trim().to_string())
}

/// Whether operation `op` (its request `body`) writes the control plane.
pub fn writes(op: &str, body: &[u8]) -> bool {
    if ["Describe", "List", "Get"]
        .iter()
        .any(|p| op.starts_with(p))
    {
        return false;
    }
    if op == "RunTask" || op == "StartTask" {
        // A launch writes records and assignments, not these rows; only its
        // idempotency token is one (and must be the cluster's).
        return serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.get("clientToken").cloned())
            .is_some();
    }
    true
}

impl Replica {
    /// Runs `f` as a write of the control plane: under the cluster's write lock, on a
    /// copy that has applied every earlier write, its changes published before the lock
    /// goes.
    pub fn write<T>(&self, f: impl FnOnce() -> T) -> Result<T, Error> {
        self.write_effects(f, |_| false)
    }

    /// [`Self::write`] for an operation with effects outside these rows (RunTask's tasks,
    /// placed in their own transactions): when `happened` says the answer's effects took
    /// place, the answer is the answer even if the rows could not be published under the
    /// lock it ran with (the lock's lease expired, etcd refused); they are then published
    /// under a new lock, each only where nobody changed it since (RunTask's idempotency
    /// token, so a retry with it gets these tasks, not new ones). Never an error for what
    /// happened.
    pub fn write_effects<T>(
        &self,
        f: impl FnOnce() -> T,
        happened: impl FnOnce(&T) -> bool,
    ) -> Result<T, Error> {
        let _one = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let held = super::block_on(self.lock())?;
        let caught_up = self.wait_applied(held.written);
        let (out, published) = match caught_up {
            Ok(()) => {
                let _running = self.running.lock().unwrap_or_else(|p| p.into_inner());
                let out = {
                    let _held = HeldHere::set(held.revision);
                    f()
                };
                (Ok(out), Some(self.publish(held.revision)))
            }
            Err(e) => (Err(e), None),
        };
        super::block_on(async {
            held.keeper.abort();
            let _ = self.etcd.revoke(held.lease).await;
        });
        let out = out?;
        match published {
            Some(Err(Unpublished { error, rows })) => {
                if !happened(&out) {
                    return Err(*error);
                }
                tracing::warn!(error = %crate::errors::error_chain(&error),
                    "a write whose effects took place could not publish its rows under its \
                     lock: publishing them under a new one");
                if let Err(e) = self.republish(&rows) {
                    tracing::warn!(error = %crate::errors::error_chain(&e),
                        "rows of a write whose effects took place not published (an \
                         idempotency token may not be remembered)");
                }
                Ok(out)
            }
            _ => Ok(out),
        }
    }

    /// Publishes `rows` (etcd's revision of each as read back, 0: absent) under a new
    /// lock, each only while etcd still has it as read back; applies them here too.
    fn republish(&self, rows: &[(RowChange, i64)]) -> Result<(), Error> {
        if rows.is_empty() {
            // Not read back: they are still pending here, and go with the next write.
            return Ok(());
        }
        let held = super::block_on(self.lock())?;
        let result = (|| -> Result<(), Error> {
            self.wait_applied(held.written)?;
            let _running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            let mut compares = vec![Compare::ModRevision(keys::db_lock(), held.revision)];
            let mut ops = Vec::new();
            for (c, rev) in rows {
                let key = keys::db_row(&c.table, &c.key);
                compares.push(match rev {
                    0 => Compare::Absent(key.clone()),
                    rev => Compare::ModRevision(key.clone(), *rev),
                });
                ops.push(match &c.row {
                    Some(row) => Op::Put(key, Value::Object(row.clone()).to_string().into_bytes()),
                    None => Op::Delete(key),
                });
            }
            ops.push(Op::Put(keys::db_written(), self.name.as_bytes().to_vec()));
            if !super::block_on(self.etcd.txn(&compares, &ops))? {
                return Err(Error::LockLost);
            }
            let changes: Vec<RowChange> = rows.iter().map(|(c, _)| c.clone()).collect();
            let mut store = Store::open(&self.root)?;
            store.apply_replicated(&changes, false)?;
            Ok(())
        })();
        super::block_on(async {
            held.keeper.abort();
            let _ = self.etcd.revoke(held.lease).await;
        });
        result
    }

    /// Publishes now what the write running on this thread has committed so far, under
    /// its lock (nothing outside a write): a service's pass of the scheduler goes to etcd
    /// as one change of its own, not in chunks with the other services'. When etcd refuses
    /// it (the lock lost), the local copy takes etcd's rows back, as at the end of a write.
    pub fn publish_held(&self) -> Result<(), Error> {
        match held_lock() {
            Some(rev) => self.publish(rev).map_err(|u| *u.error),
            None => Ok(()),
        }
    }

    /// Publishes what this serve changed outside a write (a RunTask without a token that
    /// created the default cluster), when it changed anything.
    pub fn publish_leftovers(&self) -> Result<(), Error> {
        if Store::open(&self.root)?.pending_changes()?.1.is_empty() {
            return Ok(());
        }
        self.write(|| ())
    }

    /// Whether the control plane has a service to schedule (ACTIVE or DRAINING).
    pub fn has_services(&self) -> Result<bool, Error> {
        Ok(!Store::open(&self.root)?.list_services(None)?.is_empty())
    }

    /// Takes the lock: (its revision, the lease, the revision of the last write before).
    async fn lock(&self) -> Result<Held, Error> {
        // A grant whose answer was lost is granted again (the lost one, if any, expires
        // unused within its TTL).
        let lease = match self.etcd.grant(LOCK_TTL).await {
            Err(EtcdError::OutcomeUnknown { .. }) => self.etcd.grant(LOCK_TTL).await?,
            other => other?,
        };
        // Kept alive from now on, also while another writer's lock is waited for (up to
        // WAIT, longer than its TTL: a lease that expired meanwhile would make the lock's
        // transaction fail with "requested lease not found").
        let etcd = self.etcd;
        let keeper = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(LOCK_TTL / 3)).await;
                let _ = etcd.keep_alive(lease).await;
            }
        });
        let taken = async {
            let revision = self.take_lock(lease).await?;
            let written = self
                .etcd
                .get(&keys::db_written())
                .await?
                .map_or(0, |kv| kv.mod_revision);
            Ok::<_, Error>((revision, written))
        };
        match taken.await {
            Ok((revision, written)) => Ok(Held {
                revision,
                lease,
                written,
                keeper,
            }),
            Err(e) => {
                keeper.abort();
                let _ = self.etcd.revoke(lease).await;
                Err(e)
            }
        }
    }

    /// Takes the lock with `lease`, waiting up to [`WAIT`] for another holder to release
    /// it: the lock's revision.
    async fn take_lock(&self, lease: i64) -> Result<i64, Error> {
        let key = keys::db_lock();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let taken = self
                .etcd
                .txn_at(
                    &[Compare::Absent(key.clone())],
                    &[Op::PutWithLease(
                        key.clone(),
                        self.name.clone().into_bytes(),
                        lease,
                    )],
                )
                .await;
            match taken {
                Ok((true, rev)) => return Ok(rev),
                Ok((false, _)) => {}
                // Its answer lost: the lock is this writer's if it holds this lease.
                Err(EtcdError::OutcomeUnknown { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            let Some(kv) = self.etcd.get(&key).await? else {
                continue;
            };
            if kv.lease == lease {
                return Ok(kv.mod_revision);
            }
            let holder = String::from_utf8_lossy(&kv.value).into_owned();
            let mut watch = self.etcd.watch(&key, kv.mod_revision + 1).await?;
            let gone = async {
                loop {
                    if watch
                        .next()
                        .await?
                        .iter()
                        .any(|e| matches!(e, Event::Delete { .. }))
                    {
                        return Ok::<(), Error>(());
                    }
                }
            };
            match tokio::time::timeout_at(deadline, gone).await {
                Ok(r) => r?,
                Err(_) => return Err(Error::LockBusy { holder }),
            }
        }
    }

    /// Waits until this serve's copy has applied revision `want`.
    fn wait_applied(&self, want: i64) -> Result<(), Error> {
        let applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
        let (applied, _) = self
            .caught_up
            .wait_timeout_while(applied, WAIT, |a| *a < want)
            .unwrap_or_else(|p| p.into_inner());
        if *applied < want {
            return Err(Error::Behind {
                want,
                have: *applied,
            });
        }
        Ok(())
    }

    fn set_applied(&self, rev: i64) {
        let mut applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
        if rev > *applied {
            *applied = rev;
        }
        self.caught_up.notify_all();
    }

    /// Publishes the rows this serve changed, while the lock taken at `lock_rev` is still
    /// its own; when it is not, the rows are read back from etcd.
    ///
    /// A publish whose outcome is unknown (its answer lost, the lock's lease expired
    /// meanwhile) is read back: when etcd has every row as sent, the write took effect.
    fn publish(&self, lock_rev: i64) -> Result<(), Unpublished> {
        let unpublished = |error: Error| Unpublished {
            error: Box::new(error),
            rows: Vec::new(),
        };
        let mut store = Store::open(&self.root).map_err(|e| unpublished(e.into()))?;
        let (last, changes) = store.pending_changes().map_err(|e| unpublished(e.into()))?;
        if changes.is_empty() {
            return Ok(());
        }
        let sent = super::block_on(put_rows(self.etcd, &self.name, &changes, Some(lock_rev)));
        let error = match sent {
            Ok(()) => {
                store
                    .forget_changes(last)
                    .map_err(|e| unpublished(e.into()))?;
                return Ok(());
            }
            Err(e) => e,
        };
        // What etcd has is the truth: the local copy takes it back.
        let back = match super::block_on(read_back(self.etcd, &changes)) {
            Ok(back) => back,
            Err(e) => {
                tracing::warn!(error = %crate::errors::error_chain(&e), "publishing this serve's \
                    rows failed and etcd could not be read back: the rows stay pending");
                return Err(unpublished(error));
            }
        };
        let taken = back.iter().zip(&changes).all(|((b, _), c)| b.row == c.row);
        let rows: Vec<RowChange> = back.iter().map(|(b, _)| b.clone()).collect();
        let applied = store
            .apply_replicated(&rows, false)
            .map_err(Error::from)
            .and_then(|()| store.forget_changes(last).map_err(Error::from));
        if let Err(e) = applied {
            return Err(unpublished(e));
        }
        if taken {
            tracing::info!(error = %crate::errors::error_chain(&error),
                "publishing this serve's rows looked failed, yet etcd has every one: taken");
            return Ok(());
        }
        Err(Unpublished {
            error: Box::new(error),
            rows: changes
                .into_iter()
                .zip(back)
                .map(|(c, (_, rev))| (c, rev))
                .collect(),
        })
    }
}

/// A publish that did not take: why, and the rows it sent with etcd's revision of each
/// as read back (0: absent; empty when etcd could not be read back).
struct Unpublished {
    error: Box<Error>,
    rows: Vec<(RowChange, i64)>,
}

thread_local! {
    /// The revision of the control plane's write lock the write running on this thread
    /// holds.
    static HELD: std::cell::Cell<Option<i64>> = const { std::cell::Cell::new(None) };
}

/// The revision of the control plane's write lock (`keys::db_lock()`) held by the write
/// running on this thread, if any: a placement made under it compares it, so a write
/// whose lock was lost (its lease expired, another serve writes now) places nothing
/// (a service's scale-down published meanwhile is never raced by a stale pass).
pub fn held_lock() -> Option<i64> {
    HELD.with(|h| h.get())
}

/// Sets [`held_lock`] for this thread while it lives.
struct HeldHere;

impl HeldHere {
    fn set(rev: i64) -> HeldHere {
        HELD.with(|h| h.set(Some(rev)));
        HeldHere
    }
}

impl Drop for HeldHere {
    fn drop(&mut self) {
        HELD.with(|h| h.set(None));
    }
}

struct Held {
    revision: i64,
    lease: i64,
    written: i64,
    keeper: tokio::task::JoinHandle<()>,
}

/// Writes `changes` to etcd (with `db/written`), in transactions of at most [`CHUNK`]
/// rows, each holding only while the lock of revision `lock` is unchanged.
async fn put_rows(
    etcd: &Etcd,
    name: &str,
    changes: &[RowChange],
    lock: Option<i64>,
) -> Result<(), Error> {
    let compares: Vec<Compare> = lock
        .map(|rev| Compare::ModRevision(keys::db_lock(), rev))
        .into_iter()
        .collect();
    // With no rows, `db/written` alone (the first serve of a cluster with nothing yet).
    let chunks: Vec<&[RowChange]> = if changes.is_empty() {
        vec![&[]]
    } else {
        changes.chunks(CHUNK).collect()
    };
    for chunk in chunks {
        let mut ops: Vec<Op> = chunk
            .iter()
            .map(|c| {
                let key = keys::db_row(&c.table, &c.key);
                match &c.row {
                    Some(row) => Op::Put(key, Value::Object(row.clone()).to_string().into_bytes()),
                    None => Op::Delete(key),
                }
            })
            .collect();
        ops.push(Op::Put(keys::db_written(), name.as_bytes().to_vec()));
        if !etcd.txn(&compares, &ops).await? {
            return Err(Error::LockLost);
        }
    }
    Ok(())
}

/// The rows of `changes` as etcd has them, each with its revision (0: absent).
async fn read_back(etcd: &Etcd, changes: &[RowChange]) -> Result<Vec<(RowChange, i64)>, Error> {
    let mut out = Vec::new();
    for c in changes {
        let key = keys::db_row(&c.table, &c.key);
        let (row, rev) = match etcd.get(&key).await? {
            Some(kv) => (Some(decode_row(&key, &kv.value)?), kv.mod_revision),
            None => (None, 0),
        };
        out.push((
            RowChange {
                table: c.table.clone(),
                key: c.key.clone(),
                row,
            },
            rev,
        ));
    }
    Ok(out)
}

fn decode_row(key: &str, value: &[u8]) -> Result<Map<String, Value>, Error> {
    match serde_json::from_slice(value) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(Error::Undecodable {
            key: key.into(),
            why: "not a JSON object".into(),
        }),
        Err(e) => Err(Error::Undecodable {
            key: key.into(),
            why: e.to_string(),
        }),
    }
}

/// A row event of the watch as a change; `None` for `db/written`.
fn change_of(key: &str, value: Option<&[u8]>) -> Result<Option<RowChange>, Error> {
    let Some((table, pk)) = keys::parse_db_row(key) else {
        return Ok(None);
    };
    Ok(Some(RowChange {
        table: table.into(),
        key: pk.into(),
        row: value.map(|v| decode_row(key, v)).transpose()?,
    }))
}

/// Follows etcd's rows forever: a snapshot, then the watch; again after any failure.
async fn follow_forever(r: &'static Replica) {
    let mut backoff = Duration::from_millis(250);
    loop {
        match follow(r).await {
            Ok(()) => backoff = Duration::from_millis(250),
            Err(e) => {
                tracing::warn!(error = %crate::errors::error_chain(&e),
                    retry_ms = backoff.as_millis() as u64,
                    "cluster control plane: following etcd again");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

async fn follow(r: &'static Replica) -> Result<(), Error> {
    let (kvs, rev) = r.etcd.get_prefix_at(&keys::db()).await?;
    if !kvs.iter().any(|kv| kv.key == keys::db_written()) {
        seed(r).await?;
        return Ok(());
    }
    let mut rows = Vec::new();
    for kv in &kvs {
        if let Some(c) = change_of(&kv.key, Some(&kv.value))? {
            rows.push(c);
        }
    }
    let root = r.root.clone();
    tokio::task::spawn_blocking(move || -> Result<(), Error> {
        // No local write runs while the copy is replaced.
        let _running = r.running.lock().unwrap_or_else(|p| p.into_inner());
        Store::open(&root)?.apply_replicated(&rows, true)?;
        Ok(())
    })
    .await
    .map_err(|e| Error::Thread(e.to_string()))??;
    r.set_applied(rev);
    rows_applied();
    let mut watch = r.etcd.watch(&keys::db(), rev + 1).await?;
    loop {
        let events = watch.next().await?;
        let mut rows = Vec::new();
        let mut last = 0;
        for e in &events {
            let (key, value, rev) = match e {
                Event::Put(kv) => (&kv.key, Some(kv.value.as_slice()), kv.mod_revision),
                Event::Delete { key, revision } => (key, None, *revision),
            };
            last = last.max(rev);
            if let Some(c) = change_of(key, value)? {
                rows.push(c);
            }
        }
        if !rows.is_empty() {
            let root = r.root.clone();
            tokio::task::spawn_blocking(move || Store::open(&root)?.apply_replicated(&rows, false))
                .await
                .map_err(|e| Error::Thread(e.to_string()))??;
            rows_applied();
        }
        if last > 0 {
            r.set_applied(last);
        }
    }
}

/// The first serve: publishes its own rows, under the lock (another serve starting at
/// the same time then finds them and takes them).
async fn seed(r: &'static Replica) -> Result<(), Error> {
    tokio::task::spawn_blocking(move || -> Result<(), Error> {
        let _one = r.writer.lock().unwrap_or_else(|p| p.into_inner());
        let held = super::block_on(r.lock())?;
        let result = (|| -> Result<(), Error> {
            if held.written > 0 {
                return Ok(()); // another serve seeded first: follow() snapshots it.
            }
            let store = Store::open(&r.root)?;
            let rows = store.replicated_rows()?;
            super::block_on(put_rows(r.etcd, &r.name, &rows, Some(held.revision)))?;
            let (last, _) = store.pending_changes()?;
            store.forget_changes(last)?;
            tracing::info!(
                rows = rows.len(),
                "cluster control plane: this serve's rows are the cluster's"
            );
            Ok(())
        })();
        super::block_on(async {
            held.keeper.abort();
            let _ = r.etcd.revoke(held.lease).await;
        });
        result
    })
    .await
    .map_err(|e| Error::Thread(e.to_string()))?
}
