//! Assembles a container's root filesystem from cached layers: an overlayfs mount with
//! the layer directories as read-only lowers and a per-container upper/work dir, or a
//! plain copy where overlayfs is unavailable.
//!
//! Many layers: the legacy mount(2) data string is limited to one page, so layers are
//! added one by one with the new mount API (`lowerdir+`, Linux 6.8+); older kernels
//! get `/proc/self/fd/N` paths (≈19 bytes a layer, ~200 layers in a page).

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MountFlags, MoveMountFlags, UnmountFlags,
};
use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("failed to {op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to mount the overlay rootfs at {target} ({layers} layers)")]
    Mount {
        target: PathBuf,
        layers: usize,
        #[source]
        source: io::Error,
    },
    #[error("failed to unmount the rootfs at {target}")]
    Unmount {
        target: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err(op: &'static str, path: &Path, source: impl Into<io::Error>) -> RootfsError {
    RootfsError::Io {
        op,
        path: path.to_path_buf(),
        source: source.into(),
    }
}

/// How a rootfs was assembled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootfsKind {
    Overlay,
    /// Layers copied into the target (no overlayfs here); `unmount` leaves it alone.
    Copy,
}

/// How to try mounting; `Auto` is right outside tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountApi {
    Auto,
    /// mount(2) with `/proc/self/fd` lowerdirs only.
    Legacy,
}

/// Mounts `layers` (bottom first) at `target` with upper and work dirs under
/// `state_dir`. Falls back to copying when overlayfs is missing or refuses the
/// filesystem.
pub fn mount(
    layers: &[PathBuf],
    state_dir: &Path,
    target: &Path,
    api: MountApi,
) -> Result<RootfsKind, RootfsError> {
    mount_with(layers, state_dir, target, api, false)
}

/// As [`mount`]; `volatile` mounts the overlay with `volatile` (Linux 5.10+) where the
/// kernel takes it: no sync of the upper filesystem, neither on `syncfs`/`fsync` in the
/// container nor at unmount. For an upper dir that is deleted after the unmount (a
/// task's container): unmounting a plain overlay syncs the *whole* upper filesystem
/// (every dirty page of the host's root, not just the container's), milliseconds to
/// seconds on a busy disk. After a crash, a volatile upper is unusable and must be
/// deleted (overlayfs refuses to mount it again).
/// Ref: Documentation/filesystems/overlayfs.rst, "Volatile mount".
pub fn mount_with(
    layers: &[PathBuf],
    state_dir: &Path,
    target: &Path,
    api: MountApi,
    volatile: bool,
) -> Result<RootfsKind, RootfsError> {
    let upper = state_dir.join("upper");
    let work = state_dir.join("work");
    for d in [&upper, &work, &target.to_path_buf()] {
        fs::create_dir_all(d).map_err(|e| io_err("create", d, e))?;
    }
    // An image without layers still needs a lower directory.
    let empty = state_dir.join("empty");
    let lowers: Vec<PathBuf> = if layers.is_empty() {
        fs::create_dir_all(&empty).map_err(|e| io_err("create", &empty, e))?;
        vec![empty]
    } else {
        layers.to_vec()
    };
    let attempt = |volatile: bool| match api {
        MountApi::Auto => match mount_new_api(&lowers, &upper, &work, target, volatile) {
            Err(e) if e == Errno::INVAL || e == Errno::NOSYS || e == Errno::PERM => {
                tracing::debug!(error = %e, "new mount API refused lowerdir+; using mount(2)");
                mount_legacy(&lowers, &upper, &work, target, volatile)
            }
            other => other,
        },
        MountApi::Legacy => mount_legacy(&lowers, &upper, &work, target, volatile),
    };
    let res = match attempt(volatile) {
        // A kernel before 5.10 does not know `volatile`: a plain (syncing) overlay then.
        Err(Errno::INVAL) if volatile => {
            tracing::debug!("overlayfs refused `volatile`; mounting without it");
            attempt(false)
        }
        other => other,
    };
    match res {
        Ok(()) => Ok(RootfsKind::Overlay),
        Err(e) if e == Errno::NODEV => {
            tracing::warn!(target = %target.display(),
                "overlayfs is not available; copying the layers instead (slower, uses more disk)");
            copy_layers(&lowers, target)?;
            Ok(RootfsKind::Copy)
        }
        Err(e) => Err(RootfsError::Mount {
            target: target.to_path_buf(),
            layers: layers.len(),
            source: e.into(),
        }),
    }
}

