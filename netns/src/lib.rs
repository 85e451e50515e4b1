//! Per-task network namespaces for minifargate: bridge, veth pairs, IPAM, egress NAT
//! and port publishing, awsvpc-like (one namespace shared by a task's containers).
//!
//! The crate knows nothing about containers or ECS: [`Network::setup_task`] takes a
//! plain [`TaskSpec`] and returns a plain [`TaskNetwork`] (netns path, address,
//! gateway, host port bindings, hosts and resolv.conf files) for the executor to use;
//! [`Network::teardown`] undoes it and [`Network::gc`] reclaims what dead tasks left.
//!
//! ```no_run
//! use netns::{Network, NetworkConfig, NetworkMode, PortMapping, Protocol, TaskSpec};
//! let net = Network::open(NetworkConfig::default())?;
//! let spec = TaskSpec {
//!     port_mappings: vec![PortMapping::tcp(80)],
//!     ..TaskSpec::new(NetworkMode::Awsvpc)
//! };
//! let tn = net.setup_task("5f0c3e1a", &spec)?;
//! println!("{:?} {:?} {:?}", tn.netns_path, tn.ip, tn.bindings);
//! net.teardown("5f0c3e1a")?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! What is created, per task (awsvpc and bridge modes): a network namespace pinned at
//! `<netns_dir>/<netns_prefix>-<task>` (default `/run/netns/mfg-<task>`, so
//! `ip netns exec mfg-<task> …` works), with `lo` up carrying `169.254.170.2/32` (the
//! task metadata address, private to the task), and `eth0` — one end of a veth pair
//! whose other end sits on the bridge. Shared by all tasks: the bridge (default `mfg0`,
//! holding the gateway address) and one nftables table `ip minifargate_<bridge>` with
//! the egress masquerade and the port DNAT maps. Both stay after the last task (as
//! docker0 and Docker's and netavark's tables do) until [`Network::reset`]; the last
//! task's teardown empties the port maps, so no task's element outlives it (there are no
//! per-task rules). Making the table again for every task after an idle moment cost
//! ~0.5 ms of CPU on the wiring thread (registering its NAT chains turns the host's
//! connection tracking on again); the price of keeping it is that conntrack stays on
//! for the host's traffic once a bridged task has run.
//!
//! Every change to the nftables table — creating it, a task's port map elements,
//! emptying the maps, dropping it — is one nf_tables netlink batch on a socket the [`Network`] keeps
//! (`nfnl` module), committed by the kernel in 10–110 µs. Spawning `nft -f -` instead
//! cost 2–15 ms per change, plus an RCU grace period (7–16 ms) when its socket closed
//! after a batch that deleted something; a failed batch costs a grace period too, so
//! batches are built never to fail on a missing object. A userspace proxy was the
//! other option for published ports: 3–4× the per-connection latency of DNAT in
//! `netns-bench`, a process that must outlive the supervisor, and the task would see
//! the proxy's address instead of the client's. See docs/benchmarks.md, "Network".
//!
//! State (leases, port reservations, the names of what was made) lives under
//! `<run_root>/state/`, one small file per task record, lease and host port
//! (`state` module), changed under a flock (`<run_root>/netns.lock`) and written
//! *before* anything is created, so a crash at any point leaves a record
//! [`Network::gc`] can follow. A task's setup, teardown and reaping touch a fixed number
//! of those files whatever the number of tasks; only the listings ([`Network::tasks`],
//! [`Network::leased_ips`], [`Network::gc`]) read directories. The `netns.json` of
//! earlier builds (the whole state in one file) is converted on first use.
//! Teardown unpins the namespace and lets the kernel free it and the veth pair
//! asynchronously (deleting a veth synchronously costs ~25 ms); the task's address
//! stays leased until the veth is seen gone ([`Network::releasing`]).
#![forbid(unsafe_code)]

mod error;
pub mod files;
pub mod ipam;
mod netlink;
mod nfnl;
pub mod nft;
pub mod nsfs;
pub mod ports;
pub mod routes;
mod state;
mod wiring;

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use error::chain;
pub use error::{Error, GcError, TeardownError};
pub use files::{FilesError, HostResolv};
pub use ipam::{IpamError, Subnet};
pub use netlink::NetlinkError;
pub use nft::NftError;
pub use nsfs::NsError;
pub use ports::{DYNAMIC_PORTS, PortError, Unpublished};
pub use state::StateError;
use state::TaskRecord;

/// How long a torn-down task's veth may outlive its namespace before GC deletes it.
pub const RELEASE_GRACE: Duration = Duration::from_secs(5);

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The address of the task metadata endpoint, present inside every task namespace.
pub const METADATA_ADDRESS: Ipv4Addr = Ipv4Addr::new(169, 254, 170, 2);

/// The port the task metadata endpoint really listens on inside a task namespace (the
/// ECS agent's port); [`redirect_metadata_port`] sends `METADATA_ADDRESS:80` there. Not
/// reachable directly: its answers go out as from port 80.
pub const METADATA_LISTEN_PORT: u16 = 51679;

/// The nftables table, inside a task's namespace, of [`redirect_metadata_port`].
pub const METADATA_TABLE: &str = "minifargate_metadata";

/// Inside the task namespace at `ns_path`, sends TCP to `169.254.170.2:80` to
/// `169.254.170.2:`[`METADATA_LISTEN_PORT`] and answers it from port 80 (the ECS agent
/// DNATs to its 51679 on EC2 hosts): the endpoint keeps its documented URL while port 80
/// stays free for the task's own servers (a container binding `0.0.0.0:80` would
/// otherwise get EADDRINUSE). The table goes away with the namespace.
///
/// The ports are rewritten in place by a `filter` output chain on `lo`, with no
/// connection tracking (a DNAT turned it on in every task namespace: every packet of
/// the task tracked, and a walk of the whole conntrack table when a namespace holding
/// entries is removed); see `nfnl::redirect_ops` for the packet path. Only for IPv4: the endpoint has no IPv6 address. What that
/// costs: connecting to `169.254.170.2:`[`METADATA_LISTEN_PORT`] directly does not
/// work (the answers come from port 80); real Fargate serves only port 80.
pub fn redirect_metadata_port(ns_path: &Path) -> Result<(), NftError> {
    let ops = nfnl::redirect_ops(METADATA_ADDRESS, 80, METADATA_LISTEN_PORT);
    let what = format!(
        "redirect {METADATA_ADDRESS}:80 to port {METADATA_LISTEN_PORT} inside {}",
        ns_path.display()
    );
    nsfs::in_netns(ns_path, || {
        nfnl::Nfnl::open().and_then(|mut n| n.apply(METADATA_TABLE, &ops, &what))
    })
    .map_err(|e| NftError::Netlink {
        what: what.clone(),
        source: std::io::Error::other(e),
    })?
}

/// How a task (or, in bridge mode, a container) is networked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// Own namespace and address; ports published as `hostPort == containerPort`.
    Awsvpc,
    /// Own namespace and address; `hostPort` → `containerPort`, dynamic host ports.
    /// As in ECS bridge mode each *container* gets its own namespace: the executor
    /// calls [`Network::setup_task`] once per container, with an id of its choosing
    /// (e.g. `<task>.<container>`).
    Bridge,
    /// The host's namespace; nothing is created, ports are only checked and reserved.
    Host,
    /// Own namespace with loopback only.
    None,
}

impl std::fmt::Display for NetworkMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NetworkMode::Awsvpc => "awsvpc",
            NetworkMode::Bridge => "bridge",
            NetworkMode::Host => "host",
            NetworkMode::None => "none",
        })
    }
}

