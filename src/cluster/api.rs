//! The ECS container-instance operations of `serve --cluster`, on etcd: List/Describe/
//! DeregisterContainerInstance(s), UpdateContainerInstancesState, PutAttributes,
//! DeleteAttributes, ListAttributes (docs/cluster.md). The API's dispatcher asks [`call`]
//! first; on one box (no `--cluster`) it answers `None` and nothing changes.

use super::etcd::{Compare, Etcd, EtcdError, Op};
use super::instances::{self, Instance, Status};
use super::keys;
use super::task_api::{describe_tasks, list_tasks, stop_task};
use crate::ecs::container_instances::{
    Attribute, ContainerInstance, DescribeContainerInstancesRequest,
    DescribeContainerInstancesResponse, ListContainerInstancesRequest,
    ListContainerInstancesResponse,
};
use crate::ecs::shapes::Failure;
use crate::ecs::{Ecs, EcsError, EcsResult, cluster_or_default, page};
use crate::store::ClusterStatus;
use crate::taskdef::query::Query;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The operations answered from etcd in cluster mode, each declared once: its name, the
/// function that answers it (request and response types are that function's), listed in
/// [`OPERATIONS`] and dispatched by [`dispatch`].
macro_rules! cluster_operations {
    ($($op:ident => $call:ident),* $(,)?) => {
        /// The operations answered from etcd in cluster mode.
        pub const OPERATIONS: &[&str] = &[$(stringify!($op)),*];

        async fn dispatch(ecs: &Ecs, etcd: &Etcd, op: &str, body: &[u8]) -> EcsResult<Value> {
            $(
                if op == stringify!($op) {
                    return encode($call(ecs, etcd, input(body)?).await?);
                }
            )*
            Err(EcsError::UnknownOperation(op.into()))
        }
    };
}

cluster_operations! {
    ListContainerInstances => list,
    DescribeContainerInstances => describe,
    DeregisterContainerInstance => deregister,
    UpdateContainerInstancesState => update_state,
    PutAttributes => put_attributes,
    DeleteAttributes => delete_attributes,
    ListAttributes => list_attributes,
    DescribeTasks => describe_tasks,
    ListTasks => list_tasks,
    StopTask => stop_task,
}

/// ECS's limit of custom attributes on one resource. Ref: ecs.json
/// `AttributeLimitExceededException` ("You can apply up to 10 custom attributes for each
/// resource").
const MAX_CUSTOM_ATTRIBUTES: usize = 10;

/// Operation `op` answered from etcd, when `serve` runs with `--cluster` and `op` is one
/// of [`OPERATIONS`]; `None` otherwise (the one-box path answers).
pub fn call(ecs: &Ecs, op: &str, body: &[u8]) -> Option<EcsResult<Value>> {
    let etcd = super::serving()?;
    if !OPERATIONS.contains(&op) {
        return None;
    }
    Some(super::block_on(dispatch(ecs, etcd, op, body)))
}

/// The request body as `T`, members `T` lacks refused (as the API's own decoding does).
fn input<T: DeserializeOwned>(body: &[u8]) -> EcsResult<T> {
    use crate::taskdef::unknown::{DecodeError, decode};
    let text = std::str::from_utf8(body)
        .map_err(|_| EcsError::Serialization("the body is not UTF-8".into()))?;
    let text = if text.trim().is_empty() { "{}" } else { text };
    decode(text, &crate::taskdef::finding::JsonPath::root()).map_err(|e| match e {
        DecodeError::Malformed(m) => EcsError::Serialization(format!("invalid request body: {m}")),
        DecodeError::Unknown(_) => EcsError::invalid(e.to_string()),
    })
}

fn encode<T: Serialize>(response: T) -> EcsResult<Value> {
    serde_json::to_value(response).map_err(|e| {
        EcsError::Server(anyhow::Error::from(e).context("failed to encode the response"))
    })
}

/// An etcd failure as the API's ServerException, naming the endpoint and the call.
fn server(e: EtcdError) -> EcsError {
    EcsError::Server(anyhow::Error::from(e).context("the cluster state in etcd is unavailable"))
}

