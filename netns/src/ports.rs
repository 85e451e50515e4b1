//! Host port choice for port mappings: awsvpc's `hostPort == containerPort` rule, bridge
//! mode's dynamic ports (49153–65535, as ECS), and ports already in use: refused in bridge
//! and host mode (a placement failure on ECS), left unpublished in awsvpc mode (the task
//! has its own address, as on Fargate, where publishing on the host does not exist).

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};

use serde::{Deserialize, Serialize};

use crate::state::Reservation;
use crate::{NetworkMode, PortMapping, Protocol};

/// ECS's dynamic host port range for bridge mode.
pub const DYNAMIC_PORTS: std::ops::RangeInclusive<u16> = 49153..=65535;

/// A port mapping that cannot be honoured.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PortError {
    #[error(
        "failed to publish {protocol} port {container_port}: in awsvpc mode hostPort must be absent or equal containerPort, got hostPort {host_port}"
    )]
    AwsvpcHostPort {
        protocol: Protocol,
        container_port: u16,
        host_port: u16,
    },
    #[error(
        "failed to publish {protocol} port range {first}-{last}: the range is empty or starts at 0"
    )]
    BadRange {
        protocol: Protocol,
        first: u16,
        last: u16,
    },
    #[error(
        "failed to publish {protocol} port {container_port}: hostPort {host_port} with a containerPortRange is not supported (leave hostPort out)"
    )]
    RangeWithHostPort {
        protocol: Protocol,
        container_port: u16,
        host_port: u16,
    },
    #[error("failed to publish port mappings: network mode {mode} has no ports to publish")]
    NoPorts { mode: NetworkMode },
    #[error(
        "failed to reserve host {protocol} port {host_port}: it is already published by task {task}"
    )]
    TakenByTask {
        protocol: Protocol,
        host_port: u16,
        task: String,
    },
    #[error(
        "failed to reserve host {protocol} port {host_port}: it is already in use on this host (stop what listens there or pick another hostPort)"
    )]
    InUse { protocol: Protocol, host_port: u16 },
    #[error("failed to reserve host {protocol} port {host_port}: it is mapped twice in this task")]
    Duplicate { protocol: Protocol, host_port: u16 },
    #[error("failed to find {count} free dynamic host {protocol} port(s) in 49153-65535")]
    NoDynamic { protocol: Protocol, count: u32 },
}

/// Whether nothing on the host listens on `port` (checked by binding the wildcard).
pub fn host_port_free(protocol: Protocol, port: u16) -> bool {
    let addr = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port);
    match protocol {
        Protocol::Tcp => TcpListener::bind(addr).is_ok(),
        Protocol::Udp => UdpSocket::bind(addr).is_ok(),
    }
}

/// A port mapping of an awsvpc task that is not published on the host because its host
/// port is held (by another task or by something else on the host). The task still
/// answers on that port at its own address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unpublished {
    /// The index of the mapping in [`crate::TaskSpec::port_mappings`].
    pub mapping: usize,
    pub protocol: Protocol,
    /// The first and last container port of the mapping.
    pub container_port: u16,
    pub container_port_end: u16,
    /// Why: the [`PortError`] a bridge-mode task would have failed with.
    pub reason: String,
}

/// What [`resolve`] decided: the host ports to reserve and the mappings left unpublished.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    pub reservations: Vec<Reservation>,
    pub unpublished: Vec<Unpublished>,
}

