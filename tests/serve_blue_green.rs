//! Root integration tests of ECS's built-in blue/green deployments (`deploymentConfiguration
//! .strategy` BLUE_GREEN) behind serve's application load balancer, with the real AWS CLI
//! and real traffic: the green tasks start beside the blue ones in the alternate target
//! group, the test listener rule answers from green before the production rule flips,
//! production flips at once with no request lost, the blue tasks stop after the bake time
//! and the next deployment swaps the target groups' roles; a green revision whose
//! container exits trips the circuit breaker and rolls back with production still on
//! blue, and a deployment alarm in the bake time shifts production back to blue; a CANARY
//! deployment sends part of production to green until
//! StopServiceDeployment rolls it back, and a LINEAR one shifts it in steps; the settings
//! are checked as ECS checks them.

use crate::common;

use common::api::Api;
use common::elb::{Client, create_alb, elbv2, http_target_group, listener_with_rule};
use common::image::{Compression, busybox_layer};
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// serve with a 5 s metric period: a bake time of 1 minute lasts 5 s.
fn serve() -> Api {
    Api::start_env(
        busybox_layer(Compression::Gzip, "serve"),
        &[],
        &[("MINIFARGATE_METRICS_PERIOD", "5")],
    )
}

/// A revision answering `GET /` on 8080 with `version` and an id of the task's own (or
/// exiting at once: "exit").
fn register(api: &Api, family: &str, version: &str) {
    let command = if version == "exit" {
        r#"["sh","-c","exit 1"]"#.to_string()
    } else {
        format!(
            r#"["sh","-c","mkdir -p /www && echo {version} $(cat /proc/sys/kernel/random/uuid) > /www/index.html && trap 'exit 0' TERM; httpd -f -p 8080 -h /www & wait"]"#
        )
    };
    let def = format!(
        r#"{{"family":"{family}","networkMode":"awsvpc","cpu":"256","memory":"512",
  "containerDefinitions":[{{"name":"web","image":"public.ecr.aws/docker/library/busybox:1.36",
    "essential":true,"portMappings":[{{"containerPort":8080}}],"command":{command}}}]}}"#
    );
    let f = api.file(&format!("{family}-{version}.json"), &def);
    api.aws_json(&["register-task-definition", "--cli-input-json", &f]);
}

fn forward(groups: &[(&str, i64)]) -> Value {
    json!([{"Type": "forward", "ForwardConfig": {"TargetGroups": groups
        .iter()
        .map(|(g, w)| json!({"TargetGroupArn": g, "Weight": w}))
        .collect::<Vec<_>>()}}])
}

/// The rule's forward weights by target group.
fn weights(api: &Api, rule: &str) -> Vec<(String, i64)> {
    let r = elbv2(api, &["describe-rules", "--rule-arns", rule]);
    let a = &r["Rules"][0]["Actions"][0];
    match a["ForwardConfig"]["TargetGroups"].as_array() {
        Some(l) => l
            .iter()
            .map(|g| {
                (
                    g["TargetGroupArn"].as_str().unwrap().to_string(),
                    g["Weight"].as_i64().unwrap_or(1),
                )
            })
            .collect(),
        None => vec![(a["TargetGroupArn"].as_str().unwrap().to_string(), 1)],
    }
}

