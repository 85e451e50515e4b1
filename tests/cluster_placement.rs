//! Cluster placement through the real AWS CLI (issue 38; docs/cluster.md "Placement"): the
//! strategies (spread over instanceId, binpack on memory), the constraints (distinctInstance,
//! memberOf from the request and from the task definition), ECS's failure reasons, StartTask
//! onto named instances and DescribeClusters' counts, on boxes that are `minifargate agent`
//! processes over a real etcd. Each test has its own etcd, serve and boxes, stopped by their
//! pids (and the tasks' supervisors by theirs) also when it fails.

use crate::common;

use common::api::Api;
use common::cluster::{
    Agent, boxes, describe_task, failures, instance, placed, register, resource, serve_with,
    warnings,
};
use common::etcd::Etcd;
use serde_json::{Value, json};

const MEMBER_OF: &str = "MemberOf placement constraint unsatisfied.";
const DISTINCT: &str = "DistinctInstance placement constraint unsatisfied.";

/// A task definition of one busybox container that sleeps until stopped (it exits on
/// SIGTERM at once), with task-level `cpu` units and `memory` MiB, awsvpc, and `more`
/// members (`,"name": value`).
fn sleeper(family: &str, cpu: i64, memory: i64, more: &str) -> String {
    format!(
        r#"{{
  "family": "{family}",
  "networkMode": "awsvpc",
  "requiresCompatibilities": ["EC2"],
  "cpu": "{cpu}",
  "memory": "{memory}",
  "containerDefinitions": [{{
    "name": "main",
    "image": "public.ecr.aws/docker/library/busybox:1.36",
    "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 300 & wait"],
    "essential": true
  }}]{more}
}}"#
    )
}

fn run(api: &Api, family: &str, more: &[&str]) -> Value {
    let mut args = vec![
        "run-task",
        "--task-definition",
        family,
        "--launch-type",
        "EC2",
    ];
    args.extend(more);
    api.aws_json(&args)
}

/// How many of `tasks` are on each of `agents`, in their order.
fn per_box(tasks: &[(String, String)], agents: &[Agent]) -> Vec<usize> {
    agents
        .iter()
        .map(|a| tasks.iter().filter(|(_, ci)| *ci == a.arn()).count())
        .collect()
}

/// Waits until each task is RUNNING on the instance placement chose.
fn until_running(api: &Api, tasks: &[(String, String)]) {
    for (arn, ci) in tasks {
        let t = api.wait_for(60, "the task RUNNING", || {
            let t = describe_task(api, arn);
            (t["lastStatus"] == "RUNNING").then_some(t)
        });
        assert_eq!(t["containerInstanceArn"], ci.as_str(), "{t:#}");
    }
}

/// Stops every task and waits until each instance has all its resources back.
fn stop_all(api: &Api, tasks: &[(String, String)], agents: &[Agent]) {
    for (arn, _) in tasks {
        api.aws_json(&["stop-task", "--task", arn]);
    }
    for a in agents {
        api.wait_for(60, "the instance's resources released", || {
            let ci = instance(api, &a.arn());
            (ci["runningTasksCount"] == 0
                && resource(&ci, "remainingResources", "MEMORY")
                    == resource(&ci, "registeredResources", "MEMORY"))
            .then_some(())
        });
    }
}

fn both(agents: &[Agent], reason: &str) -> Vec<(String, String)> {
    let mut want: Vec<(String, String)> = agents
        .iter()
        .map(|a| (a.arn(), reason.to_string()))
        .collect();
    want.sort();
    want
}

