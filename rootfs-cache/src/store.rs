//! The on-disk cache: content-addressed blobs, one directory per unpacked layer, image
//! records, temp space and the locks that let several processes share it safely.
//!
//! Layout under the root (DESIGN.md): `blobs/sha256/<hex>`, `layers/sha256/<diffid>/`,
//! `images/<sha256 of reference>.json`, `tmp/<pid>-<n>/`, `locks/`. A layer directory
//! or blob exists only once complete: both are made in `tmp/` and renamed into place.

use crate::digest::Digest;
use rustix::fs::{FlockOperation, flock};
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("failed to {op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to parse image record {path}")]
    Record {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("blob {expected} has digest {actual}: refusing to store it")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("no image {0:?} in the local cache (see `minifargate images`)")]
    NoSuchImage(String),
    #[error("{reference:?} matches {count} images; use the full reference or digest")]
    Ambiguous { reference: String, count: usize },
}

fn io_err<'p>(op: &'static str, path: &'p Path) -> impl FnOnce(io::Error) -> StoreError + 'p {
    move |source| StoreError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Writes each `(temp, dest, data)`'s data to `temp`, fsyncs them all at once (one thread
/// each but the last), then renames each `temp` to its `dest` in order.
fn write_synced(files: &[(PathBuf, PathBuf, &[u8])]) -> Result<(), StoreError> {
    let mut open = Vec::with_capacity(files.len());
    for (tmp, dest, data) in files {
        let mut f = File::create(tmp).map_err(io_err("write", dest))?;
        f.write_all(data).map_err(io_err("write", dest))?;
        open.push((f, dest));
    }
    std::thread::scope(|scope| {
        let mut rest = open.iter();
        let last = rest.next_back();
        // Through the thread gate: a supervisor may be creating a container meanwhile.
        let mut result = Ok(());
        let mut others = Vec::new();
        for (f, dest) in rest {
            let sync = move || f.sync_all().map_err(io_err("sync", dest));
            match threadgate::spawn_scoped(scope, std::thread::Builder::new(), sync) {
                Ok(t) => others.push(t),
                // No thread: synced here.
                Err(_) => result = result.and(f.sync_all().map_err(io_err("sync", dest))),
            }
        }
        if let Some((f, dest)) = last {
            result = result.and(f.sync_all().map_err(io_err("sync", dest)));
        }
        for t in others {
            let r = t.join().unwrap_or_else(|_| {
                Err(StoreError::Io {
                    op: "sync",
                    path: PathBuf::new(),
                    source: io::Error::other("the sync thread panicked"),
                })
            });
            result = result.and(r);
        }
        result
    })?;
    for (tmp, dest, _) in files {
        fs::rename(tmp, dest).map_err(io_err("move into place", dest))?;
    }
    Ok(())
}

/// One layer of an image as the cache records it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LayerRecord {
    /// Digest of the blob as stored in the registry (compressed).
    pub digest: Digest,
    /// Digest of the uncompressed tar; names the layer directory.
    pub diff_id: Digest,
    pub size: u64,
    pub media_type: String,
}

impl LayerRecord {
    /// Pairs a manifest's layers with the config's diff-ids (their counts were checked
    /// when the config was parsed).
    pub fn from_manifest(
        info: &crate::manifest::ImageInfo,
        config: &crate::manifest::ConfigInfo,
    ) -> Vec<LayerRecord> {
        info.layers
            .iter()
            .zip(config.diff_ids.iter())
            .map(|(l, diff)| LayerRecord {
                digest: l.digest.clone(),
                diff_id: diff.clone(),
                size: l.size,
                media_type: l.media_type.clone(),
            })
            .collect()
    }
}

/// An image in the cache: a name pointing at a platform manifest and its layers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageRecord {
    /// Normalised reference, e.g. `docker.io/library/busybox:latest`.
    pub reference: String,
    /// `registry/repository`.
    pub repository: String,
    pub tag: Option<String>,
    /// Digest of the platform manifest.
    pub digest: Digest,
    /// Digest of the index or manifest list it was selected from, if any.
    pub index_digest: Option<Digest>,
    pub media_type: String,
    pub config: Digest,
    /// `os/arch[/variant]`.
    pub platform: String,
    /// Sum of the compressed layer sizes.
    pub size: u64,
    pub pulled_at: chrono::DateTime<chrono::Utc>,
    pub layers: Vec<LayerRecord>,
    /// Put in the cache by `load` (from an archive or a layout), not pulled from its
    /// registry: no registry credentials were used to get it. Records written before
    /// this member existed read as pulled.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub loaded: bool,
}

