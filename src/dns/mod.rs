//! The box's DNS server for tasks: run by `serve` on the task bridge's gateway address
//! (port 53, UDP and TCP), it answers the names of its record table (a load balancer's
//! `DNSName`; Cloud Map's `<service>.<namespace>`, authoritative for the namespaces of
//! `crate::servicediscovery`) and forwards every other query, byte for
//! byte, to the host's resolvers. Bridged tasks that give no `dnsServers` get it as their
//! nameserver while it runs (`announced`, read by their supervisor); docs/load-balancing.md
//! "Names" and docs/security.md say what it answers and whom.

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, SRV};
use hickory_proto::rr::{DNSClass, Name, RData, Record as Rr, RecordType};
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

/// How long one upstream resolver gets to answer a forwarded query.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a TCP client may stay silent before its connection is closed.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Queries answered or forwarded at once; more wait (a flood of one task does not take
/// every socket of the box).
const IN_FLIGHT: usize = 256;
/// Resolvers used when the host lists none (as the tasks' resolv.conf falls back).
const FALLBACK: [Ipv4Addr; 2] = [Ipv4Addr::new(8, 8, 8, 8), Ipv4Addr::new(8, 8, 4, 4)];

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("failed to listen on {addr} ({proto})")]
    Listen {
        addr: SocketAddr,
        proto: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to write {path}")]
    Marker {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What a name holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Data {
    A(Ipv4Addr),
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        target: String,
    },
}

/// One record of a name, with its TTL (seconds).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Record {
    pub data: Data,
    pub ttl: u32,
}

/// The names the server answers, by source (`elb`, `cloudmap`): each source replaces its
/// own names as a whole. Names are kept lower case, without the final dot.
#[derive(Default)]
pub struct Records {
    by_source: RwLock<HashMap<String, Source>>,
}

/// The names of one source, the zones it is authoritative for (a name under one of them
/// that it does not hold is NXDOMAIN, not forwarded) and how many records of a type each
/// name answers at most (picked at random on each query, as Route 53's multivalue and
/// weighted routing do).
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Source {
    pub names: BTreeMap<String, Vec<Record>>,
    pub zones: Vec<String>,
    pub limits: HashMap<String, usize>,
}

/// What the table says of a name.
#[derive(Debug, PartialEq)]
pub enum Found {
    /// Its records (none: the name exists, without records), and the most one answer holds.
    Records(Vec<Record>, Option<usize>),
    /// Under a zone of ours, but no such name.
    NxDomain,
    /// Not ours.
    Elsewhere,
}

fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl Records {
    /// The names of `source` are now `names` (those it had before and not now are gone).
    pub fn replace(&self, source: &str, names: BTreeMap<String, Vec<Record>>) {
        self.replace_source(
            source,
            Source {
                names,
                ..Source::default()
            },
        );
    }

    /// The names, zones and limits of `source` are now `src`'s.
    pub fn replace_source(&self, source: &str, src: Source) {
        let src = Source {
            names: src.names.into_iter().map(|(n, r)| (key(&n), r)).collect(),
            zones: src.zones.iter().map(|z| key(z)).collect(),
            limits: src.limits.into_iter().map(|(n, l)| (key(&n), l)).collect(),
        };
        let mut m = self.by_source.write().unwrap_or_else(|p| p.into_inner());
        m.insert(source.to_string(), src);
    }

    /// What the sources say of `name`: its records if one holds it; NXDOMAIN if it is
    /// under a zone of one (a zone's own name exists, without records here).
    pub fn find(&self, name: &str) -> Found {
        let k = key(name);
        let m = self.by_source.read().unwrap_or_else(|p| p.into_inner());
        let mut out: Option<(Vec<Record>, Option<usize>)> = None;
        let mut zoned = false;
        for src in m.values() {
            if let Some(r) = src.names.get(&k) {
                let o = out.get_or_insert_with(|| (Vec::new(), None));
                o.0.extend(r.iter().cloned());
                if let Some(l) = src.limits.get(&k) {
                    o.1 = Some(o.1.map_or(*l, |x: usize| x.max(*l)));
                }
            }
            for z in &src.zones {
                if k == *z {
                    out.get_or_insert_with(|| (Vec::new(), None));
                } else if k.ends_with(&format!(".{z}")) {
                    zoned = true;
                }
            }
        }
        match out {
            Some((r, l)) => Found::Records(r, l),
            None if zoned => Found::NxDomain,
            None => Found::Elsewhere,
        }
    }
}

