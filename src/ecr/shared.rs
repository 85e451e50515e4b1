//! The registry's rows a cluster shares (docs/registry.md "One registry for the whole
//! cluster"): in `serve --cluster`, repositories with their settings and policies,
//! lifecycle previews, manifests, the blobs each manifest names and tags are the
//! cluster's; which blobs this serve holds (`repo_blobs`, with garbage collection's times)
//! and its uploads stay its own, as do the blob files.
//!
//! Each serve keeps the shared rows in its own `registry.db` (every read stays a local
//! query and the one-box code answers it). What a write changed is found by SQLite: TEMP
//! triggers (they exist on the registry's one connection only, so one box never has them)
//! append the changed row's table and primary key to `temp.shared_changes`; when the
//! connection is handed back ([`Db`]'s drop) the changed rows go to the [`Cluster`]
//! (etcd, `crate::cluster::registries`) before the next writer gets the connection, so
//! this serve's writes reach etcd in the order it made them. The cluster's rows from
//! other serves come back through [`Registry::apply_shared`], with no trigger logging them.

use super::{Digest, Registry, RegistryError, RegistryResult, RepoName};
use rusqlite::Connection;
use rusqlite::types::{Value as Sql, ValueRef};
use serde_json::{Map, Value};
use std::path::Path;
use std::sync::MutexGuard;

/// The shared tables, each with its primary key's columns.
pub const TABLES: &[(&str, &[&str])] = &[
    ("repositories", &["name"]),
    ("repository_policies", &["repo"]),
    ("lifecycle_policies", &["repo"]),
    ("lifecycle_previews", &["repo"]),
    ("manifests", &["repo", "digest"]),
    ("manifest_refs", &["repo", "manifest", "digest"]),
    ("tags", &["repo", "tag"]),
];

/// One shared row: its table, its primary key (a JSON array of the key's values) and its
/// columns, `None` when it was deleted.
#[derive(Debug, Clone, PartialEq)]
pub struct SharedRow {
    pub table: String,
    pub key: String,
    pub row: Option<Map<String, Value>>,
    /// The cluster's revision of this value (0: a change of this serve not yet published).
    pub revision: i64,
}

/// What the cluster does for the registry (`crate::cluster::registries`).
pub trait Cluster: Send + Sync {
    /// Publishes rows this serve changed, in the order it changed them; called with the
    /// registry's connection held (the next write waits). A failure is the cluster's to
    /// say (logged).
    fn publish(&self, rows: Vec<SharedRow>);
    /// Fetches blob `d` of `repo` from another serve into `into` (a new file; the caller
    /// verifies the digest and renames it). The error says which serves were tried.
    fn fetch(&self, repo: &RepoName, d: &Digest, into: &Path) -> Result<(), String>;
    /// [`Cluster::publish`] only while row `key` of `table` is in the cluster what this
    /// serve's copy had before the change (no other serve wrote it since): `Ok(None)`
    /// once published; `Ok(Some(rows))`, nothing published, with `rows` as the cluster
    /// has them (for the caller to put back); `Err` when the cluster could not be asked
    /// (then nothing was published either).
    fn publish_unless_changed(
        &self,
        rows: Vec<SharedRow>,
        table: &str,
        key: &str,
    ) -> Result<Option<Vec<SharedRow>>, String> {
        let _ = (table, key);
        self.publish(rows);
        Ok(None)
    }
}

/// The JSON key of tag `tag` of `repo` (table `tags`).
pub(super) fn tag_key(repo: &RepoName, tag: &str) -> String {
    Value::Array(vec![repo.as_str().into(), tag.into()]).to_string()
}

/// The registry's connection while a caller holds it; handing it back publishes what
/// the caller changed (cluster mode).
pub(super) struct Db<'a> {
    pub(super) guard: MutexGuard<'a, Connection>,
    pub(super) cluster: Option<&'a dyn Cluster>,
}

impl std::ops::Deref for Db<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.guard
    }
}

impl std::ops::DerefMut for Db<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.guard
    }
}

