//! ECS services' `serviceRegistries`, applied: once a second (`run`) each task of a service
//! with a registry is an instance of the registry's Cloud Map service (instance id: the
//! task id) from when it is RUNNING (and HEALTHY, if its essential containers have health
//! checks) until it is asked to stop or stops; with a custom health check, the instance's
//! custom status follows the task's health. The attributes are those ECS writes:
//! `AWS_INSTANCE_IPV4` (the task's address), `AWS_INSTANCE_PORT` (the registry's `port`
//! or `containerPort`), `AWS_INIT_HEALTH_STATUS`, `ECS_CLUSTER_NAME`, `ECS_SERVICE_NAME`,
//! `ECS_TASK_DEFINITION_FAMILY` and `REGION` (no `AVAILABILITY_ZONE`: there are no zones
//! here). Ref: ecs.json `ServiceRegistry` (registryArn, port, containerName, containerPort).
//! A service's Service Connect endpoints are registered the same way, in the Cloud Map
//! services ECS makes for them ([`connect_registries`]).

use super::CloudMap;
use super::model::Health;
use crate::ecs::services::add_event;
use crate::ecs::{Ecs, fleet};
use crate::store::{DesiredStatus, LastStatus, ServiceRow, Store};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// One `serviceRegistries` entry.
#[derive(Debug, Clone, PartialEq)]
struct Registry {
    service_id: String,
    port: Option<u16>,
}

fn registries(s: &ServiceRow) -> Vec<Registry> {
    let Some(list) = s
        .spec
        .not_applied
        .get("serviceRegistries")
        .and_then(|v| v.as_array())
    else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|r| {
            let arn = r["registryArn"].as_str()?;
            let port = r["port"]
                .as_u64()
                .or_else(|| r["containerPort"].as_u64())
                .and_then(|p| u16::try_from(p).ok());
            Some(Registry {
                service_id: arn.rsplit('/').next()?.to_string(),
                port,
            })
        })
        .collect()
}