/// The cluster a request names, and its container instances: ClusterNotFoundException
/// when it has none and this serve's store has no such ACTIVE cluster.
async fn cluster_instances(
    ecs: &Ecs,
    etcd: &Etcd,
    cluster: Option<&str>,
) -> EcsResult<(String, Vec<Instance>)> {
    let name = crate::ecs::names::cluster_name(cluster_or_default(cluster)).to_string();
    let all = instances::load(etcd, &name).await.map_err(server)?;
    if all.is_empty() {
        let store = ecs.open_store()?;
        match store.cluster(&name).map_err(anyhow::Error::from)? {
            Some(c) if c.status == ClusterStatus::Active => {}
            _ => return Err(crate::ecs::clusters::not_found_cluster(&name)),
        }
    }
    Ok((name, all))
}

/// The instance a reference (id or ARN) names.
fn find<'a>(all: &'a [Instance], reference: &str) -> Option<&'a Instance> {
    let id = reference.rsplit('/').next().unwrap_or(reference);
    all.iter().find(|i| i.reg.id == id)
}

/// ListContainerInstances. Without `status`, every instance but INACTIVE ones (ECS:
/// "the default is to include container instances set to all states other than
/// INACTIVE").
async fn list(
    ecs: &Ecs,
    etcd: &Etcd,
    req: ListContainerInstancesRequest,
) -> EcsResult<ListContainerInstancesResponse> {
    const STATUSES: [&str; 5] = [
        "ACTIVE",
        "DRAINING",
        "REGISTERING",
        "DEREGISTERING",
        "REGISTRATION_FAILED",
    ];
    if let Some(s) = req.status.as_deref()
        && !STATUSES.contains(&s)
    {
        return Err(EcsError::invalid(format!(
            "status {s:?}: must be one of {}",
            STATUSES.join(", ")
        )));
    }
    let query = match req.filter.as_deref().map(str::trim) {
        Some(f) if !f.is_empty() => {
            Some(Query::parse(f).map_err(|e| EcsError::invalid(format!("filter {f:?}: {e}")))?)
        }
        _ => None,
    };
    let (_, all) = cluster_instances(ecs, etcd, req.cluster.as_deref()).await?;
    let arns: Vec<String> = all
        .iter()
        .filter(|i| i.status != Status::Inactive)
        .filter(|i| req.status.as_deref().is_none_or(|s| s == i.status.as_str()))
        .filter(|i| query.as_ref().is_none_or(|q| q.matches(i)))
        .map(Instance::arn)
        .collect();
    let (container_instance_arns, next_token) =
        page(arns, req.max_results, 100, req.next_token.as_deref())?;
    Ok(ListContainerInstancesResponse {
        container_instance_arns,
        next_token,
    })
}

/// DescribeContainerInstances: unknown ones are MISSING failures.
async fn describe(
    ecs: &Ecs,
    etcd: &Etcd,
    req: DescribeContainerInstancesRequest,
) -> EcsResult<DescribeContainerInstancesResponse> {
    if req.container_instances.is_empty() || req.container_instances.len() > 100 {
        return Err(EcsError::invalid(format!(
            "containerInstances: {} given; name 1 to 100 container instance ids or ARNs",
            req.container_instances.len()
        )));
    }
    for i in &req.include {
        if i != "TAGS" && i != "CONTAINER_INSTANCE_HEALTH" {
            return Err(EcsError::invalid(format!(
                "include {i:?}: must be TAGS or CONTAINER_INSTANCE_HEALTH"
            )));
        }
    }
    let (_, all) = cluster_instances(ecs, etcd, req.cluster.as_deref()).await?;
    let mut out = DescribeContainerInstancesResponse {
        container_instances: Vec::new(),
        failures: Vec::new(),
    };
    for r in &req.container_instances {
        match find(&all, r) {
            Some(i) => out.container_instances.push(i.shape()),
            None => out.failures.push(Failure::missing(r.clone())),
        }
    }
    Ok(out)
}

/// ecs.json `DeregisterContainerInstanceRequest`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeregisterContainerInstanceRequest {
    pub cluster: Option<String>,
    pub container_instance: String,
    /// Deregister with tasks still on it: they are stopped (docs/cluster.md).
    pub force: Option<bool>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeregisterContainerInstanceResponse {
    pub container_instance: ContainerInstance,
}

