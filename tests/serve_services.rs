//! Root integration tests of ECS services in `minifargate serve`, with the real AWS CLI:
//! the scheduler keeps desiredCount tasks RUNNING, replaces a task whose essential
//! container is killed or turns UNHEALTHY, rolls a new revision over, scales to 0, keeps
//! its services across a restart of `serve`; tags on every taggable resource.

use crate::common;

use common::api::Api;
use serde_json::{Value, json};
use std::process::Command;

/// A service task: stops on SIGTERM (so scale-in is quick), runs until then.
fn svc_def(family: &str, marker: &str) -> String {
    format!(
        r#"{{"family":"{family}","networkMode":"awsvpc","cpu":"256","memory":"512",
  "containerDefinitions":[{{"name":"app","image":"public.ecr.aws/docker/library/busybox:1.36",
    "essential":true,"environment":[{{"name":"MARKER","value":"{marker}"}}],
    "command":["sh","-c","trap 'exit 0' TERM; sleep 3600 & wait"]}}]}}"#
    )
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn tid(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap()
}

/// The service's RUNNING tasks (describe-tasks JSON), once `n` are and none is pending.
fn running_tasks(api: &Api, name: &str, n: usize) -> Vec<Value> {
    api.wait_for(90, &format!("{n} RUNNING tasks of service {name}"), || {
        let s = api.service("default", name);
        if s["runningCount"] != n || s["pendingCount"] != 0 {
            return None;
        }
        let arns = strs(&api.aws_json(&["list-tasks", "--desired-status", "RUNNING"])["taskArns"]);
        if arns.is_empty() {
            return (n == 0).then(Vec::new);
        }
        let mut args = vec!["describe-tasks", "--tasks"];
        args.extend(arns.iter().map(String::as_str));
        let tasks: Vec<Value> = api.aws_json(&args)["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["group"] == format!("service:{name}") && t["lastStatus"] == "RUNNING")
            .cloned()
            .collect();
        (tasks.len() == n).then_some(tasks)
    })
}

fn events(s: &Value) -> Vec<String> {
    s["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_string())
        .collect()
}

/// Kills the essential container's process (its host pid, from `minifargate inspect`).
fn kill_container(api: &Api, task_arn: &str) {
    let v = api.mf_json(&["inspect", tid(task_arn), "--format", "json"]);
    let pid = v["containers"][0]["hostPid"]
        .as_i64()
        .unwrap_or_else(|| panic!("no hostPid in {v:#}"));
    let st = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

fn describe_task(api: &Api, arn: &str) -> Value {
    api.aws_json(&["describe-tasks", "--tasks", arn])["tasks"][0].clone()
}

#[test]
fn a_service_keeps_its_tasks_running_rolls_over_scales_and_survives_a_restart() {
    let mut api = Api::start();
    let v1 = api.file("svc1.json", &svc_def("svc", "one"));
    api.aws_json(&["register-task-definition", "--cli-input-json", &v1]);
    let created = api.aws_json(&[
        "create-service",
        "--service-name",
        "web",
        "--task-definition",
        "svc",
        "--desired-count",
        "2",
    ]);
    let s = &created["service"];
    assert_eq!(
        s["serviceArn"],
        "arn:aws:ecs:us-east-1:000000000000:service/default/web"
    );
    assert_eq!(s["status"], "ACTIVE");
    assert_eq!(
        s["taskDefinition"],
        "arn:aws:ecs:us-east-1:000000000000:task-definition/svc:1"
    );
    assert_eq!(s["deployments"][0]["status"], "PRIMARY");
    assert_eq!(s["deployments"][0]["rolloutState"], "IN_PROGRESS");
    let first_deployment = s["deployments"][0]["id"].as_str().unwrap().to_string();
    assert!(first_deployment.starts_with("ecs-svc/"), "{s:#}");

    // desiredCount 2 → 2 RUNNING tasks, started as ECS starts service tasks.
    let tasks = running_tasks(&api, "web", 2);
    for t in &tasks {
        assert_eq!(t["startedBy"], first_deployment.as_str());
        assert_eq!(t["group"], "service:web");
    }
    let s = api.wait_for(30, "a steady state", || {
        let s = api.service("default", "web");
        events(&s)
            .iter()
            .any(|e| e == "(service web) has reached a steady state.")
            .then_some(s)
    });
    assert_eq!(s["deployments"][0]["rolloutState"], "COMPLETED", "{s:#}");
    let ev = events(&s);
    let mut ids: Vec<&str> = tasks
        .iter()
        .map(|t| tid(t["taskArn"].as_str().unwrap()))
        .collect();
    ids.sort();
    assert!(
        ev.iter().any(|e| {
            e.starts_with("(service web) has started 2 tasks: ")
                && ids.iter().all(|id| e.contains(&format!("(task {id})")))
        }),
        "{ev:#?}"
    );
    assert!(
        ev.contains(&format!(
            "(service web) (deployment {first_deployment}) deployment completed."
        )),
        "{ev:#?}"
    );

    // Kill one task's essential container: the task stops, the service replaces it.
    let victim = tasks[0]["taskArn"].as_str().unwrap().to_string();
    kill_container(&api, &victim);
    let replaced = api.wait_for(60, "a replacement task", || {
        let now = running_tasks(&api, "web", 2);
        now.iter()
            .all(|t| t["taskArn"] != victim.as_str())
            .then_some(now)
    });
    let dead = describe_task(&api, &victim);
    assert_eq!(dead["lastStatus"], "STOPPED");
    assert_eq!(dead["stopCode"], "EssentialContainerExited", "{dead:#}");
    let new_one = replaced
        .iter()
        .map(|t| t["taskArn"].as_str().unwrap())
        .find(|a| !tasks.iter().any(|t| t["taskArn"] == *a))
        .unwrap()
        .to_string();
    let ev = events(&api.service("default", "web"));
    assert!(
        ev.contains(&format!(
            "(service web) has started 1 tasks: (task {}).",
            tid(&new_one)
        )),
        "{ev:#?}"
    );

    // A new revision rolls over: new tasks first (maximumPercent 200), then the old ones
    // stop (minimumHealthyPercent 100).
    let v2 = api.file("svc2.json", &svc_def("svc", "two"));
    api.aws_json(&["register-task-definition", "--cli-input-json", &v2]);
    let updated = api.aws_json(&[
        "update-service",
        "--service",
        "web",
        "--task-definition",
        "svc:2",
    ]);
    let deps = updated["service"]["deployments"].as_array().unwrap();
    assert_eq!(deps.len(), 2, "{updated:#}");
    assert_eq!(deps[0]["status"], "PRIMARY");
    assert_eq!(deps[1]["status"], "ACTIVE");
    let second_deployment = deps[0]["id"].as_str().unwrap().to_string();
    let rolled = api.wait_for(120, "the rollout to svc:2", || {
        let s = api.service("default", "web");
        (s["deployments"].as_array().unwrap().len() == 1
            && s["deployments"][0]["rolloutState"] == "COMPLETED"
            && s["runningCount"] == 2)
            .then_some(s)
    });
    assert_eq!(rolled["deployments"][0]["id"], second_deployment.as_str());
    let tasks2 = running_tasks(&api, "web", 2);
    for t in &tasks2 {
        assert_eq!(
            t["taskDefinitionArn"],
            "arn:aws:ecs:us-east-1:000000000000:task-definition/svc:2"
        );
        assert_eq!(t["startedBy"], second_deployment.as_str());
    }
    let old = describe_task(&api, &new_one);
    assert_eq!(old["lastStatus"], "STOPPED");
    assert_eq!(old["stopCode"], "ServiceSchedulerInitiated", "{old:#}");
    assert_eq!(
        old["stoppedReason"],
        format!("Scaling activity initiated by (deployment {first_deployment})").as_str()
    );

    // serve restarts: the service is still there and still scheduled.
    api.restart();
    let s = api.service("default", "web");
    assert_eq!(
        (s["status"].as_str(), s["desiredCount"].as_i64()),
        (Some("ACTIVE"), Some(2))
    );
    let victim = tasks2[1]["taskArn"].as_str().unwrap().to_string();
    kill_container(&api, &victim);
    api.wait_for(60, "a replacement after the restart", || {
        let now = running_tasks(&api, "web", 2);
        now.iter()
            .all(|t| t["taskArn"] != victim.as_str())
            .then_some(())
    });

    // Scale to 0: the scheduler stops them with ServiceSchedulerInitiated.
    let before = running_tasks(&api, "web", 2);
    api.aws_json(&["update-service", "--service", "web", "--desired-count", "0"]);
    running_tasks(&api, "web", 0);
    for t in &before {
        let arn = t["taskArn"].as_str().unwrap();
        api.aws_json(&["wait", "tasks-stopped", "--tasks", arn]);
        let t = describe_task(&api, arn);
        assert_eq!(t["stopCode"], "ServiceSchedulerInitiated", "{t:#}");
        assert_eq!(
            t["stoppedReason"],
            format!("Scaling activity initiated by (deployment {second_deployment})").as_str()
        );
    }
    let ev = events(&api.service("default", "web"));
    assert!(
        ev.iter()
            .any(|e| e.starts_with("(service web) has stopped 2 running tasks: (task ")),
        "{ev:#?}"
    );

    // Delete: DRAINING, then INACTIVE; gone from list-services.
    let d = api.aws_json(&["delete-service", "--service", "web"]);
    assert_eq!(d["service"]["status"], "DRAINING");
    api.wait_for(30, "the service to be INACTIVE", || {
        (api.service("default", "web")["status"] == "INACTIVE").then_some(())
    });
    let l = api.aws_json(&["list-services"]);
    assert_eq!(l["serviceArns"], json!([]));
}

#[test]
fn an_unhealthy_task_is_replaced() {
    let api = Api::start();
    let def = r#"{"family":"sick","networkMode":"awsvpc","cpu":"256","memory":"512",
      "containerDefinitions":[{"name":"app","image":"public.ecr.aws/docker/library/busybox:1.36",
        "essential":true,"command":["sh","-c","trap 'exit 0' TERM; sleep 3600 & wait"],
        "healthCheck":{"command":["CMD-SHELL","exit 1"],"interval":5,"timeout":2,"retries":1}}]}"#;
    let f = api.file("sick.json", def);
    api.aws_json(&["register-task-definition", "--cli-input-json", &f]);
    api.aws_json(&[
        "create-service",
        "--service-name",
        "sick",
        "--task-definition",
        "sick",
        "--desired-count",
        "1",
    ]);
    let ev = api.wait_for(90, "an unhealthy task to be replaced", || {
        let ev = events(&api.service("default", "sick"));
        ev.iter()
            .any(|e| e.contains("Amazon ECS replaced 1 tasks due to an unhealthy status."))
            .then_some(ev)
    });
    let t = stopped_for_health(&api, "sick", &ev);
    assert_eq!(t["containers"][0]["healthStatus"], "UNHEALTHY");
    let d = api.aws_json(&["delete-service", "--service", "sick", "--force"]);
    assert_eq!(d["service"]["desiredCount"], 0);
    api.wait_for(60, "the service to be INACTIVE", || {
        (api.service("default", "sick")["status"] == "INACTIVE").then_some(())
    });
}

/// Seconds between two timestamps of a task as the AWS CLI prints them (epoch seconds,
/// or ISO 8601 with `cli_timestamp_format = iso8601`).
/// The task service `service`'s events (`ev`) say failed its health checks, once it has
/// stopped, stopped by the scheduler for that reason.
fn stopped_for_health(api: &Api, service: &str, ev: &[String]) -> Value {
    let id = ev
        .iter()
        .find(|e| e.ends_with("failed container health checks."))
        .unwrap_or_else(|| panic!("{ev:#?}"))
        .trim_start_matches(&format!("(service {service}) (task "))
        .split(')')
        .next()
        .unwrap()
        .to_string();
    let t = api.wait_for(60, "the unhealthy task to stop", || {
        let t = describe_task(api, &id);
        (t["lastStatus"] == "STOPPED").then_some(t)
    });
    assert_eq!(t["stopCode"], "ServiceSchedulerInitiated", "{t:#}");
    assert_eq!(t["stoppedReason"], "Task failed container health checks");
    t
}

fn secs_between(t: &Value, from: &str, to: &str) -> f64 {
    let at = |k: &str| -> f64 {
        match &t[k] {
            Value::Number(n) => n.as_f64().unwrap(),
            Value::String(s) => {
                chrono::DateTime::parse_from_rfc3339(s)
                    .unwrap_or_else(|e| panic!("{k} {s:?}: {e}"))
                    .timestamp_millis() as f64
                    / 1000.0
            }
            other => panic!("{k} is {other} in {t:#}"),
        }
    };
    at(to) - at(from)
}

#[test]
fn the_health_check_grace_period_spares_a_slow_starter_and_then_ends() {
    let api = Api::start();
    // `slow` fails its checks until /tmp/ready appears after 20 s: UNHEALTHY from ~5 s to
    // ~25 s (a window wide enough for a poll through the AWS CLI on a loaded host), then
    // HEALTHY. With a 40 s grace period the scheduler leaves it alone.
    let slow = r#"{"family":"slow","networkMode":"awsvpc","cpu":"256","memory":"512",
      "containerDefinitions":[{"name":"app","image":"public.ecr.aws/docker/library/busybox:1.36",
        "essential":true,"command":["sh","-c","trap 'exit 0' TERM; (sleep 20; touch /tmp/ready) & sleep 3600 & wait"],
        "healthCheck":{"command":["CMD-SHELL","test -e /tmp/ready"],"interval":5,"timeout":2,"retries":1}}]}"#;
    // `never` never turns healthy: replaced, but only once its 8 s grace period is over.
    let never = r#"{"family":"never","networkMode":"awsvpc","cpu":"256","memory":"512",
      "containerDefinitions":[{"name":"app","image":"public.ecr.aws/docker/library/busybox:1.36",
        "essential":true,"command":["sh","-c","trap 'exit 0' TERM; sleep 3600 & wait"],
        "healthCheck":{"command":["CMD-SHELL","exit 1"],"interval":5,"timeout":2,"retries":1}}]}"#;
    for (name, def, grace) in [("slow", slow, "40"), ("never", never, "8")] {
        let f = api.file(&format!("{name}.json"), def);
        api.aws_json(&["register-task-definition", "--cli-input-json", &f]);
        api.aws_json(&[
            "create-service",
            "--service-name",
            name,
            "--task-definition",
            name,
            "--desired-count",
            "1",
            "--health-check-grace-period-seconds",
            grace,
        ]);
    }
    let first = running_tasks(&api, "slow", 1)[0]["taskArn"]
        .as_str()
        .unwrap()
        .to_string();
    api.wait_for(30, "the slow task to turn UNHEALTHY", || {
        (describe_task(&api, &first)["healthStatus"] == "UNHEALTHY").then_some(())
    });
    let t = api.wait_for(40, "the slow task to turn HEALTHY", || {
        let t = describe_task(&api, &first);
        (t["healthStatus"] == "HEALTHY").then_some(t)
    });
    assert_eq!(t["lastStatus"], "RUNNING", "{t:#}");
    let ev = events(&api.service("default", "slow"));
    assert!(
        !ev.iter()
            .any(|e| e.contains("failed container health checks")),
        "{ev:#?}"
    );

    let ev = api.wait_for(90, "the never-healthy task to be replaced", || {
        let ev = events(&api.service("default", "never"));
        ev.iter()
            .any(|e| e.ends_with("failed container health checks."))
            .then_some(ev)
    });
    let t = stopped_for_health(&api, "never", &ev);
    // UNHEALTHY from ~5 s on; not stopped before the 8 s grace period ended.
    let after = secs_between(&t, "startedAt", "stoppingAt");
    assert!(after >= 8.0, "stopped {after} s after its start: {t:#}");
    for name in ["slow", "never"] {
        api.aws_json(&["delete-service", "--service", name, "--force"]);
    }
    for name in ["slow", "never"] {
        api.wait_for(60, "the service to be INACTIVE", || {
            (api.service("default", name)["status"] == "INACTIVE").then_some(())
        });
    }
}

