//! A service's metrics and its scaling policy across a cluster's boxes and serves (issues
//! 58 and 76; docs/cloudwatch.md "In cluster mode", docs/scaling.md "In a cluster"):
//! `serve --cluster` runs no task itself, its service's tasks run on two boxes
//! (`minifargate agent` processes over a real etcd), and the AWS CLI's `cloudwatch` and
//! `application-autoscaling` verbs see the tasks of both: their `AWS/ECS` CPUUtilization,
//! then a target tracking policy that scales the service out on it, after the serve it
//! was put through was killed. The alarms (state, history) and scheduled actions are the
//! cluster's whichever serve answers, and only the leader runs them. Each test has its own
//! etcd, serves and boxes, stopped by their pids (and the tasks' supervisors by theirs)
//! also when it fails.

use crate::common;

use common::api::Api;
use common::cluster::{boxes, instance, leader_pid, register, serve_env, service_tasks};
use common::etcd::Etcd;
use serde_json::Value;

/// Metrics every 5 s (high resolution), as a class would watch them; a leader's death
/// noticed within 2 s.
const FAST: &[(&str, &str)] = &[("MINIFARGATE_METRICS_PERIOD", "5")];

/// Two serves of `etcd`: (the leader, the other).
fn two_serves(etcd: &Etcd) -> (Api, Api) {
    let a = serve_env(etcd, &["--leader-ttl", "2"], FAST);
    let b = serve_env(etcd, &["--leader-ttl", "2"], FAST);
    let leader = a.wait_for(30, "a leader", || leader_pid(etcd));
    if leader == a.server_pid() {
        (a, b)
    } else {
        assert_eq!(leader, b.server_pid());
        (b, a)
    }
}