/// DeregisterContainerInstance: the instance becomes INACTIVE (still described, no
/// longer listed), as in ECS.
async fn deregister(
    ecs: &Ecs,
    etcd: &Etcd,
    req: DeregisterContainerInstanceRequest,
) -> EcsResult<DeregisterContainerInstanceResponse> {
    // INACTIVE is written only while the status and the ledger are as read (a task placed
    // meanwhile changes the ledger: read again and decide again).
    let mut attempt = 0;
    let (cluster, mut i) = loop {
        let (cluster, all) = cluster_instances(ecs, etcd, req.cluster.as_deref()).await?;
        let Some(i) = find(&all, &req.container_instance) else {
            return Err(EcsError::invalid(format!(
                "containerInstance {:?}: no such container instance in cluster {cluster}",
                req.container_instance
            )));
        };
        let i = i.clone();
        // Ref: an ECS maintainer (aws/amazon-ecs-agent#125): "the API won't let you succeed
        // unless you have [stopped all tasks] or use the force flag".
        if !i.ledger.tasks.is_empty() && req.force != Some(true) {
            return Err(EcsError::invalid(format!(
                "container instance {} has {} task(s) placed on it that are not STOPPED: stop \
                 them first, or deregister it with force (its tasks are then stopped, and \
                 services replace theirs elsewhere)",
                i.arn(),
                i.ledger.tasks.len()
            )));
        }
        let status_key = keys::status(&cluster, &i.reg.id);
        let mut compares = vec![Compare::ModRevision(status_key.clone(), i.status_revision)];
        if req.force != Some(true) {
            let ledger = keys::ledger(&cluster, &i.reg.id);
            compares.push(match i.ledger_revision {
                0 => Compare::Absent(ledger),
                rev => Compare::ModRevision(ledger, rev),
            });
        }
        let put = Op::Put(status_key, Status::Inactive.as_str().as_bytes().to_vec());
        match etcd.txn(&compares, &[put]).await {
            Ok(true) => break (cluster, i),
            Ok(false) => {}
            // Its answer lost: read again and decide again (INACTIVE by this very write is
            // then found as read, and written so once more).
            Err(e) if may_have_applied(&e) => {
                tracing::warn!(instance = %i.reg.id, error = %e,
                    "DeregisterContainerInstance: etcd's answer lost: reading back");
            }
            Err(e) => return Err(server(e)),
        }
        attempt += 1;
        if attempt >= CHANGED_ATTEMPTS {
            return Err(changed_under(&i, attempt));
        }
    };
    // With force: INACTIVE first (no placement lands after it: placement compares the
    // status), then every task its ledger holds is stopped.
    // Both steps read what is left and are done again after a lost answer: the instance is
    // INACTIVE (the deregistration took effect), so a passing etcd fault is waited out
    // rather than answered as an error.
    if req.force == Some(true) {
        let reason = format!("Container instance {} was deregistered with force", i.arn());
        until_done("stop its tasks", &i, || {
            super::leader::stop_instance_tasks(etcd, &cluster, &i.reg.id, &reason, false)
        })
        .await?;
        i.ledger = Default::default();
    }
    // Its task subnet goes with it: the other boxes drop their routes to it.
    until_done("release its task subnet", &i, || {
        super::subnets::release(etcd, &cluster, &i.reg.id, None)
    })
    .await?;
    i.status = Status::Inactive;
    Ok(DeregisterContainerInstanceResponse {
        container_instance: i.shape(),
    })
}

/// ecs.json `UpdateContainerInstancesStateRequest`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateContainerInstancesStateRequest {
    pub cluster: Option<String>,
    #[serde(default)]
    pub container_instances: Vec<String>,
    pub status: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateContainerInstancesStateResponse {
    pub container_instances: Vec<ContainerInstance>,
    pub failures: Vec<Failure>,
}