/// The registered targets of `tg` and their states.
fn targets(api: &Api, tg: &str) -> Vec<String> {
    let h = elbv2(api, &["describe-target-health", "--target-group-arn", tg]);
    h["TargetHealthDescriptions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["TargetHealth"]["State"] != "draining")
        .map(|t| t["TargetHealth"]["State"].as_str().unwrap().to_string())
        .collect()
}

fn healthy(api: &Api, tg: &str, n: usize) {
    api.wait_for(120, &format!("{n} healthy targets in {tg}"), || {
        let t = targets(api, tg);
        (t.len() == n && t.iter().all(|s| s == "healthy")).then_some(())
    });
}

fn deployments_of(api: &Api, service: &str) -> Vec<Value> {
    api.service("default", service)["deployments"]
        .as_array()
        .unwrap()
        .clone()
}

/// The service deployment of deployment `id` (DescribeServiceDeployments).
fn service_deployment(api: &Api, service: &str, id: &str) -> Value {
    describe_sd(api, &sd_arn(api, service, id))
}

fn describe_sd(api: &Api, arn: &str) -> Value {
    api.aws_json(&[
        "describe-service-deployments",
        "--service-deployment-arns",
        arn,
    ])["serviceDeployments"][0]
        .clone()
}

/// The ARN of deployment `id`'s service deployment (ListServiceDeployments).
fn sd_arn(api: &Api, service: &str, id: &str) -> String {
    let digits = id.strip_prefix("ecs-svc/").unwrap();
    let l = api.aws_json(&["list-service-deployments", "--service", service]);
    l["serviceDeployments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| {
            s["targetServiceRevisionArn"]
                .as_str()
                .unwrap()
                .ends_with(&format!("/{digits}"))
        })
        .map(|s| s["serviceDeploymentArn"].as_str().unwrap().to_string())
        .unwrap()
}

