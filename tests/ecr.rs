//! Root integration tests of ECR on the box: `serve`'s registry (`/v2/`) and ECR's API,
//! with the real AWS CLI, skopeo and curl: create a repository, log in with
//! `get-login-password`, push and pull, and the refusals (anonymous, forged token, wrong
//! digest, chunk out of order, immutable tag).

use crate::common;

use common::api::Api;
use common::image::{Compression, Layout, busybox_layer};
use common::registry::skopeo;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

/// `aws ecr ARGS` as JSON (the call must succeed).
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

fn ecr_err(api: &Api, args: &[&str]) -> String {
    let out = api.aws_in("ecr", args);
    assert!(!out.status.success(), "aws ecr {args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The registry's `host:port` (serve's listener).
fn registry_host(api: &Api) -> String {
    api.endpoint.trim_start_matches("http://").to_string()
}

fn password(api: &Api) -> String {
    let out = api.aws_in("ecr", &["get-login-password"]);
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// An OCI layout with one busybox image tagged `t` whose marker file says `marker`.
fn layout(dir: &Path, marker: &str) -> (Layout, common::image::BuiltImage) {
    let mut l = Layout::new(dir);
    let img = l.add_image("linux/amd64", &[busybox_layer(Compression::Gzip, marker)]);
    l.tag_image("t", &img);
    (l, img)
}

fn push(layout: &Path, dest: &str, creds: &str) -> Output {
    let mut c = skopeo();
    c.args(["copy", "--dest-tls-verify=false", "--dest-creds", creds])
        .args(["--preserve-digests"])
        .arg(format!("oci:{}:t", layout.display()))
        .arg(format!("docker://{dest}"));
    c.output().unwrap()
}

fn curl(args: &[&str]) -> (u16, String, String) {
    let mut c = Command::new("curl");
    common::util::no_proxy(&mut c);
    c.args([
        "-s",
        "--noproxy",
        "*",
        "-D",
        "-",
        "-o",
        "-",
        "-w",
        "\n%{http_code}",
    ])
    .args(args);
    let out = c.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (rest, code) = text.trim_end().rsplit_once('\n').unwrap();
    let (head, body) = rest.split_once("\r\n\r\n").unwrap_or((rest, ""));
    (
        code.parse().unwrap(),
        head.to_ascii_lowercase(),
        body.to_string(),
    )
}

#[test]
fn push_pull_and_the_ecr_api_through_the_aws_cli_and_skopeo() {
    let api = Api::start();
    let host = registry_host(&api);
    let repo = ecr(
        &api,
        &["create-repository", "--repository-name", "team-a/web"],
    );
    assert_eq!(
        repo["repository"]["repositoryUri"],
        "000000000000.dkr.ecr.us-east-1.amazonaws.com/team-a/web"
    );
    assert_eq!(repo["repository"]["imageTagMutability"], "MUTABLE");
    assert!(
        ecr_err(
            &api,
            &["create-repository", "--repository-name", "team-a/web"]
        )
        .contains("RepositoryAlreadyExistsException")
    );
    assert!(
        ecr_err(
            &api,
            &["create-repository", "--repository-name", "Bad_Name"]
        )
        .contains("InvalidParameterException")
    );

    // get-login-password, as `podman login` takes it, and a push with it.
    let pw = password(&api);
    let creds = format!("AWS:{pw}");
    let work = tempfile::tempdir().unwrap();
    let (_l, img) = layout(&work.path().join("one"), "ecr-one");
    let out = push(
        &work.path().join("one"),
        &format!("{host}/team-a/web:v1"),
        &creds,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Pulled back with skopeo: the same manifest.
    let pulled = work.path().join("pulled");
    let mut c = skopeo();
    c.args(["copy", "--src-tls-verify=false", "--src-creds", &creds])
        .args(["--preserve-digests"])
        .arg(format!("docker://{host}/team-a/web:v1"))
        .arg(format!("oci:{}:p", pulled.display()));
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let index: Value =
        serde_json::from_slice(&std::fs::read(pulled.join("index.json")).unwrap()).unwrap();
    assert_eq!(
        index["manifests"][0]["digest"],
        img.manifest_digest.as_str()
    );

    // The ECR API sees the image.
    let images = ecr(&api, &["list-images", "--repository-name", "team-a/web"]);
    assert_eq!(images["imageIds"][0]["imageTag"], "v1");
    assert_eq!(
        images["imageIds"][0]["imageDigest"],
        img.manifest_digest.as_str()
    );
    let d = ecr(
        &api,
        &["describe-images", "--repository-name", "team-a/web"],
    );
    let detail = &d["imageDetails"][0];
    assert_eq!(detail["imageSizeInBytes"].as_u64(), Some(img.size()));
    assert_eq!(
        detail["imageManifestMediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert!(detail["lastRecordedPullTime"].is_number(), "{detail}");
    let layers = ecr(
        &api,
        &[
            "batch-check-layer-availability",
            "--repository-name",
            "team-a/web",
            "--layer-digests",
            &img.layers[0].digest,
            "sha256:0000000000000000000000000000000000000000000000000000000000000000",
        ],
    );
    assert_eq!(layers["layers"][0]["layerAvailability"], "AVAILABLE");
    assert_eq!(layers["failures"][0]["failureCode"], "MissingLayerDigest");
    let got = ecr(
        &api,
        &[
            "batch-get-image",
            "--repository-name",
            "team-a/web",
            "--image-ids",
            "imageTag=v1",
        ],
    );
    let m: Value =
        serde_json::from_str(got["images"][0]["imageManifest"].as_str().unwrap()).unwrap();
    assert_eq!(m["config"]["digest"], img.config_digest.as_str());

    // Immutable tags: a different image over v1 is refused; a new tag is not.
    ecr(
        &api,
        &[
            "put-image-tag-mutability",
            "--repository-name",
            "team-a/web",
            "--image-tag-mutability",
            "IMMUTABLE",
        ],
    );
    let (_l2, img2) = layout(&work.path().join("two"), "ecr-two");
    let out = push(
        &work.path().join("two"),
        &format!("{host}/team-a/web:v1"),
        &creds,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot be overwritten because the repository is immutable"),
        "{err}"
    );
    let out = push(
        &work.path().join("two"),
        &format!("{host}/team-a/web:v2"),
        &creds,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // PutImage, the guide's retag: v1's manifest under a new tag; again: nothing new;
    // v2's manifest over the immutable v1: ImageTagAlreadyExistsException.
    let manifest = got["images"][0]["imageManifest"]
        .as_str()
        .unwrap()
        .to_string();
    let put = ecr(
        &api,
        &[
            "put-image",
            "--repository-name",
            "team-a/web",
            "--image-tag",
            "release",
            "--image-manifest",
            &manifest,
        ],
    );
    assert_eq!(
        put["image"]["imageId"]["imageDigest"],
        img.manifest_digest.as_str()
    );
    let again = [
        "put-image",
        "--repository-name",
        "team-a/web",
        "--image-tag",
        "release",
        "--image-manifest",
        &manifest,
    ];
    assert!(ecr_err(&api, &again).contains("ImageAlreadyExistsException"));
    let got2 = ecr(
        &api,
        &[
            "batch-get-image",
            "--repository-name",
            "team-a/web",
            "--image-ids",
            "imageTag=v2",
        ],
    );
    let manifest2 = got2["images"][0]["imageManifest"].as_str().unwrap();
    let err = ecr_err(
        &api,
        &[
            "put-image",
            "--repository-name",
            "team-a/web",
            "--image-tag",
            "v1",
            "--image-manifest",
            manifest2,
        ],
    );
    assert!(err.contains("ImageTagAlreadyExistsException"), "{err}");

    // BatchDeleteImage by tag, then delete-repository needs --force.
    let del = ecr(
        &api,
        &[
            "batch-delete-image",
            "--repository-name",
            "team-a/web",
            "--image-ids",
            "imageTag=v2",
        ],
    );
    assert_eq!(
        del["imageIds"][0]["imageDigest"],
        img2.manifest_digest.as_str()
    );
    let untagged = ecr(
        &api,
        &[
            "list-images",
            "--repository-name",
            "team-a/web",
            "--filter",
            "tagStatus=UNTAGGED",
        ],
    );
    assert_eq!(
        untagged["imageIds"],
        serde_json::json!([{"imageDigest": img2.manifest_digest}])
    );
    assert!(
        ecr_err(
            &api,
            &["delete-repository", "--repository-name", "team-a/web"]
        )
        .contains("RepositoryNotEmptyException")
    );
    ecr(
        &api,
        &[
            "delete-repository",
            "--repository-name",
            "team-a/web",
            "--force",
        ],
    );
    assert!(
        ecr_err(
            &api,
            &["describe-repositories", "--repository-names", "team-a/web"]
        )
        .contains("RepositoryNotFoundException")
    );
}

#[test]
fn the_registry_refuses_anonymous_and_forged_callers_and_bad_uploads() {
    let mut api = Api::start();
    let host = registry_host(&api);
    ecr(
        &api,
        &["create-repository", "--repository-name", "bad-input"],
    );
    let base = format!("http://{host}/v2/");

    // Anonymous: 401 with the challenge podman and skopeo answer by logging in.
    let (code, head, body) = curl(&[&base]);
    assert_eq!(code, 401, "{body}");
    assert!(head.contains("www-authenticate: basic realm="), "{head}");
    assert!(body.contains("\"UNAUTHORIZED\""), "{body}");

    // A forged token: a password of the right shape under another key.
    let pw = password(&api);
    let (payload, _mac) = pw.rsplit_once('.').unwrap();
    let forged = format!("AWS:{payload}.{}", "0".repeat(64));
    let (code, _, body) = curl(&["-u", &forged, &base]);
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("forged"), "{body}");
    let work = tempfile::tempdir().unwrap();
    layout(&work.path().join("one"), "forged");
    let out = push(
        &work.path().join("one"),
        &format!("{host}/bad-input:v1"),
        &forged,
    );
    assert!(!out.status.success());

    let good = format!("AWS:{pw}");
    let (code, _, _) = curl(&["-u", &good, &base]);
    assert_eq!(code, 200);

    // A monolithic upload whose bytes do not match its digest: DIGEST_INVALID, no blob,
    // no upload left.
    let wrong = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    let (code, _, body) = curl(&[
        "-u",
        &good,
        "-X",
        "POST",
        "-H",
        "Content-Type: application/octet-stream",
        "--data-binary",
        "hello",
        &format!("http://{host}/v2/bad-input/blobs/uploads/?digest={wrong}"),
    ]);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("DIGEST_INVALID"), "{body}");
    let uploads = api.mf.root.join("registry/uploads");
    assert_eq!(std::fs::read_dir(&uploads).unwrap().count(), 0);
    assert_eq!(
        std::fs::read_dir(api.mf.root.join("registry/blobs/sha256"))
            .unwrap()
            .count(),
        0
    );

    // A chunked upload: a chunk out of order is 416 with the upload's Range.
    let (code, head, _) = curl(&[
        "-u",
        &good,
        "-X",
        "POST",
        &format!("http://{host}/v2/bad-input/blobs/uploads/"),
    ]);
    assert_eq!(code, 202);
    let location = head
        .lines()
        .find_map(|l| l.strip_prefix("location: "))
        .unwrap()
        .trim()
        .to_string();
    let url = format!("http://{host}{location}");
    let (code, head, _) = curl(&[
        "-u",
        &good,
        "-X",
        "PATCH",
        "-H",
        "Content-Range: 0-4",
        "-H",
        "Content-Type: application/octet-stream",
        "--data-binary",
        "hello",
        &url,
    ]);
    assert_eq!(code, 202);
    assert!(head.contains("range: 0-4"), "{head}");
    let (code, head, body) = curl(&[
        "-u",
        &good,
        "-X",
        "PATCH",
        "-H",
        "Content-Range: 9-14",
        "-H",
        "Content-Type: application/octet-stream",
        "--data-binary",
        "world",
        &url,
    ]);
    assert_eq!(code, 416, "{body}");
    assert!(head.contains("range: 0-4"), "{head}");
    let (code, _, _) = curl(&[
        "-u",
        &good,
        "-X",
        "PATCH",
        "-H",
        "Content-Range: 5-9",
        "--data-binary",
        "world",
        &url,
    ]);
    assert_eq!(code, 202);
    let digest = format!("sha256:{}", common::util::sha256_hex(b"helloworld"));
    let (code, head, body) = curl(&["-u", &good, "-X", "PUT", &format!("{url}?digest={digest}")]);
    assert_eq!(code, 201, "{body}");
    assert!(
        head.contains(&format!("docker-content-digest: {digest}")),
        "{head}"
    );
    let (code, _, body) = curl(&[
        "-u",
        &good,
        &format!("http://{host}/v2/bad-input/blobs/{digest}"),
    ]);
    assert_eq!((code, body.as_str()), (200, "helloworld"));
    // A resumed download: the rest from byte 5 (206 with its Content-Range).
    let (code, head, body) = curl(&[
        "-u",
        &good,
        "-H",
        "Range: bytes=5-",
        &format!("http://{host}/v2/bad-input/blobs/{digest}"),
    ]);
    assert_eq!((code, body.as_str()), (206, "world"));
    assert!(head.contains("content-range: bytes 5-9/10"), "{head}");
    // A restart of serve keeps the blob, and the token (checked, not remembered) works.
    api.restart();
    let (code, _, body) = curl(&[
        "-u",
        &good,
        &format!("http://{host}/v2/bad-input/blobs/{digest}"),
    ]);
    assert_eq!((code, body.as_str()), (200, "helloworld"));

    // A manifest naming a blob the repository lacks: MANIFEST_BLOB_UNKNOWN.
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": wrong, "size": 2},
        "layers": [],
    })
    .to_string();
    let (code, _, body) = curl(&[
        "-u",
        &good,
        "-X",
        "PUT",
        "-H",
        "Content-Type: application/vnd.oci.image.manifest.v1+json",
        "--data-binary",
        &manifest,
        &format!("http://{host}/v2/bad-input/manifests/v1"),
    ]);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("MANIFEST_BLOB_UNKNOWN"), "{body}");

    // A repository that does not exist: NAME_UNKNOWN.
    let (code, _, body) = curl(&[
        "-u",
        &good,
        &format!("http://{host}/v2/nothing-here/tags/list"),
    ]);
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("NAME_UNKNOWN"), "{body}");
}

/// The loop of the ECS guides: create-repository, get-login-password | podman login,
/// push, a task definition naming the repositoryUri, run-task: the task's image comes
/// from the box's own registry, found under its ECR name with nothing configured.
#[test]
fn a_task_naming_the_repository_uri_runs_the_image_pushed_to_serve() {
    let api = Api::start();
    let host = registry_host(&api);
    let repo = ecr(
        &api,
        &["create-repository", "--repository-name", "loop/app"],
    );
    let uri = repo["repository"]["repositoryUri"]
        .as_str()
        .unwrap()
        .to_string();

    // podman login reads the password from stdin, as the ECR guide pipes it.
    let auth = tempfile::tempdir().unwrap();
    let authfile = auth.path().join("auth.json");
    let pw = password(&api);
    let mut login = Command::new("podman");
    common::util::no_proxy(&mut login);
    login
        .args([
            "login",
            "--tls-verify=false",
            "--username",
            "AWS",
            "--password-stdin",
        ])
        .arg("--authfile")
        .arg(&authfile)
        .arg(&host)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = login.spawn().unwrap();
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(pw.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "podman login: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Login Succeeded"));

    // Pushed with the credentials podman login stored.
    let work = tempfile::tempdir().unwrap();
    let (_l, img) = layout(&work.path().join("app"), "from-serve-ecr");
    let mut c = skopeo();
    c.args(["copy", "--dest-tls-verify=false", "--preserve-digests"])
        .arg("--dest-authfile")
        .arg(&authfile)
        .arg(format!("oci:{}:t", work.path().join("app").display()))
        .arg(format!("docker://{host}/loop/app:v1"));
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let td = format!(
        r#"{{"family":"ecr-loop","networkMode":"awsvpc","cpu":"256","memory":"512",
  "requiresCompatibilities":["FARGATE"],
  "executionRoleArn":"arn:aws:iam::000000000000:role/ecsTaskExecutionRole",
  "containerDefinitions":[{{"name":"app","image":"{uri}:v1","essential":true,
    "command":["sh","-c","grep -q from-serve-ecr /etc/minifargate-marker"]}}]}}"#
    );
    let file = api.file("ecr-loop.json", &td);
    api.aws_json(&["register-task-definition", "--cli-input-json", &file]);
    let run = api.aws_json(&[
        "run-task",
        "--task-definition",
        "ecr-loop",
        "--launch-type",
        "FARGATE",
        "--network-configuration",
        "awsvpcConfiguration={subnets=[subnet-0abc],securityGroups=[sg-0def]}",
    ]);
    assert_eq!(run["failures"], serde_json::json!([]));
    let arn = run["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    api.aws_json(&["wait", "tasks-stopped", "--tasks", &arn]);
    let d = api.aws_json(&["describe-tasks", "--tasks", &arn]);
    let t = &d["tasks"][0];
    assert_eq!(t["stopCode"], "EssentialContainerExited", "{t:#}");
    assert_eq!(t["containers"][0]["exitCode"], 0, "{t:#}");
    assert_eq!(
        t["containers"][0]["imageDigest"],
        img.manifest_digest.as_str(),
        "{t:#}"
    );
    // The pull is the registry's: ECR records it.
    let images = ecr(&api, &["describe-images", "--repository-name", "loop/app"]);
    assert!(images["imageDetails"][0]["lastRecordedPullTime"].is_number());
}

