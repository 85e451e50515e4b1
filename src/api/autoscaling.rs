//! Application Auto Scaling on `serve`'s listener: AWS JSON 1.1,
//! `X-Amz-Target: AnyScaleFrontendService.<Op>` (SigV4 name `application-autoscaling`),
//! each call run by the core (`crate::autoscaling::ops`) over the box's ECS services and
//! CloudWatch alarms; in `serve --cluster`, a write under the control plane's write lock.

use crate::autoscaling::{AsError, AutoScaling, ops};
use crate::cloudwatch::CloudWatch;
use crate::ecs::Ecs;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};
use std::sync::Arc;

/// One Application Auto Scaling call.
pub async fn handle(
    aas: Arc<AutoScaling>,
    ecs: Arc<Ecs>,
    cw: Arc<CloudWatch>,
    op: String,
    body: axum::body::Bytes,
) -> Response {
    let request = if body.is_empty() {
        Ok(json!({}))
    } else {
        serde_json::from_slice::<Value>(&body)
            .map_err(|e| AsError::Serialization(format!("{op}: the body is not JSON: {e}")))
    };
    let now = crate::ecs::now_ms();
    let op2 = op.clone();
    let result = match request {
        Ok(req) => {
            let call = move || {
                let given = req.clone();
                let run = || ops::call(&aas, &ecs, &cw, &op2, req, now);
                // `serve --cluster`: the targets, policies, scheduled actions and the
                // alarms are the cluster's (crate::cluster::replica): a write runs under
                // its lock on a copy that has every earlier write, and is published.
                let r = match crate::cluster::replica::get() {
                    Some(replica) if crate::cluster::replica::writes(&op2, &[]) => {
                        replica.write(run).unwrap_or_else(|e| {
                            Err(AsError::Internal(format!(
                                "{op2}: the cluster's state in etcd: {}",
                                crate::errors::error_chain(&e)
                            )))
                        })
                    }
                    _ => run(),
                };
                if r.is_ok() {
                    super::coverage::report("application-autoscaling", &op2, &given);
                }
                r
            };
            match tokio::task::spawn_blocking(call).await {
                Ok(r) => r,
                Err(e) => Err(AsError::Internal(format!("{op} failed: {e}"))),
            }
        }
        Err(e) => Err(e),
    };
    tracing::debug!(op = %op, ok = result.is_ok(), "Application Auto Scaling API call");
    match result {
        Ok(v) => super::aws_json(StatusCode::OK, &v, None),
        Err(e) => super::aws_error(
            StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST),
            e.name(),
            &e.message(),
        ),
    }
}