#[test]
fn tags_round_trip_and_service_errors() {
    let api = Api::start();
    let f = api.file("tagged.json", &svc_def("tagged", "t"));
    api.aws_json(&[
        "register-task-definition",
        "--cli-input-json",
        &f,
        "--tags",
        "key=team,value=core",
    ]);
    api.aws_json(&["create-cluster", "--cluster-name", "tags-dev"]);
    // A service with desiredCount 0 starts nothing.
    let created = api.aws_json(&[
        "create-service",
        "--cluster",
        "tags-dev",
        "--service-name",
        "quiet",
        "--task-definition",
        "tagged:1",
        "--desired-count",
        "0",
        "--tags",
        "key=env,value=dev",
    ]);
    let svc_arn = created["service"]["serviceArn"]
        .as_str()
        .unwrap()
        .to_string();
    let td_arn = "arn:aws:ecs:us-east-1:000000000000:task-definition/tagged:1";
    let cluster_arn = "arn:aws:ecs:us-east-1:000000000000:cluster/tags-dev";
    let tags = |arn: &str| {
        api.aws_json(&["list-tags-for-resource", "--resource-arn", arn])["tags"].clone()
    };
    assert_eq!(tags(td_arn), json!([{"key": "team", "value": "core"}]));
    assert_eq!(tags(&svc_arn), json!([{"key": "env", "value": "dev"}]));
    assert_eq!(tags(cluster_arn), json!([]));
    for arn in [td_arn, svc_arn.as_str(), cluster_arn] {
        api.aws_json(&[
            "tag-resource",
            "--resource-arn",
            arn,
            "--tags",
            "key=env,value=prod",
            "key=owner,value=me",
        ]);
    }
    assert_eq!(
        tags(td_arn),
        json!([{"key": "team", "value": "core"}, {"key": "env", "value": "prod"},
               {"key": "owner", "value": "me"}])
    );
    assert_eq!(
        tags(&svc_arn),
        json!([{"key": "env", "value": "prod"}, {"key": "owner", "value": "me"}])
    );
    api.aws_json(&[
        "untag-resource",
        "--resource-arn",
        &svc_arn,
        "--tag-keys",
        "env",
    ]);
    assert_eq!(tags(&svc_arn), json!([{"key": "owner", "value": "me"}]));
    let d = api.aws_json(&[
        "describe-services",
        "--cluster",
        "tags-dev",
        "--services",
        "quiet",
        "--include",
        "TAGS",
    ]);
    assert_eq!(
        d["services"][0]["tags"],
        json!([{"key": "owner", "value": "me"}])
    );
    assert_eq!(
        tags(cluster_arn),
        json!([{"key": "env", "value": "prod"}, {"key": "owner", "value": "me"}])
    );
    // The task definition's tags as DescribeTaskDefinition shows them.
    let dtd = api.aws_json(&[
        "describe-task-definition",
        "--task-definition",
        "tagged:1",
        "--include",
        "TAGS",
    ]);
    assert_eq!(dtd["tags"].as_array().unwrap().len(), 3, "{dtd:#}");

    // A task's tags (hello stops by itself).
    let hello = format!("file://{}/examples/hello.json", env!("CARGO_MANIFEST_DIR"));
    api.aws_json(&["register-task-definition", "--cli-input-json", &hello]);
    let run = api.aws_json(&[
        "run-task",
        "--task-definition",
        "hello",
        "--tags",
        "key=a,value=1",
    ]);
    let task_arn = run["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    api.aws_json(&[
        "tag-resource",
        "--resource-arn",
        &task_arn,
        "--tags",
        "key=b,value=2",
    ]);
    assert_eq!(
        tags(&task_arn),
        json!([{"key": "a", "value": "1"}, {"key": "b", "value": "2"}])
    );
    api.aws_json(&["wait", "tasks-stopped", "--tasks", &task_arn]);
    let t = api.aws_json(&["describe-tasks", "--tasks", &task_arn, "--include", "TAGS"]);
    assert_eq!(
        t["tasks"][0]["tags"],
        json!([{"key": "a", "value": "1"}, {"key": "b", "value": "2"}])
    );
    let e = api.aws_err(&[
        "list-tags-for-resource",
        "--resource-arn",
        "arn:aws:ecs:us-east-1:000000000000:task/default/0123456789abcdef0123456789abcdef",
    ]);
    assert!(
        e.contains("(InvalidParameterException)") && e.contains("task"),
        "{e}"
    );
    let e = api.aws_err(&[
        "list-tags-for-resource",
        "--resource-arn",
        "arn:aws:ecs:us-east-1:000000000000:cluster/nowhere",
    ]);
    assert!(e.contains("(ClusterNotFoundException)"), "{e}");

    // Errors as ECS names them.
    let e = api.aws_err(&[
        "create-service",
        "--cluster",
        "tags-dev",
        "--service-name",
        "quiet",
        "--task-definition",
        "tagged:1",
        "--desired-count",
        "0",
    ]);
    assert!(
        e.contains("An error occurred (InvalidParameterException) when calling the CreateService operation: Creation of service was not idempotent."),
        "{e}"
    );
    let e = api.aws_err(&[
        "update-service",
        "--cluster",
        "tags-dev",
        "--service",
        "nope",
        "--desired-count",
        "1",
    ]);
    assert!(
        e.contains("(ServiceNotFoundException) when calling the UpdateService operation: Service not found."),
        "{e}"
    );
    let e = api.aws_err(&[
        "create-service",
        "--service-name",
        "x",
        "--task-definition",
        "nope:1",
        "--desired-count",
        "1",
    ]);
    assert!(e.contains("(ClientException)"), "{e}");
    let e = api.aws_err(&[
        "create-service",
        "--cluster",
        "nowhere",
        "--service-name",
        "x",
        "--task-definition",
        "tagged:1",
        "--desired-count",
        "1",
    ]);
    assert!(e.contains("(ClusterNotFoundException)"), "{e}");
    let e = api.aws_err(&[
        "create-service",
        "--service-name",
        "bad name",
        "--task-definition",
        "tagged:1",
        "--desired-count",
        "1",
    ]);
    assert!(
        e.contains("(InvalidParameterException)") && e.contains("serviceName"),
        "{e}"
    );
    let e = api.aws_err(&[
        "update-service",
        "--cluster",
        "tags-dev",
        "--service",
        "quiet",
        "--deployment-configuration",
        "maximumPercent=50,minimumHealthyPercent=0",
    ]);
    assert!(
        e.contains("(InvalidParameterException)") && e.contains("maximumPercent"),
        "{e}"
    );
    let d = api.aws_json(&[
        "describe-services",
        "--cluster",
        "tags-dev",
        "--services",
        "quiet",
        "ghost",
    ]);
    assert_eq!(d["services"].as_array().unwrap().len(), 1);
    assert_eq!(d["failures"][0]["reason"], "MISSING");
    assert_eq!(
        d["failures"][0]["arn"],
        "arn:aws:ecs:us-east-1:000000000000:service/tags-dev/ghost"
    );

    // ListServices pages (its default page is 10; the CLI follows nextToken).
    for n in ["b-svc", "c-svc"] {
        api.aws_json(&[
            "create-service",
            "--cluster",
            "tags-dev",
            "--service-name",
            n,
            "--task-definition",
            "tagged",
            "--desired-count",
            "0",
        ]);
    }
    let l = api.aws_json(&["list-services", "--cluster", "tags-dev", "--page-size", "1"]);
    let want: Vec<String> = ["b-svc", "c-svc", "quiet"]
        .iter()
        .map(|n| format!("arn:aws:ecs:us-east-1:000000000000:service/tags-dev/{n}"))
        .collect();
    assert_eq!(l["serviceArns"], json!(want));

    // A service scaled above 0 is deleted only with --force.
    api.aws_json(&[
        "update-service",
        "--cluster",
        "tags-dev",
        "--service",
        "b-svc",
        "--desired-count",
        "1",
    ]);
    let e = api.aws_err(&[
        "delete-service",
        "--cluster",
        "tags-dev",
        "--service",
        "b-svc",
    ]);
    assert!(
        e.contains("(InvalidParameterException) when calling the DeleteService operation: The service cannot be stopped while it is scaled above 0."),
        "{e}"
    );
    let d = api.aws_json(&[
        "delete-service",
        "--cluster",
        "tags-dev",
        "--service",
        "b-svc",
        "--force",
    ]);
    assert_eq!(d["service"]["status"], "DRAINING");
    let e = api.aws_err(&[
        "update-service",
        "--cluster",
        "tags-dev",
        "--service",
        "b-svc",
        "--desired-count",
        "1",
    ]);
    assert!(
        e.contains("(ServiceNotActiveException)") || e.contains("(ServiceNotFoundException)"),
        "{e}"
    );
    api.wait_for(60, "b-svc to be INACTIVE", || {
        (api.service("tags-dev", "b-svc")["status"] == "INACTIVE").then_some(())
    });
}

