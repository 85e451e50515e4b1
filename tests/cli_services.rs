//! Root integration tests of the CLI's `elbv2` and `servicediscovery` verb groups
//! (`minifargate elbv2 VERB …` as `aws elbv2 VERB …`): each verb's answer is the real AWS
//! CLI's for the same state (`aws … --endpoint-url` against serve), `--query` and
//! `--output text|table` print as the AWS CLI prints them, a wrong command line exits 2 and
//! a service's error is the AWS CLI's sentence; what the CLI makes while serve runs is
//! served (a listener made with the CLI proxies); a store that is a cluster's replica is
//! refused.

use crate::common;

use common::api::Api;
use common::elb::{Targets, get};
use common::etcd::Etcd;
use common::image::{Compression, busybox_layer};
use serde_json::Value;
use std::process::Output;

/// `minifargate SERVICE ARGS`.
fn mf(api: &Api, service: &str, args: &[&str]) -> Output {
    let mut full = vec![service];
    full.extend(args);
    api.mf.run(&full)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `minifargate SERVICE ARGS`, which must succeed: its JSON (Null when it printed none).
fn mf_json(api: &Api, service: &str, args: &[&str]) -> Value {
    let o = mf(api, service, args);
    assert!(
        o.status.success(),
        "minifargate {service} {args:?}: {}",
        stderr(&o)
    );
    if o.stdout.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(&o.stdout).unwrap()
}

/// The same verb through minifargate and through the AWS CLI against serve: both answers,
/// which must be the same once `volatile` members (at any depth) are taken out.
fn same(api: &Api, service: &str, args: &[&str], volatile: &[&str]) -> Value {
    fn strip(v: &mut Value, volatile: &[&str]) {
        match v {
            Value::Object(m) => {
                m.retain(|k, _| !volatile.contains(&k.as_str()));
                m.values_mut().for_each(|x| strip(x, volatile));
            }
            Value::Array(a) => a.iter_mut().for_each(|x| strip(x, volatile)),
            _ => {}
        }
    }
    let mut ours = mf_json(api, service, args);
    let mut theirs = api.aws_json_in(service, args);
    strip(&mut ours, volatile);
    strip(&mut theirs, volatile);
    assert_eq!(
        ours, theirs,
        "minifargate {service} {args:?} differs from aws {service}"
    );
    ours
}

/// The same verb's printed text through both, byte for byte.
fn same_text(api: &Api, service: &str, args: &[&str]) -> String {
    let ours = mf(api, service, args);
    assert!(ours.status.success(), "{}", stderr(&ours));
    let mut c = api.aws_command(service, args);
    // aws_command asks for JSON; a later --output wins.
    let theirs = c.output().unwrap();
    assert!(theirs.status.success(), "{}", stderr(&theirs));
    assert_eq!(
        stdout(&ours),
        stdout(&theirs),
        "minifargate {service} {args:?} prints otherwise than aws {service}"
    );
    stdout(&ours)
}

fn s(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("not a string: {v}"))
        .to_string()
}

