//! Root integration test of ECS's events in EventBridge's shapes on `serve`: a service's
//! task, deployment and steady state come out as "ECS Task State Change", "ECS Deployment
//! State Change" and "ECS Service Action" events in the log group `/aws/events/ecs`, read
//! with the real AWS CLI's `aws logs filter-log-events` (what `aws logs tail --follow`
//! polls).

use crate::common;

use common::api::Api;
use serde_json::Value;

fn events(api: &Api) -> Vec<Value> {
    let out = api.aws_in(
        "logs",
        &["filter-log-events", "--log-group-name", "/aws/events/ecs"],
    );
    if !out.status.success() {
        return Vec::new();
    }
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| serde_json::from_str(e["message"].as_str().unwrap()).unwrap())
        .collect()
}

#[test]
fn a_service_s_task_deployment_and_steady_state_are_eventbridge_events_in_a_log_group() {
    let api = Api::start();
    let def = r#"{"family":"ev","networkMode":"awsvpc","cpu":"256","memory":"512",
  "containerDefinitions":[{"name":"app","image":"public.ecr.aws/docker/library/busybox:1.36",
    "essential":true,"command":["sh","-c","trap 'exit 0' TERM; sleep 3600 & wait"]}]}"#;
    let f = api.file("ev.json", def);
    api.aws_json(&["register-task-definition", "--cli-input-json", &f]);
    let created = api.aws_json(&[
        "create-service",
        "--service-name",
        "ev",
        "--task-definition",
        "ev",
        "--desired-count",
        "1",
    ]);
    let service_arn = created["service"]["serviceArn"]
        .as_str()
        .unwrap()
        .to_string();
    let deployment = created["service"]["deployments"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let all = api.wait_for(60, "the steady state event", || {
        let all = events(&api);
        all.iter()
            .any(|e| e["detail"]["eventName"] == "SERVICE_STEADY_STATE")
            .then_some(all)
    });
    for e in &all {
        assert_eq!(e["source"], "aws.ecs", "{e:#}");
        assert_eq!(e["version"], "0");
        assert_eq!(e["account"], "000000000000");
        assert_eq!(e["region"], "us-east-1");
    }
    let of = |t: &str| -> Vec<&Value> { all.iter().filter(|e| e["detail-type"] == t).collect() };
    let steady = of("ECS Service Action");
    assert_eq!(steady[0]["resources"][0], service_arn.as_str());
    assert_eq!(steady[0]["detail"]["eventType"], "INFO");
    assert_eq!(
        steady[0]["detail"]["clusterArn"],
        "arn:aws:ecs:us-east-1:000000000000:cluster/default"
    );
    let deps: Vec<(&str, &str)> = of("ECS Deployment State Change")
        .iter()
        .map(|e| {
            assert_eq!(e["detail"]["deploymentId"], deployment.as_str());
            (
                e["detail"]["eventName"].as_str().unwrap(),
                e["detail"]["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        deps,
        [
            (
                "SERVICE_DEPLOYMENT_IN_PROGRESS",
                format!("ECS deployment {deployment} in progress.").as_str()
            ),
            (
                "SERVICE_DEPLOYMENT_COMPLETED",
                format!("ECS deployment {deployment} completed.").as_str()
            )
        ]
    );
    let tasks = of("ECS Task State Change");
    let running = tasks
        .iter()
        .find(|e| e["detail"]["lastStatus"] == "RUNNING")
        .unwrap_or_else(|| panic!("{tasks:#?}"));
    assert_eq!(running["detail"]["group"], "service:ev");
    assert_eq!(running["detail"]["startedBy"], deployment.as_str());
    assert_eq!(
        running["resources"][0], running["detail"]["taskArn"],
        "{running:#}"
    );
    assert_eq!(running["detail"]["desiredStatus"], "RUNNING");

    // The task stops: its STOPPED event follows.
    api.aws_json(&["update-service", "--service", "ev", "--desired-count", "0"]);
    api.wait_for(60, "the STOPPED task event", || {
        events(&api)
            .iter()
            .any(|e| {
                e["detail-type"] == "ECS Task State Change"
                    && e["detail"]["lastStatus"] == "STOPPED"
            })
            .then_some(())
    });
    api.aws_json(&["delete-service", "--service", "ev", "--force"]);
}

/// In cluster mode the tasks run on the boxes (`minifargate agent` over a real etcd):
/// their changes come from the cluster's task records, so a task a box runs and stops is
/// "ECS Task State Change" events (RUNNING, then STOPPED with its stop code) in the log
/// group serve keeps, naming the box's container instance.
#[test]
fn a_task_on_a_cluster_s_box_is_an_ecs_task_state_change_event() {
    use common::cluster::{boxes, describe_task, register, serve_with};
    let etcd = common::etcd::Etcd::start();
    let api = serve_with(&etcd, &[]);
    let agents = boxes(&etcd, &api, 5, &[&[]]);
    register(
        &api,
        "ev-cluster.json",
        r#"{"family":"ev-cluster","networkMode":"awsvpc","requiresCompatibilities":["EC2"],
  "cpu":"128","memory":"64","containerDefinitions":[{"name":"main",
    "image":"public.ecr.aws/docker/library/busybox:1.36","essential":true,
    "command":["sh","-c","trap 'exit 0' TERM; sleep 300 & wait"]}]}"#,
    );
    let run = api.aws_json(&[
        "run-task",
        "--task-definition",
        "ev-cluster",
        "--launch-type",
        "EC2",
    ]);
    let arn = run["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    api.wait_for(60, "the task RUNNING", || {
        (describe_task(&api, &arn)["lastStatus"] == "RUNNING").then_some(())
    });
    let of_task = |api: &Api, status: &str| -> Option<Value> {
        events(api).into_iter().find(|e| {
            e["detail-type"] == "ECS Task State Change"
                && e["detail"]["taskArn"] == arn.as_str()
                && e["detail"]["lastStatus"] == status
        })
    };
    let running = api.wait_for(30, "a RUNNING task event", || of_task(&api, "RUNNING"));
    assert_eq!(running["source"], "aws.ecs", "{running:#}");
    assert_eq!(running["resources"][0], arn.as_str(), "{running:#}");
    assert_eq!(
        running["detail"]["containerInstanceArn"],
        agents[0].arn().as_str(),
        "{running:#}"
    );
    api.aws_json(&["stop-task", "--task", &arn, "--reason", "events test"]);
    let stopped = api.wait_for(60, "a STOPPED task event", || of_task(&api, "STOPPED"));
    assert_eq!(stopped["detail"]["desiredStatus"], "STOPPED", "{stopped:#}");
    assert_eq!(
        stopped["detail"]["stopCode"], "UserInitiated",
        "{stopped:#}"
    );
    assert_eq!(
        stopped["detail"]["stoppedReason"], "events test",
        "{stopped:#}"
    );
}
