//! ECS task placement as a pure function: which container instance each of `count` tasks
//! goes to, or why none can take it. No etcd, no store, no I/O: callers (the single box's
//! RunTask/StartTask, cluster mode's RunTask) build the [`Candidate`]s and apply the result.
//!
//! The order is ECS's. Ref: AWS ECS developer guide, "Amazon ECS task placement"
//! (developerguide/task-placement.html): "1. Identify the container instances that satisfy
//! the CPU, GPU, memory, and port requirements in the task definition. 2. Identify the
//! container instances that satisfy the task placement constraints. 3. Identify the
//! container instances that satisfy the task placement strategies. 4. Select the container
//! instances for task placement." Constraints are binding, strategies best effort.
//!
//! - **Resources** ([`Need`]): CPU units, MiB of memory, static TCP and UDP host ports, as
//!   the ECS agent accounts them.
//! - **Constraints** (developerguide/task-placement-constraints.html): `distinctInstance`
//!   ("Place each task on a different container instance"; ECS counts the tasks whose
//!   desired status is not STOPPED, so callers leave those out of [`Candidate::tasks`]; the
//!   API reference: "each task in a particular group") and `memberOf` (a cluster query
//!   language expression, [`crate::taskdef::query`], `task:group` included).
//! - **Strategies** (developerguide/task-placement-strategies.html, ecs.json
//!   `PlacementStrategy`): `random`; `spread` on `instanceId` (or `host`, "which has the
//!   same effect") or `attribute:NAME` (the tasks of the group counted per value; instances
//!   without the attribute are one bucket of their own); `binpack` on `cpu` or `memory`
//!   ("the least available amount of the resource ... but still enough to run the task").
//!   Applied in order, each keeping the best of what the previous one kept; the last tie
//!   is broken at random.
//! - **Failures** (developerguide/api_failures_messages.html, "API failure reasons", for
//!   RunTask and StartTask): one per container instance that could not take the task,
//!   its ARN and ECS's reason: `AGENT` (the agent is disconnected), `RESOURCE:CPU`,
//!   `RESOURCE:MEMORY`, `RESOURCE:PORTS`, `RESOURCE:PORTS_UDP`,
//!   `MemberOf placement constraint unsatisfied.`,
//!   `DistinctInstance placement constraint unsatisfied.`. A cluster without a container
//!   instance is [`PlacementError::NoContainerInstances`] (RunTask's
//!   InvalidParameterException "No Container Instances were found in your cluster.").

use crate::ecs::shapes::{Failure, PlacementConstraint, PlacementStrategy};
use crate::taskdef::model::{NetworkMode, TaskDefinition, TransportProtocol};
use crate::taskdef::query::{Query, QueryError, Subjects};
use crate::taskdef::units::{CpuUnits, MemoryMib};
use std::collections::{BTreeMap, BTreeSet};

/// ECS's failure reasons (developerguide/api_failures_messages.html).
pub const AGENT: &str = "AGENT";
pub const RESOURCE_CPU: &str = "RESOURCE:CPU";
pub const RESOURCE_MEMORY: &str = "RESOURCE:MEMORY";
pub const RESOURCE_PORTS: &str = "RESOURCE:PORTS";
pub const RESOURCE_PORTS_UDP: &str = "RESOURCE:PORTS_UDP";
pub const MEMBER_OF: &str = "MemberOf placement constraint unsatisfied.";
pub const DISTINCT_INSTANCE: &str = "DistinctInstance placement constraint unsatisfied.";

/// RunTask's InvalidParameterException for a cluster without container instances.
pub const NO_CONTAINER_INSTANCES: &str = "No Container Instances were found in your cluster.";

