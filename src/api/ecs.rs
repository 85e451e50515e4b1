//! The ECS operations: `X-Amz-Target: AmazonEC2ContainerServiceV20141113.<Operation>`,
//! a JSON request body, a JSON response or an ECS exception. Each operation decodes its
//! request shape (ecs.json) and calls the ECS core (`crate::ecs`), as the CLI does.
//! Requests reach it through the guard (crate::api::guard: limits, SigV4).

use crate::ecs::{Ecs, EcsError, EcsResult};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::sync::Arc;

const TARGET_PREFIX: &str = "AmazonEC2ContainerServiceV20141113.";

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
        Ok(mut v) => {
            epoch_timestamps(&mut v);
            (StatusCode::OK, v, None)
        }
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

/// The request body as operation input `T` (an empty body is `{}`), refusing members `T`
/// does not have with the AWS CLI's words (it refuses them before sending; a hand-made
/// request gets the same answer instead of a silent drop). Every member of ECS's model is a
/// member of `T` (the test `every_ecs_member_is_taken`), so nothing ECS defines is dropped.
pub(super) fn input<T: DeserializeOwned>(body: &[u8]) -> EcsResult<T> {
    use crate::taskdef::unknown::{DecodeError, decode};
    let text = std::str::from_utf8(body)
        .map_err(|_| EcsError::Serialization("the body is not UTF-8".into()))?;
    let text = if text.trim().is_empty() { "{}" } else { text };
    decode(text, &crate::taskdef::finding::JsonPath::root()).map_err(|e| match e {
        DecodeError::Malformed(m) => EcsError::Serialization(format!("invalid request body: {m}")),
        DecodeError::Unknown(_) => EcsError::invalid(e.to_string()),
    })
}

/// The JSON 1.1 protocol carries timestamps as epoch seconds: every `…At` string the
/// shared JSON builders render for the CLI (RFC 3339) becomes a number.
fn epoch_timestamps(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, v) in m.iter_mut() {
                if (k.ends_with("At") || k == "expirationDate")
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

/// What a request brings to RunTask and StartTask here: nothing local; over the API, the
/// definition's local paths refused.
fn local(remote: bool) -> crate::ecs::tasks::Local {
    crate::ecs::tasks::Local {
        remote,
        ..Default::default()
    }
}

/// Who sends a request to [`call_from`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// A request over HTTP (`serve`'s API and console): never reads this host's files.
    Api,
    /// This host's own CLI verbs (root on the box): local paths are a convenience.
    LocalCli,
}

/// Runs operation `op` with request `body` for a caller over the API.
pub fn call(ecs: &Ecs, op: &str, body: &[u8]) -> EcsResult<Value> {
    call_from(ecs, op, body, Caller::Api)
}

