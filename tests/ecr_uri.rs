//! The repository URI is what clients push to: on a box running serve, the seed's flow
//! verbatim — `aws ecr get-login-password | docker login --username AWS --password-stdin
//! <registry>`, `docker tag`, `docker push <repositoryUri>:1.0` — and `podman push` and
//! `skopeo copy` to the same URI, with no TLS flag; then a task definition naming it runs.
//! docs/registry.md "The repository URI on the box".
//!
//! The clients run in a private mount namespace that sees a copy of /etc with serve's
//! hosts file as /etc/hosts, and the trust serve wrote as /etc/docker/certs.d and
//! /etc/containers/certs.d (serve writes the test's own files, never the box's), with a
//! tmpfs on /run (dockerd and podman write their run files there): everything they made
//! goes with the namespace. The test starts its own dockerd (Debian's docker.io) there,
//! with its own data and exec roots and no iptables or bridge.

use crate::common;

use common::api::Api;
use common::image::{Compression, Layout, busybox_entries, busybox_layer, tar_bytes};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// The flow, as a user types it (sh, `set -e`). Its environment names the files.
const FLOW: &str = r#"set -eu
mount -t tmpfs -o mode=0755 tmpfs /run
# A copy of /etc with serve's hosts file, not a bind mount on /etc/hosts: a serve of the
# box rewriting the real /etc/hosts (renamed over) would detach a mount on that file.
cp -a /etc "$T/etc"
cp "$HOSTS" "$T/etc/hosts"
mount --bind "$T/etc" /etc
mount -t tmpfs -o mode=0755 tmpfs /etc/docker
mkdir /etc/docker/certs.d
mount --bind "$DOCKER_CERTS" /etc/docker/certs.d
mount --bind "$CONTAINERS_CERTS" /etc/containers/certs.d
echo '{}' >"$T/daemon.json"
dockerd --data-root "$T/d" --exec-root "$T/x" --pidfile "$T/dockerd.pid" \
  -H "unix://$T/docker.sock" --config-file "$T/daemon.json" \
  --iptables=false --ip6tables=false --bridge=none --storage-driver vfs >"$T/dockerd.log" 2>&1 &
DOCKERD=$!
trap 'kill $DOCKERD 2>/dev/null; wait $DOCKERD 2>/dev/null || true' EXIT
export DOCKER_HOST="unix://$T/docker.sock" DOCKER_CONFIG="$T/docker-client"
n=0
until docker version >/dev/null 2>&1; do
  n=$((n + 1))
  if [ $n -gt 600 ] || ! kill -0 $DOCKERD 2>/dev/null; then
    echo "dockerd did not start:" >&2; tail -20 "$T/dockerd.log" >&2; exit 1
  fi
  sleep 0.1
done
docker import "$ROOTFS" julia-local >/dev/null
REGISTRY="${URI%%/*}"
# dockerd gives the registry's first answer 15 s (its ping's timeout), then tries the
# login without the credentials (401): on a machine loaded enough to miss that, again.
n=0
until aws ecr get-login-password | docker login --username AWS --password-stdin "$REGISTRY"; do
  n=$((n + 1)); [ $n -lt 3 ] || exit 1
done
docker tag julia-local "$URI:1.0"
docker push "$URI:1.0"

export REGISTRY_AUTH_FILE="$T/auth.json"
podman() { command podman --root "$T/p/root" --runroot "$T/p/run" --storage-driver vfs "$@"; }
aws ecr get-login-password | podman login --username AWS --password-stdin "$REGISTRY"
podman import -q "$ROOTFS" julia-podman >/dev/null
podman push -q julia-podman "$URI:podman"
skopeo copy -q "oci:$LAYOUT:t" "docker://$URI:skopeo"
"#;

fn ecr(api: &Api, args: &[&str]) -> Value {
    api.aws_json_in("ecr", args)
}