/// Why placement could not even start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// No ACTIVE container instance in the cluster.
    #[error("{}", NO_CONTAINER_INSTANCES)]
    NoContainerInstances,
    #[error("placementConstraints[{index}].expression {expression:?}: {source}")]
    Expression {
        index: usize,
        expression: String,
        source: QueryError,
    },
    #[error("placementConstraints[{index}].type {kind:?}: must be distinctInstance or memberOf")]
    ConstraintType { index: usize, kind: String },
    /// A memberOf constraint of the task definition whose expression does not parse.
    #[error(
        "the task definition's placementConstraints[{index}].expression {expression:?}: {source}"
    )]
    DefinitionExpression {
        index: usize,
        expression: String,
        source: QueryError,
    },
    #[error("placementStrategy[{index}]: {kind} field {field:?}: {expected}")]
    StrategyField {
        index: usize,
        kind: String,
        field: String,
        expected: &'static str,
    },
    #[error("placementStrategy[{index}].type {kind:?}: must be random, spread or binpack")]
    StrategyType { index: usize, kind: String },
}

/// A task already on a candidate, as placement counts it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Placed {
    /// The task's `group` (`family:NAME` when RunTask named none, `service:NAME` for a
    /// service's).
    pub group: String,
}

/// One container instance as placement sees it.
#[derive(Debug, Clone, Default)]
pub struct Candidate {
    /// The container-instance ARN (failures name it).
    pub arn: String,
    /// Its id (`spread` on `instanceId`).
    pub id: String,
    /// Its EC2 instance id (the query language's `ec2InstanceId`).
    pub ec2_instance_id: String,
    /// Built-in and custom attributes: name → value.
    pub attributes: BTreeMap<String, Option<String>>,
    /// ACTIVE (not DRAINING or INACTIVE): only these take new tasks.
    pub active: bool,
    /// Its agent is connected (`agentConnected`).
    pub connected: bool,
    pub agent_version: String,
    pub registered_at_ms: i64,
    /// CPU units and MiB left.
    pub remaining_cpu: i64,
    pub remaining_memory: i64,
    /// Host ports taken (the agent's reserved ones included).
    pub used_ports: BTreeSet<u16>,
    pub used_udp_ports: BTreeSet<u16>,
    /// The tasks on it whose desired status is not STOPPED.
    pub tasks: Vec<Placed>,
}

impl Subjects for Candidate {
    fn agent_connected(&self) -> bool {
        self.connected
    }
    fn agent_version(&self) -> &str {
        &self.agent_version
    }
    fn ec2_instance_id(&self) -> &str {
        &self.ec2_instance_id
    }
    fn registered_at_ms(&self) -> i64 {
        self.registered_at_ms
    }
    fn running_tasks_count(&self) -> i64 {
        self.tasks.len() as i64
    }
    fn attribute_value(&self, name: &str) -> Option<Option<&str>> {
        self.attributes.get(name).map(Option::as_deref)
    }
    fn task_groups(&self) -> Vec<&str> {
        self.tasks.iter().map(|t| t.group.as_str()).collect()
    }
}

/// What one task takes from the instance it is placed on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Need {
    pub cpu: i64,
    pub memory: i64,
    /// Static TCP host ports.
    pub ports: Vec<u16>,
    /// Static UDP host ports.
    pub udp_ports: Vec<u16>,
    /// The task's group (distinctInstance, spread and `task:group` count tasks of a group).
    pub group: String,
}

