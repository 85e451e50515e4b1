//! The CloudWatch Logs operations on `serve`'s listener: `X-Amz-Target:
//! Logs_20140328.<Operation>`, AWS JSON 1.1, epoch-millisecond timestamps, CloudWatch's
//! exception names. The operation is a row of the core's table (`Service::Logs`,
//! `crate::ecs::table`): decoded, called (`crate::logs`, over the store the tasks'
//! awslogs drivers write) and encoded by `super::call_json`.

use crate::ecs::Ecs;
use crate::ecs::operations::{Op, Service, ServiceError};
use crate::logs::{LogsError, LogsResult};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};
use std::sync::Arc;

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

/// Runs the CloudWatch Logs operation named `op` with request `body`.
pub fn call(ecs: &Ecs, op: &str, body: &[u8]) -> LogsResult<Value> {
    let Some(o) = Op::named(Service::Logs, op) else {
        return Err(LogsError::UnknownOperation(format!(
            "{op} is not supported by minifargate's CloudWatch Logs API (see docs/logs.md)"
        )));
    };
    let local = |body: &[u8]| {
        super::call_json(ecs, o, body).map_err(|e| match e {
            ServiceError::Logs(e) => e,
            // No Logs operation fails with ECS's error type.
            ServiceError::Ecs(e) => LogsError::UnknownOperation(format!("{op}: {}", e.message())),
        })
    };
    // `serve --cluster`: the tasks' logs are on the boxes that run them.
    match crate::cluster::logs::across_boxes(op, body, local) {
        Some(answer) => answer,
        None => local(body),
    }
}
