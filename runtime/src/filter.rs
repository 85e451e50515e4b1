//! The container's seccomp filter compiled once per profile instead of in every init.
//!
//! libcontainer 0.7 hands the OCI profile to libseccomp in each container's init process:
//! ~370 names resolved, rules added, the BPF program generated, ~1 ms of CPU on the
//! critical path of every create (docs/benchmarks.md, "Where the time goes,
//! 2026-11-25"). Here the same libseccomp, given the same rules the same way, exports the
//! program once; it is kept in a cache directory (one file per profile, the profile's
//! JSON stored beside the program and compared byte for byte on every read), and the
//! init process loads it with seccomp(2) itself from the workload executor's last step
//! before it reports ready ([`InitFilter::apply`]).
//!
//! The order stays libcontainer's. Without `noNewPrivileges` the filter must be loaded
//! while the process still holds CAP_SYS_ADMIN, so libcontainer loads it before it drops
//! the capabilities; here libcontainer is told to leave CAP_SYS_ADMIN in the effective
//! and permitted sets (never in the bounding set), and the executor loads the filter and
//! then lowers both sets to the container's. With `noNewPrivileges` libcontainer sets the
//! flag first and loads the filter after the capabilities, as here. Either way the
//! container's command starts with the same filter, capabilities and flag.
//!
//! Profiles this does not cover go to libcontainer as before: filter flags, notify
//! actions, a listener path.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use caps::{CapSet, Capability, CapsHashSet};
use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction as Act, LinuxSeccompOperator as Op,
};
use serde::Deserialize;
use serde_json::Value;

/// Errors of compiling, caching or loading a filter.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("the seccomp profile is not valid OCI")]
    Profile(#[source] serde_json::Error),
    #[error("libseccomp refused the profile: {what}")]
    Compile {
        what: String,
        #[source]
        source: libseccomp::error::SeccompError,
    },
    #[error("failed to {action} the compiled filter {path}")]
    Cache {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("unknown capability {0:?} in the spec")]
    Capability(String),
}

/// Start of every cache file, then the profile's length (u32 LE), the profile, the program.
const MAGIC: &[u8; 12] = b"MFSECCOMPv1\n";

/// What the init process does in the executor: load `bpf`, then, when libcontainer was
/// told to keep CAP_SYS_ADMIN for it, lower the effective and permitted sets.
#[derive(Debug, Clone)]
pub(crate) struct InitFilter {
    bpf: Vec<u8>,
    /// The container's own (effective, permitted) sets.
    restore: Option<(CapsHashSet, CapsHashSet)>,
}

impl InitFilter {
    /// In the container's init, after libcontainer's capability drop: loads the filter,
    /// then drops what was kept for it. Any failure fails the create.
    pub(crate) fn apply(&self) -> Result<(), String> {
        crate::sys::load_seccomp_filter(&self.bpf).map_err(|e| format!("load seccomp: {e}"))?;
        if let Some((effective, permitted)) = &self.restore {
            // Effective first: it must stay within the permitted set at every step.
            caps::set(None, CapSet::Effective, effective)
                .map_err(|e| format!("lower the effective capabilities: {e}"))?;
            caps::set(None, CapSet::Permitted, permitted)
                .map_err(|e| format!("lower the permitted capabilities: {e}"))?;
        }
        Ok(())
    }
}

/// The spec libcontainer gets, and what the init then does itself, for a `config` whose
/// `linux.seccomp` this module covers; `None` when libcontainer should load it (no
/// filter, or one with flags or notify actions).
pub(crate) fn prepare(
    config: &Value,
    cache_dir: &Path,
) -> Result<Option<(Value, InitFilter)>, FilterError> {
    let Some(profile) = config["linux"].get("seccomp") else {
        return Ok(None);
    };
    let profile = LinuxSeccomp::deserialize(profile).map_err(FilterError::Profile)?;
    if !covered(&profile) {
        return Ok(None);
    }
    let bpf = cached(cache_dir, &profile)?;
    let mut lc = without_seccomp(config);
    let nnp = config["process"]["noNewPrivileges"].as_bool() == Some(true);
    let effective = cap_set(&config["process"]["capabilities"]["effective"])?;
    let restore = if nnp || effective.contains(&Capability::CAP_SYS_ADMIN) {
        None
    } else {
        let permitted = cap_set(&config["process"]["capabilities"]["permitted"])?;
        for set in ["effective", "permitted"] {
            let list = &mut lc["process"]["capabilities"][set];
            match list.as_array_mut() {
                Some(a) => a.push(Value::from("CAP_SYS_ADMIN")),
                None => *list = Value::from(vec!["CAP_SYS_ADMIN"]),
            }
        }
        Some((effective, permitted))
    };
    Ok(Some((lc, InitFilter { bpf, restore })))
}

