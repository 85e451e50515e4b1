//! The images of a task are pulled side by side (issue 26): a task of three containers
//! with three distinct images has all three downloading before any is in the cache, the
//! layer they share is fetched once, `--count` tasks fetch each layer once between them,
//! and one image failing fails the task with the agent's CannotPullContainerError and
//! leaves nothing partial. Requests are counted by the fault proxy in front of the real
//! registry (`seen()`); what the containers see is read from their output.

use crate::common;

use common::cli::Mf;
use common::faultproxy::{Fault, FaultProxy};
use common::image::{BuiltImage, Compression, Entry, Layer, busybox_entries};
use common::leaks::{assert_no_leaks, wait_for};
use common::registry::{Registry, RegistryOpts};
use common::util::random_bytes;
use serde_json::Value;
use std::time::Duration;

/// Incompressible, so the throttled proxy needs seconds for it.
const BIG: usize = 1 << 20;

/// A registry with three images `app/{a,b,c}:1`, each the same busybox layer plus a
/// distinct 1 MiB layer holding `/marker` (its name), behind a fault proxy that
/// `public.ecr.aws` is mirrored to.
struct Env {
    mf: Mf,
    _reg: Registry,
    proxy: FaultProxy,
    images: Vec<BuiltImage>,
}

impl Env {
    fn new(faults: impl FnOnce(&[BuiltImage]) -> Vec<Fault>) -> Env {
        let reg = Registry::start(RegistryOpts::default());
        let work = tempfile::Builder::new()
            .prefix("mf-pulls-img-")
            .tempdir()
            .unwrap();
        let bb = Layer::new(Compression::Gzip, busybox_entries("pulls"));
        let images: Vec<BuiltImage> = ["a", "b", "c"]
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let own = Layer::new(
                    Compression::Gzip,
                    vec![
                        Entry::file("marker", *name),
                        Entry::file("big", random_bytes(40 + i as u64, BIG)),
                    ],
                );
                common::push_image(
                    &reg,
                    work.path(),
                    &format!("app/{name}:1"),
                    &[bb.clone(), own],
                )
            })
            .collect();
        let proxy = FaultProxy::start(&reg.host(), faults(&images));
        let mut mf = Mf::new();
        mf.mirror_config("public.ecr.aws", &proxy.host(), true);
        Env {
            mf,
            _reg: reg,
            proxy,
            images,
        }
    }

    /// a and b print their marker and exit; c, essential, waits for both to complete
    /// and prints its own: the task's exit code is c's.
    fn taskdef(&self, family: &str, images: [&str; 3]) -> String {
        let c = |name: &str, image: &str, essential: bool, deps: &str| {
            format!(
                r#"{{"name":"{name}","image":"public.ecr.aws/app/{image}:1","memory":32,
                    "essential":{essential},"command":["sh","-c","echo $(cat /marker)"]{deps}}}"#
            )
        };
        let deps = r#","dependsOn":[{"containerName":"a","condition":"COMPLETE"},
                                     {"containerName":"b","condition":"COMPLETE"}]"#;
        self.mf.taskdef(
            family,
            &format!(
                r#"{{"family":"{family}","networkMode":"awsvpc","containerDefinitions":[{},{},{}]}}"#,
                c("a", images[0], false, ""),
                c("b", images[1], false, ""),
                c("c", images[2], true, deps),
            ),
        )
    }

    /// GETs of blob `digest` the registry was asked for.
    fn blob_gets(&self, digest: &str) -> usize {
        self.proxy
            .seen_for(&format!("/blobs/{digest}"))
            .iter()
            .filter(|s| s.method == "GET")
            .count()
    }

    /// Every layer blob of the three images was fetched exactly once.
    fn assert_each_layer_fetched_once(&self) {
        let mut digests: Vec<&str> = self
            .images
            .iter()
            .flat_map(|i| i.layers.iter().map(|l| l.digest.as_str()))
            .collect();
        digests.sort();
        digests.dedup();
        assert_eq!(digests.len(), 4, "one shared layer and three own ones");
        for d in digests {
            assert_eq!(
                self.blob_gets(d),
                1,
                "{d} fetched once: {:#?}",
                self.proxy.seen()
            );
        }
    }
}

fn arn_id(v: &Value) -> String {
    v.as_str().unwrap().rsplit('/').next().unwrap().to_string()
}

