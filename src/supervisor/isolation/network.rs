//! The task's network step on top of the `netns` crate: what a task definition asks of the
//! network, the per-task setup/teardown the supervisor runs, and the clean-up of dead tasks.
//!
//! `awsvpc` (Fargate's only mode): a namespace per task on the bridge with its own address,
//! egress NAT, `portMappings` published with hostPort == containerPort. `bridge`: the same
//! namespace per task (all containers share it — ECS gives each container its own; see
//! docs/run-task.md), ports published hostPort → containerPort, dynamic when 0 or absent.
//! `host`: the host's namespace (ports only checked and reserved). `none`: loopback only.
//! The bridge and subnet come from `MINIFARGATE_BRIDGE` / `MINIFARGATE_SUBNET` (and the
//! optional `nft` binary from `MINIFARGATE_NFT`); the crate's state lives in `<run-root>/net/<bridge>`.

use crate::store::{AttachmentStatus, NetworkRow, SharedStore, Store};
use crate::taskdef::model::{NetworkMode, TaskDefinition, TransportProtocol};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The default task subnet (src/config.rs has the host's).
pub const DEFAULT_SUBNET: &str = "10.94.0.0/16";

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("MINIFARGATE_SUBNET={value:?}: {source}")]
    SubnetSetting {
        value: String,
        #[source]
        source: netns::IpamError,
    },
    #[error("MINIFARGATE_BRIDGE={value:?}: a bridge name is 1-15 characters from a-z A-Z 0-9 _ -")]
    BridgeSetting { value: String },
    #[error("containerDefinitions[{idx}].{field}: {reason}")]
    Field {
        idx: usize,
        field: String,
        reason: String,
    },
    #[error("--network-configuration: {reason}")]
    Configuration { reason: String },
    #[error("failed to open the task network on bridge {bridge}")]
    Open {
        bridge: String,
        #[source]
        source: netns::Error,
    },
    #[error(transparent)]
    Setup(#[from] netns::Error),
    #[error(transparent)]
    Teardown(#[from] netns::TeardownError),
    #[error("failed to tear down the network of task {task} from the host's mount namespace")]
    MountNs {
        task: String,
        #[source]
        source: crate::supervisor::isolation::mountns::MountNsError,
    },
    #[error("failed to record the network of task {task}")]
    Store {
        task: String,
        #[source]
        source: crate::store::StoreError,
    },
    #[error("the thread that configured the network of task {task} panicked")]
    WiringPanicked { task: String },
    #[error("failed to write the hosts file of task {task}")]
    Hosts {
        task: String,
        #[source]
        source: netns::FilesError,
    },
}

impl NetworkError {
    /// Whether the setup failed for want of something another task holds (an address, a
    /// host port): see [`netns::Error::held_by_another_task`].
    pub fn held_by_another_task(&self) -> bool {
        matches!(self, NetworkError::Setup(e) if e.held_by_another_task())
    }
}

/// Which bridge and subnet tasks go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub bridge: String,
    pub subnet: netns::Subnet,
}

impl Settings {
    /// This host's: `MINIFARGATE_BRIDGE` and `MINIFARGATE_SUBNET` (defaults `mfg0`,
    /// 10.94.0.0/16), parsed and checked at start-up (src/config.rs).
    /// In `agent --cluster`, the subnet is the one the box holds in the cluster
    /// ([`use_box_subnet`]).
    pub fn configured() -> Settings {
        let c = crate::config::get();
        Settings {
            bridge: c.bridge.clone(),
            subnet: BOX_SUBNET.get().copied().unwrap_or(c.subnet),
        }
    }

    pub fn parse(bridge: &str, subnet: &str) -> Result<Settings, NetworkError> {
        let ok = !bridge.is_empty()
            && bridge.len() <= 15
            && bridge
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !ok {
            return Err(NetworkError::BridgeSetting {
                value: bridge.into(),
            });
        }
        let subnet = subnet
            .parse()
            .map_err(|source| NetworkError::SubnetSetting {
                value: subnet.into(),
                source,
            })?;
        Ok(Settings {
            bridge: bridge.into(),
            subnet,
        })
    }
}

/// The task subnet this box holds in its cluster (`agent --cluster`, docs/cluster.md).
static BOX_SUBNET: std::sync::OnceLock<netns::Subnet> = std::sync::OnceLock::new();

/// `agent --cluster`: the tasks this process starts from now on take their addresses
/// from `s`, the subnet the box holds in the cluster. Set once: a later call with
/// another subnet is refused with the one in use.
pub fn use_box_subnet(s: netns::Subnet) -> Result<(), netns::Subnet> {
    let held = *BOX_SUBNET.get_or_init(|| s);
    if held == s { Ok(()) } else { Err(held) }
}

/// The subnet [`use_box_subnet`] set, if any.
pub fn box_subnet() -> Option<netns::Subnet> {
    BOX_SUBNET.get().copied()
}

/// Where the netns crate keeps the state of `bridge` (leases, ports, per-task files).
pub fn state_dir(run_root: &Path, bridge: &str) -> PathBuf {
    run_root.join("net").join(bridge)
}

/// The task network manager of `bridge` under this run root.
pub fn open(
    run_root: &Path,
    bridge: &str,
    subnet: netns::Subnet,
) -> Result<netns::Network, NetworkError> {
    open_owned(run_root, bridge, subnet, None)
}

/// [`open`] for a task's supervisor whose state is `owner_state` (its root's
/// `state.db`): with that file gone the task's wiring makes neither the bridge nor the
/// nftables table (`netns::NetworkConfig::owner_state`).
pub fn open_owned(
    run_root: &Path,
    bridge: &str,
    subnet: netns::Subnet,
    owner_state: Option<PathBuf>,
) -> Result<netns::Network, NetworkError> {
    netns::Network::open(netns::NetworkConfig {
        run_root: state_dir(run_root, bridge),
        bridge: bridge.into(),
        subnet,
        // Default: nftables over netlink. `MINIFARGATE_NFT` writes the rules with that `nft`
        // binary instead; a path that does not exist runs tasks as on a host without nftables.
        nft: crate::config::get().nft.clone(),
        // `serve`'s DNS server, while it answers on this bridge (crate::dns).
        resolver: crate::dns::announced(&crate::dns::marker_path(&state_dir(run_root, bridge))),
        pause_before_wiring: test_network_delay(),
        owner_state,
        ..Default::default()
    })
    .map_err(|source| NetworkError::Open {
        bridge: bridge.into(),
        source,
    })
}

