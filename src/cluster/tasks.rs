//! Tasks in cluster mode (docs/cluster.md "Tasks"): RunTask places each task on a
//! container instance and writes, in one etcd transaction that compares the instance's
//! ledger, the task's reservation, its assignment (what the instance's agent creates and
//! runs: the ACS payload's equivalent) and its first record (what DescribeTasks shows).
//! The agent ([`super::work`]) runs the assignment through the same supervisor path as one
//! box and writes each state change back into the record. StopTask sets the assignment's
//! desired status; DescribeTasks and ListTasks read the records.

use super::etcd::{Compare, Etcd, EtcdError, Op};
use super::instances::{self, Instance, Status};
use super::keys;
use super::records::{
    Assigned, Assignment, Ledger, Record, Reservation, decode, json_bytes, task_json,
};
use crate::ecs::shapes::Failure;
use crate::ecs::tasks::{Launcher, RunTaskResponse, Started, Supervision};
use crate::ecs::{Ecs, EcsError, EcsResult};
use crate::store::{DesiredStatus, Store, StoredTaskDefinition};
use crate::task::launch::{self, Ids, Prepared};
use crate::taskdef::AwsContext;
use crate::taskdef::model::NetworkMode;
use std::collections::BTreeMap;

/// RunTask's launcher in cluster mode: places each task and writes its assignment.
pub struct Placer;

impl Launcher for Placer {
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
        let etcd = super::serving().ok_or_else(|| {
            EcsError::Server(anyhow::anyhow!("cluster mode without an etcd client"))
        })?;
        let containers = stored
            .definition
            .container_definitions
            .as_ref()
            .map_or(0, Vec::len);
        let mut prepared = Vec::new();
        for _ in 0..count {
            let ids = Ids::new(containers).map_err(|e| {
                EcsError::Server(anyhow::Error::from(e).context("failed to read /dev/urandom"))
            })?;
            prepared.push(
                launch::prepare_task(ctx, stored, req, &ecs.root, &ids)
                    .map_err(|e| EcsError::Server(anyhow::Error::from(e)))?,
            );
        }
        let placed = super::block_on(place_all(etcd, ctx, stored, req, prepared))?;
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
            warmers: Vec::new(),
        })
    }
}

struct Placed {
    ids: Vec<String>,
    tasks: Vec<crate::task::shape::Task>,
    failures: Vec<Failure>,
}

/// How many times a placement is tried again after another placer changed the chosen
/// instance's ledger first.
const PLACEMENT_ATTEMPTS: usize = 32;

