//! The registry's rows in `registry.db`: repositories, which blobs each repository holds,
//! manifests, tags and uploads in progress. Plain SQL functions over one connection; the
//! rules are the callers'.

use super::{Digest, RegistryError, RegistryResult, RepoName};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS repositories (
    name TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    tag_mutability TEXT NOT NULL,
    scan_on_push INTEGER NOT NULL,
    encryption_type TEXT NOT NULL,
    kms_key TEXT,
    tags TEXT NOT NULL,
    tag_mutability_exclusion_filters TEXT
);
CREATE TABLE IF NOT EXISTS repo_blobs (
    repo TEXT NOT NULL,
    digest TEXT NOT NULL,
    PRIMARY KEY (repo, digest)
);
CREATE TABLE IF NOT EXISTS manifest_refs (
    repo TEXT NOT NULL,
    manifest TEXT NOT NULL,
    digest TEXT NOT NULL,
    PRIMARY KEY (repo, manifest, digest)
);
CREATE INDEX IF NOT EXISTS manifest_refs_digest ON manifest_refs (repo, digest);
CREATE TABLE IF NOT EXISTS lifecycle_policies (
    repo TEXT PRIMARY KEY,
    text TEXT NOT NULL,
    last_evaluated REAL
);
CREATE TABLE IF NOT EXISTS repository_policies (
    repo TEXT PRIMARY KEY,
    text TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS lifecycle_previews (
    repo TEXT PRIMARY KEY,
    text TEXT NOT NULL,
    results TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS manifests (
    repo TEXT NOT NULL,
    digest TEXT NOT NULL,
    media_type TEXT NOT NULL,
    artifact_media_type TEXT,
    size INTEGER NOT NULL,
    image_size INTEGER NOT NULL,
    pushed_at REAL NOT NULL,
    last_pull REAL,
    PRIMARY KEY (repo, digest)
);
CREATE TABLE IF NOT EXISTS tags (
    repo TEXT NOT NULL,
    tag TEXT NOT NULL,
    digest TEXT NOT NULL,
    PRIMARY KEY (repo, tag)
);
CREATE TABLE IF NOT EXISTS lifecycle_expired (
    repo TEXT NOT NULL,
    digest TEXT NOT NULL,
    tags TEXT NOT NULL,
    pushed_at REAL NOT NULL,
    rule INTEGER NOT NULL,
    expired_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS lifecycle_expired_repo ON lifecycle_expired (repo, expired_at);
CREATE TABLE IF NOT EXISTS uploads (
    id TEXT PRIMARY KEY,
    repo TEXT NOT NULL,
    started REAL NOT NULL
);
";

pub(super) fn open(path: &Path) -> RegistryResult<Connection> {
    let db = |what| move |source| RegistryError::Database { what, source };
    let c = Connection::open(path).map_err(db("open registry.db"))?;
    c.pragma_update(None, "journal_mode", "WAL")
        .map_err(db("set WAL mode"))?;
    c.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(db("set the busy timeout"))?;
    c.execute_batch(SCHEMA).map_err(db("create the tables"))?;
    // Version 1: a blob link's touched_at/claimed_at (garbage collection's grace for
    // pushes and pulls in flight). Rows of a version-0 file get them NULL.
    let version: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(db("read the schema version"))?;
    if version < 1 {
        let has_col = c
            .prepare("SELECT touched_at FROM repo_blobs LIMIT 0")
            .is_ok();
        if !has_col {
            c.execute_batch(
                "ALTER TABLE repo_blobs ADD COLUMN touched_at REAL; \
                 ALTER TABLE repo_blobs ADD COLUMN claimed_at REAL;",
            )
            .map_err(db("add the blob links' times"))?;
        }
    }
    // imageTagMutabilityExclusionFilters (added after the first files were made).
    if c.prepare("SELECT tag_mutability_exclusion_filters FROM repositories LIMIT 0")
        .is_err()
    {
        c.execute_batch(
            "ALTER TABLE repositories ADD COLUMN tag_mutability_exclusion_filters TEXT;",
        )
        .map_err(db("add the repositories' tag mutability exclusion filters"))?;
    }
    Ok(c)
}

/// The schema version (`PRAGMA user_version`): below 2, manifests pushed before
/// `manifest_refs` existed have no rows there yet (the registry fills them in on open).
pub(super) fn schema_version(c: &Connection) -> RegistryResult<i64> {
    c.query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(err("read the schema version"))
}

pub(super) fn set_schema_version(c: &Connection, v: i64) -> RegistryResult<()> {
    c.pragma_update(None, "user_version", v)
        .map_err(err("write the schema version"))
}

pub(super) fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

fn err(what: &'static str) -> impl FnOnce(rusqlite::Error) -> RegistryError {
    move |source| RegistryError::Database { what, source }
}

/// A repository's row.
#[derive(Debug, Clone)]
pub struct RepositoryRow {
    pub name: String,
    pub created_at: f64,
    /// MUTABLE, IMMUTABLE, IMMUTABLE_WITH_EXCLUSION or MUTABLE_WITH_EXCLUSION.
    pub tag_mutability: String,
    /// The `*_WITH_EXCLUSION` modes' `imageTagMutabilityExclusionFilters`, as JSON
    /// (`[{"filterType":"WILDCARD","filter":"dev-*"}]`); `None` for the other modes.
    pub tag_mutability_exclusion_filters: Option<String>,
    pub scan_on_push: bool,
    /// AES256 or KMS.
    pub encryption_type: String,
    pub kms_key: Option<String>,
    /// The ECR tags, `[{"Key","Value"}]` as JSON.
    pub tags: String,
}

fn repo_row(r: &rusqlite::Row) -> rusqlite::Result<RepositoryRow> {
    Ok(RepositoryRow {
        name: r.get(0)?,
        created_at: r.get(1)?,
        tag_mutability: r.get(2)?,
        scan_on_push: r.get(3)?,
        encryption_type: r.get(4)?,
        kms_key: r.get(5)?,
        tags: r.get(6)?,
        tag_mutability_exclusion_filters: r.get(7)?,
    })
}

impl RepositoryRow {
    /// Whether a push may not move `tag` to another image: IMMUTABLE, or a
    /// `*_WITH_EXCLUSION` mode whose filters say the opposite of its base for this tag
    /// (a filter matching the tag excludes it from the base mode).
    pub fn tag_is_immutable(&self, tag: &str) -> bool {
        let excluded = || {
            self.tag_mutability_exclusion_filters
                .as_deref()
                .and_then(|f| serde_json::from_str::<Vec<serde_json::Value>>(f).ok())
                .unwrap_or_default()
                .iter()
                .filter_map(|f| f.get("filter").and_then(|v| v.as_str()))
                .any(|p| super::names::wildcard_match(p, tag))
        };
        match self.tag_mutability.as_str() {
            "IMMUTABLE" => true,
            "IMMUTABLE_WITH_EXCLUSION" => !excluded(),
            "MUTABLE_WITH_EXCLUSION" => excluded(),
            _ => false,
        }
    }
}

const REPO_COLS: &str = "name, created_at, tag_mutability, scan_on_push, encryption_type, \
     kms_key, tags, tag_mutability_exclusion_filters";

pub(super) fn repository(c: &Connection, name: &RepoName) -> RegistryResult<Option<RepositoryRow>> {
    c.query_row(
        &format!("SELECT {REPO_COLS} FROM repositories WHERE name = ?1"),
        [name.as_str()],
        repo_row,
    )
    .optional()
    .map_err(err("read a repository"))
}

pub(super) fn repositories(c: &Connection) -> RegistryResult<Vec<RepositoryRow>> {
    let mut s = c
        .prepare(&format!(
            "SELECT {REPO_COLS} FROM repositories ORDER BY name"
        ))
        .map_err(err("list repositories"))?;
    s.query_map([], repo_row)
        .and_then(|rows| rows.collect())
        .map_err(err("list repositories"))
}

/// Inserts `row`; false if the name exists.
pub(super) fn insert_repository(c: &Connection, row: &RepositoryRow) -> RegistryResult<bool> {
    let n = c
        .execute(
            &format!(
                "INSERT OR IGNORE INTO repositories ({REPO_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
            ),
            params![
                row.name,
                row.created_at,
                row.tag_mutability,
                row.scan_on_push,
                row.encryption_type,
                row.kms_key,
                row.tags,
                row.tag_mutability_exclusion_filters
            ],
        )
        .map_err(err("create a repository"))?;
    Ok(n == 1)
}

/// A repository's ECR tags (`[{"Key","Value"}]` as JSON).
pub(super) fn set_repository_tags(
    c: &Connection,
    repo: &RepoName,
    tags: &str,
) -> RegistryResult<()> {
    c.execute(
        "UPDATE repositories SET tags = ?2 WHERE name = ?1",
        params![repo.as_str(), tags],
    )
    .map_err(err("tag a repository"))?;
    Ok(())
}

/// Mode `m` and its exclusion filters (JSON, `None` for MUTABLE and IMMUTABLE).
pub(super) fn set_tag_mutability(
    c: &Connection,
    repo: &RepoName,
    m: &str,
    filters: Option<&str>,
) -> RegistryResult<()> {
    c.execute(
        "UPDATE repositories SET tag_mutability = ?2, tag_mutability_exclusion_filters = ?3 \
         WHERE name = ?1",
        params![repo.as_str(), m, filters],
    )
    .map_err(err("set tag mutability"))?;
    Ok(())
}

/// Removes the repository and every row of it.
pub(super) fn delete_repository(c: &mut Connection, repo: &RepoName) -> RegistryResult<()> {
    let tx = c.transaction().map_err(err("delete a repository"))?;
    for table in [
        "repositories WHERE name",
        "repo_blobs WHERE repo",
        "manifests WHERE repo",
        "tags WHERE repo",
        "uploads WHERE repo",
        "manifest_refs WHERE repo",
        "lifecycle_policies WHERE repo",
        "lifecycle_previews WHERE repo",
        "lifecycle_expired WHERE repo",
        "repository_policies WHERE repo",
    ] {
        tx.execute(&format!("DELETE FROM {table} = ?1"), [repo.as_str()])
            .map_err(err("delete a repository"))?;
    }
    tx.commit().map_err(err("delete a repository"))
}

pub(super) fn has_blob(c: &Connection, repo: &RepoName, d: &Digest) -> RegistryResult<bool> {
    c.query_row(
        "SELECT 1 FROM repo_blobs WHERE repo = ?1 AND digest = ?2",
        [repo.as_str(), d.as_str()],
        |_| Ok(()),
    )
    .optional()
    .map(|o| o.is_some())
    .map_err(err("look a blob up"))
}

/// Whether a manifest of `repo` names blob `d` or is `d` (the cluster's rows: another
/// serve may hold the bytes).
pub(super) fn named_by_manifest(
    c: &Connection,
    repo: &RepoName,
    d: &Digest,
) -> RegistryResult<bool> {
    c.query_row(
        "SELECT EXISTS (SELECT 1 FROM manifest_refs WHERE repo = ?1 AND digest = ?2) \
         OR EXISTS (SELECT 1 FROM manifests WHERE repo = ?1 AND digest = ?2)",
        [repo.as_str(), d.as_str()],
        |r| r.get(0),
    )
    .map_err(err("look a blob up"))
}

pub(super) fn link_blob(c: &Connection, repo: &RepoName, d: &Digest) -> RegistryResult<()> {
    c.execute(
        "INSERT INTO repo_blobs (repo, digest, touched_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT (repo, digest) DO UPDATE SET touched_at = excluded.touched_at",
        params![repo.as_str(), d.as_str(), now()],
    )
    .map_err(err("link a blob"))?;
    Ok(())
}

/// Marks blob `d` of `repo` as needed by a client now (a HEAD or GET of it: a push about
/// to name it, a pull reading it): garbage collection keeps it for its grace period even
/// if no manifest names it.
pub(super) fn touch_blob(c: &Connection, repo: &RepoName, d: &Digest) -> RegistryResult<()> {
    c.execute(
        "UPDATE repo_blobs SET touched_at = ?3 WHERE repo = ?1 AND digest = ?2",
        params![repo.as_str(), d.as_str(), now()],
    )
    .map_err(err("touch a blob"))?;
    Ok(())
}

/// A pull of manifest `m`: every blob it names is touched (see [`touch_blob`]).
pub(super) fn touch_refs(c: &Connection, repo: &RepoName, m: &Digest) -> RegistryResult<()> {
    c.execute(
        "UPDATE repo_blobs SET touched_at = ?3 WHERE repo = ?1 AND digest IN \
         (SELECT digest FROM manifest_refs WHERE repo = ?1 AND manifest = ?2)",
        params![repo.as_str(), m.as_str(), now()],
    )
    .map_err(err("touch a manifest's blobs"))?;
    Ok(())
}

pub(super) fn unlink_blob(c: &Connection, repo: &RepoName, d: &Digest) -> RegistryResult<bool> {
    c.execute(
        "DELETE FROM repo_blobs WHERE repo = ?1 AND digest = ?2",
        [repo.as_str(), d.as_str()],
    )
    .map(|n| n > 0)
    .map_err(err("unlink a blob"))
}

pub(super) fn add_upload(c: &Connection, id: &str, repo: &RepoName) -> RegistryResult<()> {
    c.execute(
        "INSERT INTO uploads (id, repo, started) VALUES (?1, ?2, ?3)",
        params![id, repo.as_str(), now()],
    )
    .map_err(err("record an upload"))?;
    Ok(())
}

pub(super) fn upload_repo(c: &Connection, id: &str) -> RegistryResult<Option<RepoName>> {
    let name: Option<String> = c
        .query_row("SELECT repo FROM uploads WHERE id = ?1", [id], |r| r.get(0))
        .optional()
        .map_err(err("read an upload"))?;
    Ok(name.and_then(|n| RepoName::parse(&n).ok()))
}

pub(super) fn remove_upload(c: &Connection, id: &str) -> RegistryResult<()> {
    c.execute("DELETE FROM uploads WHERE id = ?1", [id])
        .map_err(err("forget an upload"))?;
    Ok(())
}

pub(super) fn uploads(c: &Connection) -> RegistryResult<Vec<(String, f64)>> {
    let mut s = c
        .prepare("SELECT id, started FROM uploads")
        .map_err(err("list uploads"))?;
    s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .and_then(|rows| rows.collect())
        .map_err(err("list uploads"))
}

/// A manifest (an image, for the ECR API) of a repository, with its tags.
#[derive(Debug, Clone)]
pub struct ImageRow {
    pub digest: String,
    pub media_type: String,
    pub artifact_media_type: Option<String>,
    pub image_size: i64,
    pub pushed_at: f64,
    pub last_pull: Option<f64>,
    pub tags: Vec<String>,
}

pub(super) struct NewManifest<'a> {
    pub digest: &'a Digest,
    /// The blobs (config, layers) or child manifests it names.
    pub refs: &'a [Digest],
    pub media_type: &'a str,
    pub artifact_media_type: Option<&'a str>,
    pub size: i64,
    pub image_size: i64,
}

/// Records manifest `m` of `repo` (kept as it was if already there) and points `tag` at
/// it, in one transaction.
pub(super) fn put_manifest(
    c: &mut Connection,
    repo: &RepoName,
    m: &NewManifest,
    tag: Option<&str>,
) -> RegistryResult<()> {
    let tx = c.transaction().map_err(err("record a manifest"))?;
    tx.execute(
        "INSERT OR IGNORE INTO manifests (repo, digest, media_type, artifact_media_type, size, \
         image_size, pushed_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            repo.as_str(),
            m.digest.as_str(),
            m.media_type,
            m.artifact_media_type,
            m.size,
            m.image_size,
            now()
        ],
    )
    .map_err(err("record a manifest"))?;
    let t = now();
    tx.execute(
        "INSERT INTO repo_blobs (repo, digest, claimed_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT (repo, digest) DO UPDATE SET claimed_at = excluded.claimed_at",
        params![repo.as_str(), m.digest.as_str(), t],
    )
    .map_err(err("record a manifest"))?;
    insert_refs(&tx, repo, m.digest, m.refs, t)?;
    if let Some(tag) = tag {
        tx.execute(
            "INSERT INTO tags (repo, tag, digest) VALUES (?1, ?2, ?3) \
             ON CONFLICT (repo, tag) DO UPDATE SET digest = excluded.digest",
            [repo.as_str(), tag, m.digest.as_str()],
        )
        .map_err(err("tag a manifest"))?;
    }
    tx.commit().map_err(err("record a manifest"))
}

/// Records that manifest `m` names `refs`, and that a manifest claimed those blobs at `t`
/// (a touch older than that no longer protects them once the manifest goes).
pub(super) fn insert_refs(
    c: &Connection,
    repo: &RepoName,
    m: &Digest,
    refs: &[Digest],
    t: f64,
) -> RegistryResult<()> {
    for d in refs {
        c.execute(
            "INSERT OR IGNORE INTO manifest_refs (repo, manifest, digest) VALUES (?1, ?2, ?3)",
            [repo.as_str(), m.as_str(), d.as_str()],
        )
        .map_err(err("record a manifest's blobs"))?;
        c.execute(
            "UPDATE repo_blobs SET claimed_at = ?3 WHERE repo = ?1 AND digest = ?2",
            params![repo.as_str(), d.as_str(), t],
        )
        .map_err(err("record a manifest's blobs"))?;
    }
    Ok(())
}

/// Every (repository, manifest digest) pair.
pub(super) fn all_manifests(c: &Connection) -> RegistryResult<Vec<(String, String)>> {
    let mut s = c
        .prepare("SELECT repo, digest FROM manifests")
        .map_err(err("list manifests"))?;
    s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .and_then(|rows| rows.collect())
        .map_err(err("list manifests"))
}

pub(super) fn tag_digest(
    c: &Connection,
    repo: &RepoName,
    tag: &str,
) -> RegistryResult<Option<Digest>> {
    let d: Option<String> = c
        .query_row(
            "SELECT digest FROM tags WHERE repo = ?1 AND tag = ?2",
            [repo.as_str(), tag],
            |r| r.get(0),
        )
        .optional()
        .map_err(err("read a tag"))?;
    Ok(d.and_then(|d| Digest::parse(&d).ok()))
}

/// The manifest's media type, if `repo` has manifest `d`.
pub(super) fn manifest_type(
    c: &Connection,
    repo: &RepoName,
    d: &Digest,
) -> RegistryResult<Option<String>> {
    c.query_row(
        "SELECT media_type FROM manifests WHERE repo = ?1 AND digest = ?2",
        [repo.as_str(), d.as_str()],
        |r| r.get(0),
    )
    .optional()
    .map_err(err("read a manifest"))
}

/// The ECR image size of manifest `d` of `repo`, if it has it.
pub(super) fn image_size(
    c: &Connection,
    repo: &RepoName,
    d: &Digest,
) -> RegistryResult<Option<i64>> {
    c.query_row(
        "SELECT image_size FROM manifests WHERE repo = ?1 AND digest = ?2",
        [repo.as_str(), d.as_str()],
        |r| r.get(0),
    )
    .optional()
    .map_err(err("read a manifest"))
}

pub(super) fn record_pull(c: &Connection, repo: &RepoName, d: &Digest) -> RegistryResult<()> {
    c.execute(
        "UPDATE manifests SET last_pull = ?3 WHERE repo = ?1 AND digest = ?2",
        params![repo.as_str(), d.as_str(), now()],
    )
    .map_err(err("record a pull"))?;
    Ok(())
}

/// Removes manifest `d` of `repo` and the tags that point at it.
pub(super) fn delete_manifest(
    c: &mut Connection,
    repo: &RepoName,
    d: &Digest,
) -> RegistryResult<bool> {
    let tx = c.transaction().map_err(err("delete a manifest"))?;
    let n = tx
        .execute(
            "DELETE FROM manifests WHERE repo = ?1 AND digest = ?2",
            [repo.as_str(), d.as_str()],
        )
        .map_err(err("delete a manifest"))?;
    for sql in [
        "DELETE FROM tags WHERE repo = ?1 AND digest = ?2",
        "DELETE FROM repo_blobs WHERE repo = ?1 AND digest = ?2",
        "DELETE FROM manifest_refs WHERE repo = ?1 AND manifest = ?2",
    ] {
        tx.execute(sql, [repo.as_str(), d.as_str()])
            .map_err(err("delete a manifest"))?;
    }
    tx.commit().map_err(err("delete a manifest"))?;
    Ok(n > 0)
}

pub(super) fn delete_tag(c: &Connection, repo: &RepoName, tag: &str) -> RegistryResult<bool> {
    c.execute(
        "DELETE FROM tags WHERE repo = ?1 AND tag = ?2",
        [repo.as_str(), tag],
    )
    .map(|n| n > 0)
    .map_err(err("delete a tag"))
}

/// Up to `n` tags of `repo` after `last`, in lexical order, and whether more follow.
pub(super) fn tags_page(
    c: &Connection,
    repo: &RepoName,
    n: Option<usize>,
    last: Option<&str>,
) -> RegistryResult<(Vec<String>, bool)> {
    let mut s = c
        .prepare("SELECT tag FROM tags WHERE repo = ?1 AND tag > ?2 ORDER BY tag")
        .map_err(err("list tags"))?;
    let all: Vec<String> = s
        .query_map([repo.as_str(), last.unwrap_or("")], |r| r.get(0))
        .and_then(|rows| rows.collect())
        .map_err(err("list tags"))?;
    Ok(match n {
        Some(n) if all.len() > n => (all[..n].to_vec(), true),
        _ => (all, false),
    })
}

/// Every manifest of `repo` with its tags, newest push first.
pub(super) fn images(c: &Connection, repo: &RepoName) -> RegistryResult<Vec<ImageRow>> {
    let mut s = c
        .prepare(
            "SELECT m.digest, m.media_type, m.artifact_media_type, m.image_size, \
             m.pushed_at, m.last_pull, \
             (SELECT group_concat(t.tag, char(10)) FROM (SELECT tag FROM tags t WHERE t.repo = m.repo \
              AND t.digest = m.digest ORDER BY tag) t) \
             FROM manifests m WHERE m.repo = ?1 ORDER BY m.pushed_at DESC, m.digest",
        )
        .map_err(err("list images"))?;
    s.query_map([repo.as_str()], |r| {
        let tags: Option<String> = r.get(6)?;
        Ok(ImageRow {
            digest: r.get(0)?,
            media_type: r.get(1)?,
            artifact_media_type: r.get(2)?,
            image_size: r.get(3)?,
            pushed_at: r.get(4)?,
            last_pull: r.get(5)?,
            tags: tags
                .map(|t| t.split('\n').map(str::to_string).collect())
                .unwrap_or_default(),
        })
    })
    .and_then(|rows| rows.collect())
    .map_err(err("list images"))
}

/// Garbage collection's first step: removes every blob link of a repository that no
/// manifest of it names (nor is a manifest itself), unless a client touched it after the
/// last manifest claimed it and less than `grace` seconds ago (a push that uploaded or
/// found it and has not put its manifest yet; a pull reading it). Returns how many went.
pub(super) fn unlink_unreferenced(c: &Connection, now: f64, grace: f64) -> RegistryResult<usize> {
    c.execute(
        "DELETE FROM repo_blobs WHERE \
         NOT EXISTS (SELECT 1 FROM manifest_refs r WHERE r.repo = repo_blobs.repo \
                     AND r.digest = repo_blobs.digest) \
         AND NOT EXISTS (SELECT 1 FROM manifests m WHERE m.repo = repo_blobs.repo \
                     AND m.digest = repo_blobs.digest) \
         AND NOT (touched_at IS NOT NULL AND touched_at > COALESCE(claimed_at, -1) \
                  AND touched_at > ?1)",
        params![now - grace],
    )
    .map_err(err("unlink unreferenced blobs"))
}

/// Every digest some repository links (its blob file must stay).
pub(super) fn linked_digests(c: &Connection) -> RegistryResult<std::collections::HashSet<String>> {
    let mut s = c
        .prepare("SELECT DISTINCT digest FROM repo_blobs")
        .map_err(err("list blob links"))?;
    s.query_map([], |r| r.get(0))
        .and_then(|rows| rows.collect())
        .map_err(err("list blob links"))
}

/// The manifests of `repo` that an image index of it names (a child of a multi-arch
/// image: lifecycle rules leave it to its index).
pub(super) fn child_manifests(
    c: &Connection,
    repo: &RepoName,
) -> RegistryResult<std::collections::HashSet<String>> {
    let mut s = c
        .prepare(
            "SELECT DISTINCT r.digest FROM manifest_refs r JOIN manifests m \
             ON m.repo = r.repo AND m.digest = r.digest WHERE r.repo = ?1",
        )
        .map_err(err("list child manifests"))?;
    s.query_map([repo.as_str()], |r| r.get(0))
        .and_then(|rows| rows.collect())
        .map_err(err("list child manifests"))
}

/// A repository's policy text (SetRepositoryPolicy).
pub(super) fn repository_policy(c: &Connection, repo: &RepoName) -> RegistryResult<Option<String>> {
    c.query_row(
        "SELECT text FROM repository_policies WHERE repo = ?1",
        [repo.as_str()],
        |r| r.get(0),
    )
    .optional()
    .map_err(err("read a repository policy"))
}

pub(super) fn put_repository_policy(
    c: &Connection,
    repo: &RepoName,
    text: &str,
) -> RegistryResult<()> {
    c.execute(
        "INSERT INTO repository_policies (repo, text) VALUES (?1, ?2) \
         ON CONFLICT (repo) DO UPDATE SET text = excluded.text",
        [repo.as_str(), text],
    )
    .map_err(err("store a repository policy"))?;
    Ok(())
}

pub(super) fn delete_repository_policy(c: &Connection, repo: &RepoName) -> RegistryResult<()> {
    c.execute(
        "DELETE FROM repository_policies WHERE repo = ?1",
        [repo.as_str()],
    )
    .map_err(err("delete a repository policy"))?;
    Ok(())
}

/// A repository's lifecycle policy: its text and when the expiry last evaluated it.
pub(super) fn lifecycle_policy(
    c: &Connection,
    repo: &RepoName,
) -> RegistryResult<Option<(String, Option<f64>)>> {
    c.query_row(
        "SELECT text, last_evaluated FROM lifecycle_policies WHERE repo = ?1",
        [repo.as_str()],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
    .map_err(err("read a lifecycle policy"))
}

pub(super) fn put_lifecycle_policy(
    c: &Connection,
    repo: &RepoName,
    text: &str,
) -> RegistryResult<()> {
    c.execute(
        "INSERT INTO lifecycle_policies (repo, text) VALUES (?1, ?2) \
         ON CONFLICT (repo) DO UPDATE SET text = excluded.text, last_evaluated = NULL",
        [repo.as_str(), text],
    )
    .map_err(err("store a lifecycle policy"))?;
    Ok(())
}

pub(super) fn delete_lifecycle_policy(c: &Connection, repo: &RepoName) -> RegistryResult<()> {
    c.execute(
        "DELETE FROM lifecycle_policies WHERE repo = ?1",
        [repo.as_str()],
    )
    .map_err(err("delete a lifecycle policy"))?;
    Ok(())
}

pub(super) fn lifecycle_evaluated(c: &Connection, repo: &RepoName, t: f64) -> RegistryResult<()> {
    c.execute(
        "UPDATE lifecycle_policies SET last_evaluated = ?2 WHERE repo = ?1",
        params![repo.as_str(), t],
    )
    .map_err(err("record a lifecycle evaluation"))?;
    Ok(())
}

/// Every repository that has a lifecycle policy.
pub(super) fn lifecycle_repos(c: &Connection) -> RegistryResult<Vec<String>> {
    let mut s = c
        .prepare("SELECT repo FROM lifecycle_policies ORDER BY repo")
        .map_err(err("list lifecycle policies"))?;
    s.query_map([], |r| r.get(0))
        .and_then(|rows| rows.collect())
        .map_err(err("list lifecycle policies"))
}

/// The last preview of `repo`: the policy text and its results (JSON).
pub(super) fn lifecycle_preview(
    c: &Connection,
    repo: &RepoName,
) -> RegistryResult<Option<(String, String)>> {
    c.query_row(
        "SELECT text, results FROM lifecycle_previews WHERE repo = ?1",
        [repo.as_str()],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
    .map_err(err("read a lifecycle preview"))
}

pub(super) fn put_lifecycle_preview(
    c: &Connection,
    repo: &RepoName,
    text: &str,
    results: &str,
) -> RegistryResult<()> {
    c.execute(
        "INSERT INTO lifecycle_previews (repo, text, results) VALUES (?1, ?2, ?3) \
         ON CONFLICT (repo) DO UPDATE SET text = excluded.text, results = excluded.results",
        [repo.as_str(), text, results],
    )
    .map_err(err("store a lifecycle preview"))?;
    Ok(())
}

/// How many expired images of a repository are remembered (the console's "Expired").
const EXPIRED_KEPT: i64 = 100;

/// One image a lifecycle run expired.
#[derive(Debug, Clone)]
pub struct ExpiredRow {
    pub digest: String,
    /// The image's tags when it expired (JSON array).
    pub tags: String,
    pub pushed_at: f64,
    pub rule: u32,
    pub expired_at: f64,
}

/// Remembers that `e` of `repo` expired, keeping the newest [`EXPIRED_KEPT`].
pub(super) fn record_expired(
    c: &Connection,
    repo: &RepoName,
    e: &ExpiredRow,
) -> RegistryResult<()> {
    c.execute(
        "INSERT INTO lifecycle_expired (repo, digest, tags, pushed_at, rule, expired_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            repo.as_str(),
            e.digest,
            e.tags,
            e.pushed_at,
            e.rule,
            e.expired_at
        ],
    )
    .map_err(err("record an expired image"))?;
    c.execute(
        "DELETE FROM lifecycle_expired WHERE repo = ?1 AND rowid NOT IN (SELECT rowid FROM \
         lifecycle_expired WHERE repo = ?1 ORDER BY expired_at DESC, rowid DESC LIMIT ?2)",
        params![repo.as_str(), EXPIRED_KEPT],
    )
    .map_err(err("record an expired image"))?;
    Ok(())
}

/// The images lifecycle runs expired from `repo`, newest first.
pub(super) fn expired(c: &Connection, repo: &RepoName) -> RegistryResult<Vec<ExpiredRow>> {
    let mut s = c
        .prepare(
            "SELECT digest, tags, pushed_at, rule, expired_at FROM lifecycle_expired \
             WHERE repo = ?1 ORDER BY expired_at DESC, rowid DESC",
        )
        .map_err(err("list expired images"))?;
    s.query_map([repo.as_str()], |r| {
        Ok(ExpiredRow {
            digest: r.get(0)?,
            tags: r.get(1)?,
            pushed_at: r.get(2)?,
            rule: r.get(3)?,
            expired_at: r.get(4)?,
        })
    })
    .and_then(|rows| rows.collect())
    .map_err(err("list expired images"))
}

#[cfg(test)]
mod tests {
    use super::RepositoryRow;

    fn row(mode: &str, filters: Option<&str>) -> RepositoryRow {
        RepositoryRow {
            name: "r".into(),
            created_at: 0.0,
            tag_mutability: mode.into(),
            scan_on_push: false,
            encryption_type: "AES256".into(),
            kms_key: None,
            tags: "[]".into(),
            tag_mutability_exclusion_filters: filters.map(String::from),
        }
    }

    #[test]
    fn a_tag_matching_an_exclusion_filter_is_the_opposite_of_the_mode() {
        let f = Some(
            r#"[{"filterType":"WILDCARD","filter":"dev-*"},
                {"filterType":"WILDCARD","filter":"*-rc*"}]"#,
        );
        let imm = row("IMMUTABLE_WITH_EXCLUSION", f);
        let mu = row("MUTABLE_WITH_EXCLUSION", f);
        for (tag, excluded) in [
            ("dev-1", true),
            ("dev-", true),
            ("v2-rc1", true),
            ("v1", false),
            ("xdev-1", false),
            ("dev", false),
        ] {
            assert_eq!(imm.tag_is_immutable(tag), !excluded, "{tag}");
            assert_eq!(mu.tag_is_immutable(tag), excluded, "{tag}");
        }
        assert!(row("IMMUTABLE", None).tag_is_immutable("dev-1"));
        assert!(!row("MUTABLE", None).tag_is_immutable("v1"));
    }
}

#[cfg(test)]
mod expired_tests {
    use super::*;

    #[test]
    fn the_newest_expired_images_are_kept_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let c = open(&dir.path().join("registry.db")).unwrap();
        let repo = RepoName::parse("keep/app").unwrap();
        for i in 0..(EXPIRED_KEPT + 5) {
            let row = ExpiredRow {
                digest: format!("sha256:{i:064}"),
                tags: format!(r#"["v{i}"]"#),
                pushed_at: i as f64,
                rule: 1,
                expired_at: 1000.0 + i as f64,
            };
            record_expired(&c, &repo, &row).unwrap();
        }
        let got = expired(&c, &repo).unwrap();
        assert_eq!(got.len() as i64, EXPIRED_KEPT);
        assert_eq!(got[0].tags, format!(r#"["v{}"]"#, EXPIRED_KEPT + 4));
        assert_eq!(got.last().unwrap().tags, r#"["v5"]"#);
    }
}