#[derive(Debug, Default, Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PruneReport {
    pub blobs_removed: u64,
    pub layers_removed: u64,
    pub bytes_freed: u64,
}

/// The cache root. Cheap to clone; every method is safe across processes.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// A held `flock`; released on drop.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

/// A directory under `tmp/` removed on drop unless it was committed.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if self.path.exists()
            && let Err(e) = fs::remove_dir_all(&self.path)
        {
            tracing::warn!(path = %self.path.display(), error = %e, "failed to remove temp dir");
        }
    }
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Store {
    /// Opens (creating if needed) the cache at `root` and removes temp files left by
    /// processes that no longer exist.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        let s = Store {
            root: root.to_path_buf(),
        };
        for d in [
            "blobs/sha256",
            "layers/sha256",
            "layers/implicit",
            "images",
            "tmp",
            "trash",
            "locks",
        ] {
            let p = root.join(d);
            fs::create_dir_all(&p).map_err(io_err("create", &p))?;
        }
        // Layers keep what images carry — setuid root binaries, device nodes — as Docker
        // and podman do; like their storage dirs, these are for root only, so no other
        // user of the host can reach them through the cache. Blobs and image records too:
        // a private image's config (its ENV) is no other user's to read, also when the
        // state root above is searchable for tasks' user namespaces (0711).
        for d in ["layers", "tmp", "trash", "blobs", "images"] {
            let p = root.join(d);
            let md = fs::metadata(&p).map_err(io_err("stat", &p))?;
            if md.permissions().mode() & 0o777 != 0o700
                && let Err(e) = fs::set_permissions(&p, fs::Permissions::from_mode(0o700))
            {
                tracing::warn!(path = %p.display(), error = %e, "could not make the directory private");
            }
        }
        spread_new_dirs(&root.join("tmp"));
        s.clean_stale_temp();
        Ok(s)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn clean_stale_temp(&self) {
        let Ok(rd) = fs::read_dir(self.root.join("tmp")) else {
            return;
        };
        for e in rd.flatten() {
            let name = e.file_name();
            let pid = name
                .to_str()
                .and_then(|n| n.split('-').next())
                .and_then(|p| p.parse::<i32>().ok());
            let alive = pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
            if !alive {
                tracing::info!(path = %e.path().display(), "removing temp data of a dead process");
                let _ = if e.path().is_dir() {
                    fs::remove_dir_all(e.path())
                } else {
                    fs::remove_file(e.path())
                };
            }
        }
    }

    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(d.hex())
    }

    pub fn layer_path(&self, diff_id: &Digest) -> PathBuf {
        self.root.join("layers/sha256").join(diff_id.hex())
    }

    fn implicit_path(&self, diff_id: &Digest) -> PathBuf {
        self.root
            .join("layers/implicit")
            .join(format!("{}.json", diff_id.hex()))
    }

    /// Records the directories a layer's tar needed but did not list (written before
    /// the layer is committed, so a committed layer always has its list).
    pub fn write_implicit_dirs(
        &self,
        diff_id: &Digest,
        dirs: &[(String, String)],
    ) -> Result<(), StoreError> {
        let p = self.implicit_path(diff_id);
        if dirs.is_empty() {
            return Ok(());
        }
        let data = serde_json::to_vec(dirs).expect("strings serialise");
        fs::write(&p, data).map_err(io_err("write", &p))
    }

    /// (directory, first entry that needed it) pairs; empty for most layers.
    pub fn implicit_dirs(&self, diff_id: &Digest) -> Result<Vec<(String, String)>, StoreError> {
        let p = self.implicit_path(diff_id);
        match fs::read(&p) {
            Ok(d) => {
                serde_json::from_slice(&d).map_err(|source| StoreError::Record { path: p, source })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(io_err("read", &p)(e)),
        }
    }

    /// Removes a layer no image record uses (after a refused pull).
    pub fn remove_layer_if_unused(&self, diff_id: &Digest) -> Result<(), StoreError> {
        let used = self
            .list_images()?
            .iter()
            .any(|r| r.layers.iter().any(|l| &l.diff_id == diff_id));
        if !used {
            let p = self.layer_path(diff_id);
            if p.exists() {
                fs::remove_dir_all(&p).map_err(io_err("remove", &p))?;
            }
            let _ = fs::remove_file(self.implicit_path(diff_id));
        }
        Ok(())
    }

    /// Moves a directory of the cache into `trash/` (one rename, under a name of this
    /// process) for [`Store::empty_trash`] to delete later; a failed rename deletes it now.
    /// Why: on a journal-less ext4 (these VMs) an inode freed in the last minute is
    /// skipped, after a check, each time a new one is allocated (`recently_deleted()` in
    /// fs/ext4/ialloc.c), so a pull right after a prune that deleted in place paid for
    /// every inode the prune freed (docs/benchmarks.md, "A pull right after a delete").
    fn to_trash(&self, path: &Path) -> Result<(), StoreError> {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dest = self
            .root
            .join("trash")
            .join(format!("{}-{n}-{name}", std::process::id()));
        match fs::rename(path, &dest) {
            Ok(()) => Ok(()),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "could not move to the trash; deleting now");
                fs::remove_dir_all(path).map_err(io_err("remove", path))
            }
        }
    }

    /// Whether `trash/` holds anything to delete.
    pub fn has_trash(&self) -> bool {
        fs::read_dir(self.root.join("trash")).is_ok_and(|mut d| d.next().is_some())
    }

    /// Deletes everything in `trash/`: what `prune` moved there and whatever a deleter
    /// killed midway left (so nothing stays there after the next one). One deleter at a
    /// time (`trash.lock`); returns how many entries went.
    pub fn empty_trash(&self) -> Result<usize, StoreError> {
        let _lock = self.lock_file("trash.lock", FlockOperation::LockExclusive)?;
        let dir = self.root.join("trash");
        let mut n = 0;
        for e in fs::read_dir(&dir).map_err(io_err("read", &dir))?.flatten() {
            let p = e.path();
            let r = if e.file_type().is_ok_and(|t| t.is_dir()) {
                fs::remove_dir_all(&p)
            } else {
                fs::remove_file(&p)
            };
            match r {
                Ok(()) => n += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("remove", &p)(e)),
            }
        }
        Ok(n)
    }

    pub fn has_layer(&self, diff_id: &Digest) -> bool {
        self.layer_path(diff_id).is_dir()
    }

    /// A fresh directory under `tmp/`, named after this process so a later run can
    /// tell it is stale.
    pub fn temp_dir(&self) -> Result<TempDir, StoreError> {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = self
            .root
            .join("tmp")
            .join(format!("{}-{n}-{nanos:x}", std::process::id()));
        fs::create_dir(&path).map_err(io_err("create temp dir", &path))?;
        Ok(TempDir { path })
    }

    fn lock_file(&self, name: &str, op: FlockOperation) -> Result<Lock, StoreError> {
        let path = self.root.join("locks").join(name);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err("open lock", &path))?;
        flock(&file, op).map_err(|e| StoreError::Io {
            op: "lock",
            path: path.clone(),
            source: e.into(),
        })?;
        Ok(Lock { _file: file })
    }

    /// Held by pulls and loads; `prune` takes it exclusively.
    pub fn shared_lock(&self) -> Result<Lock, StoreError> {
        self.lock_file("cache.lock", FlockOperation::LockShared)
    }

    pub fn exclusive_lock(&self) -> Result<Lock, StoreError> {
        self.lock_file("cache.lock", FlockOperation::LockExclusive)
    }

    /// Serialises the unpacking of one layer across processes (blocks).
    pub fn layer_lock(&self, diff_id: &Digest) -> Result<Lock, StoreError> {
        self.lock_file(
            &format!("layer-{}.lock", diff_id.hex()),
            FlockOperation::LockExclusive,
        )
    }

    /// The layer's lock if nobody holds it now (`None`: another pull is staging the
    /// layer). flock locks belong to the open file, so a second pull in this same
    /// process sees the layer as busy too.
    pub fn try_layer_lock(&self, diff_id: &Digest) -> Result<Option<Lock>, StoreError> {
        match self.lock_file(
            &format!("layer-{}.lock", diff_id.hex()),
            FlockOperation::NonBlockingLockExclusive,
        ) {
            Ok(l) => Ok(Some(l)),
            Err(StoreError::Io { source, .. }) if source.kind() == io::ErrorKind::WouldBlock => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    pub fn read_blob(&self, d: &Digest) -> Result<Option<Vec<u8>>, StoreError> {
        let p = self.blob_path(d);
        match fs::read(&p) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("read blob", &p)(e)),
        }
    }

    /// Verifies `data` against `expected` and stores it (temp file + rename).
    pub fn write_blob(&self, expected: &Digest, data: &[u8]) -> Result<(), StoreError> {
        let actual = Digest::of(data);
        if &actual != expected {
            return Err(StoreError::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        let dest = self.blob_path(expected);
        if dest.exists() {
            return Ok(());
        }
        let tmp = self.root.join("tmp").join(format!(
            "{}-blob-{}",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let res = (|| {
            let mut f = File::create(&tmp)?;
            f.write_all(data)?;
            f.sync_all()?;
            fs::rename(&tmp, &dest)
        })();
        if res.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        res.map_err(io_err("write blob", &dest))
    }

    /// Stores `blobs` (each verified against its digest; those already stored are
    /// skipped) and then the image record, with one round of flushes: every file is
    /// written to a temp file first, all are fsynced side by side (a thread each, so the
    /// disk's flushes overlap rather than queue: ~10-30 ms each here, and a pull has three
    /// or four), then each is renamed into place, the record last, so a record never
    /// points at a blob that is not there. [`Self::write_blob`] + [`Self::save_image`]
    /// with the same result on disk.
    pub fn save_image_with_blobs(
        &self,
        blobs: &[(&Digest, &[u8])],
        rec: &ImageRecord,
    ) -> Result<(), StoreError> {
        let mut files: Vec<(PathBuf, PathBuf, &[u8])> = Vec::new();
        for (expected, data) in blobs {
            let actual = Digest::of(data);
            if &actual != *expected {
                return Err(StoreError::DigestMismatch {
                    expected: (*expected).clone(),
                    actual,
                });
            }
            let dest = self.blob_path(expected);
            if dest.exists() || files.iter().any(|(_, d, _)| d == &dest) {
                continue;
            }
            let tmp = self.root.join("tmp").join(format!(
                "{}-blob-{}",
                std::process::id(),
                TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            files.push((tmp, dest, data));
        }
        let record = serde_json::to_vec_pretty(rec).expect("records serialise");
        let dest = self.record_path(&rec.reference);
        files.push((
            dest.with_extension(format!("json.tmp{}", std::process::id())),
            dest,
            &record,
        ));
        let res = write_synced(&files);
        if res.is_err() {
            for (tmp, _, _) in &files {
                let _ = fs::remove_file(tmp);
            }
        }
        res
    }

    /// Flushes the cache's filesystem (before layers are committed).
    pub fn sync(&self) -> Result<(), StoreError> {
        let dir = File::open(&self.root).map_err(io_err("open", &self.root))?;
        rustix::fs::syncfs(&dir).map_err(|e| io_err("sync", &self.root)(e.into()))
    }

    /// Moves a verified, unpacked layer from `tmp` into `layers/`. Call [`Store::sync`]
    /// first: the rename must not reach the disk before the files do.
    pub fn commit_layer(&self, unpacked: &Path, diff_id: &Digest) -> Result<PathBuf, StoreError> {
        let dest = self.layer_path(diff_id);
        match fs::rename(unpacked, &dest) {
            Ok(()) => {}
            // Someone else committed it first (cannot happen under the layer lock, but
            // an equal layer is as good as ours).
            Err(_) if dest.is_dir() => {}
            Err(e) => return Err(io_err("move into place", &dest)(e)),
        }
        Ok(dest)
    }

    fn record_path(&self, reference: &str) -> PathBuf {
        self.root
            .join("images")
            .join(format!("{}.json", Digest::of(reference.as_bytes()).hex()))
    }

    pub fn save_image(&self, rec: &ImageRecord) -> Result<(), StoreError> {
        let dest = self.record_path(&rec.reference);
        let tmp = dest.with_extension(format!("json.tmp{}", std::process::id()));
        let data = serde_json::to_vec_pretty(rec).expect("records serialise");
        let res = (|| {
            let mut f = File::create(&tmp)?;
            f.write_all(&data)?;
            f.sync_all()?;
            fs::rename(&tmp, &dest)
        })();
        if res.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        res.map_err(io_err("write image record", &dest))
    }

    pub fn list_images(&self) -> Result<Vec<ImageRecord>, StoreError> {
        let dir = self.root.join("images");
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).map_err(io_err("read", &dir))? {
            let e = e.map_err(io_err("read", &dir))?;
            let p = e.path();
            if p.extension().and_then(|x| x.to_str()) != Some("json") {
                continue;
            }
            let data = match fs::read(&p) {
                Ok(d) => d,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err("read", &p)(e)),
            };
            let rec: ImageRecord = serde_json::from_slice(&data)
                .map_err(|source| StoreError::Record { path: p, source })?;
            out.push(rec);
        }
        out.sort_by(|a, b| a.reference.cmp(&b.reference));
        Ok(out)
    }

    /// Finds an image by normalised reference, by `sha256:` digest (or a unique hex
    /// prefix of one), or by the reference as the user typed it.
    pub fn find_image(
        &self,
        wanted: &str,
        normalised: Option<&str>,
    ) -> Result<ImageRecord, StoreError> {
        let all = self.list_images()?;
        let by_name: Vec<_> = all
            .iter()
            .filter(|r| Some(r.reference.as_str()) == normalised || r.reference == wanted)
            .collect();
        if let [one] = by_name.as_slice() {
            return Ok((*one).clone());
        }
        let hex = wanted.strip_prefix("sha256:").unwrap_or(wanted);
        if hex.len() >= 6 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let by_digest: Vec<_> = all
                .iter()
                .filter(|r| r.digest.hex().starts_with(hex))
                .collect();
            return match by_digest.as_slice() {
                [one] => Ok((*one).clone()),
                [] => Err(StoreError::NoSuchImage(wanted.to_string())),
                many => Err(StoreError::Ambiguous {
                    reference: wanted.to_string(),
                    count: many.len(),
                }),
            };
        }
        Err(StoreError::NoSuchImage(wanted.to_string()))
    }

    /// The image's config (entrypoint, cmd, env, user, workdir, healthcheck …), which
    /// the run-task executor merges with the task definition.
    pub fn image_config(
        &self,
        rec: &ImageRecord,
    ) -> Result<oci_spec::image::ImageConfiguration, StoreError> {
        let path = self.blob_path(&rec.config);
        let data = fs::read(&path).map_err(io_err("read image config", &path))?;
        serde_json::from_slice(&data).map_err(|source| StoreError::Record { path, source })
    }

    pub fn remove_image(&self, rec: &ImageRecord) -> Result<(), StoreError> {
        let p = self.record_path(&rec.reference);
        fs::remove_file(&p).map_err(io_err("remove image record", &p))
    }

    /// Removes blobs and layer directories that no image record references.
    pub fn prune(&self) -> Result<PruneReport, StoreError> {
        let _lock = self.exclusive_lock()?;
        let images = self.list_images()?;
        let mut blobs = std::collections::HashSet::new();
        let mut layers = std::collections::HashSet::new();
        for r in &images {
            blobs.insert(r.digest.hex().to_string());
            blobs.insert(r.config.hex().to_string());
            if let Some(i) = &r.index_digest {
                blobs.insert(i.hex().to_string());
            }
            for l in &r.layers {
                layers.insert(l.diff_id.hex().to_string());
            }
        }
        let mut report = PruneReport::default();
        let bdir = self.root.join("blobs/sha256");
        for e in fs::read_dir(&bdir)
            .map_err(io_err("read", &bdir))?
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            if !blobs.contains(&name) {
                let size = e.metadata().map(|m| m.len()).unwrap_or(0);
                fs::remove_file(e.path()).map_err(io_err("remove", &e.path()))?;
                report.blobs_removed += 1;
                report.bytes_freed += size;
            }
        }
        let ldir = self.root.join("layers/sha256");
        for e in fs::read_dir(&ldir)
            .map_err(io_err("read", &ldir))?
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            if !layers.contains(&name) {
                let size = disk_usage(&e.path());
                // Freed later, by empty_trash (the CLI's prune starts it in the background).
                self.to_trash(&e.path())?;
                let _ = fs::remove_file(self.root.join("locks").join(format!("layer-{name}.lock")));
                let _ = fs::remove_file(
                    self.root
                        .join("layers/implicit")
                        .join(format!("{name}.json")),
                );
                report.layers_removed += 1;
                report.bytes_freed += size;
            }
        }
        Ok(report)
    }
}