/// The distribution spec's content discovery and management scenarios the other tests do
/// not cover: a cross-repository mount, an image index and a Docker schema 2 push, tags
/// listed in pages, deletes; and an upload cut off half way leaves nothing.
#[test]
fn mounts_indexes_docker_schema_2_tag_pages_deletes_and_a_cut_upload() {
    let api = Api::start();
    let host = registry_host(&api);
    for r in ["conf/a", "conf/b"] {
        ecr(&api, &["create-repository", "--repository-name", r]);
    }
    let good = format!("AWS:{}", password(&api));
    let work = tempfile::tempdir().unwrap();

    // An index of two platforms, pushed whole; then the same image as Docker schema 2.
    let mut l = Layout::new(&work.path().join("multi"));
    let amd = l.add_image("linux/amd64", &[busybox_layer(Compression::Gzip, "amd")]);
    let arm = l.add_image("linux/arm64", &[busybox_layer(Compression::Gzip, "arm")]);
    let idx = l.tag_index("t", &[amd.clone(), arm]);
    let mut c = skopeo();
    c.args([
        "copy",
        "--all",
        "--preserve-digests",
        "--dest-tls-verify=false",
    ])
    .args(["--dest-creds", &good])
    .arg(format!("oci:{}:t", work.path().join("multi").display()))
    .arg(format!("docker://{host}/conf/a:multi"));
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, head, _) = curl(&[
        "-u",
        &good,
        "-I",
        "-H",
        "Accept: application/vnd.oci.image.index.v1+json",
        &format!("http://{host}/v2/conf/a/manifests/multi"),
    ]);
    assert_eq!(code, 200);
    assert!(
        head.contains(&format!("docker-content-digest: {}", idx.digest)),
        "{head}"
    );
    assert!(
        head.contains("content-type: application/vnd.oci.image.index.v1+json"),
        "{head}"
    );
    layout(&work.path().join("one"), "docker-v2s2");
    let mut c = skopeo();
    c.args(["copy", "--format", "v2s2", "--dest-tls-verify=false"])
        .args(["--dest-creds", &good])
        .arg(format!("oci:{}:t", work.path().join("one").display()))
        .arg(format!("docker://{host}/conf/a:docker"));
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, head, _) = curl(&[
        "-u",
        &good,
        "-I",
        &format!("http://{host}/v2/conf/a/manifests/docker"),
    ]);
    assert_eq!(code, 200);
    assert!(
        head.contains("content-type: application/vnd.docker.distribution.manifest.v2+json"),
        "{head}"
    );

    // Cross-repository mount: a layer of conf/a into conf/b without its bytes.
    let layer = &amd.layers[0].digest;
    let (code, _, _) = curl(&[
        "-u",
        &good,
        "-I",
        &format!("http://{host}/v2/conf/b/blobs/{layer}"),
    ]);
    assert_eq!(code, 404);
    let (code, head, _) = curl(&[
        "-u",
        &good,
        "-X",
        "POST",
        &format!("http://{host}/v2/conf/b/blobs/uploads/?mount={layer}&from=conf/a"),
    ]);
    assert_eq!(code, 201, "{head}");
    assert!(
        head.contains(&format!("location: /v2/conf/b/blobs/{layer}")),
        "{head}"
    );
    let (code, head, _) = curl(&[
        "-u",
        &good,
        "-I",
        &format!("http://{host}/v2/conf/b/blobs/{layer}"),
    ]);
    assert_eq!(code, 200);
    assert!(
        head.contains(&format!("content-length: {}", amd.layers[0].size)),
        "{head}"
    );
    // From a repository that lacks it: an ordinary upload session instead (202), which
    // DELETE cancels.
    let missing = "sha256:".to_string() + &"2".repeat(64);
    let (code, head, _) = curl(&[
        "-u",
        &good,
        "-X",
        "POST",
        &format!("http://{host}/v2/conf/b/blobs/uploads/?mount={missing}&from=conf/a"),
    ]);
    assert_eq!(code, 202);
    let location = head
        .lines()
        .find_map(|l| l.strip_prefix("location: "))
        .unwrap()
        .trim()
        .to_string();
    let (code, _, _) = curl(&[
        "-u",
        &good,
        "-X",
        "DELETE",
        &format!("http://{host}{location}"),
    ]);
    assert_eq!(code, 204);
    let (code, _, body) = curl(&["-u", &good, &format!("http://{host}{location}")]);
    assert_eq!(code, 404);
    assert!(body.contains("BLOB_UPLOAD_UNKNOWN"), "{body}");

    // Tags in pages of 1: lexical order, a Link to the next page.
    let (code, head, body) = curl(&[
        "-u",
        &good,
        &format!("http://{host}/v2/conf/a/tags/list?n=1"),
    ]);
    assert_eq!(code, 200);
    let page: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        page,
        serde_json::json!({"name": "conf/a", "tags": ["docker"]})
    );
    assert!(
        head.contains("link: </v2/conf/a/tags/list?n=1&last=docker>; rel=\"next\""),
        "{head}"
    );
    let (_, head, body) = curl(&[
        "-u",
        &good,
        &format!("http://{host}/v2/conf/a/tags/list?n=1&last=docker"),
    ]);
    let page: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page["tags"], serde_json::json!(["multi"]));
    assert!(!head.contains("link:"), "{head}");

    // Deletes: a tag, then a manifest by digest (its tags go with it), then a blob.
    let (code, _, _) = curl(&[
        "-u",
        &good,
        "-X",
        "DELETE",
        &format!("http://{host}/v2/conf/a/manifests/docker"),
    ]);
    assert_eq!(code, 202);
    let (code, _, body) = curl(&[
        "-u",
        &good,
        &format!("http://{host}/v2/conf/a/manifests/docker"),
    ]);
    assert_eq!(code, 404);
    assert!(body.contains("MANIFEST_UNKNOWN"), "{body}");
    let (code, _, _) = curl(&[
        "-u",
        &good,
        "-X",
        "DELETE",
        &format!("http://{host}/v2/conf/a/manifests/{}", idx.digest),
    ]);
    assert_eq!(code, 202);
    let (_, _, body) = curl(&["-u", &good, &format!("http://{host}/v2/conf/a/tags/list")]);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["tags"],
        serde_json::json!([])
    );
    let (code, _, _) = curl(&[
        "-u",
        &good,
        "-X",
        "DELETE",
        &format!("http://{host}/v2/conf/b/blobs/{layer}"),
    ]);
    assert_eq!(code, 202);
    let (code, _, body) = curl(&[
        "-u",
        &good,
        &format!("http://{host}/v2/conf/b/blobs/{layer}"),
    ]);
    assert_eq!(code, 404);
    assert!(body.contains("BLOB_UNKNOWN"), "{body}");

    // A monolithic upload of 64 MiB announced, cut off after 1 MiB: no blob, no upload.
    let blobs_before = std::fs::read_dir(api.mf.root.join("registry/blobs/sha256"))
        .unwrap()
        .count();
    {
        use std::io::Write;
        let mut t = std::net::TcpStream::connect(&host).unwrap();
        let digest = "sha256:".to_string() + &"3".repeat(64);
        write!(
            t,
            "POST /v2/conf/b/blobs/uploads/?digest={digest} HTTP/1.1\r\nHost: {host}\r\n\
             Authorization: Basic {}\r\nContent-Type: application/octet-stream\r\n\
             Content-Length: {}\r\n\r\n",
            base64_of(&good),
            64 << 20
        )
        .unwrap();
        t.write_all(&vec![7u8; 1 << 20]).unwrap();
        // The upload is under way (its bytes on disk) before the client goes away.
        let uploads = api.mf.root.join("registry/uploads");
        api.wait_for(10, "the upload to have its first MiB", || {
            std::fs::read_dir(&uploads)
                .unwrap()
                .flatten()
                .any(|e| e.metadata().unwrap().len() >= 1 << 20)
                .then_some(())
        });
        t.shutdown(std::net::Shutdown::Both).unwrap();
    }
    let uploads = api.mf.root.join("registry/uploads");
    api.wait_for(10, "the cut upload to be removed", || {
        (std::fs::read_dir(&uploads).unwrap().count() == 0).then_some(())
    });
    assert_eq!(
        std::fs::read_dir(api.mf.root.join("registry/blobs/sha256"))
            .unwrap()
            .count(),
        blobs_before
    );
}

