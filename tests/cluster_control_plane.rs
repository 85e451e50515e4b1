//! Cluster mode's control plane (issue 38; docs/cluster.md "The control plane in etcd"):
//! task definitions, clusters and services the same through every `serve --cluster`, the
//! leader scheduling the services and its successor taking them over, the first serve of a
//! cluster publishing its rows, and etcd's own faults (a member killed, a lost quorum).
//! Real etcd (one member or three), real agents and serves, the real AWS CLI; every process
//! stopped by its pid and every directory removed, also when a test fails.

use crate::common;

use common::api::Api;
use common::cli::Mf;
use common::cluster::{
    Agent, SLEEPER, connected, describe_task, ecs_call, leader_pid, list, register, serve,
    serve_on, serve_with, service_placement, two_boxes, until_connected,
};
use common::etcd::{Etcd, EtcdCluster};
use common::faultproxy::{Cut, Fault, FaultProxy, Then};
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

/// Task definition `family` as `api` describes it, once it has it.
fn described(api: &Api, family: &str) -> Option<Value> {
    let out = api.aws(&["describe-task-definition", "--task-definition", family]);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).unwrap())
}

/// The serve of `pids` that leads now, and the other one.
fn leader_and_other<'a>(etcd: &Etcd, api1: &'a Api, api2: &'a Api) -> (&'a Api, &'a Api) {
    let leader = api1.wait_for(10, "a leader", || leader_pid(etcd));
    if leader == api1.server_pid() {
        (api1, api2)
    } else {
        assert_eq!(leader, api2.server_pid());
        (api2, api1)
    }
}

#[test]
fn task_definitions_and_services_are_the_cluster_s_whichever_serve_answers_and_survive_its_leader()
{
    let etcd = Etcd::start();
    let fast = ["--leader-ttl", "2"];
    let api1 = serve_with(&etcd, &fast);
    let api2 = serve_with(&etcd, &fast);
    let (a, b) = two_boxes(&etcd, &api1, 5);
    let (arn_a, arn_b) = (a.arn(), b.arn());

    // Registered through one serve, described through the other; revisions count
    // cluster-wide.
    register(&api1, "sleeper.json", SLEEPER);
    let td = api2.wait_for(10, "the task definition on the other serve", || {
        described(&api2, "cluster-sleeper")
    });
    assert_eq!(td["taskDefinition"]["revision"], 1, "{td:#}");
    register(&api2, "sleeper.json", SLEEPER);
    let families = api1.wait_for(10, "revision 2 on the first serve", || {
        let v = api1.aws_json(&[
            "list-task-definitions",
            "--family-prefix",
            "cluster-sleeper",
        ]);
        (v["taskDefinitionArns"].as_array().unwrap().len() == 2).then_some(v)
    });
    assert!(
        families["taskDefinitionArns"][1]
            .as_str()
            .unwrap()
            .ends_with("cluster-sleeper:2"),
        "{families:#}"
    );

    // A service created through the serve that does not lead is scheduled by the one
    // that does, and described the same through both.
    let (leader, other) = leader_and_other(&etcd, &api1, &api2);
    other.aws_json(&["create-cluster", "--cluster-name", "default"]);
    other.aws_json(&[
        "create-service",
        "--service-name",
        "web",
        "--task-definition",
        "cluster-sleeper:1",
        "--desired-count",
        "2",
        "--launch-type",
        "EC2",
    ]);
    let placed = other.wait_for(60, "2 tasks RUNNING", || {
        let p = service_placement(other, "web");
        (p.len() == 2).then_some(p)
    });
    assert!(
        placed.contains(&arn_a) && placed.contains(&arn_b),
        "{placed:?}"
    );
    for api in [leader, other] {
        let svc = api.wait_for(10, "runningCount 2 on each serve", || {
            let s = api.service("default", "web");
            (s["runningCount"] == 2).then_some(s)
        });
        assert_eq!(svc["deployments"].as_array().unwrap().len(), 1, "{svc:#}");
        assert!(
            svc["events"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["message"]
                    .as_str()
                    .unwrap()
                    .contains("has started 2 tasks")),
            "{svc:#}"
        );
    }

    // The leader dies: the other serve leads and schedules the service from there,
    // with the deployments and events the dead one wrote.
    let _ = Command::new("kill")
        .args(["-KILL", &leader.server_pid().to_string()])
        .status();
    other.wait_for(15, "the other serve leading", || {
        (leader_pid(&etcd) == Some(other.server_pid())).then_some(())
    });
    other.aws_json(&[
        "update-service",
        "--service",
        "web",
        "--task-definition",
        "cluster-sleeper:2",
        "--desired-count",
        "3",
    ]);
    let svc = other.wait_for(90, "3 tasks of revision 2 RUNNING", || {
        let s = other.service("default", "web");
        (s["runningCount"] == 3
            && s["deployments"].as_array().unwrap().len() == 1
            && s["deployments"][0]["taskDefinition"]
                .as_str()
                .unwrap()
                .ends_with(":2"))
        .then_some(s)
    });
    let messages: Vec<&str> = svc["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert!(
        messages.iter().any(|m| m.contains("has started 2 tasks")),
        "the first leader's events are kept: {messages:#?}"
    );
    other.aws_json(&["delete-service", "--service", "web", "--force"]);
    other.wait_for(60, "no task RUNNING", || {
        service_placement(other, "web").is_empty().then_some(())
    });
}