fn mount_new_api(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
    volatile: bool,
) -> rustix::io::Result<()> {
    let fs_fd = rustix::mount::fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)?;
    // Overlay's lowerdir order is top first.
    for l in lowers.iter().rev() {
        rustix::mount::fsconfig_set_string(&fs_fd, "lowerdir+", l)?;
    }
    rustix::mount::fsconfig_set_string(&fs_fd, "upperdir", upper)?;
    rustix::mount::fsconfig_set_string(&fs_fd, "workdir", work)?;
    if volatile {
        rustix::mount::fsconfig_set_flag(&fs_fd, "volatile")?;
    }
    rustix::mount::fsconfig_create(&fs_fd)?;
    let mnt = rustix::mount::fsmount(
        &fs_fd,
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::empty(),
    )?;
    rustix::mount::move_mount(
        &mnt,
        "",
        rfs::CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
}

fn mount_legacy(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
    volatile: bool,
) -> rustix::io::Result<()> {
    // Short stand-ins for long paths: the fds stay open until mount(2) has resolved them.
    let fds: Vec<OwnedFd> = lowers
        .iter()
        .rev()
        .map(|l| {
            rfs::open(
                l,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
        })
        .collect::<Result<_, _>>()?;
    let pid = std::process::id();
    let lowerdir: Vec<String> = fds
        .iter()
        .map(|fd| {
            use std::os::fd::AsRawFd;
            format!("/proc/{pid}/fd/{}", fd.as_raw_fd())
        })
        .collect();
    let data = format!(
        "lowerdir={},upperdir={},workdir={}{}",
        lowerdir.join(":"),
        upper.display(),
        work.display(),
        if volatile { ",volatile" } else { "" }
    );
    let data = std::ffi::CString::new(data).map_err(|_| Errno::INVAL)?;
    rustix::mount::mount(
        "overlay",
        target,
        "overlay",
        MountFlags::empty(),
        data.as_c_str(),
    )
}

/// Unmounts a rootfs made by [`mount`]. A copied rootfs (not a mount point) is left
/// for the caller to delete.
pub fn unmount(target: &Path) -> Result<(), RootfsError> {
    match rustix::mount::unmount(target, UnmountFlags::empty()) {
        Ok(()) | Err(Errno::INVAL) | Err(Errno::NOENT) => Ok(()),
        Err(Errno::BUSY) => {
            // Something still holds it (a process cwd): detach it now, it goes when
            // the last user does.
            tracing::warn!(target = %target.display(), "rootfs busy; detaching it lazily");
            rustix::mount::unmount(target, UnmountFlags::DETACH).map_err(|e| RootfsError::Unmount {
                target: target.to_path_buf(),
                source: e.into(),
            })
        }
        Err(e) => Err(RootfsError::Unmount {
            target: target.to_path_buf(),
            source: e.into(),
        }),
    }
}

/// Whether `m` is an overlayfs whiteout (a 0/0 character device).
pub(crate) fn is_whiteout(m: &fs::Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt;
    m.file_type().is_char_device() && m.rdev() == 0
}

/// Whether `dir` is an overlayfs opaque directory (hides lower layers' contents).
pub(crate) fn is_opaque(dir: &Path) -> bool {
    let mut buf = [0u8; 4];
    matches!(rfs::lgetxattr(dir, crate::unpack::OPAQUE_XATTR, &mut buf[..]), Ok(1) if buf[0] == b'y')
}

fn remove_any(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Applies `layers` (bottom first) to `target` as overlayfs would show them. Never
/// follows a symlink in `target`: an existing non-directory is replaced, not entered.
pub fn copy_layers(layers: &[PathBuf], target: &Path) -> Result<(), RootfsError> {
    for l in layers {
        copy_dir(l, target)?;
    }
    Ok(())
}

fn copy_dir(src: &Path, dst: &Path) -> Result<(), RootfsError> {
    let entries = fs::read_dir(src).map_err(|e| io_err("read", src, e))?;
    for e in entries {
        let e = e.map_err(|e| io_err("read", src, e))?;
        let s = e.path();
        let d = dst.join(e.file_name());
        let m = fs::symlink_metadata(&s).map_err(|e| io_err("stat", &s, e))?;
        let existing = fs::symlink_metadata(&d).ok();
        if is_whiteout(&m) {
            remove_any(&d).map_err(|e| io_err("remove", &d, e))?;
            continue;
        }
        if m.is_dir() {
            match &existing {
                Some(x) if x.is_dir() => {
                    if is_opaque(&s) {
                        remove_any(&d).map_err(|e| io_err("remove", &d, e))?;
                        fs::create_dir(&d).map_err(|e| io_err("create", &d, e))?;
                    }
                }
                Some(_) => {
                    remove_any(&d).map_err(|e| io_err("remove", &d, e))?;
                    fs::create_dir(&d).map_err(|e| io_err("create", &d, e))?;
                }
                None => fs::create_dir(&d).map_err(|e| io_err("create", &d, e))?,
            }
            copy_dir(&s, &d)?;
            copy_meta(&m, &d, false)?;
            continue;
        }
        if existing.is_some() {
            remove_any(&d).map_err(|e| io_err("remove", &d, e))?;
        }
        let ft = m.file_type();
        if ft.is_symlink() {
            let t = fs::read_link(&s).map_err(|e| io_err("read link", &s, e))?;
            std::os::unix::fs::symlink(&t, &d).map_err(|e| io_err("create symlink", &d, e))?;
            copy_meta(&m, &d, true)?;
        } else if ft.is_file() {
            fs::copy(&s, &d).map_err(|e| io_err("copy", &d, e))?;
            copy_meta(&m, &d, false)?;
        } else {
            let kind = FileType::from_raw_mode(m.mode());
            rfs::mknodat(
                rfs::CWD,
                &d,
                kind,
                Mode::from_raw_mode(m.mode() & 0o7777),
                m.rdev(),
            )
            .map_err(|e| io_err("create node", &d, e))?;
            copy_meta(&m, &d, false)?;
        }
    }
    Ok(())
}

fn copy_meta(m: &fs::Metadata, d: &Path, symlink: bool) -> Result<(), RootfsError> {
    rfs::chownat(
        rfs::CWD,
        d,
        Some(rfs::Uid::from_raw(m.uid())),
        Some(rfs::Gid::from_raw(m.gid())),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(|e| io_err("set owner of", d, e))?;
    if !symlink {
        fs::set_permissions(d, fs::Permissions::from_mode(m.mode() & 0o7777))
            .map_err(|e| io_err("set mode of", d, e))?;
    }
    let t = rfs::Timestamps {
        last_access: rfs::Timespec {
            tv_sec: m.atime(),
            tv_nsec: m.atime_nsec() as _,
        },
        last_modification: rfs::Timespec {
            tv_sec: m.mtime(),
            tv_nsec: m.mtime_nsec() as _,
        },
    };
    rfs::utimensat(rfs::CWD, d, &t, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| io_err("set times of", d, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> bool {
        rustix::process::geteuid().is_root()
    }

    /// Three layers: a base, one that deletes a file and makes /data opaque, one on top.
    fn layers(dir: &Path) -> Vec<PathBuf> {
        let l: Vec<PathBuf> = (0..3).map(|i| dir.join(format!("l{i}"))).collect();
        for p in &l {
            fs::create_dir_all(p).unwrap();
        }
        fs::create_dir_all(l[0].join("etc")).unwrap();
        fs::write(l[0].join("etc/motd"), "hello").unwrap();
        fs::write(l[0].join("etc/keep"), "keep").unwrap();
        fs::create_dir_all(l[0].join("data")).unwrap();
        fs::write(l[0].join("data/old"), "old").unwrap();
        fs::create_dir_all(l[1].join("etc")).unwrap();
        rfs::mknodat(
            rfs::CWD,
            l[1].join("etc/motd"),
            FileType::CharacterDevice,
            Mode::empty(),
            0,
        )
        .unwrap();
        fs::create_dir_all(l[1].join("data")).unwrap();
        rfs::lsetxattr(
            l[1].join("data"),
            crate::unpack::OPAQUE_XATTR,
            b"y",
            rfs::XattrFlags::empty(),
        )
        .unwrap();
        fs::write(l[1].join("data/new"), "new").unwrap();
        fs::write(l[2].join("top"), "top").unwrap();
        l
    }

    fn check_view(target: &Path) {
        assert!(!target.join("etc/motd").exists(), "whiteout hides the file");
        assert_eq!(fs::read_to_string(target.join("etc/keep")).unwrap(), "keep");
        assert!(
            !target.join("data/old").exists(),
            "opaque dir hides lower contents"
        );
        assert_eq!(fs::read_to_string(target.join("data/new")).unwrap(), "new");
        assert_eq!(fs::read_to_string(target.join("top")).unwrap(), "top");
    }

    #[test]
    fn overlay_shows_whiteouts_and_opaque_dirs() {
        if !root() {
            eprintln!("skipped: needs root");
            return;
        }
        for api in [MountApi::Auto, MountApi::Legacy] {
            let dir = tempfile::tempdir().unwrap();
            let l = layers(dir.path());
            let target = dir.path().join("rootfs");
            let kind = mount(&l, &dir.path().join("state"), &target, api).unwrap();
            assert_eq!(kind, RootfsKind::Overlay);
            check_view(&target);
            fs::write(target.join("written"), "w").unwrap();
            unmount(&target).unwrap();
            assert!(dir.path().join("state/upper/written").exists());
            assert!(!l[2].join("written").exists(), "layers stay read-only");
        }
    }

    #[test]
    fn volatile_overlay_is_volatile_and_shows_the_same_view() {
        if !root() {
            eprintln!("skipped: needs root");
            return;
        }
        for api in [MountApi::Auto, MountApi::Legacy] {
            let dir = tempfile::tempdir().unwrap();
            let l = layers(dir.path());
            let target = dir.path().join("rootfs");
            let kind = mount_with(&l, &dir.path().join("state"), &target, api, true).unwrap();
            assert_eq!(kind, RootfsKind::Overlay);
            check_view(&target);
            let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
            let line = mountinfo
                .lines()
                .find(|l| l.split(' ').nth(4) == Some(target.to_str().unwrap()))
                .expect("the rootfs is mounted");
            assert!(line.contains("volatile"), "{api:?}: {line}");
            fs::write(target.join("written"), "w").unwrap();
            unmount(&target).unwrap();
            assert!(dir.path().join("state/upper/written").exists());
        }
    }

    #[test]
    fn copy_fallback_gives_the_same_view() {
        if !root() {
            eprintln!("skipped: needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let l = layers(dir.path());
        let target = dir.path().join("rootfs");
        fs::create_dir(&target).unwrap();
        copy_layers(&l, &target).unwrap();
        check_view(&target);
    }

    #[test]
    fn mounts_images_with_many_layers() {
        if !root() {
            eprintln!("skipped: needs root");
            return;
        }
        for api in [MountApi::Auto, MountApi::Legacy] {
            let dir = tempfile::tempdir().unwrap();
            // Long paths: 120 × ~100 bytes is far over one page of mount data.
            let base = dir.path().join("x".repeat(60));
            let l: Vec<PathBuf> = (0..120)
                .map(|i| {
                    let p = base.join(format!("{:064x}", i));
                    fs::create_dir_all(&p).unwrap();
                    fs::write(p.join(format!("f{i}")), "x").unwrap();
                    p
                })
                .collect();
            let target = dir.path().join("rootfs");
            mount(&l, &dir.path().join("state"), &target, api).unwrap();
            assert!(target.join("f0").exists() && target.join("f119").exists());
            unmount(&target).unwrap();
        }
    }
}
