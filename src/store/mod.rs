//! The state store: `<root>/state.db`, SQLite in WAL mode. This module owns the schema and is
//! the only code that writes SQL; the rest of minifargate calls its typed methods.
//!
//! Several minifargate processes use the database at once (concurrent CLIs, supervisors), so
//! every connection waits for locks (a busy handler) instead of failing with "database is
//! locked", and every write transaction starts with `BEGIN IMMEDIATE`: a deferred transaction
//! that upgrades from read to write can fail with SQLITE_BUSY without waiting at all.

/// The state root when neither `--root` nor `MINIFARGATE_ROOT` names one.
pub const DEFAULT_ROOT: &str = "/var/lib/minifargate";

mod clusters;
pub mod elb;
pub mod instance_id;
pub mod json_file;
pub mod json_state;
pub mod logs;
mod migrations;
mod network;
pub mod replica;
pub mod servicediscovery;
mod services;
mod states;
mod taskdefs;
mod tasks;
mod values;

pub use clusters::{ClusterChange, ClusterRow, DeleteCluster, PhaseRow};
pub use elb::TargetHealthPoint;
pub use migrations::MIGRATIONS;
pub use network::NetworkRow;
pub use services::{DeploymentRow, EventRow, Resource, ServiceRow};
pub use states::{
    AttachmentStatus, ClusterStatus, Connectivity, DeploymentStatus, DesiredStatus, HealthStatus,
    LastStatus, RolloutState, ServiceStatus, StopCode, TargetHealthReason, TargetHealthState,
    UnknownState,
};
pub use taskdefs::{FamilyStatus, SortOrder, StoredTaskDefinition};
pub use tasks::{ContainerRow, Liveness, RunToken, TaskFilter, TaskRow};
pub use values::{
    Binding, BlueGreenRecord, CanaryConfiguration, CircuitBreakerConfig, ContainerOverride,
    DeploymentAlarms, DeploymentConfiguration, DeploymentStrategy, LaunchRecord, LifecycleStage,
    LinearConfiguration, Recorded, RollbackRecord, ServiceDeploymentRecord,
    ServiceDeploymentStatus, ServiceSpec, StoredBinding, Tag, TaskOverride,
};

