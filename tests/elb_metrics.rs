//! Root integration tests of the load balancers' CloudWatch metrics, with the real AWS CLI
//! against `minifargate serve`: requests through an application load balancer to an ECS
//! service's tasks come back from `aws cloudwatch get-metric-statistics` as
//! `AWS/ApplicationELB` RequestCount, HTTPCode_Target_2XX_Count, TargetResponseTime,
//! HealthyHostCount and RequestCountPerTarget with ELB's dimensions, the load balancer's
//! own answers as HTTPCode_ELB_*; and an Application Auto Scaling target tracking policy
//! on `ALBRequestCountPerTarget` scales the service out under request load. The box's
//! metric period is 5 s.

use crate::common;

use common::api::Api;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

fn s(v: &Value) -> &str {
    v.as_str().unwrap()
}

/// A service task answering `GET /` on 8080 (busybox httpd).
fn web_def(family: &str) -> String {
    format!(
        r#"{{"family":"{family}","networkMode":"awsvpc","cpu":"256","memory":"512",
  "containerDefinitions":[{{"name":"web","image":"public.ecr.aws/docker/library/busybox:1.36",
    "essential":true,"portMappings":[{{"containerPort":8080}}],
    "command":["sh","-c","mkdir -p /www && echo ok > /www/index.html && trap 'exit 0' TERM; httpd -f -p 8080 -h /www & wait"]}}]}}"#
    )
}

/// The Sum of `metric` over the last 10 minutes (one 10-minute period), by `dims`.
fn sum(api: &Api, metric: &str, dims: &[(&str, &str)], stat: &str) -> Option<f64> {
    let now = chrono::Utc::now();
    let iso = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let dims: Vec<String> = dims
        .iter()
        .map(|(k, v)| format!("Name={k},Value={v}"))
        .collect();
    let mut args = vec![
        "get-metric-statistics",
        "--namespace",
        "AWS/ApplicationELB",
        "--metric-name",
        metric,
        "--statistics",
        stat,
        "--period",
        "600",
    ];
    let (start, end) = (
        iso(now - chrono::Duration::minutes(9)),
        iso(now + chrono::Duration::minutes(1)),
    );
    args.extend(["--start-time", &start, "--end-time", &end, "--dimensions"]);
    args.extend(dims.iter().map(String::as_str));
    let v = api.aws_json_in("cloudwatch", &args);
    v["Datapoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d[stat].as_f64().unwrap())
        .reduce(|a, b| a + b)
}

/// Requests to `url` from a thread, many to one curl (kept-alive), until stopped.
fn load(url: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            let urls: Vec<&str> = std::iter::repeat_n(url.as_str(), 50).collect();
            let _ = std::process::Command::new("curl")
                .args(["-s", "-o", "/dev/null", "--noproxy", "*", "-m", "10"])
                .args(&urls)
                .stdout(std::process::Stdio::null())
                .status();
        }
    })
}

