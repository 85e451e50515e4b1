//! Root integration tests of Application Auto Scaling on `serve`'s listener, driven by
//! the real AWS CLI (`aws application-autoscaling …`, AWS JSON 1.1) and boto3: scalable
//! targets and policies with Application Auto Scaling's exceptions, target tracking's
//! own CloudWatch alarms (made and deleted with the policy), a restart keeping them, and
//! a service that scales out when its tasks burn their CPU and back in when they idle,
//! seen in describe-services and describe-scaling-activities. The box's metric period is
//! 5 s, so AWS's minutes pass in seconds (cooldowns scale with it: 300 s is 25 s).

use crate::common;

use common::api::Api;
use serde_json::Value;

fn aas(api: &Api, args: &[&str]) -> Value {
    let out = api.aws_in("application-autoscaling", args);
    assert!(
        out.status.success(),
        "aws application-autoscaling {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    if out.stdout.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(&out.stdout).unwrap()
}

fn aas_err(api: &Api, args: &[&str]) -> String {
    let out = api.aws_in("application-autoscaling", args);
    assert!(
        !out.status.success(),
        "aws application-autoscaling {args:?} should fail"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn alarm_names(api: &Api, prefix: &str) -> Vec<String> {
    let out = api.aws_in(
        "cloudwatch",
        &["describe-alarms", "--alarm-name-prefix", prefix],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut names: Vec<String> = v["MetricAlarms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["AlarmName"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

fn service_def(api: &Api, family: &str, script: &str) {
    let def = format!(
        r#"{{"family":"{family}","networkMode":"awsvpc","cpu":"256","memory":"512",
  "containerDefinitions":[{{"name":"app","image":"public.ecr.aws/docker/library/busybox:1.36",
    "essential":true,"command":["sh","-c","{script}"]}}]}}"#
    );
    let f = api.file(&format!("{family}.json"), &def);
    api.aws_json(&["register-task-definition", "--cli-input-json", &f]);
    api.aws_json(&[
        "create-service",
        "--service-name",
        family,
        "--task-definition",
        family,
        "--desired-count",
        "1",
    ]);
}

const TARGET: &[&str] = &[
    "--service-namespace",
    "ecs",
    "--scalable-dimension",
    "ecs:service:DesiredCount",
];

/// Targets and policies as the CLI and boto3 make them: AWS's exceptions for a missing
/// service, a missing target, min above max, another namespace; a target tracking policy
/// makes its AlarmHigh and AlarmLow (thresholds, datapoints, the box's period) and a
/// step policy none; a restart keeps targets, policies and alarms; deleting the policy
/// deletes its alarms, deregistering the target its policies.
#[test]
fn targets_and_policies_are_checked_kept_and_delete_their_alarms() {
    let mut api = Api::start_env(
        common::image::busybox_layer(common::image::Compression::Gzip, "serve"),
        &[],
        &[("MINIFARGATE_METRICS_PERIOD", "5")],
    );
    service_def(&api, "web", "trap 'exit 0' TERM; sleep 3600 & wait");
    let id = "service/default/web";
    let e = aas_err(
        &api,
        &[
            &[
                "register-scalable-target",
                "--resource-id",
                "service/default/nope",
            ][..],
            TARGET,
            &["--min-capacity", "1", "--max-capacity", "3"],
        ]
        .concat(),
    );
    assert!(
        e.contains("(ValidationException)")
            && e.contains("ECS service doesn't exist: service/default/nope"),
        "{e}"
    );
    let e = aas_err(
        &api,
        &[
            &["register-scalable-target", "--resource-id", id][..],
            TARGET,
            &["--min-capacity", "4", "--max-capacity", "3"],
        ]
        .concat(),
    );
    assert!(
        e.contains("(ValidationException)")
            && e.contains("Minimum capacity cannot be greater than maximum capacity"),
        "{e}"
    );
    let e = aas_err(
        &api,
        &[
            "register-scalable-target",
            "--service-namespace",
            "ecs",
            "--scalable-dimension",
            "ecs:service:DesiredCount",
            "--resource-id",
            "web",
            "--min-capacity",
            "1",
            "--max-capacity",
            "3",
        ],
    );
    assert!(
        e.contains("Unsupported service namespace, resource type or scalable dimension"),
        "{e}"
    );
    let e = aas_err(
        &api,
        &[
            &["put-scaling-policy", "--policy-name", "cpu", "--resource-id", id][..],
            TARGET,
            &[
                "--policy-type",
                "TargetTrackingScaling",
                "--target-tracking-scaling-policy-configuration",
                r#"{"TargetValue":50,"PredefinedMetricSpecification":{"PredefinedMetricType":"ECSServiceAverageCPUUtilization"}}"#,
            ],
        ]
        .concat(),
    );
    assert!(
        e.contains("(ObjectNotFoundException)")
            && e.contains("No scalable target registered for service namespace: ecs, resource ID: service/default/web, scalable dimension: ecs:service:DesiredCount"),
        "{e}"
    );
    let arn = aas(
        &api,
        &[
            &["register-scalable-target", "--resource-id", id][..],
            TARGET,
            &["--min-capacity", "1", "--max-capacity", "3"],
        ]
        .concat(),
    );
    assert!(
        arn["ScalableTargetARN"]
            .as_str()
            .unwrap()
            .starts_with("arn:aws:application-autoscaling:us-east-1:000000000000:scalable-target/"),
        "{arn}"
    );
    // Re-registering changes what it names, keeps the rest.
    aas(
        &api,
        &[
            &["register-scalable-target", "--resource-id", id][..],
            TARGET,
            &[
                "--max-capacity",
                "4",
                "--suspended-state",
                "DynamicScalingInSuspended=true",
            ],
        ]
        .concat(),
    );
    let put = aas(
        &api,
        &[
            &["put-scaling-policy", "--policy-name", "cpu", "--resource-id", id][..],
            TARGET,
            &[
                "--policy-type",
                "TargetTrackingScaling",
                "--target-tracking-scaling-policy-configuration",
                r#"{"TargetValue":60,"PredefinedMetricSpecification":{"PredefinedMetricType":"ECSServiceAverageCPUUtilization"},"ScaleInCooldown":120}"#,
            ],
        ]
        .concat(),
    );
    let policy_arn = put["PolicyARN"].as_str().unwrap().to_string();
    assert!(
        policy_arn.starts_with("arn:aws:autoscaling:us-east-1:000000000000:scalingPolicy:")
            && policy_arn.ends_with(":resource/ecs/service/default/web:policyName/cpu"),
        "{policy_arn}"
    );
    let made: Vec<&str> = put["Alarms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["AlarmName"].as_str().unwrap())
        .collect();
    assert_eq!(made.len(), 2, "{put}");
    assert!(
        made[0].starts_with("TargetTracking-service/default/web-AlarmHigh-"),
        "{put}"
    );
    assert!(
        made[1].starts_with("TargetTracking-service/default/web-AlarmLow-"),
        "{put}"
    );
    // The alarms as CloudWatch shows them.
    let alarms: Value = {
        let out = api.aws_in(
            "cloudwatch",
            &[
                "describe-alarms",
                "--alarm-name-prefix",
                "TargetTracking-service/default/web-",
            ],
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let by_kind = |kind: &str| {
        alarms["MetricAlarms"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["AlarmName"].as_str().unwrap().contains(kind))
            .unwrap()
            .clone()
    };
    let high = by_kind("-AlarmHigh-");
    assert_eq!(high["Namespace"], "AWS/ECS");
    assert_eq!(high["MetricName"], "CPUUtilization");
    assert_eq!(high["Statistic"], "Average");
    assert_eq!(high["ComparisonOperator"], "GreaterThanThreshold");
    assert_eq!(high["Threshold"], 60.0);
    assert_eq!(high["EvaluationPeriods"], 3);
    assert_eq!(high["DatapointsToAlarm"], 3);
    assert_eq!(high["Period"], 5, "the box's period stands for AWS's 60 s");
    assert_eq!(high["AlarmActions"][0], policy_arn.as_str());
    assert_eq!(
        high["AlarmDescription"],
        format!("DO NOT EDIT OR DELETE. For TargetTrackingScaling policy {policy_arn}.")
    );
    let low = by_kind("-AlarmLow-");
    assert_eq!(low["ComparisonOperator"], "LessThanThreshold");
    assert_eq!(low["Threshold"], 54.0);
    assert_eq!(low["EvaluationPeriods"], 15);
    // Target tracking on metric math (a customized specification's Metrics): its alarms
    // watch the expression, each MetricStat at the box's period.
    let math = aas(
        &api,
        &[
            &["put-scaling-policy", "--policy-name", "math", "--resource-id", id][..],
            TARGET,
            &[
                "--policy-type",
                "TargetTrackingScaling",
                "--target-tracking-scaling-policy-configuration",
                r#"{"TargetValue":10,"CustomizedMetricSpecification":{"Metrics":[
                    {"Id":"m1","MetricStat":{"Metric":{"Namespace":"Shop","MetricName":"Backlog","Dimensions":[{"Name":"Queue","Value":"orders"}]},"Stat":"Sum"},"ReturnData":false},
                    {"Id":"m2","MetricStat":{"Metric":{"Namespace":"AWS/ECS","MetricName":"CPUUtilization","Dimensions":[{"Name":"ClusterName","Value":"default"},{"Name":"ServiceName","Value":"web"}]},"Stat":"Average"},"ReturnData":false},
                    {"Id":"e1","Expression":"m1 / m2","Label":"backlog per CPU","ReturnData":true}]}}"#,
            ],
        ]
        .concat(),
    );
    let math_high = math["Alarms"][0]["AlarmName"].as_str().unwrap();
    let shown: Value = {
        let out = api.aws_in(
            "cloudwatch",
            &["describe-alarms", "--alarm-names", math_high],
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let shown = &shown["MetricAlarms"][0];
    assert!(
        shown.get("MetricName").is_none() && shown.get("Period").is_none(),
        "{shown}"
    );
    assert_eq!(shown["Metrics"][0]["MetricStat"]["Period"], 5, "{shown}");
    assert_eq!(shown["Metrics"][2]["Expression"], "m1 / m2", "{shown}");
    assert_eq!(shown["Threshold"], 10.0);
    let e = aas_err(
        &api,
        &[
            &["put-scaling-policy", "--policy-name", "math2", "--resource-id", id][..],
            TARGET,
            &[
                "--policy-type",
                "TargetTrackingScaling",
                "--target-tracking-scaling-policy-configuration",
                r#"{"TargetValue":10,"CustomizedMetricSpecification":{"MetricName":"Backlog","Namespace":"Shop","Statistic":"Sum","Metrics":[{"Id":"e1","Expression":"TIME_SERIES(1)"}]}}"#,
            ],
        ]
        .concat(),
    );
    assert!(
        e.contains("ValidationException") && e.contains("not both"),
        "{e}"
    );
    aas(
        &api,
        &[
            &[
                "delete-scaling-policy",
                "--policy-name",
                "math",
                "--resource-id",
                id,
            ][..],
            TARGET,
        ]
        .concat(),
    );
    // A step scaling policy, driven by an alarm of one's own: no alarm made.
    let step = aas(
        &api,
        &[
            &["put-scaling-policy", "--policy-name", "steps", "--resource-id", id][..],
            TARGET,
            &[
                "--policy-type",
                "StepScaling",
                "--step-scaling-policy-configuration",
                r#"{"AdjustmentType":"ChangeInCapacity","StepAdjustments":[{"MetricIntervalLowerBound":0,"ScalingAdjustment":1}],"Cooldown":60,"MetricAggregationType":"Average"}"#,
            ],
        ]
        .concat(),
    );
    assert!(step.get("Alarms").is_none(), "{step}");
    let e = aas_err(
        &api,
        &[
            &["put-scaling-policy", "--policy-name", "bad", "--resource-id", id][..],
            TARGET,
            &[
                "--policy-type",
                "StepScaling",
                "--step-scaling-policy-configuration",
                r#"{"AdjustmentType":"ChangeInCapacity","StepAdjustments":[{"MetricIntervalLowerBound":0,"MetricIntervalUpperBound":10,"ScalingAdjustment":1},{"MetricIntervalLowerBound":20,"ScalingAdjustment":2}]}"#,
            ],
        ]
        .concat(),
    );
    assert!(
        e.contains("(ValidationException)") && e.contains("gaps"),
        "{e}"
    );

    // A restart keeps them all.
    api.restart();
    let targets = aas(
        &api,
        &["describe-scalable-targets", "--service-namespace", "ecs"],
    );
    let t = &targets["ScalableTargets"][0];
    assert_eq!(t["ResourceId"], id, "{targets}");
    assert_eq!(
        (t["MinCapacity"].as_i64(), t["MaxCapacity"].as_i64()),
        (Some(1), Some(4))
    );
    assert_eq!(
        t["SuspendedState"]["DynamicScalingInSuspended"], true,
        "{t}"
    );
    assert_eq!(
        t["SuspendedState"]["DynamicScalingOutSuspended"], false,
        "{t}"
    );
    let policies = aas(
        &api,
        &[
            "describe-scaling-policies",
            "--service-namespace",
            "ecs",
            "--resource-id",
            id,
        ],
    );
    let mut names: Vec<&str> = policies["ScalingPolicies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["PolicyName"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["cpu", "steps"], "{policies}");
    let cpu = policies["ScalingPolicies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["PolicyName"] == "cpu")
        .unwrap();
    assert_eq!(
        cpu["TargetTrackingScalingPolicyConfiguration"]["ScaleInCooldown"],
        120
    );
    assert_eq!(cpu["Alarms"].as_array().unwrap().len(), 2);
    assert_eq!(
        alarm_names(&api, "TargetTracking-service/default/web-").len(),
        2
    );

    // boto3 reads the same, and gets ObjectNotFoundException for a missing policy.
    let got = api.boto3(
        r#"
import boto3, botocore, json, os
c = boto3.client('application-autoscaling', endpoint_url=os.environ['ENDPOINT'], region_name='us-east-1')
out = {}
t = c.describe_scalable_targets(ServiceNamespace='ecs', ResourceIds=['service/default/web'])
out['created'] = type(t['ScalableTargets'][0]['CreationTime']).__name__
out['other'] = len(c.describe_scalable_targets(ServiceNamespace='dynamodb')['ScalableTargets'])
try:
    c.delete_scaling_policy(PolicyName='nope', ServiceNamespace='ecs',
        ResourceId='service/default/web', ScalableDimension='ecs:service:DesiredCount')
except botocore.exceptions.ClientError as e:
    out['error'] = e.response['Error']['Code']
    out['message'] = e.response['Error']['Message']
print(json.dumps(out))
"#,
    );
    assert_eq!(got["created"], "datetime", "{got}");
    assert_eq!(got["other"], 0, "{got}");
    assert_eq!(got["error"], "ObjectNotFoundException", "{got}");
    assert_eq!(
        got["message"],
        "No scaling policy found for service namespace: ecs, resource ID: service/default/web, scalable dimension: ecs:service:DesiredCount, policy name: nope"
    );

    // Deleting the target tracking policy deletes its alarms.
    aas(
        &api,
        &[
            &[
                "delete-scaling-policy",
                "--policy-name",
                "cpu",
                "--resource-id",
                id,
            ][..],
            TARGET,
        ]
        .concat(),
    );
    assert!(
        alarm_names(&api, "TargetTracking-service/default/web-").is_empty(),
        "the policy's alarms outlived it"
    );
    // Deregistering the target deletes its policies.
    aas(
        &api,
        &[
            &["deregister-scalable-target", "--resource-id", id][..],
            TARGET,
        ]
        .concat(),
    );
    let policies = aas(
        &api,
        &["describe-scaling-policies", "--service-namespace", "ecs"],
    );
    assert_eq!(
        policies["ScalingPolicies"],
        serde_json::json!([]),
        "{policies}"
    );
    let e = aas_err(
        &api,
        &[
            &["deregister-scalable-target", "--resource-id", id][..],
            TARGET,
        ]
        .concat(),
    );
    assert!(
        e.contains("(ObjectNotFoundException)")
            && e.contains("No scalable target found for service namespace: ecs, resource ID: service/default/web, scalable dimension: ecs:service:DesiredCount"),
        "{e}"
    );
    api.aws_json(&["delete-service", "--service", "web", "--force"]);
}

/// Target tracking on CPU at 50 %: a service of one task that burns its quarter vCPU
/// scales out to 2 (the most it may have) when AlarmHigh fires, and back in to 1 once
/// its tasks idle and AlarmLow fires, each step a scaling activity in AWS's words. Every
/// task burns until a fixed time (the command says when), then sleeps.
#[test]
fn a_service_scales_out_on_cpu_and_back_in_when_idle() {
    let api = Api::start_env(
        common::image::busybox_layer(common::image::Compression::Gzip, "serve"),
        &[],
        &[("MINIFARGATE_METRICS_PERIOD", "5")],
    );
    let until = chrono::Utc::now().timestamp() + 55;
    service_def(
        &api,
        "burner",
        &format!(
            "trap 'exit 0' TERM; while [ $(date +%s) -lt {until} ]; do i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; done; sleep 3600 & wait"
        ),
    );
    let id = "service/default/burner";
    aas(
        &api,
        &[
            &["register-scalable-target", "--resource-id", id][..],
            TARGET,
            &["--min-capacity", "1", "--max-capacity", "2"],
        ]
        .concat(),
    );
    aas(
        &api,
        &[
            &["put-scaling-policy", "--policy-name", "cpu50", "--resource-id", id][..],
            TARGET,
            &[
                "--policy-type",
                "TargetTrackingScaling",
                "--target-tracking-scaling-policy-configuration",
                r#"{"TargetValue":50,"PredefinedMetricSpecification":{"PredefinedMetricType":"ECSServiceAverageCPUUtilization"}}"#,
            ],
        ]
        .concat(),
    );
    let desired = |api: &Api| {
        let s = api.service("default", "burner");
        (
            s["desiredCount"].as_i64().unwrap(),
            s["runningCount"].as_i64().unwrap(),
        )
    };
    // Out: 1 task at ~100 % of its reservation for a 50 % target is 2 tasks.
    api.wait_for(90, "the service scaled out to 2 running tasks", || {
        (desired(&api) == (2, 2)).then_some(())
    });
    let activities = |api: &Api| {
        aas(
            api,
            &[
                "describe-scaling-activities",
                "--service-namespace",
                "ecs",
                "--resource-id",
                id,
            ],
        )["ScalingActivities"]
            .as_array()
            .unwrap()
            .clone()
    };
    let out = activities(&api);
    let a = &out[0];
    assert_eq!(a["Description"], "Setting desired count to 2.", "{a}");
    let cause = a["Cause"].as_str().unwrap();
    assert!(
        cause.starts_with("monitor alarm TargetTracking-service/default/burner-AlarmHigh-")
            && cause.ends_with(" in state ALARM triggered policy cpu50"),
        "{cause}"
    );
    assert_eq!(a["StatusCode"], "Successful");
    assert_eq!(
        a["StatusMessage"],
        "Successfully set desired count to 2. Change successfully fulfilled by ecs."
    );
    assert_eq!(a["ScalableDimension"], "ecs:service:DesiredCount");
    // In: after the burn ends, 15 periods below 45 % (75 s), then back to the minimum.
    api.wait_for(180, "the service scaled back in to 1", || {
        (desired(&api) == (1, 1)).then_some(())
    });
    let all = activities(&api);
    let a = &all[0];
    assert_eq!(a["Description"], "Setting desired count to 1.", "{all:?}");
    let cause = a["Cause"].as_str().unwrap();
    assert!(
        cause.starts_with("monitor alarm TargetTracking-service/default/burner-AlarmLow-")
            && cause.ends_with(" in state ALARM triggered policy cpu50"),
        "{cause}"
    );
    assert_eq!(all.len(), 2, "one activity out, one in: {all:?}");
    aas(
        &api,
        &[
            &["deregister-scalable-target", "--resource-id", id][..],
            TARGET,
        ]
        .concat(),
    );
    assert!(alarm_names(&api, "TargetTracking-service/default/burner-").is_empty());
    api.aws_json(&[
        "update-service",
        "--service",
        "burner",
        "--desired-count",
        "0",
    ]);
    api.aws_json(&["delete-service", "--service", "burner", "--force"]);
}

/// Step scaling on a custom metric: an alarm of one's own on `Shop QueueDepth` names the
/// step policy's ARN; data put with PutMetricData 30 above its threshold falls in the
/// second step (+2), so the service goes from 1 task to 3, once (the cooldown, 600 s
/// scaled to 50 s, holds a second run back).
/// Service `svc` (a sleeper) with a scalable target of 1 to 5 tasks and the step
/// scaling policy `policy` (`config`: its step configuration's JSON): the target's
/// resource id and the policy's ARN.
fn service_with_step_policy(api: &Api, svc: &str, policy: &str, config: &str) -> (String, String) {
    service_def(api, svc, "trap 'exit 0' TERM; sleep 3600 & wait");
    let id = format!("service/default/{svc}");
    aas(
        api,
        &[
            &["register-scalable-target", "--resource-id", &id][..],
            TARGET,
            &["--min-capacity", "1", "--max-capacity", "5"],
        ]
        .concat(),
    );
    let put = aas(
        api,
        &[
            &[
                "put-scaling-policy",
                "--policy-name",
                policy,
                "--resource-id",
                &id,
            ][..],
            TARGET,
            &[
                "--policy-type",
                "StepScaling",
                "--step-scaling-policy-configuration",
                config,
            ],
        ]
        .concat(),
    );
    (id, put["PolicyARN"].as_str().unwrap().to_string())
}

/// Alarm `alarm` on the average of the custom metric Shop/`metric` over 10 s, above
/// 50, with `policy_arn` in its actions of `actions` (`--alarm-actions`, `--ok-actions` …).
fn shop_alarm(api: &Api, alarm: &str, metric: &str, actions: &str, policy_arn: &str) {
    let out = api.aws_in(
        "cloudwatch",
        &[
            "put-metric-alarm",
            "--alarm-name",
            alarm,
            "--namespace",
            "Shop",
            "--metric-name",
            metric,
            "--statistic",
            "Average",
            "--period",
            "10",
            "--evaluation-periods",
            "1",
            "--threshold",
            "50",
            "--comparison-operator",
            "GreaterThanThreshold",
            actions,
            policy_arn,
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Shop/`metric` at `value`, one datum a second over the last 20 s.
fn put_shop_metric(api: &Api, metric: &str, value: u32) {
    let now = chrono::Utc::now();
    let data: Vec<Value> = (1..=20)
        .map(|s| {
            serde_json::json!({"MetricName": metric,
                "Timestamp": (now - chrono::Duration::seconds(s)).format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                "Value": value, "StorageResolution": 1})
        })
        .collect();
    let out = api.aws_in(
        "cloudwatch",
        &[
            "put-metric-data",
            "--namespace",
            "Shop",
            "--metric-data",
            &Value::Array(data).to_string(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The one scaling activity of target `id`.
fn only_activity(api: &Api, id: &str) -> Value {
    let acts = aas(
        api,
        &[
            "describe-scaling-activities",
            "--service-namespace",
            "ecs",
            "--resource-id",
            id,
        ],
    );
    let all = acts["ScalingActivities"].as_array().unwrap();
    assert_eq!(all.len(), 1, "{acts}");
    all[0].clone()
}

/// Target `id` deregistered, then its service `svc` scaled to 0 and deleted.
fn remove_scaled_service(api: &Api, id: &str, svc: &str) {
    aas(
        api,
        &[
            &["deregister-scalable-target", "--resource-id", id][..],
            TARGET,
        ]
        .concat(),
    );
    api.aws_json(&["update-service", "--service", svc, "--desired-count", "0"]);
    api.aws_json(&["delete-service", "--service", svc, "--force"]);
}

#[test]
fn a_step_policy_scales_when_its_alarm_on_a_custom_metric_fires() {
    let api = Api::start_env(
        common::image::busybox_layer(common::image::Compression::Gzip, "serve"),
        &[],
        &[("MINIFARGATE_METRICS_PERIOD", "5")],
    );
    let (id, policy_arn) = service_with_step_policy(
        &api,
        "worker",
        "queue-steps",
        r#"{"AdjustmentType":"ChangeInCapacity","StepAdjustments":[{"MetricIntervalLowerBound":0,"MetricIntervalUpperBound":20,"ScalingAdjustment":1},{"MetricIntervalLowerBound":20,"ScalingAdjustment":2}],"Cooldown":600,"MetricAggregationType":"Average"}"#,
    );
    shop_alarm(
        &api,
        "worker-queue-deep",
        "QueueDepth",
        "--alarm-actions",
        &policy_arn,
    );
    assert_eq!(api.service("default", "worker")["desiredCount"], 1);
    put_shop_metric(&api, "QueueDepth", 80);
    api.wait_for(30, "the service at 3 tasks", || {
        let s = api.service("default", "worker");
        (s["desiredCount"] == 3 && s["runningCount"] == 3).then_some(())
    });
    // The alarm stays in ALARM a while: the cooldown holds the policy back.
    std::thread::sleep(std::time::Duration::from_secs(12));
    assert_eq!(api.service("default", "worker")["desiredCount"], 3);
    let act = only_activity(&api, &id);
    assert_eq!(act["Description"], "Setting desired count to 3.");
    assert_eq!(
        act["Cause"],
        "monitor alarm worker-queue-deep in state ALARM triggered policy queue-steps"
    );
    assert_eq!(act["StatusCode"], "Successful");
    remove_scaled_service(&api, &id, "worker");
}

/// A step policy's ARN in an alarm's `OKActions` runs when the alarm enters OK, as
/// CloudWatch runs Auto Scaling actions in each state: data below the threshold puts
/// the alarm in OK, the policy's step below the threshold (+2) takes the service from 1
/// task to 3, with the cause naming the OK state.
#[test]
fn a_step_policy_in_ok_actions_scales_when_its_alarm_enters_ok() {
    let api = Api::start_env(
        common::image::busybox_layer(common::image::Compression::Gzip, "serve"),
        &[],
        &[("MINIFARGATE_METRICS_PERIOD", "5")],
    );
    let (id, policy_arn) = service_with_step_policy(
        &api,
        "calm",
        "when-ok",
        r#"{"AdjustmentType":"ChangeInCapacity","StepAdjustments":[{"MetricIntervalUpperBound":0,"ScalingAdjustment":2}],"Cooldown":600}"#,
    );
    shop_alarm(&api, "calm-queue", "Backlog", "--ok-actions", &policy_arn);
    assert_eq!(api.service("default", "calm")["desiredCount"], 1);
    put_shop_metric(&api, "Backlog", 10);
    api.wait_for(30, "the service at 3 desired tasks", || {
        (api.service("default", "calm")["desiredCount"] == 3).then_some(())
    });
    let act = only_activity(&api, &id);
    assert_eq!(act["Description"], "Setting desired count to 3.");
    assert_eq!(
        act["Cause"],
        "monitor alarm calm-queue in state OK triggered policy when-ok"
    );
    remove_scaled_service(&api, &id, "calm");
}

/// Policies whose alarms fire at the target's bounds (min = max = 1): nothing scales,
/// describe-scaling-activities lists nothing, and with --include-not-scaled-activities
/// it lists one not scaled activity per policy in AWS's shape (StatusCode Failed,
/// NotScaledReasons AlreadyAtMaxCapacity with MaxCapacity, AlreadyAtMinCapacity with
/// MinCapacity), once though the alarms stay in ALARM; boto3 reads them too.
#[test]
fn a_policy_held_at_its_bounds_records_not_scaled_activities() {
    let api = Api::start_env(
        common::image::busybox_layer(common::image::Compression::Gzip, "serve"),
        &[],
        &[("MINIFARGATE_METRICS_PERIOD", "5")],
    );
    service_def(&api, "capped", "trap 'exit 0' TERM; sleep 3600 & wait");
    let id = "service/default/capped";
    aas(
        &api,
        &[
            &["register-scalable-target", "--resource-id", id][..],
            TARGET,
            &["--min-capacity", "1", "--max-capacity", "1"],
        ]
        .concat(),
    );
    let policy = |name: &str, adjustment: i64| {
        let put = aas(
            &api,
            &[
                &["put-scaling-policy", "--policy-name", name, "--resource-id", id][..],
                TARGET,
                &[
                    "--policy-type",
                    "StepScaling",
                    "--step-scaling-policy-configuration",
                    &format!(
                        r#"{{"AdjustmentType":"ChangeInCapacity","StepAdjustments":[{{"MetricIntervalLowerBound":0,"ScalingAdjustment":{adjustment}}}],"Cooldown":60}}"#
                    ),
                ],
            ]
            .concat(),
        );
        put["PolicyARN"].as_str().unwrap().to_string()
    };
    for (name, adjustment, metric) in [("more", 1, "Backlog"), ("fewer", -1, "Spare")] {
        let arn = policy(name, adjustment);
        let out = api.aws_in(
            "cloudwatch",
            &[
                "put-metric-alarm",
                "--alarm-name",
                &format!("capped-{name}"),
                "--namespace",
                "Shop",
                "--metric-name",
                metric,
                "--statistic",
                "Average",
                "--period",
                "10",
                "--evaluation-periods",
                "1",
                "--threshold",
                "50",
                "--comparison-operator",
                "GreaterThanThreshold",
                "--alarm-actions",
                &arn,
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let now = chrono::Utc::now();
    let data: Vec<Value> = (1..=20)
        .flat_map(|s| {
            let at = (now - chrono::Duration::seconds(s))
                .format("%Y-%m-%dT%H:%M:%SZ")
                .to_string();
            ["Backlog", "Spare"].map(|m| {
                serde_json::json!({"MetricName": m, "Timestamp": at, "Value": 80,
                    "StorageResolution": 1})
            })
        })
        .collect();
    let out = api.aws_in(
        "cloudwatch",
        &[
            "put-metric-data",
            "--namespace",
            "Shop",
            "--metric-data",
            &Value::Array(data).to_string(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let describe = |extra: &[&str]| {
        aas(
            &api,
            &[
                &[
                    "describe-scaling-activities",
                    "--service-namespace",
                    "ecs",
                    "--resource-id",
                    id,
                ][..],
                extra,
            ]
            .concat(),
        )["ScalingActivities"]
            .as_array()
            .unwrap()
            .clone()
    };
    // The alarms are evaluated after each sample and their policies run then: slower
    // when the machine is busy.
    let acts = api.wait_for(90, "two not scaled activities", || {
        let a = describe(&["--include-not-scaled-activities"]);
        (a.len() == 2).then_some(a)
    });
    // The alarms stay in ALARM for periods more: still one activity each.
    std::thread::sleep(std::time::Duration::from_secs(12));
    assert_eq!(describe(&["--include-not-scaled-activities"]).len(), 2);
    let of = |policy: &str| {
        acts.iter()
            .find(|a| {
                a["Cause"]
                    .as_str()
                    .unwrap()
                    .ends_with(&format!("policy {policy}"))
            })
            .unwrap_or_else(|| panic!("no activity of {policy}: {acts:?}"))
            .clone()
    };
    let more = of("more");
    assert_eq!(
        more["Description"],
        "Attempting to scale due to alarm triggered"
    );
    assert_eq!(
        more["Cause"],
        "monitor alarm capped-more in state ALARM triggered policy more"
    );
    assert_eq!(more["StatusCode"], "Failed");
    assert_eq!(
        more["NotScaledReasons"],
        serde_json::json!([{"Code": "AlreadyAtMaxCapacity", "MaxCapacity": 1}])
    );
    assert_eq!(
        of("fewer")["NotScaledReasons"],
        serde_json::json!([{"Code": "AlreadyAtMinCapacity", "MinCapacity": 1}])
    );
    assert!(describe(&[]).is_empty(), "not listed unless asked for");
    assert!(describe(&["--no-include-not-scaled-activities"]).is_empty());
    let codes = api.boto3(&format!(
        r#"
import boto3, json, os
c = boto3.client("application-autoscaling", endpoint_url=os.environ["ENDPOINT"], region_name="us-east-1")
a = c.describe_scaling_activities(ServiceNamespace="ecs", ResourceId="{id}",
                                  IncludeNotScaledActivities=True)["ScalingActivities"]
print(json.dumps(sorted(r["Code"] for x in a for r in x["NotScaledReasons"])))
"#
    ));
    assert_eq!(
        codes,
        serde_json::json!(["AlreadyAtMaxCapacity", "AlreadyAtMinCapacity"])
    );
    assert_eq!(api.service("default", "capped")["desiredCount"], 1);
    aas(
        &api,
        &[
            &["deregister-scalable-target", "--resource-id", id][..],
            TARGET,
        ]
        .concat(),
    );
    api.aws_json(&[
        "update-service",
        "--service",
        "capped",
        "--desired-count",
        "0",
    ]);
    api.aws_json(&["delete-service", "--service", "capped", "--force"]);
}

/// A scheduled action at a given local time (Asia/Kolkata, UTC+05:30): at that time the
/// target's minimum becomes 3, so the service of 1 task goes to 3, each step a scaling
/// activity in AWS's words; a bad cron expression or time zone is a ValidationException,
/// a missing action to delete an ObjectNotFoundException.
#[test]
fn a_scheduled_action_raises_the_minimum_at_its_local_time() {
    let api = Api::start_env(
        common::image::busybox_layer(common::image::Compression::Gzip, "serve"),
        &[],
        &[("MINIFARGATE_METRICS_PERIOD", "5")],
    );
    service_def(&api, "office", "trap 'exit 0' TERM; sleep 3600 & wait");
    let id = "service/default/office";
    aas(
        &api,
        &[
            &["register-scalable-target", "--resource-id", id][..],
            TARGET,
            &["--min-capacity", "1", "--max-capacity", "4"],
        ]
        .concat(),
    );
    for (schedule, tz, want) in [
        (
            "cron(0 9 * * MON *)",
            "UTC",
            "one of Day-of-month and Day-of-week must be ?",
        ),
        (
            "at(2026-13-01T00:00:00)",
            "UTC",
            "Invalid schedule expression",
        ),
        ("rate(5 minutes)", "Mars/Olympus", "Invalid Timezone"),
    ] {
        let e = aas_err(
            &api,
            &[
                &[
                    "put-scheduled-action",
                    "--scheduled-action-name",
                    "bad",
                    "--resource-id",
                    id,
                ][..],
                TARGET,
                &["--schedule", schedule, "--timezone", tz],
            ]
            .concat(),
        );
        assert!(
            e.contains("(ValidationException)") && e.contains(want),
            "{schedule} {tz}: {e}"
        );
    }
    // 20 s ahead: the calls before the check that it has not run yet take several
    // seconds on a loaded box (the suite runs tests side by side).
    let local = chrono::Utc::now() + chrono::Duration::seconds(20) + chrono::Duration::minutes(330);
    let at = format!("at({})", local.format("%Y-%m-%dT%H:%M:%S"));
    aas(
        &api,
        &[
            &[
                "put-scheduled-action",
                "--scheduled-action-name",
                "morning",
                "--resource-id",
                id,
            ][..],
            TARGET,
            &[
                "--schedule",
                &at,
                "--timezone",
                "Asia/Kolkata",
                "--scalable-target-action",
                "MinCapacity=3,MaxCapacity=4",
            ],
        ]
        .concat(),
    );
    let listed = aas(
        &api,
        &[
            "describe-scheduled-actions",
            "--service-namespace",
            "ecs",
            "--resource-id",
            id,
        ],
    );
    let a = &listed["ScheduledActions"][0];
    assert_eq!(a["Schedule"], at.as_str(), "{listed}");
    assert_eq!(a["Timezone"], "Asia/Kolkata");
    assert_eq!(a["ScalableTargetAction"]["MinCapacity"], 3);
    assert!(
        a["ScheduledActionARN"]
            .as_str()
            .unwrap()
            .ends_with(":resource/ecs/service/default/office:scheduledActionName/morning"),
        "{a}"
    );
    assert_eq!(api.service("default", "office")["desiredCount"], 1);
    api.wait_for(40, "the service at 3 tasks", || {
        let s = api.service("default", "office");
        (s["desiredCount"] == 3 && s["runningCount"] == 3).then_some(())
    });
    let targets = aas(
        &api,
        &["describe-scalable-targets", "--service-namespace", "ecs"],
    );
    assert_eq!(targets["ScalableTargets"][0]["MinCapacity"], 3, "{targets}");
    let acts = aas(
        &api,
        &[
            "describe-scaling-activities",
            "--service-namespace",
            "ecs",
            "--resource-id",
            id,
        ],
    );
    let got: Vec<(String, String)> = acts["ScalingActivities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            assert_eq!(a["StatusCode"], "Successful", "{a}");
            (
                a["Description"].as_str().unwrap().to_string(),
                a["Cause"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "Setting desired count to 3.".to_string(),
                "minimum capacity was set to 3".to_string()
            ),
            (
                "Setting min capacity to 3 and max capacity to 4".to_string(),
                "scheduled action name morning was triggered".to_string()
            ),
        ]
    );
    let del = [
        &[
            "delete-scheduled-action",
            "--scheduled-action-name",
            "morning",
            "--resource-id",
            id,
        ][..],
        TARGET,
    ]
    .concat();
    aas(&api, &del);
    let e = aas_err(&api, &del);
    assert!(e.contains("(ObjectNotFoundException)"), "{e}");
    aas(
        &api,
        &[
            &["deregister-scalable-target", "--resource-id", id][..],
            TARGET,
        ]
        .concat(),
    );
    api.aws_json(&[
        "update-service",
        "--service",
        "office",
        "--desired-count",
        "0",
    ]);
    api.aws_json(&["delete-service", "--service", "office", "--force"]);
}
