//! Manifests and tags: a pushed manifest is checked (its media type, that every blob or
//! child manifest it names is in the repository, a digest reference that matches its
//! bytes, the repository's tag immutability) before it is stored and tagged.
//! Ref: opencontainers/distribution-spec `spec.md` ("Pushing Manifests"), image-spec
//! `manifest.md` and `image-index.md`; Docker's image manifest v2 schema 2.

use super::{Digest, Reference, Registry, RegistryError, RegistryResult, RepoName, meta};
use serde::Deserialize;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// The largest manifest accepted: the spec's "registries SHOULD accept at least 4 MiB".
pub const MAX_MANIFEST: usize = 4 * 1024 * 1024;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Doc {
    schema_version: Option<i64>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    /// The manifest this one refers to (OCI image spec v1.1; the referrers API).
    subject: Option<Descriptor>,
    annotations: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The `subject` digest a manifest's bytes name, if any.
pub(super) fn subject_of(bytes: &[u8]) -> Option<String> {
    serde_json::from_slice::<Doc>(bytes)
        .ok()?
        .subject
        .map(|s| s.digest)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    media_type: Option<String>,
    digest: String,
    size: i64,
}

/// The blobs (config, layers) or child manifests a stored manifest names; nothing for bytes
/// that do not parse (they were checked when pushed).
pub(super) fn refs_of(bytes: &[u8]) -> Vec<Digest> {
    let Ok(doc) = serde_json::from_slice::<Doc>(bytes) else {
        return Vec::new();
    };
    doc.config
        .iter()
        .chain(doc.layers.iter().flatten())
        .chain(doc.manifests.iter().flatten())
        .filter_map(|d| Digest::parse(&d.digest).ok())
        .collect()
}

/// A stored manifest as a pull answers it.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Vec<u8>,
}

impl Registry {
    /// The referrers API (distribution spec v1.1, "Listing Referrers"): a descriptor of
    /// every manifest of `repo` whose `subject` is `subject` (`mediaType`, `digest`,
    /// `size`, `artifactType` (its own, else its config's media type), `annotations`),
    /// only those of `artifact_type` when given. Read from the stored manifests.
    pub fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> RegistryResult<Vec<serde_json::Value>> {
        let rows = meta::images(&self.db(), repo)?;
        let mut out = Vec::new();
        for row in rows {
            let Ok(d) = Digest::parse(&row.digest) else {
                continue;
            };
            let bytes = match self.read_blob(&d) {
                Ok(b) => b,
                // Deleted meanwhile.
                Err(RegistryError::BlobUnknown(_)) => continue,
                Err(e) => return Err(e),
            };
            let Ok(doc) = serde_json::from_slice::<Doc>(&bytes) else {
                continue;
            };
            if doc.subject.as_ref().map(|s| s.digest.as_str()) != Some(subject.as_str()) {
                continue;
            }
            if artifact_type.is_some() && row.artifact_media_type.as_deref() != artifact_type {
                continue;
            }
            let mut desc = serde_json::json!({
                "mediaType": row.media_type,
                "digest": row.digest,
                "size": bytes.len(),
            });
            if let Some(a) = &row.artifact_media_type {
                desc["artifactType"] = a.clone().into();
            }
            if let Some(a) = doc.annotations {
                desc["annotations"] = serde_json::Value::Object(a);
            }
            out.push(desc);
        }
        Ok(out)
    }