/// `MINIFARGATE_TEST_NETWORK_DELAY` (a test hook, src/config.rs).
#[cfg(any(debug_assertions, feature = "test-hooks"))]
fn test_network_delay() -> Option<std::time::Duration> {
    crate::config::hooks().test_network_delay
}

#[cfg(not(any(debug_assertions, feature = "test-hooks")))]
fn test_network_delay() -> Option<std::time::Duration> {
    None
}

fn crate_mode(m: NetworkMode) -> netns::NetworkMode {
    match m {
        NetworkMode::Awsvpc => netns::NetworkMode::Awsvpc,
        NetworkMode::Bridge => netns::NetworkMode::Bridge,
        NetworkMode::Host => netns::NetworkMode::Host,
        NetworkMode::None => netns::NetworkMode::None,
    }
}

fn protocol(p: Option<TransportProtocol>) -> netns::Protocol {
    match p {
        Some(TransportProtocol::Udp) => netns::Protocol::Udp,
        _ => netns::Protocol::Tcp,
    }
}

fn port(v: i64, idx: usize, field: &str) -> Result<u16, NetworkError> {
    u16::try_from(v)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| NetworkError::Field {
            idx,
            field: field.into(),
            reason: format!("{v} is not a port (1-65535)"),
        })
}

/// What one container's port mappings asked for, in order (a [`netns::PortMapping`] each).
fn port_mappings(
    def: &TaskDefinition,
    mode: NetworkMode,
) -> Result<Vec<(String, netns::PortMapping)>, NetworkError> {
    let mut out = Vec::new();
    for (idx, c) in def.container_definitions.iter().flatten().enumerate() {
        for (j, pm) in c.port_mappings.iter().flatten().enumerate() {
            let at = |f: &str| format!("portMappings[{j}].{f}");
            let (first, end) = match (&pm.container_port_range, pm.container_port) {
                (Some(r), _) => {
                    let (a, b) = r.split_once('-').ok_or_else(|| NetworkError::Field {
                        idx,
                        field: at("containerPortRange"),
                        reason: format!("{r:?} is not FIRST-LAST"),
                    })?;
                    let parse = |s: &str| {
                        s.trim()
                            .parse::<i64>()
                            .map_err(|_| NetworkError::Field {
                                idx,
                                field: at("containerPortRange"),
                                reason: format!("{r:?} is not FIRST-LAST"),
                            })
                            .and_then(|v| port(v, idx, &at("containerPortRange")))
                    };
                    (parse(a)?, Some(parse(b)?))
                }
                (None, Some(p)) => (port(p, idx, &at("containerPort"))?, None),
                (None, None) => {
                    return Err(NetworkError::Field {
                        idx,
                        field: at("containerPort"),
                        reason: "missing (give containerPort or containerPortRange)".into(),
                    });
                }
            };
            let host_port = match pm.host_port {
                None | Some(0) => None,
                Some(h) => Some(port(h, idx, &at("hostPort"))?),
            };
            // Ref: ecs.json `PortMapping.hostPort` — awsvpc (and host) mode publish the
            // container port itself.
            if matches!(mode, NetworkMode::Awsvpc | NetworkMode::Host)
                && end.is_none()
                && host_port.is_some_and(|h| h != first)
            {
                return Err(NetworkError::Field {
                    idx,
                    field: at("hostPort"),
                    reason: format!(
                        "in {mode} mode hostPort must be absent or equal containerPort ({first}), got {}",
                        host_port.unwrap_or_default()
                    ),
                });
            }
            if mode == NetworkMode::None {
                return Err(NetworkError::Field {
                    idx,
                    field: at("containerPort"),
                    reason: "network mode none has no ports to publish".into(),
                });
            }
            out.push((
                c.name_str().to_string(),
                netns::PortMapping {
                    container_port: first,
                    container_port_end: end,
                    host_port,
                    protocol: protocol(pm.protocol),
                },
            ));
        }
    }
    Ok(out)
}

/// One container's own name-resolution members, parsed: what its `/etc/resolv.conf` and
/// `/etc/hosts` say besides the task's defaults.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerDns {
    /// `dnsServers`: replace the task's (the host's) resolvers when given.
    pub servers: Vec<IpAddr>,
    /// `dnsSearchDomains`: replace the host's search list when given.
    pub search: Vec<String>,
    /// `extraHosts`, then (bridge mode) the names of its `links`, at 127.0.0.1 here.
    pub extra_hosts: Vec<(String, IpAddr)>,
    /// Its own `hostname`, which its hosts file maps to the task (bridge mode, as Docker).
    pub hostname: Option<String>,
}

impl ContainerDns {
    /// Whether the container asks for its own resolvers or search list.
    pub fn own_resolv(&self) -> bool {
        !self.servers.is_empty() || !self.search.is_empty()
    }
}

/// The netns crate's view of a task (mode and every container's port mappings: one
/// namespace per task) with each port mapping's container, and each container's own DNS
/// members (the crate's task-wide files carry only the host's defaults; each container gets
/// its own files from these).
pub fn task_spec(
    def: &TaskDefinition,
    mode: NetworkMode,
) -> Result<(netns::TaskSpec, Vec<String>, Vec<ContainerDns>), NetworkError> {
    let maps = port_mappings(def, mode)?;
    let mut spec = netns::TaskSpec::new(crate_mode(mode));
    let owners = maps.iter().map(|(c, _)| c.clone()).collect();
    spec.port_mappings = maps.into_iter().map(|(_, m)| m).collect();
    let mut all = Vec::new();
    for (idx, c) in def.container_definitions.iter().flatten().enumerate() {
        let mut dns = ContainerDns {
            hostname: c.hostname.clone().filter(|h| !h.is_empty()),
            ..Default::default()
        };
        for (j, s) in c.dns_servers.iter().flatten().enumerate() {
            let ip: IpAddr = s.trim().parse().map_err(|_| NetworkError::Field {
                idx,
                field: format!("dnsServers[{j}]"),
                reason: format!("{s:?} is not an IP address"),
            })?;
            if !dns.servers.contains(&ip) {
                dns.servers.push(ip);
            }
        }
        for d in c.dns_search_domains.iter().flatten() {
            if !dns.search.contains(d) {
                dns.search.push(d.clone());
            }
        }
        for (j, h) in c.extra_hosts.iter().flatten().enumerate() {
            let name = h.hostname.clone().unwrap_or_default();
            let addr = h.ip_address.as_deref().unwrap_or_default();
            let ip: IpAddr = addr.trim().parse().map_err(|_| NetworkError::Field {
                idx,
                field: format!("extraHosts[{j}].ipAddress"),
                reason: format!("{addr:?} is not an IP address"),
            })?;
            if name.is_empty() || name.contains(char::is_whitespace) {
                return Err(NetworkError::Field {
                    idx,
                    field: format!("extraHosts[{j}].hostname"),
                    reason: format!("{name:?} is not a host name"),
                });
            }
            dns.extra_hosts.push((name, ip));
        }
        // Bridge-mode `links` ("name" or "name:alias"): the task's containers share one
        // namespace here, so a linked container is at 127.0.0.1.
        if mode == NetworkMode::Bridge {
            for l in c.links.iter().flatten() {
                for name in l.split(':').map(str::trim).filter(|n| !n.is_empty()) {
                    let entry = (name.to_string(), IpAddr::V4(Ipv4Addr::LOCALHOST));
                    if !dns.extra_hosts.contains(&entry) {
                        dns.extra_hosts.push(entry);
                    }
                }
            }
        }
        all.push(dns);
    }
    Ok((spec, owners, all))
}