async fn place_all(
    etcd: &Etcd,
    ctx: &AwsContext,
    stored: &StoredTaskDefinition,
    req: &launch::Request,
    prepared: Vec<Prepared>,
) -> EcsResult<Placed> {
    let cluster = &req.cluster;
    let mut out = Placed {
        ids: Vec::new(),
        tasks: Vec::new(),
        failures: Vec::new(),
    };
    for mut p in prepared {
        let need = need_of(&p);
        let mut attempt = 0;
        loop {
            let instances = instances::load(etcd, cluster).await.map_err(server)?;
            if instances.is_empty() {
                // Ref: RunTask on a cluster without instances: InvalidParameterException
                // "No Container Instances were found in your cluster."
                return Err(EcsError::invalid(
                    "No Container Instances were found in your cluster.",
                ));
            }
            let ledgers = load_ledgers(etcd, cluster).await?;
            let chosen = match choose(&instances, &ledgers, &need) {
                Ok(i) => &instances[i],
                Err(f) => {
                    out.failures.extend(f);
                    break;
                }
            };
            let id = &chosen.reg.id;
            let (mut ledger, rev) = ledgers.get(id).cloned().unwrap_or_default();
            ledger.tasks.insert(p.task.id.clone(), need.clone());
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
            let compare = if rev == 0 {
                Compare::Absent(ledger_key.clone())
            } else {
                Compare::ModRevision(ledger_key.clone(), rev)
            };
            let ops = [
                Op::Put(ledger_key, json_bytes(&ledger)),
                Op::Put(
                    keys::assignment(cluster, id, &p.task.id),
                    json_bytes(&assignment),
                ),
                Op::Put(keys::task(cluster, &p.task.id), json_bytes(&record)),
            ];
            if etcd.txn(&[compare], &ops).await.map_err(server)? {
                out.ids.push(p.task.id.clone());
                out.tasks.push(shaped);
                break;
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
    Ok(out)
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

/// Every instance's ledger and its revision (0: none yet).
async fn load_ledgers(etcd: &Etcd, cluster: &str) -> EcsResult<BTreeMap<String, (Ledger, i64)>> {
    let prefix = keys::ledger_all(cluster);
    let mut out = BTreeMap::new();
    for kv in etcd.get_prefix(&prefix).await.map_err(server)? {
        let ledger: Ledger =
            decode(&kv.key, &kv.value).map_err(|e| EcsError::Server(anyhow::Error::from(e)))?;
        out.insert(
            kv.key[prefix.len()..].to_string(),
            (ledger, kv.mod_revision),
        );
    }
    Ok(out)
}

/// What a task reserves, as the ECS agent accounts it: the task's cpu and memory when set,
/// else its containers' (memory, else memoryReservation); host ports in bridge and host
/// mode.
fn need_of(p: &Prepared) -> Reservation {
    let def = &p.task.definition;
    let units = |s: Option<&str>| s.and_then(|s| s.trim().parse::<i64>().ok());
    let containers = def.container_definitions.iter().flatten();
    let cpu = units(p.task.cpu.as_deref())
        .unwrap_or_else(|| containers.clone().map(|c| c.cpu.unwrap_or(0)).sum());
    let memory = units(p.task.memory.as_deref()).unwrap_or_else(|| {
        containers
            .clone()
            .map(|c| c.memory.or(c.memory_reservation).unwrap_or(0))
            .sum()
    });
    let mode = p.network.mode.as_str();
    let (mut ports, mut udp_ports) = (Vec::new(), Vec::new());
    if mode == NetworkMode::Bridge.as_str() || mode == NetworkMode::Host.as_str() {
        for m in containers.flat_map(|c| c.port_mappings.iter().flatten()) {
            let host = if mode == NetworkMode::Host.as_str() {
                m.container_port
            } else {
                m.host_port.filter(|p| *p != 0)
            };
            if let Some(port) = host.and_then(|p| u16::try_from(p).ok()) {
                if m.protocol.as_ref().is_some_and(|p| p.as_str() == "udp") {
                    udp_ports.push(port);
                } else {
                    ports.push(port);
                }
            }
        }
    }
    Reservation {
        cpu,
        memory,
        ports,
        udp_ports,
        group: p.task.group.clone().unwrap_or_default(),
        task_definition_arn: p.task.task_definition_arn.clone(),
    }
}

/// The instance a task goes to: among the ACTIVE, connected instances where it fits, the
/// one with the fewest tasks placed (ties: the first). Otherwise one failure per instance
/// with ECS's reason.
fn choose(
    instances: &[Instance],
    ledgers: &BTreeMap<String, (Ledger, i64)>,
    need: &Reservation,
) -> Result<usize, Vec<Failure>> {
    let empty = Ledger::default();
    let mut failures = Vec::new();
    let mut best: Option<(usize, usize)> = None;
    for (i, inst) in instances.iter().enumerate() {
        if inst.status != Status::Active {
            continue;
        }
        let ledger = ledgers.get(&inst.reg.id).map_or(&empty, |(l, _)| l);
        let used_ports: Vec<u16> = ledger
            .tasks
            .values()
            .flat_map(|r| r.ports.iter().copied())
            .chain(crate::ecs::container_instances::RESERVED_PORTS)
            .collect();
        let used_udp: Vec<u16> = ledger
            .tasks
            .values()
            .flat_map(|r| r.udp_ports.iter().copied())
            .collect();
        let reason = if !inst.connected {
            Some("AGENT")
        } else if inst.reg.cpu - ledger.cpu() < need.cpu {
            Some("RESOURCE:CPU")
        } else if inst.reg.memory - ledger.memory() < need.memory {
            Some("RESOURCE:MEMORY")
        } else if need.ports.iter().any(|p| used_ports.contains(p)) {
            Some("RESOURCE:PORTS")
        } else if need.udp_ports.iter().any(|p| used_udp.contains(p)) {
            Some("RESOURCE:PORTS_UDP")
        } else {
            None
        };
        match reason {
            Some(r) => failures.push(Failure {
                arn: inst.arn(),
                reason: r.into(),
            }),
            None => {
                let n = ledger.tasks.len();
                if best.is_none_or(|(_, m)| n < m) {
                    best = Some((i, n));
                }
            }
        }
    }
    best.map(|(i, _)| i).ok_or(failures)
}

/// Sets task `id`'s assignment to desired STOPPED with `code` and `reason` (its agent
/// stops the task); nothing when it is already, or when the assignment is gone (the task
/// has ended).
pub async fn desire_stopped(
    etcd: &Etcd,
    cluster: &str,
    instance: &str,
    id: &str,
    code: crate::store::StopCode,
    reason: &str,
) -> EcsResult<()> {
    let key = keys::assignment(cluster, instance, id);
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
    // Only if the agent has not removed it meanwhile (its task ended).
    etcd.txn(
        &[Compare::ModRevision(key.clone(), kv.mod_revision)],
        &[Op::Put(key, json_bytes(&a))],
    )
    .await
    .map_err(server)?;
    Ok(())
}