impl Db<'_> {
    /// Publishes what the caller changed now, only while row `key` of `table` is in the
    /// cluster what this serve's copy had (an IMMUTABLE tag no other serve pushed
    /// meanwhile): false when another serve wrote it, and then the changed rows are put
    /// back as the cluster has them. One box, or a cluster out of reach: true (the
    /// latter said in the log, as every publication that fails).
    pub(super) fn publish_unless_changed(
        &mut self,
        table: &str,
        key: &str,
    ) -> RegistryResult<bool> {
        let Some(cluster) = self.cluster else {
            return Ok(true);
        };
        let rows = drain(&self.guard)?;
        if rows.is_empty() {
            return Ok(true);
        }
        match cluster.publish_unless_changed(rows, table, key) {
            Ok(None) => Ok(true),
            Ok(Some(theirs)) => {
                let tx = self
                    .guard
                    .transaction()
                    .map_err(err("put the cluster's rows back"))?;
                for r in &theirs {
                    write_row(&tx, r)?;
                }
                tx.execute("DELETE FROM shared_changes", [])
                    .map_err(err("put the cluster's rows back"))?;
                tx.commit().map_err(err("put the cluster's rows back"))?;
                Ok(false)
            }
            Err(why) => {
                tracing::error!(
                    error = why,
                    "the cluster did not take this serve's registry change \
                    (etcd out of reach?): the other serves do not see it until it is made again"
                );
                Ok(true)
            }
        }
    }
}

impl Drop for Db<'_> {
    fn drop(&mut self) {
        let Some(cluster) = self.cluster else { return };
        match drain(&self.guard) {
            Ok(rows) if rows.is_empty() => {}
            Ok(rows) => cluster.publish(rows),
            Err(e) => tracing::error!(error = %crate::errors::error_chain(&e),
                "cannot read the registry rows a write changed: the cluster does not get them"),
        }
    }
}

fn err(what: &'static str) -> impl FnOnce(rusqlite::Error) -> RegistryError {
    move |source| RegistryError::Database { what, source }
}

/// Installs the TEMP change log and its triggers on `c`.
pub(super) fn log_changes(c: &Connection) -> RegistryResult<()> {
    let mut sql = String::from(
        "CREATE TEMP TABLE IF NOT EXISTS shared_changes \
         (seq INTEGER PRIMARY KEY AUTOINCREMENT, tbl TEXT NOT NULL, pk TEXT NOT NULL);",
    );
    for (t, pk) in TABLES {
        let key = |row: &str| {
            let cols: Vec<String> = pk.iter().map(|c| format!("{row}.{c}")).collect();
            format!("json_array({})", cols.join(", "))
        };
        for (event, rows) in [
            ("INSERT", vec!["NEW"]),
            ("UPDATE", vec!["OLD", "NEW"]),
            ("DELETE", vec!["OLD"]),
        ] {
            let inserts: String = rows
                .iter()
                .map(|r| {
                    format!(
                        "INSERT INTO shared_changes (tbl, pk) VALUES ('{t}', {});",
                        key(r)
                    )
                })
                .collect();
            sql.push_str(&format!(
                "CREATE TEMP TRIGGER IF NOT EXISTS shared_{t}_{} AFTER {event} ON main.{t} \
                 BEGIN {inserts} END;",
                event.to_lowercase()
            ));
        }
    }
    c.execute_batch(&sql)
        .map_err(err("install the registry's change log"))
}

/// The rows logged since the last drain, each once, in the order first changed.
fn drain(c: &Connection) -> RegistryResult<Vec<SharedRow>> {
    let mut s = c
        .prepare_cached("SELECT tbl, pk FROM shared_changes GROUP BY tbl, pk ORDER BY min(seq)")
        .map_err(err("read the change log"))?;
    let keys: Vec<(String, String)> = s
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .and_then(|rows| rows.collect())
        .map_err(err("read the change log"))?;
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    c.execute("DELETE FROM shared_changes", [])
        .map_err(err("clear the change log"))?;
    keys.into_iter()
        .map(|(table, key)| {
            let row = read_row(c, &table, &key)?;
            Ok(SharedRow {
                table,
                key,
                row,
                revision: 0,
            })
        })
        .collect()
}

fn table_of(table: &str) -> RegistryResult<&'static [&'static str]> {
    TABLES
        .iter()
        .find(|(t, _)| *t == table)
        .map(|(_, pk)| *pk)
        .ok_or_else(|| RegistryError::ManifestInvalid(format!("{table}: not a shared table")))
}

fn to_sql(v: &Value) -> Sql {
    match v {
        Value::Null => Sql::Null,
        Value::Bool(b) => Sql::Integer(*b as i64),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Sql::Integer(i),
            None => Sql::Real(n.as_f64().unwrap_or_default()),
        },
        Value::String(s) => Sql::Text(s.clone()),
        other => Sql::Text(other.to_string()),
    }
}