/// A copy of `config` but its `linux.seccomp`, which is most of it (the default
/// profile's ~370 names): it is not copied to be dropped.
fn without_seccomp(config: &Value) -> Value {
    let Some(top) = config.as_object() else {
        return config.clone();
    };
    let copy = top
        .iter()
        .map(|(k, v)| {
            let v = match (k.as_str(), v.as_object()) {
                ("linux", Some(linux)) => Value::Object(
                    linux
                        .iter()
                        .filter(|(k, _)| k.as_str() != "seccomp")
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                ),
                _ => v.clone(),
            };
            (k.clone(), v)
        })
        .collect();
    Value::Object(copy)
}

fn cap_set(list: &Value) -> Result<CapsHashSet, FilterError> {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let name = c.as_str().unwrap_or_default();
            name.parse::<Capability>()
                .map_err(|_| FilterError::Capability(name.to_string()))
        })
        .collect()
}

/// Profiles whose whole effect is the program: no filter flags (log, tsync, spec-allow),
/// no notify action (an fd handed to a listener), no listener.
fn covered(p: &LinuxSeccomp) -> bool {
    p.flags().as_ref().is_none_or(|f| f.is_empty())
        && p.listener_path().is_none()
        && p.listener_metadata().is_none()
        && p.default_action() != Act::ScmpActNotify
        && !p
            .syscalls()
            .iter()
            .flatten()
            .any(|s| s.action() == Act::ScmpActNotify)
}

/// The program for `profile`, from `dir` or compiled and stored there.
fn cached(dir: &Path, profile: &LinuxSeccomp) -> Result<Vec<u8>, FilterError> {
    let key = key(profile)?;
    let mut h = std::hash::DefaultHasher::new();
    key.hash(&mut h);
    let path = dir.join(format!("{:016x}.bpf", h.finish()));
    if let Some(bpf) = read_cached(&path, &key) {
        return Ok(bpf);
    }
    let bpf = compile(profile)?;
    // Written aside and renamed: a reader sees a whole file or none.
    let tmp = dir.join(format!(
        ".{}-{:?}.tmp",
        std::process::id(),
        std::thread::current().id()
    ));
    let written = (|| {
        std::fs::create_dir_all(dir)?;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(MAGIC)?;
        f.write_all(&(key.len() as u32).to_le_bytes())?;
        f.write_all(&key)?;
        f.write_all(&bpf)?;
        std::fs::rename(&tmp, &path)
    })();
    // Not kept: the next create compiles it again, this one goes on.
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        tracing::warn!(path = %path.display(), error = %e, "failed to keep the compiled seccomp filter");
    }
    Ok(bpf)
}

/// What a program depends on: the profile, the libseccomp that compiled it, the
/// architecture it runs on.
fn key(profile: &LinuxSeccomp) -> Result<Vec<u8>, FilterError> {
    let v = libseccomp::ScmpVersion::current().ok();
    let mut key = format!(
        "{} libseccomp {:?} {}\n",
        std::env::consts::ARCH,
        v.map(|v| (v.major, v.minor, v.micro)),
        env!("CARGO_PKG_VERSION")
    )
    .into_bytes();
    key.extend(serde_json::to_vec(profile).map_err(FilterError::Profile)?);
    Ok(key)
}

fn read_cached(path: &Path, key: &[u8]) -> Option<Vec<u8>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .ok()?
        .read_to_end(&mut bytes)
        .ok()?;
    let rest = bytes.strip_prefix(MAGIC.as_slice())?;
    let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let rest = &rest[4..];
    if rest.get(..len)? != key {
        return None;
    }
    let bpf = &rest[len..];
    (!bpf.is_empty() && bpf.len().is_multiple_of(8)).then(|| bpf.to_vec())
}