use rusqlite::{Connection, OpenFlags, Row, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a command waits for another process's write lock before giving up.
const LOCK_TIMEOUT: Duration = Duration::from_secs(60);

/// SQLite's busy handler, in place of `busy_timeout`'s, whose first wait is a whole
/// millisecond: a launch's CLI and its supervisor open the store at the same moment, and
/// the one that comes second waited 1 ms for the other's few hundred microseconds of WAL
/// recovery (strace, 2026-11-25). Waits of 50 µs first, then 0.5 ms, then 5 ms, for
/// [`LOCK_TIMEOUT`] in all.
fn busy_wait(tries: i32) -> bool {
    match busy_delay(tries) {
        Some(wait) => {
            std::thread::sleep(wait);
            true
        }
        None => false,
    }
}

/// The wait before SQLite's try number `tries` (from 0), or `None` once the waits so far
/// reach [`LOCK_TIMEOUT`].
fn busy_delay(tries: i32) -> Option<Duration> {
    // (how many tries, each wait): 20 × 50 µs = 1 ms, 100 × 0.5 ms = 50 ms, then 5 ms.
    const TIERS: [(u32, Duration); 3] = [
        (20, Duration::from_micros(50)),
        (100, Duration::from_micros(500)),
        (u32::MAX, Duration::from_millis(5)),
    ];
    let (mut left, mut waited) = (u32::try_from(tries).ok()?, Duration::ZERO);
    for (count, wait) in TIERS {
        if left < count {
            let before = wait.checked_mul(left)?;
            return (waited + before < LOCK_TIMEOUT).then_some(wait);
        }
        waited += wait * count;
        left -= count;
    }
    None
}

/// A WAL file larger than this is checkpointed and truncated by [`Store::trim_wal`].
/// Whoever opens the store with no other connection open rebuilds SQLite's WAL index by
/// reading every frame of the WAL: about 1 ms for 400 frames here, on every `run-task`
/// when nothing else holds the store open (the autocheckpoint restarts the WAL only at
/// 1000 pages, and never shortens the file).
const WAL_TRIM_BYTES: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("failed to create state directory {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to open state database {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("failed to migrate state database {path} to schema version {version}")]
    Migrate {
        path: PathBuf,
        version: i64,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "state database {path} has schema version {found}, newer than this minifargate knows \
         ({known}): upgrade minifargate"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("failed to {op} in the state database")]
    Query {
        op: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("failed to keep the box's EC2 instance id in {path}")]
    InstanceId {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to encode task definition {family} for the state database")]
    Encode {
        family: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("failed to decode stored task definition {family}:{revision}")]
    Decode {
        family: String,
        revision: i64,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    BadRow(Box<BadRow>),
    #[error("failed to encode {table}.{column} of row {id} for the state database")]
    EncodeRow {
        table: &'static str,
        column: &'static str,
        id: String,
        #[source]
        source: serde_json::Error,
    },
}

/// A stored value that does not decode (a state this minifargate does not know, or broken
/// JSON): an error naming the row, never a silent default.
#[derive(Debug, thiserror::Error)]
#[error("failed to decode {table}.{column} of row {id} in the state database")]
pub struct BadRow {
    pub table: &'static str,
    pub column: &'static str,
    pub id: String,
    #[source]
    pub source: BadValue,
}

#[derive(Debug, thiserror::Error)]
pub enum BadValue {
    #[error(transparent)]
    State(#[from] UnknownState),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

/// Maps a query's error to [`StoreError::Query`], or to [`StoreError::BadRow`] when a
/// [`Decoder`] refused a value of the row.
fn q(op: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |source| match source {
        rusqlite::Error::FromSqlConversionFailure(idx, ty, e) => match e.downcast::<BadRow>() {
            Ok(bad) => StoreError::BadRow(bad),
            Err(e) => StoreError::Query {
                op,
                source: rusqlite::Error::FromSqlConversionFailure(idx, ty, e),
            },
        },
        source => StoreError::Query { op, source },
    }
}

/// Reads the typed columns (states, JSON) of one row of `table`; a value that does not
/// decode becomes a [`BadRow`] naming the table, the column and the row `id`.
struct Decoder<'a, 'r> {
    row: &'a Row<'r>,
    table: &'static str,
    id: String,
}

impl<'a, 'r> Decoder<'a, 'r> {
    fn new(row: &'a Row<'r>, table: &'static str, id: String) -> Self {
        Decoder { row, table, id }
    }

    fn bad(&self, idx: usize, column: &'static str, source: BadValue) -> rusqlite::Error {
        rusqlite::Error::FromSqlConversionFailure(
            idx,
            rusqlite::types::Type::Text,
            Box::new(BadRow {
                table: self.table,
                column,
                id: self.id.clone(),
                source,
            }),
        )
    }

    fn state<T: std::str::FromStr<Err = UnknownState>>(
        &self,
        idx: usize,
        column: &'static str,
    ) -> rusqlite::Result<T> {
        let text: String = self.row.get(idx)?;
        text.parse()
            .map_err(|e| self.bad(idx, column, BadValue::State(e)))
    }

    fn opt_state<T: std::str::FromStr<Err = UnknownState>>(
        &self,
        idx: usize,
        column: &'static str,
    ) -> rusqlite::Result<Option<T>> {
        let text: Option<String> = self.row.get(idx)?;
        text.map(|t| {
            t.parse()
                .map_err(|e| self.bad(idx, column, BadValue::State(e)))
        })
        .transpose()
    }

    fn json<T: serde::de::DeserializeOwned>(
        &self,
        idx: usize,
        column: &'static str,
    ) -> rusqlite::Result<T> {
        let text: String = self.row.get(idx)?;
        serde_json::from_str(&text).map_err(|e| self.bad(idx, column, BadValue::Json(e)))
    }

    fn opt_json<T: serde::de::DeserializeOwned>(
        &self,
        idx: usize,
        column: &'static str,
    ) -> rusqlite::Result<Option<T>> {
        let text: Option<String> = self.row.get(idx)?;
        text.map(|t| serde_json::from_str(&t).map_err(|e| self.bad(idx, column, BadValue::Json(e))))
            .transpose()
    }
}

/// The JSON text of a typed column value.
fn to_json<T: serde::Serialize>(
    table: &'static str,
    column: &'static str,
    id: &str,
    v: &T,
) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|source| StoreError::EncodeRow {
        table,
        column,
        id: id.to_string(),
        source,
    })
}

/// Opens (creating) a database file for several processes at once: owner-only, WAL,
/// waiting for other writers, foreign keys on (`state.db`, and `logs.db` in [`logs`]).
fn connect(path: &Path) -> Result<Connection, StoreError> {
    let open_err = |source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    };
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(open_err)?;
    // 0600 (SQLite gives the -wal and -shm files the database's mode): it holds
    // every task's environment. A chmod failure is no reason not to run.
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(md) = std::fs::metadata(path)
            && md.permissions().mode() & 0o077 != 0
            && let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        {
            tracing::warn!(path = %path.display(), error = %e, "failed to make the state database owner-only");
        }
    }
    conn.busy_handler(Some(busy_wait)).map_err(open_err)?;
    // Switching to WAL needs an exclusive lock for a moment; when several processes create
    // the database together SQLite may answer BUSY without calling the busy handler.
    retry_busy(|| {
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0))
    })
    .map_err(open_err)?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(open_err)?;
    // The last connection to close would checkpoint the WAL into the database and
    // delete it: two fsyncs and an unlink, 30-60 ms on an ext4 root here, paid by every
    // `run-task` at exit (and the WAL's re-creation fsync by the next one). Checkpoints
    // then happen as SQLite's auto-checkpoint (every 1000 WAL pages) instead; with
    // synchronous=NORMAL that is no less durable (commits are not synced either way).
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
        true,
    )
    .map_err(open_err)?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(open_err)?;
    Ok(conn)
}

