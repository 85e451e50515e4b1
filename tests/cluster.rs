//! Cluster mode (issue 38; docs/cluster.md): boxes registered as container instances in a
//! real etcd by `minifargate agent --cluster`, tasks placed, run, reported and replaced on
//! them, and the ECS API of `minifargate serve --cluster` answering for them, driven with
//! the real AWS CLI. Each "box" is an agent with a state root of its own on the host's
//! network (tests/cluster_network.rs has boxes in network namespaces; the harness is
//! tests/common/cluster.rs). Every process is stopped by its pid and every directory
//! removed, also when a test fails.

use crate::common;

use common::api::Api;
use common::cluster::{
    Agent, SLEEPER, connected, describe, describe_task, ecs_call, leader_pid, list, register,
    serve, serve_with, service_placement, two_boxes, until_connected,
};
use common::etcd::{Etcd, ServerTls};
use common::image::{Compression, busybox_layer};
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};

fn attribute<'a>(ci: &'a Value, name: &str) -> Option<&'a Value> {
    ci["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == name)
}

fn resource(ci: &Value, name: &str) -> Value {
    ci["registeredResources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no {name} in {ci:#}"))
}

#[test]
fn two_boxes_register_and_the_api_lists_filters_and_tracks_them() {
    let etcd = Etcd::start();
    let api = serve(&etcd);
    let mut blue = Agent::start(&etcd, 3, &["color=blue", "gpu"]);
    let mut red = Agent::start(&etcd, 10, &["color=red"]);
    let (a, b) = (blue.arn(), red.arn());
    assert_ne!(a, b);
    let mut both = vec![a.clone(), b.clone()];
    both.sort();
    common::util::wait_until("both boxes listed", Duration::from_secs(20), || {
        (list(&api, &[]) == both).then_some(())
    });

    // What each box registered: its resources, ECS's built-in attributes, the custom ones.
    let ci = describe(&api, &a);
    assert_eq!(ci["agentConnected"], true);
    assert_eq!(ci["status"], "ACTIVE");
    assert_eq!(ci["containerInstanceArn"], a.as_str());
    let cores = std::thread::available_parallelism().unwrap().get() as i64;
    assert_eq!(resource(&ci, "CPU")["integerValue"], cores * 1024);
    let mem_mib = std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .map(|v| {
            v.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<i64>()
                .unwrap()
                / 1024
        })
        .unwrap();
    assert_eq!(resource(&ci, "MEMORY")["integerValue"], mem_mib);
    assert!(
        resource(&ci, "PORTS")["stringSetValue"]
            .as_array()
            .unwrap()
            .contains(&Value::from("22")),
        "{ci:#}"
    );
    assert_eq!(ci["remainingResources"], ci["registeredResources"]);
    assert_eq!(ci["runningTasksCount"], 0);
    assert_eq!(attribute(&ci, "ecs.os-type").unwrap()["value"], "linux");
    assert_eq!(
        attribute(&ci, "ecs.cpu-architecture").unwrap()["value"],
        match std::env::consts::ARCH {
            "aarch64" => "arm64",
            other => other,
        }
    );
    assert_eq!(attribute(&ci, "color").unwrap()["value"], "blue");
    assert!(attribute(&ci, "gpu").is_some_and(|g| g.get("value").is_none()));
    // This product's own version (semver), not a constant borrowed from ECS's agent.
    assert_eq!(ci["versionInfo"]["agentVersion"], env!("CARGO_PKG_VERSION"));

    // The cluster query language.
    assert_eq!(
        list(&api, &["--filter", "attribute:color == blue"]),
        [a.as_str()]
    );
    assert_eq!(
        list(&api, &["--filter", "attribute:color != blue"]),
        [b.as_str()]
    );
    assert_eq!(
        list(&api, &["--filter", "attribute:gpu exists"]),
        [a.as_str()]
    );
    assert_eq!(
        list(&api, &["--filter", "attribute:color in [blue, red]"]),
        both
    );
    assert_eq!(
        list(
            &api,
            &[
                "--filter",
                "attribute:color == red or runningTasksCount > 3"
            ]
        ),
        [b.as_str()]
    );
    let err = api.aws_err(&[
        "list-container-instances",
        "--filter",
        "attribute:color ~= blue",
    ]);
    assert!(
        err.contains("InvalidParameterException") && err.contains("unknown operator"),
        "{err}"
    );

    // Custom attributes through the API round-trip.
    api.aws_json(&[
        "put-attributes",
        "--attributes",
        &format!("name=stack,value=prod,targetId={b}"),
    ]);
    let l = api.aws_json(&[
        "list-attributes",
        "--target-type",
        "container-instance",
        "--attribute-name",
        "stack",
    ]);
    assert_eq!(l["attributes"].as_array().unwrap().len(), 1, "{l:#}");
    assert_eq!(l["attributes"][0]["targetId"], b.as_str());
    assert_eq!(l["attributes"][0]["value"], "prod");
    assert_eq!(
        list(&api, &["--filter", "attribute:stack == prod"]),
        [b.as_str()]
    );
    api.aws_json(&[
        "delete-attributes",
        "--attributes",
        &format!("name=stack,targetId={b}"),
    ]);
    assert!(attribute(&describe(&api, &b), "stack").is_none());
    let err = api.aws_err(&[
        "put-attributes",
        "--attributes",
        "name=stack,value=prod,targetId=0123456789abcdef0123456789abcdef",
    ]);
    assert!(err.contains("TargetNotFoundException"), "{err}");

    // At most 10 custom attributes on an instance: blue has 2, 9 more is one too many.
    let many: Vec<String> = (0..9)
        .map(|n| format!("name=extra{n},value=x,targetId={a}"))
        .collect();
    let mut args = vec!["put-attributes", "--attributes"];
    args.extend(many.iter().map(String::as_str));
    let err = api.aws_err(&args);
    assert!(err.contains("AttributeLimitExceededException"), "{err}");
    assert!(attribute(&describe(&api, &a), "extra0").is_none());

    // DRAINING is recorded and filtered on.
    let u = api.aws_json(&[
        "update-container-instances-state",
        "--container-instances",
        &b,
        "--status",
        "DRAINING",
    ]);
    assert_eq!(u["containerInstances"][0]["status"], "DRAINING");
    assert_eq!(list(&api, &["--status", "DRAINING"]), [b.as_str()]);
    assert_eq!(list(&api, &["--status", "ACTIVE"]), [a.as_str()]);

    // A box killed outright is disconnected once its lease (3 s) runs out, not before.
    let killed = Instant::now();
    blue.signal("-KILL");
    until_connected(&api, &a, false, Duration::from_secs(15));
    let lost = killed.elapsed();
    eprintln!("kill -9 → agentConnected false: {lost:?} (lease TTL 3 s)");
    // The lease had at least 2 s left (renewed every second).
    assert!(lost >= Duration::from_millis(1500), "{lost:?}");

    // A box stopped with SIGTERM revokes its lease: disconnected at once, not after its
    // 10 s lease, and the agent exits 0.
    let stopped = Instant::now();
    let status = red.signal("-TERM");
    assert!(status.success(), "agent exit: {status}");
    let gone = until_connected(&api, &b, false, Duration::from_secs(3));
    eprintln!(
        "SIGTERM → agentConnected false: {:?} (lease TTL 10 s)",
        stopped.elapsed()
    );
    assert!(gone < Duration::from_secs(3));

    // Restarted, a box is the same instance, connected again, its DRAINING kept.
    red.spawn();
    assert_eq!(red.arn(), b);
    until_connected(&api, &b, true, Duration::from_secs(10));
    assert_eq!(describe(&api, &b)["status"], "DRAINING");
    assert_eq!(list(&api, &[]), both);

    // Deregistered: no longer listed, INACTIVE when described (as ECS answers).
    let d = api.aws_json(&["deregister-container-instance", "--container-instance", &a]);
    assert_eq!(d["containerInstance"]["status"], "INACTIVE");
    assert_eq!(list(&api, &[]), [b.as_str()]);
    assert_eq!(describe(&api, &a)["status"], "INACTIVE");
    // Its agent, started again, does not bring it back: it says why and stops.
    blue.spawn();
    let status = common::util::wait_until("the agent to stop", Duration::from_secs(10), || {
        blue.child.as_mut().unwrap().try_wait().unwrap()
    });
    blue.child = None;
    assert!(!status.success());
    let log = std::fs::read_to_string(blue.log()).unwrap();
    assert!(log.contains("was deregistered"), "{log}");
    assert_eq!(list(&api, &[]), [b.as_str()]);
}

