//! Cluster verbs, as the AWS CLI has them: `create-cluster`, `list-clusters`,
//! `describe-clusters`, `delete-cluster` (crate::ecs::clusters does the work).

use super::GlobalOpts;
use super::output::{self, OutputFormat};
use crate::ecs::clusters::{self as core, DEFAULT};
use clap::Args;
use serde_json::json;
use std::process::ExitCode;

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

fn print_one(fmt: OutputFormat, r: core::ClusterResponse) -> anyhow::Result<()> {
    match fmt {
        OutputFormat::Json => output::print_json(&r),
        OutputFormat::Table => {
            output::clusters_table(&[r.cluster]);
            Ok(())
        }
    }
}

pub fn create(g: &GlobalOpts, a: CreateClusterArgs) -> anyhow::Result<ExitCode> {
    let req = core::CreateClusterRequest {
        cluster_name: Some(a.cluster_name),
        ..Default::default()
    };
    print_one(a.output.output, core::create_cluster(&g.ecs(), &req)?)?;
    Ok(ExitCode::SUCCESS)
}

pub fn list(g: &GlobalOpts, a: ListClustersArgs) -> anyhow::Result<ExitCode> {
    let ecs = g.ecs();
    let arns = super::all_pages(|next_token| {
        let req = core::ListClustersRequest {
            next_token,
            ..Default::default()
        };
        let r = core::list_clusters(&ecs, &req)?;
        Ok((r.cluster_arns, r.next_token))
    })?;
    match a.output.output {
        OutputFormat::Json => output::print_json(&json!({ "clusterArns": arns }))?,
        OutputFormat::Table => output::arns_table("CLUSTER", &arns),
    }
    Ok(ExitCode::SUCCESS)
}

pub fn describe(g: &GlobalOpts, a: DescribeClustersArgs) -> anyhow::Result<ExitCode> {
    let req = core::DescribeClustersRequest {
        clusters: a.clusters,
    };
    let r = core::describe_clusters(&g.ecs(), &req)?;
    match a.output.output {
        OutputFormat::Json => output::print_json(&r)?,
        OutputFormat::Table => {
            output::clusters_table(&r.clusters);
            for f in &r.failures {
                println!("failure: {} {}", f.arn, f.reason);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn delete(g: &GlobalOpts, a: DeleteClusterArgs) -> anyhow::Result<ExitCode> {
    let req = core::DeleteClusterRequest {
        cluster: Some(a.cluster),
    };
    print_one(a.output.output, core::delete_cluster(&g.ecs(), &req)?)?;
    Ok(ExitCode::SUCCESS)
}
