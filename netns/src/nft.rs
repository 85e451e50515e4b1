//! Our own nftables table (egress masquerade, port DNAT maps) as an `nft -f -` script,
//! for a configuration that names an `nft` binary (`NetworkConfig::nft`); by default the
//! same ruleset goes through nf_tables netlink ([`crate::nfnl::create_table_ops`]). Either
//! way it is written in one atomic batch when a network's first task needs it, and no
//! other table is ever read, flushed or edited.
//!
//! Port publishing is two maps (tcp, udp) from host port to `task-ip . container-port`,
//! so a task's ports are added and removed as map elements without rule handles —
//! through nf_tables netlink on a kept socket ([`crate::nfnl`]), not by `nft`.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::ipam::Subnet;

/// A failed `nft` run.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("failed to run {nft} to {what}")]
    Spawn {
        nft: PathBuf,
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("failed to {what}: nft said: {stderr}")]
    Rejected { what: String, stderr: String },
    #[error("failed to {what} (nf_tables netlink)")]
    Netlink {
        what: String,
        #[source]
        source: io::Error,
    },
}

/// Finds the `nft` binary in the usual sbin directories and `$PATH`.
pub fn find_nft() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    ["/usr/sbin", "/sbin", "/usr/local/sbin"]
        .iter()
        .map(PathBuf::from)
        .chain(std::env::split_paths(&path))
        .map(|d| d.join("nft"))
        .find(|p| p.is_file())
}

/// The table name for bridge `bridge` (one table per bridge keeps networks apart).
pub fn table_name(bridge: &str) -> String {
    format!("minifargate_{}", bridge.replace('-', "_"))
}

/// The batch that creates the table. A stale copy left by a crash is deleted first,
/// through netlink ([`crate::nfnl::Op::DelTable`]): a delete in `nft`'s own batch would
/// make its exit wait for an RCU grace period (see [`crate::nfnl`]).
pub fn create_table_script(table: &str, bridge: &str, subnet: Subnet) -> String {
    format!(
        r#"table ip {table} {{
  map tcp_ports {{ type inet_service : ipv4_addr . inet_service; }}
  map udp_ports {{ type inet_service : ipv4_addr . inet_service; }}
  chain prerouting {{
    type nat hook prerouting priority dstnat; policy accept;
    fib daddr type local dnat to tcp dport map @tcp_ports
    fib daddr type local dnat to udp dport map @udp_ports
  }}
  chain output {{
    type nat hook output priority -100; policy accept;
    fib daddr type local dnat to tcp dport map @tcp_ports
    fib daddr type local dnat to udp dport map @udp_ports
  }}
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr {subnet} ip daddr != {subnet} rt classid != {realm} masquerade
    oifname "{bridge}" ip saddr 127.0.0.0/8 masquerade
    oifname "{bridge}" ip saddr {subnet} ct status dnat masquerade
  }}
}}
"#,
        realm = crate::routes::PEER_REALM
    )
}

/// Runs `script` through `nft -f -` as one atomic transaction.
pub fn run(nft: &Path, script: &str, what: &str) -> Result<(), NftError> {
    let spawn_err = |source| NftError::Spawn {
        nft: nft.into(),
        what: what.into(),
        source,
    };
    let mut child = Command::new(nft)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    let wrote = child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(script.as_bytes());
    let out = child.wait_with_output().map_err(spawn_err)?;
    if !out.status.success() {
        return Err(NftError::Rejected {
            what: what.into(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    wrote.map_err(spawn_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_script_masquerades_only_our_subnet() {
        let s = create_table_script("minifargate_mfg0", "mfg0", "10.94.0.0/16".parse().unwrap());
        assert!(s.contains(
            "ip saddr 10.94.0.0/16 ip daddr != 10.94.0.0/16 rt classid != 109 masquerade"
        ));
        assert!(s.starts_with("table ip minifargate_mfg0 {\n"));
        assert!(!s.contains("delete"));
        assert!(!s.contains("flush"));
    }

    #[test]
    fn table_name_is_an_identifier() {
        assert_eq!(table_name("mfg-t1"), "minifargate_mfg_t1");
    }
}
