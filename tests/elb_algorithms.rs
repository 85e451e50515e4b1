//! Root integration tests of how the load balancers spread real traffic beyond round
//! robin, through the real AWS CLI against `serve`: a target group's routing algorithm
//! (`load_balancing.algorithm.type` `least_outstanding_requests`, `weighted_random` and its
//! anomaly mitigation) and a network load balancer's `source_ip` stickiness.

use crate::common;

use common::api::Api;
use common::elb::Targets;
use common::elb::elbv2 as elb_json;
use serde_json::Value;
use std::collections::BTreeMap;

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

/// A target group `name` of `protocol` (`ip` targets) health checked over HTTP at
/// `/health` every 5 s, healthy after 2 passed checks, no deregistration delay, with
/// `t`'s targets registered; it waits until they are healthy: its ARN.
fn group(api: &Api, name: &str, protocol: &str, t: &Targets) -> String {
    let tg = elb_json(
        api,
        &[
            "create-target-group",
            "--name",
            name,
            "--protocol",
            protocol,
            "--port",
            "80",
            "--vpc-id",
            "vpc-1",
            "--target-type",
            "ip",
            "--health-check-protocol",
            "HTTP",
            "--health-check-path",
            "/health",
            "--health-check-interval-seconds",
            "5",
            "--health-check-timeout-seconds",
            "2",
            "--healthy-threshold-count",
            "2",
            "--unhealthy-threshold-count",
            "2",
        ],
    );
    let arn = s(&tg["TargetGroups"][0]["TargetGroupArn"]).to_string();
    set_attributes(
        api,
        &arn,
        &["Key=deregistration_delay.timeout_seconds,Value=0"],
    );
    let targets: Vec<String> = t
        .ports
        .iter()
        .map(|p| format!("Id=127.0.0.1,Port={p}"))
        .collect();
    let mut args = vec!["register-targets", "--target-group-arn", &arn, "--targets"];
    args.extend(targets.iter().map(String::as_str));
    elb_json(api, &args);
    arn
}

