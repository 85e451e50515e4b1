//! Task addresses across boxes (docs/cluster.md "Task addresses across boxes"): each
//! agent holds a task subnet of its own in etcd, leased from the cluster's range (or the
//! one the operator pinned with `MINIFARGATE_SUBNET`, checked against every other box's),
//! and routes every other box's subnet via that box's address (netns::routes), so a task
//! reaches a task of another box at its own address, with no NAT in between.
//!
//! The lease is one key a subnet under the box's own prefix (`keys::subnet`:
//! `subnets/<box>/…`, the only part of `subnets/` a box's etcd role may write, so a box
//! can neither take nor drop another box's key), created only if no key under the whole
//! prefix changed since it was read (a transaction), and attached to no etcd lease: the
//! box's tasks keep their addresses while its agent is away. It goes when the instance
//! is deregistered. A key written without that transaction (a box's user by hand) that
//! overlaps an older one is ignored by every reader: the first claim of an address
//! wins ([`held`]). Nor is a claim outside the cluster's task range, or shorter than a
//! /16, honoured ([`Bounds`]): a box's key for `0.0.0.0/0` or `10.0.0.0/8` would otherwise
//! route every other box's traffic for those addresses to it (issue 73).

use super::etcd::{Compare, Etcd, EtcdError, Event, Op, WatchEnd};
use super::keys;
use netns::Subnet;
use netns::routes::PeerRoute;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

/// The JSON value of a subnet's key: who holds it and where its tasks are routed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Holder {
    pub cluster: String,
    pub instance: String,
    /// The box's address (`agent --advertise-address`): other boxes route the subnet
    /// via it.
    pub address: Option<Ipv4Addr>,
}

/// Where this box's task subnet comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// `MINIFARGATE_SUBNET`, given: that one, if no other box holds one overlapping it.
    /// `range` is still the cluster's task range (`agent --task-range`): the claims this
    /// box honours.
    Pinned { subnet: Subnet, range: Subnet },
    /// A `/prefix` of `range` (`agent --task-range`, `--box-prefix`) no other box holds.
    Lease { range: Subnet, prefix: u8 },
}

impl Want {
    /// The cluster's task range as this box knows it (its own `--task-range`).
    pub fn range(&self) -> Subnet {
        match *self {
            Want::Pinned { range, .. } | Want::Lease { range, .. } => range,
        }
    }
}

/// Which subnet claims a reader honours (routes to, counts as held): those no shorter
/// than [`Bounds::SHORTEST`] and, with a `range` (the reader's own `--task-range`), inside
/// it. A whole range of /16 or longer is a lease the agent can make (`--box-prefix` equal
/// to the range's length: one box), so it is honoured; a claim of it harms the others no
/// more than claiming every free subnet of the range would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// `None`: any address (a pinned box checking its own subnet against every claim).
    pub range: Option<Subnet>,
}

impl Bounds {
    /// The shortest prefix a box's subnet may have: 65,534 task addresses.
    pub const SHORTEST: u8 = 16;

    /// The claims inside the cluster's task range `range`.
    pub fn within(range: Subnet) -> Bounds {
        Bounds { range: Some(range) }
    }

    /// Why claim `s` is not honoured; `None` when it is.
    pub fn refusal(&self, s: &Subnet) -> Option<String> {
        if s.prefix() < Self::SHORTEST {
            return Some(format!(
                "{s} is shorter than a /{}: no box's subnet is that large",
                Self::SHORTEST
            ));
        }
        match self.range {
            Some(r) if s.prefix() < r.prefix() || !r.contains(s.network()) => Some(format!(
                "{s} lies outside the cluster's task range {r} (the agents' --task-range, \
                 serve's --boxes-task-range)"
            )),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SubnetError {
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    #[error(transparent)]
    Watch(#[from] WatchEnd),
    #[error(
        "MINIFARGATE_SUBNET={wanted} overlaps {held}, the task subnet of container instance \
         {instance} (cluster {cluster}): give this box a subnet no other box holds, or leave \
         MINIFARGATE_SUBNET unset to lease one from --task-range"
    )]
    Overlaps {
        wanted: Subnet,
        held: Subnet,
        instance: String,
        cluster: String,
    },
    #[error(
        "task subnet {subnet}, which this agent's tasks use, is now held by container \
         instance {instance} (cluster {cluster}): restart the agent to lease another"
    )]
    Taken {
        subnet: Subnet,
        instance: String,
        cluster: String,
    },
    #[error(
        "--task-range {range}: every /{prefix} of it overlaps a subnet another box holds: \
         give a larger range or a longer --box-prefix"
    )]
    Exhausted { range: Subnet, prefix: u8 },
    #[error(
        "--box-prefix {prefix}: not within --task-range {range} (a /{prefix} of it), or \
         shorter than /16 (the other boxes route no larger subnet)"
    )]
    BadPrefix { range: Subnet, prefix: u8 },
    #[error("etcd changed the subnets {0} times while this box claimed one: giving up for now")]
    Contended(u32),
}

