//! ECR in cluster mode (issue 57, docs/registry.md "A cluster's boxes"): an image pushed
//! with skopeo to `serve --cluster`'s registry runs, by its repository URI, on a box that
//! did not push it, a network namespace of its own reaching serve over the test's Lan,
//! with nothing configured on the box: serve advertises its registry in etcd (address,
//! CA, a pull-only token), the box's agent reads it, and the box's pull verifies serve's
//! certificate with that CA.

use crate::common;

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

/// `aws ecr get-login-password` through `api`.
fn password(api: &Api) -> String {
    let out = api.aws_in("ecr", &["get-login-password"]);
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// `host:port` of `api`'s registry.
fn host_of(api: &Api) -> String {
    api.endpoint.trim_start_matches("http://").to_string()
}

/// skopeo copy of `src` to `dest`, with `api`'s credentials on the registry's side.
fn skopeo_copy(api: &Api, src: &str, dest: &str) -> std::process::Output {
    let creds = format!("AWS:{}", password(api));
    let mut c = skopeo();
    c.args(["copy", "--src-tls-verify=false", "--dest-tls-verify=false"])
        .arg("--preserve-digests");
    if src.starts_with("docker://") {
        c.args(["--src-creds", &creds]);
    } else {
        c.args(["--dest-creds", &creds]);
    }
    c.args([src, dest]).output().unwrap()
}

/// The images of `repo` as `api` describes them: (digest, tags), sorted.
fn images_of(api: &Api, repo: &str) -> Vec<(String, Vec<String>)> {
    let out = api.aws_in("ecr", &["describe-images", "--repository-name", repo]);
    if !out.status.success() {
        return Vec::new();
    }
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut out: Vec<(String, Vec<String>)> = v["imageDetails"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let mut tags: Vec<String> = i["imageTags"]
                .as_array()
                .map(|t| t.iter().map(|t| t.as_str().unwrap().to_string()).collect())
                .unwrap_or_default();
            tags.sort();
            (i["imageDigest"].as_str().unwrap().to_string(), tags)
        })
        .collect();
    out.sort();
    out
}

