//! Tasks in cluster mode (docs/cluster.md "Tasks"): RunTask ([`Placer`]) places each task
//! on a container instance, StartTask ([`Onto`]) on the one it names, and each writes, in one etcd transaction that compares the instance's
//! ledger, the task's reservation, its assignment (what the instance's agent creates and
//! runs: the ACS payload's equivalent) and its first record (what DescribeTasks shows).
//! The agent ([`super::work`]) runs the assignment through the same supervisor path as one
//! box and writes each state change back into the record. StopTask sets the assignment's
//! desired status; DescribeTasks and ListTasks read the records.

use super::etcd::{Compare, Etcd, EtcdError, Op};
use super::instances::{self, Instance, Status};
use super::keys;
use super::records::{Assigned, Assignment, Record, Reservation, decode, json_bytes, task_json};
use crate::ecs::placement;
use crate::ecs::shapes::Failure;
use crate::ecs::tasks::{Launcher, RunTaskResponse, Started, Supervision};
use crate::ecs::{Ecs, EcsError, EcsResult};
use crate::store::{DesiredStatus, Store, StoredTaskDefinition};
use crate::supervisor::launch::{self, Ids, Prepared};
use crate::taskdef::AwsContext;
use crate::taskdef::model::{NetworkMode, TaskDefinition};

/// RunTask's launcher in cluster mode: places each task and writes its assignment.
pub struct Placer;

/// StartTask's launcher in cluster mode: task `i` goes on the container instance
/// `instances[i]` names (an id or an ARN), if it can take it; no strategy.
pub struct Onto(pub Vec<String>);

impl Launcher for Placer {
    fn replay(&self, _ecs: &Ecs, store: Store, arns: &[String]) -> EcsResult<Started> {
        replay(store, arns)
    }

    fn launch(
        &self,
        ecs: &Ecs,
        store: Store,
        ctx: &AwsContext,
        stored: &StoredTaskDefinition,
        req: &launch::Request,
        count: u32,
        _providers: &[String],
        _sup: Supervision,
    ) -> EcsResult<Started> {
        let targets = vec![Target::Anywhere; count as usize];
        launch_on(ecs, store, ctx, stored, req, &targets)
    }
}

impl Launcher for Onto {
    fn replay(&self, _ecs: &Ecs, store: Store, arns: &[String]) -> EcsResult<Started> {
        replay(store, arns)
    }

    fn launch(
        &self,
        ecs: &Ecs,
        store: Store,
        ctx: &AwsContext,
        stored: &StoredTaskDefinition,
        req: &launch::Request,
        _count: u32,
        _providers: &[String],
        _sup: Supervision,
    ) -> EcsResult<Started> {
        let targets: Vec<Target> = self.0.iter().map(|r| Target::Onto(r)).collect();
        launch_on(ecs, store, ctx, stored, req, &targets)
    }
}

/// A RunTask retried with its clientToken in cluster mode: the tasks the first call
/// placed, as their records in etcd say now (the answer ECS gives: the same tasks; this
/// box's store has none of them). A record that does not decode is an error naming its
/// key; a task whose record is gone (deleted with its cluster) is left out, as one box
/// leaves out a task no longer in its store.
fn replay(store: Store, arns: &[String]) -> EcsResult<Started> {
    let etcd = super::serving()
        .ok_or_else(|| EcsError::Server(anyhow::anyhow!("cluster mode without an etcd client")))?;
    let mut tasks = Vec::new();
    for arn in arns {
        let (cluster, id) = arn
            .rsplit_once(":task/")
            .and_then(|(_, rest)| rest.split_once('/'))
            .ok_or_else(|| {
                EcsError::Server(anyhow::anyhow!(
                    "a RunTask client token names task {arn:?}, not a task ARN of a cluster"
                ))
            })?;
        let key = keys::task(cluster, id);
        let Some(kv) = super::block_on(etcd.get(&key)).map_err(server)? else {
            continue;
        };
        let record: Record = decode(&key, &kv.value).map_err(|e| EcsError::Server(e.into()))?;
        let task = serde_json::from_value(record.task).map_err(|e| {
            EcsError::Server(anyhow::Error::from(super::records::Undecodable {
                key: key.clone(),
                why: e.to_string(),
            }))
        })?;
        tasks.push(task);
    }
    Ok(crate::ecs::tasks::replayed(store, tasks))
}

/// Where one task may go.
#[derive(Debug, Clone, Copy)]
enum Target<'a> {
    /// Wherever placement chooses (RunTask, a service).
    Anywhere,
    /// On the instance this id or ARN names (StartTask).
    Onto(&'a str),
}

