//! Joining a box with a token (issue 73; docs/cluster.md "Joining a box with a token"):
//! `cluster token create` on the control plane's host, `agent --server URL --token TOKEN`
//! on the box, which gets its certificate and etcd user from serve's port for boxes
//! (`serve --boxes-listen`) and runs tasks; a token used up, expired, revoked or pinning
//! another CA joins nothing and leaves nothing behind; `cluster remove-box` ends the box's
//! etcd access and its certificate is refused from then on. A real etcd with TLS and
//! users, real serve and agents, the real AWS CLI. Every process stopped by its pid.

use crate::common;

use common::cli::{Mf, bin};
use common::cluster::{Agent, SLEEPER, describe_task, register, serve_with};
use common::etcd::Etcd;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

/// `minifargate cluster ARGS` as the operator (the cluster's directory and etcd).
fn operator(etcd: &Etcd, args: &[&str]) -> Output {
    Command::new(bin())
        .arg("cluster")
        .args(args)
        .arg("--dir")
        .arg(etcd.pki().unwrap())
        .args(["--etcd", &etcd.endpoint()])
        .output()
        .expect("run minifargate cluster")
}

fn token(etcd: &Etcd, more: &[&str]) -> String {
    let mut args = vec!["token", "create"];
    args.extend(more);
    let out = operator(etcd, &args);
    assert!(out.status.success(), "token create: {out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// An agent of a new box joining with `token` at `server` as `name`, to its end (it fails
/// to join): its exit status and log.
fn join_fails(etcd: &Etcd, server: &str, token: &str, name: &str) -> (Mf, String) {
    let mf = Mf::new();
    let empty = mf.dir.path().join("ecs.config");
    std::fs::write(&empty, "").unwrap();
    let out = mf
        .cmd()
        .args(["agent", "--cluster", &etcd.endpoint(), "--ecs-config"])
        .arg(&empty)
        .args(["--server", server, "--token", token, "--name", name])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "the join of {name} succeeded: {log}");
    // Nothing kept: no bundle, no half-made directory beside it.
    let agent = mf.root.join("agent");
    let left: Vec<_> = std::fs::read_dir(&agent)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        !left
            .iter()
            .any(|f| f.to_string_lossy().starts_with("bundle")),
        "a failed join left {left:?} in {}",
        agent.display()
    );
    (mf, log)
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// etcd with TLS and users, and a serve with its port for boxes: etcd, the cluster's
/// directory, the port and its URL, and serve's API; `None` on a plain etcd
/// (MINIFARGATE_TEST_ETCD=plain), which has no CA to join with.
fn control_plane() -> Option<(Etcd, std::path::PathBuf, u16, String, common::api::Api)> {
    let etcd = Etcd::start();
    let Some(pki) = etcd.pki().map(Path::to_path_buf) else {
        eprintln!("MINIFARGATE_TEST_ETCD=plain: no CA to join with, nothing to check");
        return None;
    };
    let port = common::util::free_port();
    let server = format!("https://127.0.0.1:{port}");
    let api = serve_with(
        &etcd,
        &[
            "--boxes-listen",
            &format!("127.0.0.1:{port}"),
            "--cluster-dir",
            pki.to_str().unwrap(),
        ],
    );
    Some((etcd, pki, port, server, api))
}

#[test]
fn a_box_joins_with_a_token_runs_tasks_and_is_refused_once_removed() {
    let Some((etcd, pki, _, server, api)) = control_plane() else {
        return;
    };

    // A token of one use: printed once; the list shows it without its secret.
    let t = token(&etcd, &["--description", "edge one"]);
    assert!(t.starts_with("MF1") && t.contains("::"), "{t}");
    let (_, cred) = t.split_once("::").unwrap();
    let (id, secret) = cred.split_once('.').unwrap();
    let list = operator(&etcd, &["token", "list"]);
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(
        listed.contains(id) && listed.contains("edge one"),
        "{listed}"
    );
    assert!(
        !listed.contains(secret),
        "the list shows the secret: {listed}"
    );
    // etcd keeps the secret's hash only.
    let stored = etcd.etcdctl(&["get", "--prefix", "/minifargate/v1/join/tokens/"]);
    assert!(
        !String::from_utf8_lossy(&stored.stdout).contains(secret),
        "{stored:?}"
    );

    // The box joins: no bundle copied, only the token. It registers and runs a task.
    let mut mf = Mf::new();
    mf.mirror_config("public.ecr.aws", &api.registry().host(), true);
    let root = mf.root.clone();
    let box1 = Agent::start_on(
        mf,
        &etcd.endpoint(),
        5,
        &[],
        &["--server", &server, "--token", &t, "--name", "edge-1"],
    );
    let arn = box1.arn();
    api.wait_for(30, "the joined box listed", || {
        (api.instances_listed(None) == [arn.clone()]).then_some(())
    });
    let bundle = root.join("agent/bundle");
    assert_eq!(mode(&bundle), 0o700);
    for f in [
        "ca.crt",
        "client.crt",
        "client.key",
        "etcd-user",
        "etcd-password",
    ] {
        assert_eq!(mode(&bundle.join(f)), 0o600, "{f}");
    }
    assert_eq!(
        std::fs::read_to_string(bundle.join("etcd-user"))
            .unwrap()
            .trim(),
        "minifargate-box-edge-1"
    );
    // The certificate names the box; the CA is the cluster's.
    let issued = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(bundle.join("client.crt"))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&issued.stdout).contains("URI:urn:minifargate:box:edge-1"),
        "{issued:?}"
    );
    let verified = Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(pki.join("ca.crt"))
        .arg(bundle.join("client.crt"))
        .output()
        .unwrap();
    assert!(verified.status.success(), "{verified:?}");
    register(&api, "sleeper.json", SLEEPER);
    let run = api.aws_json(&[
        "run-task",
        "--task-definition",
        "cluster-sleeper",
        "--launch-type",
        "EC2",
    ]);
    let task = run["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    api.wait_for(60, "the task RUNNING on the joined box", || {
        (describe_task(&api, &task)["lastStatus"] == "RUNNING").then_some(())
    });

    // The token again (a replay): refused, nothing kept on the second box.
    let (_, log) = join_fails(&etcd, &server, &t, "edge-2");
    assert!(
        log.contains("refused the join (HTTP 403): the token is unknown, revoked or used up"),
        "{log}"
    );
    // A token pinning another CA: nothing is sent.
    let other_pin = format!("MF1{}::{cred}", "0".repeat(64));
    let (_, log) = join_fails(&etcd, &server, &other_pin, "edge-2");
    assert!(log.contains("presents a CA whose SHA-256 is"), "{log}");
    // The name of a member: refused, and the token not used up by it.
    let t2 = token(&etcd, &[]);
    let (_, log) = join_fails(&etcd, &server, &t2, "edge-1");
    assert!(
        log.contains("HTTP 409") && log.contains("is a member already"),
        "{log}"
    );
    let id2 = t2.split("::").nth(1).unwrap().split('.').next().unwrap();
    let listed = String::from_utf8_lossy(&operator(&etcd, &["token", "list"]).stdout).to_string();
    assert!(
        listed.contains(id2),
        "a refused join used the token: {listed}"
    );
    // Revoked: joins nothing.
    let out = operator(&etcd, &["token", "revoke", id2]);
    assert!(out.status.success(), "{out:?}");
    let (_, log) = join_fails(&etcd, &server, &t2, "edge-2");
    assert!(log.contains("HTTP 403"), "{log}");
    // Expired: joins nothing.
    let t3 = token(&etcd, &["--ttl", "1s"]);
    std::thread::sleep(Duration::from_millis(2100));
    let (_, log) = join_fails(&etcd, &server, &t3, "edge-2");
    assert!(log.contains("HTTP 403") && log.contains("expired"), "{log}");
    // A garbled token: said so, before anything is sent.
    let (_, log) = join_fails(&etcd, &server, "MF1abc", "edge-2");
    assert!(log.contains("not a join token"), "{log}");

    // Removed: the box's etcd user is gone (its password opens nothing), and its
    // certificate is refused at serve's port for boxes, so a restarted agent stops there.
    let out = operator(&etcd, &["remove-box", "edge-1"]);
    assert!(out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("revoked") && said.contains("removed"),
        "{said}"
    );
    let as_box = etcd
        .etcdctl_with_bundle(&bundle, "5s")
        .args(["get", "/minifargate"])
        .output()
        .unwrap();
    assert!(
        !as_box.status.success()
            && String::from_utf8_lossy(&as_box.stderr).contains("authentication failed"),
        "the removed box still reads etcd: {as_box:?}"
    );
    let mut box1 = box1;
    box1.signal("-TERM");
    let out = box1
        .mf
        .cmd()
        .args(["agent", "--cluster", &etcd.endpoint(), "--ecs-config"])
        .arg(box1.mf.dir.path().join("ecs.config"))
        .args(["--server", &server, "--token", &t])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{log}");
    assert!(
        log.contains("was removed from the cluster") && log.contains("join again"),
        "{log}"
    );
}