/// The subnet a claim's key names by its last part (`10.94.3.0-24`).
pub fn key_subnet(last: &str) -> Option<Subnet> {
    let (net, len) = last.split_once('-')?;
    Subnet::new(net.parse().ok()?, len.parse().ok()?).ok()
}

/// Why serve's port for boxes refuses a claim of `s` (`super::admission`): what every
/// reader refuses ([`Bounds::refusal`]: shorter than a /16, or outside `range`, the
/// cluster's task range when serve was given it: `serve --boxes-task-range`), and a
/// subnet outside the private ranges (RFC 1918), where no task range lies. Without
/// `range`, each agent's own `--task-range` is what it honours the others' claims against.
pub fn port_refusal(s: &Subnet, range: Option<Subnet>) -> Option<String> {
    Bounds { range }.refusal(s).or_else(|| {
        (!s.network().is_private()).then(|| {
            format!(
                "{s} is not in a private range (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16): \
                 no box's task subnet is"
            )
        })
    })
}

/// The subnets in etcd, by subnet, with their keys and holders (undecodable keys left
/// out). Taken in the order they were created: a subnet overlapping one claimed before
/// it under another key is left out (the first claim wins), and so is one `bounds` does
/// not honour (said once a key and revision).
fn held(kvs: &[super::etcd::Kv], bounds: &Bounds) -> BTreeMap<Subnet, (String, Holder)> {
    let prefix = keys::subnets();
    let mut claims: Vec<(i64, Subnet, String, Holder)> = kvs
        .iter()
        .filter_map(|kv| {
            let (_owner, last) = kv.key.strip_prefix(&prefix)?.split_once('/')?;
            let refused = |why: &str| {
                if super::first_report(&kv.key, kv.mod_revision) {
                    tracing::warn!(key = %kv.key, why,
                        "a box's task subnet claim not honoured: not routed, not counted as held");
                }
            };
            let Some(s) = key_subnet(last) else {
                refused("its key names no subnet of /8 to /30");
                return None;
            };
            if let Some(why) = bounds.refusal(&s) {
                refused(&why);
                return None;
            }
            let Ok(h) = serde_json::from_slice::<Holder>(&kv.value) else {
                refused("its value is not a holder (JSON: cluster, instance, address)");
                return None;
            };
            Some((kv.create_revision, s, kv.key.clone(), h))
        })
        .collect();
    claims.sort_by_key(|c| c.0);
    let mut out: BTreeMap<Subnet, (String, Holder)> = BTreeMap::new();
    for (rev, s, key, h) in claims {
        if let Some((o, (k, _))) = out.iter().find(|(o, _)| o.overlaps(&s)) {
            if super::first_report(&key, rev) {
                tracing::warn!(subnet = %s, key = %key, held = %o, by = %k,
                    "a task subnet claimed over an older claim: ignored");
            }
            continue;
        }
        out.insert(s, (key, h));
    }
    out
}