/// Creates the state root owner-only, like podman's storage: task definitions and logs
/// below it hold environment values a container's uid on the host must not read.
fn create_root(root: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(root)
        .map_err(|source| StoreError::CreateDir {
            path: root.to_path_buf(),
            source,
        })
}

/// An open state database.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// [`Store::group_tasks`]'s last answers, while the database is as it was then.
    groups: std::cell::RefCell<tasks::GroupCache>,
}

impl Store {
    /// SQLite's `data_version`: it changes when another connection commits, so a
    /// follower (the cluster agent) reads the tasks again only when something changed.
    pub fn data_version(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))
            .map_err(q("read data_version"))
    }

    /// Opens (creating if needed) `<root>/state.db` and brings its schema up to date.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        create_root(root)?;
        Self::open_file(&root.join("state.db"))
    }

    /// Opens a database file directly (tests, tools).
    pub fn open_file(path: &Path) -> Result<Store, StoreError> {
        let conn = connect(path)?;
        let mut store = Store {
            conn,
            path: path.to_path_buf(),
            groups: Default::default(),
        };
        store.migrate()?;
        if replica::logging() {
            store.install_triggers()?;
        }
        Ok(store)
    }

    /// Checkpoints the WAL into the database and truncates it when it has grown past
    /// [`WAL_TRIM_BYTES`] (a supervisor does this after its task stopped, off the launch
    /// path). Gives up at once if another process is using the WAL (the next one trims);
    /// returns whether it truncated.
    pub fn trim_wal(&self) -> bool {
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        if std::fs::metadata(&wal).map_or(true, |m| m.len() <= WAL_TRIM_BYTES) {
            return false;
        }
        if self.conn.busy_timeout(Duration::ZERO).is_err() {
            return false;
        }
        let done = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                r.get::<_, i64>(0)
            });
        let _ = self.conn.busy_handler(Some(busy_wait));
        match done {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => {
                tracing::debug!(error = %e, "the WAL was not trimmed");
                false
            }
        }
    }

    /// The schema version the database is at.
    #[cfg(test)]
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                [],
                |r| r.get(0),
            )
            .map_err(|source| StoreError::Query {
                op: "read the schema version",
                source,
            })
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let path = self.path.clone();
        let known = MIGRATIONS.last().map_or(0, |m| m.version);
        let mig_err = |version| {
            let path = path.clone();
            move |source| StoreError::Migrate {
                path,
                version,
                source,
            }
        };
        // Up to date (the header's user_version is written last, in the migrations'
        // transaction): no write transaction, which every command would otherwise pay.
        let user_version: i64 = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(mig_err(0))?;
        if user_version == known {
            return Ok(());
        }
        let tx = begin_immediate(&self.conn).map_err(mig_err(0))?;
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version    INTEGER PRIMARY KEY NOT NULL,
                 name       TEXT NOT NULL,
                 applied_at INTEGER NOT NULL
             ) STRICT;",
        )
        .map_err(mig_err(0))?;
        let current: i64 = tx
            .query_row(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                [],
                |r| r.get(0),
            )
            .map_err(mig_err(0))?;
        if current > known {
            return Err(StoreError::TooNew {
                path,
                found: current,
                known,
            });
        }
        let now = chrono::Utc::now().timestamp_millis();
        for m in MIGRATIONS.iter().filter(|m| m.version > current) {
            tx.execute_batch(m.sql).map_err(mig_err(m.version))?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
                rusqlite::params![m.version, m.name, now],
            )
            .map_err(mig_err(m.version))?;
            tracing::debug!(
                version = m.version,
                name = m.name,
                "migrated state database"
            );
        }
        tx.pragma_update(None, "user_version", known)
            .map_err(mig_err(known))?;
        tx.commit().map_err(mig_err(known))
    }

    /// Runs `f` in one write transaction: what it writes commits together (one WAL commit
    /// instead of one per statement), or not at all when it fails. The store's own
    /// multi-statement writes inside `f` nest as savepoints of it ([`Tx`]). `f` may fail
    /// with any error a [`StoreError`] converts into (the scheduler's pass, whose rules
    /// answer `anyhow`); the transaction rolls back whatever the error.
    pub fn in_transaction<T, E: From<StoreError>>(
        &mut self,
        op: &'static str,
        f: impl FnOnce(&mut Store) -> Result<T, E>,
    ) -> Result<T, E> {
        retry_busy(|| self.conn.execute_batch("BEGIN IMMEDIATE"))
            .map_err(|source| StoreError::Query { op, source })?;
        match f(self) {
            Ok(v) => match self.conn.execute_batch("COMMIT") {
                Ok(()) => Ok(v),
                Err(source) => {
                    let _ = self.conn.execute_batch("ROLLBACK");
                    Err(StoreError::Query { op, source }.into())
                }
            },
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }

    /// Starts a write transaction that holds the write lock from its first statement; inside
    /// [`Store::in_transaction`], a savepoint of it (committed with the outer transaction).
    fn write_tx(&mut self, op: &'static str) -> Result<Tx<'_>, StoreError> {
        let err = |source| StoreError::Query { op, source };
        if self.conn.is_autocommit() {
            begin_immediate(&self.conn).map(Tx::Top).map_err(err)
        } else {
            rusqlite::Savepoint::new(&mut self.conn)
                .map(Tx::Nested)
                .map_err(err)
        }
    }

    /// Runs `sql` on the store's connection: a test's TEMP trigger that fails a write.
    #[cfg(test)]
    pub fn execute_batch_for_tests(&self, sql: &str) -> rusqlite::Result<()> {
        self.conn.execute_batch(sql)
    }
}

/// A write of the store: its own transaction, or a savepoint of the one it runs in.
enum Tx<'a> {
    Top(rusqlite::Transaction<'a>),
    Nested(rusqlite::Savepoint<'a>),
}

impl Tx<'_> {
    fn commit(self) -> rusqlite::Result<()> {
        match self {
            Tx::Top(t) => t.commit(),
            Tx::Nested(s) => s.commit(),
        }
    }
}

impl std::ops::Deref for Tx<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        match self {
            Tx::Top(t) => t,
            Tx::Nested(s) => s,
        }
    }
}

