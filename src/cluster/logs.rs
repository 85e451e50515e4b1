//! CloudWatch Logs across boxes (docs/cluster.md "Logs across boxes"): in cluster mode a
//! task's awslogs events are in the store of the box that runs it, so `serve --cluster`
//! answers GetLogEvents, FilterLogEvents and DescribeLogStreams from its own store and
//! every connected agent's endpoint ([`super::endpoint`]), side by side.

use super::endpoint::{Answer, LOGS_OPERATIONS, ask_agents};
use crate::ecs::logs::{LogsError, LogsResult};
use serde_json::Value;

/// `op`'s answer across the boxes, given this serve's own (`local`); `None` when this is
/// not cluster mode or not an operation the boxes answer.
pub fn across_boxes(op: &str, body: &[u8], local: &LogsResult<Value>) -> Option<LogsResult<Value>> {
    let etcd = super::serving()?;
    if !LOGS_OPERATIONS.contains(&op) {
        return None;
    }
    let (answers, errors) = match super::block_on(ask_agents(etcd, op, body)) {
        Ok(a) => a,
        Err(e) => {
            return Some(Err(LogsError::InvalidParameter(format!(
                "the cluster's boxes could not be asked: {}",
                crate::error_chain(&e)
            ))));
        }
    };
    for e in &errors {
        tracing::warn!(error = %e, "{op}: a box did not answer");
    }
    Some(combine(op, local, &answers))
}

/// The answers put together: GetLogEvents takes the box that has the stream; the others
/// merge their lists (events by time, streams by name).
fn combine(op: &str, local: &LogsResult<Value>, answers: &[Answer]) -> LogsResult<Value> {
    let oks: Vec<&Value> = local
        .as_ref()
        .ok()
        .into_iter()
        .chain(answers.iter().filter(|a| a.status == 200).map(|a| &a.body))
        .collect();
    if oks.is_empty() {
        // Nobody has it: this serve's own error, else the first box's.
        return match local {
            Err(LogsError::ResourceNotFound(m)) => match answers.first() {
                Some(a) => Err(error_of(&a.body).unwrap_or(LogsError::ResourceNotFound(m.clone()))),
                None => Err(LogsError::ResourceNotFound(m.clone())),
            },
            Err(e) => Err(clone_error(e)),
            Ok(_) => unreachable!("an Ok local answer is among oks"),
        };
    }
    match op {
        "GetLogEvents" => Ok(oks
            .iter()
            .find(|v| v["events"].as_array().is_some_and(|e| !e.is_empty()))
            .unwrap_or(&oks[0])
            .to_owned()
            .clone()),
        "FilterLogEvents" => {
            let mut events: Vec<Value> = oks
                .iter()
                .flat_map(|v| v["events"].as_array().cloned().unwrap_or_default())
                .collect();
            events.sort_by_key(|e| {
                (
                    e["timestamp"].as_i64(),
                    e["eventId"].as_str().map(str::to_string),
                )
            });
            let searched: Vec<Value> = oks
                .iter()
                .flat_map(|v| {
                    v["searchedLogStreams"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                })
                .collect();
            Ok(serde_json::json!({ "events": events, "searchedLogStreams": searched }))
        }
        _ => {
            let mut streams: Vec<Value> = oks
                .iter()
                .flat_map(|v| v["logStreams"].as_array().cloned().unwrap_or_default())
                .collect();
            streams.sort_by_key(|s| s["logStreamName"].as_str().map(str::to_string));
            Ok(serde_json::json!({ "logStreams": streams }))
        }
    }
}

fn error_of(body: &Value) -> Option<LogsError> {
    let message = body["message"].as_str()?.to_string();
    Some(match body["__type"].as_str()? {
        "ResourceNotFoundException" => LogsError::ResourceNotFound(message),
        _ => LogsError::InvalidParameter(message),
    })
}

fn clone_error(e: &LogsError) -> LogsError {
    match e {
        LogsError::ResourceNotFound(m) => LogsError::ResourceNotFound(m.clone()),
        LogsError::InvalidParameter(m) => LogsError::InvalidParameter(m.clone()),
        LogsError::Serialization(m) => LogsError::Serialization(m.clone()),
        LogsError::UnknownOperation(m) => LogsError::UnknownOperation(m.clone()),
        other => LogsError::InvalidParameter(other.to_string()),
    }
}
