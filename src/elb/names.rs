//! Where the load balancers answer and by what name: each one's address (`model::address`)
//! on the task bridge, so the box and its tasks reach it; its `DNSName` in a marked block
//! of the host's hosts file (curl, Python, the SDKs on the box) and in the table of the
//! tasks' DNS server (`crate::dns`). `serve` keeps them in line with the load balancers
//! (`Names::sync`, on each change) and takes them away when it stops (`Names::clear`).
//! The same block names the registry at its ECR host name (`Names::set_registry`,
//! docs/registry.md "The repository URI on the box"). docs/load-balancing.md, "Names".

use super::Elb;
use std::collections::BTreeMap;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The TTL of a load balancer's A record (ELB's: 60 s).
pub const TTL: u32 = 60;
/// The DNS table's source name of the load balancers.
const SOURCE: &str = "elb";

#[derive(Debug, thiserror::Error)]
pub enum NamesError {
    #[error("failed to read the hosts file {path}")]
    ReadHosts {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to write the hosts file {path}")]
    WriteHosts {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Elb {
    /// Each load balancer's `DNSName` and address.
    pub fn names(&self) -> BTreeMap<String, Ipv4Addr> {
        if !self.active() {
            return BTreeMap::new();
        }
        let s = self.lock();
        s.lbs
            .values()
            .map(|lb| (lb.dns_name.to_ascii_lowercase(), super::model::address(lb)))
            .collect()
    }
}

/// Where the load balancers' addresses go.
pub enum Place {
    /// The task bridge: reachable from the box and its tasks.
    Bridge(Box<netns::Network>),
    /// A link of the box (`lo` in cluster mode: reachable from this box only).
    Link(String),
    /// Nowhere (the bridge could not be made: logged).
    Nowhere,
}

impl Place {
    fn add(&self, ip: Ipv4Addr) -> Result<(), netns::Error> {
        match self {
            Place::Bridge(net) => net.add_bridge_address(ip),
            Place::Link(l) => netns::add_link_address(l, ip),
            Place::Nowhere => Ok(()),
        }
    }

    fn del(&self, ip: Ipv4Addr) -> Result<bool, netns::Error> {
        match self {
            Place::Bridge(net) => net.del_bridge_address(ip),
            Place::Link(l) => netns::del_link_address(l, ip),
            Place::Nowhere => Ok(false),
        }
    }
}

/// What `serve` has put in place for the load balancers' names.
pub struct Names {
    place: Place,
    hosts: Option<PathBuf>,
    /// This `serve`'s mark in the hosts file (its root: two `serve`s of two roots keep
    /// their own blocks).
    tag: String,
    records: Arc<crate::dns::Records>,
    have: Option<BTreeMap<String, Ipv4Addr>>,
    /// The registry's ECR host name and its loopback address (the hosts file only: a
    /// task's namespace has its own loopback, and tasks pull through their supervisor).
    registry: Option<(String, Ipv4Addr)>,
}

impl Names {
    pub fn new(
        place: Place,
        hosts: Option<PathBuf>,
        root: &Path,
        records: Arc<crate::dns::Records>,
    ) -> Names {
        Names {
            place,
            hosts,
            tag: root.display().to_string(),
            records,
            have: None,
            registry: None,
        }
    }

    /// Names the registry at `entry` (its ECR host name and address) in the hosts block
    /// from now on; None takes it out. Written at once.
    pub fn set_registry(&mut self, entry: Option<(String, Ipv4Addr)>) {
        if self.registry == entry {
            return;
        }
        self.registry = entry;
        let lbs = self.have.clone().unwrap_or_default();
        self.write_hosts(&lbs);
    }

    /// The hosts block: the load balancers `lbs` and the registry's name.
    fn write_hosts(&self, lbs: &BTreeMap<String, Ipv4Addr>) {
        let Some(path) = &self.hosts else { return };
        let mut entries = lbs.clone();
        if let Some((name, ip)) = &self.registry {
            entries.insert(name.to_ascii_lowercase(), *ip);
        }
        if let Err(e) = write_block(path, &self.tag, &entries) {
            tracing::warn!(error = %crate::errors::error_chain(&e), "cannot write the load balancers' and the registry's names in the hosts file");
        }
    }

    /// Puts `want` (name -> address) in place: the addresses on the bridge, the hosts
    /// block, the DNS records. The first call writes everything (the hosts block is
    /// rewritten from the store at start) and takes off the bridge the load balancers'
    /// addresses (`/32`s of `MINIFARGATE_LB_SUBNET`) that `want` has not: a `serve`
    /// killed with SIGKILL left them, for load balancers gone from its store since; later
    /// calls write what changed. Failures are logged: a name that cannot be written does
    /// not stop the load balancers.
    pub fn sync(&mut self, want: &BTreeMap<String, Ipv4Addr>) {
        let have = self.have.clone().unwrap_or_default();
        if self.have.is_some() && &have == want {
            return;
        }
        if self.have.is_none() {
            self.remove_stale(want);
        }
        let keep: Vec<Ipv4Addr> = want.values().copied().collect();
        for ip in have.values().filter(|ip| !keep.contains(ip)) {
            if let Err(e) = self.place.del(*ip) {
                tracing::warn!(%ip, error = %crate::errors::error_chain(&e), "cannot remove a load balancer's address");
            }
        }
        for (name, ip) in want {
            if let Err(e) = self.place.add(*ip) {
                tracing::warn!(%ip, %name, error = %crate::errors::error_chain(&e), "cannot put a load balancer's address in place");
            }
        }
        self.records.replace(
            SOURCE,
            want.iter()
                .map(|(n, ip)| {
                    (
                        n.clone(),
                        vec![crate::dns::Record {
                            data: crate::dns::Data::A(*ip),
                            ttl: TTL,
                        }],
                    )
                })
                .collect(),
        );
        self.write_hosts(want);
        self.have = Some(want.clone());
    }

    /// Takes the load balancers' addresses that `want` has not off the bridge (only the
    /// bridge: it is this `serve`'s own; a link such as `lo` in cluster mode may hold
    /// another serve's on the same host).
    fn remove_stale(&self, want: &BTreeMap<String, Ipv4Addr>) {
        let Place::Bridge(net) = &self.place else {
            return;
        };
        let subnet = crate::config::get().lb_subnet;
        let on = match net.bridge_host_addresses() {
            Ok(on) => on,
            Err(e) => {
                tracing::warn!(error = %crate::errors::error_chain(&e), "cannot list the bridge's addresses: a killed serve's load balancer addresses may stay");
                return;
            }
        };
        for ip in on {
            if subnet.contains(ip) && !want.values().any(|w| *w == ip) {
                match net.del_bridge_address(ip) {
                    Ok(_) => {
                        tracing::info!(%ip, "removed the address of a load balancer that no longer exists (left by a serve that was killed)")
                    }
                    Err(e) => {
                        tracing::warn!(%ip, error = %crate::errors::error_chain(&e), "cannot remove a stale load balancer address")
                    }
                }
            }
        }
    }

    /// Takes everything away (`serve` stops): addresses, hosts block (the registry's name
    /// too), records.
    pub fn clear(&mut self) {
        self.registry = None;
        self.sync(&BTreeMap::new());
        self.write_hosts(&BTreeMap::new());
    }
}

fn begin(tag: &str) -> String {
    format!(
        "# BEGIN minifargate serve {tag}: load balancers and the registry (written by serve, do not edit)"
    )
}

/// The block's first line as builds before the registry's name wrote it (a block a
/// killed serve of such a build left is still replaced).
fn begin_before_registry(tag: &str) -> String {
    format!("# BEGIN minifargate serve {tag}: load balancers (written by serve, do not edit)")
}

fn end(tag: &str) -> String {
    format!("# END minifargate serve {tag}")
}

/// `text` with this `serve`'s block naming `entries` (none: no block): the old block's
/// lines go, the new block is appended; every other line is kept as it was.
pub fn with_block(text: &str, tag: &str, entries: &BTreeMap<String, Ipv4Addr>) -> String {
    let (b, e) = (begin(tag), end(tag));
    let old = begin_before_registry(tag);
    let mut out = String::with_capacity(text.len());
    let mut inside = false;
    for line in text.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\n', '\r']);
        if !inside && (bare == b || bare == old) {
            inside = true;
            continue;
        }
        if inside {
            if bare == e {
                inside = false;
            }
            continue;
        }
        out.push_str(line);
    }
    if !entries.is_empty() {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&b);
        out.push('\n');
        for (name, ip) in entries {
            out.push_str(&format!("{ip}\t{name}\n"));
        }
        out.push_str(&e);
        out.push('\n');
    }
    out
}

/// Rewrites the block in the hosts file at `path` atomically (a new file renamed over it,
/// with its mode), in place when it cannot be replaced (a hosts file bind-mounted into a
/// container); nothing is written when nothing changes.
pub fn write_block(
    path: &Path,
    tag: &str,
    entries: &BTreeMap<String, Ipv4Addr>,
) -> Result<(), NamesError> {
    let read_err = |source| NamesError::ReadHosts {
        path: path.into(),
        source,
    };
    let write_err = |source| NamesError::WriteHosts {
        path: path.into(),
        source,
    };
    let (text, meta) = match std::fs::read_to_string(path) {
        Ok(t) => (t, std::fs::metadata(path).ok()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (String::new(), None),
        Err(e) => return Err(read_err(e)),
    };
    let new = with_block(&text, tag, entries);
    if new == text {
        return Ok(());
    }
    let dir = path.parent().unwrap_or(Path::new("/"));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "hosts".into());
    let tmp = dir.join(format!(".{name}.minifargate-{}", std::process::id()));
    let replaced = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(new.as_bytes())?;
        if let Some(m) = &meta {
            f.set_permissions(m.permissions())?;
        } else {
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        }
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    match replaced {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            // EBUSY: a mount point (a bind-mounted hosts file) cannot be renamed over.
            if e.raw_os_error() == Some(nix::libc::EBUSY) {
                std::fs::write(path, new).map_err(write_err)
            } else {
                Err(write_err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(v: &[(&str, [u8; 4])]) -> BTreeMap<String, Ipv4Addr> {
        v.iter()
            .map(|(n, ip)| (n.to_string(), Ipv4Addr::from(*ip)))
            .collect()
    }

    #[test]
    fn the_block_is_added_replaced_and_removed_leaving_other_lines_alone() {
        let host = "127.0.0.1 localhost\n# mine\n10.0.0.1 db\n";
        let one = with_block(host, "/r", &entries(&[("a.elb", [10, 93, 0, 5])]));
        assert_eq!(
            one,
            format!(
                "{host}# BEGIN minifargate serve /r: load balancers and the registry (written by serve, do not edit)\n\
                 10.93.0.5\ta.elb\n# END minifargate serve /r\n"
            )
        );
        // Another serve's block and a line added after ours are kept.
        let other = with_block(
            &format!("{one}1.2.3.4 later\n"),
            "/other",
            &entries(&[("b.elb", [10, 93, 0, 6])]),
        );
        let two = with_block(
            &other,
            "/r",
            &entries(&[("a.elb", [10, 93, 0, 5]), ("c.elb", [10, 93, 0, 7])]),
        );
        assert!(two.starts_with(&format!(
            "{host}1.2.3.4 later\n# BEGIN minifargate serve /other"
        )));
        assert!(two.contains("10.93.0.5\ta.elb\n10.93.0.7\tc.elb\n# END minifargate serve /r\n"));
        let gone = with_block(
            &with_block(&two, "/r", &BTreeMap::new()),
            "/other",
            &BTreeMap::new(),
        );
        assert_eq!(gone, format!("{host}1.2.3.4 later\n"));
        // A file without a final newline gets one before the block.
        assert_eq!(
            with_block("x y", "/r", &entries(&[("a", [1, 2, 3, 4])]))
                .lines()
                .next(),
            Some("x y")
        );
    }

    #[test]
    fn the_registry_s_name_joins_the_block_until_serve_stops() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("hosts");
        // A block a killed serve of a build before the registry's name left.
        std::fs::write(
            &p,
            "127.0.0.1 localhost\n# BEGIN minifargate serve /r: load balancers (written by serve, do not edit)\n\
             10.93.0.9\told.elb\n# END minifargate serve /r\n",
        )
        .unwrap();
        let mut n = Names::new(
            Place::Nowhere,
            Some(p.clone()),
            Path::new("/r"),
            Arc::new(crate::dns::Records::default()),
        );
        let reg = "000000000000.dkr.ecr.us-east-1.amazonaws.com";
        n.set_registry(Some((reg.into(), Ipv4Addr::new(127, 31, 4, 5))));
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains(&format!("127.31.4.5\t{reg}\n")), "{text}");
        assert!(
            !text.contains("old.elb"),
            "the old block is replaced: {text}"
        );
        n.sync(&entries(&[("a.elb", [10, 93, 0, 5])]));
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            text.contains("10.93.0.5\ta.elb\n") && text.contains(&format!("127.31.4.5\t{reg}\n")),
            "{text}"
        );
        n.sync(&BTreeMap::new());
        assert!(std::fs::read_to_string(&p).unwrap().contains(reg));
        n.clear();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "127.0.0.1 localhost\n"
        );
    }

