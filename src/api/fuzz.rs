//! A fuzz loop over the API dispatchers (ECS and CloudWatch Logs: decode → core →
//! encode), in process over a temp
//! store: seed requests of every operation, mutated structurally (a JSON value swapped for
//! a hostile one: deep nesting, huge numbers, long or odd strings, wrong types) and
//! byte-wise. Any panic fails, printing the input. The binary has no library target, so
//! cargo-fuzz cannot link it; `scripts/fuzz` runs this loop for FUZZ_SECONDS
//! (MINIFARGATE_FUZZ_SECONDS), the normal test suite for a few hundred inputs.
//!
//! RunTask and the service operations would start real supervisors when a mutation
//! happens to be valid; they are decoded (their request shapes, strictly, as the
//! dispatcher does) but not executed.

use super::ecs::call;
use crate::ecs::Ecs;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// xorshift64*: deterministic per seed, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// A seed request of every operation: ECS's, then CloudWatch Logs'.
fn seeds() -> Vec<(&'static str, String)> {
    let mut all = task_seeds();
    all.extend(cluster_seeds());
    all.extend(logs_seeds());
    all
}

/// A seed request as the dispatcher gets it: its operation and its JSON body.
fn seed(op: &'static str, j: Value) -> (&'static str, String) {
    (op, j.to_string())
}

/// ECS's operations on task definitions and tasks.
fn task_seeds() -> Vec<(&'static str, String)> {
    let v = seed;
    vec![
        (
            "RegisterTaskDefinition",
            include_str!("../../examples/web.json").to_string(),
        ),
        (
            "RegisterTaskDefinition",
            include_str!("../../examples/hello.json").to_string(),
        ),
        v(
            "DescribeTaskDefinition",
            json!({"taskDefinition": "hello:1", "include": ["TAGS"]}),
        ),
        v(
            "DeregisterTaskDefinition",
            json!({"taskDefinition": "hello:1"}),
        ),
        v(
            "ListTaskDefinitions",
            json!({"familyPrefix": "he", "status": "ACTIVE", "sort": "DESC", "maxResults": 2, "nextToken": "x"}),
        ),
        v(
            "ListTaskDefinitionFamilies",
            json!({"familyPrefix": "h", "status": "ALL", "maxResults": 1}),
        ),
        v(
            "DescribeTasks",
            json!({"cluster": "default", "tasks": ["0123456789abcdef0123456789abcdef"], "include": ["TAGS"]}),
        ),
        v(
            "ListTasks",
            json!({"cluster": "fz", "family": "hello", "desiredStatus": "STOPPED", "startedBy": "me", "maxResults": 3}),
        ),
        v(
            "StopTask",
            json!({"cluster": "default", "task": "0123456789abcdef0123456789abcdef", "reason": "r"}),
        ),
    ]
}