/// UpdateContainerInstancesState: ACTIVE or DRAINING recorded (what DRAINING does to
/// placement is a later step: docs/cluster.md). Ref: API_UpdateContainerInstancesState
/// ("You can change the status of a container instance to DRAINING … or ACTIVE").
async fn update_state(
    ecs: &Ecs,
    etcd: &Etcd,
    req: UpdateContainerInstancesStateRequest,
) -> EcsResult<UpdateContainerInstancesStateResponse> {
    let status = match req.status.as_str() {
        "ACTIVE" => Status::Active,
        "DRAINING" => Status::Draining,
        other => {
            return Err(EcsError::invalid(format!(
                "status {other:?}: a container instance's state can be set to ACTIVE or DRAINING"
            )));
        }
    };
    if req.container_instances.is_empty() || req.container_instances.len() > 10 {
        return Err(EcsError::invalid(format!(
            "containerInstances: {} given; name 1 to 10 container instance ids or ARNs",
            req.container_instances.len()
        )));
    }
    let (_, all) = cluster_instances(ecs, etcd, req.cluster.as_deref()).await?;
    let mut out = UpdateContainerInstancesStateResponse {
        container_instances: Vec::new(),
        failures: Vec::new(),
    };
    for r in &req.container_instances {
        match find(&all, r) {
            None => out.failures.push(Failure::missing(r.clone())),
            Some(i) if i.status == Status::Inactive => out.failures.push(Failure {
                arn: i.arn(),
                reason: "INACTIVE".into(),
            }),
            Some(i) => match set_status(ecs, etcd, &req, i.clone(), status).await? {
                Ok(i) => out.container_instances.push(i.shape()),
                Err(f) => out.failures.push(f),
            },
        }
    }
    Ok(out)
}

/// How many times a decision on an instance is read and taken again after it changed
/// under it.
const CHANGED_ATTEMPTS: usize = 8;

/// How long an idempotent step of a write that already took effect is tried again.
const FINISH_WITHIN: std::time::Duration = std::time::Duration::from_secs(20);

/// Whether a write that failed with `e` may still have been applied: its answer was lost
/// after it was sent, or etcd answered it unavailable (a proposal that timed out or
/// whose leader changed may still commit). Ref: etcd's api/v3rpc/rpctypes
/// (`ErrTimeout`, `ErrLeaderChanged`: codes.Unavailable, HTTP 503 on the gateway).
fn may_have_applied(e: &EtcdError) -> bool {
    match e {
        EtcdError::OutcomeUnknown { .. } => true,
        EtcdError::Refused { status, .. } => *status >= 500,
        _ => false,
    }
}

/// Runs `step` (idempotent: it reads what is left to do) until it succeeds, for at most
/// [`FINISH_WITHIN`]; its last error names `what` was left undone on `i`.
async fn until_done<T, F, Fut>(what: &str, i: &Instance, mut step: F) -> EcsResult<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, EtcdError>>,
{
    let deadline = tokio::time::Instant::now() + FINISH_WITHIN;
    loop {
        match step().await {
            Ok(v) => return Ok(v),
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(instance = %i.reg.id, error = %e, "{what}: trying again");
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            Err(e) => {
                return Err(EcsError::Server(anyhow::Error::from(e).context(format!(
                    "container instance {} is INACTIVE, but this call could not {what} \
                     (etcd out of reach for {} s): deregister it again to finish",
                    i.arn(),
                    FINISH_WITHIN.as_secs()
                ))));
            }
        }
    }
}

fn changed_under(i: &Instance, attempts: usize) -> EcsError {
    EcsError::Server(anyhow::anyhow!(
        "container instance {} changed under {attempts} attempts in a row (others are \
         changing it): try again",
        i.arn()
    ))
}

/// Sets `i`'s status to `status` only while it is the status read (a transaction on its
/// revision): after a change under it, the instance is read again, and one that became
/// INACTIVE meanwhile is a failure, never brought back.
async fn set_status(
    ecs: &Ecs,
    etcd: &Etcd,
    req: &UpdateContainerInstancesStateRequest,
    mut i: Instance,
    status: Status,
) -> EcsResult<Result<Instance, Failure>> {
    let mut lost = false;
    for _ in 0..CHANGED_ATTEMPTS {
        if i.status == Status::Inactive {
            return Ok(Err(Failure {
                arn: i.arn(),
                reason: "INACTIVE".into(),
            }));
        }
        // Read back after a lost answer: already what was asked is the answer.
        if lost && i.status == status {
            return Ok(Ok(i));
        }
        let key = keys::status(&i.cluster, &i.reg.id);
        match etcd
            .txn(
                &[Compare::ModRevision(key.clone(), i.status_revision)],
                &[Op::Put(key, status.as_str().as_bytes().to_vec())],
            )
            .await
        {
            Ok(true) => {
                i.status = status;
                return Ok(Ok(i));
            }
            Ok(false) => {}
            Err(e) if may_have_applied(&e) => {
                tracing::warn!(instance = %i.reg.id, error = %e,
                    "UpdateContainerInstancesState: etcd's answer lost: reading back");
                lost = true;
            }
            Err(e) => return Err(server(e)),
        }
        let (_, all) = cluster_instances(ecs, etcd, req.cluster.as_deref()).await?;
        match all.into_iter().find(|x| x.reg.id == i.reg.id) {
            Some(x) => i = x,
            None => return Ok(Err(Failure::missing(i.arn()))),
        }
    }
    Err(changed_under(&i, CHANGED_ATTEMPTS))
}