#[test]
fn a_task_pulls_its_distinct_images_side_by_side_and_each_layer_once() {
    // Each own layer takes ~4 s through the proxy: a pull one image after another could
    // not have asked for the third before the first was committed to the cache.
    let env = Env::new(|images| {
        images
            .iter()
            .map(|i| Fault::Throttle {
                path: i.layers[1].digest.clone(),
                bytes_per_sec: 256 << 10,
            })
            .collect()
    });
    let td = env.taskdef("side", ["a", "b", "c"]);
    let child = env
        .mf
        .cmd()
        .args(["run-task", "--task-definition", &td])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("all three own layers requested", || {
        env.images
            .iter()
            .all(|i| env.blob_gets(&i.layers[1].digest) > 0)
    });
    for i in &env.images {
        let dir = env.mf.layer_dir(&i.layers[1].diff_id);
        assert!(
            !dir.exists(),
            "{} was in the cache before the last image's download began: pulled in turn",
            dir.display()
        );
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in ["a", "b", "c"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.trim() == format!("{name} | {name}")),
            "container {name} saw its own image: {stdout}"
        );
    }
    env.assert_each_layer_fetched_once();
    env.mf.assert_tmp_empty();
    let ids: Vec<String> = env.mf.json(&["list-tasks", "--desired-status", "STOPPED"])["taskArns"]
        .as_array()
        .unwrap()
        .iter()
        .map(arn_id)
        .collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    assert_no_leaks(&env.mf, &ids, &[]);
}

#[test]
fn count_tasks_fetch_each_layer_once_between_them() {
    let env = Env::new(|_| Vec::new());
    let td = env.taskdef("count", ["a", "b", "c"]);
    let v = env.mf.json(&[
        "run-task",
        "--task-definition",
        &td,
        "--count",
        "3",
        "--detach",
    ]);
    let ids: Vec<String> = v["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| arn_id(&t["taskArn"]))
        .collect();
    assert_eq!(ids.len(), 3);
    let mut args = vec!["describe-tasks", "--tasks"];
    args.extend(ids.iter().map(String::as_str));
    common::util::wait_until("three tasks STOPPED", Duration::from_secs(90), || {
        let d = env.mf.json(&args);
        let tasks = d["tasks"].as_array().unwrap().clone();
        tasks
            .iter()
            .all(|t| t["lastStatus"] == "STOPPED")
            .then_some(tasks)
    })
    .iter()
    .for_each(|t| {
        let c = t["containers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "c")
            .unwrap();
        assert_eq!(c["exitCode"], 0, "{t:#}");
    });
    env.assert_each_layer_fetched_once();
    env.mf.assert_tmp_empty();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    assert_no_leaks(&env.mf, &ids, &[]);
}

#[test]
fn one_image_failing_fails_the_task_with_cannot_pull_and_leaves_nothing_partial() {
    // b's own layer is refused by the registry while a's and c's download.
    let env = Env::new(|images| {
        vec![Fault::Status {
            path: images[1].layers[1].digest.clone(),
            status: 404,
            times: 1000,
        }]
    });
    let td = env.taskdef("fail", ["a", "b", "c"]);
    let out = env.mf.run(&["run-task", "--task-definition", &td]);
    assert!(!out.status.success());
    let id = arn_id(&env.mf.json(&["list-tasks", "--desired-status", "STOPPED"])["taskArns"][0]);
    let t = &env.mf.json(&["describe-tasks", "--tasks", &id])["tasks"][0];
    assert_eq!(t["lastStatus"], "STOPPED");
    assert_eq!(t["stopCode"], "TaskFailedToStart", "{t:#}");
    let b = t["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "b")
        .unwrap();
    let reason = b["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("CannotPullContainerError:") && reason.contains("app/b:1"),
        "{t:#}"
    );
    // Nothing of b's failed layer: no staging dir, no layer, no image record.
    env.mf.assert_tmp_empty();
    assert!(!env.mf.layer_dir(&env.images[1].layers[1].diff_id).exists());
    assert!(
        !env.mf
            .blobs()
            .iter()
            .any(|b| env.images[1].manifest_digest.ends_with(b)),
        "b's manifest was stored: {:?}",
        env.mf.blobs()
    );
    assert!(
        !env.mf
            .images()
            .iter()
            .any(|i| i.to_string().contains("app/b")),
        "{:?}",
        env.mf.images()
    );
    assert_no_leaks(&env.mf, &[&id], &[]);
}