/// ECS's operations on clusters, services, tags, container instances and settings.
fn cluster_seeds() -> Vec<(&'static str, String)> {
    let arn = "arn:aws:ecs:us-east-1:000000000000:cluster/fz";
    let v = seed;
    vec![
        v(
            "CreateCluster",
            json!({"clusterName": "fz", "tags": [{"key": "k", "value": "v"}]}),
        ),
        v(
            "DescribeClusters",
            json!({"clusters": ["fz", arn], "include": ["TAGS"]}),
        ),
        v("ListClusters", json!({"maxResults": 1, "nextToken": "abc"})),
        v("DeleteCluster", json!({"cluster": "fz"})),
        v(
            "DescribeServices",
            json!({"cluster": "fz", "services": ["web"], "include": ["TAGS"]}),
        ),
        v("ListServices", json!({"cluster": "fz", "maxResults": 5})),
        v(
            "TagResource",
            json!({"resourceArn": arn, "tags": [{"key": "a", "value": "b"}]}),
        ),
        v(
            "UntagResource",
            json!({"resourceArn": arn, "tagKeys": ["a"]}),
        ),
        v("ListTagsForResource", json!({"resourceArn": arn})),
        v(
            "ListTasks",
            json!({"cluster": "fz", "serviceName": "web", "launchType": "EC2",
                   "containerInstance": "0123456789abcdef0123456789abcdef"}),
        ),
        v(
            "UpdateTaskProtection",
            json!({"cluster": "fz", "tasks": ["0123456789abcdef0123456789abcdef"],
                   "protectionEnabled": true, "expiresInMinutes": 5}),
        ),
        v(
            "GetTaskProtection",
            json!({"cluster": "fz", "tasks": ["0123456789abcdef0123456789abcdef"]}),
        ),
        v(
            "ListContainerInstances",
            json!({"cluster": "fz", "status": "ACTIVE", "maxResults": 1,
                   "filter": "attribute:ecs.os-type == linux and attribute:ecs.cpu-architecture"}),
        ),
        v(
            "DescribeContainerInstances",
            json!({"cluster": "fz", "containerInstances": ["x"], "include": ["TAGS"]}),
        ),
        v(
            "DeleteTaskDefinitions",
            json!({"taskDefinitions": ["hello:1", "web:1"]}),
        ),
        v(
            "UpdateCluster",
            json!({"cluster": "fz", "settings": [{"name": "containerInsights", "value": "enabled"}],
                   "serviceConnectDefaults": {"namespace": "ns"}}),
        ),
        v(
            "UpdateClusterSettings",
            json!({"cluster": "fz", "settings": [{"name": "containerInsights", "value": "enhanced"}]}),
        ),
        v(
            "PutClusterCapacityProviders",
            json!({"cluster": "fz", "capacityProviders": ["FARGATE", "FARGATE_SPOT"],
                   "defaultCapacityProviderStrategy": [{"capacityProvider": "FARGATE", "weight": 1, "base": 1}]}),
        ),
        v(
            "DescribeCapacityProviders",
            json!({"capacityProviders": ["FARGATE", "x"], "include": ["TAGS"], "maxResults": 1}),
        ),
        v(
            "ListAccountSettings",
            json!({"name": "containerInsights", "value": "enabled", "effectiveSettings": true}),
        ),
        v(
            "PutAccountSetting",
            json!({"name": "awsvpcTrunking", "value": "enabled", "principalArn": "arn:aws:iam::1:root"}),
        ),
        v(
            "PutAccountSettingDefault",
            json!({"name": "containerInsights", "value": "disabled"}),
        ),
        v(
            "ListServicesByNamespace",
            json!({"namespace": "ns", "maxResults": 2}),
        ),
        v(
            "StartTask",
            json!({"cluster": "fz", "taskDefinition": "hello", "containerInstances": ["x"],
                   "propagateTags": "TASK_DEFINITION", "enableECSManagedTags": true}),
        ),
        v(
            "RunTask",
            json!({"cluster": "fz", "taskDefinition": "hello", "count": 2, "launchType": "FARGATE",
                   "overrides": {"containerOverrides": [{"name": "hello", "command": ["true"],
                   "environment": [{"name": "A", "value": "1"}]}], "cpu": "256"},
                   "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["s"]}},
                   "tags": [{"key": "k", "value": "v"}]}),
        ),
        v(
            "CreateService",
            json!({"cluster": "fz", "serviceName": "web", "taskDefinition": "hello", "desiredCount": 1,
                   "deploymentConfiguration": {"maximumPercent": 200, "minimumHealthyPercent": 100}}),
        ),
        v(
            "UpdateService",
            json!({"cluster": "fz", "service": "web", "desiredCount": 0, "taskDefinition": "hello:1"}),
        ),
        v(
            "DeleteService",
            json!({"cluster": "fz", "service": "web", "force": true}),
        ),
    ]
}

/// The CloudWatch Logs dispatcher's, on the same `POST /` (`Logs.` prefix here).
fn logs_seeds() -> Vec<(&'static str, String)> {
    let v = seed;
    vec![
        v("Logs.CreateLogGroup", json!({"logGroupName": "/ecs/fz"})),
        v(
            "Logs.CreateLogStream",
            json!({"logGroupName": "/ecs/fz", "logStreamName": "s"}),
        ),
        v(
            "Logs.PutLogEvents",
            json!({"logGroupName": "/ecs/fz", "logStreamName": "s",
                   "logEvents": [{"timestamp": 1_700_000_000_000_u64, "message": "hi"}]}),
        ),
        v(
            "Logs.GetLogEvents",
            json!({"logGroupName": "/ecs/fz", "logStreamName": "s", "startFromHead": true, "limit": 10, "nextToken": "f/1"}),
        ),
        v(
            "Logs.FilterLogEvents",
            json!({"logGroupName": "/ecs/fz", "filterPattern": "hi", "startTime": 0, "endTime": 9_999_999_999_999_u64, "limit": 5}),
        ),
        v(
            "Logs.DescribeLogGroups",
            json!({"logGroupNamePrefix": "/ecs", "limit": 5}),
        ),
        v(
            "Logs.DescribeLogStreams",
            json!({"logGroupName": "/ecs/fz", "orderBy": "LastEventTime", "descending": true}),
        ),
        v(
            "Logs.PutRetentionPolicy",
            json!({"logGroupName": "/ecs/fz", "retentionInDays": 1}),
        ),
        v(
            "Logs.DeleteRetentionPolicy",
            json!({"logGroupName": "/ecs/fz"}),
        ),
        v(
            "Logs.DeleteLogStream",
            json!({"logGroupName": "/ecs/fz", "logStreamName": "s"}),
        ),
        v("Logs.DeleteLogGroup", json!({"logGroupName": "/ecs/fz"})),
    ]
}

