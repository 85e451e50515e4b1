//! Root integration tests of AWS Cloud Map on `serve`'s listener (`aws servicediscovery
//! … --endpoint-url` and boto3): namespaces, services, instances and their custom health,
//! Cloud Map's exception names, the resources kept across a restart; the names of a
//! private DNS namespace answered by the tasks' DNS server; ECS services'
//! `serviceRegistries` registering their tasks, found by name from inside another task.

use crate::common;

use common::api::Api;
use serde_json::Value;

fn sd_json(api: &Api, args: &[&str]) -> Value {
    let out = api.aws_in("servicediscovery", args);
    assert!(
        out.status.success(),
        "aws servicediscovery {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    if out.stdout.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(&out.stdout).unwrap()
}

fn sd_err(api: &Api, args: &[&str]) -> String {
    let out = api.aws_in("servicediscovery", args);
    assert!(
        !out.status.success(),
        "aws servicediscovery {args:?} should have failed"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

/// The namespace an operation created, after checking the operation succeeded.
fn op_target(api: &Api, op: &Value, key: &str) -> String {
    let o = sd_json(
        api,
        &["get-operation", "--operation-id", s(&op["OperationId"])],
    );
    assert_eq!(o["Operation"]["Status"], "SUCCESS", "{o:#}");
    s(&o["Operation"]["Targets"][key]).to_string()
}

/// `busybox nslookup NAME SERVER` from the box (busybox's own resolver).
fn nslookup(name: &str, server: &str) -> String {
    let out = std::process::Command::new(common::image::BUSYBOX)
        .args(["nslookup", "-timeout=2", name, server])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

fn gateway(api: &Api) -> String {
    let subnet: netns::Subnet = api
        .mf
        .env_value("MINIFARGATE_SUBNET")
        .unwrap()
        .parse()
        .unwrap();
    subnet.gateway().to_string()
}

#[test]
fn namespaces_services_and_instances_through_the_cli_boto3_and_the_javascript_sdk() {
    let mut api = Api::start();
    let gw = gateway(&api);

    // Namespaces: the operations are done at once.
    let op = sd_json(
        &api,
        &[
            "create-http-namespace",
            "--name",
            "apps",
            "--description",
            "api only",
        ],
    );
    let http_ns = op_target(&api, &op, "NAMESPACE");
    let op = sd_json(
        &api,
        &[
            "create-private-dns-namespace",
            "--name",
            "corp.local",
            "--vpc",
            "vpc-1",
        ],
    );
    let ns = op_target(&api, &op, "NAMESPACE");
    let n = sd_json(&api, &["get-namespace", "--id", &ns])["Namespace"].clone();
    assert_eq!(n["Type"], "DNS_PRIVATE");
    assert_eq!(n["Name"], "corp.local");
    assert_eq!(n["Properties"]["DnsProperties"]["SOA"]["TTL"], 15);
    assert!(s(&n["Properties"]["DnsProperties"]["HostedZoneId"]).starts_with('Z'));
    assert!(s(&n["Arn"]).ends_with(&format!(":namespace/{ns}")));
    let e = sd_err(
        &api,
        &[
            "create-private-dns-namespace",
            "--name",
            "corp.local",
            "--vpc",
            "vpc-1",
        ],
    );
    assert!(e.contains("NamespaceAlreadyExists"), "{e}");
    let e = sd_err(&api, &["get-namespace", "--id", "ns-doesnotexist0000"]);
    assert!(e.contains("NamespaceNotFound"), "{e}");
    let l = sd_json(
        &api,
        &[
            "list-namespaces",
            "--filters",
            "Name=TYPE,Values=HTTP,Condition=EQ",
        ],
    );
    let ids: Vec<&str> = l["Namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| s(&n["Id"]))
        .collect();
    assert_eq!(ids, [http_ns.as_str()]);

    // Services: DNS records, custom health; refusals as Cloud Map's.
    let dns = format!(
        "NamespaceId={ns},RoutingPolicy=MULTIVALUE,DnsRecords=[{{Type=A,TTL=30}},{{Type=SRV,TTL=30}}]"
    );
    let svc = sd_json(
        &api,
        &[
            "create-service",
            "--name",
            "web",
            "--namespace-id",
            &ns,
            "--dns-config",
            &dns,
            "--health-check-custom-config",
            "FailureThreshold=1",
        ],
    )["Service"]
        .clone();
    let sid = s(&svc["Id"]).to_string();
    assert_eq!(svc["Type"], "DNS_HTTP");
    assert_eq!(svc["DnsConfig"]["DnsRecords"][0]["TTL"], 30);
    let e = sd_err(
        &api,
        &[
            "create-service",
            "--name",
            "web",
            "--namespace-id",
            &ns,
            "--dns-config",
            &dns,
        ],
    );
    assert!(e.contains("ServiceAlreadyExists"), "{e}");
    let e = sd_err(
        &api,
        &[
            "create-service",
            "--name",
            "dns",
            "--namespace-id",
            &http_ns,
            "--dns-config",
            "DnsRecords=[{Type=A,TTL=30}]",
        ],
    );
    assert!(e.contains("InvalidInput"), "{e}");
    let e = sd_err(&api, &["get-service", "--id", "srv-doesnotexist0000"]);
    assert!(e.contains("ServiceNotFound"), "{e}");

    // Instances: the attributes the records need, health, discovery.
    let e = sd_err(
        &api,
        &[
            "register-instance",
            "--service-id",
            &sid,
            "--instance-id",
            "i1",
            "--attributes",
            "AWS_INSTANCE_IPV4=10.0.0.1",
        ],
    );
    assert!(
        e.contains("InvalidInput") && e.contains("AWS_INSTANCE_PORT"),
        "{e}"
    );
    for (id, ip, stage) in [("i1", "192.0.2.11", "prod"), ("i2", "192.0.2.12", "beta")] {
        let op = sd_json(
            &api,
            &[
                "register-instance",
                "--service-id",
                &sid,
                "--instance-id",
                id,
                "--attributes",
                &format!("AWS_INSTANCE_IPV4={ip},AWS_INSTANCE_PORT=8080,stage={stage}"),
            ],
        );
        assert_eq!(op_target(&api, &op, "INSTANCE"), id);
    }
    let l = sd_json(&api, &["list-instances", "--service-id", &sid]);
    assert_eq!(l["Instances"].as_array().unwrap().len(), 2, "{l:#}");
    assert_eq!(l["Instances"][0]["Attributes"]["stage"], "prod");
    // DiscoverInstances with the AWS CLI and the profile serve wrote, nothing else: its
    // `disable_host_prefix_injection` keeps the model's `data-` host prefix off the
    // endpoint (`data-127.0.0.1` resolves nowhere).
    let d = sd_json(
        &api,
        &[
            "discover-instances",
            "--namespace-name",
            "corp.local",
            "--service-name",
            "web",
            "--query-parameters",
            "stage=prod",
        ],
    );
    let found: Vec<&str> = d["Instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["InstanceId"].as_str().unwrap())
        .collect();
    assert_eq!(found, ["i1"], "{d:#}");
    // The names in the tasks' DNS server: A and SRV with the service's TTL.
    let out = nslookup("web.corp.local", &gw);
    assert!(
        out.contains("192.0.2.11") && out.contains("192.0.2.12"),
        "{out}"
    );
    let out = std::process::Command::new(common::image::BUSYBOX)
        .args(["nslookup", "-type=SRV", "-timeout=2", "web.corp.local", &gw])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.contains("8080 i1.web.corp.local"), "{out}");
    let out = nslookup("nothing.corp.local", &gw);
    assert!(out.contains("NXDOMAIN"), "{out}");

    let v = api.boto3(&format!(
        r#"
import boto3, json, os
from botocore.config import Config
# DiscoverInstances' model puts `data-` before the endpoint's host (hostPrefix): an
# endpoint on an address has none (docs/service-discovery.md).
c = boto3.client("servicediscovery", endpoint_url=os.environ["ENDPOINT"], region_name="us-east-1",
                 config=Config(inject_host_prefix=False))
out = {{}}
r = c.discover_instances(NamespaceName="corp.local", ServiceName="web", QueryParameters={{"stage": "prod"}})
out["prod"] = [i["InstanceId"] for i in r["Instances"]]
c.update_instance_custom_health_status(ServiceId="{sid}", InstanceId="i1", Status="UNHEALTHY")
out["health"] = c.get_instances_health_status(ServiceId="{sid}")["Status"]
out["healthy"] = sorted(i["InstanceId"] for i in c.discover_instances(NamespaceName="corp.local", ServiceName="web")["Instances"])
out["all"] = sorted(i["InstanceId"] for i in c.discover_instances(NamespaceName="corp.local", ServiceName="web", HealthStatus="ALL")["Instances"])
try:
    c.delete_service(Id="{sid}")
except c.exceptions.ResourceInUse:
    out["in_use"] = True
try:
    c.deregister_instance(ServiceId="{sid}", InstanceId="nope")
except c.exceptions.InstanceNotFound:
    out["not_found"] = True
try:
    c.discover_instances(NamespaceName="nowhere.local", ServiceName="web")
except c.exceptions.NamespaceNotFound:
    out["ns_not_found"] = True
print(json.dumps(out))
"#
    ));
    assert_eq!(v["prod"], serde_json::json!(["i1"]));
    assert_eq!(
        v["health"],
        serde_json::json!({"i1": "UNHEALTHY", "i2": "HEALTHY"})
    );
    assert_eq!(v["healthy"], serde_json::json!(["i2"]));
    assert_eq!(v["all"], serde_json::json!(["i1", "i2"]));
    assert_eq!(v["in_use"], true);
    assert_eq!(v["not_found"], true);
    assert_eq!(v["ns_not_found"], true);
    // The JavaScript SDK v3, configured by the profile alone: it reads the key, region and
    // endpoint_url there, but not disable_host_prefix_injection (nor the variable
    // AWS_DISABLE_HOST_PREFIX_INJECTION), and calls `data-127.0.0.1`, which no resolver
    // knows (here a namespace with no network: the lookup fails on the box, nothing
    // leaves it).
    let sdk = |flag: &str, no_network: bool| {
        let env = [
            ("NAMESPACE", "corp.local"),
            ("SERVICE", "web"),
            ("HOST_PREFIX", flag),
            ("AWS_DISABLE_HOST_PREFIX_INJECTION", "true"),
        ];
        api.node("discover_instances.js", &env, no_network)
    };
    let e = &sdk("on", true)["error"];
    assert_eq!(e["hostname"], "data-127.0.0.1", "{e:#}");
    assert!(
        s(&e["message"]).starts_with("getaddrinfo ")
            && s(&e["message"]).ends_with(" data-127.0.0.1"),
        "{e:#}"
    );
    // Built with `disableHostPrefix: true`, it calls serve.
    let v = sdk("off", false);
    assert_eq!(v["instances"], serde_json::json!(["i1"]), "{v:#}");
    // An unhealthy instance leaves the DNS answers.
    let out = nslookup("web.corp.local", &gw);
    assert!(
        !out.contains("192.0.2.11") && out.contains("192.0.2.12"),
        "{out}"
    );

    // UpdateService changes the TTLs, not the record types.
    let op = sd_json(
        &api,
        &[
            "update-service",
            "--id",
            &sid,
            "--service",
            "DnsConfig={DnsRecords=[{Type=A,TTL=5},{Type=SRV,TTL=5}]}",
        ],
    );
    assert_eq!(op_target(&api, &op, "SERVICE"), sid);
    let e = sd_err(
        &api,
        &[
            "update-service",
            "--id",
            &sid,
            "--service",
            "DnsConfig={DnsRecords=[{Type=A,TTL=5}]}",
        ],
    );
    assert!(e.contains("InvalidInput"), "{e}");
    let e = sd_err(&api, &["delete-namespace", "--id", &ns]);
    assert!(e.contains("ResourceInUse"), "{e}");

    // Kept across a restart of serve.
    api.restart();
    let g = sd_json(&api, &["get-service", "--id", &sid])["Service"].clone();
    assert_eq!(g["DnsConfig"]["DnsRecords"][0]["TTL"], 5);
    assert_eq!(g["InstanceCount"], 2);
    let h = sd_json(&api, &["get-instances-health-status", "--service-id", &sid]);
    assert_eq!(h["Status"]["i1"], "UNHEALTHY");
    let out = nslookup("web.corp.local", &gw);
    assert!(out.contains("192.0.2.12"), "{out}");

    // Everything deleted, in order.
    for id in ["i1", "i2"] {
        sd_json(
            &api,
            &[
                "deregister-instance",
                "--service-id",
                &sid,
                "--instance-id",
                id,
            ],
        );
    }
    let out = nslookup("web.corp.local", &gw);
    assert!(out.contains("NXDOMAIN"), "{out}");
    sd_json(&api, &["delete-service", "--id", &sid]);
    for id in [&ns, &http_ns] {
        let op = sd_json(&api, &["delete-namespace", "--id", id]);
        assert_eq!(op_target(&api, &op, "NAMESPACE"), *id);
    }
    let l = sd_json(&api, &["list-namespaces"]);
    assert_eq!(l["Namespaces"], serde_json::json!([]));
}

/// A task of service `b`: busybox httpd on 8080.
fn web_def(family: &str) -> String {
    format!(
        r#"{{"family":"{family}","networkMode":"awsvpc","cpu":"256","memory":"512",
  "containerDefinitions":[{{"name":"web","image":"public.ecr.aws/docker/library/busybox:1.36",
    "essential":true,"portMappings":[{{"containerPort":8080}}],
    "command":["sh","-c","mkdir -p /www && echo ok > /www/index.html && trap 'exit 0' TERM; httpd -f -p 8080 -h /www & wait"]}}]}}"#
    )
}

/// A task of service `a`: looks `b.corp.local` up once a second with its resolv.conf
/// (busybox's nslookup) and prints the addresses it got.
fn client_def(family: &str) -> String {
    format!(
        r#"{{"family":"{family}","networkMode":"awsvpc","cpu":"256","memory":"512",
  "containerDefinitions":[{{"name":"client","image":"public.ecr.aws/docker/library/busybox:1.36",
    "essential":true,
    "command":["sh","-c","trap 'exit 0' TERM; while true; do echo LOOK $(nslookup b.corp.local 2>/dev/null | sed -n '/^Name:/,$p' | sed -n 's/^Address: //p' | sort | tr '\\n' ' ') END; sleep 1; done"]}}]}}"#
    )
}

fn task_ids(api: &Api, service: &str) -> Vec<String> {
    let l = api.aws_json(&["list-tasks", "--service-name", service]);
    let mut ids: Vec<String> = l["taskArns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| s(a).rsplit('/').next().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

#[test]
fn two_ecs_services_find_each_other_by_name_from_inside_their_tasks() {
    let api = Api::start();
    let gw = gateway(&api);
    let op = sd_json(
        &api,
        &[
            "create-private-dns-namespace",
            "--name",
            "corp.local",
            "--vpc",
            "vpc-1",
        ],
    );
    let ns = op_target(&api, &op, "NAMESPACE");
    let mut arns = Vec::new();
    for name in ["a", "b"] {
        let svc = sd_json(
            &api,
            &[
                "create-service",
                "--name",
                name,
                "--namespace-id",
                &ns,
                "--dns-config",
                "RoutingPolicy=MULTIVALUE,DnsRecords=[{Type=A,TTL=5},{Type=SRV,TTL=5}]",
                "--health-check-custom-config",
                "FailureThreshold=1",
            ],
        );
        arns.push(s(&svc["Service"]["Arn"]).to_string());
    }
    let b_id = arns[1].rsplit('/').next().unwrap().to_string();
    for (family, def) in [("b", web_def("b")), ("a", client_def("a"))] {
        let f = api.file(&format!("{family}.json"), &def);
        api.aws_json(&["register-task-definition", "--cli-input-json", &f]);
    }
    api.aws_json(&["create-cluster", "--cluster-name", "default"]);
    // ECS takes one registry a service.
    let two = [0, 1].map(|i| format!("registryArn={}", arns[i]));
    let out = api.aws(&[
        "create-service",
        "--service-name",
        "twice",
        "--task-definition",
        "b",
        "--service-registries",
        &two[0],
        &two[1],
    ]);
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && e.contains("InvalidParameterException"),
        "{e}"
    );
    for (name, arn, count, c) in [("b", &arns[1], "2", "web"), ("a", &arns[0], "1", "client")] {
        let reg = format!("registryArn={arn},containerName={c},containerPort=8080");
        api.aws_json(&[
            "create-service",
            "--service-name",
            name,
            "--task-definition",
            name,
            "--desired-count",
            count,
            "--network-configuration",
            "awsvpcConfiguration={subnets=[subnet-1]}",
            "--service-registries",
            &reg,
        ]);
    }
    // Each RUNNING task of b is an instance, its id the task id, with ECS's attributes.
    let b_tasks = api.wait_for(120, "b's two tasks registered", || {
        let ids = task_ids(&api, "b");
        let l = sd_json(&api, &["list-instances", "--service-id", &b_id]);
        let mut got: Vec<String> = l["Instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| s(&i["Id"]).to_string())
            .collect();
        got.sort();
        (ids.len() == 2 && got == ids).then_some(l)
    });
    let inst = &b_tasks["Instances"][0];
    assert_eq!(inst["Attributes"]["ECS_CLUSTER_NAME"], "default");
    assert_eq!(inst["Attributes"]["ECS_SERVICE_NAME"], "b");
    assert_eq!(inst["Attributes"]["ECS_TASK_DEFINITION_FAMILY"], "b");
    assert_eq!(inst["Attributes"]["AWS_INSTANCE_PORT"], "8080");
    assert_eq!(inst["Attributes"]["AWS_INIT_HEALTH_STATUS"], "HEALTHY");
    let mut ips: Vec<String> = b_tasks["Instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| s(&i["Attributes"]["AWS_INSTANCE_IPV4"]).to_string())
        .collect();
    ips.sort();
    let service = api.service("default", "b");
    let events = service["events"].to_string();
    assert!(
        !events.contains("serviceRegistries: not applied"),
        "{events}"
    );

    // From inside a's task: b.corp.local is b's two tasks.
    let a_task = api.wait_for(60, "a's task", || task_ids(&api, "a").into_iter().next());
    let both = format!("LOOK {} {} END", ips[0], ips[1]);
    let logs = |api: &Api| {
        let out = api.mf.run(&["logs", &a_task]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    api.wait_for(60, "a resolving b to both tasks", || {
        logs(&api).lines().any(|l| l == both).then_some(())
    });
    // From the box through the same server: A and SRV.
    let out = nslookup("b.corp.local", &gw);
    assert!(out.contains(&ips[0]) && out.contains(&ips[1]), "{out}");

    // A stopped task leaves the answers within the TTL (5 s).
    let ids = task_ids(&api, "b");
    let stopped_ip = {
        let l = sd_json(
            &api,
            &[
                "get-instance",
                "--service-id",
                &b_id,
                "--instance-id",
                &ids[0],
            ],
        );
        s(&l["Instance"]["Attributes"]["AWS_INSTANCE_IPV4"]).to_string()
    };
    let before = logs(&api).lines().count();
    let t0 = std::time::Instant::now();
    api.aws_json(&["stop-task", "--task", &ids[0]]);
    api.wait_for(30, "the stopped task out of a's answers", || {
        let text = logs(&api);
        let fresh: Vec<&str> = text
            .lines()
            .skip(before)
            .filter(|l| l.starts_with("LOOK "))
            .collect();
        fresh
            .last()
            .filter(|l| !l.contains(&stopped_ip) && l.len() > "LOOK  END".len())
            .map(|_| ())
    });
    let took = t0.elapsed();
    eprintln!("the stopped task left the answers in a's task after {took:?}");
    assert!(took < std::time::Duration::from_secs(5 + 3), "{took:?}");
    let e = sd_err(
        &api,
        &[
            "get-instance",
            "--service-id",
            &b_id,
            "--instance-id",
            &ids[0],
        ],
    );
    assert!(e.contains("InstanceNotFound"), "{e}");

    // Deleting the services deregisters their tasks; then Cloud Map's resources go.
    for name in ["a", "b"] {
        api.aws_json(&["delete-service", "--service", name, "--force"]);
    }
    api.wait_for(60, "every instance deregistered", || {
        let l = sd_json(&api, &["list-instances", "--service-id", &b_id]);
        l["Instances"].as_array().unwrap().is_empty().then_some(())
    });
    api.wait_for(60, "a and b INACTIVE", || {
        (api.service("default", "a")["status"] == "INACTIVE"
            && api.service("default", "b")["status"] == "INACTIVE")
            .then_some(())
    });
    for arn in &arns {
        let id = arn.rsplit('/').next().unwrap();
        api.wait_for(30, "the service's instances gone", || {
            let l = sd_json(&api, &["list-instances", "--service-id", id]);
            l["Instances"].as_array().unwrap().is_empty().then_some(())
        });
        sd_json(&api, &["delete-service", "--id", id]);
    }
    sd_json(&api, &["delete-namespace", "--id", &ns]);
}

#[test]
fn a_task_s_health_is_its_instance_s_custom_health() {
    let api = Api::start();
    let gw = gateway(&api);
    let op = sd_json(
        &api,
        &[
            "create-private-dns-namespace",
            "--name",
            "health.local",
            "--vpc",
            "vpc-1",
        ],
    );
    let ns = op_target(&api, &op, "NAMESPACE");
    let svc = sd_json(
        &api,
        &[
            "create-service",
            "--name",
            "h",
            "--namespace-id",
            &ns,
            "--dns-config",
            "DnsRecords=[{Type=A,TTL=5}]",
            "--health-check-custom-config",
            "FailureThreshold=1",
        ],
    );
    let arn = s(&svc["Service"]["Arn"]).to_string();
    let sid = s(&svc["Service"]["Id"]).to_string();
    // Healthy for its first 15 s, then its health check fails.
    let def = r#"{"family":"h","networkMode":"awsvpc","cpu":"256","memory":"512",
  "containerDefinitions":[{"name":"web","image":"public.ecr.aws/docker/library/busybox:1.36",
    "essential":true,
    "healthCheck":{"command":["CMD-SHELL","[ $(( $(date +%s) - $(cat /tmp/t) )) -lt 15 ]"],"interval":5,"timeout":2,"retries":1},
    "command":["sh","-c","date +%s > /tmp/t; trap 'exit 0' TERM; while true; do sleep 1; done"]}]}"#;
    let f = api.file("h.json", def);
    api.aws_json(&["register-task-definition", "--cli-input-json", &f]);
    api.aws_json(&["create-cluster", "--cluster-name", "default"]);
    // The grace period keeps the unhealthy task from being replaced while we look.
    api.aws_json(&[
        "create-service",
        "--service-name",
        "h",
        "--task-definition",
        "h",
        "--desired-count",
        "1",
        "--health-check-grace-period-seconds",
        "300",
        "--service-registries",
        &format!("registryArn={arn}"),
    ]);
    let task = api.wait_for(60, "the task RUNNING", || {
        let ids = task_ids(&api, "h");
        let id = ids.first()?;
        let t = &api.aws_json(&["describe-tasks", "--tasks", id])["tasks"][0];
        (t["lastStatus"] == "RUNNING").then(|| (id.clone(), t["healthStatus"].clone()))
    });
    // Registered once HEALTHY, not before.
    let health = |api: &Api| {
        let t = &api.aws_json(&["describe-tasks", "--tasks", &task.0])["tasks"][0];
        t["healthStatus"].as_str().unwrap_or_default().to_string()
    };
    let instances = |api: &Api| {
        sd_json(api, &["list-instances", "--service-id", &sid])["Instances"]
            .as_array()
            .unwrap()
            .len()
    };
    if health(&api) != "HEALTHY" {
        assert_eq!(
            instances(&api),
            0,
            "registered before its health check passed"
        );
    }
    api.wait_for(30, "the task HEALTHY and registered", || {
        (health(&api) == "HEALTHY" && instances(&api) == 1).then_some(())
    });
    let h = sd_json(&api, &["get-instances-health-status", "--service-id", &sid]);
    assert_eq!(h["Status"][&task.0], "HEALTHY", "{h:#}");
    let ip = s(&sd_json(
        &api,
        &[
            "get-instance",
            "--service-id",
            &sid,
            "--instance-id",
            &task.0,
        ],
    )["Instance"]["Attributes"]["AWS_INSTANCE_IPV4"])
    .to_string();
    // The tasks' DNS server takes Cloud Map's changes as they are published (within a
    // second or so), not in the same instant as the registration.
    api.wait_for(
        10,
        "h.health.local answered with the task's address",
        || nslookup("h.health.local", &gw).contains(&ip).then_some(()),
    );
    // Its health check fails: the instance's custom health follows, out of the answers.
    api.wait_for(60, "the instance UNHEALTHY", || {
        let h = sd_json(&api, &["get-instances-health-status", "--service-id", &sid]);
        (h["Status"][&task.0] == "UNHEALTHY").then_some(())
    });
    assert_eq!(health(&api), "UNHEALTHY");
    let out = nslookup("h.health.local", &gw);
    assert!(!out.contains(&ip), "{out}");

    api.aws_json(&["delete-service", "--service", "h", "--force"]);
    api.wait_for(60, "the instance deregistered", || {
        (instances(&api) == 0).then_some(())
    });
    sd_json(&api, &["delete-service", "--id", &sid]);
    sd_json(&api, &["delete-namespace", "--id", &ns]);
}

#[test]
fn a_service_connect_alias_spreads_connections_over_the_healthy_tasks() {
    let api = Api::start();
    let op = sd_json(
        &api,
        &[
            "create-private-dns-namespace",
            "--name",
            "sc.local",
            "--vpc",
            "vpc-1",
        ],
    );
    let ns_id = op_target(&api, &op, "NAMESPACE");
    let ns_arn = sd_json(&api, &["get-namespace", "--id", &ns_id])["Namespace"]["Arn"]
        .as_str()
        .unwrap()
        .to_string();
    // A port of the gateway no other test uses at once.
    let port = 20000 + std::process::id() % 10000;
    // b: two tasks answering GET / with an id of their own, port mapping `web`.
    let b = r#"{"family":"scb","networkMode":"awsvpc","cpu":"256","memory":"512",
  "containerDefinitions":[{"name":"web","image":"public.ecr.aws/docker/library/busybox:1.36",
    "essential":true,"portMappings":[{"containerPort":8080,"name":"web"}],
    "command":["sh","-c","mkdir -p /www && cat /proc/sys/kernel/random/uuid > /www/index.html && trap 'exit 0' TERM; httpd -f -p 8080 -h /www & wait"]}]}"#;
    let a = format!(
        r#"{{"family":"sca","networkMode":"awsvpc","cpu":"256","memory":"512",
  "containerDefinitions":[{{"name":"client","image":"public.ecr.aws/docker/library/busybox:1.36",
    "essential":true,
    "command":["sh","-c","trap 'exit 0' TERM; while true; do A=$(nslookup b.sc 2>/dev/null | sed -n 's/^Address: //p' | tail -n 1); echo GOT $A $( (printf 'GET / HTTP/1.0\\r\\n\\r\\n'; sleep 1) | nc -w 5 $A {port} | tail -n 1); done"]}}]}}"#
    );
    for (family, def) in [("scb", b.to_string()), ("sca", a)] {
        let f = api.file(&format!("{family}.json"), &def);
        api.aws_json(&["register-task-definition", "--cli-input-json", &f]);
    }
    // The cluster's default namespace is the client's (it names none).
    api.aws_json(&[
        "create-cluster",
        "--cluster-name",
        "default",
        "--service-connect-defaults",
        "namespace=sc.local",
    ]);
    let server = format!(
        r#"{{"enabled":true,"namespace":"sc.local","services":[{{"portName":"web","discoveryName":"b","clientAliases":[{{"port":{port},"dnsName":"b.sc"}}]}}]}}"#
    );
    for (name, family, count, sc) in [
        ("b", "scb", "2", server.as_str()),
        ("a", "sca", "1", r#"{"enabled":true}"#),
    ] {
        api.aws_json(&[
            "create-service",
            "--service-name",
            name,
            "--task-definition",
            family,
            "--desired-count",
            count,
            "--service-connect-configuration",
            sc,
        ]);
    }
    // Both services are the namespace's, by its name or its ARN (ListServicesByNamespace).
    let arns = |ns: &str| -> Vec<String> {
        let v = api.aws_json(&["list-services-by-namespace", "--namespace", ns]);
        let mut arns: Vec<String> = v["serviceArns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().rsplit('/').next().unwrap().to_string())
            .collect();
        arns.sort();
        arns
    };
    assert_eq!(arns("sc.local"), ["a", "b"]);
    assert_eq!(arns(&ns_arn), ["a", "b"]);
    let events = api.service("default", "b")["events"].to_string();
    assert!(
        !events.contains("serviceConnectConfiguration: not applied"),
        "{events}"
    );
    let a_task = api.wait_for(60, "a's task", || task_ids(&api, "a").into_iter().next());
    // Both of b's tasks answer through the alias, from a's task.
    let got = api.wait_for(120, "both of b's tasks answering at b.sc", || {
        let out = api.mf.run(&["logs", &a_task]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut bodies: Vec<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix("GOT "))
            .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
            .collect();
        bodies.sort();
        bodies.dedup();
        (bodies.len() == 2).then_some(text)
    });
    let gw = gateway(&api);
    assert!(
        got.lines().any(|l| l.starts_with(&format!("GOT {gw} "))),
        "b.sc is the gateway's address in the task: {got}"
    );
    // ECS made b's endpoint a Cloud Map service (named for its discoveryName, API only)
    // and registered both tasks in it at the port mapping's port; a's (a client) none.
    let discover = || {
        sd_json(
            &api,
            &[
                "discover-instances",
                "--namespace-name",
                "sc.local",
                "--service-name",
                "b",
            ],
        )
    };
    let found = api.wait_for(30, "b's two tasks discoverable in Cloud Map", || {
        let v = discover();
        (v["Instances"].as_array().map(Vec::len) == Some(2)).then_some(v)
    });
    let mut ids: Vec<String> = found["Instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let a = &i["Attributes"];
            assert_eq!(a["AWS_INSTANCE_PORT"], "8080", "{i}");
            assert_eq!(a["ECS_SERVICE_NAME"], "b", "{i}");
            assert_eq!(a["ECS_CLUSTER_NAME"], "default", "{i}");
            assert!(
                a["AWS_INSTANCE_IPV4"]
                    .as_str()
                    .is_some_and(|ip| ip.parse::<std::net::Ipv4Addr>().is_ok()),
                "{i}"
            );
            i["InstanceId"].as_str().unwrap().to_string()
        })
        .collect();
    ids.sort();
    let mut b_tasks = task_ids(&api, "b");
    b_tasks.sort();
    assert_eq!(ids, b_tasks);
    let services = sd_json(&api, &["list-services"]);
    let names: Vec<&str> = services["Services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["Name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["b"], "{services}");
    assert_eq!(services["Services"][0]["Type"], "HTTP", "{services}");
    for name in ["a", "b"] {
        api.aws_json(&["delete-service", "--service", name, "--force"]);
    }
    api.wait_for(60, "a and b INACTIVE", || {
        (api.service("default", "a")["status"] == "INACTIVE"
            && api.service("default", "b")["status"] == "INACTIVE")
            .then_some(())
    });
    // An INACTIVE service is no longer the namespace's; the namespace still is. Its
    // tasks are no longer instances.
    assert!(arns("sc.local").is_empty());
    api.wait_for(30, "b's instances deregistered", || {
        (discover()["Instances"].as_array().map(Vec::len) == Some(0)).then_some(())
    });
}

/// What ECS refuses of a Service Connect configuration when a service is created or
/// updated, through the AWS CLI and boto3: a namespace that is neither Cloud Map's nor a
/// cluster's default (NamespaceNotFoundException, "Failed to retrieve namespace for …",
/// nothing made or changed), more than one client alias in a `services[]` entry
/// (InvalidParameterException); and what it accepts: the namespace by name or ARN, a
/// cluster's default namespace (named, or taken by a service naming none), aliases of two
/// entries on one port.
#[test]
fn service_connect_refuses_an_unknown_namespace_and_a_second_alias_as_ecs_does() {
    let api = Api::start();
    let op = sd_json(&api, &["create-http-namespace", "--name", "known.local"]);
    let ns_id = op_target(&api, &op, "NAMESPACE");
    let ns_arn = sd_json(&api, &["get-namespace", "--id", &ns_id])["Namespace"]["Arn"]
        .as_str()
        .unwrap()
        .to_string();
    let def = r#"{"family":"scv","networkMode":"awsvpc","cpu":"256","memory":"512",
  "containerDefinitions":[{"name":"web","image":"public.ecr.aws/docker/library/busybox:1.36",
    "essential":true,"portMappings":[{"containerPort":8080,"name":"web"},{"containerPort":8081,"name":"admin"}],
    "command":["sleep","1000"]}]}"#;
    let f = api.file("scv.json", def);
    api.aws_json(&["register-task-definition", "--cli-input-json", &f]);
    api.aws_json(&["create-cluster", "--cluster-name", "default"]);
    // A cluster with a new default namespace (made in Cloud Map, as ECS makes it).
    api.aws_json(&[
        "create-cluster",
        "--cluster-name",
        "withdefault",
        "--service-connect-defaults",
        "namespace=bycluster.local",
    ]);
    let create = |cluster: &str, name: &str, sc: &str| {
        api.aws(&[
            "create-service",
            "--cluster",
            cluster,
            "--service-name",
            name,
            "--task-definition",
            "scv",
            "--desired-count",
            "0",
            "--service-connect-configuration",
            sc,
        ])
    };
    let refused = |out: std::process::Output, code: &str, text: &str| {
        assert!(!out.status.success(), "accepted: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("({code})")) && err.contains(text),
            "{err}"
        );
    };
    let alias = |port: u16, name: &str| format!(r#"{{"port":{port},"dnsName":"{name}"}}"#);
    let server = |ns: &str, aliases: &[String]| {
        format!(
            r#"{{"enabled":true,"namespace":"{ns}","services":[{{"portName":"web","clientAliases":[{}]}}]}}"#,
            aliases.join(",")
        )
    };
    // Refused, and no service made.
    refused(
        create(
            "default",
            "nons",
            &server("nowhere.local", &[alias(7001, "a")]),
        ),
        "NamespaceNotFoundException",
        "Failed to retrieve namespace for nowhere.local",
    );
    refused(
        create(
            "default",
            "twoaliases",
            &server("known.local", &[alias(7001, "a"), alias(7002, "b")]),
        ),
        "InvalidParameterException",
        "services[0].clientAliases",
    );
    let listed = api.aws_json(&["list-services", "--cluster", "default"]);
    assert_eq!(listed["serviceArns"], serde_json::json!([]), "{listed}");
    // Accepted: the namespace by name and by ARN, a cluster's default by name and taken
    // by a service naming none, two entries' aliases on one port.
    for (cluster, name, sc) in [
        (
            "default",
            "byname",
            server("known.local", &[alias(7001, "a")]),
        ),
        ("default", "byarn", server(&ns_arn, &[alias(7002, "b")])),
        (
            "default",
            "otherdefault",
            server("bycluster.local", &[alias(7003, "c")]),
        ),
        ("withdefault", "client", r#"{"enabled":true}"#.to_string()),
        (
            "default",
            "oneport",
            r#"{"enabled":true,"namespace":"known.local","services":[
                {"portName":"web","clientAliases":[{"port":7004,"dnsName":"d1"}]},
                {"portName":"admin","clientAliases":[{"port":7004,"dnsName":"d2"}]}]}"#
                .to_string(),
        ),
    ] {
        let out = create(cluster, name, &sc);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // UpdateService refuses alike (boto3's modeled exceptions), and the service keeps
    // its configuration.
    let v = api.boto3(
        r#"
import boto3, json, os
c = boto3.client("ecs", endpoint_url=os.environ["ENDPOINT"], region_name="us-east-1")
out = {}
for key, sc in [
    ("namespace", {"enabled": True, "namespace": "gone.local"}),
    ("aliases", {"enabled": True, "namespace": "known.local", "services": [
        {"portName": "web", "clientAliases": [{"port": 7001}, {"port": 7005}]}]}),
]:
    try:
        c.update_service(cluster="default", service="byname", serviceConnectConfiguration=sc)
        out[key] = "accepted"
    except (c.exceptions.NamespaceNotFoundException, c.exceptions.InvalidParameterException) as e:
        out[key] = [e.response["Error"]["Code"], e.response["Error"]["Message"]]
print(json.dumps(out))
"#,
    );
    assert_eq!(v["namespace"][0], "NamespaceNotFoundException", "{v}");
    assert_eq!(
        v["namespace"][1], "Failed to retrieve namespace for gone.local",
        "{v}"
    );
    assert_eq!(v["aliases"][0], "InvalidParameterException", "{v}");
    let d = &api.service("default", "byname")["deployments"];
    assert_eq!(d.as_array().map(Vec::len), Some(1), "a new deployment: {d}");
    assert_eq!(
        d[0]["serviceConnectConfiguration"]["namespace"], "known.local",
        "{d}"
    );
}

/// ECS makes a cluster's new default Service Connect namespace in Cloud Map (an HTTP
/// namespace) and answers the cluster with its ARN; an existing one is used by name or
/// ARN; `""` removes the defaults and leaves the namespace. Ref: ecs.json
/// `ClusterServiceConnectDefaultsRequest.namespace`.
#[test]
fn a_cluster_s_new_default_namespace_is_made_in_cloud_map_as_ecs_does() {
    let api = Api::start();
    let namespaces = |api: &Api| -> Vec<Value> {
        sd_json(api, &["list-namespaces"])["Namespaces"]
            .as_array()
            .unwrap()
            .clone()
    };
    let made = api.aws_json(&[
        "create-cluster",
        "--cluster-name",
        "scd",
        "--service-connect-defaults",
        "namespace=scdnew.local",
    ]);
    let arn = s(&made["cluster"]["serviceConnectDefaults"]["namespace"]).to_string();
    let listed = namespaces(&api);
    let ns = listed
        .iter()
        .find(|n| n["Name"] == "scdnew.local")
        .unwrap_or_else(|| panic!("no namespace made: {listed:?}"));
    assert_eq!(ns["Type"], "HTTP", "{ns}");
    assert_eq!(ns["Arn"], arn.as_str(), "{ns}");
    let described = api.aws_json(&["describe-clusters", "--clusters", "scd"]);
    assert_eq!(
        described["clusters"][0]["serviceConnectDefaults"]["namespace"],
        arn.as_str(),
        "{described}"
    );
    // An existing namespace, by name and by ARN, is used (none made).
    let op = sd_json(&api, &["create-http-namespace", "--name", "there.local"]);
    let there = op_target(&api, &op, "NAMESPACE");
    let there_arn =
        s(&sd_json(&api, &["get-namespace", "--id", &there])["Namespace"]["Arn"]).to_string();
    for (cluster, given) in [("byname", "there.local"), ("byarn", there_arn.as_str())] {
        let c = api.aws_json(&[
            "create-cluster",
            "--cluster-name",
            cluster,
            "--service-connect-defaults",
            &format!("namespace={given}"),
        ]);
        assert_eq!(
            c["cluster"]["serviceConnectDefaults"]["namespace"],
            there_arn.as_str(),
            "{c}"
        );
    }
    assert_eq!(namespaces(&api).len(), 2);
    // UpdateCluster makes a new one too; "" removes the defaults, the namespace stays.
    let u = api.aws_json(&[
        "update-cluster",
        "--cluster",
        "byname",
        "--service-connect-defaults",
        "namespace=later.local",
    ]);
    let later = s(&u["cluster"]["serviceConnectDefaults"]["namespace"]).to_string();
    assert!(
        namespaces(&api)
            .iter()
            .any(|n| n["Name"] == "later.local" && n["Arn"] == later.as_str())
    );
    let u = api.aws_json(&[
        "update-cluster",
        "--cluster",
        "byname",
        "--service-connect-defaults",
        "namespace=",
    ]);
    assert!(u["cluster"].get("serviceConnectDefaults").is_none(), "{u}");
    assert_eq!(namespaces(&api).len(), 3);
    // What ECS refuses (boto3's modeled exceptions), and no cluster is made.
    let v = api.boto3(
        r#"
import boto3, json, os
c = boto3.client("ecs", endpoint_url=os.environ["ENDPOINT"], region_name="us-east-1")
out = {}
for key, ns in [
    ("slash", "a/b"),
    ("arn", "arn:aws:servicediscovery:us-east-1:123456789012:namespace/ns-nonenonenonenone"),
]:
    try:
        c.create_cluster(clusterName="refused" + key, serviceConnectDefaults={"namespace": ns})
        out[key] = "accepted"
    except (c.exceptions.NamespaceNotFoundException, c.exceptions.InvalidParameterException) as e:
        out[key] = e.response["Error"]["Code"]
out["clusters"] = c.list_clusters()["clusterArns"]
print(json.dumps(out))
"#,
    );
    assert_eq!(v["slash"], "InvalidParameterException", "{v}");
    assert_eq!(v["arn"], "NamespaceNotFoundException", "{v}");
    assert!(!v["clusters"].to_string().contains("refused"), "{v}");
    // A service of the cluster with Service Connect and no namespace of its own has its
    // endpoint made in the cluster's namespace.
    let def = r#"{"family":"scd","networkMode":"awsvpc","cpu":"256","memory":"512",
  "containerDefinitions":[{"name":"web","image":"public.ecr.aws/docker/library/busybox:1.36",
    "essential":true,"portMappings":[{"containerPort":8080,"name":"web"}],
    "command":["sleep","1000"]}]}"#;
    let f = api.file("scd.json", def);
    api.aws_json(&["register-task-definition", "--cli-input-json", &f]);
    api.aws_json(&[
        "create-service",
        "--cluster",
        "scd",
        "--service-name",
        "server",
        "--task-definition",
        "scd",
        "--desired-count",
        "0",
        "--service-connect-configuration",
        r#"{"enabled":true,"services":[{"portName":"web","discoveryName":"scdweb"}]}"#,
    ]);
    let ns_id = s(&ns["Id"]).to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let l = sd_json(
            &api,
            &[
                "list-services",
                "--filters",
                &format!("Name=NAMESPACE_ID,Values={ns_id},Condition=EQ"),
            ],
        );
        if l["Services"]
            .as_array()
            .is_some_and(|v| v.iter().any(|x| x["Name"] == "scdweb"))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no Cloud Map service scdweb in {ns_id}: {l}; events: {}",
            api.service("scd", "server")["events"]
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}
