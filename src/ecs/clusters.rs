//! Clusters: CreateCluster, ListClusters, DescribeClusters, DeleteCluster, and the
//! cluster check every task operation makes.

use super::{Ecs, EcsError, EcsResult, page};
use crate::store::{ClusterRow, ClusterStatus, DeleteCluster, Store, Tag};
use crate::task::shape::KeyValue;
use crate::taskdef::AwsContext;
use anyhow::bail;
use serde::{Deserialize, Serialize};

/// The cluster ECS creates by itself on first use.
pub const DEFAULT: &str = "default";

const NOT_FOUND: &str = "Cluster not found.";

fn not_found(detail: String) -> EcsError {
    EcsError::ClusterNotFound(format!("{NOT_FOUND} {detail}"))
}

/// The cluster name in a name or a cluster ARN (`…:cluster/<name>`).
pub fn cluster_name(s: &str) -> &str {
    s.rsplit_once(":cluster/").map_or(s, |(_, n)| n)
}

/// The name rule of clusters and services. Ref: ecs.json
/// `CreateClusterRequest.clusterName`, `CreateServiceRequest.serviceName`: up to 255
/// letters, numbers, underscores and hyphens.
pub fn check_name(member: &str, name: &str) -> EcsResult<()> {
    if name.is_empty()
        || name.len() > 255
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(EcsError::invalid(format!(
            "{member} {name:?}: up to 255 letters (uppercase and lowercase), numbers, \
             underscores, and hyphens are allowed"
        )));
    }
    Ok(())
}

/// ecs.json `Cluster`, members in alphabetical order as the AWS CLI prints them.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Cluster {
    pub active_services_count: i64,
    pub capacity_providers: Vec<String>,
    pub cluster_arn: String,
    pub cluster_name: String,
    pub default_capacity_provider_strategy: Vec<CapacityProviderStrategyItem>,
    pub pending_tasks_count: i64,
    pub registered_container_instances_count: i64,
    pub running_tasks_count: i64,
    pub settings: Vec<KeyValue>,
    pub statistics: Vec<KeyValue>,
    pub status: ClusterStatus,
    pub tags: Vec<Tag>,
}

/// ecs.json `CapacityProviderStrategyItem` (this host has no capacity providers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CapacityProviderStrategyItem {
    pub capacity_provider: String,
    pub weight: i64,
    pub base: i64,
}

/// The ECS `Cluster` of a cluster's row.
pub fn cluster_json(c: &ClusterRow) -> Cluster {
    Cluster {
        active_services_count: 0,
        capacity_providers: Vec::new(),
        cluster_arn: c.arn.clone(),
        cluster_name: c.name.clone(),
        default_capacity_provider_strategy: Vec::new(),
        pending_tasks_count: c.pending_tasks,
        registered_container_instances_count: 0,
        running_tasks_count: c.running_tasks,
        settings: vec![KeyValue {
            name: "containerInsights".into(),
            value: "disabled".into(),
        }],
        statistics: Vec::new(),
        status: c.status,
        tags: Vec::new(),
    }
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

/// One resource a Describe operation did not find: `{"arn", "reason": "MISSING"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    pub arn: String,
    pub reason: String,
}

impl Failure {
    pub fn missing(arn: impl Into<String>) -> Failure {
        Failure {
            arn: arn.into(),
            reason: "MISSING".into(),
        }
    }
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
    let ctx = AwsContext::from_env();
    let mut store = ecs.open_store()?;
    let arn = ctx.ecs_arn(&format!("cluster/{name}"));
    let row = store
        .create_cluster(name, &arn, super::now_ms())
        .map_err(anyhow::Error::from)?;
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
    let mut clusters = Vec::new();
    let mut failures = Vec::new();
    for w in wanted {
        let name = cluster_name(w);
        match store.cluster(name).map_err(anyhow::Error::from)? {
            Some(c) => clusters.push(cluster_json(&c)),
            None => failures.push(Failure::missing(ctx.ecs_arn(&format!("cluster/{name}")))),
        }
    }
    Ok(DescribeClustersResponse { clusters, failures })
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