#[test]
fn alb_traffic_is_counted_in_cloudwatch_and_scales_a_service_on_request_count_per_target() {
    let api = Api::start_env(
        common::image::busybox_layer(common::image::Compression::Gzip, "serve"),
        &[],
        &[("MINIFARGATE_METRICS_PERIOD", "5")],
    );
    let lb = common::elb::create_alb(&api, "metered");
    let (lb_arn, ip) = (lb.arn, lb.ip);
    let tg_arn = common::elb::http_target_group(&api, "metered", 2);
    let port = common::util::free_port();
    common::elb::http_listener(&api, &lb_arn, &port.to_string(), &tg_arn);
    // ELB's dimension values: the ARNs' ends.
    let lb_dim = lb_arn.split_once(":loadbalancer/").unwrap().1.to_string();
    let tg_dim = tg_arn.rsplit(':').next().unwrap().to_string();
    assert!(lb_dim.starts_with("app/metered/"), "{lb_dim}");
    assert!(tg_dim.starts_with("targetgroup/metered/"), "{tg_dim}");

    let f = api.file("web.json", &web_def("web"));
    api.aws_json(&["register-task-definition", "--cli-input-json", &f]);
    api.aws_json(&["create-cluster", "--cluster-name", "default"]);
    let lbs = format!("targetGroupArn={tg_arn},containerName=web,containerPort=8080");
    api.aws_json(&[
        "create-service",
        "--service-name",
        "web",
        "--task-definition",
        "web",
        "--desired-count",
        "1",
        "--load-balancers",
        &lbs,
    ]);
    let url = format!("http://{ip}:{port}/");
    api.wait_for(90, "a healthy target", || {
        let h = api.aws_json_in(
            "elbv2",
            &["describe-target-health", "--target-group-arn", &tg_arn],
        );
        (h["TargetHealthDescriptions"][0]["TargetHealth"]["State"] == "healthy").then_some(())
    });

    // Target tracking on the requests per target: 20 a period (5 s here).
    let id = "service/default/web";
    let target = [
        "--service-namespace",
        "ecs",
        "--scalable-dimension",
        "ecs:service:DesiredCount",
        "--resource-id",
        id,
    ];
    api.aws_json_in(
        "application-autoscaling",
        &[
            &["register-scalable-target"][..],
            &target,
            &["--min-capacity", "1", "--max-capacity", "3"],
        ]
        .concat(),
    );
    let bad = api.aws_in(
        "application-autoscaling",
        &[
            &["put-scaling-policy", "--policy-name", "req"][..],
            &target,
            &[
                "--policy-type",
                "TargetTrackingScaling",
                "--target-tracking-scaling-policy-configuration",
                r#"{"TargetValue":20,"PredefinedMetricSpecification":{"PredefinedMetricType":"ALBRequestCountPerTarget","ResourceLabel":"metered"}}"#,
            ],
        ]
        .concat(),
    );
    let e = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success() && e.contains("(ValidationException)"),
        "{e}"
    );
    let label = format!("{lb_dim}/{tg_dim}");
    let put = api.aws_json_in("application-autoscaling",
        &[
            &["put-scaling-policy", "--policy-name", "req"][..],
            &target,
            &[
                "--policy-type",
                "TargetTrackingScaling",
                "--target-tracking-scaling-policy-configuration",
                &format!(
                    r#"{{"TargetValue":20,"PredefinedMetricSpecification":{{"PredefinedMetricType":"ALBRequestCountPerTarget","ResourceLabel":"{label}"}}}}"#
                ),
            ],
        ]
        .concat(),
    );
    let high = put["Alarms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| s(&a["AlarmName"]).to_string())
        .find(|n| n.contains("-AlarmHigh-"))
        .unwrap();
    let a = api.aws_json_in("cloudwatch", &["describe-alarms", "--alarm-names", &high]);
    let a = &a["MetricAlarms"][0];
    assert_eq!(a["Namespace"], "AWS/ApplicationELB", "{a:#}");
    assert_eq!(a["MetricName"], "RequestCountPerTarget");
    assert_eq!(a["Statistic"], "Sum");
    let mut dims: Vec<(String, String)> = a["Dimensions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (s(&d["Name"]).to_string(), s(&d["Value"]).to_string()))
        .collect();
    dims.sort();
    assert_eq!(
        dims,
        [
            ("LoadBalancer".to_string(), lb_dim.clone()),
            ("TargetGroup".to_string(), tg_dim.clone())
        ]
    );

    // Request load: well above 20 a period for one target.
    let stop = Arc::new(AtomicBool::new(false));
    let loader = load(url.clone(), stop.clone());
    let scaled = api.wait_for(120, "the service scaled out on its request count", || {
        let s = api.service("default", "web");
        (s["desiredCount"].as_i64().unwrap() > 1).then_some(s)
    });
    stop.store(true, Ordering::SeqCst);
    loader.join().unwrap();
    // The last counts are published at the next sample (a third of the 5 s period); a
    // request and its answer may fall on either side of one sample.
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(scaled["desiredCount"].as_i64().unwrap() <= 3, "{scaled:#}");
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
    let cause = s(&acts["ScalingActivities"][0]["Cause"]);
    assert!(
        cause.starts_with("monitor alarm TargetTracking-service/default/web-AlarmHigh-")
            && cause.ends_with(" in state ALARM triggered policy req"),
        "{cause}"
    );

    // What CloudWatch has of the traffic, by ELB's dimensions.
    let by_lb = [("LoadBalancer", lb_dim.as_str())];
    let by_both = [
        ("LoadBalancer", lb_dim.as_str()),
        ("TargetGroup", tg_dim.as_str()),
    ];
    let requests = sum(&api, "RequestCount", &by_lb, "Sum").unwrap_or(0.0);
    assert!(requests >= 100.0, "RequestCount {requests}");
    let ok = sum(&api, "HTTPCode_Target_2XX_Count", &by_lb, "Sum").unwrap_or(0.0);
    assert!(ok >= 100.0 && ok <= requests, "2XX {ok} of {requests}");
    let in_group = sum(&api, "RequestCount", &by_both, "Sum").unwrap_or(0.0);
    assert!(in_group >= 100.0, "{in_group}");
    let per_target = sum(&api, "RequestCountPerTarget", &by_both, "Sum").unwrap_or(0.0);
    assert!(
        per_target > 0.0 && per_target <= in_group,
        "{per_target} of {in_group}"
    );
    let rt = sum(&api, "TargetResponseTime", &by_lb, "Average").unwrap();
    assert!(rt > 0.0 && rt < 10.0, "TargetResponseTime {rt} s");
    let healthy = sum(&api, "HealthyHostCount", &by_both, "Maximum").unwrap();
    assert!(healthy >= 1.0, "HealthyHostCount {healthy}");
    assert_eq!(sum(&api, "HTTPCode_ELB_5XX_Count", &by_lb, "Sum"), None);

    // The load balancer's own answers: 503 once the group has no target.
    api.aws_json(&["delete-service", "--service", "web", "--force"]);
    api.wait_for(60, "no registered target", || {
        let h = api.aws_json_in(
            "elbv2",
            &["describe-target-health", "--target-group-arn", &tg_arn],
        );
        h["TargetHealthDescriptions"]
            .as_array()
            .unwrap()
            .is_empty()
            .then_some(())
    });
    assert_eq!(common::elb::get(&url).0, 503);
    let elb5xx = api.wait_for(30, "HTTPCode_ELB_5XX_Count", || {
        sum(&api, "HTTPCode_ELB_5XX_Count", &by_lb, "Sum")
    });
    assert_eq!(elb5xx, 1.0);

    // A request that does not comply with RFC 7230 (a GET with `Content-Length: 0`,
    // Acceptable to ALB's desync mitigation) counts in
    // DesyncMitigationMode_NonCompliant_Request_Count; none of the requests before did.
    let non_compliant = "DesyncMitigationMode_NonCompliant_Request_Count";
    assert_eq!(sum(&api, non_compliant, &by_lb, "Sum"), None);
    assert_eq!(
        common::elb::get_with(&url, &["-H", "Content-Length: 0"]).0,
        503
    );
    let counted = api.wait_for(30, non_compliant, || {
        sum(&api, non_compliant, &by_lb, "Sum")
    });
    assert_eq!(counted, 1.0);
}