/// A host-mode container's resolv.conf: the host's own text (its resolvers are reachable:
/// the container is in the host's namespace), with its `nameserver` lines replaced by
/// `servers` and its `search`/`domain` lines by `search`, when given; the rest (options)
/// kept, as Docker writes a host-network container's file.
pub fn host_resolv_conf(host: &str, servers: &[IpAddr], search: &[String]) -> String {
    let mut out = String::new();
    for ip in servers {
        out.push_str(&format!("nameserver {ip}\n"));
    }
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    for l in host.lines() {
        let t = l.trim_start();
        let word = t.split_whitespace().next().unwrap_or_default();
        let replaced = match word {
            "nameserver" => !servers.is_empty(),
            "search" | "domain" => !search.is_empty(),
            _ => false,
        };
        if !replaced {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

/// A host-mode container's hosts file: the host's, then its `extraHosts` (Docker's
/// `--add-host` with host networking).
pub fn host_hosts(host: &str, extra: &[(String, IpAddr)]) -> String {
    let mut out = host.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    for (name, ip) in extra {
        out.push_str(&format!("{ip}\t{name}\n"));
    }
    out
}

/// The task's private DNS name as in a VPC: `ip-10-94-0-5.ec2.internal` in us-east-1,
/// `ip-10-94-0-5.<region>.compute.internal` elsewhere.
/// Ref: docs.aws.amazon.com/vpc/latest/userguide/vpc-dns.html (private IPv4 DNS hostnames).
pub fn private_dns_name(ip: Ipv4Addr, region: &str) -> String {
    let [a, b, c, d] = ip.octets();
    if region == "us-east-1" {
        format!("ip-{a}-{b}-{c}-{d}.ec2.internal")
    } else {
        format!("ip-{a}-{b}-{c}-{d}.{region}.compute.internal")
    }
}

pub use crate::store::{Binding, Recorded, StoredBinding};

/// Groups the crate's flat host port list (ranges expanded, in mapping order) back into
/// one binding per port mapping; the `unpublished` mappings have no host ports.
fn bindings(
    spec: &netns::TaskSpec,
    owners: &[String],
    flat: &[netns::PortBinding],
    unpublished: &[netns::Unpublished],
) -> Vec<StoredBinding> {
    let mut out = Vec::new();
    let mut rest = flat.iter();
    for (i, (m, owner)) in spec.port_mappings.iter().zip(owners).enumerate() {
        if unpublished.iter().any(|u| u.mapping == i) {
            continue;
        }
        let count =
            usize::from(m.container_port_end.unwrap_or(m.container_port) - m.container_port) + 1;
        let taken: Vec<&netns::PortBinding> = rest.by_ref().take(count).collect();
        let (Some(first), Some(last)) = (taken.first(), taken.last()) else {
            continue;
        };
        let ranged = m.container_port_end.is_some();
        out.push(StoredBinding {
            container: owner.clone(),
            binding: Binding {
                bind_ip: first.bind_ip.to_string(),
                container_port: (!ranged).then_some(first.container_port),
                host_port: (!ranged).then_some(first.host_port),
                protocol: first.protocol.to_string(),
                container_port_range: ranged
                    .then(|| format!("{}-{}", first.container_port, last.container_port)),
                host_port_range: ranged.then(|| format!("{}-{}", first.host_port, last.host_port)),
            },
        });
    }
    out
}

/// The task warning for an awsvpc port mapping left unpublished on the host.
fn unpublished_warning(u: &netns::Unpublished, owners: &[String], ip: Option<Ipv4Addr>) -> String {
    let ports = if u.container_port_end == u.container_port {
        u.container_port.to_string()
    } else {
        format!("{}-{}", u.container_port, u.container_port_end)
    };
    let container = owners.get(u.mapping).map(String::as_str).unwrap_or("?");
    let at = ip.map_or_else(
        || "its own address".to_string(),
        |ip| format!("{ip}:{ports}"),
    );
    format!(
        "network: port {ports}/{} of container {container} is not published on the host ({}); \
         the task answers at {at}, as each Fargate task does at its own ENI's address",
        u.protocol, u.reason
    )
}

/// What the network step gives the executor for every container of the task.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Attachment {
    /// The namespace containers join (`/proc/<pid>/ns/net` in host mode).
    pub netns: Option<PathBuf>,
    /// Each container's `/etc/hosts` and `/etc/resolv.conf` bind mounts, by container
    /// index: its own files, from its own `extraHosts`, `dnsServers` and
    /// `dnsSearchDomains` over the task's defaults.
    pub mounts: Vec<Vec<runtime::Mount>>,
    /// The hostname containers get. In awsvpc mode this is the task's private DNS name
    /// and replaces a container's `hostname` (ECS refuses `hostname` with awsvpc); in
    /// host mode it is the host's unless the container names its own.
    pub hostname: Option<String>,
    /// Whether [`Attachment::hostname`] overrides a container's own `hostname`.
    pub hostname_fixed: bool,
    /// Notes for the task's warnings (e.g. no egress NAT without nftables).
    pub warnings: Vec<String>,
}

/// Sets up and tears down a task's network, in two halves: [`TaskNetwork::prepare`] makes
/// what a container needs before it is created (the namespace, the address, the files it
/// bind-mounts) and hands back the rest, a [`Wiring`] (links, addresses, routes, published
/// ports) that may run on another thread while the containers are created;
/// [`TaskNetwork::finish`] records how it went.
pub trait TaskNetwork {
    /// `adopt`: the task's network namespace, made by its holder inside the task's user
    /// namespace, to pin instead of creating one. The wiring is `None` when nothing is left
    /// to do (host mode).
    fn prepare(
        &mut self,
        task_id: &str,
        mode: NetworkMode,
        adopt: Option<&Path>,
    ) -> Result<(Attachment, Option<Wiring>), NetworkError>;
    /// Records what the wiring did: ATTACHED, or FAILED (its own error is the caller's to
    /// report; `Err` here is the store's).
    fn finish(
        &mut self,
        task_id: &str,
        wired: Result<&netns::TaskNetwork, &NetworkError>,
    ) -> Result<(), NetworkError>;
    /// Starts removing from the host what `prepare` and the wiring made (namespace pin, veth, files,
    /// address lease, nftables entries) on a thread of its own, so the rest of the
    /// teardown runs meanwhile. Call it once the task's processes are gone.
    fn begin_teardown(&mut self, task_id: &str) -> PendingTeardown;
    /// Waits for what [`TaskNetwork::begin_teardown`] started; every step has run. Returns
    /// every error, and the task's network row, DELETED, when it has one: the caller
    /// writes it with the task's STOPPED row, in one transaction.
    fn end_teardown(
        &mut self,
        task_id: &str,
        pending: PendingTeardown,
    ) -> (Vec<NetworkError>, Option<NetworkRow>);
}

/// The host's part of a task's network teardown, running
/// ([`TaskNetwork::begin_teardown`]).
pub struct PendingTeardown {
    started: Instant,
    job: Job,
}

type HostTeardown =
    Result<Result<(), netns::TeardownError>, crate::supervisor::isolation::mountns::MountNsError>;

enum Job {
    /// No network was set up.
    Nothing,
    Running(std::thread::JoinHandle<HostTeardown>),
    /// Done on the calling thread (no thread could be started).
    Done(HostTeardown),
}

impl PendingTeardown {
    /// Nothing to wait for (no network was set up).
    pub fn none() -> PendingTeardown {
        PendingTeardown {
            started: Instant::now(),
            job: Job::Nothing,
        }
    }
}

/// The second half of a task's network step ([`TaskNetwork::prepare`]): runs on any
/// thread. It borrows what it works on and returns it with the result ([`Wired`]), so
/// the thread that runs it frees nothing the launch's thread allocated (see
/// `crate::supervisor::executor` on why that matters during a container's create).
pub struct Wiring {
    net: std::sync::Arc<netns::Network>,
    prepared: netns::PreparedTask,
}

/// What [`Wiring::run`] did, and what it worked on, to drop where it came from.
pub struct Wired {
    pub result: Result<netns::TaskNetwork, NetworkError>,
    /// The wiring itself, handed back.
    pub wiring: Wiring,
}

impl Wiring {
    /// The task's veth pair, addresses, routes and published ports (`netns`'s
    /// `wire_task`); on failure everything of the task's network is gone, as after a
    /// failed setup.
    pub fn run(self) -> Wired {
        let result = self
            .net
            .wire_task(&self.prepared)
            .map_err(NetworkError::Setup);
        Wired {
            result,
            wiring: self,
        }
    }
}

/// A bind mount of `source` on `destination` in a container.
fn bind(source: &Path, destination: &str, read_only: bool) -> runtime::Mount {
    runtime::Mount::Bind {
        source: source.into(),
        destination: destination.into(),
        read_only,
    }
}

/// Each container's `/etc/hosts` and `/etc/resolv.conf` in host mode, by index: the
/// host's, read-only, or a copy of them under `dir` with the container's own
/// extraHosts / dnsServers / search domains.
fn host_mode_mounts(
    task: &str,
    dir: &Path,
    dns: &[ContainerDns],
) -> Result<Vec<Vec<runtime::Mount>>, NetworkError> {
    let files_err = |source| NetworkError::Hosts {
        task: task.into(),
        source,
    };
    let read = |p: &str| match std::fs::read_to_string(p) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(files_err(netns::FilesError::Read {
            path: p.into(),
            source,
        })),
    };
    let (hosts, resolv) = (read("/etc/hosts")?, read("/etc/resolv.conf")?);
    let mut mounts = Vec::new();
    for (idx, c) in dns.iter().enumerate() {
        let mut m = Vec::new();
        let own = |name: &str, text: String| -> Result<PathBuf, NetworkError> {
            std::fs::create_dir_all(dir).map_err(|source| {
                files_err(netns::FilesError::Write {
                    path: dir.to_path_buf(),
                    source,
                })
            })?;
            let path = dir.join(format!("c{idx}.{name}"));
            netns::files::write(&path, &text).map_err(files_err)?;
            Ok(path)
        };
        if !c.extra_hosts.is_empty() {
            let text = host_hosts(hosts.as_deref().unwrap_or_default(), &c.extra_hosts);
            m.push(bind(&own("hosts", text)?, "/etc/hosts", false));
        } else if hosts.is_some() {
            m.push(bind(Path::new("/etc/hosts"), "/etc/hosts", true));
        }
        if c.own_resolv() {
            let text =
                host_resolv_conf(resolv.as_deref().unwrap_or_default(), &c.servers, &c.search);
            m.push(bind(&own("resolv.conf", text)?, "/etc/resolv.conf", false));
        } else if resolv.is_some() {
            m.push(bind(
                Path::new("/etc/resolv.conf"),
                "/etc/resolv.conf",
                true,
            ));
        }
        mounts.push(m);
    }
    Ok(mounts)
}

/// Each container's `/etc/hosts` and `/etc/resolv.conf` in a network namespace of the
/// task's, by index. The crate's files are the task's defaults; each container gets its
/// own next to them (removed with them at teardown), from its own members. `resolver`:
/// the task's resolver, for a container with search domains but no servers of its own.
fn own_netns_mounts(
    task: &str,
    mode: NetworkMode,
    dns: &[ContainerDns],
    tn: &netns::TaskNetwork,
    private_dns: Option<&String>,
    resolver: Option<IpAddr>,
) -> Result<Vec<Vec<runtime::Mount>>, NetworkError> {
    let files_err = |source| NetworkError::Hosts {
        task: task.into(),
        source,
    };
    let dir = tn.hosts_file.as_deref().and_then(Path::parent);
    let mut mounts = Vec::new();
    for (idx, c) in dns.iter().enumerate() {
        let mut m = Vec::new();
        if let Some(dir) = dir {
            // The crate names the task `ip-a-b-c-d`; the VPC domain is added as
            // Fargate has it. Bridge mode: the container's own `hostname`
            // resolves to the task, as Docker writes it into its hosts file.
            let mut names: Vec<String> = private_dns
                .into_iter()
                .cloned()
                .chain(tn.private_dns_name.clone())
                .collect();
            if mode == NetworkMode::Bridge
                && let Some(h) = c.hostname.as_ref().filter(|h| !names.contains(h))
            {
                names.push(h.clone());
            }
            let joined = names.join(" ");
            let own = tn.ip.map(|ip| (ip, joined.as_str()));
            let path = dir.join(format!("c{idx}.hosts"));
            netns::files::write(&path, &netns::files::hosts(own, &c.extra_hosts))
                .map_err(files_err)?;
            m.push(bind(&path, "/etc/hosts", false));
            if c.own_resolv() {
                // Only search domains of its own: the task's resolver.
                let servers = match resolver {
                    Some(r) if c.servers.is_empty() => vec![r],
                    _ => c.servers.clone(),
                };
                let (text, _) =
                    netns::files::resolv_conf(&netns::HostResolv::default(), &servers, &c.search)
                        .map_err(files_err)?;
                let path = dir.join(format!("c{idx}.resolv.conf"));
                netns::files::write(&path, &text).map_err(files_err)?;
                m.push(bind(&path, "/etc/resolv.conf", false));
            } else if let Some(r) = &tn.resolv_conf {
                m.push(bind(r, "/etc/resolv.conf", false));
            }
        }
        mounts.push(m);
    }
    Ok(mounts)
}

/// The real network step, run by the task's supervisor.
pub struct NetworkStep {
    store: SharedStore,
    /// The supervisor's `state.db`: the wiring makes nothing shared once it is gone.
    state_db: PathBuf,
    run_root: PathBuf,
    def: TaskDefinition,
    region: String,
    /// Shared with the teardown's thread; its last reference (and with it the
    /// netfilter socket) goes with this process.
    net: Option<std::sync::Arc<netns::Network>>,
    row: Option<NetworkRow>,
}

impl NetworkStep {
    pub fn new(
        store: SharedStore,
        root: &Path,
        run_root: &Path,
        def: &TaskDefinition,
        region: &str,
    ) -> NetworkStep {
        NetworkStep {
            store,
            state_db: root.join("state.db"),
            run_root: run_root.into(),
            def: def.clone(),
            region: region.into(),
            net: None,
            row: None,
        }
    }

    fn save(&mut self, task: &str) -> Result<(), NetworkError> {
        let row = self.row.as_ref().expect("row set before save");
        self.store
            .with(|s| s.save_network(row))
            .map_err(|source| NetworkError::Store {
                task: task.into(),
                source,
            })
    }

    fn try_prepare(
        &mut self,
        task: &str,
        mode: NetworkMode,
        adopt: Option<&Path>,
    ) -> Result<(Attachment, Option<Wiring>), NetworkError> {
        let (mut spec, owners, dns) = task_spec(&self.def, mode)?;
        spec.adopt_netns = adopt.map(Path::to_path_buf);
        let row = self.row.as_ref().expect("row set by setup");
        let settings = match (&row.bridge, &row.subnet) {
            (Some(b), Some(s)) => Settings::parse(b, s)?,
            _ => Settings::configured(),
        };
        let net = std::sync::Arc::new(open_owned(
            &self.run_root,
            &settings.bridge,
            settings.subnet,
            Some(self.state_db.clone()),
        )?);
        let started = Instant::now();
        let prepared = net.prepare_task(task, &spec)?;
        let tn = prepared.network().clone();
        self.net = Some(net.clone());
        let mut a = Attachment::default();
        let private_dns = tn.ip.map(|ip| private_dns_name(ip, &self.region));
        match mode {
            NetworkMode::Host => {
                a.netns = Some(format!("/proc/{}/ns/net", std::process::id()).into());
                // As Docker's host mode: the host's hostname unless the container names its
                // own (its UTS namespace is its own), the host's files (read-only here), or a
                // copy of them with the container's extraHosts / dnsServers / search domains.
                a.hostname = nix::unistd::gethostname()
                    .ok()
                    .and_then(|h| h.into_string().ok());
                let dir = self.run_root.join("tasks").join(task).join("etc");
                a.mounts = host_mode_mounts(task, &dir, &dns)?;
            }
            _ => {
                a.netns = tn.netns_path.clone();
                let resolver = net.config().resolver.map(IpAddr::from);
                a.mounts = own_netns_mounts(task, mode, &dns, &tn, private_dns.as_ref(), resolver)?;
                if mode == NetworkMode::Awsvpc {
                    a.hostname = private_dns.clone();
                    a.hostname_fixed = true;
                }
            }
        }
        if matches!(mode, NetworkMode::Awsvpc | NetworkMode::Bridge)
            && !tn.egress
            && let Some(net) = &self.net
            && let Err(why) = net.egress_available()
        {
            a.warnings.push(format!(
                "network: nftables is unavailable ({why}); the task has no egress NAT \
                 (install the nftables package)"
            ));
        }
        for u in &tn.unpublished {
            a.warnings.push(unpublished_warning(u, &owners, tn.ip));
        }
        let recorded = Recorded {
            bindings: bindings(&spec, &owners, &tn.bindings, &tn.unpublished),
            private_dns_name: private_dns,
            net: tn,
        };
        tracing::debug!(task_id = %task, %mode, ip = ?recorded.net.ip,
            setup_ms = started.elapsed().as_secs_f64() * 1000.0, "task network set up");
        let wiring = prepared.needs_wiring().then_some(Wiring { net, prepared });
        let row = self.row.as_mut().expect("row set by setup");
        row.network = Some(recorded);
        // ATTACHING until the wiring is done: the address and names are the task's
        // already (describe-tasks shows them while the images are pulled).
        row.attachment_status = if wiring.is_some() {
            AttachmentStatus::Attaching
        } else {
            AttachmentStatus::Attached
        };
        self.save(task)?;
        Ok((a, wiring))
    }
}

impl TaskNetwork for NetworkStep {
    fn prepare(
        &mut self,
        task: &str,
        mode: NetworkMode,
        adopt: Option<&Path>,
    ) -> Result<(Attachment, Option<Wiring>), NetworkError> {
        // The row is written before anything is made, so a dead supervisor's network can
        // always be found again (by reconcile) from the store.
        let row = match self.store.with(|s| s.task_network(task)) {
            Ok(Some(r)) => r,
            Ok(None) => new_row(task, mode, "{}")?,
            Err(source) => {
                return Err(NetworkError::Store {
                    task: task.into(),
                    source,
                });
            }
        };
        self.row = Some(NetworkRow {
            mode: mode.to_string(),
            ..row
        });
        self.save(task)?;
        let r = self.try_prepare(task, mode, adopt);
        if r.is_err()
            && let Some(row) = self.row.as_mut()
        {
            row.attachment_status = AttachmentStatus::Failed;
            let _ = self.save(task);
        }
        r
    }

    fn finish(
        &mut self,
        task: &str,
        wired: Result<&netns::TaskNetwork, &NetworkError>,
    ) -> Result<(), NetworkError> {
        let Some(row) = self.row.as_mut() else {
            return Ok(());
        };
        match wired {
            Ok(tn) => {
                if let Some(r) = row.network.as_mut() {
                    r.net.mtu = tn.mtu;
                }
                row.attachment_status = AttachmentStatus::Attached;
            }
            Err(_) => row.attachment_status = AttachmentStatus::Failed,
        }
        self.save(task)
    }

    fn begin_teardown(&mut self, task: &str) -> PendingTeardown {
        let Some(net) = &self.net else {
            return PendingTeardown::none();
        };
        let started = Instant::now();
        // The netns pin is in the host's mount table (the supervisor's own namespace has a
        // copy of it only): removed from there.
        let (shared, id) = (net.clone(), task.to_string());
        let job =
            match crate::supervisor::isolation::mountns::spawn_on_host("net-teardown", move || {
                shared.teardown(&id)
            }) {
                Ok(handle) => Job::Running(handle),
                Err(e) => {
                    tracing::warn!(task_id = %task, error = %e,
                    "no thread for the network teardown: done before the rest");
                    Job::Done(crate::supervisor::isolation::mountns::on_host(|| {
                        net.teardown(task)
                    }))
                }
            };
        PendingTeardown { started, job }
    }

    fn end_teardown(
        &mut self,
        task: &str,
        pending: PendingTeardown,
    ) -> (Vec<NetworkError>, Option<NetworkRow>) {
        let done = match pending.job {
            Job::Nothing => return (Vec::new(), None),
            Job::Running(handle) => handle
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p)),
            Job::Done(r) => r,
        };
        let mut errors = Vec::new();
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => errors.push(e.into()),
            Err(e) => errors.push(NetworkError::MountNs {
                task: task.into(),
                source: e,
            }),
        }
        tracing::debug!(task_id = %task, teardown_ms = pending.started.elapsed().as_secs_f64() * 1000.0,
            "task network torn down");
        let row = self.row.as_mut().map(|row| {
            // A network that failed stays FAILED (as one that failed before anything was
            // made for it, which teardown does not see).
            if row.attachment_status != AttachmentStatus::Failed {
                row.attachment_status = AttachmentStatus::Deleted;
            }
            row.clone()
        });
        (errors, row)
    }
}