/// One store connection for the parts of one thread (the supervisor's executor and
/// network step: each SQLite connection parses the whole schema when it opens), which its
/// holder closes while idle (SQLite keeps ~80 KiB per connection in lookaside, schema and
/// page cache) and which opens again on the next use.
#[derive(Clone)]
pub struct SharedStore(std::rc::Rc<std::cell::RefCell<(PathBuf, Option<Store>)>>);

impl SharedStore {
    pub fn new(store: Store) -> SharedStore {
        SharedStore(std::rc::Rc::new(std::cell::RefCell::new((
            store.path.clone(),
            Some(store),
        ))))
    }

    /// Runs `f` on the open store, reopening it if [`SharedStore::close`] closed it.
    pub fn with<T>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut inner = self.0.borrow_mut();
        let (path, store) = &mut *inner;
        let store = match store {
            Some(s) => s,
            none => none.insert(Store::open_file(path)?),
        };
        f(store)
    }

    pub fn close(&self) {
        self.0.borrow_mut().1 = None;
    }
}

/// `BEGIN IMMEDIATE`, retried while another process holds the write lock.
fn begin_immediate(conn: &Connection) -> rusqlite::Result<rusqlite::Transaction<'_>> {
    retry_busy(|| rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate))
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// Runs `f` again while SQLite answers BUSY or LOCKED, up to [`LOCK_TIMEOUT`].
fn retry_busy<T>(mut f: impl FnMut() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    let deadline = Instant::now() + LOCK_TIMEOUT;
    let mut pause = Duration::from_millis(2);
    loop {
        match f() {
            Err(e) if is_busy(&e) && Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_migrates_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("nested/root")).unwrap();
        assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len() as i64);
        let mode: String = store
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        drop(store);
        let again = Store::open(&dir.path().join("nested/root")).unwrap();
        assert_eq!(again.schema_version().unwrap(), MIGRATIONS.len() as i64);
    }

    #[test]
    fn the_busy_handler_waits_finely_first_and_gives_up_at_the_lock_timeout() {
        let us = Duration::from_micros;
        assert_eq!(busy_delay(0), Some(us(50)));
        assert_eq!(busy_delay(19), Some(us(50)));
        assert_eq!(busy_delay(20), Some(us(500)));
        assert_eq!(busy_delay(119), Some(us(500)));
        assert_eq!(busy_delay(120), Some(us(5000)));
        // The waits add up to the lock timeout, and not beyond: 20 × 50 µs + 100 × 0.5 ms
        // + n × 5 ms reaches 60 s at n = 11 990.
        let total: Duration = (0..)
            .map_while(busy_delay)
            .fold(Duration::ZERO, |sum, w| sum + w);
        assert!(
            total >= LOCK_TIMEOUT && total < LOCK_TIMEOUT + us(5000),
            "{total:?}"
        );
        assert_eq!(busy_delay(20 + 100 + 11_989), Some(us(5000)));
        assert_eq!(busy_delay(20 + 100 + 11_990), None);
        assert_eq!(busy_delay(i32::MAX), None);
        assert_eq!(busy_delay(-1), None);
        // The handler itself: a first try sleeps and asks SQLite to try again.
        assert!(busy_wait(0));
        assert!(!busy_wait(i32::MAX));
    }

    #[test]
    fn a_grown_wal_is_truncated_unless_another_process_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let wal = dir.path().join("state.db-wal");
        // Small: left alone.
        assert!(!store.trim_wal());
        store
            .conn
            .execute_batch("CREATE TABLE filler(b BLOB)")
            .unwrap();
        for _ in 0..300 {
            store
                .conn
                .execute("INSERT INTO filler VALUES (zeroblob(4000))", [])
                .unwrap();
        }
        assert!(std::fs::metadata(&wal).unwrap().len() > WAL_TRIM_BYTES);
        // Another connection in a read transaction: given up at once, not after waiting
        // for the lock (a bound far above a give-up and far below the lock timeout).
        let reader = connect(&dir.path().join("state.db")).unwrap();
        reader.execute_batch("BEGIN").unwrap();
        let n: i64 = reader
            .query_row("SELECT count(*) FROM filler", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 300);
        let t = Instant::now();
        assert!(!store.trim_wal());
        assert!(t.elapsed() < LOCK_TIMEOUT / 4, "{:?}", t.elapsed());
        reader.execute_batch("COMMIT").unwrap();
        drop(reader);
        assert!(store.trim_wal());
        assert_eq!(std::fs::metadata(&wal).unwrap().len(), 0);
        drop(store);
        // Everything is in the database file now.
        let store = Store::open(dir.path()).unwrap();
        let n: i64 = store
            .conn
            .query_row("SELECT count(*) FROM filler", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 300);
    }

    #[test]
    fn opening_an_up_to_date_store_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path()).unwrap());
        let wal = dir.path().join("state.db-wal");
        let size = || std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        let before = size();
        for _ in 0..3 {
            drop(Store::open(dir.path()).unwrap());
        }
        assert_eq!(
            size(),
            before,
            "an open of an up-to-date store wrote to the WAL"
        );
    }

    #[test]
    fn refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .conn
            .execute(
                "INSERT INTO schema_migrations VALUES (999, 'future', 0)",
                [],
            )
            .unwrap();
        // As a newer minifargate leaves it: its migrations end by setting user_version.
        store.conn.pragma_update(None, "user_version", 999).unwrap();
        drop(store);
        match Store::open(dir.path()) {
            Err(StoreError::TooNew { found: 999, .. }) => {}
            other => panic!("expected TooNew, got {:?}", other.err()),
        }
    }
}