/// A transport protocol of a port mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// One port mapping (a `portMappings` entry, already parsed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// The container port, or the first port of `containerPortRange`.
    pub container_port: u16,
    /// The last port of `containerPortRange` (inclusive), if a range.
    pub container_port_end: Option<u16>,
    /// `hostPort`; `None` or `Some(0)` means "same as containerPort" in awsvpc and host
    /// mode, and "a dynamic port" in bridge mode.
    pub host_port: Option<u16>,
    pub protocol: Protocol,
}

impl PortMapping {
    /// A TCP mapping of `container_port` with no host port given.
    pub fn tcp(container_port: u16) -> Self {
        Self {
            container_port,
            container_port_end: None,
            host_port: None,
            protocol: Protocol::Tcp,
        }
    }
}

/// What a task asks of the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskSpec {
    pub mode: NetworkMode,
    pub port_mappings: Vec<PortMapping>,
    /// `dnsServers`; empty means the host's (minus loopback resolvers).
    pub dns_servers: Vec<IpAddr>,
    /// `dnsSearchDomains`; empty means the host's.
    pub dns_search_domains: Vec<String>,
    /// `extraHosts` as (hostname, address).
    pub extra_hosts: Vec<(String, IpAddr)>,
    /// Pin this existing network namespace (an nsfs file: the task's namespace holder's,
    /// owned by the task's user namespace) instead of creating one. Not for host mode.
    pub adopt_netns: Option<PathBuf>,
}

impl TaskSpec {
    /// A spec with no ports and default DNS.
    pub fn new(mode: NetworkMode) -> Self {
        Self {
            mode,
            port_mappings: Vec::new(),
            dns_servers: Vec::new(),
            dns_search_domains: Vec::new(),
            extra_hosts: Vec::new(),
            adopt_netns: None,
        }
    }
}

/// A published port, as ECS reports it in `networkBindings`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortBinding {
    pub bind_ip: Ipv4Addr,
    pub protocol: Protocol,
    pub host_port: u16,
    pub container_port: u16,
}

/// What the executor needs to run a task's containers on its network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskNetwork {
    pub task_id: String,
    pub mode: NetworkMode,
    /// The namespace file to join (`setns`), `None` in host mode.
    pub netns_path: Option<PathBuf>,
    /// The task's address on the bridge (awsvpc and bridge modes).
    pub ip: Option<Ipv4Addr>,
    pub prefix_len: Option<u8>,
    pub gateway: Option<Ipv4Addr>,
    /// `eth0`'s MAC address, derived from the IP so it is stable for a lease.
    pub mac: Option<String>,
    /// Fargate-style private DNS name, e.g. `ip-10-94-0-5`.
    pub private_dns_name: Option<String>,
    pub mtu: Option<u32>,
    pub bindings: Vec<PortBinding>,
    /// awsvpc port mappings not published on the host because their host port is held
    /// (by another task, e.g. of the same service, or by something else on the host).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unpublished: Vec<Unpublished>,
    /// File to bind-mount on `/etc/hosts` (`None` in host mode: use the host's).
    pub hosts_file: Option<PathBuf>,
    /// File to bind-mount on `/etc/resolv.conf` (`None` in host mode).
    pub resolv_conf: Option<PathBuf>,
    /// Whether outbound traffic is masqueraded (false when nftables is unavailable).
    pub egress: bool,
}

/// A task's network half built by [`Network::prepare_task`], to finish with
/// [`Network::wire_task`] (on any thread).
#[derive(Debug)]
pub struct PreparedTask {
    spec: TaskSpec,
    rec: TaskRecord,
    network: TaskNetwork,
}

impl PreparedTask {
    /// The task's network as it will be once wired (all but [`TaskNetwork::mtu`]): the
    /// namespace to join, the address, the files to bind-mount.
    pub fn network(&self) -> &TaskNetwork {
        &self.network
    }

    /// Whether [`Network::wire_task`] has anything to do (not in host mode).
    pub fn needs_wiring(&self) -> bool {
        self.rec.netns.is_some()
    }
}

/// Where and how the network is built.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// Leases, port reservations, lock and per-task files (default `/run/minifargate/net`).
    pub run_root: PathBuf,
    /// Directory the namespaces are pinned in (default `/run/netns`, as `ip netns`).
    pub netns_dir: PathBuf,
    /// Namespace names are `<prefix>-<task id>` (default `mfg`).
    pub netns_prefix: String,
    /// Host bridge (default `mfg0`), at most 15 characters.
    pub bridge: String,
    /// Task subnet (default 10.94.0.0/16); the bridge takes its first address.
    pub subnet: Subnet,
    /// `None` (the default): our nftables table and every per-task change to it are
    /// written through nf_tables netlink; no `nft` binary is needed. `Some(nft)`: that
    /// binary writes the table (`nft -f -`, the ruleset of
    /// [`nft::create_table_script`]); per-task changes still go through netlink.
    pub nft: Option<PathBuf>,
    /// Disable nftables: tasks run without egress NAT and port publishing is refused
    /// (tests of that path).
    pub disable_nft: bool,
    /// Where the host's resolver configuration is read.
    pub host_resolv: HostResolv,
    /// A DNS server answering on the bridge (`minifargate serve`'s): bridged tasks that
    /// give no `dnsServers` get it as their only nameserver (the host's search list and
    /// options kept). `None`: the host's resolvers, as before.
    pub resolver: Option<Ipv4Addr>,
    /// A file of the network's owner (a supervisor's `state.db`) that must still exist
    /// when a task's wiring makes what every task of the network shares (the nftables
    /// table, the bridge): when it is gone (the owner's state removed under a running
    /// task, e.g. its root directory deleted) the wiring makes neither and fails with
    /// [`Error::OwnerGone`], and what the task had is torn down as after any failed
    /// setup; no one would find those shared objects to remove them. `None`: not checked.
    pub owner_state: Option<PathBuf>,
    #[doc(hidden)]
    /// Test hook: sleep this long after the veth is created, to be killed mid-setup.
    pub pause_mid_setup: Option<Duration>,
    #[doc(hidden)]
    /// Test hook: sleep this long before [`Network::wire_task`] makes anything.
    pub pause_before_wiring: Option<Duration>,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            run_root: "/run/minifargate/net".into(),
            netns_dir: "/run/netns".into(),
            netns_prefix: "mfg".into(),
            bridge: "mfg0".into(),
            subnet: Subnet::new(Ipv4Addr::new(10, 94, 0, 0), 16).expect("valid default subnet"),
            nft: None,
            disable_nft: false,
            host_resolv: HostResolv::default(),
            resolver: None,
            owner_state: None,
            pause_mid_setup: None,
            pause_before_wiring: None,
        }
    }
}

/// The task network manager for one bridge and one run root.
///
/// It keeps one nf_tables netlink socket (opened on first use, in the namespace of the
/// thread that first publishes or withdraws ports) for the per-task map changes.
pub struct Network {
    cfg: NetworkConfig,
    /// Err: nftables disabled. Ok(Some(nft)): the table is written by that `nft`
    /// binary; Ok(None): through netlink, like every per-task change.
    nft: Result<Option<PathBuf>, String>,
    table: String,
    /// The id of the ruleset this build makes ([`nfnl::ruleset_id`]), recorded with the
    /// table: a table made with another (an earlier build, another subnet) is made again
    /// once no task uses it.
    ruleset: String,
    mtu: OnceLock<u32>,
    nfnl: Mutex<Option<nfnl::Nfnl>>,
}

fn valid_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn valid_task_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

