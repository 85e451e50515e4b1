//! Harness for the root integration tests: a real registry (Debian's docker-registry)
//! seeded by skopeo with images built here, helper servers, and the binary under test.
#![allow(dead_code)]

pub mod cli;
pub mod image;
pub mod leaks;
pub mod registry;
pub mod services;
pub mod tls;
pub mod util;

use image::{BuiltImage, BuiltIndex, Layer, Layout};
use registry::Registry;
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
