//! Faults a healthy registry never produces on demand — 503/429 with Retry-After, a
//! connection dropped mid-blob, a redirect to another host like ECR's S3 URLs — made
//! by a small proxy (tests/fixtures/flaky_proxy.py) in front of the real registry; and
//! TCP-level faults — latency, resets, truncated bodies, 5xx bursts, stalls — made by
//! the in-process fault proxy (tests/common/faultproxy.rs). Each pull either succeeds,
//! resuming with Range, or fails with a clear message in bounded time; a partial blob is
//! never visible as a complete layer.

use crate::common;

use common::cli::{Mf, assert_layers};
use common::faultproxy::{Cut, Fault, FaultProxy};
use common::image::{BuiltImage, Compression, Entry, Layer, busybox_layer};
use common::push_image;
use common::registry::{Registry, RegistryOpts};
use common::services::Server;
use common::util::{random_bytes, sha256_file, sha256_hex};
use serde_json::Value;
use std::time::{Duration, Instant};

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

// ---- TCP-level faults (in-process fault proxy) ----

struct Faulty {
    _w: tempfile::TempDir,
    _reg: Registry,
    img: BuiltImage,
    sha: String,
    proxy: FaultProxy,
    mf: Mf,
    reference: String,
}

/// The busybox + 6 MiB image behind a fault proxy with `faults(big layer digest)`;
/// `read_timeout` (s) goes to MINIFARGATE_REGISTRY_READ_TIMEOUT.
fn faulty(
    repo: &str,
    faults: impl FnOnce(&str) -> Vec<Fault>,
    read_timeout: Option<&str>,
) -> Faulty {
    let w = work();
    let reg = Registry::start(RegistryOpts::default());
    let (img, sha) = image(&reg, w.path(), repo);
    let proxy = FaultProxy::start(&reg.host(), faults(&img.layers[1].digest));
    let mut mf = Mf::new();
    if let Some(t) = read_timeout {
        mf.set_env("MINIFARGATE_REGISTRY_READ_TIMEOUT", t);
    }
    let reference = format!("{}/{repo}:1", proxy.host());
    Faulty {
        _w: w,
        _reg: reg,
        img,
        sha,
        proxy,
        mf,
        reference,
    }
}

impl Faulty {
    fn big(&self) -> &str {
        &self.img.layers[1].digest
    }

    /// The pull succeeded and the cache holds exactly the image.
    fn assert_pulled(&self, got: &Value) {
        assert_eq!(got["digest"], self.img.manifest_digest.as_str());
        assert_layers(&self.mf, got, &self.img);
        assert_eq!(
            sha256_file(
                &self
                    .mf
                    .layer_dir(&self.img.layers[1].diff_id)
                    .join("big.bin")
            ),
            self.sha
        );
        self.mf.assert_tmp_empty();
    }

    /// Requests for the big blob: the first had the fault, a later one resumed with
    /// `Range` from past 0.
    fn assert_resumed(&self, fault: &str) {
        let reqs = self.proxy.seen_for(&format!("/blobs/{}", self.big()));
        assert!(reqs[0].action.starts_with(fault), "{reqs:?}");
        let from = reqs
            .iter()
            .find_map(|r| r.range.as_deref())
            .unwrap_or_else(|| panic!("no Range request after the fault: {reqs:?}"));
        let from: u64 = from
            .trim_start_matches("bytes=")
            .trim_end_matches('-')
            .parse()
            .unwrap();
        assert!(from > 0, "resumes where it stopped: {reqs:?}");
    }

    /// A failed pull left nothing that looks complete, and the same root pulls the
    /// image once the faults are gone.
    fn assert_failed_clean_then_heals(&self) {
        self.mf.assert_tmp_empty();
        assert!(
            !self.mf.layer_dir(&self.img.layers[1].diff_id).exists(),
            "the cut layer must not be in the cache"
        );
        assert!(self.mf.images().is_empty(), "no image record");
        assert!(
            !self.mf.blob_path(&self.img.manifest_digest).exists(),
            "no manifest stored for a failed pull"
        );
        self.proxy.heal();
        let got = self.mf.pull_json(&self.reference, &[]);
        self.assert_pulled(&got);
    }
}

fn cut(path: &str, how: Cut, times: u32) -> Fault {
    Fault::Cut {
        path: path.into(),
        after: 1 << 20,
        times,
        how,
    }
}

#[test]
fn added_latency_still_pulls() {
    let f = faulty(
        "latency/app",
        |_| vec![Fault::Latency(Duration::from_millis(150))],
        None,
    );
    let t = Instant::now();
    let got = f.mf.pull_json(&f.reference, &[]);
    eprintln!("pull with 150 ms added per request: {:?}", t.elapsed());
    f.assert_pulled(&got);
    assert!(f.proxy.seen().len() >= 4, "went through the proxy");
}