fn from_sql(v: ValueRef) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::from(i),
        ValueRef::Real(f) => Value::from(f),
        ValueRef::Text(t) | ValueRef::Blob(t) => Value::from(String::from_utf8_lossy(t)),
    }
}

/// The key's values from its JSON array.
fn key_values(pk: &[&str], key: &str) -> RegistryResult<Vec<Sql>> {
    let v: Vec<Value> = serde_json::from_str(key)
        .map_err(|e| RegistryError::ManifestInvalid(format!("row key {key}: {e}")))?;
    if v.len() != pk.len() {
        return Err(RegistryError::ManifestInvalid(format!(
            "row key {key}: {} values for {} columns",
            v.len(),
            pk.len()
        )));
    }
    Ok(v.iter().map(to_sql).collect())
}

fn where_key(pk: &[&str]) -> String {
    pk.iter()
        .enumerate()
        .map(|(i, c)| format!("{c} = ?{}", i + 1))
        .collect::<Vec<_>>()
        .join(" AND ")
}

fn row_map(r: &rusqlite::Row, names: &[String]) -> rusqlite::Result<Map<String, Value>> {
    let mut m = Map::new();
    for (i, n) in names.iter().enumerate() {
        m.insert(n.clone(), from_sql(r.get_ref(i)?));
    }
    Ok(m)
}

fn read_row(c: &Connection, table: &str, key: &str) -> RegistryResult<Option<Map<String, Value>>> {
    let pk = table_of(table)?;
    let vals = key_values(pk, key)?;
    let mut s = c
        .prepare_cached(&format!("SELECT * FROM {table} WHERE {}", where_key(pk)))
        .map_err(err("read a shared row"))?;
    let names: Vec<String> = s.column_names().iter().map(|n| n.to_string()).collect();
    let mut rows = s
        .query(rusqlite::params_from_iter(vals))
        .map_err(err("read a shared row"))?;
    match rows.next().map_err(err("read a shared row"))? {
        Some(r) => Ok(Some(row_map(r, &names).map_err(err("read a shared row"))?)),
        None => Ok(None),
    }
}

/// The JSON key of a row of `table` (`[<pk values>]`).
fn key_of(pk: &[&str], row: &Map<String, Value>) -> String {
    Value::Array(
        pk.iter()
            .map(|c| row.get(*c).cloned().unwrap_or(Value::Null))
            .collect(),
    )
    .to_string()
}

