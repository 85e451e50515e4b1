//! A healthy box is never declared lost (issue 54; docs/cluster.md "A lost box"): an
//! agent whose work is blocked keeps its lease, an agent restarted within the grace keeps
//! its tasks, and a box that comes back keeps counting the reservations of the tasks it
//! still runs but no longer owns until they are gone. Real etcd, real agents and serves,
//! driven with the AWS CLI (the harness is tests/common/cluster.rs).

use crate::common;

use common::cluster::{
    Agent, SLEEPER, boxes, describe, describe_task, list, register, resource, serve, serve_with,
    until_connected,
};
use common::etcd::Etcd;
use serde_json::Value;
use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

/// What is left of resource `name` on the instance `ci` describes.
fn remaining(ci: &Value, name: &str) -> i64 {
    resource(ci, "remainingResources", name)
}

/// Every task of the cluster (any status), as ARNs.
fn all_tasks(api: &common::api::Api) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for status in ["RUNNING", "STOPPED"] {
        let v = api.aws_json(&["list-tasks", "--desired-status", status]);
        for a in v["taskArns"].as_array().unwrap() {
            out.insert(a.as_str().unwrap().to_string());
        }
    }
    out
}

fn run_one(api: &common::api::Api, family: &str, more: &[&str]) -> String {
    let mut args = vec![
        "run-task",
        "--task-definition",
        family,
        "--launch-type",
        "EC2",
    ];
    args.extend(more);
    let run = api.aws_json(&args);
    assert_eq!(run["failures"], serde_json::json!([]), "{run:#}");
    let arn = run["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    api.wait_for(60, "the task RUNNING", || {
        (describe_task(api, &arn)["lastStatus"] == "RUNNING").then_some(())
    });
    arn
}

#[test]
fn a_box_whose_work_is_blocked_for_three_leases_stays_connected_and_keeps_its_tasks() {
    let etcd = Etcd::start();
    // The fast grace: a box that lost its lease for a second would have its task stopped.
    let api = serve_with(&etcd, &["--lost-instance-after", "1"]);
    let ttl = 2;
    let a = Agent::start_for(&etcd, &api, ttl, &[]);
    api.wait_for(20, "the instance listed", || {
        (list(&api, &[]).len() == 1).then_some(())
    });
    let arn = a.arn();
    register(&api, "sleeper.json", SLEEPER);
    let task = run_one(&api, "cluster-sleeper", &[]);

    // Another process holds the box's store's write lock for three lease TTLs, and a
    // second task is placed on the box meanwhile: the agent's work waits for the lock
    // to write it into the box's store (SQLite's busy wait, up to 60 s).
    let db = a.mf.root.join("state.db");
    let hold = Duration::from_secs(3 * ttl);
    let (locked, is_locked) = std::sync::mpsc::channel();
    let locker = std::thread::spawn(move || {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.busy_timeout(Duration::from_secs(30)).unwrap();
        c.execute_batch("BEGIN EXCLUSIVE").unwrap();
        locked.send(()).unwrap();
        std::thread::sleep(hold);
        c.execute_batch("COMMIT").unwrap();
    });
    is_locked.recv().unwrap();
    let start = Instant::now();
    let run = api.aws_json(&[
        "run-task",
        "--task-definition",
        "cluster-sleeper",
        "--launch-type",
        "EC2",
    ]);
    assert_eq!(run["failures"], serde_json::json!([]), "{run:#}");
    let second = run["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    let mut looks = 0;
    while start.elapsed() < hold + Duration::from_secs(2) {
        let ci = describe(&api, &arn);
        assert_eq!(
            ci["agentConnected"],
            true,
            "{:?} after the store was locked: {ci:#}",
            start.elapsed()
        );
        looks += 1;
    }
    locker.join().unwrap();
    // (One AWS CLI call takes 1-3 s on a loaded machine.)
    assert!(looks >= 2, "only {looks} looks in {hold:?}");

    // Nothing was stopped or replaced (a box declared lost even for a moment would have
    // had its tasks stopped by the 1 s grace): the first task RUNNING in the cluster and
    // on the box, the second one started once the lock was released.
    api.wait_for(60, "the second task RUNNING", || {
        (describe_task(&api, &second)["lastStatus"] == "RUNNING").then_some(())
    });
    assert_eq!(
        all_tasks(&api),
        BTreeSet::from([task.clone(), second.clone()])
    );
    assert_eq!(describe_task(&api, &task)["lastStatus"], "RUNNING");
    assert_eq!(describe(&api, &arn)["runningTasksCount"], 2);
    let id = task.rsplit('/').next().unwrap();
    let local = a.mf.json(&["describe-tasks", "--tasks", id]);
    assert_eq!(local["tasks"][0]["lastStatus"], "RUNNING", "{local:#}");
    assert_eq!(describe(&api, &arn)["agentConnected"], true);
}

#[test]
fn an_agent_stopped_with_sigterm_and_started_again_within_the_grace_keeps_its_tasks() {
    let etcd = Etcd::start();
    // serve's default grace (--lost-instance-after not given).
    let api = serve(&etcd);
    let ttl = 2;
    let mut boxes = boxes(&etcd, &api, ttl, &[&["box=a"], &["box=b"]]);
    let a = &mut boxes[0];
    let arn_a = a.arn();
    register(&api, "sleeper.json", SLEEPER);
    api.aws_json(&["create-cluster", "--cluster-name", "default"]);
    api.aws_json(&[
        "create-service",
        "--service-name",
        "web",
        "--task-definition",
        "cluster-sleeper",
        "--desired-count",
        "2",
        "--launch-type",
        "EC2",
        "--placement-constraints",
        "type=distinctInstance",
    ]);
    api.wait_for(90, "the service's 2 tasks RUNNING", || {
        (common::cluster::service_placement(&api, "web").len() == 2).then_some(())
    });
    // A standalone task on box a too.
    let standalone = run_one(
        &api,
        "cluster-sleeper",
        &[
            "--placement-constraints",
            "type=memberOf,expression=attribute:box == a",
        ],
    );
    assert_eq!(
        describe_task(&api, &standalone)["containerInstanceArn"],
        arn_a.as_str()
    );
    let before = all_tasks(&api);
    assert_eq!(before.len(), 3, "{before:?}");

    // The agent is stopped (an upgrade, a restart) for three lease TTLs.
    let status = a.signal("-TERM");
    assert!(status.success(), "{status:?}");
    until_connected(&api, &arn_a, false, Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(3 * ttl + 3));
    a.spawn();
    until_connected(&api, &arn_a, true, Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(3));

    // The same tasks, RUNNING; none stopped, none replaced.
    assert_eq!(all_tasks(&api), before);
    for t in &before {
        let d = describe_task(&api, t);
        assert_eq!(d["lastStatus"], "RUNNING", "{d:#}");
        if d["containerInstanceArn"] == arn_a.as_str() {
            let id = t.rsplit('/').next().unwrap();
            let local = a.mf.json(&["describe-tasks", "--tasks", id]);
            assert_eq!(local["tasks"][0]["lastStatus"], "RUNNING", "{local:#}");
        }
    }
    assert_eq!(describe(&api, &arn_a)["runningTasksCount"], 2);
    let _ = a.signal("-TERM");
}

/// A task that takes its whole stopTimeout to stop (its shell ignores SIGTERM).
const SLOW_STOP: &str = r#"{
  "family": "cluster-slow-stop",
  "networkMode": "awsvpc",
  "requiresCompatibilities": ["EC2"],
  "cpu": "256",
  "memory": "128",
  "containerDefinitions": [{
    "name": "main",
    "image": "public.ecr.aws/docker/library/busybox:1.36",
    "command": ["sh", "-c", "trap '' TERM; while :; do sleep 1; done"],
    "stopTimeout": 15,
    "essential": true
  }]
}"#;

