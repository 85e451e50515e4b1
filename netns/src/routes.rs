//! Routes to the task subnets of other boxes (minifargate's cluster mode): each box holds
//! a task subnet of its own, and the box's agent routes every other box's subnet via that
//! box's address on their shared network, so a task reaches a task of another box at the
//! task's own address, with no NAT in between.
//!
//! The routes are the main table's, tagged twice: protocol [`PEER_PROTOCOL`] (`ip route
//! show proto 109` lists them; only those are ever listed, replaced or deleted here, so
//! clean-up never touches a route someone else made) and destination realm
//! [`PEER_REALM`], which the egress rule of every task network's nftables table reads
//! (`rt classid != 109`, [`crate::nfnl::create_table_ops`]): a task's packet routed to
//! another box is not masqueraded, while one to anywhere else still is.

use std::net::Ipv4Addr;

use crate::ipam::Subnet;
use crate::netlink::{Netlink, NetlinkError};

/// The routing protocol number of the routes to other boxes' task subnets.
pub const PEER_PROTOCOL: u8 = 109;

/// The destination realm of those routes: packets they route are not masqueraded.
pub const PEER_REALM: u16 = 109;

/// The routing protocol number of the route to the load balancers' addresses via the
/// box of the serve that runs them (cluster mode); realm [`PEER_REALM`] as well, so a
/// task's packet to a load balancer keeps the task's address.
pub const SERVICE_PROTOCOL: u8 = 110;

/// A route to another box's task subnet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PeerRoute {
    pub subnet: Subnet,
    /// The other box's address, on a network this box is attached to.
    pub via: Ipv4Addr,
}

impl std::fmt::Display for PeerRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} via {}", self.subnet, self.via)
    }
}

/// The routes of [`PEER_PROTOCOL`] in this network namespace's main table.
pub fn peer_routes() -> Result<Vec<PeerRoute>, NetlinkError> {
    routes_of(PEER_PROTOCOL)
}

/// The routes of `protocol` in this network namespace's main table.
pub fn routes_of(protocol: u8) -> Result<Vec<PeerRoute>, NetlinkError> {
    let mut nl = Netlink::open()?;
    Ok(nl
        .routes_of(protocol)?
        .into_iter()
        .filter_map(|(dst, prefix, via)| {
            Some(PeerRoute {
                subnet: Subnet::new(dst, prefix).ok()?,
                via: via?,
            })
        })
        .collect())
}

/// Makes the peer routes exactly `want`: adds or replaces what differs, deletes the
/// peer routes to subnets not in `want`. Every change is tried; the failures are
/// returned with the route each concerns.
pub fn sync_peer_routes(
    want: &[PeerRoute],
) -> Result<Vec<(PeerRoute, NetlinkError)>, NetlinkError> {
    sync_routes(PEER_PROTOCOL, want)
}

/// Makes the routes of `protocol` (realm [`PEER_REALM`]) exactly `want`, as
/// [`sync_peer_routes`] does for the peer routes.
pub fn sync_routes(
    protocol: u8,
    want: &[PeerRoute],
) -> Result<Vec<(PeerRoute, NetlinkError)>, NetlinkError> {
    let have = routes_of(protocol)?;
    let mut nl = Netlink::open()?;
    let mut failed = Vec::new();
    for r in &have {
        if !want.iter().any(|w| w.subnet == r.subnet) {
            let net = r.subnet;
            if let Err(e) = nl.del_route(net.network(), net.prefix(), protocol) {
                failed.push((*r, e));
            }
        }
    }
    for w in want {
        if have.contains(w) {
            continue;
        }
        let net = w.subnet;
        if let Err(e) = nl.replace_route(net.network(), net.prefix(), w.via, protocol, PEER_REALM) {
            failed.push((*w, e));
        }
    }
    Ok(failed)
}

/// Deletes every peer route of this network namespace; returns how many there were.
pub fn remove_peer_routes() -> Result<usize, NetlinkError> {
    remove_routes(PEER_PROTOCOL)
}

/// Deletes every route of `protocol` of this network namespace; returns how many there
/// were.
pub fn remove_routes(protocol: u8) -> Result<usize, NetlinkError> {
    let have = routes_of(protocol)?;
    let mut nl = Netlink::open()?;
    for r in &have {
        nl.del_route(r.subnet.network(), r.subnet.prefix(), protocol)?;
    }
    Ok(have.len())
}
