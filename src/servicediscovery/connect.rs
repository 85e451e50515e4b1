//! ECS Service Connect, without a sidecar: for each `clientAliases` entry of a service's
//! `serviceConnectConfiguration` (`dnsName:port`), `serve` (in a cluster: each box's agent,
//! from the aliases the leader's serve publishes, `crate::cluster::names`) listens on the
//! task bridge's gateway at `port` and spreads the connections over the healthy RUNNING tasks of that
//! service (round robin, at the port mapping named `portName`); `dnsName` resolves to the
//! gateway in the tasks' DNS server. Applied once a second. What Service Connect does that
//! this does not (its proxy's metrics, TLS, timeouts, retries, outlier detection; two
//! aliases on one port) is said in docs/service-discovery.md.
//! Ref: ecs.json `ServiceConnectConfiguration`, `ServiceConnectService`,
//! `ServiceConnectClientAlias` ("If this parameter isn't specified, the default value of
//! discoveryName.namespace is used. If the discoveryName isn't specified, the port
//! mapping name from the task definition is used in portName.namespace").

use super::CloudMap;
use crate::ecs::{Ecs, fleet};
use crate::store::{DesiredStatus, LastStatus, Store};
use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The tasks an alias's listener passes connections to (the loop updates them).
type Targets = Arc<Mutex<Vec<SocketAddr>>>;

/// The TTL of an alias's A record.
const TTL: u32 = 5;

/// One alias: its name and the tasks behind it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Alias {
    pub dns_name: String,
    pub targets: Vec<SocketAddr>,
}

/// The namespace of a service's `serviceConnectConfiguration` `cfg`: its own, else its
/// cluster's `serviceConnectDefaults.namespace` (as ECS takes it); None when neither.
pub(super) fn namespace_of(
    store: &Store,
    cluster: &str,
    cfg: &serde_json::Value,
) -> Option<String> {
    match cfg["namespace"].as_str() {
        Some(n) if !n.is_empty() => Some(n.to_string()),
        _ => store.cluster(cluster).ok()?.and_then(|c| {
            c.configuration["serviceConnectDefaults"]["namespace"]
                .as_str()
                .map(str::to_string)
        }),
    }
}

/// The container port of `def`'s port mapping named `name`.
pub(super) fn named_port(def: &crate::taskdef::TaskDefinition, name: &str) -> Option<u16> {
    def.container_definitions
        .iter()
        .flatten()
        .flat_map(|c| c.port_mappings.iter().flatten())
        .find(|m| m.name.as_deref() == Some(name))
        .and_then(|m| m.container_port)
        .and_then(|p| u16::try_from(p).ok())
}

/// The aliases of the ECS services, by port; a task's address is this box's network's,
/// else (a cluster's task, on any box) the one its record says.
pub fn aliases(cm: &CloudMap, store: &Store) -> anyhow::Result<BTreeMap<u16, Alias>> {
    let mut out = BTreeMap::new();
    for s in store.list_services(None)? {
        let Some(cfg) = s.spec.not_applied.get("serviceConnectConfiguration") else {
            continue;
        };
        if cfg["enabled"] != true {
            continue;
        }
        let ns = namespace_of(store, &s.cluster, cfg).unwrap_or_default();
        let ns_name = {
            let st = cm.state.lock().unwrap_or_else(|p| p.into_inner());
            st.namespace_named(&ns)
                .map(|n| n.name.clone())
                .unwrap_or_else(|| ns.to_string())
        };
        let Some(services) = cfg["services"].as_array() else {
            continue;
        };
        let tasks = fleet::get().group_tasks(store, &s.cluster, &format!("service:{}", s.name))?;
        for svc in services {
            let Some(port_name) = svc["portName"].as_str() else {
                continue;
            };
            let mut targets = Vec::new();
            for t in &tasks {
                let row = &t.row;
                if row.desired_status == DesiredStatus::Stopped
                    || row.last_status != LastStatus::Running
                    || crate::ecs::services::unhealthy(&t.containers)
                {
                    continue;
                }
                // (A cluster's task rows carry no task definition: the store has it.)
                let port = named_port(&row.definition, port_name).or_else(|| {
                    let td = store
                        .task_definition_by_arn(&row.task_definition_arn)
                        .ok()??;
                    named_port(&td.definition, port_name)
                });
                let ip = store
                    .task_network(&row.id)
                    .ok()
                    .flatten()
                    .and_then(|n| n.network?.net.ip)
                    .or_else(|| {
                        fleet::get()
                            .task_ip(store, &s.cluster, &row.id)?
                            .parse()
                            .ok()
                    });
                if let (Some(ip), Some(port)) = (ip, port) {
                    targets.push(SocketAddr::new(ip.into(), port));
                }
            }
            let base = svc["discoveryName"].as_str().unwrap_or(port_name);
            for a in svc["clientAliases"].as_array().into_iter().flatten() {
                let Some(port) = a["port"].as_u64().and_then(|p| u16::try_from(p).ok()) else {
                    continue;
                };
                let dns_name = a["dnsName"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("{base}.{ns_name}"));
                if out.contains_key(&port) {
                    tracing::warn!(
                        port,
                        dns_name,
                        "Service Connect: two aliases on one port: the first is served"
                    );
                    continue;
                }
                out.insert(
                    port,
                    Alias {
                        dns_name,
                        targets: targets.clone(),
                    },
                );
            }
        }
    }
    Ok(out)
}