#[test]
fn a_stopped_etcd_is_an_error_naming_it_and_the_agent_reconnects() {
    let mut etcd = Etcd::start();
    // serve is given an endpoint nobody answers first: it fails over to the next.
    let dead = format!("http://127.0.0.1:{}", common::util::free_port());
    let endpoints = format!("{dead},{}", etcd.endpoint());
    let mut args = vec!["--cluster".to_string(), endpoints];
    args.extend(etcd.serve_args());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let api = Api::start_with(busybox_layer(Compression::Gzip, "cluster"), &args);
    let agent = Agent::start(&etcd, 2, &[]);
    let arn = agent.arn();
    common::util::wait_until("the box listed", Duration::from_secs(20), || {
        (list(&api, &[]) == [arn.as_str()]).then_some(())
    });

    // A frozen etcd (SIGSTOP: connections accepted, nothing answered) is a timeout, not a
    // hang: one API call answers within the client's 5 s deadline per endpoint.
    etcd.signal("-STOP");
    let (text, took) = ecs_call(&api, "ListContainerInstances", "{}");
    etcd.signal("-CONT");
    eprintln!("ListContainerInstances with etcd frozen: {took:?}: {text}");
    assert!(
        text.ends_with("500") && text.contains("ServerException"),
        "{text}"
    );
    assert!(text.contains(&etcd.endpoint()), "{text}");
    assert!(took < Duration::from_secs(9), "{took:?}");

    etcd.kill();
    let start = Instant::now();
    let err = api.aws_err(&["list-container-instances"]);
    let took = start.elapsed();
    eprintln!("list-container-instances with etcd down failed in {took:?}");
    let port = etcd.endpoint().rsplit(':').next().unwrap().to_string();
    assert!(
        err.contains("etcd") && err.contains(&format!("127.0.0.1:{port}")) && err.contains(&dead),
        "the error names every endpoint tried: {err}"
    );
    assert!(took < Duration::from_secs(30), "{took:?}");
    // A write of the cluster's control plane fails the same way, and keeps nothing.
    let def = api.file("sleeper.json", SLEEPER);
    let err = api.aws_err(&["register-task-definition", "--cli-input-json", &def]);
    assert!(
        err.contains("ServerException") && err.contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
    // The agent keeps trying meanwhile (and says so).
    std::thread::sleep(Duration::from_secs(3));
    let log = std::fs::read_to_string(agent.log()).unwrap();
    assert!(log.contains("retrying"), "{log}");

    let before = agent.registrations();
    etcd.start_again();
    common::util::wait_until(
        "the agent to register again",
        Duration::from_secs(20),
        || (agent.registrations() > before).then_some(()),
    );
    // Still connected well after the old lease would have run out: a new one is kept.
    std::thread::sleep(Duration::from_secs(5));
    assert!(connected(&api, &arn));
    assert_eq!(list(&api, &[]), [arn]);
    let v = api.aws_json(&["list-task-definitions"]);
    assert_eq!(v["taskDefinitionArns"], serde_json::json!([]), "{v:#}");
    let v = api.aws_json(&["register-task-definition", "--cli-input-json", &def]);
    assert_eq!(v["taskDefinition"]["revision"], 1, "{v:#}");
}

#[test]
fn an_etcd_that_requires_client_certificates_is_reached_with_them_only() {
    let dir = tempfile::Builder::new()
        .prefix("mf-etcd-tls-")
        .tempdir()
        .unwrap();
    let ca = common::tls::TestCa::new(dir.path());
    let server = ca.issue_server_and_client("etcd", &["localhost"], &["127.0.0.1"]);
    let client = ca.issue("client", &["minifargate"], &[], false);
    let etcd = Etcd::start_tls(ServerTls {
        ca: ca.cert.clone(),
        cert: server.cert,
        key: server.key,
        client_cert: client.cert.clone(),
        client_key: client.key.clone(),
    });
    let (cacert, cert, key) = (
        ca.cert.to_str().unwrap(),
        client.cert.to_str().unwrap(),
        client.key.to_str().unwrap(),
    );
    let tls = [
        "--etcd-cacert",
        cacert,
        "--etcd-cert",
        cert,
        "--etcd-key",
        key,
    ];
    let endpoint = etcd.endpoint();
    let mut serve_args = vec!["--cluster", endpoint.as_str()];
    serve_args.extend(tls);
    let api = Api::start_with(busybox_layer(Compression::Gzip, "cluster-tls"), &serve_args);
    let agent = Agent::start_with(&etcd, 5, &["zone=lab"], &tls);
    let arn = agent.arn();
    common::util::wait_until("the box listed", Duration::from_secs(20), || {
        (list(&api, &["--filter", "attribute:zone == lab"]) == [arn.as_str()]).then_some(())
    });
    assert!(connected(&api, &arn));

    // Without a client certificate, etcd refuses the agent: it registers nothing and
    // says which endpoint failed.
    let stranger = Agent::start_with(&etcd, 5, &[], &["--etcd-cacert", cacert]);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(stranger.registrations(), 0);
    let log = std::fs::read_to_string(stranger.log()).unwrap();
    assert!(
        log.contains(&etcd.endpoint()) && log.contains("retrying"),
        "{log}"
    );
    assert_eq!(list(&api, &[]), [arn]);
}

/// `ARGS` run as the unprivileged user `nobody` (as any local user, or a host-network task
/// running as a non-root user, would).
fn as_nobody(args: &[&str]) -> std::process::Output {
    Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
        .args(args)
        .env("ETCDCTL_API", "3")
        .current_dir("/")
        .output()
        .expect("run setpriv")
}

#[test]
fn a_local_user_can_neither_read_nor_write_the_cluster_s_etcd_nor_use_a_box_s_endpoint() {
    let etcd = Etcd::start();
    let pki = etcd
        .pki()
        .expect("the tests' etcd requires client certificates (unset MINIFARGATE_TEST_ETCD)")
        .to_path_buf();
    let api = serve(&etcd);
    let agent = Agent::start(&etcd, 5, &[]);
    let arn = agent.arn();
    common::util::wait_until("the box listed", Duration::from_secs(20), || {
        (list(&api, &[]) == [arn.as_str()]).then_some(())
    });
    let endpoint = etcd.endpoint();
    let port = endpoint.rsplit(':').next().unwrap().to_string();

    // etcd on loopback: reachable by every local user, but without a client certificate
    // of the cluster's CA it answers nothing, over https or plain http.
    let etcdctl = [
        "etcdctl",
        "--endpoints",
        &endpoint,
        "--command-timeout",
        "3s",
    ];
    let read = as_nobody(&[&etcdctl[..], &["get", "--prefix", "/minifargate"]].concat());
    let text = String::from_utf8_lossy(&read.stdout);
    assert!(
        !read.status.success() && !text.contains("/minifargate/"),
        "{read:?}"
    );
    let write = as_nobody(&[&etcdctl[..], &["put", "/minifargate/v1/nobody", "was here"]].concat());
    assert!(!write.status.success(), "{write:?}");
    let plain = format!("http://127.0.0.1:{port}/v3/kv/range");
    let curl = as_nobody(&[
        "curl",
        "-s",
        "-m",
        "3",
        "--noproxy",
        "*",
        "-d",
        r#"{"key":"Lw==","range_end":"MA=="}"#,
        &plain,
    ]);
    assert!(
        !String::from_utf8_lossy(&curl.stdout).contains("\"kvs\""),
        "{curl:?}"
    );
    assert_eq!(
        etcd.etcdctl(&["get", "/minifargate/v1/nobody"]).stdout,
        b"",
        "nothing was written"
    );
    // The operator still reads it (the cluster's token among its keys).
    let admin = etcd.etcdctl(&["get", "--prefix", "/minifargate/v1/", "--keys-only"]);
    assert!(
        String::from_utf8_lossy(&admin.stdout).contains("/minifargate/v1/"),
        "{admin:?}"
    );

    // The certificates `cluster init` made are root's only: not one is readable.
    for f in [
        "ca.key",
        "ca.crt",
        "admin/client.key",
        "serve/client.key",
        "boxes/tests/client.key",
        "etcd/server.key",
    ] {
        let path = pki.join(f);
        let cat = as_nobody(&["cat", path.to_str().unwrap()]);
        assert!(
            !cat.status.success() && cat.stdout.is_empty(),
            "{f}: {cat:?}"
        );
    }

    // The box's endpoint answers no one without serve's or the operator's certificate
    // (over TLS: the box's certificate, the cluster's CA): it does not even finish a
    // handshake with a client that does not trust that CA, and plain HTTP gets no answer.
    let url = format!("{}/v1/logs/DescribeLogStreams", agent.endpoint());
    let ask = |more: &[&str], url: &str| {
        let mut args = vec![
            "curl",
            "-s",
            "-m",
            "3",
            "--noproxy",
            "*",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-d",
            "{}",
        ];
        args.extend(more);
        args.push(url);
        as_nobody(&args)
    };
    if url.starts_with("https://") {
        let refused = ask(&[], &url);
        assert_eq!(refused.status.code(), Some(60), "{refused:?}");
        let plain = ask(&[], &url.replacen("https://", "http://", 1));
        assert_eq!(String::from_utf8_lossy(&plain.stdout), "000", "{plain:?}");
    }
    // Without a certificate of the cluster's (its keys are root's): over TLS the
    // handshake is refused, even with the endpoint's certificate unchecked (-k); plain
    // HTTP is refused for want of the token's signature.
    let unsigned = ask(&["-k"], &url);
    let expected = if url.starts_with("https://") {
        "000"
    } else {
        "403"
    };
    assert_eq!(
        String::from_utf8_lossy(&unsigned.stdout),
        expected,
        "{unsigned:?}"
    );
}

/// `etcdctl ARGS` as box `name` (its bundle from `cluster add-box`: certificate and etcd
/// user), as whoever is root on that box could run it.
fn etcdctl_as_box(etcd: &Etcd, name: &str, args: &[&str]) -> std::process::Output {
    let dir = etcd.pki().unwrap().join("boxes").join(name);
    etcd.etcdctl_with_bundle(&dir, "5s")
        .args(args)
        .output()
        .expect("run etcdctl")
}

/// Box `name` claims instance `id` of cluster `default` (what its agent would do), and
/// serve's leader binds it to the box.
fn bind_as_box(etcd: &Etcd, api: &Api, name: &str, id: &str) {
    let put = etcdctl_as_box(
        etcd,
        name,
        &[
            "put",
            &format!("/minifargate/v1/boxes/{name}/claims/default/{id}"),
            "",
        ],
    );
    assert!(put.status.success(), "{put:?}");
    api.wait_for(
        30,
        &format!("box {name}'s instance {id} bound to it"),
        || {
            let out = etcd.etcdctl(&[
                "get",
                &format!("/minifargate/v1/boxes/{name}/bound/default/{id}"),
            ]);
            (!out.stdout.is_empty()).then_some(())
        },
    );
}

fn refused(out: &std::process::Output, what: &str) {
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("permission denied"),
        "{what}: {out:?}"
    );
}