/// At most `n` of `v`, picked at random (all of them, in a random order, when it has
/// fewer).
fn pick<T>(mut v: Vec<T>, n: usize) -> Vec<T> {
    let mut seed = [0u8; 8];
    let _ = getrandom::getrandom(&mut seed);
    let mut x = u64::from_le_bytes(seed) | 1;
    for i in (1..v.len()).rev() {
        // xorshift: enough to spread answers over the records.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.swap(i, (x % (i as u64 + 1)) as usize);
    }
    v.truncate(n);
    v
}

/// What to do with one query.
#[derive(Debug, PartialEq)]
pub enum Answer {
    /// Our answer, encoded.
    Local(Vec<u8>),
    /// Not one of our names: the host's resolvers answer it.
    Forward,
    /// Not a DNS query at all: nothing is answered.
    Drop,
}

/// The answer to the DNS message `query` from the table: a name it has gets its records of
/// the asked type (none, NOERROR, for another type: the name exists), authoritative; any
/// other name is forwarded.
pub fn answer(query: &[u8], records: &Records) -> Answer {
    let Ok(msg) = Message::from_vec(query) else {
        return Answer::Drop;
    };
    if msg.metadata.message_type != MessageType::Query {
        return Answer::Drop;
    }
    let [q] = msg.queries.as_slice() else {
        return Answer::Forward;
    };
    if msg.metadata.op_code != OpCode::Query || q.query_class() != DNSClass::IN {
        return Answer::Forward;
    }
    let (found, limit, code) = match records.find(&q.name().to_ascii()) {
        Found::Elsewhere => return Answer::Forward,
        Found::NxDomain => (Vec::new(), None, ResponseCode::NXDomain),
        Found::Records(r, l) => (r, l, ResponseCode::NoError),
    };
    let mut resp = Message::response(msg.metadata.id, OpCode::Query);
    resp.metadata.authoritative = true;
    resp.metadata.recursion_desired = msg.metadata.recursion_desired;
    resp.metadata.recursion_available = true;
    resp.metadata.response_code = code;
    resp.add_query(q.clone());
    let name = q.name().clone();
    let mut answers = Vec::new();
    for r in found {
        let rdata = match (&r.data, q.query_type()) {
            (Data::A(ip), RecordType::A | RecordType::ANY) => RData::A(A(*ip)),
            (
                Data::Srv {
                    priority,
                    weight,
                    port,
                    target,
                },
                RecordType::SRV | RecordType::ANY,
            ) => {
                let Ok(t) = Name::from_ascii(format!("{}.", key(target))) else {
                    continue;
                };
                RData::SRV(SRV::new(*priority, *weight, *port, t))
            }
            _ => continue,
        };
        answers.push(Rr::from_rdata(name.clone(), r.ttl, rdata));
    }
    if let Some(n) = limit {
        // Per type: a weighted name answers one A and one SRV record.
        let (srv, other): (Vec<Rr>, Vec<Rr>) = answers
            .into_iter()
            .partition(|r| r.record_type() == RecordType::SRV);
        answers = pick(other, n);
        answers.extend(pick(srv, n));
    }
    for a in answers {
        resp.add_answer(a);
    }
    match resp.to_vec() {
        Ok(v) => Answer::Local(v),
        Err(_) => Answer::Forward,
    }
}

/// SERVFAIL for `query` (no upstream answered).
fn servfail(query: &[u8]) -> Option<Vec<u8>> {
    let msg = Message::from_vec(query).ok()?;
    let mut resp = Message::error_msg(
        msg.metadata.id,
        msg.metadata.op_code,
        ResponseCode::ServFail,
    );
    resp.metadata.recursion_desired = msg.metadata.recursion_desired;
    resp.metadata.recursion_available = true;
    resp.queries = msg.queries;
    resp.to_vec().ok()
}

