//! The ECS operations: `X-Amz-Target: AmazonEC2ContainerServiceV20141113.<Operation>`,
//! a JSON request body, a JSON response or an ECS exception. The operation is a row of the
//! core's table (`crate::ecs::table`), whose request is decoded, called and encoded by
//! `super::call_json`, as the CLI calls the same row.
//! Requests reach it through the guard (crate::api::guard: limits, SigV4).

use crate::ecs::operations::{Op, Service, ServiceError};
use crate::ecs::{Ecs, EcsError, EcsResult};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};
use std::sync::Arc;

/// ECS's `X-Amz-Target` prefix (its row of `super::protocol::ENDPOINTS`).
const TARGET_PREFIX: &str = super::protocol::ENDPOINTS[0].target_prefix;

/// `POST /`: one ECS call.
pub async fn handle(State(ecs): State<Arc<Ecs>>, headers: HeaderMap, body: Bytes) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let started = std::time::Instant::now();
    let op = target.strip_prefix(TARGET_PREFIX).map(str::to_string);
    let result = match op {
        None => Err(EcsError::UnknownOperation(format!(
            "X-Amz-Target {target:?} is not an ECS operation ({TARGET_PREFIX}<Operation>)"
        ))),
        Some(op) => {
            let op2 = op.clone();
            match tokio::task::spawn_blocking(move || call(&ecs, &op2, &body)).await {
                Ok(r) => r,
                Err(e) => Err(EcsError::Server(anyhow::anyhow!("{op} failed: {e}"))),
            }
        }
    };
    let (status, body, kind) = match result {
        Ok(v) => (StatusCode::OK, v, None),
        Err(e) => {
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
            (
                status,
                json!({"__type": e.name(), "message": e.message()}),
                Some(e.name()),
            )
        }
    };
    tracing::info!(target = %target, status = status.as_u16(), ms = started.elapsed().as_millis() as u64, "ECS API call");
    super::aws_json(status, &body, kind)
}

/// Runs the ECS operation named `op` with request `body` for a caller over the API.
pub fn call(ecs: &Ecs, op: &str, body: &[u8]) -> EcsResult<Value> {
    // `serve --cluster`: container instances and their attributes come from etcd (their
    // timestamps rendered as this protocol's epoch seconds, as the table's are).
    if let Some(answer) =
        crate::taskdef::timestamp::epoch_seconds(|| crate::cluster::api::call(ecs, op, body))
    {
        return answer;
    }
    let Some(o) = Op::named(Service::Ecs, op) else {
        return Err(EcsError::UnknownOperation(format!(
            "{op} is not supported by minifargate serve (it answers {}; see docs/serve.md)",
            crate::ecs::operations::ecs_names()
        )));
    };
    let run = || {
        super::call_json(ecs, o, body).map_err(|e| match e {
            ServiceError::Ecs(e) => e,
            ServiceError::Logs(e) => EcsError::Server(anyhow::Error::from(e)),
        })
    };
    // `serve --cluster`: task definitions, clusters and services are the cluster's
    // (crate::cluster::replica): a write runs under its lock and is published.
    let Some(replica) = crate::cluster::replica::get() else {
        return run();
    };
    let unwritten = |e: crate::cluster::replica::Error| {
        EcsError::Server(
            anyhow::Error::from(e).context(format!("{op}: the cluster's state in etcd")),
        )
    };
    if crate::cluster::replica::writes(op, body) {
        if op == "RunTask" || op == "StartTask" {
            // Its tasks are placed in transactions of their own: once one is placed, the
            // launch happened, whatever becomes of its token's row (issue 54).
            let placed = |a: &EcsResult<Value>| {
                a.as_ref()
                    .is_ok_and(|v| v["tasks"].as_array().is_some_and(|t| !t.is_empty()))
            };
            return replica.write_effects(run, placed).map_err(unwritten)?;
        }
        return replica.write(run).map_err(unwritten)?;
    }
    let answer = run();
    // A launch without a token may still create its cluster (`default`); reads write no
    // row of the control plane (and a stray one would go with the next write).
    // Best effort once the launch is answered: its tasks are placed (committed in etcd)
    // whatever happens here, and an error would have the client launch them again
    // (issue 54: chaos-cluster saw RunTask answer ServerException for tasks that ran).
    // What is not published now goes with this serve's next write.
    if (op == "RunTask" || op == "StartTask")
        && let Err(e) = replica.publish_leftovers()
    {
        tracing::warn!(error = %unwritten(e), "{op}: this serve's control-plane changes were \
            not published to etcd; they go with its next write");
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ecs::operations::{Operation, Visitor};

    /// The top-level members of an operation's request type (`None` for the operations
    /// checked elsewhere: RegisterTaskDefinition by the task-definition model's own
    /// comparison with botocore).
    struct Members;
    impl Visitor for Members {
        type Out = Option<Vec<String>>;
        fn visit<O: Operation>(self) -> Self::Out {
            O::request_members().map(|all| {
                all.into_iter()
                    .filter(|p| !p.contains(['.', '[']))
                    .collect()
            })
        }
    }

    #[test]
    fn every_ecs_member_is_taken() {
        // Each operation the dispatcher serves decodes its request strictly: a member of
        // ECS's model (botocore's, as the AWS CLI carries it) that the core's request type
        // lacked would be refused as unknown. Nothing ECS defines may be missing.
        let model = crate::ecs::botocore_model::service_model();
        let mut missing = Vec::new();
        for op in Op::of(Service::Ecs) {
            let Some(taken) = op.visit(Members) else {
                assert_eq!(op, Op::RegisterTaskDefinition, "no request members");
                continue;
            };
            let shape = model["operations"][op.name()]["input"]["shape"]
                .as_str()
                .unwrap_or_else(|| panic!("{}: not in ECS's model", op.name()));
            for m in model["shapes"][shape]["members"]
                .as_object()
                .into_iter()
                .flatten()
            {
                if !taken.contains(m.0) {
                    missing.push(format!("{}.{}", op.name(), m.0));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "ECS members the core does not take: {missing:?}"
        );
    }

    #[test]
    fn the_table_is_what_the_dispatcher_answers() {
        // Every ECS operation of the model the AWS CLI carries is either a row of the
        // table, answered, or UnknownOperationException; every row is one of the model.
        let dir = tempfile::tempdir().unwrap();
        let ecs = Ecs::scratch(dir.path());
        let model = crate::ecs::botocore_model::service_model();
        let all: std::collections::BTreeSet<String> = model["operations"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        let mut wrong = Vec::new();
        for op in &all {
            // `{}` is refused by every operation that would change something, before it
            // does (a required member is missing), so nothing here starts a task.
            let unknown = matches!(call(&ecs, op, b"{}"), Err(EcsError::UnknownOperation(_)));
            let listed = Op::named(Service::Ecs, op).is_some();
            if listed == unknown {
                wrong.push(format!(
                    "{op}: {} in the table, {} by the dispatcher",
                    if listed { "listed" } else { "not listed" },
                    if unknown { "unknown" } else { "answered" }
                ));
            }
        }
        for o in Op::of(Service::Ecs) {
            if !all.contains(o.name()) {
                wrong.push(format!("{}: not an operation of the ECS model", o.name()));
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    #[test]
    fn a_member_ecs_does_not_have_is_refused_by_name() {
        let e = crate::ecs::operations::ecs_json::<crate::ecs::services::ListServicesRequest>(
            br#"{"clustr": "x"}"#,
        )
        .err()
        .expect("refused");
        assert_eq!(e.name(), "InvalidParameterException");
        assert!(e.message().contains("clustr"), "{}", e.message());
    }
}