    #[test]
    fn the_file_is_replaced_with_its_mode_and_left_untouched_when_nothing_changes() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("hosts");
        std::fs::write(&p, "127.0.0.1 localhost\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_block(&p, "/r", &entries(&[("a.elb", [10, 93, 0, 5])])).unwrap();
        assert!(
            std::fs::read_to_string(&p)
                .unwrap()
                .contains("10.93.0.5\ta.elb\n")
        );
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o640
        );
        let before = std::fs::metadata(&p).unwrap().modified().unwrap();
        write_block(&p, "/r", &entries(&[("a.elb", [10, 93, 0, 5])])).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().modified().unwrap(), before);
        write_block(&p, "/r", &BTreeMap::new()).unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "127.0.0.1 localhost\n"
        );
        assert_eq!(
            std::fs::read_dir(d.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }

    #[test]
    fn addresses_stay_in_the_range_and_off_its_ends() {
        let r: netns::Subnet = "10.93.0.0/16".parse().unwrap();
        for id in ["0000000000000000", "ffffffffffffffff", "50dc6c495c0c9188"] {
            let ip = super::super::model::address_in(&format!("arn:x:loadbalancer/app/w/{id}"), r);
            assert!(
                r.contains(ip) && ip != r.network() && ip != r.broadcast(),
                "{ip}"
            );
        }
    }
}
