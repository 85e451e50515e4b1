//! The hostile-image corpus: one crafted layer (or pair, or manifest) per way out of a
//! layer dir or past the cache's limits. A refused pull must name image, layer digest and
//! entry; nothing may appear outside the root (canary dir), `tmp/` stays empty, no layer
//! dir or image record is left for it, and a good pull still works. What is contained
//! rather than refused (device nodes, setuid files, large ids, lying media types) is
//! pulled and checked to be out of reach of the host's other users.

use crate::common;

use common::cli::Mf;
use common::faultproxy::{Fault, FaultProxy};
use common::image::{Compression, Entry, Layer, busybox_layer};
use common::registry::Registry as Reg;
use common::registry::{Registry, RegistryOpts};
use common::util::{list_dir, snapshot};
use common::{RawLayer, push_image, push_raw_image};
use serde_json::json;
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
    let layer_names = [bad_layer.digest.as_str(), bad_layer.diff_id.as_str()];
    let mf = Mf::new();
    assert_pull_refused(c, &reg, &mf, name, &layer_names, &[entry]);
    assert!(!mf.layer_dir(&bad_layer.diff_id).exists());
}

/// Pulls `hostile/<name>:1` from `reg` into `mf`'s root and checks the refusal: a
/// `minifargate: ` line naming the image, one of `layer` (digest or diff-id; none to
/// check when empty) and every string of `must`; nothing changed outside the root; no
/// temp data or image record left; then a good image still pulls into the same root.
fn assert_pull_refused(c: &Case, reg: &Reg, mf: &Mf, name: &str, layer: &[&str], must: &[&str]) {
    assert_pull_refused_via(c, reg, &reg.host(), mf, name, layer, must)
}