/// One request through the dispatcher its operation belongs to; the encoded response.
fn dispatch(ecs: &Ecs, op: &str, body: &[u8]) -> Option<String> {
    match op.strip_prefix("Logs.") {
        Some(op) => super::logs::call(ecs, op, body).ok().map(|v| v.to_string()),
        None => call(ecs, op, body).ok().map(|v| v.to_string()),
    }
}

/// A hostile JSON value.
fn hostile(r: &mut Rng) -> Value {
    match r.below(12) {
        0 => Value::Null,
        1 => json!(-1),
        2 => json!(u64::MAX),
        3 => json!(-9.9e300),
        4 => json!(""),
        5 => json!("x".repeat(70_000)),
        6 => json!("\u{0}\u{202e}é/../..\\%00"),
        7 => json!([]),
        8 => json!({}),
        9 => {
            let depth = 1 + r.below(200);
            let text = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            serde_json::from_str(&text).unwrap_or(Value::Null)
        }
        10 => json!(true),
        _ => json!(
            "arn:aws:ecs:us-east-1:000000000000:task/default/0123456789abcdef0123456789abcdef"
        ),
    }
}

/// Replaces a random value inside `v` (the root included) with a hostile one.
fn mutate_value(v: &mut Value, r: &mut Rng) {
    let children = match v {
        Value::Object(m) => m.len(),
        Value::Array(a) => a.len(),
        _ => 0,
    };
    if children == 0 || r.below(4) == 0 {
        *v = hostile(r);
        return;
    }
    let i = r.below(children);
    match v {
        Value::Object(m) => {
            if r.below(8) == 0 {
                m.insert(format!("unknownMember{i}"), hostile(r));
            } else if let Some((_, c)) = m.iter_mut().nth(i) {
                mutate_value(c, r);
            }
        }
        Value::Array(a) => mutate_value(&mut a[i], r),
        _ => {}
    }
}

fn mutate(seed: &str, r: &mut Rng) -> Vec<u8> {
    if r.below(3) > 0
        && let Ok(mut v) = serde_json::from_str::<Value>(seed)
    {
        for _ in 0..=r.below(3) {
            mutate_value(&mut v, r);
        }
        return v.to_string().into_bytes();
    }
    let mut b = seed.as_bytes().to_vec();
    for _ in 0..=r.below(4) {
        let at = r.below(b.len() + 1);
        match r.below(5) {
            0 if at < b.len() => b[at] ^= 1 << r.below(8),
            1 => b.truncate(at),
            2 => {
                let tok: &[u8] = [
                    b"{" as &[u8],
                    b"[",
                    b"\"",
                    b"null",
                    b"-1e999",
                    b"\xff",
                    b"\\u0000",
                ][r.below(7)];
                b.splice(at..at, tok.iter().copied());
            }
            3 if at < b.len() => {
                let end = (at + r.below(64)).min(b.len());
                let piece = b[at..end].to_vec();
                b.splice(at..at, piece);
            }
            _ => {
                let end = (at + r.below(16)).min(b.len());
                b.drain(at..end);
            }
        }
    }
    b
}

