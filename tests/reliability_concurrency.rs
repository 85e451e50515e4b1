//! Concurrency (issue 8): 20 `run-task --detach` and 20 `describe-tasks` at once, each
//! its own process on one state database. All succeed, no SQLite busy/locked error ever
//! reaches the user, every task gets its own address, every task runs and stops, and
//! nothing is left behind.

use crate::common;

use common::busybox_task_env;
use common::image::{Compression, busybox_layer};
use common::leaks::assert_no_leaks;
use serde_json::Value;
use std::collections::BTreeSet;
use std::process::Output;
use std::time::{Duration, Instant};

const BUSYBOX: &str = "public.ecr.aws/docker/library/busybox:1.36";
const N: usize = 20;

fn arn_id(v: &Value) -> String {
    v.as_str().unwrap().rsplit('/').next().unwrap().to_string()
}

/// No output of a command mentions a SQLite lock.
fn assert_no_busy(what: &str, out: &Output) {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
    .to_lowercase();
    for bad in ["database is locked", "database is busy", "sqlite_busy"] {
        assert!(!text.contains(bad), "{what}: {bad:?} in {text}");
    }
}

#[test]
fn twenty_run_tasks_and_twenty_describes_at_once() {
    let (mf, _reg) = busybox_task_env(busybox_layer(Compression::Gzip, "conc"));
    let td = mf.taskdef(
        "conc",
        &format!(
            r#"{{"family":"conc","networkMode":"awsvpc","containerDefinitions":[
            {{"name":"app","image":"{BUSYBOX}","memory":32,"stopTimeout":2,
              "command":["sh","-c","trap 'exit 0' TERM; while :; do sleep 1; done"]}}]}}"#
        ),
    );
    // Registered (and the image pulled) once, so the 20 launches race on the tasks only.
    let first = mf.json(&["run-task", "--task-definition", &td, "--detach"]);
    let first = arn_id(&first["tasks"][0]["taskArn"]);
    let mf = &mf;
    let (runs, describes) = std::thread::scope(|s| {
        let runs: Vec<_> = (0..N)
            .map(|_| {
                s.spawn(|| {
                    mf.cmd()
                        .args(["run-task", "--task-definition", "conc", "--detach"])
                        .output()
                        .unwrap()
                })
            })
            .collect();
        let describes: Vec<_> = (0..N)
            .map(|_| {
                s.spawn(|| {
                    mf.cmd()
                        .args(["describe-tasks", "--tasks", &first])
                        .output()
                        .unwrap()
                })
            })
            .collect();
        (
            runs.into_iter()
                .map(|h| h.join().unwrap())
                .collect::<Vec<_>>(),
            describes
                .into_iter()
                .map(|h| h.join().unwrap())
                .collect::<Vec<_>>(),
        )
    });
    let mut ids = vec![first.clone()];
    for (i, out) in runs.iter().enumerate() {
        assert!(
            out.status.success(),
            "run-task {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_no_busy(&format!("run-task {i}"), out);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["failures"], serde_json::json!([]));
        ids.push(arn_id(&v["tasks"][0]["taskArn"]));
    }
    for (i, out) in describes.iter().enumerate() {
        assert!(
            out.status.success(),
            "describe-tasks {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_no_busy(&format!("describe-tasks {i}"), out);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(arn_id(&v["tasks"][0]["taskArn"]), first);
    }
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), N + 1);
    // Every task runs, each with its own address.
    let deadline = Instant::now() + Duration::from_secs(180);
    let tasks = loop {
        let mut args = vec!["describe-tasks", "--tasks"];
        args.extend(ids.iter().map(String::as_str));
        let out = mf.cmd().args(&args).output().unwrap();
        assert!(out.status.success());
        assert_no_busy("describe-tasks", &out);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let tasks = v["tasks"].as_array().unwrap().clone();
        assert_eq!(tasks.len(), N + 1, "{v:#}");
        for t in &tasks {
            assert_ne!(t["lastStatus"], "STOPPED", "{t:#}");
        }
        if tasks.iter().all(|t| t["lastStatus"] == "RUNNING") {
            break tasks;
        }
        assert!(Instant::now() < deadline, "not all RUNNING: {v:#}");
        std::thread::sleep(Duration::from_millis(250));
    };
    let ips: BTreeSet<String> = tasks
        .iter()
        .map(|t| {
            t["containers"][0]["networkInterfaces"][0]["privateIpv4Address"]
                .as_str()
                .unwrap_or_else(|| panic!("no address: {t:#}"))
                .to_string()
        })
        .collect();
    assert_eq!(ips.len(), N + 1, "addresses shared: {ips:?}");
    // And all stop at once, cleanly.
    std::thread::scope(|s| {
        for id in &ids {
            s.spawn(move || {
                let out = mf.cmd().args(["stop-task", "--task", id]).output().unwrap();
                assert!(out.status.success(), "stop-task {id}");
                assert_no_busy("stop-task", &out);
            });
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut args = vec!["describe-tasks", "--tasks"];
        args.extend(ids.iter().map(String::as_str));
        let v = mf.json(&args);
        let tasks = v["tasks"].as_array().unwrap();
        if tasks.iter().all(|t| t["lastStatus"] == "STOPPED") {
            for t in tasks {
                assert_eq!(t["stopCode"], "UserInitiated", "{t:#}");
            }
            break;
        }
        assert!(Instant::now() < deadline, "not all STOPPED: {v:#}");
        std::thread::sleep(Duration::from_millis(250));
    }
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    assert_no_leaks(mf, &ids, &[]);
}
