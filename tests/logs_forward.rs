//! Root integration test of forwarding awslogs events to a real CloudWatch Logs API
//! (moto_server's Logs service): with `MINIFARGATE_AWSLOGS_FORWARD=1`, a container's lines
//! arrive in the remote stream the agent would name, in order, with the timestamps of the
//! local events, as the task's execution role (assumed through moto's STS).

use crate::common;

use common::busybox_task_env;
use common::image::{Compression, busybox_layer};
use common::services::{Server, aws};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

#[test]
fn awslogs_events_are_forwarded_to_cloudwatch_logs_batched() {
    let work = tempfile::tempdir().unwrap();
    let moto = Server::moto(work.path());
    let (mut mf, _reg) = busybox_task_env(busybox_layer(Compression::Gzip, "logs-forward"));
    mf.set_env("AWS_ENDPOINT_URL", moto.url());
    mf.set_env("AWS_ACCESS_KEY_ID", "testing");
    mf.set_env("AWS_SECRET_ACCESS_KEY", "testing");
    mf.set_env("AWS_REGION", "us-east-1");
    mf.set_env("MINIFARGATE_AWSLOGS_FORWARD", "1");
    // 3 lines, then 2000 at once: several lines a PutLogEvents call.
    let td = json!({
        "family": "forwarded",
        "networkMode": "none",
        "executionRoleArn": "arn:aws:iam::123456789012:role/exec",
        "containerDefinitions": [{
            "name": "app",
            "image": "public.ecr.aws/docker/library/busybox:1.36",
            "memory": 128,
            "essential": true,
            "command": ["sh", "-c",
                "echo one; sleep 0.3; echo two; sleep 0.3; echo three; i=0; \
                 while [ $i -lt 2000 ]; do echo \"bulk $i\"; i=$((i+1)); done"],
            "logConfiguration": {"logDriver": "awslogs", "options": {
                "awslogs-group": "/ecs/forwarded", "awslogs-region": "us-east-1",
                "awslogs-stream-prefix": "ecs", "awslogs-create-group": "true"}},
        }],
    });
    let td = mf.taskdef("forwarded", &td.to_string());
    let v = mf.json(&["run-task", "--task-definition", &td, "--detach"]);
    assert_eq!(v["failures"], json!([]));
    let id = v["tasks"][0]["taskArn"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(90);
    let task = loop {
        let t = mf.json(&["describe-tasks", "--tasks", &id])["tasks"][0].clone();
        if t["lastStatus"] == "STOPPED" {
            break t;
        }
        assert!(Instant::now() < deadline, "task {id} did not stop");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(task["containers"][0]["exitCode"], 0, "{task:#}");
    assert!(
        task["attributes"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|a| !a["value"].as_str().unwrap_or_default().contains("forward")),
        "{task:#}"
    );

    // Every event, from moto, page by page (GetLogEvents from the head, forward tokens).
    let stream = format!("ecs/app/{id}");
    let mut remote: Vec<Value> = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut args = vec![
            "logs",
            "get-log-events",
            "--log-group-name",
            "/ecs/forwarded",
            "--log-stream-name",
            &stream,
            "--start-from-head",
        ];
        if let Some(t) = &token {
            args.extend(["--next-token", t.as_str()]);
        }
        let r = aws(&moto, &args);
        let events = r["events"].as_array().unwrap().clone();
        let next = r["nextForwardToken"].as_str().map(str::to_string);
        if events.is_empty() || next == token {
            break;
        }
        remote.extend(events);
        token = next;
    }
    let messages: Vec<&str> = remote
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    let mut want = vec!["one".to_string(), "two".into(), "three".into()];
    want.extend((0..2000).map(|i| format!("bulk {i}")));
    assert_eq!(messages, want);

    // The same timestamps as the local events.
    let local = mf.run(&["logs", &id, "--timestamps", "--tail", "3000"]);
    let local_ts: Vec<i64> = String::from_utf8_lossy(&local.stdout)
        .lines()
        .map(|l| {
            let t = l.split_once(' ').unwrap().0;
            chrono::DateTime::parse_from_rfc3339(t)
                .unwrap()
                .timestamp_millis()
        })
        .collect();
    let remote_ts: Vec<i64> = remote
        .iter()
        .map(|e| e["timestamp"].as_i64().unwrap())
        .collect();
    assert_eq!(remote_ts, local_ts);
    assert!(remote_ts[1] - remote_ts[0] >= 250, "{:?}", &remote_ts[..3]);
}
