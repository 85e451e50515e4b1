//! Where a server's tasks are: on this box (its store and supervisors, the default), or
//! on a cluster's boxes (`serve --cluster`: `crate::cluster::fleet`, set once at start).
//! RunTask's launch, the service scheduler and DescribeServices' counts go through it,
//! so a service behaves the same whichever runs its tasks.

use super::Ecs;
use super::tasks::{Launcher, ThisBox};
use crate::store::{ContainerRow, StopCode, Store, TaskRow};
use crate::supervisor::protocol::{Client, ClientError};
use crate::task::TaskPaths;
use std::sync::OnceLock;

/// A task as the service scheduler sees it.
#[derive(Debug, Clone)]
pub struct FleetTask {
    pub row: TaskRow,
    pub containers: Vec<ContainerRow>,
    /// It runs on a DRAINING container instance: its service replaces it elsewhere, as a
    /// task of an older deployment is (within minimumHealthyPercent and maximumPercent).
    pub draining: bool,
}

/// DescribeClusters' counts of a cluster whose tasks are elsewhere than this box's store.
/// Ref: ecs.json `Cluster.registeredContainerInstancesCount` ("This includes container
/// instances in both ACTIVE and DRAINING status"), `runningTasksCount` ("in the RUNNING
/// state"), `pendingTasksCount` ("in the PENDING state").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    pub registered_container_instances: i64,
    pub running_tasks: i64,
    pub pending_tasks: i64,
    /// Of those, the FARGATE launch type's (`statistics`: the rest are EC2's).
    pub running_fargate_tasks: i64,
    pub pending_fargate_tasks: i64,
}

impl Counts {
    /// ecs.json `Cluster.statistics`' names, in the order DescribeClusters lists them.
    const STATISTICS: [&'static str; 8] = [
        "runningEC2TasksCount",
        "runningFargateTasksCount",
        "pendingEC2TasksCount",
        "pendingFargateTasksCount",
        "activeEC2ServiceCount",
        "activeFargateServiceCount",
        "drainingEC2ServiceCount",
        "drainingFargateServiceCount",
    ];

    /// DescribeClusters' task `statistics` entry `name` (`include` STATISTICS), if it is
    /// one of the task counts.
    fn statistic(&self, name: &str) -> Option<i64> {
        Some(match name {
            "runningEC2TasksCount" => self.running_tasks - self.running_fargate_tasks,
            "runningFargateTasksCount" => self.running_fargate_tasks,
            "pendingEC2TasksCount" => self.pending_tasks - self.pending_fargate_tasks,
            "pendingFargateTasksCount" => self.pending_fargate_tasks,
            _ => return None,
        })
    }
}

/// Where a target group reaches a service task: its awsvpc address (`ip` groups), or the
/// EC2 instance id of its box with the host ports its containers' ports are published
/// on (`instance` groups: bridge and host network modes). Ref: ECS Developer Guide,
/// alb.html ("registered with the Application Load Balancer as an instance ID and port
/// combination").
#[derive(Debug, Clone, PartialEq)]
pub enum TaskTarget {
    Ip(String),
    Instance {
        id: String,
        /// (container, containerPort, hostPort) of each published port.
        ports: Vec<(String, u16, u16)>,
        /// Host network mode: a container port is its host port.
        host: bool,
    },
}

impl TaskTarget {
    /// The target (id, port) for port `port` of container `container` (any container
    /// when None): None when the task publishes no such port.
    pub fn target(&self, container: Option<&str>, port: u16) -> Option<(&str, u16)> {
        match self {
            TaskTarget::Ip(ip) => Some((ip, port)),
            TaskTarget::Instance { id, ports, host } => ports
                .iter()
                .find(|(c, p, _)| *p == port && container.is_none_or(|n| n == c))
                .map(|(_, _, h)| (id.as_str(), *h))
                .or_else(|| host.then_some((id.as_str(), port))),
        }
    }
}

/// The tasks a server starts, follows and stops.
pub trait Fleet: Send + Sync {
    /// Where RunTask's checked tasks start.
    fn launcher(&self) -> &dyn Launcher;

    /// The tasks of `group` (`service:NAME`) in `cluster` that are not STOPPED, oldest
    /// first, with their containers.
    fn group_tasks(
        &self,
        store: &Store,
        cluster: &str,
        group: &str,
    ) -> anyhow::Result<Vec<FleetTask>>;

    /// Task `id` of `cluster`, in any state, if there is one.
    fn task(&self, store: &Store, cluster: &str, id: &str) -> anyhow::Result<Option<TaskRow>>;

