//! Root integration tests of service deployments as ECS runs them, with the real AWS CLI
//! against `minifargate serve`: the deployment circuit breaker fails a deployment whose
//! tasks exit at once (at ECS's threshold) and rolls back to the last completed one, or,
//! without rollback, stops launching; the service deployment API
//! (list-service-deployments, describe-service-deployments, stop-service-deployment,
//! describe-service-revisions) shows it as ECS would; also in cluster mode (`serve
//! --cluster`, one box).

use crate::common;

use common::api::Api;
use serde_json::Value;

/// A task definition of family `family`: `sleep` runs until SIGTERM; `exit` exits at once.
fn def(family: &str, cmd: &str) -> String {
    let command = match cmd {
        "exit" => r#"["sh","-c","exit 1"]"#,
        _ => r#"["sh","-c","trap 'exit 0' TERM; sleep 3600 & wait"]"#,
    };
    format!(
        r#"{{"family":"{family}","networkMode":"awsvpc","cpu":"256","memory":"512",
  "containerDefinitions":[{{"name":"app","image":"public.ecr.aws/docker/library/busybox:1.36",
    "essential":true,"command":{command}}}]}}"#
    )
}

fn events(s: &Value) -> Vec<String> {
    s["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_string())
        .collect()
}

fn register(api: &Api, name: &str, family: &str, cmd: &str) {
    let f = api.file(name, &def(family, cmd));
    api.aws_json(&["register-task-definition", "--cli-input-json", &f]);
}

/// The service's one deployment COMPLETED and its id.
fn completed(api: &Api, service: &str) -> String {
    api.wait_for(90, "the deployment to complete", || {
        let s = api.service("default", service);
        let d = s["deployments"].as_array().unwrap();
        (d.len() == 1 && d[0]["rolloutState"] == "COMPLETED" && s["runningCount"] == 1)
            .then(|| d[0]["id"].as_str().unwrap().to_string())
    })
}

fn stopped_tasks_of(api: &Api, deployment: &str) -> usize {
    api.aws_json(&[
        "list-tasks",
        "--started-by",
        deployment,
        "--desired-status",
        "STOPPED",
    ])["taskArns"]
        .as_array()
        .unwrap()
        .len()
}

fn digits(deployment: &str) -> &str {
    deployment.strip_prefix("ecs-svc/").unwrap()
}

#[test]
fn a_failing_deployment_trips_the_circuit_breaker_and_rolls_back() {
    let api = Api::start();
    register(&api, "good.json", "cb", "sleep");
    let created = api.aws_json(&[
        "create-service",
        "--service-name",
        "cb",
        "--task-definition",
        "cb:1",
        "--desired-count",
        "1",
        "--deployment-configuration",
        "deploymentCircuitBreaker={enable=true,rollback=true}",
    ]);
    assert_eq!(
        created["service"]["deploymentConfiguration"]["deploymentCircuitBreaker"],
        serde_json::json!({"enable": true, "rollback": true})
    );
    assert!(
        !events(&created["service"])
            .iter()
            .any(|e| e.contains("deploymentCircuitBreaker")),
        "the circuit breaker is applied: no 'not applied' event"
    );
    let good = completed(&api, "cb");

    // A revision whose container exits at once: its tasks fail; at the threshold (3 for
    // one task) the deployment is FAILED and the service rolls back to cb:1.
    register(&api, "bad.json", "cb", "exit");
    let updated = api.aws_json(&[
        "update-service",
        "--service",
        "cb",
        "--task-definition",
        "cb:2",
    ]);
    let bad = updated["service"]["deployments"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let failed_msg =
        format!("(service cb) (deployment {bad}) deployment failed: tasks failed to start.");
    let s = api.wait_for(120, "the circuit breaker to trip", || {
        let s = api.service("default", "cb");
        events(&s).contains(&failed_msg).then_some(s)
    });
    let ev = events(&s);
    assert!(
        ev.contains(&format!("(service cb) rolling back to deployment {good}.")),
        "{ev:#?}"
    );
    // The failed deployment stays listed (ACTIVE, FAILED) while it has tasks; these all
    // stopped, so it may be gone already (INACTIVE), as on ECS.
    if let Some(failed) = s["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == bad.as_str())
    {
        assert_eq!(failed["rolloutState"], "FAILED", "{failed:#}");
        assert_eq!(
            failed["rolloutStateReason"],
            "ECS deployment circuit breaker: tasks failed to start."
        );
        assert_eq!(failed["status"], "ACTIVE");
        assert_eq!(failed["failedTasks"], 3, "{failed:#}");
    }
    assert_eq!(stopped_tasks_of(&api, &bad), 3);
    let primary = &s["deployments"][0];
    assert_eq!(primary["status"], "PRIMARY");
    assert_eq!(
        primary["taskDefinition"],
        "arn:aws:ecs:us-east-1:000000000000:task-definition/cb:1"
    );
    // While it runs, the rollback says what it rolls back to; it may have completed
    // already (one task starts in well under a second).
    let reason = primary["rolloutStateReason"].as_str().unwrap();
    if primary["rolloutState"] == "IN_PROGRESS" {
        assert_eq!(
            reason,
            format!("ECS deployment circuit breaker: rolling back to deploymentId {good}.")
        );
    } else {
        assert_eq!(
            reason,
            format!(
                "ECS deployment {} completed.",
                primary["id"].as_str().unwrap()
            )
        );
    }
    assert_eq!(
        s["taskDefinition"],
        "arn:aws:ecs:us-east-1:000000000000:task-definition/cb:1"
    );

    // The rollback completes: one RUNNING task of cb:1.
    let rollback = completed(&api, "cb");
    assert_ne!(rollback, good);
    let tasks = api.aws_json(&[
        "list-tasks",
        "--service-name",
        "cb",
        "--desired-status",
        "RUNNING",
    ]);
    let arn = tasks["taskArns"][0].as_str().unwrap();
    let t = &api.aws_json(&["describe-tasks", "--tasks", arn])["tasks"][0];
    assert_eq!(t["lastStatus"], "RUNNING");
    assert_eq!(
        t["taskDefinitionArn"],
        "arn:aws:ecs:us-east-1:000000000000:task-definition/cb:1"
    );

    // The service deployment API: two service deployments, newest first; the failed one
    // ROLLBACK_SUCCESSFUL with its rollback to the first revision.
    let l = api.aws_json(&["list-service-deployments", "--service", "cb"]);
    let sds = l["serviceDeployments"].as_array().unwrap();
    assert_eq!(sds.len(), 2, "{l:#}");
    let rev = |d: &str| {
        format!(
            "arn:aws:ecs:us-east-1:000000000000:service-revision/default/cb/{}",
            digits(d)
        )
    };
    assert_eq!(sds[0]["status"], "ROLLBACK_SUCCESSFUL", "{l:#}");
    assert_eq!(sds[0]["targetServiceRevisionArn"], rev(&bad).as_str());
    assert_eq!(sds[1]["status"], "SUCCESSFUL");
    assert_eq!(sds[1]["targetServiceRevisionArn"], rev(&good).as_str());
    let sd_arn = sds[0]["serviceDeploymentArn"].as_str().unwrap().to_string();
    assert!(
        sd_arn.starts_with("arn:aws:ecs:us-east-1:000000000000:service-deployment/default/cb/"),
        "{sd_arn}"
    );
    let only = api.aws_json(&[
        "list-service-deployments",
        "--service",
        "cb",
        "--status",
        "SUCCESSFUL",
    ]);
    assert_eq!(only["serviceDeployments"].as_array().unwrap().len(), 1);

    let d = api.aws_json(&[
        "describe-service-deployments",
        "--service-deployment-arns",
        &sd_arn,
        "arn:aws:ecs:us-east-1:000000000000:service-deployment/default/cb/nope",
    ]);
    let sd = &d["serviceDeployments"][0];
    assert_eq!(sd["status"], "ROLLBACK_SUCCESSFUL", "{d:#}");
    assert_eq!(
        sd["statusReason"],
        "Service deployment rolled back because the circuit breaker threshold was exceeded."
    );
    assert_eq!(sd["rollback"]["serviceRevisionArn"], rev(&good).as_str());
    assert_eq!(sd["targetServiceRevision"]["arn"], rev(&bad).as_str());
    assert_eq!(sd["sourceServiceRevisions"][0]["arn"], rev(&good).as_str());
    assert_eq!(sd["deploymentCircuitBreaker"]["status"], "TRIGGERED");
    assert_eq!(sd["deploymentCircuitBreaker"]["threshold"], 3);
    assert_eq!(sd["deploymentCircuitBreaker"]["failureCount"], 3);
    assert!(sd["finishedAt"].is_number(), "{sd:#}");
    assert_eq!(d["failures"][0]["reason"], "MISSING");

    let r = api.aws_json(&[
        "describe-service-revisions",
        "--service-revision-arns",
        &rev(&good),
        &rev(&bad),
    ]);
    let revs = r["serviceRevisions"].as_array().unwrap();
    assert_eq!(revs.len(), 2, "{r:#}");
    assert_eq!(
        revs[1]["taskDefinition"],
        "arn:aws:ecs:us-east-1:000000000000:task-definition/cb:2"
    );
    assert_eq!(revs[1]["containerImages"][0]["containerName"], "app");

    // boto3: the services_stable waiter and the deployment API agree with the service.
    let out = api.boto3(
        r#"
import json, os, boto3
ecs = boto3.client("ecs", endpoint_url=os.environ["ENDPOINT"], region_name="us-east-1")
ecs.get_waiter("services_stable").wait(services=["cb"], WaiterConfig={"Delay": 1, "MaxAttempts": 60})
s = ecs.describe_services(services=["cb"])["services"][0]
sds = ecs.list_service_deployments(service="cb")["serviceDeployments"]
d = ecs.describe_service_deployments(serviceDeploymentArns=[sds[0]["serviceDeploymentArn"]])
print(json.dumps({"running": s["runningCount"], "deployments": len(s["deployments"]),
    "td": s["taskDefinition"], "statuses": [x["status"] for x in sds],
    "rollbackTo": d["serviceDeployments"][0]["rollback"]["serviceRevisionArn"]}))
"#,
    );
    assert_eq!(out["running"], 1, "{out:#}");
    assert_eq!(out["deployments"], 1);
    assert_eq!(
        out["td"],
        "arn:aws:ecs:us-east-1:000000000000:task-definition/cb:1"
    );
    assert_eq!(
        out["statuses"],
        serde_json::json!(["ROLLBACK_SUCCESSFUL", "SUCCESSFUL"])
    );
    assert_eq!(out["rollbackTo"], rev(&good).as_str());

    // A finished service deployment cannot be stopped.
    let e = api.aws_err(&[
        "stop-service-deployment",
        "--service-deployment-arn",
        &sd_arn,
    ]);
    assert!(e.contains("ConflictException"), "{e}");

    api.aws_json(&["delete-service", "--service", "cb", "--force"]);
    api.wait_for(60, "the service to be INACTIVE", || {
        (api.service("default", "cb")["status"] == "INACTIVE").then_some(())
    });
}

#[test]
fn without_rollback_a_failed_deployment_stops_launching_and_a_stop_rolls_back() {
    let api = Api::start();
    register(&api, "good.json", "nr", "sleep");
    api.aws_json(&[
        "create-service",
        "--service-name",
        "nr",
        "--task-definition",
        "nr:1",
        "--desired-count",
        "1",
        "--deployment-configuration",
        "deploymentCircuitBreaker={enable=true,rollback=false}",
    ]);
    let good = completed(&api, "nr");
    register(&api, "bad.json", "nr", "exit");
    let updated = api.aws_json(&[
        "update-service",
        "--service",
        "nr",
        "--task-definition",
        "nr:2",
    ]);
    let bad = updated["service"]["deployments"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let s = api.wait_for(120, "the deployment to fail", || {
        let s = api.service("default", "nr");
        (s["deployments"][0]["rolloutState"] == "FAILED").then_some(s)
    });
    assert_eq!(s["deployments"][0]["id"], bad.as_str());
    assert_eq!(s["deployments"][0]["status"], "PRIMARY");
    assert!(
        events(&s).contains(&format!(
            "(service nr) (deployment {bad}) deployment failed: tasks failed to start."
        )),
        "{s:#}"
    );
    assert!(!events(&s).iter().any(|e| e.contains("rolling back")));
    // No more launches: the failed deployment's task count stays put; the old task runs.
    let n = stopped_tasks_of(&api, &bad);
    assert_eq!(n, 3);
    std::thread::sleep(std::time::Duration::from_secs(12));
    assert_eq!(
        stopped_tasks_of(&api, &bad),
        n,
        "a FAILED deployment launched again"
    );
    let s = api.service("default", "nr");
    assert_eq!(s["runningCount"], 1, "{s:#}");
    let l = api.aws_json(&["list-service-deployments", "--service", "nr"]);
    assert_eq!(l["serviceDeployments"][0]["status"], "STOPPED", "{l:#}");

    // A deployment in progress stopped with ROLLBACK goes back to the completed one.
    api.aws_json(&[
        "update-service",
        "--service",
        "nr",
        "--task-definition",
        "nr:2",
        "--force-new-deployment",
        "--deployment-configuration",
        "deploymentCircuitBreaker={enable=false,rollback=false}",
    ]);
    let l = api.aws_json(&["list-service-deployments", "--service", "nr"]);
    let sd = &l["serviceDeployments"][0];
    assert_eq!(sd["status"], "IN_PROGRESS", "{l:#}");
    let arn = sd["serviceDeploymentArn"].as_str().unwrap().to_string();
    let stopped = api.aws_json(&[
        "stop-service-deployment",
        "--service-deployment-arn",
        &arn,
        "--stop-type",
        "ROLLBACK",
    ]);
    assert_eq!(stopped["serviceDeploymentArn"], arn.as_str());
    let ev = events(&api.service("default", "nr"));
    assert!(
        ev.contains(&format!("(service nr) rolling back to deployment {good}.")),
        "{ev:#?}"
    );
    completed(&api, "nr");
    let d = api.aws_json(&[
        "describe-service-deployments",
        "--service-deployment-arns",
        &arn,
    ]);
    assert_eq!(
        d["serviceDeployments"][0]["status"], "ROLLBACK_SUCCESSFUL",
        "{d:#}"
    );
    let e = api.aws_err(&[
        "stop-service-deployment",
        "--service-deployment-arn",
        "arn:aws:ecs:us-east-1:000000000000:service-deployment/default/nr/nope",
    ]);
    assert!(e.contains("ServiceDeploymentNotFoundException"), "{e}");

    api.aws_json(&["delete-service", "--service", "nr", "--force"]);
    api.wait_for(60, "the service to be INACTIVE", || {
        (api.service("default", "nr")["status"] == "INACTIVE").then_some(())
    });
}

#[test]
fn tasks_that_fail_their_health_checks_trip_the_circuit_breaker() {
    let api = Api::start();
    register(&api, "good.json", "hc", "sleep");
    api.aws_json(&[
        "create-service",
        "--service-name",
        "hc",
        "--task-definition",
        "hc:1",
        "--desired-count",
        "1",
        "--deployment-configuration",
        "deploymentCircuitBreaker={enable=true,rollback=true}",
    ]);
    let good = completed(&api, "hc");
    // Runs, but its container health check always fails: each task turns UNHEALTHY and
    // is replaced, a failed task of the deployment.
    let sick = r#"{"family":"hc","networkMode":"awsvpc","cpu":"256","memory":"512",
      "containerDefinitions":[{"name":"app","image":"public.ecr.aws/docker/library/busybox:1.36",
        "essential":true,"command":["sh","-c","trap 'exit 0' TERM; sleep 3600 & wait"],
        "healthCheck":{"command":["CMD-SHELL","exit 1"],"interval":5,"timeout":2,"retries":1}}]}"#;
    let f = api.file("sick.json", sick);
    api.aws_json(&["register-task-definition", "--cli-input-json", &f]);
    let updated = api.aws_json(&[
        "update-service",
        "--service",
        "hc",
        "--task-definition",
        "hc:2",
    ]);
    let bad = updated["service"]["deployments"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let ev = api.wait_for(150, "the circuit breaker to trip on health checks", || {
        let ev = events(&api.service("default", "hc"));
        ev.contains(&format!(
            "(service hc) (deployment {bad}) deployment failed: tasks failed to start."
        ))
        .then_some(ev)
    });
    assert!(
        ev.iter()
            .any(|e| e.contains("failed container health checks.")),
        "{ev:#?}"
    );
    assert!(
        ev.contains(&format!("(service hc) rolling back to deployment {good}.")),
        "{ev:#?}"
    );
    completed(&api, "hc");
    let s = api.service("default", "hc");
    assert_eq!(
        s["taskDefinition"],
        "arn:aws:ecs:us-east-1:000000000000:task-definition/hc:1"
    );
    api.aws_json(&["delete-service", "--service", "hc", "--force"]);
    api.wait_for(60, "the service to be INACTIVE", || {
        (api.service("default", "hc")["status"] == "INACTIVE").then_some(())
    });
}

#[test]
fn in_a_cluster_the_leader_s_scheduler_trips_the_breaker_and_rolls_back() {
    use common::cluster::{Agent, SLEEPER, list, register as put};
    let etcd = common::etcd::Etcd::start();
    let api = common::cluster::serve(&etcd);
    let _box = Agent::start_for(&etcd, &api, 3, &[]);
    api.wait_for(30, "the box listed", || {
        (list(&api, &[]).len() == 1).then_some(())
    });
    put(&api, "sleeper.json", SLEEPER);
    put(
        &api,
        "exits.json",
        &SLEEPER.replace(r#"["sleep", "300"]"#, r#"["sh", "-c", "exit 1"]"#),
    );
    api.aws_json(&[
        "create-service",
        "--service-name",
        "cb",
        "--task-definition",
        "cluster-sleeper:1",
        "--desired-count",
        "1",
        "--launch-type",
        "EC2",
        "--deployment-configuration",
        "deploymentCircuitBreaker={enable=true,rollback=true}",
    ]);
    let good = completed(&api, "cb");
    let updated = api.aws_json(&[
        "update-service",
        "--service",
        "cb",
        "--task-definition",
        "cluster-sleeper:2",
    ]);
    let bad = updated["service"]["deployments"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    api.wait_for(150, "the circuit breaker to trip", || {
        let ev = events(&api.service("default", "cb"));
        (ev.contains(&format!(
            "(service cb) (deployment {bad}) deployment failed: tasks failed to start."
        )) && ev.contains(&format!("(service cb) rolling back to deployment {good}.")))
        .then_some(())
    });
    completed(&api, "cb");
    let s = api.service("default", "cb");
    assert_eq!(
        s["taskDefinition"],
        "arn:aws:ecs:us-east-1:000000000000:task-definition/cluster-sleeper:1"
    );
    let l = api.aws_json(&["list-service-deployments", "--service", "cb"]);
    let statuses: Vec<&str> = l["serviceDeployments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["ROLLBACK_SUCCESSFUL", "SUCCESSFUL"], "{l:#}");
    api.aws_json(&["update-service", "--service", "cb", "--desired-count", "0"]);
    api.wait_for(60, "no task RUNNING", || {
        (api.service("default", "cb")["runningCount"] == 0).then_some(())
    });
}

fn cw(api: &Api, args: &[&str]) {
    let out = api.aws_in("cloudwatch", args);
    assert!(
        out.status.success(),
        "aws cloudwatch {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The service deployment whose target revision is deployment `id`'s
/// (ListServiceDeployments, then DescribeServiceDeployments).
fn service_deployment(api: &Api, service: &str, id: &str) -> Value {
    let l = api.aws_json(&["list-service-deployments", "--service", service]);
    let arn = l["serviceDeployments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| {
            d["targetServiceRevisionArn"]
                .as_str()
                .unwrap()
                .ends_with(&format!("/{}", digits(id)))
        })
        .unwrap_or_else(|| panic!("no service deployment of {id}: {l:#}"))["serviceDeploymentArn"]
        .as_str()
        .unwrap()
        .to_string();
    let d = api.aws_json(&[
        "describe-service-deployments",
        "--service-deployment-arns",
        &arn,
    ]);
    d["serviceDeployments"][0].clone()
}

#[test]
fn a_deployment_alarm_in_alarm_fails_the_deployment_and_rolls_back() {
    let api = Api::start();
    // An alarm on a metric nobody puts: INSUFFICIENT_DATA until set otherwise; its
    // Period × EvaluationPeriods (10 s) is the deployments' bake time.
    cw(
        &api,
        &[
            "put-metric-alarm",
            "--alarm-name",
            "da-errors",
            "--namespace",
            "Shop",
            "--metric-name",
            "Errors",
            "--statistic",
            "Sum",
            "--period",
            "10",
            "--evaluation-periods",
            "1",
            "--threshold",
            "1",
            "--comparison-operator",
            "GreaterThanOrEqualToThreshold",
        ],
    );
    register(&api, "one.json", "da", "sleep");
    let created = api.aws_json(&[
        "create-service",
        "--service-name",
        "da",
        "--task-definition",
        "da:1",
        "--desired-count",
        "1",
        "--deployment-configuration",
        "alarms={alarmNames=[da-errors],enable=true,rollback=true}",
    ]);
    assert_eq!(
        created["service"]["deploymentConfiguration"]["alarms"],
        serde_json::json!({"alarmNames": ["da-errors"], "enable": true, "rollback": true})
    );
    assert!(
        !events(&created["service"])
            .iter()
            .any(|e| e.contains("not applied")),
        "{created:#}"
    );
    let first = created["service"]["deployments"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Steady, then the bake time: the deployment stays IN_PROGRESS, its alarms watched.
    api.wait_for(60, "a steady state", || {
        let s = api.service("default", "da");
        events(&s)
            .contains(&"(service da) has reached a steady state.".to_string())
            .then_some(())
    });
    // (Judged from one answer: the bake time may end between two.)
    let sd = service_deployment(&api, "da", &first);
    if sd["status"] == "IN_PROGRESS" {
        assert_eq!(sd["alarms"]["status"], "MONITORING", "{sd:#}");
        assert_eq!(sd["alarms"]["alarmNames"], serde_json::json!(["da-errors"]));
    }
    let good = completed(&api, "da");
    assert_eq!(good, first);
    let sd = service_deployment(&api, "da", &good);
    assert_eq!(sd["alarms"]["status"], "MONITORING_COMPLETE", "{sd:#}");
    assert_eq!(
        sd["deploymentConfiguration"]["alarms"]["alarmNames"],
        serde_json::json!(["da-errors"])
    );

    // A new revision that runs fine; the alarm goes into ALARM while it rolls out (or
    // bakes): the deployment fails and the service goes back to da:1.
    register(&api, "two.json", "da", "sleep");
    let updated = api.aws_json(&[
        "update-service",
        "--service",
        "da",
        "--task-definition",
        "da:2",
    ]);
    let bad = updated["service"]["deployments"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    cw(
        &api,
        &[
            "set-alarm-state",
            "--alarm-name",
            "da-errors",
            "--state-value",
            "ALARM",
            "--state-reason",
            "errors after the deployment",
        ],
    );
    let failed_msg = format!("(service da) (deployment {bad}) deployment failed: alarm detected.");
    let s = api.wait_for(60, "the deployment alarm to fail the deployment", || {
        let s = api.service("default", "da");
        events(&s).contains(&failed_msg).then_some(s)
    });
    let ev = events(&s);
    assert!(
        ev.contains(&format!("(service da) rolling back to deployment {good}.")),
        "{ev:#?}"
    );
    if let Some(failed) = s["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == bad.as_str())
    {
        assert_eq!(failed["rolloutState"], "FAILED", "{failed:#}");
        assert_eq!(
            failed["rolloutStateReason"],
            "ECS deployment alarms: da-errors went into the ALARM state."
        );
    }
    assert_eq!(
        s["taskDefinition"],
        "arn:aws:ecs:us-east-1:000000000000:task-definition/da:1"
    );
    let sd = service_deployment(&api, "da", &bad);
    assert_eq!(sd["alarms"]["status"], "TRIGGERED", "{sd:#}");
    assert_eq!(
        sd["alarms"]["triggeredAlarmNames"],
        serde_json::json!(["da-errors"])
    );
    assert_eq!(sd["deploymentCircuitBreaker"]["status"], "DISABLED");
    assert!(
        sd["statusReason"]
            .as_str()
            .unwrap()
            .starts_with("Service deployment rolled back because the deployment alarms"),
        "{sd:#}"
    );
    let rev = format!(
        "arn:aws:ecs:us-east-1:000000000000:service-revision/default/da/{}",
        digits(&good)
    );
    assert_eq!(sd["rollback"]["serviceRevisionArn"], rev.as_str());

    // The rollback runs da:1 again; it bakes too, then the failed deployment is
    // ROLLBACK_SUCCESSFUL.
    let back = completed(&api, "da");
    assert_ne!(back, good);
    let l = api.aws_json(&["list-service-deployments", "--service", "da"]);
    let statuses: Vec<&str> = l["serviceDeployments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["ROLLBACK_SUCCESSFUL", "SUCCESSFUL"], "{l:#}");
    let tasks = api.aws_json(&[
        "list-tasks",
        "--service-name",
        "da",
        "--desired-status",
        "RUNNING",
    ]);
    let arn = tasks["taskArns"][0].as_str().unwrap();
    let t = &api.aws_json(&["describe-tasks", "--tasks", arn])["tasks"][0];
    assert_eq!(
        t["taskDefinitionArn"],
        "arn:aws:ecs:us-east-1:000000000000:task-definition/da:1"
    );

    api.aws_json(&["delete-service", "--service", "da", "--force"]);
    api.wait_for(60, "the service to be INACTIVE", || {
        (api.service("default", "da")["status"] == "INACTIVE").then_some(())
    });
}
