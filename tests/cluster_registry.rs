//! ECR in cluster mode (issue 57, docs/registry.md "A cluster's boxes"): an image pushed
//! with skopeo to `serve --cluster`'s registry runs, by its repository URI, on a box that
//! did not push it, a network namespace of its own reaching serve over the test's Lan,
//! with nothing configured on the box: serve advertises its registry in etcd (address,
//! CA, a pull-only token), the box's agent reads it, and the box's pull verifies serve's
//! certificate with that CA.

mod common;

use common::api::Api;
use common::etcd::Etcd;
use common::image::{Compression, Layout, busybox_layer};
use common::netbox::{Lan, NetBox};
use common::registry::skopeo;
use serde_json::{Value, json};

fn ecr(api: &Api, args: &[&str]) -> Value {
    let out = api.aws_in("ecr", args);
    assert!(
        out.status.success(),
        "aws ecr {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    if out.stdout.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(&out.stdout).unwrap()
}

fn describe_task(api: &Api, arn: &str) -> Value {
    api.aws_json(&["describe-tasks", "--tasks", arn])["tasks"][0].clone()
}

#[test]
fn a_box_that_did_not_push_runs_the_repository_uri_from_serve_s_registry() {
    let mut lan = Lan::new();
    let etcd = Etcd::start_for(&[&lan.gateway.to_string()]);
    // The address the box reaches serve's registry at: a relay on the Lan, bound first
    // so that serve advertises it (and its certificate names it).
    let relay = std::net::TcpListener::bind((lan.gateway, 0)).unwrap();
    let at = relay.local_addr().unwrap().to_string();
    let endpoint = etcd.endpoint();
    let serve_tls = etcd.serve_args();
    let mut args = vec!["--cluster", endpoint.as_str()];
    args.extend(serve_tls.iter().map(String::as_str));
    let api = Api::start_env(
        busybox_layer(Compression::Gzip, "ecr-cluster"),
        &args,
        &[("MINIFARGATE_REGISTRY_ADVERTISE", &at)],
    );
    let host = api.endpoint.trim_start_matches("http://").to_string();
    lan.forward_from(relay, host.parse().unwrap());
    let etcd_on_lan = lan.forward_url(&endpoint);

    // One box, on the Lan: its own state, no registry configuration for the ECR host.
    let mut b = NetBox::new(&mut lan);
    let mut agent: Vec<String> = etcd.agent_args();
    agent.extend(
        [
            "--cluster",
            &etcd_on_lan,
            "--lease-ttl",
            "5",
            "--task-range",
            &lan.task_range(),
            "--box-prefix",
            "28",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    b.start_agent(&agent);
    api.wait_for(30, "the box listed", || {
        (api.instances_listed(None).len() == 1).then_some(())
    });

    // The guide's loop, against serve: create-repository, get-login-password, push.
    let repo = ecr(&api, &["create-repository", "--repository-name", "cl/app"]);
    let uri = repo["repository"]["repositoryUri"]
        .as_str()
        .unwrap()
        .to_string();
    let out = api.aws_in("ecr", &["get-login-password"]);
    assert!(out.status.success());
    let pw = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let work = tempfile::tempdir().unwrap();
    let mut l = Layout::new(&work.path().join("app"));
    let img = l.add_image(
        "linux/amd64",
        &[busybox_layer(
            Compression::Gzip,
            "from-the-cluster-registry",
        )],
    );
    l.tag_image("t", &img);
    let mut c = skopeo();
    c.args(["copy", "--dest-tls-verify=false", "--preserve-digests"])
        .args(["--dest-creds", &format!("AWS:{pw}")])
        .arg(format!("oci:{}:t", work.path().join("app").display()))
        .arg(format!("docker://{host}/cl/app:v1"));
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The box's agent wrote what serve advertised: its Lan address, its CA, a token.
    let file = b.mf.root.join("registry/cluster.json");
    let ad: Value = api.wait_for(30, "the box's registry/cluster.json", || {
        let v: Value = serde_json::from_slice(&std::fs::read(&file).ok()?).ok()?;
        (v["registries"].as_array()?.len() == 1).then_some(v)
    });
    let r = &ad["registries"][0];
    assert_eq!(r["endpoint"], at.as_str(), "{ad:#}");
    assert!(
        r["caPem"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----")
    );
    // The box's token pulls and does not push (as an ECS instance role on ECR).
    let token = r["password"].as_str().unwrap();
    let out = std::process::Command::new("curl")
        .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
        .args(["--noproxy", "*", "-u", &format!("AWS:{token}")])
        .arg(format!("https://{host}/v2/cl/app/blobs/uploads/"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "403");
    let out = std::process::Command::new("curl")
        .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(["--noproxy", "*", "-u", &format!("AWS:{token}")])
        .arg(format!("https://{host}/v2/cl/app/manifests/v1"))
        .args(["-H", "Accept: application/vnd.oci.image.manifest.v1+json"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");

    // A task definition naming the repository URI runs on the box.
    let td = json!({
        "family": "ecr-cluster",
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["EC2"],
        "cpu": "128",
        "memory": "64",
        "executionRoleArn": "arn:aws:iam::000000000000:role/ecsTaskExecutionRole",
        "containerDefinitions": [{
            "name": "main",
            "image": format!("{uri}:v1"),
            "command": ["sh", "-c", "grep -q from-the-cluster-registry /etc/minifargate-marker && exec sleep 600"],
            "stopTimeout": 2,
            "essential": true
        }]
    });
    let f = api.file("ecr-cluster.json", &td.to_string());
    api.aws_json(&["register-task-definition", "--cli-input-json", &f]);
    let run = api.aws_json(&[
        "run-task",
        "--task-definition",
        "ecr-cluster",
        "--launch-type",
        "EC2",
    ]);
    assert_eq!(run["failures"], json!([]), "{run:#}");
    let arn = run["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    let t = api.wait_for(120, "the task RUNNING", || {
        let t = describe_task(&api, &arn);
        assert_ne!(
            t["lastStatus"],
            "STOPPED",
            "{t:#}\nagent log:\n{}",
            std::fs::read_to_string(b.log()).unwrap_or_default()
        );
        (t["lastStatus"] == "RUNNING").then_some(t)
    });
    assert_eq!(t["containerInstanceArn"], b.arn().as_str(), "{t:#}");
    assert_eq!(
        t["containers"][0]["imageDigest"],
        img.manifest_digest.as_str(),
        "{t:#}"
    );
    // The pull was the registry's: ECR records it.
    let images = ecr(&api, &["describe-images", "--repository-name", "cl/app"]);
    assert!(
        images["imageDetails"][0]["lastRecordedPullTime"].is_number(),
        "{images:#}"
    );

    api.aws_json(&["stop-task", "--task", &arn]);
    api.wait_for(60, "the task STOPPED", || {
        (describe_task(&api, &arn)["lastStatus"] == "STOPPED").then_some(())
    });

    // serve killed outright: its advertisement goes with its lease (10 s), and the box
    // stops pointing its pulls at it.
    let killed = std::time::Instant::now();
    let out = std::process::Command::new("kill")
        .args(["-KILL", &api.server_pid().to_string()])
        .output()
        .unwrap();
    assert!(out.status.success());
    api.wait_for(30, "the box forgetting the killed serve's registry", || {
        let v: Value = serde_json::from_slice(&std::fs::read(&file).ok()?).ok()?;
        v["registries"].as_array()?.is_empty().then_some(())
    });
    let gone = killed.elapsed();
    eprintln!("the box forgot the killed serve's registry {gone:?} after the kill");
    assert!(gone < std::time::Duration::from_secs(15), "{gone:?}");
}