/// The Cloud Map services ECS makes for `s`'s Service Connect endpoints, as registries:
/// one per `serviceConnectConfiguration.services[]` entry, named for its `discoveryName`
/// (else its `portName`) in the service's namespace (else its cluster's
/// `serviceConnectDefaults.namespace`), made if missing, API-only (no DNS records: Service
/// Connect makes no hosted zones); its tasks are registered at the container port of the
/// port mapping named `portName`. Err: why they cannot be (the namespace is not Cloud
/// Map's). Ref: service-connect-concepts.html ("Service Connect creates AWS Cloud Map
/// services in your account"); ecs.json `ServiceConnectService.discoveryName` (the port
/// mapping's name when not given); service-connect.html ("Amazon ECS Service Connect
/// doesn't use or create DNS hosted zones in Amazon Route 53").
fn connect_registries(
    cm: &CloudMap,
    store: &Store,
    s: &ServiceRow,
) -> Result<Vec<Registry>, String> {
    let Some(cfg) = s.spec.not_applied.get("serviceConnectConfiguration") else {
        return Ok(Vec::new());
    };
    if s.status == crate::store::ServiceStatus::Inactive {
        return Ok(Vec::new());
    }
    let entries = cfg["services"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if cfg["enabled"] != true || entries.is_empty() {
        return Ok(Vec::new());
    }
    let ns = super::connect::namespace_of(store, &s.cluster, cfg).ok_or_else(|| {
        "the service names no namespace and its cluster has no serviceConnectDefaults".to_string()
    })?;
    let ns_id = {
        let st = cm.state.lock().unwrap_or_else(|p| p.into_inner());
        st.namespace_named(&ns).map(|n| n.id.clone())
    }
    .ok_or_else(|| format!("namespace {ns} is not a Cloud Map namespace here"))?;
    let definition = store
        .task_definition_by_arn(&s.task_definition_arn)
        .ok()
        .flatten();
    let mut out = Vec::new();
    for e in entries {
        let Some(port_name) = e["portName"].as_str() else {
            continue;
        };
        let name = e["discoveryName"].as_str().unwrap_or(port_name);
        let existing = {
            let st = cm.state.lock().unwrap_or_else(|p| p.into_inner());
            st.services
                .values()
                .find(|x| x.namespace_id == ns_id && x.name.eq_ignore_ascii_case(name))
                .map(|x| x.id.clone())
        };
        let service_id = match existing {
            Some(id) => id,
            None => {
                let body = serde_json::json!({
                    "Name": name,
                    "NamespaceId": ns_id,
                    "Description": format!("Service Connect endpoint of ECS service {} of cluster {}", s.name, s.cluster),
                });
                let made = super::ops::call(cm, "CreateService", body.to_string().as_bytes())
                    .map_err(|e| format!("cannot make Cloud Map service {name}: {e}"))?;
                made["Service"]["Id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            }
        };
        out.push(Registry {
            service_id,
            port: definition
                .as_ref()
                .and_then(|d| super::connect::named_port(&d.definition, port_name)),
        });
    }
    Ok(out)
}

/// The task's address on its network, once it is set up: this box's, else (a cluster's
/// task) the one its record in etcd says.
fn task_ip(store: &Store, cluster: &str, id: &str) -> Option<String> {
    let n = store.task_network(id).ok().flatten();
    n.and_then(|n| n.network?.net.ip.map(|ip| ip.to_string()))
        .or_else(|| fleet::get().task_ip(store, cluster, id))
}

/// Whether task definition `arn` gives an essential container a health check (such a
/// task is registered once HEALTHY); `None` when it is not in the store.
fn health_checked(store: &Store, arn: &str) -> Option<bool> {
    let td = store.task_definition_by_arn(arn).ok()??;
    Some(
        td.definition
            .container_definitions
            .iter()
            .flatten()
            .any(|c| c.essential.unwrap_or(true) && c.health_check.is_some()),
    )
}

/// Applies every service's registries until the process ends.
pub async fn run(cm: Arc<CloudMap>, g: Ecs) {
    let mut failing: HashSet<(String, String)> = HashSet::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut store: Option<Store> = None;
    loop {
        tick.tick().await;
        let (cm2, g2) = (cm.clone(), g.clone());
        let mut st = store.take();
        let mut f = std::mem::take(&mut failing);
        let done = tokio::task::spawn_blocking(move || {
            if st.is_none() {
                st = g2.open_store().ok();
            }
            // In a cluster, only the leader's serve, as a write of the control plane
            // (`Fleet::schedule`), for the tasks of every box.
            if let Some(s) = st.as_mut()
                && let Err(e) = fleet::get().schedule(&mut || {
                    cm2.sync()?;
                    pass(&cm2, s, &mut f)
                })
            {
                    tracing::warn!(error = %crate::errors::error_chain(e.as_ref()), "Cloud Map: applying the services' serviceRegistries failed");
            }
            (st, f)
        })
        .await;
        if let Ok((st, f)) = done {
            store = st;
            failing = f;
        }
    }
}

/// One pass over the services (`failing`: the (service, registry) pairs whose failure event
/// is written, once).
fn pass(
    cm: &CloudMap,
    store: &mut Store,
    failing: &mut HashSet<(String, String)>,
) -> anyhow::Result<()> {
    let services = store.list_services(None)?;
    let mut changed = false;
    // Instances of tasks whose ECS service no longer has the registry go too.
    let mut wanted: HashSet<(String, String, String)> = HashSet::new();
    for s in &services {
        let regs = service_registries(cm, store, s, failing);
        if regs.is_empty() {
            continue;
        }
        for r in &regs {
            wanted.insert((r.service_id.clone(), s.cluster.clone(), s.name.clone()));
        }
        let ready = ready_tasks(store, s)?;
        for r in &regs {
            changed |= sync_registry(cm, store, (s, r, &ready), failing);
        }
    }
    // Instances ECS registered for a service that is gone or no longer names the registry.
    let stale: Vec<(String, String)> = {
        let st = cm.state.lock().unwrap_or_else(|p| p.into_inner());
        st.instances
            .values()
            .filter_map(|i| {
                let c = i.attributes.get("ECS_CLUSTER_NAME")?;
                let n = i.attributes.get("ECS_SERVICE_NAME")?;
                (!wanted.contains(&(i.service_id.clone(), c.clone(), n.clone())))
                    .then(|| (i.service_id.clone(), i.id.clone()))
            })
            .collect()
    };
    for (sid, id) in stale {
        if super::ops::deregister(cm, &sid, &id).is_ok() {
            changed = true;
        }
    }
    if changed {
        cm.publish();
    }
    Ok(())
}

/// The registries of service `s`: its serviceRegistries and its Service Connect
/// endpoints' (a failure to read those is said in an event, once).
fn service_registries(
    cm: &CloudMap,
    store: &mut Store,
    s: &ServiceRow,
    failing: &mut HashSet<(String, String)>,
) -> Vec<Registry> {
    let mut regs = registries(s);
    match connect_registries(cm, store, s) {
        Ok(more) => regs.extend(more),
        Err(why) => {
            if failing.insert((format!("{}/{}", s.cluster, s.name), "serviceConnect".into())) {
                add_event(
                    store,
                    &s.cluster,
                    &s.name,
                    format!(
                        "(service {}) failed to register its Service Connect endpoints in Cloud Map: {why}",
                        s.name
                    ),
                );
            }
        }
    }
    regs
}

/// The service's RUNNING tasks that stay, with their IP address, health (Healthy without
/// a health check) and family.
fn ready_tasks(store: &Store, s: &ServiceRow) -> anyhow::Result<Ready> {
    let tasks = fleet::get().group_tasks(store, &s.cluster, &format!("service:{}", s.name))?;
    let mut ready: Ready = BTreeMap::new();
    for t in &tasks {
        let row = &t.row;
        if row.desired_status == DesiredStatus::Stopped || row.last_status != LastStatus::Running {
            continue;
        }
        // (A cluster's task records give every container a status, UNKNOWN without
        // a check: the task definition says whether there is one.)
        let checked = t
            .containers
            .iter()
            .any(|c| c.essential && c.health_status.is_some())
            && health_checked(store, &row.task_definition_arn).unwrap_or(true);
        let health = crate::task::shape::task_health(&t.containers);
        let h = match health {
            crate::store::HealthStatus::Healthy => Health::Healthy,
            crate::store::HealthStatus::Unhealthy => Health::Unhealthy,
            crate::store::HealthStatus::Unknown => Health::Unknown,
        };
        let Some(ip) = task_ip(store, &row.cluster, &row.id) else {
            continue;
        };
        ready.insert(
            row.id.clone(),
            (
                ip,
                if checked { h } else { Health::Healthy },
                row.family.clone(),
            ),
        );
    }
    Ok(ready)
}

/// A service's tasks, RUNNING and staying, by id: (IP address, health, family).
type Ready = BTreeMap<String, (String, Health, String)>;

/// Brings registry `r` to the service's ready tasks: those gone or stopping deregistered,
/// the healthy new ones registered, a custom health check following the task's health.
/// Whether Cloud Map changed.
fn sync_registry(
    cm: &CloudMap,
    store: &mut Store,
    (s, r, ready): (&ServiceRow, &Registry, &Ready),
    failing: &mut HashSet<(String, String)>,
) -> bool {
    let mut changed = false;
    let key = (format!("{}/{}", s.cluster, s.name), r.service_id.clone());
    let (existing, custom) = {
        let st = cm.state.lock().unwrap_or_else(|p| p.into_inner());
        let custom = st
            .services
            .get(&r.service_id)
            .map(|x| x.health_check_custom_config.is_some());
        let mine: BTreeMap<String, Option<Health>> = st
            .instances_of(&r.service_id)
            .filter(|i| {
                i.attributes.get("ECS_CLUSTER_NAME") == Some(&s.cluster)
                    && i.attributes.get("ECS_SERVICE_NAME") == Some(&s.name)
            })
            .map(|i| (i.id.clone(), i.custom_health))
            .collect();
        (mine, custom)
    };
    let Some(custom) = custom else {
        if failing.insert(key) {
            add_event(
                store,
                &s.cluster,
                &s.name,
                format!(
                    "(service {}) failed to register tasks in (registry {}): the Cloud Map service does not exist",
                    s.name, r.service_id
                ),
            );
        }
        return false;
    };
    // Gone or stopping: deregistered.
    for id in existing.keys().filter(|id| !ready.contains_key(*id)) {
        match super::ops::deregister(cm, &r.service_id, id) {
            Ok(_) => changed = true,
            Err(e) => {
                tracing::warn!(task_id = %id, error = %e, "Cloud Map: failed to deregister a task")
            }
        }
    }
    for (id, (ip, health, family)) in ready {
        match existing.get(id) {
            Some(cur) => {
                // Registered: a custom health check follows the task's health.
                let want = match health {
                    Health::Unhealthy => Health::Unhealthy,
                    _ => Health::Healthy,
                };
                if custom && *cur != Some(want) {
                    match super::ops::set_custom_health(cm, &r.service_id, id, want) {
                        Ok(()) => changed = true,
                        Err(e) => {
                            tracing::warn!(task_id = %id, error = %e, "Cloud Map: failed to set a task's custom health")
                        }
                    }
                }
            }
            None if *health == Health::Healthy => {
                let task = (id.as_str(), ip.as_str(), family.as_str());
                changed |= register_task(cm, store, (s, r, task, custom), (&key, failing));
            }
            None => {}
        }
    }
    changed
}

/// Registers a healthy task (`id`, `ip`, `family`) in registry `r`; whether it did. A
/// failure is said in an event, once, until a registration succeeds.
fn register_task(
    cm: &CloudMap,
    store: &mut Store,
    (s, r, (id, ip, family), custom): (&ServiceRow, &Registry, (&str, &str, &str), bool),
    (key, failing): (&(String, String), &mut HashSet<(String, String)>),
) -> bool {
    let mut attributes = BTreeMap::from([
        ("AWS_INSTANCE_IPV4".to_string(), ip.to_string()),
        ("ECS_CLUSTER_NAME".to_string(), s.cluster.clone()),
        ("ECS_SERVICE_NAME".to_string(), s.name.clone()),
        ("ECS_TASK_DEFINITION_FAMILY".to_string(), family.to_string()),
        ("REGION".to_string(), cm.aws.region.clone()),
    ]);
    if let Some(p) = r.port {
        attributes.insert("AWS_INSTANCE_PORT".into(), p.to_string());
    }
    if custom {
        attributes.insert("AWS_INIT_HEALTH_STATUS".into(), "HEALTHY".into());
    }
    let req = super::ops::RegisterInstance {
        service_id: r.service_id.clone(),
        instance_id: id.to_string(),
        creator_request_id: None,
        attributes,
    };
    match super::ops::register(cm, req) {
        Ok(_) => {
            failing.remove(key);
            true
        }
        Err(e) => {
            if failing.insert(key.clone()) {
                add_event(
                    store,
                    &s.cluster,
                    &s.name,
                    format!(
                        "(service {}) failed to register tasks in (registry {}) (error {e})",
                        s.name, r.service_id
                    ),
                );
            }
            false
        }
    }
}