/// issue 54 ("root on one box is not the whole cluster"): a box's etcd user writes its
/// own instance's keys only. With one box's bundle (what root on that box holds), writing
/// another box's assignment (a task that box would run, e.g. privileged with `/` mounted),
/// registration, status or ledger, the control plane's rows or the leader key is
/// `permission denied`; claiming another box's instance binds nothing. The box itself
/// registers and runs its task.
#[test]
fn a_box_s_etcd_user_writes_its_own_instance_s_keys_only() {
    let etcd = Etcd::start();
    if etcd.pki().is_none() {
        eprintln!("MINIFARGATE_TEST_ETCD=plain: no etcd users, nothing to check");
        return;
    }
    let api = serve(&etcd);
    let a = Agent::start_for(&etcd, &api, 5, &[]);
    let arn = a.arn();
    api.wait_for(30, "the box listed", || {
        (api.instances_listed(None) == [arn.clone()]).then_some(())
    });
    let id = arn.rsplit('/').next().unwrap().to_string();
    register(&api, "sleeper.json", SLEEPER);
    let (_, task) = common::cluster::sleeper_running(&api, "the task RUNNING on the box");

    // Another box, with its own bundle and etcd user: none of box a's keys is its to write.
    etcd.add_box("intruder");
    let privileged = r#"{"taskDefinition":{"containerDefinitions":[{"privileged":true}]}}"#;
    let theirs = [
        format!("/minifargate/v1/clusters/default/assignments/{id}/evil"),
        format!("/minifargate/v1/clusters/default/instances/{id}"),
        format!("/minifargate/v1/clusters/default/status/{id}"),
        format!("/minifargate/v1/clusters/default/ledger/{id}"),
        "/minifargate/v1/clusters/default/assignments/0123456789abcdef0123456789abcdef/x".into(),
        "/minifargate/v1/db/rows/task_definitions/x".into(),
        "/minifargate/v1/leader".into(),
        "/minifargate/v1/bindings/0123456789abcdef0123456789abcdef".into(),
    ];
    for key in &theirs {
        refused(
            &etcdctl_as_box(&etcd, "intruder", &["put", key, privileged]),
            key,
        );
    }
    refused(
        &etcdctl_as_box(
            &etcd,
            "intruder",
            &["del", "--prefix", "/minifargate/v1/clusters/"],
        ),
        "delete every instance",
    );
    refused(
        &etcdctl_as_box(
            &etcd,
            "intruder",
            &["get", "--prefix", "/minifargate/v1/db/"],
        ),
        "read the control plane",
    );
    // Neither this box's user nor box a's reads the cluster's token (their agents'
    // endpoints know serve and the operator by their certificates).
    for b in ["intruder", "tests"] {
        refused(
            &etcdctl_as_box(&etcd, b, &["get", "/minifargate/v1/token"]),
            &format!("{b}: read the cluster's token"),
        );
    }
    // Nor does a box's certificate open another box's endpoint: refused at the handshake.
    let ca = etcd.pki().unwrap().join("ca.crt");
    let intruder = etcd.pki().unwrap().join("boxes/intruder");
    let curl = Command::new("curl")
        .args(["-s", "-m", "5", "--noproxy", "*", "-o", "/dev/null"])
        .args(["-w", "%{http_code}", "-d", "{}", "--cacert"])
        .arg(&ca)
        .arg("--cert")
        .arg(intruder.join("client.crt"))
        .arg("--key")
        .arg(intruder.join("client.key"))
        .arg(format!("{}/v1/logs/DescribeLogStreams", a.endpoint()))
        .output()
        .unwrap();
    assert!(
        !curl.status.success() && curl.stdout == b"000",
        "box intruder's certificate at box a's endpoint: {curl:?}"
    );
    // Nor etcd's peer port (its own CA): a box's certificate is refused there (a TLS
    // alert, "bad certificate"), the peer certificate gets etcd's member list.
    let peer_ca = etcd.pki().unwrap().join("etcd/peer-ca.crt");
    let at_peer_port = |dir: &std::path::Path, cert: &str, key: &str| {
        // (HTTP/1.1: etcd's peer port ends HTTP/2 streams uncleanly for curl.)
        Command::new("curl")
            .args(["-sS", "--http1.1", "-m", "5", "--noproxy", "*"])
            .args(["-w", "\n%{http_code}", "--cacert"])
            .arg(&peer_ca)
            .arg("--cert")
            .arg(dir.join(cert))
            .arg("--key")
            .arg(dir.join(key))
            .arg(format!("{}/members", etcd.peer_endpoint()))
            .output()
            .unwrap()
    };
    let box_at_peer = at_peer_port(&intruder, "client.crt", "client.key");
    assert!(
        !box_at_peer.status.success() && box_at_peer.stdout.ends_with(b"000"),
        "box intruder's certificate at etcd's peer port: {box_at_peer:?}"
    );
    let peer = at_peer_port(&etcd.pki().unwrap().join("etcd"), "peer.crt", "peer.key");
    let text = String::from_utf8_lossy(&peer.stdout);
    assert!(
        text.ends_with("\n200") && text.contains("peerURLs"),
        "{peer:?}"
    );
    // Its own prefix is its own; claiming box a's instance there binds nothing.
    let claim = format!("/minifargate/v1/boxes/intruder/claims/default/{id}");
    let put = etcdctl_as_box(&etcd, "intruder", &["put", &claim, ""]);
    assert!(put.status.success(), "{put:?}");
    std::thread::sleep(Duration::from_secs(2));
    refused(
        &etcdctl_as_box(&etcd, "intruder", &["put", &theirs[0], privileged]),
        "after claiming box a's instance",
    );
    let bound = etcd.etcdctl(&[
        "get",
        &format!("/minifargate/v1/bindings/{id}"),
        "--print-value-only",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&bound.stdout).trim(),
        "tests",
        "{bound:?}"
    );

    // Box intruder with an instance of its own bound to it (what its agent would claim)
    // still writes no record or report of box a's task: the records are serve's, the
    // reports box a's (issue 54: a box's user once wrote every record of the cluster, a
    // false DescribeTasks).
    let own_instance = "fedcba9876543210fedcba9876543210";
    bind_as_box(&etcd, &api, "intruder", own_instance);
    let task_id = task.rsplit('/').next().unwrap();
    let forged =
        r#"{"instance":"x","task":{"lastStatus":"STOPPED","stopCode":"EssentialContainerExited"}}"#;
    refused(
        &etcdctl_as_box(
            &etcd,
            "intruder",
            &[
                "put",
                &format!("/minifargate/v1/clusters/default/tasks/{task_id}"),
                forged,
            ],
        ),
        "box intruder: box a's task record",
    );
    refused(
        &etcdctl_as_box(
            &etcd,
            "intruder",
            &[
                "put",
                &format!("/minifargate/v1/boxes/tests/reports/default/{task_id}"),
                forged,
            ],
        ),
        "box intruder: box a's task report",
    );
    // A report in its own prefix naming box a's instance, or its own, is not folded.
    for instance in [id.as_str(), own_instance] {
        let report = format!(
            r#"{{"instance":"{instance}","task":{{"lastStatus":"STOPPED","stopCode":"EssentialContainerExited"}}}}"#
        );
        let key = format!("/minifargate/v1/boxes/intruder/reports/default/{task_id}");
        let put = etcdctl_as_box(&etcd, "intruder", &["put", &key, &report]);
        assert!(put.status.success(), "{put:?}");
        api.wait_for(30, "the forged report settled by the leader", || {
            etcd.etcdctl(&["get", &key]).stdout.is_empty().then_some(())
        });
        assert_eq!(describe_task(&api, &task)["lastStatus"], "RUNNING");
    }

    // Nor does it take or drop box a's task subnet (its routes): that key is under box
    // a's prefix of `subnets/`; a claim in its own prefix over it is ignored by every
    // reader (the first claim wins).
    let subnet_keys = etcd.etcdctl(&[
        "get",
        "--prefix",
        "--keys-only",
        "/minifargate/v1/subnets/tests/",
    ]);
    let a_subnet = String::from_utf8_lossy(&subnet_keys.stdout)
        .lines()
        .find(|l| !l.is_empty())
        .unwrap_or_else(|| panic!("box a's subnet key: {subnet_keys:?}"))
        .to_string();
    let a_value = etcd
        .etcdctl(&["get", &a_subnet, "--print-value-only"])
        .stdout;
    refused(
        &etcdctl_as_box(&etcd, "intruder", &["put", &a_subnet, "{}"]),
        "box intruder: box a's task subnet",
    );
    refused(
        &etcdctl_as_box(&etcd, "intruder", &["del", &a_subnet]),
        "box intruder: dropping box a's task subnet",
    );
    refused(
        &etcdctl_as_box(
            &etcd,
            "intruder",
            &["put", "/minifargate/v1/subnets/10.97.69.128-26", "{}"],
        ),
        "box intruder: a subnet key outside its prefix",
    );
    let over = a_subnet.replace("/subnets/tests/", "/subnets/intruder/");
    let holder =
        format!(r#"{{"cluster":"default","instance":"{own_instance}","address":"127.0.0.1"}}"#);
    let put = etcdctl_as_box(&etcd, "intruder", &["put", &over, &holder]);
    assert!(put.status.success(), "its own prefix: {put:?}");
    assert_eq!(
        etcd.etcdctl(&["get", &a_subnet, "--print-value-only"])
            .stdout,
        a_value
    );

    // Box a's own user writes its own instance's assignments (the agent deletes one it is
    // done with), still not another instance's nor the control plane.
    let own = format!("/minifargate/v1/clusters/default/assignments/{id}/probe");
    assert!(
        etcdctl_as_box(&etcd, "tests", &["del", &own])
            .status
            .success()
    );
    refused(
        &etcdctl_as_box(&etcd, "tests", &["put", &theirs[4], privileged]),
        "box a: another instance's assignment",
    );
    refused(
        &etcdctl_as_box(&etcd, "tests", &["put", &theirs[5], "{}"]),
        "box a: a control-plane row",
    );
    // Without its password, its certificate alone is nobody.
    let dir = etcd.pki().unwrap().join("boxes/tests");
    let anonymous = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &etcd.endpoint(), "--command-timeout", "5s"])
        .arg("--cacert")
        .arg(dir.join("ca.crt"))
        .arg("--cert")
        .arg(dir.join("client.crt"))
        .arg("--key")
        .arg(dir.join("client.key"))
        .args(["get", "--prefix", "/minifargate/"])
        .output()
        .unwrap();
    assert!(!anonymous.status.success(), "{anonymous:?}");
    // The task still runs, and its box still reports it: stopped, its record goes
    // RUNNING -> STOPPED with the container's real exit code (137: `sleep` as its PID 1
    // ignores SIGTERM and is killed after its stopTimeout).
    assert_eq!(describe_task(&api, &task)["lastStatus"], "RUNNING");
    api.aws_json(&["stop-task", "--task", &task]);
    let t = api.wait_for(60, "the task STOPPED with its exit code", || {
        let t = describe_task(&api, &task);
        (t["lastStatus"] == "STOPPED").then_some(t)
    });
    assert_eq!(t["stopCode"], "UserInitiated", "{t:#}");
    assert_eq!(t["containers"][0]["exitCode"], 137, "{t:#}");
}

