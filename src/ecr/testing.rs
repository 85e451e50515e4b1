//! What the registry's unit tests share: a repository, a pushed blob and a manifest made as
//! a client makes them (gc's and shared's tests).

use super::{Digest, Registry, RepoName, meta};
use std::io::Write;

/// Repository `name` made in `r` as CreateRepository stores it, with tag mutability
/// `mutability`.
pub(super) fn repository(r: &Registry, name: &str, mutability: &str) -> RepoName {
    let row = meta::RepositoryRow {
        name: name.into(),
        created_at: 0.0,
        tag_mutability: mutability.into(),
        scan_on_push: false,
        encryption_type: "AES256".into(),
        kms_key: None,
        tags: "[]".into(),
        tag_mutability_exclusion_filters: None,
    };
    assert!(meta::insert_repository(&r.db(), &row).unwrap());
    RepoName::parse(name).unwrap()
}

/// A blob pushed as a client pushes it.
pub(super) fn upload(r: &Registry, repo: &RepoName, bytes: &[u8]) -> Digest {
    let id = r.start_upload(repo).unwrap();
    let (mut f, _) = r.upload_writer(repo, &id, None).unwrap();
    f.write_all(bytes).unwrap();
    drop(f);
    let d = Digest::of(bytes);
    r.finish_upload(repo, &id, &d).unwrap();
    d
}

/// An OCI manifest of `config` and one `layer` of `n` bytes.
pub(super) fn manifest(config: &Digest, layer: &Digest, n: usize) -> Vec<u8> {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
        "config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":2}},
        "layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{layer}","size":{n}}}]}}"#
    )
    .into_bytes()
}
