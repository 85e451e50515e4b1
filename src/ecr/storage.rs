//! The registry's blobs on disk: `blobs/sha256/<hex>`, content-addressed, as pushed
//! (layers stay compressed). An upload is a file under `uploads/` that grows chunk by
//! chunk; it becomes a blob only once its bytes hash to the digest the client names
//! (fsync, then rename into `blobs/`), so `blobs/` never holds a partial or wrong file.
//! A refused digest removes the upload; a cut upload stays under `uploads/` (resumable,
//! as the spec allows) until cancelled or purged.

use super::{Digest, Registry, RegistryError, RegistryResult, RepoName, meta};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub(super) fn create_dirs(dir: &Path) -> RegistryResult<()> {
    use std::os::unix::fs::DirBuilderExt;
    for d in [
        dir.to_path_buf(),
        dir.join("blobs/sha256"),
        dir.join("uploads"),
    ] {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&d)
            .map_err(|source| RegistryError::Storage {
                what: format!("create the registry directory {}", d.display()),
                source,
            })?;
    }
    Ok(())
}

fn io_err(what: String) -> impl FnOnce(io::Error) -> RegistryError {
    move |source| RegistryError::Storage { what, source }
}

/// A stored blob: where it is and its size.
#[derive(Debug, Clone)]
pub struct BlobFile {
    pub path: PathBuf,
    pub size: u64,
}