    /// Stores manifest `bytes` (sent with Content-Type `content_type`) under `reference`.
    pub fn put_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        content_type: Option<&str>,
        bytes: &[u8],
    ) -> RegistryResult<Digest> {
        if bytes.len() > MAX_MANIFEST {
            return Err(RegistryError::SizeInvalid(format!(
                "the manifest is {} bytes; this registry takes at most {MAX_MANIFEST}",
                bytes.len()
            )));
        }
        let digest = Digest::of(bytes);
        if let Reference::Digest(d) = reference
            && d != &digest
        {
            return Err(RegistryError::DigestInvalid(format!(
                "the manifest's bytes hash to {digest}, not {d}"
            )));
        }
        let doc: Doc = serde_json::from_slice(bytes).map_err(|e| {
            RegistryError::ManifestInvalid(format!("the manifest is not JSON of a manifest: {e}"))
        })?;
        let content_type = content_type.map(|t| t.split(';').next().unwrap_or(t).trim());
        let media_type = match (content_type, doc.media_type.as_deref()) {
            (Some(t), Some(m)) if t != m => {
                return Err(RegistryError::ManifestInvalid(format!(
                    "Content-Type {t} differs from the manifest's mediaType {m}"
                )));
            }
            (Some(t), _) => t.to_string(),
            (None, Some(m)) => m.to_string(),
            (None, None) => {
                return Err(RegistryError::ManifestInvalid(
                    "no Content-Type and no mediaType in the manifest".into(),
                ));
            }
        };
        if doc.schema_version != Some(2) {
            return Err(RegistryError::ManifestInvalid(format!(
                "schemaVersion {:?}: only 2 is accepted (Docker schema 1 is not)",
                doc.schema_version
            )));
        }
        // The lock is held from the checks to the rows: garbage collection (which takes it)
        // cannot free a blob between the check that it is here and the manifest naming it.
        let mut db = self.db();
        let mut refs = Vec::new();
        let (artifact_type, image_size) = match media_type.as_str() {
            OCI_MANIFEST | DOCKER_MANIFEST => {
                let config = doc.config.as_ref().ok_or_else(|| {
                    RegistryError::ManifestInvalid("an image manifest without config".into())
                })?;
                let layers = doc.layers.as_deref().unwrap_or_default();
                for d in std::iter::once(config).chain(layers) {
                    let digest = Digest::parse(&d.digest)?;
                    if !meta::has_blob(&db, repo, &digest)? {
                        return Err(RegistryError::ManifestBlobUnknown(format!(
                            "blob {digest} is not in repository {repo} (push it first)"
                        )));
                    }
                    refs.push(digest);
                }
                // ECR's imageSizeInBytes: the layers as pushed (compressed).
                let size = layers.iter().map(|l| l.size.max(0)).sum();
                let artifact = doc
                    .artifact_type
                    .clone()
                    .or_else(|| config.media_type.clone());
                (artifact, size)
            }
            OCI_INDEX | DOCKER_LIST => {
                // ECR's imageSizeInBytes of a manifest list: the largest of its manifests'.
                let mut size = 0;
                for d in doc.manifests.as_deref().unwrap_or_default() {
                    let digest = Digest::parse(&d.digest)?;
                    let Some(child) = meta::image_size(&db, repo, &digest)? else {
                        return Err(RegistryError::ManifestBlobUnknown(format!(
                            "manifest {digest} is not in repository {repo} (push it first)"
                        )));
                    };
                    size = size.max(child);
                    refs.push(digest);
                }
                (doc.artifact_type.clone(), size)
            }
            other => {
                return Err(RegistryError::ManifestInvalid(format!(
                    "media type {other:?}: this registry stores {OCI_MANIFEST}, {OCI_INDEX}, \
                     {DOCKER_MANIFEST} and {DOCKER_LIST}"
                )));
            }
        };
        let tag = match reference {
            Reference::Tag(t) => Some(t.as_str()),
            Reference::Digest(_) => None,
        };
        // IMMUTABLE, or a `*_WITH_EXCLUSION` mode that makes this tag immutable.
        let immutable = match tag {
            Some(t) => meta::repository(&db, repo)?.is_some_and(|r| r.tag_is_immutable(t)),
            None => false,
        };
        // ECR's answer to a push over an immutable tag.
        let taken = |tag: &str| {
            RegistryError::TagInvalid(format!(
                "The image tag '{tag}' already exists in the '{repo}' repository and cannot \
                 be overwritten because the repository is immutable."
            ))
        };
        if let Some(tag) = tag
            && immutable
            && let Some(old) = meta::tag_digest(&db, repo, tag)?
            && old != digest
        {
            return Err(taken(tag));
        }
        self.store_bytes(bytes)?;
        let m = meta::NewManifest {
            digest: &digest,
            refs: &refs,
            media_type: &media_type,
            artifact_media_type: artifact_type.as_deref(),
            size: bytes.len() as i64,
            image_size,
        };
        meta::put_manifest(&mut db, repo, &m, tag)?;
        // In a cluster, the tag is checked again in etcd's transaction: another serve may
        // have taken it since this serve's copy said it was free (docs/registry.md).
        if let Some(tag) = tag
            && immutable
            && !db.publish_unless_changed("tags", &super::shared::tag_key(repo, tag))?
        {
            return Err(taken(tag));
        }
        Ok(digest)
    }

    /// The manifest `reference` names in `repo`; `pull` records the pull time (a GET,
    /// not a HEAD: ECR's `lastRecordedPullTime`).
    pub fn manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        pull: bool,
    ) -> RegistryResult<Manifest> {
        let unknown = || RegistryError::ManifestUnknown(format!("{reference:?} in {repo}"));
        let (digest, media_type) = {
            let db = self.db();
            let digest = match reference {
                Reference::Tag(t) => meta::tag_digest(&db, repo, t)?.ok_or_else(unknown)?,
                Reference::Digest(d) => d.clone(),
            };
            let media_type = meta::manifest_type(&db, repo, &digest)?.ok_or_else(unknown)?;
            if pull {
                meta::record_pull(&db, repo, &digest)?;
                // What this pull reads next stays while it runs (garbage collection's
                // grace), even if the image is deleted meanwhile.
                meta::touch_refs(&db, repo, &digest)?;
            }
            (digest, media_type)
        };
        if self.cluster.get().is_some() && !self.blob_path(&digest).exists() {
            // The cluster's manifest, pushed through another serve: its bytes from there.
            self.fetch_from_peer(repo, &digest).map_err(|e| match e {
                RegistryError::BlobUnknown(why) => RegistryError::ManifestUnknown(why),
                e => e,
            })?;
        }
        let bytes = self.read_blob(&digest)?;
        Ok(Manifest {
            digest,
            media_type,
            bytes,
        })
    }

    /// DELETE of a manifest: by digest the manifest and its tags; by tag the tag only.
    pub fn delete_manifest(&self, repo: &RepoName, reference: &Reference) -> RegistryResult<()> {
        let found = match reference {
            Reference::Digest(d) => meta::delete_manifest(&mut self.db(), repo, d)?,
            Reference::Tag(t) => meta::delete_tag(&self.db(), repo, t)?,
        };
        if !found {
            return Err(RegistryError::ManifestUnknown(format!(
                "{reference:?} in {repo}"
            )));
        }
        Ok(())
    }

    /// Up to `n` tags after `last` (lexical order) and whether more follow.
    pub fn tags(
        &self,
        repo: &RepoName,
        n: Option<usize>,
        last: Option<&str>,
    ) -> RegistryResult<(Vec<String>, bool)> {
        meta::tags_page(&self.db(), repo, n, last)
    }
}
