//! The CloudWatch Logs operations on `serve`'s listener: `X-Amz-Target:
//! Logs_20140328.<Operation>`, AWS JSON 1.1, epoch-millisecond timestamps, CloudWatch's
//! exception names. Each operation decodes its request shape and calls the core
//! (`crate::ecs::logs`), over the store the tasks' awslogs drivers write.

use crate::ecs::Ecs;
use crate::ecs::logs::{self as core, LogsError, LogsResult};
use axum::http::StatusCode;
use axum::response::Response;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::sync::Arc;

pub const TARGET_PREFIX: &str = "Logs_20140328.";

/// One CloudWatch Logs call, `op` being the operation name after the target prefix.
pub async fn handle(ecs: Arc<Ecs>, op: String, body: axum::body::Bytes) -> Response {
    let started = std::time::Instant::now();
    let op2 = op.clone();
    let result = match tokio::task::spawn_blocking(move || call(&ecs, &op2, &body)).await {
        Ok(r) => r,
        Err(e) => Err(LogsError::UnknownOperation(format!("{op} failed: {e}"))),
    };
    let (status, body, kind) = match result {
        Ok(v) => (StatusCode::OK, v, None),
        Err(e) => (
            StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST),
            json!({"__type": e.name(), "message": e.message()}),
            Some(e.name()),
        ),
    };
    tracing::debug!(op = %op, status = status.as_u16(), ms = started.elapsed().as_millis() as u64, "Logs API call");
    super::aws_json(status, &body, kind)
}

fn input<T: DeserializeOwned>(body: &[u8]) -> LogsResult<T> {
    super::decode_body(body).map_err(LogsError::Serialization)
}

/// Runs operation `op` with request `body`.
pub fn call(ecs: &Ecs, op: &str, body: &[u8]) -> LogsResult<Value> {
    match op {
        "CreateLogGroup" => core::create_log_group(ecs, &input(body)?),
        "DeleteLogGroup" => core::delete_log_group(ecs, &input(body)?),
        "CreateLogStream" => core::create_log_stream(ecs, &input(body)?),
        "DeleteLogStream" => core::delete_log_stream(ecs, &input(body)?),
        "DescribeLogGroups" => core::describe_log_groups(ecs, &input(body)?),
        "DescribeLogStreams" => core::describe_log_streams(ecs, &input(body)?),
        "GetLogEvents" => core::get_log_events(ecs, &input(body)?),
        "FilterLogEvents" => core::filter_log_events(ecs, &input(body)?),
        "PutLogEvents" => core::put_log_events(ecs, &input(body)?),
        "PutRetentionPolicy" => core::put_retention_policy(ecs, &input(body)?),
        "DeleteRetentionPolicy" => core::delete_retention_policy(ecs, &input(body)?),
        other => Err(LogsError::UnknownOperation(format!(
            "{other} is not supported by minifargate's CloudWatch Logs API (see docs/logs.md)"
        ))),
    }
}
