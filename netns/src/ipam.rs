//! IPv4 address management: the task subnet, its gateway, and picking a free address
//! for a new lease (leases themselves are persisted by `state`).

use std::collections::HashSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// Bad subnet text or an exhausted subnet.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IpamError {
    #[error("failed to parse subnet {text:?}: expected an IPv4 CIDR like 10.94.0.0/16")]
    Parse { text: String },
    #[error("failed to use subnet {subnet}: a task subnet needs a prefix of /8 to /30")]
    PrefixLength { subnet: Subnet },
    #[error(
        "failed to allocate an address in {subnet}: all {capacity} addresses are leased (stop tasks or use a larger --subnet)"
    )]
    Exhausted { subnet: Subnet, capacity: u32 },
}

/// An IPv4 network given in CIDR notation; host bits are cleared on parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subnet {
    network: Ipv4Addr,
    prefix: u8,
}

impl Subnet {
    /// A subnet from a network address and prefix length (8..=30).
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Self, IpamError> {
        if prefix > 32 {
            return Err(IpamError::Parse {
                text: format!("{addr}/{prefix}"),
            });
        }
        let s = Subnet {
            network: Ipv4Addr::from(u32::from(addr) & mask(prefix)),
            prefix,
        };
        if !(8..=30).contains(&prefix) {
            return Err(IpamError::PrefixLength { subnet: s });
        }
        Ok(s)
    }

    /// Whether the two subnets share an address (one holds the other, or they are equal).
    pub fn overlaps(&self, other: &Subnet) -> bool {
        let p = self.prefix.min(other.prefix);
        u32::from(self.network) & mask(p) == u32::from(other.network) & mask(p)
    }

    /// The `prefix`-long subnets this one divides into, in address order (none when
    /// `prefix` is shorter than this subnet's or not a valid subnet length).
    pub fn split(&self, prefix: u8) -> impl Iterator<Item = Subnet> + use<> {
        let base = u32::from(self.network);
        let count: u64 = if prefix >= self.prefix && prefix <= 30 {
            1u64 << (prefix - self.prefix)
        } else {
            0
        };
        (0..count).filter_map(move |i| {
            let net = base + (i << (32 - u32::from(prefix))) as u32;
            Subnet::new(Ipv4Addr::from(net), prefix).ok()
        })
    }

    /// The network address.
    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The gateway: the first host address, held by the bridge.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }

    /// The broadcast address.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) | !mask(self.prefix))
    }

    /// Whether `ip` lies in this subnet.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == u32::from(self.network)
    }

    /// How many addresses tasks can lease (all hosts but the gateway).
    pub fn capacity(&self) -> u32 {
        (u32::from(self.broadcast()) - u32::from(self.network)).saturating_sub(2)
    }

    /// Picks a free task address: the first one after `after` (wrapping), so an address
    /// just released is not handed out again at once while peers may still cache its MAC.
    pub fn allocate(
        &self,
        leased: &HashSet<Ipv4Addr>,
        after: Option<Ipv4Addr>,
    ) -> Result<Ipv4Addr, IpamError> {
        self.allocate_by(
            |ip| Ok::<_, std::convert::Infallible>(leased.contains(&ip)),
            after,
        )
        .unwrap_or_else(|never| match never {})
    }

    /// [`Self::allocate`] asking `is_leased` about each candidate in turn (so a lease
    /// store can look up one address at a time instead of listing them all). The outer
    /// error is the first one `is_leased` returned.
    pub fn allocate_by<E>(
        &self,
        mut is_leased: impl FnMut(Ipv4Addr) -> Result<bool, E>,
        after: Option<Ipv4Addr>,
    ) -> Result<Result<Ipv4Addr, IpamError>, E> {
        let first = u32::from(self.gateway()) + 1;
        let last = u32::from(self.broadcast()) - 1;
        let start = match after {
            Some(a) if self.contains(a) && u32::from(a) >= first && u32::from(a) < last => {
                u32::from(a) + 1
            }
            _ => first,
        };
        let span = last - first + 1;
        for i in 0..span {
            let ip = Ipv4Addr::from(first + (start - first + i) % span);
            if !is_leased(ip)? {
                return Ok(Ok(ip));
            }
        }
        Ok(Err(IpamError::Exhausted {
            subnet: *self,
            capacity: self.capacity(),
        }))
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl FromStr for Subnet {
    type Err = IpamError;
    fn from_str(text: &str) -> Result<Self, IpamError> {
        let parse_err = || IpamError::Parse {
            text: text.to_owned(),
        };
        let (addr, prefix) = text.split_once('/').ok_or_else(parse_err)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| parse_err())?;
        let prefix: u8 = prefix.parse().map_err(|_| parse_err())?;
        Subnet::new(addr, prefix)
    }
}