#[test]
fn a_cluster_s_first_serve_publishes_its_rows_and_a_later_one_takes_the_cluster_s() {
    let etcd = Etcd::start();
    let mut api1 = serve(&etcd);
    // (Once api1 has taken the cluster's rows: until then it would replace them.)
    api1.wait_for(10, "api1 following the cluster", || {
        let out = etcd.etcdctl(&["get", "/minifargate/v1/db/written"]);
        (!out.stdout.is_empty()).then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    // Registered on api1's root behind serve's back (the CLI on the same root), then
    // the cluster's state is wiped: at its restart api1 is the cluster's first serve
    // again and publishes what its root holds.
    let def = api1.file("sleeper.json", SLEEPER);
    api1.mf_json(&["register-task-definition", "--cli-input-json", &def]);
    let wiped = etcd.etcdctl(&["del", "--prefix", "/minifargate/v1/db"]);
    assert!(wiped.status.success());
    api1.restart();
    let api2 = serve(&etcd);
    let lone = api2.file("lone.json", &SLEEPER.replace("cluster-sleeper", "lone"));
    api2.mf_json(&["register-task-definition", "--cli-input-json", &lone]);
    let td = api2.wait_for(10, "api1's task definition on api2", || {
        described(&api2, "cluster-sleeper")
    });
    assert_eq!(td["taskDefinition"]["revision"], 1);
    // api2's own row, never published, is not the cluster's: at its restart its copy
    // becomes the cluster's.
    let mut api2 = api2;
    api2.restart();
    api2.wait_for(10, "api2's copy replaced", || {
        let v = api2.aws_json(&["list-task-definition-families"]);
        (v["families"] == serde_json::json!(["cluster-sleeper"])).then_some(())
    });
    let v = api1.aws_json(&["list-task-definition-families"]);
    assert_eq!(
        v["families"],
        serde_json::json!(["cluster-sleeper"]),
        "{v:#}"
    );
}

#[test]
fn one_etcd_member_killed_changes_nothing_and_without_a_quorum_calls_fail_naming_etcd() {
    let mut etcd = EtcdCluster::start(3);
    let endpoints = etcd.endpoints();
    let api = serve_on(&endpoints, &[]);
    let mut mf = Mf::new();
    mf.mirror_config("public.ecr.aws", &api.registry().host(), true);
    let agent = Agent::start_on(mf, &endpoints, 3, &[], &[]);
    let arn = agent.arn();
    api.wait_for(20, "the box listed", || {
        (list(&api, &[]) == [arn.as_str()]).then_some(())
    });
    register(&api, "sleeper.json", SLEEPER);
    let run = |api: &Api| {
        let v = api.aws_json(&[
            "run-task",
            "--task-definition",
            "cluster-sleeper",
            "--launch-type",
            "EC2",
        ]);
        let task = v["tasks"][0]["taskArn"].as_str().unwrap().to_string();
        api.wait_for(60, "the task RUNNING", || {
            (describe_task(api, &task)["lastStatus"] == "RUNNING").then_some(())
        });
        task
    };
    let first = run(&api);

    // The member every client tries first dies: for longer than the agent's lease the
    // box stays connected (its keep-alives go to the next member), tasks run and stop,
    // and the control plane takes writes.
    etcd.kill(0);
    std::thread::sleep(Duration::from_secs(5));
    assert!(connected(&api, &arn));
    let second = run(&api);
    let v = api.aws_json(&["stop-task", "--task", &first]);
    assert_eq!(v["task"]["desiredStatus"], "STOPPED");
    api.wait_for(30, "the first task STOPPED", || {
        (describe_task(&api, &first)["lastStatus"] == "STOPPED").then_some(())
    });
    let def = api.file("sleeper.json", SLEEPER);
    let v = api.aws_json(&["register-task-definition", "--cli-input-json", &def]);
    assert_eq!(v["taskDefinition"]["revision"], 2, "{v:#}");

    // A second one dies: no quorum. A call is a ServerException naming etcd, in bounded
    // time, and a write keeps nothing.
    etcd.kill(1);
    let (text, took) = ecs_call(
        &api,
        "RegisterTaskDefinition",
        &SLEEPER.replace("cluster-sleeper", "no-quorum"),
    );
    eprintln!("RegisterTaskDefinition without a quorum: {took:?}: {text}");
    assert!(
        text.ends_with("500") && text.contains("ServerException") && text.contains("etcd"),
        "{text}"
    );
    assert!(took < Duration::from_secs(30), "{took:?}");

    // Both back: the box reconnects, its task still RUNNING, nothing of the failed write.
    etcd.start_again(0);
    etcd.start_again(1);
    until_connected(&api, &arn, true, Duration::from_secs(30));
    assert_eq!(describe_task(&api, &second)["lastStatus"], "RUNNING");
    let v = api.aws_json(&["list-task-definition-families"]);
    assert_eq!(
        v["families"],
        serde_json::json!(["cluster-sleeper"]),
        "{v:#}"
    );
    api.aws_json(&["stop-task", "--task", &second]);
    api.wait_for(30, "the second task STOPPED", || {
        (describe_task(&api, &second)["lastStatus"] == "STOPPED").then_some(())
    });
}

/// Issue 54: a follower's watch on a connection that stays open but passes nothing (a
/// half-open TCP connection: the far end gone without a FIN) never hears the leader's key
/// go, so without a deadline the follower never campaigns. With one, the silent watch is
/// made again (on a new connection) and the follower takes over.
#[test]
fn a_follower_whose_watch_goes_silent_still_takes_over_from_a_dead_leader() {
    let etcd = Etcd::start_plain();
    let fast = ["--leader-ttl", "2"];
    let first = serve_with(&etcd, &fast);
    first.wait_for(15, "the first serve leading", || {
        (leader_pid(&etcd) == Some(first.server_pid())).then_some(())
    });
    // The follower reaches etcd through a proxy that, for now, forwards each watch request
    // and passes nothing back, its connection open.
    let upstream = etcd.endpoint().trim_start_matches("http://").to_string();
    let proxy = FaultProxy::start(
        &upstream,
        vec![Fault::Request {
            path: "/v3/watch".into(),
            min_body: 0,
            skip: 0,
            times: u32::MAX,
            then: Then::Lose {
                after: 0,
                how: Cut::Stall,
            },
        }],
    );
    let follower = serve_on(&format!("http://{}", proxy.host()), &fast);
    // Its campaign lost (a lease granted, then revoked), it watches the leader's key.
    follower.wait_for(20, "the follower watching the leader's key", || {
        let paths: Vec<String> = proxy.seen().into_iter().map(|s| s.path).collect();
        let revoked = paths.iter().position(|p| p.ends_with("/v3/lease/revoke"))?;
        paths[revoked..]
            .iter()
            .any(|p| p.ends_with("/v3/watch"))
            .then_some(())
    });
    std::thread::sleep(Duration::from_secs(1));
    // From now on the proxy passes everything; the watches made so far stay silent.
    proxy.heal();
    let _ = Command::new("kill")
        .args(["-KILL", &first.server_pid().to_string()])
        .status();
    follower.wait_for(30, "the follower leading", || {
        (leader_pid(&etcd) == Some(follower.server_pid())).then_some(())
    });
    // It answers as the cluster's serve: the control plane is readable through it.
    follower.aws_json(&["create-cluster", "--cluster-name", "after-silence"]);
    let v = follower.aws_json(&["describe-clusters", "--clusters", "after-silence"]);
    assert_eq!(v["clusters"][0]["status"], "ACTIVE", "{v:#}");
}