/// Prepares one task per target and places each.
fn launch_on(
    ecs: &Ecs,
    store: Store,
    ctx: &AwsContext,
    stored: &StoredTaskDefinition,
    req: &launch::Request,
    targets: &[Target],
) -> EcsResult<Started> {
    let etcd = super::serving()
        .ok_or_else(|| EcsError::Server(anyhow::anyhow!("cluster mode without an etcd client")))?;
    let containers = stored
        .definition
        .container_definitions
        .as_ref()
        .map_or(0, Vec::len);
    let mut prepared = Vec::new();
    for _ in targets {
        let ids = Ids::new(containers).map_err(|e| {
            EcsError::Server(anyhow::Error::from(e).context("failed to read /dev/urandom"))
        })?;
        let mut p = launch::prepare_task(ctx, stored, req, &ecs.root, &ids)
            .map_err(|e| EcsError::Server(anyhow::Error::from(e)))?;
        // Placement applies the definition's constraints: no "not applied" warning.
        crate::taskdef::coverage::applied_placement_constraints(&mut p.task.warnings);
        prepared.push(p);
    }
    // Under the control plane's write lock (a service's pass, a RunTask with a token):
    // each placement holds only while that lock does.
    let lock = super::replica::held_lock();
    let placed = super::block_on(place_all(etcd, ctx, stored, req, prepared, targets, lock))?;
    let warnings = placed
        .tasks
        .first()
        .map(|t| t.minifargate_warnings.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|message| crate::ecs::Warning { message })
        .collect();
    Ok(Started {
        ids: placed.ids,
        response: RunTaskResponse {
            tasks: placed.tasks,
            failures: placed.failures,
        },
        store,
        warnings,
        supervisors: Vec::new(),
    })
}

struct Placed {
    ids: Vec<String>,
    tasks: Vec<crate::task::shape::Task>,
    failures: Vec<Failure>,
}

/// How many times a placement is tried again after another placer changed the chosen
/// instance's ledger first.
const PLACEMENT_ATTEMPTS: usize = 32;

/// How long a placement whose answer was lost keeps trying to read back whether it
/// committed before it answers that it does not know.
const READ_BACK_WITHIN: std::time::Duration = std::time::Duration::from_secs(15);

