//! The ECS operations: `X-Amz-Target: AmazonEC2ContainerServiceV20141113.<Operation>`,
//! a JSON request body, a JSON response or an ECS exception. Each operation parses its
//! request shape (ecs.json) and calls the CLI verb's function.
//!
//! SigV4: the `Authorization` header is accepted and not verified (any credentials work);
//! bind to loopback, as the default does. See docs/serve.md.

use super::error::{EcsError, classify, status_of};
use super::services;
use crate::cli::{GlobalOpts, clusters, run_task, taskdefs, tasks};
use crate::store::{FamilyStatus, SortOrder, TaskFilter};
use crate::task::TaskOverride;
use crate::taskdef::LaunchType;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use clap::ValueEnum;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::sync::Arc;

const TARGET_PREFIX: &str = "AmazonEC2ContainerServiceV20141113.";
const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// `POST /`: one ECS call.
pub async fn handle(
    State(g): State<Arc<crate::cli::GlobalOpts>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let started = std::time::Instant::now();
    let op = target.strip_prefix(TARGET_PREFIX).map(str::to_string);
    let result = match op {
        None => Err(EcsError::new(
            "UnknownOperationException",
            format!("X-Amz-Target {target:?} is not an ECS operation ({TARGET_PREFIX}<Operation>)"),
        )),
        Some(op) => {
            let op2 = op.clone();
            match tokio::task::spawn_blocking(move || call(&g, &op2, &body)).await {
                Ok(Ok(v)) => Ok(v),
                Ok(Err(e)) => Err(classify(&e)),
                Err(e) => Err(EcsError::new(
                    "ServerException",
                    format!("{op} failed: {e}"),
                )),
            }
        }
    };
    let (status, body, kind) = match result {
        Ok(mut v) => {
            epoch_timestamps(&mut v);
            (StatusCode::OK, v, None)
        }
        Err(e) => {
            let status = StatusCode::from_u16(status_of(e.kind)).unwrap_or(StatusCode::BAD_REQUEST);
            (
                status,
                json!({"__type": e.kind, "message": e.message}),
                Some(e.kind),
            )
        }
    };
    tracing::info!(target = %target, status = status.as_u16(), ms = started.elapsed().as_millis() as u64, "ECS API call");
    let mut resp = (status, body.to_string()).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    if let Some(kind) = kind {
        h.insert("x-amzn-errortype", HeaderValue::from_static(kind));
    }
    resp
}

/// The request body as operation input `T`; an empty body is `{}`.
fn input<T: DeserializeOwned>(body: &[u8]) -> anyhow::Result<T> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        EcsError::new(
            "SerializationException",
            format!("invalid request body: {}: {}", e.path(), e.inner()),
        )
        .into()
    })
}

/// A ValueEnum value as ECS spells it (`ACTIVE`, `DESC`, `FARGATE` …).
fn enum_field<T: ValueEnum>(field: &str, v: Option<&str>) -> anyhow::Result<Option<T>> {
    v.map(|s| {
        T::from_str(s, false)
            .map_err(|_| EcsError::invalid(format!("{field}: {s:?} is not a valid value")).into())
    })
    .transpose()
}

/// One page of `items`: ECS's `maxResults` (1-100; 100 when absent) and an opaque
/// `nextToken` (here: the offset of the next item).
fn page(
    items: Vec<String>,
    max_results: Option<i64>,
    next_token: Option<&str>,
) -> anyhow::Result<(Vec<String>, Option<String>)> {
    let max = match max_results {
        None => 100,
        Some(n @ 1..=100) => n as usize,
        Some(n) => {
            return Err(
                EcsError::invalid(format!("maxResults {n}: must be between 1 and 100")).into(),
            );
        }
    };
    let start = match next_token {
        None | Some("") => 0,
        Some(t) => t
            .strip_prefix("mf1.")
            .and_then(|h| usize::from_str_radix(h, 16).ok())
            .filter(|n| *n <= items.len())
            .ok_or_else(|| EcsError::invalid("Invalid nextToken"))?,
    };
    let end = (start + max).min(items.len());
    let token = (end < items.len()).then(|| format!("mf1.{end:x}"));
    Ok((items[start..end].to_vec(), token))
}

fn with_token(mut v: Value, token: Option<String>) -> Value {
    if let Some(t) = token {
        v["nextToken"] = json!(t);
    }
    v
}

