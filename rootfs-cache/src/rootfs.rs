//! Assembles a container's root filesystem from cached layers: an overlayfs mount with
//! the layer directories as read-only lowers and a per-container upper/work dir, or a
//! plain copy where overlayfs is unavailable.
//!
//! Many layers: the legacy mount(2) data string is limited to one page, so layers are
//! added one by one with the new mount API (`lowerdir+`, Linux 6.8+); older kernels
//! get `/proc/self/fd/N` paths (≈19 bytes a layer, ~200 layers in a page).
//!
//! A task in its own user namespace ([`Idmap`]) gets each lower layer through an idmapped
//! bind mount (`open_tree` + `mount_setattr(MOUNT_ATTR_IDMAP)` with the task's user
//! namespace): the shared layer files, owned by host root on disk, show as owned by the
//! task's root, with the same inodes, nothing chowned or copied. Those mounts are attached
//! under the state dir only while the overlay is made (overlayfs keeps private clones of
//! its layers) and detached right after. Kernel: idmapped mounts 5.12, overlayfs over
//! idmapped layers 5.19. Ref: mount_setattr(2), Documentation/filesystems/idmappings.rst,
//! Documentation/filesystems/overlayfs.rst ("Permission model").

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
    #[error(
        "failed to give layer {layer} the task's id mapping (an idmapped bind mount: Linux \
         5.12+ and a filesystem that supports it; overlayfs over idmapped layers needs 5.19+)"
    )]
    Idmap {
        layer: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("a task in its own user namespace needs overlayfs, which is not available here")]
    IdmapNeedsOverlay,
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

/// The user namespace a rootfs is shown through, and the host ids of its root.
#[derive(Debug, Clone, Copy)]
pub struct Idmap<'a> {
    /// The namespace's nsfs file (`/proc/<pid>/ns/user`).
    pub userns: &'a Path,
    pub root_uid: u32,
    pub root_gid: u32,
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
    mount_mapped(layers, state_dir, target, api, volatile, None)
}

/// As [`mount_with`], shown through `idmap`'s user namespace when given: idmapped lower
/// layers, and an upper dir owned by the namespace's root (the rootfs's `/` and every file
/// the container writes are its root's).
pub fn mount_mapped(
    layers: &[PathBuf],
    state_dir: &Path,
    target: &Path,
    api: MountApi,
    volatile: bool,
    idmap: Option<Idmap<'_>>,
) -> Result<RootfsKind, RootfsError> {
    let upper = state_dir.join("upper");
    let work = state_dir.join("work");
    for d in [&upper, &work, &target.to_path_buf()] {
        fs::create_dir_all(d).map_err(|e| io_err("create", d, e))?;
    }
    // An image without layers still needs a lower directory.
    let empty = state_dir.join("empty");
    let mut lowers: Vec<PathBuf> = if layers.is_empty() {
        fs::create_dir_all(&empty).map_err(|e| io_err("create", &empty, e))?;
        vec![empty]
    } else {
        layers.to_vec()
    };
    let _mapped = match idmap {
        Some(m) => {
            std::os::unix::fs::chown(&upper, Some(m.root_uid), Some(m.root_gid))
                .map_err(|e| io_err("chown", &upper, e))?;
            let mapped = MappedLayers::attach(&lowers, &mapped_layers_dir(target), m.userns)?;
            lowers = mapped.paths.clone();
            Some(mapped)
        }
        None => None,
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
        Err(e) if e == Errno::NODEV && idmap.is_some() => Err(RootfsError::IdmapNeedsOverlay),
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

/// Idmapped bind mounts of the lower layers, attached at `dir/<n>-<layer>` while the overlay is
/// made; dropping it detaches and removes them (the overlay holds its own clones).
struct MappedLayers {
    paths: Vec<PathBuf>,
    dir: PathBuf,
}

impl MappedLayers {
    fn attach(lowers: &[PathBuf], dir: &Path, userns: &Path) -> Result<Self, RootfsError> {
        let ns = fs::File::open(userns).map_err(|e| io_err("open", userns, e))?;
        fs::create_dir_all(dir).map_err(|e| io_err("create", dir, e))?;
        let mut made = MappedLayers {
            paths: Vec::with_capacity(lowers.len()),
            dir: dir.to_path_buf(),
        };
        for (i, l) in lowers.iter().enumerate() {
            // Named after the layer (its cache directory's name), so the overlay's
            // lowerdirs, as `inspect` shows them, still say which layer each one is.
            let name = l.file_name().map(|n| n.to_string_lossy().into_owned());
            let at = dir.join(format!("{i}-{}", name.unwrap_or_default()));
            fs::create_dir_all(&at).map_err(|e| io_err("create", &at, e))?;
            // Read-only: nothing may write the shared layer through it, and a recursive
            // delete of a state dir that still has it attached (after a crash) fails with
            // EROFS instead of emptying the cache's layer.
            idmapped_bind(l, &at, &ns, true).map_err(|source| RootfsError::Idmap {
                layer: l.clone(),
                source,
            })?;
            made.paths.push(at);
        }
        Ok(made)
    }
}

impl Drop for MappedLayers {
    fn drop(&mut self) {
        if let Err(e) = detach_layers_in(&self.dir) {
            tracing::warn!(error = %e, "failed to detach the idmapped layers");
        }
    }
}

/// Where the idmapped layers of the rootfs at `target` are attached while it is mounted:
/// `.<name>.lower` next to it (the mount point's directory: tmpfs under /run in production,
/// where making and removing the attach points costs microseconds, not an ext4 directory
/// update each).
fn mapped_layers_dir(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    target.with_file_name(format!(".{name}.lower"))
}

/// Detaches the idmapped layer mounts a killed process may have left attached for the
/// rootfs at `target` (see [`mount_mapped`]) and removes their directory.
pub fn detach_mapped_layers(target: &Path) -> Result<(), RootfsError> {
    detach_layers_in(&mapped_layers_dir(target))
}

/// Detaches every mount attached at an entry of `dir` and removes `dir`; nothing to do when
/// it is not there.
fn detach_layers_in(dir: &Path) -> Result<(), RootfsError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err("read", dir, e)),
    };
    for e in entries.flatten() {
        match rustix::mount::unmount(e.path(), UnmountFlags::DETACH) {
            Ok(()) | Err(Errno::INVAL) | Err(Errno::NOENT) => {}
            Err(err) => {
                return Err(RootfsError::Unmount {
                    target: e.path(),
                    source: err.into(),
                });
            }
        }
    }
    fs::remove_dir_all(dir).map_err(|e| io_err("remove", dir, e))
}

