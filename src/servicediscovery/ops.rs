//! Cloud Map's operations: each decodes its request (botocore's member names; an unknown
//! member is refused), checks it as Cloud Map does, changes the resources (written through
//! to the store) and answers the operation's response shape. Operations that are
//! asynchronous on AWS (namespaces, UpdateService, instances) are done at once: their
//! `OperationId` reads SUCCESS at the first GetOperation, as `aws servicediscovery wait`
//! expects.

use super::model::*;
use super::{CloudMap, LOWER, SdError, SdResult, State, UPPER, now, random_of};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The operations served, in the order docs/service-discovery.md lists them.
pub const OPERATIONS: &[&str] = &[
    "CreatePrivateDnsNamespace",
    "CreateHttpNamespace",
    "UpdatePrivateDnsNamespace",
    "UpdateHttpNamespace",
    "GetNamespace",
    "ListNamespaces",
    "DeleteNamespace",
    "GetOperation",
    "ListOperations",
    "CreateService",
    "GetService",
    "ListServices",
    "UpdateService",
    "DeleteService",
    "RegisterInstance",
    "DeregisterInstance",
    "GetInstance",
    "ListInstances",
    "DiscoverInstances",
    "DiscoverInstancesRevision",
    "GetInstancesHealthStatus",
    "UpdateInstanceCustomHealthStatus",
    "ListTagsForResource",
    "TagResource",
    "UntagResource",
];

