//! ECR end to end: moto_server answers GetAuthorizationToken, a TLS registry with
//! htpasswd user `AWS` serves `123456789012.dkr.ecr.us-east-1.amazonaws.com` on
//! 127.0.0.1:443, trusted through SSL_CERT_FILE; the name resolves through a private
//! /etc/hosts bind-mounted inside `unshare --mount`, so the host's file is untouched.

use crate::common;

use common::cli::{Mf, assert_layers};
use common::ecr::{in_private_hosts, lock_port_443};
use common::image::{Compression, Entry, Layer, Layout, busybox_layer};
use common::registry::{Registry, RegistryOpts};
use common::services::Server;
use common::tls::TestCa;
use std::process::Command;

use common::ecr::{ECR_HOST, ECR_PASSWORD};
const ECR_FIPS_HOST: &str = "123456789012.dkr.ecr-fips.us-east-1.amazonaws.com";

/// Number of ECR API calls moto answered (werkzeug logs one line per request).
fn moto_calls(moto: &Server) -> usize {
    std::fs::read_to_string(&moto.log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("\"POST / HTTP/1.1\""))
        .count()
}

/// GetAuthorizationToken straight from moto (curl signs with SigV4), decoded.
fn moto_token(moto: &Server) -> String {
    let out = common::util::run_ok(
        common::util::no_proxy(&mut Command::new("curl"))
            .args([
                "-sf",
                "--aws-sigv4",
                "aws:amz:us-east-1:ecr",
                "-u",
                "AKIATEST:secret",
            ])
            .args(["-H", "Content-Type: application/x-amz-json-1.1"])
            .args([
                "-H",
                "X-Amz-Target: AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken",
            ])
            .args(["-d", "{}", &format!("{}/", moto.url())]),
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let data = &v["authorizationData"][0];
    // expiresAt is 2015-01-01: already expired when it arrives.
    assert!(data["expiresAt"].as_f64().unwrap() < 1_500_000_000.0, "{v}");
    let tok = data["authorizationToken"].as_str().unwrap();
    let out = common::util::run_ok(
        Command::new("sh")
            .args(["-c", "printf %s \"$0\" | base64 -d"])
            .arg(tok),
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn ecr_pull_with_moto_token_over_tls_on_443() {
    let _lock = lock_port_443();
    let w = tempfile::Builder::new()
        .prefix("mf-ecr-")
        .tempdir()
        .unwrap();
    let ca = TestCa::new(w.path());
    let srv = ca.issue("ecr", &[ECR_HOST, ECR_FIPS_HOST], &["127.0.0.1"], true);
    let moto = Server::moto(w.path());
    let reg = Registry::start(RegistryOpts {
        htpasswd: Some(("AWS".into(), ECR_PASSWORD.into())),
        tls: Some((srv.cert.clone(), srv.key.clone())),
        port: Some(443),
        ..Default::default()
    });

    let layout_dir = w.path().join("layout");
    let mut layout = Layout::new(&layout_dir);
    let img = layout.add_image(
        "linux/amd64",
        &[
            busybox_layer(Compression::Gzip, "ecr"),
            Layer::new(
                Compression::Gzip,
                vec![
                    Entry::dir("app"),
                    Entry::file("app/index.html", "<h1>web 1.2</h1>\n"),
                ],
            ),
        ],
    );
    layout.tag_image("1.2", &img);
    let pushed = reg.push(&layout_dir, "1.2", "web:1.2");
    assert_eq!(pushed, img.manifest_digest);

    let hosts = w.path().join("hosts");
    std::fs::write(
        &hosts,
        format!("127.0.0.1 localhost\n::1 localhost\n127.0.0.1 {ECR_HOST} {ECR_FIPS_HOST}\n"),
    )
    .unwrap();

    // The fixture itself, checked with curl: moto hands out the password the registry
    // wants, and the registry answers at the ECR name with the test CA.
    let token = moto_token(&moto);
    assert_eq!(token, format!("AWS:{ECR_PASSWORD}"));
    let probe = common::util::no_proxy(&mut Command::new("unshare"))
        .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(r#"mount --bind "$0" /etc/hosts && exec "$@""#)
        .arg(&hosts)
        .args([
            "curl",
            "-sf",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--cacert",
        ])
        .arg(&ca.cert)
        .args(["-u", &token, &format!("https://{ECR_HOST}/v2/")])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&probe.stdout),
        "200",
        "registry fixture"
    );
    let calls_before = moto_calls(&moto);

    let mut mf = Mf::new();
    mf.set_env("AWS_ACCESS_KEY_ID", "AKIAMINIFARGATETEST");
    mf.set_env("AWS_SECRET_ACCESS_KEY", "minifargate-test-secret");
    mf.set_env("AWS_REGION", "us-east-1");
    mf.set_env("AWS_ENDPOINT_URL_ECR", moto.url());
    mf.set_env("SSL_CERT_FILE", &ca.cert);

    let reference = format!("{ECR_HOST}/web:1.2");
    let out = in_private_hosts(&mf, &hosts, &["pull", &reference, "--format", "json"]);
    assert!(out.status.success(), "ECR pull failed");
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["reference"], reference.as_str());
    assert_eq!(got["digest"], img.manifest_digest.as_str());
    assert_layers(&mf, &got, &img);
    assert_eq!(
        std::fs::read_to_string(mf.layer_dir(&img.layers[1].diff_id).join("app/index.html"))
            .unwrap(),
        "<h1>web 1.2</h1>\n"
    );
    // The password only moto knows got the client in; the token moto returns has
    // expired in 2015, so it is used once and not refreshed in a loop.
    let calls = moto_calls(&moto) - calls_before;
    assert!(
        (1..=3).contains(&calls),
        "GetAuthorizationToken calls: {calls}"
    );
    mf.assert_tmp_empty();

    // The FIPS endpoint's name is an ECR registry too.
    let fips = format!("{ECR_FIPS_HOST}/web:1.2");
    let out = in_private_hosts(&mf, &hosts, &["pull", &fips, "--format", "json"]);
    assert!(out.status.success(), "ECR FIPS pull failed");
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["digest"], img.manifest_digest.as_str());

    // Without AWS credentials the pull fails and says so, naming the registry.
    let mut anon = Mf::new();
    anon.set_env("AWS_REGION", "us-east-1");
    anon.set_env("AWS_ENDPOINT_URL_ECR", moto.url());
    anon.set_env("SSL_CERT_FILE", &ca.cert);
    let out = in_private_hosts(&anon, &hosts, &["pull", &reference]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("minifargate: ") && l.contains(ECR_HOST)),
        "{stderr}"
    );
    anon.assert_tmp_empty();

    // The registry's certificate is trusted only through SSL_CERT_FILE.
    let mut untrusted = Mf::new();
    untrusted.set_env("AWS_ACCESS_KEY_ID", "AKIAMINIFARGATETEST");
    untrusted.set_env("AWS_SECRET_ACCESS_KEY", "minifargate-test-secret");
    untrusted.set_env("AWS_REGION", "us-east-1");
    untrusted.set_env("AWS_ENDPOINT_URL_ECR", moto.url());
    let out = in_private_hosts(&untrusted, &hosts, &["pull", &reference]);
    assert_eq!(out.status.code(), Some(1), "an unknown CA must be refused");
    untrusted.assert_tmp_empty();
}