/// [`assert_pull_refused`] pulling the hostile image from `host` (a fault proxy
/// playing a hostile registry) instead of `reg`.
fn assert_pull_refused_via(
    c: &Case,
    reg: &Reg,
    host: &str,
    mf: &Mf,
    name: &str,
    layer: &[&str],
    must: &[&str],
) {
    // Everything around the root, minus the root itself, must stay as it is.
    let outside_before = snapshot(c.w.path());
    // Beside the root (the test's DOCKER_CONFIG dir …), nothing may appear either.
    let beside_root = |mf: &Mf| {
        let mut v = list_dir(mf.dir.path());
        v.retain(|n| n != "root" && n != "run");
        v
    };
    let around_root_before = beside_root(mf);

    let reference = format!("{host}/hostile/{name}:1");
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
    assert_eq!(beside_root(mf), around_root_before);
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
        layer.is_empty() || layer.iter().any(|l| msg.contains(l)),
        "names the layer {layer:?}: {msg}"
    );
    for m in must {
        assert!(msg.contains(m), "says {m:?}: {msg}");
    }

    mf.assert_tmp_empty();
    assert!(mf.images().is_empty(), "no image record for a refused pull");

    // The same root still pulls a good image.
    let good = push_image(
        reg,
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

// ---- Contained, not refused: special files, large ids, long (but legal) names ----

/// Runs `args` as nobody (65534), with no supplementary groups.
fn as_nobody(args: &[&str]) -> std::process::Output {
    std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args(args)
        .output()
        .expect("run setpriv")
}

#[test]
fn device_nodes_setuid_files_and_large_ids_are_kept_out_of_other_users_reach() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let c = case();
    let reg = Registry::start(RegistryOpts::default());
    // 39 components of 100 bytes: a 3.9 kB path, under PATH_MAX, is legal and kept.
    let deep: Vec<String> = (0..39).map(|i| format!("{i:0>100}")).collect();
    let deep = format!("{}/f", deep.join("/"));
    let special = Layer::new(
        Compression::Gzip,
        vec![
            Entry::char_dev("dev-mem", 1, 1),
            Entry::block_dev("dev-disk", 8, 0),
            Entry::fifo("pipe"),
            Entry::file("suid-sh", "#!/bin/sh\nid\n").mode(0o4755),
            Entry::file("sgid", "x").mode(0o2755),
            Entry::file("big-ids", "x").owner(4_294_967_294, 4_294_967_294),
            Entry::file(&deep, "deep"),
        ],
    );
    let img = push_image(
        &reg,
        c.w.path(),
        "special/files:1",
        &[busybox_layer(Compression::Gzip, "special"), special],
    );
    let mf = Mf::new();
    // Like /var/lib: everyone may traverse the directory the root is in, so only the
    // cache's own modes keep other users out.
    std::fs::set_permissions(mf.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let got = mf.pull_json(&format!("{}/special/files:1", reg.host()), &[]);
    assert_eq!(got["digest"], img.manifest_digest.as_str());

    let l = mf.layer_dir(&img.layers[1].diff_id);
    let md = |p: &str| std::fs::symlink_metadata(l.join(p)).unwrap();
    let mem = md("dev-mem");
    assert!(mem.file_type().is_char_device(), "{mem:?}");
    assert_eq!(
        (mem.rdev(), mem.mode() & 0o7777),
        (rustix::fs::makedev(1, 1), 0o666)
    );
    let disk = md("dev-disk");
    assert!(disk.file_type().is_block_device());
    assert_eq!(disk.rdev(), rustix::fs::makedev(8, 0));
    assert!(md("pipe").file_type().is_fifo());
    assert_eq!(md("suid-sh").mode() & 0o7777, 0o4755);
    assert_eq!(md("sgid").mode() & 0o7777, 0o2755);
    let big = md("big-ids");
    assert_eq!((big.uid(), big.gid()), (4_294_967_294, 4_294_967_294));
    assert_eq!(std::fs::read_to_string(l.join(&deep)).unwrap(), "deep");

    // The root is reachable by others, its layers, temp data, blobs (a private image's
    // config) and image records are not.
    for d in ["layers", "tmp", "trash", "blobs", "images"] {
        let mode = std::fs::metadata(mf.root.join(d)).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700, "{d}/ must be private to root");
    }
    let root = mf.root.to_str().unwrap();
    let ok = as_nobody(&["ls", root]);
    assert!(ok.status.success(), "nobody can list the root: {ok:?}");
    for p in ["dev-mem", "dev-disk", "suid-sh"] {
        let path = l.join(p);
        let out = as_nobody(&["cat", path.to_str().unwrap()]);
        assert!(!out.status.success(), "nobody read {p}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("Permission denied"), "{p}: {err}");
    }
    mf.assert_tmp_empty();
}

// ---- Refused: ids, names, sizes ----

#[test]
fn owner_outside_32_bits_is_refused() {
    let c = case();
    let layer = one(vec![Entry::file("huge-uid", "x").owner(1 << 40, 0)]);
    assert_refused(&c, "huge-uid", layer, 1, "huge-uid");
}

#[test]
fn path_longer_than_path_max_is_refused() {
    let c = case();
    let comps: Vec<String> = (0..42).map(|i| format!("{i:a>99}")).collect();
    let path = format!("{}/x", comps.join("/"));
    assert!(path.len() > 4096);
    let reg = Registry::start(RegistryOpts::default());
    let img = push_image(
        &reg,
        c.w.path(),
        "hostile/long-path:1",
        &[Layer::new(Compression::Gzip, vec![Entry::file(&path, "x")])],
    );
    let mf = Mf::new();
    let l = &img.layers[0];
    // Messages keep the first 200 bytes of a name and say how long it was.
    let shown = format!("{}…({} bytes)", &path[..200], path.len());
    assert_pull_refused(
        &c,
        &reg,
        &mf,
        "long-path",
        &[&l.digest, &l.diff_id],
        &[&shown, "PATH_MAX"],
    );
    assert!(!mf.layer_dir(&l.diff_id).exists());
}

#[test]
fn name_longer_than_name_max_is_refused() {
    let c = case();
    let entry = format!("d/{}", "n".repeat(300));
    let reg = Registry::start(RegistryOpts::default());
    let img = push_image(
        &reg,
        c.w.path(),
        "hostile/long-name:1",
        &[Layer::new(
            Compression::Gzip,
            vec![Entry::file(&entry, "x")],
        )],
    );
    let mf = Mf::new();
    let l = &img.layers[0];
    assert_pull_refused(
        &c,
        &reg,
        &mf,
        "long-name",
        &[&l.digest, &l.diff_id],
        &[&format!("{}…(302 bytes)", &entry[..200]), "NAME_MAX"],
    );
}

#[test]
fn symlink_target_longer_than_path_max_is_refused() {
    let c = case();
    let target = "t/".repeat(2600);
    let layer = one(vec![Entry::symlink("long-link", &target)]);
    assert_refused(&c, "long-link", layer, 1, "long-link");
}

#[test]
fn decompression_bomb_stops_at_max_unpacked_size() {
    // 30 MiB of zeros in 1 MiB files: a ~30 kB gzip blob. With the limit at 16 MiB the
    // 17th file is refused before it is created.
    let c = case();
    let zeros = vec![0u8; 1 << 20];
    let entries = (0..30)
        .map(|i| Entry::file(&format!("zero-{i:02}"), zeros.clone()))
        .collect();
    let reg = Registry::start(RegistryOpts::default());
    let img = push_image(
        &reg,
        c.w.path(),
        "hostile/bomb:1",
        &[Layer::new(Compression::Gzip, entries)],
    );
    assert!(
        img.layers[0].size < 1 << 20,
        "a bomb: {}",
        img.layers[0].size
    );
    let mut mf = Mf::new();
    mf.set_env("MINIFARGATE_MAX_UNPACKED_SIZE", (16u64 << 20).to_string());
    let l = &img.layers[0];
    assert_pull_refused(
        &c,
        &reg,
        &mf,
        "bomb",
        &[&l.digest, &l.diff_id],
        &["zero-16", "max_unpacked_size", "16777216"],
    );
    assert!(!mf.layer_dir(&l.diff_id).exists());
}

#[test]
fn pull_is_refused_when_the_disk_is_short() {
    let c = case();
    let reg = Registry::start(RegistryOpts::default());
    let img = push_image(
        &reg,
        c.w.path(),
        "hostile/no-space:1",
        &[busybox_layer(Compression::Gzip, "no-space")],
    );
    let mut mf = Mf::new();
    mf.set_env("MINIFARGATE_MIN_FREE_SPACE", (1u64 << 60).to_string());
    let out = mf.run(&["pull", &format!("{}/hostile/no-space:1", reg.host())]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        "hostile/no-space",
        img.layers[0].digest.as_str(),
        "not enough free disk space",
        "min_free_space",
    ] {
        assert!(err.contains(want), "says {want:?}: {err}");
    }
    mf.assert_tmp_empty();
    assert!(mf.layer_dirs().is_empty());
    // Without the override the same root pulls it.
    mf.set_env("MINIFARGATE_MIN_FREE_SPACE", "");
    mf.pull_json(&format!("{}/hostile/no-space:1", reg.host()), &[]);
}

// ---- Refused: manifests, indexes and configs that lie or are too big ----

const INDEX: &str = "application/vnd.oci.image.index.v1+json";

fn good_raw_layer(marker: &str) -> RawLayer {
    RawLayer::of(&busybox_layer(Compression::Gzip, marker))
}

/// A fault proxy in front of `reg` that answers `hostile/<name>` manifest requests
/// with `body` (of media type `media_type`): the registry itself refuses manifests over
/// 4 MiB, a registry we do not control need not.
fn hostile_registry(reg: &Reg, name: &str, media_type: &str, body: Vec<u8>) -> FaultProxy {
    FaultProxy::start(
        &reg.host(),
        vec![Fault::Body {
            path: format!("/v2/hostile/{name}/manifests/"),
            content_type: media_type.into(),
            body: std::sync::Arc::new(body),
        }],
    )
}

#[test]
fn oversized_manifest_is_refused() {
    let c = case();
    let reg = Registry::start(RegistryOpts::default());
    let img = push_raw_image(
        &reg,
        "hostile/big-manifest:img",
        &[good_raw_layer("big-manifest")],
        |_| {},
        |_| {},
    );
    let mut m: serde_json::Value =
        serde_json::from_slice(&reg.manifest("hostile/big-manifest", "img")).unwrap();
    m["annotations"] = json!({"pad": "m".repeat(5 << 20)});
    let proxy = hostile_registry(
        &reg,
        "big-manifest",
        "application/vnd.oci.image.manifest.v1+json",
        serde_json::to_vec(&m).unwrap(),
    );
    let mf = Mf::new();
    assert_pull_refused_via(
        &c,
        &reg,
        &proxy.host(),
        &mf,
        "big-manifest",
        &[],
        &["larger than 4194304 bytes"],
    );
    assert!(!mf.layer_dir(&img.layers[0].diff_id).exists());
}

#[test]
fn oversized_config_is_refused() {
    let c = case();
    let reg = Registry::start(RegistryOpts::default());
    let img = push_raw_image(
        &reg,
        "hostile/big-config:1",
        &[good_raw_layer("big-config")],
        |cfg| cfg["config"]["Labels"] = json!({"pad": "c".repeat(9 << 20)}),
        |_| {},
    );
    let mf = Mf::new();
    assert_pull_refused(
        &c,
        &reg,
        &mf,
        "big-config",
        &[&img.config_digest],
        &["larger than 8388608 bytes"],
    );
    assert!(!mf.layer_dir(&img.layers[0].diff_id).exists());
}

/// An index over `children` ((media type, digest, size)), each for linux/amd64.
fn index_json(children: &[(&str, &str, u64)]) -> serde_json::Value {
    json!({
        "schemaVersion": 2,
        "mediaType": INDEX,
        "manifests": children.iter().map(|(mt, d, s)| json!({
            "mediaType": mt, "digest": d, "size": s,
            "platform": {"os": "linux", "architecture": "amd64"},
        })).collect::<Vec<_>>(),
    })
}

#[test]
fn oversized_index_is_refused() {
    let c = case();
    let reg = Registry::start(RegistryOpts::default());
    let img = push_raw_image(
        &reg,
        "hostile/big-index:img",
        &[good_raw_layer("big-index")],
        |_| {},
        |_| {},
    );
    let mut idx = index_json(&[(
        "application/vnd.oci.image.manifest.v1+json",
        &img.manifest_digest,
        img.manifest_size,
    )]);
    idx["annotations"] = json!({"pad": "i".repeat(5 << 20)});
    let proxy = hostile_registry(&reg, "big-index", INDEX, serde_json::to_vec(&idx).unwrap());
    let mf = Mf::new();
    assert_pull_refused_via(
        &c,
        &reg,
        &proxy.host(),
        &mf,
        "big-index",
        &[],
        &["larger than 4194304 bytes"],
    );
    assert!(!mf.layer_dir(&img.layers[0].diff_id).exists());
}

#[test]
fn index_pointing_at_an_index_is_refused() {
    // An index cannot name its own digest (that would be a sha256 fixed point), so a
    // loop needs an index that points at another index; nesting is refused at the
    // first level, which also bounds every chain.
    let c = case();
    let reg = Registry::start(RegistryOpts::default());
    let img = push_raw_image(
        &reg,
        "hostile/index-loop:img",
        &[good_raw_layer("index-loop")],
        |_| {},
        |_| {},
    );
    let inner = serde_json::to_vec(&index_json(&[(
        "application/vnd.oci.image.manifest.v1+json",
        &img.manifest_digest,
        img.manifest_size,
    )]))
    .unwrap();
    let (st, body) = reg.put_manifest("hostile/index-loop", "inner", INDEX, &inner);
    assert_eq!(st, 201, "{body}");
    let inner_digest = format!("sha256:{}", common::util::sha256_hex(&inner));
    let outer = index_json(&[(INDEX, &inner_digest, inner.len() as u64)]);
    let (st, body) = reg.put_manifest(
        "hostile/index-loop",
        "1",
        INDEX,
        &serde_json::to_vec(&outer).unwrap(),
    );
    assert_eq!(st, 201, "{body}");
    let mf = Mf::new();
    assert_pull_refused(
        &c,
        &reg,
        &mf,
        "index-loop",
        &[&inner_digest],
        &["is itself an index"],
    );
}

#[test]
fn layer_whose_diff_id_does_not_match_the_config_is_refused() {
    let c = case();
    let reg = Registry::start(RegistryOpts::default());
    let mut bad = RawLayer::of(&Layer::new(
        Compression::Gzip,
        vec![Entry::file("etc/lie", "x")],
    ));
    let honest = bad.diff_id.clone();
    bad.diff_id = format!("sha256:{}", common::util::sha256_hex(b"another layer"));
    let img = push_raw_image(
        &reg,
        "hostile/diff-id:1",
        &[good_raw_layer("diff-id"), bad],
        |_| {},
        |_| {},
    );
    let mf = Mf::new();
    let l = &img.layers[1];
    assert_pull_refused(
        &c,
        &reg,
        &mf,
        "diff-id",
        &[&l.digest],
        &["diff-id mismatch", &l.diff_id, &honest],
    );
    assert!(!mf.layer_dir(&l.diff_id).exists());
    assert!(!mf.layer_dir(&honest).exists());
}

#[test]
fn layer_in_an_unknown_compression_is_refused() {
    // Says gzip, is bzip2: neither what it says nor anything we read.
    let c = case();
    let reg = Registry::start(RegistryOpts::default());
    let mut blob = b"BZh91AY&SY".to_vec();
    blob.extend(common::util::random_bytes(7, 4096));
    let bz = RawLayer {
        diff_id: format!("sha256:{}", common::util::sha256_hex(&blob)),
        blob,
        media_type: Compression::Gzip.media_type().into(),
    };
    let img = push_raw_image(
        &reg,
        "hostile/bzip2:1",
        &[good_raw_layer("bzip2"), bz],
        |_| {},
        |_| {},
    );
    let mf = Mf::new();
    let l = &img.layers[1];
    assert_pull_refused(
        &c,
        &reg,
        &mf,
        "bzip2",
        &[&l.digest],
        &["neither gzip, zstd nor a tar", "tar+gzip", "425a6839"],
    );
}

#[test]
fn media_types_that_lie_about_compression_are_read_by_content() {
    // Contained: the bytes decide (as containerd does), both digests still verified.
    let _c = case();
    let reg = Registry::start(RegistryOpts::default());
    let lie = |c: Compression, says: Compression, marker: &str| {
        let mut l = RawLayer::of(&Layer::new(
            c,
            vec![Entry::file(&format!("etc/{marker}"), marker)],
        ));
        l.media_type = says.media_type().into();
        l
    };
    let img = push_raw_image(
        &reg,
        "hostile/media-type:1",
        &[
            good_raw_layer("media-type"),
            lie(Compression::Zstd, Compression::Gzip, "zstd-says-gzip"),
            lie(Compression::Gzip, Compression::None, "gzip-says-tar"),
            lie(Compression::None, Compression::Zstd, "tar-says-zstd"),
        ],
        |_| {},
        |_| {},
    );
    let mf = Mf::new();
    let got = mf.pull_json(&format!("{}/hostile/media-type:1", reg.host()), &[]);
    assert_eq!(got["digest"], img.manifest_digest.as_str());
    for (i, m) in ["zstd-says-gzip", "gzip-says-tar", "tar-says-zstd"]
        .iter()
        .enumerate()
    {
        let f = mf.layer_dir(&img.layers[i + 1].diff_id).join("etc").join(m);
        assert_eq!(std::fs::read_to_string(&f).unwrap(), *m);
    }
    mf.assert_tmp_empty();
}