impl Need {
    /// What a task of `def` (its overrides applied) in network mode `mode` reserves, as
    /// the ECS agent accounts it: the task-level `cpu`/`memory` when set, else the sum of
    /// the containers' (`memoryReservation` when set, else `memory`: the API reference's
    /// ContainerDefinition.memoryReservation, "If you specify memoryReservation, then that
    /// value is subtracted from the available memory resources for the container instance
    /// where the container is placed. Otherwise, the value of memory is used."); the host
    /// ports of `host`
    /// (the container port) and `bridge` (a `hostPort` other than 0; 0 or none is a
    /// dynamic port, which reserves nothing ahead) mappings; `awsvpc` and `none` reserve no
    /// host port (each awsvpc task has its own address). Ref: amazon-ecs-agent's task
    /// resource accounting (`agent/api/task`, host resources per task), and the
    /// developer guide's "Task definition parameters": hostPort.
    pub fn of(def: &TaskDefinition, mode: NetworkMode, group: impl Into<String>) -> Need {
        let containers = def.container_definitions.as_deref().unwrap_or_default();
        let cpu = match def
            .cpu
            .as_ref()
            .and_then(|c| CpuUnits::parse(c.as_str()).ok())
        {
            Some(c) => i64::from(c.0),
            None => containers.iter().map(|c| c.cpu.unwrap_or(0)).sum(),
        };
        let memory = match def
            .memory
            .as_ref()
            .and_then(|m| MemoryMib::parse(m.as_str()).ok())
        {
            Some(m) => m.0 as i64,
            None => containers
                .iter()
                .map(|c| c.memory_reservation.or(c.memory).unwrap_or(0))
                .sum(),
        };
        let (mut ports, mut udp_ports) = (Vec::new(), Vec::new());
        for m in containers
            .iter()
            .flat_map(|c| c.port_mappings.iter().flatten())
        {
            let port = match mode {
                NetworkMode::Host => m.container_port.or(m.host_port),
                NetworkMode::Bridge => m.host_port.filter(|p| *p != 0),
                NetworkMode::Awsvpc | NetworkMode::None => None,
            };
            let Some(p) = port.and_then(|p| u16::try_from(p).ok()).filter(|p| *p != 0) else {
                continue;
            };
            if m.protocol == Some(TransportProtocol::Udp) {
                udp_ports.push(p);
            } else {
                ports.push(p);
            }
        }
        ports.sort_unstable();
        ports.dedup();
        udp_ports.sort_unstable();
        udp_ports.dedup();
        Need {
            cpu,
            memory,
            ports,
            udp_ports,
            group: group.into(),
        }
    }

    /// Why `c` cannot hold this task for lack of something, in ECS's order (agent, CPU,
    /// memory, ports); `None` when it can.
    fn shortfall(&self, c: &Candidate) -> Option<&'static str> {
        if !c.connected {
            Some(AGENT)
        } else if self.cpu > c.remaining_cpu {
            Some(RESOURCE_CPU)
        } else if self.memory > c.remaining_memory {
            Some(RESOURCE_MEMORY)
        } else if self.ports.iter().any(|p| c.used_ports.contains(p)) {
            Some(RESOURCE_PORTS)
        } else if self.udp_ports.iter().any(|p| c.used_udp_ports.contains(p)) {
            Some(RESOURCE_PORTS_UDP)
        } else {
            None
        }
    }

    /// Takes this task's resources from `c` and records it there.
    pub fn take(&self, c: &mut Candidate) {
        c.remaining_cpu -= self.cpu;
        c.remaining_memory -= self.memory;
        c.used_ports.extend(self.ports.iter().copied());
        c.used_udp_ports.extend(self.udp_ports.iter().copied());
        c.tasks.push(Placed {
            group: self.group.clone(),
        });
    }
}

/// A constraint, parsed.
#[derive(Debug, Clone)]
enum Constraint {
    DistinctInstance,
    MemberOf(Query),
}

/// What `spread` counts per.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SpreadOn {
    Instance,
    Attribute(String),
}

/// A strategy rule, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Strategy {
    Random,
    Spread(SpreadOn),
    BinpackCpu,
    BinpackMemory,
}

/// Placement constraints and strategy, checked once (RunTask, CreateService and
/// UpdateService refuse what does not parse).
#[derive(Debug, Clone)]
pub struct Plan {
    constraints: Vec<Constraint>,
    strategy: Vec<Strategy>,
}