/// The host's resolvers, from its resolv.conf (read again when it changes). `serve` runs
/// in the host's namespace, so a loopback resolver (systemd-resolved's 127.0.0.53) is
/// reachable from here, unlike from a task.
pub struct Upstreams {
    path: PathBuf,
    cached: Mutex<(Option<SystemTime>, Vec<SocketAddr>)>,
}

impl Upstreams {
    pub fn new(path: PathBuf) -> Upstreams {
        Upstreams {
            path,
            cached: Mutex::new((None, Vec::new())),
        }
    }

    /// The resolvers to try in order (`nameserver` lines; 8.8.8.8 and 8.8.4.4 when none).
    pub fn get(&self) -> Vec<SocketAddr> {
        let mtime = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        let mut c = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if c.0 != mtime || c.1.is_empty() {
            let text = std::fs::read_to_string(&self.path).unwrap_or_default();
            let mut servers = nameservers(&text);
            if servers.is_empty() {
                servers = FALLBACK.iter().map(|ip| (*ip, 53).into()).collect();
            }
            *c = (mtime, servers);
        }
        c.1.clone()
    }
}

fn nameservers(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|v| v.split_whitespace().next()?.split('%').next()?.parse().ok())
        .map(|ip: IpAddr| SocketAddr::new(ip, 53))
        .collect()
}

async fn forward_udp(query: &[u8], upstreams: &[SocketAddr]) -> Option<Vec<u8>> {
    for up in upstreams {
        let local: SocketAddr = if up.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let Ok(sock) = UdpSocket::bind(local).await else {
            continue;
        };
        if sock.connect(up).await.is_err() || sock.send(query).await.is_err() {
            continue;
        }
        let mut buf = vec![0u8; 65535];
        let deadline = tokio::time::Instant::now() + UPSTREAM_TIMEOUT;
        loop {
            match tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
                // The same id as the query's, or it is not its answer.
                Ok(Ok(n)) if n >= 2 && buf[..2] == query[..2] => {
                    buf.truncate(n);
                    return Some(buf);
                }
                Ok(Ok(_)) => continue,
                _ => break,
            }
        }
    }
    None
}

async fn forward_tcp(query: &[u8], upstreams: &[SocketAddr]) -> Option<Vec<u8>> {
    for up in upstreams {
        let once = async {
            let mut s = TcpStream::connect(up).await.ok()?;
            let mut out = (query.len() as u16).to_be_bytes().to_vec();
            out.extend_from_slice(query);
            s.write_all(&out).await.ok()?;
            let n = s.read_u16().await.ok()? as usize;
            let mut buf = vec![0u8; n];
            s.read_exact(&mut buf).await.ok()?;
            Some(buf)
        };
        if let Ok(Some(r)) = tokio::time::timeout(UPSTREAM_TIMEOUT, once).await {
            return Some(r);
        }
    }
    None
}

/// Whom the server answers: the tasks' subnet and this host (its own addresses on the
/// bridge are in that subnet; loopback). Anyone else routed to the gateway gets nothing:
/// it is not an open resolver.
#[derive(Debug, Clone, Copy)]
pub struct Allowed {
    pub net: Ipv4Addr,
    pub prefix: u8,
}

impl Allowed {
    fn allows(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V4(v) => v,
            IpAddr::V6(v) => match v.to_ipv4_mapped() {
                Some(v) => v,
                None => return v.is_loopback(),
            },
        };
        let mask = u32::MAX.checked_shl(32 - self.prefix as u32).unwrap_or(0);
        ip.is_loopback() || u32::from(ip) & mask == u32::from(self.net) & mask
    }
}

/// The running server; stopped (and its announcement removed) when dropped or by
/// [`Server::stop`].
pub struct Server {
    pub addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
    marker: Option<PathBuf>,
}