fn events(api: &Api, service: &str) -> Vec<String> {
    api.service("default", service)["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_string())
        .collect()
}

/// The version of an answer's body (`v1 <task id>`).
/// CreateService of `name` (its revision 1) with `count` tasks behind `lbs`: the
/// answer and, once it completed, its first deployment's id.
fn create_service(api: &Api, name: &str, count: u32, config: &str, lbs: &Value) -> (Value, String) {
    let created = api.aws_json(&[
        "create-service",
        "--service-name",
        name,
        "--task-definition",
        &format!("{name}:1"),
        "--desired-count",
        &count.to_string(),
        "--deployment-configuration",
        config,
        "--load-balancers",
        &lbs.to_string(),
    ]);
    let first = api.wait_for(240, "the first deployment completed", || {
        let d = deployments_of(api, name);
        (d.len() == 1 && d[0]["rolloutState"] == "COMPLETED")
            .then(|| d[0]["id"].as_str().unwrap().to_string())
    });
    (created, first)
}

/// UpdateService of `name` to its revision 2 (with `more` arguments): the new
/// deployment's id.
fn update_to_v2(api: &Api, name: &str, more: &[&str]) -> String {
    let revision = format!("{name}:2");
    let mut args = vec![
        "update-service",
        "--service",
        name,
        "--task-definition",
        &revision,
    ];
    args.extend(more);
    let updated = api.aws_json(&args);
    updated["service"]["deployments"][0]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn version(body: &str) -> &str {
    body.split_whitespace().next().unwrap_or("")
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn a_blue_green_deployment_tests_green_then_flips_production_with_no_request_lost() {
    let api = serve();
    let alb = create_alb(&api, "bg");
    let blue = http_target_group(&api, "bg-blue", 2);
    let green = http_target_group(&api, "bg-green", 2);
    let (prod_port, prod_rule) = listener_with_rule(&api, &alb.arn, &forward(&[(&blue, 1)]));
    let (test_port, test_rule) = listener_with_rule(&api, &alb.arn, &forward(&[(&green, 1)]));
    register(&api, "bg", "v1");
    register(&api, "bg", "v2");
    let lbs = json!([{"targetGroupArn": blue, "containerName": "web", "containerPort": 8080,
        "advancedConfiguration": {"alternateTargetGroupArn": green,
            "productionListenerRule": prod_rule, "testListenerRule": test_rule,
            "roleArn": "arn:aws:iam::000000000000:role/ecsInfrastructureRole"}}]);
    let (created, first) = create_service(
        &api,
        "bg",
        2,
        r#"{"strategy":"BLUE_GREEN","bakeTimeInMinutes":1}"#,
        &lbs,
    );
    let c = &created["service"]["deploymentConfiguration"];
    assert_eq!(c["strategy"], "BLUE_GREEN", "{c:#}");
    assert_eq!(c["bakeTimeInMinutes"], 1, "{c:#}");
    assert_eq!(
        created["service"]["loadBalancers"][0]["advancedConfiguration"]["testListenerRule"],
        test_rule.as_str()
    );
    healthy(&api, &blue, 2);
    let sd = service_deployment(&api, "bg", &first);
    assert_eq!(sd["lifecycleStage"], "CLEAN_UP", "{sd:#}");
    assert_eq!(sd["status"], "SUCCESSFUL", "{sd:#}");

    // A client on both listeners all through the deployment.
    let client = Client::start(&api, &alb.ip, &[prod_port, test_port]);
    let second = update_to_v2(&api, "bg", &[]);
    // The stages as DescribeServiceDeployments shows them, polled meanwhile.
    // (One AWS CLI call a poll, so that the 5 s bake time is seen.)
    let second_sd = sd_arn(&api, "bg", &second);
    let mut stages: Vec<String> = Vec::new();
    api.wait_for(180, "the blue/green deployment completed", || {
        let sd = describe_sd(&api, &second_sd);
        let stage = sd["lifecycleStage"].as_str().unwrap_or("").to_string();
        if stages.last() != Some(&stage) {
            stages.push(stage.clone());
        }
        (sd["status"] == "SUCCESSFUL").then_some(())
    });
    let done_at = now();
    let answers = client.finish();
    eprintln!("stages seen: {stages:?}");
    let order = [
        "PRE_SCALE_UP",
        "SCALE_UP",
        "POST_SCALE_UP",
        "TEST_TRAFFIC_SHIFT",
        "POST_TEST_TRAFFIC_SHIFT",
        "PRODUCTION_TRAFFIC_SHIFT",
        "POST_PRODUCTION_TRAFFIC_SHIFT",
        "BAKE_TIME",
        "CLEAN_UP",
    ];
    let idx: Vec<usize> = stages
        .iter()
        .map(|s| {
            order
                .iter()
                .position(|o| o == s)
                .unwrap_or_else(|| panic!("{s}"))
        })
        .collect();
    assert!(idx.windows(2).all(|w| w[0] < w[1]), "{stages:?}");
    assert!(stages.contains(&"BAKE_TIME".to_string()), "{stages:?}");
    assert_eq!(stages.last().unwrap(), "CLEAN_UP");
    // Production: every request answered, by blue until the flip and by green after it.
    let prod: Vec<&(f64, u16, String, String)> =
        answers.iter().filter(|a| a.1 == prod_port).collect();
    let lost: Vec<_> = prod.iter().filter(|a| a.2 != "200").collect();
    let flip = prod
        .iter()
        .position(|a| version(&a.3) == "v2")
        .expect("production flipped");
    eprintln!(
        "production: {} requests, {} lost; flip after {} answers from blue",
        prod.len(),
        lost.len(),
        flip
    );
    assert!(lost.is_empty(), "{lost:?}");
    assert!(flip > 0 && prod[..flip].iter().all(|a| version(&a.3) == "v1"));
    assert!(
        prod[flip..].iter().all(|a| version(&a.3) == "v2"),
        "all at once"
    );
    let flip_at = prod[flip].0;
    // Test traffic: green answered it before production flipped.
    let test: Vec<&(f64, u16, String, String)> =
        answers.iter().filter(|a| a.1 == test_port).collect();
    let test_green = test
        .iter()
        .find(|a| a.2 == "200" && version(&a.3) == "v2")
        .expect("the test listener answered from green");
    eprintln!(
        "the test listener answered from green {:.1} s before production",
        flip_at - test_green.0
    );
    assert!(test_green.0 < flip_at);
    // Green ran at the full count beside blue: both its tasks answered test traffic
    // before production flipped (the bodies name the task).
    let green_before_flip: BTreeSet<&str> = test
        .iter()
        .filter(|a| a.0 < flip_at && version(&a.3) == "v2")
        .map(|a| a.3.as_str())
        .collect();
    assert_eq!(green_before_flip.len(), 2, "{green_before_flip:?}");
    // Blue stopped after the bake time (1 minute at a 5 s period: 5 s) and its
    // deregistration delay.
    let first_tasks = api.aws_json(&[
        "list-tasks",
        "--started-by",
        &first,
        "--desired-status",
        "STOPPED",
    ]);
    let arns: Vec<&str> = first_tasks["taskArns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(arns.len(), 2, "{first_tasks}");
    let mut args = vec!["describe-tasks", "--tasks"];
    args.extend(arns.iter());
    let tasks = api.aws_json(&args);
    for t in tasks["tasks"].as_array().unwrap() {
        let stopping = t["stoppingAt"].as_f64().unwrap();
        eprintln!(
            "a blue task stopping {:.1} s after the flip",
            stopping - flip_at
        );
        assert!(stopping - flip_at >= 4.0, "{t:#}");
        assert!(stopping <= done_at);
    }
    let sd = service_deployment(&api, "bg", &second);
    assert_eq!(sd["deploymentConfiguration"]["strategy"], "BLUE_GREEN");
    let rev = api.aws_json(&[
        "describe-service-revisions",
        "--service-revision-arns",
        sd["targetServiceRevision"]["arn"].as_str().unwrap(),
    ]);
    assert_eq!(
        rev["serviceRevisions"][0]["resolvedConfiguration"]["loadBalancers"],
        json!([{"targetGroupArn": green, "productionListenerRule": prod_rule}]),
        "{rev:#}"
    );
    assert_eq!(weights(&api, &prod_rule), [(green.clone(), 1)]);
    assert_eq!(weights(&api, &test_rule), [(green.clone(), 1)]);
    assert_eq!(targets(&api, &green).len(), 2);
    let ev = events(&api, "bg");
    assert!(
        ev.contains(&format!(
            "(service bg) shifted production traffic to (target-group {green})."
        )),
        "{ev:#?}"
    );

    // The next deployment swaps the roles: green is blue now, the first group green.
    api.aws_json(&[
        "update-service",
        "--service",
        "bg",
        "--task-definition",
        "bg:1",
    ]);
    api.wait_for(180, "the third deployment completed", || {
        let d = deployments_of(&api, "bg");
        (d.len() == 1
            && d[0]["rolloutState"] == "COMPLETED"
            && d[0]["taskDefinition"].as_str().unwrap().ends_with(":1"))
        .then_some(())
    });
    assert_eq!(weights(&api, &prod_rule), [(blue.clone(), 1)]);
    assert_eq!(weights(&api, &test_rule), [(blue.clone(), 1)]);
    healthy(&api, &blue, 2);
    let got: BTreeSet<String> = (0..10)
        .map(|_| {
            let out = std::process::Command::new("curl")
                .args(["-s", "--noproxy", "*", "-m", "5"])
                .arg(format!("http://{}:{prod_port}/", alb.ip))
                .output()
                .unwrap();
            version(String::from_utf8_lossy(&out.stdout).trim()).to_string()
        })
        .collect();
    assert_eq!(got, BTreeSet::from(["v1".to_string()]));
    api.aws_json(&["delete-service", "--service", "bg", "--force"]);
    api.wait_for(60, "bg INACTIVE", || {
        (api.service("default", "bg")["status"] == "INACTIVE").then_some(())
    });
}

#[test]
fn a_failing_green_rolls_back_with_production_still_on_blue() {
    let api = serve();
    let alb = create_alb(&api, "bgfail");
    let blue = http_target_group(&api, "bgfail-blue", 1);
    let green = http_target_group(&api, "bgfail-green", 1);
    // No test rule: the production rule forwards to both groups, blue weighted 100.
    let (port, rule) = listener_with_rule(&api, &alb.arn, &forward(&[(&blue, 100), (&green, 0)]));
    register(&api, "bgfail", "v1");
    register(&api, "bgfail", "exit");
    let lbs = json!([{"targetGroupArn": blue, "containerName": "web", "containerPort": 8080,
        "advancedConfiguration": {"alternateTargetGroupArn": green,
            "productionListenerRule": rule,
            "roleArn": "arn:aws:iam::000000000000:role/ecsInfrastructureRole"}}]);
    let (_, good) = create_service(
        &api,
        "bgfail",
        1,
        r#"{"strategy":"BLUE_GREEN","bakeTimeInMinutes":1,"deploymentCircuitBreaker":{"enable":true,"rollback":true}}"#,
        &lbs,
    );
    healthy(&api, &blue, 1);
    let client = Client::start(&api, &alb.ip, &[port]);
    let bad = update_to_v2(&api, "bgfail", &[]);
    api.wait_for(180, "the rollback to succeed", || {
        let sd = service_deployment(&api, "bgfail", &bad);
        (sd["status"] == "ROLLBACK_SUCCESSFUL").then_some(())
    });
    let answers = client.finish();
    let lost: Vec<_> = answers.iter().filter(|a| a.2 != "200").collect();
    let bodies: BTreeSet<&str> = answers.iter().map(|a| version(&a.3)).collect();
    eprintln!(
        "production through the failed deployment: {} requests, {} lost",
        answers.len(),
        lost.len()
    );
    assert!(lost.is_empty(), "{lost:?}");
    assert_eq!(bodies, BTreeSet::from(["v1"]), "production stayed on blue");
    let sd = service_deployment(&api, "bgfail", &bad);
    assert_eq!(
        sd["statusReason"],
        "Service deployment rolled back because the circuit breaker threshold was exceeded."
    );
    assert_eq!(
        sd["deploymentCircuitBreaker"]["status"], "TRIGGERED",
        "{sd:#}"
    );
    assert!(
        sd["rollback"]["serviceRevisionArn"]
            .as_str()
            .unwrap()
            .ends_with(good.strip_prefix("ecs-svc/").unwrap()),
        "{sd:#}"
    );
    let ev = events(&api, "bgfail");
    assert!(
        ev.contains(&format!(
            "(service bgfail) rolling back to deployment {good}."
        )),
        "{ev:#?}"
    );
    // Blue is PRIMARY again with its task, the rule never left it, green is empty.
    let d = deployments_of(&api, "bgfail");
    assert_eq!(d.len(), 1, "{d:#?}");
    assert_eq!(d[0]["id"], good.as_str());
    assert_eq!(d[0]["status"], "PRIMARY");
    assert_eq!(
        weights(&api, &rule),
        [(blue.clone(), 100), (green.clone(), 0)]
    );
    assert!(targets(&api, &green).is_empty());
    assert_eq!(targets(&api, &blue), ["healthy"]);
    let s = api.service("default", "bgfail");
    assert!(s["taskDefinition"].as_str().unwrap().ends_with(":1"));
    api.aws_json(&["delete-service", "--service", "bgfail", "--force"]);
    api.wait_for(60, "bgfail INACTIVE", || {
        (api.service("default", "bgfail")["status"] == "INACTIVE").then_some(())
    });
}

#[test]
fn a_deployment_alarm_during_the_bake_time_shifts_production_back_to_blue() {
    let api = serve();
    // An alarm on a metric nobody puts: INSUFFICIENT_DATA until set otherwise.
    api.aws_json_in(
        "cloudwatch",
        &[
            "put-metric-alarm",
            "--alarm-name",
            "bgalarm-errors",
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
    let alb = create_alb(&api, "bgalarm");
    let blue = http_target_group(&api, "bgalarm-blue", 1);
    let green = http_target_group(&api, "bgalarm-green", 1);
    let (port, rule) = listener_with_rule(&api, &alb.arn, &forward(&[(&blue, 100), (&green, 0)]));
    register(&api, "bgalarm", "v1");
    register(&api, "bgalarm", "v2");
    let lbs = json!([{"targetGroupArn": blue, "containerName": "web", "containerPort": 8080,
        "advancedConfiguration": {"alternateTargetGroupArn": green,
            "productionListenerRule": rule}}]);
    let (_, good) = create_service(
        &api,
        "bgalarm",
        1,
        r#"{"strategy":"BLUE_GREEN","bakeTimeInMinutes":0,"alarms":{"alarmNames":["bgalarm-errors"],"enable":true,"rollback":true}}"#,
        &lbs,
    );
    healthy(&api, &blue, 1);
    let client = Client::start(&api, &alb.ip, &[port]);
    // A bake time of 20 minutes: 100 s at a 5 s period, time to set the alarm in it.
    let bad = update_to_v2(
        &api,
        "bgalarm",
        &["--deployment-configuration", r#"{"bakeTimeInMinutes":20}"#],
    );
    let arn = sd_arn(&api, "bgalarm", &bad);
    api.wait_for(120, "the bake time, production on green", || {
        (describe_sd(&api, &arn)["lifecycleStage"] == "BAKE_TIME").then_some(())
    });
    assert_eq!(
        weights(&api, &rule),
        [(blue.clone(), 0), (green.clone(), 100)]
    );
    api.aws_json_in(
        "cloudwatch",
        &[
            "set-alarm-state",
            "--alarm-name",
            "bgalarm-errors",
            "--state-value",
            "ALARM",
            "--state-reason",
            "errors after the flip",
        ],
    );
    api.wait_for(120, "the rollback to succeed", || {
        (describe_sd(&api, &arn)["status"] == "ROLLBACK_SUCCESSFUL").then_some(())
    });
    let answers = client.finish();
    let lost: Vec<_> = answers.iter().filter(|a| a.2 != "200").collect();
    // Blue, then green after the flip, then blue again after the rollback.
    let mut runs: Vec<&str> = Vec::new();
    for a in &answers {
        if runs.last() != Some(&version(&a.3)) {
            runs.push(version(&a.3));
        }
    }
    eprintln!(
        "through the flip and the alarm's rollback: {} requests, {} lost, {runs:?}",
        answers.len(),
        lost.len()
    );
    assert!(lost.is_empty(), "{lost:?}");
    assert_eq!(runs, ["v1", "v2", "v1"]);
    let sd = describe_sd(&api, &arn);
    assert_eq!(sd["alarms"]["status"], "TRIGGERED", "{sd:#}");
    assert_eq!(
        weights(&api, &rule),
        [(blue.clone(), 100), (green.clone(), 0)]
    );
    let d = deployments_of(&api, "bgalarm");
    assert_eq!((d.len(), d[0]["id"].as_str()), (1, Some(good.as_str())));
    assert!(targets(&api, &green).is_empty());
    let ev = events(&api, "bgalarm");
    assert!(
        ev.contains(&format!(
            "(service bgalarm) (deployment {bad}) deployment failed: alarm detected."
        )),
        "{ev:#?}"
    );
    api.aws_json(&["delete-service", "--service", "bgalarm", "--force"]);
    api.wait_for(60, "bgalarm INACTIVE", || {
        (api.service("default", "bgalarm")["status"] == "INACTIVE").then_some(())
    });
}

#[test]
fn a_canary_sends_part_of_production_to_green_a_stop_rolls_it_back_and_linear_steps_through() {
    let api = serve();
    let alb = create_alb(&api, "canary");
    let blue = http_target_group(&api, "canary-blue", 1);
    let green = http_target_group(&api, "canary-green", 1);
    let (port, rule) = listener_with_rule(&api, &alb.arn, &forward(&[(&blue, 100), (&green, 0)]));
    register(&api, "canary", "v1");
    register(&api, "canary", "v2");
    let lbs = json!([{"targetGroupArn": blue, "containerName": "web", "containerPort": 8080,
        "advancedConfiguration": {"alternateTargetGroupArn": green,
            "productionListenerRule": rule}}]);
    // 30 % to green for 20 minutes (100 s at a 5 s period): long enough to stop it.
    let (_, good) = create_service(
        &api,
        "canary",
        1,
        r#"{"strategy":"CANARY","bakeTimeInMinutes":0,"canaryConfiguration":{"canaryPercent":30.0,"canaryBakeTimeInMinutes":20}}"#,
        &lbs,
    );
    healthy(&api, &blue, 1);
    let client = Client::start(&api, &alb.ip, &[port]);
    let canary = update_to_v2(&api, "canary", &[]);
    api.wait_for(120, "30 % of production on green", || {
        (weights(&api, &rule) == [(blue.clone(), 700), (green.clone(), 300)]).then_some(())
    });
    let sd = service_deployment(&api, "canary", &canary);
    assert_eq!(sd["lifecycleStage"], "PRODUCTION_TRAFFIC_SHIFT", "{sd:#}");
    assert_eq!(
        sd["deploymentConfiguration"]["canaryConfiguration"],
        json!({"canaryPercent": 30.0, "canaryBakeTimeInMinutes": 20})
    );
    // Both revisions answer production meanwhile.
    std::thread::sleep(std::time::Duration::from_secs(3));
    api.aws_json(&[
        "stop-service-deployment",
        "--service-deployment-arn",
        sd["serviceDeploymentArn"].as_str().unwrap(),
    ]);
    api.wait_for(120, "the canary rolled back", || {
        let sd = service_deployment(&api, "canary", &canary);
        (sd["status"] == "ROLLBACK_SUCCESSFUL").then_some(())
    });
    let answers = client.finish();
    let lost: Vec<_> = answers.iter().filter(|a| a.2 != "200").collect();
    let v2 = answers.iter().filter(|a| version(&a.3) == "v2").count();
    let last_v2 = answers
        .iter()
        .rposition(|a| version(&a.3) == "v2")
        .unwrap_or(0);
    eprintln!(
        "through the canary and its rollback: {} requests, {} lost, {} answered by green ({:.0} %)",
        answers.len(),
        lost.len(),
        v2,
        100.0 * v2 as f64 / answers.len() as f64
    );
    assert!(lost.is_empty(), "{lost:?}");
    assert!(v2 > 0, "green answered part of production");
    assert!(
        answers[last_v2 + 1..].iter().all(|a| version(&a.3) == "v1"),
        "blue alone after the rollback"
    );
    assert_eq!(
        weights(&api, &rule),
        [(blue.clone(), 100), (green.clone(), 0)]
    );
    let d = deployments_of(&api, "canary");
    assert_eq!((d.len(), d[0]["id"].as_str()), (1, Some(good.as_str())));
    assert!(targets(&api, &green).is_empty());

    // LINEAR, 50 % a step every minute (5 s here): 50 %, then all, then done.
    api.aws_json(&[
        "update-service",
        "--service",
        "canary",
        "--task-definition",
        "canary:2",
        "--deployment-configuration",
        r#"{"strategy":"LINEAR","linearConfiguration":{"stepPercent":50.0,"stepBakeTimeInMinutes":1}}"#,
    ]);
    api.wait_for(180, "the linear deployment completed", || {
        let d = deployments_of(&api, "canary");
        (d.len() == 1
            && d[0]["rolloutState"] == "COMPLETED"
            && d[0]["taskDefinition"].as_str().unwrap().ends_with(":2"))
        .then_some(())
    });
    let ev = events(&api, "canary");
    for said in [
        format!("(service canary) shifted 50.0% of production traffic to (target-group {green})."),
        format!("(service canary) shifted production traffic to (target-group {green})."),
    ] {
        assert!(ev.contains(&said), "{said}: {ev:#?}");
    }
    assert_eq!(
        weights(&api, &rule),
        [(blue.clone(), 0), (green.clone(), 100)]
    );
    api.aws_json(&["delete-service", "--service", "canary", "--force"]);
    api.wait_for(60, "canary INACTIVE", || {
        (api.service("default", "canary")["status"] == "INACTIVE").then_some(())
    });
}

#[test]
fn blue_green_settings_are_checked_as_ecs_checks_them() {
    let api = serve();
    let alb = create_alb(&api, "bgcheck");
    let blue = http_target_group(&api, "bgcheck-blue", 1);
    let green = http_target_group(&api, "bgcheck-green", 1);
    let other = http_target_group(&api, "bgcheck-other", 1);
    let (_, both) = listener_with_rule(&api, &alb.arn, &forward(&[(&blue, 100), (&green, 0)]));
    let (_, only_blue) = listener_with_rule(&api, &alb.arn, &forward(&[(&blue, 1)]));
    let (_, to_other) = listener_with_rule(&api, &alb.arn, &forward(&[(&other, 1)]));
    register(&api, "bgcheck", "v1");
    let create = |config: &str, advanced: Value| {
        let lbs = json!([{"targetGroupArn": blue, "containerName": "web",
            "containerPort": 8080, "advancedConfiguration": advanced}]);
        api.aws(&[
            "create-service",
            "--service-name",
            "bgcheck",
            "--task-definition",
            "bgcheck:1",
            "--desired-count",
            "0",
            "--deployment-configuration",
            config,
            "--load-balancers",
            &lbs.to_string(),
        ])
    };
    let bg = r#"{"strategy":"BLUE_GREEN","bakeTimeInMinutes":0}"#;
    let refused = |config: &str, advanced: Value, says: &str| {
        let out = create(config, advanced);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "accepted: {config} {says}");
        assert!(
            err.contains("InvalidParameterException") && err.contains(says),
            "{says}: {err}"
        );
    };
    let ok = json!({"alternateTargetGroupArn": green, "productionListenerRule": both});
    refused(
        r#"{"strategy":"BLUE_GREEN"}"#,
        ok.clone(),
        "bakeTimeInMinutes: required with the BLUE_GREEN strategy",
    );
    refused(
        bg,
        json!({"productionListenerRule": both}),
        "alternateTargetGroupArn: required",
    );
    refused(
        bg,
        json!({"alternateTargetGroupArn": green}),
        "productionListenerRule: required",
    );
    refused(
        bg,
        json!({"alternateTargetGroupArn": green, "productionListenerRule": only_blue}),
        &format!("does not forward to target group {green}"),
    );
    refused(
        bg,
        json!({"alternateTargetGroupArn": green, "productionListenerRule": only_blue,
            "testListenerRule": to_other}),
        &format!("forwards to neither {blue} nor {green}"),
    );
    refused(
        bg,
        json!({"alternateTargetGroupArn": green,
            "productionListenerRule": format!("{both}0")}),
        "the listener rule does not exist",
    );
    refused(
        bg,
        json!({"alternateTargetGroupArn": blue, "productionListenerRule": both}),
        "must be another target group",
    );
    refused(
        r#"{"strategy":"LINEAR","linearConfiguration":{"stepPercent":2.0}}"#,
        ok.clone(),
        "stepPercent 2: must be a multiple of 0.1 from 3.0 to 100.0",
    );
    refused(
        r#"{"strategy":"CANARY","canaryConfiguration":{"canaryPercent":5.0,"canaryBakeTimeInMinutes":1441}}"#,
        ok.clone(),
        "canaryBakeTimeInMinutes 1441: must be 0 to 1440 minutes",
    );
    refused(
        r#"{"strategy":"BLUE_GREEN","bakeTimeInMinutes":0,"lifecycleHooks":[{"lifecycleStages":["POST_SCALE_UP"]}]}"#,
        ok.clone(),
        "hookTargetArn: required",
    );
    // Accepted: the hooks recorded and said not applied (no Lambda here).
    let out = create(
        r#"{"strategy":"BLUE_GREEN","bakeTimeInMinutes":0,"lifecycleHooks":[{"hookTargetArn":"arn:aws:lambda:us-east-1:000000000000:function:check","roleArn":"arn:aws:iam::000000000000:role/hooks","lifecycleStages":["POST_TEST_TRAFFIC_SHIFT"]}]}"#,
        ok.clone(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    let c = &s["service"]["deploymentConfiguration"];
    assert_eq!(
        c["lifecycleHooks"][0]["lifecycleStages"],
        json!(["POST_TEST_TRAFFIC_SHIFT"])
    );
    let ev = events(&api, "bgcheck");
    assert!(
        ev.iter().any(|e| e.starts_with(
            "(service bgcheck) deploymentConfiguration.lifecycleHooks: not applied here"
        )),
        "{ev:#?}"
    );
    api.aws_json(&["delete-service", "--service", "bgcheck", "--force"]);
}
