//! The rows `serve --cluster` shares with the cluster's other serves through etcd
//! (docs/cluster.md "The control plane in etcd"): task definitions, clusters, services
//! with their deployments and events, RunTask's idempotency tokens, account settings and
//! the load balancers (ELBv2's resources), Cloud Map's resources, and Application Auto
//! Scaling's and CloudWatch's alarms' state (`control_docs`, `super::json_state`).
//! Every serve keeps a full copy in its own SQLite, so every read stays a local query; a
//! write runs locally under the cluster's write lock and the rows it changed go to etcd
//! (`crate::cluster::replica`), from where the other serves apply them.
//!
//! What changed is found by SQLite itself: in cluster mode each connection gets TEMP
//! triggers (they exist only for that connection, so one box never has them) that append
//! the changed row's table and primary key to `replica_changes`. The rows are written and
//! read as JSON objects of their columns, so a column added by a later migration travels
//! without code here.

use super::{Store, StoreError, q};
use rusqlite::types::{Value as Sql, ValueRef};
use serde_json::{Map, Value};
use std::sync::atomic::{AtomicBool, Ordering};

/// The replicated tables, parents before children (foreign keys), each with its primary
/// key's columns.
pub const TABLES: &[(&str, &[&str])] = &[
    ("task_definition_families", &["family"]),
    ("task_definitions", &["family", "revision"]),
    ("clusters", &["name"]),
    ("services", &["cluster", "name"]),
    ("service_deployments", &["id"]),
    ("service_events", &["seq"]),
    ("run_tokens", &["cluster", "token"]),
    ("account_settings", &["principal", "name"]),
    ("elb_resources", &["arn"]),
    ("servicediscovery_resources", &["id"]),
    ("control_docs", &["owner", "item"]),
];

/// Set once by `serve --cluster`: every connection opened after it logs its changes.
static LOGGING: AtomicBool = AtomicBool::new(false);

/// Whether this process logs the replicated tables' changes.
pub(super) fn logging() -> bool {
    LOGGING.load(Ordering::Relaxed)
}

/// One row of a replicated table: its table, its primary key (a JSON array of the key's
/// values) and its columns, `None` when it was deleted.
#[derive(Debug, Clone, PartialEq)]
pub struct RowChange {
    pub table: String,
    pub key: String,
    pub row: Option<Map<String, Value>>,
}