/// Runs operation `op` with request `body`: decodes the operation's request shape, calls
/// the core, encodes its response.
pub fn call_from(ecs: &Ecs, op: &str, body: &[u8], caller: Caller) -> EcsResult<Value> {
    // `serve --cluster`: container instances and their attributes come from etcd.
    if let Some(answer) = crate::cluster::api::call(ecs, op, body) {
        return answer;
    }
    let remote = caller == Caller::Api;
    use crate::ecs::{
        account_settings as acct, clusters, container_instances as ci, services, tags,
        task_definitions as td, task_protection as prot, tasks,
    };
    match op {
        "RegisterTaskDefinition" => {
            let text = std::str::from_utf8(body)
                .map_err(|_| EcsError::Serialization("the body is not UTF-8".into()))?;
            let parsed = crate::taskdef::parse::parse_str(text);
            let origin = td::Origin {
                name: "the request",
                remote,
                ..Default::default()
            };
            let r = td::register_task_definition(ecs, parsed, origin)?;
            for w in &r.warnings {
                tracing::warn!(finding = %w, "RegisterTaskDefinition");
            }
            encode(r.response)
        }
        "DescribeTaskDefinition" => encode(td::describe_task_definition(ecs, &input(body)?)?),
        "DeregisterTaskDefinition" => encode(td::deregister_task_definition(ecs, &input(body)?)?),
        "ListTaskDefinitions" => encode(td::list_task_definitions(ecs, &input(body)?)?),
        "ListTaskDefinitionFamilies" => {
            encode(td::list_task_definition_families(ecs, &input(body)?)?)
        }
        "RunTask" => started(
            "RunTask",
            tasks::run_task(ecs, input(body)?, local(remote))?,
        ),
        "StartTask" => started(
            "StartTask",
            ci::start_task(ecs, input(body)?, local(remote))?,
        ),
        "ListContainerInstances" => encode(ci::list_container_instances(ecs, &input(body)?)?),
        "DescribeContainerInstances" => {
            encode(ci::describe_container_instances(ecs, &input(body)?)?)
        }
        "DeleteTaskDefinitions" => encode(td::delete_task_definitions(ecs, &input(body)?)?),
        "UpdateCluster" => encode(clusters::update_cluster(ecs, &input(body)?)?),
        "UpdateClusterSettings" => encode(clusters::update_cluster_settings(ecs, &input(body)?)?),
        "PutClusterCapacityProviders" => encode(clusters::put_cluster_capacity_providers(
            ecs,
            &input(body)?,
        )?),
        "DescribeCapacityProviders" => {
            encode(clusters::describe_capacity_providers(ecs, &input(body)?)?)
        }
        "ListServicesByNamespace" => {
            encode(services::list_services_by_namespace(ecs, &input(body)?)?)
        }
        "DescribeTasks" => encode(tasks::describe_tasks(
            ecs,
            &input(body)?,
            tasks::Unset::DefaultCluster,
        )?),
        "ListTasks" => encode(tasks::list_tasks(ecs, &input(body)?)?),
        "StopTask" => encode(tasks::stop_task(
            ecs,
            &input(body)?,
            tasks::Unset::DefaultCluster,
        )?),
        "CreateCluster" => encode(clusters::create_cluster(ecs, &input(body)?)?),
        "DescribeClusters" => encode(clusters::describe_clusters(ecs, &input(body)?)?),
        "ListClusters" => encode(clusters::list_clusters(ecs, &input(body)?)?),
        "DeleteCluster" => encode(clusters::delete_cluster(ecs, &input(body)?)?),
        "CreateService" => encode(services::create_service(ecs, input(body)?, remote)?),
        "UpdateService" => encode(services::update_service(ecs, input(body)?, remote)?),
        "DeleteService" => encode(services::delete_service(ecs, input(body)?)?),
        "DescribeServices" => encode(services::describe_services(ecs, input(body)?)?),
        "ListServices" => encode(services::list_services(ecs, &input(body)?)?),
        "TagResource" => encode(tags::tag_resource(ecs, input(body)?)?),
        "UntagResource" => encode(tags::untag_resource(ecs, &input(body)?)?),
        "ListTagsForResource" => encode(tags::list_tags_for_resource(ecs, &input(body)?)?),
        "UpdateTaskProtection" => encode(prot::update_task_protection(ecs, &input(body)?)?),
        "GetTaskProtection" => encode(prot::get_task_protection(ecs, &input(body)?)?),
        "ListAccountSettings" => encode(acct::list_account_settings(ecs, &input(body)?)?),
        "PutAccountSetting" => encode(acct::put_account_setting(ecs, &input(body)?)?),
        "PutAccountSettingDefault" => {
            encode(acct::put_account_setting_default(ecs, &input(body)?)?)
        }
        other => Err(EcsError::UnknownOperation(format!(
            "{other} is not supported by minifargate serve (it answers {}; see docs/serve.md)",
            super::operations::names()
        ))),
    }
}

/// The answer of RunTask and StartTask; the supervisors are reaped when they exit (they run
/// detached, in their own sessions).
fn started(op: &str, started: crate::ecs::tasks::Started) -> EcsResult<Value> {
    for w in &started.warnings {
        tracing::warn!(warning = %w.message, "{op}");
    }
    for mut sup in started.supervisors {
        std::thread::spawn(move || sup.child.wait());
    }
    encode(started.response)
}