    /// The private IPv4 address of awsvpc task `id` of `cluster` (what a target group of
    /// type `ip` and Cloud Map register), once it has one.
    fn task_ip(&self, store: &Store, _cluster: &str, id: &str) -> Option<String> {
        let n = store.task_network(id).ok()??;
        (n.mode == "awsvpc").then_some(())?;
        n.network?.net.ip.map(|ip| ip.to_string())
    }

    /// Where a target group reaches task `id` of `cluster`, once its network is set up:
    /// this box's instance id on one box.
    fn task_target(&self, store: &Store, _cluster: &str, id: &str) -> Option<TaskTarget> {
        let n = store.task_network(id).ok()??;
        match n.mode.as_str() {
            "awsvpc" => n.network?.net.ip.map(|ip| TaskTarget::Ip(ip.to_string())),
            mode @ ("bridge" | "host") => {
                let rec = n.network;
                // A bridge task's ports are published once its network is set up.
                if mode == "bridge" && rec.is_none() {
                    return None;
                }
                let ports = rec
                    .map(|r| r.bindings)
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|b| {
                        Some((b.container, b.binding.container_port?, b.binding.host_port?))
                    })
                    .collect();
                Some(TaskTarget::Instance {
                    id: store.ec2_instance_id().ok()?,
                    ports,
                    host: mode == "host",
                })
            }
            _ => None,
        }
    }

    /// Asks for task `t` to stop with `code` and `reason`; false when it could not be
    /// asked (a later pass tries again).
    fn stop(&self, ecs: &Ecs, t: &TaskRow, code: StopCode, reason: &str) -> bool;

    /// Finishes the tasks whose supervisor died: every task's (`ids` None) or these.
    fn reconcile(&self, ecs: &Ecs, store: &mut Store, ids: Option<&[&str]>);

    /// StartTask's launcher for the container instances `instances` names (ids or ARNs,
    /// one task each), when they are a cluster's; `None` on one box, where this host is
    /// the only container instance (StartTask checks the names against it).
    fn launcher_onto(&self, _instances: &[String]) -> Option<Box<dyn Launcher>> {
        None
    }

    /// Cluster `cluster`'s DescribeClusters counts, when they are not this box's store's;
    /// `None` on one box.
    fn counts(&self, _cluster: &str) -> anyhow::Result<Option<Counts>> {
        Ok(None)
    }

    /// How many tasks of deployment `id` (in `cluster`) stopped without ever reaching
    /// RUNNING.
    fn failed_deployment_tasks(
        &self,
        store: &Store,
        cluster: &str,
        id: &str,
    ) -> anyhow::Result<i64>;

    /// Runs one pass of the service scheduler, `pass`, as this fleet needs: on this box
    /// at once; in a cluster only on the leader serve, as a write of the control plane.
    /// `Ok(false)` when this server does not schedule now.
    fn schedule(&self, pass: &mut dyn FnMut() -> anyhow::Result<()>) -> anyhow::Result<bool> {
        pass().map(|()| true)
    }

    /// A service's pass of the scheduler committed its rows: in a cluster they go to the
    /// other serves now, as one change (`cluster::replica`); on one box the store is all.
    fn pass_written(&self) -> anyhow::Result<()> {
        Ok(())
    }
}

/// This box: the store's rows and the supervisors' sockets.
pub struct Local;

impl Fleet for Local {
    fn launcher(&self) -> &dyn Launcher {
        &ThisBox
    }

    fn group_tasks(
        &self,
        store: &Store,
        cluster: &str,
        group: &str,
    ) -> anyhow::Result<Vec<FleetTask>> {
        let mut out = Vec::new();
        for (row, containers) in store.group_tasks(cluster, group)? {
            out.push(FleetTask {
                row,
                containers,
                draining: false,
            });
        }
        Ok(out)
    }

    fn task(&self, store: &Store, _cluster: &str, id: &str) -> anyhow::Result<Option<TaskRow>> {
        Ok(store.task(id)?.map(|(t, _)| t))
    }

    fn stop(&self, ecs: &Ecs, t: &TaskRow, code: StopCode, reason: &str) -> bool {
        let client = Client::new(&TaskPaths::new(&ecs.root, &ecs.run_root, &t.id), &t.id);
        match client.stop(code, reason, false) {
            Ok(()) => true,
            Err(e @ ClientError::Refused { .. }) => {
                tracing::warn!(task_id = %t.id, error = %e, "the supervisor refused to stop a task");
                false
            }
            Err(e) => {
                tracing::warn!(task_id = %t.id, error = %e, "could not ask a task's supervisor to stop it");
                false
            }
        }
    }