impl Plan {
    /// Parses `constraints` and `strategy`. Ref: ecs.json `PlacementConstraint` (memberOf's
    /// expression in the cluster query language) and `PlacementStrategy.field` ("For the
    /// spread placement strategy, valid values are instanceId (or host, which has the same
    /// effect), or any platform or custom attribute ... For the binpack placement strategy,
    /// valid values are cpu and memory. For the random placement strategy, this field is
    /// not used.").
    pub fn parse(
        constraints: &[PlacementConstraint],
        strategy: &[PlacementStrategy],
    ) -> Result<Plan, PlacementError> {
        let mut plan = Plan {
            constraints: Vec::new(),
            strategy: Vec::new(),
        };
        for (index, c) in constraints.iter().enumerate() {
            plan.constraints.push(match c.kind.as_deref() {
                Some("distinctInstance") => Constraint::DistinctInstance,
                Some("memberOf") => {
                    let expression = c.expression.clone().unwrap_or_default();
                    Constraint::MemberOf(Query::parse(&expression).map_err(|source| {
                        PlacementError::Expression {
                            index,
                            expression,
                            source,
                        }
                    })?)
                }
                other => {
                    return Err(PlacementError::ConstraintType {
                        index,
                        kind: other.unwrap_or_default().into(),
                    });
                }
            });
        }
        for (index, s) in strategy.iter().enumerate() {
            let kind = s.kind.clone().unwrap_or_default();
            let field = s.field.clone().unwrap_or_default();
            let bad = |expected| PlacementError::StrategyField {
                index,
                kind: kind.clone(),
                field: field.clone(),
                expected,
            };
            plan.strategy.push(match kind.as_str() {
                "random" => Strategy::Random,
                "spread" => match field.as_str() {
                    "instanceId" | "host" => Strategy::Spread(SpreadOn::Instance),
                    f => match f.strip_prefix("attribute:") {
                        Some(n) if !n.is_empty() => {
                            Strategy::Spread(SpreadOn::Attribute(n.to_string()))
                        }
                        _ => return Err(bad("instanceId, host or attribute:NAME")),
                    },
                },
                // ECS takes the field in either case (the console writes MEMORY).
                "binpack" => match field.to_ascii_lowercase().as_str() {
                    "cpu" => Strategy::BinpackCpu,
                    "memory" => Strategy::BinpackMemory,
                    _ => return Err(bad("cpu or memory")),
                },
                _ => return Err(PlacementError::StrategyType { index, kind }),
            });
        }
        Ok(plan)
    }

    /// This plan with the task definition's constraints added (each `memberOf`, the only
    /// type a task definition takes; one without a type constrains nothing, as `validate`
    /// says). ECS applies both: "Task placement constraints ... are the constraints in the
    /// task definition and those specified at runtime" (ecs.json
    /// `RunTaskRequest.placementConstraints`: "up to 10 constraints for each task
    /// (including constraints in the task definition and those specified at runtime)").
    pub fn and_definition(
        mut self,
        constraints: &[crate::taskdef::model::PlacementConstraint],
    ) -> Result<Plan, PlacementError> {
        for (index, c) in constraints.iter().enumerate() {
            if c.kind.is_none() {
                continue;
            }
            let expression = c.expression.clone().unwrap_or_default();
            let q = Query::parse(&expression).map_err(|source| {
                PlacementError::DefinitionExpression {
                    index,
                    expression: expression.clone(),
                    source,
                }
            })?;
            self.constraints.push(Constraint::MemberOf(q));
        }
        Ok(self)
    }

    /// Which constraint `c` breaks for a task of `need`, if any.
    fn unsatisfied(&self, c: &Candidate, need: &Need) -> Option<&'static str> {
        self.constraints.iter().find_map(|k| match k {
            Constraint::MemberOf(q) if !q.matches(c) => Some(MEMBER_OF),
            Constraint::DistinctInstance if c.tasks.iter().any(|t| t.group == need.group) => {
                Some(DISTINCT_INSTANCE)
            }
            _ => None,
        })
    }
}

/// The result of placing one task: the index of its candidate, or one failure per
/// container instance.
pub type Placement = Result<usize, Vec<Failure>>;

/// Places `count` tasks of `need` one after the other; each placement takes its resources
/// from the chosen candidate (and records the task there), so the next one sees it.
/// `rng` breaks the last tie (a test passes a fixed sequence).
pub fn place(
    cands: &mut [Candidate],
    need: &Need,
    plan: &Plan,
    count: u32,
    rng: &mut impl FnMut() -> u64,
) -> Result<Vec<Placement>, PlacementError> {
    if !cands.iter().any(|c| c.active) {
        return Err(PlacementError::NoContainerInstances);
    }
    Ok((0..count)
        .map(|_| {
            let i = place_one(cands, need, plan, rng)?;
            need.take(&mut cands[i]);
            Ok(i)
        })
        .collect())
}

