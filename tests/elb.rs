//! Root integration tests of the Elastic Load Balancing v2 API on `serve`'s listener,
//! driven by the real AWS CLI (`aws elbv2 … --endpoint-url`) and boto3: load balancers,
//! target groups with ELB's health-check defaults and bounds, attributes, targets and
//! their health, listeners, ELB's error codes in awsQuery's ErrorResponse.

use crate::common;

use common::api::Api;
use common::elb::Targets;
use common::elb::elbv2 as elb_json;
use common::elb::get;
use serde_json::Value;

fn elb_err(api: &Api, args: &[&str]) -> String {
    let out = api.aws_in("elbv2", args);
    assert!(
        !out.status.success(),
        "aws elbv2 {args:?} should have failed"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

#[test]
fn load_balancers_target_groups_listeners_and_targets_through_the_cli() {
    let api = Api::start();

    // A load balancer: ARN and DNS name as AWS forms them.
    let lb = elb_json(
        &api,
        &[
            "create-load-balancer",
            "--name",
            "web-lb",
            "--subnets",
            "subnet-aaaa",
            "subnet-bbbb",
            "--tags",
            "Key=team,Value=web",
        ],
    );
    let lb = &lb["LoadBalancers"][0];
    let lb_arn = s(&lb["LoadBalancerArn"]).to_string();
    assert!(
        lb_arn.starts_with("arn:aws:elasticloadbalancing:us-east-1:")
            && lb_arn.contains(":loadbalancer/app/web-lb/"),
        "{lb_arn}"
    );
    let dns = s(&lb["DNSName"]);
    assert!(
        dns.starts_with("web-lb-") && dns.ends_with(".us-east-1.elb.amazonaws.com"),
        "{dns}"
    );
    assert_eq!(lb["Type"], "application");
    assert_eq!(lb["Scheme"], "internet-facing");
    assert_eq!(lb["State"]["Code"], "provisioning");
    assert_eq!(lb["AvailabilityZones"].as_array().unwrap().len(), 2);
    let err = elb_err(&api, &["create-load-balancer", "--name", "web-lb"]);
    assert!(err.contains("(DuplicateLoadBalancerName)"), "{err}");
    let err = elb_err(&api, &["create-load-balancer", "--name", "bad_name"]);
    assert!(err.contains("(ValidationError)"), "{err}");

    let nlb = elb_json(
        &api,
        &[
            "create-load-balancer",
            "--name",
            "tcp-lb",
            "--type",
            "network",
            "--scheme",
            "internal",
        ],
    );
    let nlb = &nlb["LoadBalancers"][0];
    assert!(s(&nlb["LoadBalancerArn"]).contains(":loadbalancer/net/tcp-lb/"));
    let ndns = s(&nlb["DNSName"]);
    assert!(
        ndns.starts_with("internal-tcp-lb-") && ndns.ends_with(".elb.us-east-1.amazonaws.com"),
        "{ndns}"
    );

    let d = elb_json(&api, &["describe-load-balancers", "--names", "web-lb"]);
    assert_eq!(d["LoadBalancers"].as_array().unwrap().len(), 1);
    assert_eq!(d["LoadBalancers"][0]["State"]["Code"], "active");
    assert_eq!(d["LoadBalancers"][0]["LoadBalancerArn"], lb_arn.as_str());
    let err = elb_err(&api, &["describe-load-balancers", "--names", "nope"]);
    assert!(err.contains("(LoadBalancerNotFound)"), "{err}");
    let all = elb_json(&api, &["describe-load-balancers"]);
    assert_eq!(all["LoadBalancers"].as_array().unwrap().len(), 2);

    // A target group: ELB's health-check defaults for HTTP.
    let tg = elb_json(
        &api,
        &[
            "create-target-group",
            "--name",
            "web-tg",
            "--protocol",
            "HTTP",
            "--port",
            "8080",
            "--vpc-id",
            "vpc-1",
            "--target-type",
            "ip",
        ],
    );
    let tg = &tg["TargetGroups"][0];
    let tg_arn = s(&tg["TargetGroupArn"]).to_string();
    assert!(tg_arn.contains(":targetgroup/web-tg/"), "{tg_arn}");
    assert_eq!(tg["HealthCheckProtocol"], "HTTP");
    assert_eq!(tg["HealthCheckPort"], "traffic-port");
    assert_eq!(tg["HealthCheckEnabled"], true);
    assert_eq!(tg["HealthCheckIntervalSeconds"], 30);
    assert_eq!(tg["HealthCheckTimeoutSeconds"], 6);
    assert_eq!(tg["HealthyThresholdCount"], 5);
    assert_eq!(tg["UnhealthyThresholdCount"], 2);
    assert_eq!(tg["HealthCheckPath"], "/");
    assert_eq!(tg["Matcher"]["HttpCode"], "200");
    assert_eq!(tg["TargetType"], "ip");
    assert_eq!(tg["LoadBalancerArns"], serde_json::json!([]));
    // ELB's rules the CLI does not check itself (it checks the model's minimums and
    // maximums before sending): timeout below the interval, matcher codes 200-499, no TCP
    // check of an HTTP group.
    for bad in [
        &["--health-check-protocol", "TCP"][..],
        &[
            "--health-check-timeout-seconds",
            "30",
            "--health-check-interval-seconds",
            "10",
        ],
        &["--matcher", "HttpCode=600"],
    ] {
        let mut args = vec![
            "create-target-group",
            "--name",
            "bad-tg",
            "--protocol",
            "HTTP",
            "--port",
            "80",
            "--vpc-id",
            "vpc-1",
        ];
        args.extend_from_slice(bad);
        let err = elb_err(&api, &args);
        assert!(err.contains("(ValidationError)"), "{bad:?}: {err}");
    }
    let tcp = elb_json(
        &api,
        &[
            "create-target-group",
            "--name",
            "tcp-tg",
            "--protocol",
            "TCP",
            "--port",
            "9000",
            "--vpc-id",
            "vpc-1",
            "--target-type",
            "ip",
        ],
    );
    let tcp = &tcp["TargetGroups"][0];
    assert_eq!(tcp["HealthCheckProtocol"], "TCP");
    assert_eq!(tcp["HealthCheckTimeoutSeconds"], 10);
    assert!(tcp.get("HealthCheckPath").is_none() && tcp.get("Matcher").is_none());

    let m = elb_json(
        &api,
        &[
            "modify-target-group",
            "--target-group-arn",
            &tg_arn,
            "--health-check-path",
            "/health",
            "--health-check-interval-seconds",
            "5",
            "--health-check-timeout-seconds",
            "2",
            "--healthy-threshold-count",
            "2",
            "--matcher",
            "HttpCode=200-299",
        ],
    );
    assert_eq!(m["TargetGroups"][0]["HealthCheckPath"], "/health");
    assert_eq!(m["TargetGroups"][0]["HealthCheckIntervalSeconds"], 5);
    assert_eq!(m["TargetGroups"][0]["Matcher"]["HttpCode"], "200-299");

    // Attributes: the deregistration delay defaults to 300 s, 0-3600.
    let a = elb_json(
        &api,
        &[
            "describe-target-group-attributes",
            "--target-group-arn",
            &tg_arn,
        ],
    );
    let attr = common::elb::attribute;
    assert_eq!(
        attr(&a, "deregistration_delay.timeout_seconds").as_deref(),
        Some("300")
    );
    let a = elb_json(
        &api,
        &[
            "modify-target-group-attributes",
            "--target-group-arn",
            &tg_arn,
            "--attributes",
            "Key=deregistration_delay.timeout_seconds,Value=30",
        ],
    );
    assert_eq!(
        attr(&a, "deregistration_delay.timeout_seconds").as_deref(),
        Some("30")
    );
    let err = elb_err(
        &api,
        &[
            "modify-target-group-attributes",
            "--target-group-arn",
            &tg_arn,
            "--attributes",
            "Key=deregistration_delay.timeout_seconds,Value=3601",
        ],
    );
    assert!(err.contains("(ValidationError)"), "{err}");

    // Targets of a group no listener uses are unused (Target.NotInUse). They are
    // loopback addresses at ports this test holds without ever accepting, so that the
    // health checks once the group is in use never leave the box (a 10.x address went out
    // through its default route) and no other test's server can answer them (a host-mode
    // task at the group's port 8080 did): their checks time out.
    let quiet: Vec<std::net::TcpListener> = ["127.0.0.2", "127.0.0.3"]
        .iter()
        .map(|a| std::net::TcpListener::bind((*a, 0)).unwrap())
        .collect();
    let (p2, p3) = (
        quiet[0].local_addr().unwrap().port(),
        quiet[1].local_addr().unwrap().port(),
    );
    let (t2, t3) = (
        format!("Id=127.0.0.2,Port={p2}"),
        format!("Id=127.0.0.3,Port={p3}"),
    );
    elb_json(
        &api,
        &[
            "register-targets",
            "--target-group-arn",
            &tg_arn,
            "--targets",
            &t2,
            &t3,
            "Id=127.0.0.4",
        ],
    );
    let err = elb_err(
        &api,
        &[
            "register-targets",
            "--target-group-arn",
            &tg_arn,
            "--targets",
            "Id=not-an-ip",
        ],
    );
    // ELB's ValidationError for an id that is not an address (as its users quote it).
    assert!(
        err.contains("(ValidationError)")
            && err.contains("The IP address 'not-an-ip' is not a valid IPv4 address"),
        "{err}"
    );
    let err = elb_err(
        &api,
        &[
            "deregister-targets",
            "--target-group-arn",
            &tg_arn,
            "--targets",
            "Id=10.9.0.300",
        ],
    );
    assert!(
        err.contains("(ValidationError)")
            && err.contains("The IP address '10.9.0.300' is not a valid IPv4 address"),
        "{err}"
    );
    let h = elb_json(
        &api,
        &["describe-target-health", "--target-group-arn", &tg_arn],
    );
    let rows = h["TargetHealthDescriptions"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["Target"]["Port"], p2);
    assert_eq!(rows[1]["Target"]["Port"], p3);
    // A target registered without a port is at the group's.
    assert_eq!(rows[2]["Target"]["Id"], "127.0.0.4");
    assert_eq!(rows[2]["Target"]["Port"], 8080);
    for r in rows {
        assert_eq!(r["TargetHealth"]["State"], "unused");
        assert_eq!(r["TargetHealth"]["Reason"], "Target.NotInUse");
    }
    // (Deregistered from a group not in use: gone at once, no drain.)
    elb_json(
        &api,
        &[
            "deregister-targets",
            "--target-group-arn",
            &tg_arn,
            "--targets",
            "Id=127.0.0.4",
        ],
    );

    // A listener forwarding to it: the group is in use, its targets initial.
    let err = elb_err(
        &api,
        &[
            "create-listener",
            "--load-balancer-arn",
            &lb_arn,
            "--protocol",
            "HTTP",
            "--port",
            "80",
            "--default-actions",
            &format!("Type=forward,TargetGroupArn={}", s(&tcp["TargetGroupArn"])),
        ],
    );
    assert!(err.contains("(IncompatibleProtocols)"), "{err}");
    let listening = std::time::Instant::now();
    let l = elb_json(
        &api,
        &[
            "create-listener",
            "--load-balancer-arn",
            &lb_arn,
            "--protocol",
            "HTTP",
            "--port",
            "80",
            "--default-actions",
            &format!("Type=forward,TargetGroupArn={tg_arn}"),
        ],
    );
    let l = &l["Listeners"][0];
    let l_arn = s(&l["ListenerArn"]).to_string();
    assert!(l_arn.contains(":listener/app/web-lb/"), "{l_arn}");
    assert_eq!(l["DefaultActions"][0]["Type"], "forward");
    assert_eq!(l["DefaultActions"][0]["TargetGroupArn"], tg_arn.as_str());
    let d = elb_json(
        &api,
        &["describe-listeners", "--load-balancer-arn", &lb_arn],
    );
    assert_eq!(d["Listeners"][0]["ListenerArn"], l_arn.as_str());
    let d = elb_json(
        &api,
        &["describe-target-groups", "--load-balancer-arn", &lb_arn],
    );
    assert_eq!(d["TargetGroups"][0]["LoadBalancerArns"][0], lb_arn.as_str());
    let h = elb_json(
        &api,
        &["describe-target-health", "--target-group-arn", &tg_arn],
    );
    // Checked at once when the listener came, failing (nothing answers there): initial
    // until the second failure, an interval (30 s) later, unless this test was that slow.
    let state = &h["TargetHealthDescriptions"][0]["TargetHealth"];
    if listening.elapsed() < std::time::Duration::from_secs(29) {
        assert_eq!(state["State"], "initial", "{h}");
    } else {
        assert!(
            state["State"] == "initial" || state["State"] == "unhealthy",
            "{h}"
        );
    }
    let err = elb_err(
        &api,
        &["delete-target-group", "--target-group-arn", &tg_arn],
    );
    assert!(err.contains("(ResourceInUse)"), "{err}");

    // Deregistering drains for the delay (30 s here); a target never registered is unused.
    elb_json(
        &api,
        &[
            "deregister-targets",
            "--target-group-arn",
            &tg_arn,
            "--targets",
            &t2,
        ],
    );
    let h = elb_json(
        &api,
        &[
            "describe-target-health",
            "--target-group-arn",
            &tg_arn,
            "--targets",
            &t2,
            "Id=127.0.0.9",
        ],
    );
    let rows = h["TargetHealthDescriptions"].as_array().unwrap();
    assert_eq!(rows[0]["TargetHealth"]["State"], "draining");
    assert_eq!(
        rows[0]["TargetHealth"]["Reason"],
        "Target.DeregistrationInProgress"
    );
    assert_eq!(rows[1]["TargetHealth"]["State"], "unused");
    assert_eq!(rows[1]["TargetHealth"]["Reason"], "Target.NotRegistered");

    // boto3 sees the same, and ELB's error codes as its modeled exceptions.
    let v = api.boto3(
        r#"
import boto3, json, os
c = boto3.client("elbv2", endpoint_url=os.environ["ENDPOINT"], region_name="us-east-1")
lbs = c.describe_load_balancers()["LoadBalancers"]
try:
    c.describe_target_groups(TargetGroupArns=["arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/x/0123456789abcdef"])
    err = None
except c.exceptions.TargetGroupNotFoundException as e:
    err = e.response["Error"]["Code"]
try:
    c.delete_listener(ListenerArn="arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/x/1/2")
    err2 = None
except c.exceptions.ListenerNotFoundException as e:
    err2 = e.response["Error"]["Code"]
print(json.dumps({"names": sorted(l["LoadBalancerName"] for l in lbs), "err": err, "err2": err2,
                  "created": str(lbs[0]["CreatedTime"].year)}))
"#,
    );
    assert_eq!(v["names"], serde_json::json!(["tcp-lb", "web-lb"]));
    assert_eq!(v["err"], "TargetGroupNotFound");
    assert_eq!(v["err2"], "ListenerNotFound");
    assert!(v["created"].as_str().unwrap().starts_with("20"));

    // Survives a restart of serve; deleting the load balancer deletes its listeners.
    let mut api = api;
    api.restart();
    let d = elb_json(&api, &["describe-listeners", "--listener-arns", &l_arn]);
    assert_eq!(d["Listeners"][0]["Port"], 80);
    elb_json(
        &api,
        &["delete-load-balancer", "--load-balancer-arn", &lb_arn],
    );
    let err = elb_err(&api, &["describe-listeners", "--listener-arns", &l_arn]);
    assert!(err.contains("(ListenerNotFound)"), "{err}");
    elb_json(
        &api,
        &["delete-target-group", "--target-group-arn", &tg_arn],
    );
    let err = elb_err(&api, &["describe-target-groups", "--names", "web-tg"]);
    assert!(err.contains("(TargetGroupNotFound)"), "{err}");
}

/// `GET url` with curl: (status, body).
/// The distinct bodies of `n` GETs of `url`, each answered 200, sorted.
/// A string that is not an ARN of the kind asked is ELB's `ValidationError` (HTTP 400,
/// "'<it>' is not a valid load balancer ARN"), not the resource's NotFound, for each
/// describe call that takes ARNs; a well-formed ARN naming nothing stays NotFound.
#[test]
fn describe_calls_answer_validation_error_for_a_string_that_is_not_an_arn() {
    let api = Api::start();
    let v = api.boto3(
        r#"
import boto3, json, os
c = boto3.client("elbv2", endpoint_url=os.environ["ENDPOINT"], region_name="us-east-1")
def code(f, **kw):
    try:
        f(**kw)
        return None
    except Exception as e:
        r = e.response
        return [r["Error"]["Code"], r["ResponseMetadata"]["HTTPStatusCode"], r["Error"]["Message"]]
print(json.dumps({
    "lb": code(c.describe_load_balancers, LoadBalancerArns=["web-lb"]),
    "tg": code(c.describe_target_groups, TargetGroupArns=["web-tg"]),
    "tg_lb": code(c.describe_target_groups, LoadBalancerArn="web-lb"),
    "listener": code(c.describe_listeners, ListenerArns=["80"]),
    "listener_lb": code(c.describe_listeners, LoadBalancerArn="web-lb"),
    "health": code(c.describe_target_health, TargetGroupArn="web-tg"),
    "lb_arn_of_nothing": code(c.describe_load_balancers, LoadBalancerArns=[
        "arn:aws:elasticloadbalancing:us-east-1:000000000000:loadbalancer/app/x/0123456789abcdef"]),
}))
"#,
    );
    for (k, what, it) in [
        ("lb", "load balancer", "web-lb"),
        ("tg", "target group", "web-tg"),
        ("tg_lb", "load balancer", "web-lb"),
        ("listener", "listener", "80"),
        ("listener_lb", "load balancer", "web-lb"),
        ("health", "target group", "web-tg"),
    ] {
        assert_eq!(v[k][0], "ValidationError", "{k}: {v:#}");
        assert_eq!(v[k][1], 400, "{k}: {v:#}");
        assert_eq!(
            v[k][2],
            format!("'{it}' is not a valid {what} ARN"),
            "{k}: {v:#}"
        );
    }
    assert_eq!(v["lb_arn_of_nothing"][0], "LoadBalancerNotFound", "{v:#}");
}

fn distinct_answers(url: &str, n: usize) -> Vec<String> {
    let mut bodies: Vec<String> = (0..n)
        .map(|_| {
            let (code, body) = get(url);
            assert_eq!(code, 200, "{body}");
            body
        })
        .collect();
    bodies.sort();
    bodies.dedup();
    bodies
}

fn names_of(url: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| {
            let (code, body) = get(url);
            assert_eq!(code, 200, "{body}");
            let v: Value = serde_json::from_str(&body).unwrap();
            v["name"].as_str().unwrap().to_string()
        })
        .collect()
}

fn health_states(api: &Api, tg: &str) -> Vec<(u64, String, String)> {
    let h = elb_json(api, &["describe-target-health", "--target-group-arn", tg]);
    let mut v: Vec<(u64, String, String)> = h["TargetHealthDescriptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["Target"]["Port"].as_u64().unwrap(),
                d["TargetHealth"]["State"].as_str().unwrap().to_string(),
                d["TargetHealth"]["Reason"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

/// An HTTP target group `name` of `ip` targets checked at `/health` (what [`Targets::sick`]
/// fails) every 5 s, healthy after 2 passed checks and unhealthy after 2 failed: its ARN.
fn checked_group(api: &Api, name: &str) -> String {
    let tg = elb_json(
        api,
        &[
            "create-target-group",
            "--name",
            name,
            "--protocol",
            "HTTP",
            "--port",
            "80",
            "--vpc-id",
            "vpc-1",
            "--target-type",
            "ip",
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
    s(&tg["TargetGroups"][0]["TargetGroupArn"]).to_string()
}

#[test]
fn an_http_listener_balances_over_healthy_targets_and_fails_open() {
    let api = Api::start();
    let t = Targets::start(&["a", "b", "c"]);
    let lb = elb_json(&api, &["create-load-balancer", "--name", "traffic"]);
    let lb = &lb["LoadBalancers"][0];
    let lb_arn = s(&lb["LoadBalancerArn"]).to_string();
    let ip = s(&lb["AvailabilityZones"][0]["LoadBalancerAddresses"][0]["IpAddress"]).to_string();
    assert!(ip.starts_with("10.93."), "{ip}");
    let tg_arn = checked_group(&api, "traffic");
    elb_json(
        &api,
        &[
            "modify-target-group-attributes",
            "--target-group-arn",
            &tg_arn,
            "--attributes",
            "Key=deregistration_delay.timeout_seconds,Value=6",
        ],
    );
    let port = common::util::free_port();
    elb_json(
        &api,
        &[
            "create-listener",
            "--load-balancer-arn",
            &lb_arn,
            "--protocol",
            "HTTP",
            "--port",
            &port.to_string(),
            "--default-actions",
            &format!("Type=forward,TargetGroupArn={tg_arn}"),
        ],
    );
    let url = format!("http://{ip}:{port}/hello?x=1");
    // No registered target: ALB's 503.
    api.wait_for(10, "the listener", || {
        std::net::TcpStream::connect((ip.as_str(), port)).ok()
    });
    let (code, body) = get(&url);
    assert_eq!(code, 503, "{body}");

    let targets: Vec<String> = t
        .ports
        .iter()
        .map(|p| format!("Id=127.0.0.1,Port={p}"))
        .collect();
    let mut args = vec![
        "register-targets",
        "--target-group-arn",
        &tg_arn,
        "--targets",
    ];
    args.extend(targets.iter().map(String::as_str));
    elb_json(&api, &args);
    api.wait_for(20, "3 healthy targets", || {
        health_states(&api, &tg_arn)
            .iter()
            .all(|(_, s, _)| s == "healthy")
            .then_some(())
    });

    // Round robin over the three, with the X-Forwarded headers.
    let mut names = names_of(&url, 6);
    names.sort();
    assert_eq!(names, ["a", "a", "b", "b", "c", "c"]);
    let (_, body) = get(&url);
    let v: Value = serde_json::from_str(&body).unwrap();
    // The box reaches the load balancer's address from that address itself.
    assert_eq!(v["xff"], ip.as_str());
    assert_eq!(v["proto"], "http");
    assert_eq!(v["port"], port.to_string());
    assert_eq!(v["path"], "/hello?x=1");
    assert_eq!(v["host"], format!("{ip}:{port}"));

    // Keep-alive: one client connection, many requests.
    let py = format!(
        r#"
import http.client, json
c = http.client.HTTPConnection("{ip}", {port}, timeout=10)
seen = []
for i in range(9):
    c.request("GET", "/")
    r = c.getresponse()
    seen.append(json.loads(r.read())["name"])
# Targets that close their connection after each answer: the client's stays open.
for i in range(6):
    c.request("GET", "/close")
    r = c.getresponse()
    assert r.getheader("Connection") is None, r.getheaders()
    r.read()
    assert c.sock is not None, "the load balancer closed the client's connection"
# A big answer from a target that closes its connection after it arrives whole.
for i in range(3):
    c.request("GET", "/close-big")
    r = c.getresponse()
    b = r.read()
    assert len(b) == int(r.getheader("Content-Length")), (len(b), r.getheaders())
    assert len(json.loads(b)["pad"]) == 4000000, len(b)
print(json.dumps(sorted(seen)))
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
    let seen: Vec<String> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(seen, ["a", "a", "a", "b", "b", "b", "c", "c", "c"]);

    // c fails its health check: unhealthy with ELB's reason, then no request reaches it.
    t.sick("c", true);
    let c_port = t.ports[2] as u64;
    api.wait_for(20, "c unhealthy", || {
        health_states(&api, &tg_arn)
            .into_iter()
            .find(|(p, s, _)| *p == c_port && s == "unhealthy")
    });
    let h = elb_json(
        &api,
        &["describe-target-health", "--target-group-arn", &tg_arn],
    );
    let c = h["TargetHealthDescriptions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["Target"]["Port"] == c_port)
        .unwrap()
        .clone();
    assert_eq!(c["TargetHealth"]["Reason"], "Target.ResponseCodeMismatch");
    assert_eq!(
        c["TargetHealth"]["Description"],
        "Health checks failed with these codes: [503]"
    );
    let names = names_of(&url, 8);
    assert!(!names.contains(&"c".to_string()), "{names:?}");

    // Every target unhealthy: ELB fails open, all three answer.
    t.sick("a", true);
    t.sick("b", true);
    api.wait_for(20, "all unhealthy", || {
        health_states(&api, &tg_arn)
            .iter()
            .all(|(_, s, _)| s == "unhealthy")
            .then_some(())
    });
    let mut names = names_of(&url, 6);
    names.sort();
    names.dedup();
    assert_eq!(names, ["a", "b", "c"]);
    for n in ["a", "b", "c"] {
        t.sick(n, false);
    }

    // A deregistered target drains (no new requests), then is gone.
    let a = format!("Id=127.0.0.1,Port={}", t.ports[0]);
    elb_json(
        &api,
        &[
            "deregister-targets",
            "--target-group-arn",
            &tg_arn,
            "--targets",
            &a,
        ],
    );
    let states = health_states(&api, &tg_arn);
    assert!(
        states.contains(&(
            t.ports[0] as u64,
            "draining".into(),
            "Target.DeregistrationInProgress".into()
        )),
        "{states:?}"
    );
    let names = names_of(&url, 6);
    assert!(!names.contains(&"a".to_string()), "{names:?}");
    api.wait_for(15, "a drained", || {
        (!health_states(&api, &tg_arn)
            .iter()
            .any(|(p, _, _)| *p == t.ports[0] as u64))
        .then_some(())
    });

    // A target that refuses connections: ALB's 502.
    let dead = common::util::free_port();
    let mut args = vec![
        "deregister-targets",
        "--target-group-arn",
        &tg_arn,
        "--targets",
    ];
    args.extend(targets[1..].iter().map(String::as_str));
    elb_json(&api, &args);
    let dead_target = format!("Id=127.0.0.1,Port={dead}");
    elb_json(
        &api,
        &[
            "register-targets",
            "--target-group-arn",
            &tg_arn,
            "--targets",
            &dead_target,
        ],
    );
    let (code, body) = get(&url);
    assert_eq!(code, 502, "{body}");
    assert!(body.contains("502 Bad Gateway"), "{body}");

    // Deleting the listener stops it listening.
    elb_json(
        &api,
        &["delete-load-balancer", "--load-balancer-arn", &lb_arn],
    );
    api.wait_for(10, "the listener closed", || {
        std::net::TcpStream::connect((ip.as_str(), port))
            .is_err()
            .then_some(())
    });
}

#[test]
fn a_tcp_listener_passes_bytes_through_to_healthy_targets() {
    let api = Api::start();
    let t = Targets::start(&["x", "y"]);
    let lb = elb_json(
        &api,
        &["create-load-balancer", "--name", "tcp", "--type", "network"],
    );
    let lb = &lb["LoadBalancers"][0];
    let lb_arn = s(&lb["LoadBalancerArn"]).to_string();
    let ip = s(&lb["AvailabilityZones"][0]["LoadBalancerAddresses"][0]["IpAddress"]).to_string();
    let tg = elb_json(
        &api,
        &[
            "create-target-group",
            "--name",
            "tcp",
            "--protocol",
            "TCP",
            "--port",
            "80",
            "--vpc-id",
            "vpc-1",
            "--target-type",
            "ip",
        ],
    );
    let tg_arn = s(&tg["TargetGroups"][0]["TargetGroupArn"]).to_string();
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
            &format!("Type=forward,TargetGroupArn={tg_arn}"),
        ],
    );
    let targets: Vec<String> = t
        .ports
        .iter()
        .map(|p| format!("Id=127.0.0.1,Port={p}"))
        .collect();
    let mut args = vec![
        "register-targets",
        "--target-group-arn",
        &tg_arn,
        "--targets",
    ];
    args.extend(targets.iter().map(String::as_str));
    elb_json(&api, &args);
    api.wait_for(20, "2 healthy targets (TCP checks)", || {
        health_states(&api, &tg_arn)
            .iter()
            .all(|(_, s, _)| s == "healthy")
            .then_some(())
    });
    // Bytes pass through unchanged: the targets see no X-Forwarded header.
    let url = format!("http://{ip}:{port}/");
    let mut names = Vec::new();
    for _ in 0..4 {
        let (code, body) = get(&url);
        assert_eq!(code, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["xff"], Value::Null);
        names.push(v["name"].as_str().unwrap().to_string());
    }
    names.sort();
    assert_eq!(names, ["x", "x", "y", "y"]);
}

/// A target that reads the PROXY protocol v2 header its connections start with: a
/// connection's header (PROXY) is answered with the addresses it names, a health check's
/// (LOCAL) counted; a connection without one is answered `no header`.
struct ProxyV2Target {
    port: u16,
    local: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl ProxyV2Target {
    fn start() -> ProxyV2Target {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let local = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = local.clone();
        std::thread::spawn(move || {
            for mut c in listener.incoming().flatten() {
                let counted = counted.clone();
                std::thread::spawn(move || {
                    let _ = c.set_read_timeout(Some(std::time::Duration::from_secs(10)));
                    let mut head = [0u8; 16];
                    if c.read_exact(&mut head).is_err() {
                        return;
                    }
                    if &head[..12] != b"\r\n\r\n\0\r\nQUIT\n" {
                        let _ = c.write_all(b"no header\n");
                        return;
                    }
                    let mut block = vec![0u8; u16::from_be_bytes([head[14], head[15]]) as usize];
                    if c.read_exact(&mut block).is_err() {
                        return;
                    }
                    let answer = match (head[12], head[13]) {
                        (0x20, _) => {
                            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            return;
                        }
                        (0x21, 0x11) if block.len() >= 12 => {
                            let ip = |b: &[u8]| std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]);
                            let port = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
                            format!(
                                "src={}:{} dst={}:{}\n",
                                ip(&block[0..4]),
                                port(&block[8..10]),
                                ip(&block[4..8]),
                                port(&block[10..12])
                            )
                        }
                        (cmd, fam) => format!("unexpected command {cmd:#x} family {fam:#x}\n"),
                    };
                    let _ = c.write_all(answer.as_bytes());
                });
            }
        });
        ProxyV2Target { port, local }
    }
}

/// What an AWS CLI user sees of a network load balancer's client-side attributes: client
/// IP preservation off by default for a TCP `ip` group and on for an `instance` one (ELB's
/// defaults), and with `proxy_protocol_v2.enabled` the target's connections start with the
/// PROXY v2 header naming the client's address and port and the listener's, its health
/// checks' with a LOCAL one (NLB User Guide, "Proxy protocol").
#[test]
fn a_tcp_group_with_proxy_protocol_v2_tells_its_target_the_client_s_address() {
    use std::io::{Read, Write};
    let api = Api::start();
    let lb = elb_json(
        &api,
        &[
            "create-load-balancer",
            "--name",
            "ppv2",
            "--type",
            "network",
        ],
    );
    let lb = &lb["LoadBalancers"][0];
    let lb_arn = s(&lb["LoadBalancerArn"]).to_string();
    let ip = s(&lb["AvailabilityZones"][0]["LoadBalancerAddresses"][0]["IpAddress"]).to_string();
    let group = |name: &str, target_type: &str| {
        let tg = elb_json(
            &api,
            &[
                "create-target-group",
                "--name",
                name,
                "--protocol",
                "TCP",
                "--port",
                "80",
                "--vpc-id",
                "vpc-1",
                "--target-type",
                target_type,
            ],
        );
        s(&tg["TargetGroups"][0]["TargetGroupArn"]).to_string()
    };
    let attributes = |tg: &str| {
        elb_json(
            &api,
            &["describe-target-group-attributes", "--target-group-arn", tg],
        )
    };
    let attr = common::elb::attribute;
    let instances = group("ppv2-instance", "instance");
    assert_eq!(
        attr(&attributes(&instances), "preserve_client_ip.enabled").as_deref(),
        Some("true")
    );
    let tg = group("ppv2", "ip");
    let a = attributes(&tg);
    assert_eq!(
        attr(&a, "preserve_client_ip.enabled").as_deref(),
        Some("false")
    );
    assert_eq!(
        attr(&a, "proxy_protocol_v2.enabled").as_deref(),
        Some("false")
    );
    let a = elb_json(
        &api,
        &[
            "modify-target-group-attributes",
            "--target-group-arn",
            &tg,
            "--attributes",
            "Key=proxy_protocol_v2.enabled,Value=true",
        ],
    );
    assert_eq!(
        attr(&a, "proxy_protocol_v2.enabled").as_deref(),
        Some("true")
    );
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
    let target = ProxyV2Target::start();
    elb_json(
        &api,
        &[
            "register-targets",
            "--target-group-arn",
            &tg,
            "--targets",
            &format!("Id=127.0.0.1,Port={}", target.port),
        ],
    );
    api.wait_for(20, "a healthy target (TCP checks)", || {
        health_states(&api, &tg)
            .iter()
            .all(|(_, s, _)| s == "healthy")
            .then_some(())
    });
    assert!(
        target.local.load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "the health checks sent no LOCAL header"
    );
    let mut c = std::net::TcpStream::connect((ip.as_str(), port)).unwrap();
    c.set_read_timeout(Some(std::time::Duration::from_secs(15)))
        .unwrap();
    c.write_all(b"hello through the load balancer\n").unwrap();
    let mut answer = String::new();
    c.read_to_string(&mut answer).unwrap();
    let me = c.local_addr().unwrap();
    assert_eq!(
        answer,
        format!("src={me} dst={ip}:{port}\n"),
        "what the target read"
    );
}

/// A service task answering `GET /` on 8080 with an id of its own (busybox httpd).
fn web_def(family: &str) -> String {
    format!(
        r#"{{"family":"{family}","networkMode":"awsvpc","cpu":"256","memory":"512",
  "containerDefinitions":[{{"name":"web","image":"public.ecr.aws/docker/library/busybox:1.36",
    "essential":true,"portMappings":[{{"containerPort":8080}}],
    "command":["sh","-c","mkdir -p /www && cat /proc/sys/kernel/random/uuid > /www/index.html && trap 'exit 0' TERM; httpd -f -p 8080 -h /www & wait"]}}]}}"#
    )
}

fn service_events(api: &Api, name: &str) -> Vec<String> {
    api.service("default", name)["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn an_ecs_service_registers_its_tasks_and_drains_them_before_stopping() {
    let api = Api::start();
    let lb = elb_json(&api, &["create-load-balancer", "--name", "svc"]);
    let lb = &lb["LoadBalancers"][0];
    let lb_arn = s(&lb["LoadBalancerArn"]).to_string();
    let ip = s(&lb["AvailabilityZones"][0]["LoadBalancerAddresses"][0]["IpAddress"]).to_string();
    let tg = elb_json(
        &api,
        &[
            "create-target-group",
            "--name",
            "svc",
            "--protocol",
            "HTTP",
            "--port",
            "8080",
            "--vpc-id",
            "vpc-1",
            "--target-type",
            "ip",
            "--health-check-interval-seconds",
            "5",
            "--health-check-timeout-seconds",
            "2",
            "--healthy-threshold-count",
            "2",
        ],
    );
    let tg_arn = s(&tg["TargetGroups"][0]["TargetGroupArn"]).to_string();
    elb_json(
        &api,
        &[
            "modify-target-group-attributes",
            "--target-group-arn",
            &tg_arn,
            "--attributes",
            "Key=deregistration_delay.timeout_seconds,Value=8",
        ],
    );
    let port = common::util::free_port();
    elb_json(
        &api,
        &[
            "create-listener",
            "--load-balancer-arn",
            &lb_arn,
            "--protocol",
            "HTTP",
            "--port",
            &port.to_string(),
            "--default-actions",
            &format!("Type=forward,TargetGroupArn={tg_arn}"),
        ],
    );
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
        "2",
        "--load-balancers",
        &lbs,
    ]);

    // Both tasks registered at their address and port, healthy; traffic reaches both.
    let healthy = api.wait_for(90, "2 healthy targets", || {
        let h = health_states(&api, &tg_arn);
        (h.len() == 2 && h.iter().all(|(p, s, _)| *p == 8080 && s == "healthy")).then_some(h)
    });
    assert_eq!(healthy.len(), 2);
    let h = elb_json(
        &api,
        &["describe-target-health", "--target-group-arn", &tg_arn],
    );
    let mut target_ips: Vec<String> = h["TargetHealthDescriptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["Target"]["Id"].as_str().unwrap().to_string())
        .collect();
    target_ips.sort();
    let tasks = api.aws_json(&["list-tasks", "--service-name", "web"]);
    let arns: Vec<&str> = tasks["taskArns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let mut args = vec!["describe-tasks", "--tasks"];
    args.extend(arns.iter().copied());
    let described = api.aws_json(&args);
    let mut task_ips: Vec<String> = described["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            t["containers"][0]["networkInterfaces"][0]["privateIpv4Address"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    task_ips.sort();
    assert_eq!(target_ips, task_ips);
    let url = format!("http://{ip}:{port}/");
    let bodies = distinct_answers(&url, 4);
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    let ev = service_events(&api, "web");
    assert!(
        ev.iter().any(|e| e.starts_with("(service web) registered ")
            && e.ends_with(&format!("targets in (target-group {tg_arn})"))),
        "{ev:#?}"
    );

    // Scale in: the task leaves the group first, drains for the delay (still RUNNING,
    // getting no new request), then stops; no request fails meanwhile.
    api.aws_json(&["update-service", "--service", "web", "--desired-count", "1"]);
    let draining = api.wait_for(20, "a draining target", || {
        health_states(&api, &tg_arn)
            .into_iter()
            .find(|(_, s, _)| s == "draining")
    });
    assert_eq!(draining.2, "Target.DeregistrationInProgress");
    let ev = service_events(&api, "web");
    assert!(
        ev.iter()
            .any(|e| e
                == &format!("(service web) deregistered 1 targets in (target-group {tg_arn})")),
        "{ev:#?}"
    );
    assert!(
        !ev.iter().any(|e| e.contains("has stopped")),
        "stopped before its delay: {ev:#?}"
    );
    let running = api.aws_json(&[
        "list-tasks",
        "--service-name",
        "web",
        "--desired-status",
        "RUNNING",
    ]);
    assert_eq!(
        running["taskArns"].as_array().unwrap().len(),
        2,
        "{running}"
    );
    for _ in 0..10 {
        let (code, body) = get(&url);
        assert_eq!(code, 200, "{body}");
    }
    api.wait_for(30, "the drained task stopped", || {
        service_events(&api, "web")
            .iter()
            .any(|e| e.starts_with("(service web) has stopped 1 running tasks"))
            .then_some(())
    });
    let h = health_states(&api, &tg_arn);
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(h[0].1, "healthy");
    api.aws_json(&["delete-service", "--service", "web", "--force"]);
    api.wait_for(60, "web INACTIVE", || {
        (api.service("default", "web")["status"] == "INACTIVE").then_some(())
    });
}

#[test]
fn a_task_failing_its_target_group_health_check_is_replaced_with_ecs_s_reason() {
    let api = Api::start();
    let lb = elb_json(&api, &["create-load-balancer", "--name", "sick"]);
    let lb_arn = s(&lb["LoadBalancers"][0]["LoadBalancerArn"]).to_string();
    let tg = elb_json(
        &api,
        &[
            "create-target-group",
            "--name",
            "sick",
            "--protocol",
            "HTTP",
            "--port",
            "8080",
            "--vpc-id",
            "vpc-1",
            "--target-type",
            "ip",
            "--health-check-path",
            "/health",
            "--health-check-interval-seconds",
            "5",
            "--health-check-timeout-seconds",
            "2",
            "--unhealthy-threshold-count",
            "2",
        ],
    );
    let tg_arn = s(&tg["TargetGroups"][0]["TargetGroupArn"]).to_string();
    elb_json(
        &api,
        &[
            "modify-target-group-attributes",
            "--target-group-arn",
            &tg_arn,
            "--attributes",
            "Key=deregistration_delay.timeout_seconds,Value=0",
        ],
    );
    let port = common::util::free_port();
    elb_json(
        &api,
        &[
            "create-listener",
            "--load-balancer-arn",
            &lb_arn,
            "--protocol",
            "HTTP",
            "--port",
            &port.to_string(),
            "--default-actions",
            &format!("Type=forward,TargetGroupArn={tg_arn}"),
        ],
    );
    // Healthy for its first 12 s, then /health is gone (404).
    let def = r#"{"family":"sick","networkMode":"awsvpc","cpu":"256","memory":"512",
  "containerDefinitions":[{"name":"web","image":"public.ecr.aws/docker/library/busybox:1.36",
    "essential":true,"portMappings":[{"containerPort":8080}],
    "command":["sh","-c","mkdir -p /www && echo ok > /www/health && trap 'exit 0' TERM; httpd -f -p 8080 -h /www & (sleep 12; rm /www/health) & wait"]}]}"#;
    let f = api.file("sick.json", def);
    api.aws_json(&["register-task-definition", "--cli-input-json", &f]);
    api.aws_json(&["create-cluster", "--cluster-name", "default"]);
    let lbs = format!("targetGroupArn={tg_arn},containerName=web,containerPort=8080");
    api.aws_json(&[
        "create-service",
        "--service-name",
        "sick",
        "--task-definition",
        "sick",
        "--desired-count",
        "1",
        "--load-balancers",
        &lbs,
    ]);
    let reason = format!("Task failed ELB health checks in (target-group {tg_arn})");
    let stopped = api.wait_for(120, "a task replaced for its ELB health", || {
        let t = api.aws_json(&[
            "list-tasks",
            "--service-name",
            "sick",
            "--desired-status",
            "STOPPED",
        ]);
        let arns: Vec<String> = t["taskArns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect();
        if arns.is_empty() {
            return None;
        }
        let mut args = vec!["describe-tasks", "--tasks"];
        args.extend(arns.iter().map(String::as_str));
        let d = api.aws_json(&args);
        d["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["stoppedReason"] == reason.as_str())
            .cloned()
    });
    assert_eq!(stopped["stopCode"], "ServiceSchedulerInitiated");
    let ev = service_events(&api, "sick");
    assert!(
        ev.iter().any(|e| e.contains(&format!(
            "(port 8080) is unhealthy in (target-group {tg_arn}) due to (reason Health checks failed with these codes: [404])."
        ))),
        "{ev:#?}"
    );
    // The replacement starts and registers.
    api.wait_for(60, "a replacement registered", || {
        health_states(&api, &tg_arn)
            .iter()
            .any(|(_, s, _)| s == "healthy")
            .then_some(())
    });
    api.aws_json(&["delete-service", "--service", "sick", "--force"]);
    api.wait_for(60, "sick INACTIVE", || {
        (api.service("default", "sick")["status"] == "INACTIVE").then_some(())
    });
}

#[test]
fn tags_and_load_balancer_attributes_through_the_cli_and_boto3() {
    let api = Api::start();
    let lb = elb_json(
        &api,
        &[
            "create-load-balancer",
            "--name",
            "tagged",
            "--tags",
            "Key=a,Value=1",
        ],
    );
    let lb_arn = s(&lb["LoadBalancers"][0]["LoadBalancerArn"]).to_string();
    elb_json(
        &api,
        &[
            "add-tags",
            "--resource-arns",
            &lb_arn,
            "--tags",
            "Key=b,Value=2",
            "Key=a,Value=3",
        ],
    );
    elb_json(
        &api,
        &["remove-tags", "--resource-arns", &lb_arn, "--tag-keys", "b"],
    );
    let t = elb_json(&api, &["describe-tags", "--resource-arns", &lb_arn]);
    assert_eq!(t["TagDescriptions"][0]["ResourceArn"], lb_arn.as_str());
    assert_eq!(
        t["TagDescriptions"][0]["Tags"],
        serde_json::json!([{"Key": "a", "Value": "3"}])
    );
    let err = elb_err(
        &api,
        &[
            "describe-tags",
            "--resource-arns",
            "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/x/0123456789abcdef",
        ],
    );
    assert!(err.contains("(TargetGroupNotFound)"), "{err}");

    let a = elb_json(
        &api,
        &[
            "describe-load-balancer-attributes",
            "--load-balancer-arn",
            &lb_arn,
        ],
    );
    let attr = common::elb::attribute;
    assert_eq!(
        attr(&a, "idle_timeout.timeout_seconds").as_deref(),
        Some("60")
    );
    assert_eq!(
        attr(&a, "deletion_protection.enabled").as_deref(),
        Some("false")
    );
    elb_json(
        &api,
        &[
            "modify-load-balancer-attributes",
            "--load-balancer-arn",
            &lb_arn,
            "--attributes",
            "Key=deletion_protection.enabled,Value=true",
        ],
    );
    let err = elb_err(
        &api,
        &["delete-load-balancer", "--load-balancer-arn", &lb_arn],
    );
    assert!(err.contains("(OperationNotPermitted)"), "{err}");
    for (bad, code) in [
        (
            "Key=access_logs.s3.enabled,Value=true",
            "(InvalidConfigurationRequest)",
        ),
        (
            "Key=client_keep_alive.seconds,Value=59",
            "(ValidationError)",
        ),
        (
            "Key=idle_timeout.timeout_seconds,Value=4001",
            "(ValidationError)",
        ),
    ] {
        let err = elb_err(
            &api,
            &[
                "modify-load-balancer-attributes",
                "--load-balancer-arn",
                &lb_arn,
                "--attributes",
                bad,
            ],
        );
        assert!(err.contains(code), "{bad}: {err}");
    }
    let v = api.boto3(&format!(
        r#"
import boto3, json, os
c = boto3.client("elbv2", endpoint_url=os.environ["ENDPOINT"], region_name="us-east-1")
c.modify_load_balancer_attributes(LoadBalancerArn="{lb_arn}",
    Attributes=[{{"Key": "deletion_protection.enabled", "Value": "false"}}])
c.delete_load_balancer(LoadBalancerArn="{lb_arn}")
print(json.dumps(len(c.describe_load_balancers()["LoadBalancers"])))
"#
    ));
    assert_eq!(v, 0);
}

#[test]
fn a_rolling_deployment_and_a_scale_in_behind_the_load_balancer_lose_no_request() {
    let api = Api::start();
    let lb = elb_json(&api, &["create-load-balancer", "--name", "roll"]);
    let lb = &lb["LoadBalancers"][0];
    let lb_arn = s(&lb["LoadBalancerArn"]).to_string();
    let ip = s(&lb["AvailabilityZones"][0]["LoadBalancerAddresses"][0]["IpAddress"]).to_string();
    let tg = elb_json(
        &api,
        &[
            "create-target-group",
            "--name",
            "roll",
            "--protocol",
            "HTTP",
            "--port",
            "8080",
            "--vpc-id",
            "vpc-1",
            "--target-type",
            "ip",
            "--health-check-interval-seconds",
            "5",
            "--health-check-timeout-seconds",
            "2",
        ],
    );
    let tg_arn = s(&tg["TargetGroups"][0]["TargetGroupArn"]).to_string();
    elb_json(
        &api,
        &[
            "modify-target-group-attributes",
            "--target-group-arn",
            &tg_arn,
            "--attributes",
            "Key=deregistration_delay.timeout_seconds,Value=5",
        ],
    );
    let port = common::util::free_port();
    elb_json(
        &api,
        &[
            "create-listener",
            "--load-balancer-arn",
            &lb_arn,
            "--protocol",
            "HTTP",
            "--port",
            &port.to_string(),
            "--default-actions",
            &format!("Type=forward,TargetGroupArn={tg_arn}"),
        ],
    );
    let f = api.file("roll.json", &web_def("roll"));
    api.aws_json(&["register-task-definition", "--cli-input-json", &f]);
    api.aws_json(&["create-cluster", "--cluster-name", "default"]);
    let lbs = format!("targetGroupArn={tg_arn},containerName=web,containerPort=8080");
    api.aws_json(&[
        "create-service",
        "--service-name",
        "roll",
        "--task-definition",
        "roll",
        "--desired-count",
        "3",
        "--deployment-configuration",
        "minimumHealthyPercent=100,maximumPercent=200",
        "--load-balancers",
        &lbs,
    ]);
    api.wait_for(90, "3 healthy targets", || {
        let h = health_states(&api, &tg_arn);
        (h.len() == 3 && h.iter().all(|(_, s, _)| s == "healthy")).then_some(())
    });
    let before: std::collections::BTreeSet<String> =
        health_states_ids(&api, &tg_arn).into_iter().collect();

    // A client sends requests all through the deployment and the scale-in, until told
    // to stop (a file) and 10,000 were answered, or for 240 s at most.
    let stop = api.mf.dir.path().join("client.stop");
    let stop = stop.to_str().unwrap().to_string();
    let client = std::process::Command::new("python3")
        .args([
            "-c",
            r#"
import http.client, json, sys, time
import os
host, port, stop = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ok, errors, bodies = 0, {}, set()
end = time.time() + 240
c = http.client.HTTPConnection(host, port, timeout=10)
while time.time() < end and not (ok >= 10000 and os.path.exists(stop)):
    try:
        c.request("GET", "/")
        r = c.getresponse()
        b = r.read()
        if r.status == 200:
            ok += 1
            bodies.add(b.decode().strip())
        else:
            errors[str(r.status)] = errors.get(str(r.status), 0) + 1
    except Exception as e:
        errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
        c.close()
        c = http.client.HTTPConnection(host, port, timeout=10)
print(json.dumps({"ok": ok, "errors": errors, "bodies": len(bodies)}))
"#,
            &ip,
            &port.to_string(),
            &stop,
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let completed = |api: &Api| {
        service_events(api, "roll")
            .iter()
            .filter(|e| e.contains("deployment completed"))
            .count()
    };
    let first = completed(&api);
    api.aws_json(&[
        "update-service",
        "--service",
        "roll",
        "--force-new-deployment",
    ]);
    api.wait_for(120, "the deployment completed", || {
        (completed(&api) > first).then_some(())
    });
    let after: std::collections::BTreeSet<String> =
        health_states_ids(&api, &tg_arn).into_iter().collect();
    assert_eq!(after.len(), 3);
    assert!(before.is_disjoint(&after), "{before:?} {after:?}");

    // Scale in from 3 to 1: the two tasks leave the group (one event counting them, as
    // ECS writes it), drain, then stop.
    api.aws_json(&[
        "update-service",
        "--service",
        "roll",
        "--desired-count",
        "1",
    ]);
    api.wait_for(60, "2 tasks stopped after draining", || {
        service_events(&api, "roll")
            .iter()
            .any(|e| e.starts_with("(service roll) has stopped 2 running tasks"))
            .then_some(())
    });
    let ev = service_events(&api, "roll");
    assert!(
        ev.iter()
            .any(|e| e
                == &format!("(service roll) deregistered 2 targets in (target-group {tg_arn})")),
        "{ev:#?}"
    );
    assert!(
        ev.iter()
            .any(|e| e == "(service roll) has begun draining connections on 2 tasks."),
        "{ev:#?}"
    );
    let left = health_states_ids(&api, &tg_arn);
    assert_eq!(left.len(), 1, "{left:?}");
    // The client goes on with the one task left until it has 10,000 answers.
    std::fs::write(&stop, "").unwrap();
    let out = client.wait_with_output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("the client through the deployment and the scale-in: {v}");
    assert_eq!(v["errors"], serde_json::json!({}), "{v}");
    assert!(v["ok"].as_u64().unwrap() >= 10_000, "{v}");
    // The requests were answered by the old tasks and then the new ones.
    assert!(v["bodies"].as_u64().unwrap() >= 4, "{v}");
    api.aws_json(&["delete-service", "--service", "roll", "--force"]);
    api.wait_for(60, "roll INACTIVE", || {
        (api.service("default", "roll")["status"] == "INACTIVE").then_some(())
    });
}

fn health_states_ids(api: &Api, tg: &str) -> Vec<String> {
    let h = elb_json(api, &["describe-target-health", "--target-group-arn", tg]);
    h["TargetHealthDescriptions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["TargetHealth"]["State"] == "healthy")
        .map(|d| d["Target"]["Id"].as_str().unwrap().to_string())
        .collect()
}

/// Runs `script` with `sh` on the box, in a mount namespace of its own whose /etc/hosts is
/// `hosts` (the file serve keeps its block in: the test's own, never the box's), so that
/// getaddrinfo reads serve's lines as it would in /etc/hosts. Returns stdout.
fn on_the_box(hosts: &str, script: &str) -> String {
    let mut c = std::process::Command::new("unshare");
    common::util::no_proxy(&mut c);
    let out = c
        .args([
            "-m",
            "sh",
            "-c",
            &format!("mount --make-rprivate / && mount --bind {hosts} /etc/hosts && {script}"),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{script}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The addresses of link `dev` (`ip -4 -o addr show`).
fn addresses_of(dev: &str) -> String {
    let out = std::process::Command::new("ip")
        .args(["-4", "-o", "addr", "show", "dev", dev])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `busybox nslookup NAME SERVER` from the box (busybox's own resolver, not the host's).
fn nslookup(name: &str, server: &str) -> String {
    let out = std::process::Command::new(common::image::BUSYBOX)
        .args(["nslookup", "-timeout=2", name, server])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn a_service_behind_the_load_balancer_answers_at_its_dns_name_on_the_box_and_in_tasks() {
    let mut api = Api::start();
    let hosts = api.mf.env_value("MINIFARGATE_HOSTS_FILE").unwrap();
    let bridge = api.mf.bridge();
    let subnet: netns::Subnet = api
        .mf
        .env_value("MINIFARGATE_SUBNET")
        .unwrap()
        .parse()
        .unwrap();
    let gateway = subnet.gateway().to_string();
    let lb = elb_json(&api, &["create-load-balancer", "--name", "named"]);
    let lb = &lb["LoadBalancers"][0];
    let lb_arn = s(&lb["LoadBalancerArn"]).to_string();
    let dns = s(&lb["DNSName"]).to_string();
    let ip = s(&lb["AvailabilityZones"][0]["LoadBalancerAddresses"][0]["IpAddress"]).to_string();
    assert!(ip.starts_with("10.93."), "{ip}");
    // The name is in serve's block of the hosts file, the address on the task bridge.
    api.wait_for(10, "the name in the hosts file", || {
        std::fs::read_to_string(&hosts)
            .unwrap()
            .contains(&format!("{ip}\t{dns}\n"))
            .then_some(())
    });
    assert!(addresses_of(&bridge).contains(&format!("{ip}/32")));
    let tg_arn = common::elb::http_target_group(&api, "named", 0);
    // Port 80: each load balancer has an address of its own.
    common::elb::http_listener(&api, &lb_arn, "80", &tg_arn);
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
        "3",
        "--load-balancers",
        &lbs,
    ]);
    api.wait_for(120, "3 healthy targets", || {
        let h = health_states(&api, &tg_arn);
        (h.len() == 3 && h.iter().all(|(_, s, _)| s == "healthy")).then_some(())
    });

    // From the box, by name (getaddrinfo through the hosts file): curl and Python.
    let out = on_the_box(
        &hosts,
        &format!(
            "for i in 1 2 3 4 5 6; do curl -s --noproxy '*' -m 10 http://{dns}/; echo; done; \
             python3 -c 'import socket,sys; print(socket.getaddrinfo(sys.argv[1], 80)[0][4][0])' {dns}"
        ),
    );
    let lines: Vec<&str> = out.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 7, "{out}");
    assert_eq!(lines[6], ip, "{out}");
    let mut bodies: Vec<&str> = lines[..6].to_vec();
    bodies.sort();
    bodies.dedup();
    assert_eq!(bodies.len(), 3, "all three in turn: {out}");

    // From inside another task, by name through the tasks' DNS server on the gateway: the
    // name looked up with the task's resolv.conf (busybox's nslookup: the test image's
    // busybox is glibc-static, which cannot load NSS in a bare image: its wget crashes in
    // getservbyname), then the GET sent to that address with the name as Host (busybox's
    // nc stops at the end of its input: the sleep keeps it for the answer).
    let client = format!(
        r#"{{"family":"client","networkMode":"awsvpc","cpu":"256","memory":"512",
  "containerDefinitions":[{{"name":"client","image":"public.ecr.aws/docker/library/busybox:1.36",
    "essential":true,
    "command":["sh","-c","cat /etc/resolv.conf; A=$(nslookup {dns} | sed -n 's/^Address: //p' | tail -n 1); echo RESOLVED $A; for i in 1 2 3 4 5 6; do echo GOT $( (printf 'GET / HTTP/1.0\\r\\nHost: {dns}\\r\\n\\r\\n'; sleep 1) | nc -w 10 $A 80 | tail -n 1); done"]}}]}}"#
    );
    let f = api.file("client.json", &client);
    api.aws_json(&["register-task-definition", "--cli-input-json", &f]);
    let t = api.aws_json(&["run-task", "--task-definition", "client"]);
    let arn = s(&t["tasks"][0]["taskArn"]).to_string();
    api.wait_for(60, "the client task stopped", || {
        let t = &api.aws_json(&["describe-tasks", "--tasks", &arn])["tasks"][0];
        (t["lastStatus"] == "STOPPED").then_some(())
    });
    let logs = api.mf.run(&["logs", arn.rsplit('/').next().unwrap()]);
    let text = String::from_utf8_lossy(&logs.stdout).into_owned();
    assert!(
        text.lines().any(|l| l == format!("nameserver {gateway}")),
        "the task's resolver is the gateway: {text}"
    );
    assert!(
        text.lines().any(|l| l == format!("RESOLVED {ip}")),
        "the name resolved in the task: {text}"
    );
    let mut got: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("GOT "))
        .collect();
    assert_eq!(got.len(), 6, "{text}");
    got.sort();
    got.dedup();
    assert_eq!(got.len(), 3, "all three in turn from a task: {text}");
    let mut from_box = bodies.iter().map(|b| b.to_string()).collect::<Vec<_>>();
    from_box.sort();
    assert_eq!(got, from_box);
    // The DNS server answers the name (A) and forwards what it does not hold.
    assert!(nslookup(&dns, &gateway).contains(&ip));

    let h = elb_json(
        &api,
        &["describe-target-health", "--target-group-arn", &tg_arn],
    );
    let healthy = h["TargetHealthDescriptions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["TargetHealth"]["State"] == "healthy")
        .count();
    assert_eq!(healthy, 3, "{h:#}");

    // A restarted serve writes its block again from the store.
    std::fs::write(&hosts, "127.0.0.1\tlocalhost\n").unwrap();
    api.restart();
    api.wait_for(10, "the block written again", || {
        std::fs::read_to_string(&hosts)
            .unwrap()
            .contains(&format!("{ip}\t{dns}\n"))
            .then_some(())
    });

    // Deleting the load balancer takes its name and address away.
    api.aws_json(&["delete-service", "--service", "web", "--force"]);
    elb_json(
        &api,
        &["delete-load-balancer", "--load-balancer-arn", &lb_arn],
    );
    // (The block keeps the registry's name while serve runs: docs/registry.md.)
    api.wait_for(10, "the name gone", || {
        (!std::fs::read_to_string(&hosts).unwrap().contains(&dns)).then_some(())
    });
    assert!(
        !addresses_of(&bridge).contains(&ip),
        "{}",
        addresses_of(&bridge)
    );
    assert!(!nslookup(&dns, &gateway).contains(&ip));
    api.wait_for(60, "web INACTIVE", || {
        (api.service("default", "web")["status"] == "INACTIVE").then_some(())
    });

    // serve stopped: no DNS server left, nor its announcement to new tasks.
    let marker = api.mf.run_root.join("net").join(&bridge).join("dns-server");
    assert!(marker.exists());
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &api.server_pid().to_string()])
        .status();
    api.wait_for(20, "serve gone", || {
        (!std::path::Path::new(&format!("/proc/{}", api.server_pid())).exists()
            || std::fs::read_to_string(format!("/proc/{}/stat", api.server_pid()))
                .is_ok_and(|s| s.contains(") Z ")))
        .then_some(())
    });
    assert!(!marker.exists());
    let ss = std::process::Command::new("ss")
        .args(["-lnu", "src", &format!("{gateway}:53")])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&ss.stdout).contains(&format!("{gateway}:53")),
        "{ss:?}"
    );
}

/// Takes the block of the `serve` of state root `root` out of /etc/hosts when dropped (the
/// test failed with it there); the rest of the file is left as it is.
struct RealHostsBlock(String);

impl Drop for RealHostsBlock {
    fn drop(&mut self) {
        let Ok(text) = std::fs::read_to_string("/etc/hosts") else {
            return;
        };
        let begin = format!("# BEGIN minifargate serve {}:", self.0);
        let end = format!("# END minifargate serve {}", self.0);
        let mut out = String::new();
        let mut inside = false;
        for line in text.split_inclusive('\n') {
            let bare = line.trim_end();
            if bare.starts_with(&begin) {
                inside = true;
            } else if inside && bare == end {
                inside = false;
            } else if !inside {
                out.push_str(line);
            }
        }
        if out != text {
            let _ = std::fs::write("/etc/hosts", out);
        }
    }
}

fn getent(name: &str) -> String {
    let out = std::process::Command::new("getent")
        .args(["hosts", name])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The one test of the box's own /etc/hosts (the others use their own file): the name
/// resolves through it while the load balancer exists and `serve` runs, and the file is
/// as it was once `serve` stops or the load balancer is deleted.
#[test]
fn the_box_s_etc_hosts_names_the_load_balancer_while_serve_runs_and_is_restored() {
    let mut api = Api::start();
    let _restore = RealHostsBlock(api.mf.root.display().to_string());
    let before = std::fs::read("/etc/hosts").unwrap();
    api.mf.set_env("MINIFARGATE_HOSTS_FILE", "/etc/hosts");
    api.restart();
    let lb = elb_json(&api, &["create-load-balancer", "--name", "etchosts"]);
    let lb = &lb["LoadBalancers"][0];
    let lb_arn = s(&lb["LoadBalancerArn"]).to_string();
    let dns = s(&lb["DNSName"]).to_string();
    let ip = s(&lb["AvailabilityZones"][0]["LoadBalancerAddresses"][0]["IpAddress"]).to_string();
    api.wait_for(10, "the name resolving on the box", || {
        getent(&dns).starts_with(&format!("{ip} ")).then_some(())
    });
    let with = std::fs::read_to_string("/etc/hosts").unwrap();
    assert!(
        with.starts_with(std::str::from_utf8(&before).unwrap()),
        "lines outside the block are kept: {with}"
    );

    // serve stops cleanly: the file is as it was; it starts again: the name is back.
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &api.server_pid().to_string()])
        .status();
    api.wait_for(20, "the block gone with serve", || {
        (std::fs::read("/etc/hosts").unwrap() == before).then_some(())
    });
    api.restart();
    api.wait_for(10, "the name back", || {
        getent(&dns).starts_with(&format!("{ip} ")).then_some(())
    });
    elb_json(
        &api,
        &["delete-load-balancer", "--load-balancer-arn", &lb_arn],
    );
    // The block keeps the registry's name only (docs/registry.md "The repository URI on
    // the box"), until serve stops.
    api.wait_for(10, "the name gone with the load balancer", || {
        (!std::fs::read_to_string("/etc/hosts")
            .unwrap()
            .contains(&dns))
        .then_some(())
    });
    assert_eq!(getent(&dns), "");
    let left = std::fs::read_to_string("/etc/hosts").unwrap();
    let block: Vec<&str> = left[before.len()..].lines().collect();
    assert!(
        block.len() == 3 && block[1].ends_with("\t000000000000.dkr.ecr.us-east-1.amazonaws.com"),
        "{left}"
    );
    api.stop();
    assert_eq!(std::fs::read("/etc/hosts").unwrap(), before);
}

/// The `/32` addresses on bridge `bridge`.
fn bridge_addresses(bridge: &str) -> String {
    let out = std::process::Command::new("ip")
        .args(["-4", "-o", "addr", "show", "dev", bridge])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A `serve` killed with SIGKILL leaves its load balancers' addresses on the bridge
/// (nothing can take them away then); a load balancer gone from its store before its next
/// start (here its row deleted, as a store restored from before it would be) has its
/// address taken off the bridge when serve starts again; one still there keeps it.
#[test]
fn a_killed_serve_s_address_of_a_load_balancer_gone_since_is_removed_at_its_next_start() {
    let mut api = Api::start();
    let bridge = api.mf.bridge();
    let ip_of = |name: &str| {
        let lb = elb_json(&api, &["create-load-balancer", "--name", name]);
        let lb = &lb["LoadBalancers"][0];
        (
            s(&lb["LoadBalancerArn"]).to_string(),
            s(&lb["AvailabilityZones"][0]["LoadBalancerAddresses"][0]["IpAddress"]).to_string(),
        )
    };
    let (gone_arn, gone_ip) = ip_of("killed-gone");
    let (_, kept_ip) = ip_of("killed-kept");
    for ip in [&gone_ip, &kept_ip] {
        api.wait_for(10, "the address on the bridge", || {
            bridge_addresses(&bridge)
                .contains(&format!("{ip}/32"))
                .then_some(())
        });
    }
    api.kill_server();
    assert!(bridge_addresses(&bridge).contains(&format!("{gone_ip}/32")));
    let out = std::process::Command::new("sqlite3")
        .arg(api.mf.root.join("state.db"))
        .arg(format!(
            "DELETE FROM elb_resources WHERE arn = '{gone_arn}'"
        ))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    api.restart();
    api.wait_for(
        10,
        "the gone load balancer's address off the bridge",
        || (!bridge_addresses(&bridge).contains(&format!("{gone_ip}/32"))).then_some(()),
    );
    assert!(bridge_addresses(&bridge).contains(&format!("{kept_ip}/32")));
}

/// `curl` with `args` before the URL: (status, the `Location` header, body).
fn curl(url: &str, args: &[&str]) -> (u16, String, String) {
    let out = std::process::Command::new("curl")
        .args(["-s", "--noproxy", "*", "-m", "10", "-D", "-"])
        .args(args)
        .arg(url)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let header = |name: &str| {
        head.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
            })
            .unwrap_or_default()
    };
    let got = format!("{}|{}", header("location"), header("content-type"));
    (code, got, body.to_string())
}

/// An application load balancer with one HTTP listener (default action `default`) and a
/// target group per target of `t`, each with its target registered, checked every 5 s:
/// (load balancer address, listener port, listener ARN, group ARNs).
fn alb_with_groups(
    api: &Api,
    name: &str,
    t: &Targets,
    default: &str,
) -> (String, u16, String, Vec<String>) {
    let lb = elb_json(api, &["create-load-balancer", "--name", name]);
    let lb = &lb["LoadBalancers"][0];
    let lb_arn = s(&lb["LoadBalancerArn"]).to_string();
    let ip = s(&lb["AvailabilityZones"][0]["LoadBalancerAddresses"][0]["IpAddress"]).to_string();
    let mut groups = Vec::new();
    for (i, p) in t.ports.iter().enumerate() {
        let tg = elb_json(
            api,
            &[
                "create-target-group",
                "--name",
                &format!("{name}-{i}"),
                "--protocol",
                "HTTP",
                "--port",
                "80",
                "--vpc-id",
                "vpc-1",
                "--target-type",
                "ip",
                "--health-check-path",
                "/health",
                "--health-check-interval-seconds",
                "5",
                "--health-check-timeout-seconds",
                "2",
            ],
        );
        let arn = s(&tg["TargetGroups"][0]["TargetGroupArn"]).to_string();
        elb_json(
            api,
            &[
                "register-targets",
                "--target-group-arn",
                &arn,
                "--targets",
                &format!("Id=127.0.0.1,Port={p}"),
            ],
        );
        groups.push(arn);
    }
    let default = default.replace("{tg0}", &groups[0]);
    let port = common::util::free_port();
    let l = elb_json(
        api,
        &[
            "create-listener",
            "--load-balancer-arn",
            &lb_arn,
            "--protocol",
            "HTTP",
            "--port",
            &port.to_string(),
            "--default-actions",
            &default,
        ],
    );
    let listener = s(&l["Listeners"][0]["ListenerArn"]).to_string();
    api.wait_for(10, "the listener", || {
        std::net::TcpStream::connect((ip.as_str(), port)).ok()
    });
    (ip, port, listener, groups)
}

fn create_rule(
    api: &Api,
    listener: &str,
    priority: u32,
    conditions: &str,
    actions: &str,
) -> String {
    let r = elb_json(
        api,
        &[
            "create-rule",
            "--listener-arn",
            listener,
            "--priority",
            &priority.to_string(),
            "--conditions",
            conditions,
            "--actions",
            actions,
        ],
    );
    s(&r["Rules"][0]["RuleArn"]).to_string()
}

fn name_at(url: &str, args: &[&str]) -> String {
    let (code, _, body) = curl(url, args);
    assert_eq!(code, 200, "{url} {args:?}: {body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["name"].as_str().unwrap().to_string()
}

#[test]
fn listener_rules_route_by_path_and_host_and_answer_fixed_responses_and_redirects() {
    let mut api = Api::start();
    let t = Targets::start(&["a", "b"]);
    let (ip, port, listener, groups) = alb_with_groups(
        &api,
        "rules",
        &t,
        r#"[{"Type":"fixed-response","FixedResponseConfig":{"StatusCode":"404","ContentType":"text/plain","MessageBody":"no route"}}]"#,
    );
    let fwd = |g: &str| format!("Type=forward,TargetGroupArn={g}");
    // The Values shorthand and the *Config forms.
    let by_path = create_rule(
        &api,
        &listener,
        10,
        r#"[{"Field":"path-pattern","Values":["/api/*"]}]"#,
        &fwd(&groups[0]),
    );
    let by_host = create_rule(
        &api,
        &listener,
        20,
        r#"[{"Field":"host-header","HostHeaderConfig":{"Values":["*.b.example.com","b.example.com"]}}]"#,
        &fwd(&groups[1]),
    );
    create_rule(
        &api,
        &listener,
        30,
        r#"[{"Field":"path-pattern","PathPatternConfig":{"Values":["/old/*"]}}]"#,
        r#"[{"Type":"redirect","RedirectConfig":{"Protocol":"HTTPS","Port":"443","Path":"/new/#{path}","StatusCode":"HTTP_301"}}]"#,
    );
    create_rule(
        &api,
        &listener,
        40,
        r#"[{"Field":"http-header","HttpHeaderConfig":{"HttpHeaderName":"X-Env","Values":["beta"]}},
            {"Field":"query-string","QueryStringConfig":{"Values":[{"Key":"v","Value":"2"}]}},
            {"Field":"http-request-method","HttpRequestMethodConfig":{"Values":["POST"]}}]"#,
        r#"[{"Type":"fixed-response","FixedResponseConfig":{"StatusCode":"200","ContentType":"application/json","MessageBody":"{\"beta\":true}"}}]"#,
    );

    // DescribeRules: by priority, then the default rule.
    let rules = elb_json(&api, &["describe-rules", "--listener-arn", &listener]);
    let rules = rules["Rules"].as_array().unwrap();
    let prio: Vec<&str> = rules.iter().map(|r| s(&r["Priority"])).collect();
    assert_eq!(prio, ["10", "20", "30", "40", "default"]);
    assert_eq!(rules[4]["IsDefault"], true);
    assert_eq!(rules[0]["IsDefault"], false);
    assert_eq!(rules[4]["Conditions"], serde_json::json!([]));
    assert_eq!(
        rules[4]["Actions"][0]["FixedResponseConfig"]["MessageBody"],
        "no route"
    );
    assert_eq!(
        rules[0]["Conditions"][0]["Values"],
        serde_json::json!(["/api/*"])
    );
    assert_eq!(
        rules[0]["Conditions"][0]["PathPatternConfig"]["Values"],
        serde_json::json!(["/api/*"])
    );
    assert_eq!(
        rules[1]["Conditions"][0]["HostHeaderConfig"]["Values"][1],
        "b.example.com"
    );
    assert_eq!(rules[2]["Actions"][0]["RedirectConfig"]["Host"], "#{host}");
    let default_arn = s(&rules[4]["RuleArn"]).to_string();

    api.wait_for(20, "both targets healthy", || {
        groups
            .iter()
            .all(|g| {
                health_states(&api, g)
                    .iter()
                    .all(|(_, s, _)| s == "healthy")
            })
            .then_some(())
    });
    let base = format!("http://{ip}:{port}");
    // Path rule (case-sensitive), host rule (case-insensitive, with a port, wildcard).
    assert_eq!(name_at(&format!("{base}/api/users"), &[]), "a");
    assert_eq!(
        name_at(&format!("{base}/"), &["-H", "Host: B.Example.com:8080"]),
        "b"
    );
    assert_eq!(
        name_at(&format!("{base}/x"), &["-H", "Host: x.b.example.com"]),
        "b"
    );
    // Both rules match: the lower priority number wins.
    assert_eq!(
        name_at(&format!("{base}/api/x"), &["-H", "Host: b.example.com"]),
        "a"
    );
    // No rule: the default rule's fixed response.
    let (code, got, body) = curl(&format!("{base}/API/users"), &[]);
    assert_eq!(
        (code, got.as_str(), body.as_str()),
        (404, "|text/plain", "no route")
    );
    // Redirect: the port is written, the query kept, #{path} without its leading '/'.
    let (code, got, _) = curl(
        &format!("{base}/old/page?q=1"),
        &["-H", "Host: www.example.com"],
    );
    assert_eq!(code, 301);
    assert_eq!(got, "https://www.example.com:443/new/old/page?q=1|");
    // All three conditions of rule 40, or the default.
    let beta = format!("{base}/anything?v=2");
    let (code, got, body) = curl(&beta, &["-X", "POST", "-H", "x-env: BETA"]);
    assert_eq!(
        (code, got.as_str(), body.as_str()),
        (200, "|application/json", "{\"beta\":true}")
    );
    let (code, _, _) = curl(&beta, &["-X", "GET", "-H", "x-env: beta"]);
    assert_eq!(code, 404);

    // SetRulePriorities: the host rule before the path rule.
    elb_json(
        &api,
        &[
            "set-rule-priorities",
            "--rule-priorities",
            &format!("RuleArn={by_host},Priority=5"),
        ],
    );
    assert_eq!(
        name_at(&format!("{base}/api/x"), &["-H", "Host: b.example.com"]),
        "b"
    );

    // ELB's error codes.
    let err = elb_err(
        &api,
        &[
            "create-rule",
            "--listener-arn",
            &listener,
            "--priority",
            "10",
            "--conditions",
            "Field=path-pattern,Values=/dup",
            "--actions",
            &fwd(&groups[0]),
        ],
    );
    assert!(err.contains("(PriorityInUse)"), "{err}");
    let err = elb_err(
        &api,
        &[
            "set-rule-priorities",
            "--rule-priorities",
            &format!("RuleArn={by_path},Priority=30"),
        ],
    );
    assert!(err.contains("(PriorityInUse)"), "{err}");
    for bad in [
        r#"[{"Field":"host-header","Values":["nodot"]}]"#,
        r#"[{"Field":"path-pattern","Values":["/a","/b","/c","/d"]}]"#,
        r#"[{"Field":"http-header","HttpHeaderConfig":{"HttpHeaderName":"Host","Values":["x"]}}]"#,
        r#"[{"Field":"path-pattern","Values":["/a"]},{"Field":"path-pattern","Values":["/b"]}]"#,
        r#"[{"Field":"cookie","Values":["x"]}]"#,
    ] {
        let err = elb_err(
            &api,
            &[
                "create-rule",
                "--listener-arn",
                &listener,
                "--priority",
                "99",
                "--conditions",
                bad,
                "--actions",
                &fwd(&groups[0]),
            ],
        );
        assert!(err.contains("(ValidationError)"), "{bad}: {err}");
    }
    let err = elb_err(
        &api,
        &[
            "create-rule",
            "--listener-arn",
            &listener,
            "--priority",
            "99",
            "--conditions",
            "Field=path-pattern,Values=/x",
            "--actions",
            "Type=redirect,RedirectConfig={StatusCode=HTTP_302}",
        ],
    );
    assert!(err.contains("(InvalidLoadBalancerAction)"), "{err}");
    let err = elb_err(&api, &["delete-rule", "--rule-arn", &default_arn]);
    assert!(err.contains("(OperationNotPermitted)"), "{err}");
    let err = elb_err(&api, &["delete-rule", "--rule-arn", &format!("{by_path}0")]);
    assert!(err.contains("(RuleNotFound)"), "{err}");
    let err = elb_err(
        &api,
        &["delete-target-group", "--target-group-arn", &groups[1]],
    );
    assert!(err.contains("(ResourceInUse)"), "{err}");

    // ModifyRule, ModifyListener, DeleteRule through boto3.
    let v = api.boto3(&format!(
        r#"
import boto3, json, os
c = boto3.client("elbv2", endpoint_url=os.environ["ENDPOINT"], region_name="us-east-1")
r = c.modify_rule(RuleArn="{by_path}", Conditions=[{{"Field": "path-pattern", "Values": ["/v2/*"]}}])
c.modify_listener(ListenerArn="{listener}", DefaultActions=[{{"Type": "forward", "TargetGroupArn": "{g0}"}}])
c.delete_rule(RuleArn="{by_host}")
rules = c.describe_rules(ListenerArn="{listener}")["Rules"]
try:
    c.create_rule(ListenerArn="{listener}", Priority=1, Conditions=[{{"Field": "path-pattern", "Values": ["/z"]}}],
                  Actions=[{{"Type": "authenticate-oidc", "Order": 1, "AuthenticateOidcConfig": {{"Issuer": "i", "AuthorizationEndpoint": "a", "TokenEndpoint": "t", "UserInfoEndpoint": "u", "ClientId": "c"}}}}])
    err = None
except c.exceptions.InvalidLoadBalancerActionException as e:
    err = e.response["Error"]["Code"]
print(json.dumps({{"modified": r["Rules"][0]["Conditions"][0]["Values"], "prio": [x["Priority"] for x in rules],
                  "default": rules[-1]["Actions"][0]["TargetGroupArn"], "err": err}}))
"#,
        g0 = groups[0]
    ));
    assert_eq!(v["modified"], serde_json::json!(["/v2/*"]));
    assert_eq!(v["prio"], serde_json::json!(["10", "30", "40", "default"]));
    assert_eq!(v["default"], groups[0].as_str());
    assert_eq!(v["err"], "InvalidLoadBalancerAction");
    // The host rule is gone and the default forwards: everything reaches a.
    assert_eq!(
        name_at(&format!("{base}/"), &["-H", "Host: b.example.com"]),
        "a"
    );
    assert_eq!(name_at(&format!("{base}/v2/x"), &[]), "a");

    // Kept in the store: a restarted serve has the same rules and routes by them.
    let before = elb_json(&api, &["describe-rules", "--listener-arn", &listener]);
    api.restart();
    let after = elb_json(&api, &["describe-rules", "--listener-arn", &listener]);
    assert_eq!(before, after);
    api.wait_for(20, "the listener again", || {
        let (code, _, _) = curl(
            &format!("{base}/beta?v=2"),
            &["-X", "POST", "-H", "x-env: beta"],
        );
        (code == 200).then_some(())
    });
    let (code, got, _) = curl(&format!("{base}/old/a"), &["-H", "Host: h.example.com"]);
    assert_eq!(
        (code, got.as_str()),
        (301, "https://h.example.com:443/new/old/a|")
    );

    // ModifyListener's port: the listener moves there.
    let p2 = common::util::free_port();
    let l = elb_json(
        &api,
        &[
            "modify-listener",
            "--listener-arn",
            &listener,
            "--port",
            &p2.to_string(),
        ],
    );
    assert_eq!(l["Listeners"][0]["Port"], p2);
    let moved = format!("http://{ip}:{p2}");
    api.wait_for(10, "the listener on its new port", || {
        std::net::TcpStream::connect((ip.as_str(), p2)).ok()
    });
    assert_eq!(name_at(&format!("{moved}/v2/x"), &[]), "a");
    let (code, _, _) = curl(&format!("{moved}/old/a"), &[]);
    assert_eq!(code, 301);
}

#[test]
fn a_weighted_forward_splits_requests_by_its_weights() {
    let api = Api::start();
    let t = Targets::start(&["a", "b"]);
    let (ip, port, listener, groups) = alb_with_groups(
        &api,
        "weights",
        &t,
        r#"[{"Type":"fixed-response","FixedResponseConfig":{"StatusCode":"503"}}]"#,
    );
    let forward = |sticky: &str| {
        format!(
            r#"[{{"Type":"forward","ForwardConfig":{{"TargetGroups":[{{"TargetGroupArn":"{}","Weight":80}},{{"TargetGroupArn":"{}","Weight":20}}],"TargetGroupStickinessConfig":{sticky}}}}}]"#,
            groups[0], groups[1]
        )
    };
    let rule = create_rule(
        &api,
        &listener,
        1,
        "Field=path-pattern,Values=/*",
        &forward(r#"{"Enabled":false}"#),
    );
    let rules = elb_json(&api, &["describe-rules", "--listener-arn", &listener]);
    let tgs = &rules["Rules"][0]["Actions"][0]["ForwardConfig"]["TargetGroups"];
    assert_eq!(tgs[0]["Weight"], 80);
    assert_eq!(tgs[1]["Weight"], 20);
    api.wait_for(20, "both targets healthy", || {
        groups
            .iter()
            .all(|g| {
                health_states(&api, g)
                    .iter()
                    .all(|(_, s, _)| s == "healthy")
            })
            .then_some(())
    });
    // 1,000 requests on one kept-alive connection.
    let py = format!(
        r#"
import http.client, json
c = http.client.HTTPConnection("{ip}", {port}, timeout=10)
n = {{}}
for i in range(1000):
    c.request("GET", "/w/%d" % i)
    r = c.getresponse()
    b = r.read()
    k = json.loads(b)["name"] if r.status == 200 else str(r.status)
    n[k] = n.get(k, 0) + 1
print(json.dumps(n))
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
    let n: Value = serde_json::from_slice(&out.stdout).unwrap();
    let a = n["a"].as_u64().unwrap_or(0);
    let b = n["b"].as_u64().unwrap_or(0);
    eprintln!("weighted forward 80/20 over 1,000 requests: a {a}, b {b}");
    assert_eq!(a + b, 1000, "{n}");
    // Within 5 points of 80 % (4 standard deviations of a binomial draw).
    assert!((750..=850).contains(&a), "{n}");

    // Target group stickiness: a client's AWSALBTG keeps it on the group it was sent to.
    elb_json(
        &api,
        &[
            "modify-rule",
            "--rule-arn",
            &rule,
            "--actions",
            &forward(r#"{"Enabled":true,"DurationSeconds":300}"#),
        ],
    );
    let url = format!("http://{ip}:{port}/tg");
    let dir = tempfile::tempdir().unwrap();
    for client in 0..4 {
        let jar = dir.path().join(format!("c{client}"));
        let (first, cookies) = with_jar(&url, &jar);
        assert!(
            cookies.iter().any(|c| c.starts_with("AWSALBTG="))
                && cookies.iter().any(|c| c.starts_with("AWSALBTGCORS=")),
            "{cookies:?}"
        );
        for _ in 0..6 {
            assert_eq!(
                with_jar(&url, &jar).0,
                first,
                "client {client} stays on its group"
            );
        }
    }
}

/// `GET url` with curl and the cookie jar `jar` (read and written): (target name, the
/// response's Set-Cookie headers).
fn with_jar(url: &str, jar: &std::path::Path) -> (String, Vec<String>) {
    let j = jar.to_str().unwrap();
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "--noproxy",
            "*",
            "-m",
            "10",
            "-D",
            "-",
            "-b",
            j,
            "-c",
            j,
            url,
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let cookies = head
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("set-cookie")
                .then(|| v.trim().to_string())
        })
        .collect();
    let v: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("{url}: {text}"));
    (v["name"].as_str().unwrap().to_string(), cookies)
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

/// Sticky sessions as ALB keeps them: `lb_cookie` binds a client (its cookie jar) to one
/// target until that target is unhealthy, then to another; a cookie the load balancer did
/// not make is ignored; `app_cookie` binds once the target sets the application's cookie;
/// and slow start gives a target that turns healthy a small, growing share.
#[test]
fn sticky_sessions_bind_a_client_to_its_target_and_slow_start_ramps_a_new_one() {
    let api = Api::start();
    let t = Targets::start(&["a", "b", "c"]);
    let common::elb::Alb {
        arn: lb_arn, ip, ..
    } = common::elb::create_alb(&api, "sticky");
    let tg = checked_group(&api, "sticky");
    set_attributes(
        &api,
        &tg,
        &["Key=deregistration_delay.timeout_seconds,Value=0"],
    );
    let port = common::util::free_port();
    common::elb::http_listener(&api, &lb_arn, &port.to_string(), &tg);
    let target = |p: u16| format!("Id=127.0.0.1,Port={p}");
    let all: Vec<String> = t.ports.iter().map(|p| target(*p)).collect();
    let mut args = vec!["register-targets", "--target-group-arn", &tg, "--targets"];
    args.extend(all.iter().map(String::as_str));
    elb_json(&api, &args);
    let healthy = |n: usize| {
        api.wait_for(30, &format!("{n} healthy targets"), || {
            (health_states(&api, &tg)
                .iter()
                .filter(|(_, s, _)| s == "healthy")
                .count()
                == n)
                .then_some(())
        })
    };
    healthy(3);
    let url = format!("http://{ip}:{port}/page");
    let dir = tempfile::tempdir().unwrap();

    // Duration-based stickiness.
    set_attributes(
        &api,
        &tg,
        &[
            "Key=stickiness.enabled,Value=true",
            "Key=stickiness.type,Value=lb_cookie",
            "Key=stickiness.lb_cookie.duration_seconds,Value=120",
        ],
    );
    let attrs = elb_json(
        &api,
        &[
            "describe-target-group-attributes",
            "--target-group-arn",
            &tg,
        ],
    );
    let attr = |k: &str| common::elb::attribute(&attrs, k);
    assert_eq!(attr("stickiness.type").as_deref(), Some("lb_cookie"));
    let jar = dir.path().join("one");
    let (first, cookies) = with_jar(&url, &jar);
    let awsalb = cookies.iter().find(|c| c.starts_with("AWSALB=")).cloned();
    let cors = cookies.iter().find(|c| c.starts_with("AWSALBCORS="));
    assert!(
        awsalb
            .as_ref()
            .is_some_and(|c| c.contains("Expires=") && c.contains("Path=/")),
        "{cookies:?}"
    );
    assert!(
        cors.is_some_and(|c| c.contains("SameSite=None") && c.contains("Secure")),
        "{cookies:?}"
    );
    for _ in 0..8 {
        assert_eq!(
            with_jar(&url, &jar).0,
            first,
            "a stuck client stays on its target"
        );
    }
    // Clients without the cookie still go round robin.
    let mut names = names_of(&url, 6);
    names.sort();
    assert_eq!(names, ["a", "a", "b", "b", "c", "c"]);
    // A cookie the load balancer did not make (another target's address under the real
    // cookie's tag) is ignored: the request is answered and a new cookie set.
    let real = awsalb.unwrap();
    let value = real
        .trim_start_matches("AWSALB=")
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let tag = value.split_once('.').unwrap().1;
    let (code, _, _) = curl(&url, &["-b", &format!("AWSALB=MTI3LjAuMC4xOjE.{tag}")]);
    assert_eq!(code, 200);
    // The stuck target turns unhealthy: the client moves to another one, and stays there.
    let port_of = |name: &str| t.ports[["a", "b", "c"].iter().position(|n| *n == name).unwrap()];
    t.sick(&first, true);
    api.wait_for(30, "the stuck target unhealthy", || {
        health_states(&api, &tg)
            .iter()
            .any(|(p, s, _)| *p == u64::from(port_of(&first)) && s == "unhealthy")
            .then_some(())
    });
    let (moved, _) = with_jar(&url, &jar);
    assert_ne!(moved, first);
    for _ in 0..5 {
        assert_eq!(with_jar(&url, &jar).0, moved, "stuck to the new target");
    }
    t.sick(&first, false);
    healthy(3);

    // Application-based stickiness: the load balancer's cookie follows the application's.
    let e = elb_err(
        &api,
        &[
            "modify-target-group-attributes",
            "--target-group-arn",
            &tg,
            "--attributes",
            "Key=stickiness.app_cookie.cookie_name,Value=AWSALBAPP",
        ],
    );
    assert!(e.contains("ValidationError"), "{e}");
    set_attributes(
        &api,
        &tg,
        &[
            "Key=stickiness.type,Value=app_cookie",
            "Key=stickiness.app_cookie.cookie_name,Value=session",
        ],
    );
    let jar = dir.path().join("app");
    let (_, cookies) = with_jar(&url, &jar);
    assert!(
        !cookies.iter().any(|c| c.starts_with("AWSALB")),
        "no application cookie yet: {cookies:?}"
    );
    let login = format!("http://{ip}:{port}/login");
    let (who, cookies) = with_jar(&login, &jar);
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with(&format!("session={who}")))
            && cookies.iter().any(|c| c.starts_with("AWSALBAPP-0=")),
        "{cookies:?}"
    );
    for _ in 0..6 {
        assert_eq!(
            with_jar(&url, &jar).0,
            who,
            "stuck by the application's cookie"
        );
    }

    // Slow start: target c leaves and comes back while a and b serve; once healthy again
    // it gets a small share, growing to its full one.
    set_attributes(
        &api,
        &tg,
        &[
            "Key=stickiness.enabled,Value=false",
            "Key=slow_start.duration_seconds,Value=30",
        ],
    );
    let c = target(t.ports[2]);
    elb_json(
        &api,
        &[
            "deregister-targets",
            "--target-group-arn",
            &tg,
            "--targets",
            &c,
        ],
    );
    api.wait_for(30, "c gone", || {
        (health_states(&api, &tg).len() == 2).then_some(())
    });
    elb_json(
        &api,
        &[
            "register-targets",
            "--target-group-arn",
            &tg,
            "--targets",
            &c,
        ],
    );
    healthy(3);
    let share = |n: usize| -> f64 {
        let py = format!(
            r#"
import http.client, json
c = http.client.HTTPConnection("{ip}", {port}, timeout=10)
k = 0
for i in range({n}):
    c.request("GET", "/s")
    r = c.getresponse()
    k += json.loads(r.read())["name"] == "c"
print(k)
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
        let k: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        k / n as f64
    };
    let early = share(300);
    eprintln!("slow start: c's share just after it turned healthy: {early:.3}");
    assert!(early < 0.25, "c in slow start gets a small share: {early}");
    std::thread::sleep(std::time::Duration::from_secs(30));
    let late = share(300);
    eprintln!("slow start: c's share after the 30 s: {late:.3}");
    assert!(
        (late - 1.0 / 3.0).abs() < 0.02,
        "c's full share after slow start: {late}"
    );
}

/// A service task in bridge mode answering `GET /` on container port 8080 with an id of
/// its own, published on a host port chosen at launch (`hostPort` 0).
fn bridge_web_def(family: &str) -> String {
    format!(
        r#"{{"family":"{family}","networkMode":"bridge","requiresCompatibilities":["EC2"],
  "containerDefinitions":[{{"name":"web","image":"public.ecr.aws/docker/library/busybox:1.36",
    "essential":true,"memory":64,"portMappings":[{{"containerPort":8080,"hostPort":0}}],
    "command":["sh","-c","mkdir -p /www && cat /proc/sys/kernel/random/uuid > /www/index.html && trap 'exit 0' TERM; httpd -f -p 8080 -h /www & wait"]}}]}}"#
    )
}

/// (instance id, port, state) of each target of `tg`, sorted.
fn instance_targets(api: &Api, tg: &str) -> Vec<(String, u64, String)> {
    let h = elb_json(api, &["describe-target-health", "--target-group-arn", tg]);
    let mut v: Vec<(String, u64, String)> = h["TargetHealthDescriptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                s(&d["Target"]["Id"]).to_string(),
                d["Target"]["Port"].as_u64().unwrap(),
                s(&d["TargetHealth"]["State"]).to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn a_bridge_mode_service_behind_an_instance_target_group_is_reached_at_its_host_ports() {
    let api = Api::start();
    let alb = common::elb::create_alb(&api, "bridge");
    let tg = common::elb::target_group_of(&api, "bridge", 5, "instance");
    let port = common::util::free_port();
    common::elb::http_listener(&api, &alb.arn, &port.to_string(), &tg);
    api.aws_json(&["create-cluster", "--cluster-name", "default"]);

    // The box is a container instance with an EC2 instance id, the same on each call.
    let list = api.aws_json(&["list-container-instances"]);
    let ci = s(&list["containerInstanceArns"][0]).to_string();
    let described = api.aws_json(&["describe-container-instances", "--container-instances", &ci]);
    let instance = s(&described["containerInstances"][0]["ec2InstanceId"]).to_string();
    assert!(
        instance.len() == 19
            && instance.starts_with("i-")
            && instance[2..].bytes().all(|b| b.is_ascii_hexdigit()),
        "{instance}"
    );
    let again = api.aws_json(&["describe-container-instances", "--container-instances", &ci]);
    assert_eq!(
        s(&again["containerInstances"][0]["ec2InstanceId"]),
        instance
    );

    // A malformed instance id: ELB's ValidationError, registering and deregistering.
    for (verb, bad) in [
        ("register-targets", "10.19.173.98"),
        ("register-targets", "i-xyz"),
        (
            "deregister-targets",
            "ip-10-7-0-7.eu-west-1.compute.internal",
        ),
    ] {
        let err = elb_err(
            &api,
            &[
                verb,
                "--target-group-arn",
                &tg,
                "--targets",
                &format!("Id={bad},Port=8080"),
            ],
        );
        assert!(
            err.contains("(ValidationError)")
                && err.contains(&format!("Instance ID '{bad}' is not valid")),
            "{verb} {bad}: {err}"
        );
    }
    // An instance no box is: ELB's InvalidTarget.
    let err = elb_err(
        &api,
        &[
            "register-targets",
            "--target-group-arn",
            &tg,
            "--targets",
            "Id=i-0123456789abcdef0,Port=8080",
        ],
    );
    assert!(
        err.contains("(InvalidTarget)")
            && err.contains("The following instances do not exist: 'i-0123456789abcdef0'"),
        "{err}"
    );

    let f = api.file("bweb.json", &bridge_web_def("bweb"));
    api.aws_json(&["register-task-definition", "--cli-input-json", &f]);
    let f = api.file("vweb.json", &web_def("vweb"));
    api.aws_json(&["register-task-definition", "--cli-input-json", &f]);

    // ECS refuses an `ip` group for bridge tasks and an `instance` group for awsvpc ones.
    let ip_tg = common::elb::http_target_group(&api, "bridge-ip", 5);
    let refused = |td: &str, group: &str, mode: &str, kind: &str| {
        let lbs = format!("targetGroupArn={group},containerName=web,containerPort=8080");
        let out = api.aws(&[
            "create-service",
            "--service-name",
            "refused",
            "--task-definition",
            td,
            "--desired-count",
            "1",
            "--load-balancers",
            &lbs,
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        let want = format!(
            "(InvalidParameterException) when calling the CreateService operation: The \
             provided target group {group} has target type {kind}, which is incompatible with \
             the {mode} network mode specified in the task definition."
        );
        assert!(err.contains(&want), "{err}\nwant: {want}");
    };
    refused("bweb", &ip_tg, "bridge", "ip");
    refused("vweb", &tg, "awsvpc", "instance");

    let lbs = format!("targetGroupArn={tg},containerName=web,containerPort=8080");
    api.aws_json(&[
        "create-service",
        "--service-name",
        "bweb",
        "--task-definition",
        "bweb",
        "--launch-type",
        "EC2",
        "--desired-count",
        "3",
        "--load-balancers",
        &lbs,
    ]);

    // Three targets: the box's instance id, each task's host port, healthy.
    let targets = api.wait_for(120, "3 healthy instance targets", || {
        let t = instance_targets(&api, &tg);
        (t.len() == 3 && t.iter().all(|(_, _, st)| st == "healthy")).then_some(t)
    });
    assert!(
        targets.iter().all(|(id, _, _)| *id == instance),
        "{targets:?}"
    );
    let mut ports: Vec<u64> = targets.iter().map(|(_, p, _)| *p).collect();
    ports.dedup();
    assert_eq!(ports.len(), 3, "three different host ports: {targets:?}");
    let tasks = api.aws_json(&["list-tasks", "--service-name", "bweb"]);
    let mut args = vec!["describe-tasks", "--tasks"];
    args.extend(tasks["taskArns"].as_array().unwrap().iter().map(s));
    let described = api.aws_json(&args);
    let mut host_ports: Vec<u64> = described["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let b = &t["containers"][0]["networkBindings"][0];
            assert_eq!(b["containerPort"], 8080, "{t:#}");
            b["hostPort"].as_u64().unwrap()
        })
        .collect();
    host_ports.sort();
    assert_eq!(ports, host_ports);

    // Traffic through the listener reaches all three.
    let url = format!("http://{}:{port}/", alb.ip);
    let bodies = distinct_answers(&url, 6);
    assert_eq!(bodies.len(), 3, "{bodies:?}");
    let ev = service_events(&api, "bweb");
    assert!(
        ev.iter()
            .any(|e| e == &format!("(service bweb) registered 3 targets in (target-group {tg})")),
        "{ev:#?}"
    );

    // UpdateService refuses an `ip` group for the service's bridge tasks too.
    let lbs_ip = format!("targetGroupArn={ip_tg},containerName=web,containerPort=8080");
    let out = api.aws(&[
        "update-service",
        "--service",
        "bweb",
        "--load-balancers",
        &lbs_ip,
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains(&format!(
                "The provided target group {ip_tg} has target type ip, which is incompatible \
                 with the bridge network mode specified in the task definition."
            )),
        "{err}"
    );

    // Scale in 3 -> 1 under a keep-alive client: two targets drain, then their tasks
    // stop; the client sees no error.
    let client = common::elb::Client::start(&api, &alb.ip, &[port]);
    std::thread::sleep(std::time::Duration::from_secs(1));
    api.aws_json(&[
        "update-service",
        "--service",
        "bweb",
        "--desired-count",
        "1",
    ]);
    let draining = api.wait_for(20, "2 draining targets", || {
        let t = instance_targets(&api, &tg);
        (t.iter().filter(|(_, _, st)| st == "draining").count() == 2).then_some(t)
    });
    assert_eq!(draining.len(), 3, "{draining:?}");
    api.wait_for(40, "the drained tasks stopped", || {
        service_events(&api, "bweb")
            .iter()
            .any(|e| e.starts_with("(service bweb) has stopped 2 running tasks"))
            .then_some(())
    });
    std::thread::sleep(std::time::Duration::from_secs(1));
    let answers = client.finish();
    let failed: Vec<_> = answers.iter().filter(|a| a.2 != "200").collect();
    eprintln!(
        "bridge scale-in: {} requests, {} failed",
        answers.len(),
        failed.len()
    );
    assert!(answers.len() > 100, "{}", answers.len());
    assert!(failed.is_empty(), "{failed:?}");
    let left = instance_targets(&api, &tg);
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].2, "healthy");
    api.aws_json(&["delete-service", "--service", "bweb", "--force"]);
    api.wait_for(60, "bweb INACTIVE", || {
        (api.service("default", "bweb")["status"] == "INACTIVE").then_some(())
    });
}

#[test]
fn a_host_mode_service_task_is_an_instance_target_at_its_container_port() {
    let api = Api::start();
    let alb = common::elb::create_alb(&api, "hostmode");
    let tg = common::elb::target_group_of(&api, "hostmode", 0, "instance");
    let port = common::util::free_port();
    common::elb::http_listener(&api, &alb.arn, &port.to_string(), &tg);
    api.aws_json(&["create-cluster", "--cluster-name", "default"]);
    // Host mode: the container listens on the box's own port.
    let app_port = common::util::free_port();
    let def = format!(
        r#"{{"family":"hweb","networkMode":"host","requiresCompatibilities":["EC2"],
  "containerDefinitions":[{{"name":"web","image":"public.ecr.aws/docker/library/busybox:1.36",
    "essential":true,"memory":64,"portMappings":[{{"containerPort":{app_port}}}],
    "command":["sh","-c","mkdir -p /tmp/www && echo host-mode > /tmp/www/index.html && trap 'exit 0' TERM; httpd -f -p {app_port} -h /tmp/www & wait"]}}]}}"#
    );
    let f = api.file("hweb.json", &def);
    api.aws_json(&["register-task-definition", "--cli-input-json", &f]);
    let list = api.aws_json(&["list-container-instances"]);
    let ci = s(&list["containerInstanceArns"][0]).to_string();
    let described = api.aws_json(&["describe-container-instances", "--container-instances", &ci]);
    let instance = s(&described["containerInstances"][0]["ec2InstanceId"]).to_string();
    let lbs = format!("targetGroupArn={tg},containerName=web,containerPort={app_port}");
    api.aws_json(&[
        "create-service",
        "--service-name",
        "hweb",
        "--task-definition",
        "hweb",
        "--launch-type",
        "EC2",
        "--desired-count",
        "1",
        "--load-balancers",
        &lbs,
    ]);
    let targets = api.wait_for(90, "1 healthy instance target", || {
        let t = instance_targets(&api, &tg);
        (t.len() == 1 && t[0].2 == "healthy").then_some(t)
    });
    assert_eq!(targets[0].0, instance);
    assert_eq!(targets[0].1, u64::from(app_port));
    let (code, body) = get(&format!("http://{}:{port}/", alb.ip));
    assert_eq!((code, body.trim()), (200, "host-mode"));
    api.aws_json(&["delete-service", "--service", "hweb", "--force"]);
    api.wait_for(60, "hweb INACTIVE", || {
        (api.service("default", "hweb")["status"] == "INACTIVE").then_some(())
    });
}

/// One target's points in serve's record of the targets' health changes (the console's
/// `GET /console/api/target-health-history`): (seconds since the epoch, state, reason).
fn health_history(api: &Api, tg: &str, id: &str, port: u16) -> Vec<(f64, String, String)> {
    let (key, secret) = api.credentials();
    let (code, _, body) = curl(
        &format!("{}/console/api/target-health-history", api.endpoint),
        &["-u", &format!("{key}:{secret}")],
    );
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let targets = v["targets"].as_array().unwrap();
    let Some(t) = targets
        .iter()
        .find(|t| t["targetGroupArn"] == tg && t["id"] == id && t["port"] == port)
    else {
        return Vec::new();
    };
    t["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["at"].as_f64().unwrap(),
                s(&p["state"]).to_string(),
                p["reason"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn epoch_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn the_console_s_target_health_history_outlives_a_serve_restart() {
    let mut api = Api::start();
    let t = Targets::start(&["h"]);
    let lb = elb_json(&api, &["create-load-balancer", "--name", "history"]);
    let lb_arn = s(&lb["LoadBalancers"][0]["LoadBalancerArn"]).to_string();
    let tg = checked_group(&api, "history");
    let port = common::util::free_port().to_string();
    common::elb::http_listener(&api, &lb_arn, &port, &tg);
    let tport = t.ports[0];
    elb_json(
        &api,
        &[
            "register-targets",
            "--target-group-arn",
            &tg,
            "--targets",
            &format!("Id=127.0.0.1,Port={tport}"),
        ],
    );
    let state_is = |api: &Api, want: &str| {
        api.wait_for(40, &format!("the target {want}"), || {
            let h = health_states(api, &tg);
            (h.len() == 1 && h[0].1 == want).then_some(h[0].2.clone())
        })
    };
    state_is(&api, "healthy");
    t.sick("h", true);
    let why = state_is(&api, "unhealthy");
    assert_eq!(why, "Target.ResponseCodeMismatch");
    let history = |api: &Api| health_history(api, &tg, "127.0.0.1", tport);
    let before = history(&api);
    let states: Vec<&str> = before.iter().map(|p| p.1.as_str()).collect();
    assert_eq!(states.first(), Some(&"initial"), "{before:?}");
    assert_eq!(
        &states[states.len() - 2..],
        ["healthy", "unhealthy"],
        "{before:?}"
    );
    assert_eq!(before.last().unwrap().2, why);

    // SIGTERM, and serve again on the same root: the same points, with their times, then
    // what DescribeTargetHealth reports after the restart (checks start over: initial).
    api.restart();
    let after = history(&api);
    assert!(
        after.len() > before.len() && after[..before.len()] == before[..],
        "before the restart {before:?}, after it {after:?}"
    );
    let next = &after[before.len()];
    assert_eq!(
        (next.1.as_str(), next.2.as_str()),
        ("initial", "Elb.RegistrationInProgress"),
        "{after:?}"
    );
    assert!(next.0 > before.last().unwrap().0, "{after:?}");
    // Still failing its checks: unhealthy again, appended (and written: it is there after
    // the next restart too).
    state_is(&api, "unhealthy");
    let again = history(&api);
    assert_eq!(again[..after.len()], after[..], "{again:?}");
    assert_eq!(again.last().unwrap().1, "unhealthy", "{again:?}");
    api.restart();
    let kept = history(&api);
    assert_eq!(kept[..again.len()], again[..], "{kept:?}");

    // A stored row this serve cannot read: it starts all the same, its history from then on.
    let db = api.mf.root.join("state.db");
    let py = "import sqlite3, sys\n\
              c = sqlite3.connect(sys.argv[1], timeout=30)\n\
              c.execute(\"INSERT INTO elb_target_health_history (target_group, target_id, port, at_ms, state) VALUES ('g', 'x', 1, 1, 'sleepy')\")\n\
              c.commit()\n";
    let out = std::process::Command::new("python3")
        .args(["-c", py])
        .arg(&db)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let restarted_at = epoch_now();
    api.restart();
    let afresh = history(&api);
    assert!(
        !afresh.is_empty() && afresh.iter().all(|p| p.0 >= restarted_at - 0.01),
        "after {restarted_at}: {afresh:?}"
    );
    assert_eq!(afresh[0].1, "initial", "{afresh:?}");
}