    fn reconcile(&self, ecs: &Ecs, store: &mut Store, ids: Option<&[&str]>) {
        match ids {
            None => ecs.reconcile(store),
            Some(ids) => ecs.reconcile_tasks(store, ids),
        }
    }

    fn failed_deployment_tasks(
        &self,
        store: &Store,
        _cluster: &str,
        id: &str,
    ) -> anyhow::Result<i64> {
        Ok(store.failed_deployment_tasks(id)?)
    }
}

static FLEET: OnceLock<Box<dyn Fleet>> = OnceLock::new();

/// Makes this process's tasks `f`'s (once, at `serve --cluster`'s start).
pub fn set(f: Box<dyn Fleet>) {
    let _ = FLEET.set(f);
}

/// This process's fleet: [`Local`] unless [`set`].
pub fn get() -> &'static dyn Fleet {
    FLEET.get().map_or(&Local as &dyn Fleet, |f| f.as_ref())
}

/// DescribeClusters' answer with each cluster's instance and task counts taken from where
/// its tasks are (the cluster's etcd in `serve --cluster`); on one box, as it is. A cluster
/// this serve has no row of but whose instances are registered in etcd (`agent
/// --cluster-name`, as ECS's agent creates `default` on its first registration) is
/// described, not MISSING, as the container-instance operations answer for it.
pub fn with_counts(
    mut r: super::clusters::DescribeClustersResponse,
    req: &super::clusters::DescribeClustersRequest,
) -> super::EcsResult<super::clusters::DescribeClustersResponse> {
    for c in &mut r.clusters {
        if let Some(n) = get().counts(&c.cluster_name)? {
            c.registered_container_instances_count = n.registered_container_instances;
            c.running_tasks_count = n.running_tasks;
            c.pending_tasks_count = n.pending_tasks;
            for st in &mut c.statistics {
                if let Some(v) = n.statistic(&st.name) {
                    st.value = v.to_string();
                }
            }
        }
    }
    for f in std::mem::take(&mut r.failures) {
        let name = f.arn.rsplit('/').next().unwrap_or(&f.arn).to_string();
        let counts = match f.reason.as_str() {
            "MISSING" => get().counts(&name)?,
            _ => None,
        };
        match counts {
            Some(n) if n.registered_container_instances > 0 => {
                let row = crate::store::ClusterRow {
                    name,
                    arn: f.arn.clone(),
                    status: crate::store::ClusterStatus::Active,
                    created_at_ms: 0,
                    running_tasks: n.running_tasks,
                    pending_tasks: n.pending_tasks,
                    active_services: 0,
                    tags: Vec::new(),
                    settings: Vec::new(),
                    capacity_providers: Vec::new(),
                    default_capacity_provider_strategy: Vec::new(),
                    configuration: serde_json::json!({}),
                };
                let mut c = super::clusters::cluster_json(&row);
                c.registered_container_instances_count = n.registered_container_instances;
                // As DescribeClusters shows a cluster without `include`, but STATISTICS.
                c.settings = Vec::new();
                if req.include.iter().any(|i| i == "STATISTICS") {
                    c.statistics = Counts::STATISTICS
                        .iter()
                        .map(|name| super::clusters::ClusterSetting {
                            name: name.to_string(),
                            // The services are this serve's: a cluster without a row has none.
                            value: n.statistic(name).unwrap_or(0).to_string(),
                        })
                        .collect();
                }
                r.clusters.push(c);
            }
            _ => r.failures.push(f),
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::TaskTarget;

    #[test]
    fn a_target_is_the_task_address_or_its_box_and_host_port() {
        let ip = TaskTarget::Ip("10.0.0.5".into());
        assert_eq!(ip.target(Some("web"), 8080), Some(("10.0.0.5", 8080)));
        let bridge = TaskTarget::Instance {
            id: "i-0123456789abcdef0".into(),
            ports: vec![("web".into(), 8080, 49153), ("side".into(), 8080, 49154)],
            host: false,
        };
        assert_eq!(
            bridge.target(Some("side"), 8080),
            Some(("i-0123456789abcdef0", 49154))
        );
        assert_eq!(
            bridge.target(None, 8080),
            Some(("i-0123456789abcdef0", 49153))
        );
        assert_eq!(bridge.target(Some("web"), 9090), None, "not published");
        let host = TaskTarget::Instance {
            id: "i-0123456789abcdef0".into(),
            ports: Vec::new(),
            host: true,
        };
        assert_eq!(
            host.target(Some("web"), 9090),
            Some(("i-0123456789abcdef0", 9090))
        );
    }
}
