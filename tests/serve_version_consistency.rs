//! Root integration test of `versionConsistency` in a service: the tag a deployment's first
//! task resolved is the digest every later task of that deployment runs, even after the
//! tag is pushed again (and pulled again into the cache); `disabled` takes the tag as it
//! is at each task's start. Seen from inside: the image's marker file in the task's log.

use crate::common;

use common::api::Api;
use common::image::{Compression, busybox_layer};
use serde_json::Value;

const IMAGE: &str = "public.ecr.aws/docker/library/busybox:v1";

fn svc_def(family: &str, consistency: &str) -> String {
    format!(
        r#"{{"family":"{family}","networkMode":"awsvpc","cpu":"256","memory":"512",
  "containerDefinitions":[{{"name":"app","image":"{IMAGE}","essential":true{consistency},
    "command":["sh","-c","cat /etc/minifargate-marker; echo; trap 'exit 0' TERM; sleep 3600 & wait"]}}]}}"#
    )
}

/// The service's RUNNING tasks once `n` are, oldest first.
fn running(api: &Api, service: &str, n: usize) -> Vec<Value> {
    api.wait_for(90, &format!("{n} RUNNING tasks of {service}"), || {
        let s = api.service("default", service);
        if s["runningCount"] != n || s["pendingCount"] != 0 {
            return None;
        }
        let arns: Vec<String> = api.aws_json(&[
            "list-tasks",
            "--family",
            service,
            "--desired-status",
            "RUNNING",
        ])["taskArns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect();
        if arns.len() != n {
            return None;
        }
        let mut args = vec!["describe-tasks", "--tasks"];
        args.extend(arns.iter().map(String::as_str));
        let mut tasks: Vec<Value> = api.aws_json(&args)["tasks"].as_array().unwrap().clone();
        if tasks.iter().any(|t| t["lastStatus"] != "RUNNING") {
            return None;
        }
        tasks.sort_by_key(|t| t["createdAt"].to_string());
        Some(tasks)
    })
}

/// What the task's container printed: the marker of the image it runs.
fn marker(api: &Api, task: &Value) -> String {
    let id = task["taskArn"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap();
    api.wait_for(30, &format!("the log of {id}"), || {
        let out = api.mf.run(&["logs", id]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        ["marker-one", "marker-two"]
            .into_iter()
            .find(|m| text.contains(m))
            .map(str::to_string)
    })
}

fn digest(task: &Value) -> String {
    task["containers"][0]["imageDigest"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn a_deployment_keeps_the_digest_its_first_task_resolved() {
    let api = Api::start();
    let work = tempfile::tempdir().unwrap();
    let one = common::push_image(
        api.registry(),
        work.path(),
        "docker/library/busybox:v1",
        &[busybox_layer(Compression::Gzip, "marker-one")],
    );
    let pinned = api.file("pinned.json", &svc_def("pinned", ""));
    let loose = api.file(
        "loose.json",
        &svc_def("loose", r#","versionConsistency":"disabled""#),
    );
    for (file, name) in [(&pinned, "pinned"), (&loose, "loose")] {
        api.aws_json(&["register-task-definition", "--cli-input-json", file]);
        api.aws_json(&[
            "create-service",
            "--service-name",
            name,
            "--task-definition",
            name,
            "--desired-count",
            "1",
        ]);
    }
    for name in ["pinned", "loose"] {
        let t = running(&api, name, 1);
        assert_eq!(digest(&t[0]), one.manifest_digest);
        assert_eq!(marker(&api, &t[0]), "marker-one");
    }

    // The tag moves, and this host's cache follows it (a pull of the tag).
    let two = common::push_image(
        api.registry(),
        work.path(),
        "docker/library/busybox:v1",
        &[busybox_layer(Compression::Gzip, "marker-two")],
    );
    assert_ne!(one.manifest_digest, two.manifest_digest);
    let pulled = api.mf.pull_json(IMAGE, &[]);
    assert_eq!(pulled["digest"], two.manifest_digest.as_str(), "{pulled:#}");

    // More tasks of the same deployments (a desiredCount change starts no new one).
    for name in ["pinned", "loose"] {
        let s = api.aws_json(&["update-service", "--service", name, "--desired-count", "2"]);
        assert_eq!(s["service"]["deployments"].as_array().unwrap().len(), 1);
    }
    let t = running(&api, "pinned", 2);
    for task in &t {
        assert_eq!(digest(task), one.manifest_digest, "{task:#}");
        assert_eq!(marker(&api, task), "marker-one");
    }
    let t = running(&api, "loose", 2);
    assert_eq!(digest(&t[0]), one.manifest_digest);
    assert_eq!(marker(&api, &t[0]), "marker-one");
    assert_eq!(digest(&t[1]), two.manifest_digest, "{:#}", t[1]);
    assert_eq!(marker(&api, &t[1]), "marker-two");

    for name in ["pinned", "loose"] {
        api.aws_json(&["delete-service", "--service", name, "--force"]);
    }
}