#[test]
fn binpack_fills_one_box_first_spread_balances_and_resources_fail_with_ecs_words() {
    let etcd = Etcd::start();
    let api = serve_with(&etcd, &[]);
    let agents = boxes(&etcd, &api, 5, &[&[], &[]]);
    let ci = instance(&api, &agents[0].arn());
    let (cpu, memory) = (
        resource(&ci, "registeredResources", "CPU"),
        resource(&ci, "registeredResources", "MEMORY"),
    );
    // A third of a box's memory: three fit on one box, a fourth does not.
    let third = memory / 3;
    register(&api, "third.json", &sleeper("pl-third", 128, third, ""));

    // binpack on memory: the first box is filled before the second is used.
    let binpacked = run(
        &api,
        "pl-third",
        &[
            "--count",
            "4",
            "--placement-strategy",
            "type=binpack,field=memory",
        ],
    );
    assert_eq!(binpacked["failures"], json!([]), "{binpacked:#}");
    let tasks = placed(&binpacked);
    let mut counts = per_box(&tasks, &agents);
    counts.sort();
    assert_eq!(counts, [1, 3], "{tasks:?}");
    let full = if per_box(&tasks, &agents)[0] == 3 {
        0
    } else {
        1
    };
    // The first three went to the full box, the fourth to the other.
    assert!(
        tasks[..3].iter().all(|(_, ci)| *ci == agents[full].arn()),
        "{tasks:?}"
    );
    until_running(&api, &tasks);

    // Two more fit on the other box; the third fits nowhere: RESOURCE:MEMORY on each
    // instance, ECS's words.
    let more = run(&api, "pl-third", &["--count", "3"]);
    let more_tasks = placed(&more);
    assert_eq!(more_tasks.len(), 2, "{more:#}");
    assert!(
        more_tasks
            .iter()
            .all(|(_, ci)| *ci == agents[1 - full].arn()),
        "{more_tasks:?}"
    );
    assert_eq!(
        failures(&more),
        both(&agents, "RESOURCE:MEMORY"),
        "{more:#}"
    );
    // A task wanting a whole box's CPU units fits on neither (each holds tasks): CPU is
    // checked before memory, as ECS reports it.
    register(&api, "cpu.json", &sleeper("pl-cpu", cpu, 128, ""));
    let no_cpu = run(&api, "pl-cpu", &[]);
    assert_eq!(no_cpu["tasks"], json!([]), "{no_cpu:#}");
    assert_eq!(
        failures(&no_cpu),
        both(&agents, "RESOURCE:CPU"),
        "{no_cpu:#}"
    );
    let mut all = tasks;
    all.extend(more_tasks);
    until_running(&api, &all);
    // DescribeClusters counts the cluster's instances and tasks from etcd.
    let c = &api.aws_json(&["describe-clusters"])["clusters"][0];
    assert_eq!(c["registeredContainerInstancesCount"], 2, "{c:#}");
    assert_eq!(c["runningTasksCount"], 6, "{c:#}");
    assert_eq!(c["pendingTasksCount"], 0, "{c:#}");
    let c = &api.aws_json(&["describe-clusters", "--include", "STATISTICS"])["clusters"][0];
    let stat = |name: &str| {
        c["statistics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .map(|s| s["value"].as_str().unwrap().to_string())
    };
    assert_eq!(stat("runningEC2TasksCount").as_deref(), Some("6"), "{c:#}");
    assert_eq!(
        stat("runningFargateTasksCount").as_deref(),
        Some("0"),
        "{c:#}"
    );
    stop_all(&api, &all, &agents);

    // spread on instanceId over 5 tasks: max - min <= 1.
    register(&api, "small.json", &sleeper("pl-small", 128, 64, ""));
    let spread = run(
        &api,
        "pl-small",
        &[
            "--count",
            "5",
            "--placement-strategy",
            "type=spread,field=instanceId",
        ],
    );
    assert_eq!(spread["failures"], json!([]), "{spread:#}");
    let tasks = placed(&spread);
    let counts = per_box(&tasks, &agents);
    assert_eq!(counts.iter().sum::<usize>(), 5, "{tasks:?}");
    assert!(
        counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1,
        "{counts:?}"
    );
    until_running(&api, &tasks);
    let c = &api.aws_json(&["describe-clusters", "--clusters", "default"])["clusters"][0];
    assert_eq!(c["runningTasksCount"], 5, "{c:#}");
    stop_all(&api, &tasks, &agents);
}

#[test]
fn distinct_instance_and_member_of_from_the_request_and_the_task_definition() {
    let etcd = Etcd::start();
    let api = serve_with(&etcd, &[]);
    let agents = boxes(&etcd, &api, 5, &[&["disk=ssd"], &["disk=hdd"]]);
    register(&api, "small.json", &sleeper("pl-small", 128, 64, ""));
    let mut all = Vec::new();

    // distinctInstance: never two tasks of the group on one instance; the third task has
    // nowhere to go.
    let distinct = run(
        &api,
        "pl-small",
        &[
            "--count",
            "3",
            "--group",
            "distinct",
            "--placement-constraints",
            "type=distinctInstance",
        ],
    );
    let tasks = placed(&distinct);
    assert_eq!(per_box(&tasks, &agents), [1, 1], "{distinct:#}");
    assert_eq!(failures(&distinct), both(&agents, DISTINCT), "{distinct:#}");
    // Once more: each instance already holds one of the group.
    let again = run(
        &api,
        "pl-small",
        &[
            "--group",
            "distinct",
            "--placement-constraints",
            "type=distinctInstance",
        ],
    );
    assert_eq!(again["tasks"], json!([]), "{again:#}");
    assert_eq!(failures(&again), both(&agents, DISTINCT), "{again:#}");
    all.extend(tasks);

    // memberOf in the request: only the ssd box.
    let ssd_only = run(
        &api,
        "pl-small",
        &[
            "--count",
            "2",
            "--placement-constraints",
            "type=memberOf,expression=attribute:disk == ssd",
        ],
    );
    let tasks = placed(&ssd_only);
    assert_eq!(per_box(&tasks, &agents), [2, 0], "{ssd_only:#}");
    all.extend(tasks);

    // memberOf in the task definition: only the hdd box, and the task says nothing of a
    // constraint not applied.
    register(
        &api,
        "hdd.json",
        &sleeper(
            "pl-hdd",
            128,
            64,
            r#","placementConstraints": [{"type": "memberOf", "expression": "attribute:disk == hdd"}]"#,
        ),
    );
    let hdd_only = run(&api, "pl-hdd", &["--count", "2"]);
    let tasks = placed(&hdd_only);
    assert_eq!(per_box(&tasks, &agents), [0, 2], "{hdd_only:#}");
    until_running(&api, &tasks);
    for (arn, _) in &tasks {
        let t = describe_task(&api, arn);
        let w = warnings(&t);
        assert!(
            !w.iter().any(|w| w.starts_with("placementConstraints")),
            "{w:#?}"
        );
    }
    all.extend(tasks);

    // Both together (the request's ssd, the definition's hdd): satisfied nowhere.
    let neither = run(
        &api,
        "pl-hdd",
        &[
            "--placement-constraints",
            "type=memberOf,expression=attribute:disk == ssd",
        ],
    );
    assert_eq!(neither["tasks"], json!([]), "{neither:#}");
    assert_eq!(failures(&neither), both(&agents, MEMBER_OF), "{neither:#}");
    // ECS's limit counts the definition's: 10 in the request and 1 there is too many.
    let mut args = vec![
        "run-task",
        "--task-definition",
        "pl-hdd",
        "--launch-type",
        "EC2",
        "--placement-constraints",
    ];
    args.extend(std::iter::repeat_n("type=distinctInstance", 10));
    let err = api.aws_err(&args);
    assert!(err.contains("InvalidParameterException"), "{err}");
    assert!(
        err.contains("10 given and 1 in task definition pl-hdd:1; at most 10 per task"),
        "{err}"
    );
    until_running(&api, &all);
    stop_all(&api, &all, &agents);
}

#[test]
fn start_task_places_onto_the_named_instances_or_says_why_not() {
    let etcd = Etcd::start();
    let api = serve_with(&etcd, &[]);
    let mut agents = boxes(&etcd, &api, 5, &[&["disk=ssd"], &["disk=hdd"]]);
    let (a, b) = (agents[0].arn(), agents[1].arn());
    let a_id = agents[0].id();
    register(&api, "small.json", &sleeper("pl-small", 128, 64, ""));

    // One task on each named instance, by id or by ARN.
    let started = api.aws_json(&[
        "start-task",
        "--task-definition",
        "pl-small",
        "--container-instances",
        &a_id,
        &b,
    ]);
    assert_eq!(started["failures"], json!([]), "{started:#}");
    let mut all = placed(&started);
    assert_eq!(
        all.iter().map(|(_, ci)| ci.clone()).collect::<Vec<_>>(),
        [a.clone(), b.clone()],
        "{started:#}"
    );
    until_running(&api, &all);

    // An unknown instance: MISSING, naming it as given.
    let missing = api.aws_json(&[
        "start-task",
        "--task-definition",
        "pl-small",
        "--container-instances",
        "0123456789abcdef0123456789abcdef",
    ]);
    assert_eq!(missing["tasks"], json!([]), "{missing:#}");
    assert_eq!(
        failures(&missing),
        [(
            "0123456789abcdef0123456789abcdef".to_string(),
            "MISSING".to_string()
        )]
    );

    // More memory than the instance has left: RESOURCE:MEMORY, nothing on the other box.
    let ci = instance(&api, &a);
    let left = resource(&ci, "remainingResources", "MEMORY");
    register(&api, "big.json", &sleeper("pl-big", 128, left + 1, ""));
    let big = api.aws_json(&[
        "start-task",
        "--task-definition",
        "pl-big",
        "--container-instances",
        &a,
    ]);
    assert_eq!(big["tasks"], json!([]), "{big:#}");
    assert_eq!(failures(&big), [(a.clone(), "RESOURCE:MEMORY".to_string())]);

    // The task definition's memberOf holds for StartTask too.
    register(
        &api,
        "hdd.json",
        &sleeper(
            "pl-hdd",
            128,
            64,
            r#","placementConstraints": [{"type": "memberOf", "expression": "attribute:disk == hdd"}]"#,
        ),
    );
    let hdd = api.aws_json(&[
        "start-task",
        "--task-definition",
        "pl-hdd",
        "--container-instances",
        &a,
        &b,
    ]);
    let on_b = placed(&hdd);
    assert_eq!(on_b.len(), 1, "{hdd:#}");
    assert_eq!(on_b[0].1, b);
    assert_eq!(failures(&hdd), [(a.clone(), MEMBER_OF.to_string())]);
    all.extend(on_b);

    // A DRAINING instance takes no new task.
    api.aws_json(&[
        "update-container-instances-state",
        "--container-instances",
        &b,
        "--status",
        "DRAINING",
    ]);
    let draining = api.aws_json(&[
        "start-task",
        "--task-definition",
        "pl-small",
        "--container-instances",
        &b,
    ]);
    assert_eq!(draining["tasks"], json!([]), "{draining:#}");
    assert_eq!(failures(&draining), [(b.clone(), "DRAINING".to_string())]);

    // DescribeClusters counts from etcd: both instances (DRAINING counts, as in ECS) and
    // the three tasks.
    until_running(&api, &all);
    let c = &api.aws_json(&["describe-clusters"])["clusters"][0];
    assert_eq!(c["registeredContainerInstancesCount"], 2, "{c:#}");
    assert_eq!(c["runningTasksCount"], 3, "{c:#}");
    assert_eq!(c["pendingTasksCount"], 0, "{c:#}");

    // A disconnected agent: AGENT. (SIGTERM revokes its lease at once.)
    agents[0].signal("-TERM");
    api.wait_for(20, "agentConnected false", || {
        (instance(&api, &a)["agentConnected"] == false).then_some(())
    });
    let lost = api.aws_json(&[
        "start-task",
        "--task-definition",
        "pl-small",
        "--container-instances",
        &a,
    ]);
    assert_eq!(lost["tasks"], json!([]), "{lost:#}");
    assert_eq!(failures(&lost), [(a.clone(), "AGENT".to_string())]);
}

#[test]
fn a_service_places_by_its_constraints_and_the_task_definition_s_together() {
    let etcd = Etcd::start();
    let api = serve_with(&etcd, &[]);
    let agents = boxes(
        &etcd,
        &api,
        5,
        &[&["disk=hdd"], &["disk=hdd"], &["disk=ssd"]],
    );
    register(
        &api,
        "hdd.json",
        &sleeper(
            "pl-hdd",
            128,
            64,
            r#","placementConstraints": [{"type": "memberOf", "expression": "attribute:disk == hdd"}]"#,
        ),
    );
    api.aws_json(&["create-cluster", "--cluster-name", "default"]);
    // ECS's limit counts the definition's constraint.
    let mut args = vec![
        "create-service",
        "--service-name",
        "too-many",
        "--task-definition",
        "pl-hdd",
        "--desired-count",
        "1",
        "--launch-type",
        "EC2",
        "--placement-constraints",
    ];
    args.extend(std::iter::repeat_n("type=distinctInstance", 10));
    let err = api.aws_err(&args);
    assert!(
        err.contains("10 given and 1 in task definition pl-hdd:1; at most 10 per task"),
        "{err}"
    );
    // distinctInstance (the service's) and memberOf hdd (the definition's): three tasks
    // wanted, two hdd boxes, so two run, one on each, and the service says why the third
    // is not placed.
    api.aws_json(&[
        "create-service",
        "--service-name",
        "web",
        "--task-definition",
        "pl-hdd",
        "--desired-count",
        "3",
        "--launch-type",
        "EC2",
        "--placement-constraints",
        "type=distinctInstance",
    ]);
    let running = api.wait_for(90, "2 service tasks RUNNING and an event", || {
        let svc = api.service("default", "web");
        let unable = svc["events"].as_array().unwrap().iter().any(|e| {
            e["message"]
                .as_str()
                .unwrap()
                .contains("was unable to place a task")
        });
        let arns = api.aws_json(&["list-tasks", "--service-name", "web"]);
        let arns: Vec<String> = arns["taskArns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect();
        let on: Vec<String> = arns
            .iter()
            .map(|a| describe_task(&api, a))
            .filter(|t| t["lastStatus"] == "RUNNING")
            .map(|t| t["containerInstanceArn"].as_str().unwrap().to_string())
            .collect();
        (unable && on.len() == 2).then_some(on)
    });
    let mut want = vec![agents[0].arn(), agents[1].arn()];
    want.sort();
    let mut got = running.clone();
    got.sort();
    assert_eq!(got, want, "never on the ssd box, never two on one box");
    api.aws_json(&["update-service", "--service", "web", "--desired-count", "0"]);
    for a in &agents {
        api.wait_for(60, "the instance's tasks stopped", || {
            (instance(&api, &a.arn())["runningTasksCount"] == 0).then_some(())
        });
    }
}