/// FNV-1a, for short stable interface names.
fn fnv(s: &str) -> u32 {
    fnv_bytes(s.as_bytes())
}

fn fnv_bytes(s: &[u8]) -> u32 {
    s.iter().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = ip.octets();
    // 02: locally administered unicast; 0x6d ('m') marks ours.
    [0x02, 0x6d, a, b, c, d]
}

fn mac_string(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Turns IPv4 forwarding on if it is off: checked by every bridged task's wiring, not
/// only when the table is made (something else may have turned it off since).
/// Ref: without forwarding the host drops the tasks' outbound packets. This is a
/// host-wide switch; it is left on (other bridges may depend on it too).
fn ip_forward_on() -> Result<(), Error> {
    const PATH: &str = "/proc/sys/net/ipv4/ip_forward";
    if std::fs::read(PATH)
        .map(|v| v.first() != Some(&b'1'))
        .unwrap_or(true)
    {
        info!("enabling net.ipv4.ip_forward for task egress");
        write_sysctl(PATH, "1")?;
    }
    Ok(())
}

fn write_sysctl(path: &str, value: &str) -> Result<(), Error> {
    std::fs::write(path, value).map_err(|source| Error::Sysctl {
        path: path.into(),
        source,
    })
}

/// Adds `addr/32` to link `link` of this namespace (e.g. `lo`); already there is fine.
pub fn add_link_address(link: &str, addr: Ipv4Addr) -> Result<(), Error> {
    let nl_err = |source| Error::Netlink {
        task: "*".into(),
        source,
    };
    let mut nl = netlink::Netlink::open().map_err(nl_err)?;
    let i = nl.link_index(link).map_err(nl_err)?.ok_or_else(|| {
        nl_err(NetlinkError::Request {
            what: format!("find link {link}"),
            source: std::io::Error::from_raw_os_error(nix::libc::ENODEV),
        })
    })?;
    nl.add_addr(i, addr, 32).map_err(nl_err)
}

/// Removes `addr/32` from link `link`; `Ok(false)` when it (or the link) is not there.
pub fn del_link_address(link: &str, addr: Ipv4Addr) -> Result<bool, Error> {
    let nl_err = |source| Error::Netlink {
        task: "*".into(),
        source,
    };
    let mut nl = netlink::Netlink::open().map_err(nl_err)?;
    match nl.link_index(link).map_err(nl_err)? {
        Some(i) => nl.del_addr(i, addr, 32).map_err(nl_err),
        None => Ok(false),
    }
}

impl Network {
    /// Checks `cfg`; creates nothing on the host yet.
    pub fn open(cfg: NetworkConfig) -> Result<Self, Error> {
        if !valid_name(&cfg.bridge, 15) {
            return Err(Error::InvalidBridgeName {
                name: cfg.bridge.clone(),
            });
        }
        if !valid_name(&cfg.netns_prefix, 32) {
            return Err(Error::InvalidPrefix {
                prefix: cfg.netns_prefix.clone(),
            });
        }
        let nft = if cfg.disable_nft {
            Err("disabled in the configuration".to_string())
        } else {
            match &cfg.nft {
                Some(p) if p.is_file() => Ok(Some(p.clone())),
                Some(p) => Err(format!("{} does not exist", p.display())),
                None => Ok(None),
            }
        };
        let table = nft::table_name(&cfg.bridge);
        let ruleset = match &nft {
            Ok(Some(_)) => format!(
                "nft-{:08x}",
                fnv(&nft::create_table_script(&table, &cfg.bridge, cfg.subnet))
            ),
            _ => nfnl::ruleset_id(&table, &nfnl::create_table_ops(&cfg.bridge, cfg.subnet)),
        };
        Ok(Self {
            cfg,
            nft,
            table,
            ruleset,
            mtu: OnceLock::new(),
            nfnl: Mutex::new(None),
        })
    }

    /// The configuration this network was opened with.
    pub fn config(&self) -> &NetworkConfig {
        &self.cfg
    }

    /// The nftables table this network owns.
    pub fn nft_table(&self) -> &str {
        &self.table
    }

    /// Makes the bridge (up, with the gateway address) if it is missing, as the first
    /// bridged task does: for what answers the tasks on the bridge before any task runs
    /// (a load balancer's address, a DNS server on the gateway). Like the bridge a task
    /// makes, it stays until [`Network::reset`].
    pub fn ensure_bridge(&self) -> Result<(), Error> {
        let nl_err = |source| Error::Netlink {
            task: "*".into(),
            source,
        };
        let mut host = netlink::Netlink::open().map_err(nl_err)?;
        self.bridge_index(&mut host).map_err(|e| match e {
            wiring::BridgeError::Netlink(source) => nl_err(source),
            wiring::BridgeError::Other(e) => e,
        })?;
        Ok(())
    }

    /// Adds `addr/32` to the bridge (made if missing), reachable from the host and from
    /// every task of the bridge (through their gateway); already there is fine.
    pub fn add_bridge_address(&self, addr: Ipv4Addr) -> Result<(), Error> {
        let nl_err = |source| Error::Netlink {
            task: "*".into(),
            source,
        };
        let mut host = netlink::Netlink::open().map_err(nl_err)?;
        let br = self.bridge_index(&mut host).map_err(|e| match e {
            wiring::BridgeError::Netlink(source) => nl_err(source),
            wiring::BridgeError::Other(e) => e,
        })?;
        host.add_addr(br, addr, 32).map_err(nl_err)
    }

    /// The `/32` addresses on the bridge (those [`Network::add_bridge_address`] puts
    /// there, and any other of that length); none when the bridge is not there.
    pub fn bridge_host_addresses(&self) -> Result<Vec<Ipv4Addr>, Error> {
        let nl_err = |source| Error::Netlink {
            task: "*".into(),
            source,
        };
        let mut host = netlink::Netlink::open().map_err(nl_err)?;
        let Some(br) = host.link_index(&self.cfg.bridge).map_err(nl_err)? else {
            return Ok(Vec::new());
        };
        Ok(host
            .addrs_of(br)
            .map_err(nl_err)?
            .into_iter()
            .filter(|(_, prefix)| *prefix == 32)
            .map(|(ip, _)| ip)
            .collect())
    }

    /// Removes `addr/32` from the bridge; `Ok(false)` when it (or the bridge) is not there.
    pub fn del_bridge_address(&self, addr: Ipv4Addr) -> Result<bool, Error> {
        let nl_err = |source| Error::Netlink {
            task: "*".into(),
            source,
        };
        let mut host = netlink::Netlink::open().map_err(nl_err)?;
        match host.link_index(&self.cfg.bridge).map_err(nl_err)? {
            Some(br) => host.del_addr(br, addr, 32).map_err(nl_err),
            None => Ok(false),
        }
    }

    /// Where task `task`'s namespace is (or would be) pinned.
    pub fn netns_path(&self, task: &str) -> PathBuf {
        self.cfg
            .netns_dir
            .join(format!("{}-{task}", self.cfg.netns_prefix))
    }

    /// The host-side veth name of task `task` (stable, unique per bridge and task).
    pub fn veth_name(&self, task: &str) -> String {
        format!("mv{:08x}", fnv(&format!("{}/{task}", self.cfg.bridge)))
    }

    /// Ids of the tasks that have (or had, before a crash) a network here.
    pub fn tasks(&self) -> Result<Vec<String>, StateError> {
        Ok(state::lock(&self.cfg.run_root)?.tasks()?.0)
    }

    /// [`Self::tasks`] and [`Self::releasing`] from one listing of the state under one
    /// lock (the GC that every command runs wants both); no record is read.
    pub fn tasks_and_releasing(&self) -> Result<(Vec<String>, Vec<String>), StateError> {
        state::lock(&self.cfg.run_root)?.tasks()
    }

    /// Ids of torn-down tasks whose veth the kernel has not freed yet (it does so
    /// asynchronously with the namespace); their addresses stay leased until then.
    pub fn releasing(&self) -> Result<Vec<String>, StateError> {
        Ok(state::lock(&self.cfg.run_root)?.tasks()?.1)
    }

    /// Every leased address, including those of releasing tasks.
    pub fn leased_ips(&self) -> Result<Vec<Ipv4Addr>, StateError> {
        state::lock(&self.cfg.run_root)?.leased()
    }

    /// Drops the records of releasing tasks whose veth is gone; with `force`, or after
    /// [`RELEASE_GRACE`], deletes a veth that is still there (something still pins
    /// the task's namespace: a process or an open namespace file). Reads only the
    /// releasing tasks' records; writes nothing when none is gone.
    fn reap(&self, l: &state::Locked, force: bool) -> Vec<Error> {
        let state_err = |task: &str, source| Error::State {
            task: task.into(),
            source,
        };
        let marked = match l.releasing_marked() {
            Ok(m) => m,
            Err(source) => return vec![state_err("*", source)],
        };
        if marked.is_empty() {
            return Vec::new();
        }
        let mut errors = Vec::new();
        let mut pending = Vec::new();
        for id in marked {
            match l.record(&id) {
                Ok(Some(r)) if r.releasing_since_ms.is_some() => pending.push((id, r)),
                // A marker without a releasing record: a crash between the marker and
                // the record (teardown runs again for a held record) or after the
                // record's removal.
                Ok(_) => {
                    if let Err(source) = l.unmark_releasing(&id) {
                        errors.push(state_err(&id, source));
                    }
                }
                Err(source) => errors.push(state_err(&id, source)),
            }
        }
        if pending.is_empty() {
            return errors;
        }
        let mut nl = match netlink::Netlink::open() {
            Ok(nl) => nl,
            Err(source) => {
                errors.push(Error::Netlink {
                    task: "*".into(),
                    source,
                });
                return errors;
            }
        };
        let now = now_ms();
        for (id, rec) in pending {
            let since = rec.releasing_since_ms.unwrap_or(0);
            let overdue = force || now.saturating_sub(since) > RELEASE_GRACE.as_millis() as u64;
            let gone = match &rec.veth {
                None => Ok(true),
                Some(v) => match nl.link_index(v) {
                    Ok(None) => Ok(true),
                    Ok(Some(_)) if overdue => {
                        warn!(task = %id, veth = %v, "the task's namespace is still in use; deleting its veth");
                        nl.del_link(v).map(|_| true)
                    }
                    Ok(Some(_)) => Ok(false),
                    Err(e) => Err(e),
                },
            };
            match gone {
                Ok(true) => {
                    if let Err(source) = l.remove(&id, &rec) {
                        errors.push(state_err(&id, source));
                    }
                }
                Ok(false) => {}
                Err(source) => errors.push(Error::Netlink { task: id, source }),
            }
        }
        errors
    }

    /// Releases the leases of torn-down tasks whose veth the kernel has freed.
    pub fn reap_released(&self) -> Result<(), TeardownError> {
        let fail = |errors| TeardownError {
            task: "*".into(),
            errors,
        };
        let l = state::lock(&self.cfg.run_root).map_err(|source| {
            fail(vec![Error::State {
                task: "*".into(),
                source,
            }])
        })?;
        // This runs on every command: it lists the releasing tasks only, and writes
        // only when a lease goes.
        let errors = self.reap(&l, false);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(fail(errors))
        }
    }

    fn task_dir(&self, task: &str) -> PathBuf {
        self.cfg.run_root.join("tasks").join(task)
    }

    /// Builds task `task`'s network as `spec` asks: [`Network::prepare_task`], then
    /// [`Network::wire_task`]. On any failure everything made for the task so far is
    /// removed, and the error carries both the cause and any cleanup failure. A host port
    /// already held is refused before anything is created (bridge and host mode) or left
    /// unpublished ([`TaskNetwork::unpublished`], awsvpc mode).
    pub fn setup_task(&self, task: &str, spec: &TaskSpec) -> Result<TaskNetwork, Error> {
        let prepared = self.prepare_task(task, spec)?;
        self.wire_task(&prepared)
    }

    /// The first half of [`Network::setup_task`], what a container needs before it is
    /// created: the address leased and the host ports reserved (recorded before anything
    /// is made), the namespace pinned, the task's hosts and resolv.conf files written. The
    /// links, addresses, routes and published ports are [`Network::wire_task`]'s, which
    /// may run on another thread while the containers are created in the namespace. On
    /// failure everything made so far is removed (as [`Network::setup_task`]).
    pub fn prepare_task(&self, task: &str, spec: &TaskSpec) -> Result<PreparedTask, Error> {
        if !valid_task_id(task) {
            return Err(Error::InvalidTaskId { id: task.into() });
        }
        let t = || task.to_string();
        if !spec.port_mappings.is_empty()
            && matches!(spec.mode, NetworkMode::Awsvpc | NetworkMode::Bridge)
            && let Err(reason) = &self.nft
        {
            return Err(Error::NftMissing {
                task: t(),
                reason: reason.clone(),
            });
        }

        // Reserve everything under the lock and record it before creating anything.
        let st_err = |source| Error::State { task: t(), source };
        let namespaced = spec.mode != NetworkMode::Host;
        let bridged = matches!(spec.mode, NetworkMode::Awsvpc | NetworkMode::Bridge);
        // A torn-down task's address stays leased until the kernel has destroyed its
        // namespace and veth, asynchronously (see `teardown`): a task short of an address
        // while some are releasing waits for them, at most until `reap` deletes a veth
        // that outstays RELEASE_GRACE, rather than failing beside an address about to free.
        let wait_until = std::time::Instant::now() + RELEASE_GRACE + Duration::from_secs(1);
        let (locked, reservations, unpublished, ip) = loop {
            let locked = state::lock(&self.cfg.run_root).map_err(st_err)?;
            for e in self.reap(&locked, false) {
                warn!(task, error = %chain(&e), "cannot release an old lease");
            }
            if locked.record(task).map_err(st_err)?.is_some() {
                return Err(Error::TaskExists { task: t() });
            }
            // One reservation file looked up per candidate port; a damaged one fails the
            // setup (reported after `resolve`, whose seam cannot carry it).
            let damaged = std::cell::RefCell::new(None);
            let taken = |p: Protocol, port: u16| match locked.port_owner(p, port) {
                Ok(owner) => owner,
                Err(e) => {
                    damaged.borrow_mut().get_or_insert(e);
                    Some("?".into())
                }
            };
            let reservations = ports::resolve(
                spec.mode,
                &spec.port_mappings,
                &taken,
                &ports::host_port_free,
            );
            if let Some(source) = damaged.take() {
                return Err(st_err(source));
            }
            let ports::Resolved {
                reservations,
                unpublished,
            } = reservations.map_err(|source| Error::Ports { task: t(), source })?;
            let ip = if bridged {
                let after = locked.last_ip().map_err(st_err)?;
                let found = self
                    .cfg
                    .subnet
                    .allocate_by(|ip| Ok(locked.lease_owner(ip)?.is_some()), after)
                    .map_err(st_err)?;
                match found {
                    Ok(ip) => {
                        locked.set_last_ip(ip).map_err(st_err)?;
                        Some(ip)
                    }
                    Err(IpamError::Exhausted { .. })
                        if std::time::Instant::now() < wait_until
                            && !locked.releasing_marked().map_err(st_err)?.is_empty() =>
                    {
                        drop(locked);
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    }
                    Err(source) => return Err(Error::Ipam { task: t(), source }),
                }
            } else {
                None
            };
            break (locked, reservations, unpublished, ip);
        };
        for u in &unpublished {
            info!(task, container_port = u.container_port, reason = %u.reason, "port not published on the host");
        }
        let use_nft = bridged && self.nft.is_ok();
        let record = TaskRecord {
            mode: spec.mode,
            netns: namespaced.then(|| self.netns_path(task)),
            veth: bridged.then(|| self.veth_name(task)),
            ip,
            ports: reservations.clone(),
            nft_ports: use_nft && !reservations.is_empty(),
            files: namespaced.then(|| self.task_dir(task)),
            releasing_since_ms: None,
        };
        // The nftables table is made by the wiring if missing ([`Network::ensure_table`]):
        // recorded as bridged from here on, this task keeps any other task's teardown
        // from dropping it.
        locked.add(task, &record).map_err(st_err)?;
        drop(locked);

        let result = self.pin(task, spec, &record).map(|mut tn| {
            tn.unpublished = unpublished;
            tn
        });
        match result {
            Ok(network) => Ok(PreparedTask {
                spec: spec.clone(),
                rec: record,
                network,
            }),
            Err(e) => Err(self.failed(task, e)),
        }
    }

    /// The second half of [`Network::setup_task`] for a task [`Network::prepare_task`]
    /// prepared: the nftables table if it is missing, its veth pair on the bridge (made
    /// with the bridge if need be), `lo` and `eth0` up with their addresses, the default
    /// route, its published ports. Nothing for a host-mode task. On failure everything made for the task is removed,
    /// the prepared part too (as [`Network::setup_task`]).
    /// Borrows `prepared` (nothing of it is freed on the wiring thread: the caller keeps
    /// it) and returns the wired network as a copy.
    pub fn wire_task(&self, prepared: &PreparedTask) -> Result<TaskNetwork, Error> {
        let mut network = prepared.network.clone();
        let task = network.task_id.clone();
        match self.wire(&task, &prepared.rec, &mut network) {
            Ok(()) => {
                info!(task, mode = %prepared.spec.mode, ip = ?network.ip, netns = ?network.netns_path, ports = network.bindings.len(), "task network ready");
                Ok(network)
            }
            Err(e) => Err(self.failed(&task, e)),
        }
    }

    /// A setup step failed with `e`: what was made for the task goes again; the error
    /// carries the cause and what the cleanup could not remove.
    fn failed(&self, task: &str, e: Error) -> Error {
        warn!(task, error = %chain(&e), "task network setup failed, cleaning up");
        let cleanup = self
            .teardown(task)
            .err()
            .map(|te| te.errors)
            .unwrap_or_default();
        Error::Setup {
            task: task.into(),
            source: Box::new(e),
            cleanup,
        }
    }

    /// Commits `ops` on our table in one nf_tables batch over the kept socket.
    fn nft_apply(&self, ops: &[nfnl::Op], what: &str) -> Result<(), NftError> {
        self.with_nfnl(|n| n.apply(&self.table, ops, what))
    }

    /// Runs `f` on the network's nf_tables socket, opened on first use.
    fn with_nfnl<T>(
        &self,
        f: impl FnOnce(&mut nfnl::Nfnl) -> Result<T, NftError>,
    ) -> Result<T, NftError> {
        let mut guard = self.nfnl.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            *guard = Some(nfnl::Nfnl::open()?);
        }
        f(guard.as_mut().expect("opened above"))
    }

    fn delete_table(&self) -> Result<(), NftError> {
        self.nft_apply(
            &nfnl::delete_table_ops(),
            &format!("delete table ip {}", self.table),
        )
    }

    /// Makes our nftables table unless it is there, under the state lock (recorded
    /// before it is made, as every change: a crash in between leaves a record that
    /// teardown and gc follow). Run by the wiring of a bridged task, which is recorded as
    /// such: no teardown empties the maps while that task lives.
    ///
    /// Once made the table stays, so the state's word is checked: one lookup in the
    /// kernel (the table may have gone since, e.g. with a reboot that kept the run root,
    /// or `nft flush ruleset` from a firewall reload). A table recorded with another
    /// ruleset (made by an earlier build, or for another subnet) is made again when no
    /// other task uses it, and kept meanwhile.
    fn ensure_table(&self, task: &str) -> Result<(), Error> {
        let st_err = |source| Error::State {
            task: task.into(),
            source,
        };
        let nft_err = |source| Error::Nft {
            task: task.into(),
            source,
        };
        let locked = state::lock(&self.cfg.run_root).map_err(st_err)?;
        let recorded = locked.nft_table().map_err(st_err)?;
        match recorded {
            Some(ref id) if *id == self.ruleset => {
                if self.table_exists().map_err(nft_err)? {
                    return ip_forward_on();
                }
                warn!(table = %self.table, "our nftables table is gone (flushed outside minifargate?); making it again");
            }
            Some(ref id) if locked.any_bridged_but(task).map_err(st_err)? => {
                debug!(table = %self.table, recorded = %id, "the table was made with another ruleset; kept while other tasks use it");
                return ip_forward_on();
            }
            _ => {}
        }
        // No record of the table (the state lost with the run root while tasks ran): the
        // port map elements a table the kernel has holds are those tasks' published
        // ports, kept across the remake (a table recorded with another ruleset that no
        // task uses has none to keep).
        let kept = if recorded.is_none() {
            self.port_elements(task)
        } else {
            Vec::new()
        };
        locked.set_nft_table(Some(&self.ruleset)).map_err(st_err)?;
        self.create_table(task)?;
        self.restore_elements(task, &locked, kept);
        Ok(())
    }

    /// The elements of our table's port maps (none when it is not there); a failed
    /// listing is a warning (the table is remade all the same).
    fn port_elements(&self, task: &str) -> Vec<(&'static str, nfnl::Element)> {
        let mut out = Vec::new();
        for protocol in [Protocol::Tcp, Protocol::Udp] {
            let set = nfnl::map_name(protocol);
            match self.with_nfnl(|n| n.map_elements(&self.table, set)) {
                Ok(elements) => out.extend(elements.into_iter().map(|e| (set, e))),
                Err(e) => {
                    warn!(task, table = %self.table, set, error = %chain(&e), "cannot list the port map before the table is made again: its elements go with it")
                }
            }
        }
        out
    }

    /// Adds `kept` (elements of the table before it was made again) back, each on its
    /// own (one that fails does not stop the others), but those sending a host port to
    /// an address the state leases now (its new owner's ports are its own).
    fn restore_elements(
        &self,
        task: &str,
        locked: &state::Locked,
        kept: Vec<(&'static str, nfnl::Element)>,
    ) {
        for (set, (key, data)) in kept {
            let ip = match <[u8; 4]>::try_from(data.get(0..4).unwrap_or_default()) {
                Ok(b) => Ipv4Addr::from(b),
                Err(_) => continue,
            };
            if !matches!(locked.lease_owner(ip), Ok(None)) {
                debug!(task, %ip, set, "not kept: the address is leased again (or its lease cannot be read)");
                continue;
            }
            let port = key
                .get(0..2)
                .map(|b| u16::from_be_bytes([b[0], b[1]]))
                .unwrap_or_default();
            let op = nfnl::Op::Add { set, key, data };
            match self.nft_apply(
                &[op],
                &format!("keep the port {port} of {ip} in table ip {}", self.table),
            ) {
                Ok(()) => {
                    warn!(task, %ip, port, set, "kept a published port of a task the state has no record of across the table's remake")
                }
                Err(e) => {
                    warn!(task, %ip, port, set, error = %chain(&e), "cannot keep a published port of a task the state has no record of")
                }
            }
        }
    }

    fn table_exists(&self) -> Result<bool, NftError> {
        self.with_nfnl(|n| n.table_exists(&self.table))
    }

    fn create_table(&self, task: &str) -> Result<(), Error> {
        let nft_err = |source| Error::Nft {
            task: task.into(),
            source,
        };
        match self.nft.as_ref().expect("checked by caller") {
            Some(nft) => {
                // A stale table left by a crash (the state said there was none).
                self.delete_table().map_err(nft_err)?;
                let script =
                    nft::create_table_script(&self.table, &self.cfg.bridge, self.cfg.subnet);
                nft::run(nft, &script, &format!("create table ip {}", self.table))
                    .map_err(nft_err)?;
            }
            None => self
                .nft_apply(
                    &nfnl::create_table_ops(&self.cfg.bridge, self.cfg.subnet),
                    &format!("create table ip {}", self.table),
                )
                .map_err(nft_err)?,
        }
        ip_forward_on()
    }

    fn host_mtu(&self, nl: &mut netlink::Netlink) -> u32 {
        *self.mtu.get_or_init(|| match nl.default_route_mtu() {
            Ok(Some(m)) => m,
            Ok(None) => 1500,
            Err(e) => {
                warn!(error = %chain(&e), "cannot read the default route's MTU, using 1500");
                1500
            }
        })
    }

    /// Removes task `task`'s network: namespace (the kernel then frees the veth pair),
    /// files, port map elements and lease; the last task empties the port maps (the
    /// table and the bridge stay, until [`Network::reset`]).
    /// Every step runs even if an earlier one failed; all failures are returned.
    /// A task the state has no record of (its state was lost under it: the run root
    /// removed while the task ran) loses what it has by name, its published ports by its
    /// address ([`Network::remove_by_name`]), with a warning naming each thing removed;
    /// one that had no network loses nothing.
    pub fn teardown(&self, task: &str) -> Result<(), TeardownError> {
        let t = || task.to_string();
        let fail = |errors| TeardownError { task: t(), errors };
        // A state dir that is gone is not made again (under a removed run root) only to
        // find no record in it.
        let record = if self.cfg.run_root.is_dir() {
            match state::lock(&self.cfg.run_root).and_then(|l| l.record(task)) {
                Ok(Some(r)) if r.releasing_since_ms.is_none() => Some(r),
                Ok(Some(_)) => return Ok(()),
                Ok(None) => None,
                Err(source) => return Err(fail(vec![Error::State { task: t(), source }])),
            }
        } else {
            None
        };
        let Some(rec) = record else {
            let mut errors = Vec::new();
            // (Under the lock when there is a state: it says whose the address is now.)
            let l = if self.cfg.run_root.is_dir() {
                match state::lock(&self.cfg.run_root) {
                    Ok(l) => Some(l),
                    Err(source) => return Err(fail(vec![Error::State { task: t(), source }])),
                }
            } else {
                None
            };
            self.remove_by_name(task, l.as_ref(), &mut errors);
            drop(l);
            return if errors.is_empty() {
                Ok(())
            } else {
                Err(fail(errors))
            };
        };
        let mut errors = Vec::new();

        let netns_removed = match &rec.netns {
            Some(ns) => match nsfs::remove(ns) {
                Ok(_) => true,
                Err(source) => {
                    errors.push(Error::Netns { task: t(), source });
                    false
                }
            },
            None => true,
        };
        // Unpinning the namespace makes the kernel destroy it, and the veth pair with
        // it, asynchronously. Deleting the veth here instead costs ~25 ms (RTM_DELLINK
        // waits for an RCU barrier), so that is only done if the namespace could not be
        // removed; otherwise the address stays leased until the veth is seen gone.
        let mut releasing = false;
        if let Some(veth) = &rec.veth {
            let r = netlink::Netlink::open().and_then(|mut nl| {
                if netns_removed {
                    nl.link_index(veth).map(|i| i.is_some())
                } else {
                    nl.del_link(veth).map(|_| false)
                }
            });
            match r {
                Ok(still_there) => releasing = still_there,
                Err(source) => errors.push(Error::Netlink { task: t(), source }),
            }
        }
        if let Some(dir) = &rec.files {
            match std::fs::remove_dir_all(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => errors.push(Error::Files {
                    task: t(),
                    source: FilesError::Write {
                        path: dir.clone(),
                        source,
                    },
                }),
            }
        }
        // Release the lease and reservations; the last task empties the port maps.
        match state::lock(&self.cfg.run_root) {
            Ok(l) => {
                let st_err = |source| Error::State { task: t(), source };
                // The record as it is now (a concurrent teardown may have changed it).
                match l.record(task) {
                    Ok(Some(cur)) => {
                        let r = if releasing {
                            l.release(task, &cur, now_ms())
                        } else {
                            l.remove(task, &cur)
                        };
                        if let Err(source) = r {
                            errors.push(st_err(source));
                        }
                    }
                    Ok(None) => {}
                    Err(source) => errors.push(st_err(source)),
                }
                // Ports are withdrawn here, under the lock, so no task can reserve them
                // again before the map no longer points at this task. The last task
                // empties both maps instead, which also drops any element an earlier
                // failed withdrawal left; the table's chains and rules stay. Either is
                // one netlink batch (~50 µs).
                // (A state that cannot be read keeps the elements.)
                let table = l.nft_table().map_err(|source| errors.push(st_err(source)));
                if let Ok(Some(_)) = table
                    && self.nft.is_ok()
                {
                    let bridged_left = l.any_bridged().unwrap_or_else(|source| {
                        errors.push(st_err(source));
                        true
                    });
                    if !bridged_left {
                        match self.nft_apply(
                            &nfnl::flush_maps_ops(),
                            &format!("empty the port maps of table ip {}", self.table),
                        ) {
                            Ok(()) => {}
                            // The table (or a map of it) is gone: nothing of any task
                            // is left in it, and the state says so now.
                            Err(NftError::Netlink { source, .. })
                                if source.raw_os_error() == Some(nix::libc::ENOENT) =>
                            {
                                if let Err(source) = l.set_nft_table(None) {
                                    errors.push(st_err(source));
                                }
                            }
                            Err(source) => errors.push(Error::Nft { task: t(), source }),
                        }
                    } else if rec.nft_ports
                        && let Some(ip) = rec.ip
                        && let Err(source) = self.nft_apply(
                            &nfnl::withdraw_ops(ip, &rec.ports),
                            &format!("withdraw ports from table ip {}", self.table),
                        )
                    {
                        errors.push(Error::Nft { task: t(), source });
                    }
                }
            }
            Err(source) => errors.push(Error::State { task: t(), source }),
        }
        if errors.is_empty() {
            debug!(task, "task network removed");
            Ok(())
        } else {
            for e in &errors {
                warn!(task, error = %chain(e), "teardown step failed");
            }
            Err(fail(errors))
        }
    }

    /// Removes what task `task`'s network left on the host when this network's state has
    /// no record of it: the state lives in the run root, so after a reboot of a host
    /// whose run root is not a tmpfs, or when the run root was lost while the kernel
    /// objects stayed (the crash tests' simulated reboot), [`Network::teardown`] finds
    /// nothing. The namespace pin and host veth are found by name, the port map elements
    /// by the address the namespace holds ([`Network::remove_by_name`]); the nftables
    /// table goes when no task on this network holds an address any more and the state
    /// has no record of the table (a stale one; the next task would replace it anyway). Every step runs; a task the state does
    /// record is left to [`Network::teardown`].
    pub fn teardown_lost(&self, task: &str) -> Result<(), TeardownError> {
        let t = || task.to_string();
        let fail = |errors| TeardownError { task: t(), errors };
        let st_err = |source| Error::State { task: t(), source };
        let l = state::lock(&self.cfg.run_root).map_err(|source| fail(vec![st_err(source)]))?;
        if l.record(task)
            .map_err(|source| fail(vec![st_err(source)]))?
            .is_some()
        {
            return Ok(());
        }
        let mut errors = Vec::new();
        self.remove_by_name(task, Some(&l), &mut errors);
        // (A state that cannot be read keeps the table.)
        let no_table_here = l
            .any_lease()
            .and_then(|leased| Ok(!leased && l.nft_table()?.is_none()))
            .unwrap_or_else(|source| {
                errors.push(st_err(source));
                false
            });
        if no_table_here
            && self.nft.is_ok()
            && let Err(source) = self.delete_table()
        {
            errors.push(Error::Nft { task: t(), source });
        }
        drop(l);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(fail(errors))
        }
    }

    /// Removes task `task`'s namespace pin, host veth and files, found by their names
    /// (derived from the task's id), for a task the state has no record of, and the port
    /// map elements that send a host port to its address (read from its namespace's
    /// `eth0` before the namespace goes) unless the state `l` (the one there is now, if
    /// any) leases that address to a task again; each thing removed is named in a
    /// warning (something was left that no record accounted for), each failure pushed
    /// to `errors`. Nothing there is no failure.
    fn remove_by_name(&self, task: &str, l: Option<&state::Locked>, errors: &mut Vec<Error>) {
        let t = || task.to_string();
        let pin = self.netns_path(task);
        let address = self.address_in(&pin);
        match nsfs::remove(&pin) {
            Ok(true) => {
                warn!(task, netns = %pin.display(), "removed the task's network namespace by name: no record of it was left")
            }
            Ok(false) => {}
            Err(source) => errors.push(Error::Netns { task: t(), source }),
        }
        // With its namespace gone the kernel frees the pair; deleting it here as well
        // makes it gone when this returns (a rare path: its ~25 ms do not matter).
        let veth = self.veth_name(task);
        match netlink::Netlink::open().and_then(|mut nl| nl.del_link(&veth)) {
            Ok(true) => {
                warn!(task, %veth, "removed the task's veth by name: no record of it was left")
            }
            Ok(false) => {}
            Err(source) => errors.push(Error::Netlink { task: t(), source }),
        }
        let dir = self.task_dir(task);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {
                warn!(task, files = %dir.display(), "removed the task's network files by name: no record of them was left")
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => errors.push(Error::Files {
                task: t(),
                source: FilesError::Write {
                    path: dir,
                    source: e,
                },
            }),
        }
        let Some(ip) = address else { return };
        if self.nft.is_err() {
            return;
        }
        match l.map(|l| l.lease_owner(ip)).transpose() {
            Ok(Some(Some(owner))) => {
                debug!(task, %ip, %owner, "the lost task's address is leased again: its port map elements are the new owner's");
                return;
            }
            Ok(_) => {}
            Err(source) => {
                errors.push(Error::State { task: t(), source });
                return;
            }
        }
        for protocol in [Protocol::Tcp, Protocol::Udp] {
            let set = nfnl::map_name(protocol);
            let r = self.with_nfnl(|n| {
                let elements = n.map_elements(&self.table, set)?;
                let ops = nfnl::withdraw_by_address_ops(set, ip, &elements);
                n.apply(
                    &self.table,
                    &ops,
                    &format!("withdraw the ports of {ip} from table ip {}", self.table),
                )?;
                Ok(ops.len() / 2)
            });
            match r {
                Ok(0) => {}
                Ok(n) => {
                    warn!(task, %ip, %protocol, elements = n, "withdrew the task's published ports by its address: no record of them was left")
                }
                Err(source) => errors.push(Error::Nft { task: t(), source }),
            }
        }
    }

    /// The address of `eth0` in the namespace pinned at `pin` (a bridged task's), if it is
    /// there and has one.
    fn address_in(&self, pin: &Path) -> Option<Ipv4Addr> {
        if !pin.exists() {
            return None;
        }
        let found = netlink::Netlink::open_in(pin).and_then(|mut nl| {
            Ok(match nl.link_index("eth0")? {
                Some(i) => nl.addrs_of(i)?.first().map(|(ip, _)| *ip),
                None => None,
            })
        });
        found.unwrap_or_else(|e| {
            warn!(pin = %pin.display(), error = %chain(&e), "cannot read the lost task's address: its published ports, if any, stay until the table goes");
            None
        })
    }

    /// Tears down every recorded task whose id is not in `live` (tasks whose process
    /// died, including mid-setup). Returns the ids reclaimed.
    pub fn gc(&self, live: &[&str]) -> Result<Vec<String>, GcError> {
        let dead: Vec<String> = match self.tasks() {
            Ok(held) => held
                .into_iter()
                .filter(|id| !live.contains(&id.as_str()))
                .collect(),
            Err(source) => {
                return Err(GcError {
                    reclaimed: Vec::new(),
                    failures: vec![TeardownError {
                        task: "*".into(),
                        errors: vec![Error::State {
                            task: "*".into(),
                            source,
                        }],
                    }],
                });
            }
        };
        let mut reclaimed = Vec::new();
        let mut failures = Vec::new();
        for id in dead {
            match self.teardown(&id) {
                Ok(()) => {
                    info!(task = %id, "reclaimed the network of a dead task");
                    reclaimed.push(id);
                }
                Err(e) => failures.push(e),
            }
        }
        if let Err(e) = self.reap_released() {
            failures.push(e);
        }
        // What a crash left between the state's steps (reads every index file).
        if let Err(source) = state::lock(&self.cfg.run_root).and_then(|l| l.sweep()) {
            failures.push(TeardownError {
                task: "*".into(),
                errors: vec![Error::State {
                    task: "*".into(),
                    source,
                }],
            });
        }
        if failures.is_empty() {
            Ok(reclaimed)
        } else {
            Err(GcError {
                reclaimed,
                failures,
            })
        }
    }

    /// Removes everything this network ever made: all tasks' networks, the nftables
    /// table and the bridge (`minifargate system reset`).
    pub fn reset(&self) -> Result<(), GcError> {
        let gc = self.gc(&[]);
        let mut failures = match gc {
            Ok(_) => Vec::new(),
            Err(e) => e.failures,
        };
        let mut errors = Vec::new();
        if self.nft.is_ok()
            && let Err(source) = self.delete_table()
        {
            errors.push(Error::Nft {
                task: "*".into(),
                source,
            });
        }
        if let Err(source) =
            netlink::Netlink::open().and_then(|mut nl| nl.del_link(&self.cfg.bridge))
        {
            errors.push(Error::Netlink {
                task: "*".into(),
                source,
            });
        }
        if let Ok(l) = state::lock(&self.cfg.run_root) {
            errors.extend(self.reap(&l, true));
            if let Err(source) = l.set_nft_table(None).and_then(|()| l.sweep()) {
                errors.push(Error::State {
                    task: "*".into(),
                    source,
                });
            }
        }
        if !errors.is_empty() {
            failures.push(TeardownError {
                task: "*".into(),
                errors,
            });
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(GcError {
                reclaimed: Vec::new(),
                failures,
            })
        }
    }

    /// Whether egress NAT and port publishing are available (nftables found).
    pub fn egress_available(&self) -> Result<(), &str> {
        self.nft.as_ref().map(|_| ()).map_err(String::as_str)
    }
}