fn base64_of(s: &str) -> String {
    let out = Command::new("base64")
        .arg("-w0")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(s.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

/// The bytes under `<root>/registry/blobs` (what garbage collection frees).
fn blob_bytes(api: &Api) -> u64 {
    let dir = api.mf.root.join("registry/blobs/sha256");
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .sum()
}

/// Pushes a one-layer image whose marker is `marker` to `repo` under each of `tags`;
/// returns its manifest digest.
fn push_tags(api: &Api, dir: &Path, repo: &str, marker: &str, tags: &[&str]) -> String {
    let host = registry_host(api);
    let creds = format!("AWS:{}", password(api));
    let (_l, img) = layout(dir, marker);
    for t in tags {
        let out = push(dir, &format!("{host}/{repo}:{t}"), &creds);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    img.manifest_digest
}

/// The user guide's "Filtering on multiple rules", example A then B.
const GUIDE_MULTIPLE_RULES_A: &str = r#"{"rules": [
  {"rulePriority": 1, "description": "Rule 1",
   "selection": {"tagStatus": "tagged", "tagPrefixList": ["prod"],
                 "countType": "imageCountMoreThan", "countNumber": 1},
   "action": {"type": "expire"}},
  {"rulePriority": 2, "description": "Rule 2",
   "selection": {"tagStatus": "tagged", "tagPrefixList": ["beta"],
                 "countType": "imageCountMoreThan", "countNumber": 1},
   "action": {"type": "expire"}}]}"#;
const GUIDE_MULTIPLE_RULES_B: &str = r#"{"rules": [
  {"rulePriority": 1, "description": "Rule 1",
   "selection": {"tagStatus": "tagged", "tagPrefixList": ["beta"],
                 "countType": "imageCountMoreThan", "countNumber": 1},
   "action": {"type": "expire"}},
  {"rulePriority": 2, "description": "Rule 2",
   "selection": {"tagStatus": "tagged", "tagPrefixList": ["prod"],
                 "countType": "imageCountMoreThan", "countNumber": 1},
   "action": {"type": "expire"}}]}"#;

fn digests(v: &Value, list: &str) -> Vec<String> {
    let mut d: Vec<String> = v[list]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["imageDigest"].as_str().unwrap().to_string())
        .collect();
    d.sort();
    d.dedup();
    d
}