/// A call of serve's port for boxes with `curl`, as the box whose bundle is `cert` (none:
/// no client certificate), with etcd token `token`: its HTTP status and body.
fn gateway(
    server: &str,
    ca: &Path,
    cert: Option<&Path>,
    call: &str,
    body: &str,
    token: Option<&str>,
) -> (u16, String) {
    let mut c = Command::new("curl");
    c.args([
        "-s",
        "--noproxy",
        "*",
        "--max-time",
        "10",
        "-w",
        "\n%{http_code}",
    ])
    .args([
        "-H",
        "content-type: application/json",
        "--data-binary",
        body,
    ])
    .arg("--cacert")
    .arg(ca);
    if let Some(dir) = cert {
        c.arg("--cert")
            .arg(dir.join("client.crt"))
            .arg("--key")
            .arg(dir.join("client.key"));
    }
    if let Some(t) = token {
        c.args(["-H", &format!("authorization: {t}")]);
    }
    let out = c.arg(format!("{server}{call}")).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    (status.trim().parse().unwrap_or(0), body.to_string())
}

/// The remote ports of the established TCP connections of process `pid`.
fn peer_ports(pid: u32) -> Vec<u16> {
    let out = Command::new("ss").args(["-Htnp"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&format!("pid={pid},")))
        .filter_map(|l| {
            l.split_whitespace()
                .nth(4)?
                .rsplit(':')
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .parse()
        .unwrap()
}

#[test]
fn a_joined_box_reaches_the_store_only_through_serve_s_port_which_passes_only_its_own_calls() {
    let Some((etcd, pki, port, server, api)) = control_plane() else {
        return;
    };

    // The box is given serve's port and a token, no etcd endpoint.
    let t = token(&etcd, &[]);
    let mut mf = Mf::new();
    mf.mirror_config("public.ecr.aws", &api.registry().host(), true);
    let root = mf.root.clone();
    let mut box3 = Agent::start_through(mf, &server, 5, &["--token", &t, "--name", "edge-3"]);
    let arn = box3.arn();
    api.wait_for(30, "the box listed", || {
        (api.instances_listed(None) == [arn.clone()]).then_some(())
    });
    register(&api, "sleeper.json", SLEEPER);
    let run = api.aws_json(&[
        "run-task",
        "--task-definition",
        "cluster-sleeper",
        "--launch-type",
        "EC2",
    ]);
    let task = run["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    api.wait_for(60, "the task RUNNING on the box", || {
        (describe_task(&api, &task)["lastStatus"] == "RUNNING").then_some(())
    });
    // Its connections: to serve's port for boxes, none to etcd.
    let pid = box3.child.as_ref().unwrap().id();
    let ports = peer_ports(pid);
    assert!(
        ports.contains(&port),
        "the agent has no connection to serve's port {port}: {ports:?}"
    );
    assert!(
        !ports.contains(&port_of(&etcd.endpoint())),
        "the agent connects to etcd ({}) itself: {ports:?}",
        etcd.endpoint()
    );
    // Stopped through the same port: the box's report reaches serve.
    api.aws_json(&["stop-task", "--task", &task, "--reason", "gateway test"]);
    api.wait_for(60, "the task STOPPED", || {
        (describe_task(&api, &task)["lastStatus"] == "STOPPED").then_some(())
    });

    // What the port passes on, and what not, with the box's own certificate.
    let bundle = root.join("agent/bundle");
    let ca = pki.join("ca.crt");
    let call = |cert: Option<&Path>, call: &str, body: &str, token: Option<&str>| {
        gateway(&server, &ca, cert, call, body, token)
    };
    let (status, body) = call(
        Some(&bundle),
        "/v3/auth/user/add",
        r#"{"name":"evil","password":"x"}"#,
        None,
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("not a call a box makes"), "{body}");
    let (status, body) = call(
        Some(&bundle),
        "/v3/auth/authenticate",
        r#"{"name":"root","password":"x"}"#,
        None,
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("only as its own etcd user"), "{body}");
    let range = |key: &str, end: &str| {
        format!(
            r#"{{"key":"{}","range_end":"{}"}}"#,
            common::cli::b64(key.as_bytes()),
            common::cli::b64(end.as_bytes())
        )
    };
    let tokens = range(
        "/minifargate/v1/join/tokens/",
        "/minifargate/v1/join/tokens0",
    );
    let (status, body) = call(Some(&bundle), "/v3/kv/range", &tokens, None);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("authenticate first"), "{body}");
    let (status, body) = call(None, "/v3/kv/range", &tokens, Some("anything"));
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("client certificate is required"), "{body}");
    // As itself, the box reads what etcd's RBAC gives its user, and no more: serve's own
    // rights never lend themselves to it.
    let password = std::fs::read_to_string(bundle.join("etcd-password")).unwrap();
    let (status, body) = call(
        Some(&bundle),
        "/v3/auth/authenticate",
        &format!(
            r#"{{"name":"minifargate-box-edge-3","password":"{}"}}"#,
            password.trim()
        ),
        None,
    );
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let etcd_token = v["token"].as_str().unwrap().to_string();
    let (status, body) = call(Some(&bundle), "/v3/kv/range", &tokens, Some(&etcd_token));
    assert_ne!(status, 200, "the box read the join tokens: {body}");
    assert!(body.contains("permission denied"), "{body}");
    let (status, body) = call(
        Some(&bundle),
        "/v3/kv/range",
        &format!(r#"{{"key":"{}"}}"#, common::cli::b64(b"/minifargate")),
        Some(&etcd_token),
    );
    assert_eq!(status, 200, "{body}");

    // Restarted without the token: the bundle is enough.
    box3.signal("-TERM");
    box3.without("--token");
    box3.spawn();
    common::cluster::until_connected(&api, &arn, true, Duration::from_secs(30));

    // Removed: its certificate refused at the port (within the port's 5 s memory of it).
    let out = operator(&etcd, &["remove-box", "edge-3"]);
    assert!(out.status.success(), "{out:?}");
    let refused = common::util::wait_until(
        "the removed box's calls refused",
        Duration::from_secs(15),
        || {
            let (status, body) = call(Some(&bundle), "/v3/kv/range", &tokens, Some(&etcd_token));
            (status == 403).then_some(body)
        },
    );
    assert!(
        refused.contains("was removed from the cluster"),
        "{refused}"
    );
    box3.signal("-TERM");
}
