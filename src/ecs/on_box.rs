//! Placement on one box (no `--cluster`): each cluster's one container instance is this
//! host ([`super::container_instances::on_box`]), and RunTask/StartTask of a task that is
//! not FARGATE is placed on it through `ecs::placement`, as ECS places on a
//! cluster of one instance: a task that does not fit (CPU, memory, host ports) or whose
//! `memberOf`/`distinctInstance` this host does not satisfy is not started and comes back
//! in `failures[]` with the instance's ARN and ECS's reason (docs/cluster.md, "Placement").

use super::container_instances::{active_cluster, on_box};
use super::shapes::{Failure, PlacementConstraint, PlacementStrategy};
use super::{EcsError, EcsResult};
use crate::ecs::placement::{self, Need, PlacementError, Plan};
use crate::store::{Store, StoredTaskDefinition, TaskOverride};
use std::path::Path;

/// What a RunTask asks of placement.
pub struct Asked<'a> {
    pub overrides: &'a TaskOverride,
    pub group: Option<&'a str>,
    pub constraints: &'a [PlacementConstraint],
    pub strategy: &'a [PlacementStrategy],
    pub count: u32,
}

impl From<PlacementError> for EcsError {
    fn from(e: PlacementError) -> EcsError {
        EcsError::invalid(e.to_string())
    }
}

/// Checks a request's placement constraints and strategy beyond their shapes (memberOf's
/// expression, the strategy's field): InvalidParameterException naming the member.
pub fn plan(
    constraints: Option<&[PlacementConstraint]>,
    strategy: Option<&[PlacementStrategy]>,
) -> EcsResult<Plan> {
    Ok(Plan::parse(
        constraints.unwrap_or_default(),
        strategy.unwrap_or_default(),
    )?)
}

/// The lock held from reading this box's remaining resources until the placed tasks are
/// written (every process on the box, `serve` and the CLI, takes it): two RunTasks never
/// both take the last memory. Released when dropped.
pub fn lock(root: &Path) -> EcsResult<nix::fcntl::Flock<std::fs::File>> {
    let path = root.join("placement.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| anyhow::anyhow!("failed to open {}: {e}", path.display()))?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| anyhow::anyhow!("failed to lock {}: {e}", path.display()).into())
}

/// Places `asked.count` tasks of `stored` on cluster `cluster`'s container instance (this
/// host): how many fit, and the failures of the others (one per instance and reason, as
/// ECS lists them).
pub fn place(
    store: &Store,
    cluster: &str,
    stored: &StoredTaskDefinition,
    asked: &Asked,
) -> EcsResult<(u32, Vec<Failure>)> {
    // `default` has no row until its first task is written: its instance is this box too.
    let (arn, registered_at_ms) = match store.cluster(cluster).map_err(anyhow::Error::from)? {
        Some(_) => {
            let c = active_cluster(store, cluster)?;
            (c.arn, c.created_at_ms)
        }
        None => (
            crate::taskdef::AwsContext::from_env().ecs_arn(&format!("cluster/{cluster}")),
            super::now_ms(),
        ),
    };
    // The definition as the task will run it (overrides applied); an override naming no
    // container is refused later, by the launch, with its own error.
    let def = crate::supervisor::launch::apply_overrides(&stored.definition, asked.overrides, "")
        .unwrap_or_else(|_| stored.definition.clone());
    let mode = crate::supervisor::launch::network_mode(&def, "EC2");
    let group = asked
        .group
        .map_or_else(|| format!("family:{}", stored.family()), String::from);
    let need = Need::of(&def, mode, group);
    let plan = plan(Some(asked.constraints), Some(asked.strategy))?;
    let mut cands = [on_box(store, cluster, &arn, registered_at_ms)?.candidate];
    let placed = placement::place(
        &mut cands,
        &need,
        &plan,
        asked.count,
        &mut placement::random,
    )?;
    let mut failures: Vec<Failure> = Vec::new();
    let mut n = 0;
    for p in placed {
        match p {
            Ok(_) => n += 1,
            Err(fs) => {
                for f in fs {
                    if !failures.contains(&f) {
                        failures.push(f);
                    }
                }
            }
        }
    }
    Ok((n, failures))
}
