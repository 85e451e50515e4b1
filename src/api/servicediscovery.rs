//! The AWS Cloud Map operations on `serve`'s listener: `X-Amz-Target:
//! Route53AutoNaming_v20170314.<Operation>`, AWS JSON 1.1, Cloud Map's exception names.
//! The core is `crate::servicediscovery` (its operations: `crate::servicediscovery::ops`).

use crate::servicediscovery::{CloudMap, SdError};
use axum::http::StatusCode;
use axum::response::Response;
use std::sync::Arc;

/// One Cloud Map call, `op` being the operation name after the target prefix.
pub async fn handle(cm: Arc<CloudMap>, op: String, body: axum::body::Bytes) -> Response {
    let op2 = op.clone();
    let request = body.clone();
    let result = tokio::task::spawn_blocking(move || {
        // `serve --cluster`: Cloud Map's resources are the cluster's
        // (crate::cluster::replica): a write runs under its lock on a copy that has every
        // earlier write, and is published.
        match crate::cluster::replica::get() {
            Some(replica)
                if crate::cluster::replica::writes(&op2, &body) && !op2.starts_with("Discover") =>
            {
                let written = replica.write(|| {
                    cm.sync()?;
                    crate::servicediscovery::ops::call(&cm, &op2, &body)
                });
                // What etcd did not take was read back into the store: read it again.
                let _ = cm.sync();
                written.unwrap_or_else(|e| {
                    Err(SdError::Internal(format!(
                        "{op2}: the cluster's state in etcd: {}",
                        crate::errors::error_chain(&e)
                    )))
                })
            }
            _ => crate::servicediscovery::ops::call(&cm, &op2, &body),
        }
    })
    .await;
    let (status, body, kind) = match result {
        Ok(Ok(v)) => {
            super::coverage::report_bytes("servicediscovery", &op, &request);
            (StatusCode::OK, v, None)
        }
        Ok(Err(e)) => (
            StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST),
            e.body(),
            Some(e.name()),
        ),
        Err(e) => {
            let e = SdError::InvalidInput(format!("{op} failed: {e}"));
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                e.body(),
                Some("InternalFailure"),
            )
        }
    };
    tracing::debug!(op = %op, status = status.as_u16(), "Cloud Map API call");
    super::aws_json(status, &body, kind)
}
