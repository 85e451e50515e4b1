//! Faults a healthy registry never produces on demand — 503/429 with Retry-After, a
//! connection dropped mid-blob, a redirect to another host like ECR's S3 URLs — made
//! by a small proxy (tests/fixtures/flaky_proxy.py) in front of the real registry.

mod common;

use common::cli::{Mf, assert_layers};
use common::image::{BuiltImage, Compression, Entry, Layer, busybox_layer};
use common::push_image;
use common::registry::{Registry, RegistryOpts};
use common::services::Server;
use common::util::{random_bytes, sha256_file, sha256_hex};
use serde_json::Value;

fn work() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("mf-faults-")
        .tempdir()
        .unwrap()
}

/// busybox plus a 6 MiB random file, pushed as `repo:1`.
fn image(reg: &Registry, w: &std::path::Path, repo: &str) -> (BuiltImage, String) {
    let big = random_bytes(21, 6 << 20);
    let sha = sha256_hex(&big);
    let img = push_image(
        reg,
        w,
        &format!("{repo}:1"),
        &[
            busybox_layer(Compression::Gzip, repo),
            Layer::new(Compression::Gzip, vec![Entry::file("big.bin", big)]),
        ],
    );
    (img, sha)
}

fn blob_requests<'a>(reqs: &'a [Value], digest: &str) -> Vec<&'a Value> {
    reqs.iter()
        .filter(|r| {
            r["path"]
                .as_str()
                .unwrap()
                .ends_with(&format!("/blobs/{digest}"))
        })
        .collect()
}

fn retry_after(status: &str) {
    let w = work();
    let reg = Registry::start(RegistryOpts::default());
    let (img, sha) = image(&reg, w.path(), &format!("retry{status}/app"));
    let proxy = Server::flaky_proxy(w.path(), &reg.host(), &["--fail-status", status]);
    let mf = Mf::new();
    let reference = format!("127.0.0.1:{}/retry{status}/app:1", proxy.port);
    let got = mf.pull_json(&reference, &[]);
    assert_eq!(got["digest"], img.manifest_digest.as_str());
    assert_layers(&mf, &got, &img);
    assert_eq!(
        sha256_file(&mf.layer_dir(&img.layers[1].diff_id).join("big.bin")),
        sha
    );
    let reqs = proxy.proxy_requests();
    for l in &img.layers {
        let r = blob_requests(&reqs, &l.digest);
        assert!(
            r.len() >= 2,
            "{status} then a retry for {}: {r:?}",
            l.digest
        );
        assert_eq!(r[0]["status"].to_string(), status);
        assert!(r.iter().any(|x| x["status"] == 200), "{r:?}");
    }
    mf.assert_tmp_empty();
}

#[test]
fn retries_after_503_with_retry_after() {
    retry_after("503");
}

#[test]
fn retries_after_429_with_retry_after() {
    retry_after("429");
}

#[test]
fn resumes_a_dropped_layer_blob_with_range() {
    let w = work();
    let reg = Registry::start(RegistryOpts::default());
    let (img, sha) = image(&reg, w.path(), "resume/app");
    // Only the 6 MiB layer is cut.
    let proxy = Server::flaky_proxy(
        w.path(),
        &reg.host(),
        &["--drop-mid", "--drop-min-size", "4000000"],
    );
    let mf = Mf::new();
    let got = mf.pull_json(&format!("127.0.0.1:{}/resume/app:1", proxy.port), &[]);
    assert_eq!(got["digest"], img.manifest_digest.as_str());
    assert_eq!(
        sha256_file(&mf.layer_dir(&img.layers[1].diff_id).join("big.bin")),
        sha
    );
    let reqs = proxy.proxy_requests();
    let big = blob_requests(&reqs, &img.layers[1].digest);
    assert!(big[0]["dropped"] == true, "the first GET was cut: {big:?}");
    let resumed = big
        .iter()
        .find(|r| r["range"].is_string())
        .unwrap_or_else(|| panic!("no Range request after the dropped connection: {big:?}"));
    let range = resumed["range"].as_str().unwrap();
    let from: u64 = range
        .trim_start_matches("bytes=")
        .split('-')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(from > 0, "resumes where it stopped, not from 0: {range}");
    assert_eq!(resumed["status"], 206, "{resumed}");
    mf.assert_tmp_empty();
}

#[test]
fn blob_redirect_to_another_host_drops_authorization() {
    let w = work();
    let reg = Registry::start(RegistryOpts {
        htpasswd: Some(("carol".into(), "redirect-pw".into())),
        ..Default::default()
    });
    let (img, sha) = image(&reg, w.path(), "redir/app");
    let proxy = Server::flaky_proxy(
        w.path(),
        &reg.host(),
        &["--redirect", "--upstream-auth", "carol:redirect-pw"],
    );
    let proxy_host = format!("127.0.0.1:{}", proxy.port);
    let mf = Mf::new();
    mf.docker_login(&proxy_host, "carol", "redirect-pw");
    let got = mf.pull_json(&format!("{proxy_host}/redir/app:1"), &[]);
    assert_eq!(got["digest"], img.manifest_digest.as_str());
    assert_eq!(
        sha256_file(&mf.layer_dir(&img.layers[1].diff_id).join("big.bin")),
        sha
    );
    let reqs = proxy.proxy_requests();
    let redirected: Vec<_> = reqs.iter().filter(|r| r["status"] == 307).collect();
    let s3: Vec<_> = reqs.iter().filter(|r| r["status"] == "s3").collect();
    assert!(!redirected.is_empty() && !s3.is_empty(), "{reqs:?}");
    assert!(
        redirected.iter().all(|r| r["auth"] == true),
        "credentials go to the registry: {redirected:?}"
    );
    assert!(
        s3.iter()
            .all(|r| r["auth"] == false && r["server"] == "127.0.0.2"),
        "no Authorization header on the other host: {s3:?}"
    );
    mf.assert_tmp_empty();
}

#[test]
fn every_blob_cut_once_still_pulls() {
    // The config and the small busybox layer are cut mid-body too: every download,
    // small or large, survives one dropped connection.
    let w = work();
    let reg = Registry::start(RegistryOpts::default());
    let (img, sha) = image(&reg, w.path(), "cutall/app");
    let proxy = Server::flaky_proxy(w.path(), &reg.host(), &["--drop-mid"]);
    eprintln!(
        "config {}, layers {:?}",
        img.config_digest,
        img.layers.iter().map(|l| &l.digest).collect::<Vec<_>>()
    );
    let mf = Mf::new();
    let got = mf.pull_json(&format!("127.0.0.1:{}/cutall/app:1", proxy.port), &[]);
    assert_eq!(got["digest"], img.manifest_digest.as_str());
    assert_eq!(got["config"], img.config_digest.as_str());
    assert_eq!(
        sha256_file(&mf.layer_dir(&img.layers[1].diff_id).join("big.bin")),
        sha
    );
    let reqs = proxy.proxy_requests();
    let cut = blob_requests(&reqs, &img.config_digest);
    assert_eq!(cut[0]["dropped"], true, "the config GET was cut: {cut:?}");
    mf.assert_tmp_empty();
}