/// etcdctl `put KEY` as box `name`, the value from stdin (larger than one argument may be).
fn put_as_box_stdin(etcd: &Etcd, name: &str, key: &str, value: &[u8]) -> std::process::Output {
    use std::io::Write;
    let dir = etcd.pki().unwrap().join("boxes").join(name);
    let mut child = etcd
        .etcdctl_with_bundle(&dir, "15s")
        .args(["put", key])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run etcdctl");
    child.stdin.take().unwrap().write_all(value).unwrap();
    child.wait_with_output().unwrap()
}

/// issue 73 ("a stolen box harms only its own tasks"): with one box's own etcd rights
/// (its bundle's user, as root on it holds them), a box cannot undo its DRAINING, and
/// what it garbles or oversizes in its own keys (its registration, its attributes, a task
/// report, subnet claims of 0.0.0.0/0, 10.0.0.0/8 or outside the task range) is left out
/// and said, never fatal: the other box is listed and described, DescribeClusters
/// answers, a task is placed, and the other box's routes stay as they were.
#[test]
fn a_hostile_box_s_garbled_or_oversized_keys_change_nothing_for_the_others() {
    let etcd = Etcd::start();
    if etcd.pki().is_none() {
        eprintln!("MINIFARGATE_TEST_ETCD=plain: no etcd users, nothing to check");
        return;
    }
    let api = serve(&etcd);
    let a = Agent::start_for(&etcd, &api, 5, &[]);
    let a_arn = a.arn();
    api.wait_for(30, "box a listed", || {
        (api.instances_listed(None) == [a_arn.clone()]).then_some(())
    });
    let a_ec2 = describe(&api, &a_arn)["ec2InstanceId"].clone();

    // Box intruder, with an instance of its own bound to it (what its agent would claim).
    etcd.add_box("intruder");
    let own = "fedcba9876543210fedcba9876543210";
    let own_arn = a_arn.replace(&a.id(), own);
    bind_as_box(&etcd, &api, "intruder", own);
    // Its status is serve's: created ACTIVE at the binding, read by the box, never written.
    let status = format!("/minifargate/v1/clusters/default/status/{own}");
    let read_status = || {
        let out = etcd.etcdctl(&["get", &status, "--print-value-only"]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(read_status(), "ACTIVE");
    let mine = etcdctl_as_box(&etcd, "intruder", &["get", &status, "--print-value-only"]);
    assert!(
        mine.status.success() && String::from_utf8_lossy(&mine.stdout).trim() == "ACTIVE",
        "{mine:?}"
    );
    refused(
        &etcdctl_as_box(&etcd, "intruder", &["put", &status, "garbled"]),
        "box intruder: a garbled status of its own",
    );

    // A well-formed registration of its own is listed; the operator drains it.
    let registration = |id: &str, hostname: &str| {
        format!(
            r#"{{"id":"{id}","hostname":"{hostname}","registeredAtMs":1,"cpu":0,"memory":0,"attributes":{{}},"agentVersion":"1.0.0","agentHash":"x"}}"#
        )
    };
    let reg_key = format!("/minifargate/v1/clusters/default/instances/{own}");
    let put = etcdctl_as_box(
        &etcd,
        "intruder",
        &["put", &reg_key, &registration(own, "intruder")],
    );
    assert!(put.status.success(), "{put:?}");
    // Attributes ECS would not take are left out; the one it would is shown.
    let attr = |n: &str| format!("/minifargate/v1/clusters/default/attributes/{own}/{n}");
    for (name, value) in [
        ("fine", "\"ok\"".to_string()),
        ("big", format!("\"{}\"", "v".repeat(4096))),
        ("bad", "\"a;b\"".to_string()),
    ] {
        let put = etcdctl_as_box(&etcd, "intruder", &["put", &attr(name), &value]);
        assert!(put.status.success(), "{put:?}");
    }
    api.wait_for(30, "box intruder's instance listed", || {
        (api.instances_listed(None).len() == 2).then_some(())
    });
    let custom: Vec<String> = describe(&api, &own_arn)["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(custom, ["fine"], "only the attribute ECS would take");
    let u = api.aws_json(&[
        "update-container-instances-state",
        "--container-instances",
        &own_arn,
        "--status",
        "DRAINING",
    ]);
    assert_eq!(u["containerInstances"][0]["status"], "DRAINING", "{u:#}");
    // It cannot undo that: not ACTIVE again, not deleted (for a put-if-absent).
    refused(
        &etcdctl_as_box(&etcd, "intruder", &["put", &status, "ACTIVE"]),
        "box intruder: its own status from DRAINING back to ACTIVE",
    );
    refused(
        &etcdctl_as_box(&etcd, "intruder", &["del", &status]),
        "box intruder: deleting its own status",
    );

    // Subnet claims in its own prefix: the whole address space, 10/8, and outside the
    // task range (box a's: 10.94.0.0/16 by default), via an address of no one.
    let holder = format!(r#"{{"cluster":"default","instance":"{own}","address":"192.0.2.1"}}"#);
    let hostile = ["0.0.0.0-0", "10.0.0.0-8", "192.0.2.0-24"];
    for net in hostile {
        let key = format!("/minifargate/v1/subnets/intruder/{net}");
        let put = etcdctl_as_box(&etcd, "intruder", &["put", &key, &holder]);
        assert!(put.status.success(), "{put:?}");
    }
    // A task report far over the bound, in its own prefix: dropped by the leader.
    let report_key = "/minifargate/v1/boxes/intruder/reports/default/0123456789abcdef";
    let big = format!(
        r#"{{"instance":"{own}","task":{{"lastStatus":"RUNNING","pad":"{}"}}}}"#,
        "x".repeat(300 * 1024)
    );
    let put = put_as_box_stdin(&etcd, "intruder", report_key, big.as_bytes());
    assert!(put.status.success(), "{put:?}");

    // Its registration garbled, then naming box a's id, then oversized: each time box
    // a is listed and described as before, DescribeClusters answers, and the intruder's
    // instance is left out.
    let oversized = registration(own, &"h".repeat(70 * 1024));
    for (what, value) in [
        ("garbled", "{\"id\": not json".to_string()),
        ("box a's id", registration(&a.id(), "impostor")),
        ("oversized", oversized),
    ] {
        let put = put_as_box_stdin(&etcd, "intruder", &reg_key, value.as_bytes());
        assert!(put.status.success(), "{what}: {put:?}");
        api.wait_for(30, &format!("{what}: box a alone listed"), || {
            (api.instances_listed(None) == [a_arn.clone()]).then_some(())
        });
        let d = describe(&api, &a_arn);
        assert_eq!(d["ec2InstanceId"], a_ec2, "{what}: {d:#}");
        assert_eq!(d["status"], "ACTIVE", "{what}");
        let c = api.aws_json(&["describe-clusters"]);
        assert_eq!(
            c["clusters"][0]["registeredContainerInstancesCount"], 1,
            "{what}: {c:#}"
        );
    }
    api.wait_for(30, "the oversized report dropped by the leader", || {
        etcd.etcdctl(&["get", report_key])
            .stdout
            .is_empty()
            .then_some(())
    });

    // Placement still places, on box a.
    register(&api, "sleeper.json", SLEEPER);
    let run = api.aws_json(&[
        "run-task",
        "--task-definition",
        "cluster-sleeper",
        "--launch-type",
        "EC2",
    ]);
    assert_eq!(run["failures"], serde_json::json!([]), "{run:#}");
    let task = run["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    assert_eq!(run["tasks"][0]["containerInstanceArn"], a_arn.as_str());
    api.wait_for(60, "the task RUNNING on box a", || {
        (describe_task(&api, &task)["lastStatus"] == "RUNNING").then_some(())
    });

    // Box a refused the hostile claims (said in its log) and routes none of them.
    api.wait_for(30, "box a refusing the hostile subnet claims", || {
        let log = a.log_text();
        hostile
            .iter()
            .all(|net| {
                log.lines().any(|l| {
                    l.contains("task subnet claim not honoured")
                        && l.contains(&format!("/subnets/intruder/{net}"))
                })
            })
            .then_some(())
    });
    assert!(
        !a.log_text()
            .contains("cannot route another box's task subnet"),
        "{}",
        a.log_text()
    );
    let routes = Command::new("ip")
        .args(["route", "show", "proto", "109"])
        .output()
        .unwrap();
    let routes = String::from_utf8_lossy(&routes.stdout);
    for bad in ["default", "10.0.0.0/8", "192.0.2.0/24"] {
        assert!(
            !routes.lines().any(|l| l.starts_with(bad)),
            "{bad} routed: {routes}"
        );
    }
    // And the drained box is still DRAINING.
    assert_eq!(read_status(), "DRAINING");
    api.aws_json(&["stop-task", "--task", &task]);
}

/// issue 54 ("secure by default"): a cluster made as docs/cluster.md says (`cluster
/// init`, `cluster add-box`, etcd with the certificates, serve with its bundle) runs with
/// etcd's users on without the separate `cluster enable-auth`: until then any certificate
/// of the cluster writes every key, and a box's agent does not register; serve, whose
/// bundle sits next to the operator's, turns them on; then a box's user is refused a key
/// outside its own, a certificate without a user is nobody, and the box registers.
#[test]
fn a_cluster_made_with_cluster_init_runs_with_etcd_s_users_on_without_enable_auth() {
    if std::env::var("MINIFARGATE_TEST_ETCD").as_deref() == Ok("plain") {
        eprintln!("MINIFARGATE_TEST_ETCD=plain: no etcd users, nothing to check");
        return;
    }
    let etcd = Etcd::start_without_enable_auth();
    let dir = etcd.pki().unwrap().join("boxes/tests");
    let cert_only = |args: &[&str]| {
        Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &etcd.endpoint(), "--command-timeout", "5s"])
            .arg("--cacert")
            .arg(dir.join("ca.crt"))
            .arg("--cert")
            .arg(dir.join("client.crt"))
            .arg("--key")
            .arg(dir.join("client.key"))
            .args(args)
            .output()
            .unwrap()
    };
    // Before any serve: etcd's users are off, so a box's certificate is everyone.
    let open = cert_only(&["put", "/minifargate/v1/probe", "x"]);
    assert!(open.status.success(), "{open:?}");
    let api = serve(&etcd);
    api.wait_for(30, "etcd's users on", || {
        // (A harmless key: while etcd's users are off, this put succeeds.)
        let out = etcdctl_as_box(&etcd, "tests", &["put", "/minifargate/v1/probe", "x"]);
        (!out.status.success()
            && String::from_utf8_lossy(&out.stderr).contains("permission denied"))
        .then_some(())
    });
    let closed = cert_only(&["get", "--prefix", "/minifargate/"]);
    assert!(!closed.status.success(), "{closed:?}");
    let a = Agent::start_for(&etcd, &api, 5, &[]);
    let arn = a.arn();
    api.wait_for(30, "the box listed", || {
        (api.instances_listed(None) == [arn.clone()]).then_some(())
    });
}

/// issue 54 ("Test each as an unprivileged local user and as a task: refused"): a task
/// on the box's own network (`networkMode: host`, so on its loopback, where etcd and the
/// agent's endpoint listen) reaches neither: etcd wants a client certificate of the
/// cluster's CA, which is not in the task's filesystem, and the endpoint wants TLS with
/// that CA and the cluster's signature. The task tries each over plain http and https
/// (its certificate checks off) and counts what answered: its exit code.
#[test]
fn a_host_network_task_can_neither_use_the_cluster_s_etcd_nor_a_box_s_endpoint() {
    let etcd = Etcd::start();
    let api = serve(&etcd);
    let agent = Agent::start_for(&etcd, &api, 5, &[]);
    let arn = agent.arn();
    common::util::wait_until("the box listed", Duration::from_secs(20), || {
        (list(&api, &[]) == [arn.as_str()]).then_some(())
    });
    let etcd_at = etcd.endpoint();
    let etcd_at = etcd_at.split("://").nth(1).unwrap().to_string();
    let agent_at = agent.endpoint();
    let agent_at = agent_at.split("://").nth(1).unwrap().to_string();
    // The control: serve, on the same loopback, does answer the task (its page or an
    // HTTP error: an answer).
    let api_at = api.endpoint.clone();
    // The token's key, base64: what a task would want from etcd.
    let script = format!(
        r#"r=0
try() {{ busybox timeout 5 busybox wget -q -O - --no-check-certificate --post-data "$2" "$1" && echo "ANSWERED $1"; }}
try http://{etcd_at}/v3/kv/range '{{"key":"L21pbmlmYXJnYXRlL3YxL3Rva2Vu"}}' && r=$((r+1))
try https://{etcd_at}/v3/kv/range '{{"key":"L21pbmlmYXJnYXRlL3YxL3Rva2Vu"}}' && r=$((r+2))
try http://{agent_at}/v1/logs/DescribeLogStreams '{{}}' && r=$((r+4))
try https://{agent_at}/v1/logs/DescribeLogStreams '{{}}' && r=$((r+8))
ls /etc/minifargate 2>/dev/null && r=$((r+16))
c=$(busybox timeout 5 busybox wget -q -O /dev/null {api_at}/ 2>&1) || case "$c" in *"server returned error"*) ;; *) echo "control: $c"; r=$((r+32));; esac
echo "answered: $r"
exit $r"#
    );
    let def = serde_json::json!({
        "family": "host-prober",
        "networkMode": "host",
        "requiresCompatibilities": ["EC2"],
        "cpu": "128",
        "memory": "64",
        "containerDefinitions": [{
            "name": "main",
            "image": "public.ecr.aws/docker/library/busybox:1.36",
            "command": ["sh", "-c", script],
            "essential": true
        }]
    });
    register(&api, "host-prober.json", &def.to_string());
    let run = api.aws_json(&["run-task", "--task-definition", "host-prober"]);
    let task = run["tasks"][0]["taskArn"]
        .as_str()
        .unwrap_or_else(|| panic!("{run:#}"))
        .to_string();
    let t = api.wait_for(90, "the prober STOPPED", || {
        let t = describe_task(&api, &task);
        (t["lastStatus"] == "STOPPED").then_some(t)
    });
    assert_eq!(
        t["containers"][0]["exitCode"], 0,
        "the task reached etcd or the agent (exit code: 1 etcd http, 2 etcd https, 4 agent \
         http, 8 agent https, 16 the certificates' directory; 32: the control, serve's \
         console on the same loopback, did not answer): {t:#}"
    );
}

fn remaining(ci: &Value, name: &str) -> Value {
    ci["remainingResources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no {name} in {ci:#}"))
}

