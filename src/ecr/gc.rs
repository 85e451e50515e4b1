//! Garbage collection: the blobs no repository needs any more leave the disk. A blob is
//! needed while a manifest of a repository names it (or is it), or while a client touched
//! it after the last manifest claimed it, within the grace period (a push that uploaded or
//! found a layer and has not put its manifest yet; a pull reading an image deleted under
//! it). Runs after every delete and expiry, and with the lifecycle schedule.
//!
//! Invariant: every blob file enters `blobs/` and every manifest row is written under the
//! registry's database lock, which a collection holds from its first query to its last
//! unlink; so a collection never frees a file whose link a concurrent push is writing,
//! and a manifest put after it is refused (MANIFEST_BLOB_UNKNOWN) rather than stored
//! naming a freed blob.

use super::{Registry, RegistryError, RegistryResult, meta};
use std::fs;

/// What one collection did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Collected {
    /// Blob links removed from repositories.
    pub links: usize,
    /// Blob files removed.
    pub blobs: usize,
    /// Their bytes.
    pub bytes: u64,
}

/// The grace period by default: an hour (a push's layers wait this long for their
/// manifest; a pull of a deleted image has this long to read it).
pub const DEFAULT_GRACE_SECS: f64 = 3600.0;

impl Registry {
    /// Collects garbage now (see the module's header).
    pub fn collect_garbage(&self) -> RegistryResult<Collected> {
        let db = self.db();
        let links = meta::unlink_unreferenced(&db, meta::now(), self.gc_grace_secs)?;
        let linked = meta::linked_digests(&db)?;
        let dir = self.dir.join("blobs/sha256");
        let entries = fs::read_dir(&dir).map_err(|source| RegistryError::Storage {
            what: format!("list {}", dir.display()),
            source,
        })?;
        let mut out = Collected {
            links,
            ..Collected::default()
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if linked.contains(&format!("sha256:{name}")) {
                continue;
            }
            let size = e.metadata().map(|m| m.len()).unwrap_or(0);
            match fs::remove_file(e.path()) {
                Ok(()) => {
                    out.blobs += 1;
                    out.bytes += size;
                }
                Err(err) => {
                    tracing::warn!(path = %e.path().display(), error = %err, "failed to remove an unreferenced blob")
                }
            }
        }
        drop(db);
        if out.blobs > 0 || out.links > 0 {
            tracing::info!(
                links = out.links,
                blobs = out.blobs,
                bytes = out.bytes,
                "registry garbage collected"
            );
        }
        Ok(out)
    }

    /// Garbage collection after a delete: its failure does not undo the delete (the next
    /// collection retries), so it is logged.
    pub fn collect_garbage_logged(&self) {
        if let Err(e) = self.collect_garbage() {
            tracing::warn!(error = %crate::errors::error_chain(&e), "registry garbage collection failed");
        }
    }

    /// Fills `manifest_refs` for manifests stored before it existed (schema version < 2),
    /// so that the first collection does not take their layers for garbage.
    pub(super) fn backfill_refs(&self) -> RegistryResult<()> {
        let db = self.db();
        if meta::schema_version(&db)? >= 2 {
            return Ok(());
        }
        for (repo, digest) in meta::all_manifests(&db)? {
            let (Ok(repo), Ok(d)) = (super::RepoName::parse(&repo), super::Digest::parse(&digest))
            else {
                continue;
            };
            let bytes = match self.read_blob(&d) {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(manifest = %d, error = %e, "a manifest's bytes are missing");
                    continue;
                }
            };
            let refs = super::manifests::refs_of(&bytes);
            meta::insert_refs(&db, &repo, &d, &refs, meta::now())?;
        }
        meta::set_schema_version(&db, 2)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{manifest, repository, upload};
    use super::super::{Reference, Registry, RegistryError, RepoName};

    fn registry(grace: f64) -> (tempfile::TempDir, Registry, RepoName) {
        let dir = tempfile::tempdir().unwrap();
        let r = Registry::open(dir.path(), "123456789012", "eu-west-1")
            .unwrap()
            .with_gc_grace(grace);
        let repo = repository(&r, "gc/web", "MUTABLE");
        (dir, r, repo)
    }

    fn blobs(r: &Registry) -> usize {
        std::fs::read_dir(r.dir().join("blobs/sha256"))
            .unwrap()
            .count()
    }