/// Serves the aliases on `gateway` (the task bridge's) until the process ends; their names
/// go to `records`.
pub async fn run(cm: Arc<CloudMap>, g: Ecs, gateway: Ipv4Addr, records: Arc<crate::dns::Records>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut proxies = Proxies::new(gateway);
    let mut store: Option<Store> = None;
    loop {
        tick.tick().await;
        let (cm2, g2) = (cm.clone(), g.clone());
        let mut st = store.take();
        let got = tokio::task::spawn_blocking(move || {
            if st.is_none() {
                st = g2.open_store().ok();
            }
            let a = st.as_ref().map(|s| aliases(&cm2, s));
            (st, a)
        })
        .await;
        let Ok((st, Some(Ok(want)))) = got else {
            continue;
        };
        store = st;
        records.replace(SOURCE, proxies.apply(&want).await);
    }
}

/// The DNS table's source name of the aliases.
pub const SOURCE: &str = "serviceconnect";

/// The aliases' listeners on one address (a task bridge's gateway): each passes its
/// connections to its alias's tasks. Dropped, they stop.
pub struct Proxies {
    gateway: Ipv4Addr,
    listening: HashMap<u16, (Targets, JoinHandle<()>)>,
}

impl Proxies {
    pub fn new(gateway: Ipv4Addr) -> Proxies {
        Proxies {
            gateway,
            listening: HashMap::new(),
        }
    }

    /// Listens for exactly the aliases of `want` (new ones start, gone ones stop, the
    /// others get their new tasks); returns their names, each an A record of the gateway.
    pub async fn apply(
        &mut self,
        want: &BTreeMap<u16, Alias>,
    ) -> BTreeMap<String, Vec<crate::dns::Record>> {
        self.listening.retain(|port, (_, h)| {
            let keep = want.contains_key(port) && !h.is_finished();
            if !keep {
                h.abort();
            }
            keep
        });
        let mut names = BTreeMap::new();
        for (port, alias) in want {
            names.insert(
                alias.dns_name.clone(),
                vec![crate::dns::Record {
                    data: crate::dns::Data::A(self.gateway),
                    ttl: TTL,
                }],
            );
            if let Some((targets, _)) = self.listening.get(port) {
                *targets.lock().unwrap_or_else(|p| p.into_inner()) = alias.targets.clone();
                continue;
            }
            match TcpListener::bind((self.gateway, *port)).await {
                Ok(l) => {
                    tracing::info!(port, dns_name = %alias.dns_name, "Service Connect alias listening");
                    let targets = Arc::new(Mutex::new(alias.targets.clone()));
                    let h = tokio::spawn(serve(l, targets.clone()));
                    self.listening.insert(*port, (targets, h));
                }
                Err(e) => {
                    tracing::warn!(port, dns_name = %alias.dns_name, error = %e, "Service Connect: cannot listen for the alias");
                }
            }
        }
        names
    }
}

impl Drop for Proxies {
    fn drop(&mut self) {
        for (_, (_, h)) in self.listening.drain() {
            h.abort();
        }
    }
}

/// Passes each connection to the next target.
async fn serve(l: TcpListener, targets: Targets) {
    let next = Arc::new(AtomicUsize::new(0));
    loop {
        let Ok((mut conn, _)) = l.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let list = targets.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if list.is_empty() {
            continue;
        }
        let i = next.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            // A target that refuses: the next one, once round the list.
            for k in 0..list.len() {
                let t = list[(i + k) % list.len()];
                if let Ok(Ok(mut up)) =
                    tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(t)).await
                {
                    let _ = tokio::io::copy_bidirectional(&mut conn, &mut up).await;
                    return;
                }
            }
        });
    }
}