/// Places each prepared task on its target. A task placed is answered even when a later
/// one fails (it is committed and will run): the failure is answered for the rest, in
/// `failures` (an error only when no task was placed).
async fn place_all(
    etcd: &Etcd,
    ctx: &AwsContext,
    stored: &StoredTaskDefinition,
    req: &launch::Request,
    prepared: Vec<Prepared>,
    targets: &[Target<'_>],
    lock: Option<i64>,
) -> EcsResult<Placed> {
    let mut out = Placed {
        ids: Vec::new(),
        tasks: Vec::new(),
        failures: Vec::new(),
    };
    let plan = plan_of(req, &stored.definition)?;
    let mut failed: Option<String> = None;
    for (p, target) in prepared.into_iter().zip(targets.iter().copied()) {
        if let Some(reason) = &failed {
            out.failures.push(Failure {
                arn: p.task.arn.clone(),
                reason: reason.clone(),
            });
            continue;
        }
        let (arn, id) = (p.task.arn.clone(), p.task.id.clone());
        match place_one(etcd, ctx, stored, req, &plan, p, target, lock).await {
            Ok(Ok(task)) => {
                out.ids.push(id);
                out.tasks.push(task);
            }
            Ok(Err(f)) => {
                for f in f {
                    if !out.failures.contains(&f) {
                        out.failures.push(f);
                    }
                }
            }
            Err(e) if out.tasks.is_empty() => return Err(e),
            Err(e) => {
                let reason = format!("not placed: {}", crate::errors::error_chain(&e));
                out.failures.push(Failure {
                    arn,
                    reason: reason.clone(),
                });
                failed = Some(reason);
            }
        }
    }
    Ok(out)
}

/// Places one task: the task as RunTask answers it, or the failures saying why no
/// instance can take it.
///
/// Idempotent: the transaction also requires the task's record absent, so it commits at
/// most once; after a failed compare or a lost answer ([`EtcdError::OutcomeUnknown`]) the
/// record is read back first, and a record there is this placement's own earlier commit
/// (task ids are random): that is the answer, never a second instance.
///
/// With `lock` (the revision of the control plane's write lock the caller holds), the
/// transaction holds only while that lock is unchanged: a write whose lock was lost
/// places nothing.
#[allow(clippy::too_many_arguments)]
async fn place_one(
    etcd: &Etcd,
    ctx: &AwsContext,
    stored: &StoredTaskDefinition,
    req: &launch::Request,
    plan: &placement::Plan,
    mut p: Prepared,
    target: Target<'_>,
    lock: Option<i64>,
) -> EcsResult<Result<crate::task::shape::Task, Vec<Failure>>> {
    let cluster = &req.cluster;
    let (need, reservation) = need_of(&p);
    let record_key = keys::task(cluster, &p.task.id);
    // Each attempt's instance and the task as it would be answered there.
    let mut tried: Vec<(String, crate::task::shape::Task)> = Vec::new();
    let mut attempt = 0;
    loop {
        let instances = instances::load(etcd, cluster).await.map_err(server)?;
        let chosen = match choose(&instances, &need, plan, target)? {
            Ok(i) => &instances[i],
            Err(f) => return Ok(Err(f)),
        };
        let id = &chosen.reg.id;
        let (mut ledger, rev) = (chosen.ledger.clone(), chosen.ledger_revision);
        ledger.tasks.insert(p.task.id.clone(), reservation.clone());
        p.task.launch.container_instance_arn = Some(chosen.arn());
        let shaped = crate::task::shape::task(&p.task, &p.containers, Some(&p.network));
        let mut assigned = Assigned::of(req);
        assigned.launch.container_instance_arn = Some(chosen.arn());
        let assignment = Assignment {
            ids: ids_of(&p),
            account_id: ctx.account_id.clone(),
            region: ctx.region.clone(),
            definition: stored.definition.clone(),
            request: assigned,
            desired_status: DesiredStatus::Running,
            stopped_reason: None,
            stop_code: None,
        };
        let record = Record {
            instance: id.clone(),
            task: task_json(&shaped),
        };
        let ledger_key = keys::ledger(cluster, id);
        let mut compares = vec![
            if rev == 0 {
                Compare::Absent(ledger_key.clone())
            } else {
                Compare::ModRevision(ledger_key.clone(), rev)
            },
            Compare::Absent(record_key.clone()),
            // Still the status placement chose it in (not DRAINING or INACTIVE since).
            Compare::ModRevision(keys::status(cluster, id), chosen.status_revision),
        ];
        compares.extend(lock.map(|rev| Compare::ModRevision(keys::db_lock(), rev)));
        let ops = [
            Op::Put(ledger_key, json_bytes(&ledger)),
            Op::Put(
                keys::assignment(cluster, id, &p.task.id),
                json_bytes(&assignment),
            ),
            Op::Put(record_key.clone(), json_bytes(&record)),
        ];
        match etcd.txn(&compares, &ops).await {
            Ok(true) => return Ok(Ok(shaped)),
            Ok(false) => {}
            Err(e @ EtcdError::OutcomeUnknown { .. }) => {
                tracing::warn!(task = %p.task.id, instance = %id, error = %e,
                    "placement's answer lost: reading back whether it committed");
            }
            Err(e) => return Err(server(e)),
        }
        tried.push((id.clone(), shaped));
        // Did an earlier attempt of this task commit (its answer lost, or late)?
        let landed = etcd
            .get_within(&record_key, READ_BACK_WITHIN)
            .await
            .map_err(|e| {
                EcsError::Server(anyhow::Error::from(e).context(format!(
                    "task {}: whether its placement committed is unknown (etcd did not answer); \
                 describe-tasks shows it if it did",
                    p.task.id
                )))
            })?;
        if landed.is_none()
            && let Some(rev) = lock
        {
            let now = etcd.get(&keys::db_lock()).await.map_err(server)?;
            if now.is_none_or(|kv| kv.mod_revision != rev) {
                return Err(EcsError::Server(anyhow::anyhow!(
                    "task {}: not placed: the control plane's write lock this launch ran \
                     under was lost (its lease expired: etcd out of reach?); try again",
                    p.task.id
                )));
            }
        }
        if let Some(kv) = landed {
            let r: Record =
                decode(&record_key, &kv.value).map_err(|e| EcsError::Server(e.into()))?;
            return match tried.into_iter().find(|(i, _)| *i == r.instance) {
                Some((_, task)) => Ok(Ok(task)),
                None => Err(EcsError::Server(anyhow::anyhow!(
                    "task {}: its record names container instance {}, where this placement \
                     did not put it",
                    p.task.id,
                    r.instance
                ))),
            };
        }
        attempt += 1;
        if attempt >= PLACEMENT_ATTEMPTS {
            return Err(EcsError::Server(anyhow::anyhow!(
                "task {}: container instance {id}'s resources changed under {attempt} \
                 placements in a row (other placers are busy): try again",
                p.task.id
            )));
        }
    }
}

/// The instance a task of `need` goes on for `target`, or the failures saying why none
/// can take it.
fn choose(
    instances: &[Instance],
    need: &placement::Need,
    plan: &placement::Plan,
    target: Target<'_>,
) -> EcsResult<Result<usize, Vec<Failure>>> {
    let placed = match target {
        Target::Anywhere => {
            let mut cands = candidates(instances);
            placement::place(&mut cands, need, plan, 1, &mut placement::random)
                .map_err(|e| EcsError::invalid(e.to_string()))?
        }
        Target::Onto(reference) => {
            let id = reference.rsplit('/').next().unwrap_or(reference);
            let Some(i) = instances.iter().position(|i| i.reg.id == id) else {
                return Ok(Err(vec![Failure::missing(reference)]));
            };
            // Ref: developerguide/api_failures_messages.html: INACTIVE, "the container
            // instance that you attempted to launch a task onto has been previously
            // deregistered". ECS documents no reason for a DRAINING one (which takes no new
            // task): the failure names its status the same way.
            let status = instances[i].status;
            if status != Status::Active {
                return Ok(Err(vec![Failure {
                    arn: instances[i].arn(),
                    reason: status.as_str().to_string(),
                }]));
            }
            // Placement on this one instance: its agent, resources and the constraints
            // (the task definition's), no strategy.
            let mut one = candidates(&instances[i..=i]);
            placement::place(&mut one, need, plan, 1, &mut placement::random)
                .map_err(|e| EcsError::invalid(e.to_string()))?
                .into_iter()
                .map(|r| r.map(|_| i))
                .collect()
        }
    };
    Ok(placed.into_iter().next().unwrap_or(Err(Vec::new())))
}

fn ids_of(p: &Prepared) -> Ids {
    Ids {
        task: p.task.id.clone(),
        containers: p
            .containers
            .iter()
            .map(|c| c.arn.rsplit('/').next().unwrap_or_default().to_string())
            .collect(),
        attachment: p.network.attachment_id.clone(),
        created_at_ms: p.task.created_at,
    }
}

pub(crate) fn server(e: EtcdError) -> EcsError {
    EcsError::Server(anyhow::Error::from(e).context("the cluster state in etcd is unavailable"))
}

/// What a task reserves ([`placement::Need`], the ECS agent's accounting) as its
/// ledger entry.
fn need_of(p: &Prepared) -> (placement::Need, Reservation) {
    let mode = [
        NetworkMode::Awsvpc,
        NetworkMode::Bridge,
        NetworkMode::Host,
        NetworkMode::None,
    ]
    .into_iter()
    .find(|m| m.as_str() == p.network.mode)
    .unwrap_or(NetworkMode::Awsvpc);
    let group = p.task.group.clone().unwrap_or_default();
    let need = placement::Need::of(&p.task.definition, mode, group.clone());
    let reservation = Reservation {
        cpu: need.cpu,
        memory: need.memory,
        ports: need.ports.clone(),
        udp_ports: need.udp_ports.clone(),
        group,
        task_definition_arn: p.task.task_definition_arn.clone(),
        stopping: false,
    };
    (need, reservation)
}

/// The cluster's instances as placement sees them, each with what its ledger holds.
fn candidates(instances: &[Instance]) -> Vec<placement::Candidate> {
    instances
        .iter()
        .map(|i| {
            let ledger = &i.ledger;
            placement::Candidate {
                arn: i.arn(),
                id: i.reg.id.clone(),
                ec2_instance_id: i.reg.ec2_instance_id(),
                attributes: i
                    .reg
                    .attributes
                    .iter()
                    .chain(i.custom.iter())
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                active: i.status == Status::Active,
                connected: i.connected,
                agent_version: i.reg.agent_version.clone(),
                registered_at_ms: i.reg.registered_at_ms,
                remaining_cpu: i.reg.cpu - ledger.cpu(),
                remaining_memory: i.reg.memory - ledger.memory(),
                used_ports: ledger
                    .tasks
                    .values()
                    .flat_map(|r| r.ports.iter().copied())
                    .chain(i.reg.reserved_tcp())
                    .collect(),
                used_udp_ports: ledger
                    .tasks
                    .values()
                    .flat_map(|r| r.udp_ports.iter().copied())
                    .chain(i.reg.reserved_udp())
                    .collect(),
                tasks: ledger
                    .tasks
                    .values()
                    .filter(|r| !r.stopping)
                    .map(|r| placement::Placed {
                        group: r.group.clone(),
                    })
                    .collect(),
            }
        })
        .collect()
}

/// The constraints and strategy RunTask recorded on the launch (checked there), with the
/// task definition's constraints (`def`, the registered one: overrides do not touch them). A
/// service's tasks without a strategy spread over Availability Zones, then instances, as
/// ECS's services do by default (developerguide/task-placement-strategies.html); a
/// RunTask's are placed at random (its default).
fn plan_of(req: &launch::Request, def: &TaskDefinition) -> EcsResult<placement::Plan> {
    use crate::ecs::shapes::{PlacementConstraint, PlacementStrategy};
    fn stored<T: serde::de::DeserializeOwned>(v: &Option<serde_json::Value>) -> EcsResult<Vec<T>> {
        v.clone()
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| {
                EcsError::Server(
                    anyhow::Error::from(e).context("a recorded placement does not decode"),
                )
            })
            .map(Option::unwrap_or_default)
    }
    let constraints: Vec<PlacementConstraint> = stored(&req.launch.placement_constraints)?;
    let mut strategy: Vec<PlacementStrategy> = stored(&req.launch.placement_strategy)?;
    if strategy.is_empty()
        && req
            .group
            .as_deref()
            .is_some_and(|g| g.starts_with("service:"))
    {
        for field in ["attribute:ecs.availability-zone", "instanceId"] {
            strategy.push(PlacementStrategy {
                kind: Some("spread".into()),
                field: Some(field.into()),
            });
        }
    }
    placement::Plan::parse(&constraints, &strategy)
        .and_then(|p| p.and_definition(def.placement_constraints.as_deref().unwrap_or_default()))
        .map_err(|e| EcsError::invalid(e.to_string()))
}