/// Runs operation `op` with the JSON `body`.
pub fn call(cm: &CloudMap, op: &str, body: &[u8]) -> SdResult<Value> {
    let out = match op {
        "CreatePrivateDnsNamespace" => create_private_dns_namespace(cm, decode(body)?),
        "CreateHttpNamespace" => create_http_namespace(cm, decode(body)?),
        "UpdatePrivateDnsNamespace" => {
            update_namespace(cm, decode(body)?, NamespaceType::DnsPrivate)
        }
        "UpdateHttpNamespace" => update_namespace(cm, decode(body)?, NamespaceType::Http),
        "GetNamespace" => get_namespace(cm, decode(body)?),
        "ListNamespaces" => list_namespaces(cm, decode(body)?),
        "DeleteNamespace" => delete_namespace(cm, decode(body)?),
        "GetOperation" => get_operation(cm, decode(body)?),
        "ListOperations" => list_operations(cm, decode(body)?),
        "CreateService" => create_service(cm, decode(body)?),
        "GetService" => get_service(cm, decode(body)?),
        "ListServices" => list_services(cm, decode(body)?),
        "UpdateService" => update_service(cm, decode(body)?),
        "DeleteService" => delete_service(cm, decode(body)?),
        "RegisterInstance" => register_instance(cm, decode(body)?),
        "DeregisterInstance" => deregister_instance(cm, decode(body)?),
        "GetInstance" => get_instance(cm, decode(body)?),
        "ListInstances" => list_instances(cm, decode(body)?),
        "DiscoverInstances" => discover_instances(cm, decode(body)?),
        "DiscoverInstancesRevision" => discover_instances_revision(cm, decode(body)?),
        "GetInstancesHealthStatus" => get_instances_health_status(cm, decode(body)?),
        "UpdateInstanceCustomHealthStatus" => update_custom_health(cm, decode(body)?),
        "ListTagsForResource" => list_tags(cm, decode(body)?),
        "TagResource" => tag_resource(cm, decode(body)?),
        "UntagResource" => untag_resource(cm, decode(body)?),
        other => Err(SdError::UnknownOperation(format!(
            "Route53AutoNaming_v20170314.{other} is not an operation served here (it \
             serves {}; docs/service-discovery.md)",
            OPERATIONS.join(", ")
        ))),
    }?;
    if matches!(
        op,
        "CreatePrivateDnsNamespace"
            | "DeleteNamespace"
            | "CreateService"
            | "UpdateService"
            | "DeleteService"
            | "RegisterInstance"
            | "DeregisterInstance"
            | "UpdateInstanceCustomHealthStatus"
    ) {
        cm.publish();
    }
    Ok(out)
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> SdResult<T> {
    let body = if body.is_empty() {
        b"{}" as &[u8]
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| SdError::InvalidInput(format!("{e}")))
}

fn invalid<T>(msg: impl Into<String>) -> SdResult<T> {
    Err(SdError::InvalidInput(msg.into()))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct CreateNamespace {
    name: String,
    creator_request_id: Option<String>,
    description: Option<String>,
    vpc: Option<String>,
    #[serde(default)]
    tags: Vec<Tag>,
    properties: Option<Value>,
}

/// A DNS name of labels of letters, digits and hyphens (Route 53's hosted zone names).
fn valid_domain(name: &str) -> bool {
    let n = name.strip_suffix('.').unwrap_or(name);
    !n.is_empty()
        && n.len() <= 253
        && n.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

fn check_tags(tags: &[Tag]) -> SdResult<()> {
    if tags.len() > 200 {
        return Err(SdError::InvalidInput(
            "Tags: a resource has at most 200 tags".into(),
        ));
    }
    for t in tags {
        if t.key.is_empty() || t.key.len() > 128 || t.value.len() > 256 {
            return invalid(format!(
                "Tag {:?}: keys are 1 to 128 characters, values at most 256",
                t.key
            ));
        }
    }
    Ok(())
}

fn operation(s: &mut State, kind: &str, targets: &[(&str, &str)]) -> SdResult<String> {
    let id = format!("{}-{}", random_of(LOWER, 32), random_of(LOWER, 8));
    let t = now();
    let o = Operation {
        id: id.clone(),
        kind: kind.into(),
        status: "SUCCESS".into(),
        create_date: t,
        update_date: t,
        targets: targets
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    s.save_operation(&o)?;
    s.operations.insert(id.clone(), o);
    Ok(id)
}

fn create_namespace(cm: &CloudMap, r: CreateNamespace, kind: NamespaceType) -> SdResult<Value> {
    if r.name.starts_with("arn:") {
        return invalid("Name: a namespace's name is not an ARN");
    }
    let soa_ttl = match (&kind, &r.properties) {
        (NamespaceType::DnsPrivate, Some(p)) => {
            let ttl = p["DnsProperties"]["SOA"]["TTL"].as_i64();
            match ttl {
                Some(t) if (0..=2_147_483_647).contains(&t) => Some(t),
                _ => {
                    return invalid(
                        "Properties.DnsProperties.SOA.TTL: a number of seconds from 0 to 2147483647 is required",
                    );
                }
            }
        }
        _ => None,
    };
    match kind {
        NamespaceType::DnsPrivate => {
            if !valid_domain(&r.name) {
                return invalid(format!(
                    "Name {:?} is not a valid domain name (labels of letters, digits and hyphens, at most 63 characters each)",
                    r.name
                ));
            }
            if r.vpc.as_deref().is_none_or(str::is_empty) {
                return invalid("Vpc is required for a private DNS namespace");
            }
        }
        NamespaceType::Http => {
            if r.name.is_empty()
                || r.name.len() > 1024
                || !r.name.bytes().all(|b| (b'!'..=b'~').contains(&b))
            {
                return invalid(format!(
                    "Name {:?}: 1 to 1024 printable characters without spaces",
                    r.name
                ));
            }
        }
    }
    check_tags(&r.tags)?;
    let name = r.name.trim_end_matches('.').to_string();
    cm.with(|s| {
        if let Some(n) = s
            .namespaces
            .values()
            .find(|n| n.name.eq_ignore_ascii_case(&name))
        {
            // The same request again (its CreatorRequestId) is the same operation.
            if r.creator_request_id.is_some()
                && n.creator_request_id == r.creator_request_id
                && let Some(o) = s.operations.values().find(|o| {
                    o.kind == "CREATE_NAMESPACE" && o.targets.get("NAMESPACE") == Some(&n.id)
                })
            {
                return Ok(json!({"OperationId": o.id}));
            }
            return Err(SdError::NamespaceAlreadyExists {
                message: format!("Namespace with name {} already exists ({})", name, n.id),
                namespace_id: n.id.clone(),
                creator_request_id: n.creator_request_id.clone(),
            });
        }
        let id = format!("ns-{}", random_of(LOWER, 16));
        let dns = kind == NamespaceType::DnsPrivate;
        let n = Namespace {
            arn: format!(
                "arn:aws:servicediscovery:{}:{}:namespace/{id}",
                cm.aws.region, cm.aws.account_id
            ),
            id: id.clone(),
            name,
            kind,
            description: r.description,
            create_date: now(),
            creator_request_id: r.creator_request_id,
            hosted_zone_id: dns.then(|| format!("Z{}", random_of(UPPER, 20))),
            soa_ttl: if dns {
                Some(soa_ttl.unwrap_or(DEFAULT_SOA_TTL))
            } else {
                None
            },
            vpc: r.vpc,
            tags: r.tags,
        };
        s.save_namespace(&n)?;
        s.namespaces.insert(id.clone(), n);
        let op = operation(s, "CREATE_NAMESPACE", &[("NAMESPACE", &id)])?;
        Ok(json!({"OperationId": op}))
    })
}

fn create_private_dns_namespace(cm: &CloudMap, r: CreateNamespace) -> SdResult<Value> {
    create_namespace(cm, r, NamespaceType::DnsPrivate)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct CreateHttpNamespace {
    name: String,
    creator_request_id: Option<String>,
    description: Option<String>,
    #[serde(default)]
    tags: Vec<Tag>,
}

fn create_http_namespace(cm: &CloudMap, r: CreateHttpNamespace) -> SdResult<Value> {
    create_namespace(
        cm,
        CreateNamespace {
            name: r.name,
            creator_request_id: r.creator_request_id,
            description: r.description,
            vpc: None,
            tags: r.tags,
            properties: None,
        },
        NamespaceType::Http,
    )
}

/// The ARN of the namespace an ECS cluster's `serviceConnectDefaults.namespace` `x` names:
/// an existing one (by name or ARN), else a new HTTP namespace named `x`, made as ECS makes
/// it. Ref: ecs.json `ClusterServiceConnectDefaultsRequest.namespace` ("If you enter an
/// existing namespace name or ARN, then that namespace will be used. [...] If you enter a
/// new name, a Cloud Map namespace will be created [...] the \"HTTP\" namespace type").
/// An ARN of no namespace here is NamespaceNotFound (a name is made, an ARN cannot be).
pub fn service_connect_namespace(cm: &CloudMap, x: &str) -> SdResult<String> {
    let found = |cm: &CloudMap| cm.with(|s| Ok(s.namespace_named(x).map(|n| n.arn.clone())));
    if let Some(arn) = found(cm)? {
        return Ok(arn);
    }
    if x.starts_with("arn:") {
        return Err(SdError::NamespaceNotFound(format!(
            "Namespace {x} not found"
        )));
    }
    create_http_namespace(
        cm,
        CreateHttpNamespace {
            name: x.to_string(),
            creator_request_id: None,
            description: Some("the default Service Connect namespace of an ECS cluster".into()),
            tags: Vec::new(),
        },
    )?;
    found(cm)?.ok_or_else(|| SdError::NamespaceNotFound(format!("Namespace {x} not found")))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct ById {
    id: String,
}

/// The id of a namespace or service given by id or ARN.
fn id_of(v: &str) -> &str {
    v.rsplit('/').next().unwrap_or(v)
}

fn namespace_of<'a>(s: &'a State, id: &str) -> SdResult<&'a Namespace> {
    s.namespaces
        .get(id_of(id))
        .ok_or_else(|| SdError::NamespaceNotFound(format!("Namespace not found: {id}")))
}

fn service_of<'a>(s: &'a State, id: &str) -> SdResult<&'a Service> {
    s.services
        .get(id_of(id))
        .ok_or_else(|| SdError::ServiceNotFound(format!("Service not found: {id}")))
}

fn get_namespace(cm: &CloudMap, r: ById) -> SdResult<Value> {
    cm.with(|s| {
        let n = namespace_of(s, &r.id)?;
        Ok(json!({"Namespace": n.to_api(cm.account(), s.service_count(&n.id))}))
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct Filter {
    name: String,
    values: Vec<String>,
    condition: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct ListRequest {
    next_token: Option<String>,
    max_results: Option<i64>,
    #[serde(default)]
    filters: Vec<Filter>,
}

/// Whether `value` passes filter `f` (EQ, IN or BEGINS_WITH as `allowed` says).
fn passes(f: &Filter, value: &str, allowed: &[&str]) -> SdResult<bool> {
    let cond = f.condition.as_deref().unwrap_or("EQ");
    if !allowed.contains(&cond) {
        return invalid(format!(
            "Filter {}: condition {cond} is not supported for it (use {})",
            f.name,
            allowed.join(" or ")
        ));
    }
    if f.values.is_empty() || (cond != "IN" && f.values.len() != 1) {
        return invalid(format!(
            "Filter {}: {cond} takes {} value",
            f.name,
            if cond == "IN" {
                "at least one"
            } else {
                "exactly one"
            }
        ));
    }
    Ok(match cond {
        "BEGINS_WITH" => value.starts_with(&f.values[0]),
        _ => f.values.iter().any(|v| v == value),
    })
}

/// One page of `items` from `next_token` (an offset), `max` at most (1 to `bound`).
fn page(
    items: Vec<Value>,
    next_token: Option<&str>,
    max: Option<i64>,
    bound: i64,
    default: i64,
) -> SdResult<(Vec<Value>, Option<String>)> {
    let max = max.unwrap_or(default);
    if !(1..=bound).contains(&max) {
        return invalid(format!("MaxResults: from 1 to {bound}"));
    }
    let start = match next_token {
        Some(t) => t.parse::<usize>().map_err(|_| {
            SdError::InvalidInput(format!("NextToken {t:?} is not one this service gave"))
        })?,
        None => 0,
    };
    let end = (start + max as usize).min(items.len());
    let next = (end < items.len()).then(|| end.to_string());
    Ok((
        items
            .into_iter()
            .skip(start)
            .take(end.saturating_sub(start))
            .collect(),
        next,
    ))
}

fn list_namespaces(cm: &CloudMap, r: ListRequest) -> SdResult<Value> {
    cm.with(|s| {
        let mut out = Vec::new();
        for n in s.namespaces.values() {
            let mut keep = true;
            for f in &r.filters {
                let kind = match n.kind {
                    NamespaceType::DnsPrivate => "DNS_PRIVATE",
                    NamespaceType::Http => "HTTP",
                };
                keep &= match f.name.as_str() {
                    "TYPE" => passes(f, kind, &["EQ", "IN"])?,
                    "NAME" => passes(f, &n.name, &["EQ", "BEGINS_WITH"])?,
                    "HTTP_NAME" => passes(f, &n.name, &["EQ", "BEGINS_WITH"])?,
                    "RESOURCE_OWNER" => passes(f, cm.account(), &["EQ"])?,
                    other => return invalid(format!("Filters: unknown filter name {other}")),
                };
            }
            if keep {
                let mut v = n.to_api(cm.account(), s.service_count(&n.id));
                if let Some(m) = v.as_object_mut() {
                    m.remove("CreatorRequestId");
                }
                out.push(v);
            }
        }
        let (items, next) = page(out, r.next_token.as_deref(), r.max_results, 100, 100)?;
        let mut v = json!({"Namespaces": items});
        if let Some(t) = next {
            v["NextToken"] = t.into();
        }
        Ok(v)
    })
}

fn delete_namespace(cm: &CloudMap, r: ById) -> SdResult<Value> {
    cm.with(|s| {
        let id = namespace_of(s, &r.id)?.id.clone();
        let n = s.service_count(&id);
        if n > 0 {
            return Err(SdError::ResourceInUse(format!(
                "Namespace {id} has {n} associated services: delete them first"
            )));
        }
        s.delete(&id)?;
        s.namespaces.remove(&id);
        let op = operation(s, "DELETE_NAMESPACE", &[("NAMESPACE", &id)])?;
        Ok(json!({"OperationId": op}))
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct UpdateNamespace {
    id: String,
    updater_request_id: Option<String>,
    namespace: NamespaceChange,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct NamespaceChange {
    description: Option<String>,
    properties: Option<Value>,
}

/// UpdatePrivateDnsNamespace and UpdateHttpNamespace (`kind`): the description, and a
/// private DNS namespace's SOA TTL (`Properties.DnsProperties.SOA.TTL`, kept and returned:
/// the tasks' DNS server answers no SOA record). Done at once, as the other operations.
/// Ref: servicediscovery service-2.json `PrivateDnsNamespaceChange`,
/// `HttpNamespaceChange` (`Description` required), `ResourceDescription` (max 1024),
/// `RecordTTL` (0-2147483647); a namespace of another type is InvalidInput.
fn update_namespace(cm: &CloudMap, r: UpdateNamespace, kind: NamespaceType) -> SdResult<Value> {
    if r.updater_request_id.as_ref().is_some_and(|u| u.len() > 64) {
        return invalid("UpdaterRequestId: at most 64 characters");
    }
    let soa_ttl = match (&kind, &r.namespace.properties) {
        (NamespaceType::DnsPrivate, Some(p)) => match p["DnsProperties"]["SOA"]["TTL"].as_i64() {
            Some(t) if (0..=2_147_483_647).contains(&t) => Some(t),
            _ => {
                return invalid(
                    "Namespace.Properties.DnsProperties.SOA.TTL: a number of seconds from 0 to 2147483647 is required",
                );
            }
        },
        (_, Some(_)) => {
            return invalid("Namespace.Properties: an HTTP namespace has none to change");
        }
        (_, None) => None,
    };
    match &r.namespace.description {
        None if kind == NamespaceType::Http => {
            return invalid("Namespace.Description is required");
        }
        Some(d) if d.len() > 1024 => {
            return invalid("Namespace.Description: at most 1024 characters");
        }
        _ => {}
    }
    cm.with(|s| {
        let mut n = namespace_of(s, &r.id)?.clone();
        if n.kind != kind {
            let t = if n.kind == NamespaceType::Http {
                "HTTP"
            } else {
                "DNS_PRIVATE"
            };
            return invalid(format!(
                "Namespace {} is of type {t}: use the update operation of its type",
                n.id
            ));
        }
        if let Some(d) = r.namespace.description {
            n.description = Some(d);
        }
        if soa_ttl.is_some() {
            n.soa_ttl = soa_ttl;
        }
        s.save_namespace(&n)?;
        let id = n.id.clone();
        s.namespaces.insert(id.clone(), n);
        let op = operation(s, "UPDATE_NAMESPACE", &[("NAMESPACE", &id)])?;
        Ok(json!({"OperationId": op}))
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct GetOperation {
    operation_id: String,
    owner_account: Option<String>,
}

fn get_operation(cm: &CloudMap, r: GetOperation) -> SdResult<Value> {
    let _ = r.owner_account;
    cm.with(|s| {
        let o = s.operations.get(&r.operation_id).ok_or_else(|| {
            SdError::OperationNotFound(format!("Operation not found: {}", r.operation_id))
        })?;
        Ok(json!({"Operation": o.to_api(cm.account())}))
    })
}

fn list_operations(cm: &CloudMap, r: ListRequest) -> SdResult<Value> {
    cm.with(|s| {
        let mut ops: Vec<&Operation> = s.operations.values().collect();
        ops.sort_by(|a, b| a.create_date.total_cmp(&b.create_date));
        let mut out = Vec::new();
        for o in ops {
            let mut keep = true;
            for f in &r.filters {
                let target = |k: &str| o.targets.get(k).cloned().unwrap_or_default();
                keep &= match f.name.as_str() {
                    "NAMESPACE_ID" => passes(f, &target("NAMESPACE"), &["EQ"])?,
                    "SERVICE_ID" => passes(f, &target("SERVICE"), &["EQ"])?,
                    "STATUS" => passes(f, &o.status, &["EQ", "IN"])?,
                    "TYPE" => passes(f, &o.kind, &["EQ", "IN"])?,
                    "UPDATE_DATE" => {
                        if f.condition.as_deref() != Some("BETWEEN") || f.values.len() != 2 {
                            return invalid("Filter UPDATE_DATE: BETWEEN with two timestamps");
                        }
                        let b: Vec<f64> = f
                            .values
                            .iter()
                            .map(|v| v.parse::<f64>())
                            .collect::<Result<_, _>>()
                            .map_err(|_| {
                                SdError::InvalidInput("Filter UPDATE_DATE: epoch seconds".into())
                            })?;
                        o.update_date >= b[0] && o.update_date <= b[1]
                    }
                    other => return invalid(format!("Filters: unknown filter name {other}")),
                };
            }
            if keep {
                out.push(json!({"Id": o.id, "Status": o.status}));
            }
        }
        let (items, next) = page(out, r.next_token.as_deref(), r.max_results, 100, 100)?;
        let mut v = json!({"Operations": items});
        if let Some(t) = next {
            v["NextToken"] = t.into();
        }
        Ok(v)
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct CreateService {
    name: String,
    namespace_id: Option<String>,
    creator_request_id: Option<String>,
    description: Option<String>,
    dns_config: Option<DnsConfig>,
    health_check_config: Option<HealthCheckConfig>,
    health_check_custom_config: Option<HealthCheckCustomConfig>,
    #[serde(default)]
    tags: Vec<Tag>,
    #[serde(rename = "Type")]
    kind: Option<String>,
}

/// A service's name: DNS labels (letters, digits, hyphens, underscores), 127 characters at
/// most (the model's pattern).
fn valid_service_name(n: &str) -> bool {
    if n == "." {
        return true;
    }
    n.len() <= 127
        && n.split('.').all(|l| {
            let b = l.as_bytes();
            match b.len() {
                0 => false,
                1 => b[0].is_ascii_alphanumeric(),
                2..=63 => {
                    let edge = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
                    edge(b[0]) && edge(b[b.len() - 1]) && b.iter().all(|c| edge(*c) || *c == b'-')
                }
                _ => false,
            }
        })
}

fn check_records(records: &[DnsRecord]) -> SdResult<()> {
    if records.is_empty() {
        return invalid("DnsConfig.DnsRecords: at least one record is required");
    }
    for (i, r) in records.iter().enumerate() {
        if !(0..=2_147_483_647).contains(&r.ttl) {
            return invalid("DnsRecords.TTL: from 0 to 2147483647 seconds");
        }
        if records[..i].iter().any(|o| o.kind == r.kind) {
            return invalid(format!("DnsRecords: {:?} is given twice", r.kind));
        }
    }
    if records.iter().any(|r| r.kind == RecordType::Cname) && records.len() > 1 {
        return invalid("DnsRecords: a CNAME record cannot be combined with other records");
    }
    Ok(())
}

fn check_health(
    h: &Option<HealthCheckConfig>,
    c: &Option<HealthCheckCustomConfig>,
) -> SdResult<()> {
    if h.is_some() && c.is_some() {
        return invalid(
            "HealthCheckConfig and HealthCheckCustomConfig: specify one or the other, not both",
        );
    }
    if let Some(h) = h {
        if !["HTTP", "HTTPS", "TCP"].contains(&h.kind.as_str()) {
            return invalid("HealthCheckConfig.Type: HTTP, HTTPS or TCP");
        }
        if h.kind == "TCP" && h.resource_path.is_some() {
            return invalid("HealthCheckConfig.ResourcePath: not for a TCP health check");
        }
        if h.failure_threshold.is_some_and(|f| !(1..=10).contains(&f)) {
            return invalid("HealthCheckConfig.FailureThreshold: from 1 to 10");
        }
    }
    if let Some(c) = c
        && c.failure_threshold.is_some_and(|f| !(1..=10).contains(&f))
    {
        return invalid("HealthCheckCustomConfig.FailureThreshold: from 1 to 10");
    }
    Ok(())
}

fn create_service(cm: &CloudMap, r: CreateService) -> SdResult<Value> {
    if !valid_service_name(&r.name) {
        return invalid(format!("Name {:?} is not a valid service name", r.name));
    }
    if r.kind.as_deref().is_some_and(|k| k != "HTTP") {
        return invalid("Type: the only value is HTTP");
    }
    check_health(&r.health_check_config, &r.health_check_custom_config)?;
    check_tags(&r.tags)?;
    if let Some(d) = &r.dns_config {
        check_records(&d.dns_records)?;
    }
    let ns_id = r
        .namespace_id
        .clone()
        .or_else(|| r.dns_config.as_ref().and_then(|d| d.namespace_id.clone()))
        .ok_or_else(|| SdError::InvalidInput("NamespaceId is required".into()))?;
    cm.with(|s| {
        let ns = namespace_of(s, &ns_id)?.clone();
        let kind = match (&ns.kind, &r.dns_config, r.kind.as_deref()) {
            (_, Some(_), Some("HTTP")) => {
                return invalid("DnsConfig: a service of Type HTTP has no DNS records");
            }
            (NamespaceType::Http, Some(_), _) => {
                return invalid(format!(
                    "DnsConfig: namespace {} is an HTTP namespace, without DNS",
                    ns.id
                ));
            }
            (NamespaceType::DnsPrivate, Some(_), _) => "DNS_HTTP",
            _ => "HTTP",
        };
        if let Some(other) = s
            .services
            .values()
            .find(|x| x.namespace_id == ns.id && x.name.eq_ignore_ascii_case(&r.name))
        {
            if r.creator_request_id.is_some() && other.creator_request_id == r.creator_request_id {
                return Ok(json!({"Service": other.to_api(cm.account(), s.instance_count(&other.id))}));
            }
            return Err(SdError::ServiceAlreadyExists {
                message: format!("Service already exists: {} in {}", r.name, ns.id),
                service_id: other.id.clone(),
                service_arn: other.arn.clone(),
                creator_request_id: other.creator_request_id.clone(),
            });
        }
        if r.health_check_config.is_some() {
            tracing::warn!(service = %r.name, "Cloud Map: HealthCheckConfig (Route 53 health checks) is kept but not applied here: instances' health is UNKNOWN");
        }
        let id = format!("srv-{}", random_of(LOWER, 16));
        let mut dns_config = r.dns_config;
        if let Some(d) = dns_config.as_mut() {
            d.namespace_id = None;
            d.routing_policy.get_or_insert(RoutingPolicy::Multivalue);
        }
        let svc = Service {
            arn: format!(
                "arn:aws:servicediscovery:{}:{}:service/{id}",
                cm.aws.region, cm.aws.account_id
            ),
            id: id.clone(),
            name: r.name,
            namespace_id: ns.id,
            description: r.description,
            dns_config,
            kind: kind.into(),
            health_check_config: r.health_check_config,
            health_check_custom_config: r.health_check_custom_config,
            create_date: now(),
            creator_request_id: r.creator_request_id,
            tags: r.tags,
        };
        s.save_service(&svc)?;
        let out = json!({"Service": svc.to_api(cm.account(), 0)});
        s.services.insert(id, svc);
        Ok(out)
    })
}

fn get_service(cm: &CloudMap, r: ById) -> SdResult<Value> {
    cm.with(|s| {
        let svc = service_of(s, &r.id)?;
        Ok(json!({"Service": svc.to_api(cm.account(), s.instance_count(&svc.id))}))
    })
}

fn list_services(cm: &CloudMap, r: ListRequest) -> SdResult<Value> {
    cm.with(|s| {
        let mut out = Vec::new();
        for svc in s.services.values() {
            let mut keep = true;
            for f in &r.filters {
                keep &= match f.name.as_str() {
                    "NAMESPACE_ID" => passes(f, &svc.namespace_id, &["EQ", "IN"])?,
                    "RESOURCE_OWNER" => passes(f, cm.account(), &["EQ"])?,
                    other => return invalid(format!("Filters: unknown filter name {other}")),
                };
            }
            if keep {
                let mut v = svc.to_api(cm.account(), s.instance_count(&svc.id));
                if let Some(m) = v.as_object_mut() {
                    m.remove("CreatorRequestId");
                    m.remove("NamespaceId");
                }
                out.push(v);
            }
        }
        let (items, next) = page(out, r.next_token.as_deref(), r.max_results, 100, 100)?;
        let mut v = json!({"Services": items});
        if let Some(t) = next {
            v["NextToken"] = t.into();
        }
        Ok(v)
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct DnsConfigChange {
    dns_records: Vec<DnsRecord>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct ServiceChange {
    description: Option<String>,
    dns_config: Option<DnsConfigChange>,
    health_check_config: Option<HealthCheckConfig>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct UpdateService {
    id: String,
    service: ServiceChange,
}

fn update_service(cm: &CloudMap, r: UpdateService) -> SdResult<Value> {
    cm.with(|s| {
        let mut svc = service_of(s, &r.id)?.clone();
        if let Some(d) = r.service.dns_config {
            check_records(&d.dns_records)?;
            let Some(cur) = svc.dns_config.as_mut() else {
                return invalid("DnsConfig: the service has no DNS records to update");
            };
            let mut old: Vec<_> = cur.dns_records.iter().map(|x| format!("{:?}", x.kind)).collect();
            let mut new: Vec<_> = d.dns_records.iter().map(|x| format!("{:?}", x.kind)).collect();
            old.sort();
            new.sort();
            if old != new {
                return invalid("DnsRecords: the record types of a service cannot change (delete the service and create it again)");
            }
            cur.dns_records = d.dns_records;
        }
        if let Some(h) = r.service.health_check_config {
            if svc.health_check_custom_config.is_some() {
                return invalid("HealthCheckConfig: the service has a custom health check");
            }
            check_health(&Some(h.clone()), &None)?;
            svc.health_check_config = Some(h);
        }
        if let Some(d) = r.service.description {
            svc.description = Some(d);
        }
        s.save_service(&svc)?;
        let id = svc.id.clone();
        s.services.insert(id.clone(), svc);
        let op = operation(s, "UPDATE_SERVICE", &[("SERVICE", &id)])?;
        Ok(json!({"OperationId": op}))
    })
}

fn delete_service(cm: &CloudMap, r: ById) -> SdResult<Value> {
    cm.with(|s| {
        let id = service_of(s, &r.id)?.id.clone();
        let n = s.instance_count(&id);
        if n > 0 {
            return Err(SdError::ResourceInUse(format!(
                "Service {id} has {n} registered instances: deregister them first"
            )));
        }
        s.delete(&id)?;
        s.services.remove(&id);
        s.revisions.remove(&id);
        Ok(json!({}))
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct RegisterInstance {
    pub service_id: String,
    pub instance_id: String,
    pub creator_request_id: Option<String>,
    pub attributes: BTreeMap<String, String>,
}

fn valid_instance_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_/:.@-".contains(&b))
}

/// Registers (or updates) an instance; its operation's id.
pub fn register(cm: &CloudMap, r: RegisterInstance) -> SdResult<String> {
    if !valid_instance_id(&r.instance_id) {
        return invalid(format!(
            "InstanceId {:?}: 1 to 64 of letters, digits and _/:.@-",
            r.instance_id
        ));
    }
    if r.attributes.len() > 30 {
        return invalid("Attributes: at most 30");
    }
    for (k, v) in &r.attributes {
        if k.is_empty() || k.len() > 255 || v.len() > 1024 {
            return invalid(format!(
                "Attribute {k:?}: keys are 1 to 255 characters, values at most 1024"
            ));
        }
    }
    cm.with(|s| {
        let svc = service_of(s, &r.service_id)?.clone();
        let a = &r.attributes;
        let types: Vec<RecordType> = svc
            .dns_config
            .as_ref()
            .map(|d| d.dns_records.iter().map(|x| x.kind.clone()).collect())
            .unwrap_or_default();
        let v4 = a.get("AWS_INSTANCE_IPV4");
        if let Some(ip) = v4
            && ip.parse::<std::net::Ipv4Addr>().is_err()
        {
            return invalid(format!("AWS_INSTANCE_IPV4 {ip:?} is not an IPv4 address"));
        }
        if let Some(p) = a.get("AWS_INSTANCE_PORT")
            && p.parse::<u16>().map_or(true, |p| p == 0)
        {
            return invalid(format!(
                "AWS_INSTANCE_PORT {p:?} is not a port (1 to 65535)"
            ));
        }
        let ip_needed = types
            .iter()
            .any(|t| matches!(t, RecordType::A | RecordType::Aaaa | RecordType::Srv));
        if ip_needed
            && !a.contains_key("AWS_ALIAS_DNS_NAME")
            && v4.is_none()
            && !a.contains_key("AWS_INSTANCE_IPV6")
        {
            return invalid(
                "Attributes: the service's DNS records need AWS_INSTANCE_IPV4 or AWS_INSTANCE_IPV6",
            );
        }
        if types.contains(&RecordType::Srv) && !a.contains_key("AWS_INSTANCE_PORT") {
            return invalid("Attributes: the service's SRV record needs AWS_INSTANCE_PORT");
        }
        if types.contains(&RecordType::Cname) && !a.contains_key("AWS_INSTANCE_CNAME") {
            return invalid("Attributes: the service's CNAME record needs AWS_INSTANCE_CNAME");
        }
        let init = match a.get("AWS_INIT_HEALTH_STATUS").map(String::as_str) {
            None => None,
            Some("HEALTHY") => Some(Health::Healthy),
            Some("UNHEALTHY") => Some(Health::Unhealthy),
            Some(o) => {
                return invalid(format!(
                    "AWS_INIT_HEALTH_STATUS {o:?}: HEALTHY or UNHEALTHY"
                ));
            }
        };
        if init.is_some() && svc.health_check_custom_config.is_none() {
            return invalid(
                "AWS_INIT_HEALTH_STATUS: only for a service with HealthCheckCustomConfig",
            );
        }
        let key = (svc.id.clone(), r.instance_id.clone());
        // Registering again updates the attributes; the custom health stays.
        let custom = match s.instances.get(&key) {
            Some(old) => old.custom_health,
            None => svc
                .health_check_custom_config
                .as_ref()
                .map(|_| init.unwrap_or(Health::Healthy)),
        };
        let i = Instance {
            service_id: svc.id.clone(),
            id: r.instance_id.clone(),
            attributes: r.attributes,
            creator_request_id: r.creator_request_id,
            custom_health: custom,
        };
        s.save_instance(&i)?;
        s.instances.insert(key, i);
        s.bump(&svc.id);
        operation(
            s,
            "REGISTER_INSTANCE",
            &[
                ("INSTANCE", &r.instance_id),
                ("SERVICE", &svc.id),
                ("NAMESPACE", &svc.namespace_id),
            ],
        )
    })
}

fn register_instance(cm: &CloudMap, r: RegisterInstance) -> SdResult<Value> {
    Ok(json!({"OperationId": register(cm, r)?}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct InstanceRef {
    service_id: String,
    instance_id: String,
}

/// Deregisters an instance; its operation's id.
pub fn deregister(cm: &CloudMap, service_id: &str, instance_id: &str) -> SdResult<String> {
    cm.with(|s| {
        let svc = service_of(s, service_id)?.clone();
        let key = (svc.id.clone(), instance_id.to_string());
        if !s.instances.contains_key(&key) {
            return Err(SdError::InstanceNotFound(format!(
                "Instance not found: {instance_id} in {}",
                svc.id
            )));
        }
        s.delete(&format!("{}/{}", svc.id, instance_id))?;
        s.instances.remove(&key);
        s.bump(&svc.id);
        operation(
            s,
            "DEREGISTER_INSTANCE",
            &[
                ("INSTANCE", instance_id),
                ("SERVICE", &svc.id),
                ("NAMESPACE", &svc.namespace_id),
            ],
        )
    })
}

fn deregister_instance(cm: &CloudMap, r: InstanceRef) -> SdResult<Value> {
    Ok(json!({"OperationId": deregister(cm, &r.service_id, &r.instance_id)?}))
}

fn get_instance(cm: &CloudMap, r: InstanceRef) -> SdResult<Value> {
    cm.with(|s| {
        let svc = service_of(s, &r.service_id)?;
        let i = s
            .instances
            .get(&(svc.id.clone(), r.instance_id.clone()))
            .ok_or_else(|| {
                SdError::InstanceNotFound(format!("Instance not found: {}", r.instance_id))
            })?;
        let mut inst =
            json!({"Id": i.id, "Attributes": i.attributes, "CreatedByAccount": cm.account()});
        if let Some(c) = &i.creator_request_id {
            inst["CreatorRequestId"] = c.clone().into();
        }
        Ok(json!({"ResourceOwner": cm.account(), "Instance": inst}))
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct ListInstances {
    service_id: String,
    next_token: Option<String>,
    max_results: Option<i64>,
}

fn list_instances(cm: &CloudMap, r: ListInstances) -> SdResult<Value> {
    cm.with(|s| {
        let svc = service_of(s, &r.service_id)?;
        let all: Vec<Value> = s
            .instances_of(&svc.id)
            .map(|i| json!({"Id": i.id, "Attributes": i.attributes, "CreatedByAccount": cm.account()}))
            .collect();
        let (items, next) = page(all, r.next_token.as_deref(), r.max_results, 100, 100)?;
        let mut v = json!({"ResourceOwner": cm.account(), "Instances": items});
        if let Some(t) = next {
            v["NextToken"] = t.into();
        }
        Ok(v)
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct DiscoverInstances {
    namespace_name: String,
    service_name: String,
    max_results: Option<i64>,
    #[serde(default)]
    query_parameters: BTreeMap<String, String>,
    #[serde(default)]
    optional_parameters: BTreeMap<String, String>,
    health_status: Option<String>,
    owner_account: Option<String>,
}

/// The service DiscoverInstances and DiscoverInstancesRevision name: `service` of the
/// namespace named `namespace` (names compared as DNS names are, without case).
fn discovered<'a>(
    s: &'a State,
    namespace: &str,
    service: &str,
) -> SdResult<(&'a Namespace, &'a Service)> {
    let ns = s
        .namespaces
        .values()
        .find(|n| n.name.eq_ignore_ascii_case(namespace.trim_end_matches('.')))
        .ok_or_else(|| SdError::NamespaceNotFound(format!("Namespace not found: {namespace}")))?;
    let svc = s
        .services
        .values()
        .find(|x| x.namespace_id == ns.id && x.name.eq_ignore_ascii_case(service))
        .ok_or_else(|| SdError::ServiceNotFound(format!("Service not found: {service}")))?;
    Ok((ns, svc))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct DiscoverRevision {
    namespace_name: String,
    service_name: String,
    owner_account: Option<String>,
}

/// The revision DiscoverInstances answers (`InstancesRevision`), without the instances.
fn discover_instances_revision(cm: &CloudMap, r: DiscoverRevision) -> SdResult<Value> {
    let _ = r.owner_account;
    cm.with(|s| {
        let (_, svc) = discovered(s, &r.namespace_name, &r.service_name)?;
        let revision = s.revisions.get(&svc.id).copied().unwrap_or(0);
        Ok(json!({"InstancesRevision": revision}))
    })
}

fn discover_instances(cm: &CloudMap, r: DiscoverInstances) -> SdResult<Value> {
    let _ = r.owner_account;
    let max = r.max_results.unwrap_or(100);
    if !(1..=1000).contains(&max) {
        return invalid("MaxResults: from 1 to 1000");
    }
    let filter = r.health_status.as_deref().unwrap_or("HEALTHY");
    if !["HEALTHY", "UNHEALTHY", "ALL", "HEALTHY_OR_ELSE_ALL"].contains(&filter) {
        return invalid("HealthStatus: HEALTHY, UNHEALTHY, ALL or HEALTHY_OR_ELSE_ALL");
    }
    cm.with(|s| {
        let (ns, svc) = discovered(s, &r.namespace_name, &r.service_name)?;
        let matching: Vec<&Instance> = s
            .instances_of(&svc.id)
            .filter(|i| {
                r.query_parameters
                    .iter()
                    .all(|(k, v)| i.attributes.get(k) == Some(v))
            })
            .collect();
        let optional: Vec<&Instance> = matching
            .iter()
            .copied()
            .filter(|i| {
                r.optional_parameters
                    .iter()
                    .all(|(k, v)| i.attributes.get(k) == Some(v))
            })
            .collect();
        let matching = if optional.is_empty() {
            matching
        } else {
            optional
        };
        let checked = svc.health_check_custom_config.is_some();
        let healthy: Vec<&Instance> = matching
            .iter()
            .copied()
            .filter(|i| i.health(svc) == Health::Healthy)
            .collect();
        let chosen: Vec<&Instance> = match (checked, filter) {
            // Without a health check the filter is ignored: every instance.
            (false, _) | (true, "ALL") => matching,
            (true, "HEALTHY") => healthy,
            (true, "UNHEALTHY") => matching
                .into_iter()
                .filter(|i| i.health(svc) == Health::Unhealthy)
                .collect(),
            _ => {
                if healthy.is_empty() {
                    matching
                } else {
                    healthy
                }
            }
        };
        let out: Vec<Value> = chosen
            .into_iter()
            .take(max as usize)
            .map(|i| {
                json!({
                    "InstanceId": i.id,
                    "NamespaceName": ns.name,
                    "ServiceName": svc.name,
                    "HealthStatus": i.health(svc),
                    "Attributes": i.attributes,
                })
            })
            .collect();
        let revision = s.revisions.get(&svc.id).copied().unwrap_or(0);
        Ok(json!({"Instances": out, "InstancesRevision": revision}))
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct GetHealth {
    service_id: String,
    instances: Option<Vec<String>>,
    max_results: Option<i64>,
    next_token: Option<String>,
}

fn get_instances_health_status(cm: &CloudMap, r: GetHealth) -> SdResult<Value> {
    cm.with(|s| {
        let svc = service_of(s, &r.service_id)?;
        let mut ids: Vec<String> = match &r.instances {
            Some(list) => {
                for id in list {
                    if !s.instances.contains_key(&(svc.id.clone(), id.clone())) {
                        return Err(SdError::InstanceNotFound(format!(
                            "Instance not found: {id}"
                        )));
                    }
                }
                list.clone()
            }
            None => s.instances_of(&svc.id).map(|i| i.id.clone()).collect(),
        };
        ids.dedup();
        let items: Vec<Value> = ids.into_iter().map(Value::String).collect();
        let (items, next) = page(items, r.next_token.as_deref(), r.max_results, 100, 100)?;
        let mut status = serde_json::Map::new();
        for id in items {
            let id = id.as_str().unwrap_or_default().to_string();
            if let Some(i) = s.instances.get(&(svc.id.clone(), id.clone())) {
                status.insert(id, serde_json::to_value(i.health(svc)).unwrap_or_default());
            }
        }
        let mut v = json!({"Status": status});
        if let Some(t) = next {
            v["NextToken"] = t.into();
        }
        Ok(v)
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct CustomHealth {
    service_id: String,
    instance_id: String,
    status: String,
}

/// Sets an instance's custom health status.
pub fn set_custom_health(
    cm: &CloudMap,
    service_id: &str,
    instance_id: &str,
    status: Health,
) -> SdResult<()> {
    cm.with(|s| {
        let svc = service_of(s, service_id)?.clone();
        if svc.health_check_custom_config.is_none() {
            return Err(SdError::CustomHealthNotFound(format!(
                "Service {} has no custom health check (HealthCheckCustomConfig)",
                svc.id
            )));
        }
        let key = (svc.id.clone(), instance_id.to_string());
        let Some(mut i) = s.instances.get(&key).cloned() else {
            return Err(SdError::InstanceNotFound(format!(
                "Instance not found: {instance_id}"
            )));
        };
        if i.custom_health != Some(status) {
            i.custom_health = Some(status);
            s.save_instance(&i)?;
            s.instances.insert(key, i);
            s.bump(&svc.id);
        }
        Ok(())
    })
}

fn update_custom_health(cm: &CloudMap, r: CustomHealth) -> SdResult<Value> {
    let status = match r.status.as_str() {
        "HEALTHY" => Health::Healthy,
        "UNHEALTHY" => Health::Unhealthy,
        o => return invalid(format!("Status {o:?}: HEALTHY or UNHEALTHY")),
    };
    set_custom_health(cm, &r.service_id, &r.instance_id, status)?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct TagsOf {
    #[serde(rename = "ResourceARN")]
    resource_arn: String,
    #[serde(default)]
    tags: Vec<Tag>,
    #[serde(default)]
    tag_keys: Vec<String>,
}

/// The tags of the namespace or service `arn`, changed by `f`.
fn with_tags<T>(
    cm: &CloudMap,
    arn: &str,
    f: impl FnOnce(&mut Vec<Tag>) -> SdResult<T>,
) -> SdResult<(T, Vec<Tag>)> {
    cm.with(|s| {
        let id = id_of(arn).to_string();
        let nf = || SdError::ResourceNotFoundException(format!("Resource not found: {arn}"));
        if let Some(mut n) = s.namespaces.get(&id).filter(|n| n.arn == arn).cloned() {
            let out = f(&mut n.tags)?;
            let tags = n.tags.clone();
            s.save_namespace(&n)?;
            s.namespaces.insert(id, n);
            return Ok((out, tags));
        }
        if let Some(mut x) = s.services.get(&id).filter(|x| x.arn == arn).cloned() {
            let out = f(&mut x.tags)?;
            let tags = x.tags.clone();
            s.save_service(&x)?;
            s.services.insert(id, x);
            return Ok((out, tags));
        }
        Err(nf())
    })
}

fn list_tags(cm: &CloudMap, r: TagsOf) -> SdResult<Value> {
    let (_, tags) = with_tags(cm, &r.resource_arn, |_| Ok(()))?;
    Ok(json!({"Tags": tags}))
}

fn tag_resource(cm: &CloudMap, r: TagsOf) -> SdResult<Value> {
    check_tags(&r.tags)?;
    with_tags(cm, &r.resource_arn, |tags| {
        for t in r.tags {
            tags.retain(|x| x.key != t.key);
            tags.push(t);
        }
        check_tags(tags)
    })?;
    Ok(json!({}))
}

fn untag_resource(cm: &CloudMap, r: TagsOf) -> SdResult<Value> {
    with_tags(cm, &r.resource_arn, |tags| {
        tags.retain(|t| !r.tag_keys.contains(&t.key));
        Ok(())
    })?;
    Ok(json!({}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_as_the_model_says() {
        assert!(valid_domain("corp.local"));
        assert!(!valid_domain("bad_name.local"));
        assert!(valid_service_name("_b.web"));
        assert!(valid_service_name("b"));
        assert!(!valid_service_name("-b"));
        assert!(valid_instance_id("0123abcd"));
        assert!(!valid_instance_id("a b"));
    }
}
