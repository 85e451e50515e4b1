//! One task, one box (issue 54; docs/cluster.md "One task, one box"): every decision the
//! cluster takes on what it read is a transaction on what it read, so a lost answer, a
//! retry or a concurrent change never puts one task id on two instances. Faults come from
//! the in-process proxy (tests/common/faultproxy.rs) between `serve` and a real etcd.

use crate::common;

use common::cluster::{Agent, ecs_call, register, serve_on, serve_with, two_boxes};
use common::etcd::Etcd;
use common::faultproxy::{Cut, Fault, FaultProxy, Then};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// A task definition of one busybox container that sleeps until stopped, 128 CPU units
/// and 64 MiB, awsvpc.
fn sleeper(family: &str) -> String {
    format!(
        r#"{{
  "family": "{family}",
  "networkMode": "awsvpc",
  "requiresCompatibilities": ["EC2"],
  "cpu": "128",
  "memory": "64",
  "containerDefinitions": [{{
    "name": "main",
    "image": "public.ecr.aws/docker/library/busybox:1.36",
    "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 300 & wait"],
    "essential": true
  }}]
}}"#
    )
}

/// Every task id in etcd with the instances it is assigned to.
fn assignments(etcd: &Etcd) -> BTreeMap<String, Vec<String>> {
    let out = etcd.etcdctl(&[
        "get",
        "--prefix",
        "/minifargate/v1/clusters/default/assignments/",
        "--keys-only",
    ]);
    let mut by_task: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for key in String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
    {
        let mut parts = key.rsplit('/');
        let task = parts.next().unwrap().to_string();
        let instance = parts.next().unwrap().to_string();
        by_task.entry(task).or_default().push(instance);
    }
    by_task
}