#[test]
fn run_task_places_tasks_on_the_agents_which_run_stop_and_report_them() {
    let etcd = Etcd::start();
    let api = serve(&etcd);
    let (a, b) = two_boxes(&etcd, &api, 5);
    let (arn_a, arn_b) = (a.arn(), b.arn());
    register(&api, "sleeper.json", SLEEPER);

    // Four tasks spread over two instances: each runs on the box its containerInstanceArn
    // names.
    let run = api.aws_json(&[
        "run-task",
        "--task-definition",
        "cluster-sleeper",
        "--launch-type",
        "EC2",
        "--count",
        "4",
        "--placement-strategy",
        "type=spread,field=instanceId",
    ]);
    assert_eq!(run["failures"], serde_json::json!([]), "{run:#}");
    let tasks: Vec<(String, String)> = run["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            assert_eq!(t["lastStatus"], "PROVISIONING", "{t:#}");
            (
                t["taskArn"].as_str().unwrap().to_string(),
                t["containerInstanceArn"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(tasks.len(), 4);
    let on_a = tasks.iter().filter(|(_, ci)| *ci == arn_a).count();
    let on_b = tasks.iter().filter(|(_, ci)| *ci == arn_b).count();
    assert_eq!((on_a, on_b), (2, 2), "{tasks:?}");
    for (arn, ci) in &tasks {
        let t = api.wait_for(60, "the task RUNNING on its box", || {
            let t = describe_task(&api, arn);
            (t["lastStatus"] == "RUNNING").then_some(t)
        });
        assert_eq!(t["containerInstanceArn"], ci.as_str());
        assert_eq!(t["containers"][0]["lastStatus"], "RUNNING", "{t:#}");
        // The box that runs it has it in its own store, and no other box does.
        let (mine, other) = if *ci == arn_a { (&a, &b) } else { (&b, &a) };
        let id = arn.rsplit('/').next().unwrap();
        let local = mine.mf.json(&["describe-tasks", "--tasks", id]);
        assert_eq!(local["tasks"][0]["lastStatus"], "RUNNING", "{local:#}");
        let elsewhere = other.mf.json(&["describe-tasks", "--tasks", id]);
        assert_eq!(elsewhere["tasks"], serde_json::json!([]), "{elsewhere:#}");
    }
    let listed = api.aws_json(&["list-tasks", "--container-instance", &arn_a]);
    assert_eq!(
        listed["taskArns"].as_array().unwrap().len(),
        2,
        "{listed:#}"
    );

    // The instance's remaining resources add up: two tasks of 256 units and 128 MiB.
    let ci = describe(&api, &arn_a);
    let reg_mem = resource(&ci, "MEMORY")["integerValue"].as_i64().unwrap();
    let reg_cpu = resource(&ci, "CPU")["integerValue"].as_i64().unwrap();
    assert_eq!(
        remaining(&ci, "MEMORY")["integerValue"].as_i64().unwrap(),
        reg_mem - 256
    );
    assert_eq!(
        remaining(&ci, "CPU")["integerValue"].as_i64().unwrap(),
        reg_cpu - 512
    );
    assert_eq!(ci["runningTasksCount"], 2);

    // StopTask: answered at once with desiredStatus STOPPED; the box stops the task and
    // its record, reservation and count follow.
    let (stop_arn, stop_ci) = tasks.iter().find(|(_, ci)| *ci == arn_a).unwrap();
    let stopped = api.aws_json(&[
        "stop-task",
        "--task",
        stop_arn,
        "--reason",
        "cluster test stop",
    ]);
    assert_eq!(stopped["task"]["desiredStatus"], "STOPPED", "{stopped:#}");
    let t = api.wait_for(60, "the stopped task STOPPED", || {
        let t = describe_task(&api, stop_arn);
        (t["lastStatus"] == "STOPPED").then_some(t)
    });
    assert_eq!(t["stoppedReason"], "cluster test stop", "{t:#}");
    assert_eq!(t["stopCode"], "UserInitiated", "{t:#}");
    assert_eq!(t["containerInstanceArn"], stop_ci.as_str());
    api.wait_for(20, "the reservation released", || {
        let ci = describe(&api, &arn_a);
        (ci["runningTasksCount"] == 1
            && remaining(&ci, "MEMORY")["integerValue"].as_i64() == Some(reg_mem - 128))
        .then_some(())
    });
    let listed = api.aws_json(&["list-tasks", "--desired-status", "STOPPED"]);
    assert_eq!(
        listed["taskArns"],
        serde_json::json!([stop_arn]),
        "{listed:#}"
    );

    // A task that fits nowhere: one failure per instance, with ECS's reason, and no task.
    let big = SLEEPER
        .replace("cluster-sleeper", "cluster-big")
        .replace("\"memory\": \"128\"", "\"memory\": \"120000000\"");
    let big = api.file("big.json", &big);
    api.aws_json(&["register-task-definition", "--cli-input-json", &big]);
    let run = api.aws_json(&[
        "run-task",
        "--task-definition",
        "cluster-big",
        "--launch-type",
        "EC2",
    ]);
    assert_eq!(run["tasks"], serde_json::json!([]), "{run:#}");
    let mut failures: Vec<(String, String)> = run["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["arn"].as_str().unwrap().into(),
                f["reason"].as_str().unwrap().into(),
            )
        })
        .collect();
    failures.sort();
    let mut want = vec![
        (arn_a.clone(), "RESOURCE:MEMORY".to_string()),
        (arn_b.clone(), "RESOURCE:MEMORY".to_string()),
    ];
    want.sort();
    assert_eq!(failures, want);
}

#[test]
fn a_lost_box_s_tasks_are_stopped_by_the_leader_which_fails_over_and_the_box_stops_them_when_back()
{
    let etcd = Etcd::start();
    let fast = ["--leader-ttl", "2", "--lost-instance-after", "2"];
    let api1 = serve_with(&etcd, &fast);
    let api2 = serve_with(&etcd, &fast);
    let (mut a, b) = two_boxes(&etcd, &api1, 3);
    let (arn_a, arn_b) = (a.arn(), b.arn());
    register(&api1, "sleeper.json", SLEEPER);
    let run = api1.aws_json(&[
        "run-task",
        "--task-definition",
        "cluster-sleeper",
        "--launch-type",
        "EC2",
        "--count",
        "2",
        "--placement-constraints",
        "type=distinctInstance",
    ]);
    let on = |ci: &str| -> String {
        run["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["containerInstanceArn"] == ci)
            .unwrap_or_else(|| panic!("no task on {ci}: {run:#}"))["taskArn"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (task_a, task_b) = (on(&arn_a), on(&arn_b));
    for t in [&task_a, &task_b] {
        api1.wait_for(60, "the task RUNNING", || {
            (describe_task(&api1, t)["lastStatus"] == "RUNNING").then_some(())
        });
    }

    // The leader is killed outright: the other serve takes the role within a lease TTL.
    let pids = [api1.server_pid(), api2.server_pid()];
    let leader = api1.wait_for(10, "a leader", || leader_pid(&etcd));
    assert!(pids.contains(&leader), "{leader} not in {pids:?}");
    let (dead, survivor) = if leader == pids[0] {
        (&api1, &api2)
    } else {
        (&api2, &api1)
    };
    let killed = Instant::now();
    let _ = Command::new("kill")
        .args(["-KILL", &dead.server_pid().to_string()])
        .status();
    survivor.wait_for(15, "the other serve leading", || {
        (leader_pid(&etcd) == Some(survivor.server_pid())).then_some(())
    });
    let failover = killed.elapsed();
    eprintln!("leader failover: {failover:?}");
    assert!(failover < Duration::from_secs(2 + 3), "{failover:?}");

    // Box a is cut off (its agent frozen, its task still running there): once its lease
    // has expired and the grace has passed, the new leader stops its task in the cluster.
    let a_pid = a.child.as_ref().unwrap().id().to_string();
    let _ = Command::new("kill").args(["-STOP", &a_pid]).status();
    let t = survivor.wait_for(30, "the lost box's task STOPPED", || {
        let t = describe_task(survivor, &task_a);
        (t["lastStatus"] == "STOPPED").then_some(t)
    });
    assert_eq!(t["stopCode"], "TerminationNotice", "{t:#}");
    let reason = t["stoppedReason"].as_str().unwrap().to_string();
    assert!(
        reason.contains(&arn_a) && reason.contains("lost"),
        "{reason}"
    );
    assert_eq!(describe_task(survivor, &task_b)["lastStatus"], "RUNNING");
    let ci = describe(survivor, &arn_a);
    assert_eq!(ci["agentConnected"], false, "{ci:#}");
    assert_eq!(ci["runningTasksCount"], 0, "{ci:#}");
    let id_a = task_a.rsplit('/').next().unwrap();
    let local = a.mf.json(&["describe-tasks", "--tasks", id_a]);
    assert_eq!(local["tasks"][0]["lastStatus"], "RUNNING", "{local:#}");

    // Box a comes back: it finds the task no longer assigned to it and stops it; the
    // cluster's record keeps the leader's reason.
    let _ = Command::new("kill").args(["-CONT", &a_pid]).status();
    let local = survivor.wait_for(30, "the returned box stopping its task", || {
        let v = a.mf.json(&["describe-tasks", "--tasks", id_a]);
        (v["tasks"][0]["lastStatus"] == "STOPPED").then_some(v)
    });
    let local_reason = local["tasks"][0]["stoppedReason"].as_str().unwrap();
    assert!(
        local_reason.contains("no longer assigned"),
        "{local_reason}"
    );
    until_connected(survivor, &arn_a, true, Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(1));
    let t = describe_task(survivor, &task_a);
    assert_eq!(t["stoppedReason"], reason.as_str(), "{t:#}");
    assert_eq!(describe(survivor, &arn_a)["runningTasksCount"], 0);
    let _ = a.signal("-TERM");
}

#[test]
fn a_service_spreads_over_the_boxes_and_replaces_a_lost_box_s_tasks_on_the_others() {
    let etcd = Etcd::start();
    let api = serve_with(&etcd, &["--lost-instance-after", "1"]);
    let (mut a, b) = two_boxes(&etcd, &api, 3);
    let (arn_a, arn_b) = (a.arn(), b.arn());
    register(&api, "sleeper.json", SLEEPER);
    api.aws_json(&["create-cluster", "--cluster-name", "default"]);
    api.aws_json(&[
        "create-service",
        "--service-name",
        "web",
        "--task-definition",
        "cluster-sleeper",
        "--desired-count",
        "4",
        "--launch-type",
        "EC2",
    ]);
    let placed = api.wait_for(90, "4 tasks RUNNING", || {
        let p = service_placement(&api, "web");
        (p.len() == 4).then_some(p)
    });
    let on = |p: &[String], arn: &str| p.iter().filter(|c| *c == arn).count();
    assert_eq!(
        (on(&placed, &arn_a), on(&placed, &arn_b)),
        (2, 2),
        "{placed:?}"
    );
    let svc = api.service("default", "web");
    assert_eq!(svc["runningCount"], 4, "{svc:#}");

    // Box a's agent is killed: its tasks are stopped in the cluster once its lease and
    // the grace have run out, and the service starts their replacements on box b.
    let killed = Instant::now();
    let _ = a.signal("-KILL");
    let placed = api.wait_for(90, "4 tasks RUNNING on box b", || {
        let p = service_placement(&api, "web");
        (p.len() == 4 && on(&p, &arn_b) == 4).then_some(p)
    });
    eprintln!(
        "killed box -> its service tasks RUNNING elsewhere: {:?}",
        killed.elapsed()
    );
    assert_eq!(on(&placed, &arn_a), 0);
    let svc = api.service("default", "web");
    assert_eq!(svc["runningCount"], 4, "{svc:#}");
    let events: Vec<&str> = svc["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert!(
        events.iter().filter(|m| m.contains("has started")).count() >= 2,
        "{events:#?}"
    );

    // Scaled to 0: every task stops, on the box that runs it.
    api.aws_json(&["update-service", "--service", "web", "--desired-count", "0"]);
    api.wait_for(60, "no task RUNNING", || {
        service_placement(&api, "web").is_empty().then_some(())
    });
    let ci = describe(&api, &arn_b);
    api.wait_for(20, "box b's reservations released", || {
        (describe(&api, &arn_b)["runningTasksCount"] == 0).then_some(())
    });
    assert_eq!(ci["agentConnected"], true);
}

#[test]
fn draining_moves_a_service_off_an_instance_and_deregistering_one_with_tasks_needs_force() {
    let etcd = Etcd::start();
    let api = serve(&etcd);
    let (a, b) = two_boxes(&etcd, &api, 5);
    let (arn_a, arn_b) = (a.arn(), b.arn());
    register(&api, "sleeper.json", SLEEPER);
    api.aws_json(&["create-cluster", "--cluster-name", "default"]);
    api.aws_json(&[
        "create-service",
        "--service-name",
        "drain",
        "--task-definition",
        "cluster-sleeper",
        "--desired-count",
        "2",
        "--launch-type",
        "EC2",
    ]);
    let on = |p: &[String], arn: &str| p.iter().filter(|c| *c == arn).count();
    api.wait_for(90, "1 task RUNNING on each box", || {
        let p = service_placement(&api, "drain");
        (on(&p, &arn_a) == 1 && on(&p, &arn_b) == 1).then_some(())
    });

    // DRAINING: the service's task moves off a, and nothing new is placed there.
    api.aws_json(&[
        "update-container-instances-state",
        "--container-instances",
        &arn_a,
        "--status",
        "DRAINING",
    ]);
    api.wait_for(90, "both tasks RUNNING on b", || {
        let p = service_placement(&api, "drain");
        (p.len() == 2 && on(&p, &arn_b) == 2).then_some(())
    });
    api.wait_for(30, "a empty", || {
        (describe(&api, &arn_a)["runningTasksCount"] == 0).then_some(())
    });
    let run = api.aws_json(&[
        "run-task",
        "--task-definition",
        "cluster-sleeper",
        "--launch-type",
        "EC2",
    ]);
    assert_eq!(
        run["tasks"][0]["containerInstanceArn"],
        arn_b.as_str(),
        "{run:#}"
    );
    let lone = run["tasks"][0]["taskArn"].as_str().unwrap().to_string();

    // b has tasks: deregistering it needs force, which stops them; the service's move to
    // a once a is ACTIVE again.
    let err = api.aws_err(&[
        "deregister-container-instance",
        "--container-instance",
        &arn_b,
    ]);
    assert!(
        err.contains("InvalidParameterException") && err.contains("force"),
        "{err}"
    );
    api.aws_json(&[
        "update-container-instances-state",
        "--container-instances",
        &arn_a,
        "--status",
        "ACTIVE",
    ]);
    let gone = api.aws_json(&[
        "deregister-container-instance",
        "--container-instance",
        &arn_b,
        "--force",
    ]);
    assert_eq!(gone["containerInstance"]["status"], "INACTIVE", "{gone:#}");
    let t = describe_task(&api, &lone);
    assert_eq!(t["lastStatus"], "STOPPED", "{t:#}");
    assert!(
        t["stoppedReason"]
            .as_str()
            .unwrap()
            .contains("deregistered with force"),
        "{t:#}"
    );
    api.wait_for(90, "both service tasks RUNNING on a", || {
        let p = service_placement(&api, "drain");
        (p.len() == 2 && on(&p, &arn_a) == 2).then_some(())
    });
    // b's agent stops what it ran: nothing is left running there.
    let id = lone.rsplit('/').next().unwrap();
    api.wait_for(30, "b's box stopping the task", || {
        let v = b.mf.json(&["describe-tasks", "--tasks", id]);
        (v["tasks"][0]["lastStatus"] == "STOPPED").then_some(())
    });
}

#[test]
fn concurrent_run_tasks_through_two_serves_never_double_book_an_instance() {
    let etcd = Etcd::start();
    let api1 = serve(&etcd);
    let api2 = serve(&etcd);
    let (a, b) = two_boxes(&etcd, &api1, 5);
    // Tasks of a third of an instance's memory: three fit on each, six in all.
    let memory = resource(&describe(&api1, &a.arn()), "MEMORY")["integerValue"]
        .as_i64()
        .unwrap();
    let third = memory / 3;
    let big = SLEEPER
        .replace("cluster-sleeper", "cluster-third")
        .replace("\"memory\": \"128\"", &format!("\"memory\": \"{third}\""));
    for api in [&api1, &api2] {
        let def = api.file("third.json", &big);
        api.aws_json(&["register-task-definition", "--cli-input-json", &def]);
    }
    // Four streams of three RunTasks each, two through each serve, at once.
    let placed: Vec<(String, String)> = std::thread::scope(|s| {
        let streams: Vec<_> = (0..4)
            .map(|i| {
                let api = if i % 2 == 0 { &api1 } else { &api2 };
                s.spawn(move || {
                    let mut got = Vec::new();
                    for _ in 0..3 {
                        let run = api.aws_json(&[
                            "run-task",
                            "--task-definition",
                            "cluster-third",
                            "--launch-type",
                            "EC2",
                        ]);
                        for t in run["tasks"].as_array().unwrap() {
                            got.push((
                                t["taskArn"].as_str().unwrap().to_string(),
                                t["containerInstanceArn"].as_str().unwrap().to_string(),
                            ));
                        }
                        for f in run["failures"].as_array().unwrap() {
                            assert_eq!(f["reason"], "RESOURCE:MEMORY", "{run:#}");
                        }
                    }
                    got
                })
            })
            .collect();
        streams
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect()
    });
    let on = |arn: &str| placed.iter().filter(|(_, c)| c == arn).count();
    assert_eq!((on(&a.arn()), on(&b.arn())), (3, 3), "{placed:?}");
    for box_ in [&a, &b] {
        let ci = describe(&api2, &box_.arn());
        assert_eq!(ci["runningTasksCount"], 3, "{ci:#}");
        assert_eq!(
            remaining(&ci, "MEMORY")["integerValue"].as_i64().unwrap(),
            memory - 3 * third
        );
    }
    for (arn, _) in &placed {
        api2.wait_for(60, "the task RUNNING", || {
            (describe_task(&api2, arn)["lastStatus"] == "RUNNING").then_some(())
        });
    }
}

fn logs(api: &Api, args: &[&str]) -> Value {
    let out = api.aws_in("logs", args);
    assert!(out.status.success(), "aws logs {args:?} failed");
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_logs_of_tasks_on_other_boxes_are_read_through_serve() {
    let etcd = Etcd::start();
    let api = serve(&etcd);
    let (a, b) = two_boxes(&etcd, &api, 5);
    let def = serde_json::json!({
        "family": "cluster-logger",
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["EC2"],
        "cpu": "256",
        "memory": "128",
        "containerDefinitions": [{
            "name": "app",
            "image": "public.ecr.aws/docker/library/busybox:1.36",
            "command": ["sh", "-c", "echo hello from $(hostname); echo second; echo third; sleep 300"],
            "stopTimeout": 2,
            "essential": true,
            "logConfiguration": {"logDriver": "awslogs", "options": {
                "awslogs-group": "/cluster/logger", "awslogs-region": "us-east-1",
                "awslogs-stream-prefix": "ecs", "awslogs-create-group": "true"}}
        }]
    });
    let def = api.file("logger.json", &def.to_string());
    api.aws_json(&["register-task-definition", "--cli-input-json", &def]);
    let run = api.aws_json(&[
        "run-task",
        "--task-definition",
        "cluster-logger",
        "--launch-type",
        "EC2",
        "--count",
        "2",
        "--placement-strategy",
        "type=spread,field=instanceId",
    ]);
    let ids: Vec<String> = run["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            assert_ne!(t["containerInstanceArn"], Value::Null);
            t["taskArn"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    let boxes: std::collections::BTreeSet<&str> = run["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["containerInstanceArn"].as_str().unwrap())
        .collect();
    assert_eq!(boxes.len(), 2, "one task on each box: {run:#}");
    // Each task's stream is read through serve, from the box that runs it.
    for id in &ids {
        let stream = format!("ecs/app/{id}");
        let events = api.wait_for(60, "the task's first line", || {
            // (ResourceNotFoundException until the task has made its stream.)
            let out = api.aws_in(
                "logs",
                &[
                    "get-log-events",
                    "--log-group-name",
                    "/cluster/logger",
                    "--log-stream-name",
                    &stream,
                ],
            );
            let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            let e = v["events"].as_array().cloned().unwrap_or_default();
            (out.status.success() && !e.is_empty()).then_some(e)
        });
        assert!(
            events[0]["message"]
                .as_str()
                .unwrap()
                .starts_with("hello from"),
            "{events:?}"
        );
    }
    // Streams and filtered events of both boxes, in one answer each.
    let streams = logs(
        &api,
        &[
            "describe-log-streams",
            "--log-group-name",
            "/cluster/logger",
        ],
    );
    let mut names: Vec<&str> = streams["logStreams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["logStreamName"].as_str().unwrap())
        .collect();
    names.sort();
    let mut want: Vec<String> = ids.iter().map(|id| format!("ecs/app/{id}")).collect();
    want.sort();
    assert_eq!(names, want);
    let filtered = logs(
        &api,
        &[
            "filter-log-events",
            "--log-group-name",
            "/cluster/logger",
            "--filter-pattern",
            "hello",
        ],
    );
    assert_eq!(
        filtered["events"].as_array().unwrap().len(),
        2,
        "{filtered:#}"
    );
    // Paged one item at a time (the AWS CLI follows nextToken): every event and stream of
    // both boxes, each once, in the order of the unpaged answer.
    let ids_of = |v: &Value, list: &str, key: &str| -> Vec<String> {
        v[list]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e[key].as_str().unwrap().to_string())
            .collect()
    };
    let all = logs(
        &api,
        &["filter-log-events", "--log-group-name", "/cluster/logger"],
    );
    let paged = logs(
        &api,
        &[
            "filter-log-events",
            "--log-group-name",
            "/cluster/logger",
            "--page-size",
            "1",
        ],
    );
    let all_ids = ids_of(&all, "events", "eventId");
    assert_eq!(all_ids.len(), 6, "three lines of each task: {all:#}");
    let unique: std::collections::BTreeSet<&String> = all_ids.iter().collect();
    assert_eq!(unique.len(), 6, "each event its own id: {all_ids:?}");
    assert_eq!(ids_of(&paged, "events", "eventId"), all_ids);
    let paged = logs(
        &api,
        &[
            "describe-log-streams",
            "--log-group-name",
            "/cluster/logger",
            "--page-size",
            "1",
        ],
    );
    let mut paged_names = ids_of(&paged, "logStreams", "logStreamName");
    paged_names.sort();
    assert_eq!(paged_names, want);
    // The boxes' endpoints answer nothing to a caller without serve's or the operator's
    // certificate: over TLS its handshake is refused (no HTTP status; `-k`: the caller's
    // certificate is what is checked here, the box's in tests/cluster_exec.rs), without
    // TLS an unsigned request or one signed with another token is a 403.
    let endpoint = |agent: &Agent| agent.endpoint();
    for agent in [&a, &b] {
        let url = format!("{}/v1/logs/DescribeLogStreams", endpoint(agent));
        let expected = if url.starts_with("https://") {
            "000"
        } else {
            "403"
        };
        for sig in [None, Some("x-minifargate-signature: 1:00")] {
            let mut curl = Command::new("curl");
            curl.args(["-s", "-k", "-o", "/dev/null", "-w", "%{http_code}"])
                .args(["-X", "POST", "-d"])
                .arg(r#"{"logGroupName":"/cluster/logger"}"#);
            if let Some(h) = sig {
                curl.args(["-H", h]);
            }
            let out = curl.arg(&url).output().unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), expected, "{sig:?}");
        }
    }
}

/// tests/console/instances.py in the real browser, as tests/console.rs runs browser.py.
fn console_instances(api: &Api, env: &[(&str, String)]) {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    api.browser("instances.py", &env);
}

#[test]
fn the_console_shows_the_cluster_s_instances_their_tasks_and_a_lost_agent() {
    let etcd = Etcd::start();
    let api = serve(&etcd);
    let mut a = Agent::start_for(&etcd, &api, 3, &[]);
    let b = Agent::start_for(&etcd, &api, 3, &[]);
    let (id_a, id_b) = (a.id(), b.id());
    api.wait_for(20, "both instances listed", || {
        (list(&api, &[]).len() == 2).then_some(())
    });
    register(&api, "sleeper.json", SLEEPER);
    api.aws_json(&["create-cluster", "--cluster-name", "default"]);
    // Three tasks: placed 2 on one box, 1 on the other (the one with fewer tasks first).
    let run = api.aws_json(&[
        "run-task",
        "--task-definition",
        "cluster-sleeper",
        "--count",
        "3",
        "--launch-type",
        "EC2",
    ]);
    let tasks: Vec<Value> = run["tasks"].as_array().unwrap().clone();
    assert_eq!(tasks.len(), 3, "{run:#}");
    for t in &tasks {
        let arn = t["taskArn"].as_str().unwrap();
        api.wait_for(90, "the task RUNNING", || {
            (describe_task(&api, arn)["lastStatus"] == "RUNNING").then_some(())
        });
    }
    let on = |id: &str| {
        tasks
            .iter()
            .filter(|t| t["containerInstanceArn"].as_str().unwrap().ends_with(id))
            .count()
    };
    let (n_a, n_b) = (on(&id_a), on(&id_b));
    assert_eq!(n_a + n_b, 3);
    let task_id = tasks[0]["taskArn"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let task_instance = tasks[0]["containerInstanceArn"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    // Both instances CONNECTED with their runningTasksCount, and a task's detail names its
    // instance.
    console_instances(
        &api,
        &[
            ("PHASE", "connected".into()),
            ("CONNECTED", format!("{id_a},{id_b}")),
            ("COUNTS", format!("{id_a}={n_a},{id_b}={n_b}")),
            ("TASK_ID", task_id),
            ("TASK_INSTANCE", task_instance),
        ],
    );
    // Box a's agent killed: the view shows it disconnected once its lease has run out.
    let _ = a.signal("-KILL");
    a.mf.kill_supervisors();
    console_instances(
        &api,
        &[
            ("PHASE", "disconnected".into()),
            ("CONNECTED", id_b.clone()),
            ("DISCONNECTED", id_a.clone()),
        ],
    );
}

/// MemTotal in MiB, as ECS's agent reads it.
fn mem_total_mib() -> i64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .map(|v| {
            v.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<i64>()
                .unwrap()
                / 1024
        })
        .unwrap()
}

/// Issue 54: an agent configured as ECS's is, with /etc/ecs/ecs.config (here a file of
/// the test's own, --ecs-config), registers what the file says: the cluster, the custom
/// attributes (a flag winning over the file's), MEMORY less ECS_RESERVED_MEMORY, the
/// reserved TCP and UDP ports replacing the defaults; a key this host does not apply is
/// said at start; `memberOf(agentVersion >= …)` compares this product's version.
#[test]
fn an_agent_registers_what_its_ecs_config_says() {
    let etcd = Etcd::start();
    let api = serve(&etcd);
    let mf = common::cli::Mf::new();
    let file = mf.dir.path().join("ecs.config");
    std::fs::write(
        &file,
        "# as user data writes it\n\
         ECS_CLUSTER=prod\n\
         ECS_INSTANCE_ATTRIBUTES={\"stack\": \"blue\", \"zone\": \"a\"}\n\
         ECS_RESERVED_MEMORY=256\n\
         ECS_RESERVED_PORTS=[22, 8080]\n\
         ECS_RESERVED_PORTS_UDP=[\"53\"]\n",
    )
    .unwrap();
    // A JSON array of numbers, as ECS reads it: "53" is refused, naming key and line.
    let out = mf
        .cmd()
        .args(["agent", "--cluster", &etcd.endpoint(), "--ecs-config"])
        .arg(&file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "{}:6: ECS_RESERVED_PORTS_UDP=\"[\\\"53\\\"]\": expected a JSON array",
            file.display()
        )),
        "{err}"
    );
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("[\"53\"]", "[53]")
        + "ECS_CONTAINER_START_TIMEOUT=3m\n";
    std::fs::write(&file, text).unwrap();
    let file_arg = file.display().to_string();
    let agent = Agent::start_in(mf, &etcd, 10, &["zone=b"], &["--ecs-config", &file_arg]);
    let listed =
        common::util::wait_until("the box listed in prod", Duration::from_secs(20), || {
            api.instances_listed(Some("prod")).into_iter().next()
        });
    assert!(listed.contains(":container-instance/prod/"), "{listed}");
    let v = api.aws_json(&[
        "describe-container-instances",
        "--cluster",
        "prod",
        "--container-instances",
        &listed,
    ]);
    let ci = &v["containerInstances"][0];
    assert_eq!(attribute(ci, "stack").unwrap()["value"], "blue", "{ci:#}");
    assert_eq!(
        attribute(ci, "zone").unwrap()["value"],
        "b",
        "the flag wins: {ci:#}"
    );
    assert_eq!(
        resource(ci, "MEMORY")["integerValue"],
        mem_total_mib() - 256
    );
    assert_eq!(
        resource(ci, "PORTS")["stringSetValue"],
        serde_json::json!(["22", "8080"]),
        "ECS_RESERVED_PORTS replaces the defaults: {ci:#}"
    );
    assert_eq!(
        resource(ci, "PORTS_UDP")["stringSetValue"],
        serde_json::json!(["53"])
    );
    assert_eq!(ci["remainingResources"], ci["registeredResources"]);
    // Said at start: the file read, and the key this host does not apply.
    let log = agent.log_text();
    assert!(log.contains(&format!("read {file_arg}")), "{log}");
    assert!(
        log.contains(&format!(
            "{file_arg}:7: ECS_CONTAINER_START_TIMEOUT is not applied here"
        )),
        "{log}"
    );
    // agentVersion is this product's version: memberOf compares it.
    let pv = env!("CARGO_PKG_VERSION");
    for (expr, want) in [
        (format!("agentVersion >= {pv}"), 1),
        (format!("agentVersion > {pv}"), 0),
        ("agentVersion >= 0.0.1".to_string(), 1),
    ] {
        let v = api.aws_json(&[
            "list-container-instances",
            "--cluster",
            "prod",
            "--filter",
            &expr,
        ]);
        assert_eq!(
            v["containerInstanceArns"].as_array().unwrap().len(),
            want,
            "{expr}: {v:#}"
        );
    }
}