/// Fargate's private DNS name style for a task address: `ip-10-94-0-5`.
pub fn host_name(ip: Ipv4Addr) -> String {
    let [a, b, c, d] = ip.octets();
    format!("ip-{a}-{b}-{c}-{d}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlaps_and_splits() {
        let n = |s: &str| s.parse::<Subnet>().unwrap();
        assert!(n("10.94.0.0/16").overlaps(&n("10.94.3.0/24")));
        assert!(n("10.94.3.0/24").overlaps(&n("10.94.0.0/16")));
        assert!(n("10.94.3.64/26").overlaps(&n("10.94.3.0/24")));
        assert!(!n("10.94.3.0/24").overlaps(&n("10.94.4.0/24")));
        assert!(!n("10.94.3.0/26").overlaps(&n("10.94.3.64/26")));
        let parts: Vec<String> = n("10.97.1.0/24").split(26).map(|s| s.to_string()).collect();
        assert_eq!(
            parts,
            [
                "10.97.1.0/26",
                "10.97.1.64/26",
                "10.97.1.128/26",
                "10.97.1.192/26"
            ]
        );
        assert_eq!(n("10.94.0.0/16").split(24).count(), 256);
        assert_eq!(n("10.94.0.0/24").split(16).count(), 0);
    }

    #[test]
    fn parses_and_normalises() {
        let s: Subnet = "10.94.3.7/16".parse().unwrap();
        assert_eq!(s.to_string(), "10.94.0.0/16");
        assert_eq!(s.gateway(), Ipv4Addr::new(10, 94, 0, 1));
        assert_eq!(s.broadcast(), Ipv4Addr::new(10, 94, 255, 255));
        assert_eq!(s.capacity(), 65533);
        assert!(s.contains(Ipv4Addr::new(10, 94, 200, 1)));
        assert!(!s.contains(Ipv4Addr::new(10, 95, 0, 1)));
    }

    #[test]
    fn rejects_bad_text() {
        for bad in [
            "10.94.0.0",
            "10.94.0.0/33",
            "x/16",
            "10.94.0.0/31",
            "10.0.0.0/4",
        ] {
            assert!(bad.parse::<Subnet>().is_err(), "{bad}");
        }
    }

    #[test]
    fn allocates_in_order_wrapping_and_exhausts() {
        let s: Subnet = "10.94.1.0/29".parse().unwrap(); // hosts .2 ..= .6 for tasks
        let mut leased = HashSet::new();
        let mut last = None;
        for want in 2..=6 {
            let ip = s.allocate(&leased, last).unwrap();
            assert_eq!(ip, Ipv4Addr::new(10, 94, 1, want));
            leased.insert(ip);
            last = Some(ip);
        }
        assert_eq!(
            s.allocate(&leased, last),
            Err(IpamError::Exhausted {
                subnet: s,
                capacity: 5
            })
        );
        leased.remove(&Ipv4Addr::new(10, 94, 1, 3));
        assert_eq!(
            s.allocate(&leased, last).unwrap(),
            Ipv4Addr::new(10, 94, 1, 3)
        );
    }

    #[test]
    fn allocate_by_asks_one_candidate_at_a_time_and_stops_at_an_error() {
        let s: Subnet = "10.94.1.0/29".parse().unwrap();
        let mut asked = Vec::new();
        let got = s.allocate_by(
            |ip| {
                asked.push(ip.octets()[3]);
                Ok::<_, ()>(ip.octets()[3] < 5)
            },
            Some(Ipv4Addr::new(10, 94, 1, 2)),
        );
        assert_eq!(got, Ok(Ok(Ipv4Addr::new(10, 94, 1, 5))));
        assert_eq!(asked, [3, 4, 5]);
        let got = s.allocate_by(|_| Err::<bool, _>("damaged"), None);
        assert_eq!(got, Err("damaged"));
    }

    #[test]
    fn fargate_host_name() {
        assert_eq!(host_name(Ipv4Addr::new(10, 94, 0, 5)), "ip-10-94-0-5");
    }
}