#[test]
fn connection_reset_mid_blob_resumes_with_range() {
    let f = faulty(
        "reset/app",
        |big| vec![cut(&format!("/blobs/{big}"), Cut::Reset, 1)],
        None,
    );
    let got = f.mf.pull_json(&f.reference, &[]);
    f.assert_pulled(&got);
    f.assert_resumed("cut Reset");
}

#[test]
fn truncated_body_with_correct_content_length_resumes_with_range() {
    // Every blob (config, both layers) is cut once, twice for the big one.
    let f = faulty(
        "truncated/app",
        |_| vec![cut("/blobs/", Cut::Close, 4)],
        None,
    );
    let got = f.mf.pull_json(&f.reference, &[]);
    f.assert_pulled(&got);
    let cuts = f
        .proxy
        .seen()
        .iter()
        .filter(|s| s.action.starts_with("cut"))
        .count();
    assert!(cuts >= 3, "{:?}", f.proxy.seen());
}

#[test]
fn bursts_of_500_and_503_are_retried() {
    let f = faulty(
        "burst/app",
        |_| {
            vec![
                Fault::Status {
                    path: "/manifests/".into(),
                    status: 503,
                    times: 2,
                },
                Fault::Status {
                    path: "/blobs/".into(),
                    status: 500,
                    times: 2,
                },
                Fault::Status {
                    path: "/blobs/".into(),
                    status: 503,
                    times: 1,
                },
            ]
        },
        None,
    );
    let got = f.mf.pull_json(&f.reference, &[]);
    f.assert_pulled(&got);
    let injected = f
        .proxy
        .seen()
        .iter()
        .filter(|s| s.action.starts_with("status"))
        .count();
    assert_eq!(injected, 5, "{:?}", f.proxy.seen());
}

#[test]
fn a_registry_that_keeps_failing_gives_a_clear_error_in_bounded_time() {
    let f = faulty(
        "down/app",
        |_| {
            vec![Fault::Status {
                path: "/blobs/".into(),
                status: 503,
                times: u32::MAX,
            }]
        },
        None,
    );
    let t = Instant::now();
    let msg = f.mf.fail(&["pull", &f.reference]);
    let took = t.elapsed();
    eprintln!("gave up after {took:?}");
    assert!(took < Duration::from_secs(60), "bounded: {took:?}");
    assert!(msg.contains("down/app"), "{msg}");
    assert!(msg.contains("503"), "{msg}");
    f.assert_failed_clean_then_heals();
}

#[test]
fn a_stalled_blob_times_out_and_resumes_with_range() {
    let f = faulty(
        "stall/app",
        |big| vec![cut(&format!("/blobs/{big}"), Cut::Stall, 1)],
        Some("1"),
    );
    let t = Instant::now();
    let got = f.mf.pull_json(&f.reference, &[]);
    eprintln!("pull with one 1 s stall: {:?}", t.elapsed());
    f.assert_pulled(&got);
    f.assert_resumed("cut Stall");
}

#[test]
fn a_blob_that_always_stalls_fails_clearly_and_nothing_partial_is_visible() {
    let f = faulty(
        "stall-always/app",
        |big| vec![cut(&format!("/blobs/{big}"), Cut::Stall, u32::MAX)],
        Some("1"),
    );
    let t = Instant::now();
    let child =
        f.mf.cmd()
            .args(["pull", &f.reference])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
    // While it is stalled, the layer is work in progress under tmp/, never in layers/.
    common::util::wait_until("the first stall", Duration::from_secs(30), || {
        (!f.proxy.seen_for(&format!("/blobs/{}", f.big())).is_empty()).then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(!f.mf.layer_dir(&f.img.layers[1].diff_id).exists());
    assert!(!common::util::list_dir(&f.mf.root.join("tmp")).is_empty());
    let out = child.wait_with_output().unwrap();
    let took = t.elapsed();
    eprintln!("gave up after {took:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(took < Duration::from_secs(60), "bounded: {took:?}");
    let msg = stderr
        .lines()
        .find(|l| l.starts_with("minifargate: "))
        .unwrap_or_else(|| panic!("{stderr}"));
    for want in ["stall-always/app", f.big(), "after 5 attempts", "timed out"] {
        assert!(msg.contains(want), "says {want:?}: {msg}");
    }
    let resumed = f.proxy.seen_for(&format!("/blobs/{}", f.big()));
    assert!(
        resumed.iter().skip(1).all(|r| r.range.is_some()),
        "every retry resumes with Range: {resumed:?}"
    );
    f.assert_failed_clean_then_heals();
}