/// Bytes used by the files under `path` (symlinks not followed, hardlinks counted once).
pub fn disk_usage(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(m) = fs::symlink_metadata(&p) else {
            continue;
        };
        if m.nlink() > 1 && !m.is_dir() && !seen.insert((m.dev(), m.ino())) {
            continue;
        }
        total += m.len();
        if m.is_dir()
            && let Ok(rd) = fs::read_dir(&p)
        {
            stack.extend(rd.flatten().map(|e| e.path()));
        }
    }
    total
}

/// Asks ext2/3/4 to place every directory made directly in `dir` (each pull's staging
/// dir, so each layer it unpacks) the way it places top-level directories: Orlov's
/// spread over the block groups, instead of the parent's group (`FS_TOPDIR_FL`, `chattr
/// +T`). Ref: fs/ext4/ialloc.c, find_group_orlov.
///
/// Why: a layer's files are made in its staging dir's group. Without a journal (as on
/// the VMs here), ext4 allocating an inode skips each one freed in the last 60 s (360 s
/// while its inode table block is dirty), and scans them from the group's start again
/// for every new inode (`recently_deleted()` in find_inode_bit). A pull right after
/// `prune` freed the previous layers' ~10 000 inodes in that same group spent 2-3 s of
/// system CPU in that scan; spread to other groups, it spends 0.2 s
/// (docs/benchmarks.md, "A pull right after a delete"). The same churn comes from
/// launching tasks: each makes and later removes its dirs under one parent (minifargate's
/// `tasks/` dirs). Filesystems without the flag (tmpfs, overlayfs, …) are left as they
/// are.
pub fn spread_new_dirs(dir: &Path) {
    use rustix::fs::{IFlags, ioctl_getflags, ioctl_setflags};
    let Ok(f) = File::open(dir) else { return };
    match ioctl_getflags(&f) {
        Ok(flags) if flags.contains(IFlags::TOPDIR) => {}
        Ok(flags) => {
            if let Err(e) = ioctl_setflags(&f, flags | IFlags::TOPDIR) {
                tracing::debug!(path = %dir.display(), error = %e, "could not set FS_TOPDIR_FL");
            }
        }
        Err(e) => {
            tracing::debug!(path = %dir.display(), error = %e, "no inode flags here (FS_IOC_GETFLAGS)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_moves_unused_layers_to_the_trash_and_empty_trash_deletes_them() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let unused = s.layer_path(&Digest::of(b"unused"));
        fs::create_dir_all(unused.join("etc")).unwrap();
        fs::write(unused.join("etc/x"), b"x").unwrap();
        let report = s.prune().unwrap();
        assert_eq!(report.layers_removed, 1);
        assert!(!unused.exists());
        assert!(s.has_trash());
        // An entry left by a deleter that was killed goes with the rest.
        fs::create_dir_all(dir.path().join("trash/1-0-left/a/b")).unwrap();
        assert_eq!(s.empty_trash().unwrap(), 2);
        assert!(!s.has_trash());
        assert_eq!(s.empty_trash().unwrap(), 0);
    }

    #[test]
    fn staging_dirs_are_placed_as_top_level_dirs_where_the_filesystem_has_the_flag() {
        use rustix::fs::{IFlags, ioctl_getflags};
        let dir = tempfile::tempdir().unwrap();
        // ext2/3/4 (as /tmp is on the CI VMs) answer FS_IOC_GETFLAGS; tmpfs does not.
        let has_flags = ioctl_getflags(File::open(dir.path()).unwrap()).is_ok();
        Store::open(dir.path()).unwrap();
        let flags = ioctl_getflags(File::open(dir.path().join("tmp")).unwrap());
        if has_flags {
            assert!(flags.unwrap().contains(IFlags::TOPDIR));
        }
        // Opening again leaves it set and fails nothing.
        Store::open(dir.path()).unwrap();
    }

    fn record(reference: &str, diff: &Digest, cfg: &Digest) -> ImageRecord {
        ImageRecord {
            reference: reference.to_string(),
            repository: "r".into(),
            tag: Some("t".into()),
            digest: Digest::of(reference.as_bytes()),
            index_digest: None,
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            config: cfg.clone(),
            platform: "linux/amd64".into(),
            size: 1,
            pulled_at: chrono::Utc::now(),
            layers: vec![LayerRecord {
                digest: diff.clone(),
                diff_id: diff.clone(),
                size: 1,
                media_type: "x".into(),
            }],
            loaded: false,
        }
    }

    #[test]
    fn blobs_are_verified_and_prune_keeps_referenced_data() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let cfg = Digest::of(b"config");
        assert!(matches!(
            s.write_blob(&cfg, b"other"),
            Err(StoreError::DigestMismatch { .. })
        ));
        s.write_blob(&cfg, b"config").unwrap();
        let orphan = Digest::of(b"orphan");
        s.write_blob(&orphan, b"orphan").unwrap();
        let kept = Digest::of(b"kept-layer");
        let gone = Digest::of(b"gone-layer");
        for d in [&kept, &gone] {
            let t = s.temp_dir().unwrap();
            fs::write(t.path().join("f"), b"12345").unwrap();
            let staged = t.path().join("x");
            fs::create_dir(&staged).unwrap();
            fs::write(staged.join("data"), b"12345").unwrap();
            s.commit_layer(&staged, d).unwrap();
        }
        let rec = record("example/a:1", &kept, &cfg);
        s.write_blob(&rec.digest, b"example/a:1").unwrap();
        s.save_image(&rec).unwrap();
        let report = s.prune().unwrap();
        assert_eq!(report.blobs_removed, 1);
        assert_eq!(report.layers_removed, 1);
        assert!(s.has_layer(&kept) && !s.has_layer(&gone));
        assert!(s.read_blob(&cfg).unwrap().is_some());
        assert!(s.read_blob(&orphan).unwrap().is_none());
        // Temp dirs are gone once dropped.
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        // Lookup by name, digest prefix; removal.
        let found = s.find_image(&rec.digest.hex()[..12], None).unwrap();
        assert_eq!(found.reference, "example/a:1");
        assert!(matches!(
            s.find_image("nope", None),
            Err(StoreError::NoSuchImage(_))
        ));
        s.remove_image(&found).unwrap();
        assert!(s.list_images().unwrap().is_empty());
    }

    #[test]
    fn an_image_saved_with_its_blobs_is_found_whole_and_a_bad_blob_saves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let cfg = Digest::of(b"config");
        let layer = Digest::of(b"layer");
        let rec = record("example/b:1", &layer, &cfg);
        let manifest: &[u8] = b"example/b:1";
        let other = Digest::of(b"other");
        // One blob not matching its digest: refused, and nothing is stored.
        assert!(matches!(
            s.save_image_with_blobs(&[(&rec.digest, manifest), (&cfg, b"not the config")], &rec),
            Err(StoreError::DigestMismatch { .. })
        ));
        assert!(s.list_images().unwrap().is_empty());
        assert!(s.read_blob(&cfg).unwrap().is_none());
        // A blob stored before (another image's) is kept as it is.
        s.write_blob(&other, b"other").unwrap();
        s.save_image_with_blobs(
            &[
                (&rec.digest, manifest),
                (&cfg, b"config"),
                (&other, b"other"),
            ],
            &rec,
        )
        .unwrap();
        let listed = s.list_images().unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(
            (&listed[0].reference, &listed[0].digest, &listed[0].config),
            (&rec.reference, &rec.digest, &rec.config)
        );
        assert_eq!(s.read_blob(&cfg).unwrap().as_deref(), Some(&b"config"[..]));
        assert_eq!(s.read_blob(&rec.digest).unwrap().as_deref(), Some(manifest));
        assert_eq!(s.read_blob(&other).unwrap().as_deref(), Some(&b"other"[..]));
        // No temp file left beside the blobs or the record.
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        let leftovers: Vec<_> = fs::read_dir(dir.path().join("images"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| !e.file_name().to_string_lossy().ends_with(".json"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn stale_temp_data_is_removed_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        // PID 0x7fffffff cannot exist (pid_max is at most 2^22).
        let stale = dir.path().join("tmp/2147483647-0-0");
        fs::create_dir(&stale).unwrap();
        let mine = s.temp_dir().unwrap();
        Store::open(dir.path()).unwrap();
        assert!(!stale.exists());
        assert!(mine.path().exists());
    }
}