fn healthy(api: &Api, tg: &str, n: usize) {
    api.wait_for(40, &format!("{n} healthy targets"), || {
        let h = elb_json(api, &["describe-target-health", "--target-group-arn", tg]);
        (h["TargetHealthDescriptions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["TargetHealth"]["State"] == "healthy")
            .count()
            == n)
            .then_some(())
    });
}

fn set_attributes(api: &Api, tg: &str, attrs: &[&str]) -> Value {
    let mut args = vec![
        "modify-target-group-attributes",
        "--target-group-arn",
        tg,
        "--attributes",
    ];
    args.extend(attrs);
    elb_json(api, &args)
}

fn attributes_err(api: &Api, tg: &str, attrs: &[&str]) -> String {
    let mut args = vec![
        "modify-target-group-attributes",
        "--target-group-arn",
        tg,
        "--attributes",
    ];
    args.extend(attrs);
    let out = api.aws_in("elbv2", &args);
    assert!(!out.status.success(), "{args:?} should have failed");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// An application load balancer with an HTTP listener forwarding to `tg`: (its address,
/// the listener's port).
fn alb(api: &Api, name: &str, tg: &str) -> (String, u16) {
    let lb = common::elb::create_alb(api, name);
    let port = common::util::free_port();
    common::elb::http_listener(api, &lb.arn, &port.to_string(), tg);
    api.wait_for(10, "the listener", || {
        std::net::TcpStream::connect((lb.ip.as_str(), port)).ok()
    });
    (lb.ip, port)
}

/// Python's http.client through the listener: `workers` threads, each on its own
/// kept-alive connection sending `GET /` for `secs` seconds or `per_worker` requests,
/// whichever ends first: the answers as [name, status] in the order they came.
fn load(ip: &str, port: u16, workers: usize, per_worker: usize, secs: f64) -> Vec<(String, u16)> {
    let py = format!(
        r#"
import http.client, json, threading, time
out, lock = [], threading.Lock()
end = time.time() + {secs}
def work():
    c = http.client.HTTPConnection("{ip}", {port}, timeout=20)
    for i in range({per_worker}):
        if time.time() > end:
            break
        c.request("GET", "/")
        r = c.getresponse()
        name = json.loads(r.read())["name"]
        with lock:
            out.append([name, r.status])
ts = [threading.Thread(target=work) for _ in range({workers})]
for t in ts: t.start()
for t in ts: t.join()
print(json.dumps(out))
"#
    );
    let out = std::process::Command::new("python3")
        .args(["-c", &py])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn counts(answers: &[(String, u16)]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for (n, _) in answers {
        *m.entry(n.clone()).or_default() += 1;
    }
    m
}

/// `least_outstanding_requests`: a target that answers slowly keeps its requests in flight,
/// so concurrent clients' new requests go to the others; slow start is refused with it, as
/// ELB refuses it.
#[test]
fn least_outstanding_requests_sends_new_requests_away_from_a_slow_target() {
    let api = Api::start();
    let t = Targets::start(&["a", "b", "c"]);
    let tg = group(&api, "lor", "HTTP", &t);
    let (ip, port) = alb(&api, "lor", &tg);
    healthy(&api, &tg, 3);
    set_attributes(
        &api,
        &tg,
        &["Key=load_balancing.algorithm.type,Value=least_outstanding_requests"],
    );
    t.slow("a", true);
    // 4 clients sending for 6 s: round robin would send a third of the requests to the
    // slow target (and hold each client there 2 s a time).
    let answers = load(&ip, port, 4, 100_000, 6.0);
    let n = counts(&answers);
    let share = n.get("a").copied().unwrap_or(0) as f64 / answers.len() as f64;
    eprintln!("least outstanding requests, a slow: {n:?} (a's share {share:.3})");
    assert!(answers.len() > 30, "{n:?}");
    assert!(
        share < 0.1,
        "the slow target gets few of the requests: {n:?}"
    );
    assert!(answers.iter().all(|(_, code)| *code == 200), "{answers:?}");
    t.slow("a", false);

    // Slow start goes with round robin only.
    let e = attributes_err(&api, &tg, &["Key=slow_start.duration_seconds,Value=30"]);
    assert!(
        e.contains("(InvalidConfigurationRequest)")
            && e.contains(
                "You cannot enable both slow start and least outstanding requests algorithm on a target group"
            ),
        "{e}"
    );
    let e = attributes_err(
        &api,
        &tg,
        &[
            "Key=load_balancing.algorithm.type,Value=weighted_random",
            "Key=slow_start.duration_seconds,Value=30",
        ],
    );
    assert!(
        e.contains("(InvalidConfigurationRequest)")
            && e.contains("slow start and weighted random algorithm"),
        "{e}"
    );
    // Nothing of a refused call is kept.
    let a = elb_json(
        &api,
        &[
            "describe-target-group-attributes",
            "--target-group-arn",
            &tg,
        ],
    );
    let attr = |k: &str| common::elb::attribute(&a, k);
    assert_eq!(
        attr("load_balancing.algorithm.type").as_deref(),
        Some("least_outstanding_requests")
    );
    assert_eq!(attr("slow_start.duration_seconds").as_deref(), Some("0"));
    set_attributes(
        &api,
        &tg,
        &[
            "Key=load_balancing.algorithm.type,Value=round_robin",
            "Key=slow_start.duration_seconds,Value=30",
        ],
    );
}

/// `weighted_random`: each request to a random target (every target gets a share, not in
/// turn); with anomaly mitigation, a target that passes its health checks but answers
/// 500 gets less and less traffic, and its share comes back once it answers well again.
#[test]
fn weighted_random_spreads_requests_and_anomaly_mitigation_lowers_an_erring_target() {
    let api = Api::start();
    let t = Targets::start(&["a", "b", "c"]);
    let tg = group(&api, "random", "HTTP", &t);
    let (ip, port) = alb(&api, "random", &tg);
    healthy(&api, &tg, 3);
    set_attributes(
        &api,
        &tg,
        &["Key=load_balancing.algorithm.type,Value=weighted_random"],
    );
    let answers = load(&ip, port, 1, 300, 120.0);
    let n = counts(&answers);
    eprintln!("weighted random, 300 requests: {n:?}");
    for name in ["a", "b", "c"] {
        let k = n.get(name).copied().unwrap_or(0);
        assert!((50..=150).contains(&k), "{name} gets a share: {n:?}");
    }
    // Not in turn: round robin would repeat a, b, c (in some order) throughout.
    let names: Vec<&str> = answers.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        names.windows(4).any(|w| w[0] != w[3]),
        "random, not in turn: {names:?}"
    );

    // Anomaly mitigation: c answers 500 while its health checks pass.
    set_attributes(
        &api,
        &tg,
        &["Key=load_balancing.algorithm.anomaly_mitigation,Value=on"],
    );
    t.bad("c", true);
    let warm = load(&ip, port, 2, 100_000, 8.0);
    let c_errors = warm
        .iter()
        .filter(|(n, code)| n == "c" && *code == 500)
        .count();
    assert!(c_errors > 0, "c answered 500: {:?}", counts(&warm));
    let answers = load(&ip, port, 2, 100_000, 4.0);
    let n = counts(&answers);
    let share = n.get("c").copied().unwrap_or(0) as f64 / answers.len() as f64;
    eprintln!(
        "anomaly mitigation, c erring: {n:?} of {} (c's share {share:.3})",
        answers.len()
    );
    assert!(share < 0.1, "the erring target's traffic is lowered: {n:?}");
    // DescribeTargetHealth says so when asked.
    let h = elb_json(
        &api,
        &[
            "describe-target-health",
            "--target-group-arn",
            &tg,
            "--include",
            "AnomalyDetection",
        ],
    );
    for d in h["TargetHealthDescriptions"].as_array().unwrap() {
        let c = d["Target"]["Port"] == u64::from(t.ports[2]);
        let want = if c {
            serde_json::json!({"Result": "anomalous", "MitigationInEffect": "yes"})
        } else {
            serde_json::json!({"Result": "normal", "MitigationInEffect": "no"})
        };
        assert_eq!(d["AnomalyDetection"], want, "{h}");
        assert_eq!(d["TargetHealth"]["State"], "healthy", "{h}");
    }
    let h = elb_json(&api, &["describe-target-health", "--target-group-arn", &tg]);
    assert!(
        h["TargetHealthDescriptions"][0]["AnomalyDetection"].is_null(),
        "only when asked: {h}"
    );
    // c answers well again: its share grows back.
    t.bad("c", false);
    let back = api.wait_for(40, "c's share back", || {
        let answers = load(&ip, port, 2, 100_000, 2.0);
        let n = counts(&answers);
        let share = n.get("c").copied().unwrap_or(0) as f64 / answers.len() as f64;
        (share > 0.25).then_some(share)
    });
    eprintln!("anomaly mitigation, c recovered: share {back:.3}");
}

/// A client's TCP connection through the listener from source address `from`: the name of
/// the target that answered `GET /`.
fn name_from(from: &str, ip: &str, port: u16) -> String {
    let py = format!(
        r#"
import json, socket
s = socket.socket()
s.settimeout(10)
s.bind(("{from}", 0))
s.connect(("{ip}", {port}))
s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
data = b""
while True:
    b = s.recv(65536)
    if not b:
        break
    data += b
print(json.loads(data.split(b"\r\n\r\n", 1)[1])["name"])
"#
    );
    let out = std::process::Command::new("python3")
        .args(["-c", &py])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A network load balancer's TCP group with `source_ip` stickiness: every connection from
/// one client address lands on one target while it stays healthy, then on another one.
#[test]
fn source_ip_stickiness_keeps_a_client_address_on_one_target() {
    let api = Api::start();
    let t = Targets::start(&["x", "y", "z"]);
    let lb = elb_json(
        &api,
        &[
            "create-load-balancer",
            "--name",
            "sticky-nlb",
            "--type",
            "network",
        ],
    );
    let lb = &lb["LoadBalancers"][0];
    let lb_arn = s(&lb["LoadBalancerArn"]).to_string();
    let ip = s(&lb["AvailabilityZones"][0]["LoadBalancerAddresses"][0]["IpAddress"]).to_string();
    let tg = group(&api, "sticky-nlb", "TCP", &t);
    let port = common::util::free_port();
    elb_json(
        &api,
        &[
            "create-listener",
            "--load-balancer-arn",
            &lb_arn,
            "--protocol",
            "TCP",
            "--port",
            &port.to_string(),
            "--default-actions",
            &format!("Type=forward,TargetGroupArn={tg}"),
        ],
    );
    healthy(&api, &tg, 3);
    set_attributes(
        &api,
        &tg,
        &[
            "Key=stickiness.enabled,Value=true",
            "Key=stickiness.type,Value=source_ip",
        ],
    );
    let clients = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"];
    let mut first = BTreeMap::new();
    for c in clients {
        let names: Vec<String> = (0..5).map(|_| name_from(c, &ip, port)).collect();
        assert!(
            names.iter().all(|n| *n == names[0]),
            "client {c} stays on one target: {names:?}"
        );
        first.insert(c, names[0].clone());
    }
    let mut spread: Vec<&String> = first.values().collect();
    spread.sort();
    spread.dedup();
    assert!(spread.len() >= 2, "clients spread over targets: {first:?}");
    // The first client's target turns unhealthy: it moves to another one, and stays there.
    let stuck = first["127.0.0.2"].clone();
    t.sick(&stuck, true);
    healthy(&api, &tg, 2);
    let moved = name_from("127.0.0.2", &ip, port);
    assert_ne!(moved, stuck);
    for _ in 0..4 {
        assert_eq!(
            name_from("127.0.0.2", &ip, port),
            moved,
            "stays on its new target"
        );
    }
}

/// The `Maximum` of `metric` (`AWS/ApplicationELB`) over the last 10 minutes by `TargetGroup`
/// and `LoadBalancer` of `tg` and `lb`, as boto3's `get_metric_statistics` gives it (None
/// without a datapoint).
fn alb_max(api: &Api, metric: &str, tg: &str, lb: &str) -> Option<f64> {
    // ELB's dimension values: the ARNs' ends (`targetgroup/<name>/<id>`, `app/<name>/<id>`).
    let dim = |arn: &str, kind: &str| arn.split_once(kind).unwrap().1.to_string();
    let script = format!(
        r#"
import boto3, datetime, json, os
cw = boto3.client("cloudwatch", endpoint_url=os.environ["ENDPOINT"], region_name="us-east-1")
now = datetime.datetime.now(datetime.timezone.utc)
r = cw.get_metric_statistics(Namespace="AWS/ApplicationELB", MetricName="{metric}",
    Dimensions=[{{"Name": "TargetGroup", "Value": "targetgroup/{tg}"}}, {{"Name": "LoadBalancer", "Value": "{lb}"}}],
    StartTime=now - datetime.timedelta(minutes=9), EndTime=now + datetime.timedelta(minutes=1),
    Period=600, Statistics=["Maximum"])
print(json.dumps([d["Maximum"] for d in r["Datapoints"]]))
"#,
        tg = dim(tg, ":targetgroup/"),
        lb = dim(lb, ":loadbalancer/"),
    );
    let v = api.boto3(&script);
    v.as_array()?
        .iter()
        .filter_map(Value::as_f64)
        .reduce(f64::max)
}

/// Each target's `AnomalyDetection` (by port) as `describe-target-health --include
/// AnomalyDetection` answers it.
fn detection(api: &Api, tg: &str) -> BTreeMap<u64, Value> {
    let h = elb_json(
        api,
        &[
            "describe-target-health",
            "--target-group-arn",
            tg,
            "--include",
            "AnomalyDetection",
        ],
    );
    h["TargetHealthDescriptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["Target"]["Port"].as_u64().unwrap(),
                d["AnomalyDetection"].clone(),
            )
        })
        .collect()
}

/// Anomaly detection runs on every HTTP target group (ALB User Guide, "Automatic target
/// weights"), mitigation only on `weighted_random` ones with it on: in a round robin group
/// a target that answers 500 is `anomalous` with `MitigationInEffect` `no` and keeps its
/// share, counted in CloudWatch's `AnomalousHostCount` (`MitigatedHostCount` 0); in a
/// weighted random group with mitigation on, `MitigatedHostCount` counts it.
#[test]
fn anomaly_detection_runs_on_every_http_group_and_its_counts_are_published() {
    let api = Api::start_env(
        common::image::busybox_layer(common::image::Compression::Gzip, "serve"),
        &[],
        &[("MINIFARGATE_METRICS_PERIOD", "5")],
    );
    let t = Targets::start(&["a", "b", "c"]);
    let tg = group(&api, "detected", "HTTP", &t);
    let lb = common::elb::create_alb(&api, "detected");
    let port = common::util::free_port();
    common::elb::http_listener(&api, &lb.arn, &port.to_string(), &tg);
    api.wait_for(10, "the listener", || {
        std::net::TcpStream::connect((lb.ip.as_str(), port)).ok()
    });
    healthy(&api, &tg, 3);
    // Before any traffic: every target normal, no mitigation.
    let normal = serde_json::json!({"Result": "normal", "MitigationInEffect": "no"});
    assert!(detection(&api, &tg).values().all(|d| *d == normal));

    // Round robin (the default): c answers 500 while its health checks pass.
    t.bad("c", true);
    let answers = load(&lb.ip, port, 2, 100_000, 4.0);
    let n = counts(&answers);
    let share = n.get("c").copied().unwrap_or(0) as f64 / answers.len() as f64;
    eprintln!(
        "round robin, c erring: {n:?} of {} (c's share {share:.3})",
        answers.len()
    );
    assert!(
        (0.3..0.37).contains(&share),
        "no mitigation: c keeps its turn: {n:?}"
    );
    let c = u64::from(t.ports[2]);
    let d = detection(&api, &tg);
    for (p, a) in &d {
        let want = if *p == c {
            serde_json::json!({"Result": "anomalous", "MitigationInEffect": "no"})
        } else {
            normal.clone()
        };
        assert_eq!(*a, want, "{d:?}");
    }
    let anomalous = api.wait_for(30, "AnomalousHostCount 1", || {
        alb_max(&api, "AnomalousHostCount", &tg, &lb.arn).filter(|m| *m == 1.0)
    });
    let mitigated = alb_max(&api, "MitigatedHostCount", &tg, &lb.arn);
    eprintln!("round robin: AnomalousHostCount {anomalous}, MitigatedHostCount {mitigated:?}");
    assert_eq!(mitigated, Some(0.0));

    // Weighted random with mitigation on: c's weight lowered, counted as mitigated.
    set_attributes(
        &api,
        &tg,
        &[
            "Key=load_balancing.algorithm.type,Value=weighted_random",
            "Key=load_balancing.algorithm.anomaly_mitigation,Value=on",
        ],
    );
    let answers = load(&lb.ip, port, 2, 100_000, 6.0);
    let n = counts(&answers);
    eprintln!("weighted random with mitigation, c erring: {n:?}");
    let d = detection(&api, &tg);
    assert_eq!(
        d[&c],
        serde_json::json!({"Result": "anomalous", "MitigationInEffect": "yes"}),
        "{d:?}"
    );
    let mitigated = api.wait_for(30, "MitigatedHostCount 1", || {
        alb_max(&api, "MitigatedHostCount", &tg, &lb.arn).filter(|m| *m == 1.0)
    });
    eprintln!("weighted random with mitigation: MitigatedHostCount {mitigated}");
}
