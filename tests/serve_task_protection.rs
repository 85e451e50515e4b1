//! Task scale-in protection end to end: a task protects itself through the agent API
//! inside it (`$ECS_AGENT_URI/task-protection/v1/state`, as the ECS agent serves it), the
//! AWS CLI reads and changes protection (UpdateTaskProtection, GetTaskProtection), and the
//! service scheduler keeps a protected task through a scale-in to 0 until the protection
//! lapses.

use crate::common;

use common::api::Api;
use serde_json::Value;
use std::time::{Duration, Instant};

const LONG: &str = r#"{"family":"prot","networkMode":"awsvpc","cpu":"256","memory":"512",
  "requiresCompatibilities":["FARGATE"],
  "containerDefinitions":[{"name":"app","image":"public.ecr.aws/docker/library/busybox:1.36",
    "essential":true,"command":["sh","-c","trap 'exit 0' TERM; while :; do sleep 0.1; done"]}]}"#;

/// One HTTP request to the agent API from inside task `id`'s container (busybox `nc`):
/// the status and the JSON body.
fn agent(api: &Api, id: &str, method: &str, body: &str) -> (u16, Value) {
    let script = format!(
        "p=${{ECS_AGENT_URI#http://169.254.170.2}}; printf '{method} %s/task-protection/v1/state \
         HTTP/1.0\\r\\nContent-Length: {}\\r\\n\\r\\n%s' \"$p\" '{body}' | busybox nc \
         169.254.170.2 80",
        body.len()
    );
    let out = api.mf.run(&["exec", id, "--", "sh", "-c", &script]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "exec failed: {out:?}");
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    (
        status,
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}")),
    )
}

fn task_arns(v: &Value) -> Vec<String> {
    v["taskArns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

fn id_of(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap()
}

#[test]
fn a_protected_task_survives_a_scale_in_to_zero_until_its_protection_lapses() {
    let api = Api::start();
    let def = api.file("prot.json", LONG);
    api.aws_json(&["register-task-definition", "--cli-input-json", &def]);
    api.aws_json(&[
        "create-service",
        "--service-name",
        "web",
        "--task-definition",
        "prot",
        "--desired-count",
        "2",
        "--network-configuration",
        "awsvpcConfiguration={subnets=[subnet-0abc]}",
    ]);
    let arns = api.wait_for(60, "two running service tasks", || {
        let a = task_arns(&api.aws_json(&["list-tasks", "--service-name", "web"]));
        if a.len() != 2 {
            return None;
        }
        let d = api.aws_json(&["describe-tasks", "--tasks", &a[0], &a[1]]);
        d["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["lastStatus"] == "RUNNING")
            .then_some(a)
    });
    let (keep, drop) = (&arns[0], &arns[1]);

    // From inside the task: protect it for one minute (the shortest ECS allows).
    let (status, v) = agent(
        &api,
        id_of(keep),
        "PUT",
        r#"{"ProtectionEnabled":true,"ExpiresInMinutes":1}"#,
    );
    assert_eq!(status, 200, "{v:#}");
    assert_eq!(v["protection"]["ProtectionEnabled"], true, "{v:#}");
    assert_eq!(v["protection"]["TaskArn"], keep.as_str(), "{v:#}");
    let (status, v) = agent(&api, id_of(keep), "GET", "");
    assert_eq!(status, 200, "{v:#}");
    assert_eq!(v["protection"]["ProtectionEnabled"], true, "{v:#}");
    // The agent's refusals: no ProtectionEnabled, a length ECS refuses.
    let (status, v) = agent(&api, id_of(keep), "PUT", r#"{"ExpiresInMinutes":5}"#);
    assert_eq!(status, 400, "{v:#}");
    assert_eq!(v["error"]["Code"], "InvalidParameterException", "{v:#}");
    let (status, _) = agent(
        &api,
        id_of(keep),
        "PUT",
        r#"{"ProtectionEnabled":true,"ExpiresInMinutes":2881}"#,
    );
    assert_eq!(status, 400);

    // The AWS CLI sees it; the other task gets protection and loses it again.
    let got = api.aws_json(&[
        "get-task-protection",
        "--cluster",
        "default",
        "--tasks",
        keep,
        drop,
    ]);
    let p = &got["protectedTasks"];
    assert_eq!(p[0]["protectionEnabled"], true, "{got:#}");
    let expires = p[0]["expirationDate"].as_f64().expect("an expirationDate");
    assert_eq!(p[1]["protectionEnabled"], false, "{got:#}");
    let on = api.aws_json(&[
        "update-task-protection",
        "--cluster",
        "default",
        "--tasks",
        drop,
        "--protection-enabled",
        "--expires-in-minutes",
        "30",
    ]);
    assert_eq!(on["protectedTasks"][0]["protectionEnabled"], true, "{on:#}");
    let off = api.aws_json(&[
        "update-task-protection",
        "--cluster",
        "default",
        "--tasks",
        drop,
        "--no-protection-enabled",
    ]);
    assert_eq!(
        off["protectedTasks"][0]["protectionEnabled"], false,
        "{off:#}"
    );
    // ECS's validation and failures.
    let e = api.aws_err(&[
        "update-task-protection",
        "--cluster",
        "default",
        "--tasks",
        drop,
        "--protection-enabled",
        "--expires-in-minutes",
        "2881",
    ]);
    assert!(e.contains("InvalidParameterException"), "{e}");
    let missing = api.aws_json(&[
        "update-task-protection",
        "--cluster",
        "default",
        "--tasks",
        "0123456789abcdef0123456789abcdef",
        "--protection-enabled",
    ]);
    assert_eq!(missing["failures"][0]["reason"], "MISSING", "{missing:#}");

    // Scale in to 0: the unprotected task goes, the protected one stays...
    api.aws_json(&["update-service", "--service", "web", "--desired-count", "0"]);
    api.aws_json(&["wait", "tasks-stopped", "--tasks", drop]);
    std::thread::sleep(Duration::from_secs(5));
    let t = &api.aws_json(&["describe-tasks", "--tasks", keep])["tasks"][0];
    assert_eq!(t["lastStatus"], "RUNNING", "{t:#}");
    let svc = api.service("default", "web");
    let events: Vec<&str> = svc["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["message"].as_str())
        .collect();
    assert!(
        events
            .iter()
            .any(|m| m.contains("unable to scale in due to (reason 1 tasks under protection)")),
        "{events:#?}"
    );
    // ...until its protection lapses; then the scheduler stops it.
    let started = Instant::now();
    let stopped = api.wait_for(90, "the protected task to stop", || {
        let t = api.aws_json(&["describe-tasks", "--tasks", keep])["tasks"][0].clone();
        (t["lastStatus"] == "STOPPED").then_some(t)
    });
    let stopping_at = stopped["stoppingAt"].as_f64().unwrap();
    assert!(
        stopping_at >= expires,
        "stopped at {stopping_at}, protected until {expires}"
    );
    assert_eq!(
        stopped["stopCode"], "ServiceSchedulerInitiated",
        "{stopped:#}"
    );
    eprintln!(
        "the protected task stopped {:.1} s after its protection lapsed (waited {:?})",
        stopping_at - expires,
        started.elapsed()
    );
}