/// libseccomp's program for `profile`, built with the rules libcontainer 0.7 gives it
/// (src/seccomp/mod.rs `initialize_seccomp`): the default action with its errno (EPERM
/// when unset), every listed architecture, no automatic no_new_privs, rules whose action
/// is the default one skipped, names libseccomp does not know skipped, and the argument
/// comparisons of a rule added one by one when two compare the same argument.
pub(crate) fn compile(profile: &LinuxSeccomp) -> Result<Vec<u8>, FilterError> {
    let err = |what: String| move |source| FilterError::Compile { what, source };
    let default = action(profile.default_action(), profile.default_errno_ret());
    let mut ctx = ScmpFilterContext::new(default).map_err(err("the default action".into()))?;
    for arch in profile.architectures().iter().flatten() {
        ctx.add_arch(scmp_arch(*arch))
            .map_err(err(format!("architecture {arch:?}")))?;
    }
    ctx.set_ctl_nnp(false).map_err(err("CTL_NNP".into()))?;
    for rule in profile.syscalls().iter().flatten() {
        let act = action(rule.action(), rule.errno_ret());
        if act == default {
            continue;
        }
        let conds: Vec<ScmpArgCompare> = rule
            .args()
            .iter()
            .flatten()
            .map(|a| {
                ScmpArgCompare::new(a.index() as u32, compare(a.op(), a.value_two()), a.value())
            })
            .collect();
        let mut seen = HashSet::new();
        let one_by_one = rule
            .args()
            .iter()
            .flatten()
            .any(|a| !seen.insert(a.index()));
        for name in rule.names() {
            let Ok(sc) = libseccomp::ScmpSyscall::from_name(name) else {
                tracing::debug!(syscall = %name, "not known to libseccomp: skipped");
                continue;
            };
            let added = if conds.is_empty() {
                ctx.add_rule(act, sc).map(drop)
            } else if one_by_one {
                conds.iter().try_for_each(|c| {
                    ctx.add_rule_conditional(act, sc, std::slice::from_ref(c))
                        .map(drop)
                })
            } else {
                ctx.add_rule_conditional(act, sc, &conds).map(drop)
            };
            added.map_err(err(format!("the rule for {name}")))?;
        }
    }
    let mut out = tempfile_in_memory().map_err(|e| FilterError::Cache {
        action: "export",
        path: PathBuf::from("memfd"),
        source: e,
    })?;
    ctx.export_bpf(&out).map_err(err("the export".into()))?;
    let mut bpf = Vec::new();
    use std::io::Seek;
    out.seek(std::io::SeekFrom::Start(0))
        .and_then(|_| out.read_to_end(&mut bpf))
        .map_err(|e| FilterError::Cache {
            action: "read back",
            path: PathBuf::from("memfd"),
            source: e,
        })?;
    Ok(bpf)
}

fn tempfile_in_memory() -> std::io::Result<std::fs::File> {
    let fd = nix::sys::memfd::memfd_create(
        c"mf-seccomp",
        nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC,
    )?;
    Ok(std::fs::File::from(fd))
}

fn action(a: Act, errno: Option<u32>) -> ScmpAction {
    let errno = errno.map_or(libc::EPERM, |e| e as i32);
    match a {
        Act::ScmpActKill | Act::ScmpActKillThread => ScmpAction::KillThread,
        Act::ScmpActKillProcess => ScmpAction::KillProcess,
        Act::ScmpActTrap => ScmpAction::Trap,
        Act::ScmpActErrno => ScmpAction::Errno(errno),
        Act::ScmpActTrace => ScmpAction::Trace(errno as u16),
        Act::ScmpActAllow => ScmpAction::Allow,
        Act::ScmpActLog => ScmpAction::Log,
        // Never reached: `covered` leaves notify profiles to libcontainer.
        Act::ScmpActNotify => ScmpAction::Notify,
    }
}

fn compare(op: Op, mask: Option<u64>) -> ScmpCompareOp {
    match op {
        Op::ScmpCmpNe => ScmpCompareOp::NotEqual,
        Op::ScmpCmpLt => ScmpCompareOp::Less,
        Op::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        Op::ScmpCmpEq => ScmpCompareOp::Equal,
        Op::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        Op::ScmpCmpGt => ScmpCompareOp::Greater,
        Op::ScmpCmpMaskedEq => ScmpCompareOp::MaskedEqual(mask.unwrap_or(0)),
    }
}

