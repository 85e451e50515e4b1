//! Host port choice for port mappings: awsvpc's `hostPort == containerPort` rule, bridge
//! mode's dynamic ports (49153–65535, as ECS), and refusing ports already in use.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};

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

/// Resolves `mappings` into host port reservations. `taken` maps reserved
/// (protocol, host port) to the task holding it; `free` tells whether the host has the
/// port free (a seam so unit tests need not bind real ports).
pub fn resolve(
    mode: NetworkMode,
    mappings: &[PortMapping],
    taken: &dyn Fn(Protocol, u16) -> Option<String>,
    free: &dyn Fn(Protocol, u16) -> bool,
) -> Result<Vec<Reservation>, PortError> {
    if mappings.is_empty() {
        return Ok(Vec::new());
    }
    if mode == NetworkMode::None {
        return Err(PortError::NoPorts { mode });
    }
    let mut out: Vec<Reservation> = Vec::new();
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
    for m in mappings {
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
            for i in 0..count {
                check(p, hp + i as u16, &mine)?;
            }
            hp
        };
        for i in 0..count as u16 {
            mine.insert((p, host_first + i));
            out.push(Reservation {
                protocol: p,
                host_port: host_first + i,
                container_port: m.container_port + i,
            });
        }
    }
    Ok(out)
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
        .unwrap();
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
        .unwrap();
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
        let e = resolve(NetworkMode::Awsvpc, &[map(22, None, None)], &none, &busy).unwrap_err();
        assert_eq!(
            e,
            PortError::InUse {
                protocol: Protocol::Tcp,
                host_port: 22
            }
        );
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
    fn dynamic_search_skips_busy_ports() {
        let busy = |_: Protocol, p: u16| p == 65535;
        let r = resolve(NetworkMode::Bridge, &[map(80, None, None)], &none, &busy).unwrap();
        assert_eq!(r[0].host_port, 65535);
    }
}