/// One registry for the whole cluster (docs/registry.md "One registry for the whole
/// cluster"): a repository created and an image pushed through one serve are described
/// and pulled through another, which fetches the blobs from the first; a tag pushed
/// through the second is the first's too; with the first killed, the second serves what
/// it holds and answers BLOB_UNKNOWN for a blob only the first held.
#[test]
fn repositories_and_tags_are_the_cluster_s_and_a_serve_fetches_blobs_it_lacks_from_another() {
    let etcd = Etcd::start();
    let a = common::cluster::serve(&etcd);
    let b = common::cluster::serve(&etcd);
    let (host_a, host_b) = (host_of(&a), host_of(&b));

    ecr(&a, &["create-repository", "--repository-name", "one/app"]);
    let repos = b.wait_for(10, "the repository through the other serve", || {
        let out = b.aws_in(
            "ecr",
            &["describe-repositories", "--repository-names", "one/app"],
        );
        out.status
            .success()
            .then(|| serde_json::from_slice::<Value>(&out.stdout).unwrap())
    });
    assert_eq!(repos["repositories"][0]["repositoryName"], "one/app");

    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("app");
    let mut l = Layout::new(&dir);
    let v1 = l.add_image(
        "linux/amd64",
        &[busybox_layer(Compression::Gzip, "pushed-to-a")],
    );
    l.tag_image("v1", &v1);
    let v3 = l.add_image(
        "linux/amd64",
        &[busybox_layer(Compression::Gzip, "only-on-a")],
    );
    l.tag_image("v3", &v3);
    let v2 = l.add_image(
        "linux/amd64",
        &[busybox_layer(Compression::Gzip, "pushed-to-b")],
    );
    l.tag_image("v2", &v2);
    for tag in ["v1", "v3"] {
        let out = skopeo_copy(
            &a,
            &format!("oci:{}:{tag}", dir.display()),
            &format!("docker://{host_a}/one/app:{tag}"),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // B describes what was pushed to A.
    let want = vec![
        (v1.manifest_digest.clone(), vec!["v1".to_string()]),
        (v3.manifest_digest.clone(), vec!["v3".to_string()]),
    ];
    let mut want_sorted = want.clone();
    want_sorted.sort();
    let pushed = std::time::Instant::now();
    b.wait_for(10, "the images through the other serve", || {
        (images_of(&b, "one/app") == want_sorted).then_some(())
    });
    eprintln!(
        "B listed A's push {:?} after it (one describe-images call: {:?})",
        pushed.elapsed(),
        {
            let t = std::time::Instant::now();
            images_of(&b, "one/app");
            t.elapsed()
        }
    );

    // B pulls v1: it fetched the manifest and the blobs from A.
    let layer = v1.layers[0]
        .digest
        .trim_start_matches("sha256:")
        .to_string();
    let on_b = b.mf.root.join("registry/blobs/sha256").join(&layer);
    assert!(!on_b.exists());
    let pulled = work.path().join("pulled");
    let first = std::time::Instant::now();
    let out = skopeo_copy(
        &b,
        &format!("docker://{host_b}/one/app:v1"),
        &format!("oci:{}:v1", pulled.display()),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first = first.elapsed();
    assert!(on_b.exists(), "B holds the layer it fetched from A");
    let second = std::time::Instant::now();
    let out = skopeo_copy(
        &b,
        &format!("docker://{host_b}/one/app:v1"),
        &format!("oci:{}:v1", work.path().join("pulled2").display()),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "skopeo pull through B: {first:?} fetching from A, {:?} from B's copy",
        second.elapsed()
    );
    assert!(
        pulled.join("blobs/sha256").join(&layer).exists(),
        "the pulled image has the layer"
    );

    // A tag pushed through B is A's too, and A pulls it (fetching from B).
    let out = skopeo_copy(
        &b,
        &format!("oci:{}:v2", dir.display()),
        &format!("docker://{host_b}/one/app:v2"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    a.wait_for(10, "B's tag through A", || {
        images_of(&a, "one/app")
            .iter()
            .any(|(d, t)| *d == v2.manifest_digest && t == &["v2".to_string()])
            .then_some(())
    });
    let out = skopeo_copy(
        &a,
        &format!("docker://{host_a}/one/app:v2"),
        &format!("oci:{}:v2", pulled.display()),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // An IMMUTABLE repository's tag, pushed through A, is B's too: B refuses another
    // image over it (and each push is checked again in etcd's transaction).
    ecr(
        &a,
        &[
            "create-repository",
            "--repository-name",
            "one/fixed",
            "--image-tag-mutability",
            "IMMUTABLE",
        ],
    );
    let out = skopeo_copy(
        &a,
        &format!("oci:{}:v1", dir.display()),
        &format!("docker://{host_a}/one/fixed:t"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    b.wait_for(10, "the immutable tag through B", || {
        (!images_of(&b, "one/fixed").is_empty()).then_some(())
    });
    let out = skopeo_copy(
        &b,
        &format!("oci:{}:v2", dir.display()),
        &format!("docker://{host_b}/one/fixed:t"),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("cannot be overwritten because the repository is immutable"),
        "{err}"
    );
    assert_eq!(
        images_of(&a, "one/fixed")
            .iter()
            .filter(|(_, t)| !t.is_empty())
            .map(|(d, _)| d.clone())
            .collect::<Vec<_>>(),
        vec![v1.manifest_digest.clone()]
    );

    // IMMUTABLE_WITH_EXCLUSION set through A is B's too: B moves a tag the filter
    // matches (mutable) and still refuses `t`.
    ecr(
        &a,
        &[
            "put-image-tag-mutability",
            "--repository-name",
            "one/fixed",
            "--image-tag-mutability",
            "IMMUTABLE_WITH_EXCLUSION",
            "--image-tag-mutability-exclusion-filters",
            "filterType=WILDCARD,filter=dev-*",
        ],
    );
    let out = skopeo_copy(
        &a,
        &format!("oci:{}:v1", dir.display()),
        &format!("docker://{host_a}/one/fixed:dev-t"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    b.wait_for(10, "the exclusion filters and dev-t through B", || {
        let d = ecr(
            &b,
            &["describe-repositories", "--repository-names", "one/fixed"],
        );
        let filters = d["repositories"][0]["imageTagMutabilityExclusionFilters"].clone();
        let tagged = images_of(&b, "one/fixed")
            .iter()
            .any(|(_, t)| t.contains(&"dev-t".to_string()));
        (filters == serde_json::json!([{"filterType": "WILDCARD", "filter": "dev-*"}]) && tagged)
            .then_some(())
    });
    let out = skopeo_copy(
        &b,
        &format!("oci:{}:v2", dir.display()),
        &format!("docker://{host_b}/one/fixed:dev-t"),
    );
    assert!(
        out.status.success(),
        "dev-t is excluded (mutable): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = skopeo_copy(
        &b,
        &format!("oci:{}:v2", dir.display()),
        &format!("docker://{host_b}/one/fixed:t"),
    );
    assert!(!out.status.success(), "t stays immutable");

    // A serve that was a registry of its own joins: its images become the cluster's.
    let mut c = Api::start();
    ecr(&c, &["create-repository", "--repository-name", "solo/app"]);
    let out = skopeo_copy(
        &c,
        &format!("oci:{}:v1", dir.display()),
        &format!("docker://{}/solo/app:v1", host_of(&c)),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let endpoint = etcd.endpoint();
    let tls = etcd.serve_args();
    let mut args = vec!["--cluster", endpoint.as_str()];
    args.extend(tls.iter().map(String::as_str));
    c.restart_with(&args);
    let solo = vec![(v1.manifest_digest.clone(), vec!["v1".to_string()])];
    b.wait_for(10, "the joining serve's image through B", || {
        (images_of(&b, "solo/app") == solo).then_some(())
    });
    assert_eq!(images_of(&c, "solo/app"), solo);
    assert!(
        !images_of(&c, "one/app").is_empty(),
        "the joining serve has the cluster's"
    );
    drop(c);

    // A killed: B still serves what it holds; a blob only A held is BLOB_UNKNOWN.
    let out = std::process::Command::new("kill")
        .args(["-KILL", &a.server_pid().to_string()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let again = work.path().join("again");
    let out = skopeo_copy(
        &b,
        &format!("docker://{host_b}/one/app:v1"),
        &format!("oci:{}:v1", again.display()),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(images_of(&b, "one/app").len(), 3);
    let only_a = &v3.layers[0].digest;
    let out = std::process::Command::new("curl")
        .args(["-sk", "--noproxy", "*", "-w", "\n%{http_code}"])
        .args(["-u", &format!("AWS:{}", password(&b))])
        .arg(format!("https://{host_b}/v2/one/app/blobs/{only_a}"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, status) = text.rsplit_once('\n').unwrap();
    assert_eq!(status, "404", "{text}");
    let body: Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["errors"][0]["code"], "BLOB_UNKNOWN", "{body:#}");
    eprintln!(
        "B on a blob only the killed A held: {}",
        body["errors"][0]["message"]
    );
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
    // To the repository URI itself, as on serve's box: serve --cluster answers at the ECR
    // host name too (its hosts block, port 443 of its loopback address, its CA trusted
    // for that name; docs/registry.md "The repository URI on the box").
    let mut c = common::ecr::as_on_serve_s_box(&api.mf, "skopeo");
    c.args(["copy", "--preserve-digests"])
        .args(["--dest-creds", &format!("AWS:{pw}")])
        .arg(format!("oci:{}:t", work.path().join("app").display()))
        .arg(format!("docker://{uri}:v1"));
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