/// ecs.json `PutAttributesRequest` and `DeleteAttributesRequest`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttributesRequest {
    pub cluster: Option<String>,
    #[serde(default)]
    pub attributes: Vec<Attribute>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttributesResponse {
    pub attributes: Vec<Attribute>,
}

/// The one target type of ECS's attributes. Ref: ecs.json `TargetType`.
const TARGET_TYPE: &str = "container-instance";

/// An attribute's name and value as ECS allows them. Ref: API_Attribute (`name`: up to
/// 128 letters, numbers, hyphens, underscores, forward and back slashes, periods;
/// `value`: up to 128 letters, numbers, hyphens, underscores, periods, at signs, forward
/// and back slashes, colons, spaces, not starting or ending with a space).
fn check_attribute(a: &Attribute, with_value: bool) -> EcsResult<()> {
    if !instances::attribute_name_ok(&a.name) {
        return Err(EcsError::invalid(format!(
            "attribute name {:?}: 1 to 128 letters, numbers, hyphens, underscores, slashes, \
             back slashes or periods",
            a.name
        )));
    }
    if let (true, Some(v)) = (with_value, &a.value)
        && !instances::attribute_value_ok(v)
    {
        return Err(EcsError::invalid(format!(
            "attribute {} value {v:?}: 1 to 128 letters, numbers, hyphens, underscores, \
             periods, at signs, slashes, back slashes, colons or spaces, not starting or \
             ending with a space",
            a.name
        )));
    }
    if let Some(t) = &a.target_type
        && t != TARGET_TYPE
    {
        return Err(EcsError::invalid(format!(
            "attribute {} targetType {t:?}: must be {TARGET_TYPE}",
            a.name
        )));
    }
    if a.target_id.as_deref().is_none_or(str::is_empty) {
        return Err(EcsError::invalid(format!(
            "attribute {}: targetId names the container instance (its id or ARN)",
            a.name
        )));
    }
    Ok(())
}

/// The instance an attribute targets: TargetNotFoundException otherwise.
fn target<'a>(all: &'a [Instance], a: &Attribute) -> EcsResult<&'a Instance> {
    let r = a.target_id.as_deref().unwrap_or_default();
    find(all, r)
        .filter(|i| i.status != Status::Inactive)
        .ok_or_else(|| {
            EcsError::TargetNotFound(format!(
                "Could not find {r}: no ACTIVE or DRAINING container instance of that id"
            ))
        })
}

/// PutAttributes: custom attributes on container instances.
async fn put_attributes(
    ecs: &Ecs,
    etcd: &Etcd,
    req: AttributesRequest,
) -> EcsResult<AttributesResponse> {
    if req.attributes.is_empty() {
        return Err(EcsError::invalid("attributes: name at least one attribute"));
    }
    let (cluster, all) = cluster_instances(ecs, etcd, req.cluster.as_deref()).await?;
    let mut after: std::collections::BTreeMap<&str, std::collections::BTreeSet<&str>> =
        Default::default();
    for a in &req.attributes {
        check_attribute(a, true)?;
        let i = target(&all, a)?;
        let names = after
            .entry(&i.reg.id)
            .or_insert_with(|| i.custom.keys().map(String::as_str).collect());
        names.insert(&a.name);
        if names.len() > MAX_CUSTOM_ATTRIBUTES {
            return Err(EcsError::AttributeLimitExceeded(format!(
                "{}: at most {MAX_CUSTOM_ATTRIBUTES} custom attributes on one container instance",
                i.arn()
            )));
        }
    }
    let mut out = Vec::new();
    for a in &req.attributes {
        let i = target(&all, a)?;
        etcd.put(
            &keys::attribute(&cluster, &i.reg.id, &a.name),
            &instances::attribute_bytes(a.value.as_deref()),
            None,
        )
        .await
        .map_err(server)?;
        out.push(Attribute {
            target_type: Some(TARGET_TYPE.into()),
            target_id: Some(i.arn()),
            ..a.clone()
        });
    }
    Ok(AttributesResponse { attributes: out })
}