#[test]
fn a_service_takes_capacity_providers_managed_tags_and_placement_and_says_what_it_does_not_apply() {
    let api = Api::start();
    let f = api.file("cp.json", &svc_def("cp", "cp"));
    api.aws_json(&["register-task-definition", "--cli-input-json", &f]);
    api.aws_json(&["create-cluster", "--cluster-name", "default"]);
    api.aws_json(&[
        "put-cluster-capacity-providers",
        "--cluster",
        "default",
        "--capacity-providers",
        "FARGATE",
        "FARGATE_SPOT",
        "--default-capacity-provider-strategy",
        "capacityProvider=FARGATE_SPOT,weight=1",
    ]);
    let lb = "targetGroupArn=arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/web/\
              0123456789abcdef,containerName=app,containerPort=8080";
    // Neither a launch type nor a strategy: the cluster's default strategy applies.
    let args = [
        "create-service",
        "--service-name",
        "web",
        "--task-definition",
        "cp",
        "--desired-count",
        "1",
        "--enable-ecs-managed-tags",
        "--placement-strategy",
        "type=spread,field=attribute:ecs.availability-zone",
        "--load-balancers",
        lb,
        "--client-token",
        "create-web-1",
    ];
    let created = api.aws_json(&args);
    let s = &created["service"];
    assert_eq!(
        s["capacityProviderStrategy"],
        json!([{"capacityProvider": "FARGATE_SPOT", "weight": 1, "base": 0}]),
        "{s:#}"
    );
    assert!(s.get("launchType").is_none(), "{s:#}");
    assert_eq!(s["enableECSManagedTags"], true);
    assert_eq!(s["loadBalancers"][0]["containerPort"], 8080, "{s:#}");
    assert_eq!(s["placementStrategy"][0]["type"], "spread");
    assert_eq!(s["availabilityZoneRebalancing"], "ENABLED");
    assert_eq!(s["resourceManagementType"], "CUSTOMER");
    let said = |s: &Value, member: &str| {
        events(s)
            .iter()
            .any(|e| e.starts_with(&format!("(service web) {member}: not applied here: ")))
    };
    // loadBalancers are applied by serve's scheduler (tests/elb.rs), not said "not applied".
    assert!(!said(s, "loadBalancers"), "{:#?}", events(s));
    // A retry with the same clientToken is the same service; without it, a second create
    // of the name is ECS's "not idempotent".
    let again = api.aws_json(&args);
    assert_eq!(again["service"]["serviceArn"], s["serviceArn"]);
    let e = api.aws_err(&args[..args.len() - 2]);
    assert!(e.contains("not idempotent"), "{e}");

    // The task: placed by the strategy, with ECS's managed tags and the placement recorded.
    let t = &running_tasks(&api, "web", 1)[0];
    assert_eq!(t["capacityProviderName"], "FARGATE_SPOT", "{t:#}");
    assert_eq!(t["launchType"], "FARGATE");
    let arn = t["taskArn"].as_str().unwrap();
    let tagged = api.aws_json(&["describe-tasks", "--tasks", arn, "--include", "TAGS"]);
    let tags = &tagged["tasks"][0]["tags"];
    for (k, v) in [
        ("aws:ecs:clusterName", "default"),
        ("aws:ecs:serviceName", "web"),
    ] {
        assert!(
            tags.as_array()
                .unwrap()
                .contains(&json!({"key": k, "value": v})),
            "{tags:#}"
        );
    }

    // DescribeClusters gives the statistics only when asked, as ECS does.
    let plain = &api.aws_json(&["describe-clusters"])["clusters"][0];
    assert_eq!(plain["statistics"], json!([]), "{plain:#}");
    assert_eq!(plain["settings"], json!([]), "{plain:#}");
    let full =
        &api.aws_json(&["describe-clusters", "--include", "STATISTICS", "SETTINGS"])["clusters"][0];
    let stat = |n: &str| {
        full["statistics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == n)
            .map(|p| p["value"].clone())
    };
    assert_eq!(
        stat("runningFargateTasksCount"),
        Some(json!("1")),
        "{full:#}"
    );
    assert_eq!(stat("activeFargateServiceCount"), Some(json!("1")));
    assert_eq!(stat("activeEC2ServiceCount"), Some(json!("0")));
    assert_eq!(full["settings"][0]["name"], "containerInsights");

    // Every service here is the customer's own.
    let list = |t: &str| {
        api.aws_json(&["list-services", "--resource-management-type", t])["serviceArns"].clone()
    };
    assert_eq!(list("ECS"), json!([]));
    assert_eq!(list("CUSTOMER"), json!([s["serviceArn"]]));

    // Back to the launch type (an empty strategy), and the load balancer removed: ECS
    // starts a new deployment for the load balancers, not for the strategy.
    let u = &api.aws_json(&[
        "update-service",
        "--service",
        "web",
        "--capacity-provider-strategy",
        "[]",
        "--load-balancers",
        "[]",
    ])["service"];
    assert_eq!(u["launchType"], "FARGATE", "{u:#}");
    assert!(u.get("capacityProviderStrategy").is_none(), "{u:#}");
    assert_eq!(u["loadBalancers"], json!([]));
    assert_eq!(u["deployments"].as_array().unwrap().len(), 2, "{u:#}");

    // What only CodeDeploy or task sets could do is refused, naming the member.
    let e = api.aws_err(&[
        "create-service",
        "--service-name",
        "ext",
        "--task-definition",
        "cp",
        "--desired-count",
        "0",
        "--deployment-controller",
        "type=EXTERNAL",
    ]);
    assert!(
        e.contains("InvalidParameterException") && e.contains("EXTERNAL"),
        "{e}"
    );
    api.aws_json(&["update-service", "--service", "web", "--desired-count", "0"]);
    running_tasks(&api, "web", 0);
}