/// Lifecycle policies through the AWS CLI: put/get/delete, ECR's refusals, the preview of
/// the user guide's multiple-rules examples A and B on their repository (images A, B, C
/// pushed in that order), then the expiry serve runs on its schedule (1 s here): example
/// A's result (image A expired), its bytes freed, `lastEvaluatedAt` set.
#[test]
fn lifecycle_policies_preview_and_expire_the_guide_s_examples() {
    let mut api = Api::start();
    ecr(&api, &["create-repository", "--repository-name", "lc/app"]);
    let work = tempfile::tempdir().unwrap();
    let a = push_tags(
        &api,
        &work.path().join("a"),
        "lc/app",
        "lc-a",
        &["beta-1", "prod-1"],
    );
    let b = push_tags(
        &api,
        &work.path().join("b"),
        "lc/app",
        "lc-b",
        &["beta-2", "prod-2"],
    );
    let c = push_tags(&api, &work.path().join("c"), "lc/app", "lc-c", &["beta-3"]);

    let e = ecr_err(
        &api,
        &["get-lifecycle-policy", "--repository-name", "lc/app"],
    );
    assert!(e.contains("LifecyclePolicyNotFoundException"), "{e}");
    let e = ecr_err(
        &api,
        &[
            "get-lifecycle-policy-preview",
            "--repository-name",
            "lc/app",
        ],
    );
    assert!(e.contains("LifecyclePolicyPreviewNotFoundException"), "{e}");
    // ECR's validation: the rule with `any` must have the highest rulePriority.
    let bad = GUIDE_MULTIPLE_RULES_A.replacen(
        r#""tagStatus": "tagged", "tagPrefixList": ["prod"]"#,
        r#""tagStatus": "any""#,
        1,
    );
    let e = ecr_err(
        &api,
        &[
            "put-lifecycle-policy",
            "--repository-name",
            "lc/app",
            "--lifecycle-policy-text",
            &bad,
        ],
    );
    assert!(e.contains("InvalidParameterException"), "{e}");
    assert!(e.contains("highest rulePriority"), "{e}");
    let e = ecr_err(
        &api,
        &[
            "put-lifecycle-policy",
            "--repository-name",
            "lc/none",
            "--lifecycle-policy-text",
            GUIDE_MULTIPLE_RULES_A,
        ],
    );
    assert!(e.contains("RepositoryNotFoundException"), "{e}");

    let put = ecr(
        &api,
        &[
            "put-lifecycle-policy",
            "--repository-name",
            "lc/app",
            "--lifecycle-policy-text",
            GUIDE_MULTIPLE_RULES_A,
        ],
    );
    assert_eq!(put["lifecyclePolicyText"], GUIDE_MULTIPLE_RULES_A);
    assert_eq!(put["registryId"], "000000000000");

    // The preview of the stored policy (example A): image A, by rule 1.
    let started = ecr(
        &api,
        &[
            "start-lifecycle-policy-preview",
            "--repository-name",
            "lc/app",
        ],
    );
    assert_eq!(started["status"], "COMPLETE");
    ecr(
        &api,
        &[
            "wait",
            "lifecycle-policy-preview-complete",
            "--repository-name",
            "lc/app",
        ],
    );
    let p = ecr(
        &api,
        &[
            "get-lifecycle-policy-preview",
            "--repository-name",
            "lc/app",
        ],
    );
    assert_eq!(digests(&p, "previewResults"), vec![a.clone()]);
    assert_eq!(p["previewResults"][0]["appliedRulePriority"], 1);
    assert_eq!(p["previewResults"][0]["action"]["type"], "EXPIRE");
    assert_eq!(p["summary"]["expiringImageTotalCount"], 1);
    // Example B's text, previewed without being stored: images A and B.
    ecr(
        &api,
        &[
            "start-lifecycle-policy-preview",
            "--repository-name",
            "lc/app",
            "--lifecycle-policy-text",
            GUIDE_MULTIPLE_RULES_B,
        ],
    );
    let p = ecr(
        &api,
        &[
            "get-lifecycle-policy-preview",
            "--repository-name",
            "lc/app",
        ],
    );
    let mut ab = vec![a.clone(), b.clone()];
    ab.sort();
    assert_eq!(digests(&p, "previewResults"), ab);
    assert_eq!(p["lifecyclePolicyText"], GUIDE_MULTIPLE_RULES_B);
    // The same through boto3.
    let got = api.boto3(
        "import boto3, json, os\n\
         c = boto3.client('ecr', endpoint_url=os.environ['ENDPOINT'], region_name='us-east-1')\n\
         r = c.get_lifecycle_policy(repositoryName='lc/app')\n\
         print(json.dumps({'text': r['lifecyclePolicyText'], 'evaluated': 'lastEvaluatedAt' in r}))",
    );
    assert_eq!(got["text"], GUIDE_MULTIPLE_RULES_A);
    assert_eq!(got["evaluated"], false);

    // The expiry on its schedule applies example A: image A goes, B and C stay.
    let before = blob_bytes(&api);
    api.mf.set_env("MINIFARGATE_ECR_LIFECYCLE_INTERVAL", "1");
    api.restart();
    let left = api.wait_for(30, "the lifecycle expiry", || {
        let d = ecr(&api, &["describe-images", "--repository-name", "lc/app"]);
        let left = digests(&d, "imageDetails");
        (left.len() == 2).then_some(left)
    });
    let mut bc = vec![b.clone(), c.clone()];
    bc.sort();
    assert_eq!(left, bc);
    let after = blob_bytes(&api);
    assert!(
        after < before,
        "the expired image's blobs are freed: {before} -> {after}"
    );
    let got = ecr(
        &api,
        &["get-lifecycle-policy", "--repository-name", "lc/app"],
    );
    assert!(
        got["lastEvaluatedAt"].is_string() || got["lastEvaluatedAt"].is_number(),
        "{got}"
    );
    // Stable: the next runs expire nothing more (B is the newest prod, C the newest beta).
    std::thread::sleep(std::time::Duration::from_secs(3));
    let d = ecr(&api, &["describe-images", "--repository-name", "lc/app"]);
    assert_eq!(digests(&d, "imageDetails"), bc);

    let del = ecr(
        &api,
        &["delete-lifecycle-policy", "--repository-name", "lc/app"],
    );
    assert_eq!(del["lifecyclePolicyText"], GUIDE_MULTIPLE_RULES_A);
    let e = ecr_err(
        &api,
        &["delete-lifecycle-policy", "--repository-name", "lc/app"],
    );
    assert!(e.contains("LifecyclePolicyNotFoundException"), "{e}");
}

