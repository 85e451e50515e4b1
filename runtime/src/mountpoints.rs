//! A container's mount points made in its rootfs by the caller, before the create.
//!
//! libcontainer's init makes every missing mount destination in the rootfs (`/proc`,
//! `/dev`, `/sys`, `/etc/hosts`, `/etc/resolv.conf`, a volume's container path) before it
//! mounts there, and it runs in the container's memory cgroup by then. On an overlay
//! rootfs each of those is a new inode and directory block in the upper dir's
//! filesystem; the filesystem's metadata blocks read or allocated for them go into the
//! block device's page cache charged to the container's memory cgroup, and outlive the
//! task: they keep its removed memory cgroup (and the task's above it) in the kernel as
//! dying cgroups until memory pressure reclaims them. On this box that was ~2.8 dying
//! memory cgroups per `run-task` of a container that writes nothing, and every launch
//! pays a little for each of them (docs/benchmarks.md, "Dying memory cgroups").
//! Made here, by the supervisor (in its own long-lived cgroup), the same directories and
//! files are charged to it, and the init finds them present.
//!
//! The same calls as libcontainer's (libpathrs, resolved inside the rootfs, symlinks
//! included, never out of it; directories 0755, files 0644 under the caller's umask), in
//! the spec's order, only for destinations that lie on the rootfs itself (not under an
//! earlier mount's destination, where they belong to that filesystem). Best effort: what
//! cannot be made here is left to libcontainer, which reports its own error as before.
//! Whether a destination is there already is asked of the kernel alone (one `openat2`
//! resolved in the rootfs): an image has most of them (`/proc`, `/dev`, `/sys`), and
//! libpathrs' checks of its own procfs handle cost ~40 µs per lookup.
//! Not done for a container with a user namespace: its rootfs is an idmapped mount that
//! the caller's root cannot create in, and there the init is the owner anyway.

use std::fs::Permissions;
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path};

use rustix::fs::{Mode, OFlags, ResolveFlags};

use pathrs::Root;
use pathrs::flags::OpenFlags;

/// Makes the missing mount destinations of `config` (an OCI runtime spec) in `rootfs`.
/// Returns how many were made.
pub fn premake(rootfs: &Path, config: &serde_json::Value) -> usize {
    let userns = config
        .pointer("/linux/uidMappings")
        .and_then(|m| m.as_array())
        .is_some_and(|m| !m.is_empty());
    let Some(mounts) = config.get("mounts").and_then(|m| m.as_array()) else {
        return 0;
    };
    if userns || mounts.is_empty() {
        return 0;
    }
    let dir = match rustix::fs::open(
        rootfs,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(d) => d,
        Err(e) => {
            tracing::debug!(rootfs = %rootfs.display(), error = %e, "mount points left to the init");
            return 0;
        }
    };
    // Opened when something is to be made.
    let mut root: Option<Root> = None;
    let mut made = 0;
    let mut earlier: Vec<&Path> = Vec::new();
    for m in mounts {
        let Some(dest) = m.get("destination").and_then(|d| d.as_str()).map(Path::new) else {
            continue;
        };
        let on_rootfs = plain_absolute(dest) && !earlier.iter().any(|e| dest.starts_with(e));
        earlier.push(dest);
        if !on_rootfs || present(&dir, dest) {
            continue;
        }
        let file = source_is_file(m);
        if make_in_parent(&dir, file, dest) {
            made += 1;
            continue;
        }
        if root.is_none() {
            match Root::open(rootfs) {
                Ok(r) => root = Some(r),
                Err(e) => {
                    tracing::debug!(rootfs = %rootfs.display(), error = %e, "mount points left to the init");
                    return made;
                }
            }
        }
        let root = root.as_ref().expect("opened above");
        match make_one(root, file, dest) {
            Ok(()) => made += 1,
            Err(e) => {
                tracing::debug!(destination = %dest.display(), error = %e, "mount point left to the init")
            }
        }
    }
    made
}

