//! Root integration test of the task metadata and credentials endpoints of a
//! `networkMode: host` task: served by its supervisor on the host's 127.0.0.1 under a
//! random per-task token (the task has no namespace of its own for 169.254.170.2), read
//! from inside the container with busybox `wget` and from the host with boto3's container
//! credential provider (`AWS_CONTAINER_CREDENTIALS_FULL_URI`), backed by moto's STS.

use crate::common;

use common::busybox_task_env;
use common::image::{Compression, Layer, busybox_all_applets};
use common::leaks::assert_no_leaks;
use common::services::{Server, tool};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

const BUSYBOX: &str = "public.ecr.aws/docker/library/busybox:1.36";
const ROLE: &str = "arn:aws:iam::123456789012:role/host-app";

/// A raw `GET path` to 127.0.0.1:`port`: the status and the body.
fn get(port: u16, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {out:?}"));
    (
        status,
        out.split("\r\n\r\n").nth(1).unwrap_or("").to_string(),
    )
}

/// `http://127.0.0.1:<port>/<rest>` → (port, "/<rest>").
fn split_loopback(url: &str) -> (u16, String) {
    let rest = url
        .strip_prefix("http://127.0.0.1:")
        .unwrap_or_else(|| panic!("not a loopback URL: {url}"));
    let (port, path) = rest.split_once('/').unwrap();
    (port.parse().unwrap(), format!("/{path}"))
}

#[test]
fn a_host_mode_task_reads_its_metadata_and_role_credentials() {
    let (mut mf, _reg) = busybox_task_env(Layer::new(
        Compression::Gzip,
        busybox_all_applets("run-task-host-endpoint"),
    ));
    let work = tempfile::tempdir().unwrap();
    let moto = Server::moto(work.path());
    mf.set_env("AWS_ENDPOINT_URL", moto.url());
    mf.set_env("AWS_ACCESS_KEY_ID", "testing");
    mf.set_env("AWS_SECRET_ACCESS_KEY", "testing");
    mf.set_env("AWS_REGION", "us-east-1");
    let td = mf.taskdef(
        "hostep",
        &format!(
            r#"{{"family":"hostep","networkMode":"host","requiresCompatibilities":["EC2"],
  "taskRoleArn":"{ROLE}",
  "containerDefinitions":[{{"name":"app","image":"{BUSYBOX}","memory":128,"stopTimeout":2,
    "command":["sh","-c","trap 'exit 0' TERM; while true; do sleep 1; done"]}}]}}"#
        ),
    );
    let v = mf.json(&["run-task", "--task-definition", &td, "--detach"]);
    let arn = v["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    let id = arn.rsplit('/').next().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let t = mf.json(&["describe-tasks", "--tasks", &id])["tasks"][0].clone();
        if t["lastStatus"] == "RUNNING" {
            break;
        }
        assert!(
            t["lastStatus"] != "STOPPED" && Instant::now() < deadline,
            "task did not start: {t:#}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let sh = |script: &str| {
        let out = mf.run(&["exec", &id, "--", "sh", "-c", script]);
        assert!(out.status.success(), "{script} failed in task {id}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };

    // The URIs point at the host's loopback, and there is no relative credentials URI
    // (SDKs would resolve it against 169.254.170.2, which is nothing in host mode).
    let meta = sh("echo -n $ECS_CONTAINER_METADATA_URI_V4");
    let full = sh("echo -n $AWS_CONTAINER_CREDENTIALS_FULL_URI");
    assert!(meta.starts_with("http://127.0.0.1:"), "{meta}");
    assert!(full.starts_with("http://127.0.0.1:"), "{full}");
    assert_eq!(
        sh("echo -n ${AWS_CONTAINER_CREDENTIALS_RELATIVE_URI-unset}"),
        "unset"
    );

    // The v4 task metadata, from inside the container.
    let task: Value = serde_json::from_str(&sh("wget -qO- $ECS_CONTAINER_METADATA_URI_V4/task"))
        .expect("task metadata is JSON");
    assert_eq!(task["TaskARN"], arn.as_str());
    assert_eq!(task["Family"], "hostep");
    assert_eq!(task["Containers"][0]["Name"], "app");
    let own: Value = serde_json::from_str(&sh("wget -qO- $ECS_CONTAINER_METADATA_URI_V4")).unwrap();
    assert_eq!(own["Name"], "app");

    // The role's credentials, from inside the container...
    let c: Value =
        serde_json::from_str(&sh("wget -qO- $AWS_CONTAINER_CREDENTIALS_FULL_URI")).unwrap();
    assert_eq!(c["RoleArn"], ROLE);
    let key = c["AccessKeyId"].as_str().unwrap().to_string();
    assert!(key.starts_with("ASIA"), "{c:#}");
    assert!(!c["Token"].as_str().unwrap().is_empty());

    // ...and through an SDK's container provider: boto3 takes the loopback full URI.
    let mut py = Command::new(tool("python3"));
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") {
            py.env_remove(k);
        }
    }
    let out = py
        .env("AWS_CONTAINER_CREDENTIALS_FULL_URI", &full)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .args([
            "-c",
            "import boto3; c = boto3.Session().get_credentials(); print(c.method, c.get_frozen_credentials().access_key)",
        ])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(said.trim(), format!("container-role {key}"));

    // Without the task's token the loopback port answers nothing, whatever the path.
    let (port, meta_path) = split_loopback(&meta);
    let (cport, creds_path) = split_loopback(&full);
    assert_eq!(port, cport);
    let token = meta_path.split('/').nth(1).unwrap().to_string();
    assert!(token.len() >= 32, "{meta_path}");
    let untokened = meta_path.trim_start_matches(&format!("/{token}"));
    for path in [
        format!("{untokened}/task"),
        "/v2/metadata".to_string(),
        creds_path
            .trim_start_matches(&format!("/{token}"))
            .to_string(),
        format!("/{}{untokened}/task", "0".repeat(token.len())),
    ] {
        let (status, body) = get(port, &path);
        assert_eq!(status, 404, "{path}: {body}");
        assert!(!body.contains(&arn), "{path}: {body}");
    }
    let (status, body) = get(port, &format!("{meta_path}/task"));
    assert_eq!(status, 200, "{body}");

    assert!(mf.run(&["stop-task", "--task", &id]).status.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    while mf.json(&["describe-tasks", "--tasks", &id])["tasks"][0]["lastStatus"] != "STOPPED" {
        assert!(Instant::now() < deadline, "task {id} did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The endpoint went with the task.
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    assert_no_leaks(&mf, &[&id], &[]);
}