/// Claims box `owner`'s task subnet (`current`: the one this process's tasks already
/// use, kept): creates its key under `subnets/<owner>/`, or updates the address in it;
/// drops the box's other keys that name this instance. Returns the subnet.
pub async fn claim(
    etcd: &Etcd,
    want: Want,
    me: &Holder,
    owner: &str,
    current: Option<Subnet>,
) -> Result<Subnet, SubnetError> {
    let own_prefix = keys::box_subnets(owner);
    if let Want::Lease { range, prefix } = want
        && (prefix < range.prefix() || !(Bounds::SHORTEST..=30).contains(&prefix))
    {
        return Err(SubnetError::BadPrefix { range, prefix });
    }
    // What this box counts as held: a leased subnet is checked against the claims inside
    // the range; a pinned one against every claim of a box's size, wherever it lies (the
    // agent refuses to start rather than overlap a box it would not route).
    let bounds = match want {
        Want::Lease { range, .. } => Bounds::within(range),
        Want::Pinned { subnet, range } => {
            if let Some(why) = Bounds::within(range).refusal(&subnet) {
                tracing::warn!(task_subnet = %subnet, task_range = %range, why = %why,
                    "MINIFARGATE_SUBNET is not a subnet the other boxes route: give every \
                     box a --task-range that holds it");
            }
            Bounds { range: None }
        }
    };
    const ATTEMPTS: u32 = 8;
    for _ in 0..ATTEMPTS {
        let (kvs, rev) = etcd.get_prefix_at(&keys::subnets()).await?;
        let all = held(&kvs, &bounds);
        // This instance's, under this box's prefix (a key elsewhere naming it is not
        // this box's to use or drop).
        let mine_at = |k: &str, h: &Holder| {
            k.starts_with(&own_prefix) && h.instance == me.instance && h.cluster == me.cluster
        };
        let others: Vec<(&Subnet, &Holder)> = all
            .iter()
            .filter(|(_, (k, h))| !mine_at(k, h))
            .map(|(s, (_, h))| (s, h))
            .collect();
        // Keys of this box for this instance that another, older claim shadows.
        let shadowed: Vec<Op> = kvs
            .iter()
            .filter(|kv| kv.key.starts_with(&own_prefix))
            .filter(|kv| !all.values().any(|(k, _)| *k == kv.key))
            .filter(|kv| {
                serde_json::from_slice::<Holder>(&kv.value)
                    .is_ok_and(|h| h.instance == me.instance && h.cluster == me.cluster)
            })
            .map(|kv| Op::Delete(kv.key.clone()))
            .collect();
        let clash = |s: &Subnet| others.iter().find(|(o, _)| o.overlaps(s)).copied();
        let target = match (want, current) {
            (_, Some(cur)) | (Want::Pinned { subnet: cur, .. }, None) => {
                if let Some((o, h)) = clash(&cur) {
                    return Err(match want {
                        Want::Pinned { subnet: wanted, .. } if current.is_none() => {
                            SubnetError::Overlaps {
                                wanted,
                                held: *o,
                                instance: h.instance.clone(),
                                cluster: h.cluster.clone(),
                            }
                        }
                        _ => SubnetError::Taken {
                            subnet: cur,
                            instance: h.instance.clone(),
                            cluster: h.cluster.clone(),
                        },
                    });
                }
                cur
            }
            (Want::Lease { range, prefix }, None) => {
                // The one this instance held before (a restarted agent), else the first
                // free one.
                let before = all.iter().find(|(s, (k, h))| {
                    mine_at(k, h) && s.prefix() == prefix && range.overlaps(s) && clash(s).is_none()
                });
                match before {
                    Some((s, _)) => *s,
                    None => range
                        .split(prefix)
                        .find(|s| clash(s).is_none())
                        .ok_or(SubnetError::Exhausted { range, prefix })?,
                }
            }
        };
        let value = serde_json::to_vec(me).expect("a holder encodes");
        let key = keys::subnet(owner, target);
        let up_to_date = all.get(&target).is_some_and(|(k, h)| *k == key && h == me);
        let mut stale: Vec<Op> = all
            .iter()
            .filter(|(s, (k, h))| mine_at(k, h) && **s != target)
            .map(|(_, (k, _))| Op::Delete(k.clone()))
            .collect();
        stale.extend(shadowed);
        if up_to_date && stale.is_empty() {
            return Ok(target);
        }
        let mut ops = stale;
        ops.push(Op::Put(key, value));
        if etcd
            .txn(&[Compare::UnchangedUnderSince(keys::subnets(), rev)], &ops)
            .await?
        {
            return Ok(target);
        }
    }
    Err(SubnetError::Contended(ATTEMPTS))
}

