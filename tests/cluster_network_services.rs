//! The cluster across network namespaces, continued from tests/cluster_network.rs (whose
//! harness and helpers these tests share; split so that each file's tests stay within
//! scripts/test's per-file budget): a Cloud Map name and a Service Connect alias served
//! from the other box, a blue/green deployment across two boxes, bridge-mode tasks as
//! instance targets, and a load-balanced service draining on scale-in and losing a box.

use crate::cluster_network::*;
use crate::common;

use common::api::Api;
use common::cluster::service_tasks;
use common::elb::elbv2;
use common::etcd::Etcd;
use common::netbox::Lan;
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

fn sd(api: &Api, args: &[&str]) -> Value {
    let out = api.aws_in("servicediscovery", args);
    assert!(
        out.status.success(),
        "aws servicediscovery {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// A private DNS namespace `namespace` and, in it, Cloud Map service `name` answering A
/// records (MULTIVALUE, TTL 5): the service, as CreateService answers it.
pub(crate) fn cloud_map_service(api: &Api, namespace: &str, name: &str) -> Value {
    let op = sd(
        api,
        &[
            "create-private-dns-namespace",
            "--name",
            namespace,
            "--vpc",
            "vpc-1",
        ],
    );
    let o = sd(
        api,
        &[
            "get-operation",
            "--operation-id",
            op["OperationId"].as_str().unwrap(),
        ],
    );
    let ns = o["Operation"]["Targets"]["NAMESPACE"]
        .as_str()
        .unwrap()
        .to_string();
    sd(
        api,
        &[
            "create-service",
            "--name",
            name,
            "--namespace-id",
            &ns,
            "--dns-config",
            "RoutingPolicy=MULTIVALUE,DnsRecords=[{Type=A,TTL=5}]",
        ],
    )
}

/// Resolves `NAME` with its resolv.conf's server (busybox nslookup) until the answer
/// holds `$WANT`: exits 0 then, 1 if it never does (the last answer on stdout).
fn resolver_client() -> Value {
    let script = "cat /etc/resolv.conf; for i in $(busybox seq 1 60); do \
        r=$(busybox nslookup -timeout=2 $NAME 2>&1); \
        case \"$r\" in *\"$WANT\"*) echo \"$r\"; exit 0;; esac; sleep 0.5; done; echo \"$r\"; exit 1";
    json!({
        "family": "netbox-resolver",
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["EC2"],
        "cpu": "128",
        "memory": "64",
        "containerDefinitions": [{
            "name": "main",
            "image": "public.ecr.aws/docker/library/busybox:1.36",
            "command": ["sh", "-c", script],
            "essential": true
        }]
    })
}

#[test]
fn a_task_on_one_box_resolves_a_cloud_map_name_of_a_service_on_the_other() {
    let mut lan = Lan::new();
    let etcd = Etcd::start_for(&[&lan.gateway.to_string()]);
    let (api, mut boxes) = cluster(&mut lan, &etcd, &[], 2, 5, false);

    let svc = cloud_map_service(&api, "cluster.local", "web");
    let registry = svc["Service"]["Arn"].as_str().unwrap().to_string();
    let svc_id = svc["Service"]["Id"].as_str().unwrap().to_string();

    // The service's one task on box 1, registered by the leader's scheduler.
    register(&api, "lbweb.json", &addressed_web());
    register(&api, "resolver.json", &resolver_client());
    api.aws_json(&["create-cluster", "--cluster-name", "default"]);
    api.aws_json(&[
        "create-service",
        "--service-name",
        "web",
        "--task-definition",
        "netbox-lbweb",
        "--desired-count",
        "1",
        "--launch-type",
        "EC2",
        "--placement-constraints",
        "type=memberOf,expression=attribute:box==1",
        "--service-registries",
        &format!("registryArn={registry}"),
    ]);
    let web = api.wait_for(120, "the service's task RUNNING", || {
        let p = service_tasks(&api, "web");
        (p.len() == 1).then_some(p)
    });
    assert_eq!(web[0].1, boxes[1].arn());
    let ip = private_ip(&describe_task(&api, &web[0].0));
    api.wait_for(30, "the task an instance of the Cloud Map service", || {
        let l = sd(&api, &["list-instances", "--service-id", &svc_id]);
        (l["Instances"][0]["Attributes"]["AWS_INSTANCE_IPV4"] == ip.as_str()).then_some(())
    });

    // A task on box 0 resolves web.cluster.local to it (the box's DNS server).
    let overrides = json!({"containerOverrides": [{"name": "main", "environment": [
        {"name": "NAME", "value": "web.cluster.local"}, {"name": "WANT", "value": ip}]}]})
    .to_string();
    let v = api.aws_json(&[
        "run-task",
        "--task-definition",
        "netbox-resolver",
        "--launch-type",
        "EC2",
        "--placement-constraints",
        "type=memberOf,expression=attribute:box==0",
        "--overrides",
        &overrides,
    ]);
    let resolver = v["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    let t = wait_status(&api, &resolver, "STOPPED");
    assert_eq!(
        t["containers"][0]["exitCode"], 0,
        "web.cluster.local did not resolve to {ip} in a task of box 0: {t:#}"
    );

    // Scaled to 0: its instance goes; the boxes stopped: nothing left on either.
    api.aws_json(&["update-service", "--service", "web", "--desired-count", "0"]);
    api.wait_for(60, "the instance deregistered", || {
        let l = sd(&api, &["list-instances", "--service-id", &svc_id]);
        l["Instances"].as_array().unwrap().is_empty().then_some(())
    });
    let ids = vec![id_of(&web[0].0), id_of(&resolver)];
    stop_for_good_and_check_clean(&mut boxes, &ids);
}

/// A client of Service Connect's alias `b.sc:9000`: asks it (busybox `nc`, the name
/// resolved by the task's DNS server) every 0.2 s, printing `GOT <answer>`.
fn sc_client() -> Value {
    let script = "trap 'exit 0' TERM; while true; do \
        echo GOT $( (printf 'GET / HTTP/1.0\\r\\n\\r\\n'; sleep 1) | busybox timeout 3 busybox nc b.sc 9000 | busybox tail -n 1); \
        sleep 0.2; done";
    looping_client("netbox-scclient", script)
}

#[test]
fn a_service_connect_alias_on_one_box_spreads_connections_over_the_tasks_of_both() {
    let mut lan = Lan::new();
    let etcd = Etcd::start_for(&[&lan.gateway.to_string()]);
    let (api, mut boxes) = cluster(&mut lan, &etcd, &[], 2, 5, false);
    sd(
        &api,
        &[
            "create-private-dns-namespace",
            "--name",
            "sc.local",
            "--vpc",
            "vpc-1",
        ],
    );
    // b: a task on each box answering its own address, port mapping `web`, behind the
    // alias b.sc:9000; a: a client service on box 0.
    let mut web = addressed_web();
    web["family"] = json!("netbox-scb");
    web["containerDefinitions"][0]["portMappings"] =
        json!([{"containerPort": 8080, "name": "web"}]);
    register(&api, "scb.json", &web);
    register(&api, "sca.json", &sc_client());
    api.aws_json(&["create-cluster", "--cluster-name", "default"]);
    let server = r#"{"enabled":true,"namespace":"sc.local","services":[{"portName":"web","discoveryName":"b","clientAliases":[{"port":9000,"dnsName":"b.sc"}]}]}"#;
    let client = r#"{"enabled":true,"namespace":"sc.local"}"#;
    for (name, family, count, placement, sc) in [
        ("b", "netbox-scb", "2", "type=distinctInstance", server),
        (
            "a",
            "netbox-scclient",
            "1",
            "type=memberOf,expression=attribute:box==0",
            client,
        ),
    ] {
        api.aws_json(&[
            "create-service",
            "--service-name",
            name,
            "--task-definition",
            family,
            "--desired-count",
            count,
            "--launch-type",
            "EC2",
            "--placement-constraints",
            placement,
            "--service-connect-configuration",
            sc,
        ]);
    }
    let b_tasks = api.wait_for(120, "b's 2 tasks RUNNING", || {
        let p = service_tasks(&api, "b");
        (p.len() == 2).then_some(p)
    });
    let mut ips: Vec<String> = b_tasks
        .iter()
        .map(|(t, _)| private_ip(&describe_task(&api, t)))
        .collect();
    ips.sort();
    let a_task = api.wait_for(120, "a's task RUNNING", || {
        service_tasks(&api, "a").into_iter().next()
    });
    assert_eq!(a_task.1, boxes[0].arn());
    let a_id = id_of(&a_task.0);
    // From a's task on box 0, b.sc:9000 is answered by b's tasks on both boxes.
    let got = api.wait_for(90, "both of b's tasks answering at b.sc:9000", || {
        let text = box_logs(&boxes[0], &a_id);
        let mut bodies: Vec<String> = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("GOT "))
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect();
        bodies.sort();
        bodies.dedup();
        (bodies == ips).then_some(bodies)
    });
    eprintln!("b.sc:9000 from box 0 answered by {got:?}");

    // b scaled to 1: the task that goes leaves the alias; the one left answers.
    api.aws_json(&["update-service", "--service", "b", "--desired-count", "1"]);
    let left = api.wait_for(60, "b's 1 task", || {
        let p = service_tasks(&api, "b");
        (p.len() == 1).then_some(p)
    });
    let left_ip = private_ip(&describe_task(&api, &left[0].0));
    let mark = box_logs(&boxes[0], &a_id).lines().count();
    api.wait_for(30, "only b's remaining task answering", || {
        let text = box_logs(&boxes[0], &a_id);
        let recent: Vec<String> = text
            .lines()
            .skip(mark + 3)
            .filter_map(|l| l.trim().strip_prefix("GOT "))
            .map(|l| l.trim().to_string())
            .collect();
        (recent.len() >= 6 && recent.iter().all(|b| *b == left_ip)).then_some(())
    });

    for name in ["a", "b"] {
        api.aws_json(&["delete-service", "--service", name, "--force"]);
    }
    api.wait_for(60, "no service task RUNNING", || {
        (service_tasks(&api, "a").is_empty() && service_tasks(&api, "b").is_empty()).then_some(())
    });
    let ids: Vec<String> = b_tasks
        .iter()
        .map(|(t, _)| id_of(t))
        .chain([a_id])
        .collect();
    for b in boxes.iter_mut() {
        let st = b.stop_for_good();
        assert!(st.success(), "{st:?}");
    }
    for b in &boxes {
        assert_box_clean(b, &ids);
        // The alias's listener went with the box's data plane (`agent --leave`).
        let out = b
            .exec("ss")
            .args(["-Htln", "sport = :9000"])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "",
            "{}",
            b.name
        );
    }
}

/// A revision of family `netbox-bg` answering `/` with `version` and an id of the task's
/// own.
fn versioned_web(version: &str) -> Value {
    let script = format!(
        "busybox mkdir -p /www && echo {version} $(busybox cat /proc/sys/kernel/random/uuid) \
         > /www/index.html && exec busybox httpd -f -p 8080 -h /www"
    );
    json!({
        "family": "netbox-bg",
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["EC2"],
        "cpu": "128",
        "memory": "64",
        "containerDefinitions": [{
            "name": "main",
            "image": "public.ecr.aws/docker/library/busybox:1.36",
            "command": ["sh", "-c", script],
            "portMappings": [{"containerPort": 8080}],
            "stopTimeout": 2,
            "essential": true
        }]
    })
}

/// An HTTP listener of `lb` on a free port whose rule 1 forwards every path to `tg`:
/// (port, rule ARN).
fn listener_rule(api: &Api, lb: &str, tg: &str) -> (u16, String) {
    common::elb::listener_with_rule(api, lb, &json!([{"Type": "forward", "TargetGroupArn": tg}]))
}

/// A BLUE_GREEN service of 2 tasks spread over 2 boxes behind the leader's load balancer
/// (docs/load-balancing.md "Blue/green deployments", "Cluster mode"): the leader's
/// scheduler starts the green tasks on the boxes, flips production to them with no
/// request lost (a client on the host asking all along), and stops the blue tasks after
/// the bake time (1 minute at a 5 s period: 5 s).
#[test]
fn a_blue_green_deployment_across_two_boxes_flips_production_with_no_request_lost() {
    let mut lan = Lan::new();
    let etcd = Etcd::start_for(&[&lan.gateway.to_string()]);
    let (api, mut boxes) = cluster_env(
        &mut lan,
        &etcd,
        &[],
        &[("MINIFARGATE_METRICS_PERIOD", "5")],
        2,
        5,
        false,
    );
    let _routes = HostRoutes::to(&boxes);
    let alb = common::elb::create_alb(&api, "cluster-bg");
    let blue = common::elb::http_target_group(&api, "cluster-bg-blue", 2);
    let green = common::elb::http_target_group(&api, "cluster-bg-green", 2);
    let (prod_port, prod_rule) = listener_rule(&api, &alb.arn, &blue);
    let (_, test_rule) = listener_rule(&api, &alb.arn, &green);
    register(&api, "bg1.json", &versioned_web("v1"));
    register(&api, "bg2.json", &versioned_web("v2"));
    api.aws_json(&["create-cluster", "--cluster-name", "default"]);
    let lbs = json!([{"targetGroupArn": blue, "containerName": "main", "containerPort": 8080,
        "advancedConfiguration": {"alternateTargetGroupArn": green,
            "productionListenerRule": prod_rule, "testListenerRule": test_rule,
            "roleArn": "arn:aws:iam::000000000000:role/ecsInfrastructureRole"}}]);
    api.aws_json(&[
        "create-service",
        "--service-name",
        "bg",
        "--task-definition",
        "netbox-bg:1",
        "--desired-count",
        "2",
        "--launch-type",
        "EC2",
        "--placement-strategy",
        "type=spread,field=instanceId",
        "--deployment-configuration",
        r#"{"strategy":"BLUE_GREEN","bakeTimeInMinutes":1}"#,
        "--load-balancers",
        &lbs.to_string(),
    ]);
    let first = api.wait_for(180, "the first deployment completed", || {
        let d = api.service("default", "bg")["deployments"].clone();
        (d.as_array().unwrap().len() == 1 && d[0]["rolloutState"] == "COMPLETED")
            .then(|| d[0]["id"].as_str().unwrap().to_string())
    });
    let blue_tasks = service_tasks(&api, "bg");
    let on: std::collections::BTreeSet<&String> = blue_tasks.iter().map(|(_, ci)| ci).collect();
    assert_eq!(on.len(), 2, "blue is on both boxes: {blue_tasks:?}");
    api.wait_for(90, "2 healthy blue targets", || {
        (healthy_targets(&api, &blue).len() == 2).then_some(())
    });

    // A client on the host asking production all along the deployment.
    let client = common::elb::Client::start(&api, &alb.ip, &[prod_port]);
    let updated = api.aws_json(&[
        "update-service",
        "--service",
        "bg",
        "--task-definition",
        "netbox-bg:2",
    ]);
    let second = updated["service"]["deployments"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    api.wait_for(240, "the blue/green deployment completed", || {
        let d = api.service("default", "bg")["deployments"].clone();
        (d.as_array().unwrap().len() == 1
            && d[0]["id"] == second.as_str()
            && d[0]["rolloutState"] == "COMPLETED")
            .then_some(())
    });
    let done_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let answers = client.finish();
    let version = |b: &str| b.split_whitespace().next().unwrap_or("").to_string();
    let lost: Vec<_> = answers.iter().filter(|a| a.2 != "200").collect();
    let flip = answers
        .iter()
        .position(|a| version(&a.3) == "v2")
        .expect("production flipped to green");
    eprintln!(
        "production across 2 boxes: {} requests, {} failed; flip after {} answers from blue",
        answers.len(),
        lost.len(),
        flip
    );
    assert!(lost.is_empty(), "{lost:?}");
    assert!(flip > 0 && answers[..flip].iter().all(|a| version(&a.3) == "v1"));
    assert!(
        answers[flip..].iter().all(|a| version(&a.3) == "v2"),
        "production flipped all at once"
    );
    let flip_at = answers[flip].0;
    // Green answered from both boxes' tasks (the bodies name the task).
    let green_bodies: std::collections::BTreeSet<&str> =
        answers[flip..].iter().map(|a| a.3.as_str()).collect();
    assert_eq!(green_bodies.len(), 2, "{green_bodies:?}");
    let green_arns = api.aws_json(&["list-tasks", "--started-by", &second]);
    let green_tasks: Vec<(String, String)> = green_arns["taskArns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let t = describe_task(&api, a.as_str().unwrap());
            (
                a.as_str().unwrap().to_string(),
                t["containerInstanceArn"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let on: std::collections::BTreeSet<&String> = green_tasks.iter().map(|(_, ci)| ci).collect();
    assert_eq!(
        (green_tasks.len(), on.len()),
        (2, 2),
        "green is on both boxes: {green_tasks:?}"
    );
    // Blue stopped after the bake time.
    let stopped = api.aws_json(&[
        "list-tasks",
        "--started-by",
        &first,
        "--desired-status",
        "STOPPED",
    ]);
    let arns: Vec<&str> = stopped["taskArns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(arns.len(), 2, "{stopped}");
    for arn in arns {
        let t = describe_task(&api, arn);
        let stopping = t["stoppingAt"].as_f64().unwrap();
        eprintln!(
            "a blue task stopping {:.1} s after the flip",
            stopping - flip_at
        );
        assert!(stopping - flip_at >= 4.0, "{t:#}");
        assert!(stopping <= done_at);
    }
    let prod = elbv2(&api, &["describe-rules", "--rule-arns", &prod_rule]);
    let action = &prod["Rules"][0]["Actions"][0];
    let forwarded_to: Vec<&str> = match action["ForwardConfig"]["TargetGroups"].as_array() {
        Some(l) => l
            .iter()
            .filter(|g| g["Weight"].as_i64().unwrap_or(1) > 0)
            .map(|g| g["TargetGroupArn"].as_str().unwrap())
            .collect(),
        None => vec![action["TargetGroupArn"].as_str().unwrap()],
    };
    assert_eq!(forwarded_to, [green.as_str()], "{prod:#}");

    // Cleaned up: the service scaled to 0 and deleted, the agents stopped, nothing left.
    let ids: Vec<String> = blue_tasks
        .iter()
        .chain(green_tasks.iter())
        .map(|(t, _)| id_of(t))
        .collect();
    api.aws_json(&["update-service", "--service", "bg", "--desired-count", "0"]);
    api.wait_for(60, "no service task RUNNING", || {
        service_tasks(&api, "bg").is_empty().then_some(())
    });
    api.aws_json(&["delete-service", "--service", "bg"]);
    stop_for_good_and_check_clean(&mut boxes, &ids);
}

/// A bridge-mode web server answering `/` with an id of its own, on container port 8080
/// published on a host port chosen at launch (`hostPort` 0).
fn bridge_web() -> Value {
    let script = "busybox mkdir -p /www && cat /proc/sys/kernel/random/uuid > /www/index.html && exec busybox httpd -f -p 8080 -h /www";
    json!({
        "family": "netbox-bridgeweb",
        "networkMode": "bridge",
        "requiresCompatibilities": ["EC2"],
        "containerDefinitions": [{
            "name": "main",
            "image": "public.ecr.aws/docker/library/busybox:1.36",
            "memory": 64,
            "command": ["sh", "-c", script],
            "portMappings": [{"containerPort": 8080, "hostPort": 0}],
            "stopTimeout": 2,
            "essential": true
        }]
    })
}

#[test]
fn bridge_tasks_on_two_boxes_register_in_an_instance_target_group_as_their_own_box() {
    let mut lan = Lan::new();
    let etcd = Etcd::start_for(&[&lan.gateway.to_string()]);
    let (api, mut boxes) = cluster(&mut lan, &etcd, &[], 2, 5, false);

    // Each box is a container instance with an EC2 instance id of its own.
    let arns = api.instances_listed(None);
    let mut args = vec!["describe-container-instances", "--container-instances"];
    args.extend(arns.iter().map(String::as_str));
    let described = api.aws_json(&args);
    let mut instance_ids: Vec<String> = described["containerInstances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["ec2InstanceId"].as_str().unwrap().to_string())
        .collect();
    instance_ids.sort();
    instance_ids.dedup();
    assert_eq!(instance_ids.len(), 2, "{described:#}");
    assert!(
        instance_ids
            .iter()
            .all(|i| i.len() == 19 && i.starts_with("i-")),
        "{instance_ids:?}"
    );

    let lb = common::elb::create_alb(&api, "cluster-bridge");
    let tg = common::elb::target_group_of(&api, "cluster-bridge", 2, "instance");
    let port = common::util::free_port();
    common::elb::http_listener(&api, &lb.arn, &port.to_string(), &tg);
    register(&api, "bridgeweb.json", &bridge_web());
    let tasks =
        common::cluster::two_spread_tasks_behind(&api, "bridgeweb", "netbox-bridgeweb", &tg);

    // Each task registered as its own box's instance id and its host port; healthy.
    let want: Vec<(String, u64)> = {
        let mut v: Vec<(String, u64)> = tasks
            .iter()
            .map(|(t, _)| {
                let d = describe_task(&api, t);
                let ci = d["containerInstanceArn"].as_str().unwrap();
                let at = described["containerInstances"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|c| c["containerInstanceArn"] == ci)
                    .unwrap_or_else(|| panic!("{ci} not described"));
                let hp = d["containers"][0]["networkBindings"][0]["hostPort"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("no host port: {d:#}"));
                (at["ec2InstanceId"].as_str().unwrap().to_string(), hp)
            })
            .collect();
        v.sort();
        v
    };
    let got = api.wait_for(90, "2 healthy instance targets", || {
        let h = elbv2(&api, &["describe-target-health", "--target-group-arn", &tg]);
        let mut v: Vec<(String, u64)> = h["TargetHealthDescriptions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["TargetHealth"]["State"] == "healthy")
            .map(|d| {
                (
                    d["Target"]["Id"].as_str().unwrap().to_string(),
                    d["Target"]["Port"].as_u64().unwrap(),
                )
            })
            .collect();
        v.sort();
        (v.len() == 2).then_some(v)
    });
    assert_eq!(got, want);
    let ids: Vec<&String> = got.iter().map(|(i, _)| i).collect();
    assert_eq!(
        ids,
        instance_ids.iter().collect::<Vec<_>>(),
        "one on each box"
    );

    // Traffic through the listener reaches the tasks of both boxes.
    let url = format!("http://{}:{port}/", lb.ip);
    let mut bodies = Vec::new();
    let mut answered = 0;
    for _ in 0..8 {
        let out = std::process::Command::new("curl")
            .args(["-s", "--noproxy", "*", "-m", "5", "-f", &url])
            .output()
            .unwrap();
        assert!(out.status.success(), "{url}: {out:?}");
        answered += 1;
        bodies.push(String::from_utf8_lossy(&out.stdout).trim().to_string());
    }
    bodies.sort();
    bodies.dedup();
    eprintln!(
        "across boxes: {answered} requests answered by {} tasks",
        bodies.len()
    );
    assert_eq!(bodies.len(), 2, "{bodies:?}");

    // A TCP listener (NLB) on a box: the box's connections reach the tasks of both boxes.
    let (nlb_port, nlb_ip) = tcp_listener_to(&api, "cluster-bridge-tcp", &want);
    let mut seen = Vec::new();
    api.wait_for(
        60,
        "box 0's TCP listener reaching the tasks of both boxes",
        || {
            let out = boxes[0]
                .exec("curl")
                .args(["-s", "--noproxy", "*", "-m", "5", "-f"])
                .arg(format!("http://{nlb_ip}:{nlb_port}/"))
                .output()
                .unwrap();
            if out.status.success() {
                seen.push(String::from_utf8_lossy(&out.stdout).trim().to_string());
                seen.sort();
                seen.dedup();
            }
            (seen.len() == 2).then_some(())
        },
    );
    assert_eq!(seen, bodies, "the same two tasks over TCP");

    api.aws_json(&["delete-service", "--service", "bridgeweb", "--force"]);
    api.wait_for(90, "bridgeweb INACTIVE", || {
        (api.service("default", "bridgeweb")["status"] == "INACTIVE").then_some(())
    });
    for b in boxes.iter_mut() {
        let st = b.stop_for_good();
        assert!(st.success(), "{st:?}");
    }
    let task_ids: Vec<String> = tasks.iter().map(|(t, _)| id_of(t)).collect();
    for b in &boxes {
        assert_box_clean(b, &task_ids);
    }
}

/// A network load balancer `name` with a TCP listener forwarding to a TCP group of the
/// `instance` targets `targets` (instance id, port): its port and address.
fn tcp_listener_to(api: &Api, name: &str, targets: &[(String, u64)]) -> (u16, String) {
    let lb = common::elb::create_nlb(api, name);
    let tg = common::elb::tcp_target_group(api, name, "8080", "instance");
    let mut args = vec![
        "register-targets".to_string(),
        "--target-group-arn".into(),
        tg.clone(),
        "--targets".into(),
    ];
    args.extend(
        targets
            .iter()
            .map(|(id, port)| format!("Id={id},Port={port}")),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    elbv2(api, &args);
    let port = common::util::free_port();
    common::elb::tcp_listener(api, &lb.arn, &port.to_string(), &tg);
    (port, lb.ip)
}

/// Each target of `tg` and its state, as `api` describes them.
fn target_states(api: &Api, tg: &str) -> Vec<(String, String)> {
    let h = elbv2(api, &["describe-target-health", "--target-group-arn", tg]);
    h["TargetHealthDescriptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["Target"]["Id"].as_str().unwrap().to_string(),
                d["TargetHealth"]["State"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Seconds since the epoch.
fn epoch() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The service's event `word` (e.g. `deregistered`) newest first: their times.
fn event_times(api: &Api, service: &str, word: &str) -> Vec<f64> {
    let s = api.service("default", service);
    s["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["message"].as_str().unwrap_or("").contains(word))
        .map(|e| e["createdAt"].as_f64().unwrap())
        .collect()
}

/// A service of awsvpc tasks on two boxes behind a load balancer, asked by its DNS name
/// all along by a keep-alive client on the host (docs/load-balancing.md "Cluster mode"):
/// (a) scaled in from 3 tasks to 1, its stopped tasks' targets go `draining` first and the
/// tasks stop only after the deregistration delay, with no request failed; (b) a box with
/// a registered target cut off (its link down): its task is declared lost after the lease
/// and the grace (`--lost-instance-after 1`), its target is deregistered (drains, then is
/// gone), the service replaces it on the live box and every request is answered there
/// again; back, the box stops what was replaced. Nothing left on either box.
#[test]
fn a_load_balanced_service_on_two_boxes_drains_on_scale_in_and_deregisters_a_lost_boxs_targets() {
    const DELAY: f64 = 4.0;
    let mut lan = Lan::new();
    let etcd = Etcd::start_for(&[&lan.gateway.to_string()]);
    let (api, mut boxes) = cluster(
        &mut lan,
        &etcd,
        &["--lost-instance-after", "1"],
        2,
        3,
        false,
    );
    let _routes = HostRoutes::to(&boxes);
    let lb = common::elb::create_alb(&api, "cluster-drain");
    let dns = lb.dns.to_ascii_lowercase();
    let tg = common::elb::http_target_group(&api, "cluster-drain", DELAY as u32);
    let listener = common::elb::http_listener(&api, &lb.arn, "80", &tg);
    // The client asks by the name, at the address the serve's hosts file gives it.
    let hosts = Path::new(&api.mf.env_value("MINIFARGATE_HOSTS_FILE").unwrap()).to_path_buf();
    let ip = api.wait_for(10, "the load balancer's name in the hosts file", || {
        let text = std::fs::read_to_string(&hosts).ok()?;
        let line = text
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(dns.as_str()))?;
        Some(line.split_whitespace().next()?.to_string())
    });
    assert_eq!(ip, lb.ip);
    register(&api, "lbweb.json", &addressed_web());
    api.aws_json(&["create-cluster", "--cluster-name", "default"]);
    api.aws_json(&[
        "create-service",
        "--service-name",
        "drain",
        "--task-definition",
        "netbox-lbweb",
        "--desired-count",
        "3",
        "--launch-type",
        "EC2",
        "--placement-strategy",
        "type=spread,field=instanceId",
        "--load-balancers",
        &format!("targetGroupArn={tg},containerName=main,containerPort=8080"),
    ]);
    // Task address → the box (container instance) it runs on.
    let mut box_of: std::collections::BTreeMap<String, String> = Default::default();
    let mut all_ids: Vec<String> = Vec::new();
    let mut learn = |api: &Api, box_of: &mut std::collections::BTreeMap<String, String>| {
        for (t, ci) in service_tasks(api, "drain") {
            let ip = private_ip(&describe_task(api, &t));
            box_of.insert(ip, ci);
            if !all_ids.contains(&id_of(&t)) {
                all_ids.push(id_of(&t));
            }
        }
    };
    let three = api.wait_for(150, "3 healthy targets", || {
        let h = healthy_targets(&api, &tg);
        (h.len() == 3 && service_tasks(&api, "drain").len() == 3).then_some(h)
    });
    learn(&api, &mut box_of);
    let on: std::collections::BTreeSet<&String> = box_of.values().collect();
    assert_eq!(on.len(), 2, "the 3 tasks are on both boxes: {box_of:?}");

    // (a) Scale-in from 3 to 1 under traffic.
    let client = common::elb::Client::start_named(&api, &dns, &lb.ip, &[80]);
    std::thread::sleep(Duration::from_secs(1));
    let t0 = epoch();
    api.aws_json(&[
        "update-service",
        "--service",
        "drain",
        "--desired-count",
        "1",
    ]);
    // Each target's states as seen, with the first time each was seen.
    let mut seen: Vec<(f64, String, String)> = Vec::new();
    api.wait_for(90, "1 target left", || {
        let now = epoch();
        for (id, state) in target_states(&api, &tg) {
            if !seen.iter().any(|(_, i, s)| *i == id && *s == state) {
                seen.push((now, id, state));
            }
        }
        let left = target_states(&api, &tg);
        (left.len() == 1 && left[0].1 == "healthy" && service_tasks(&api, "drain").len() == 1)
            .then_some(())
    });
    let answers = client.finish();
    let failed: Vec<_> = answers.iter().filter(|a| a.2 != "200").collect();
    let scale_in_s = epoch() - t0;
    let answered_by: std::collections::BTreeSet<&str> =
        answers.iter().map(|a| a.3.as_str()).collect();
    eprintln!(
        "scale-in 3 -> 1 across 2 boxes: {} requests by name, {} failed, answered by {:?}, \
         done in {scale_in_s:.1} s; target states seen: {seen:?}",
        answers.len(),
        failed.len(),
        answered_by
    );
    assert!(failed.is_empty(), "{failed:?}");
    assert!(answers.len() > 100, "{} requests", answers.len());
    let kept = &target_states(&api, &tg)[0].0;
    let gone: Vec<&String> = three.iter().filter(|t| *t != kept).collect();
    assert_eq!(gone.len(), 2);
    let deregistered = event_times(&api, "drain", "deregistered 2 targets");
    assert_eq!(
        deregistered.len(),
        1,
        "{:#}",
        api.service("default", "drain")
    );
    for ip in &gone {
        // Seen draining, then its task stopping after the delay.
        let draining = seen
            .iter()
            .find(|(_, i, s)| i == *ip && s == "draining")
            .unwrap_or_else(|| panic!("{ip} never seen draining: {seen:?}"))
            .0;
        let task =
            stopped_drain_task_at(&api, ip).unwrap_or_else(|| panic!("no stopped task at {ip}"));
        let stopping = task["stoppingAt"].as_f64().unwrap();
        eprintln!(
            "{ip} (on {}): draining seen at +{:.1} s, deregistered at +{:.1} s, its task \
             stopping at +{:.1} s",
            box_of[*ip],
            draining - t0,
            deregistered[0] - t0,
            stopping - t0
        );
        assert!(
            stopping > draining,
            "{ip} stopped before it was seen draining"
        );
        assert!(
            stopping - deregistered[0] >= DELAY - 0.5,
            "{ip}'s task stopped {:.1} s after its deregistration (delay {DELAY} s)",
            stopping - deregistered[0]
        );
    }

    // (b) Back to 2, one on each box; then one box is cut off.
    api.aws_json(&[
        "update-service",
        "--service",
        "drain",
        "--desired-count",
        "2",
    ]);
    api.wait_for(120, "2 healthy targets on both boxes", || {
        learn(&api, &mut box_of);
        let h = healthy_targets(&api, &tg);
        let on: std::collections::BTreeSet<&String> =
            h.iter().filter_map(|t| box_of.get(t)).collect();
        (h.len() == 2 && on.len() == 2).then_some(())
    });
    let two = healthy_targets(&api, &tg);
    let lost = boxes
        .iter()
        .position(|b| box_of[&two[0]] == b.arn())
        .unwrap();
    let (dead_ip, live_ip) = (two[0].clone(), two[1].clone());
    let live_box = boxes[1 - lost].arn();
    let client = common::elb::Client::start_named(&api, &dns, &lb.ip, &[80]);
    std::thread::sleep(Duration::from_secs(1));
    let cut = epoch();
    boxes[lost].link(false);
    let mut dead_states: Vec<(f64, String)> = Vec::new();
    api.wait_for(
        120,
        "the lost box's target gone and 2 healthy on the live box",
        || {
            let now = epoch();
            let states = target_states(&api, &tg);
            match states.iter().find(|(i, _)| *i == dead_ip) {
                Some((_, s)) if dead_states.last().map(|(_, l)| l) != Some(s) => {
                    dead_states.push((now, s.clone()))
                }
                Some(_) => {}
                None if dead_states.last().map(|(_, l)| l.as_str()) != Some("gone") => {
                    dead_states.push((now, "gone".into()))
                }
                None => {}
            }
            if states.iter().any(|(i, _)| *i == dead_ip) {
                return None;
            }
            learn(&api, &mut box_of);
            let healthy = healthy_targets(&api, &tg);
            (healthy.len() == 2 && healthy.iter().all(|t| box_of.get(t) == Some(&live_box)))
                .then_some(())
        },
    );
    let recovered = epoch();
    // Traffic on the live box's two tasks for a while.
    std::thread::sleep(Duration::from_secs(3));
    let sent = client.finish_sent();
    let answers: Vec<_> = sent.iter().map(|(a, _)| a.clone()).collect();
    let failed: Vec<_> = answers.iter().filter(|a| a.2 != "200").collect();
    let last_failed = failed.iter().map(|a| a.0).fold(cut, f64::max);
    // The requests sent once the live box's two targets were the healthy ones (an answer
    // just after that moment may be the 504 of a request sent before it to the lost box).
    let after: Vec<_> = sent
        .iter()
        .filter(|(_, at)| *at > recovered)
        .map(|(a, _)| a)
        .collect();
    eprintln!(
        "box {lost} cut off: {} requests, {} failed, the last failure at +{:.1} s; its target's \
         states {:?}; gone and 2 healthy on the live box at +{:.1} s; {} requests after, all \
         answered by {:?}",
        answers.len(),
        failed.len(),
        last_failed - cut,
        dead_states
            .iter()
            .map(|(t, s)| format!("{s} +{:.1} s", t - cut))
            .collect::<Vec<_>>(),
        recovered - cut,
        after.len(),
        after
            .iter()
            .map(|a| a.3.as_str())
            .collect::<std::collections::BTreeSet<_>>()
    );
    assert!(after.len() > 20, "{} requests after", after.len());
    assert!(after.iter().all(|a| a.2 == "200"), "{after:?}");
    assert!(after.iter().all(|a| box_of.get(&a.3) == Some(&live_box)));
    assert!(
        after.iter().any(|a| a.3 == live_ip) && after.iter().any(|a| a.3 != live_ip),
        "both live tasks answer"
    );
    // The lost task: STOPPED as lost.
    let lost_task = stopped_drain_task_at(&api, &dead_ip).unwrap();
    let reason = lost_task["stoppedReason"].as_str().unwrap_or("");
    eprintln!("the lost box's task: {reason}");
    assert!(reason.contains("lost"), "{lost_task:#}");
    // Back: the box stops the task that was replaced.
    boxes[lost].link(true);
    let dead_id = id_of(lost_task["taskArn"].as_str().unwrap());
    api.wait_for(60, "the returned box stopping its replaced task", || {
        (local_status(&boxes[lost], &dead_id).0 == "STOPPED").then_some(())
    });

    // Cleaned up: no task, no target, the agents stopped, nothing left on either box.
    api.aws_json(&[
        "update-service",
        "--service",
        "drain",
        "--desired-count",
        "0",
    ]);
    api.wait_for(60, "no service task RUNNING and no target", || {
        (service_tasks(&api, "drain").is_empty() && target_states(&api, &tg).is_empty())
            .then_some(())
    });
    api.aws_json(&["delete-service", "--service", "drain"]);
    elbv2(&api, &["delete-listener", "--listener-arn", &listener]);
    elbv2(
        &api,
        &["delete-load-balancer", "--load-balancer-arn", &lb.arn],
    );
    elbv2(&api, &["delete-target-group", "--target-group-arn", &tg]);
    stop_for_good_and_check_clean(&mut boxes, &all_ids);
}