/// Sets task `id`'s assignment to desired STOPPED with `code` and `reason` (its agent
/// stops the task), and marks its reservation in the instance's ledger `stopping` in the
/// same transaction (placement's counts then leave it out while its resources stay
/// booked); nothing when it is already, or when the assignment is gone (the task has
/// ended).
pub async fn desire_stopped(
    etcd: &Etcd,
    cluster: &str,
    instance: &str,
    id: &str,
    code: crate::store::StopCode,
    reason: &str,
) -> EcsResult<()> {
    let key = keys::assignment(cluster, instance, id);
    let ledger_key = keys::ledger(cluster, instance);
    // A transaction whose answer was lost is read back: STOPPED wanted (or the assignment
    // gone) is the answer; otherwise it is asked again, on what is read now. One that lost
    // a race (a placement changed the ledger meanwhile) is asked again too.
    let mut attempts = 0;
    loop {
        let Some(kv) = etcd.get(&key).await.map_err(server)? else {
            return Ok(());
        };
        let mut a: Assignment = decode(&key, &kv.value).map_err(|e| EcsError::Server(e.into()))?;
        if a.desired_status == DesiredStatus::Stopped {
            return Ok(());
        }
        a.desired_status = DesiredStatus::Stopped;
        a.stopped_reason = Some(reason.into());
        a.stop_code = Some(code);
        let mut compares = vec![Compare::ModRevision(key.clone(), kv.mod_revision)];
        let mut ops = vec![Op::Put(key.clone(), json_bytes(&a))];
        if let Some(op) = ledger_stopping(etcd, &ledger_key, id, &mut compares).await? {
            ops.push(op);
        }
        // Only if the agent has not removed it meanwhile (its task ended).
        match etcd.txn(&compares, &ops).await {
            Ok(true) => return Ok(()),
            Ok(false) if attempts < 8 => attempts += 1,
            Ok(false) => {
                return Err(EcsError::Server(anyhow::anyhow!(
                    "task {id}'s assignment or its instance's ledger kept changing: not stopped"
                )));
            }
            Err(e @ EtcdError::OutcomeUnknown { .. }) if attempts < 3 => {
                tracing::warn!(task = %id, error = %e, "StopTask: etcd's answer lost: reading back");
                attempts += 1;
            }
            Err(e) => return Err(server(e)),
        }
    }
}