impl Server {
    /// Listens on `addr` (UDP and TCP) and answers from `records`, forwarding the rest to
    /// `upstreams`; only clients `allowed` are answered.
    pub async fn start(
        addr: SocketAddr,
        records: Arc<Records>,
        upstreams: Arc<Upstreams>,
        allowed: Allowed,
    ) -> Result<Server, DnsError> {
        let udp = UdpSocket::bind(addr)
            .await
            .map_err(|source| DnsError::Listen {
                addr,
                proto: "udp",
                source,
            })?;
        // TCP on the same port (port 0: the one UDP got).
        let addr = udp.local_addr().unwrap_or(addr);
        let tcp = TcpListener::bind(addr)
            .await
            .map_err(|source| DnsError::Listen {
                addr,
                proto: "tcp",
                source,
            })?;
        let limit = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
        let udp = Arc::new(udp);
        let u = {
            let (records, upstreams, limit) = (records.clone(), upstreams.clone(), limit.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65535];
                loop {
                    let Ok((n, peer)) = udp.recv_from(&mut buf).await else {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    if !allowed.allows(peer.ip()) {
                        continue;
                    }
                    let Ok(permit) = limit.clone().acquire_owned().await else {
                        return;
                    };
                    let query = buf[..n].to_vec();
                    let (udp, records, upstreams) =
                        (udp.clone(), records.clone(), upstreams.clone());
                    tokio::spawn(async move {
                        let _permit = permit;
                        let out = match answer(&query, &records) {
                            Answer::Local(v) => Some(v),
                            Answer::Drop => None,
                            Answer::Forward => match forward_udp(&query, &upstreams.get()).await {
                                Some(v) => Some(v),
                                None => servfail(&query),
                            },
                        };
                        if let Some(v) = out {
                            let _ = udp.send_to(&v, peer).await;
                        }
                    });
                }
            })
        };
        let t = tokio::spawn(async move {
            loop {
                let Ok((conn, peer)) = tcp.accept().await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                if !allowed.allows(peer.ip()) {
                    continue;
                }
                let Ok(permit) = limit.clone().acquire_owned().await else {
                    return;
                };
                let (records, upstreams) = (records.clone(), upstreams.clone());
                tokio::spawn(async move {
                    let _permit = permit;
                    let _ = serve_tcp(conn, &records, &upstreams).await;
                });
            }
        });
        tracing::info!(%addr, "DNS server for tasks listening");
        Ok(Server {
            addr,
            tasks: vec![u, t],
            marker: None,
        })
    }

    /// Tells the supervisors of new tasks that it answers (see [`announced`]): the file
    /// `path` names its address and this process.
    pub fn announce(&mut self, path: &Path) -> Result<(), DnsError> {
        let err = |source| DnsError::Marker {
            path: path.into(),
            source,
        };
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d).map_err(err)?;
        }
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, format!("{} {}\n", self.addr.ip(), std::process::id()))
            .map_err(err)?;
        std::fs::rename(&tmp, path).map_err(err)?;
        self.marker = Some(path.into());
        Ok(())
    }

    /// Stops answering and removes the announcement.
    pub fn stop(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
        if let Some(m) = self.marker.take() {
            let _ = std::fs::remove_file(m);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn serve_tcp(mut conn: TcpStream, records: &Records, upstreams: &Upstreams) -> Option<()> {
    loop {
        let n = tokio::time::timeout(TCP_IDLE, conn.read_u16())
            .await
            .ok()?
            .ok()? as usize;
        let mut query = vec![0u8; n];
        tokio::time::timeout(TCP_IDLE, conn.read_exact(&mut query))
            .await
            .ok()?
            .ok()?;
        let out = match answer(&query, records) {
            Answer::Local(v) => v,
            Answer::Drop => return None,
            Answer::Forward => match forward_tcp(&query, &upstreams.get()).await {
                Some(v) => v,
                None => servfail(&query)?,
            },
        };
        let mut framed = (out.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&out);
        conn.write_all(&framed).await.ok()?;
    }
}

/// Where `serve` announces its DNS server for the tasks of one bridge: beside the
/// bridge's network state (`crate::supervisor::isolation::network::state_dir`).
pub fn marker_path(state_dir: &Path) -> PathBuf {
    state_dir.join("dns-server")
}

/// The address of the DNS server announced at `path`, when the `serve` that announced it
/// still runs (a `serve` that died leaves the file: its tasks then use the host's
/// resolvers again, as before it ran).
pub fn announced(path: &Path) -> Option<Ipv4Addr> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut parts = text.split_whitespace();
    let ip: Ipv4Addr = parts.next()?.parse().ok()?;
    let pid: u32 = parts.next()?.parse().ok()?;
    Path::new(&format!("/proc/{pid}")).exists().then_some(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An upstream resolver on loopback answering every query (UDP and TCP on one port)
    /// with `192.0.2.1`.
    async fn fake_upstream() -> SocketAddr {
        fn reply(q: &[u8]) -> Vec<u8> {
            let q = Message::from_vec(q).unwrap();
            let mut r = Message::response(q.metadata.id, OpCode::Query);
            let name = q.queries[0].name().clone();
            r.add_query(q.queries[0].clone());
            r.add_answer(Rr::from_rdata(
                name,
                5,
                RData::A(A(Ipv4Addr::new(192, 0, 2, 1))),
            ));
            r.to_vec().unwrap()
        }
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        let tcp = TcpListener::bind(addr).await.unwrap();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok((n, peer)) = udp.recv_from(&mut buf).await {
                let _ = udp.send_to(&reply(&buf[..n]), peer).await;
            }
        });
        tokio::spawn(async move {
            while let Ok((mut c, _)) = tcp.accept().await {
                let n = c.read_u16().await.unwrap() as usize;
                let mut q = vec![0u8; n];
                c.read_exact(&mut q).await.unwrap();
                let r = reply(&q);
                let mut out = (r.len() as u16).to_be_bytes().to_vec();
                out.extend_from_slice(&r);
                c.write_all(&out).await.unwrap();
            }
        });
        addr
    }

    fn upstreams(addrs: Vec<SocketAddr>) -> Arc<Upstreams> {
        Arc::new(Upstreams {
            path: "/nonexistent/resolv.conf".into(),
            cached: Mutex::new((None, addrs)),
        })
    }

    async fn ask_udp(server: SocketAddr, q: &[u8]) -> Message {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        s.send_to(q, server).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), s.recv(&mut buf))
            .await
            .unwrap()
            .unwrap();
        Message::from_vec(&buf[..n]).unwrap()
    }

    fn allowed() -> Allowed {
        Allowed {
            net: Ipv4Addr::new(10, 94, 0, 0),
            prefix: 16,
        }
    }

    #[tokio::test]
    async fn the_server_answers_its_names_and_forwards_the_rest_over_udp_and_tcp() {
        let up = fake_upstream().await;
        let mut server = Server::start(
            "127.0.0.1:0".parse().unwrap(),
            Arc::new(table()),
            upstreams(vec![up]),
            allowed(),
        )
        .await
        .unwrap();
        let at = server.addr;
        let m = ask_udp(
            at,
            &query("web-1.us-east-1.elb.amazonaws.com.", RecordType::A),
        )
        .await;
        assert!(m.metadata.authoritative);
        assert_eq!(m.answers[0].data, RData::A(A(Ipv4Addr::new(10, 93, 1, 2))));
        let m = ask_udp(at, &query("example.com.", RecordType::A)).await;
        assert_eq!(m.metadata.id, 0x1234);
        assert_eq!(m.answers[0].data, RData::A(A(Ipv4Addr::new(192, 0, 2, 1))));

        // TCP: several queries on one connection, ours and forwarded.
        let mut c = TcpStream::connect(at).await.unwrap();
        for (name, want) in [
            ("example.org.", Ipv4Addr::new(192, 0, 2, 1)),
            (
                "web-1.us-east-1.elb.amazonaws.com.",
                Ipv4Addr::new(10, 93, 1, 2),
            ),
        ] {
            let q = query(name, RecordType::A);
            let mut out = (q.len() as u16).to_be_bytes().to_vec();
            out.extend_from_slice(&q);
            c.write_all(&out).await.unwrap();
            let n = c.read_u16().await.unwrap() as usize;
            let mut r = vec![0u8; n];
            c.read_exact(&mut r).await.unwrap();
            let m = Message::from_vec(&r).unwrap();
            assert_eq!(m.answers[0].data, RData::A(A(want)), "{name}");
        }

        // The announcement names the server while it runs, and goes with it.
        let d = tempfile::tempdir().unwrap();
        let marker = marker_path(d.path());
        server.announce(&marker).unwrap();
        assert_eq!(announced(&marker), Some(Ipv4Addr::LOCALHOST));
        server.stop();
        assert!(!marker.exists());
    }

    #[tokio::test]
    async fn no_upstream_answering_is_servfail() {
        // A port nothing listens on: the query is refused at once.
        let closed = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let dead = closed.local_addr().unwrap();
        drop(closed);
        let server = Server::start(
            "127.0.0.1:0".parse().unwrap(),
            Arc::new(Records::default()),
            upstreams(vec![dead]),
            allowed(),
        )
        .await
        .unwrap();
        let m = ask_udp(server.addr, &query("example.com.", RecordType::A)).await;
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
        assert_eq!(m.metadata.id, 0x1234);
    }

    fn query(name: &str, t: RecordType) -> Vec<u8> {
        let mut m = Message::new(0x1234, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(hickory_proto::op::Query::query(
            Name::from_ascii(name).unwrap(),
            t,
        ));
        m.to_vec().unwrap()
    }

    fn table() -> Records {
        let r = Records::default();
        r.replace(
            "elb",
            BTreeMap::from([(
                "Web-1.us-east-1.elb.amazonaws.com".to_string(),
                vec![Record {
                    data: Data::A(Ipv4Addr::new(10, 93, 1, 2)),
                    ttl: 60,
                }],
            )]),
        );
        r.replace(
            "cloudmap",
            BTreeMap::from([(
                "_web._tcp.local.".to_string(),
                vec![Record {
                    data: Data::Srv {
                        priority: 1,
                        weight: 1,
                        port: 8080,
                        target: "web.local".into(),
                    },
                    ttl: 15,
                }],
            )]),
        );
        r
    }

    fn local(a: Answer) -> Message {
        match a {
            Answer::Local(v) => Message::from_vec(&v).unwrap(),
            other => panic!("not answered here: {other:?}"),
        }
    }

    #[test]
    fn a_name_of_the_table_is_answered_whatever_its_case() {
        let r = table();
        let m = local(answer(
            &query("web-1.US-EAST-1.elb.amazonaws.com.", RecordType::A),
            &r,
        ));
        assert_eq!(m.metadata.id, 0x1234);
        assert_eq!(m.metadata.message_type, MessageType::Response);
        assert!(m.metadata.authoritative && m.metadata.recursion_desired);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(m.answers.len(), 1);
        assert_eq!(m.answers[0].ttl, 60);
        assert_eq!(m.answers[0].data, RData::A(A(Ipv4Addr::new(10, 93, 1, 2))));
    }

    #[test]
    fn another_type_of_a_known_name_is_an_empty_answer_and_srv_is_served() {
        let r = table();
        let m = local(answer(
            &query("web-1.us-east-1.elb.amazonaws.com.", RecordType::AAAA),
            &r,
        ));
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty());
        let m = local(answer(&query("_web._tcp.local.", RecordType::SRV), &r));
        assert_eq!(m.answers.len(), 1);
        match &m.answers[0].data {
            RData::SRV(s) => {
                assert_eq!(s.port, 8080);
                assert_eq!(s.target.to_ascii(), "web.local.");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn other_names_are_forwarded_and_garbage_dropped() {
        let r = table();
        assert_eq!(
            answer(&query("example.com.", RecordType::A), &r),
            Answer::Forward
        );
        assert_eq!(answer(b"\x00\x01garbage", &r), Answer::Drop);
        // A source replacing its names drops the old ones.
        r.replace("elb", BTreeMap::new());
        assert_eq!(
            answer(
                &query("web-1.us-east-1.elb.amazonaws.com.", RecordType::A),
                &r
            ),
            Answer::Forward
        );
    }

    #[test]
    fn a_zone_s_unknown_names_are_nxdomain_and_limits_pick_records() {
        let r = Records::default();
        let a = |last: u8| Record {
            data: Data::A(Ipv4Addr::new(10, 94, 0, last)),
            ttl: 10,
        };
        r.replace_source(
            "cloudmap",
            Source {
                names: BTreeMap::from([
                    ("b.corp.local".to_string(), (2..12).map(a).collect()),
                    ("w.corp.local".to_string(), vec![a(2), a(3)]),
                    ("empty.corp.local".to_string(), vec![]),
                ]),
                zones: vec!["Corp.Local".into()],
                limits: HashMap::from([
                    ("b.corp.local".to_string(), 8),
                    ("w.corp.local".to_string(), 1),
                ]),
            },
        );
        let m = local(answer(&query("b.corp.local.", RecordType::A), &r));
        assert_eq!(m.answers.len(), 8, "MULTIVALUE: eight of ten");
        assert!(m.answers.iter().all(|x| x.ttl == 10));
        let m = local(answer(&query("w.corp.local.", RecordType::A), &r));
        assert_eq!(m.answers.len(), 1, "WEIGHTED: one");
        let m = local(answer(&query("empty.corp.local.", RecordType::A), &r));
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty());
        let m = local(answer(&query("gone.corp.local.", RecordType::A), &r));
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert!(m.metadata.authoritative);
        let m = local(answer(&query("corp.local.", RecordType::A), &r));
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(
            answer(&query("corp.localhost.", RecordType::A), &r),
            Answer::Forward
        );
    }

    #[test]
    fn servfail_keeps_the_id_and_question() {
        let q = query("example.com.", RecordType::A);
        let m = Message::from_vec(&servfail(&q).unwrap()).unwrap();
        assert_eq!(m.metadata.id, 0x1234);
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
        assert_eq!(m.queries.len(), 1);
    }

    #[test]
    fn upstreams_are_the_host_s_nameservers_or_the_fallback() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("resolv.conf");
        std::fs::write(
            &p,
            "search x\nnameserver 127.0.0.53\nnameserver fe80::1%eth0\n",
        )
        .unwrap();
        let u = Upstreams::new(p.clone());
        assert_eq!(
            u.get(),
            vec![
                "127.0.0.53:53".parse::<SocketAddr>().unwrap(),
                "[fe80::1]:53".parse().unwrap()
            ]
        );
        let u = Upstreams::new(d.path().join("none"));
        assert_eq!(
            u.get(),
            vec![
                "8.8.8.8:53".parse::<SocketAddr>().unwrap(),
                "8.8.4.4:53".parse().unwrap()
            ]
        );
    }

    #[test]
    fn only_the_tasks_subnet_and_loopback_are_answered() {
        let a = Allowed {
            net: Ipv4Addr::new(10, 94, 0, 0),
            prefix: 16,
        };
        assert!(a.allows("10.94.3.4".parse().unwrap()));
        assert!(a.allows("127.0.0.1".parse().unwrap()));
        assert!(a.allows("::1".parse().unwrap()));
        assert!(!a.allows("192.168.1.9".parse().unwrap()));
    }

    #[test]
    fn an_announcement_counts_while_its_process_runs() {
        let d = tempfile::tempdir().unwrap();
        let p = marker_path(d.path());
        assert_eq!(announced(&p), None);
        std::fs::write(&p, format!("10.94.0.1 {}\n", std::process::id())).unwrap();
        assert_eq!(announced(&p), Some(Ipv4Addr::new(10, 94, 0, 1)));
        std::fs::write(&p, "10.94.0.1 4000000000\n").unwrap();
        assert_eq!(announced(&p), None);
    }
}
