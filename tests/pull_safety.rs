//! The hostile-layer corpus: one crafted layer (or pair) per way out of a layer dir.
//! Each pull must be refused naming image, layer digest and entry; nothing may appear
//! outside the root (canary dir), `tmp/` stays empty, and a good pull still works.

mod common;

use common::cli::Mf;
use common::image::{Compression, Entry, Layer, busybox_layer};
use common::push_image;
use common::registry::{Registry, RegistryOpts};
use common::util::{list_dir, snapshot};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

struct Case {
    w: tempfile::TempDir,
    canary: PathBuf,
    /// The canary dir as a path relative to `/` (for entries that climb to it).
    canary_rel: String,
}

fn case() -> Case {
    let w = tempfile::Builder::new()
        .prefix("mf-hostile-")
        .tempdir()
        .unwrap();
    let canary = w.path().join("canary");
    std::fs::create_dir(&canary).unwrap();
    std::fs::write(canary.join("victim"), "canary: must not change\n").unwrap();
    let canary_rel = canary.to_str().unwrap().trim_start_matches('/').to_string();
    Case {
        w,
        canary,
        canary_rel,
    }
}

/// Enough `../` to climb from any layer dir to `/`.
fn up() -> String {
    "../".repeat(16)
}

/// Push `[busybox, hostile…]`, pull it, and check everything a user would check.
/// `bad` is the index of the layer that must be named; `entry` the offending path.
fn assert_refused(c: &Case, name: &str, hostile: Vec<Layer>, bad: usize, entry: &str) {
    let reg = Registry::start(RegistryOpts::default());
    let mut layers = vec![busybox_layer(Compression::Gzip, name)];
    layers.extend(hostile);
    let img = push_image(&reg, c.w.path(), &format!("hostile/{name}:1"), &layers);
    let bad_layer = &img.layers[bad];

    let mf = Mf::new();
    // Everything around the root, minus the root itself, must stay as it is.
    let outside_before = snapshot(c.w.path());
    // Beside the root (the test's DOCKER_CONFIG dir …), nothing may appear either.
    let beside_root = |mf: &Mf| {
        let mut v = list_dir(mf.dir.path());
        v.retain(|n| n != "root" && n != "run");
        v
    };
    let around_root_before = beside_root(&mf);

    let reference = format!("{}/hostile/{name}:1", reg.host());
    let out = mf.run(&["pull", &reference]);
    let outside_after = snapshot(c.w.path());
    let new: Vec<_> = outside_after
        .keys()
        .filter(|k| !outside_before.contains_key(*k))
        .collect();
    assert!(new.is_empty(), "new files outside the root: {new:?}");
    assert_eq!(
        outside_after, outside_before,
        "files outside the root changed"
    );
    let victim = std::fs::metadata(c.canary.join("victim")).unwrap();
    assert_eq!(victim.nlink(), 1, "nothing hardlinked to the canary");
    assert_eq!(list_dir(&c.canary), vec!["victim".to_string()]);
    assert_eq!(beside_root(&mf), around_root_before);
    // Under layers/sha256 only layer dirs named by a diff id.
    for d in mf.layer_dirs() {
        assert!(
            d.len() == 64 && d.bytes().all(|b| b.is_ascii_hexdigit()),
            "stray entry in layers/sha256: {d}"
        );
    }
    // Safety first (nothing escaped), then the refusal and its message.
    assert_eq!(
        out.status.code(),
        Some(1),
        "the hostile pull must be refused"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let msg = stderr
        .lines()
        .find(|l| l.starts_with("minifargate: "))
        .unwrap_or_else(|| panic!("no `minifargate: ` line: {stderr}"));
    assert!(
        msg.contains(&format!("hostile/{name}")),
        "names the image: {msg}"
    );
    assert!(
        msg.contains(&bad_layer.digest) || msg.contains(&bad_layer.diff_id),
        "names the layer {}: {msg}",
        bad_layer.digest
    );
    assert!(msg.contains(entry), "names the entry {entry:?}: {msg}");

    mf.assert_tmp_empty();
    assert!(!mf.layer_dir(&bad_layer.diff_id).exists());
    assert!(mf.images().is_empty(), "no image record for a refused pull");

    // The same root still pulls a good image.
    let good = push_image(
        &reg,
        c.w.path(),
        &format!("good/{name}:1"),
        &[busybox_layer(Compression::Gzip, "good after hostile")],
    );
    let got = mf.pull_json(&format!("{}/good/{name}:1", reg.host()), &[]);
    assert_eq!(got["digest"], good.manifest_digest.as_str());
    assert!(
        mf.layer_dir(&good.layers[0].diff_id)
            .join("bin/busybox")
            .is_file()
    );
    mf.assert_tmp_empty();
    assert_eq!(
        std::fs::read_to_string(c.canary.join("victim")).unwrap(),
        "canary: must not change\n"
    );
}

fn one(entries: Vec<Entry>) -> Vec<Layer> {
    vec![Layer::new(Compression::Gzip, entries)]
}

#[test]
fn dotdot_path_is_refused() {
    let c = case();
    let entry = format!("{}{}/pwned-dotdot", up(), c.canary_rel);
    assert_refused(&c, "dotdot", one(vec![Entry::file(&entry, "x")]), 1, &entry);
}

#[test]
fn absolute_path_is_refused() {
    let c = case();
    let entry = format!("/{}/pwned-abs", c.canary_rel);
    assert_refused(
        &c,
        "absolute",
        one(vec![Entry::file(&entry, "x")]),
        1,
        &entry,
    );
}

#[test]
fn write_through_symlink_to_root_in_one_layer_is_refused() {
    let c = case();
    let entry = format!("escape/{}/pwned-symlink", c.canary_rel);
    let layer = one(vec![
        Entry::symlink("escape", "/"),
        Entry::file(&entry, "x"),
    ]);
    assert_refused(&c, "symlink-root", layer, 1, &entry);
}

#[test]
fn write_through_symlink_to_dotdot_in_one_layer_is_refused() {
    let c = case();
    let entry = format!("up/{}/pwned-up", c.canary_rel);
    let layer = one(vec![
        Entry::symlink("up", up().trim_end_matches('/')),
        Entry::file(&entry, "x"),
    ]);
    assert_refused(&c, "symlink-dotdot", layer, 1, &entry);
}

#[test]
fn write_through_plain_dotdot_symlink_is_refused() {
    // `up -> ..` then `up/pwned`: would land in layers/sha256/, inside the root but
    // outside the layer dir.
    let c = case();
    let layer = one(vec![
        Entry::symlink("up", ".."),
        Entry::file("up/pwned-parent", "x"),
    ]);
    assert_refused(&c, "symlink-parent", layer, 1, "up/pwned-parent");
}

#[test]
fn write_through_symlink_to_root_across_two_layers_is_refused() {
    let c = case();
    let entry = format!("escape/{}/pwned-cross", c.canary_rel);
    let layers = vec![
        Layer::new(Compression::Gzip, vec![Entry::symlink("escape", "/")]),
        Layer::new(Compression::Gzip, vec![Entry::file(&entry, "x")]),
    ];
    assert_refused(&c, "symlink-root-cross", layers, 2, &entry);
}

#[test]
fn write_through_symlink_to_dotdot_across_two_layers_is_refused() {
    let c = case();
    let entry = format!("up/{}/pwned-upcross", c.canary_rel);
    let layers = vec![
        Layer::new(
            Compression::Gzip,
            vec![Entry::symlink("up", up().trim_end_matches('/'))],
        ),
        Layer::new(Compression::Gzip, vec![Entry::file(&entry, "x")]),
    ];
    assert_refused(&c, "symlink-dotdot-cross", layers, 2, &entry);
}

#[test]
fn hardlink_to_absolute_outside_path_is_refused() {
    let c = case();
    let target = format!("/{}/victim", c.canary_rel);
    let layer = one(vec![Entry::hardlink("hl-abs", &target)]);
    assert_refused(&c, "hardlink-abs", layer, 1, "hl-abs");
}

#[test]
fn hardlink_climbing_out_is_refused() {
    let c = case();
    let target = format!("{}{}/victim", up(), c.canary_rel);
    let layer = one(vec![Entry::hardlink("hl-up", &target)]);
    assert_refused(&c, "hardlink-up", layer, 1, "hl-up");
}

#[test]
fn whiteout_climbing_out_is_refused() {
    let c = case();
    let entry = format!("{}{}/.wh.victim", up(), c.canary_rel);
    assert_refused(
        &c,
        "whiteout-up",
        one(vec![Entry::file(&entry, "")]),
        1,
        &entry,
    );
}

#[test]
fn whiteout_of_dotdot_is_refused() {
    // `.wh...` whites out `..`: the parent of the layer dir.
    let c = case();
    let layer = one(vec![Entry::dir("sub"), Entry::file("sub/.wh...", "")]);
    assert_refused(&c, "whiteout-dotdot", layer, 1, "sub/.wh...");
}

#[test]
fn whiteout_name_with_dotdot_components_is_refused() {
    // `.wh.../../x` style: the whiteout's name itself climbs.
    let c = case();
    let entry = format!(".wh.../{}{}/victim", up(), c.canary_rel);
    assert_refused(
        &c,
        "whiteout-name",
        one(vec![Entry::file(&entry, "")]),
        1,
        &entry,
    );
}
