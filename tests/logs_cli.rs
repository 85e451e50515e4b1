//! Root integration tests of the CLI's CloudWatch Logs verbs (`create-log-group`,
//! `describe-log-groups`, `delete-log-group`, `put-retention-policy`, `tail`): the real
//! binary over the same store `serve`'s Logs API answers, checked against the real AWS CLI
//! (`aws logs … --endpoint-url`) on that server; and the awslogs task that fails for a
//! missing group, whose reason names the command that fixes it, run again after it.

use crate::common;

use common::api::Api;
use common::image::{Compression, busybox_layer};
use serde_json::{Value, json};
use std::io::BufRead;
use std::time::{Duration, Instant};

fn aws_logs(api: &Api, args: &[&str]) -> Value {
    let out = api.aws_in("logs", args);
    assert!(out.status.success(), "aws logs {args:?} failed");
    if out.stdout.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(&out.stdout).unwrap()
}

fn stdout(api: &Api, args: &[&str]) -> String {
    let out = api.mf.run(args);
    assert!(out.status.success(), "minifargate {args:?} failed");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn log_group_verbs_answer_as_the_aws_cli_does() {
    let api = Api::start();
    // Created by the CLI, seen by the AWS CLI through serve: one store. The AWS CLI prints
    // nothing for CreateLogGroup's `{}`; neither does the verb.
    assert_eq!(
        stdout(&api, &["create-log-group", "--log-group-name", "/mf/cli/a"]),
        ""
    );
    aws_logs(&api, &["create-log-group", "--log-group-name", "/mf/cli/b"]);
    assert_eq!(
        stdout(&api, &["create-log-group", "--log-group-name", "/other/c"]),
        ""
    );
    let theirs = aws_logs(&api, &["describe-log-groups"]);
    let names: Vec<&str> = theirs["logGroups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["logGroupName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["/mf/cli/a", "/mf/cli/b", "/other/c"]);
    // The same response, member for member, and the same --query/--output behaviour.
    assert_eq!(api.mf_json(&["describe-log-groups"]), theirs);
    let q = [
        "describe-log-groups",
        "--log-group-name-prefix",
        "/mf/",
        "--query",
        "logGroups[].logGroupName",
        "--output",
        "text",
    ];
    let ours = stdout(&api, &q);
    let out = api.aws_in("logs", &q);
    assert_eq!(ours, String::from_utf8_lossy(&out.stdout));
    assert_eq!(ours, "/mf/cli/a\t/mf/cli/b\n");
    // The AWS CLI's pagination options: two items and a token, then the rest from it.
    let first = api.mf_json(&["describe-log-groups", "--max-items", "2"]);
    assert_eq!(first["logGroups"].as_array().unwrap().len(), 2);
    let token = first["NextToken"]
        .as_str()
        .expect("a NextToken")
        .to_string();
    let rest = api.mf_json(&["describe-log-groups", "--starting-token", &token]);
    assert_eq!(rest["logGroups"][0]["logGroupName"], "/other/c");
    assert_eq!(rest["logGroups"].as_array().unwrap().len(), 1);

    // CloudWatch's exceptions, as the API answers them, exit status 1.
    let e = api
        .mf
        .fail(&["create-log-group", "--log-group-name", "/mf/cli/a"]);
    assert_eq!(
        e,
        "minifargate: ResourceAlreadyExistsException: The specified log group already exists"
    );
    let e = api
        .mf
        .fail(&["create-log-group", "--log-group-name", "bad:name"]);
    assert!(e.contains("InvalidParameterException"), "{e}");
    let e = api.mf.fail(&[
        "create-log-group",
        "--log-group-name",
        "/mf/kms",
        "--kms-key-id",
        "arn:aws:kms:us-east-1:123456789012:key/1",
    ]);
    assert!(
        e.contains("InvalidParameterException: CreateLogGroup: kmsKeyId not supported"),
        "{e}"
    );

    // Retention, read back through the AWS CLI.
    assert_eq!(
        stdout(
            &api,
            &[
                "put-retention-policy",
                "--log-group-name",
                "/mf/cli/a",
                "--retention-in-days",
                "7"
            ]
        ),
        ""
    );
    let g = aws_logs(
        &api,
        &[
            "describe-log-groups",
            "--log-group-name-prefix",
            "/mf/cli/a",
        ],
    );
    assert_eq!(g["logGroups"][0]["retentionInDays"], 7);
    let e = api.mf.fail(&[
        "put-retention-policy",
        "--log-group-name",
        "/mf/cli/a",
        "--retention-in-days",
        "8",
    ]);
    assert!(e.contains("InvalidParameterException"), "{e}");
    let e = api.mf.fail(&[
        "put-retention-policy",
        "--log-group-name",
        "/mf/none",
        "--retention-in-days",
        "7",
    ]);
    assert!(e.contains("ResourceNotFoundException"), "{e}");

    // Deleted by the CLI, gone for the AWS CLI; a second delete is CloudWatch's error.
    assert_eq!(
        stdout(&api, &["delete-log-group", "--log-group-name", "/mf/cli/b"]),
        ""
    );
    let left = aws_logs(
        &api,
        &["describe-log-groups", "--query", "logGroups[].logGroupName"],
    );
    assert_eq!(left, json!(["/mf/cli/a", "/other/c"]));
    let e = api
        .mf
        .fail(&["delete-log-group", "--log-group-name", "/mf/cli/b"]);
    assert_eq!(
        e,
        "minifargate: ResourceNotFoundException: The specified log group does not exist."
    );
}

/// The one-container busybox task of these tests, its output to awslogs group `group`
/// without `awslogs-create-group`.
fn awslogs_task(mf: &common::cli::Mf, name: &str, group: &str, command: &str) -> String {
    let td = json!({
        "family": name,
        "networkMode": "none",
        "containerDefinitions": [{
            "name": "app",
            "image": "public.ecr.aws/docker/library/busybox:1.36",
            "memory": 128,
            "essential": true,
            "command": ["sh", "-c", command],
            "logConfiguration": {"logDriver": "awslogs", "options": {
                "awslogs-group": group, "awslogs-region": "us-east-1",
                "awslogs-stream-prefix": "ecs"}},
        }],
    });
    mf.taskdef(name, &td.to_string())
}

fn wait_stopped(mf: &common::cli::Mf, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let t = mf.json(&["describe-tasks", "--tasks", id])["tasks"][0].clone();
        if t["lastStatus"] == "STOPPED" {
            return t;
        }
        assert!(Instant::now() < deadline, "task {id} did not stop: {t:#}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn run_detached(mf: &common::cli::Mf, td: &str) -> String {
    let v = mf.json(&["run-task", "--task-definition", td, "--detach"]);
    assert_eq!(v["failures"], json!([]), "{v:#}");
    let arn = v["tasks"][0]["taskArn"].as_str().unwrap();
    arn.rsplit('/').next().unwrap().to_string()
}

/// Acceptance: a task whose awslogs group does not exist fails as on ECS, and its stopped
/// reason ends with the local command that makes the group; that command, run as the
/// reason spells it, makes the task run, and `tail` (also `--follow`) shows its lines.
#[test]
fn a_missing_group_names_the_fix_and_the_task_runs_after_it() {
    let (mf, _reg) = common::busybox_task_env(busybox_layer(Compression::Gzip, "logs-cli"));
    let group = "/ecs/logs-cli";
    let td = awslogs_task(&mf, "logs-cli", group, "echo one; sleep 1; echo two");
    let id = run_detached(&mf, &td);
    let t = wait_stopped(&mf, &id);
    assert_eq!(t["stopCode"], "TaskFailedToStart", "{t:#}");
    let reason = t["stoppedReason"].as_str().unwrap();
    let fix = format!(
        "minifargate --root {} create-log-group --log-group-name {group}",
        mf.root.display()
    );
    assert_eq!(
        reason,
        format!(
            "CannotStartContainerError: Error response from daemon: failed to initialize \
             logging driver: failed to create Cloudwatch log stream: ResourceNotFoundException: \
             The specified log group does not exist. (set awslogs-create-group to true, or \
             create it: {fix})"
        ),
        "{t:#}"
    );
    assert_eq!(t["containers"][0]["reason"], reason);
    let e = mf.fail(&["tail", group]);
    assert_eq!(
        e,
        "minifargate: ResourceNotFoundException: The specified log group does not exist."
    );

    // The command of the reason, word for word.
    let words: Vec<&str> = fix.split(' ').collect();
    assert_eq!(words[0], "minifargate");
    let mut c = std::process::Command::new(common::cli::bin());
    mf.prepare(&mut c);
    let out = c.args(&words[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{fix}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = mf.json(&["describe-log-groups", "--query", "logGroups[].logGroupName"]);
    assert_eq!(listed, json!([group]));

    // Following from before the task starts: its lines arrive as it prints them.
    let mut follower = mf
        .cmd()
        .args(["tail", group, "--follow", "--format", "short"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let pipe = follower.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let id = run_detached(&mf, &td);
    let mut followed = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while followed.len() < 2 && Instant::now() < deadline {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(500)) {
            followed.push(l);
        }
    }
    let _ = follower.kill();
    let _ = follower.wait();
    let t = wait_stopped(&mf, &id);
    assert_eq!(t["containers"][0]["exitCode"], 0, "{t:#}");
    let short: Vec<(&str, &str)> = followed
        .iter()
        .map(|l| l.split_once(' ').unwrap())
        .collect();
    assert_eq!(
        short.iter().map(|(_, m)| *m).collect::<Vec<_>>(),
        ["one", "two"],
        "{followed:?}"
    );
    for (t, _) in &short {
        chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S")
            .unwrap_or_else(|e| panic!("{t}: {e}"));
    }

    // Without --follow: every event since --since, in the default (detailed) format, with
    // the agent's stream name; an older --since than the events changes nothing, a later
    // one leaves them out.
    let stream = format!("ecs/app/{id}");
    let out = mf.run(&["tail", group, "--since", "1h"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    for (l, want) in lines.iter().zip(["one", "two"]) {
        let mut parts = l.splitn(3, ' ');
        let ts = parts.next().unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc3339(ts).is_ok() && ts.ends_with("+00:00"),
            "{l}"
        );
        assert_eq!(parts.next(), Some(stream.as_str()), "{l}");
        assert_eq!(parts.next(), Some(want), "{l}");
    }
    let later = (chrono::Utc::now() + chrono::Duration::minutes(1)).to_rfc3339();
    let out = mf.run(&["tail", group, "--since", &later]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    // `--format none`: each event as one JSON line.
    let out = mf.run(&["tail", group, "--format", "none"]);
    let events: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 2);
    assert_eq!(events[1]["message"], "two");
    assert_eq!(events[1]["logStreamName"], stream.as_str());
}
