//! Cluster verbs, as the AWS CLI has them: `create-cluster`, `list-clusters`,
//! `describe-clusters`, `delete-cluster`; and the cluster check of run-task.

use super::GlobalOpts;
use super::output::{self, OutputFormat};
use super::tasks::{open_state, reconcile};
use crate::api::error::EcsError;
use crate::store::{ClusterRow, DeleteCluster, Store};
use crate::taskdef::AwsContext;
use anyhow::bail;
use clap::Args;
use serde_json::{Value, json};
use std::process::ExitCode;

/// The cluster ECS creates by itself on first use.
pub const DEFAULT: &str = "default";

const NOT_FOUND: &str = "Cluster not found.";

fn not_found(detail: String) -> EcsError {
    EcsError::new("ClusterNotFoundException", format!("{NOT_FOUND} {detail}"))
}

/// Create a cluster, like `aws ecs create-cluster` (`default` when no name is given).
///
/// Example: minifargate create-cluster --cluster-name dev
#[derive(Debug, Args)]
pub struct CreateClusterArgs {
    #[arg(long, default_value = DEFAULT)]
    pub cluster_name: String,
    #[command(flatten)]
    pub output: output::OutputArg,
}

/// List the ARNs of ACTIVE clusters, like `aws ecs list-clusters`.
#[derive(Debug, Args)]
pub struct ListClustersArgs {
    #[command(flatten)]
    pub output: output::OutputArg,
}

/// Describe clusters with their task counts, like `aws ecs describe-clusters`.
///
/// Example: minifargate describe-clusters --clusters default dev
#[derive(Debug, Args)]
pub struct DescribeClustersArgs {
    /// Cluster names or ARNs (default: `default`).
    #[arg(long, num_args = 1..)]
    pub clusters: Vec<String>,
    #[command(flatten)]
    pub output: output::OutputArg,
}

/// Delete a cluster (it becomes INACTIVE), like `aws ecs delete-cluster`; refused while
/// it has tasks that are not STOPPED.
#[derive(Debug, Args)]
pub struct DeleteClusterArgs {
    /// Cluster name or ARN.
    #[arg(long)]
    pub cluster: String,
    #[command(flatten)]
    pub output: output::OutputArg,
}

/// The cluster name in a name or a cluster ARN (`…:cluster/<name>`).
pub fn cluster_name(s: &str) -> &str {
    s.rsplit_once(":cluster/").map_or(s, |(_, n)| n)
}

/// Ref: ecs.json `CreateClusterRequest.clusterName`: up to 255 letters, numbers,
/// underscores and hyphens.
fn check_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty()
        || name.len() > 255
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        bail!(EcsError::invalid(format!(
            "clusterName {name:?}: up to 255 letters (uppercase and lowercase), numbers, \
             underscores, and hyphens are allowed"
        )));
    }
    Ok(())
}

/// The ECS `Cluster` shape.
pub fn cluster_json(c: &ClusterRow) -> Value {
    json!({
        "clusterArn": c.arn,
        "clusterName": c.name,
        "status": c.status,
        "registeredContainerInstancesCount": 0,
        "runningTasksCount": c.running_tasks,
        "pendingTasksCount": c.pending_tasks,
        "activeServicesCount": 0,
        "statistics": [],
        "tags": [],
        "settings": [{"name": "containerInsights", "value": "disabled"}],
        "capacityProviders": [],
        "defaultCapacityProviderStrategy": [],
    })
}