/// Whether a link called `name` exists in the calling thread's namespace (for tests
/// and diagnostics).
pub fn link_exists(name: &str) -> Result<bool, NetlinkError> {
    Ok(netlink::Netlink::open()?.link_index(name)?.is_some())
}

/// Brings up the loopback link of the network namespace at `ns` (any namespace file, such
/// as `/proc/<pid>/ns/net` of a container that has its own): a new namespace starts with
/// `lo` down. Ref: runc libcontainer/specconv (a new network namespace gets the
/// "loopback" network), which is what Docker's `NetworkDisabled` containers get.
pub fn loopback_up(ns: &Path) -> Result<(), NetlinkError> {
    // The loopback is always link 1 of a namespace.
    netlink::Netlink::open_in(ns)?.set_up(1)
}

/// Names of the links inside the namespace at `ns` (for tests and diagnostics).
pub fn links_in(ns: &Path) -> Result<Vec<String>, NetlinkError> {
    netlink::Netlink::open_in(ns)?.link_names()
}

#[doc(hidden)]
/// Test support: builds a point-to-point "outside host" link: a veth `host_if` with
/// `host_ip/prefix` here, its peer `eth0` with `peer_ip/prefix` in the namespace at
/// `ns` (no route back to the task subnet, as a real outside host).
pub fn test_link_outside(
    host_if: &str,
    host_ip: Ipv4Addr,
    ns: &Path,
    peer_ip: Ipv4Addr,
    prefix: u8,
) -> Result<(), NetlinkError> {
    let mut host = netlink::Netlink::open()?;
    let nsf = nsfs::open(ns).map_err(|source| NetlinkError::OpenIn {
        path: ns.display().to_string(),
        source,
    })?;
    // Master 0 means no bridge.
    host.add_veth_plain(host_if, "eth0", std::os::fd::AsFd::as_fd(&nsf))?;
    let idx = host.link_index(host_if)?.expect("just created");
    host.add_addr(idx, host_ip, prefix)?;
    let mut inner = netlink::Netlink::open_in(ns)?;
    inner.set_up(1)?;
    let e = inner.link_index("eth0")?.expect("just created");
    inner.set_up(e)?;
    inner.add_addr(e, peer_ip, prefix)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_another_task_may_hold_is_told_apart() {
        let subnet: Subnet = "10.99.0.0/30".parse().unwrap();
        let ipam = Error::Ipam {
            task: "t".into(),
            source: IpamError::Exhausted {
                subnet,
                capacity: 1,
            },
        };
        assert!(ipam.held_by_another_task());
        let port = |source| Error::Ports {
            task: "t".into(),
            source,
        };
        assert!(
            port(PortError::TakenByTask {
                protocol: Protocol::Tcp,
                host_port: 80,
                task: "u".into()
            })
            .held_by_another_task()
        );
        assert!(
            port(PortError::InUse {
                protocol: Protocol::Udp,
                host_port: 53
            })
            .held_by_another_task()
        );
        // The task's own mistakes are not.
        assert!(
            !port(PortError::Duplicate {
                protocol: Protocol::Tcp,
                host_port: 80
            })
            .held_by_another_task()
        );
        assert!(!Error::TaskExists { task: "t".into() }.held_by_another_task(),);
        let wrapped = Error::Setup {
            task: "t".into(),
            source: Box::new(ipam),
            cleanup: Vec::new(),
        };
        assert!(wrapped.held_by_another_task());
    }

    #[test]
    fn names_are_valid_and_stable() {
        let net = Network::open(NetworkConfig {
            bridge: "mfgt1".into(),
            ..Default::default()
        })
        .unwrap();
        let v = net.veth_name("task-1");
        assert_eq!(v.len(), 10);
        assert_eq!(v, net.veth_name("task-1"));
        assert_ne!(v, net.veth_name("task-2"));
        assert_eq!(net.netns_path("abc"), PathBuf::from("/run/netns/mfg-abc"));
        assert_eq!(
            mac_string(mac_for(Ipv4Addr::new(10, 94, 0, 5))),
            "02:6d:0a:5e:00:05"
        );
    }

    #[test]
    fn gc_reads_do_not_rewrite_the_state() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let net = Network::open(NetworkConfig {
            run_root: dir.path().into(),
            ..Default::default()
        })
        .unwrap();
        {
            let l = state::lock(dir.path()).unwrap();
            for (id, releasing) in [("held", None), ("going", Some(1))] {
                l.add(
                    id,
                    &state::TaskRecord {
                        mode: NetworkMode::Awsvpc,
                        netns: None,
                        veth: None,
                        ip: None,
                        ports: Vec::new(),
                        nft_ports: false,
                        files: None,
                        releasing_since_ms: releasing,
                    },
                )
                .unwrap();
            }
        }
        let (held, releasing) = net.tasks_and_releasing().unwrap();
        assert_eq!(
            (held, releasing),
            (vec!["held".to_string()], vec!["going".to_string()])
        );
        // What any write to the state changes: a directory's or a file's mtime, or a
        // file's inode (a rename).
        let snapshot = || {
            let mut v = Vec::new();
            let mut dirs = vec![dir.path().join("state")];
            while let Some(d) = dirs.pop() {
                let m = std::fs::metadata(&d).unwrap();
                v.push((d.clone(), m.ino(), m.mtime_nsec(), m.mtime()));
                for e in std::fs::read_dir(&d).unwrap() {
                    let p = e.unwrap().path();
                    if p.is_dir() {
                        dirs.push(p);
                    } else {
                        let m = std::fs::metadata(&p).unwrap();
                        v.push((p, m.ino(), m.mtime_nsec(), m.mtime()));
                    }
                }
            }
            v.sort();
            v
        };
        let going = dir.path().join("state/records/going.json");
        assert!(going.exists());
        // A releasing task without a veth is reaped: its record goes.
        net.reap_released().unwrap();
        assert!(!going.exists());
        assert_eq!(net.tasks_and_releasing().unwrap().1, Vec::<String>::new());
        // Nothing to reap: nothing is written (every command runs this).
        let before = snapshot();
        std::thread::sleep(Duration::from_millis(10));
        net.reap_released().unwrap();
        net.tasks_and_releasing().unwrap();
        assert_eq!(snapshot(), before);
        assert!(dir.path().join("state/records/held.json").exists());
    }

    #[test]
    fn bad_names_are_refused_before_anything_happens() {
        let e = Network::open(NetworkConfig {
            bridge: "a-very-long-bridge-name".into(),
            ..Default::default()
        })
        .err()
        .unwrap();
        assert!(matches!(e, Error::InvalidBridgeName { .. }));
        let dir = tempfile::tempdir().unwrap();
        let net = Network::open(NetworkConfig {
            run_root: dir.path().into(),
            ..Default::default()
        })
        .unwrap();
        for id in ["", "../x", ".hidden", "a/b", "sp ace"] {
            let e = net
                .setup_task(id, &TaskSpec::new(NetworkMode::Awsvpc))
                .unwrap_err();
            assert!(matches!(e, Error::InvalidTaskId { .. }), "{id}: {e}");
        }
        assert!(!dir.path().join("state").exists());
    }
}
