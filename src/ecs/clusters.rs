//! Clusters: CreateCluster, ListClusters, DescribeClusters, DeleteCluster, and the
//! cluster check every task operation makes.

use super::names::{DEFAULT, check_name, cluster_name};
use super::shapes::{CapacityProviderStrategyItem, Failure};
use super::tags::checked_tags;
use super::{Ecs, EcsError, EcsResult, page};
use crate::store::{
    ClusterChange, ClusterRow, ClusterStatus, DeleteCluster, LastStatus, Resource, Store, Tag,
};
use crate::taskdef::AwsContext;
use anyhow::bail;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

const NOT_FOUND: &str = "Cluster not found.";

fn not_found(detail: String) -> EcsError {
    EcsError::ClusterNotFound(format!("{NOT_FOUND} {detail}"))
}

/// ClusterNotFoundException for cluster `name`.
pub fn not_found_cluster(name: &str) -> EcsError {
    not_found(format!("({name})"))
}

/// ecs.json `Cluster`, members in alphabetical order as the AWS CLI prints them.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Cluster {
    pub active_services_count: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attachments: Option<Vec<Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attachments_status: Option<String>,
    pub capacity_providers: Vec<String>,
    pub cluster_arn: String,
    pub cluster_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub configuration: Option<Value>,
    pub default_capacity_provider_strategy: Vec<CapacityProviderStrategyItem>,
    pub pending_tasks_count: i64,
    pub registered_container_instances_count: i64,
    pub running_tasks_count: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_connect_defaults: Option<Value>,
    pub settings: Vec<ClusterSetting>,
    pub statistics: Vec<ClusterSetting>,
    pub status: ClusterStatus,
    pub tags: Vec<Tag>,
}

/// ecs.json `ClusterSetting` (`containerInsights`: enhanced, enabled or disabled).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSetting {
    pub name: String,
    pub value: String,
}

/// The capacity providers every account has: Fargate's. Ref: ecs.json
/// `CapacityProviderStrategyItem` ("To use a Fargate capacity provider, specify either the
/// FARGATE or FARGATE_SPOT capacity providers. The Fargate capacity providers are available
/// to all accounts and only need to be associated with a cluster").
pub const FARGATE_PROVIDERS: [&str; 2] = ["FARGATE", "FARGATE_SPOT"];

/// The `containerInsights` setting of a cluster that never set it.
fn default_settings() -> Vec<ClusterSetting> {
    vec![ClusterSetting {
        name: "containerInsights".into(),
        value: "disabled".into(),
    }]
}

/// The ECS `Cluster` of a cluster's row.
pub fn cluster_json(c: &ClusterRow) -> Cluster {
    let settings: Vec<ClusterSetting> = c
        .settings
        .iter()
        .filter_map(|v| serde_json::from_value(v.clone()).ok())
        .collect();
    let cfg = |k: &str| c.configuration.get(k).filter(|v| !v.is_null()).cloned();
    Cluster {
        active_services_count: c.active_services,
        attachments: None,
        attachments_status: None,
        capacity_providers: c.capacity_providers.clone(),
        cluster_arn: c.arn.clone(),
        cluster_name: c.name.clone(),
        configuration: cfg("configuration"),
        default_capacity_provider_strategy: c
            .default_capacity_provider_strategy
            .iter()
            .filter_map(|v| serde_json::from_value(v.clone()).ok())
            .collect(),
        pending_tasks_count: c.pending_tasks,
        // This host is the one container instance of every ACTIVE cluster.
        registered_container_instances_count: i64::from(c.status == ClusterStatus::Active),
        running_tasks_count: c.running_tasks,
        service_connect_defaults: cfg("serviceConnectDefaults"),
        settings: if settings.is_empty() {
            default_settings()
        } else {
            settings
        },
        statistics: Vec::new(),
        status: c.status,
        tags: c.tags.clone(),
    }
}