fn write_row(c: &Connection, r: &SharedRow) -> RegistryResult<()> {
    let pk = table_of(&r.table)?;
    match &r.row {
        None => {
            c.execute(
                &format!("DELETE FROM {} WHERE {}", r.table, where_key(pk)),
                rusqlite::params_from_iter(key_values(pk, &r.key)?),
            )
            .map_err(err("delete a shared row"))?;
        }
        Some(row) => {
            let cols: Vec<&String> = row.keys().collect();
            let marks: Vec<String> = (1..=cols.len()).map(|i| format!("?{i}")).collect();
            c.execute(
                &format!(
                    "INSERT OR REPLACE INTO {} ({}) VALUES ({})",
                    r.table,
                    cols.iter()
                        .map(|c| c.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    marks.join(", ")
                ),
                rusqlite::params_from_iter(row.values().map(to_sql)),
            )
            .map_err(err("write a shared row"))?;
        }
    }
    Ok(())
}

/// Numbers the temporary files of fetches (two pulls may fetch one blob at once).
static FETCHES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn all_rows(c: &Connection) -> RegistryResult<Vec<SharedRow>> {
    let mut out = Vec::new();
    for (table, pk) in TABLES {
        let mut s = c
            .prepare(&format!("SELECT * FROM {table}"))
            .map_err(err("read the shared rows"))?;
        let names: Vec<String> = s.column_names().iter().map(|n| n.to_string()).collect();
        let rows: Vec<Map<String, Value>> = s
            .query_map([], |r| row_map(r, &names))
            .and_then(|rows| rows.collect())
            .map_err(err("read the shared rows"))?;
        out.extend(rows.into_iter().map(|row| SharedRow {
            table: table.to_string(),
            key: key_of(pk, &row),
            row: Some(row),
            revision: 0,
        }));
    }
    Ok(out)
}

impl Registry {
    /// Makes this registry one of a cluster's: from now on the shared rows it changes go
    /// to `cluster`, and a blob it lacks is fetched through it.
    pub fn share(&self, cluster: Box<dyn Cluster>) -> RegistryResult<()> {
        let c = self.db.lock().unwrap_or_else(|p| p.into_inner());
        log_changes(&c)?;
        c.execute("DELETE FROM shared_changes", [])
            .map_err(err("clear the change log"))?;
        let _ = self.cluster.set(cluster);
        Ok(())
    }

    /// Every shared row this registry has (the first serve of a cluster publishes them).
    pub fn shared_rows(&self) -> RegistryResult<Vec<SharedRow>> {
        let c = self.db.lock().unwrap_or_else(|p| p.into_inner());
        all_rows(&c)
    }

    /// Writes the cluster's `rows` (other serves' changes) that `keep` takes (it sees
    /// them with the registry's connection held: no write of this serve slips between its
    /// answer and the row), in one transaction, logging none of them. With `complete_at`
    /// (a snapshot of every shared row at that revision), a shared row of this serve not
    /// among `rows` is offered to `keep` as deleted at that revision.
    pub fn apply_shared(
        &self,
        rows: Vec<SharedRow>,
        complete_at: Option<i64>,
        keep: &mut dyn FnMut(&SharedRow) -> bool,
    ) -> RegistryResult<usize> {
        let mut c = self.db.lock().unwrap_or_else(|p| p.into_inner());
        let mut rows = rows;
        if let Some(rev) = complete_at {
            let there: std::collections::HashSet<(String, String)> = rows
                .iter()
                .map(|r| (r.table.clone(), r.key.clone()))
                .collect();
            for r in all_rows(&c)? {
                if !there.contains(&(r.table.clone(), r.key.clone())) {
                    rows.push(SharedRow {
                        row: None,
                        revision: rev,
                        ..r
                    });
                }
            }
        }
        let tx = c.transaction().map_err(err("apply the cluster's rows"))?;
        let mut n = 0;
        for r in rows.iter().filter(|r| keep(r)) {
            match write_row(&tx, r) {
                Ok(()) => n += 1,
                Err(e) => {
                    tracing::warn!(table = r.table, key = r.key, error = %crate::errors::error_chain(&e),
                    "ignoring a registry row of the cluster this serve cannot write")
                }
            }
        }
        if self.cluster.get().is_some() {
            tx.execute("DELETE FROM shared_changes", [])
                .map_err(err("apply the cluster's rows"))?;
        }
        tx.commit().map_err(err("apply the cluster's rows"))?;
        Ok(n)
    }

    /// Blob `d` of `repo` from another serve of the cluster, verified and stored as a push
    /// is (temp file, digest checked, fsync, rename); linked to `repo` here.
    pub(super) fn fetch_from_peer(&self, repo: &RepoName, d: &Digest) -> RegistryResult<bool> {
        let Some(cluster) = self.cluster.get() else {
            return Ok(false);
        };
        let tmp = self.dir.join("uploads").join(format!(
            "fetch-{}-{}",
            d.hex(),
            FETCHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let io = |what: String| move |source| RegistryError::Storage { what, source };
        let result = (|| {
            cluster.fetch(repo, d, &tmp).map_err(|why| {
                RegistryError::BlobUnknown(format!(
                    "{d} of repository {repo} is not on this serve and no other serve of \
                     the cluster gave it: {why}"
                ))
            })?;
            let mut f = std::fs::File::open(&tmp).map_err(io(format!("read {}", tmp.display())))?;
            let mut h = <sha2::Sha256 as sha2::Digest>::new();
            std::io::copy(&mut f, &mut h).map_err(io(format!("read {}", tmp.display())))?;
            let got = format!("sha256:{}", hex::encode(sha2::Digest::finalize(h)));
            if got != d.as_str() {
                return Err(RegistryError::DigestInvalid(format!(
                    "a peer serve sent {got} for {d}: not kept"
                )));
            }
            f.sync_all()
                .map_err(io(format!("sync {}", tmp.display())))?;
            let dest = self.blob_path(d);
            std::fs::rename(&tmp, &dest).map_err(io(format!("store {}", dest.display())))?;
            super::meta::link_blob(&self.db(), repo, d)?;
            tracing::info!(%d, %repo, "blob fetched from a peer serve of the cluster");
            Ok(true)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{manifest, repository, upload};
    use super::super::{Digest, Reference, Registry, RegistryError, RepoName, meta};
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A cluster in memory: what a serve published, and the blob files of another serve
    /// (`peer`) a fetch copies (`corrupt`: with a byte changed).
    #[derive(Default)]
    struct Fake {
        published: Mutex<Vec<SharedRow>>,
        peer: Mutex<Option<std::path::PathBuf>>,
        corrupt: std::sync::atomic::AtomicBool,
        /// Another serve's push of the same tag won in etcd: these rows are etcd's.
        conflict: Mutex<Option<Vec<SharedRow>>>,
    }

    struct Hook(Arc<Fake>);

    impl Cluster for Hook {
        fn publish(&self, rows: Vec<SharedRow>) {
            self.0.published.lock().unwrap().extend(rows);
        }
        fn fetch(&self, _: &RepoName, d: &Digest, into: &Path) -> Result<(), String> {
            let dir = self.0.peer.lock().unwrap().clone().ok_or("no peer")?;
            let mut bytes = std::fs::read(dir.join(d.hex())).map_err(|e| e.to_string())?;
            if self.0.corrupt.load(std::sync::atomic::Ordering::Relaxed) {
                bytes[0] ^= 1;
            }
            std::fs::write(into, bytes).map_err(|e| e.to_string())
        }
        fn publish_unless_changed(
            &self,
            rows: Vec<SharedRow>,
            _: &str,
            _: &str,
        ) -> Result<Option<Vec<SharedRow>>, String> {
            match self.0.conflict.lock().unwrap().take() {
                Some(theirs) => Ok(Some(theirs)),
                None => {
                    self.publish(rows);
                    Ok(None)
                }
            }
        }
    }

    fn serve(grace: f64) -> (tempfile::TempDir, Registry, Arc<Fake>) {
        let dir = tempfile::tempdir().unwrap();
        let r = Registry::open(dir.path(), "123456789012", "eu-west-1")
            .unwrap()
            .with_gc_grace(grace);
        let fake = Arc::new(Fake::default());
        r.share(Box::new(Hook(fake.clone()))).unwrap();
        (dir, r, fake)
    }

    /// Serve B applies what serve A published, as the watch does.
    fn apply(from: &Fake, to: &Registry) {
        let rows: Vec<SharedRow> = std::mem::take(&mut *from.published.lock().unwrap());
        to.apply_shared(rows, None, &mut |_| true).unwrap();
    }

    #[test]
    fn a_serve_gets_another_s_rows_fetches_its_blobs_and_collects_them_once_no_manifest_names_them()
    {
        let (_a_dir, a, a_fake) = serve(0.0);
        let (_b_dir, b, b_fake) = serve(0.0);
        *b_fake.peer.lock().unwrap() = Some(a.dir().join("blobs/sha256"));
        let repo = repository(&a, "cl/web", "MUTABLE");
        let config = upload(&a, &repo, b"{}");
        let layer = upload(&a, &repo, &[7u8; 3000]);
        let m = manifest(&config, &layer, 3000);
        let d = a
            .put_manifest(&repo, &Reference::Tag("v1".into()), None, &m)
            .unwrap();
        assert!(
            a_fake
                .published
                .lock()
                .unwrap()
                .iter()
                .all(|r| TABLES.iter().any(|(t, _)| *t == r.table)),
            "only the shared tables are published (not repo_blobs, not uploads)"
        );
        apply(&a_fake, &b);

        // B has the repository, the image and its tag, and no byte of it.
        assert!(b.registry_repo("cl/web").is_ok());
        let (tags, _) = b.tags(&repo, None, None).unwrap();
        assert_eq!(tags, vec!["v1"]);
        assert!(!b.blob_path(&layer).exists());
        // A peer's request is answered with what B holds: nothing.
        assert!(matches!(
            b.blob_here(&repo, &layer),
            Err(RegistryError::BlobUnknown(_))
        ));

        // A corrupt copy is refused and nothing stays.
        b_fake
            .corrupt
            .store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(matches!(
            b.blob(&repo, &layer),
            Err(RegistryError::DigestInvalid(_))
        ));
        assert!(!b.blob_path(&layer).exists());
        assert_eq!(
            std::fs::read_dir(b.dir().join("uploads")).unwrap().count(),
            0
        );
        b_fake
            .corrupt
            .store(false, std::sync::atomic::Ordering::Relaxed);

        // The pull fetches the manifest and the layer; garbage collection keeps them
        // (the cluster's manifest names them), even with no grace.
        let got = b
            .manifest(&repo, &Reference::Tag("v1".into()), true)
            .unwrap();
        assert_eq!(got.digest, d);
        assert_eq!(b.blob(&repo, &layer).unwrap().size, 3000);
        assert_eq!(b.collect_garbage().unwrap().blobs, 0);
        assert!(b.blob_path(&layer).exists());

        // The image deleted through A: B's copy goes at B's next collection.
        a.delete_manifest(&repo, &Reference::Digest(d.clone()))
            .unwrap();
        apply(&a_fake, &b);
        assert!(b.manifest(&repo, &Reference::Digest(d), false).is_err());
        let freed = b.collect_garbage().unwrap();
        assert_eq!(freed.blobs, 2, "{freed:?}");
        assert!(!b.blob_path(&layer).exists());
    }

    #[test]
    fn a_snapshot_replaces_the_copy_and_keeps_rows_newer_than_it() {
        let (_d, r, fake) = serve(3600.0);
        for name in ["snap/old", "snap/mine"] {
            repository(&r, name, "MUTABLE");
        }
        let published = std::mem::take(&mut *fake.published.lock().unwrap());
        assert_eq!(published.len(), 2);
        let cluster_row = SharedRow {
            revision: 5,
            key: r#"["snap/theirs"]"#.into(),
            row: published[0].row.clone().map(|mut m| {
                m.insert("name".into(), "snap/theirs".into());
                m
            }),
            table: "repositories".into(),
        };
        // "snap/mine" was written at revision 9, after the snapshot's 7: it stays.
        let mine = r#"["snap/mine"]"#;
        r.apply_shared(vec![cluster_row], Some(7), &mut |row| {
            !(row.key == mine && row.revision <= 9)
        })
        .unwrap();
        let names: Vec<String> = meta::repositories(&r.db())
            .unwrap()
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(names, vec!["snap/mine", "snap/theirs"]);
        assert!(
            fake.published.lock().unwrap().is_empty(),
            "the cluster's rows are not published back"
        );
    }

    #[test]
    fn an_immutable_tag_another_serve_took_meanwhile_is_refused_and_put_back() {
        an_immutable_tag_taken_meanwhile("IMMUTABLE", None);
        // The `*_WITH_EXCLUSION` modes: a tag immutable by its filters goes through the
        // same transaction (and one they leave mutable does not: the unit test of the
        // modes is in `meta`, the push in tests/ecr.rs).
        an_immutable_tag_taken_meanwhile(
            "MUTABLE_WITH_EXCLUSION",
            Some(r#"[{"filterType":"WILDCARD","filter":"v*"}]"#),
        );
        an_immutable_tag_taken_meanwhile(
            "IMMUTABLE_WITH_EXCLUSION",
            Some(r#"[{"filterType":"WILDCARD","filter":"dev-*"}]"#),
        );
    }

    fn an_immutable_tag_taken_meanwhile(mode: &str, filters: Option<&str>) {
        let (_d, r, fake) = serve(3600.0);
        let repo = repository(&r, "fixed/app", "MUTABLE");
        meta::set_tag_mutability(&r.db(), &repo, mode, filters).unwrap();
        let config = upload(&r, &repo, b"{}");
        let layer = upload(&r, &repo, &[3u8; 100]);
        let m = manifest(&config, &layer, 100);
        // etcd has the tag (another serve's image) and none of this push's rows.
        let other = format!("sha256:{}", "b".repeat(64));
        let tag = SharedRow {
            table: "tags".into(),
            key: tag_key(&repo, "v1"),
            row: Some(
                serde_json::json!({"repo": "fixed/app", "tag": "v1", "digest": other})
                    .as_object()
                    .unwrap()
                    .clone(),
            ),
            revision: 12,
        };
        let d = Digest::of(&m);
        let mine = SharedRow {
            table: "manifests".into(),
            key: Value::Array(vec!["fixed/app".into(), d.as_str().into()]).to_string(),
            row: None,
            revision: 0,
        };
        *fake.conflict.lock().unwrap() = Some(vec![tag, mine]);
        let e = r
            .put_manifest(&repo, &Reference::Tag("v1".into()), None, &m)
            .unwrap_err();
        assert!(matches!(e, RegistryError::TagInvalid(_)), "{e}");
        // The copy is the cluster's: the tag names the other image, this one is not there.
        assert_eq!(
            meta::tag_digest(&r.db(), &repo, "v1")
                .unwrap()
                .unwrap()
                .as_str(),
            other
        );
        assert!(meta::manifest_type(&r.db(), &repo, &d).unwrap().is_none());
        assert!(
            fake.published
                .lock()
                .unwrap()
                .iter()
                .all(|p| p.table == "repositories")
        );
    }
}