#[test]
fn docker_podman_and_skopeo_push_to_the_repository_uri_and_a_task_runs_it() {
    let mut api = Api::start();
    let env = |k: &str| api.mf.env_value(k).unwrap();
    let (hosts, containers_certs, docker_certs) = (
        env("MINIFARGATE_HOSTS_FILE"),
        env("MINIFARGATE_REGISTRY_CERTS_D"),
        env("MINIFARGATE_DOCKER_CERTS_D"),
    );
    let repo = ecr(&api, &["create-repository", "--repository-name", "julia"]);
    let uri = repo["repository"]["repositoryUri"]
        .as_str()
        .unwrap()
        .to_string();
    let registry = uri.split('/').next().unwrap().to_string();
    assert_eq!(registry, "000000000000.dkr.ecr.us-east-1.amazonaws.com");

    // serve names the registry in its hosts block, on a loopback address of its own, and
    // trusts its CA for that name in both certs.d directories.
    let named = std::fs::read_to_string(&hosts).unwrap();
    let line = named
        .lines()
        .find(|l| l.ends_with(&format!("\t{registry}")))
        .unwrap_or_else(|| panic!("{registry} is not in {hosts}:\n{named}"));
    let ip: std::net::Ipv4Addr = line.split('\t').next().unwrap().parse().unwrap();
    assert!(
        ip.is_loopback() && ip != std::net::Ipv4Addr::LOCALHOST,
        "{line}"
    );
    let ca = std::fs::read(api.mf.root.join("registry/tls/ca.crt")).unwrap();
    let trust = [
        Path::new(&containers_certs).join(&registry).join("ca.crt"),
        Path::new(&docker_certs).join(&registry).join("ca.crt"),
    ];
    for t in &trust {
        assert_eq!(std::fs::read(t).unwrap(), ca, "{}", t.display());
    }

    // What the clients push: a root file system tar (docker and podman import it) and an
    // OCI layout (skopeo copies it), each with its marker.
    let work = tempfile::Builder::new()
        .prefix("mf-uri-")
        .tempdir()
        .unwrap();
    let t = work.path();
    let rootfs = t.join("rootfs.tar");
    std::fs::write(&rootfs, tar_bytes(&busybox_entries("pushed-by-docker"))).unwrap();
    let mut layout = Layout::new(&t.join("oci"));
    let img = layout.add_image(
        "linux/amd64",
        &[busybox_layer(Compression::Gzip, "pushed-by-skopeo")],
    );
    layout.tag_image("t", &img);

    let mut c = Command::new("unshare");
    api.aws_env(&mut c);
    let aws_dir = common::services::tool("aws");
    let path = format!(
        "{}:{}",
        aws_dir.parent().unwrap_or(Path::new("/")).display(),
        std::env::var("PATH").unwrap_or_default()
    );
    c.args([
        "--mount",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        FLOW,
    ])
    .env("PATH", path)
    .env("T", t)
    .env("HOSTS", &hosts)
    .env("DOCKER_CERTS", &docker_certs)
    .env("CONTAINERS_CERTS", &containers_certs)
    .env("ROOTFS", &rootfs)
    .env("LAYOUT", t.join("oci"))
    .env("URI", &uri);
    let out = c.output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    eprintln!(
        "$ the flow\n  exit: {}\n  stdout: {stdout}\n  stderr: {stderr}",
        out.status
    );
    assert!(out.status.success(), "the push flow failed: {stderr}");
    assert!(stdout.contains("Login Succeeded"), "{stdout}");

    // ECR lists the three pushes; a task definition naming the docker push runs it.
    let d = ecr(&api, &["describe-images", "--repository-name", "julia"]);
    let digest_of = |tag: &str| {
        d["imageDetails"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["imageTags"].as_array().unwrap().iter().any(|t| t == tag))
            .unwrap_or_else(|| panic!("no image tagged {tag}: {d:#}"))["imageDigest"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let pushed = digest_of("1.0");
    assert!(
        stdout.contains(&format!("1.0: digest: {pushed}")),
        "docker push said: {stdout}"
    );
    digest_of("podman");
    assert_eq!(digest_of("skopeo"), img.manifest_digest);
    crate::ecr::runs_from_the_repository(
        &api,
        "julia",
        &format!("{uri}:1.0"),
        "pushed-by-docker",
        &pushed,
    );

    // serve stops: its name and its trust go; the box's own files were never touched.
    api.stop();
    let left = std::fs::read_to_string(&hosts).unwrap();
    assert!(!left.contains(&registry), "{left}");
    for t in &trust {
        assert!(!t.exists(), "{} stays", t.display());
    }
}
