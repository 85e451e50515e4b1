//! A task's `/etc/hosts` and `/etc/resolv.conf`: written under the run root for the
//! executor to bind-mount, the resolver list taken from the host minus loopback servers.
//!
//! Ref: a resolver on 127.0.0.0/8 (systemd-resolved's 127.0.0.53) is unreachable from
//! inside a netns; systemd-resolved keeps the real upstream list in
//! /run/systemd/resolve/resolv.conf, which is what Docker and podman read too.

use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

/// A failed read or write of a hosts or resolv.conf file.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("failed to read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Where the host's resolver configuration is read from.
#[derive(Debug, Clone)]
pub struct HostResolv {
    /// The host's resolv.conf (default `/etc/resolv.conf`).
    pub resolv_conf: PathBuf,
    /// systemd-resolved's upstream list (default `/run/systemd/resolve/resolv.conf`).
    pub resolved_upstream: PathBuf,
}

impl Default for HostResolv {
    fn default() -> Self {
        Self {
            resolv_conf: "/etc/resolv.conf".into(),
            resolved_upstream: "/run/systemd/resolve/resolv.conf".into(),
        }
    }
}

/// Resolvers used when the host has none a task can reach (as Docker does).
const FALLBACK_SERVERS: [&str; 2] = ["8.8.8.8", "8.8.4.4"];

/// The hosts file: localhost, the task's own name, then `extra` (name, address) pairs.
pub fn hosts(own: Option<(Ipv4Addr, &str)>, extra: &[(String, IpAddr)]) -> String {
    let mut s = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    if let Some((ip, name)) = own {
        s.push_str(&format!("{ip}\t{name}\n"));
    }
    for (name, ip) in extra {
        s.push_str(&format!("{ip}\t{name}\n"));
    }
    s
}

fn nameservers(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|v| v.split_whitespace().next()?.split('%').next()?.parse().ok())
        .collect()
}

fn is_loopback(ip: &IpAddr) -> bool {
    ip.is_loopback()
}

/// The task's resolv.conf. `servers`/`search` replace the host's when non-empty.
/// Returns the text and whether it fell back to public resolvers.
pub fn resolv_conf(
    host: &HostResolv,
    servers: &[IpAddr],
    search: &[String],
) -> Result<(String, bool), FilesError> {
    let read = |p: &Path| match fs::read_to_string(p) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(FilesError::Read {
            path: p.into(),
            source,
        }),
    };
    let mut text = read(&host.resolv_conf)?.unwrap_or_default();
    if !nameservers(&text).is_empty()
        && nameservers(&text).iter().all(is_loopback)
        && let Some(up) = read(&host.resolved_upstream)?
    {
        text = up;
    }
    let mut out = String::new();
    let mut fell_back = false;
    if servers.is_empty() {
        let usable: Vec<IpAddr> = nameservers(&text)
            .into_iter()
            .filter(|ip| !is_loopback(ip))
            .collect();
        if usable.is_empty() {
            fell_back = true;
            for s in FALLBACK_SERVERS {
                out.push_str(&format!("nameserver {s}\n"));
            }
        }
        for ip in usable {
            out.push_str(&format!("nameserver {ip}\n"));
        }
    } else {
        for ip in servers {
            out.push_str(&format!("nameserver {ip}\n"));
        }
    }
    if search.is_empty() {
        for l in text.lines().map(str::trim) {
            if l.starts_with("search ") || l.starts_with("domain ") {
                out.push_str(l);
                out.push('\n');
            }
        }
    } else {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    for l in text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("options "))
    {
        out.push_str(l);
        out.push('\n');
    }
    Ok((out, fell_back))
}

/// Writes `text` to `path`.
pub fn write(path: &Path, text: &str) -> Result<(), FilesError> {
    fs::write(path, text).map_err(|source| FilesError::Write {
        path: path.into(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(dir: &Path, etc: &str, upstream: Option<&str>) -> HostResolv {
        let h = HostResolv {
            resolv_conf: dir.join("resolv.conf"),
            resolved_upstream: dir.join("up.conf"),
        };
        fs::write(&h.resolv_conf, etc).unwrap();
        if let Some(u) = upstream {
            fs::write(&h.resolved_upstream, u).unwrap();
        }
        h
    }

    #[test]
    fn systemd_resolved_stub_is_replaced_by_its_upstream() {
        let d = tempfile::tempdir().unwrap();
        let h = host(
            d.path(),
            "nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch corp.example\n",
            Some("nameserver 10.0.0.2\nnameserver 10.0.0.3\nsearch corp.example\n"),
        );
        let (text, fell_back) = resolv_conf(&h, &[], &[]).unwrap();
        assert_eq!(
            text,
            "nameserver 10.0.0.2\nnameserver 10.0.0.3\nsearch corp.example\n"
        );
        assert!(!fell_back);
    }

    #[test]
    fn loopback_servers_are_skipped_and_options_kept() {
        let d = tempfile::tempdir().unwrap();
        let h = host(
            d.path(),
            "nameserver 127.0.0.1\nnameserver 192.0.2.53\noptions ndots:2\n",
            None,
        );
        let (text, _) = resolv_conf(&h, &[], &[]).unwrap();
        assert_eq!(text, "nameserver 192.0.2.53\noptions ndots:2\n");
    }

    #[test]
    fn only_loopback_falls_back_to_public_resolvers() {
        let d = tempfile::tempdir().unwrap();
        let h = host(d.path(), "nameserver ::1\n", None);
        let (text, fell_back) = resolv_conf(&h, &[], &[]).unwrap();
        assert!(fell_back);
        assert_eq!(text, "nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
    }

    #[test]
    fn dns_servers_and_search_domains_override() {
        let d = tempfile::tempdir().unwrap();
        let h = host(d.path(), "nameserver 192.0.2.53\nsearch a.example\n", None);
        let (text, _) = resolv_conf(
            &h,
            &["10.1.1.1".parse().unwrap()],
            &["b.example".into(), "c.example".into()],
        )
        .unwrap();
        assert_eq!(text, "nameserver 10.1.1.1\nsearch b.example c.example\n");
    }

    #[test]
    fn hosts_has_localhost_own_name_and_extras() {
        let t = hosts(
            Some((Ipv4Addr::new(10, 94, 0, 5), "ip-10-94-0-5")),
            &[("db".into(), "10.94.0.9".parse().unwrap())],
        );
        assert_eq!(
            t,
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n10.94.0.5\tip-10-94-0-5\n10.94.0.9\tdb\n"
        );
    }
}