/// Resolves `mappings` into host port reservations. `taken` maps reserved
/// (protocol, host port) to the task holding it; `free` tells whether the host has the
/// port free (a seam so unit tests need not bind real ports).
///
/// In awsvpc mode a mapping whose host port is taken is not an error: it goes to
/// [`Resolved::unpublished`] (the whole mapping, all ports of a range) and the task runs,
/// reachable at its own address as each Fargate task is at its ENI's. In bridge and host
/// mode it fails the task, as a port conflict fails placement on ECS (`RESOURCE:PORTS`).
pub fn resolve(
    mode: NetworkMode,
    mappings: &[PortMapping],
    taken: &dyn Fn(Protocol, u16) -> Option<String>,
    free: &dyn Fn(Protocol, u16) -> bool,
) -> Result<Resolved, PortError> {
    let mut resolved = Resolved::default();
    if mappings.is_empty() {
        return Ok(resolved);
    }
    if mode == NetworkMode::None {
        return Err(PortError::NoPorts { mode });
    }
    let mut mine: HashSet<(Protocol, u16)> = HashSet::new();
    let check =
        |p: Protocol, port: u16, mine: &HashSet<(Protocol, u16)>| -> Result<(), PortError> {
            if mine.contains(&(p, port)) {
                return Err(PortError::Duplicate {
                    protocol: p,
                    host_port: port,
                });
            }
            if let Some(task) = taken(p, port) {
                return Err(PortError::TakenByTask {
                    protocol: p,
                    host_port: port,
                    task,
                });
            }
            if !free(p, port) {
                return Err(PortError::InUse {
                    protocol: p,
                    host_port: port,
                });
            }
            Ok(())
        };
    for (index, m) in mappings.iter().enumerate() {
        let p = m.protocol;
        let last = m.container_port_end.unwrap_or(m.container_port);
        if m.container_port == 0 || last < m.container_port {
            return Err(PortError::BadRange {
                protocol: p,
                first: m.container_port,
                last,
            });
        }
        let count = u32::from(last - m.container_port) + 1;
        let dynamic = mode == NetworkMode::Bridge && m.host_port.unwrap_or(0) == 0;
        let host_first = if dynamic {
            find_dynamic(p, count, &|port| check(p, port, &mine).is_ok())?
        } else {
            let hp = m.host_port.filter(|&h| h != 0).unwrap_or(m.container_port);
            if m.container_port_end.is_some() && hp != m.container_port {
                return Err(PortError::RangeWithHostPort {
                    protocol: p,
                    container_port: m.container_port,
                    host_port: hp,
                });
            }
            if matches!(mode, NetworkMode::Awsvpc | NetworkMode::Host) && hp != m.container_port {
                return Err(PortError::AwsvpcHostPort {
                    protocol: p,
                    container_port: m.container_port,
                    host_port: hp,
                });
            }
            let held = (0..count).try_for_each(|i| check(p, hp + i as u16, &mine));
            match held {
                Err(e @ (PortError::TakenByTask { .. } | PortError::InUse { .. }))
                    if mode == NetworkMode::Awsvpc =>
                {
                    resolved.unpublished.push(Unpublished {
                        mapping: index,
                        protocol: p,
                        container_port: m.container_port,
                        container_port_end: last,
                        reason: e.to_string(),
                    });
                    continue;
                }
                other => other?,
            }
            hp
        };
        for i in 0..count as u16 {
            mine.insert((p, host_first + i));
            resolved.reservations.push(Reservation {
                protocol: p,
                host_port: host_first + i,
                container_port: m.container_port + i,
            });
        }
    }
    Ok(resolved)
}