fn scmp_arch(a: Arch) -> ScmpArch {
    match a {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
        Arch::ScmpArchParisc => ScmpArch::Parisc,
        Arch::ScmpArchParisc64 => ScmpArch::Parisc64,
        Arch::ScmpArchLoongarch64 => ScmpArch::Loongarch64,
        Arch::ScmpArchM68k => ScmpArch::M68k,
        Arch::ScmpArchSh => ScmpArch::Sh,
        Arch::ScmpArchSheb => ScmpArch::Sheb,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_profile() -> LinuxSeccomp {
        serde_json::from_value(crate::seccomp::default_profile(&[], false)).unwrap()
    }

    #[test]
    fn the_cache_returns_the_program_it_stored_and_ignores_a_foreign_file() {
        let d = tempfile::tempdir().unwrap();
        let p = default_profile();
        let first = cached(d.path(), &p).unwrap();
        assert!(!first.is_empty() && first.len().is_multiple_of(8));
        assert_eq!(cached(d.path(), &p).unwrap(), first, "read back");
        // A file of the same name holding another profile is not used (and replaced).
        let file = std::fs::read_dir(d.path())
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let mut bytes = std::fs::read(&file).unwrap();
        let at = MAGIC.len() + 4 + 10;
        bytes[at] ^= 1;
        std::fs::write(&file, &bytes).unwrap();
        assert!(read_cached(&file, &key(&p).unwrap()).is_none());
        assert_eq!(cached(d.path(), &p).unwrap(), first);
    }

    #[test]
    fn a_cache_that_cannot_be_written_still_gives_the_program() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("not-a-dir");
        std::fs::write(&file, b"x").unwrap();
        let p = default_profile();
        let bpf = cached(&file.join("seccomp"), &p).unwrap();
        assert_eq!(bpf, compile(&p).unwrap());
    }

    #[test]
    fn libcontainer_keeps_sys_admin_only_when_it_must_load_before_the_drop() {
        let d = tempfile::tempdir().unwrap();
        let caps = vec!["CAP_CHOWN".to_string(), "CAP_KILL".to_string()];
        let config = |nnp: bool, effective: &[String]| {
            let mut c = serde_json::json!({
                "process": {"capabilities": {"bounding": caps, "effective": effective, "permitted": effective}},
                "linux": {"seccomp": crate::seccomp::default_profile(&caps, false)},
            });
            if nnp {
                c["process"]["noNewPrivileges"] = true.into();
            }
            c
        };
        let (lc, f) = prepare(&config(false, &caps), d.path()).unwrap().unwrap();
        assert!(lc["linux"].get("seccomp").is_none());
        assert_eq!(
            lc["process"]["capabilities"]["bounding"],
            serde_json::json!(caps)
        );
        for set in ["effective", "permitted"] {
            let got = lc["process"]["capabilities"][set].as_array().unwrap();
            assert!(got.iter().any(|c| c == "CAP_SYS_ADMIN"), "{set}");
        }
        let (eff, perm) = f.restore.unwrap();
        assert_eq!(eff, perm);
        assert!(!eff.contains(&Capability::CAP_SYS_ADMIN) && eff.len() == 2);
        // A non-root user: nothing effective, CAP_SYS_ADMIN kept for the load only.
        let (lc, f) = prepare(&config(false, &[]), d.path()).unwrap().unwrap();
        assert_eq!(
            lc["process"]["capabilities"]["effective"],
            serde_json::json!(["CAP_SYS_ADMIN"])
        );
        assert!(f.restore.unwrap().0.is_empty());
        // no_new_privs: the load needs no capability, the spec's sets are left alone.
        let (lc, f) = prepare(&config(true, &caps), d.path()).unwrap().unwrap();
        assert_eq!(
            lc["process"]["capabilities"]["effective"],
            serde_json::json!(caps)
        );
        assert!(f.restore.is_none());
        // No filter, or one with flags: libcontainer's.
        assert!(
            prepare(&serde_json::json!({"linux": {}}), d.path())
                .unwrap()
                .is_none()
        );
        let mut flagged = config(false, &caps);
        flagged["linux"]["seccomp"]["flags"] = serde_json::json!(["SECCOMP_FILTER_FLAG_LOG"]);
        assert!(prepare(&flagged, d.path()).unwrap().is_none());
    }

    #[test]
    fn libcontainers_spec_is_the_containers_but_the_filter() {
        let d = tempfile::tempdir().unwrap();
        let config = serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "/r", "readonly": false},
            "process": {"args": ["/bin/true"], "noNewPrivileges": true,
                        "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"]}},
            "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
            "linux": {"maskedPaths": ["/proc/kcore"], "readonlyPaths": ["/proc/sys"],
                      "namespaces": [{"type": "pid"}],
                      "seccomp": crate::seccomp::default_profile(&[], false)},
        });
        let (lc, _) = prepare(&config, d.path()).unwrap().unwrap();
        let mut want = config.clone();
        want["linux"].as_object_mut().unwrap().remove("seccomp");
        assert_eq!(lc, want);
    }
}