/// RunTask's and a service's `capacityProviderStrategy`, checked against the providers
/// associated with the cluster `row` (none when the cluster does not exist yet).
pub fn check_request_strategy(
    row: Option<&ClusterRow>,
    items: &[CapacityProviderStrategyItem],
    cluster: &str,
) -> EcsResult<()> {
    let associated = row
        .map(|c| c.capacity_providers.clone())
        .unwrap_or_default();
    check_strategy(
        "capacityProviderStrategy",
        items,
        Some(&associated),
        cluster,
    )
}

/// Checks a capacity provider strategy. Ref: ecs.json `CapacityProviderStrategyItem` (weight
/// 0-1,000, base 0-100,000, only one provider with a base, at least one weight above zero,
/// at most 20 providers); `associated`: the cluster's providers, the only ones a strategy
/// may name.
pub fn check_strategy(
    member: &str,
    items: &[CapacityProviderStrategyItem],
    associated: Option<&[String]>,
    cluster: &str,
) -> EcsResult<()> {
    if items.len() > 20 {
        return Err(EcsError::invalid(format!(
            "{member}: {} capacity providers; a strategy can contain a maximum of 20",
            items.len()
        )));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, it) in items.iter().enumerate() {
        let p = &it.capacity_provider;
        if !FARGATE_PROVIDERS.contains(&p.as_str()) {
            return Err(EcsError::invalid(format!(
                "{member}[{i}].capacityProvider {p:?}: the capacity provider does not exist \
                 (this host has FARGATE and FARGATE_SPOT)"
            )));
        }
        if !seen.insert(p.as_str()) {
            return Err(EcsError::invalid(format!(
                "{member}: capacity provider {p} is named twice"
            )));
        }
        if !(0..=1000).contains(&it.weight) {
            return Err(EcsError::invalid(format!(
                "{member}[{i}].weight {}: must be between 0 and 1000",
                it.weight
            )));
        }
        if !(0..=100_000).contains(&it.base) {
            return Err(EcsError::invalid(format!(
                "{member}[{i}].base {}: must be between 0 and 100000",
                it.base
            )));
        }
        if let Some(assoc) = associated
            && !assoc.iter().any(|a| a == p)
        {
            return Err(EcsError::invalid(format!(
                "The specified capacity provider strategy cannot contain a capacity provider \
                 that is not associated with the cluster. ({p} is not associated with cluster \
                 {cluster}: run put-cluster-capacity-providers --cluster {cluster} \
                 --capacity-providers FARGATE FARGATE_SPOT --default-capacity-provider-strategy \
                 '[]')"
            )));
        }
    }
    if items.iter().filter(|i| i.base > 0).count() > 1 {
        return Err(EcsError::invalid(format!(
            "{member}: only one capacity provider in a capacity provider strategy can have a base"
        )));
    }
    if !items.is_empty() && items.iter().all(|i| i.weight == 0) {
        return Err(EcsError::invalid(format!(
            "{member}: at least one capacity provider must have a weight greater than zero"
        )));
    }
    Ok(())
}

/// Checks cluster settings. Ref: ecs.json `ClusterSetting` (name `containerInsights`; value
/// `enhanced`, `enabled` or `disabled`).
pub fn check_settings(settings: &[ClusterSetting]) -> EcsResult<()> {
    for (i, s) in settings.iter().enumerate() {
        if s.name != "containerInsights" {
            return Err(EcsError::invalid(format!(
                "settings[{i}].name {:?}: the only cluster setting is containerInsights",
                s.name
            )));
        }
        if !["enhanced", "enabled", "disabled"].contains(&s.value.as_str()) {
            return Err(EcsError::invalid(format!(
                "settings[{i}].value {:?}: containerInsights is enhanced, enabled or disabled",
                s.value
            )));
        }
    }
    Ok(())
}