/// A replicated row from etcd that this minifargate cannot write.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error("table {0:?} is not one this minifargate shares between serves")]
    UnknownTable(String),
    #[error("row {key} of {table}: {why}")]
    BadRow {
        table: String,
        key: String,
        why: String,
    },
    #[error(
        "rows of {child} in this serve's state root refer to {parent} rows the cluster's \
         state does not have (a root used by a one-box serve before?): give serve \
         --cluster a state root of its own, or start it first in a new cluster so that it \
         publishes its rows"
    )]
    Dangling { child: String, parent: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Replicated table `table`: its name as the schema has it and its primary key's columns.
fn table_of(table: &str) -> Result<(&'static str, &'static [&'static str]), ReplicaError> {
    TABLES
        .iter()
        .find(|(t, _)| *t == table)
        .copied()
        .ok_or_else(|| ReplicaError::UnknownTable(table.into()))
}

/// The `WHERE` clause and parameters that select the row of `table` with primary key `key`
/// (a JSON array of the key's values).
fn key_filter(table: &str, key: &str) -> Result<(&'static str, String, Vec<Sql>), ReplicaError> {
    let (name, cols) = table_of(table)?;
    let bad = |why: String| ReplicaError::BadRow {
        table: table.into(),
        key: key.into(),
        why,
    };
    let values: Vec<Value> =
        serde_json::from_str(key).map_err(|e| bad(format!("the key is not JSON: {e}")))?;
    if values.len() != cols.len() {
        return Err(bad(format!(
            "the key has {} values, not {}",
            values.len(),
            cols.len()
        )));
    }
    let params: Vec<Sql> = values
        .iter()
        .map(sql_of)
        .collect::<Result<_, _>>()
        .map_err(bad)?;
    let filter: Vec<String> = cols
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{c} = ?{}", i + 1))
        .collect();
    Ok((name, filter.join(" AND "), params))
}

fn json_of(v: ValueRef<'_>) -> Result<Value, String> {
    Ok(match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::from(i),
        ValueRef::Real(f) => Value::from(f),
        ValueRef::Text(t) => Value::from(
            std::str::from_utf8(t).map_err(|_| "a text column that is not UTF-8".to_string())?,
        ),
        ValueRef::Blob(_) => return Err("a BLOB column (none is expected)".into()),
    })
}

fn sql_of(v: &Value) -> Result<Sql, String> {
    Ok(match v {
        Value::Null => Sql::Null,
        Value::Bool(b) => Sql::Integer(i64::from(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Sql::Integer(i),
            None => Sql::Real(n.as_f64().ok_or("a number out of range")?),
        },
        Value::String(s) => Sql::Text(s.clone()),
        Value::Array(_) | Value::Object(_) => return Err("a column that is not a scalar".into()),
    })
}

/// Turns on change logging for every connection this process opens from now on, and
/// creates the log in `store`'s database.
pub fn log_changes(store: &Store) -> Result<(), StoreError> {
    create_log(store)?;
    LOGGING.store(true, Ordering::Relaxed);
    Ok(())
}

/// Creates the change log and logs `store`'s own changes.
pub(super) fn create_log(store: &Store) -> Result<(), StoreError> {
    store
        .conn
        .execute_batch(
            "CREATE TABLE IF NOT EXISTS replica_changes (
                 seq   INTEGER PRIMARY KEY AUTOINCREMENT,
                 tbl   TEXT NOT NULL,
                 pk    TEXT NOT NULL
             ) STRICT;",
        )
        .map_err(q("create the replica change log"))?;
    store.install_triggers()
}

impl Store {
    /// This connection's TEMP triggers that log each change to a replicated table.
    pub(super) fn install_triggers(&self) -> Result<(), StoreError> {
        let mut sql = String::new();
        for (table, key) in TABLES {
            for (event, row) in [("INSERT", "NEW"), ("UPDATE", "NEW"), ("DELETE", "OLD")] {
                let pk: Vec<String> = key.iter().map(|c| format!("{row}.{c}")).collect();
                sql.push_str(&format!(
                    "CREATE TEMP TRIGGER IF NOT EXISTS replica_{table}_{event} AFTER {event} ON \
                     main.{table} BEGIN INSERT INTO main.replica_changes (tbl, pk) VALUES \
                     ('{table}', json_array({})); END;\n",
                    pk.join(", ")
                ));
                if event == "UPDATE" {
                    // A key that changed: the old row is gone too.
                    let old: Vec<String> = key.iter().map(|c| format!("OLD.{c}")).collect();
                    sql.push_str(&format!(
                        "CREATE TEMP TRIGGER IF NOT EXISTS replica_{table}_rekey AFTER UPDATE ON \
                         main.{table} WHEN json_array({}) IS NOT json_array({}) BEGIN INSERT INTO \
                         main.replica_changes (tbl, pk) VALUES ('{table}', json_array({})); END;\n",
                        old.join(", "),
                        pk.join(", "),
                        old.join(", ")
                    ));
                }
            }
        }
        self.conn
            .execute_batch(&sql)
            .map_err(q("install the replica triggers"))
    }

    /// The row of `table` with primary key `key`, as JSON; `None` when there is none.
    fn replicated_row(
        &self,
        table: &str,
        key: &str,
    ) -> Result<Option<Map<String, Value>>, ReplicaError> {
        let (table, filter, params) = key_filter(table, key)?;
        let bad = |why: String| ReplicaError::BadRow {
            table: table.into(),
            key: key.into(),
            why,
        };
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT * FROM main.{table} WHERE {filter}"))
            .map_err(|e| ReplicaError::Store(q("read a replicated row")(e)))?;
        let names: Vec<String> = stmt.column_names().iter().map(|s| s.to_string()).collect();
        let mut rows = stmt
            .query(rusqlite::params_from_iter(params))
            .map_err(|e| ReplicaError::Store(q("read a replicated row")(e)))?;
        let Some(r) = rows
            .next()
            .map_err(|e| ReplicaError::Store(q("read a replicated row")(e)))?
        else {
            return Ok(None);
        };
        let mut out = Map::new();
        for (i, n) in names.iter().enumerate() {
            let v = r
                .get_ref(i)
                .map_err(|e| ReplicaError::Store(q("read a replicated row")(e)))?;
            out.insert(n.clone(), json_of(v).map_err(|w| bad(format!("{n}: {w}")))?);
        }
        Ok(Some(out))
    }

    /// What this process changed since the last [`Store::forget_changes`]: each changed
    /// row once, as it is now, and the log's last sequence number (0 when empty).
    pub fn pending_changes(&self) -> Result<(i64, Vec<RowChange>), ReplicaError> {
        let logged: Vec<(i64, String, String)> = {
            let mut stmt = self
                .conn
                .prepare_cached("SELECT seq, tbl, pk FROM replica_changes ORDER BY seq")
                .map_err(q("read the replica change log"))?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .map_err(q("read the replica change log"))?
                .collect::<Result<_, _>>()
                .map_err(q("read the replica change log"))?
        };
        let last = logged.last().map_or(0, |l| l.0);
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for (_, table, key) in logged {
            if seen.insert((table.clone(), key.clone())) {
                let row = self.replicated_row(&table, &key)?;
                out.push(RowChange { table, key, row });
            }
        }
        // Parents first (a service before its deployments), deletions last (children
        // before parents), as the other serves apply them.
        out.sort_by_key(order);
        Ok((last, out))
    }

    /// Drops the change log up to `last` (published).
    pub fn forget_changes(&self, last: i64) -> Result<(), StoreError> {
        self.conn
            .execute("DELETE FROM replica_changes WHERE seq <= ?1", [last])
            .map(drop)
            .map_err(q("trim the replica change log"))
    }

    /// Every replicated row (what a first serve publishes).
    pub fn replicated_rows(&self) -> Result<Vec<RowChange>, ReplicaError> {
        let mut out = Vec::new();
        for (table, key) in TABLES {
            let keys: Vec<String> = {
                let mut stmt = self
                    .conn
                    .prepare(&format!(
                        "SELECT json_array({}) FROM main.{table}",
                        key.join(", ")
                    ))
                    .map_err(q("read the replicated rows"))?;
                stmt.query_map([], |r| r.get(0))
                    .map_err(q("read the replicated rows"))?
                    .collect::<Result<_, _>>()
                    .map_err(q("read the replicated rows"))?
            };
            for k in keys {
                let row = self.replicated_row(table, &k)?;
                out.push(RowChange {
                    table: table.to_string(),
                    key: k,
                    row,
                });
            }
        }
        Ok(out)
    }

    /// Applies rows another serve changed, in one transaction, without logging them as
    /// this serve's changes. With `exact`, the replicated tables end up holding exactly
    /// `rows` (a snapshot): every other row is deleted.
    pub fn apply_replicated(
        &mut self,
        rows: &[RowChange],
        exact: bool,
    ) -> Result<(), ReplicaError> {
        let tx = self.write_tx("apply replicated rows")?;
        tx.execute_batch("PRAGMA defer_foreign_keys = ON")
            .map_err(q("apply replicated rows"))?;
        let has_log: bool = tx
            .query_row(
                "SELECT count(*) > 0 FROM sqlite_master WHERE name = 'replica_changes'",
                [],
                |r| r.get(0),
            )
            .map_err(q("apply replicated rows"))?;
        let logged: Option<i64> = if has_log {
            tx.query_row(
                "SELECT COALESCE(MAX(seq), 0) FROM replica_changes",
                [],
                |r| r.get(0),
            )
            .map(Some)
            .map_err(q("apply replicated rows"))?
        } else {
            None
        };
        if exact {
            for (table, _) in TABLES.iter().rev() {
                tx.execute(&format!("DELETE FROM main.{table}"), [])
                    .map_err(q("apply replicated rows"))?;
            }
        }
        let mut sorted: Vec<&RowChange> = rows.iter().collect();
        sorted.sort_by_key(|c| order(c));
        for c in sorted {
            write_row(&tx, c)?;
        }
        if let Some(before) = logged {
            tx.execute("DELETE FROM replica_changes WHERE seq > ?1", [before])
                .map_err(q("apply replicated rows"))?;
        }
        // Rows of this store's own (its tasks) that point at a cluster the cluster's
        // state lacks: an error naming them, not SQLite's bare "constraint failed".
        let dangling: Vec<(String, String)> = {
            let mut stmt = tx
                .prepare("SELECT \"table\", parent FROM pragma_foreign_key_check LIMIT 5")
                .map_err(q("check replicated rows"))?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(q("check replicated rows"))?
                .collect::<Result<_, _>>()
                .map_err(q("check replicated rows"))?
        };
        if let Some((child, parent)) = dangling.first() {
            return Err(ReplicaError::Dangling {
                child: child.clone(),
                parent: parent.clone(),
            });
        }
        tx.commit().map_err(q("apply replicated rows"))?;
        Ok(())
    }
}

/// Upserts go parents first, deletions children first.
fn order(c: &RowChange) -> (bool, isize) {
    let at = TABLES
        .iter()
        .position(|(t, _)| *t == c.table)
        .unwrap_or(TABLES.len()) as isize;
    match c.row {
        Some(_) => (false, at),
        None => (true, -at),
    }
}

fn write_row(tx: &rusqlite::Connection, c: &RowChange) -> Result<(), ReplicaError> {
    let (table, key_cols) = table_of(&c.table)?;
    let bad = |why: String| ReplicaError::BadRow {
        table: c.table.clone(),
        key: c.key.clone(),
        why,
    };
    let failed = |e| ReplicaError::Store(q("apply a replicated row")(e));
    match &c.row {
        None => {
            let (_, filter, params) = key_filter(table, &c.key)?;
            tx.execute(
                &format!("DELETE FROM main.{table} WHERE {filter}"),
                rusqlite::params_from_iter(params),
            )
            .map_err(failed)?;
        }
        Some(row) => {
            let known: Vec<String> = {
                let mut stmt = tx
                    .prepare_cached(&format!("SELECT name FROM pragma_table_info('{table}')"))
                    .map_err(failed)?;
                stmt.query_map([], |r| r.get(0))
                    .map_err(failed)?
                    .collect::<Result<_, _>>()
                    .map_err(failed)?
            };
            let mut names = Vec::new();
            let mut params = Vec::new();
            for (n, v) in row {
                if !known.contains(n) {
                    return Err(bad(format!(
                        "column {n:?} is not one of this minifargate's (a newer serve wrote it?)"
                    )));
                }
                names.push(n.as_str());
                params.push(sql_of(v).map_err(|w| bad(format!("{n}: {w}")))?);
            }
            for k in key_cols {
                if !names.contains(k) {
                    return Err(bad(format!("its primary key column {k:?} is missing")));
                }
            }
            let marks: Vec<String> = (1..=names.len()).map(|i| format!("?{i}")).collect();
            let set: Vec<String> = names
                .iter()
                .filter(|n| !key_cols.contains(n))
                .map(|n| format!("{n} = excluded.{n}"))
                .collect();
            let conflict = if set.is_empty() {
                "DO NOTHING".to_string()
            } else {
                format!("DO UPDATE SET {}", set.join(", "))
            };
            tx.execute(
                &format!(
                    "INSERT INTO main.{table} ({}) VALUES ({}) ON CONFLICT ({}) {conflict}",
                    names.join(", "),
                    marks.join(", "),
                    key_cols.join(", ")
                ),
                rusqlite::params_from_iter(params),
            )
            .map_err(failed)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_primary_keys_are_the_tables_own() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        for (table, key) in TABLES {
            let mut stmt = s
                .conn
                .prepare(&format!(
                    "SELECT name FROM pragma_table_info('{table}') WHERE pk > 0 ORDER BY pk"
                ))
                .unwrap();
            let pk: Vec<String> = stmt
                .query_map([], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(&pk, key, "{table}");
        }
    }

    fn rows(s: &Store) -> Vec<RowChange> {
        let mut all = s.replicated_rows().unwrap();
        all.sort_by(|a, b| (&a.table, &a.key).cmp(&(&b.table, &b.key)));
        all
    }

    #[test]
    fn a_serve_s_changes_are_logged_and_applied_elsewhere_as_they_are() {
        let a_dir = tempfile::tempdir().unwrap();
        let b_dir = tempfile::tempdir().unwrap();
        let a = Store::open(a_dir.path()).unwrap();
        create_log(&a).unwrap();
        let mut b = Store::open(b_dir.path()).unwrap();
        create_log(&b).unwrap();
        a.conn
            .execute_batch(
                "INSERT INTO clusters (name, arn, created_at_ms) VALUES ('c', 'arn:c', 1);
                 INSERT INTO services (cluster, name, arn, status, task_definition_arn,
                     desired_count, created_at_ms, updated_at_ms)
                     VALUES ('c', 'web', 'arn:web', 'ACTIVE', 'arn:td', 2, 1, 1);
                 INSERT INTO service_deployments (id, cluster, service, status,
                     task_definition_arn, desired_count, rollout_state, created_at_ms,
                     updated_at_ms)
                     VALUES ('ecs-svc/1', 'c', 'web', 'PRIMARY', 'arn:td', 2, 'IN_PROGRESS', 1, 1);
                 UPDATE services SET desired_count = 3 WHERE name = 'web';",
            )
            .unwrap();
        let (last, changes) = a.pending_changes().unwrap();
        // One change per row, parents first, as they are now.
        let tables: Vec<&str> = changes.iter().map(|c| c.table.as_str()).collect();
        assert_eq!(tables, ["clusters", "services", "service_deployments"]);
        assert_eq!(changes[1].row.as_ref().unwrap()["desired_count"], 3);
        // Applied in the reverse order of its tables, the foreign keys still hold (they
        // are checked at commit), and B logs nothing of its own.
        let mut reversed = changes.clone();
        reversed.reverse();
        b.apply_replicated(&reversed, false).unwrap();
        assert_eq!(rows(&a), rows(&b));
        assert_eq!(b.pending_changes().unwrap().1, vec![]);
        a.forget_changes(last).unwrap();
        assert_eq!(a.pending_changes().unwrap().1, vec![]);

        // A deleted service takes its deployments (ON DELETE CASCADE): both deletions
        // are logged, so the other serve loses both too.
        a.conn
            .execute_batch("DELETE FROM services WHERE name = 'web'")
            .unwrap();
        let (_, changes) = a.pending_changes().unwrap();
        assert!(changes.iter().all(|c| c.row.is_none()), "{changes:?}");
        let tables: Vec<&str> = changes.iter().map(|c| c.table.as_str()).collect();
        assert_eq!(tables, ["service_deployments", "services"]);
        b.apply_replicated(&changes, false).unwrap();
        assert_eq!(rows(&a), rows(&b));

        // A snapshot replaces everything.
        b.apply_replicated(&[], true).unwrap();
        assert_eq!(rows(&b), vec![]);

        // ... but not under the rows of B's own that refer to them (a task of a cluster
        // the snapshot lacks): an error naming them, and B unchanged.
        b.conn
            .execute_batch(
                "INSERT INTO clusters (name, arn, created_at_ms) VALUES ('mine', 'arn:m', 1);
                 INSERT INTO tasks (id, arn, cluster, task_definition_arn, family, definition,
                     launch_type, last_status, desired_status, created_at_ms)
                     VALUES ('t', 'arn:t', 'mine', 'arn:td', 'f', '{}', 'FARGATE', 'STOPPED',
                     'STOPPED', 1);",
            )
            .unwrap();
        let e = b.apply_replicated(&[], true).unwrap_err();
        assert!(e.to_string().contains("rows of tasks"), "{e}");
        assert_eq!(rows(&b).len(), 1);
    }

    #[test]
    fn a_row_this_minifargate_cannot_write_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        let mut row = Map::new();
        row.insert("name".into(), "c".into());
        row.insert("colour".into(), "red".into());
        let e = s
            .apply_replicated(
                &[RowChange {
                    table: "clusters".into(),
                    key: r#"["c"]"#.into(),
                    row: Some(row),
                }],
                false,
            )
            .unwrap_err();
        assert!(e.to_string().contains("\"colour\""), "{e}");
        let e = s
            .apply_replicated(
                &[RowChange {
                    table: "tasks".into(),
                    key: r#"["t"]"#.into(),
                    row: None,
                }],
                false,
            )
            .unwrap_err();
        assert!(e.to_string().contains("\"tasks\""), "{e}");
    }
}