/// A task's network row as RunTask records it (PRECREATED, on this host's bridge).
pub fn new_row(
    task: &str,
    mode: NetworkMode,
    configuration: &str,
) -> Result<NetworkRow, NetworkError> {
    let s = Settings::configured();
    Ok(NetworkRow {
        task_id: task.into(),
        mode: mode.to_string(),
        bridge: Some(s.bridge),
        subnet: Some(s.subnet.to_string()),
        attachment_id: crate::task::new_uuid().unwrap_or_else(|_| task.into()),
        attachment_status: AttachmentStatus::Precreated,
        configuration: serde_json::from_str(configuration).map_err(|e| {
            NetworkError::Configuration {
                reason: format!("not valid JSON: {e}"),
            }
        })?,
        network: None,
    })
}

/// Removes the network of a task whose supervisor died (from its stored row); returns the
/// errors of the steps that failed.
pub fn teardown_dead(store: &mut Store, run_root: &Path, task: &str) -> Vec<String> {
    let mut row = match store.task_network(task) {
        Ok(Some(r)) => r,
        Ok(None) => return Vec::new(),
        Err(e) => return vec![crate::errors::error_chain(&e)],
    };
    let mut errors = Vec::new();
    if let (Some(b), Some(s)) = (&row.bridge, &row.subnet) {
        match Settings::parse(b, s).and_then(|st| open(run_root, &st.bridge, st.subnet)) {
            Ok(net) => {
                if let Err(e) = net.teardown(task) {
                    errors.push(crate::errors::error_chain(&e));
                }
                // The run root (the network's state) may have been lost with the task,
                // e.g. by a reboot: what is left is found by name.
                if let Err(e) = net.teardown_lost(task) {
                    errors.push(crate::errors::error_chain(&e));
                }
            }
            Err(e) => errors.push(crate::errors::error_chain(&e)),
        }
    }
    if row.attachment_status != AttachmentStatus::Failed {
        row.attachment_status = AttachmentStatus::Deleted;
    }
    if let Err(e) = store.save_network(&row) {
        errors.push(crate::errors::error_chain(&e));
    }
    errors
}

