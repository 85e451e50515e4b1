//! The PROXY protocol version 2 header a network load balancer's TCP connection to a target
//! starts with when its group has `proxy_protocol_v2.enabled`: the client's address and
//! port and the listener's, in binary, before the client's first byte.
//!
//! Ref: haproxy doc/proxy-protocol.txt, section 2.2 (signature, version and command,
//! family and transport, length, addresses); NLB User Guide, "Proxy protocol": health
//! check connections carry the header too, without the client's information (LOCAL).

use std::net::{IpAddr, SocketAddr};

/// The twelve bytes every v2 header starts with.
const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The header of a connection from `client` to the listener at `listener`: command PROXY
/// over TCP, IPv4 when both are IPv4 addresses, else both as IPv6 (a v4 one mapped).
pub fn proxy(client: SocketAddr, listener: SocketAddr) -> Vec<u8> {
    let mut h = SIGNATURE.to_vec();
    // Version 2, command PROXY.
    h.push(0x21);
    let addrs = match (client.ip(), listener.ip()) {
        (IpAddr::V4(c), IpAddr::V4(l)) => {
            // AF_INET, STREAM.
            h.push(0x11);
            [c.octets().to_vec(), l.octets().to_vec()].concat()
        }
        (c, l) => {
            // AF_INET6, STREAM.
            h.push(0x21);
            let v6 = |ip: IpAddr| match ip {
                IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
                IpAddr::V6(a) => a.octets(),
            };
            [v6(c).to_vec(), v6(l).to_vec()].concat()
        }
    };
    let len = (addrs.len() + 4) as u16;
    h.extend_from_slice(&len.to_be_bytes());
    h.extend_from_slice(&addrs);
    h.extend_from_slice(&client.port().to_be_bytes());
    h.extend_from_slice(&listener.port().to_be_bytes());
    h
}

/// The header of a health check's connection: command LOCAL, no addresses.
pub fn local() -> Vec<u8> {
    let mut h = SIGNATURE.to_vec();
    // Version 2, command LOCAL; family UNSPEC; no address block.
    h.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_header_is_the_spec_s_bytes() {
        let h = proxy(
            "192.0.2.1:56324".parse().unwrap(),
            "10.0.0.2:443".parse().unwrap(),
        );
        let mut want = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        want.extend_from_slice(&[0x21, 0x11, 0x00, 12]);
        want.extend_from_slice(&[192, 0, 2, 1, 10, 0, 0, 2]);
        want.extend_from_slice(&56324u16.to_be_bytes());
        want.extend_from_slice(&443u16.to_be_bytes());
        assert_eq!(h, want);
        assert_eq!(h.len(), 16 + 12);
    }

    #[test]
    fn mixed_families_are_sent_as_ipv6_and_local_has_no_addresses() {
        let h = proxy(
            "[2001:db8::1]:1000".parse().unwrap(),
            "10.0.0.2:80".parse().unwrap(),
        );
        assert_eq!(&h[12..16], &[0x21, 0x21, 0x00, 36]);
        assert_eq!(h.len(), 16 + 36);
        assert_eq!(
            &h[32..48],
            &"::ffff:10.0.0.2"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets()
        );
        assert_eq!(&h[48..52], &[0x03, 0xe8, 0x00, 80]);
        let l = local();
        assert_eq!(l.len(), 16);
        assert_eq!(&l[12..], &[0x20, 0x00, 0x00, 0x00]);
    }
}