/// DeleteAttributes: custom attributes removed (an absent one is no error, as in ECS).
async fn delete_attributes(
    ecs: &Ecs,
    etcd: &Etcd,
    req: AttributesRequest,
) -> EcsResult<AttributesResponse> {
    if req.attributes.is_empty() {
        return Err(EcsError::invalid("attributes: name at least one attribute"));
    }
    let (cluster, all) = cluster_instances(ecs, etcd, req.cluster.as_deref()).await?;
    let mut out = Vec::new();
    for a in &req.attributes {
        check_attribute(a, false)?;
        let i = target(&all, a)?;
        etcd.delete(&keys::attribute(&cluster, &i.reg.id, &a.name))
            .await
            .map_err(server)?;
        out.push(Attribute {
            target_type: Some(TARGET_TYPE.into()),
            target_id: Some(i.arn()),
            ..a.clone()
        });
    }
    Ok(AttributesResponse { attributes: out })
}

/// ecs.json `ListAttributesRequest`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListAttributesRequest {
    pub cluster: Option<String>,
    pub target_type: String,
    pub attribute_name: Option<String>,
    pub attribute_value: Option<String>,
    pub next_token: Option<String>,
    pub max_results: Option<i64>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListAttributesResponse {
    pub attributes: Vec<Attribute>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// ListAttributes: every attribute (built-in and custom) of the cluster's ACTIVE and
/// DRAINING container instances, by name and value when given.
async fn list_attributes(
    ecs: &Ecs,
    etcd: &Etcd,
    req: ListAttributesRequest,
) -> EcsResult<ListAttributesResponse> {
    if req.target_type != TARGET_TYPE {
        return Err(EcsError::invalid(format!(
            "targetType {:?}: must be {TARGET_TYPE}",
            req.target_type
        )));
    }
    if req.attribute_value.is_some() && req.attribute_name.is_none() {
        return Err(EcsError::invalid(
            "attributeValue is given only with attributeName",
        ));
    }
    let (_, all) = cluster_instances(ecs, etcd, req.cluster.as_deref()).await?;
    let mut items = Vec::new();
    for i in all.iter().filter(|i| i.status != Status::Inactive) {
        for a in i.attributes() {
            if req.attribute_name.as_deref().is_some_and(|n| n != a.name)
                || req
                    .attribute_value
                    .as_deref()
                    .is_some_and(|v| Some(v) != a.value.as_deref())
            {
                continue;
            }
            items.push(Attribute {
                name: a.name,
                value: a.value,
                target_type: Some(TARGET_TYPE.into()),
                target_id: Some(i.arn()),
            });
        }
    }
    let (attributes, next_token) = page(items, req.max_results, 100, req.next_token.as_deref())?;
    Ok(ListAttributesResponse {
        attributes,
        next_token,
    })
}

#[cfg(test)]
mod tests {
    /// Each request type takes every member of the operation's input in ECS's model
    /// (botocore's, as the AWS CLI sends them), so none is refused as unknown.
    #[test]
    fn every_ecs_member_is_taken() {
        use super::*;
        use crate::taskdef::members::paths;
        let model = crate::ecs::botocore_model::service_model();
        for (op, ours) in [
            (
                "DeregisterContainerInstance",
                paths::<DeregisterContainerInstanceRequest>(),
            ),
            (
                "UpdateContainerInstancesState",
                paths::<UpdateContainerInstancesStateRequest>(),
            ),
            ("PutAttributes", paths::<AttributesRequest>()),
            ("DeleteAttributes", paths::<AttributesRequest>()),
            ("ListAttributes", paths::<ListAttributesRequest>()),
        ] {
            let input = model["operations"][op]["input"]["shape"].as_str().unwrap();
            let members = model["shapes"][input]["members"].as_object().unwrap();
            for m in members.keys() {
                assert!(ours.contains(m), "{op}: member {m} not taken");
            }
        }
    }
}