/// Why one bridge could not be reset; the text holds the whole chain of causes (what
/// `system reset` prints after "network <bridge>: ").
#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    /// The bridge's network manager could not be opened.
    #[error("{}", crate::errors::error_chain(.0))]
    Open(#[source] NetworkError),
    /// Resetting it left something behind.
    #[error("{}", crate::errors::error_chain(.0))]
    Reset(#[source] netns::GcError),
}

/// `system reset`: every bridge under `<run-root>/net` is reset (the netns crate's
/// [`netns::Network::reset`]: every task's namespace, veth, lease and ports, then the
/// bridge and the nftables table). Only call it once no task of this run root is live.
pub fn reset_all(run_root: &Path) -> Vec<(String, Result<(), ResetError>)> {
    let Ok(dirs) = std::fs::read_dir(run_root.join("net")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for d in dirs.flatten() {
        let bridge = d.file_name().to_string_lossy().into_owned();
        let Ok(s) = Settings::parse(&bridge, DEFAULT_SUBNET) else {
            continue;
        };
        let r = open(run_root, &s.bridge, s.subnet)
            .map_err(ResetError::Open)
            .and_then(|net| net.reset().map_err(ResetError::Reset));
        out.push((bridge, r));
    }
    out
}

/// The safety net after reconcile: every bridge under `<run-root>/net` gives back what
/// tasks that are no longer live (STOPPED or unknown to the store) still hold.
pub fn gc(store: &Store, run_root: &Path) {
    let Ok(dirs) = std::fs::read_dir(run_root.join("net")) else {
        return;
    };
    for d in dirs.flatten() {
        let bridge = d.file_name().to_string_lossy().into_owned();
        let Ok(s) = Settings::parse(&bridge, DEFAULT_SUBNET) else {
            continue;
        };
        let fail = |e: &(dyn std::error::Error + 'static)| tracing::error!(%bridge, error = %crate::errors::error_chain(e), "network GC failed");
        let net = match open(run_root, &s.bridge, s.subnet) {
            Ok(n) => n,
            Err(e) => {
                fail(&e);
                continue;
            }
        };
        // The recorded tasks first, their liveness second: a task's row is committed before
        // its supervisor sets its network up, so every task listed here is seen live if it
        // is; one set up after the list is not in it. (Liveness read first would miss a
        // task that starts in between, and reclaim its new network.) No store access
        // happens under the crate's state lock.
        let (recorded, releasing) = match net.tasks_and_releasing() {
            Ok(both) => both,
            Err(e) => {
                fail(&e);
                continue;
            }
        };
        // One query for all of them (not one per task: this runs on every listing command).
        let unstopped = match store.unstopped_ids() {
            Ok(u) => u,
            Err(e) => {
                fail(&e);
                continue;
            }
        };
        for id in recorded.iter().filter(|id| !releasing.contains(id)) {
            if unstopped.contains(id) {
                continue;
            }
            // The list above may predate the task's own teardown (its supervisor, or a
            // concurrent reconcile, writes STOPPED after it): only a network still held
            // is reclaimed (and reported). Seen with 100 concurrent stop-tasks, each GC
            // pass otherwise "reclaimed" tasks that had just released their network.
            let held = matches!(
                net.tasks_and_releasing(),
                Ok((t, r)) if t.contains(id) && !r.contains(id)
            );
            if !held {
                continue;
            }
            match net.teardown(id) {
                Ok(()) => {
                    tracing::warn!(task_id = %id, %bridge, "reclaimed the network of a task that is gone")
                }
                Err(e) => fail(&e),
            }
        }
        if let Err(e) = net.reap_released() {
            fail(&e);
        }
    }
}

/// Parses `--network-configuration` as the AWS CLI takes it: JSON
/// (`{"awsvpcConfiguration":{"subnets":[…],"securityGroups":[…]}}`) or shorthand
/// (`awsvpcConfiguration={subnets=[subnet-1],securityGroups=[sg-1],assignPublicIp=ENABLED}`).
/// Returns the `awsvpcConfiguration` object as JSON text.
pub fn parse_network_configuration(s: &str) -> Result<String, NetworkError> {
    let bad = |reason: String| NetworkError::Configuration { reason };
    let text = match s.strip_prefix("file://") {
        Some(p) => std::fs::read_to_string(p).map_err(|e| bad(format!("cannot read {p}: {e}")))?,
        None => s.to_string(),
    };
    let text = text.trim();
    let v: serde_json::Value = if text.starts_with('{') {
        serde_json::from_str(text).map_err(|e| bad(format!("not valid JSON: {e}")))?
    } else {
        shorthand(text).ok_or_else(|| {
            bad(format!(
                "{text:?} is neither JSON nor awsvpcConfiguration={{subnets=[…],securityGroups=[…]}}"
            ))
        })?
    };
    let cfg = v
        .get("awsvpcConfiguration")
        .ok_or_else(|| bad("awsvpcConfiguration is missing".into()))?;
    for key in ["subnets", "securityGroups"] {
        if let Some(list) = cfg.get(key)
            && !list
                .as_array()
                .is_some_and(|a| a.iter().all(|x| x.is_string()))
        {
            return Err(bad(format!(
                "awsvpcConfiguration.{key} must be a list of strings"
            )));
        }
    }
    Ok(cfg.to_string())
}

/// `awsvpcConfiguration={k=v,k=[a,b]}` → JSON.
fn shorthand(s: &str) -> Option<serde_json::Value> {
    let inner = s
        .strip_prefix("awsvpcConfiguration=")?
        .trim()
        .strip_prefix('{')?
        .strip_suffix('}')?;
    let mut obj = serde_json::Map::new();
    let mut depth = 0;
    let mut start = 0;
    let mut parts = Vec::new();
    for (i, ch) in inner.char_indices() {
        match ch {
            '[' => depth += 1,
            ']' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    for p in parts.into_iter().filter(|p| !p.trim().is_empty()) {
        let (k, v) = p.split_once('=')?;
        let v = v.trim();
        let value = match v.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
            Some(list) => serde_json::Value::Array(
                list.split(',')
                    .map(str::trim)
                    .filter(|x| !x.is_empty())
                    .map(|x| serde_json::Value::String(x.into()))
                    .collect(),
            ),
            None => serde_json::Value::String(v.into()),
        };
        obj.insert(k.trim().into(), value);
    }
    Some(serde_json::json!({ "awsvpcConfiguration": obj }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(json: &str) -> TaskDefinition {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn dns_names_follow_the_vpc_rule() {
        let ip = Ipv4Addr::new(10, 94, 0, 5);
        assert_eq!(
            private_dns_name(ip, "us-east-1"),
            "ip-10-94-0-5.ec2.internal"
        );
        assert_eq!(
            private_dns_name(ip, "eu-west-1"),
            "ip-10-94-0-5.eu-west-1.compute.internal"
        );
    }

    #[test]
    fn settings_are_checked() {
        assert!(Settings::parse("mfg0", "10.94.0.0/16").is_ok());
        // The host's default (src/config.rs) is this default.
        assert_eq!(
            Settings::configured().subnet,
            DEFAULT_SUBNET.parse().unwrap()
        );
        let e = Settings::parse("a-very-long-bridge", "10.94.0.0/16").unwrap_err();
        assert!(e.to_string().contains("MINIFARGATE_BRIDGE"), "{e}");
        let e = Settings::parse("mfg0", "10.94.0.0").unwrap_err();
        assert!(e.to_string().contains("MINIFARGATE_SUBNET"), "{e}");
    }

    #[test]
    fn spec_collects_ports_of_all_containers_and_dns_of_each() {
        let d = def(r#"{"family":"f","containerDefinitions":[
            {"name":"a","portMappings":[{"containerPort":80},{"containerPortRange":"9000-9002","protocol":"udp"}],
             "dnsServers":["10.0.0.2"],"extraHosts":[{"hostname":"db","ipAddress":"10.1.2.3"}]},
            {"name":"b","portMappings":[{"containerPort":81,"hostPort":0}],"dnsSearchDomains":["corp"],
             "hostname":"bee"}]}"#);
        let (spec, owners, dns) = task_spec(&d, NetworkMode::Bridge).unwrap();
        assert_eq!(owners, ["a", "a", "b"]);
        assert_eq!(spec.port_mappings[1].container_port_end, Some(9002));
        assert_eq!(spec.port_mappings[1].protocol, netns::Protocol::Udp);
        assert_eq!(spec.port_mappings[2].host_port, None);
        // The crate's task-wide files keep the host's defaults; each container has its own.
        assert!(spec.dns_servers.is_empty() && spec.extra_hosts.is_empty());
        assert_eq!(dns[0].servers, ["10.0.0.2".parse::<IpAddr>().unwrap()]);
        assert_eq!(dns[0].extra_hosts[0].0, "db");
        assert!(dns[0].search.is_empty() && dns[0].own_resolv());
        assert_eq!(dns[1].search, ["corp"]);
        assert!(dns[1].servers.is_empty() && dns[1].extra_hosts.is_empty());
        assert_eq!(dns[1].hostname.as_deref(), Some("bee"));
        let d = def(
            r#"{"family":"f","containerDefinitions":[{"name":"a","links":["mysql:db","cache"]},{"name":"b"}]}"#,
        );
        let (_, _, linked) = task_spec(&d, NetworkMode::Bridge).unwrap();
        let names: Vec<&str> = linked[0]
            .extra_hosts
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(names, ["mysql", "db", "cache"]);
        assert!(linked[0].extra_hosts.iter().all(|(_, ip)| ip.is_loopback()));
        assert_eq!(linked[1], ContainerDns::default());

        let flat: Vec<netns::PortBinding> = [
            (80, 49200),
            (9000, 50000),
            (9001, 50001),
            (9002, 50002),
            (81, 49300),
        ]
        .iter()
        .enumerate()
        .map(|(i, &(c, h))| netns::PortBinding {
            bind_ip: Ipv4Addr::UNSPECIFIED,
            protocol: if (1..=3).contains(&i) {
                netns::Protocol::Udp
            } else {
                netns::Protocol::Tcp
            },
            host_port: h,
            container_port: c,
        })
        .collect();
        let b = bindings(&spec, &owners, &flat, &[]);
        assert_eq!(b.len(), 3);
        assert_eq!(
            serde_json::to_value(&b[0].binding).unwrap(),
            serde_json::json!({"bindIP":"0.0.0.0","containerPort":80,"hostPort":49200,"protocol":"tcp"})
        );
        assert_eq!(
            serde_json::to_value(&b[1].binding).unwrap(),
            serde_json::json!({"bindIP":"0.0.0.0","protocol":"udp",
                "containerPortRange":"9000-9002","hostPortRange":"50000-50002"})
        );
        assert_eq!(b[2].container, "b");
        let text = serde_json::to_string(&b).unwrap();
        assert_eq!(
            serde_json::from_str::<Vec<StoredBinding>>(&text).unwrap(),
            b
        );
    }

    #[test]
    fn host_mode_files_are_the_hosts_with_the_containers_members() {
        let host = "# generated\nnameserver 127.0.0.53\nsearch lan\noptions edns0 trust-ad\n";
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(host_resolv_conf(host, &[], &[]), host);
        assert_eq!(
            host_resolv_conf(host, &[ip("10.0.0.2")], &[]),
            "nameserver 10.0.0.2\n# generated\nsearch lan\noptions edns0 trust-ad\n"
        );
        assert_eq!(
            host_resolv_conf(host, &[], &["corp".into(), "example".into()]),
            "search corp example\n# generated\nnameserver 127.0.0.53\noptions edns0 trust-ad\n"
        );
        assert_eq!(
            host_hosts("127.0.0.1 localhost", &[("db".into(), ip("10.1.2.3"))]),
            "127.0.0.1 localhost\n10.1.2.3\tdb\n"
        );
        assert_eq!(host_hosts("", &[]), "");
    }

    #[test]
    fn bad_fields_are_named() {
        let d =
            def(r#"{"family":"f","containerDefinitions":[{"name":"a","dnsServers":["nope"]}]}"#);
        let e = task_spec(&d, NetworkMode::Awsvpc).unwrap_err().to_string();
        assert_eq!(
            e,
            "containerDefinitions[0].dnsServers[0]: \"nope\" is not an IP address"
        );
        let d = def(
            r#"{"family":"f","containerDefinitions":[{"name":"a","portMappings":[{"containerPort":80}]}]}"#,
        );
        let e = task_spec(&d, NetworkMode::None).unwrap_err().to_string();
        assert!(e.contains("portMappings[0]"), "{e}");
        let d = def(
            r#"{"family":"f","containerDefinitions":[{"name":"a","portMappings":[{"containerPort":81,"hostPort":80}]}]}"#,
        );
        let e = task_spec(&d, NetworkMode::Awsvpc).unwrap_err().to_string();
        assert_eq!(
            e,
            "containerDefinitions[0].portMappings[0].hostPort: in awsvpc mode hostPort must be \
             absent or equal containerPort (81), got 80"
        );
        assert!(task_spec(&d, NetworkMode::Bridge).is_ok());
    }

    #[test]
    fn network_configuration_json_and_shorthand() {
        let j = parse_network_configuration(
            r#"{"awsvpcConfiguration":{"subnets":["subnet-1"],"securityGroups":["sg-1"]}}"#,
        )
        .unwrap();
        let s = parse_network_configuration(
            "awsvpcConfiguration={subnets=[subnet-1],securityGroups=[sg-1]}",
        )
        .unwrap();
        assert_eq!(j, s);
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["subnets"][0], "subnet-1");
        assert!(parse_network_configuration("subnets=x").is_err());
        assert!(parse_network_configuration(r#"{"awsvpcConfiguration":{"subnets":"x"}}"#).is_err());
    }

    /// A bridge's reset failure reads as its whole chain of causes, as `system reset` printed
    /// it before the error was typed.
    #[test]
    fn a_reset_error_reads_as_its_chain() {
        let e = ResetError::Reset(netns::GcError {
            reclaimed: Vec::new(),
            failures: Vec::new(),
        });
        assert_eq!(
            e.to_string(),
            "failed to reclaim the network of 0 dead task(s): "
        );
        let open = NetworkError::Open {
            bridge: "mf0".into(),
            source: netns::Error::InvalidBridgeName { name: "-".into() },
        };
        assert_eq!(
            ResetError::Open(open).to_string(),
            "failed to open the task network on bridge mf0: failed to accept bridge name \"-\": \
             use 1-15 characters from a-z A-Z 0-9 _ -"
        );
    }
}
