//! A service's metrics and its scaling policy across a cluster's boxes (issue 58;
//! docs/cloudwatch.md "In cluster mode"): `serve --cluster` runs no task itself, its
//! service's tasks run on two boxes (`minifargate agent` processes over a real etcd), and
//! the AWS CLI's `cloudwatch` and `application-autoscaling` verbs see the tasks of both:
//! their `AWS/ECS` CPUUtilization, then a target tracking policy that scales the service
//! out on it. Each test has its own etcd, serve and boxes, stopped by their pids (and the
//! tasks' supervisors by theirs) also when it fails.

use crate::common;

use common::api::Api;
use common::cluster::{boxes, instance, register, service_tasks};
use common::etcd::Etcd;
use common::image::{Compression, busybox_layer};

fn iso(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

const TARGET: &[&str] = &[
    "--service-namespace",
    "ecs",
    "--scalable-dimension",
    "ecs:service:DesiredCount",
];

#[test]
fn a_service_s_cpu_on_two_boxes_is_published_and_scales_it_out() {
    let etcd = Etcd::start();
    let tls = etcd.serve_args();
    let mut args = vec!["--cluster".to_string(), etcd.endpoint()];
    args.extend(tls);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // Metrics every 5 s (high resolution), as a class would watch them.
    let api = Api::start_env(
        busybox_layer(Compression::Gzip, "cluster"),
        &args,
        &[("MINIFARGATE_METRICS_PERIOD", "5")],
    );
    let agents = boxes(&etcd, &api, 5, &[&[], &[]]);
    // A busy loop in a quarter of a vCPU: ~100 % of what the task reserved.
    register(
        &api,
        "burn.json",
        r#"{"family": "burn", "networkMode": "awsvpc", "requiresCompatibilities": ["EC2"],
  "cpu": "256", "memory": "128",
  "containerDefinitions": [{"name": "main", "image": "public.ecr.aws/docker/library/busybox:1.36",
    "command": ["sh", "-c", "trap 'exit 0' TERM; while :; do :; done"], "essential": true}]}"#,
    );
    api.aws_json(&["create-cluster", "--cluster-name", "default"]);
    api.aws_json(&[
        "create-service",
        "--service-name",
        "burn",
        "--task-definition",
        "burn",
        "--desired-count",
        "2",
        "--launch-type",
        "EC2",
        "--placement-strategy",
        "type=spread,field=instanceId",
    ]);
    let tasks = api.wait_for(90, "2 tasks RUNNING, one on each box", || {
        let t = service_tasks(&api, "burn");
        let mut on: Vec<&str> = t.iter().map(|(_, ci)| ci.as_str()).collect();
        on.sort();
        on.dedup();
        (t.len() == 2 && on.len() == 2).then_some(t)
    });
    assert_eq!(tasks.len(), 2);

    // serve runs no task: every datum comes from a box. A 5 s period holds 3 samples of
    // each task, so more than 3 means both boxes' tasks were sampled.
    let start = chrono::Utc::now();
    let stat = || -> Option<(f64, f64, f64)> {
        let v = api.aws_json_in(
            "cloudwatch",
            &[
                "get-metric-statistics",
                "--namespace",
                "AWS/ECS",
                "--metric-name",
                "CPUUtilization",
                "--dimensions",
                "Name=ClusterName,Value=default",
                "Name=ServiceName,Value=burn",
                "--start-time",
                &iso(start - chrono::Duration::minutes(1)),
                "--end-time",
                &iso(chrono::Utc::now() + chrono::Duration::minutes(1)),
                "--period",
                "5",
                "--statistics",
                "Average",
                "Minimum",
                "SampleCount",
            ],
        );
        let dp = v["Datapoints"].as_array()?;
        let most = dp
            .iter()
            .map(|d| d["SampleCount"].as_f64().unwrap())
            .fold(0.0, f64::max);
        let full = dp
            .iter()
            .find(|d| d["SampleCount"].as_f64().unwrap() >= 5.0)?;
        Some((
            most,
            full["Average"].as_f64().unwrap(),
            full["Minimum"].as_f64().unwrap(),
        ))
    };
    let (most, avg, min) = api.wait_for(60, "a period with both boxes' samples", stat);
    assert!(most <= 6.0, "3 samples a period of each of 2 tasks: {most}");
    assert!(
        avg > 40.0 && min > 20.0,
        "both busy tasks near 100 % of their CPU: average {avg}, minimum {min}"
    );

    // Target tracking at 50 % on that metric: the service scales out to its maximum.
    let id = "service/default/burn";
    api.aws_json_in(
        "application-autoscaling",
        &[
            &["register-scalable-target", "--resource-id", id][..],
            TARGET,
            &["--min-capacity", "2", "--max-capacity", "3"],
        ]
        .concat(),
    );
    api.aws_json_in("application-autoscaling",
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
    api.wait_for(120, "the service scaled out to 3 by the policy", || {
        (api.service("default", "burn")["desiredCount"] == 3).then_some(())
    });
    let acts = api.aws_json_in(
        "application-autoscaling",
        &[
            "describe-scaling-activities",
            "--service-namespace",
            "ecs",
            "--resource-id",
            id,
        ],
    );
    let causes: Vec<&str> = acts["ScalingActivities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["Cause"].as_str().unwrap())
        .collect();
    assert!(
        causes.iter().any(|c| c.contains("AlarmHigh")),
        "the activity names the policy's high alarm: {causes:?}"
    );

    // Down to nothing: the target first (or the policy scales it back).
    api.aws_json_in(
        "application-autoscaling",
        &[
            &["deregister-scalable-target", "--resource-id", id][..],
            TARGET,
        ]
        .concat(),
    );
    api.aws_json(&[
        "update-service",
        "--service",
        "burn",
        "--desired-count",
        "0",
    ]);
    for a in &agents {
        api.wait_for(60, "the box's tasks stopped", || {
            (instance(&api, &a.arn())["runningTasksCount"] == 0).then_some(())
        });
    }
}