/// The cluster a task runs in: `default` is created with the first task (by
/// `launch::create_task`, so refused input leaves no cluster behind) or made ACTIVE again
/// after a delete-cluster, as ECS does; any other must exist and be ACTIVE. Returns its
/// name.
pub fn for_run(store: &mut Store, ctx: &AwsContext, cluster: &str) -> anyhow::Result<String> {
    let name = cluster_name(cluster).to_string();
    if name == DEFAULT {
        if store.cluster(&name)?.is_some_and(|c| c.status != "ACTIVE") {
            let now = chrono::Utc::now().timestamp_millis();
            store.create_cluster(&name, &ctx.ecs_arn(&format!("cluster/{name}")), now)?;
        }
        return Ok(name);
    }
    match store.cluster(&name)? {
        Some(c) if c.status == "ACTIVE" => Ok(name),
        Some(_) => bail!(EcsError::new(
            "ClusterNotFoundException",
            format!(
                "The referenced cluster was inactive: {name} (create it again with `minifargate \
                 create-cluster --cluster-name {name}`)"
            )
        )),
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

fn print_one(fmt: OutputFormat, v: Value) -> anyhow::Result<()> {
    match fmt {
        OutputFormat::Json => output::print_json(&json!({ "cluster": v })),
        OutputFormat::Table => {
            output::clusters_table(&[v]);
            Ok(())
        }
    }
}

/// CreateCluster (CLI and API): the `Cluster` JSON.
pub fn create_json(g: &GlobalOpts, name: &str) -> anyhow::Result<Value> {
    check_name(name)?;
    let ctx = AwsContext::from_env();
    let mut store = open_state(g)?;
    let arn = ctx.ecs_arn(&format!("cluster/{name}"));
    let now = chrono::Utc::now().timestamp_millis();
    Ok(cluster_json(&store.create_cluster(name, &arn, now)?))
}

pub fn create(g: &GlobalOpts, a: CreateClusterArgs) -> anyhow::Result<ExitCode> {
    print_one(a.output.output, create_json(g, &a.cluster_name)?)?;
    Ok(ExitCode::SUCCESS)
}

/// ListClusters (CLI and API): the ARNs of ACTIVE clusters.
pub fn list_arns(g: &GlobalOpts) -> anyhow::Result<Vec<String>> {
    let store = open_state(g)?;
    Ok(store.list_clusters()?.into_iter().map(|c| c.arn).collect())
}

pub fn list(g: &GlobalOpts, a: ListClustersArgs) -> anyhow::Result<ExitCode> {
    let arns = list_arns(g)?;
    match a.output.output {
        OutputFormat::Json => output::print_json(&json!({ "clusterArns": arns }))?,
        OutputFormat::Table => output::arns_table("CLUSTER", &arns),
    }
    Ok(ExitCode::SUCCESS)
}

/// DescribeClusters (CLI and API): `(clusters, failures)`; no names means `default`.
pub fn describe_json(
    g: &GlobalOpts,
    wanted: &[String],
) -> anyhow::Result<(Vec<Value>, Vec<Value>)> {
    let ctx = AwsContext::from_env();
    let mut store = open_state(g)?;
    // Task counts read the task states: finish dead tasks first.
    reconcile(g, &mut store);
    let default = [DEFAULT.to_string()];
    let wanted = if wanted.is_empty() {
        &default[..]
    } else {
        wanted
    };
    let mut clusters = Vec::new();
    let mut failures = Vec::new();
    for w in wanted {
        let name = cluster_name(w);
        match store.cluster(name)? {
            Some(c) => clusters.push(cluster_json(&c)),
            None => failures.push(json!({
                "arn": ctx.ecs_arn(&format!("cluster/{name}")),
                "reason": "MISSING",
            })),
        }
    }
    Ok((clusters, failures))
}

pub fn describe(g: &GlobalOpts, a: DescribeClustersArgs) -> anyhow::Result<ExitCode> {
    let (clusters, failures) = describe_json(g, &a.clusters)?;
    match a.output.output {
        OutputFormat::Json => output::print_json(&json!({
            "clusters": clusters,
            "failures": failures,
        }))?,
        OutputFormat::Table => {
            output::clusters_table(&clusters);
            for f in &failures {
                println!("failure: {} MISSING", f["arn"].as_str().unwrap_or_default());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// DeleteCluster (CLI and API): the INACTIVE `Cluster` JSON.
pub fn delete_json(g: &GlobalOpts, cluster: &str) -> anyhow::Result<Value> {
    let mut store = open_state(g)?;
    // A task whose supervisor died must not keep its cluster alive.
    reconcile(g, &mut store);
    let name = cluster_name(cluster);
    match store.delete_cluster(name)? {
        DeleteCluster::Deleted(c) => Ok(cluster_json(&c)),
        DeleteCluster::NotFound => bail!(not_found(format!("({name})"))),
        DeleteCluster::HasActiveTasks(n) => bail!(EcsError::new(
            "ClusterContainsTasksException",
            format!(
                "The Cluster cannot be deleted while Tasks are active. ({n} task(s) in {name} \
                 are not STOPPED: stop them with `minifargate stop-task`)"
            )
        )),
    }
}

pub fn delete(g: &GlobalOpts, a: DeleteClusterArgs) -> anyhow::Result<ExitCode> {
    print_one(a.output.output, delete_json(g, &a.cluster)?)?;
    Ok(ExitCode::SUCCESS)
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
        assert!(check_name("dev_1-x").is_ok());
        assert!(check_name("bad name").is_err());
        assert!(check_name("").is_err());
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
        assert_eq!(s.cluster("default").unwrap().unwrap().status, "ACTIVE");
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
        let v = cluster_json(&s.cluster("dev").unwrap().unwrap());
        assert_eq!(v["status"], "INACTIVE");
        assert_eq!(v["runningTasksCount"], 0);
    }
}