/// Garbage collection: batch-delete-image and delete-repository --force free the disk at
/// once; a layer uploaded whose manifest is not put yet survives the collections that run
/// meanwhile (serve's schedule every second here), and its manifest is then accepted; and
/// pushes racing an expiry that keeps only the newest image all succeed, the last one
/// pulls whole.
#[test]
fn deletes_free_disk_and_pushes_survive_collections_racing_them() {
    let mut api = Api::start();
    api.mf.set_env("MINIFARGATE_ECR_LIFECYCLE_INTERVAL", "1");
    api.restart();
    let host = registry_host(&api);
    let creds = format!("AWS:{}", password(&api));
    for r in ["gc/one", "gc/two", "gc/race"] {
        ecr(&api, &["create-repository", "--repository-name", r]);
    }
    let work = tempfile::tempdir().unwrap();
    let empty = blob_bytes(&api);
    let one = push_tags(&api, &work.path().join("one"), "gc/one", "gc-one", &["v1"]);
    push_tags(&api, &work.path().join("two"), "gc/two", "gc-two", &["v1"]);
    let full = blob_bytes(&api);
    assert!(full > empty + 100_000, "{empty} -> {full}");
    let del = ecr(
        &api,
        &[
            "batch-delete-image",
            "--repository-name",
            "gc/one",
            "--image-ids",
            &format!("imageDigest={one}"),
        ],
    );
    assert_eq!(del["imageIds"][0]["imageTag"], "v1");
    let half = blob_bytes(&api);
    assert!(half < full && half > empty, "{empty} {full} {half}");
    ecr(
        &api,
        &[
            "delete-repository",
            "--repository-name",
            "gc/two",
            "--force",
        ],
    );
    assert_eq!(
        blob_bytes(&api),
        empty,
        "every blob of the deleted images is freed"
    );

    // A push in flight: its layer and config are uploaded, then collections run (every
    // second) before the manifest is put; the manifest is accepted and pulls whole.
    let (l, img) = layout(&work.path().join("slow"), "gc-slow");
    let _ = l;
    let slow = work.path().join("slow");
    let blob_file = |d: &str| {
        slow.join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    for d in [&img.config_digest, &img.layers[0].digest] {
        let (code, _, body) = curl(&[
            "-u",
            &creds,
            "-X",
            "POST",
            "-H",
            "Content-Type: application/octet-stream",
            "--data-binary",
            &format!("@{}", blob_file(d).display()),
            &format!("http://{host}/v2/gc/race/blobs/uploads/?digest={d}"),
        ]);
        assert_eq!(code, 201, "{body}");
    }
    std::thread::sleep(std::time::Duration::from_secs(3));
    let (code, _, body) = curl(&[
        "-u",
        &creds,
        "-X",
        "PUT",
        "-H",
        "Content-Type: application/vnd.oci.image.manifest.v1+json",
        "--data-binary",
        &format!("@{}", blob_file(&img.manifest_digest).display()),
        &format!("http://{host}/v2/gc/race/manifests/slow"),
    ]);
    assert_eq!(
        code, 201,
        "the manifest of a push in flight is accepted: {body}"
    );

    // Pushes racing an expiry that keeps one image: every push succeeds, and the newest
    // image pulls whole while older ones are expired and collected around it.
    ecr(
        &api,
        &[
            "put-lifecycle-policy",
            "--repository-name",
            "gc/race",
            "--lifecycle-policy-text",
            r#"{"rules": [{"rulePriority": 1, "description": "keep the newest image",
                "selection": {"tagStatus": "any", "countType": "imageCountMoreThan",
                "countNumber": 1}, "action": {"type": "expire"}}]}"#,
        ],
    );
    let mut last = String::new();
    for i in 0..6 {
        last = push_tags(
            &api,
            &work.path().join(format!("r{i}")),
            "gc/race",
            &format!("race-{i}"),
            &[&format!("r{i}")],
        );
        std::thread::sleep(std::time::Duration::from_millis(400));
    }
    let left = api.wait_for(30, "the expiry of all but the newest", || {
        let d = ecr(&api, &["describe-images", "--repository-name", "gc/race"]);
        let left = digests(&d, "imageDetails");
        (left.len() == 1).then_some(left)
    });
    assert_eq!(left, vec![last]);
    let pulled = work.path().join("pulled");
    let mut c = skopeo();
    c.args(["copy", "--src-tls-verify=false", "--src-creds", &creds])
        .arg(format!("docker://{host}/gc/race:r5"))
        .arg(format!("oci:{}:p", pulled.display()));
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `podman` with this test's own storage and auth file (nothing of the host's), as a user
/// types it otherwise: no TLS flag.
fn podman(store: &Path) -> Command {
    let mut c = Command::new("podman");
    common::util::no_proxy(&mut c);
    c.env("REGISTRY_AUTH_FILE", store.join("auth.json"))
        .arg("--root")
        .arg(store.join("root"))
        .arg("--runroot")
        .arg(store.join("run"))
        .args(["--storage-driver", "vfs"]);
    c
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// HTTPS for the registry: serve's CA is trusted through /etc/containers/certs.d for its
/// address, so `aws ecr get-login-password | podman login`, `podman push` and `skopeo
/// copy` work with no `--tls-verify=false`; the certificate names the ECR host name
/// (checked with curl --resolve, nothing in /etc/hosts); the AWS CLI keeps its `http://`
/// endpoint on the same port; the trust goes when serve stops.
#[test]
fn podman_and_skopeo_push_over_https_with_no_tls_flag() {
    // podman and skopeo read the box's /etc/containers/certs.d: this serve writes there.
    let api = Api::start_env(
        common::image::busybox_layer(common::image::Compression::Gzip, "serve"),
        &[],
        &[("MINIFARGATE_REGISTRY_CERTS_D", "/etc/containers/certs.d")],
    );
    let host = registry_host(&api);
    let port = host.rsplit_once(':').unwrap().1.to_string();
    let ca = api.mf.root.join("registry/tls/ca.crt");
    let trusted = std::path::PathBuf::from(format!("/etc/containers/certs.d/{host}/ca.crt"));
    assert_eq!(
        std::fs::read(&trusted).unwrap(),
        std::fs::read(&ca).unwrap(),
        "serve trusts its CA for {host}"
    );
    ecr(&api, &["create-repository", "--repository-name", "tls/web"]);
    // podman names an image pulled from an OCI layout after its path: lowercase only.
    let work = tempfile::Builder::new()
        .prefix(&format!("mf-tls-{}", std::process::id()))
        .rand_bytes(0)
        .tempdir()
        .unwrap();
    let (_l, img) = layout(&work.path().join("img"), "tls-img");

    // aws ecr get-login-password | podman login --username AWS --password-stdin HOST
    let store = work.path().join("podman");
    let mut login = podman(&store);
    login
        .args(["login", "--username", "AWS", "--password-stdin", &host])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = login.spawn().unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(password(&api).as_bytes())
        .unwrap();
    let out = ok(child.wait_with_output().unwrap(), "podman login");
    assert!(out.contains("Login Succeeded"), "{out}");
    ok(
        podman(&store)
            .args(["pull", "-q"])
            .arg(format!("oci:{}:t", work.path().join("img").display()))
            .output()
            .unwrap(),
        "podman pull of the OCI layout",
    );
    let id = ok(
        podman(&store)
            .args(["images", "-q", "--no-trunc"])
            .output()
            .unwrap(),
        "podman images",
    );
    let id = id.lines().next().unwrap().trim().to_string();
    ok(
        podman(&store)
            .args(["push", &id, &format!("{host}/tls/web:podman")])
            .output()
            .unwrap(),
        "podman push",
    );

    // skopeo copy, no TLS flag: in and back out.
    let creds = format!("AWS:{}", password(&api));
    let mut c = skopeo();
    c.args(["copy", "--preserve-digests", "--dest-creds", &creds])
        .arg(format!("oci:{}:t", work.path().join("img").display()))
        .arg(format!("docker://{host}/tls/web:skopeo"));
    ok(c.output().unwrap(), "skopeo copy to the registry");
    let mut c = skopeo();
    c.args(["inspect", "--raw", "--creds", &creds])
        .arg(format!("docker://{host}/tls/web:skopeo"));
    let raw = ok(c.output().unwrap(), "skopeo inspect");
    assert!(raw.contains(&img.config_digest), "{raw}");
    let d = ecr(&api, &["describe-images", "--repository-name", "tls/web"]);
    let tags: Vec<&str> = d["imageDetails"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|i| i["imageTags"].as_array().unwrap().iter())
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(
        tags.contains(&"podman") && tags.contains(&"skopeo"),
        "{tags:?}"
    );

    // The certificate names the ECR host name and localhost: curl verifies it against the
    // CA, the name resolved to 127.0.0.1 by --resolve only.
    let ecr_host = "000000000000.dkr.ecr.us-east-1.amazonaws.com";
    for (name, resolve) in [
        (ecr_host, format!("{ecr_host}:{port}:127.0.0.1")),
        ("localhost", format!("localhost:{port}:127.0.0.1")),
    ] {
        let (code, head, body) = curl(&[
            "--cacert",
            ca.to_str().unwrap(),
            "--resolve",
            &resolve,
            "-u",
            &creds,
            &format!("https://{name}:{port}/v2/"),
        ]);
        assert_eq!(code, 200, "{name}: {head}{body}");
    }
    // Without the CA, TLS is refused (the certificate is the box's own).
    let (code, _, _) = curl(&[&format!("https://127.0.0.1:{port}/v2/")]);
    assert_eq!(code, 0, "an unknown CA fails the handshake");

    drop(api);
    assert!(!trusted.exists(), "the trust goes with serve");
}

/// The ECR API's own push path through the AWS CLI: initiate-layer-upload,
/// upload-layer-part in two parts (the first of 5 MiB), complete-layer-upload, then
/// put-image names the layers; the image pulls with skopeo. An out-of-order part and a
/// wrong digest get ECR's exceptions.
#[test]
fn the_layer_upload_api_pushes_an_image_the_registry_serves() {
    let api = Api::start();
    let host = registry_host(&api);
    ecr(
        &api,
        &["create-repository", "--repository-name", "api/push"],
    );
    let work = tempfile::tempdir().unwrap();
    let (_l, img) = layout(&work.path().join("img"), "api-push");
    let blob = |d: &str| {
        work.path()
            .join("img/blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    // The layer grown past 5 MiB is not the image's: the layer sent in parts is a file of
    // its own, checked by digest; the image's layer and config go in one part each.
    let big: Vec<u8> = (0..6 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let big_path = work.path().join("big");
    std::fs::write(&big_path, &big).unwrap();
    let big_digest = format!("sha256:{}", sha256_hex(&big));
    let part_path = |name: &str, bytes: &[u8]| {
        let p = work.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        format!("fileb://{}", p.display())
    };
    let upload = |parts: &[(&str, &[u8], u64)], digest: &str| -> Result<Value, String> {
        let id = ecr(
            &api,
            &["initiate-layer-upload", "--repository-name", "api/push"],
        );
        let id = id["uploadId"].as_str().unwrap().to_string();
        for (name, bytes, first) in parts {
            let last = first + bytes.len() as u64 - 1;
            let out = api.aws_in(
                "ecr",
                &[
                    "upload-layer-part",
                    "--repository-name",
                    "api/push",
                    "--upload-id",
                    &id,
                    "--part-first-byte",
                    &first.to_string(),
                    "--part-last-byte",
                    &last.to_string(),
                    "--layer-part-blob",
                    &part_path(name, bytes),
                ],
            );
            if !out.status.success() {
                return Err(String::from_utf8_lossy(&out.stderr).into_owned());
            }
        }
        let out = api.aws_in(
            "ecr",
            &[
                "complete-layer-upload",
                "--repository-name",
                "api/push",
                "--upload-id",
                &id,
                "--layer-digests",
                digest,
            ],
        );
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(serde_json::from_slice(&out.stdout).unwrap())
    };
    let (a, b) = big.split_at(5 * 1024 * 1024);
    let done = upload(&[("p1", a, 0), ("p2", b, a.len() as u64)], &big_digest).unwrap();
    assert_eq!(done["layerDigest"], big_digest.as_str());
    let e = upload(&[("q1", b, 0), ("q2", a, b.len() as u64)], &big_digest).unwrap_err();
    assert!(e.contains("LayerPartTooSmallException"), "{e}");
    let e = upload(&[("r1", a, 1)], &big_digest).unwrap_err();
    assert!(e.contains("InvalidLayerPartException"), "{e}");
    let layer = std::fs::read(blob(&img.layers[0].digest)).unwrap();
    let other = format!("sha256:{}", sha256_hex(b"not this layer"));
    let e = upload(&[("s1", &layer, 0)], &other).unwrap_err();
    assert!(e.contains("InvalidLayerException"), "{e}");
    for d in [&img.layers[0].digest, &img.config_digest] {
        let bytes = std::fs::read(blob(d)).unwrap();
        upload(&[("one", &bytes, 0)], d).unwrap();
    }
    let manifest = std::fs::read_to_string(blob(&img.manifest_digest)).unwrap();
    ecr(
        &api,
        &[
            "put-image",
            "--repository-name",
            "api/push",
            "--image-tag",
            "v1",
            "--image-manifest",
            &manifest,
        ],
    );
    let creds = format!("AWS:{}", password(&api));
    let mut c = skopeo();
    // Over HTTPS, trusting serve's CA where this test's serve wrote it.
    let certs = api.mf.dir.path().join("certs.d").join(&host);
    c.args(["copy", "--src-creds", &creds])
        .arg("--src-cert-dir")
        .arg(&certs)
        .arg(format!("docker://{host}/api/push:v1"))
        .arg(format!("oci:{}:p", work.path().join("pulled").display()));
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(b))
}

/// Repository policies through the AWS CLI: ECR's refusals (no policy, a bad one), and
/// what one means here: a statement allowing everyone (`"Principal": "*"`) the pull
/// actions lets skopeo pull with no credentials at all; pushes stay refused, and
/// deleting the policy closes the repository again.
#[test]
fn a_repository_policy_allowing_everyone_the_pull_lets_anonymous_pulls_in() {
    let api = Api::start();
    let host = registry_host(&api);
    ecr(&api, &["create-repository", "--repository-name", "pub/app"]);
    let e = ecr_err(
        &api,
        &["get-repository-policy", "--repository-name", "pub/app"],
    );
    assert!(e.contains("RepositoryPolicyNotFoundException"), "{e}");
    let e = ecr_err(
        &api,
        &["delete-repository-policy", "--repository-name", "pub/app"],
    );
    assert!(e.contains("RepositoryPolicyNotFoundException"), "{e}");
    let e = ecr_err(
        &api,
        &[
            "set-repository-policy",
            "--repository-name",
            "pub/app",
            "--policy-text",
            "{not json",
        ],
    );
    assert!(
        e.contains("InvalidParameterException") && e.contains("Invalid repository policy provided"),
        "{e}"
    );
    let e = ecr_err(
        &api,
        &[
            "set-repository-policy",
            "--repository-name",
            "nope",
            "--policy-text",
            "{}",
        ],
    );
    assert!(e.contains("RepositoryNotFoundException"), "{e}");

    let pw = password(&api);
    let work = tempfile::tempdir().unwrap();
    let (_l, img) = layout(&work.path().join("app"), "public-pull");
    let out = push(
        &work.path().join("app"),
        &format!("{host}/pub/app:v1"),
        &format!("AWS:{pw}"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pull = |what: &str| {
        let mut c = skopeo();
        c.args(["inspect", "--raw", "--tls-verify=false", "--no-creds"])
            .arg(format!("docker://{host}/{what}"));
        c.output().unwrap()
    };
    // No policy: no anonymous pull.
    assert!(!pull("pub/app:v1").status.success());

    let text = r#"{"Version":"2012-10-17","Statement":[{"Sid":"AllowPull","Effect":"Allow","Principal":"*","Action":["ecr:BatchGetImage","ecr:GetDownloadUrlForLayer"]}]}"#;
    let set = ecr(
        &api,
        &[
            "set-repository-policy",
            "--repository-name",
            "pub/app",
            "--policy-text",
            text,
        ],
    );
    assert_eq!(set["policyText"], text);
    assert_eq!(set["repositoryName"], "pub/app");
    let got = ecr(
        &api,
        &["get-repository-policy", "--repository-name", "pub/app"],
    );
    assert_eq!(got["policyText"], text);

    // Anonymous: the manifest and a blob; not a push, not another repository.
    let out = pull("pub/app:v1");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        sha256_hex(&out.stdout),
        img.manifest_digest.trim_start_matches("sha256:")
    );
    let mut c = skopeo();
    c.args(["copy", "--src-tls-verify=false", "--src-no-creds"])
        .arg(format!("docker://{host}/pub/app:v1"))
        .arg(format!("oci:{}:copy", work.path().join("back").display()));
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, _, body) = curl(&[
        "-X",
        "POST",
        &format!("http://{host}/v2/pub/app/blobs/uploads/"),
    ]);
    assert_eq!(code, 401, "{body}");
    ecr(&api, &["create-repository", "--repository-name", "private"]);
    let (code, _, _) = curl(&[&format!("http://{host}/v2/private/tags/list")]);
    assert_eq!(code, 401);

    let deleted = ecr(
        &api,
        &["delete-repository-policy", "--repository-name", "pub/app"],
    );
    assert_eq!(deleted["policyText"], text);
    assert!(!pull("pub/app:v1").status.success());
}

/// GetDownloadUrlForLayer through the AWS CLI: a URL of the blob on this registry that
/// curl GETs with no credentials (as ECR's pre-signed URL), verified over HTTPS with the
/// registry's CA; a changed URL is refused, a missing layer is `LayersNotFoundException`.
#[test]
fn get_download_url_for_layer_answers_a_url_curl_gets_without_credentials() {
    let api = Api::start();
    let host = registry_host(&api);
    ecr(&api, &["create-repository", "--repository-name", "dl/app"]);
    let pw = password(&api);
    let work = tempfile::tempdir().unwrap();
    let (_l, img) = layout(&work.path().join("app"), "download-url");
    let out = push(
        &work.path().join("app"),
        &format!("{host}/dl/app:v1"),
        &format!("AWS:{pw}"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let layer = img.layers[0].digest.clone();
    let v = ecr(
        &api,
        &[
            "get-download-url-for-layer",
            "--repository-name",
            "dl/app",
            "--layer-digest",
            &layer,
        ],
    );
    assert_eq!(v["layerDigest"], layer.as_str());
    let url = v["downloadUrl"].as_str().unwrap().to_string();
    assert!(
        url.starts_with(&format!("https://{host}/v2/dl/app/blobs/{layer}?")),
        "{url}"
    );
    let ca = api.mf.root.join("registry/tls/ca.crt");
    let file = work.path().join("layer");
    let out = Command::new("curl")
        .args([
            "-sf",
            "--noproxy",
            "*",
            "--cacert",
            ca.to_str().unwrap(),
            "-o",
        ])
        .arg(&file)
        .arg(&url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        format!("sha256:{}", sha256_hex(&std::fs::read(&file).unwrap())),
        layer
    );
    // Another blob under the same signature, and the URL without it: refused.
    let other = url.replace(&layer, &img.config_digest);
    let (code, _, _) = curl(&["--cacert", ca.to_str().unwrap(), &other]);
    assert_eq!(code, 401);
    let (code, _, _) = curl(&[
        "--cacert",
        ca.to_str().unwrap(),
        url.split('?').next().unwrap(),
    ]);
    assert_eq!(code, 401);
    let missing = format!("sha256:{}", "2".repeat(64));
    let e = ecr_err(
        &api,
        &[
            "get-download-url-for-layer",
            "--repository-name",
            "dl/app",
            "--layer-digest",
            &missing,
        ],
    );
    assert!(e.contains("LayersNotFoundException"), "{e}");
}

/// The referrers API (distribution spec v1.1): an artifact manifest whose `subject` is a
/// pushed image (as a signature or an SBOM is attached), put with curl: the put answers
/// `OCI-Subject`; `GET /v2/<name>/referrers/<digest>` lists it as an image index
/// (its `artifactType`, `annotations`), `?artifactType=` filters (and says so in
/// `OCI-Filters-Applied`), and an image without referrers has an empty list.
#[test]
fn referrers_list_the_manifests_whose_subject_is_an_image() {
    let api = Api::start();
    let host = registry_host(&api);
    ecr(&api, &["create-repository", "--repository-name", "ref/app"]);
    let good = format!("AWS:{}", password(&api));
    let work = tempfile::tempdir().unwrap();
    let (_l, img) = layout(&work.path().join("app"), "referrers");
    let out = push(
        &work.path().join("app"),
        &format!("{host}/ref/app:v1"),
        &good,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The artifact's blobs: the empty config `{}` and one layer, monolithic uploads.
    let blob = |bytes: &[u8]| {
        let d = format!("sha256:{}", sha256_hex(bytes));
        let f = work.path().join(d.replace(':', "-"));
        std::fs::write(&f, bytes).unwrap();
        let (code, _, body) = curl(&[
            "-u",
            &good,
            "-X",
            "POST",
            "-H",
            "Content-Type: application/octet-stream",
            "--data-binary",
            &format!("@{}", f.display()),
            &format!("http://{host}/v2/ref/app/blobs/uploads/?digest={d}"),
        ]);
        assert_eq!(code, 201, "{body}");
        (d, bytes.len())
    };
    let (config, config_size) = blob(b"{}");
    let (layer, layer_size) = blob(b"an sbom");
    let artifact = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/spdx+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": config, "size": config_size},
        "layers": [{"mediaType": "application/spdx+json", "digest": layer, "size": layer_size}],
        "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": img.manifest_digest, "size": img.manifest_size},
        "annotations": {"org.example.kind": "sbom"}
    })
    .to_string();
    let f = work.path().join("artifact.json");
    std::fs::write(&f, &artifact).unwrap();
    let artifact_digest = format!("sha256:{}", sha256_hex(artifact.as_bytes()));
    let (code, head, body) = curl(&[
        "-u",
        &good,
        "-X",
        "PUT",
        "-H",
        "Content-Type: application/vnd.oci.image.manifest.v1+json",
        "--data-binary",
        &format!("@{}", f.display()),
        &format!("http://{host}/v2/ref/app/manifests/{artifact_digest}"),
    ]);
    assert_eq!(code, 201, "{body}");
    assert!(
        head.contains(&format!("oci-subject: {}", img.manifest_digest)),
        "{head}"
    );

    let referrers = |query: &str| {
        let (code, head, body) = curl(&[
            "-u",
            &good,
            &format!(
                "http://{host}/v2/ref/app/referrers/{}{query}",
                img.manifest_digest
            ),
        ]);
        assert_eq!(code, 200, "{body}");
        assert!(
            head.contains("content-type: application/vnd.oci.image.index.v1+json"),
            "{head}"
        );
        (head, serde_json::from_str::<Value>(&body).unwrap())
    };
    let (head, v) = referrers("");
    assert!(!head.contains("oci-filters-applied"), "{head}");
    assert_eq!(v["schemaVersion"], 2);
    let m = v["manifests"].as_array().unwrap();
    assert_eq!(m.len(), 1, "{v:#}");
    assert_eq!(m[0]["digest"], artifact_digest.as_str());
    assert_eq!(m[0]["artifactType"], "application/spdx+json");
    assert_eq!(m[0]["size"], artifact.len());
    assert_eq!(m[0]["annotations"]["org.example.kind"], "sbom");
    let (head, v) = referrers("?artifactType=application/spdx%2Bjson");
    assert!(head.contains("oci-filters-applied: artifacttype"), "{head}");
    assert_eq!(v["manifests"].as_array().unwrap().len(), 1);
    let (_, v) = referrers("?artifactType=application/vnd.example.sig");
    assert_eq!(v["manifests"], serde_json::json!([]));
    // The artifact itself has none.
    let (code, _, body) = curl(&[
        "-u",
        &good,
        &format!("http://{host}/v2/ref/app/referrers/{artifact_digest}"),
    ]);
    assert_eq!(code, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["manifests"],
        serde_json::json!([])
    );
}

/// TagResource, UntagResource and ListTagsForResource on a repository, with ECR's limits
/// and exceptions, through the AWS CLI.
#[test]
fn repository_tags_are_added_listed_removed_and_bounded_as_ecr_bounds_them() {
    let api = Api::start();
    let created = ecr(
        &api,
        &[
            "create-repository",
            "--repository-name",
            "tagged/app",
            "--tags",
            "Key=team,Value=a",
        ],
    );
    let arn = created["repository"]["repositoryArn"]
        .as_str()
        .unwrap()
        .to_string();
    let list =
        |api: &Api| ecr(api, &["list-tags-for-resource", "--resource-arn", &arn])["tags"].clone();
    assert_eq!(
        list(&api),
        serde_json::json!([{"Key": "team", "Value": "a"}])
    );

    // Added, and a key already there takes the new value.
    ecr(
        &api,
        &[
            "tag-resource",
            "--resource-arn",
            &arn,
            "--tags",
            "Key=team,Value=b",
            "Key=env,Value=prod",
        ],
    );
    assert_eq!(
        list(&api),
        serde_json::json!([{"Key": "team", "Value": "b"}, {"Key": "env", "Value": "prod"}])
    );
    ecr(
        &api,
        &[
            "untag-resource",
            "--resource-arn",
            &arn,
            "--tag-keys",
            "team",
            "nothere",
        ],
    );
    assert_eq!(
        list(&api),
        serde_json::json!([{"Key": "env", "Value": "prod"}])
    );

    // ECR's bounds: 50 tags, keys of 1 to 128 characters, values of 256, no aws: keys.
    let many: Vec<String> = (0..50).map(|i| format!("Key=k{i},Value=v")).collect();
    let mut args = vec!["tag-resource", "--resource-arn", &arn, "--tags"];
    args.extend(many.iter().map(String::as_str));
    let e = ecr_err(&api, &args);
    assert!(e.contains("TooManyTagsException"), "{e}");
    assert_eq!(list(&api).as_array().unwrap().len(), 1, "nothing added");
    let long_key = format!("Key={},Value=v", "k".repeat(129));
    let long_value = format!("Key=k,Value={}", "v".repeat(257));
    for bad in [
        long_key.as_str(),
        long_value.as_str(),
        "Key=aws:owner,Value=v",
    ] {
        let e = ecr_err(
            &api,
            &["tag-resource", "--resource-arn", &arn, "--tags", bad],
        );
        assert!(e.contains("InvalidTagParameterException"), "{bad}: {e}");
    }

    // Not a repository of this registry; a repository that does not exist.
    let e = ecr_err(
        &api,
        &[
            "list-tags-for-resource",
            "--resource-arn",
            "arn:aws:ecs:us-east-1:000000000000:cluster/x",
        ],
    );
    assert!(e.contains("InvalidParameterException"), "{e}");
    let gone = arn.replace("tagged/app", "tagged/none");
    let e = ecr_err(
        &api,
        &[
            "tag-resource",
            "--resource-arn",
            &gone,
            "--tags",
            "Key=a,Value=b",
        ],
    );
    assert!(e.contains("RepositoryNotFoundException"), "{e}");
}

/// The Bearer exchange: the registry challenges with Basic as ECR does; the token
/// endpoint takes the ECR Basic credentials and answers a Bearer token the registry takes;
/// no credentials or a forged token are refused.
#[test]
fn the_token_endpoint_exchanges_the_ecr_credentials_for_a_bearer_token() {
    let api = Api::start();
    ecr(
        &api,
        &["create-repository", "--repository-name", "bearer/app"],
    );
    let host = registry_host(&api);
    let base = format!("https://{host}/v2/");
    let (code, head, _) = curl(&["-k", &base]);
    assert_eq!(code, 401);
    assert!(head.contains("www-authenticate: basic realm="), "{head}");
    let token_url = format!(
        "https://{host}/v2/token?service=ecr.amazonaws.com&scope=repository:bearer/app:pull"
    );
    let (code, _, _) = curl(&["-k", &token_url]);
    assert_eq!(code, 401, "no credentials, no token");
    let creds = format!("AWS:{}", password(&api));
    let (code, _, body) = curl(&["-k", "-u", &creds, &token_url]);
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let token = v["token"].as_str().unwrap().to_string();
    assert_eq!(v["access_token"], token.as_str());
    let left = v["expires_in"].as_u64().unwrap();
    assert!(left > 11 * 3600 && left <= 12 * 3600, "{v}");
    let bearer = format!("Authorization: Bearer {token}");
    let (code, _, body) = curl(&["-k", "-H", &bearer, &format!("{base}bearer/app/tags/list")]);
    assert_eq!(code, 200, "{body}");
    let forged = format!("Authorization: Bearer {token}x");
    let (code, _, body) = curl(&["-k", "-H", &forged, &base]);
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("UNAUTHORIZED"), "{body}");
}

/// `imageTagMutability` IMMUTABLE_WITH_EXCLUSION / MUTABLE_WITH_EXCLUSION with
/// `imageTagMutabilityExclusionFilters` (WILDCARD): a tag a filter matches behaves the
/// opposite way to the mode's base, for a skopeo push and for PutImage; the filters are
/// set by the AWS CLI (create-repository) and boto3 (put_image_tag_mutability), answered
/// by describe-repositories, and bounded as the model bounds them.
#[test]
fn tag_mutability_exclusion_filters_make_matching_tags_the_opposite_of_the_mode() {
    let api = Api::start();
    let host = registry_host(&api);
    let creds = format!("AWS:{}", password(&api));
    let created = ecr(
        &api,
        &[
            "create-repository",
            "--repository-name",
            "excl/app",
            "--image-tag-mutability",
            "IMMUTABLE_WITH_EXCLUSION",
            "--image-tag-mutability-exclusion-filters",
            "filterType=WILDCARD,filter=dev-*",
            "filterType=WILDCARD,filter=*-snapshot",
        ],
    );
    let filters = serde_json::json!([
        {"filterType": "WILDCARD", "filter": "dev-*"},
        {"filterType": "WILDCARD", "filter": "*-snapshot"},
    ]);
    assert_eq!(
        created["repository"]["imageTagMutabilityExclusionFilters"],
        filters
    );
    let d = ecr(
        &api,
        &["describe-repositories", "--repository-names", "excl/app"],
    );
    assert_eq!(
        d["repositories"][0]["imageTagMutability"],
        "IMMUTABLE_WITH_EXCLUSION"
    );
    assert_eq!(
        d["repositories"][0]["imageTagMutabilityExclusionFilters"],
        filters
    );

    let work = tempfile::tempdir().unwrap();
    let (one, two) = (work.path().join("one"), work.path().join("two"));
    layout(&one, "excl-one");
    layout(&two, "excl-two");
    let pushed = |l: &Path, tag: &str| {
        let out = push(l, &format!("{host}/excl/app:{tag}"), &creds);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for tag in ["v1", "dev-1", "1.0-snapshot"] {
        let (ok, err) = pushed(&one, tag);
        assert!(ok, "{tag}: {err}");
    }
    // Immutable but for the filters' tags: those move, v1 does not.
    for tag in ["dev-1", "1.0-snapshot"] {
        let (ok, err) = pushed(&two, tag);
        assert!(ok, "{tag} is excluded (mutable): {err}");
    }
    let (ok, err) = pushed(&two, "v1");
    assert!(!ok, "v1 is immutable");
    assert!(
        err.contains("cannot be overwritten because the repository is immutable"),
        "{err}"
    );

    // boto3: MUTABLE_WITH_EXCLUSION, the filters now the tags that stay put.
    let put = api.boto3(
        r#"
import boto3, json, os
ecr = boto3.client("ecr", endpoint_url=os.environ["ENDPOINT"], region_name="us-east-1")
r = ecr.put_image_tag_mutability(repositoryName="excl/app",
    imageTagMutability="MUTABLE_WITH_EXCLUSION",
    imageTagMutabilityExclusionFilters=[{"filterType": "WILDCARD", "filter": "release-*"}])
r.pop("ResponseMetadata")
print(json.dumps(r))
"#,
    );
    assert_eq!(
        put,
        serde_json::json!({
            "registryId": "000000000000",
            "repositoryName": "excl/app",
            "imageTagMutability": "MUTABLE_WITH_EXCLUSION",
            "imageTagMutabilityExclusionFilters":
                [{"filterType": "WILDCARD", "filter": "release-*"}],
        })
    );
    for tag in ["release-1", "latest"] {
        let (ok, err) = pushed(&one, tag);
        assert!(ok, "{tag}: {err}");
    }
    let (ok, err) = pushed(&two, "latest");
    assert!(ok, "latest is mutable: {err}");
    let (ok, _) = pushed(&two, "release-1");
    assert!(!ok, "release-1 is excluded (immutable)");
    // PutImage, the API's own push path, the same: image two's manifest over release-1.
    let got = ecr(
        &api,
        &[
            "batch-get-image",
            "--repository-name",
            "excl/app",
            "--image-ids",
            "imageTag=latest",
        ],
    );
    let manifest2 = got["images"][0]["imageManifest"].as_str().unwrap();
    let put_over = |tag: &str| {
        api.aws_in(
            "ecr",
            &[
                "put-image",
                "--repository-name",
                "excl/app",
                "--image-tag",
                tag,
                "--image-manifest",
                manifest2,
            ],
        )
    };
    let out = put_over("release-1");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ImageTagAlreadyExistsException"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(put_over("v1").status.success(), "v1 is mutable now");

    // The model's bounds (the CLI sends what it is given; the registry refuses).
    let base = [
        "put-image-tag-mutability",
        "--repository-name",
        "excl/app",
        "--image-tag-mutability",
    ];
    let six: Vec<String> = (0..6)
        .map(|i| format!("filterType=WILDCARD,filter=t{i}-*"))
        .collect();
    let mut cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["MUTABLE_WITH_EXCLUSION"],
            "needs imageTagMutabilityExclusionFilters",
        ),
        (
            vec![
                "MUTABLE",
                "--image-tag-mutability-exclusion-filters",
                "filterType=WILDCARD,filter=a*",
            ],
            "are for IMMUTABLE_WITH_EXCLUSION and MUTABLE_WITH_EXCLUSION",
        ),
        (
            vec![
                "IMMUTABLE_WITH_EXCLUSION",
                "--image-tag-mutability-exclusion-filters",
                "filterType=WILDCARD,filter=dev/*",
            ],
            "^[0-9a-zA-Z._*-]{1,128}$",
        ),
        (
            vec![
                "IMMUTABLE_WITH_EXCLUSION",
                "--image-tag-mutability-exclusion-filters",
                "filterType=PREFIX,filter=dev",
            ],
            "enum value set: [WILDCARD]",
        ),
    ];
    let mut too_many = vec![
        "IMMUTABLE_WITH_EXCLUSION",
        "--image-tag-mutability-exclusion-filters",
    ];
    too_many.extend(six.iter().map(String::as_str));
    cases.push((too_many, "less than or equal to 5"));
    for (args, why) in cases {
        let mut all: Vec<&str> = base.to_vec();
        all.extend(args.iter().copied());
        let e = ecr_err(&api, &all);
        assert!(e.contains("InvalidParameterException"), "{args:?}: {e}");
        assert!(e.contains(why), "{args:?}: {e}");
    }
    // Nothing of the refused calls was stored.
    let d = ecr(
        &api,
        &["describe-repositories", "--repository-names", "excl/app"],
    );
    assert_eq!(
        d["repositories"][0]["imageTagMutabilityExclusionFilters"],
        serde_json::json!([{"filterType": "WILDCARD", "filter": "release-*"}])
    );

    // Back to MUTABLE: the filters go.
    ecr(
        &api,
        &[
            "put-image-tag-mutability",
            "--repository-name",
            "excl/app",
            "--image-tag-mutability",
            "MUTABLE",
        ],
    );
    let d = ecr(
        &api,
        &["describe-repositories", "--repository-names", "excl/app"],
    );
    assert!(
        d["repositories"][0]
            .get("imageTagMutabilityExclusionFilters")
            .is_none(),
        "{d}"
    );
}

/// An air-gapped box's loop with no podman or skopeo on it: `minifargate push` of a
/// `docker save` tarball and of an OCI archive into serve's ECR (authenticated with the
/// token serve gives the box, over serve's TLS verified with its CA), the archive's
/// digests kept; describe-images lists both; pushed again, nothing is uploaded; a task
/// definition naming the repository URI runs the image. (skopeo only builds the
/// archives here, as `docker save` would elsewhere.)
#[test]
fn push_sends_an_archive_into_the_box_s_ecr_and_a_task_runs_it() {
    let api = Api::start();
    let repo = ecr(
        &api,
        &["create-repository", "--repository-name", "airgap/app"],
    );
    let uri = repo["repository"]["repositoryUri"]
        .as_str()
        .unwrap()
        .to_string();
    let work = tempfile::tempdir().unwrap();
    let (_l, img) = layout(&work.path().join("layout"), "pushed-from-archive");
    let src = format!("oci:{}:t", work.path().join("layout").display());
    let docker_tar = work.path().join("app-docker.tar");
    let oci_tar = work.path().join("app-oci.tar");
    for dest in [
        format!("docker-archive:{}:airgap/app:1", docker_tar.display()),
        format!("oci-archive:{}:1", oci_tar.display()),
    ] {
        let out = skopeo().args(["copy", &src, &dest]).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // The OCI archive: its manifest travels unchanged, so the digest is the one built.
    let oci = format!("oci-archive:{}", oci_tar.display());
    let got = api
        .mf
        .json(&["push", "--output", "json", &oci, &format!("{uri}:oci")]);
    assert_eq!(got["imageDigest"], img.manifest_digest.as_str(), "{got}");
    assert_eq!(got["blobsUploaded"], 2, "config and layer: {got}");
    let again = api
        .mf
        .json(&["push", "--output", "json", &oci, &format!("{uri}:oci")]);
    assert_eq!(again["blobsUploaded"], 0, "{again}");
    assert_eq!(again["blobsAlreadyPresent"], 2, "{again}");

    // The docker archive: the config (and so the image) is the one built.
    let got = api.mf.json(&[
        "push",
        "--output",
        "json",
        docker_tar.to_str().unwrap(),
        &format!("{uri}:docker"),
    ]);
    let docker_digest = got["imageDigest"].as_str().unwrap().to_string();
    let m = ecr(
        &api,
        &[
            "batch-get-image",
            "--repository-name",
            "airgap/app",
            "--image-ids",
            "imageTag=docker",
        ],
    );
    let manifest: Value =
        serde_json::from_str(m["images"][0]["imageManifest"].as_str().unwrap()).unwrap();
    assert_eq!(manifest["config"]["digest"], img.config_digest.as_str());
    assert_eq!(m["images"][0]["imageId"]["imageDigest"], docker_digest);

    let d = ecr(
        &api,
        &["describe-images", "--repository-name", "airgap/app"],
    );
    let mut tags: Vec<String> = d["imageDetails"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|i| i["imageTags"].as_array().unwrap().clone())
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    tags.sort();
    assert_eq!(tags, vec!["docker", "oci"], "{d}");

    // Not this box's registry and no credentials: said, nothing sent.
    let e = api.mf.fail(&["push", &oci, "127.0.0.1:1/airgap/app:x"]);
    assert!(e.contains("--password-stdin"), "{e}");

    runs_from_the_repository(
        &api,
        "ecr-airgap",
        &format!("{uri}:docker"),
        "pushed-from-archive",
        &docker_digest,
    );
}

/// `minifargate push` of an image of the box's cache (`load`ed from an archive that is
/// gone since): its unpacked layer is written back as a gzip tar, pushed into serve's
/// ECR as a new image with the same files (a new digest: the cache keeps no blob), the
/// same image written back twice gives the same digests (nothing uploaded the second
/// time), and a task definition naming the repository URI runs it; a name that is
/// neither a file nor an image of the cache is refused naming both.
#[test]
fn push_sends_an_image_of_the_cache_into_the_box_s_ecr_and_a_task_runs_it() {
    let api = Api::start();
    let repo = ecr(
        &api,
        &["create-repository", "--repository-name", "airgap/cached"],
    );
    let uri = repo["repository"]["repositoryUri"]
        .as_str()
        .unwrap()
        .to_string();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("layout");
    let (_l, img) = layout(&dir, "pushed-from-the-cache");
    let local = "minifargate.test/cached-push:1";
    api.mf.json(&[
        "load",
        "--input",
        dir.to_str().unwrap(),
        "--tag",
        local,
        "--output",
        "json",
    ]);
    std::fs::remove_dir_all(&dir).unwrap();

    let got = api
        .mf
        .json(&["push", "--output", "json", local, &format!("{uri}:cached")]);
    let digest = got["imageDigest"].as_str().unwrap().to_string();
    assert!(digest.starts_with("sha256:"), "{got}");
    assert_ne!(
        digest, img.manifest_digest,
        "a written-back layer has new bytes: {got}"
    );
    assert_eq!(got["blobsUploaded"], 2, "config and layer: {got}");
    let again = api
        .mf
        .json(&["push", "--output", "json", local, &format!("{uri}:cached")]);
    assert_eq!(again["imageDigest"], digest.as_str(), "{again}");
    assert_eq!(again["blobsUploaded"], 0, "{again}");

    let d = ecr(
        &api,
        &["describe-images", "--repository-name", "airgap/cached"],
    );
    assert_eq!(
        d["imageDetails"][0]["imageTags"],
        serde_json::json!(["cached"]),
        "{d}"
    );
    assert_eq!(d["imageDetails"][0]["imageDigest"], digest.as_str(), "{d}");

    let e = api.mf.fail(&[
        "push",
        "minifargate.test/never-loaded:1",
        &format!("{uri}:x"),
    ]);
    assert!(
        e.contains("no such archive") && e.contains("not an image of the cache"),
        "{e}"
    );

    runs_from_the_repository(
        &api,
        "ecr-cached-push",
        &format!("{uri}:cached"),
        "pushed-from-the-cache",
        &digest,
    );
}

/// A Fargate task of `image` (a repository URI of serve's ECR) that checks the image's
/// marker file: it exits 0 and runs the image of `digest`.
pub(crate) fn runs_from_the_repository(
    api: &Api,
    family: &str,
    image: &str,
    marker: &str,
    digest: &str,
) {
    let td = format!(
        r#"{{"family":"{family}","networkMode":"awsvpc","cpu":"256","memory":"512",
  "requiresCompatibilities":["FARGATE"],
  "executionRoleArn":"arn:aws:iam::000000000000:role/ecsTaskExecutionRole",
  "containerDefinitions":[{{"name":"app","image":"{image}","essential":true,
    "command":["sh","-c","grep -q {marker} /etc/minifargate-marker"]}}]}}"#
    );
    let file = api.file(&format!("{family}.json"), &td);
    api.aws_json(&["register-task-definition", "--cli-input-json", &file]);
    let run = api.aws_json(&[
        "run-task",
        "--task-definition",
        family,
        "--launch-type",
        "FARGATE",
        "--network-configuration",
        "awsvpcConfiguration={subnets=[subnet-0abc],securityGroups=[sg-0def]}",
    ]);
    assert_eq!(run["failures"], serde_json::json!([]));
    let arn = run["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    api.aws_json(&["wait", "tasks-stopped", "--tasks", &arn]);
    let d = api.aws_json(&["describe-tasks", "--tasks", &arn]);
    let t = &d["tasks"][0];
    assert_eq!(t["containers"][0]["exitCode"], 0, "{t:#}");
    assert_eq!(t["containers"][0]["imageDigest"], digest, "{t:#}");
}