#[test]
fn a_box_that_comes_back_counts_the_tasks_it_still_stops_until_they_are_gone() {
    let etcd = Etcd::start();
    let api = serve_with(&etcd, &["--lost-instance-after", "1"]);
    let mut a = Agent::start_for(&etcd, &api, 2, &[]);
    api.wait_for(20, "the instance listed", || {
        (list(&api, &[]).len() == 1).then_some(())
    });
    let arn = a.arn();
    register(&api, "slow-stop.json", SLOW_STOP);
    let task = run_one(&api, "cluster-slow-stop", &[]);
    let id = task.rsplit('/').next().unwrap().to_string();
    let ci = describe(&api, &arn);
    let memory = resource(&ci, "registeredResources", "MEMORY");
    assert_eq!(remaining(&ci, "MEMORY"), memory - 128);

    // The box is lost (its agent frozen): the leader stops its task in the cluster and
    // takes its reservation out of the ledger.
    let pid = a.child.as_ref().unwrap().id().to_string();
    let _ = Command::new("kill").args(["-STOP", &pid]).status();
    api.wait_for(30, "the lost box's task STOPPED", || {
        (describe_task(&api, &task)["lastStatus"] == "STOPPED").then_some(())
    });

    // It comes back: it stops the task, which takes its stopTimeout; meanwhile the
    // instance still counts the task's memory (placement must not book it twice).
    let _ = Command::new("kill").args(["-CONT", &pid]).status();
    until_connected(&api, &arn, true, Duration::from_secs(20));
    let local = |a: &Agent| {
        let v = a.mf.json(&["describe-tasks", "--tasks", &id]);
        v["tasks"][0]["lastStatus"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let mut looks = 0;
    loop {
        let ci = describe(&api, &arn);
        if local(&a) == "STOPPED" {
            break;
        }
        // Still running on the box when the instance was described.
        assert_eq!(ci["agentConnected"], true, "{ci:#}");
        assert_eq!(ci["runningTasksCount"], 1, "{ci:#}");
        assert_eq!(remaining(&ci, "MEMORY"), memory - 128, "{ci:#}");
        // The leader's STOPPED stands: the box's reports of its own stop (DEPROVISIONING)
        // do not bring the record back.
        let t = describe_task(&api, &task);
        assert_eq!(
            t["lastStatus"], "STOPPED",
            "the cluster's record reverted: {t:#}"
        );
        looks += 1;
        assert!(looks < 120, "the task never stopped on the box");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        looks >= 2,
        "the task stopped before the instance was looked at"
    );
    // Gone from the box: its reservation goes too.
    api.wait_for(20, "the reservation released", || {
        let ci = describe(&api, &arn);
        (ci["runningTasksCount"] == 0 && remaining(&ci, "MEMORY") == memory).then_some(())
    });
    let t = describe_task(&api, &task);
    assert_eq!(t["lastStatus"], "STOPPED", "{t:#}");
    assert_eq!(t["stopCode"], "TerminationNotice", "{t:#}");
    let _ = a.signal("-TERM");
}
