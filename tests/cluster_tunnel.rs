//! A box behind a firewall reached through the tunnel it dialed (issue 73 step 3;
//! docs/cluster.md "Reaching a box through its tunnel"): a box in a network namespace
//! whose nftables table drops everything on its link but its connections to serve's port
//! for boxes (and to the test's registry, for its image) joins with a token and runs a
//! service's task; then CloudWatch Logs' GetLogEvents (serve), `minifargate logs` and
//! `minifargate exec` (the operator's CLI, relayed by serve), the console's task view and
//! the task's CPUUtilization in CloudWatch all reach it, again after its connections to
//! serve were cut (it dials a new tunnel), and a box's certificate is
//! refused every relay. A real etcd with TLS, real serve and agent, the real AWS CLI;
//! every process stopped by its pid, the namespace removed on drop.

use crate::common;

use crate::cluster_exec::console;
use common::cli::Mf;
use common::etcd::Etcd;
use common::image::{Compression, busybox_layer};
use common::netbox::{Lan, NetBox};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

/// A task that writes one line to CloudWatch Logs (awslogs) and sleeps.
const TASK: &str = r#"{
  "family": "tunnel-sleeper",
  "networkMode": "awsvpc",
  "requiresCompatibilities": ["EC2"],
  "cpu": "256",
  "memory": "128",
  "containerDefinitions": [{
    "name": "main",
    "image": "public.ecr.aws/docker/library/busybox:1.36",
    "command": ["sh", "-c", "echo tunnel up; exec sleep 300"],
    "stopTimeout": 2,
    "essential": true,
    "logConfiguration": {"logDriver": "awslogs", "options": {
      "awslogs-group": "/tunnel", "awslogs-region": "us-east-1",
      "awslogs-stream-prefix": "t", "awslogs-create-group": "true"}}
  }]
}"#;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `minifargate ARGS` as the operator on the control plane's host (its bundle).
fn operator(pki: &Path, args: &[&str]) -> Output {
    let mut mf = Mf::new();
    mf.set_env("MINIFARGATE_ETCD_CERTS", pki.join("admin"));
    let out = mf.cmd().args(args).output().unwrap();
    eprintln!(
        "$ minifargate {}\n  exit: {}\n  stdout: {}\n  stderr: {}",
        args.join(" "),
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

/// A call of serve's port for boxes with `curl`, as the client bundle in `cert`, asking
/// for the tunnel's upgrade: its HTTP status and body.
pub fn upgrade_as(server: &str, ca: &Path, cert: &Path, path: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args([
            "-s",
            "--noproxy",
            "*",
            "--max-time",
            "15",
            "-w",
            "\n%{http_code}",
        ])
        .args([
            "-H",
            "Connection: upgrade",
            "-H",
            "Upgrade: minifargate-tunnel",
        ])
        .arg("--cacert")
        .arg(ca)
        .arg("--cert")
        .arg(cert.join("client.crt"))
        .arg("--key")
        .arg(cert.join("client.key"))
        .arg(format!("{server}{path}"))
        .output()
        .unwrap();
    let s = text(&out.stdout);
    let (body, status) = s.rsplit_once('\n').unwrap_or(("", &s));
    (status.trim().parse().unwrap_or(0), body.to_string())
}

/// Whether a TCP connection to `addr` opens from inside box `b` (2 s at most).
fn connects_from(b: &NetBox, addr: &str) -> bool {
    let (host, port) = addr.rsplit_once(':').unwrap();
    b.exec("timeout")
        .args([
            "2",
            "bash",
            "-c",
            &format!("exec 3<>/dev/tcp/{host}/{port}"),
        ])
        .status()
        .unwrap()
        .success()
}

#[test]
fn a_box_behind_a_firewall_is_reached_through_the_tunnel_it_dialed() {
    let etcd = Etcd::start();
    let Some(pki) = etcd.pki().map(Path::to_path_buf) else {
        eprintln!("MINIFARGATE_TEST_ETCD=plain: no CA to join with, nothing to check");
        return;
    };
    let mut lan = Lan::new();
    // serve's port for boxes on the Lan's host address: the one place the box reaches.
    let port = common::util::free_port();
    let boxes_at = format!("{}:{port}", lan.gateway);
    let server = format!("https://{boxes_at}");
    let mut args = vec!["--cluster".to_string(), etcd.endpoint()];
    args.extend(etcd.serve_args());
    args.extend([
        "--boxes-listen".into(),
        boxes_at.clone(),
        "--cluster-dir".into(),
        pki.display().to_string(),
        // The agents' --task-range below: the box's subnet claim is held to it.
        "--boxes-task-range".into(),
        "10.97.0.0/16".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let api = common::api::Api::start_env(
        busybox_layer(Compression::Gzip, "tunnel"),
        &args,
        &[("MINIFARGATE_METRICS_PERIOD", "5")],
    );
    let registry = lan.forward(api.registry().host().parse().unwrap());
    // etcd on the Lan too, to show the box cannot reach it.
    let etcd_on_lan = lan.forward_url(&etcd.endpoint());
    let etcd_addr = etcd_on_lan.split_once("://").unwrap().1.to_string();

    let mut b = NetBox::new(&mut lan);
    b.pinned = true;
    b.mf.mirror_config("public.ecr.aws", &registry.to_string(), true);
    let rules = format!(
        "table inet mftunneltest {{
  chain input {{ type filter hook input priority -10; policy accept;
    iifname \"eth0\" ct state established,related ip saddr {gw} tcp sport {{ {port}, {reg} }} accept
    iifname \"eth0\" drop
  }}
  chain output {{ type filter hook output priority -10; policy accept;
    oifname \"eth0\" ip daddr {gw} tcp dport {{ {port}, {reg} }} accept
    oifname \"eth0\" drop
  }}
}}\n",
        gw = lan.gateway,
        reg = registry.port()
    );
    let file = b.mf.dir.path().join("firewall.nft");
    std::fs::write(&file, rules).unwrap();
    let out = b.exec("nft").arg("-f").arg(&file).output().unwrap();
    assert!(out.status.success(), "nft: {}", text(&out.stderr));
    assert!(
        connects_from(&b, &boxes_at),
        "the box cannot reach serve's port"
    );
    assert!(
        !connects_from(&b, &etcd_addr),
        "the box reaches etcd through its firewall"
    );

    let token = operator(
        &pki,
        &[
            "cluster",
            "token",
            "create",
            "--dir",
            pki.to_str().unwrap(),
            "--etcd",
            &etcd.endpoint(),
        ],
    );
    assert!(token.status.success());
    let token = text(&token.stdout).trim().to_string();
    b.start_agent(
        &[
            "--server",
            &server,
            "--token",
            &token,
            "--name",
            "edge-t",
            "--lease-ttl",
            "5",
            "--task-range",
            "10.97.0.0/16",
        ]
        .map(String::from),
    );
    api.wait_for(30, "the box listed", || {
        (api.instances_listed(None).len() == 1).then_some(())
    });
    let instance = b.id();
    // It registered no address it cannot be reached at; serve holds its tunnel, in a key
    // the box cannot read (it has no etcd user: its certificate alone reads nothing).
    let reg = etcd.etcdctl(&[
        "get",
        &format!("/minifargate/v1/clusters/default/instances/{instance}"),
        "--print-value-only",
    ]);
    let reg: Value = serde_json::from_slice(&reg.stdout).unwrap();
    assert_eq!(reg["endpoint"], "tunnel", "{reg:#}");
    let key = format!("/minifargate/v1/tunnels/default/{instance}");
    let held: Value = api.wait_for(20, "the box's tunnel held", || {
        let out = etcd.etcdctl(&["get", &key, "--print-value-only"]);
        serde_json::from_slice(&out.stdout).ok()
    });
    assert_eq!(held["box"], "edge-t", "{held:#}");
    assert_eq!(held["server"], server.as_str(), "{held:#}");
    let bundle = b.mf.root.join("agent/bundle");
    let as_box = etcd
        .etcdctl_with_bundle(&bundle, "5s")
        .args(["get", &key])
        .output()
        .unwrap();
    assert!(
        text(&as_box.stderr).contains("permission denied"),
        "the box reads the tunnels' keys: {as_box:?}"
    );

    // A service's task on it.
    let def = api.file("tunnel.json", TASK);
    api.aws_json(&["register-task-definition", "--cli-input-json", &def]);
    api.aws_json(&["create-cluster", "--cluster-name", "default"]);
    api.aws_json(&[
        "create-service",
        "--service-name",
        "edge",
        "--task-definition",
        "tunnel-sleeper",
        "--desired-count",
        "1",
        "--launch-type",
        "EC2",
    ]);
    let task = api.wait_for(90, "the service's task RUNNING on the box", || {
        let t = common::cluster::service_tasks(&api, "edge");
        let arn = t.first()?.0.clone();
        (common::cluster::describe_task(&api, &arn)["lastStatus"] == "RUNNING").then_some(arn)
    });
    let id = task.rsplit('/').next().unwrap().to_string();

    // CloudWatch Logs through serve: the event from the box's store.
    let stream = format!("t/main/{id}");
    api.wait_for(30, "the task's line in GetLogEvents", || {
        let v = api.aws_json_in(
            "logs",
            &[
                "get-log-events",
                "--log-group-name",
                "/tunnel",
                "--log-stream-name",
                &stream,
            ],
        );
        (v["events"][0]["message"] == "tunnel up").then_some(())
    });
    // The console's task view through serve.
    let (code, v) = console(&api, &format!("/console/api/tasks/{id}/timeline"));
    assert_eq!(code, 200, "{v:#}");
    assert_eq!(v["taskId"], id.as_str());
    // The operator's CLI, relayed by the serve that holds the tunnel.
    let ep = etcd.endpoint();
    let out = operator(&pki, &["logs", "--etcd", &ep, &id]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "tunnel up\n");
    let out = operator(
        &pki,
        &[
            "exec",
            "--etcd",
            &ep,
            &id,
            "--",
            "sh",
            "-c",
            "echo in $0; exit 3",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "in sh\n");

    // The tunnel cut: every connection of the box to serve's port aborted in the box's
    // own kernel (`ss -K`, as a NAT that forgets a flow or a dropped link does), the
    // tunnel and the store calls alike. The box dials again; the serve it reaches holds
    // its tunnel anew, and logs and exec reach the task again.
    let out = b
        .exec("ss")
        .args([
            "-K",
            "dst",
            &lan.gateway.to_string(),
            "dport",
            "=",
            &port.to_string(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "ss -K: {}", text(&out.stderr));
    let again: Value = api.wait_for(30, "the box's tunnel held again, anew", || {
        let out = etcd.etcdctl(&["get", &key, "--print-value-only"]);
        let v: Value = serde_json::from_slice(&out.stdout).ok()?;
        (v["sinceMs"].as_i64()? > held["sinceMs"].as_i64()?).then_some(v)
    });
    assert_eq!(again["box"], "edge-t", "{again:#}");
    api.wait_for(30, "exec through the tunnel dialed again", || {
        let out = operator(&pki, &["exec", "--etcd", &ep, &id, "--", "echo", "again"]);
        (out.status.success() && text(&out.stdout) == "again\n").then_some(())
    });
    let out = operator(&pki, &["logs", "--etcd", &ep, &id]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "tunnel up\n");

    // Its CPU in CloudWatch, sampled through the tunnel.
    let start = chrono::Utc::now() - chrono::Duration::minutes(1);
    api.wait_for(60, "a CPUUtilization datapoint of the box's task", || {
        let v = api.aws_json_in(
            "cloudwatch",
            &[
                "get-metric-statistics",
                "--namespace",
                "AWS/ECS",
                "--metric-name",
                "CPUUtilization",
                "--dimensions",
                "Name=ClusterName,Value=default",
                "Name=ServiceName,Value=edge",
                "--start-time",
                &start.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                "--end-time",
                &(chrono::Utc::now() + chrono::Duration::minutes(1))
                    .format("%Y-%m-%dT%H:%M:%SZ")
                    .to_string(),
                "--period",
                "5",
                "--statistics",
                "SampleCount",
            ],
        );
        (!v["Datapoints"].as_array()?.is_empty()).then_some(())
    });

    // Refusals. A box's certificate asks serve to relay to a box (its own, even): 403.
    let ca = pki.join("ca.crt");
    let (status, body) = upgrade_as(
        &server,
        &ca,
        &bundle,
        &format!("/v1/boxes/default/{instance}/dial"),
    );
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("a box's certificate (urn:minifargate:box:edge-t)")
            && body.contains("reaches no other box"),
        "{body}"
    );
    // A box opens a tunnel only for an instance bound to it.
    let other = "0123456789abcdef0123456789abcdef";
    let (status, body) = upgrade_as(
        &server,
        &ca,
        &bundle,
        &format!("/v1/tunnel?cluster=default&instance={other}"),
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("holds no container instance"), "{body}");
    // A box with no tunnel, asked by the operator: said so.
    let (status, body) = upgrade_as(
        &server,
        &ca,
        &pki.join("admin"),
        &format!("/v1/boxes/default/{other}/dial"),
    );
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("has no tunnel"), "{body}");

    // The box's agent stopped: its tunnel's key goes with its tunnel.
    b.signal("-TERM");
    common::util::wait_until("the tunnel's key gone", Duration::from_secs(20), || {
        let out = etcd.etcdctl(&["get", "--prefix", "/minifargate/v1/tunnels/", "--keys-only"]);
        text(&out.stdout).trim().is_empty().then_some(())
    });
}