fn kill(api: &Api) {
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &api.server_pid().to_string()])
        .status();
}

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
    // The policy goes through the leader (`first`), which is then killed: the other
    // serve (`api`) takes over and scales the service on the metrics it gathered itself.
    let (first, api) = two_serves(&etcd);
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

    // Target tracking at 50 % on that metric, put through the leader, which dies: the
    // service scales out to its maximum all the same.
    let id = "service/default/burn";
    first.aws_json_in(
        "application-autoscaling",
        &[
            &["register-scalable-target", "--resource-id", id][..],
            TARGET,
            &["--min-capacity", "2", "--max-capacity", "3"],
        ]
        .concat(),
    );
    first.aws_json_in("application-autoscaling",
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
    kill(&first);
    api.wait_for(30, "the other serve leading", || {
        (leader_pid(&etcd) == Some(api.server_pid())).then_some(())
    });
    api.wait_for(120, "the service scaled out to 3 by the policy", || {
        (api.service("default", "burn")["desiredCount"] == 3).then_some(())
    });
    let acts = activities(&api, id);
    let causes: Vec<&str> = acts.iter().map(|a| a["Cause"].as_str().unwrap()).collect();
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

/// The alarms named `names` as `api` describes them, once it describes them all.
fn alarms(api: &Api, names: &[&str]) -> Option<Vec<Value>> {
    let mut args = vec!["describe-alarms", "--alarm-names"];
    args.extend(names);
    let v = api.aws_json_in("cloudwatch", &args);
    let found = v["MetricAlarms"].as_array()?.clone();
    (found.len() == names.len()).then_some(found)
}

fn put_alarm(api: &Api, name: &str) {
    api.aws_json_in(
        "cloudwatch",
        &[
            "put-metric-alarm",
            "--alarm-name",
            name,
            "--namespace",
            "Lab",
            "--metric-name",
            "Queue",
            "--statistic",
            "Average",
            "--period",
            "60",
            "--evaluation-periods",
            "1",
            "--threshold",
            "10",
            "--comparison-operator",
            "GreaterThanThreshold",
            // No data keeps the state: the leader's evaluations leave it as set.
            "--treat-missing-data",
            "ignore",
        ],
    );
}

#[test]
fn an_alarm_s_state_and_history_are_the_cluster_s_and_survive_the_serve_they_went_through() {
    let etcd = Etcd::start();
    let (a, b) = two_serves(&etcd);
    // Put through either serve, described through the other.
    put_alarm(&a, "through-a");
    put_alarm(&b, "through-b");
    a.wait_for(30, "B's alarm through A", || alarms(&a, &["through-b"]));
    b.wait_for(30, "A's alarm through B", || alarms(&b, &["through-a"]));

    // Its state set through A (the leader), which dies: B has the state, its reason
    // and the history item of the change.
    a.aws_json_in(
        "cloudwatch",
        &[
            "set-alarm-state",
            "--alarm-name",
            "through-a",
            "--state-value",
            "ALARM",
            "--state-reason",
            "set by the lab",
        ],
    );
    kill(&a);
    let alarm = b.wait_for(30, "the state on B", || {
        alarms(&b, &["through-a"]).filter(|v| v[0]["StateValue"] == "ALARM")
    });
    assert_eq!(alarm[0]["StateReason"], "set by the lab", "{alarm:#?}");
    let history = b.aws_json_in(
        "cloudwatch",
        &["describe-alarm-history", "--alarm-name", "through-a"],
    );
    let summaries: Vec<&str> = history["AlarmHistoryItems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["HistorySummary"].as_str().unwrap())
        .collect();
    assert!(
        summaries.contains(&"Alarm updated from INSUFFICIENT_DATA to ALARM"),
        "{summaries:?}"
    );
    // B leads now; its evaluations keep the state (no data, `ignore`).
    b.wait_for(30, "B leading", || {
        (leader_pid(&etcd) == Some(b.server_pid())).then_some(())
    });
    b.aws_json_in(
        "cloudwatch",
        &["delete-alarms", "--alarm-names", "through-a"],
    );
    assert!(alarms(&b, &["through-b"]).is_some());
}

/// The scaling activities of `id`, through `api`.
fn activities(api: &Api, id: &str) -> Vec<Value> {
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
    acts["ScalingActivities"].as_array().unwrap().clone()
}

/// The activities of `id` whose cause names scheduled action `action`, through `api`.
fn scheduled_runs(api: &Api, id: &str, action: &str) -> usize {
    let cause = format!("scheduled action name {action} was triggered");
    activities(api, id)
        .iter()
        .filter(|a| a["Cause"] == cause.as_str())
        .count()
}

#[test]
fn a_scheduled_action_put_through_one_serve_runs_once_with_two_serves_alive() {
    let etcd = Etcd::start();
    let (leader, other) = two_serves(&etcd);
    register(
        &other,
        "idle.json",
        r#"{"family": "idle", "requiresCompatibilities": ["EC2"], "cpu": "256", "memory": "128",
  "containerDefinitions": [{"name": "main", "image": "public.ecr.aws/docker/library/busybox:1.36",
    "command": ["sleep", "300"], "essential": true}]}"#,
    );
    other.aws_json(&["create-cluster", "--cluster-name", "default"]);
    other.aws_json(&[
        "create-service",
        "--service-name",
        "idle",
        "--task-definition",
        "idle",
        "--desired-count",
        "0",
        "--launch-type",
        "EC2",
    ]);
    let id = "service/default/idle";
    other.aws_json_in(
        "application-autoscaling",
        &[
            &["register-scalable-target", "--resource-id", id][..],
            TARGET,
            &["--min-capacity", "0", "--max-capacity", "2"],
        ]
        .concat(),
    );
    // Two one-time actions through the serve that does not lead: the second one's run
    // says the first one's time is well past on both serves.
    let at = |secs: i64| {
        let t = chrono::Utc::now() + chrono::Duration::seconds(secs);
        format!("at({})", t.format("%Y-%m-%dT%H:%M:%S"))
    };
    // Times well after the puts (an AWS CLI call takes seconds on a busy box): an `at`
    // before its put never runs.
    for (name, secs, max) in [("first", 15, "3"), ("second", 25, "4")] {
        other.aws_json_in(
            "application-autoscaling",
            &[
                &["put-scheduled-action", "--scheduled-action-name", name][..],
                &["--resource-id", id, "--schedule", &at(secs)],
                TARGET,
                &[
                    "--scalable-target-action",
                    &format!("MinCapacity=0,MaxCapacity={max}"),
                ],
            ]
            .concat(),
        );
    }
    for api in [&leader, &other] {
        api.wait_for(60, "the second action run", || {
            (scheduled_runs(api, id, "second") == 1).then_some(())
        });
        assert_eq!(
            scheduled_runs(api, id, "first"),
            1,
            "the first action ran once"
        );
        let t = api.aws_json_in(
            "application-autoscaling",
            &[
                &["describe-scalable-targets", "--resource-ids", id][..],
                &["--service-namespace", "ecs"],
            ]
            .concat(),
        );
        assert_eq!(t["ScalableTargets"][0]["MaxCapacity"], 4, "{t:#}");
    }
}
