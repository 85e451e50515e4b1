//! The cache beyond a single pull: `load` of skopeo-made archives and layouts, `prune`
//! removing exactly what no image uses, and whiteouts seen through the mounted overlay.

use crate::common;

use common::cli::{Mf, assert_layers};
use common::image::{Compression, Entry, Layer, Layout, busybox_layer};
use common::leaks::wait_for;
use common::push_image;
use common::registry::{Registry, RegistryOpts, skopeo};
use common::util::{du, list_dir, random_bytes, run_ok, sha256_file};
use serde_json::Value;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

fn work() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("mf-work-")
        .tempdir()
        .unwrap()
}

fn two_layer_layout(dir: &Path, marker: &str) -> common::image::BuiltImage {
    let mut l = Layout::new(dir);
    let img = l.add_image(
        "linux/amd64",
        &[
            busybox_layer(Compression::Gzip, marker),
            Layer::new(
                Compression::Gzip,
                vec![Entry::dir("srv"), Entry::file("srv/hello.txt", marker)],
            ),
        ],
    );
    l.tag_image("t", &img);
    img
}

fn diff_ids(v: &Value) -> Vec<String> {
    v["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["diffId"].as_str().unwrap().to_string())
        .collect()
}

/// The one summary `load --format json` printed for a single-image input.
fn single(v: Value) -> Value {
    let arr = v.as_array().expect("load --format json prints an array");
    assert_eq!(arr.len(), 1, "{v}");
    arr[0].clone()
}

#[test]
fn load_docker_archive_oci_archive_and_layout_dir() {
    let w = work();
    let layout = w.path().join("layout");
    let img = two_layer_layout(&layout, "loaded");
    let want: Vec<String> = img.layers.iter().map(|l| l.diff_id.clone()).collect();
    let src = format!("oci:{}:t", layout.display());
    let mf = Mf::new();

    // docker-archive, as `docker save` makes it (skopeo writes the same format).
    let docker_tar = w.path().join("app-docker.tar");
    run_ok(skopeo().args(["copy", &src]).arg(format!(
        "docker-archive:{}:load/docker-app:1",
        docker_tar.display()
    )));
    let got = single(mf.json(&[
        "load",
        "-i",
        docker_tar.to_str().unwrap(),
        "--format",
        "json",
    ]));
    assert!(
        got["reference"]
            .as_str()
            .unwrap()
            .contains("load/docker-app:1"),
        "{got}"
    );
    assert_eq!(diff_ids(&got), want, "same layers whatever the packaging");
    for d in &want {
        assert!(mf.layer_dir(d).is_dir());
    }
    assert_eq!(
        sha256_file(&mf.layer_dir(&want[0]).join("bin/busybox")),
        sha256_file(Path::new("/bin/busybox"))
    );
    mf.assert_tmp_empty();

    // oci-archive: the manifest travels unchanged, so its digest is the one built.
    let oci_tar = w.path().join("app-oci.tar");
    run_ok(
        skopeo()
            .args(["copy", &src])
            .arg(format!("oci-archive:{}:2", oci_tar.display())),
    );
    let got = single(mf.json(&[
        "load",
        "-i",
        oci_tar.to_str().unwrap(),
        "--tag",
        "load/oci-app:2",
        "--format",
        "json",
    ]));
    assert_eq!(got["digest"], img.manifest_digest.as_str());
    assert!(
        got["reference"]
            .as_str()
            .unwrap()
            .contains("load/oci-app:2"),
        "{got}"
    );
    assert_eq!(diff_ids(&got), want);

    // An OCI layout directory.
    let got = single(mf.json(&[
        "load",
        "-i",
        layout.to_str().unwrap(),
        "--tag",
        "load/layout-app:3",
        "--format",
        "json",
    ]));
    assert_eq!(got["digest"], img.manifest_digest.as_str());
    assert_eq!(diff_ids(&got), want);

    // All three are listed; the shared layers were unpacked once.
    let refs: Vec<String> = mf
        .images()
        .iter()
        .map(|i| i["reference"].as_str().unwrap().to_string())
        .collect();
    for name in ["load/docker-app:1", "load/oci-app:2", "load/layout-app:3"] {
        assert!(refs.iter().any(|r| r.contains(name)), "{name} in {refs:?}");
    }
    assert_eq!(mf.layer_dirs().len(), 2);
    mf.assert_tmp_empty();

    // A file that is no image is refused with its path in the message.
    let junk = w.path().join("junk.tar");
    std::fs::write(&junk, b"not an archive").unwrap();
    let msg = mf.fail(&["load", "-i", junk.to_str().unwrap()]);
    assert!(msg.contains("junk.tar"), "{msg}");
    mf.assert_tmp_empty();
}

#[test]
fn prune_removes_exactly_the_unreferenced_data() {
    let w = work();
    let reg = Registry::start(RegistryOpts::default());
    let shared = busybox_layer(Compression::Gzip, "shared");
    let only_a = Layer::new(
        Compression::Gzip,
        vec![Entry::file("a.bin", random_bytes(5, 2 << 20))],
    );
    let only_b = Layer::new(Compression::Gzip, vec![Entry::file("b.txt", "image b\n")]);
    let a = push_image(&reg, w.path(), "prune/a:1", &[shared.clone(), only_a]);
    let b = push_image(&reg, w.path(), "prune/b:1", &[shared, only_b]);
    let mf = Mf::new();
    let ref_a = format!("{}/prune/a:1", reg.host());
    let ref_b = format!("{}/prune/b:1", reg.host());
    mf.pull_json(&ref_a, &[]);
    mf.pull_json(&ref_b, &[]);
    assert_eq!(mf.layer_dirs().len(), 3);

    // Nothing unreferenced yet: prune removes nothing.
    let r = mf.json(&["prune", "--format", "json"]);
    assert_eq!(r["layersRemoved"], 0, "{r}");
    assert_eq!(r["blobsRemoved"], 0, "{r}");
    assert_eq!(r["bytesFreed"], 0, "{r}");

    let blobs_before = mf.blobs();
    let a_layer = mf.layer_dir(&a.layers[1].diff_id);
    let a_layer_bytes = du(&a_layer);
    assert!(mf.run(&["rmi", &ref_a]).status.success());
    let r = mf.json(&["prune", "--format", "json"]);
    assert_eq!(r["layersRemoved"], 1, "only a's own layer: {r}");
    // a's manifest and config (layer blobs, if the cache keeps them, count too).
    let gone: Vec<String> = blobs_before
        .iter()
        .filter(|b| !mf.blobs().contains(b))
        .cloned()
        .collect();
    assert_eq!(r["blobsRemoved"], gone.len(), "{r} vs {gone:?}");
    for d in [&a.manifest_digest, &a.config_digest] {
        let hex = d.trim_start_matches("sha256:");
        assert!(gone.iter().any(|g| g == hex), "{d} removed");
    }
    for d in [&b.manifest_digest, &b.config_digest] {
        assert!(mf.blob_path(d).is_file(), "{d} kept");
    }
    assert!(r["bytesFreed"].as_u64().unwrap() >= a_layer_bytes, "{r}");
    assert!(!a_layer.exists());
    let mut want = vec![
        b.layers[0]
            .diff_id
            .trim_start_matches("sha256:")
            .to_string(),
        b.layers[1]
            .diff_id
            .trim_start_matches("sha256:")
            .to_string(),
    ];
    want.sort();
    assert_eq!(mf.layer_dirs(), want, "the shared layer and b's stay");
    assert_eq!(mf.images().len(), 1);
    assert_eq!(
        std::fs::read_to_string(mf.layer_dir(&b.layers[1].diff_id).join("b.txt")).unwrap(),
        "image b\n"
    );

    // Idempotent; and a can come back.
    let r = mf.json(&["prune", "--format", "json"]);
    assert_eq!(
        (r["layersRemoved"].as_u64(), r["blobsRemoved"].as_u64()),
        (Some(0), Some(0))
    );
    mf.pull_json(&ref_a, &[]);
    assert_eq!(mf.layer_dirs().len(), 3);
    mf.assert_tmp_empty();
}

#[test]
fn prune_frees_layers_through_the_trash_in_the_background_and_a_killed_deleters_trash_goes_too() {
    let w = work();
    let reg = Registry::start(RegistryOpts::default());
    let big = Layer::new(
        Compression::Gzip,
        vec![Entry::file("big.bin", random_bytes(9, 2 << 20))],
    );
    let a = push_image(&reg, w.path(), "trash/a:1", &[big]);
    let b = push_image(
        &reg,
        w.path(),
        "trash/b:1",
        &[busybox_layer(Compression::Gzip, "trash")],
    );
    let mut mf = Mf::new();
    // Long enough to look at the trash before the deleter empties it.
    mf.set_env("MINIFARGATE_TRASH_DELAY_MS", "5000");
    let ref_a = format!("{}/trash/a:1", reg.host());
    mf.pull_json(&ref_a, &[]);
    assert!(mf.run(&["rmi", &ref_a]).status.success());
    // What a deleter killed midway leaves: an entry of a process that is gone.
    let trash = mf.root.join("trash");
    let stale = trash.join("999999999-0-stale");
    std::fs::create_dir_all(stale.join("usr/lib")).unwrap();
    std::fs::write(stale.join("usr/lib/x.so"), b"half deleted").unwrap();

    let r = mf.json(&["prune", "--format", "json"]);
    assert_eq!(r["layersRemoved"], 1, "{r}");
    assert!(r["bytesFreed"].as_u64().unwrap() >= 2 << 20, "{r}");
    let layer = mf.layer_dir(&a.layers[0].diff_id);
    assert!(!layer.exists(), "the layer left the cache at once");
    let waiting = list_dir(&trash);
    assert_eq!(
        waiting.len(),
        2,
        "the layer waits in the trash: {waiting:?}"
    );
    // A pull right after the prune works while the trash is still there.
    let got = mf.pull_json(&format!("{}/trash/b:1", reg.host()), &[]);
    assert_layers(&mf, &got, &b);
    // Then the deleter empties the trash, the stale entry included.
    wait_for("the trash deleted in the background", || {
        list_dir(&trash).is_empty()
    });
    mf.assert_tmp_empty();
}

/// Unmounts on Drop, so a failing test leaves no mount behind.
struct MountGuard(PathBuf);

impl Drop for MountGuard {
    fn drop(&mut self) {
        if is_mountpoint(&self.0) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

fn is_mountpoint(p: &Path) -> bool {
    let p = p.to_str().unwrap();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(p))
}

fn xattr(p: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 64];
    rustix::fs::lgetxattr(p, name, &mut buf)
        .ok()
        .map(|n| buf[..n].to_vec())
}

#[test]
fn file_and_opaque_whiteouts_through_the_mounted_overlay() {
    let w = work();
    let reg = Registry::start(RegistryOpts::default());
    let lower = Layer::new(
        Compression::Gzip,
        vec![
            Entry::dir("data"),
            Entry::file("data/keep", "kept\n"),
            Entry::file("data/gone", "whited out\n"),
            Entry::file("gone-file", "whited out\n"),
            Entry::dir("opq"),
            Entry::file("opq/old1", "hidden by opaque\n"),
            Entry::dir("opq/sub"),
            Entry::file("opq/sub/old2", "hidden by opaque\n"),
        ],
    );
    let upper = Layer::new(
        Compression::Gzip,
        vec![
            Entry::file(".wh.gone-file", ""),
            Entry::dir("data"),
            Entry::file("data/.wh.gone", ""),
            Entry::dir("opq"),
            Entry::file("opq/.wh..wh..opq", ""),
            Entry::file("opq/new", "after opaque\n"),
        ],
    );
    let img = push_image(
        &reg,
        w.path(),
        "wh/app:1",
        &[busybox_layer(Compression::Gzip, "wh"), lower, upper],
    );
    let reference = format!("{}/wh/app:1", reg.host());
    let mf = Mf::new();
    mf.pull_json(&reference, &[]);

    // On disk, the upper layer holds overlayfs whiteouts: 0/0 char devices and an
    // opaque xattr; the `.wh.` files themselves are gone.
    let l2 = mf.layer_dir(&img.layers[2].diff_id);
    for p in ["gone-file", "data/gone"] {
        let md = std::fs::symlink_metadata(l2.join(p)).unwrap();
        assert!(md.file_type().is_char_device(), "{p} is a whiteout device");
        assert_eq!(md.rdev(), 0, "{p} is 0/0");
    }
    assert_eq!(
        xattr(&l2.join("opq"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert!(!l2.join(".wh.gone-file").exists());
    assert!(!l2.join("opq/.wh..wh..opq").exists());
    let layers_before = common::util::snapshot(&mf.root.join("layers"));

    let target = w.path().join("rootfs");
    let state = w.path().join("state");
    std::fs::create_dir(&target).unwrap();
    let _guard = MountGuard(target.clone());
    let out = mf.run(&[
        "rootfs",
        "mount",
        &reference,
        target.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "rootfs mount failed");
    assert!(is_mountpoint(&target), "{} is mounted", target.display());

    assert_eq!(
        std::fs::read_to_string(target.join("data/keep")).unwrap(),
        "kept\n"
    );
    assert!(
        !target.join("data/gone").exists(),
        "file whiteout hides data/gone"
    );
    assert!(
        !target.join("gone-file").exists(),
        "file whiteout hides gone-file"
    );
    assert_eq!(
        list_dir(&target.join("opq")),
        vec!["new".to_string()],
        "opaque dir"
    );
    assert_eq!(list_dir(&target.join("data")), vec!["keep".to_string()]);
    assert_eq!(
        sha256_file(&target.join("bin/busybox")),
        sha256_file(Path::new("/bin/busybox"))
    );

    // Writes go to the per-container upper dir under --state, never into the cache.
    std::fs::write(target.join("data/new-file"), "container write\n").unwrap();
    std::fs::remove_file(target.join("data/keep")).unwrap();
    assert_eq!(
        common::util::snapshot(&mf.root.join("layers")),
        layers_before,
        "layer dirs unchanged by container writes"
    );
    assert!(du(&state) > 0, "upper dir under --state holds the write");

    let out = mf.run(&["rootfs", "umount", target.to_str().unwrap()]);
    assert!(out.status.success(), "rootfs umount failed");
    assert!(!is_mountpoint(&target));
    assert!(list_dir(&target).is_empty());
}

#[test]
fn overlay_of_an_image_with_many_layers_keeps_their_order() {
    // 90 layers: the lowerdir list of absolute layer paths is far past one page,
    // the limit of mount(2)'s option string.
    const N: usize = 90;
    let w = work();
    let reg = Registry::start(RegistryOpts::default());
    let mut layers = vec![busybox_layer(Compression::Gzip, "many")];
    for i in 1..=N {
        layers.push(Layer::new(
            Compression::Gzip,
            vec![
                Entry::dir("many"),
                Entry::file(&format!("many/{i:03}"), format!("{i}\n")),
                Entry::file("order", format!("{i}\n")),
            ],
        ));
    }
    let img = push_image(&reg, w.path(), "many/app:1", &layers);
    let reference = format!("{}/many/app:1", reg.host());
    let mf = Mf::new();
    let got = mf.pull_json(&reference, &[]);
    assert_eq!(got["layers"].as_array().unwrap().len(), N + 1);
    assert_eq!(got["digest"], img.manifest_digest.as_str());

    let target = w.path().join("rootfs");
    std::fs::create_dir(&target).unwrap();
    let _guard = MountGuard(target.clone());
    let out = mf.run(&[
        "rootfs",
        "mount",
        &reference,
        target.to_str().unwrap(),
        "--state",
        w.path().join("state").to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "rootfs mount of {} layers failed",
        N + 1
    );
    assert_eq!(
        list_dir(&target.join("many")).len(),
        N,
        "every layer's file is visible"
    );
    assert_eq!(
        std::fs::read_to_string(target.join("order")).unwrap(),
        format!("{N}\n"),
        "the last layer wins"
    );
    assert!(target.join("bin/busybox").is_file());
    let out = mf.run(&["rootfs", "umount", target.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(!is_mountpoint(&target));
}
