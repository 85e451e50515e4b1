//! A small synchronous rtnetlink client: the link, address and route requests task
//! networking needs, each sent and acknowledged on one `NETLINK_ROUTE` socket.
//!
//! Synchronous on purpose: a task's setup is a handful of requests in sequence, and a
//! blocking socket avoids an async runtime on the path the ≤ 10 ms budget is spent on.
//! A socket stays bound to the network namespace it was opened in, so
//! [`Netlink::open_in`] opens one on a short-lived thread that entered the task's
//! namespace, and every later request on it acts inside that namespace.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::Path;

use netlink_packet_core::{
    ErrorBuffer, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST,
    NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP, NLMSG_OVERRUN, NetlinkBuffer, NetlinkHeader,
    NetlinkMessage, NetlinkPayload, parse_u32,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    AfSpecInet6, AfSpecUnspec, In6AddrGenMode, InfoData, InfoKind, InfoVeth, LinkAttribute,
    LinkFlags, LinkInfo, LinkMessage, LinkMessageBuffer,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteRealm, RouteScope,
    RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use crate::nsfs;

/// A failed netlink request, naming the request and its object.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("failed to open a netlink socket")]
    Open(#[source] io::Error),
    #[error("failed to open a netlink socket inside network namespace {path}")]
    OpenIn {
        path: String,
        #[source]
        source: nsfs::NsError,
    },
    #[error("failed to {what}")]
    Request {
        what: String,
        #[source]
        source: io::Error,
    },
}

/// `IFLA_MTU`, the link attribute carrying the MTU (linux/if_link.h).
const IFLA_MTU: u16 = 4;

/// A reply that does not decode.
fn invalid_reply(e: netlink_packet_core::DecodeError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// One rtnetlink socket, bound to the namespace it was opened in.
pub struct Netlink {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Netlink {
    /// Opens a socket in the calling thread's network namespace.
    pub fn open() -> Result<Self, NetlinkError> {
        let mut sock = Socket::new(NETLINK_ROUTE).map_err(NetlinkError::Open)?;
        sock.bind_auto().map_err(NetlinkError::Open)?;
        Ok(Self {
            sock,
            seq: 0,
            buf: Vec::with_capacity(64 * 1024),
        })
    }

    /// Opens a socket inside the network namespace bind-mounted at `ns_path`.
    pub fn open_in(ns_path: &Path) -> Result<Self, NetlinkError> {
        nsfs::in_netns(ns_path, Self::open).map_err(|source| NetlinkError::OpenIn {
            path: ns_path.display().to_string(),
            source,
        })?
    }

    /// Sends request `msg` with a fresh sequence number.
    fn send(&mut self, msg: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags | if dump { 0 } else { NLM_F_ACK };
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        packet.finalize();
        let mut out = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut out);
        self.sock.send_to(&out, &SocketAddr::new(0, 0), 0)?;
        Ok(())
    }

    /// Sends one request and collects its replies until the kernel's ACK (or DONE for a
    /// dump). A NACK becomes the errno it carries.
    fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        let mut replies = Vec::new();
        self.exchange(msg, flags, |reply| {
            let m = NetlinkMessage::<RouteNetlinkMessage>::deserialize(reply.into_inner())
                .map_err(invalid_reply)?;
            if let NetlinkPayload::InnerMessage(m) = m.payload {
                replies.push(m);
            }
            Ok(())
        })?;
        Ok(replies)
    }

    /// As [`Netlink::request`], but hands each reply's payload to `on_reply` undecoded, for
    /// a caller that wants a field or two of it. Decoding a whole link message costs more
    /// than its request: netlink-packet-route formats a context string for every attribute
    /// it parses (a bridge's or a veth's reply has dozens).
    fn request_raw(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        mut on_reply: impl FnMut(&[u8]),
    ) -> io::Result<()> {
        self.exchange(msg, flags, |reply| {
            on_reply(reply.payload());
            Ok(())
        })
    }

    /// Sends one request and hands each of its replies (header and payload, undecoded) to
    /// `on_reply` until the kernel's ACK (or DONE for a dump). A NACK becomes the errno it
    /// carries.
    fn exchange(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        mut on_reply: impl FnMut(NetlinkBuffer<&[u8]>) -> io::Result<()>,
    ) -> io::Result<()> {
        self.send(msg, flags)?;
        loop {
            self.buf.clear();
            let n = self.sock.recv(&mut self.buf, 0)?;
            let mut off = 0;
            while off < n {
                // Checked: the message is at least a header long and lies within what was
                // received.
                let len = NetlinkBuffer::new_checked(&self.buf[off..n])
                    .map_err(invalid_reply)?
                    .length() as usize;
                let reply = NetlinkBuffer::new(&self.buf[off..off + len]);
                off += (len + 3) & !3;
                if reply.sequence_number() != self.seq {
                    continue;
                }
                match reply.message_type() {
                    NLMSG_ERROR => {
                        let e = ErrorBuffer::new_checked(reply.payload()).map_err(invalid_reply)?;
                        return match e.code() {
                            Some(code) => Err(io::Error::from_raw_os_error(-code.get())),
                            None => Ok(()),
                        };
                    }
                    NLMSG_DONE => return Ok(()),
                    NLMSG_NOOP | NLMSG_OVERRUN => {}
                    _ => on_reply(reply)?,
                }
            }
        }
    }

    fn run(
        &mut self,
        what: impl FnOnce() -> String,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        self.request(msg, flags)
            .map_err(|source| NetlinkError::Request {
                what: what(),
                source,
            })
    }

    /// The index of the link called `name`, or `None` if there is none.
    pub fn link_index(&mut self, name: &str) -> Result<Option<u32>, NetlinkError> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_owned()));
        let mut index = None;
        let r = self.request_raw(RouteNetlinkMessage::GetLink(m), 0, |p| {
            if let Ok(l) = LinkMessageBuffer::new_checked(p) {
                index.get_or_insert(l.link_index());
            }
        });
        match r {
            Ok(()) => Ok(index),
            Err(e) if e.raw_os_error() == Some(nix::libc::ENODEV) => Ok(None),
            Err(source) => Err(NetlinkError::Request {
                what: format!("look up link {name}"),
                source,
            }),
        }
    }

    /// The MTU of the link with index `index`.
    pub fn link_mtu(&mut self, index: u32) -> Result<Option<u32>, NetlinkError> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        let mut mtu = None;
        self.request_raw(RouteNetlinkMessage::GetLink(m), 0, |p| {
            let Ok(l) = LinkMessageBuffer::new_checked(p) else {
                return;
            };
            for nla in l.attributes().flatten() {
                if nla.kind() == IFLA_MTU
                    && let Ok(v) = parse_u32(nla.value())
                {
                    mtu.get_or_insert(v);
                }
            }
        })
        .map_err(|source| NetlinkError::Request {
            what: format!("look up link #{index}"),
            source,
        })?;
        Ok(mtu)
    }

    /// The MTU of the interface the IPv4 default route of the main table leaves by.
    pub fn default_route_mtu(&mut self) -> Result<Option<u32>, NetlinkError> {
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet;
        let replies = self.run(
            || "list IPv4 routes".into(),
            RouteNetlinkMessage::GetRoute(m),
            NLM_F_DUMP,
        )?;
        let oif = replies.into_iter().find_map(|r| match r {
            RouteNetlinkMessage::NewRoute(r)
                if r.header.destination_prefix_length == 0
                    && r.header.table == RouteHeader::RT_TABLE_MAIN =>
            {
                r.attributes.into_iter().find_map(|a| match a {
                    RouteAttribute::Oif(i) => Some(i),
                    _ => None,
                })
            }
            _ => None,
        });
        match oif {
            Some(i) => self.link_mtu(i),
            None => Ok(None),
        }
    }

    /// Creates bridge `name` (up), or leaves an existing one alone. Returns its index.
    pub fn ensure_bridge(&mut self, name: &str, mac: [u8; 6]) -> Result<u32, NetlinkError> {
        if let Some(i) = self.link_index(name)? {
            return Ok(i);
        }
        let mut m = LinkMessage::default();
        m.header.flags = LinkFlags::Up;
        m.header.change_mask = LinkFlags::Up;
        m.attributes.push(LinkAttribute::IfName(name.to_owned()));
        // A fixed MAC: otherwise the bridge takes the lowest port MAC and changes it
        // as tasks come and go, which flushes the tasks' ARP entries for the gateway.
        m.attributes.push(LinkAttribute::Address(mac.to_vec()));
        m.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Bridge,
            )]));
        match self.request(RouteNetlinkMessage::NewLink(m), NLM_F_CREATE | NLM_F_EXCL) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(nix::libc::EEXIST) => {}
            Err(source) => {
                return Err(NetlinkError::Request {
                    what: format!("create bridge {name}"),
                    source,
                });
            }
        }
        self.link_index(name)?.ok_or_else(|| NetlinkError::Request {
            what: format!("find bridge {name} after creating it"),
            source: io::Error::from_raw_os_error(nix::libc::ENODEV),
        })
    }

    /// Creates a veth pair: `host` (up, on bridge `master`) here, and `peer` (down, MAC
    /// `peer_mac`) directly inside the namespace open at `peer_ns`.
    pub fn add_veth(
        &mut self,
        host: &str,
        master: u32,
        mtu: u32,
        peer: &str,
        peer_mac: [u8; 6],
        peer_ns: BorrowedFd<'_>,
    ) -> Result<(), NetlinkError> {
        // The peer is brought up later from inside its namespace: veth refuses to open
        // an end whose other end is not registered yet (ENOTCONN), which is the state
        // the peer is configured in during RTM_NEWLINK.
        let mut p = LinkMessage::default();
        p.attributes.push(LinkAttribute::IfName(peer.to_owned()));
        p.attributes.push(LinkAttribute::Address(peer_mac.to_vec()));
        p.attributes.push(LinkAttribute::Mtu(mtu));
        p.attributes
            .push(LinkAttribute::NetNsFd(peer_ns.as_raw_fd()));

        let mut m = LinkMessage::default();
        m.header.flags = LinkFlags::Up;
        m.header.change_mask = LinkFlags::Up;
        m.attributes.push(LinkAttribute::IfName(host.to_owned()));
        m.attributes.push(LinkAttribute::Mtu(mtu));
        m.attributes.push(LinkAttribute::Controller(master));
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))),
        ]));
        self.run(
            || format!("create veth pair {host} <-> {peer}"),
            RouteNetlinkMessage::NewLink(m),
            NLM_F_CREATE | NLM_F_EXCL,
        )?;
        Ok(())
    }

    /// Creates a veth pair `host` <-> `peer` (both up, no bridge), the peer inside the
    /// namespace open at `peer_ns`.
    pub fn add_veth_plain(
        &mut self,
        host: &str,
        peer: &str,
        peer_ns: BorrowedFd<'_>,
    ) -> Result<(), NetlinkError> {
        let mut p = LinkMessage::default();
        p.attributes.push(LinkAttribute::IfName(peer.to_owned()));
        p.attributes
            .push(LinkAttribute::NetNsFd(peer_ns.as_raw_fd()));
        let mut m = LinkMessage::default();
        m.header.flags = LinkFlags::Up;
        m.header.change_mask = LinkFlags::Up;
        m.attributes.push(LinkAttribute::IfName(host.to_owned()));
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))),
        ]));
        self.run(
            || format!("create veth pair {host} <-> {peer}"),
            RouteNetlinkMessage::NewLink(m),
            NLM_F_CREATE | NLM_F_EXCL,
        )?;
        Ok(())
    }

    /// Brings link `index` up.
    pub fn set_up(&mut self, index: u32) -> Result<(), NetlinkError> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.flags = LinkFlags::Up;
        m.header.change_mask = LinkFlags::Up;
        self.run(
            || format!("bring link #{index} up"),
            RouteNetlinkMessage::SetLink(m),
            0,
        )?;
        Ok(())
    }

    /// Has link `index` generate no IPv6 address of its own (`addr_gen_mode` none), to be
    /// asked while it is down: no link-local address when it comes up, so none of the
    /// duplicate address detection, router solicitation and multicast reports that come
    /// with one. Through netlink rather than `/proc/sys/net/ipv6/conf/<name>`: inside a
    /// task's namespace that name is `eth0` in every task, and the kernel keeps one
    /// dentry per namespace for it in the same hash chain, which each lookup walks (at
    /// 1000 tasks, ~2.6 ms of CPU per launch: docs/benchmarks.md, stop 51).
    /// A kernel without IPv6 has no such setting (EAFNOSUPPORT): nothing to turn off.
    pub fn set_no_ipv6_address(&mut self, index: u32) -> Result<(), NetlinkError> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.attributes
            .push(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(
                vec![AfSpecInet6::AddrGenMode(In6AddrGenMode::None)],
            )]));
        match self.run(
            || format!("turn off IPv6 address generation on link #{index}"),
            RouteNetlinkMessage::SetLink(m),
            0,
        ) {
            Ok(_) => Ok(()),
            Err(NetlinkError::Request { source, .. })
                if source.raw_os_error() == Some(nix::libc::EAFNOSUPPORT) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Deletes link `name`; `Ok(false)` if it did not exist.
    pub fn del_link(&mut self, name: &str) -> Result<bool, NetlinkError> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_owned()));
        match self.request(RouteNetlinkMessage::DelLink(m), 0) {
            Ok(_) => Ok(true),
            Err(e) if e.raw_os_error() == Some(nix::libc::ENODEV) => Ok(false),
            Err(source) => Err(NetlinkError::Request {
                what: format!("delete link {name}"),
                source,
            }),
        }
    }

    /// Adds `addr/prefix` to link `index`; an address already there is fine.
    pub fn add_addr(&mut self, index: u32, addr: Ipv4Addr, prefix: u8) -> Result<(), NetlinkError> {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet;
        m.header.prefix_len = prefix;
        m.header.index = index;
        m.attributes.push(AddressAttribute::Local(addr.into()));
        m.attributes.push(AddressAttribute::Address(addr.into()));
        if prefix < 31 {
            let bcast = u32::from(addr) | (u32::MAX >> prefix);
            m.attributes.push(AddressAttribute::Broadcast(bcast.into()));
        }
        match self.request(
            RouteNetlinkMessage::NewAddress(m),
            NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Ok(_) => Ok(()),
            Err(e) if e.raw_os_error() == Some(nix::libc::EEXIST) => Ok(()),
            Err(source) => Err(NetlinkError::Request {
                what: format!("add address {addr}/{prefix} to link #{index}"),
                source,
            }),
        }
    }

    /// The IPv4 addresses of link `index`, with their prefix lengths.
    pub fn addrs_of(&mut self, index: u32) -> Result<Vec<(Ipv4Addr, u8)>, NetlinkError> {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet;
        let replies = self.run(
            || format!("list the addresses of link #{index}"),
            RouteNetlinkMessage::GetAddress(m),
            NLM_F_DUMP,
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|r| match r {
                RouteNetlinkMessage::NewAddress(a)
                    if a.header.index == index && a.header.family == AddressFamily::Inet =>
                {
                    a.attributes.iter().find_map(|x| match x {
                        AddressAttribute::Local(std::net::IpAddr::V4(ip)) => {
                            Some((*ip, a.header.prefix_len))
                        }
                        _ => None,
                    })
                }
                _ => None,
            })
            .collect())
    }

    /// Removes `addr/prefix` from link `index`; `Ok(false)` when it was not there.
    pub fn del_addr(
        &mut self,
        index: u32,
        addr: Ipv4Addr,
        prefix: u8,
    ) -> Result<bool, NetlinkError> {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet;
        m.header.prefix_len = prefix;
        m.header.index = index;
        m.attributes.push(AddressAttribute::Local(addr.into()));
        m.attributes.push(AddressAttribute::Address(addr.into()));
        match self.request(RouteNetlinkMessage::DelAddress(m), 0) {
            Ok(_) => Ok(true),
            Err(e) if e.raw_os_error() == Some(nix::libc::EADDRNOTAVAIL) => Ok(false),
            Err(source) => Err(NetlinkError::Request {
                what: format!("delete address {addr}/{prefix} from link #{index}"),
                source,
            }),
        }
    }

    /// Adds the IPv4 default route via `gateway`.
    pub fn add_default_route(&mut self, gateway: Ipv4Addr) -> Result<(), NetlinkError> {
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet;
        m.header.table = RouteHeader::RT_TABLE_MAIN;
        m.header.protocol = RouteProtocol::Static;
        m.header.scope = RouteScope::Universe;
        m.header.kind = RouteType::Unicast;
        m.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
        self.run(
            || format!("add default route via {gateway}"),
            RouteNetlinkMessage::NewRoute(m),
            NLM_F_CREATE | NLM_F_EXCL,
        )?;
        Ok(())
    }

    /// The IPv4 routes of the main table whose protocol is `protocol`: destination,
    /// prefix length and gateway.
    pub fn routes_of(
        &mut self,
        protocol: u8,
    ) -> Result<Vec<(Ipv4Addr, u8, Option<Ipv4Addr>)>, NetlinkError> {
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet;
        let replies = self.run(
            || "list IPv4 routes".into(),
            RouteNetlinkMessage::GetRoute(m),
            NLM_F_DUMP,
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|r| match r {
                RouteNetlinkMessage::NewRoute(r)
                    if r.header.table == RouteHeader::RT_TABLE_MAIN
                        && u8::from(r.header.protocol) == protocol =>
                {
                    let mut dst = Ipv4Addr::UNSPECIFIED;
                    let mut via = None;
                    for a in r.attributes {
                        match a {
                            RouteAttribute::Destination(RouteAddress::Inet(d)) => dst = d,
                            RouteAttribute::Gateway(RouteAddress::Inet(g)) => via = Some(g),
                            _ => {}
                        }
                    }
                    Some((dst, r.header.destination_prefix_length, via))
                }
                _ => None,
            })
            .collect())
    }

    /// Adds, or replaces, the main table's route to `dst/prefix` via `gateway`, with
    /// protocol `protocol` and destination realm `realm`.
    pub fn replace_route(
        &mut self,
        dst: Ipv4Addr,
        prefix: u8,
        gateway: Ipv4Addr,
        protocol: u8,
        realm: u16,
    ) -> Result<(), NetlinkError> {
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet;
        m.header.table = RouteHeader::RT_TABLE_MAIN;
        m.header.protocol = RouteProtocol::from(protocol);
        m.header.scope = RouteScope::Universe;
        m.header.kind = RouteType::Unicast;
        m.header.destination_prefix_length = prefix;
        m.attributes
            .push(RouteAttribute::Destination(RouteAddress::Inet(dst)));
        m.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
        m.attributes.push(RouteAttribute::Realm(RouteRealm {
            source: 0,
            destination: realm,
        }));
        self.run(
            || format!("add route {dst}/{prefix} via {gateway}"),
            RouteNetlinkMessage::NewRoute(m),
            NLM_F_CREATE | NLM_F_REPLACE,
        )?;
        Ok(())
    }

    /// Deletes the main table's route to `dst/prefix` of protocol `protocol`; false when
    /// there was none.
    pub fn del_route(
        &mut self,
        dst: Ipv4Addr,
        prefix: u8,
        protocol: u8,
    ) -> Result<bool, NetlinkError> {
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet;
        m.header.table = RouteHeader::RT_TABLE_MAIN;
        m.header.protocol = RouteProtocol::from(protocol);
        m.header.scope = RouteScope::NoWhere;
        m.header.destination_prefix_length = prefix;
        m.attributes
            .push(RouteAttribute::Destination(RouteAddress::Inet(dst)));
        match self.request(RouteNetlinkMessage::DelRoute(m), 0) {
            Ok(_) => Ok(true),
            Err(e) if e.raw_os_error() == Some(nix::libc::ESRCH) => Ok(false),
            Err(source) => Err(NetlinkError::Request {
                what: format!("delete route {dst}/{prefix}"),
                source,
            }),
        }
    }

    /// Names of all links in this namespace.
    pub fn link_names(&mut self) -> Result<Vec<String>, NetlinkError> {
        let replies = self.run(
            || "list links".into(),
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|r| match r {
                RouteNetlinkMessage::NewLink(l) => l.attributes.into_iter().find_map(|a| match a {
                    LinkAttribute::IfName(n) => Some(n),
                    _ => None,
                }),
                _ => None,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Link replies are read undecoded (`request_raw`): index and MTU as the kernel has them.
    #[test]
    fn link_index_and_mtu_of_the_loopback_as_sysfs_shows_them() {
        let mut nl = Netlink::open().unwrap();
        let sys = |f: &str| -> u32 {
            std::fs::read_to_string(format!("/sys/class/net/lo/{f}"))
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        };
        let index = nl.link_index("lo").unwrap().expect("lo exists");
        assert_eq!(index, sys("ifindex"));
        assert_eq!(nl.link_mtu(index).unwrap(), Some(sys("mtu")));
        assert_eq!(nl.link_index("mfgnosuch0").unwrap(), None);
        // The socket keeps working after a NACK.
        assert_eq!(nl.link_index("lo").unwrap(), Some(index));
    }
}