/// RunTask straight to the API (no AWS CLI retries): the answer and its HTTP status.
/// Waits until no box's report waits for serve's leader for 1.5 s in a row (at most
/// 30 s): its folds are transactions as large as a placement, which a fault by size
/// would otherwise take.
fn reports_drained(etcd: &Etcd) {
    let start = std::time::Instant::now();
    let mut quiet_since = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_secs(30) {
        let out = etcd.etcdctl(&["get", "--prefix", "--keys-only", "/minifargate/v1/boxes/"]);
        if String::from_utf8_lossy(&out.stdout).contains("/reports/") {
            quiet_since = std::time::Instant::now();
        } else if quiet_since.elapsed() >= std::time::Duration::from_millis(1500) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("the boxes' reports were not folded in 30 s");
}

fn run_task(api: &common::api::Api, family: &str, count: u32) -> (Value, u16) {
    let body = json!({
        "taskDefinition": family,
        "launchType": "EC2",
        "count": count,
        "placementStrategy": [{"type": "spread", "field": "instanceId"}],
    });
    let (out, _) = ecs_call(api, "RunTask", &body.to_string());
    let (json, status) = out.rsplit_once('\n').unwrap();
    (
        serde_json::from_str(json).unwrap_or(Value::String(json.into())),
        status.parse().unwrap(),
    )
}

/// RunTask with `clientToken` `token`, straight to the API: the answer and its status.
fn run_task_with_token(api: &common::api::Api, family: &str, token: &str) -> (Value, u16) {
    let body = json!({
        "taskDefinition": family,
        "launchType": "EC2",
        "count": 1,
        "clientToken": token,
    });
    let (out, _) = ecs_call(api, "RunTask", &body.to_string());
    let (json, status) = out.rsplit_once('\n').unwrap();
    (
        serde_json::from_str(json).unwrap_or(Value::String(json.into())),
        status.parse().unwrap(),
    )
}

fn task_ids(run: &Value) -> Vec<String> {
    run["tasks"]
        .as_array()
        .map(|t| {
            t.iter()
                .map(|t| {
                    let arn = t["taskArn"].as_str().unwrap();
                    arn.rsplit('/').next().unwrap().to_string()
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_placement_whose_answer_is_lost_is_placed_once_and_every_placed_task_is_answered() {
    // Plain http: the proxy reads the requests.
    let etcd = Etcd::start_plain();
    let upstream = etcd.endpoint().trim_start_matches("http://").to_string();
    // serve talks to the one etcd through two proxies, as to two endpoints: a client that
    // moves to the next endpoint after a lost answer sends the same transaction again.
    let proxies = [
        FaultProxy::start(&upstream, Vec::new()),
        FaultProxy::start(&upstream, Vec::new()),
    ];
    let proxy = &proxies[0];
    let api = serve_on(
        &format!("http://{},http://{}", proxies[0].host(), proxies[1].host()),
        &[],
    );
    let (a, b) = two_boxes(&etcd, &api, 5);
    let boxes: [&Agent; 2] = [&a, &b];
    register(&api, "one.json", &sleeper("one-box"));
    // A placement transaction (kilobytes: the task definition travels in it) is applied by
    // etcd, and its answer never reaches serve.
    const PLACEMENT: u64 = 2000;
    proxy.inject(Fault::Request {
        path: "/v3/kv/txn".into(),
        min_body: PLACEMENT,
        skip: 0,
        times: 1,
        then: Then::Lose {
            after: 0,
            how: Cut::Reset,
        },
    });
    let (run, status) = run_task(&api, "one-box", 1);
    let lost: Vec<_> = proxy
        .seen_for("/v3/kv/txn")
        .into_iter()
        .filter(|s| s.action.starts_with("answer cut"))
        .collect();
    assert_eq!(lost.len(), 1, "the fault fired: {:?}", proxy.seen());
    let placed = assignments(&etcd);
    eprintln!("RunTask {status}: {run:#}\nassignments: {placed:#?}");
    // One task id, exactly one instance; the answer names it.
    for (task, on) in &placed {
        assert_eq!(on.len(), 1, "task {task} assigned to {on:?}");
    }
    assert_eq!(status, 200, "{run:#}");
    let ids = task_ids(&run);
    assert_eq!(ids.len(), 1, "{run:#}");
    assert_eq!(placed.keys().cloned().collect::<Vec<_>>(), ids);
    let on = &placed[&ids[0]][0];
    assert!(
        run["tasks"][0]["containerInstanceArn"]
            .as_str()
            .unwrap()
            .ends_with(on.as_str()),
        "{run:#}"
    );
    assert!(boxes.iter().any(|x| x.id() == *on));
    // Its box's reports folded (RUNNING): serve's leader folds them in transactions of
    // kilobytes too, which must not take the next fault.
    let first = run["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    api.wait_for(60, "the first task RUNNING", || {
        (common::cluster::describe_task(&api, &first)["lastStatus"] == "RUNNING").then_some(())
    });
    reports_drained(&etcd);

    // count 2, the second placement refused: the first is committed and will run, so it
    // is answered, with the failure for the second.
    // (serve now talks to either proxy: both refuse.)
    for p in &proxies {
        p.inject(Fault::Request {
            path: "/v3/kv/txn".into(),
            min_body: PLACEMENT,
            skip: 1,
            times: 1,
            then: Then::Refuse(503),
        });
    }
    // The boxes frozen meanwhile (well within their lease): no report of the new tasks
    // is folded between the two placements.
    let signal = |sig: &str| {
        for x in &boxes {
            let pid = x.child.as_ref().unwrap().id().to_string();
            let st = std::process::Command::new("kill")
                .args([sig, &pid])
                .status()
                .unwrap();
            assert!(st.success(), "kill {sig} {pid}");
        }
    };
    signal("-STOP");
    let (run2, status) = run_task(&api, "one-box", 2);
    signal("-CONT");
    eprintln!("RunTask {status}: {run2:#}");
    let after = assignments(&etcd);
    let new: Vec<String> = after
        .keys()
        .filter(|k| !placed.contains_key(*k))
        .cloned()
        .collect();
    assert_eq!(new.len(), 1, "{after:#?}");
    assert_eq!(status, 200, "the placed task is answered: {run2:#}");
    assert_eq!(task_ids(&run2), new, "{run2:#}");
    let failures = run2["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1, "{run2:#}");
    assert!(
        failures[0]["reason"].as_str().unwrap().contains("503"),
        "{run2:#}"
    );
}

/// issue 73: stored data that does not decode is left out (and said in serve's log),
/// never taken for ACTIVE and never fatal for the cluster: the instance whose status is
/// garbled or missing is not placed on and not described, as if it were not registered.
#[test]
fn an_instance_whose_status_is_missing_or_undecodable_is_left_out_not_taken_for_active() {
    let etcd = Etcd::start();
    let api = serve_with(&etcd, &[]);
    let a = Agent::start_for(&etcd, &api, 5, &[]);
    api.wait_for(20, "the instance listed", || {
        (api.instances_listed(None).len() == 1).then_some(())
    });
    register(&api, "one.json", &sleeper("one-status"));
    api.aws_json(&["create-cluster", "--cluster-name", "default"]);
    let key = format!("/minifargate/v1/clusters/default/status/{}", a.id());
    for (what, change) in [
        ("undecodable", vec!["put", key.as_str(), "ACTVE"]),
        ("missing", vec!["del", key.as_str()]),
    ] {
        let out = etcd.etcdctl(&change);
        assert!(out.status.success(), "{out:?}");
        let (run, status) = run_task(&api, "one-status", 1);
        assert!(
            assignments(&etcd).is_empty(),
            "{what} status taken for ACTIVE: {run:#}"
        );
        // ECS's answer for a cluster without instances.
        assert_eq!(status, 400, "{what}: {run:#}");
        assert_eq!(
            run["__type"], "InvalidParameterException",
            "{what}: {run:#}"
        );
        let v = api.aws_json(&[
            "describe-container-instances",
            "--container-instances",
            &a.arn(),
        ]);
        assert_eq!(v["containerInstances"], json!([]), "{what}: {v:#}");
        assert_eq!(v["failures"][0]["reason"], "MISSING", "{what}: {v:#}");
    }
    // Set again, the instance is placed on.
    etcd.etcdctl(&["put", &key, "ACTIVE"]);
    let (run, status) = run_task(&api, "one-status", 1);
    assert_eq!(status, 200, "{run:#}");
    assert_eq!(task_ids(&run).len(), 1, "{run:#}");
}

#[test]
fn a_task_record_that_does_not_decode_does_not_stop_the_scheduler_for_the_rest() {
    let etcd = Etcd::start();
    let api = serve_with(&etcd, &[]);
    let _a = Agent::start_for(&etcd, &api, 5, &[]);
    api.wait_for(20, "the instance listed", || {
        (api.instances_listed(None).len() == 1).then_some(())
    });
    register(&api, "one.json", &sleeper("one-svc"));
    api.aws_json(&["create-cluster", "--cluster-name", "default"]);
    // One record that is not minifargate's, before the service's first pass.
    let bad = "/minifargate/v1/clusters/default/tasks/0123456789abcdef0123456789abcdef";
    assert!(etcd.etcdctl(&["put", bad, "{not json"]).status.success());
    api.aws_json(&[
        "create-service",
        "--service-name",
        "web",
        "--task-definition",
        "one-svc",
        "--desired-count",
        "2",
        "--launch-type",
        "EC2",
    ]);
    api.wait_for(90, "the service's 2 tasks RUNNING", || {
        (common::cluster::service_placement(&api, "web").len() == 2).then_some(())
    });
    // The other records are still counted.
    let c = &api.aws_json(&["describe-clusters"])["clusters"][0];
    assert_eq!(c["runningTasksCount"], 2, "{c:#}");
    api.aws_json(&["update-service", "--service", "web", "--desired-count", "0"]);
    api.wait_for(60, "the service's tasks stopped", || {
        common::cluster::service_placement(&api, "web")
            .is_empty()
            .then_some(())
    });
}

#[test]
fn a_run_task_with_a_token_whose_publish_is_lost_or_refused_answers_its_placed_task_once() {
    // botocore sends a clientToken with every RunTask, so each runs under the control
    // plane's write lock and its token's row is published after the placement: a lost or
    // refused publish must not turn a placed task into an error (the client would launch
    // it again), and the token must still bring back that task, not a new one.
    let etcd = Etcd::start_plain();
    let upstream = etcd.endpoint().trim_start_matches("http://").to_string();
    let proxy = FaultProxy::start(&upstream, Vec::new());
    let api = serve_on(&format!("http://{}", proxy.host()), &[]);
    let (_a, _b) = two_boxes(&etcd, &api, 5);
    register(&api, "tok.json", &sleeper("one-token"));
    // The lock's transaction is a few hundred bytes; the placement (kilobytes) and then
    // the token's row are the next two larger ones: the second is the publish.
    let publish = |then| Fault::Request {
        path: "/v3/kv/txn".into(),
        min_body: 500,
        skip: 1,
        times: 1,
        then,
    };
    for (token, then, what) in [
        (
            "tok-lost",
            Then::Lose {
                after: 0,
                how: Cut::Reset,
            },
            "answer cut",
        ),
        ("tok-refused", Then::Refuse(503), "status 503"),
    ] {
        let before = assignments(&etcd);
        proxy.inject(publish(then));
        let (run, status) = run_task_with_token(&api, "one-token", token);
        let fired = proxy
            .seen_for("/v3/kv/txn")
            .into_iter()
            .filter(|s| s.action.starts_with(what))
            .count();
        assert_eq!(
            fired,
            1,
            "{token}: the fault fired once: {:?}",
            proxy.seen()
        );
        proxy.heal();
        let placed: Vec<String> = assignments(&etcd)
            .into_keys()
            .filter(|k| !before.contains_key(k))
            .collect();
        eprintln!("{token}: RunTask {status}: {run:#}\nplaced: {placed:?}");
        assert_eq!(placed.len(), 1, "{token}: one task placed");
        assert_eq!(status, 200, "{token}: the placed task is answered: {run:#}");
        assert_eq!(task_ids(&run), placed, "{token}: {run:#}");
        // The same token again: nothing new placed (the token's row was kept), and the
        // answer is the task the first call placed (ECS_Idempotency.html: "the same
        // response"), read from its record: the AWS CLI retries a lost answer this way.
        let (again, status) = run_task_with_token(&api, "one-token", token);
        assert_eq!(status, 200, "{token}: {again:#}");
        assert_eq!(task_ids(&again), placed, "{token}: {again:#}");
        assert_eq!(
            again["tasks"][0]["containerInstanceArn"], run["tasks"][0]["containerInstanceArn"],
            "{token}: {again:#}"
        );
        let now: Vec<String> = assignments(&etcd)
            .into_keys()
            .filter(|k| !before.contains_key(k))
            .collect();
        assert_eq!(now, placed, "{token}: the retry placed another task");
        // Its box's reports folded (RUNNING) before the next fault: serve's leader folds
        // them in transactions as large as a placement.
        let arn = run["tasks"][0]["taskArn"].as_str().unwrap().to_string();
        api.wait_for(60, "the task RUNNING", || {
            (common::cluster::describe_task(&api, &arn)["lastStatus"] == "RUNNING").then_some(())
        });
        reports_drained(&etcd);
    }
}

#[test]
fn instance_state_changes_whose_answers_are_lost_answer_what_took_effect() {
    // UpdateContainerInstancesState and DeregisterContainerInstance write in etcd
    // transactions: one that committed but whose answer was lost took effect, and is
    // answered so (read back), never as a ServerException.
    let etcd = Etcd::start_plain();
    let upstream = etcd.endpoint().trim_start_matches("http://").to_string();
    let proxy = FaultProxy::start(&upstream, Vec::new());
    let api = serve_on(&format!("http://{}", proxy.host()), &[]);
    let (a, mut b) = two_boxes(&etcd, &api, 5);
    let lose = |path: &str| Fault::Request {
        path: path.into(),
        min_body: 0,
        skip: 0,
        times: 1,
        then: Then::Lose {
            after: 0,
            how: Cut::Reset,
        },
    };
    let call = |op: &str, body: Value| -> (Value, u16) {
        let (out, _) = ecs_call(&api, op, &body.to_string());
        let (json, status) = out.rsplit_once('\n').unwrap();
        (
            serde_json::from_str(json).unwrap_or(Value::String(json.into())),
            status.parse().unwrap(),
        )
    };
    let fired = |path: &str| {
        proxy
            .seen_for(path)
            .iter()
            .filter(|s| s.action.starts_with("answer cut"))
            .count()
    };
    let status_in_etcd = |id: String| {
        let key = format!("/minifargate/v1/clusters/default/status/{id}");
        let out = etcd.etcdctl(&["get", &key, "--print-value-only"]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };

    // DRAINING, its answer lost.
    proxy.inject(lose("/v3/kv/txn"));
    let (drained, status) = call(
        "UpdateContainerInstancesState",
        json!({"containerInstances": [b.arn()], "status": "DRAINING"}),
    );
    assert_eq!(fired("/v3/kv/txn"), 1, "{:?}", proxy.seen());
    proxy.heal();
    assert_eq!(status_in_etcd(b.id()), "DRAINING");
    assert_eq!(status, 200, "it took effect: {drained:#}");
    assert_eq!(
        drained["containerInstances"][0]["status"], "DRAINING",
        "{drained:#}"
    );
    assert_eq!(drained["failures"], json!([]), "{drained:#}");

    // Deregistered, the answer of its INACTIVE lost.
    proxy.inject(lose("/v3/kv/txn"));
    let (gone, status) = call(
        "DeregisterContainerInstance",
        json!({"containerInstance": a.arn()}),
    );
    assert_eq!(fired("/v3/kv/txn"), 2, "{:?}", proxy.seen());
    proxy.heal();
    assert_eq!(status_in_etcd(a.id()), "INACTIVE");
    assert_eq!(status, 200, "it took effect: {gone:#}");
    assert_eq!(gone["containerInstance"]["status"], "INACTIVE", "{gone:#}");

    // Deregistered with force, the answer of its subnet's release lost. (Its agent is
    // stopped first: a running one releases its own subnet as soon as it sees INACTIVE,
    // and the API's release would then find nothing to delete.)
    assert!(b.signal("-TERM").success());
    proxy.inject(lose("/v3/kv/deleterange"));
    let (gone, status) = call(
        "DeregisterContainerInstance",
        json!({"containerInstance": b.arn(), "force": true}),
    );
    assert_eq!(fired("/v3/kv/deleterange"), 1, "{:?}", proxy.seen());
    proxy.heal();
    assert_eq!(status_in_etcd(b.id()), "INACTIVE");
    assert_eq!(status, 200, "it took effect: {gone:#}");
    assert_eq!(gone["containerInstance"]["status"], "INACTIVE", "{gone:#}");
}

#[test]
fn an_agent_sees_its_instance_drained_and_deregistered_at_once() {
    // The agent watches its own instance's status: DRAINING is seen when it is set, and
    // INACTIVE (deregistered with force) stops what the box runs of it and ends the
    // agent, as a restarted agent of an INACTIVE instance does, without waiting for a
    // reconnection that may never come.
    let etcd = Etcd::start();
    let api = serve_with(&etcd, &[]);
    let mut a = Agent::start_for(&etcd, &api, 5, &[]);
    api.wait_for(20, "the instance listed", || {
        (api.instances_listed(None).len() == 1).then_some(())
    });
    register(&api, "watch.json", &sleeper("one-watch"));
    let (run, status) = run_task(&api, "one-watch", 1);
    assert_eq!(status, 200, "{run:#}");
    let id = task_ids(&run).remove(0);
    let local = |a: &Agent| {
        a.mf.json(&["describe-tasks", "--tasks", &id])["tasks"][0]["lastStatus"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    api.wait_for(60, "the task RUNNING on its box", || {
        (local(&a) == "RUNNING").then_some(())
    });

    api.aws_json(&[
        "update-container-instances-state",
        "--container-instances",
        &a.arn(),
        "--status",
        "DRAINING",
    ]);
    api.wait_for(3, "the agent seeing DRAINING", || {
        a.log_text().contains("is now DRAINING").then_some(())
    });

    api.aws_json(&[
        "deregister-container-instance",
        "--container-instance",
        &a.arn(),
        "--force",
    ]);
    let status = common::util::wait_until(
        "the agent of the INACTIVE instance to end",
        std::time::Duration::from_secs(15),
        || a.child.as_mut().unwrap().try_wait().unwrap(),
    );
    a.child = None;
    assert!(!status.success());
    let log = a.log_text();
    assert!(log.contains("was deregistered"), "{log}");
    api.wait_for(30, "the box's task STOPPED", || {
        (local(&a) == "STOPPED").then_some(())
    });
}

#[test]
fn a_box_reprovisioned_as_a_new_instance_stops_what_it_still_ran_of_its_old_one() {
    // The chaos run's finding (docs/cluster.md): an instance deregistered with force
    // while its agent was away, and its box started again as a new instance (its
    // instance id removed, as an operator reprovisions it): the tasks it still ran of the
    // old instance are nobody's any more, and stop.
    let etcd = Etcd::start();
    let api = serve_with(&etcd, &[]);
    let mut a = Agent::start_for(&etcd, &api, 5, &[]);
    api.wait_for(20, "the instance listed", || {
        (api.instances_listed(None).len() == 1).then_some(())
    });
    register(&api, "old.json", &sleeper("one-old"));
    let (run, status) = run_task(&api, "one-old", 1);
    assert_eq!(status, 200, "{run:#}");
    let id = task_ids(&run).remove(0);
    let local = |a: &Agent| a.mf.json(&["describe-tasks", "--tasks", &id])["tasks"][0].clone();
    api.wait_for(60, "the task RUNNING on its box", || {
        (local(&a)["lastStatus"] == "RUNNING").then_some(())
    });
    let old = a.arn();
    // The agent dies (its task's supervisor lives on), its instance is deregistered.
    a.kill();
    api.aws_json(&[
        "deregister-container-instance",
        "--container-instance",
        &old,
        "--force",
    ]);
    assert_eq!(local(&a)["lastStatus"], "RUNNING", "the box still runs it");
    std::fs::remove_file(a.mf.root.join("agent/instance-id")).unwrap();
    a.spawn();
    api.wait_for(30, "the box registered as a new instance", || {
        let now = common::cluster::instance_arn(&a.mf.root);
        (now != old && api.instances_listed(None).contains(&now)).then_some(())
    });
    let t = api.wait_for(60, "the old instance's task STOPPED on the box", || {
        let t = local(&a);
        (t["lastStatus"] == "STOPPED").then_some(t)
    });
    assert_eq!(
        t["stoppedReason"],
        format!("Task is no longer assigned to container instance {old}"),
        "{t:#}"
    );
}

#[test]
fn a_stop_task_whose_answer_is_lost_answers_that_the_stop_was_asked() {
    let etcd = Etcd::start_plain();
    let upstream = etcd.endpoint().trim_start_matches("http://").to_string();
    let proxy = FaultProxy::start(&upstream, Vec::new());
    let api = serve_on(&format!("http://{}", proxy.host()), &[]);
    let _a = Agent::start_for(&etcd, &api, 5, &[]);
    api.wait_for(20, "the instance listed", || {
        (api.instances_listed(None).len() == 1).then_some(())
    });
    register(&api, "stop.json", &sleeper("one-stop"));
    let (run, status) = run_task(&api, "one-stop", 1);
    assert_eq!(status, 200, "{run:#}");
    let id = task_ids(&run).remove(0);
    // The assignment's transaction (kilobytes: it carries the task definition) is applied
    // and its answer lost.
    proxy.inject(Fault::Request {
        path: "/v3/kv/txn".into(),
        min_body: 2000,
        skip: 0,
        times: 1,
        then: Then::Lose {
            after: 0,
            how: Cut::Reset,
        },
    });
    let (out, _) = ecs_call(&api, "StopTask", &json!({ "task": id }).to_string());
    let cut = proxy
        .seen_for("/v3/kv/txn")
        .iter()
        .filter(|s| s.action.starts_with("answer cut"))
        .count();
    proxy.heal();
    assert_eq!(cut, 1, "{:?}", proxy.seen());
    let (json, status) = out.rsplit_once('\n').unwrap();
    assert_eq!(status, "200", "the stop was asked: {json}");
    let v: Value = serde_json::from_str(json).unwrap();
    assert_eq!(v["task"]["desiredStatus"], "STOPPED", "{v:#}");
    api.wait_for(60, "the task STOPPED", || {
        (common::cluster::describe_task(&api, run["tasks"][0]["taskArn"].as_str().unwrap())
            ["lastStatus"]
            == "STOPPED")
            .then_some(())
    });
}

#[test]
fn a_write_whose_lock_answer_is_lost_goes_on_with_the_lock_it_took() {
    // Every control-plane write first takes the cluster's write lock in a transaction:
    // one that committed with its answer lost holds the lock for this serve (its lease),
    // so the write goes on, rather than failing and leaving the lock to block every other
    // writer until its lease expires.
    let etcd = Etcd::start_plain();
    let upstream = etcd.endpoint().trim_start_matches("http://").to_string();
    let proxy = FaultProxy::start(&upstream, Vec::new());
    let api = serve_on(&format!("http://{}", proxy.host()), &[]);
    let _a = Agent::start_for(&etcd, &api, 5, &[]);
    api.wait_for(20, "the instance listed", || {
        (api.instances_listed(None).len() == 1).then_some(())
    });
    register(&api, "lock.json", &sleeper("one-lock"));
    proxy.inject(Fault::Request {
        path: "/v3/kv/txn".into(),
        min_body: 0,
        skip: 0,
        times: 1,
        then: Then::Lose {
            after: 0,
            how: Cut::Reset,
        },
    });
    let (out, took) = ecs_call(&api, "RegisterTaskDefinition", &sleeper("one-lock"));
    let cut = proxy
        .seen_for("/v3/kv/txn")
        .iter()
        .filter(|s| s.action.starts_with("answer cut"))
        .count();
    proxy.heal();
    assert_eq!(cut, 1, "{:?}", proxy.seen());
    let (json, status) = out.rsplit_once('\n').unwrap();
    assert_eq!(status, "200", "{json}");
    let v: Value = serde_json::from_str(json).unwrap();
    assert_eq!(v["taskDefinition"]["revision"], 2, "{v:#}");
    // The lock was released: the next write does not wait for a lease to expire.
    let (out, again) = ecs_call(&api, "RegisterTaskDefinition", &sleeper("one-lock"));
    assert!(out.ends_with("\n200"), "{out}");
    assert!(
        again < std::time::Duration::from_secs(5),
        "the next write waited {again:?} (the first took {took:?})"
    );
}

#[test]
fn a_write_that_waits_longer_than_the_lock_ttl_for_another_writer_still_takes_the_lock() {
    // The control plane's write lock is waited for up to 30 s while another serve holds
    // it; the waiter's own lease (TTL 10 s) must live that long, or its lock transaction
    // fails with etcd's "requested lease not found".
    let etcd = Etcd::start();
    let api = serve_with(&etcd, &[]);
    let _a = Agent::start_for(&etcd, &api, 5, &[]);
    api.wait_for(20, "the instance listed", || {
        (api.instances_listed(None).len() == 1).then_some(())
    });
    register(&api, "wait.json", &sleeper("one-wait"));
    // Another writer holds the lock (its own lease) for 13 s.
    let out = etcd.etcdctl(&["lease", "grant", "60"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let lease = text
        .split_whitespace()
        .nth(1)
        .expect("a lease id")
        .to_string();
    let put = etcd.etcdctl(&[
        "put",
        "/minifargate/v1/db-lock",
        "another-serve",
        &format!("--lease={lease}"),
    ]);
    assert!(put.status.success(), "{put:?}");
    let (out, took, revoked) = std::thread::scope(|s| {
        let releaser = s.spawn(|| {
            std::thread::sleep(std::time::Duration::from_secs(13));
            etcd.etcdctl(&["lease", "revoke", &lease])
        });
        let (out, took) = ecs_call(&api, "RegisterTaskDefinition", &sleeper("one-wait"));
        (out, took, releaser.join().unwrap())
    });
    assert!(revoked.status.success(), "{revoked:?}");
    assert!(out.ends_with("\n200"), "after {took:?}: {out}");
    assert!(
        took >= std::time::Duration::from_secs(12),
        "{took:?}: {out}"
    );
}

#[test]
fn a_stopped_report_whose_fold_fails_is_folded_and_released_at_the_leader_s_next_pass() {
    // The box reports its task STOPPED; serve's leader folds the report into the record
    // and, in the same transaction, takes the task's reservation out of the ledger and
    // deletes its assignment. That transaction is refused once (etcd 503, between serve
    // and etcd): the leader folds it again at its next pass (the instance's memory is free
    // again, the assignment gone, the record STOPPED), not never. Before reports, the
    // box released the task itself and the same fault ended its session.
    let etcd = Etcd::start_plain();
    let upstream = etcd.endpoint().trim_start_matches("http://").to_string();
    let proxy = FaultProxy::start(&upstream, Vec::new());
    let api = serve_on(&format!("http://{}", proxy.host()), &[]);
    let mut mf = common::cli::Mf::new();
    mf.mirror_config("public.ecr.aws", &api.registry().host(), true);
    let a = Agent::start_on(mf, &etcd.endpoint(), 5, &[], &[]);
    api.wait_for(20, "the instance listed", || {
        (api.instances_listed(None).len() == 1).then_some(())
    });
    let memory = || {
        common::cluster::resource(
            &common::cluster::describe(&api, &a.arn()),
            "remainingResources",
            "MEMORY",
        )
    };
    let free = memory();
    register(&api, "release.json", &sleeper("one-release"));
    let (run, status) = run_task(&api, "one-release", 1);
    assert_eq!(status, 200, "{run:#}");
    let id = task_ids(&run).remove(0);
    let arn = run["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    api.wait_for(60, "the task RUNNING", || {
        (common::cluster::describe_task(&api, &arn)["lastStatus"] == "RUNNING").then_some(())
    });
    assert_eq!(memory(), free - 64, "the task's 64 MiB booked");

    // On a plain etcd the box reports under its instance id.
    let instance = a.arn().rsplit('/').next().unwrap().to_string();
    let key = format!("/minifargate/v1/boxes/{instance}/reports/default/{id}");
    use base64::Engine;
    let needle = base64::engine::general_purpose::STANDARD
        .encode(&key)
        .into_bytes();
    proxy.inject(Fault::RequestWith {
        path: "/v3/kv/txn".into(),
        needle,
        times: 1,
        then: Then::Refuse(503),
    });
    api.aws_json(&["stop-task", "--task", &arn]);
    api.wait_for(60, "the task STOPPED", || {
        (common::cluster::describe_task(&api, &arn)["lastStatus"] == "STOPPED").then_some(())
    });
    api.wait_for(30, "the fold refused once", || {
        proxy
            .seen_for("/v3/kv/txn")
            .iter()
            .any(|s| s.action == "status 503")
            .then_some(())
    });
    api.wait_for(40, "the task's reservation released", || {
        (memory() == free && !assignments(&etcd).contains_key(&id)).then_some(())
    });
}