/// Deletes the subnet keys of instance `instance` of `cluster` (its deregistration):
/// under box `owner`'s prefix only (its agent), or anywhere (`None`: serve).
pub async fn release(
    etcd: &Etcd,
    cluster: &str,
    instance: &str,
    owner: Option<&str>,
) -> Result<usize, EtcdError> {
    let prefix = owner.map_or_else(keys::subnets, keys::box_subnets);
    let kvs = etcd.get_prefix(&prefix).await?;
    let mut n = 0;
    for kv in kvs {
        let Ok(h) = serde_json::from_slice::<Holder>(&kv.value) else {
            continue;
        };
        if h.instance == instance && h.cluster == cluster && etcd.delete(&kv.key).await? {
            n += 1;
        }
    }
    Ok(n)
}

/// The address this box gives the others: `advertise`, else the source address of its
/// route to the first etcd endpoint (no packet is sent).
pub fn box_address(advertise: Option<Ipv4Addr>, etcd: &Etcd) -> Option<Ipv4Addr> {
    if advertise.is_some() {
        return advertise;
    }
    let first = etcd.endpoints().first()?;
    let url = reqwest::Url::parse(first).ok()?;
    let port = url.port_or_known_default()?;
    let target = std::net::ToSocketAddrs::to_socket_addrs(&(url.host_str()?, port))
        .ok()?
        .find(|a| a.is_ipv4())?;
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect(target).ok()?;
    match s.local_addr().ok()?.ip() {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(_) => None,
    }
}

/// Whether `a` is one of this network namespace's own addresses (a box on the same host
/// network: nothing to route).
pub(super) fn local(a: Ipv4Addr) -> bool {
    a.is_loopback() || a.is_unspecified() || std::net::UdpSocket::bind((a, 0)).is_ok()
}

/// The routes this box wants: every other box's subnet via its address, but for boxes
/// on this very network namespace (or without an address) and subnets overlapping ours.
pub fn wanted(
    all: &BTreeMap<Subnet, (String, Holder)>,
    me: &Holder,
    own: Subnet,
) -> Vec<PeerRoute> {
    all.iter()
        .filter(|(s, (_, h))| {
            let mine = h.instance == me.instance && h.cluster == me.cluster;
            !mine && !s.overlaps(&own)
        })
        .filter_map(|(s, (_, h))| {
            let via = h.address?;
            (!local(via)).then_some(PeerRoute { subnet: *s, via })
        })
        .collect()
}

