//! Joining a box with a token (issue 73; docs/cluster.md "Joining a box with a token"):
//! `cluster token create` on the control plane's host, `agent --server URL --token TOKEN`
//! on the box, which gets its certificate (and no etcd credentials) from serve's port for
//! boxes (`serve --boxes-listen`) and runs tasks; a token used up, expired, revoked or
//! pinning another CA joins nothing and leaves nothing behind; `cluster remove-box` ends
//! the box's etcd access and its certificate is refused from then on; a stolen box's
//! certificate is refused every attack on the others (the hostile-box test). A real etcd
//! with TLS and users, real serve and agents, the real AWS CLI. Every process stopped by
//! its pid.

use crate::common;

use common::cli::{Mf, bin};
use common::cluster::{Agent, SLEEPER, describe_task, register, serve_with, sleeper_running};
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

pub(crate) fn token(etcd: &Etcd, more: &[&str]) -> String {
    let mut args = vec!["token", "create"];
    args.extend(more);
    let out = operator(etcd, &args);
    assert!(out.status.success(), "token create: {out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// An agent of a new box joining with `token` at `server` as `name`, to its end (it fails
/// to join): its exit status and log.
fn join_fails(server: &str, token: &str, name: &str) -> (Mf, String) {
    let mf = Mf::new();
    let empty = mf.dir.path().join("ecs.config");
    std::fs::write(&empty, "").unwrap();
    let out = mf
        .cmd()
        .args(["agent", "--ecs-config"])
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
    control_plane_with(&[])
}

/// [`control_plane`] with `more` flags of serve's.
pub(crate) fn control_plane_with(
    more: &[&str],
) -> Option<(Etcd, std::path::PathBuf, u16, String, common::api::Api)> {
    let etcd = Etcd::start();
    let Some(pki) = etcd.pki().map(Path::to_path_buf) else {
        eprintln!("MINIFARGATE_TEST_ETCD=plain: no CA to join with, nothing to check");
        return None;
    };
    let port = common::util::free_port();
    let server = format!("https://127.0.0.1:{port}");
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec![
        "--boxes-listen",
        &listen,
        "--cluster-dir",
        pki.to_str().unwrap(),
    ];
    args.extend(more);
    let api = serve_with(&etcd, &args);
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
    let box1 = Agent::start_through(mf, &server, 5, &["--token", &t, "--name", "edge-1"]);
    let arn = box1.arn();
    api.wait_for(30, "the joined box listed", || {
        (api.instances_listed(None) == [arn.clone()]).then_some(())
    });
    let bundle = root.join("agent/bundle");
    assert_eq!(mode(&bundle), 0o700);
    for f in ["ca.crt", "client.crt", "client.key", "etcd-user", "server"] {
        assert_eq!(mode(&bundle.join(f)), 0o600, "{f}");
    }
    // No etcd credentials on the box: serve's port for boxes authenticates for it.
    assert!(!bundle.join("etcd-password").exists());
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
    sleeper_running(&api, "the task RUNNING on the joined box");

    // The token again (a replay): refused, nothing kept on the second box.
    let (_, log) = join_fails(&server, &t, "edge-2");
    assert!(
        log.contains("refused the join (HTTP 403): the token is unknown, revoked or used up"),
        "{log}"
    );
    // A token pinning another CA: nothing is sent.
    let other_pin = format!("MF1{}::{cred}", "0".repeat(64));
    let (_, log) = join_fails(&server, &other_pin, "edge-2");
    assert!(log.contains("presents a CA whose SHA-256 is"), "{log}");
    // The name of a member: refused, and the token not used up by it.
    let t2 = token(&etcd, &[]);
    let (_, log) = join_fails(&server, &t2, "edge-1");
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
    let (_, log) = join_fails(&server, &t2, "edge-2");
    assert!(log.contains("HTTP 403"), "{log}");
    // Expired: joins nothing.
    let t3 = token(&etcd, &["--ttl", "1s"]);
    std::thread::sleep(Duration::from_millis(2100));
    let (_, log) = join_fails(&server, &t3, "edge-2");
    assert!(log.contains("HTTP 403") && log.contains("expired"), "{log}");
    // A garbled token: said so, before anything is sent.
    let (_, log) = join_fails(&server, "MF1abc", "edge-2");
    assert!(log.contains("not a join token"), "{log}");

    // Removed: the box's etcd user is gone (serve has no user left to act as for it), and
    // its certificate is refused at serve's port for boxes, so a restarted agent stops
    // there.
    let out = operator(&etcd, &["remove-box", "edge-1"]);
    assert!(out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("revoked") && said.contains("removed"),
        "{said}"
    );
    let user = etcd.etcdctl(&["user", "get", "minifargate-box-edge-1"]);
    assert!(
        !user.status.success(),
        "the removed box's etcd user is still there: {user:?}"
    );
    let mut box1 = box1;
    box1.signal("-TERM");
    let out = box1
        .mf
        .cmd()
        .args(["agent", "--ecs-config"])
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
    let (_, task) = sleeper_running(&api, "the task RUNNING on the box");
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
    // A box does not authenticate to etcd, as itself or anyone: serve does it for it.
    for user in ["root", "minifargate-box-edge-3"] {
        let (status, body) = call(
            Some(&bundle),
            "/v3/auth/authenticate",
            &format!(r#"{{"name":"{user}","password":"x"}}"#),
            None,
        );
        assert_eq!(status, 403, "{body}");
        assert!(body.contains("does not authenticate"), "{body}");
    }
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
    let (status, body) = call(None, "/v3/kv/range", &tokens, Some("anything"));
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("client certificate is required"), "{body}");
    // The box reads what serve's port lets a box read, and no more: serve's own rights
    // never lend themselves to it, whatever token the box sends.
    for token in [None, Some("a-token-of-someone-else")] {
        let (status, body) = call(Some(&bundle), "/v3/kv/range", &tokens, token);
        assert_eq!(status, 403, "the box read the join tokens: {body}");
        assert!(body.contains("box edge-3 reads only"), "{body}");
    }
    let (status, body) = call(
        Some(&bundle),
        "/v3/kv/range",
        &format!(r#"{{"key":"{}"}}"#, common::cli::b64(b"/minifargate")),
        None,
    );
    assert_eq!(status, 200, "{body}");
    // A joined box has no etcd user: its join and its binding changed nothing of etcd's
    // users and roles (issue 76).
    let user = etcd.etcdctl(&["user", "get", "minifargate-box-edge-3"]);
    assert!(
        !user.status.success(),
        "a joined box has an etcd user: {user:?}"
    );

    // A box joined by an older version has an etcd user, and kept its password in its
    // bundle: restarted, the agent removes the password and says so, and serve's port
    // goes on passing its calls (the user is unused from then on).
    let old = "a-password-an-older-join-sent\n";
    let added = etcd
        .etcdctl_with_bundle(&pki.join("admin"), "30s")
        .args([
            "user",
            "add",
            "minifargate-box-edge-3:a-password",
            "--interactive=false",
        ])
        .output()
        .unwrap();
    assert!(added.status.success(), "{added:?}");
    std::fs::write(bundle.join("etcd-password"), old).unwrap();
    // Restarted without the token: the bundle is enough.
    box3.signal("-TERM");
    box3.without("--token");
    box3.spawn();
    common::cluster::until_connected(&api, &arn, true, Duration::from_secs(30));
    assert!(!bundle.join("etcd-password").exists());
    let log = box3.log_text();
    assert!(
        log.contains("etcd-password") && log.contains("holds no etcd credentials"),
        "{log}"
    );

    // Removed: its certificate refused at the port (every serve follows the removals),
    // and the older version's etcd user deleted.
    let out = operator(&etcd, &["remove-box", "edge-3"]);
    assert!(out.status.success(), "{out:?}");
    let user = etcd.etcdctl(&["user", "get", "minifargate-box-edge-3"]);
    assert!(
        !user.status.success(),
        "the removed box's etcd user: {user:?}"
    );
    let refused = common::util::wait_until(
        "the removed box's calls refused",
        Duration::from_secs(15),
        || {
            let (status, body) = call(Some(&bundle), "/v3/kv/range", &tokens, None);
            (status == 403).then_some(body)
        },
    );
    assert!(
        refused.contains("was removed from the cluster"),
        "{refused}"
    );
    box3.signal("-TERM");
}

/// etcd's JSON for a put of `key` = `value`.
fn put_body(key: &str, value: &[u8]) -> String {
    format!(
        r#"{{"key":"{}","value":"{}"}}"#,
        common::cli::b64(key.as_bytes()),
        common::cli::b64(value)
    )
}

/// What etcd holds at `key` (as the operator), if anything.
fn stored(etcd: &Etcd, key: &str) -> String {
    String::from_utf8_lossy(&etcd.etcdctl(&["get", key, "--print-value-only"]).stdout)
        .trim()
        .to_string()
}

#[test]
fn a_stolen_box_s_certificate_is_refused_every_attack_and_the_cluster_keeps_placing() {
    let Some((etcd, pki, _, server, api)) = control_plane() else {
        return;
    };
    // Two joined boxes: honest `edge-h` runs the tasks; `edge-x` is stolen (its agent
    // runs, and its certificate and key are the attacker's).
    let mut boxes = Vec::new();
    let mut used = Vec::new();
    for name in ["edge-h", "edge-x"] {
        let t = token(&etcd, &[]);
        used.push(t.clone());
        let mut mf = Mf::new();
        mf.mirror_config("public.ecr.aws", &api.registry().host(), true);
        boxes.push(Agent::start_through(
            mf,
            &server,
            5,
            &["--token", &t, "--name", name],
        ));
    }
    let (h, x) = (boxes[0].id(), boxes[1].id());
    let (harn, xarn) = (boxes[0].arn(), boxes[1].arn());
    api.wait_for(30, "both boxes listed", || {
        (api.instances_listed(None).len() == 2).then_some(())
    });
    // The stolen box is drained: every task goes to the honest one.
    api.aws_json(&[
        "update-container-instances-state",
        "--container-instances",
        &xarn,
        "--status",
        "DRAINING",
    ]);
    register(&api, "sleeper.json", SLEEPER);
    let place = |what: &str| {
        let (run, task) = sleeper_running(&api, what);
        assert_eq!(
            run["tasks"][0]["containerInstanceArn"],
            harn.as_str(),
            "{run:#}"
        );
        task
    };
    let first = place("a task RUNNING on the honest box");
    let first_id = first.rsplit('/').next().unwrap().to_string();
    let c = "/minifargate/v1/clusters/default";
    // The honest box's registration and status, the stolen one's status, the task's
    // record, assignment and ledger.
    let snapshot = || -> Vec<String> {
        [
            format!("{c}/instances/{h}"),
            format!("{c}/status/{h}"),
            format!("{c}/status/{x}"),
            format!("{c}/tasks/{first_id}"),
            format!("{c}/assignments/{h}/{first_id}"),
            format!("{c}/ledger/{h}"),
        ]
        .iter()
        .map(|k| stored(&etcd, k))
        .collect()
    };
    let before = snapshot();
    let subnets_before =
        etcd.etcdctl(&["get", "--prefix", "/minifargate/v1/subnets/", "--keys-only"]);

    // The attacker: raw HTTPS with the stolen box's certificate and key.
    let stolen = boxes[1].mf.root.join("agent/bundle");
    let ca = pki.join("ca.crt");
    let call = |path: &str, body: &str| gateway(&server, &ca, Some(&stolen), path, body, None);
    let put = |key: &str, value: &[u8]| call("/v3/kv/put", &put_body(key, value));
    let refused = |what: &str, (status, body): (u16, String), code: u16, says: &str| {
        assert_eq!(status, code, "{what}: {body}");
        assert!(body.contains(says), "{what}: {body}");
    };
    let registration = |id: &str, endpoint: &str| {
        let mut v: serde_json::Value =
            serde_json::from_str(&stored(&etcd, &format!("{c}/instances/{x}"))).unwrap();
        v["id"] = id.into();
        v["endpoint"] = endpoint.into();
        v.to_string().into_bytes()
    };
    // Authenticating as another etcd user, or calling etcd's users and roles.
    refused(
        "authenticate as root",
        call("/v3/auth/authenticate", r#"{"name":"root","password":"x"}"#),
        403,
        "does not authenticate",
    );
    for admin in [
        "/v3/auth/user/add",
        "/v3/auth/role/grant",
        "/v3/auth/enable",
    ] {
        refused(admin, call(admin, "{}"), 403, "not a call a box makes");
    }
    // Another box's keys, and its own status (DRAINING undone).
    refused(
        "the honest box's registration",
        put(&format!("{c}/instances/{h}"), &registration(&h, "tunnel")),
        403,
        "box edge-x writes only",
    );
    for (key, says) in [
        (format!("{c}/status/{h}"), "status is serve's"),
        (format!("{c}/status/{x}"), "status is serve's"),
        (format!("{c}/assignments/{h}/{first_id}"), "the placer's"),
        (format!("{c}/assignments/{x}/{first_id}"), "the placer's"),
        (format!("{c}/tasks/{first_id}"), "not one a box writes"),
        (
            "/minifargate/v1/subnets/edge-h/10.94.200.0-24".to_string(),
            "only under its own prefixes",
        ),
        (
            "/minifargate/v1/boxes/edge-h/claims/default/0123456789abcdef0123456789abcdef"
                .to_string(),
            "only under its own prefixes",
        ),
        (
            "/minifargate/v1/leader".to_string(),
            "not a key a box writes",
        ),
    ] {
        refused(&key, put(&key, b"ACTIVE"), 403, says);
    }
    // Its own registration: oversized, with a direct endpoint, or naming another id.
    let own = format!("{c}/instances/{x}");
    refused(
        "oversized",
        put(&own, &vec![b' '; 70 * 1024]),
        400,
        "over 65536",
    );
    refused(
        "a direct endpoint",
        put(&own, &registration(&x, "https://10.1.2.3:51680")),
        400,
        "registers its endpoint as \\\"tunnel\\\"",
    );
    refused(
        "another id",
        put(&own, &registration(&h, "tunnel")),
        400,
        "the registration names instance",
    );
    // Forged reports of the honest box's task: for the honest box's instance, or for its
    // own (where the task is not assigned).
    let report = |instance: &str| {
        format!(r#"{{"instance":"{instance}","task":{{"lastStatus":"STOPPED"}}}}"#).into_bytes()
    };
    let rkey = format!("/minifargate/v1/boxes/edge-x/reports/default/{first_id}");
    refused(
        "a report for the honest box's instance",
        put(&rkey, &report(&h)),
        403,
        "is not bound to box edge-x",
    );
    refused(
        "a report of a task not its own",
        put(&rkey, &report(&x)),
        403,
        "is not assigned to instance",
    );
    // Subnet claims of the whole address space or a /8; in a transaction too.
    for (last, says) in [
        ("0.0.0.0-0", "names no subnet"),
        ("10.0.0.0-8", "shorter than a /16"),
    ] {
        let key = format!("/minifargate/v1/subnets/edge-x/{last}");
        let holder = format!(r#"{{"cluster":"default","instance":"{x}","address":null}}"#);
        refused(last, put(&key, holder.as_bytes()), 400, says);
        let txn = format!(
            r#"{{"success":[{{"request_put":{{"key":"{}","value":"{}"}}}}]}}"#,
            common::cli::b64(key.as_bytes()),
            common::cli::b64(holder.as_bytes())
        );
        refused(last, call("/v3/kv/txn", &txn), 400, says);
    }
    // Reads (issue 76: a joined box has no etcd user, serve decides what it reads): another
    // box's prefix and instance, the join tokens and the cluster's secrets, the whole
    // keyspace; a watch of it; a transaction whose compare reads another box's key; a
    // range widened in etcd's other spelling of its fields.
    let b64 = |s: &str| common::cli::b64(s.as_bytes());
    let range =
        |key: &str, end: &str| format!(r#"{{"key":"{}","range_end":"{}"}}"#, b64(key), b64(end));
    for (what, body) in [
        (
            "the honest box's prefix",
            range(
                "/minifargate/v1/boxes/edge-h/",
                "/minifargate/v1/boxes/edge-h0",
            ),
        ),
        (
            "the honest box's registration",
            format!(r#"{{"key":"{}"}}"#, b64(&format!("{c}/instances/{h}"))),
        ),
        (
            "the join tokens",
            range(
                "/minifargate/v1/join/tokens/",
                "/minifargate/v1/join/tokens0",
            ),
        ),
        (
            "the agents' token",
            format!(r#"{{"key":"{}"}}"#, b64("/minifargate/v1/token")),
        ),
        (
            "the control plane's rows",
            range("/minifargate/v1/db/rows/", "/minifargate/v1/db/rows0"),
        ),
        (
            "the whole keyspace",
            r#"{"key":"AA==","range_end":"AA=="}"#.to_string(),
        ),
    ] {
        refused(
            what,
            call("/v3/kv/range", &body),
            403,
            "box edge-x reads only",
        );
    }
    refused(
        "a watch of the whole keyspace",
        call(
            "/v3/watch",
            r#"{"create_request":{"key":"AA==","range_end":"AA=="}}"#,
        ),
        403,
        "a watch of every key",
    );
    let compare = format!(
        r#"{{"compare":[{{"key":"{}","target":"VALUE","value":"{}","result":"EQUAL"}}],"success":[{{"request_range":{{"key":"{}"}}}}]}}"#,
        b64("/minifargate/v1/join/tokens/x"),
        b64("guess"),
        b64(&format!("{c}/instances/{x}"))
    );
    refused(
        "a compare of another key",
        call("/v3/kv/txn", &compare),
        403,
        "a transaction's compare of",
    );
    refused(
        "rangeEnd",
        call(
            "/v3/kv/range",
            &format!(
                r#"{{"key":"{}","rangeEnd":"AA=="}}"#,
                b64("/minifargate/v1/boxes/edge-x/")
            ),
        ),
        400,
        "rangeEnd",
    );
    // Leases: the honest box's (its liveness key's), kept alive, revoked or attached.
    let listed = etcd.etcdctl(&["get", &format!("{c}/alive/{h}"), "-w", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let lease = v["kvs"][0]["lease"]
        .as_i64()
        .expect("the honest box's lease");
    for path in ["/v3/lease/keepalive", "/v3/lease/revoke"] {
        refused(
            path,
            call(path, &format!(r#"{{"ID":"{lease}"}}"#)),
            403,
            "not a lease granted to box edge-x",
        );
    }
    let attached = format!(
        r#"{{"key":"{}","value":"{}","lease":"{lease}"}}"#,
        b64(&format!("{c}/alive/{x}")),
        b64("host")
    );
    refused(
        "a put on the honest box's lease",
        call("/v3/kv/put", &attached),
        403,
        "put attached to lease",
    );

    // The tunnels: a relay to the honest box, a tunnel for its instance.
    let (status, body) = crate::cluster_tunnel::upgrade_as(
        &server,
        &ca,
        &stolen,
        &format!("/v1/boxes/default/{h}/dial"),
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("reaches no other box"), "{body}");
    let (status, body) = crate::cluster_tunnel::upgrade_as(
        &server,
        &ca,
        &stolen,
        &format!("/v1/tunnel?cluster=default&instance={h}"),
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("holds no container instance"), "{body}");
    // A replayed token, and a join under the honest box's name.
    let (_, log) = join_fails(&server, &used[1], "edge-y");
    assert!(
        log.contains("the token is unknown, revoked or used up"),
        "{log}"
    );
    let t = token(&etcd, &[]);
    let (_, log) = join_fails(&server, &t, "edge-h");
    assert!(
        log.contains("HTTP 409") && log.contains("is a member already"),
        "{log}"
    );

    // Nothing changed, and the cluster still places on the honest box.
    let after = snapshot();
    assert_eq!(before[..3], after[..3]);
    assert_eq!(after[2], "DRAINING");
    assert!(after[3].contains(&h), "the task's record: {}", after[3]);
    assert!(!after[4].is_empty() && !after[5].is_empty(), "{after:?}");
    let subnets_after =
        etcd.etcdctl(&["get", "--prefix", "/minifargate/v1/subnets/", "--keys-only"]);
    assert_eq!(subnets_before.stdout, subnets_after.stdout);
    assert_eq!(describe_task(&api, &first)["lastStatus"], "RUNNING");
    assert_eq!(common::cluster::instance(&api, &xarn)["status"], "DRAINING");
    place("another task RUNNING on the honest box after the attacks");
    assert_eq!(
        common::cluster::instance(&api, &harn)["agentConnected"],
        true
    );
    for mut b in boxes {
        b.signal("-TERM");
    }
}