/// The cluster a task runs in: `default` is created with the first task (by
/// `launch::create_task`, so refused input leaves no cluster behind) or made ACTIVE again
/// after a delete-cluster, as ECS does; any other must exist and be ACTIVE. Returns its
/// name.
pub fn for_run(store: &mut Store, ctx: &AwsContext, cluster: &str) -> anyhow::Result<String> {
    let name = cluster_name(cluster).to_string();
    if name == DEFAULT {
        if store
            .cluster(&name)?
            .is_some_and(|c| c.status != ClusterStatus::Active)
        {
            let now = chrono::Utc::now().timestamp_millis();
            store.create_cluster(&name, &ctx.ecs_arn(&format!("cluster/{name}")), now)?;
        }
        return Ok(name);
    }
    match store.cluster(&name)? {
        Some(c) if c.status == ClusterStatus::Active => Ok(name),
        Some(_) => bail!(EcsError::ClusterNotFound(format!(
            "The referenced cluster was inactive: {name} (create it again with `minifargate \
                 create-cluster --cluster-name {name}`)"
        ))),
        None => bail!(not_found(format!(
            "({name}: create it with `minifargate create-cluster --cluster-name {name}`, or \
             leave out --cluster to use `default`)"
        ))),
    }
}

/// A cluster a request names must exist (`default` exists implicitly until its first
/// task creates it): ClusterNotFoundException otherwise, as ECS answers.
pub fn check_cluster(store: &Store, cluster: &str) -> anyhow::Result<()> {
    let name = cluster_name(cluster);
    if name == DEFAULT || store.cluster(name)?.is_some() {
        return Ok(());
    }
    bail!(not_found(format!("({name})")))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateClusterRequest {
    /// `default` when absent.
    pub cluster_name: Option<String>,
    #[serde(default)]
    pub tags: Vec<Tag>,
    pub settings: Option<Vec<ClusterSetting>>,
    pub configuration: Option<Value>,
    pub capacity_providers: Option<Vec<String>>,
    pub default_capacity_provider_strategy: Option<Vec<CapacityProviderStrategyItem>>,
    pub service_connect_defaults: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListClustersRequest {
    pub max_results: Option<i64>,
    pub next_token: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeClustersRequest {
    /// Names or ARNs; `default` when empty.
    #[serde(default)]
    pub clusters: Vec<String>,
    /// ATTACHMENTS, CONFIGURATIONS, SETTINGS, STATISTICS, TAGS: what is described beyond
    /// the counts.
    #[serde(default)]
    pub include: Vec<String>,
}

/// ecs.json `ClusterField`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClusterField {
    #[value(name = "ATTACHMENTS")]
    Attachments,
    #[value(name = "CONFIGURATIONS")]
    Configurations,
    #[value(name = "SETTINGS")]
    Settings,
    #[value(name = "STATISTICS")]
    Statistics,
    #[value(name = "TAGS")]
    Tags,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteClusterRequest {
    pub cluster: Option<String>,
}

/// The response of CreateCluster and DeleteCluster: the ECS `Cluster` shape.
#[derive(Debug, Serialize)]
pub struct ClusterResponse {
    pub cluster: Cluster,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListClustersResponse {
    pub cluster_arns: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct DescribeClustersResponse {
    pub clusters: Vec<Cluster>,
    pub failures: Vec<Failure>,
}

/// CreateCluster (an existing ACTIVE cluster is returned as it is, as ECS does).
pub fn create_cluster(ecs: &Ecs, req: &CreateClusterRequest) -> EcsResult<ClusterResponse> {
    let name = super::cluster_or_default(req.cluster_name.as_deref());
    check_name("clusterName", name)?;
    checked_tags(&req.tags)?;
    check_settings(req.settings.as_deref().unwrap_or_default())?;
    // Ref: ecs-account-settings.html: a new cluster gets the containerInsights account
    // setting unless its request sets it.
    let settings = match &req.settings {
        Some(s) if !s.is_empty() => s.clone(),
        _ => vec![ClusterSetting {
            name: "containerInsights".into(),
            value: super::account_settings::effective(ecs, "containerInsights", None)?,
        }],
    };
    let providers = req.capacity_providers.clone().unwrap_or_default();
    check_providers(&providers)?;
    check_strategy(
        "defaultCapacityProviderStrategy",
        req.default_capacity_provider_strategy
            .as_deref()
            .unwrap_or_default(),
        Some(&providers),
        name,
    )?;
    let ctx = AwsContext::from_env();
    let mut store = ecs.open_store()?;
    let arn = ctx.ecs_arn(&format!("cluster/{name}"));
    let existed = store
        .cluster(name)
        .map_err(anyhow::Error::from)?
        .is_some_and(|c| c.status == ClusterStatus::Active);
    // Made before the cluster, so a namespace ECS refuses leaves no cluster behind.
    let service_connect_defaults = match &req.service_connect_defaults {
        Some(v) if !existed => service_connect_defaults(ecs, v)?,
        _ => None,
    };
    store
        .create_cluster(name, &arn, super::now_ms())
        .map_err(anyhow::Error::from)?;
    // An existing ACTIVE cluster is returned as it is, as ECS does.
    if !existed {
        let change = ClusterChange {
            settings: Some(to_values(&settings)),
            capacity_providers: Some(providers),
            default_capacity_provider_strategy: Some(to_values(
                req.default_capacity_provider_strategy
                    .as_deref()
                    .unwrap_or_default(),
            )),
            configuration: Some(json!({
                "configuration": req.configuration,
                "serviceConnectDefaults": service_connect_defaults,
            })),
        };
        store
            .update_cluster(name, &change)
            .map_err(anyhow::Error::from)?;
        store
            .set_resource_tags(&Resource::Cluster(name.to_string()), &req.tags)
            .map_err(anyhow::Error::from)?;
    }
    let row = store
        .cluster(name)
        .map_err(anyhow::Error::from)?
        .ok_or_else(|| not_found(format!("({name})")))?;
    Ok(ClusterResponse {
        cluster: cluster_json(&row),
    })
}

/// ListClusters: the ARNs of ACTIVE clusters.
pub fn list_clusters(ecs: &Ecs, req: &ListClustersRequest) -> EcsResult<ListClustersResponse> {
    let store = ecs.open_store()?;
    let arns = store
        .list_clusters()
        .map_err(anyhow::Error::from)?
        .into_iter()
        .map(|c| c.arn)
        .collect();
    let (cluster_arns, next_token) = page(arns, req.max_results, 100, req.next_token.as_deref())?;
    Ok(ListClustersResponse {
        cluster_arns,
        next_token,
    })
}

/// DescribeClusters, with task counts; no names means `default`.
pub fn describe_clusters(
    ecs: &Ecs,
    req: &DescribeClustersRequest,
) -> EcsResult<DescribeClustersResponse> {
    let ctx = AwsContext::from_env();
    let mut store = ecs.open_store()?;
    // Task counts read the task states: finish dead tasks first.
    ecs.reconcile(&mut store);
    let default = [DEFAULT.to_string()];
    let wanted = if req.clusters.is_empty() {
        &default[..]
    } else {
        &req.clusters[..]
    };
    let include = req
        .include
        .iter()
        .map(|f| Ok(super::enum_member::<ClusterField>("include", Some(f))?.expect("given")))
        .collect::<EcsResult<Vec<ClusterField>>>()?;
    let mut clusters = Vec::new();
    let mut failures = Vec::new();
    for w in wanted {
        let name = cluster_name(w);
        match store.cluster(name).map_err(anyhow::Error::from)? {
            Some(c) => clusters.push(described(&store, &c, &include)?),
            None => failures.push(Failure::missing(ctx.ecs_arn(&format!("cluster/{name}")))),
        }
    }
    Ok(DescribeClustersResponse { clusters, failures })
}

/// DescribeClusters' view of a cluster: the settings, configuration, statistics, tags and
/// attachments only where `include` asks for them. Ref: ecs.json
/// `DescribeClustersRequest.include` ("If this field is omitted, this information isn't
/// included"); the empty lists are what ECS answers in their place.
fn described(store: &Store, c: &ClusterRow, include: &[ClusterField]) -> EcsResult<Cluster> {
    let mut out = cluster_json(c);
    let has = |f| include.contains(&f);
    if !has(ClusterField::Settings) {
        out.settings = Vec::new();
    }
    if !has(ClusterField::Configurations) {
        out.configuration = None;
    }
    if !has(ClusterField::Tags) {
        out.tags = Vec::new();
    }
    if has(ClusterField::Statistics) {
        out.statistics = statistics(store, &c.name)?;
    }
    if has(ClusterField::Attachments) {
        // The Fargate capacity providers have no Auto Scaling group to attach: ECS lists
        // attachments only for the providers of EC2 capacity.
        out.attachments = Some(Vec::new());
        out.attachments_status = Some("UPDATE_COMPLETE".into());
    }
    Ok(out)
}

/// ecs.json `Cluster.statistics`: task and service counts by launch type (a task or
/// service without FARGATE counts as EC2, the launch type this host stands in for).
fn statistics(store: &Store, cluster: &str) -> EcsResult<Vec<ClusterSetting>> {
    let tasks = store
        .list_tasks(&crate::store::TaskFilter {
            cluster: Some(cluster.to_string()),
            ..Default::default()
        })
        .map_err(anyhow::Error::from)?;
    let services = store
        .list_services(Some(cluster))
        .map_err(anyhow::Error::from)?;
    let fargate = |lt: Option<&str>| lt == Some("FARGATE");
    let tasks_in = |f: bool, st: &[LastStatus]| {
        tasks
            .iter()
            .filter(|t| fargate(Some(t.launch_type.as_str())) == f && st.contains(&t.last_status))
            .count()
    };
    let services_in = |f: bool, st: crate::store::ServiceStatus| {
        services
            .iter()
            .filter(|s| s.spec.fargate() == f && s.status == st)
            .count()
    };
    const PENDING: &[LastStatus] = &[LastStatus::Provisioning, LastStatus::Pending];
    use crate::store::ServiceStatus::{Active, Draining};
    let pairs = [
        (
            "runningEC2TasksCount",
            tasks_in(false, &[LastStatus::Running]),
        ),
        (
            "runningFargateTasksCount",
            tasks_in(true, &[LastStatus::Running]),
        ),
        ("pendingEC2TasksCount", tasks_in(false, PENDING)),
        ("pendingFargateTasksCount", tasks_in(true, PENDING)),
        ("activeEC2ServiceCount", services_in(false, Active)),
        ("activeFargateServiceCount", services_in(true, Active)),
        ("drainingEC2ServiceCount", services_in(false, Draining)),
        ("drainingFargateServiceCount", services_in(true, Draining)),
    ];
    Ok(pairs
        .into_iter()
        .map(|(name, n)| ClusterSetting {
            name: name.into(),
            value: n.to_string(),
        })
        .collect())
}

/// DeleteCluster: the cluster becomes INACTIVE; refused while it has tasks that are not
/// STOPPED.
pub fn delete_cluster(ecs: &Ecs, req: &DeleteClusterRequest) -> EcsResult<ClusterResponse> {
    let cluster = req
        .cluster
        .as_deref()
        .ok_or_else(|| EcsError::invalid("cluster: a cluster name or ARN is required"))?;
    let mut store = ecs.open_store()?;
    // A task whose supervisor died must not keep its cluster alive.
    ecs.reconcile(&mut store);
    let name = cluster_name(cluster);
    match store.delete_cluster(name).map_err(anyhow::Error::from)? {
        DeleteCluster::Deleted(c) => Ok(ClusterResponse {
            cluster: cluster_json(&c),
        }),
        DeleteCluster::NotFound => Err(not_found(format!("({name})"))),
        DeleteCluster::HasActiveTasks(n) => Err(EcsError::ClusterContainsTasks(format!(
            "The Cluster cannot be deleted while Tasks are active. ({n} task(s) in {name} are \
             not STOPPED: stop them with `minifargate stop-task`)"
        ))),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateClusterRequest {
    pub cluster: String,
    pub settings: Option<Vec<ClusterSetting>>,
    pub configuration: Option<Value>,
    pub service_connect_defaults: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateClusterSettingsRequest {
    pub cluster: String,
    pub settings: Vec<ClusterSetting>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PutClusterCapacityProvidersRequest {
    pub cluster: String,
    pub capacity_providers: Vec<String>,
    pub default_capacity_provider_strategy: Vec<CapacityProviderStrategyItem>,
}

/// The ACTIVE cluster a request names, or ClusterNotFoundException.
fn active(store: &Store, cluster: &str) -> EcsResult<ClusterRow> {
    let name = cluster_name(cluster);
    match store.cluster(name).map_err(anyhow::Error::from)? {
        Some(c) if c.status == ClusterStatus::Active => Ok(c),
        _ => Err(not_found(format!("({name})"))),
    }
}

fn changed(store: &mut Store, name: &str, change: &ClusterChange) -> EcsResult<ClusterResponse> {
    store
        .update_cluster(name, change)
        .map_err(anyhow::Error::from)?;
    let row = active(store, name)?;
    Ok(ClusterResponse {
        cluster: cluster_json(&row),
    })
}

/// A cluster's `serviceConnectDefaults` as ECS keeps it: its `namespace` as the ARN of the
/// Cloud Map namespace it names (by name or ARN), an HTTP namespace made when a name names
/// none; `""` removes the defaults (None; the namespace stays). Ref: ecs.json
/// `ClusterServiceConnectDefaultsRequest.namespace` ("If you enter a new name, a Cloud Map
/// namespace will be created. Amazon ECS creates a Cloud Map namespace with the \"API
/// calls\" method of instance discovery only. This instance discovery method is the
/// \"HTTP\" namespace type"; "The name can't include greater than (>), less than (<),
/// double quotation marks (\"), or slash (/)"; "If you update the cluster with an empty
/// string \"\" for the namespace name, the cluster configuration for Service Connect is
/// removed").
fn service_connect_defaults(ecs: &Ecs, v: &Value) -> EcsResult<Option<Value>> {
    use crate::servicediscovery::SdError;
    let Some(ns) = v["namespace"].as_str() else {
        return Err(EcsError::invalid(
            "serviceConnectDefaults.namespace: a namespace name or ARN is required",
        ));
    };
    if ns.is_empty() {
        return Ok(None);
    }
    if !ns.starts_with("arn:") && (ns.len() > 1024 || ns.contains(['>', '<', '"', '/'])) {
        return Err(EcsError::invalid(format!(
            "serviceConnectDefaults.namespace {ns:?}: a name of at most 1024 characters \
             without >, <, \" or /"
        )));
    }
    let cm = crate::servicediscovery::CloudMap::open(ecs.root.clone())
        .map_err(|e| EcsError::Server(e.context("failed to load the Cloud Map resources")))?;
    match crate::servicediscovery::ops::service_connect_namespace(&cm, ns) {
        Ok(arn) => Ok(Some(json!({ "namespace": arn }))),
        Err(SdError::NamespaceNotFound(_)) => Err(EcsError::NamespaceNotFound(format!(
            "Failed to retrieve namespace for {ns}"
        ))),
        // (A name Cloud Map has in another case: its names are unique ignoring case.)
        Err(SdError::InvalidInput(m) | SdError::NamespaceAlreadyExists { message: m, .. }) => Err(
            EcsError::invalid(format!("serviceConnectDefaults.namespace: {m}")),
        ),
        Err(e) => Err(EcsError::Server(
            anyhow::Error::from(e).context(format!("failed to make Cloud Map namespace {ns}")),
        )),
    }
}

/// UpdateCluster: settings (containerInsights, which `super::insights` acts on),
/// `configuration` and `serviceConnectDefaults`, stored and returned.
pub fn update_cluster(ecs: &Ecs, req: &UpdateClusterRequest) -> EcsResult<ClusterResponse> {
    if let Some(s) = &req.settings {
        check_settings(s)?;
    }
    let mut store = ecs.open_store()?;
    let c = active(&store, &req.cluster)?;
    let mut cfg = if c.configuration.is_object() {
        c.configuration.clone()
    } else {
        json!({})
    };
    if let Some(v) = &req.configuration {
        cfg["configuration"] = v.clone();
    }
    if let Some(v) = &req.service_connect_defaults {
        cfg["serviceConnectDefaults"] = service_connect_defaults(ecs, v)?.unwrap_or(Value::Null);
    }
    let change = ClusterChange {
        settings: req.settings.as_deref().map(to_values),
        configuration: Some(cfg),
        ..Default::default()
    };
    changed(&mut store, &c.name, &change)
}

/// UpdateClusterSettings. Ref: ecs.json `UpdateClusterSettingsRequest` (`settings`
/// required; containerInsights enhanced, enabled or disabled).
pub fn update_cluster_settings(
    ecs: &Ecs,
    req: &UpdateClusterSettingsRequest,
) -> EcsResult<ClusterResponse> {
    check_settings(&req.settings)?;
    let mut store = ecs.open_store()?;
    let c = active(&store, &req.cluster)?;
    let change = ClusterChange {
        settings: Some(to_values(&req.settings)),
        ..Default::default()
    };
    changed(&mut store, &c.name, &change)
}

/// PutClusterCapacityProviders: replaces the cluster's providers and default strategy
/// (ECS's rule: both are set together; `[]` clears). A provider a running service's
/// strategy uses cannot be removed in ECS (ResourceInUseException); services here run
/// with a launch type, so none is in use.
pub fn put_cluster_capacity_providers(
    ecs: &Ecs,
    req: &PutClusterCapacityProvidersRequest,
) -> EcsResult<ClusterResponse> {
    check_providers(&req.capacity_providers)?;
    check_strategy(
        "defaultCapacityProviderStrategy",
        &req.default_capacity_provider_strategy,
        Some(&req.capacity_providers),
        cluster_name(&req.cluster),
    )?;
    let mut store = ecs.open_store()?;
    let c = active(&store, &req.cluster)?;
    let change = ClusterChange {
        capacity_providers: Some(req.capacity_providers.clone()),
        default_capacity_provider_strategy: Some(to_values(
            &req.default_capacity_provider_strategy,
        )),
        ..Default::default()
    };
    changed(&mut store, &c.name, &change)
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeCapacityProvidersRequest {
    pub capacity_providers: Option<Vec<String>>,
    #[serde(default)]
    pub include: Vec<String>,
    pub cluster: Option<String>,
    pub max_results: Option<i64>,
    pub next_token: Option<String>,
}

/// ecs.json `CapacityProvider` (Fargate's have no Auto Scaling group).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CapacityProvider {
    pub capacity_provider_arn: String,
    pub name: String,
    pub status: String,
    pub tags: Vec<Tag>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeCapacityProvidersResponse {
    pub capacity_providers: Vec<CapacityProvider>,
    pub failures: Vec<Failure>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// DescribeCapacityProviders: FARGATE and FARGATE_SPOT (every account has them); a name or
/// ARN of another is a MISSING failure.
pub fn describe_capacity_providers(
    ecs: &Ecs,
    req: &DescribeCapacityProvidersRequest,
) -> EcsResult<DescribeCapacityProvidersResponse> {
    if let Some(i) = req.include.iter().find(|i| *i != "TAGS") {
        return Err(EcsError::invalid(format!("include {i:?}: must be TAGS")));
    }
    let ctx = AwsContext::from_env();
    if let Some(c) = req.cluster.as_deref() {
        let store = ecs.open_store()?;
        active(&store, c)?;
    }
    let provider = |n: &str| CapacityProvider {
        capacity_provider_arn: ctx.ecs_arn(&format!("capacity-provider/{n}")),
        name: n.into(),
        status: "ACTIVE".into(),
        tags: Vec::new(),
    };
    let mut failures = Vec::new();
    let wanted: Vec<String> = match &req.capacity_providers {
        Some(names) if !names.is_empty() => names.clone(),
        _ => FARGATE_PROVIDERS.iter().map(|s| s.to_string()).collect(),
    };
    let mut found = Vec::new();
    for w in wanted {
        let name = w.rsplit('/').next().unwrap_or(&w);
        if FARGATE_PROVIDERS.contains(&name) {
            found.push(provider(name));
        } else {
            failures.push(Failure::missing(w.clone()));
        }
    }
    let (capacity_providers, next_token) =
        page(found, req.max_results, 10, req.next_token.as_deref())?;
    Ok(DescribeCapacityProvidersResponse {
        capacity_providers,
        failures,
        next_token,
    })
}

/// Items as stored JSON values.
pub(crate) fn to_values<T: Serialize>(items: &[T]) -> Vec<Value> {
    items
        .iter()
        .filter_map(|i| serde_json::to_value(i).ok())
        .collect()
}

/// The capacity providers a cluster can be associated with: Fargate's (this host has no
/// Auto Scaling groups).
fn check_providers(providers: &[String]) -> EcsResult<()> {
    for (i, p) in providers.iter().enumerate() {
        if !FARGATE_PROVIDERS.contains(&p.as_str()) {
            return Err(EcsError::invalid(format!(
                "capacityProviders[{i}] {p:?}: the capacity provider does not exist (this host \
                 has FARGATE and FARGATE_SPOT; Auto Scaling group providers need EC2 instances)"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_arns() {
        assert_eq!(
            cluster_name("arn:aws:ecs:us-east-1:000000000000:cluster/dev"),
            "dev"
        );
        assert_eq!(cluster_name("dev"), "dev");
        assert!(check_name("clusterName", "dev_1-x").is_ok());
        assert!(check_name("clusterName", "bad name").is_err());
        assert!(check_name("clusterName", "").is_err());
    }

    #[test]
    fn only_default_is_created_implicitly() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        let ctx = AwsContext::from_env();
        assert_eq!(for_run(&mut s, &ctx, "default").unwrap(), "default");
        assert!(
            s.list_clusters().unwrap().is_empty(),
            "created with the first task"
        );
        s.create_cluster("default", "arn:default", 1).unwrap();
        s.delete_cluster("default").unwrap();
        for_run(&mut s, &ctx, "default").unwrap();
        assert_eq!(
            s.cluster("default").unwrap().unwrap().status,
            ClusterStatus::Active
        );
        let e = for_run(&mut s, &ctx, "dev").unwrap_err().to_string();
        assert!(
            e.starts_with("ClusterNotFoundException: Cluster not found."),
            "{e}"
        );
        s.create_cluster("dev", "arn:dev", 1).unwrap();
        assert_eq!(for_run(&mut s, &ctx, "arn:x:cluster/dev").unwrap(), "dev");
        s.delete_cluster("dev").unwrap();
        let e = for_run(&mut s, &ctx, "dev").unwrap_err().to_string();
        assert!(e.contains("inactive"), "{e}");
        let v = serde_json::to_value(cluster_json(&s.cluster("dev").unwrap().unwrap())).unwrap();
        assert_eq!(v["status"], "INACTIVE");
        assert_eq!(v["runningTasksCount"], 0);
    }
}