fn place_one(
    cands: &[Candidate],
    need: &Need,
    plan: &Plan,
    rng: &mut impl FnMut() -> u64,
) -> Placement {
    let mut failures = Vec::new();
    let mut fit: Vec<usize> = Vec::new();
    for (i, c) in cands.iter().enumerate().filter(|(_, c)| c.active) {
        match need.shortfall(c).or_else(|| plan.unsatisfied(c, need)) {
            Some(reason) => failures.push(Failure {
                arn: c.arn.clone(),
                reason: reason.into(),
            }),
            None => fit.push(i),
        }
    }
    if fit.is_empty() {
        return Err(failures);
    }
    for s in &plan.strategy {
        if fit.len() == 1 {
            break;
        }
        fit = match s {
            Strategy::Random => vec![fit[pick(fit.len(), rng)]],
            Strategy::BinpackCpu => least(&fit, |i| cands[i].remaining_cpu),
            Strategy::BinpackMemory => least(&fit, |i| cands[i].remaining_memory),
            Strategy::Spread(on) => {
                let bucket = |c: &Candidate| -> Option<Option<String>> {
                    match on {
                        SpreadOn::Instance => Some(Some(c.id.clone())),
                        SpreadOn::Attribute(n) => Some(c.attributes.get(n).cloned().flatten()),
                    }
                };
                // The group's tasks per bucket, over every instance of the cluster.
                let mut counts: BTreeMap<Option<Option<String>>, i64> = BTreeMap::new();
                for c in cands {
                    let n = c.tasks.iter().filter(|t| t.group == need.group).count() as i64;
                    *counts.entry(bucket(c)).or_default() += n;
                }
                least(&fit, |i| counts[&bucket(&cands[i])])
            }
        };
    }
    Ok(fit[pick(fit.len(), rng)])
}

/// The indexes of `fit` whose `key` is the smallest.
fn least(fit: &[usize], key: impl Fn(usize) -> i64) -> Vec<usize> {
    let min = fit.iter().map(|&i| key(i)).min().unwrap_or(0);
    fit.iter().copied().filter(|&i| key(i) == min).collect()
}

fn pick(n: usize, rng: &mut impl FnMut() -> u64) -> usize {
    (rng() % n as u64) as usize
}

/// A random number for [`place`]'s last tie (from the standard library's per-process
/// random hasher keys; placement needs no cryptographic randomness).
pub fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// The service event ECS writes when a service's task fits nowhere. Ref: developerguide
/// service-event-messages-list.html: "service (service-name) was unable to place a task
/// because no container instance met all of its requirements." and, naming the closest
/// matching instance, "... The closest matching container-instance container-instance-id
/// has insufficient memory available." (or "insufficient CPU units available", "is already
/// using a port required by your task", "encountered error "AGENT""). Written as ECS's
/// event messages print (`(service NAME) ...`, `(container-instance ID)`), like the
/// scheduler's other events.
pub fn service_event(service: &str, failures: &[Failure]) -> String {
    let head = format!(
        "(service {service}) was unable to place a task because no container instance met all \
         of its requirements."
    );
    let Some(f) = failures.first() else {
        return head;
    };
    let id = f.arn.rsplit('/').next().unwrap_or(&f.arn);
    let why = match f.reason.as_str() {
        RESOURCE_MEMORY => "has insufficient memory available.",
        RESOURCE_CPU => "has insufficient CPU units available.",
        RESOURCE_PORTS | RESOURCE_PORTS_UDP => "is already using a port required by your task.",
        AGENT => "encountered error \"AGENT\".",
        _ => return head,
    };
    format!(
        "{head} The closest matching (container-instance {id}) {why} For more information, see \
         the Troubleshooting section of the Amazon ECS Developer Guide."
    )
}

#[cfg(test)]
mod tests;