    #[test]
    fn a_deleted_image_frees_its_blobs_and_a_shared_layer_stays() {
        let (_d, r, repo) = registry(3600.0);
        let config = upload(&r, &repo, b"{}");
        let shared = upload(&r, &repo, &[1u8; 1000]);
        let own = upload(&r, &repo, &[2u8; 5000]);
        let m1 = manifest(&config, &shared, 1000);
        let m2 = manifest(&config, &own, 5000);
        let d1 = r
            .put_manifest(&repo, &Reference::Tag("one".into()), None, &m1)
            .unwrap();
        let d2 = r
            .put_manifest(&repo, &Reference::Tag("two".into()), None, &m2)
            .unwrap();
        assert_eq!(blobs(&r), 5);
        assert_eq!(
            r.collect_garbage().unwrap().blobs,
            0,
            "everything is referenced"
        );
        r.delete_manifest(&repo, &Reference::Digest(d2.clone()))
            .unwrap();
        let c = r.collect_garbage().unwrap();
        // Image two's manifest and its own layer go; the config it shares with one stays.
        assert_eq!((c.blobs, c.bytes), (2, 5000 + m2.len() as u64));
        assert!(r.blob(&repo, &config).is_ok());
        assert!(matches!(
            r.blob(&repo, &own),
            Err(RegistryError::BlobUnknown(_))
        ));
        r.manifest(&repo, &Reference::Digest(d1), false).unwrap();
    }

    #[test]
    fn a_push_in_flight_keeps_its_blobs_and_a_late_manifest_is_refused_not_dangling() {
        // Within the grace: a layer uploaded but not yet named by a manifest survives.
        let (_d, r, repo) = registry(3600.0);
        let config = upload(&r, &repo, b"{}");
        let layer = upload(&r, &repo, &[3u8; 100]);
        assert_eq!(r.collect_garbage().unwrap().blobs, 0);
        r.put_manifest(
            &repo,
            &Reference::Tag("t".into()),
            None,
            &manifest(&config, &layer, 100),
        )
        .unwrap();

        // Past the grace (0 here): the collection takes the unnamed blobs, and the push's
        // manifest is refused rather than stored naming freed bytes.
        let (_d, r, repo) = registry(0.0);
        let config = upload(&r, &repo, b"{}");
        let layer = upload(&r, &repo, &[4u8; 100]);
        let c = r.collect_garbage().unwrap();
        assert_eq!(c.blobs, 2);
        let e = r
            .put_manifest(
                &repo,
                &Reference::Tag("t".into()),
                None,
                &manifest(&config, &layer, 100),
            )
            .unwrap_err();
        assert!(matches!(e, RegistryError::ManifestBlobUnknown(_)), "{e}");
        assert_eq!(blobs(&r), 0);
    }

    #[test]
    fn a_blob_a_client_asked_for_after_the_image_was_pushed_outlives_its_delete() {
        let (_d, r, repo) = registry(3600.0);
        let config = upload(&r, &repo, b"{}");
        let layer = upload(&r, &repo, &[5u8; 100]);
        let m = manifest(&config, &layer, 100);
        let d = r
            .put_manifest(&repo, &Reference::Tag("t".into()), None, &m)
            .unwrap();
        // Another push checks the layer is there (HEAD), then the image is deleted: the
        // layer stays for that push; the config (not asked for) and the manifest go.
        r.blob(&repo, &layer).unwrap();
        r.delete_manifest(&repo, &Reference::Digest(d)).unwrap();
        let c = r.collect_garbage().unwrap();
        assert_eq!(c.blobs, 2);
        assert!(r.blob(&repo, &layer).is_ok());
    }

    #[test]
    fn manifests_of_an_older_registry_db_get_their_refs_on_open() {
        let (dir, r, repo) = registry(0.0);
        let config = upload(&r, &repo, b"{}");
        let layer = upload(&r, &repo, &[6u8; 100]);
        r.put_manifest(
            &repo,
            &Reference::Tag("t".into()),
            None,
            &manifest(&config, &layer, 100),
        )
        .unwrap();
        {
            let db = r.db();
            db.execute_batch("DELETE FROM manifest_refs; PRAGMA user_version = 0;")
                .unwrap();
        }
        drop(r);
        let r = Registry::open(dir.path(), "123456789012", "eu-west-1")
            .unwrap()
            .with_gc_grace(0.0);
        assert_eq!(r.collect_garbage().unwrap().blobs, 0);
        assert!(r.blob(&repo, &layer).is_ok());
    }
}
