//! The Elastic Load Balancing v2 operations on `serve`'s listener: awsQuery (a form body
//! with `Action` and `Version=2015-12-01`), XML answers in ELB's namespace, ELB's error
//! codes in awsQuery's `ErrorResponse` (`super::protocol::query_error`). The core is
//! `crate::elb` (its operations: `crate::elb::ops`).

use crate::elb::query::{Params, response};
use crate::elb::{Elb, ElbError};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// One ELBv2 call: action `op` with the form `body`.
pub async fn handle(elb: Arc<Elb>, op: String, body: axum::body::Bytes) -> Response {
    let started = std::time::Instant::now();
    let op2 = op.clone();
    let form = body.clone();
    let result = tokio::task::spawn_blocking(move || {
        let params = Params::from_form(&body);
        // `serve --cluster`: the load balancers are the cluster's (crate::cluster::replica):
        // a write runs under its lock on a copy that has every earlier write, and is
        // published.
        match crate::cluster::replica::get() {
            Some(replica) if crate::cluster::replica::writes(&op2, &body) => {
                let written = replica.write(|| {
                    elb.sync()?;
                    crate::elb::ops::call(&elb, &op2, &params)
                });
                // What etcd did not take was read back into the store: read it again.
                let _ = elb.sync();
                written.unwrap_or_else(|e| {
                    Err(ElbError::Internal(format!(
                        "{op2}: the cluster's state in etcd: {}",
                        crate::errors::error_chain(&e)
                    )))
                })
            }
            Some(_) => {
                // The targets' health is checked by the leader's serve: another serve
                // answers with what the leader published.
                if op2 == "DescribeTargetHealth"
                    && !crate::cluster::leader::leading()
                    && let Some(etcd) = crate::cluster::serving()
                {
                    let _ = elb.sync();
                    match crate::cluster::block_on(crate::cluster::balancers::published_health(
                        etcd,
                    )) {
                        Ok(h) => elb.take_health(&h),
                        Err(e) => tracing::warn!(error = %crate::errors::error_chain(&e),
                            "DescribeTargetHealth: cannot read the leader's target health"),
                    }
                }
                crate::elb::ops::call(&elb, &op2, &params)
            }
            None => crate::elb::ops::call(&elb, &op2, &params),
        }
    })
    .await
    .unwrap_or_else(|e| Err(ElbError::Internal(format!("{op} failed: {e}"))));
    tracing::debug!(op = %op, ok = result.is_ok(), ms = started.elapsed().as_millis() as u64, "ELB API call");
    match result {
        Ok(x) => {
            super::coverage::report("elbv2", &op, &super::coverage::query_paths(&form));
            let mut id = [0u8; 16];
            let _ = getrandom::getrandom(&mut id);
            let mut resp = (StatusCode::OK, response(&op, x, &uuid_like(&id))).into_response();
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
            resp
        }
        Err(e) => super::protocol::query_error(
            StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST),
            if e.sender_fault() {
                super::protocol::Fault::Sender
            } else {
                super::protocol::Fault::Receiver
            },
            e.code(),
            e.message(),
        ),
    }
}

/// A request id in the UUID form AWS's request ids have.
fn uuid_like(b: &[u8; 16]) -> String {
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}
