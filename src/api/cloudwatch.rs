//! Amazon CloudWatch (metrics) on `serve`'s listener, in the protocols its model lists
//! (`metadata.protocols`: smithy-rpc-v2-cbor, json, query):
//! - RPC v2 CBOR, which the AWS CLI and boto3 speak: `POST
//!   /service/GraniteServiceVersion20100801/operation/<Op>`, `smithy-protocol:
//!   rpc-v2-cbor`, CBOR bodies (`super::cbor`);
//! - AWS JSON 1.0: `X-Amz-Target: GraniteServiceVersion20100801.<Op>`.
//!
//! awsQuery (form bodies, XML answers: older SDKs) is answered `InvalidAction` naming the
//! two that are served (docs/cloudwatch.md). The service is `awsQueryCompatible`: an
//! error carries `x-amzn-query-error: <code>;Sender`, from which the SDKs report
//! CloudWatch's query error codes (`InvalidParameterValue`, …) as on AWS.

use super::protocol::Protocol;
use crate::cloudwatch::{CloudWatch, CwError, ops};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::Arc;

/// A request body after its `Content-Encoding`: PutMetricData's model carries
/// `requestcompression` (gzip), and botocore gzips a body from 10 KiB on
/// (`request_min_compression_size_bytes`), so the AWS CLI sends a large PutMetricData
/// gzipped. Unpacked up to [`UNPACKED_MAX`] (CloudWatch's 1 MB request bound).
fn unpacked(headers: &HeaderMap, body: axum::body::Bytes) -> Result<axum::body::Bytes, CwError> {
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match encoding.as_str() {
        "" | "identity" => Ok(body),
        "gzip" => {
            use std::io::Read;
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&body[..])
                .take(UNPACKED_MAX as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| {
                    CwError::Serialization(format!("the gzip body does not unpack: {e}"))
                })?;
            if out.len() > UNPACKED_MAX {
                return Err(CwError::InvalidParameterValue(format!(
                    "the request is over {UNPACKED_MAX} bytes once unpacked"
                )));
            }
            Ok(out.into())
        }
        other => Err(CwError::Serialization(format!(
            "Content-Encoding {other} is not served (gzip is, as PutMetricData's model \
             lists it)"
        ))),
    }
}

/// The largest request body once unpacked: CloudWatch's 1 MB for PutMetricData.
const UNPACKED_MAX: usize = 1024 * 1024;

/// One CloudWatch call in `protocol` (RPC v2 CBOR or AWS JSON 1.0).
pub async fn handle(
    cw: Arc<CloudWatch>,
    protocol: Protocol,
    op: String,
    headers: &HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let request = unpacked(headers, body).and_then(|body| match protocol {
        Protocol::RpcV2Cbor => {
            super::cbor::to_json(&body).map_err(|e| CwError::Serialization(format!("{op}: {e}")))
        }
        _ if body.is_empty() => Ok(json!({})),
        _ => serde_json::from_slice::<Value>(&body)
            .map_err(|e| CwError::Serialization(format!("{op}: the body is not JSON: {e}"))),
    });
    let op2 = op.clone();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default();
    let result = match request {
        Ok(req) => {
            let op3 = op.clone();
            let call = move || {
                let given = req.clone();
                let run = || ops::call(&cw, &op2, req, now);
                // `serve --cluster`: the alarms are the cluster's (crate::cluster::replica):
                // a write of them runs under its lock on a copy that has every earlier
                // write, and is published. Datapoints stay in this serve (docs/cloudwatch.md
                // "In cluster mode").
                let r = match crate::cluster::replica::get() {
                    Some(replica)
                        if op2 != "PutMetricData" && crate::cluster::replica::writes(&op2, &[]) =>
                    {
                        replica.write(run).unwrap_or_else(|e| {
                            Err(CwError::Internal(format!(
                                "{op2}: the cluster's state in etcd: {}",
                                crate::errors::error_chain(&e)
                            )))
                        })
                    }
                    _ => run(),
                };
                if r.is_ok() {
                    super::coverage::report("cloudwatch", &op3, &given);
                }
                r
            };
            match tokio::task::spawn_blocking(call).await {
                Ok(r) => r,
                Err(e) => Err(CwError::Internal(format!("{op} failed: {e}"))),
            }
        }
        Err(e) => Err(e),
    };
    let (status, answer, error) = match result {
        Ok(v) => (StatusCode::OK, v, None),
        Err(e) => (
            StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST),
            json!({"__type": e.name(), "message": e.message()}),
            Some(e),
        ),
    };
    tracing::debug!(op = %op, status = status.as_u16(), "CloudWatch API call");
    let query_error = error.as_ref().map(|e| {
        format!(
            "{};{}",
            e.query_code(),
            if e.sender_fault() {
                "Sender"
            } else {
                "Receiver"
            }
        )
    });
    encode(protocol, status, &answer, query_error.as_deref())
}

