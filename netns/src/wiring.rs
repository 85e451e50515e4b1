//! The two halves of a task's network setup ([`Network::prepare_task`]'s pinning and
//! files, [`Network::wire_task`]'s links, addresses, routes and ports).

use crate::state::TaskRecord;
use crate::{
    Error, FilesError, METADATA_ADDRESS, NetlinkError, Network, PortBinding, TaskNetwork, TaskSpec,
    files, ipam, mac_for, mac_string, netlink, nfnl, nsfs, write_sysctl,
};
use std::net::Ipv4Addr;
use tracing::{debug, info, warn};

/// Why [`Network::bridge_index`] failed.
pub(crate) enum BridgeError {
    Netlink(NetlinkError),
    Other(Error),
}

impl From<NetlinkError> for BridgeError {
    fn from(e: NetlinkError) -> Self {
        BridgeError::Netlink(e)
    }
}

impl Network {
    /// [`Network::prepare_task`]'s part once the reservations are recorded: the namespace
    /// pinned (made, or `spec.adopt_netns` adopted) and the task's hosts and resolv.conf
    /// files; the returned network is complete but for [`TaskNetwork::mtu`], which
    /// [`Network::wire`] reads with the links.
    pub(crate) fn pin(
        &self,
        task: &str,
        spec: &TaskSpec,
        rec: &TaskRecord,
    ) -> Result<TaskNetwork, Error> {
        let t = || task.to_string();
        let mut tn = TaskNetwork {
            task_id: t(),
            mode: spec.mode,
            netns_path: rec.netns.clone(),
            ip: rec.ip,
            prefix_len: None,
            gateway: None,
            mac: None,
            private_dns_name: None,
            mtu: None,
            bindings: rec
                .ports
                .iter()
                .map(|r| PortBinding {
                    bind_ip: Ipv4Addr::UNSPECIFIED,
                    protocol: r.protocol,
                    host_port: r.host_port,
                    container_port: r.container_port,
                })
                .collect(),
            unpublished: Vec::new(),
            hosts_file: None,
            resolv_conf: None,
            egress: false,
        };
        if rec.netns.is_none() {
            return Ok(tn); // host mode
        }

        let pin = format!("{}-{task}", self.cfg.netns_prefix);
        match &spec.adopt_netns {
            Some(source) => nsfs::adopt(&self.cfg.netns_dir, &pin, source),
            None => nsfs::create(&self.cfg.netns_dir, &pin),
        }
        .map_err(|source| Error::Netns { task: t(), source })?;

        if let (Some(ip), Some(_)) = (rec.ip, &rec.veth) {
            let subnet = self.cfg.subnet;
            tn.prefix_len = Some(subnet.prefix());
            tn.gateway = Some(subnet.gateway());
            tn.mac = Some(mac_string(mac_for(ip)));
            tn.private_dns_name = Some(ipam::host_name(ip));
            tn.egress = self.nft.is_ok();
            if let Err(reason) = &self.nft {
                warn!(task, reason = %reason, "nftables unavailable: task runs without egress NAT");
            }
        }

        let dir = rec
            .files
            .as_ref()
            .expect("namespaced tasks have a files dir");
        let files_err = |source| Error::Files { task: t(), source };
        std::fs::create_dir_all(dir).map_err(|source| {
            files_err(FilesError::Write {
                path: dir.clone(),
                source,
            })
        })?;
        let own = rec.ip.map(|ip| (ip, ipam::host_name(ip)));
        let hosts = files::hosts(
            own.as_ref().map(|(ip, n)| (*ip, n.as_str())),
            &spec.extra_hosts,
        );
        let hosts_path = dir.join("hosts");
        files::write(&hosts_path, &hosts).map_err(files_err)?;
        // A bridged task asking for no resolvers of its own uses the box's DNS server
        // when one answers on the bridge (`NetworkConfig::resolver`), else the host's.
        let servers = match self.cfg.resolver {
            Some(r) if spec.dns_servers.is_empty() && rec.veth.is_some() => vec![r.into()],
            _ => spec.dns_servers.clone(),
        };
        let (resolv, fell_back) =
            files::resolv_conf(&self.cfg.host_resolv, &servers, &spec.dns_search_domains)
                .map_err(files_err)?;
        if fell_back {
            warn!(
                task,
                "the host has only loopback resolvers; the task uses 8.8.8.8 and 8.8.4.4"
            );
        }
        let resolv_path = dir.join("resolv.conf");
        files::write(&resolv_path, &resolv).map_err(files_err)?;
        tn.hosts_file = Some(hosts_path);
        tn.resolv_conf = Some(resolv_path);
        Ok(tn)
    }

    /// The bridge's index: made (up, with the gateway address) if it is missing.
    pub(crate) fn bridge_index(&self, host: &mut netlink::Netlink) -> Result<u32, BridgeError> {
        if let Some(i) = host.link_index(&self.cfg.bridge)? {
            return Ok(i);
        }
        let subnet = self.cfg.subnet;
        let i = host.ensure_bridge(&self.cfg.bridge, mac_for(subnet.gateway()))?;
        host.add_addr(i, subnet.gateway(), subnet.prefix())?;
        // Ref: DNAT of 127.0.0.1:<hostPort> sends packets from 127.0.0.1 out
        // the bridge; the kernel drops such "martians" unless route_localnet.
        write_sysctl(
            &format!("/proc/sys/net/ipv4/conf/{}/route_localnet", self.cfg.bridge),
            "1",
        )
        .map_err(BridgeError::Other)?;
        info!(bridge = %self.cfg.bridge, gateway = %subnet.gateway(), "created bridge");
        Ok(i)
    }