/// Whether `dest` (absolute) is in the rootfs `dir`: resolved by the kernel inside it
/// (symlinks included, as the root; a final symlink not followed), never out of it.
fn present(dir: &OwnedFd, dest: &Path) -> bool {
    rustix::fs::openat2(
        dir,
        dest,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
    .is_ok()
}

/// Makes `dest` when its parent is in the rootfs `dir` already (the usual case): the
/// parent resolved by the kernel inside the rootfs, then a directory or an empty file
/// made there under its name, never through a symlink. False when the parent is not
/// there, or the making failed (then libpathrs' way tries, which makes parents too).
fn make_in_parent(dir: &OwnedFd, file: bool, dest: &Path) -> bool {
    let (Some(parent), Some(name)) = (dest.parent(), dest.file_name()) else {
        return false;
    };
    let Ok(parent) = rustix::fs::openat2(
        dir,
        parent,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    ) else {
        return false;
    };
    if file {
        rustix::fs::openat(
            &parent,
            name,
            OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .is_ok()
    } else {
        rustix::fs::mkdirat(&parent, name, Mode::from_raw_mode(0o755)).is_ok()
    }
}

/// Whether mount `m` binds a file (its destination is then a file).
fn source_is_file(m: &serde_json::Value) -> bool {
    let bind = m.get("type").and_then(|t| t.as_str()) == Some("bind")
        || m.get("options")
            .and_then(|o| o.as_array())
            .is_some_and(|o| {
                o.iter()
                    .any(|o| matches!(o.as_str(), Some("bind" | "rbind")))
            });
    bind && m
        .get("source")
        .and_then(|s| s.as_str())
        .and_then(|s| std::fs::metadata(s).ok())
        .is_some_and(|md| !md.is_dir())
}

/// An absolute path of plain names only (no `.`, `..`), and not `/` itself.
fn plain_absolute(p: &Path) -> bool {
    let mut comps = p.components();
    comps.next() == Some(Component::RootDir)
        && p.components().count() > 1
        && comps.all(|c| matches!(c, Component::Normal(_)))
}

/// Makes `dest` (missing: [`present`] said so) with libpathrs, its parents too: a
/// directory, or an empty file for a file's bind mount.
fn make_one(root: &Root, file: bool, dest: &Path) -> Result<(), pathrs::error::Error> {
    let dir_perm = Permissions::from_mode(0o755);
    if file {
        if let Some(parent) = dest.parent() {
            root.mkdir_all(parent, &dir_perm)?;
        }
        root.create_file(
            dest,
            OpenFlags::O_EXCL | OpenFlags::O_CREAT | OpenFlags::O_NOFOLLOW | OpenFlags::O_CLOEXEC,
            &Permissions::from_mode(0o644),
        )?;
    } else {
        root.mkdir_all(dest, &dir_perm)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(mounts: serde_json::Value) -> serde_json::Value {
        json!({ "mounts": mounts })
    }

    #[test]
    fn makes_what_lies_on_the_rootfs_and_nothing_below_other_mounts() {
        let root = tempfile::tempdir().unwrap();
        let host = tempfile::tempdir().unwrap();
        let file = host.path().join("hosts");
        std::fs::write(&file, "127.0.0.1 localhost\n").unwrap();
        std::fs::create_dir(root.path().join("etc")).unwrap();
        std::fs::write(root.path().join("etc/passwd"), "root:x:0:0::/:/bin/sh\n").unwrap();
        let config = spec(json!([
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs"},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts"},
            {"destination": "/etc/hosts", "type": "bind", "source": file, "options": ["rbind"]},
            {"destination": "/data/a", "type": "bind", "source": host.path(), "options": ["rbind"]},
            {"destination": "/data/a/b", "type": "tmpfs", "source": "tmpfs"},
            {"destination": "/etc/passwd", "type": "bind", "source": file, "options": ["bind"]},
            {"destination": "/x/../y", "type": "tmpfs", "source": "tmpfs"},
        ]));
        assert_eq!(premake(root.path(), &config), 4);
        let r = root.path();
        assert!(r.join("proc").is_dir() && r.join("dev").is_dir() && r.join("data/a").is_dir());
        let hosts = std::fs::metadata(r.join("etc/hosts")).unwrap();
        assert!(hosts.is_file() && hosts.len() == 0);
        // Under another mount's destination: that filesystem's, made by the init there.
        assert!(!r.join("dev/pts").exists() && !r.join("data/a/b").exists());
        // Present: left as it is. Not a plain path: left to the init.
        assert_eq!(
            std::fs::read_to_string(r.join("etc/passwd")).unwrap().len(),
            22
        );
        assert!(!r.join("y").exists() && !r.join("x").exists());
        // A second pass finds everything there.
        assert_eq!(premake(root.path(), &config), 0);
    }

    #[test]
    fn a_symlink_in_the_image_never_leads_out_of_the_rootfs() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        // An image whose /etc points at a host path, and whose /run is a dangling link.
        std::os::unix::fs::symlink(outside.path(), root.path().join("etc")).unwrap();
        let file = outside.path().join("src");
        std::fs::write(&file, "x").unwrap();
        let config = spec(json!([
            {"destination": "/etc/resolv.conf", "type": "bind", "source": file, "options": ["rbind"]},
            {"destination": "/etc/sub", "type": "tmpfs", "source": "tmpfs"},
        ]));
        premake(root.path(), &config);
        assert!(!outside.path().join("resolv.conf").exists());
        assert!(!outside.path().join("sub").exists());
    }

    #[test]
    fn not_with_a_user_namespace() {
        let root = tempfile::tempdir().unwrap();
        let mut config = spec(json!([{"destination": "/proc", "type": "proc", "source": "proc"}]));
        config["linux"] =
            json!({"uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}]});
        assert_eq!(premake(root.path(), &config), 0);
        assert!(!root.path().join("proc").exists());
    }
}
