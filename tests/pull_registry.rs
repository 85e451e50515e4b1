//! `minifargate pull` against a real registry (Debian's docker-registry) seeded by
//! skopeo: anonymous, Basic and Bearer auth, mirrors, platforms, codecs and faults.

use crate::common;

use common::cli::{Mf, assert_layers};
use common::faultproxy::{Fault, FaultProxy};
use common::image::{Compression, Entry, Layer, busybox_layer};
use common::registry::{Registry, RegistryOpts};
use common::services::Server;
use common::tls::TestCa;
use common::util::{random_bytes, sha256_file, sha256_hex};
use common::{push_image, push_index};
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

fn work() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("mf-work-")
        .tempdir()
        .unwrap()
}

#[test]
fn anonymous_pull_unpacks_busybox_and_lists_it() {
    let w = work();
    let reg = Registry::start(RegistryOpts::default());
    let img = push_image(
        &reg,
        w.path(),
        "demo/busybox:1.36",
        &[busybox_layer(Compression::Gzip, "anonymous")],
    );
    let mf = Mf::new();
    let reference = format!("{}/demo/busybox:1.36", reg.host());
    let got = mf.pull_json(&reference, &[]);

    assert_eq!(got["reference"], reference.as_str());
    assert_eq!(got["digest"], img.manifest_digest.as_str());
    assert!(got["indexDigest"].is_null(), "no index here: {got}");
    assert_eq!(got["config"], img.config_digest.as_str());
    assert_eq!(got["platform"], "linux/amd64");
    assert_eq!(got["size"], img.size());
    assert_eq!(
        got["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_layers(&mf, &got, &img);

    // The busybox from the layer is byte-for-byte Debian's, executable, with its links.
    let layer = mf.layer_dir(&img.layers[0].diff_id);
    assert_eq!(
        sha256_file(&layer.join("bin/busybox")),
        sha256_file(std::path::Path::new("/bin/busybox"))
    );
    let mode = std::fs::metadata(layer.join("bin/busybox"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o755);
    assert_eq!(
        std::fs::read_link(layer.join("bin/sh")).unwrap(),
        std::path::Path::new("busybox")
    );
    assert_eq!(
        std::fs::read_to_string(layer.join("etc/minifargate-marker")).unwrap(),
        "anonymous"
    );
    let tmp_mode = std::fs::metadata(layer.join("tmp"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(tmp_mode & 0o7777, 0o1777, "sticky /tmp kept");
    // Manifest and config are stored content-addressed.
    for d in [&img.manifest_digest, &img.config_digest] {
        let p = mf.blob_path(d);
        assert_eq!(format!("sha256:{}", sha256_file(&p)), *d, "{}", p.display());
    }
    mf.assert_tmp_empty();

    let images = mf.images();
    assert_eq!(images.len(), 1, "{images:?}");
    let i = &images[0];
    assert_eq!(i["reference"], reference.as_str());
    assert_eq!(
        i["repository"],
        format!("{}/demo/busybox", reg.host()).as_str()
    );
    assert_eq!(i["tag"], "1.36");
    assert_eq!(i["digest"], img.manifest_digest.as_str());
    assert_eq!(i["platform"], "linux/amd64");
    assert_eq!(i["size"], img.size());
    assert!(i["pulledAt"].is_string(), "{i}");
    assert_layers(&mf, i, &img);

    // A second pull is served from the cache; --quiet prints only the digest.
    let out = mf.run(&["pull", &reference, "--quiet"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        img.manifest_digest
    );
    let text = mf.run(&["images"]);
    assert!(text.status.success());
    let table = String::from_utf8_lossy(&text.stdout);
    assert!(
        table.contains(&format!("{}/demo/busybox", reg.host())),
        "{table}"
    );
    assert!(table.contains("1.36"), "{table}");

    // rmi by reference; a second rmi of the same name fails.
    assert!(mf.run(&["rmi", &reference]).status.success());
    assert!(mf.images().is_empty());
    let msg = mf.fail(&["rmi", &reference]);
    assert!(msg.contains("demo/busybox"), "{msg}");

    // By digest: the same manifest, found by content.
    let by_digest = format!("{}/demo/busybox@{}", reg.host(), img.manifest_digest);
    let got = mf.pull_json(&by_digest, &[]);
    assert_eq!(got["digest"], img.manifest_digest.as_str());
    assert_layers(&mf, &got, &img);
    mf.assert_tmp_empty();
    let images = mf.images();
    assert_eq!(images.len(), 1, "{images:?}");
    assert_eq!(images[0]["digest"], img.manifest_digest.as_str());
}

#[test]
fn rmi_by_digest() {
    let w = work();
    let reg = Registry::start(RegistryOpts::default());
    let img = push_image(
        &reg,
        w.path(),
        "demo/rmi:1",
        &[busybox_layer(Compression::Gzip, "rmi")],
    );
    let mf = Mf::new();
    mf.pull_json(&format!("{}/demo/rmi:1", reg.host()), &[]);
    assert!(mf.run(&["rmi", &img.manifest_digest]).status.success());
    assert!(mf.images().is_empty());
    mf.fail(&["rmi", &img.manifest_digest]);
}

#[test]
fn mirror_config_serves_public_ecr_name_from_local_registry() {
    let w = work();
    let reg = Registry::start(RegistryOpts::default());
    let img = push_image(
        &reg,
        w.path(),
        "docker/library/busybox:1.36",
        &[busybox_layer(Compression::Gzip, "mirror")],
    );
    let mut mf = Mf::new();
    mf.mirror_config("public.ecr.aws", &reg.host(), true);
    let name = "public.ecr.aws/docker/library/busybox:1.36";
    let got = mf.pull_json(name, &[]);
    assert_eq!(got["reference"], name);
    assert_eq!(got["digest"], img.manifest_digest.as_str());
    assert_layers(&mf, &got, &img);
    let images = mf.images();
    assert_eq!(images[0]["reference"], name);

    // A mirror location with a namespace: the rest of the path is appended to it.
    let img2 = push_image(
        &reg,
        w.path(),
        "cache/docker/library/busybox:1.36",
        &[busybox_layer(Compression::Gzip, "namespaced mirror")],
    );
    let mut mf2 = Mf::new();
    mf2.mirror_config("public.ecr.aws", &format!("{}/cache", reg.host()), true);
    let got = mf2.pull_json(name, &[]);
    assert_eq!(got["digest"], img2.manifest_digest.as_str());
}

#[test]
fn docker_hub_short_names_are_normalised_and_served_by_a_mirror() {
    // `busybox` means docker.io/library/busybox:latest; a docker.io mirror on
    // loopback serves it, so the normalisation is checked without the internet.
    let w = work();
    let reg = Registry::start(RegistryOpts::default());
    let img = push_image(
        &reg,
        w.path(),
        "library/busybox:latest",
        &[busybox_layer(Compression::Gzip, "docker hub")],
    );
    let mut mf = Mf::new();
    mf.mirror_config("docker.io", &reg.host(), true);
    for name in [
        "busybox",
        "library/busybox",
        "docker.io/library/busybox:latest",
    ] {
        let got = mf.pull_json(name, &[]);
        assert_eq!(got["digest"], img.manifest_digest.as_str(), "{name}");
        assert_eq!(
            got["reference"], "docker.io/library/busybox:latest",
            "{name}"
        );
    }
    assert_eq!(mf.images().len(), 1);
}

/// A `docker-credential-<name>` helper as Docker runs them: `get`, the server on
/// stdin, a JSON answer on stdout. It also logs what it was asked.
fn cred_helper(dir: &std::path::Path, name: &str, user: &str, secret: &str) {
    let path = dir.join(format!("docker-credential-{name}"));
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread -r server\n\
             echo \"$server\" >> {log}\n\
             printf '{{\"ServerURL\":\"%s\",\"Username\":\"{user}\",\"Secret\":\"{secret}\"}}' \"$server\"\n",
            log = dir.join(format!("{name}.log")).display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn credential_helpers_from_docker_config() {
    let w = work();
    let reg = Registry::start(RegistryOpts {
        htpasswd: Some(("bob".into(), "helper-pw".into())),
        ..Default::default()
    });
    let img = push_image(
        &reg,
        w.path(),
        "helped/app:1",
        &[busybox_layer(Compression::Gzip, "helper")],
    );
    let reference = format!("{}/helped/app:1", reg.host());
    let bin = w.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    cred_helper(&bin, "mftest", "bob", "helper-pw");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );

    // credHelpers: per registry.
    let mut mf = Mf::new();
    mf.set_env("PATH", &path);
    let cfg = serde_json::json!({"credHelpers": {reg.host(): "mftest"}});
    std::fs::write(mf.docker_config.join("config.json"), cfg.to_string()).unwrap();
    let got = mf.pull_json(&reference, &[]);
    assert_eq!(got["digest"], img.manifest_digest.as_str());
    let asked = std::fs::read_to_string(bin.join("mftest.log")).unwrap();
    assert!(asked.contains(&reg.host()), "helper asked for {asked:?}");

    // credsStore: the default helper for every registry.
    let mut mf = Mf::new();
    mf.set_env("PATH", &path);
    let cfg = serde_json::json!({"credsStore": "mftest"});
    std::fs::write(mf.docker_config.join("config.json"), cfg.to_string()).unwrap();
    let got = mf.pull_json(&reference, &[]);
    assert_eq!(got["digest"], img.manifest_digest.as_str());
}

#[test]
fn basic_auth_from_docker_config_and_clear_error_on_bad_password() {
    let w = work();
    let reg = Registry::start(RegistryOpts {
        htpasswd: Some(("alice".into(), "s3cret-pw".into())),
        ..Default::default()
    });
    let img = push_image(
        &reg,
        w.path(),
        "private/app:2",
        &[busybox_layer(Compression::Gzip, "basic")],
    );
    let reference = format!("{}/private/app:2", reg.host());

    let mf = Mf::new();
    mf.docker_login(&reg.host(), "alice", "s3cret-pw");
    let got = mf.pull_json(&reference, &[]);
    assert_eq!(got["digest"], img.manifest_digest.as_str());
    assert_layers(&mf, &got, &img);

    let bad = Mf::new();
    bad.docker_login(&reg.host(), "alice", "wrong-pw");
    let msg = bad.fail(&["pull", &reference]);
    let lower = msg.to_lowercase();
    assert!(
        lower.contains("401") || lower.contains("unauthorized"),
        "{msg}"
    );
    assert!(msg.contains(&reg.host()), "names the registry host: {msg}");
    assert!(msg.contains("private/app"), "names the image: {msg}");
    assert!(bad.images().is_empty());
    bad.assert_tmp_empty();

    // No credentials at all: refused the same way.
    let anon = Mf::new();
    let msg = anon.fail(&["pull", &reference]);
    let lower = msg.to_lowercase();
    assert!(
        lower.contains("401") || lower.contains("unauthorized"),
        "{msg}"
    );
}

#[test]
fn bearer_token_flow_with_token_service() {
    let w = work();
    let ca = TestCa::new(w.path());
    let signer = ca.issue("token-signer", &[], &[], false);
    let (issuer, service) = ("minifargate-test-issuer", "minifargate-test-registry");
    let token = Server::token(
        w.path(),
        &signer.key,
        &signer.cert,
        issuer,
        service,
        "tokenuser",
        "tokenpass",
    );
    let reg = Registry::start(RegistryOpts {
        token: Some(common::registry::TokenAuth {
            realm: format!("{}/token", token.url()),
            service: service.into(),
            issuer: issuer.into(),
            root_cert_bundle: ca.cert.clone(),
        }),
        ..Default::default()
    });
    let layout = tempfile::tempdir_in(w.path()).unwrap();
    let mut l = common::image::Layout::new(layout.path());
    let img = l.add_image("linux/amd64", &[busybox_layer(Compression::Gzip, "bearer")]);
    l.tag_image("t", &img);
    let pushed = reg.push_with(layout.path(), "t", "tok/app:1", Some("tokenuser:tokenpass"));
    assert_eq!(pushed, img.manifest_digest);

    let reference = format!("{}/tok/app:1", reg.host());
    let mf = Mf::new();
    mf.docker_login(
        &format!("127.0.0.1:{}", token.port),
        "tokenuser",
        "tokenpass",
    );
    mf.docker_login(&reg.host(), "tokenuser", "tokenpass");
    let before = token.token_requests().len();
    let got = mf.pull_json(&reference, &[]);
    assert_eq!(got["digest"], img.manifest_digest.as_str());
    assert_layers(&mf, &got, &img);
    let reqs = token.token_requests();
    let ours: Vec<_> = reqs[before..].iter().collect();
    assert!(
        ours.iter().any(|r| r["status"] == 200
            && r["user"] == "tokenuser"
            && r["service"][0] == service
            && r["scope"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s == "repository:tok/app:pull")),
        "the client asked the realm for repository:tok/app:pull as tokenuser: {ours:?}"
    );
    // The token is kept for the next process that pulls the repository with the same
    // credentials (docs/images.md): a second pull asks the registry with it, not the
    // realm. The file holds a digest of the credentials, not them.
    let asked = token.token_requests().len();
    let again = mf.pull_json(&reference, &[]);
    assert_eq!(again["digest"], img.manifest_digest.as_str());
    let after: Vec<_> = token.token_requests()[asked..].to_vec();
    assert!(after.is_empty(), "the realm was asked again: {after:?}");
    let kept: Vec<_> = std::fs::read_dir(mf.root.join("registry-tokens"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&kept[0]).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(
        !std::fs::read_to_string(&kept[0])
            .unwrap()
            .contains("tokenpass")
    );
    // Other credentials for the same registry are not given that token: the realm is
    // asked as them, and refuses the wrong password.
    mf.docker_login(&reg.host(), "tokenuser", "nope");
    let msg = mf.fail(&["pull", &reference]);
    assert!(
        msg.contains("401") || msg.to_lowercase().contains("unauthorized"),
        "{msg}"
    );
    assert!(
        token.token_requests()[asked..]
            .iter()
            .any(|r| r["status"] == 401),
        "the realm was not asked with the other credentials"
    );

    // Wrong password at the token service: a clear 401.
    let bad = Mf::new();
    bad.docker_login(&reg.host(), "tokenuser", "nope");
    let msg = bad.fail(&["pull", &reference]);
    let lower = msg.to_lowercase();
    assert!(
        lower.contains("401") || lower.contains("unauthorized"),
        "{msg}"
    );
    bad.assert_tmp_empty();
}

#[test]
fn unknown_tag_names_image_and_tag() {
    let w = work();
    let reg = Registry::start(RegistryOpts::default());
    push_image(
        &reg,
        w.path(),
        "demo/busybox:1.36",
        &[busybox_layer(Compression::Gzip, "x")],
    );
    let mf = Mf::new();
    let msg = mf.fail(&["pull", &format!("{}/demo/busybox:9.99-missing", reg.host())]);
    assert!(msg.contains("demo/busybox"), "{msg}");
    assert!(msg.contains("9.99-missing"), "{msg}");
    assert!(msg.to_lowercase().contains("not found"), "{msg}");
    mf.assert_tmp_empty();
    assert!(mf.images().is_empty());
}

#[test]
fn schema1_manifest_is_refused_clearly() {
    let w = work();
    let reg = Registry::start(RegistryOpts {
        schema1: true,
        ..Default::default()
    });
    let layout = tempfile::tempdir_in(w.path()).unwrap();
    let mut l = common::image::Layout::new(layout.path());
    let img = l.add_image("linux/amd64", &[busybox_layer(Compression::Gzip, "s1")]);
    l.tag_image("t", &img);
    reg.push_schema1(layout.path(), "t", "old/app:1");
    let served = reg.manifest("old/app", "1");
    assert!(
        String::from_utf8_lossy(&served).contains("\"schemaVersion\":1"),
        "the registry serves schema 1"
    );
    let mf = Mf::new();
    let msg = mf.fail(&["pull", &format!("{}/old/app:1", reg.host())]);
    assert!(msg.contains("old/app"), "{msg}");
    assert!(msg.to_lowercase().contains("schema 1"), "{msg}");
    mf.assert_tmp_empty();
    assert!(mf.images().is_empty());
}

#[test]
fn multi_arch_index_pulled_for_each_platform() {
    let w = work();
    let reg = Registry::start(RegistryOpts::default());
    let idx = push_index(&reg, w.path(), "multi/busybox:1", |p| {
        let arch = p.split('/').nth(1).unwrap().to_string();
        vec![
            busybox_layer(Compression::Gzip, "shared"),
            Layer::new(
                Compression::Gzip,
                vec![Entry::dir("etc"), Entry::file("etc/arch", arch)],
            ),
        ]
    });
    let (amd, arm) = (&idx.images[0], &idx.images[1]);
    let reference = format!("{}/multi/busybox:1", reg.host());
    let mf = Mf::new();

    // Default: the host's platform (this suite runs on x86_64).
    let got = mf.pull_json(&reference, &[]);
    assert_eq!(got["digest"], amd.manifest_digest.as_str());
    assert_eq!(got["indexDigest"], idx.digest.as_str());
    assert_eq!(got["platform"], "linux/amd64");

    let got = mf.pull_json(&reference, &["--platform", "linux/arm64"]);
    assert_eq!(got["digest"], arm.manifest_digest.as_str());
    assert_eq!(got["indexDigest"], idx.digest.as_str());
    assert_eq!(got["config"], arm.config_digest.as_str());
    assert!(
        got["platform"].as_str().unwrap().starts_with("linux/arm64"),
        "{got}"
    );
    assert_layers(&mf, &got, arm);
    let marker = mf.layer_dir(&arm.layers[1].diff_id).join("etc/arch");
    assert_eq!(std::fs::read_to_string(marker).unwrap(), "arm64");
    let marker = mf.layer_dir(&amd.layers[1].diff_id).join("etc/arch");
    assert_eq!(std::fs::read_to_string(marker).unwrap(), "amd64");

    let got = mf.pull_json(&reference, &["--platform", "linux/arm64/v8"]);
    assert_eq!(got["digest"], arm.manifest_digest.as_str());

    // The shared busybox layer is unpacked once: 3 layer dirs for 4 layer uses.
    assert_eq!(amd.layers[0].diff_id, arm.layers[0].diff_id);
    assert_eq!(mf.layer_dirs().len(), 3, "{:?}", mf.layer_dirs());

    let msg = mf.fail(&["pull", &reference, "--platform", "linux/s390x"]);
    assert!(msg.contains("s390x"), "{msg}");
    mf.assert_tmp_empty();
}

#[test]
fn zstd_and_uncompressed_layers() {
    let w = work();
    let reg = Registry::start(RegistryOpts::default());
    let img = push_image(
        &reg,
        w.path(),
        "codecs/app:1",
        &[
            busybox_layer(Compression::Zstd, "zstd"),
            Layer::new(
                Compression::None,
                vec![
                    Entry::dir("data"),
                    Entry::file("data/plain.txt", "uncompressed layer\n"),
                ],
            ),
            Layer::new(
                Compression::Zstd,
                vec![
                    Entry::dir("data"),
                    Entry::file("data/z.txt", "zstd layer\n"),
                ],
            ),
        ],
    );
    let mf = Mf::new();
    let got = mf.pull_json(&format!("{}/codecs/app:1", reg.host()), &[]);
    assert_layers(&mf, &got, &img);
    assert_eq!(
        got["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    let l0 = mf.layer_dir(&img.layers[0].diff_id);
    assert_eq!(
        sha256_file(&l0.join("bin/busybox")),
        sha256_file(std::path::Path::new("/bin/busybox"))
    );
    assert_eq!(
        std::fs::read_to_string(mf.layer_dir(&img.layers[1].diff_id).join("data/plain.txt"))
            .unwrap(),
        "uncompressed layer\n"
    );
    assert_eq!(
        std::fs::read_to_string(mf.layer_dir(&img.layers[2].diff_id).join("data/z.txt")).unwrap(),
        "zstd layer\n"
    );
    mf.assert_tmp_empty();
}

#[test]
fn blob_corrupted_in_registry_storage_is_refused_by_digest() {
    let w = work();
    let reg = Registry::start(RegistryOpts::default());
    let img = push_image(
        &reg,
        w.path(),
        "corrupt/app:1",
        &[
            busybox_layer(Compression::Gzip, "corrupt"),
            Layer::new(
                Compression::Gzip,
                vec![Entry::file("big.bin", random_bytes(7, 1 << 20))],
            ),
        ],
    );
    // Same length, different bytes: only the digest can tell.
    let victim = &img.layers[1];
    let data = reg.blob_data_path(&victim.digest);
    let len = std::fs::metadata(&data).unwrap().len() as usize;
    std::fs::write(&data, random_bytes(99, len)).unwrap();

    let mf = Mf::new();
    let msg = mf.fail(&["pull", &format!("{}/corrupt/app:1", reg.host())]);
    assert!(msg.contains("digest mismatch"), "{msg}");
    assert!(msg.contains(&victim.digest), "names the blob: {msg}");
    assert!(msg.contains("corrupt/app"), "names the image: {msg}");
    mf.assert_tmp_empty();
    assert!(
        !mf.layer_dir(&victim.diff_id).exists(),
        "no layer dir for a bad blob"
    );
    assert!(!mf.blob_path(&victim.digest).exists());
    assert!(mf.images().is_empty());
}

#[test]
fn two_concurrent_pulls_of_one_image_into_one_root_both_succeed() {
    let w = work();
    let reg = Registry::start(RegistryOpts::default());
    let big = random_bytes(3, 24 << 20);
    let big_sha = sha256_hex(&big);
    let img = push_image(
        &reg,
        w.path(),
        "conc/app:1",
        &[
            busybox_layer(Compression::Gzip, "concurrent"),
            Layer::new(Compression::Gzip, vec![Entry::file("big.bin", big)]),
        ],
    );
    let reference = format!("{}/conc/app:1", reg.host());
    let mf = Mf::new();
    let children: Vec<_> = (0..2)
        .map(|_| {
            mf.cmd()
                .args(["pull", &reference, "--format", "json"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "concurrent pull failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["digest"], img.manifest_digest.as_str());
        assert_layers(&mf, &v, &img);
    }
    assert_eq!(
        sha256_file(&mf.layer_dir(&img.layers[1].diff_id).join("big.bin")),
        big_sha
    );
    assert_eq!(mf.images().len(), 1);
    assert_eq!(mf.layer_dirs().len(), 2);
    mf.assert_tmp_empty();
}

#[test]
fn registry_killed_mid_pull_then_restarted_next_pull_completes() {
    let w = work();
    let mut reg = Registry::start(RegistryOpts::default());
    let big = random_bytes(11, 48 << 20);
    let big_sha = sha256_hex(&big);
    let img = push_image(
        &reg,
        w.path(),
        "kill/app:1",
        &[
            busybox_layer(Compression::Gzip, "kill"),
            Layer::new(Compression::Gzip, vec![Entry::file("big.bin", big)]),
        ],
    );
    // Blobs come through a proxy at 12 MiB/s, so the 48 MiB layer is in flight for
    // about four seconds whatever the load on the machine: the kill below lands while
    // the pull runs instead of racing a loopback transfer. The proxy passes the
    // registry's death on (it closes the client's connection when its upstream ends).
    let proxy = FaultProxy::start(
        &reg.host(),
        vec![Fault::Throttle {
            path: "/blobs/".into(),
            bytes_per_sec: 12 << 20,
        }],
    );
    let reference = format!("{}/kill/app:1", proxy.host());
    let mf = Mf::new();
    let mut child = mf
        .cmd()
        .args(["pull", &reference, "--format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kill the registry as soon as the pull has started writing under the root.
    let start = Instant::now();
    let mut killed_while_running = false;
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if common::util::du(&mf.root) > 4 << 20 {
            reg.kill();
            killed_while_running = child.try_wait().unwrap().is_none();
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "pull never started"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(
        killed_while_running,
        "the kill should land while the pull runs"
    );
    let out = child.wait_with_output().unwrap();
    eprintln!(
        "first pull: {} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with("minifargate: ") && l.contains("kill/app")),
            "{stderr}"
        );
        assert!(
            mf.images().is_empty(),
            "no image record after a failed pull"
        );
    }
    mf.assert_tmp_empty();

    reg.restart();
    proxy.heal();
    let got = mf.pull_json(&reference, &[]);
    assert_eq!(got["digest"], img.manifest_digest.as_str());
    assert_layers(&mf, &got, &img);
    assert_eq!(
        sha256_file(&mf.layer_dir(&img.layers[1].diff_id).join("big.bin")),
        big_sha,
        "the big file is complete"
    );
    // Consistent cache: exactly this image's layers and verified blobs.
    let mut want: Vec<String> = img
        .layers
        .iter()
        .map(|l| l.diff_id.trim_start_matches("sha256:").to_string())
        .collect();
    want.sort();
    assert_eq!(mf.layer_dirs(), want);
    for b in mf.blobs() {
        let p = mf.root.join("blobs/sha256").join(&b);
        assert_eq!(sha256_file(&p), b, "blob {b} verifies");
    }
    assert_eq!(mf.images().len(), 1);
    mf.assert_tmp_empty();
}

#[test]
fn concurrent_pulls_of_images_sharing_layers_in_opposite_orders_do_not_deadlock() {
    // Each pull holds the locks of the layers it staged until it commits them all:
    // without one global lock order, `pull a` (L1, L2) and `pull b` (L2, L1) can each
    // hold one and wait forever for the other (seen under load: two pulls of one image
    // hung in flock for 20 minutes). The test holds the lock of the layer that sorts
    // last (Z) itself, starts `pull a`, then `pull b`, then lets Z go, so both pulls
    // wait on locks at once; a deadlock fails the round after 60 s.
    let w = work();
    let reg = Registry::start(RegistryOpts::default());
    let l1 = Layer::new(
        Compression::Gzip,
        vec![Entry::file("one.bin", random_bytes(11, 4 << 20))],
    );
    let l2 = Layer::new(
        Compression::Gzip,
        vec![Entry::file("two.bin", random_bytes(12, 4 << 20))],
    );
    let a = push_image(&reg, w.path(), "order/a:1", &[l1.clone(), l2.clone()]);
    let b = push_image(&reg, w.path(), "order/b:1", &[l2, l1]);
    let z = a.layers.iter().map(|l| l.diff_id.clone()).max().unwrap();
    for round in 0..4 {
        let mf = Mf::new();
        let locks = mf.root.join("locks");
        std::fs::create_dir_all(&locks).unwrap();
        let z_lock = std::fs::File::create(
            locks.join(format!("layer-{}.lock", z.strip_prefix("sha256:").unwrap())),
        )
        .unwrap();
        rustix::fs::flock(&z_lock, rustix::fs::FlockOperation::LockExclusive).unwrap();
        let pull = |r: &str| {
            mf.cmd()
                .args(["pull", &format!("{}/{r}", reg.host()), "--format", "json"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let first = pull("order/a:1");
        std::thread::sleep(Duration::from_millis(1500));
        let second = pull("order/b:1");
        std::thread::sleep(Duration::from_millis(1500));
        drop(z_lock);
        let mut children = vec![first, second];
        let start = Instant::now();
        while children.iter_mut().any(|c| c.try_wait().unwrap().is_none()) {
            if start.elapsed() > Duration::from_secs(60) {
                for c in &mut children {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                panic!("round {round}: the two pulls deadlocked");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        for c in children {
            let out = c.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "round {round}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert_eq!(mf.images().len(), 2);
        assert_eq!(mf.layer_dirs().len(), 2);
        for l in a.layers.iter().chain(&b.layers) {
            assert!(mf.layer_dir(&l.diff_id).is_dir());
        }
        mf.assert_tmp_empty();
    }
}