    /// [`Network::wire_task`]'s steps: the links, addresses, routes and published ports of
    /// the namespace [`Network::pin`] pinned (`lo` with the metadata address only, in
    /// none mode); sets `tn.mtu`.
    pub(crate) fn wire(
        &self,
        task: &str,
        rec: &TaskRecord,
        tn: &mut TaskNetwork,
    ) -> Result<(), Error> {
        let t = || task.to_string();
        let nl_err = |source| Error::Netlink { task: t(), source };
        let Some(ns_path) = &rec.netns else {
            return Ok(()); // host mode
        };
        if let Some(d) = self.cfg.pause_before_wiring {
            std::thread::sleep(d);
        }
        if let (Some(ip), Some(veth)) = (rec.ip, &rec.veth) {
            // Right before the shared objects (the table, the bridge) may be made.
            if let Some(path) = self.cfg.owner_state.as_ref().filter(|p| !p.is_file()) {
                return Err(Error::OwnerGone {
                    task: t(),
                    path: path.clone(),
                });
            }
            if self.nft.is_ok() {
                self.ensure_table(task)?;
            }
            let subnet = self.cfg.subnet;
            let mut host = netlink::Netlink::open().map_err(nl_err)?;
            let br = self.bridge_index(&mut host).map_err(|e| match e {
                BridgeError::Netlink(source) => nl_err(source),
                BridgeError::Other(e) => e,
            })?;
            let mtu = self.host_mtu(&mut host);
            let mac = mac_for(ip);
            let ns = nsfs::open(ns_path).map_err(|source| Error::Netns { task: t(), source })?;
            host.add_veth(veth, br, mtu, "eth0", mac, std::os::fd::AsFd::as_fd(&ns))
                .map_err(nl_err)?;
            drop(ns);
            // The host end is a bridge port: it forwards IPv6 frames at layer 2 and needs
            // no IPv6 address of its own. Left with one, each port gets a link-local
            // address and its two routes in the host's table and runs duplicate address
            // detection and router solicitation on the bridge. Asked before its carrier
            // comes up (the peer is still down), through netlink, which waits for the
            // kernel's RTNL lock: not through `/proc/sys/.../disable_ipv6`, whose write
            // only tries that lock and restarts itself until it gets it, spinning a core
            // while other launches hold it (40 % of the host's CPU during a scale-out of
            // 400 tasks: docs/scaling.md). The port keeps its multicast route (one per
            // task in table `local`), which only `disable_ipv6` avoids. A host without
            // IPv6 refuses the request: a warning.
            match host.link_index(veth) {
                Ok(Some(index)) => {
                    if let Err(e) = host.set_no_ipv6_address(index) {
                        warn!(task, %veth, error = %e, "cannot turn IPv6 addresses off on the task's bridge port");
                    }
                }
                Ok(None) => {
                    return Err(nl_err(NetlinkError::Request {
                        what: format!("find {veth} after creating it"),
                        source: std::io::Error::from_raw_os_error(nix::libc::ENODEV),
                    }));
                }
                Err(e) => return Err(nl_err(e)),
            }
            if let Some(d) = self.cfg.pause_mid_setup {
                std::thread::sleep(d);
            }
            let mut inner = netlink::Netlink::open_in(ns_path).map_err(nl_err)?;
            inner.set_up(1).map_err(nl_err)?;
            inner.add_addr(1, METADATA_ADDRESS, 32).map_err(nl_err)?;
            let eth0 = inner.link_index("eth0").map_err(nl_err)?.ok_or_else(|| {
                nl_err(NetlinkError::Request {
                    what: "find eth0 inside the task namespace".into(),
                    source: std::io::Error::from_raw_os_error(nix::libc::ENODEV),
                })
            })?;
            // IPv4 only, as an ENI in an IPv4-only subnet: no IPv6 address on eth0, so
            // nothing sent to IPv6 multicast groups, which the bridge floods to every
            // other task's namespace (at 1000 tasks ~11 % of the box's CPU: docs/
            // benchmarks.md, stop 51). `lo` keeps ::1.
            inner.set_no_ipv6_address(eth0).map_err(nl_err)?;
            inner.set_up(eth0).map_err(nl_err)?;
            inner.add_addr(eth0, ip, subnet.prefix()).map_err(nl_err)?;
            inner.add_default_route(subnet.gateway()).map_err(nl_err)?;
            if rec.nft_ports {
                self.nft_apply(
                    &nfnl::publish_ops(ip, &rec.ports),
                    &format!("publish ports in table ip {}", self.table),
                )
                .map_err(|source| Error::Nft { task: t(), source })?;
            }
            tn.mtu = Some(mtu);
            debug!(task, %veth, %ip, mtu, "veth and addresses configured");
        } else {
            // none mode: loopback only (and the metadata address on it).
            let mut inner = netlink::Netlink::open_in(ns_path).map_err(nl_err)?;
            inner.set_up(1).map_err(nl_err)?;
            inner.add_addr(1, METADATA_ADDRESS, 32).map_err(nl_err)?;
        }
        Ok(())
    }
}