/// Operations that would start tasks when the input happens to be valid: decoded only.
fn decode_only(op: &str, body: &[u8]) {
    use crate::ecs::{services, tasks};
    let _ = match op {
        "RunTask" => crate::ecs::operations::ecs_json::<tasks::RunTaskRequest>(body).map(drop),
        "StartTask" => {
            crate::ecs::operations::ecs_json::<crate::ecs::start_task::StartTaskRequest>(body)
                .map(drop)
        }
        "CreateService" => {
            crate::ecs::operations::ecs_json::<services::CreateServiceRequest>(body).map(drop)
        }
        "UpdateService" => {
            crate::ecs::operations::ecs_json::<services::UpdateServiceRequest>(body).map(drop)
        }
        _ => crate::ecs::operations::ecs_json::<services::DeleteServiceRequest>(body).map(drop),
    };
}

/// Runs mutated requests for `budget` (or `iterations`, whichever ends first).
pub fn run(iterations: u64, budget: Duration, seed: u64) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let ecs = Ecs::scratch(dir.path());
    let seeds = seeds();
    // The seeds themselves first, so the store holds what the mutations refer to.
    for (op, body) in &seeds {
        if !matches!(
            *op,
            "RunTask" | "StartTask" | "CreateService" | "UpdateService" | "DeleteService"
        ) {
            let _ = dispatch(&ecs, op, body.as_bytes());
        }
    }
    let mut r = Rng(seed | 1);
    let started = Instant::now();
    let mut n = 0;
    while n < iterations && started.elapsed() < budget {
        let (op, body) = &seeds[r.below(seeds.len())];
        let input = mutate(body, &mut r);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if matches!(
                *op,
                "RunTask" | "StartTask" | "CreateService" | "UpdateService" | "DeleteService"
            ) {
                decode_only(op, &input);
            } else {
                let _ = dispatch(&ecs, op, &input);
            }
        }));
        if outcome.is_err() {
            let path = std::env::temp_dir().join(format!("minifargate-fuzz-{op}-{n}.json"));
            let _ = std::fs::write(&path, &input);
            panic!(
                "{op} panicked on input #{n} (seed {seed}), saved to {}",
                path.display()
            );
        }
        n += 1;
    }
    n
}

#[test]
fn the_dispatcher_survives_mutated_requests() {
    let secs: u64 = std::env::var("MINIFARGATE_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (iterations, budget) = if secs > 0 {
        (u64::MAX, Duration::from_secs(secs))
    } else {
        (400, Duration::from_secs(60))
    };
    let seed = std::env::var("MINIFARGATE_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    let n = run(iterations, budget, seed);
    eprintln!("dispatcher fuzz: {n} inputs, seed {seed}, no panic");
    assert!(n > 0);
}

/// The signature check on mutated `Authorization` headers, query strings and dates: a
/// refusal each time, never a panic (the signer `expect`s a host, for one).
#[test]
fn the_signature_check_survives_mutated_requests() {
    use super::auth::{Keys, verify};
    let mut keys = Keys::default();
    keys.insert("AKIDEXAMPLE", "secret");
    let auth = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/ecs/aws4_request, \
                SignedHeaders=content-type;host;x-amz-date;x-amz-target, \
                Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7";
    let query = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20260101%2Fus-east-1%2Fecs%2Faws4_request\
                 &X-Amz-Date=20260101T000000Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host&X-Amz-Signature=00&a=b";
    let now = std::time::UNIX_EPOCH + Duration::from_secs(1_767_225_600); // 2026-01-01
    let mut r = Rng(0x5eed);
    for n in 0..3000 {
        let mut b = axum::http::Request::builder().method("POST");
        let form = r.below(2);
        let mutated =
            String::from_utf8_lossy(&mutate(if form == 0 { auth } else { query }, &mut r))
                .into_owned();
        if form == 0 {
            b = b.uri("/").header("authorization", mutated.as_str());
        } else {
            let q: String = mutated
                .chars()
                .filter(|c| c.is_ascii_graphic() && *c != '#')
                .collect();
            b = b.uri(format!("/?{q}").as_str());
        }
        if r.below(3) > 0 {
            b = b.header("host", "127.0.0.1:8080");
        }
        if r.below(3) > 0 {
            b = b.header(
                "x-amz-date",
                ["20260101T000000Z", "2026", "99999999T999999Z"][r.below(3)],
            );
        }
        let Ok(req) = b.body(()) else { continue };
        let (parts, ()) = req.into_parts();
        let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            verify(&keys, &parts, b"{}", now)
        }));
        assert!(got.is_ok(), "verify panicked on input #{n}: {mutated:?}");
        assert!(
            got.unwrap().is_err(),
            "a mutated signature was accepted: {mutated:?}"
        );
    }
}