/// A response shape as JSON.
fn encode<T: serde::Serialize>(response: T) -> EcsResult<Value> {
    serde_json::to_value(response).map_err(|e| {
        EcsError::Server(anyhow::Error::from(e).context("failed to encode the response"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_become_epoch_seconds() {
        let mut v =
            json!({"tasks": [{"createdAt": "2024-05-01T10:00:00.250000+00:00", "name": "x"}]});
        epoch_timestamps(&mut v);
        assert_eq!(v["tasks"][0]["createdAt"], json!(1714557600.25));
        assert_eq!(v["tasks"][0]["name"], "x");
    }
    /// The top-level members of the core's request type for `op` (`None` for the
    /// operations checked elsewhere: RegisterTaskDefinition by the task-definition model's
    /// own comparison with botocore).
    fn core_members(op: &str) -> Option<Vec<String>> {
        use crate::ecs::{
            account_settings as acct, clusters, container_instances as ci, services, tags,
            task_definitions as td, task_protection as prot, tasks,
        };
        use crate::taskdef::members::paths;
        let all = match op {
            "CreateCluster" => paths::<clusters::CreateClusterRequest>(),
            "ListClusters" => paths::<clusters::ListClustersRequest>(),
            "DescribeClusters" => paths::<clusters::DescribeClustersRequest>(),
            "DeleteCluster" => paths::<clusters::DeleteClusterRequest>(),
            "DescribeTaskDefinition" => paths::<td::DescribeTaskDefinitionRequest>(),
            "ListTaskDefinitions" => paths::<td::ListTaskDefinitionsRequest>(),
            "ListTaskDefinitionFamilies" => paths::<td::ListTaskDefinitionFamiliesRequest>(),
            "DeregisterTaskDefinition" => paths::<td::DeregisterTaskDefinitionRequest>(),
            "DescribeTasks" => paths::<tasks::DescribeTasksRequest>(),
            "ListTasks" => paths::<tasks::ListTasksRequest>(),
            "StopTask" => paths::<tasks::StopTaskRequest>(),
            "CreateService" => paths::<services::CreateServiceRequest>(),
            "UpdateService" => paths::<services::UpdateServiceRequest>(),
            "DescribeServices" => paths::<services::DescribeServicesRequest>(),
            "ListServices" => paths::<services::ListServicesRequest>(),
            "DeleteService" => paths::<services::DeleteServiceRequest>(),
            "TagResource" => paths::<tags::TagResourceRequest>(),
            "UntagResource" => paths::<tags::UntagResourceRequest>(),
            "ListTagsForResource" => paths::<tags::ListTagsForResourceRequest>(),
            "UpdateTaskProtection" => paths::<prot::UpdateTaskProtectionRequest>(),
            "GetTaskProtection" => paths::<prot::GetTaskProtectionRequest>(),
            "ListAccountSettings" => paths::<acct::ListAccountSettingsRequest>(),
            "PutAccountSetting" => paths::<acct::PutAccountSettingRequest>(),
            "PutAccountSettingDefault" => paths::<acct::PutAccountSettingDefaultRequest>(),
            "RunTask" => paths::<tasks::RunTaskRequest>(),
            "StartTask" => paths::<ci::StartTaskRequest>(),
            "DeleteTaskDefinitions" => paths::<td::DeleteTaskDefinitionsRequest>(),
            "ListContainerInstances" => paths::<ci::ListContainerInstancesRequest>(),
            "DescribeContainerInstances" => paths::<ci::DescribeContainerInstancesRequest>(),
            "UpdateCluster" => paths::<clusters::UpdateClusterRequest>(),
            "UpdateClusterSettings" => paths::<clusters::UpdateClusterSettingsRequest>(),
            "PutClusterCapacityProviders" => {
                paths::<clusters::PutClusterCapacityProvidersRequest>()
            }
            "DescribeCapacityProviders" => paths::<clusters::DescribeCapacityProvidersRequest>(),
            "ListServicesByNamespace" => paths::<services::ListServicesByNamespaceRequest>(),
            _ => return None,
        };
        Some(
            all.into_iter()
                .filter(|p| !p.contains(['.', '[']))
                .collect(),
        )
    }

    #[test]
    fn every_ecs_member_is_taken() {
        // Each operation the dispatcher serves decodes its request strictly: a member of
        // ECS's model (botocore's, as the AWS CLI carries it) that the core's request type
        // lacked would be refused as unknown. Nothing ECS defines may be missing.
        let model = crate::ecs::botocore_model::service_model();
        let mut missing = Vec::new();
        for op in crate::api::operations::OPERATIONS {
            let Some(taken) = core_members(op.name) else {
                assert_eq!(op.name, "RegisterTaskDefinition", "no row in core_members");
                continue;
            };
            let shape = model["operations"][op.name]["input"]["shape"]
                .as_str()
                .unwrap_or_else(|| panic!("{}: not in ECS's model", op.name));
            for m in model["shapes"][shape]["members"]
                .as_object()
                .into_iter()
                .flatten()
            {
                if !taken.contains(m.0) {
                    missing.push(format!("{}.{}", op.name, m.0));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "ECS members the core does not take: {missing:?}"
        );
    }

    #[test]
    fn a_member_ecs_does_not_have_is_refused_by_name() {
        let e = input::<crate::ecs::services::ListServicesRequest>(br#"{"clustr": "x"}"#)
            .err()
            .expect("refused");
        assert_eq!(e.name(), "InvalidParameterException");
        assert!(e.message().contains("clustr"), "{}", e.message());
    }
}