/// Keeps this box's routes to the other boxes' subnets as etcd says, until etcd fails
/// (the routes stay: the session after it syncs them again).
pub async fn follow(etcd: &Etcd, me: &Holder, own: Subnet, bounds: Bounds) -> SubnetError {
    match follow_inner(etcd, me, own, &bounds).await {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

async fn follow_inner(
    etcd: &Etcd,
    me: &Holder,
    own: Subnet,
    bounds: &Bounds,
) -> Result<std::convert::Infallible, SubnetError> {
    let prefix = keys::subnets();
    let (kvs, rev) = etcd.get_prefix_at(&prefix).await?;
    let mut kv: BTreeMap<String, super::etcd::Kv> =
        kvs.into_iter().map(|k| (k.key.clone(), k)).collect();
    let mut applied = None;
    apply(&kv, me, own, bounds, &mut applied);
    let mut watch = etcd.watch(&prefix, rev + 1).await?;
    loop {
        for e in watch.next().await? {
            match e {
                Event::Put(k) => {
                    kv.insert(k.key.clone(), k);
                }
                Event::Delete { key, .. } => {
                    kv.remove(&key);
                }
            }
        }
        apply(&kv, me, own, bounds, &mut applied);
    }
}

fn apply(
    kv: &BTreeMap<String, super::etcd::Kv>,
    me: &Holder,
    own: Subnet,
    bounds: &Bounds,
    applied: &mut Option<Vec<PeerRoute>>,
) {
    let all = held(&kv.values().cloned().collect::<Vec<_>>(), bounds);
    let want = wanted(&all, me, own);
    if applied.as_ref() == Some(&want) {
        return;
    }
    if !want.is_empty() {
        forwarding_on();
    }
    match netns::routes::sync_peer_routes(&want) {
        Ok(failed) => {
            for (r, e) in &failed {
                tracing::warn!(subnet = %r, error = %crate::errors::error_chain(e),
                    "cannot route another box's task subnet");
            }
            let shown: Vec<String> = want.iter().map(|r| r.to_string()).collect();
            tracing::info!(subnets = %format!("[{}]", shown.join(", ")),
                "routes to the other boxes' task subnets");
            if failed.is_empty() {
                *applied = Some(want);
            }
        }
        Err(e) => {
            tracing::warn!(error = %crate::errors::error_chain(&e), "cannot list this box's routes")
        }
    }
}

/// Packets between the boxes' uplink and the task bridge are forwarded (a host-wide
/// switch, left on, as the task networks leave it).
pub(super) fn forwarding_on() {
    const F: &str = "/proc/sys/net/ipv4/ip_forward";
    if std::fs::read_to_string(F).is_ok_and(|v| v.trim() == "1") {
        return;
    }
    if let Err(e) = std::fs::write(F, "1") {
        tracing::warn!(file = F, error = %e, "cannot enable IP forwarding");
    }
}

/// Removes this box's routes to the other boxes (the agent stops, or was deregistered),
/// and the one to the load balancers (`crate::cluster::names`).
pub fn remove_routes() {
    match netns::routes::remove_peer_routes() {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            routes = n,
            "removed the routes to other boxes' task subnets"
        ),
        Err(e) => tracing::warn!(error = %crate::errors::error_chain(&e),
            "cannot remove the routes to other boxes' task subnets"),
    }
    match netns::routes::remove_routes(netns::routes::SERVICE_PROTOCOL) {
        Ok(0) => {}
        Ok(n) => tracing::info!(routes = n, "removed the route to the load balancers"),
        Err(e) => tracing::warn!(error = %crate::errors::error_chain(&e),
            "cannot remove the route to the load balancers"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(i: &str, a: Option<[u8; 4]>) -> Holder {
        Holder {
            cluster: "c".into(),
            instance: i.into(),
            address: a.map(Ipv4Addr::from),
        }
    }

    #[test]
    fn the_first_claim_of_an_address_wins() {
        let kv = |key: &str, h: &Holder, created: i64| super::super::etcd::Kv {
            key: format!("{}{key}", keys::subnets()),
            value: serde_json::to_vec(h).unwrap(),
            mod_revision: created + 10,
            create_revision: created,
            lease: 0,
        };
        let a = holder("a", Some([192, 0, 2, 10]));
        let b = holder("b", Some([192, 0, 2, 11]));
        // Box b's keys, written by hand over box a's: the same subnet, one inside it.
        let all = held(
            &[
                kv("b/10.94.0.0-24", &b, 7),
                kv("a/10.94.0.0-24", &a, 5),
                kv("b/10.94.0.128-25", &b, 9),
                kv("b/10.94.1.0-24", &b, 8),
            ],
            &default_bounds(),
        );
        let s = |t: &str| t.parse::<Subnet>().unwrap();
        assert_eq!(all.len(), 2, "{all:?}");
        assert_eq!(all[&s("10.94.0.0/24")].1, a);
        assert_eq!(all[&s("10.94.1.0/24")].1, b);
    }

    fn default_bounds() -> Bounds {
        Bounds::within("10.94.0.0/16".parse().unwrap())
    }

    fn subnet_kv(key: &str, h: &Holder, created: i64) -> super::super::etcd::Kv {
        super::super::etcd::Kv {
            key: format!("{}{key}", keys::subnets()),
            value: serde_json::to_vec(h).unwrap(),
            mod_revision: created,
            create_revision: created,
            lease: 0,
        }
    }

    /// issue 73: a box's claim in its own prefix is honoured only inside the task range
    /// and /16 or longer, even when it is the oldest claim; the others' stay routed.
    #[test]
    fn a_claim_outside_the_task_range_or_too_large_is_neither_routed_nor_held() {
        let s = |t: &str| t.parse::<Subnet>().unwrap();
        let bounds = default_bounds();
        for (claim, honoured) in [
            ("10.94.3.0/24", true),
            ("10.94.3.128/26", true),
            ("10.94.0.0/16", true),
            ("10.94.7.4/30", true),
            ("10.0.0.0/8", false),
            ("10.94.0.0/15", false),
            ("10.95.0.0/24", false),
            ("192.168.0.0/24", false),
            ("0.0.0.0/8", false),
        ] {
            assert_eq!(
                bounds.refusal(&s(claim)).is_none(),
                honoured,
                "{claim}: {:?}",
                bounds.refusal(&s(claim))
            );
        }
        // A wide range still refuses what is shorter than a /16.
        let wide = Bounds::within(s("10.0.0.0/8"));
        assert!(wide.refusal(&s("10.0.0.0/12")).is_some());
        assert!(wide.refusal(&s("10.200.0.0/16")).is_none());
        // Without a range (a pinned box's own check): the size alone.
        let any = Bounds { range: None };
        assert!(any.refusal(&s("10.0.0.0/8")).is_some());
        assert!(any.refusal(&s("192.168.7.0/24")).is_none());

        let me = holder("a", Some([192, 0, 2, 10]));
        let b = holder("b", Some([192, 0, 2, 11]));
        let evil = holder("evil", Some([192, 0, 2, 66]));
        // The hostile keys are the oldest: each would shadow the others' claims if held.
        let all = held(
            &[
                subnet_kv("evil/0.0.0.0-0", &evil, 1),
                subnet_kv("evil/10.0.0.0-8", &evil, 2),
                subnet_kv("evil/10.94.0.0-15", &evil, 3),
                subnet_kv("evil/172.16.0.0-24", &evil, 4),
                subnet_kv("evil/not-a-subnet", &evil, 5),
                subnet_kv("a/10.94.0.0-24", &me, 10),
                subnet_kv("b/10.94.1.0-24", &b, 11),
            ],
            &bounds,
        );
        assert_eq!(
            all.keys().copied().collect::<Vec<_>>(),
            [s("10.94.0.0/24"), s("10.94.1.0/24")]
        );
        assert_eq!(
            wanted(&all, &me, s("10.94.0.0/24")),
            [PeerRoute {
                subnet: s("10.94.1.0/24"),
                via: Ipv4Addr::new(192, 0, 2, 11)
            }]
        );
        // A value that is no holder is not held either.
        let mut garbled = subnet_kv("evil/10.94.9.0-24", &evil, 12);
        garbled.value = b"{".to_vec();
        assert!(held(&[garbled], &bounds).is_empty());
    }

    #[test]
    fn routes_go_to_the_other_boxes_on_other_addresses() {
        let s = |t: &str| t.parse::<Subnet>().unwrap();
        let me = holder("a", Some([192, 0, 2, 10]));
        let mut all = BTreeMap::new();
        all.insert(s("10.94.0.0/24"), ("k0".into(), me.clone()));
        all.insert(
            s("10.94.1.0/24"),
            ("k1".into(), holder("b", Some([198, 51, 100, 7]))),
        );
        // On this namespace's own loopback: the same host network, nothing to route.
        all.insert(
            s("10.94.2.0/24"),
            ("k2".into(), holder("c", Some([127, 0, 0, 1]))),
        );
        all.insert(s("10.94.3.0/24"), ("k3".into(), holder("d", None)));
        let want = wanted(&all, &me, s("10.94.0.0/24"));
        assert_eq!(
            want,
            [PeerRoute {
                subnet: s("10.94.1.0/24"),
                via: Ipv4Addr::new(198, 51, 100, 7)
            }]
        );
    }
}
