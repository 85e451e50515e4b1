//! The Amazon ECR operations on `serve`'s listener: `X-Amz-Target:
//! AmazonEC2ContainerRegistry_V20150921.<Operation>`, AWS JSON 1.1, ECR's exception names.
//! The body goes to the ECR core (`crate::ecr::api`), over the registry `serve` opened.

use crate::ecs::Ecs;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;
use std::sync::Arc;

/// One ECR call, `op` being the operation name after the target prefix.
pub async fn handle(
    ecs: Arc<Ecs>,
    op: String,
    body: axum::body::Bytes,
    host: Option<String>,
) -> Response {
    let _ = ecs;
    let Some(registry) = super::registry() else {
        return super::aws_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ServerException",
            "the registry is not open on this serve (see its log at start)",
        );
    };
    let op2 = op.clone();
    let request = body.clone();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let result = tokio::task::spawn_blocking(move || {
        if op2 == "GetDownloadUrlForLayer" {
            // A URL of the registry at the address the caller reached (serve's port
            // answers HTTPS too), signed with the token key.
            let tokens = crate::ecr::tokens::Tokens::load_or_create(registry.dir()).ok();
            let base = format!("https://{}", host.unwrap_or_else(|| registry.host()));
            return crate::ecr::api::get_download_url_for_layer(
                &registry,
                &body,
                &base,
                tokens.as_ref(),
                now,
            );
        }
        crate::ecr::api::call(&registry, &op2, &body, now)
    })
    .await;
    let (status, body, kind) = match result {
        Ok(Ok(v)) => {
            super::coverage::report_bytes("ecr", &op, &request);
            (StatusCode::OK, v, None)
        }
        Ok(Err(e)) => (
            StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST),
            json!({"__type": e.name(), "message": e.message()}),
            Some(e.name()),
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"__type": "ServerException", "message": format!("{op} failed: {e}")}),
            Some("ServerException"),
        ),
    };
    tracing::debug!(op = %op, status = status.as_u16(), "ECR API call");
    super::aws_json(status, &body, kind)
}