/// A new upload's id: a random UUID (the spec's `Docker-Upload-UUID`).
fn new_upload_id() -> String {
    let mut b = [0u8; 16];
    getrandom::getrandom(&mut b).expect("the kernel's random numbers");
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn upload_id_ok(id: &str) -> bool {
    id.len() == 36 && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

impl Registry {
    pub(super) fn blob_path(&self, d: &Digest) -> PathBuf {
        self.dir.join("blobs/sha256").join(d.hex())
    }

    fn upload_path(&self, id: &str) -> PathBuf {
        self.dir.join("uploads").join(id)
    }

    /// Blob `d` of repository `repo` (pushed to it or mounted into it).
    pub fn blob(&self, repo: &RepoName, d: &Digest) -> RegistryResult<BlobFile> {
        self.blob_from(repo, d, true)
    }

    /// [`Registry::blob`] for another serve of the cluster: only what this serve holds
    /// (never fetched from a third, so two serves never ask each other in a loop).
    pub fn blob_here(&self, repo: &RepoName, d: &Digest) -> RegistryResult<BlobFile> {
        self.blob_from(repo, d, false)
    }

    fn blob_from(&self, repo: &RepoName, d: &Digest, peers: bool) -> RegistryResult<BlobFile> {
        let unknown = || RegistryError::BlobUnknown(format!("{d} in repository {repo}"));
        let db = self.db();
        let shared = self.cluster.get().is_some();
        let linked = meta::has_blob(&db, repo, d)?;
        let named = || meta::named_by_manifest(&db, repo, d);
        if !(linked || (shared && named()?)) {
            return Err(unknown());
        }
        if shared && peers && !self.blob_path(d).exists() {
            // The cluster's manifest names it; another serve holds the bytes.
            drop(db);
            self.fetch_from_peer(repo, d)?;
            return self.blob_from(repo, d, false);
        }
        // A client that asks for a blob is about to use it (a push naming it in its
        // manifest, a pull reading it): garbage collection's grace keeps it meanwhile.
        meta::touch_blob(&db, repo, d)?;
        drop(db);
        let path = self.blob_path(d);
        match fs::metadata(&path) {
            Ok(m) => Ok(BlobFile {
                path,
                size: m.len(),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(unknown()),
            Err(e) => Err(io_err(format!("read blob {}", path.display()))(e)),
        }
    }

    /// Unlinks blob `d` from `repo` (the bytes go at the next garbage collection once no
    /// repository links them).
    pub fn delete_blob(&self, repo: &RepoName, d: &Digest) -> RegistryResult<()> {
        if !meta::unlink_blob(&self.db(), repo, d)? {
            return Err(RegistryError::BlobUnknown(format!(
                "{d} in repository {repo}"
            )));
        }
        Ok(())
    }

    /// Cross-repository mount: blob `d` of `from` linked into `repo`; false when `from`
    /// does not have it (the caller then starts an ordinary upload, as the spec says).
    pub fn mount(&self, repo: &RepoName, d: &Digest, from: &RepoName) -> RegistryResult<bool> {
        let db = self.db();
        if !meta::has_blob(&db, from, d)? || !self.blob_path(d).exists() {
            return Ok(false);
        }
        meta::link_blob(&db, repo, d)?;
        Ok(true)
    }

    pub fn start_upload(&self, repo: &RepoName) -> RegistryResult<String> {
        let id = new_upload_id();
        let path = self.upload_path(&id);
        File::create_new(&path).map_err(io_err(format!("create upload {}", path.display())))?;
        meta::add_upload(&self.db(), &id, repo)?;
        Ok(id)
    }

    fn check_upload(&self, repo: &RepoName, id: &str) -> RegistryResult<PathBuf> {
        let unknown = || RegistryError::BlobUploadUnknown(format!("upload {id} of {repo}"));
        if !upload_id_ok(id) || meta::upload_repo(&self.db(), id)?.as_ref() != Some(repo) {
            return Err(unknown());
        }
        Ok(self.upload_path(id))
    }

    /// The bytes received so far by upload `id`.
    pub fn upload_size(&self, repo: &RepoName, id: &str) -> RegistryResult<u64> {
        let path = self.check_upload(repo, id)?;
        fs::metadata(&path)
            .map(|m| m.len())
            .map_err(io_err(format!("read upload {}", path.display())))
    }

    /// The upload's file opened for appending a chunk that starts at `start` (None: no
    /// Content-Range, the chunk follows what is there). A chunk that does not start where
    /// the upload ends is refused (416, out of order). Returns the file and its size.
    pub fn upload_writer(
        &self,
        repo: &RepoName,
        id: &str,
        start: Option<u64>,
    ) -> RegistryResult<(File, u64)> {
        let path = self.check_upload(repo, id)?;
        let f = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io_err(format!("open upload {}", path.display())))?;
        let size = f
            .metadata()
            .map_err(io_err(format!("read upload {}", path.display())))?
            .len();
        if let Some(start) = start
            && start != size
        {
            return Err(RegistryError::RangeInvalid {
                message: format!(
                    "the chunk starts at byte {start}, the upload has {size} bytes (chunks \
                     must be sent in order)"
                ),
                size,
            });
        }
        Ok((f, size))
    }

    /// Completes upload `id` as blob `digest`: its bytes are hashed, and only if they match
    /// is the file renamed into the blob store and linked to `repo`. A mismatch removes the
    /// upload (DIGEST_INVALID).
    pub fn finish_upload(&self, repo: &RepoName, id: &str, digest: &Digest) -> RegistryResult<()> {
        let path = self.check_upload(repo, id)?;
        let actual = hash_file(&path)?;
        if &actual != digest {
            self.remove_upload(id);
            return Err(RegistryError::DigestInvalid(format!(
                "the upload's bytes hash to {actual}, not {digest}; the upload is discarded"
            )));
        }
        sync_file(&path)?;
        let dest = self.blob_path(digest);
        // Under the lock: garbage collection never sees the file in blobs/ before its link.
        let db = self.db();
        fs::rename(&path, &dest).map_err(io_err(format!(
            "move upload {} to {}",
            path.display(),
            dest.display()
        )))?;
        meta::remove_upload(&db, id)?;
        meta::link_blob(&db, repo, digest)?;
        Ok(())
    }

    /// Cancels upload `id` (DELETE of its URL).
    pub fn cancel_upload(&self, repo: &RepoName, id: &str) -> RegistryResult<()> {
        self.check_upload(repo, id)?;
        self.remove_upload(id);
        Ok(())
    }

    fn remove_upload(&self, id: &str) {
        let path = self.upload_path(id);
        if let Err(e) = fs::remove_file(&path)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(path = %path.display(), error = %e, "failed to remove an upload");
        }
        if let Err(e) = meta::remove_upload(&self.db(), id) {
            tracing::warn!(upload = id, error = %e, "failed to forget an upload");
        }
    }

    /// Stores `bytes` (a manifest) as a blob: temp file, fsync, rename. The caller holds the
    /// database lock (garbage collection must not see the file before its rows).
    pub(super) fn store_bytes(&self, bytes: &[u8]) -> RegistryResult<Digest> {
        let d = Digest::of(bytes);
        let dest = self.blob_path(&d);
        if dest.exists() {
            return Ok(d);
        }
        let tmp = self.upload_path(&format!("manifest-{}", new_upload_id()));
        let write = || -> io::Result<()> {
            let mut f = File::create_new(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, &dest)
        };
        write().map_err(|source| {
            let _ = fs::remove_file(&tmp);
            RegistryError::Storage {
                what: format!("store manifest {d} as {}", dest.display()),
                source,
            }
        })?;
        Ok(d)
    }

    /// The bytes of stored blob `d` (manifests: small).
    pub(super) fn read_blob(&self, d: &Digest) -> RegistryResult<Vec<u8>> {
        let path = self.blob_path(d);
        fs::read(&path).map_err(io_err(format!("read blob {}", path.display())))
    }

    /// Removes uploads started more than `age` ago, and upload files no row names.
    pub(super) fn purge_uploads(&self, age: std::time::Duration) -> RegistryResult<()> {
        let db = self.db();
        let known = meta::uploads(&db)?;
        let now = meta::now();
        let dir = self.dir.join("uploads");
        let entries = fs::read_dir(&dir).map_err(io_err(format!("list {}", dir.display())))?;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let stale = match known.iter().find(|(id, _)| *id == name) {
                Some((_, started)) => now - started > age.as_secs_f64(),
                None => true,
            };
            if stale {
                let _ = fs::remove_file(e.path());
                meta::remove_upload(&db, &name)?;
            }
        }
        Ok(())
    }
}

fn hash_file(path: &Path) -> RegistryResult<Digest> {
    let mut f = File::open(path).map_err(io_err(format!("read upload {}", path.display())))?;
    let mut h = <sha2::Sha256 as sha2::Digest>::new();
    io::copy(&mut f, &mut h).map_err(io_err(format!("hash upload {}", path.display())))?;
    Ok(Digest::from_hasher(h))
}

fn sync_file(path: &Path) -> RegistryResult<()> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io_err(format!("sync upload {}", path.display())))
}