/// The JSON 1.1 protocol carries timestamps as epoch seconds: every `…At` string the
/// shared JSON builders render for the CLI (RFC 3339) becomes a number.
fn epoch_timestamps(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, v) in m.iter_mut() {
                if k.ends_with("At")
                    && let Value::String(s) = v
                    && let Ok(t) = chrono::DateTime::parse_from_rfc3339(s)
                {
                    *v = json!(t.timestamp_millis() as f64 / 1000.0);
                } else {
                    epoch_timestamps(v);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(epoch_timestamps),
        _ => {}
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct TaskDefinitionInput {
    task_definition: String,
    #[serde(default)]
    include: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ListInput {
    family_prefix: Option<String>,
    status: Option<String>,
    sort: Option<String>,
    max_results: Option<i64>,
    next_token: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RunTaskRequest {
    cluster: Option<String>,
    task_definition: String,
    count: Option<u32>,
    #[serde(default)]
    overrides: TaskOverride,
    launch_type: Option<String>,
    started_by: Option<String>,
    group: Option<String>,
    #[serde(default)]
    tags: Vec<crate::cli::run_input::Tag>,
    #[serde(default)]
    enable_execute_command: bool,
    network_configuration: Option<serde_json::Value>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct DescribeTasksRequest {
    cluster: Option<String>,
    tasks: Vec<String>,
    #[serde(default)]
    include: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ListTasksRequest {
    cluster: Option<String>,
    family: Option<String>,
    desired_status: Option<String>,
    started_by: Option<String>,
    max_results: Option<i64>,
    next_token: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct StopTaskRequest {
    cluster: Option<String>,
    task: String,
    reason: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ClusterRequest {
    cluster_name: Option<String>,
    cluster: Option<String>,
    #[serde(default)]
    clusters: Vec<String>,
    max_results: Option<i64>,
    next_token: Option<String>,
}

/// The cluster of a request: ECS's `default` when absent.
fn cluster_or_default(c: Option<String>) -> String {
    c.filter(|c| !c.is_empty())
        .unwrap_or_else(|| clusters::DEFAULT.to_string())
}

/// Runs operation `op` with request `body`.
pub fn call(g: &GlobalOpts, op: &str, body: &[u8]) -> anyhow::Result<Value> {
    match op {
        "RegisterTaskDefinition" => {
            let text = std::str::from_utf8(body)
                .map_err(|_| EcsError::new("SerializationException", "the body is not UTF-8"))?;
            let parsed = crate::taskdef::parse::parse_str(text);
            let (response, _warnings) =
                taskdefs::register_parsed(g, parsed, "the request", None, None)?;
            Ok(response)
        }
        "DescribeTaskDefinition" => {
            let i: TaskDefinitionInput = input(body)?;
            let with_tags = i.include.iter().any(|s| s == "TAGS");
            no_files(&i.task_definition)?;
            taskdefs::describe_json(g, &i.task_definition, with_tags)
        }
        "DeregisterTaskDefinition" => {
            let i: TaskDefinitionInput = input(body)?;
            no_files(&i.task_definition)?;
            taskdefs::deregister_json(g, &i.task_definition)
        }
        "ListTaskDefinitions" => {
            let i: ListInput = input(body)?;
            let status = enum_field("status", i.status.as_deref())?.unwrap_or_default();
            let sort: SortOrder = enum_field("sort", i.sort.as_deref())?.unwrap_or_default();
            let arns = taskdefs::list_arns(g, i.family_prefix.as_deref(), status, sort)?;
            let (arns, token) = page(arns, i.max_results, i.next_token.as_deref())?;
            Ok(with_token(json!({ "taskDefinitionArns": arns }), token))
        }
        "ListTaskDefinitionFamilies" => {
            let i: ListInput = input(body)?;
            let status: FamilyStatus =
                enum_field("status", i.status.as_deref())?.unwrap_or_default();
            let families = taskdefs::list_family_names(g, i.family_prefix.as_deref(), status)?;
            let (families, token) = page(families, i.max_results, i.next_token.as_deref())?;
            Ok(with_token(json!({ "families": families }), token))
        }
        "RunTask" => {
            let i: RunTaskRequest = input(body)?;
            no_files(&i.task_definition)?;
            let started = run_task::start_tasks(
                g,
                run_task::RunTaskInput {
                    cluster: cluster_or_default(i.cluster),
                    task_definition: i.task_definition,
                    count: i.count.unwrap_or(1),
                    overrides: i.overrides,
                    launch_type: enum_field::<LaunchType>("launchType", i.launch_type.as_deref())?,
                    started_by: i.started_by,
                    group: i.group,
                    tags: i.tags,
                    enable_execute_command: i.enable_execute_command,
                    network_configuration: i
                        .network_configuration
                        .map(|v| crate::task::network::parse_network_configuration(&v.to_string()))
                        .transpose()
                        .map_err(|e| EcsError::invalid(format!("networkConfiguration: {e}")))?,
                    ..Default::default()
                },
            )?;
            let response = started.response();
            // Reap the supervisors when they exit (they run detached, in their own sessions).
            for mut sup in started.children {
                std::thread::spawn(move || sup.child.wait());
            }
            response
        }
        "DescribeTasks" => {
            let i: DescribeTasksRequest = input(body)?;
            let cluster = cluster_or_default(i.cluster);
            let with_tags = i.include.iter().any(|s| s == "TAGS");
            let (tasks, failures) = tasks::describe_json(g, Some(&cluster), &i.tasks, with_tags)?;
            Ok(json!({"tasks": tasks, "failures": failures}))
        }
        "ListTasks" => {
            let i: ListTasksRequest = input(body)?;
            let desired = i.desired_status.unwrap_or_else(|| "RUNNING".into());
            if !["RUNNING", "PENDING", "STOPPED"].contains(&desired.as_str()) {
                return Err(EcsError::invalid(format!(
                    "desiredStatus {desired:?}: must be RUNNING, PENDING or STOPPED"
                ))
                .into());
            }
            let rows = tasks::list_rows(
                g,
                &TaskFilter {
                    cluster: Some(clusters::cluster_name(&cluster_or_default(i.cluster)).into()),
                    family: i.family,
                    desired_status: Some(desired),
                    started_by: i.started_by,
                },
            )?;
            let arns = rows.into_iter().map(|t| t.arn).collect();
            let (arns, token) = page(arns, i.max_results, i.next_token.as_deref())?;
            Ok(with_token(json!({ "taskArns": arns }), token))
        }
        "StopTask" => {
            let i: StopTaskRequest = input(body)?;
            let cluster = cluster_or_default(i.cluster);
            let task = tasks::stop_json(g, Some(&cluster), &i.task, i.reason.as_deref())?;
            Ok(json!({ "task": task }))
        }
        "CreateCluster" => {
            let i: ClusterRequest = input(body)?;
            let c = clusters::create_json(g, &cluster_or_default(i.cluster_name))?;
            Ok(json!({ "cluster": c }))
        }
        "DescribeClusters" => {
            let i: ClusterRequest = input(body)?;
            let (c, failures) = clusters::describe_json(g, &i.clusters)?;
            Ok(json!({ "clusters": c, "failures": failures }))
        }
        "ListClusters" => {
            let i: ClusterRequest = input(body)?;
            let arns = clusters::list_arns(g)?;
            let (arns, token) = page(arns, i.max_results, i.next_token.as_deref())?;
            Ok(with_token(json!({ "clusterArns": arns }), token))
        }
        "DeleteCluster" => {
            let i: ClusterRequest = input(body)?;
            let name = i
                .cluster
                .ok_or_else(|| EcsError::invalid("cluster: a cluster name or ARN is required"))?;
            Ok(json!({ "cluster": clusters::delete_json(g, &name)? }))
        }
        "CreateService" => {
            let i = input(body)?;
            Ok(json!({ "service": services::create(g, i)? }))
        }
        "UpdateService" => {
            let i = input(body)?;
            Ok(json!({ "service": services::update(g, i)? }))
        }
        "DeleteService" => {
            let i = input(body)?;
            Ok(json!({ "service": services::delete(g, i)? }))
        }
        "DescribeServices" => {
            let i = input(body)?;
            let (found, failures) = services::describe(g, i)?;
            Ok(json!({ "services": found, "failures": failures }))
        }
        "ListServices" => {
            let i: services::ListServicesRequest = input(body)?;
            let arns = services::list_arns(g, &i)?;
            // Ref: ecs.json `ListServicesRequest.maxResults` defaults to 10.
            let (arns, token) = page(
                arns,
                Some(i.max_results.unwrap_or(10)),
                i.next_token.as_deref(),
            )?;
            Ok(with_token(json!({ "serviceArns": arns }), token))
        }
        "TagResource" => services::tag(g, input(body)?),
        "UntagResource" => services::untag(g, input(body)?),
        "ListTagsForResource" => services::list_tags(g, input(body)?),
        other => Err(EcsError::new(
            "UnknownOperationException",
            format!("{other} is not supported by minifargate serve (see docs/serve.md)"),
        )
        .into()),
    }
}

/// A task definition reference over the API names a registered one: `file://` would read
/// the server's files.
fn no_files(reference: &str) -> anyhow::Result<()> {
    if reference.starts_with("file://") {
        return Err(EcsError::client(format!(
            "taskDefinition {reference:?}: register it first (RegisterTaskDefinition); file \
             references are a CLI convenience"
        ))
        .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_and_tokens() {
        let items: Vec<String> = (0..5).map(|i| i.to_string()).collect();
        let (p, t) = page(items.clone(), Some(2), None).unwrap();
        assert_eq!(p, ["0", "1"]);
        let (p, t) = page(items.clone(), Some(2), t.as_deref()).unwrap();
        assert_eq!(p, ["2", "3"]);
        let (p, t) = page(items.clone(), Some(2), t.as_deref()).unwrap();
        assert_eq!((p, t), (vec!["4".to_string()], None));
        assert!(page(items.clone(), Some(0), None).is_err());
        assert!(page(items, None, Some("garbage")).is_err());
    }

    #[test]
    fn timestamps_become_epoch_seconds() {
        let mut v =
            json!({"tasks": [{"createdAt": "2024-05-01T10:00:00.250000+00:00", "name": "x"}]});
        epoch_timestamps(&mut v);
        assert_eq!(v["tasks"][0]["createdAt"], json!(1714557600.25));
        assert_eq!(v["tasks"][0]["name"], "x");
    }
}
