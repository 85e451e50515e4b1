//! Root integration test of an awsvpc service with a port mapping, with the real AWS CLI
//! against `minifargate serve`: every task of the service runs and answers at its own
//! address (as each Fargate task does at its ENI's), the host port goes to one of them,
//! and the others say why they are not published (task warning, `inspect`).

use crate::common;

use common::api::Api;
use common::leaks::assert_no_leaks;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// A TCP port free on the host, below the ephemeral range (tests run in parallel and
/// publish on the host).
fn free_port() -> u16 {
    let mut b = [0u8; 2];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut b)
        .unwrap();
    let mut p = 20000 + u16::from_le_bytes(b) % 10000;
    while TcpListener::bind(("0.0.0.0", p)).is_err() {
        p = 20000 + (p + 7) % 10000;
    }
    p
}

/// GET / from `addr`: the body, or the error.
fn http_get(addr: SocketAddr) -> Result<String, String> {
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(3)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET / HTTP/1.0\r\nHost: test\r\n\r\n").map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    Ok(out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string())
}

fn http_get_eventually(addr: SocketAddr) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match http_get(addr) {
            Ok(body) if !body.trim().is_empty() => return body.trim().to_string(),
            other => assert!(
                Instant::now() < deadline,
                "GET http://{addr}/ never answered: {other:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn tid(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap()
}

fn detail(t: &Value, name: &str) -> String {
    t["attachments"][0]["details"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {t:#}"))["value"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The service's tasks once `n` are RUNNING and none is pending (describe-tasks JSON).
fn running_tasks(api: &Api, name: &str, n: usize) -> Vec<Value> {
    api.wait_for(120, &format!("{n} RUNNING tasks of service {name}"), || {
        let s = api.service("default", name);
        if s["runningCount"] != n || s["pendingCount"] != 0 {
            return None;
        }
        let arns = strs(&api.aws_json(&["list-tasks", "--desired-status", "RUNNING"])["taskArns"]);
        if arns.is_empty() {
            return None;
        }
        let mut args = vec!["describe-tasks", "--tasks"];
        args.extend(arns.iter().map(String::as_str));
        let tasks: Vec<Value> = api.aws_json(&args)["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["group"] == format!("service:{name}") && t["lastStatus"] == "RUNNING")
            .cloned()
            .collect();
        (tasks.len() == n).then_some(tasks)
    })
}

#[test]
fn a_service_of_three_awsvpc_tasks_with_one_port_mapping_runs_all_three() {
    let api = Api::start();
    let port = free_port();
    // Each task serves its own host name (ip-a-b-c-d.ec2.internal: its address); the
    // shell stops on SIGTERM (httpd as pid 1 would ignore it).
    let def = format!(
        r#"{{"family":"spread","networkMode":"awsvpc","requiresCompatibilities":["FARGATE"],
  "cpu":"256","memory":"512",
  "containerDefinitions":[{{"name":"web","image":"public.ecr.aws/docker/library/busybox:1.36",
    "essential":true,
    "portMappings":[{{"containerPort":{port},"protocol":"tcp","name":"http"}}],
    "command":["sh","-c","trap 'exit 0' TERM; mkdir /www && hostname > /www/index.html && {{ httpd -f -p {port} -h /www & wait; }}"]}}]}}"#
    );
    let file = api.file("spread.json", &def);
    api.aws_json(&["register-task-definition", "--cli-input-json", &file]);
    api.aws_json(&[
        "create-service",
        "--service-name",
        "spread",
        "--task-definition",
        "spread",
        "--desired-count",
        "3",
        "--launch-type",
        "FARGATE",
        "--network-configuration",
        "awsvpcConfiguration={subnets=[subnet-12345678]}",
    ]);
    let tasks = running_tasks(&api, "spread", 3);
    let ids: Vec<String> = tasks
        .iter()
        .map(|t| tid(t["taskArn"].as_str().unwrap()).to_string())
        .collect();

    // Each task answers at its own address with its own name.
    let mut names = Vec::new();
    for t in &tasks {
        let ip: Ipv4Addr = detail(t, "privateIPv4Address").parse().unwrap();
        let body = http_get_eventually(SocketAddr::from((ip, port)));
        let [a, b, c, d] = ip.octets();
        assert_eq!(body, format!("ip-{a}-{b}-{c}-{d}.ec2.internal"));
        names.push(body);
    }
    // The host port answers, from one of them.
    let body = http_get_eventually(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    assert!(names.contains(&body), "{body:?} not one of {names:?}");

    // One task holds the host port; the two others run unpublished and say so.
    let mut unpublished = 0;
    for id in &ids {
        let t = api.mf_json(&["describe-tasks", "--tasks", id])["tasks"][0].clone();
        let warned: Vec<String> = strs(&t["minifargateWarnings"])
            .into_iter()
            .filter(|w| {
                w.contains(&format!(
                    "port {port}/tcp of container web is not published"
                ))
            })
            .collect();
        let inspect = api.mf_json(&["inspect", id, "--format", "json"]);
        let not_published = inspect["network"]["portsNotPublished"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let bindings = inspect["network"]["networkBindings"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if warned.is_empty() {
            assert!(not_published.is_empty(), "{inspect:#}");
            assert_eq!(bindings.len(), 1, "{inspect:#}");
            assert_eq!(bindings[0]["hostPort"], port);
        } else {
            unpublished += 1;
            assert!(
                warned[0].contains("already published by task "),
                "{warned:?}"
            );
            assert!(bindings.is_empty(), "{inspect:#}");
            assert_eq!(not_published.len(), 1, "{inspect:#}");
            assert_eq!(not_published[0]["containerPort"], port);
        }
    }
    assert_eq!(unpublished, 2, "two of the three tasks are not published");
    // The service never looped.
    let s = api.service("default", "spread");
    let events = s["events"].to_string();
    assert!(
        !events.contains("unable to consistently start tasks"),
        "{s:#}"
    );
    assert!(!events.contains("has stopped"), "{s:#}");

    api.aws_json(&["delete-service", "--service", "spread", "--force"]);
    api.wait_for(60, "the service's tasks to stop", || {
        let mut args = vec!["describe-tasks", "--tasks"];
        args.extend(ids.iter().map(String::as_str));
        api.aws_json(&args)["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["lastStatus"] == "STOPPED")
            .then_some(())
    });
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    assert_no_leaks(&api.mf, &refs, &[]);
    assert!(http_get(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).is_err());
}
