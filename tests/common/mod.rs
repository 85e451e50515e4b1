//! Harness for the root integration tests: a real registry (Debian's docker-registry)
//! seeded by skopeo with images built here, helper servers, and the binary under test.
#![allow(dead_code)]

pub mod api;
pub mod cli;
pub mod cluster;
pub mod ecr;
pub mod elb;
pub mod etcd;
pub mod faultproxy;
pub mod image;
pub mod leaks;
pub mod netbox;
pub mod registry;
pub mod services;
pub mod tls;
pub mod util;

use image::{BuiltImage, BuiltIndex, BuiltLayer, Layer, Layout};
use registry::Registry;
use serde_json::{Value, json};
use std::path::Path;

/// The run-task tests' setting: a private [`cli::Mf`] (its own root, run root, bridge and
/// subnet) and a registry serving a one-layer busybox image as
/// `public.ecr.aws/docker/library/busybox:1.36` through a mirror. Keep the registry alive
/// as long as the `Mf`.
pub fn busybox_task_env(layer: Layer) -> (cli::Mf, Registry) {
    let reg = Registry::start(registry::RegistryOpts::default());
    let work = tempfile::Builder::new()
        .prefix("mf-task-img-")
        .tempdir()
        .unwrap();
    push_image(&reg, work.path(), "docker/library/busybox:1.36", &[layer]);
    let mut mf = cli::Mf::new();
    mf.mirror_config("public.ecr.aws", &reg.host(), true);
    (mf, reg)
}

/// Build a one-platform image in a fresh layout under `dir`, push it to `reg` as
/// `dest` ("repo:tag"), and check the registry serves exactly the manifest built.
pub fn push_image(reg: &Registry, dir: &Path, dest: &str, layers: &[Layer]) -> BuiltImage {
    push_platform_image(reg, dir, dest, "linux/amd64", layers)
}

pub fn push_platform_image(
    reg: &Registry,
    dir: &Path,
    dest: &str,
    platform: &str,
    layers: &[Layer],
) -> BuiltImage {
    let layout_dir = tempfile::Builder::new()
        .prefix("layout-")
        .tempdir_in(dir)
        .unwrap()
        .keep();
    let mut layout = Layout::new(&layout_dir);
    let img = layout.add_image(platform, layers);
    layout.tag_image("t", &img);
    let pushed = reg.push(&layout_dir, "t", dest);
    assert_eq!(
        pushed, img.manifest_digest,
        "skopeo pushed a different manifest"
    );
    let (repo, tag) = dest.rsplit_once(':').unwrap();
    let served = reg.manifest(repo, tag);
    assert_eq!(
        format!("sha256:{}", util::sha256_hex(&served)),
        img.manifest_digest,
        "registry serves a different manifest"
    );
    img
}

/// Build an amd64 + arm64/v8 index (each image gets `layers_for(platform)`) and push
/// it with `skopeo copy --all`.
pub fn push_index(
    reg: &Registry,
    dir: &Path,
    dest: &str,
    layers_for: impl Fn(&str) -> Vec<Layer>,
) -> BuiltIndex {
    let layout_dir = tempfile::Builder::new()
        .prefix("layout-")
        .tempdir_in(dir)
        .unwrap()
        .keep();
    let mut layout = Layout::new(&layout_dir);
    let imgs: Vec<BuiltImage> = ["linux/amd64", "linux/arm64/v8"]
        .iter()
        .map(|p| layout.add_image(p, &layers_for(p)))
        .collect();
    let idx = layout.tag_index("t", &imgs);
    let pushed = reg.push(&layout_dir, "t", dest);
    assert_eq!(pushed, idx.digest, "skopeo pushed a different index");
    idx
}

/// A layer's blob as pushed by [`push_raw_image`]: bytes, media type and diff-id can
/// each be made to lie.
#[derive(Clone)]
pub struct RawLayer {
    pub blob: Vec<u8>,
    pub media_type: String,
    pub diff_id: String,
}

impl RawLayer {
    /// The honest blob of `layer`.
    pub fn of(layer: &Layer) -> RawLayer {
        let tar = image::tar_bytes(&layer.entries);
        RawLayer {
            blob: image::compress(&tar, layer.compression),
            media_type: layer.compression.media_type().into(),
            diff_id: format!("sha256:{}", util::sha256_hex(&tar)),
        }
    }
}

/// Pushes an amd64 image blob by blob with plain HTTP calls, so that what skopeo would
/// check (diff-ids, media types, sizes) can be made wrong; `edit_config` and
/// `edit_manifest` change the JSON before it is uploaded. Returns what was pushed.
pub fn push_raw_image(
    reg: &Registry,
    dest: &str,
    layers: &[RawLayer],
    edit_config: impl FnOnce(&mut Value),
    edit_manifest: impl FnOnce(&mut Value),
) -> BuiltImage {
    let (repo, tag) = dest.rsplit_once(':').unwrap();
    let built: Vec<BuiltLayer> = layers
        .iter()
        .map(|l| BuiltLayer {
            digest: reg.put_blob(repo, &l.blob),
            diff_id: l.diff_id.clone(),
            media_type: l.media_type.clone(),
            size: l.blob.len() as u64,
        })
        .collect();
    let mut config = json!({
        "created": "2026-11-22T00:00:00Z",
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": built.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>()},
    });
    edit_config(&mut config);
    let config_bytes = serde_json::to_vec(&config).unwrap();
    let config_digest = reg.put_blob(repo, &config_bytes);
    let mut manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_bytes.len()},
        "layers": built.iter().map(|l| json!({"mediaType": l.media_type, "digest": l.digest, "size": l.size})).collect::<Vec<_>>(),
    });
    edit_manifest(&mut manifest);
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let (status, body) = reg.put_manifest(
        repo,
        tag,
        "application/vnd.oci.image.manifest.v1+json",
        &bytes,
    );
    assert_eq!(status, 201, "registry refused the manifest: {body}");
    BuiltImage {
        manifest_digest: format!("sha256:{}", util::sha256_hex(&bytes)),
        manifest_size: bytes.len() as u64,
        config_digest,
        platform: "linux/amd64".into(),
        layers: built,
    }
}
