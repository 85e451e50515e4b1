//! Root integration tests of the local CloudWatch Logs API on `serve`'s listener, driven
//! by the real AWS CLI (`aws logs … --endpoint-url`) and boto3: groups, streams, events
//! in order with their timestamps, GetLogEvents tokens both ways, FilterLogEvents
//! patterns, pagination, retention, CloudWatch's exception names.

use crate::common;

use common::api::Api;
use serde_json::Value;

fn logs_json(api: &Api, args: &[&str]) -> Value {
    let out = api.aws_in("logs", args);
    assert!(out.status.success(), "aws logs {args:?} failed");
    if out.stdout.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(&out.stdout).unwrap()
}

fn logs_err(api: &Api, args: &[&str]) -> String {
    let out = api.aws_in("logs", args);
    assert!(
        !out.status.success(),
        "aws logs {args:?} should have failed"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn messages(v: &Value) -> Vec<String> {
    v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_string())
        .collect()
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[test]
fn groups_streams_and_events_with_the_aws_cli() {
    let api = Api::start();
    let g = "/mf/api-test";
    logs_json(&api, &["create-log-group", "--log-group-name", g]);
    let e = logs_err(&api, &["create-log-group", "--log-group-name", g]);
    assert!(e.contains("ResourceAlreadyExistsException"), "{e}");
    let e = logs_err(&api, &["create-log-group", "--log-group-name", "bad:name"]);
    assert!(e.contains("InvalidParameterException"), "{e}");
    for s in ["app/web/1", "app/web/2", "other"] {
        logs_json(
            &api,
            &[
                "create-log-stream",
                "--log-group-name",
                g,
                "--log-stream-name",
                s,
            ],
        );
    }
    let e = logs_err(
        &api,
        &[
            "create-log-stream",
            "--log-group-name",
            "/nope",
            "--log-stream-name",
            "x",
        ],
    );
    assert!(e.contains("ResourceNotFoundException"), "{e}");

    let t0 = now_ms() - 10_000;
    let events = serde_json::json!([
        {"timestamp": t0, "message": "one INFO"},
        {"timestamp": t0 + 1000, "message": "two ERROR disk"},
        {"timestamp": t0 + 2000, "message": "{\"level\":\"WARN\",\"ms\":250}"},
    ])
    .to_string();
    let r = logs_json(
        &api,
        &[
            "put-log-events",
            "--log-group-name",
            g,
            "--log-stream-name",
            "app/web/1",
            "--log-events",
            &events,
        ],
    );
    assert!(r["nextSequenceToken"].is_string(), "{r}");
    // Out of order: refused whole, as CloudWatch does.
    let bad = serde_json::json!([
        {"timestamp": t0 + 5, "message": "b"}, {"timestamp": t0, "message": "a"}
    ])
    .to_string();
    let e = logs_err(
        &api,
        &[
            "put-log-events",
            "--log-group-name",
            g,
            "--log-stream-name",
            "app/web/1",
            "--log-events",
            &bad,
        ],
    );
    assert!(e.contains("chronological order"), "{e}");

    // In order, with their timestamps.
    let r = logs_json(
        &api,
        &[
            "get-log-events",
            "--log-group-name",
            g,
            "--log-stream-name",
            "app/web/1",
            "--start-from-head",
        ],
    );
    assert_eq!(
        messages(&r),
        [
            "one INFO",
            "two ERROR disk",
            "{\"level\":\"WARN\",\"ms\":250}"
        ]
    );
    let ts: Vec<i64> = r["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["timestamp"].as_i64().unwrap())
        .collect();
    assert_eq!(ts, [t0, t0 + 1000, t0 + 2000]);
    // The forward token at the end comes back unchanged with no events.
    let fwd = r["nextForwardToken"].as_str().unwrap().to_string();
    let r2 = logs_json(
        &api,
        &[
            "get-log-events",
            "--log-group-name",
            g,
            "--log-stream-name",
            "app/web/1",
            "--next-token",
            &fwd,
        ],
    );
    assert_eq!(messages(&r2), Vec::<String>::new());
    assert_eq!(r2["nextForwardToken"], fwd.as_str());
    // The latest first (startFromHead false), then backwards.
    let r = logs_json(
        &api,
        &[
            "get-log-events",
            "--log-group-name",
            g,
            "--log-stream-name",
            "app/web/1",
            "--limit",
            "2",
        ],
    );
    assert_eq!(
        messages(&r),
        ["two ERROR disk", "{\"level\":\"WARN\",\"ms\":250}"]
    );
    let back = r["nextBackwardToken"].as_str().unwrap().to_string();
    let r = logs_json(
        &api,
        &[
            "get-log-events",
            "--log-group-name",
            g,
            "--log-stream-name",
            "app/web/1",
            "--limit",
            "2",
            "--next-token",
            &back,
        ],
    );
    assert_eq!(messages(&r), ["one INFO"]);

    // Filter patterns: alternatives, terms, JSON selectors; across streams by prefix.
    let more = serde_json::json!([{"timestamp": t0 + 500, "message": "WARN on 2"}]).to_string();
    logs_json(
        &api,
        &[
            "put-log-events",
            "--log-group-name",
            g,
            "--log-stream-name",
            "app/web/2",
            "--log-events",
            &more,
        ],
    );
    let f = |pattern: &str, extra: &[&str]| {
        let mut args = vec![
            "filter-log-events",
            "--log-group-name",
            g,
            "--filter-pattern",
            pattern,
        ];
        args.extend_from_slice(extra);
        messages(&logs_json(&api, &args))
    };
    assert_eq!(
        f("?ERROR ?WARN", &[]),
        [
            "WARN on 2",
            "two ERROR disk",
            "{\"level\":\"WARN\",\"ms\":250}"
        ]
    );
    assert_eq!(f("?ERROR ?disk", &[]), ["two ERROR disk"]);
    assert_eq!(f("ERROR disk", &[]), ["two ERROR disk"]);
    assert_eq!(
        f("{ $.ms > 100 }", &[]),
        ["{\"level\":\"WARN\",\"ms\":250}"]
    );
    assert_eq!(
        f("", &["--log-stream-name-prefix", "app/web/2"]),
        ["WARN on 2"]
    );
    let r = logs_json(
        &api,
        &[
            "filter-log-events",
            "--log-group-name",
            g,
            "--log-stream-names",
            "app/web/2",
        ],
    );
    assert_eq!(r["events"][0]["logStreamName"], "app/web/2");
    assert!(r["events"][0]["eventId"].is_string());
    let e = logs_err(
        &api,
        &[
            "filter-log-events",
            "--log-group-name",
            g,
            "--filter-pattern",
            "[a, b]",
        ],
    );
    assert!(
        e.contains("InvalidParameterException") && e.contains("not supported"),
        "{e}"
    );

    // Streams by last event time, newest first; by name with a prefix.
    let r = logs_json(
        &api,
        &[
            "describe-log-streams",
            "--log-group-name",
            g,
            "--order-by",
            "LastEventTime",
            "--descending",
        ],
    );
    let names: Vec<&str> = r["logStreams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["logStreamName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["app/web/1", "app/web/2", "other"]);
    assert_eq!(r["logStreams"][0]["lastEventTimestamp"], t0 + 2000);
    let r = logs_json(
        &api,
        &[
            "describe-log-streams",
            "--log-group-name",
            g,
            "--log-stream-name-prefix",
            "app/",
        ],
    );
    assert_eq!(r["logStreams"].as_array().unwrap().len(), 2);
    let e = logs_err(
        &api,
        &[
            "describe-log-streams",
            "--log-group-name",
            g,
            "--order-by",
            "LastEventTime",
            "--log-stream-name-prefix",
            "a",
        ],
    );
    assert!(e.contains("InvalidParameterException"), "{e}");

    let r = logs_json(
        &api,
        &["describe-log-groups", "--log-group-name-prefix", "/mf/"],
    );
    assert_eq!(r["logGroups"][0]["logGroupName"], g);
    assert!(
        r["logGroups"][0]["arn"]
            .as_str()
            .unwrap()
            .starts_with("arn:aws:logs:")
    );

    logs_json(
        &api,
        &[
            "delete-log-stream",
            "--log-group-name",
            g,
            "--log-stream-name",
            "other",
        ],
    );
    let e = logs_err(
        &api,
        &[
            "delete-log-stream",
            "--log-group-name",
            g,
            "--log-stream-name",
            "other",
        ],
    );
    assert!(e.contains("ResourceNotFoundException"), "{e}");
    logs_json(&api, &["delete-log-group", "--log-group-name", g]);
    let e = logs_err(
        &api,
        &[
            "get-log-events",
            "--log-group-name",
            g,
            "--log-stream-name",
            "app/web/1",
        ],
    );
    assert!(e.contains("ResourceNotFoundException"), "{e}");
}

#[test]
fn retention_deletes_old_events_and_pages_with_boto3() {
    let api = Api::start();
    let v = api.boto3(
        r#"
import boto3, json, time
c = boto3.client("logs", endpoint_url=__import__("os").environ["ENDPOINT"], region_name="us-east-1")
g = "/mf/retention"
c.create_log_group(logGroupName=g)
c.create_log_stream(logGroupName=g, logStreamName="s")
now = int(time.time() * 1000)
day = 86400000
c.put_log_events(logGroupName=g, logStreamName="s", logEvents=[
    {"timestamp": now - 3 * day, "message": "three days old"},
    {"timestamp": now - 3 * day + 1, "message": "also old"}])
c.put_log_events(logGroupName=g, logStreamName="s", logEvents=[{"timestamp": now, "message": "fresh"}])
before = [e["message"] for e in c.get_log_events(logGroupName=g, logStreamName="s", startFromHead=True)["events"]]
c.put_retention_policy(logGroupName=g, retentionInDays=1)
after = [e["message"] for e in c.get_log_events(logGroupName=g, logStreamName="s", startFromHead=True)["events"]]
# A new event older than the retention is rejected, and said so.
r = c.put_log_events(logGroupName=g, logStreamName="s", logEvents=[{"timestamp": now - 2 * day, "message": "late"}])
groups = c.describe_log_groups(logGroupNamePrefix=g)["logGroups"]
bad = None
try:
    c.put_retention_policy(logGroupName=g, retentionInDays=2)
except c.exceptions.InvalidParameterException as e:
    bad = "InvalidParameterException"
# Pagination: streams one a page; events of a filter one a page.
for i in range(5):
    c.create_log_stream(logGroupName=g, logStreamName=f"p{i}")
pages = []
tok = None
while True:
    kw = {"logGroupName": g, "logStreamNamePrefix": "p", "limit": 2}
    if tok: kw["nextToken"] = tok
    r2 = c.describe_log_streams(**kw)
    pages.append([s["logStreamName"] for s in r2["logStreams"]])
    tok = r2.get("nextToken")
    if not tok: break
c.put_log_events(logGroupName=g, logStreamName="p0", logEvents=[{"timestamp": now + i, "message": f"m{i}"} for i in range(5)])
fp = c.get_paginator("filter_log_events")
msgs = [[e["message"] for e in p["events"]] for p in fp.paginate(logGroupName=g, logStreamNames=["p0"], PaginationConfig={"PageSize": 2})]
c.delete_retention_policy(logGroupName=g)
nr = "retentionInDays" in c.describe_log_groups(logGroupNamePrefix=g)["logGroups"][0]
print(json.dumps({"before": before, "after": after, "rejected": r.get("rejectedLogEventsInfo"),
                  "retention": groups[0].get("retentionInDays"), "bad": bad, "pages": pages,
                  "msgs": msgs, "still_retention": nr}))
"#,
    );
    assert_eq!(
        v["before"],
        serde_json::json!(["three days old", "also old", "fresh"])
    );
    assert_eq!(v["after"], serde_json::json!(["fresh"]));
    assert_eq!(
        v["rejected"],
        serde_json::json!({"expiredLogEventEndIndex": 1})
    );
    assert_eq!(v["retention"], 1);
    assert_eq!(v["bad"], "InvalidParameterException");
    assert_eq!(
        v["pages"],
        serde_json::json!([["p0", "p1"], ["p2", "p3"], ["p4"]])
    );
    assert_eq!(
        v["msgs"],
        serde_json::json!([["m0", "m1"], ["m2", "m3"], ["m4"]])
    );
    assert_eq!(v["still_retention"], false);
}

/// A one-container busybox task with `logConfiguration`, run detached through the CLI
/// over the server's root; its task id.
fn run_logged(api: &Api, name: &str, command: &str, options: Value) -> String {
    let td = serde_json::json!({
        "family": name,
        "networkMode": "none",
        "containerDefinitions": [{
            "name": "app",
            "image": "public.ecr.aws/docker/library/busybox:1.36",
            "memory": 128,
            "essential": true,
            "command": ["sh", "-c", command],
            "logConfiguration": {"logDriver": "awslogs", "options": options},
        }],
    });
    let td = api.mf.taskdef(name, &td.to_string());
    let v = api.mf_json(&["run-task", "--task-definition", &td, "--detach"]);
    assert_eq!(v["failures"], serde_json::json!([]));
    let arn = v["tasks"][0]["taskArn"].as_str().unwrap();
    arn.rsplit('/').next().unwrap().to_string()
}

fn task(api: &Api, id: &str) -> Value {
    api.mf_json(&["describe-tasks", "--tasks", id])["tasks"][0].clone()
}

fn wait_stopped(api: &Api, id: &str) -> Value {
    api.wait_for(60, "the task to stop", || {
        let t = task(api, id);
        (t["lastStatus"] == "STOPPED").then_some(t)
    })
}

/// Acceptance: three lines printed by an awslogs container are the events of the agent's
/// stream `<prefix>/<container>/<task id>`, in order, stamped with the time each was
/// printed; `awslogs-create-group` made the group.
#[test]
fn awslogs_lines_are_events_of_the_agents_stream() {
    let api = Api::start();
    let before = now_ms();
    let id = run_logged(
        &api,
        "awslogs-three",
        "echo first; sleep 0.3; echo second; sleep 0.3; echo third",
        serde_json::json!({"awslogs-group": "/ecs/three", "awslogs-region": "us-east-1",
                           "awslogs-stream-prefix": "ecs", "awslogs-create-group": "true"}),
    );
    wait_stopped(&api, &id);
    let after = now_ms();
    let stream = format!("ecs/app/{id}");
    let r = logs_json(
        &api,
        &[
            "get-log-events",
            "--log-group-name",
            "/ecs/three",
            "--log-stream-name",
            &stream,
            "--start-from-head",
        ],
    );
    assert_eq!(messages(&r), ["first", "second", "third"]);
    let ts: Vec<i64> = r["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["timestamp"].as_i64().unwrap())
        .collect();
    assert!(
        ts[0] >= before && ts[2] <= after,
        "{ts:?} not within {before}..{after}"
    );
    // The sleeps between the lines show in their timestamps.
    assert!(ts[1] - ts[0] >= 250 && ts[2] - ts[1] >= 250, "{ts:?}");
    // `minifargate logs` reads the same store: the same events, with their timestamps.
    let out = api.mf.run(&["logs", &id]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "first\nsecond\nthird\n"
    );
    let out = api.mf.run(&["logs", &id, "--tail", "1", "--timestamps"]);
    let tail = String::from_utf8_lossy(&out.stdout).into_owned();
    let (t, line) = tail.trim_end().split_once(' ').unwrap();
    assert_eq!(line, "third");
    let t = chrono::DateTime::parse_from_rfc3339(t).unwrap();
    assert_eq!(t.timestamp_millis(), ts[2]);
}

/// Acceptance: a missing group without `awslogs-create-group` fails the container at
/// start with the agent's reason, and nothing is created.
#[test]
fn a_missing_log_group_fails_the_container_with_the_agents_reason() {
    let api = Api::start();
    let id = run_logged(
        &api,
        "awslogs-missing",
        "echo never",
        serde_json::json!({"awslogs-group": "/ecs/missing", "awslogs-region": "us-east-1",
                           "awslogs-stream-prefix": "ecs"}),
    );
    let t = wait_stopped(&api, &id);
    assert_eq!(t["stopCode"], "TaskFailedToStart", "{t:#}");
    let reason = t["containers"][0]["reason"].as_str().unwrap_or_default();
    // ECS's words, then the local command that makes the group (tests/logs_cli.rs runs it).
    assert_eq!(
        reason,
        format!(
            "CannotStartContainerError: Error response from daemon: failed to initialize \
             logging driver: failed to create Cloudwatch log stream: \
             ResourceNotFoundException: The specified log group does not exist. (set \
             awslogs-create-group to true, or create it: minifargate --root {} \
             create-log-group --log-group-name /ecs/missing)",
            api.mf.root.display()
        ),
        "{t:#}"
    );
    let r = logs_json(&api, &["describe-log-groups"]);
    assert_eq!(r["logGroups"], serde_json::json!([]));
}

/// Acceptance: following the group as `aws logs tail --follow` does (FilterLogEvents from
/// a start time, again and again, skipping event ids already shown — the algorithm of
/// aws-cli v2 awscli/customizations/logs/tail.py, polled every 0.2 s instead of its 5 s;
/// the AWS CLI v1 here has no `logs tail`) shows a line printed after it started, within
/// a second of the line being printed.
#[test]
fn following_the_group_shows_a_new_line_within_a_second() {
    let api = Api::start();
    let id = run_logged(
        &api,
        "awslogs-follow",
        // busybox date has no %N: the follower measures from the event's timestamp, the
        // time the driver read the line (within the copier's poll of its printing).
        "sleep 3; for i in 1 2 3 4 5; do echo \"tick $i\"; sleep 0.5; done",
        serde_json::json!({"awslogs-group": "/ecs/follow", "awslogs-stream-prefix": "ecs",
                           "awslogs-create-group": "true", "mode": "non-blocking"}),
    );
    let v = api.boto3(
        r#"
import boto3, json, os, time
c = boto3.client("logs", endpoint_url=os.environ["ENDPOINT"], region_name="us-east-1")
start = int(time.time() * 1000)
seen, delays, kw = set(), [], {"logGroupName": "/ecs/follow", "startTime": start, "interleaved": True}
deadline = time.time() + 30
while len(delays) < 5 and time.time() < deadline:
    try:
        r = c.filter_log_events(**kw)
    except c.exceptions.ResourceNotFoundException:
        # The driver creates the group when the container starts; a follower waits for it.
        time.sleep(0.2)
        continue
    for e in r["events"]:
        if e["eventId"] not in seen:
            seen.add(e["eventId"])
            delays.append({"message": e["message"], "delay_ms": int(time.time() * 1000) - e["timestamp"],
                           "after_start": e["timestamp"] >= start})
    if "nextToken" in r:
        kw["nextToken"] = r["nextToken"]
    else:
        kw.pop("nextToken", None)
        if r["events"]:
            kw["startTime"] = max(e["timestamp"] for e in r["events"])
        time.sleep(0.2)
print(json.dumps(delays))
"#,
    );
    wait_stopped(&api, &id);
    let got: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["message"].as_str().unwrap())
        .collect();
    assert_eq!(got, ["tick 1", "tick 2", "tick 3", "tick 4", "tick 5"]);
    for d in v.as_array().unwrap() {
        assert_eq!(d["after_start"], true);
        let ms = d["delay_ms"].as_i64().unwrap();
        eprintln!("{}: seen {ms} ms after it was printed", d["message"]);
        assert!(ms <= 1000, "{d}");
    }
}