/// An answer in `protocol`; `query_error` the `x-amzn-query-error` of an error.
fn encode(
    protocol: Protocol,
    status: StatusCode,
    answer: &Value,
    query_error: Option<&str>,
) -> Response {
    let mut resp = match protocol {
        Protocol::RpcV2Cbor => {
            let mut r = (
                status,
                super::cbor::from_json(answer, ops::TIMESTAMP_MEMBERS),
            )
                .into_response();
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/cbor"),
            );
            h.insert("smithy-protocol", HeaderValue::from_static("rpc-v2-cbor"));
            r
        }
        _ => {
            let mut r = (status, answer.to_string()).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-amz-json-1.0"),
            );
            r
        }
    };
    if let Some(q) = query_error
        && let Ok(v) = HeaderValue::from_str(q)
    {
        resp.headers_mut().insert("x-amzn-query-error", v);
    }
    resp
}

/// Whether a request speaks RPC v2 CBOR (its `smithy-protocol` header).
pub fn is_cbor(headers: &HeaderMap) -> bool {
    headers
        .get("smithy-protocol")
        .is_some_and(|v| v.as_bytes() == b"rpc-v2-cbor")
}

/// An AWS JSON error answer of the guard (`{"__type", "message"}`) re-encoded for an RPC
/// v2 CBOR caller, which cannot read JSON.
pub async fn cbor_error(resp: Response) -> Response {
    let (parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else {
        return Response::from_parts(parts, axum::body::Body::empty());
    };
    let Ok(v) = serde_json::from_slice::<Value>(&bytes) else {
        return Response::from_parts(parts, axum::body::Body::from(bytes));
    };
    encode(Protocol::RpcV2Cbor, parts.status, &v, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> axum::body::Bytes {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap().into()
    }

    fn encoded(e: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_str(e).unwrap());
        h
    }

    #[test]
    fn a_gzip_body_is_unpacked_within_the_bound_and_another_encoding_refused() {
        let body = br#"{"Namespace":"Shop"}"#;
        assert_eq!(
            &unpacked(&encoded("gzip"), gzip(body)).unwrap()[..],
            &body[..]
        );
        let plain = axum::body::Bytes::from_static(body);
        assert_eq!(&unpacked(&HeaderMap::new(), plain).unwrap()[..], &body[..]);
        let big = vec![b' '; UNPACKED_MAX + 1];
        let e = unpacked(&encoded("gzip"), gzip(&big)).unwrap_err();
        assert_eq!(e.query_code(), "InvalidParameterValue", "{e}");
        let e = unpacked(&encoded("gzip"), axum::body::Bytes::from_static(b"no")).unwrap_err();
        assert_eq!(e.query_code(), "SerializationException", "{e}");
        let e = unpacked(&encoded("br"), axum::body::Bytes::from_static(body)).unwrap_err();
        assert!(e.message().contains("br"), "{e}");
    }
}