/// Finds `count` consecutive usable ports in the dynamic range, starting at a random
/// point so concurrent tasks rarely race for the same one.
fn find_dynamic(
    protocol: Protocol,
    count: u32,
    ok: &dyn Fn(u16) -> bool,
) -> Result<u16, PortError> {
    let (lo, hi) = (
        u32::from(*DYNAMIC_PORTS.start()),
        u32::from(*DYNAMIC_PORTS.end()),
    );
    let span = hi - lo + 1;
    if count == 0 || count > span {
        return Err(PortError::NoDynamic { protocol, count });
    }
    let starts = span - count + 1;
    let offset = fastrand::u32(0..starts);
    for i in 0..starts {
        let first = lo + (offset + i) % starts;
        if (0..count).all(|k| ok((first + k) as u16)) {
            return Ok(first as u16);
        }
    }
    Err(PortError::NoDynamic { protocol, count })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(c: u16, end: Option<u16>, h: Option<u16>) -> PortMapping {
        PortMapping {
            container_port: c,
            container_port_end: end,
            host_port: h,
            protocol: Protocol::Tcp,
        }
    }
    fn none(_: Protocol, _: u16) -> Option<String> {
        None
    }
    fn yes(_: Protocol, _: u16) -> bool {
        true
    }

    #[test]
    fn awsvpc_publishes_container_port_and_rejects_other_host_port() {
        let r = resolve(
            NetworkMode::Awsvpc,
            &[map(80, None, None), map(443, None, Some(443))],
            &none,
            &yes,
        )
        .unwrap()
        .reservations;
        assert_eq!(
            r.iter()
                .map(|r| (r.host_port, r.container_port))
                .collect::<Vec<_>>(),
            [(80, 80), (443, 443)]
        );
        let e = resolve(
            NetworkMode::Awsvpc,
            &[map(80, None, Some(8080))],
            &none,
            &yes,
        )
        .unwrap_err();
        assert!(matches!(
            e,
            PortError::AwsvpcHostPort {
                host_port: 8080,
                ..
            }
        ));
    }

    #[test]
    fn bridge_dynamic_ports_are_in_range_and_distinct() {
        let r = resolve(
            NetworkMode::Bridge,
            &[
                map(80, None, None),
                map(81, None, Some(0)),
                map(9000, Some(9009), None),
            ],
            &none,
            &yes,
        )
        .unwrap()
        .reservations;
        assert_eq!(r.len(), 12);
        let hosts: HashSet<u16> = r.iter().map(|r| r.host_port).collect();
        assert_eq!(hosts.len(), 12);
        assert!(r.iter().all(|r| DYNAMIC_PORTS.contains(&r.host_port)));
        // The range stays contiguous and maps in order.
        let base = r[2].host_port;
        let range: Vec<_> = r[2..]
            .iter()
            .map(|x| (x.host_port - base, x.container_port))
            .collect();
        assert_eq!(range, (0..10).map(|i| (i, 9000 + i)).collect::<Vec<_>>());
    }

    #[test]
    fn conflicts_are_refused_with_the_holder() {
        let taken = |_: Protocol, p: u16| (p == 8080).then(|| "task-a".to_string());
        let e = resolve(
            NetworkMode::Bridge,
            &[map(80, None, Some(8080))],
            &taken,
            &yes,
        )
        .unwrap_err();
        assert_eq!(
            e,
            PortError::TakenByTask {
                protocol: Protocol::Tcp,
                host_port: 8080,
                task: "task-a".into()
            }
        );
        let busy = |_: Protocol, p: u16| p != 22;
        for mode in [NetworkMode::Bridge, NetworkMode::Host] {
            let e = resolve(mode, &[map(22, None, Some(22))], &none, &busy).unwrap_err();
            assert_eq!(
                e,
                PortError::InUse {
                    protocol: Protocol::Tcp,
                    host_port: 22
                }
            );
        }
        let e = resolve(
            NetworkMode::Awsvpc,
            &[map(22, None, None), map(22, None, None)],
            &none,
            &yes,
        )
        .unwrap_err();
        assert!(matches!(e, PortError::Duplicate { .. }));
        let e = resolve(NetworkMode::None, &[map(22, None, None)], &none, &yes).unwrap_err();
        assert!(matches!(e, PortError::NoPorts { .. }));
    }

    #[test]
    fn awsvpc_leaves_a_held_host_port_unpublished_and_runs() {
        // The second and third tasks of a service: the first holds 8080 on the host.
        let taken = |_: Protocol, p: u16| (p == 8080).then(|| "task-a".to_string());
        let busy = |_: Protocol, p: u16| p != 9000;
        let r = resolve(
            NetworkMode::Awsvpc,
            &[
                map(8080, None, None),
                map(9000, Some(9001), None),
                map(443, None, None),
            ],
            &taken,
            &busy,
        )
        .unwrap();
        assert_eq!(
            r.reservations
                .iter()
                .map(|r| r.host_port)
                .collect::<Vec<_>>(),
            [443]
        );
        assert_eq!(
            r.unpublished
                .iter()
                .map(|u| (u.mapping, u.container_port, u.container_port_end))
                .collect::<Vec<_>>(),
            [(0, 8080, 8080), (1, 9000, 9001)]
        );
        assert!(
            r.unpublished[0]
                .reason
                .contains("already published by task task-a"),
            "{}",
            r.unpublished[0].reason
        );
        assert!(
            r.unpublished[1]
                .reason
                .contains("already in use on this host")
        );
    }

    #[test]
    fn dynamic_search_skips_busy_ports() {
        let busy = |_: Protocol, p: u16| p == 65535;
        let r = resolve(NetworkMode::Bridge, &[map(80, None, None)], &none, &busy)
            .unwrap()
            .reservations;
        assert_eq!(r[0].host_port, 65535);
    }
}