/// A detached copy of the mount of `src` (just that directory's subtree), idmapped with
/// the user namespace `ns` (and read-only if asked), then attached at `at`.
#[allow(unsafe_code)]
pub fn idmapped_bind(src: &Path, at: &Path, ns: &fs::File, read_only: bool) -> io::Result<()> {
    use rustix::mount::OpenTreeFlags;
    use std::os::fd::AsRawFd;
    let tree = rustix::mount::open_tree(
        rfs::CWD,
        src,
        OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
    )?;
    let attr = libc::mount_attr {
        attr_set: libc::MOUNT_ATTR_IDMAP
            | if read_only {
                libc::MOUNT_ATTR_RDONLY
            } else {
                0
            },
        attr_clr: 0,
        propagation: 0,
        userns_fd: ns.as_raw_fd() as u64,
    };
    // SAFETY: mount_setattr(2) reads `attr` (of the size passed) and the empty path; the
    // descriptors are open for the call. No wrapper in rustix or nix yet.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    rustix::mount::move_mount(
        &tree,
        "",
        rfs::CWD,
        at,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )?;
    Ok(())
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

    /// A user namespace mapping 0..65536 to `start..`, held by a `sleep` in it.
    struct Userns(std::process::Child);
    impl Userns {
        fn new(start: u32) -> Self {
            let child = std::process::Command::new("unshare")
                .args(["--user", "sleep", "100"])
                .spawn()
                .unwrap();
            let ns = format!("/proc/{}/ns/user", child.id());
            // unshare(1) execs sleep once the namespace exists.
            let me = fs::read_link("/proc/self/ns/user").unwrap();
            while fs::read_link(&ns).unwrap() == me {
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            for f in ["uid_map", "gid_map"] {
                fs::write(
                    format!("/proc/{}/{f}", child.id()),
                    format!("0 {start} 65536\n"),
                )
                .unwrap();
            }
            Userns(child)
        }
        fn path(&self) -> PathBuf {
            format!("/proc/{}/ns/user", self.0.id()).into()
        }
    }
    impl Drop for Userns {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn idmapped_layers_show_the_tasks_root_with_the_same_inodes() {
        if !root() {
            eprintln!("skipped: needs root");
            return;
        }
        let ns = Userns::new(4_200_000);
        let path = ns.path();
        for api in [MountApi::Auto, MountApi::Legacy] {
            let dir = tempfile::tempdir().unwrap();
            let l = layers(dir.path());
            let target = dir.path().join("rootfs");
            let state = dir.path().join("state");
            let idmap = Idmap {
                userns: &path,
                root_uid: 4_200_000,
                root_gid: 4_200_000,
            };
            let kind = mount_mapped(&l, &state, &target, api, true, Some(idmap)).unwrap();
            // Unmounted also when an assertion below fails (no overlay left on the host).
            struct Mounted<'a>(&'a Path);
            impl Drop for Mounted<'_> {
                fn drop(&mut self) {
                    let _ = unmount(self.0);
                }
            }
            let _mounted = Mounted(&target);
            assert_eq!(kind, RootfsKind::Overlay);
            check_view(&target);
            let seen = fs::metadata(target.join("etc/keep")).unwrap();
            let on_disk = fs::metadata(l[0].join("etc/keep")).unwrap();
            assert_eq!(on_disk.uid(), 0);
            assert_eq!((seen.uid(), seen.gid()), (4_200_000, 4_200_000));
            assert_eq!(
                seen.ino(),
                on_disk.ino(),
                "the layer's own file, not a copy"
            );
            let top = fs::metadata(&target).unwrap();
            assert_eq!((top.uid(), top.gid()), (4_200_000, 4_200_000));
            // The helper mounts are gone once the overlay holds its layers.
            let lower = mapped_layers_dir(&target);
            assert!(!lower.exists());
            let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
            assert!(
                !mountinfo
                    .lines()
                    .filter_map(|l| l.split(' ').nth(4))
                    .any(|m| Path::new(m).starts_with(&lower)),
                "{mountinfo}"
            );
            unmount(&target).unwrap();
            assert_eq!(fs::metadata(l[0].join("etc/keep")).unwrap().uid(), 0);
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
