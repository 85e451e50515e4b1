//! ECR fixtures: the registry answers at the ECR name on 127.0.0.1:443 (machine-wide, so
//! serialized across test binaries by a lock) and `minifargate` runs in a private mount
//! namespace whose /etc/hosts maps that name to 127.0.0.1; the host's file is untouched.

use super::cli::{Mf, bin};
use std::process::Command;

pub const ECR_HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
/// What moto's GetAuthorizationToken hands out for account 123456789012.
pub const ECR_PASSWORD: &str = "123456789012-auth-token";

/// Port 443 is machine-wide: hold an exclusive lock on a well-known file while using
/// it, so test binaries of several checkouts never fight over it.
pub struct Port443Lock(#[allow(dead_code)] std::fs::File);

pub fn lock_port_443() -> Port443Lock {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open("/tmp/minifargate-test-port443.lock")
        .unwrap();
    rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive).unwrap();
    Port443Lock(f)
}

/// `minifargate ARGS` inside a private mount namespace whose /etc/hosts maps the
/// ECR name to 127.0.0.1.
pub fn in_private_hosts(mf: &Mf, hosts: &std::path::Path, args: &[&str]) -> std::process::Output {
    let mut c = Command::new("unshare");
    mf.prepare(&mut c);
    c.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(r#"mount --bind "$0" /etc/hosts && exec "$@""#)
        .arg(hosts)
        .arg(bin())
        .arg("--root")
        .arg(&mf.root)
        .arg("--run-root")
        .arg(&mf.run_root)
        .args(args);
    let out = c.output().unwrap();
    eprintln!(
        "$ minifargate {} (private /etc/hosts)\n  exit: {}\n  stdout: {}\n  stderr: {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout).trim_end(),
        String::from_utf8_lossy(&out.stderr).trim_end()
    );
    out
}

/// `program ARGS` (add them) as run on the box of `mf`'s serve: in a private mount
/// namespace whose /etc is a copy with serve's hosts file (`MINIFARGATE_HOSTS_FILE`,
/// naming the registry at its ECR host name; a copy of /etc, since a bind mount on
/// /etc/hosts is detached when a serve of the box renames a new /etc/hosts over it) and
/// whose /etc/containers/certs.d is the trust serve wrote (`MINIFARGATE_REGISTRY_CERTS_D`);
/// the box's own files are untouched.
pub fn as_on_serve_s_box(mf: &Mf, program: &str) -> Command {
    let mut c = Command::new("unshare");
    super::util::no_proxy(&mut c);
    c.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(
            r#"d=$(mktemp -d) && cp -a /etc "$d/etc" && cp "$0" "$d/etc/hosts" && mount --bind "$d/etc" /etc && mount --bind "$1" /etc/containers/certs.d && shift && "$@"; rc=$?; umount /etc; rm -rf "$d"; exit $rc"#,
        )
        .arg(mf.env_value("MINIFARGATE_HOSTS_FILE").unwrap())
        .arg(mf.env_value("MINIFARGATE_REGISTRY_CERTS_D").unwrap())
        .arg(program);
    c
}