/// The write that marks task `id`'s reservation `stopping` in the ledger at `ledger_key`
/// (with its compare), if the ledger holds it unmarked. A ledger that does not decode is
/// left as it is, said in the log: the stop itself goes on.
async fn ledger_stopping(
    etcd: &Etcd,
    ledger_key: &str,
    id: &str,
    compares: &mut Vec<Compare>,
) -> EcsResult<Option<Op>> {
    let Some(kv) = etcd.get(ledger_key).await.map_err(server)? else {
        return Ok(None);
    };
    let mut ledger: super::records::Ledger = match decode(ledger_key, &kv.value) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(key = %ledger_key, error = %e.why, "the ledger does not decode: a stopping task stays counted by placement");
            return Ok(None);
        }
    };
    match ledger.tasks.get_mut(id) {
        Some(r) if !r.stopping => r.stopping = true,
        _ => return Ok(None),
    }
    compares.push(Compare::ModRevision(ledger_key.into(), kv.mod_revision));
    Ok(Some(Op::Put(ledger_key.into(), json_bytes(&ledger))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::instances::Registration;
    use crate::cluster::records::Ledger;
    use crate::ecs::shapes::PlacementStrategy;

    fn instance(id: &str, ledger: Ledger) -> Instance {
        let mut reg = Registration::of_this_box(id, 1);
        reg.cpu = 4096;
        reg.memory = 8192;
        Instance {
            cluster: "c".into(),
            reg,
            status: Status::Active,
            status_revision: 1,
            connected: true,
            custom: Default::default(),
            version: 1,
            ledger,
            ledger_revision: 1,
        }
    }

    fn booked(tasks: &[(&str, bool)]) -> Ledger {
        let mut l = Ledger::default();
        for (id, stopping) in tasks {
            l.tasks.insert(
                id.to_string(),
                Reservation {
                    cpu: 256,
                    memory: 512,
                    group: "service:web".into(),
                    stopping: *stopping,
                    ..Default::default()
                },
            );
        }
        l
    }

    /// A task whose desired status is STOPPED (scaled in, draining) keeps its resources
    /// booked until it is STOPPED, but spread no longer counts it, as one box places and
    /// as ECS looks at the desired status: after a scale-in from 3 (2 on box b, both
    /// stopping) to 1 (on box a), the next task goes to box b.
    #[test]
    fn spread_leaves_out_the_tasks_being_stopped_whose_resources_stay_booked() {
        let a = "0123456789abcdef0123456789abcdef";
        let b = "fedcba9876543210fedcba9876543210";
        let instances = vec![
            instance(a, booked(&[("t1", false)])),
            instance(b, booked(&[("t2", true), ("t3", true)])),
        ];
        let cands = candidates(&instances);
        assert_eq!(cands[1].tasks.len(), 0);
        assert_eq!(cands[1].remaining_cpu, 4096 - 512);
        assert_eq!(cands[1].remaining_memory, 8192 - 1024);
        let plan = placement::Plan::parse(
            &[],
            &[PlacementStrategy {
                kind: Some("spread".into()),
                field: Some("instanceId".into()),
            }],
        )
        .unwrap();
        let need = placement::Need {
            cpu: 256,
            memory: 512,
            group: "service:web".into(),
            ..Default::default()
        };
        for _ in 0..20 {
            let chosen = choose(&instances, &need, &plan, Target::Anywhere)
                .unwrap()
                .unwrap();
            assert_eq!(instances[chosen].reg.id, b);
        }
        // Counted while they are not stopping: the next task goes to box a.
        let instances = vec![
            instance(a, booked(&[("t1", false)])),
            instance(b, booked(&[("t2", false), ("t3", false)])),
        ];
        let chosen = choose(&instances, &need, &plan, Target::Anywhere)
            .unwrap()
            .unwrap();
        assert_eq!(instances[chosen].reg.id, a);
    }

    /// A ledger written before `stopping` existed decodes, and one without a stopping
    /// task is written as before (older serves read it).
    #[test]
    fn a_reservation_says_stopping_only_when_it_is() {
        let old = br#"{"tasks":{"t":{"cpu":1,"memory":2,"group":"g","taskDefinitionArn":"x"}}}"#;
        let l: Ledger = serde_json::from_slice(old).unwrap();
        assert!(!l.tasks["t"].stopping);
        let again = String::from_utf8(json_bytes(&l)).unwrap();
        assert!(!again.contains("stopping"), "{again}");
        let l = booked(&[("t", true)]);
        assert!(
            String::from_utf8(json_bytes(&l))
                .unwrap()
                .contains(r#""stopping":true"#)
        );
    }
}