#[test]
fn elbv2_verbs_answer_as_the_aws_cli_and_a_listener_they_make_proxies() {
    let api = Api::start();
    let t = Targets::start(&["cli-a"]);

    // Help: the verbs with the model's first sentence, a verb's options.
    let help = stdout(&mf(&api, "elbv2", &["--help"]));
    assert!(
        help.contains("create-target-group") && help.contains("Creates a target group."),
        "{help}"
    );
    let help = stdout(&mf(&api, "elbv2", &["create-target-group", "--help"]));
    for opt in [
        "--health-check-path",
        "--target-type",
        "--cli-input-json",
        "--query",
    ] {
        assert!(help.contains(opt), "{opt}: {help}");
    }

    // Made with the CLI while serve runs, answered alike by both.
    let lb = mf_json(&api, "elbv2", &["create-load-balancer", "--name", "cli-lb"]);
    let lb = &lb["LoadBalancers"][0];
    let lb_arn = s(&lb["LoadBalancerArn"]);
    let ip = s(&lb["AvailabilityZones"][0]["LoadBalancerAddresses"][0]["IpAddress"]);
    same(
        &api,
        "elbv2",
        &["describe-load-balancers", "--names", "cli-lb"],
        &["State"],
    );
    let tg = mf_json(
        &api,
        "elbv2",
        &[
            "create-target-group",
            "--name",
            "cli-tg",
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
            "--matcher",
            "HttpCode=200-299",
            "--tags",
            "Key=team,Value=web",
        ],
    );
    let tg_arn = s(&tg["TargetGroups"][0]["TargetGroupArn"]);
    let port = common::util::free_port().to_string();
    let listener = mf_json(
        &api,
        "elbv2",
        &[
            "create-listener",
            "--load-balancer-arn",
            &lb_arn,
            "--protocol",
            "HTTP",
            "--port",
            &port,
            "--default-actions",
            &format!("Type=forward,TargetGroupArn={tg_arn}"),
        ],
    );
    let listener_arn = s(&listener["Listeners"][0]["ListenerArn"]).to_string();
    // A verb of an operation Terraform's aws_lb_listener reads (DescribeListenerAttributes).
    mf_json(
        &api,
        "elbv2",
        &[
            "modify-listener-attributes",
            "--listener-arn",
            &listener_arn,
            "--attributes",
            "Key=routing.http.response.server.enabled,Value=false",
        ],
    );
    let a = same(
        &api,
        "elbv2",
        &[
            "describe-listener-attributes",
            "--listener-arn",
            &listener_arn,
        ],
        &[],
    );
    assert_eq!(
        common::elb::attribute(&a, "routing.http.response.server.enabled").as_deref(),
        Some("false")
    );
    let target = format!("Id=127.0.0.1,Port={}", t.ports[0]);
    mf_json(
        &api,
        "elbv2",
        &[
            "register-targets",
            "--target-group-arn",
            &tg_arn,
            "--targets",
            &target,
        ],
    );
    same(
        &api,
        "elbv2",
        &["describe-target-groups", "--names", "cli-tg"],
        &[],
    );
    same(
        &api,
        "elbv2",
        &["describe-listeners", "--load-balancer-arn", &lb_arn],
        &[],
    );
    same(
        &api,
        "elbv2",
        &["describe-tags", "--resource-arns", &tg_arn],
        &[],
    );
    same(
        &api,
        "elbv2",
        &[
            "describe-target-group-attributes",
            "--target-group-arn",
            &tg_arn,
        ],
        &[],
    );

    // serve's data plane took what the CLI made: the target turns healthy and the
    // listener forwards to it.
    api.wait_for(30, "the target healthy", || {
        let o = mf(
            &api,
            "elbv2",
            &[
                "describe-target-health",
                "--target-group-arn",
                &tg_arn,
                "--query",
                "TargetHealthDescriptions[].TargetHealth.State",
                "--output",
                "text",
            ],
        );
        (stdout(&o).trim() == "healthy").then_some(())
    });
    let (code, body) = get(&format!("http://{ip}:{port}/"));
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"cli-a\""), "{body}");

    // --query, --output text and table as the AWS CLI prints them.
    let text = same_text(
        &api,
        "elbv2",
        &[
            "describe-target-groups",
            "--names",
            "cli-tg",
            "--output",
            "text",
        ],
    );
    assert!(text.contains("TARGETGROUPS"), "{text}");
    same_text(
        &api,
        "elbv2",
        &[
            "describe-target-groups",
            "--names",
            "cli-tg",
            "--output",
            "table",
        ],
    );
    let q = same_text(
        &api,
        "elbv2",
        &[
            "describe-load-balancers",
            "--query",
            "LoadBalancers[].[LoadBalancerName,DNSName]",
            "--output",
            "text",
        ],
    );
    assert!(q.starts_with("cli-lb\tcli-lb-"), "{q}");

    // ELB's errors, in the AWS CLI's sentence (exit 1, as the ECS verbs' errors).
    for (args, code) in [
        (
            vec![
                "create-load-balancer",
                "--name",
                "cli-lb",
                "--type",
                "network",
            ],
            "DuplicateLoadBalancerName",
        ),
        (
            vec!["describe-target-groups", "--names", "no-such-group"],
            "TargetGroupNotFound",
        ),
    ] {
        let ours = mf(&api, "elbv2", &args);
        assert_eq!(ours.status.code(), Some(1), "{}", stderr(&ours));
        let theirs = api.aws_in("elbv2", &args);
        let line = |t: String| {
            t.lines()
                .find(|l| l.contains("An error occurred"))
                .map(|l| l[l.find("An error occurred").unwrap()..].to_string())
                .unwrap_or_else(|| panic!("no AWS CLI error sentence: {t}"))
        };
        let (a, b) = (line(stderr(&ours)), line(stderr(&theirs)));
        assert!(a.contains(&format!("({code})")), "{a}");
        assert_eq!(a, b);
    }

    // A wrong command line: the usage error, exit 2 (as the ECS verbs).
    let o = mf(&api, "elbv2", &["create-load-balancer", "--nmae", "x"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("'--nmae'"), "{}", stderr(&o));
    let o = mf(&api, "elbv2", &["create-load-baalncer", "--name", "x"]);
    assert_eq!(o.status.code(), Some(2));
    let o = mf(
        &api,
        "elbv2",
        &[
            "create-load-balancer",
            "--cli-input-json",
            r#"{"Nmae": "x"}"#,
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.contains("Unknown parameter in input: \"Nmae\"")
            && e.contains("Missing required parameter in input: \"Name\""),
        "{e}"
    );
    let o = mf(
        &api,
        "elbv2",
        &["create-target-group", "--name", "x", "--port", "eighty"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));

    // --cli-input-json (file://) and the skeleton.
    let skel = stdout(&mf(
        &api,
        "elbv2",
        &["delete-target-group", "--generate-cli-skeleton"],
    ));
    let skel: Value = serde_json::from_str(&skel).unwrap();
    assert_eq!(skel, serde_json::json!({"TargetGroupArn": ""}));
    let input = api.file(
        "tags.json",
        &format!(r#"{{"ResourceArns": ["{lb_arn}"], "Tags": [{{"Key": "k", "Value": "v"}}]}}"#),
    );
    mf_json(&api, "elbv2", &["add-tags", "--cli-input-json", &input]);
    let tags = same(
        &api,
        "elbv2",
        &["describe-tags", "--resource-arns", &lb_arn],
        &[],
    );
    assert_eq!(tags["TagDescriptions"][0]["Tags"][0]["Key"], "k");
}

/// The (State, Reason, Description) of target 127.0.0.1:`port` in a DescribeTargetHealth
/// answer; None when it is not listed.
fn target_health(v: &Value, port: u16) -> Option<(String, String, String)> {
    let d = v["TargetHealthDescriptions"]
        .as_array()?
        .iter()
        .find(|d| d["Target"]["Port"] == port)?;
    let h = &d["TargetHealth"];
    let text = |k: &str| h[k].as_str().unwrap_or_default().to_string();
    Some((text("State"), text("Reason"), text("Description")))
}

#[test]
fn a_target_the_cli_deregisters_drains_in_serve() {
    let api = Api::start();
    let t = Targets::start(&["drain-a", "drain-b"]);
    let (a, b) = (t.ports[0], t.ports[1]);
    let lb = mf_json(
        &api,
        "elbv2",
        &["create-load-balancer", "--name", "cli-drain-lb"],
    );
    let lb = &lb["LoadBalancers"][0];
    let lb_arn = s(&lb["LoadBalancerArn"]);
    let ip = s(&lb["AvailabilityZones"][0]["LoadBalancerAddresses"][0]["IpAddress"]);
    let tg = mf_json(
        &api,
        "elbv2",
        &[
            "create-target-group",
            "--name",
            "cli-drain-tg",
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
    let tg = s(&tg["TargetGroups"][0]["TargetGroupArn"]);
    const DELAY: u64 = 15;
    mf_json(
        &api,
        "elbv2",
        &[
            "modify-target-group-attributes",
            "--target-group-arn",
            &tg,
            "--attributes",
            &format!("Key=deregistration_delay.timeout_seconds,Value={DELAY}"),
        ],
    );
    let port = common::util::free_port().to_string();
    mf_json(
        &api,
        "elbv2",
        &[
            "create-listener",
            "--load-balancer-arn",
            &lb_arn,
            "--protocol",
            "HTTP",
            "--port",
            &port,
            "--default-actions",
            &format!("Type=forward,TargetGroupArn={tg}"),
        ],
    );
    let (ta, tb) = (
        format!("Id=127.0.0.1,Port={a}"),
        format!("Id=127.0.0.1,Port={b}"),
    );
    mf_json(
        &api,
        "elbv2",
        &[
            "register-targets",
            "--target-group-arn",
            &tg,
            "--targets",
            &ta,
            &tb,
        ],
    );
    let describe = ["describe-target-health", "--target-group-arn", &tg];
    api.wait_for(30, "both targets healthy", || {
        let v = mf_json(&api, "elbv2", &describe);
        let healthy = |p| target_health(&v, p).is_some_and(|h| h.0 == "healthy");
        (healthy(a) && healthy(b)).then_some(())
    });

    // A slow request in flight to the target to deregister: of two requests (round robin:
    // one to each target), the one to drain-a answers after 9 s (within `get`'s 10 s), the
    // other at once.
    t.slow_for("drain-a", 9);
    let url = format!("http://{ip}:{port}/");
    let mut in_flight: Vec<_> = (0..2)
        .map(|_| {
            let url = url.clone();
            let h = std::thread::spawn(move || get(&url));
            std::thread::sleep(std::time::Duration::from_millis(300));
            h
        })
        .collect();
    let fast = api.wait_for(10, "the request to drain-b answered", || {
        let i = in_flight.iter().position(|h| h.is_finished())?;
        Some(in_flight.remove(i).join().unwrap())
    });
    assert_eq!(fast.0, 200, "{}", fast.1);
    assert!(fast.1.contains("\"drain-b\""), "{}", fast.1);
    let slow = in_flight.pop().unwrap();

    // Deregistered with the CLI, in its own process: serve drains it.
    let deregistered = std::time::Instant::now();
    mf_json(
        &api,
        "elbv2",
        &[
            "deregister-targets",
            "--target-group-arn",
            &tg,
            "--targets",
            &ta,
        ],
    );
    let draining = (
        "draining".to_string(),
        "Target.DeregistrationInProgress".to_string(),
        "Target deregistration is in progress".to_string(),
    );
    api.wait_for(20, "the target draining to both CLIs", || {
        let ours = target_health(&mf_json(&api, "elbv2", &describe), a);
        let theirs = target_health(&api.aws_json_in("elbv2", &describe), a);
        (ours.as_ref() == Some(&draining) && theirs.as_ref() == Some(&draining)).then_some(())
    });
    let seen = deregistered.elapsed();
    eprintln!("draining seen by both CLIs {seen:?} after the deregistration began");
    assert!(
        !slow.is_finished(),
        "the slow request was still in flight when the target was seen draining"
    );
    // No new request reaches it (drain-a is still slow: one that did would say so).
    for _ in 0..6 {
        let (code, body) = get(&url);
        assert_eq!(code, 200, "{body}");
        assert!(body.contains("\"drain-b\""), "a new request went to {body}");
    }
    // The request in flight to it finishes.
    let (code, body) = slow.join().unwrap();
    let answered = deregistered.elapsed();
    eprintln!("the slow request answered {answered:?} after the deregistration began");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"drain-a\""), "{body}");
    // Gone once the deregistration delay is over, draining until then.
    api.wait_for(DELAY + 15, "the target gone from both CLIs", || {
        let ours = target_health(&mf_json(&api, "elbv2", &describe), a);
        let theirs = target_health(&api.aws_json_in("elbv2", &describe), a);
        eprintln!(
            "{:?} after: minifargate {ours:?}, aws {theirs:?}",
            deregistered.elapsed()
        );
        for h in [&ours, &theirs].into_iter().flatten() {
            assert_eq!(h, &draining, "until it is gone");
        }
        (ours.is_none() && theirs.is_none()).then_some(())
    });
    let gone = deregistered.elapsed();
    eprintln!("gone from both CLIs {gone:?} after the deregistration began");
    assert!(
        gone >= std::time::Duration::from_secs(DELAY),
        "gone {gone:?} after, before the delay"
    );
    assert_eq!(
        target_health(&mf_json(&api, "elbv2", &describe), b).map(|h| h.0),
        Some("healthy".to_string())
    );
}

/// A target the CLI deregisters and registers again at once (both between two of serve's
/// reads of the store) is a new registration to serve, as the two calls would be through
/// its API: its former health (here `unhealthy`) goes and it is `initial` again.
#[test]
fn a_target_the_cli_registers_again_at_once_is_a_new_registration_in_serve() {
    let api = Api::start();
    let lb = mf_json(
        &api,
        "elbv2",
        &["create-load-balancer", "--name", "cli-again-lb"],
    );
    let lb_arn = s(&lb["LoadBalancers"][0]["LoadBalancerArn"]);
    let tg = mf_json(
        &api,
        "elbv2",
        &[
            "create-target-group",
            "--name",
            "cli-again-tg",
            "--protocol",
            "HTTP",
            "--port",
            "80",
            "--vpc-id",
            "vpc-1",
            "--target-type",
            "ip",
            "--health-check-interval-seconds",
            "5",
            "--health-check-timeout-seconds",
            "2",
            "--unhealthy-threshold-count",
            "2",
        ],
    );
    let tg = s(&tg["TargetGroups"][0]["TargetGroupArn"]);
    let port = common::util::free_port().to_string();
    mf_json(
        &api,
        "elbv2",
        &[
            "create-listener",
            "--load-balancer-arn",
            &lb_arn,
            "--protocol",
            "HTTP",
            "--port",
            &port,
            "--default-actions",
            &format!("Type=forward,TargetGroupArn={tg}"),
        ],
    );
    // Nothing listens on the target's port: its checks fail.
    let dead = common::util::free_port();
    let target = format!("Id=127.0.0.1,Port={dead}");
    let change = |verb: &str| {
        mf_json(
            &api,
            "elbv2",
            &[verb, "--target-group-arn", &tg, "--targets", &target],
        )
    };
    change("register-targets");
    let describe = ["describe-target-health", "--target-group-arn", &tg];
    let state = || target_health(&api.aws_json_in("elbv2", &describe), dead).map(|h| h.0);
    api.wait_for(30, "the target unhealthy", || {
        (state().as_deref() == Some("unhealthy")).then_some(())
    });
    let started = std::time::Instant::now();
    change("deregister-targets");
    change("register-targets");
    eprintln!(
        "deregistered and registered again with the CLI in {:?}",
        started.elapsed()
    );
    // (A failed check leaves a new target `initial` until the unhealthy threshold: 2
    // checks 5 s apart.)
    api.wait_for(4, "the target initial again", || {
        (state().as_deref() == Some("initial")).then_some(())
    });
}

#[test]
fn servicediscovery_verbs_answer_as_the_aws_cli() {
    let api = Api::start();
    let help = stdout(&mf(&api, "servicediscovery", &["--help"]));
    assert!(help.contains("discover-instances"), "{help}");

    let op = mf_json(
        &api,
        "servicediscovery",
        &[
            "create-private-dns-namespace",
            "--name",
            "cli.local",
            "--vpc",
            "vpc-1",
        ],
    );
    let op_id = s(&op["OperationId"]);
    let done = same(
        &api,
        "servicediscovery",
        &["get-operation", "--operation-id", &op_id],
        &[],
    );
    let ns = s(&done["Operation"]["Targets"]["NAMESPACE"]);
    same(&api, "servicediscovery", &["list-namespaces"], &[]);
    let svc = mf_json(
        &api,
        "servicediscovery",
        &[
            "create-service",
            "--name",
            "web",
            "--namespace-id",
            &ns,
            "--dns-config",
            "RoutingPolicy=MULTIVALUE,DnsRecords=[{Type=A,TTL=10}]",
        ],
    );
    let svc_id = s(&svc["Service"]["Id"]);
    same(
        &api,
        "servicediscovery",
        &["get-service", "--id", &svc_id],
        &[],
    );
    mf_json(
        &api,
        "servicediscovery",
        &[
            "register-instance",
            "--service-id",
            &svc_id,
            "--instance-id",
            "i-1",
            "--attributes",
            "AWS_INSTANCE_IPV4=10.0.0.7,color=blue",
        ],
    );
    let found = same(
        &api,
        "servicediscovery",
        &[
            "discover-instances",
            "--namespace-name",
            "cli.local",
            "--service-name",
            "web",
        ],
        &[],
    );
    assert_eq!(
        found["Instances"][0]["Attributes"]["AWS_INSTANCE_IPV4"],
        "10.0.0.7"
    );
    same(
        &api,
        "servicediscovery",
        &["list-instances", "--service-id", &svc_id],
        &[],
    );
    same_text(
        &api,
        "servicediscovery",
        &["list-namespaces", "--output", "text"],
    );
    same_text(
        &api,
        "servicediscovery",
        &[
            "list-services",
            "--query",
            "Services[].Name",
            "--output",
            "text",
        ],
    );

    let o = mf(
        &api,
        "servicediscovery",
        &["get-namespace", "--id", "ns-nope"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(
            "An error occurred (NamespaceNotFound) when calling the GetNamespace operation:"
        ),
        "{}",
        stderr(&o)
    );
    let o = mf(&api, "servicediscovery", &["create-service"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn a_store_that_is_a_clusters_replica_is_refused() {
    let etcd = Etcd::start();
    let mut args = vec!["--cluster".to_string(), etcd.endpoint()];
    args.extend(etcd.serve_args());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut api = Api::start_with(busybox_layer(Compression::Gzip, "cli-svc"), &args);
    for (service, verb) in [
        ("elbv2", vec!["create-load-balancer", "--name", "box-local"]),
        ("servicediscovery", vec!["list-namespaces"]),
    ] {
        let o = mf(&api, service, &verb);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        assert!(
            stderr(&o).contains("is a copy of the cluster's (serve --cluster"),
            "{}",
            stderr(&o)
        );
    }
    // Nothing was made on the box: the cluster's serve has no such load balancer.
    let v = api.aws_json_in("elbv2", &["describe-load-balancers"]);
    assert_eq!(v["LoadBalancers"], serde_json::json!([]));
    // The same state under a serve of one box again: the verbs work.
    api.restart_with(&[]);
    mf_json(
        &api,
        "elbv2",
        &["create-load-balancer", "--name", "box-local"],
    );
}
