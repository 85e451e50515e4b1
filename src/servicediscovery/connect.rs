//! ECS Service Connect, without a sidecar: for each `clientAliases` entry of a service's
//! `serviceConnectConfiguration` (`dnsName:port`), `serve` listens on the task bridge's
//! gateway at `port` and spreads the connections over the healthy RUNNING tasks of that
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
#[derive(Debug, Clone, PartialEq)]
struct Alias {
    dns_name: String,
    targets: Vec<SocketAddr>,
}

/// The aliases of the ECS services, by port.
fn aliases(cm: &CloudMap, store: &Store) -> anyhow::Result<BTreeMap<u16, Alias>> {
    let mut out = BTreeMap::new();
    for s in store.list_services(None)? {
        let Some(cfg) = s.spec.not_applied.get("serviceConnectConfiguration") else {
            continue;
        };
        if cfg["enabled"] != true {
            continue;
        }
        let ns = cfg["namespace"].as_str().unwrap_or_default();
        let ns_name = {
            let st = cm.state.lock().unwrap_or_else(|p| p.into_inner());
            st.namespaces
                .values()
                .find(|n| n.name == ns || n.arn == ns || n.id == ns)
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
                let port = row
                    .definition
                    .container_definitions
                    .iter()
                    .flatten()
                    .flat_map(|c| c.port_mappings.iter().flatten())
                    .find(|m| m.name.as_deref() == Some(port_name))
                    .and_then(|m| m.container_port)
                    .and_then(|p| u16::try_from(p).ok());
                let ip = store
                    .task_network(&row.id)
                    .ok()
                    .flatten()
                    .and_then(|n| n.network?.net.ip);
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
    let mut listening: HashMap<u16, (Targets, JoinHandle<()>)> = HashMap::new();
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
        listening.retain(|port, (_, h)| {
            let keep = want.contains_key(port) && !h.is_finished();
            if !keep {
                h.abort();
            }
            keep
        });
        let mut names = BTreeMap::new();
        for (port, alias) in &want {
            names.insert(
                alias.dns_name.clone(),
                vec![crate::dns::Record {
                    data: crate::dns::Data::A(gateway),
                    ttl: TTL,
                }],
            );
            if let Some((targets, _)) = listening.get(port) {
                *targets.lock().unwrap_or_else(|p| p.into_inner()) = alias.targets.clone();
                continue;
            }
            match TcpListener::bind((gateway, *port)).await {
                Ok(l) => {
                    tracing::info!(port, dns_name = %alias.dns_name, "Service Connect alias listening");
                    let targets = Arc::new(Mutex::new(alias.targets.clone()));
                    let h = tokio::spawn(serve(l, targets.clone()));
                    listening.insert(*port, (targets, h));
                }
                Err(e) => {
                    tracing::warn!(port, dns_name = %alias.dns_name, error = %e, "Service Connect: cannot listen for the alias");
                }
            }
        }
        records.replace("serviceconnect", names);
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
