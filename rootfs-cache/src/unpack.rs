//! Unpacks one layer tar into an empty directory without ever creating or changing
//! anything outside it, and converts OCI whiteouts to the overlayfs form.
//!
//! Every path is resolved with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` relative
//! to the layer directory, so `..`, absolute paths, symlinks (to `/`, to `..`) and
//! hardlinks cannot reach outside it; those entries are refused by name.
//! Ref: OCI image-spec layer.md (changesets, whiteouts); Linux overlayfs.rst (whiteouts
//! are 0/0 character devices, opaque directories carry `trusted.overlay.opaque=y`).

use rustix::fs::{
    self as rfs, AtFlags, FileType, Gid, Mode, OFlags, ResolveFlags, Timespec, Timestamps, Uid,
    XattrFlags,
};
use rustix::io::Errno;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

/// The xattr overlayfs reads to hide a lower directory's contents.
pub const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";

/// Limits that bound what a hostile layer can make us write.
#[derive(Debug, Clone)]
pub struct UnpackOptions {
    /// Refuse a layer whose files add up to more than this many bytes.
    pub max_unpacked_bytes: u64,
    /// A lower bound than `max_unpacked_bytes` from the free disk space, if any.
    pub free_space_bytes: Option<u64>,
    /// Entries (inodes) the cache's filesystem can still take, if known: a layer of
    /// millions of empty files is a bomb too.
    pub free_inodes: Option<u64>,
}

impl Default for UnpackOptions {
    fn default() -> Self {
        UnpackOptions {
            max_unpacked_bytes: 32 << 30,
            free_space_bytes: None,
            free_inodes: None,
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct UnpackStats {
    pub entries: u64,
    pub bytes: u64,
    /// Directories the tar did not list but its entries needed, with the first entry
    /// that needed each. If a lower layer has a symlink there, the layer writes through
    /// it: see [`crate::stack`].
    pub implicit_dirs: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("refused layer entry {entry:?}: {reason}")]
    Unsafe { entry: String, reason: String },
    #[error("failed to {op} layer entry {entry:?}")]
    Entry {
        op: &'static str,
        entry: String,
        #[source]
        source: io::Error,
    },
    #[error("failed to read the layer's tar stream")]
    Read(#[source] io::Error),
    #[error(
        "layer entry {entry:?} takes the layer past {limit} bytes unpacked \
         (max_unpacked_size): refusing a possible decompression bomb; raise \
         max_unpacked_size (config or MINIFARGATE_MAX_UNPACKED_SIZE) if the image is genuine"
    )]
    TooLarge { entry: String, limit: u64 },
    #[error(
        "layer entry {entry:?} takes the layer past the {limit} {unit} free on the cache's \
         disk (keeping min_free_space free); free some space (`minifargate prune`) and pull \
         again"
    )]
    NoSpace {
        entry: String,
        limit: u64,
        unit: &'static str,
    },
    #[error("failed to open layer directory {path}")]
    OpenRoot {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Linux's PATH_MAX and NAME_MAX: longer paths cannot be opened inside a container.
pub const PATH_MAX: usize = 4095;
pub const NAME_MAX: usize = 255;

/// An entry path for messages: hostile names can be megabytes long, so long ones keep
/// their first 200 bytes and say how long they were.
pub fn entry_name(entry: &[u8]) -> String {
    const KEEP: usize = 200;
    if entry.len() <= KEEP + 56 {
        return String::from_utf8_lossy(entry).into_owned();
    }
    format!(
        "{}…({} bytes)",
        String::from_utf8_lossy(&entry[..KEEP]),
        entry.len()
    )
}

fn unsafe_entry(entry: &[u8], reason: impl Into<String>) -> UnpackError {
    UnpackError::Unsafe {
        entry: entry_name(entry),
        reason: reason.into(),
    }
}

fn entry_io(op: &'static str, entry: &[u8], source: impl Into<io::Error>) -> UnpackError {
    UnpackError::Entry {
        op,
        entry: entry_name(entry),
        source: source.into(),
    }
}

/// Refuses names Linux cannot hold: a path longer than PATH_MAX or a component longer
/// than NAME_MAX (`what` is "path" or "link target").
fn check_name_lengths(raw: &[u8], name: &[u8], what: &str) -> Result<(), UnpackError> {
    if name.len() > PATH_MAX {
        return Err(unsafe_entry(
            raw,
            format!(
                "its {what} is {} bytes, longer than PATH_MAX ({PATH_MAX})",
                name.len()
            ),
        ));
    }
    if let Some(c) = name.split(|b| *b == b'/').find(|c| c.len() > NAME_MAX) {
        return Err(unsafe_entry(
            raw,
            format!(
                "a component of its {what} is {} bytes, longer than NAME_MAX ({NAME_MAX})",
                c.len()
            ),
        ));
    }
    Ok(())
}

/// Unpacks the tar read from `reader` into `dest`, which must be an empty directory.
/// The reader is left positioned after the tar's end-of-archive marker; the caller
/// drains the rest so its digest covers the whole stream.
pub fn unpack<R: Read>(
    reader: &mut R,
    dest: &Path,
    opts: &UnpackOptions,
) -> Result<UnpackStats, UnpackError> {
    let root = rfs::open(
        dest,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| UnpackError::OpenRoot {
        path: dest.to_path_buf(),
        source: e.into(),
    })?;
    let mut u = Unpacker {
        root,
        parent: None,
        dirs: Vec::new(),
        buf: vec![0u8; 256 * 1024],
        stats: UnpackStats::default(),
        opts,
        euid: rustix::process::geteuid(),
        egid: rustix::process::getegid(),
    };
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().map_err(UnpackError::Read)? {
        let mut entry = entry.map_err(UnpackError::Read)?;
        u.entry(&mut entry)?;
    }
    u.finish_dirs()?;
    Ok(std::mem::take(&mut u.stats))
}

struct Unpacker<'o> {
    root: OwnedFd,
    /// The last parent directory opened, by its path in the layer: tars list the
    /// entries of one directory together, so this saves most lookups.
    parent: Option<(Vec<u8>, OwnedFd)>,
    /// Directories whose mtime is set last (adding children changes it).
    dirs: Vec<(Vec<u8>, Timestamps)>,
    buf: Vec<u8>,
    stats: UnpackStats,
    opts: &'o UnpackOptions,
    euid: Uid,
    egid: Gid,
}

/// The target of a link entry, as written; `missing` is the refusal without one.
fn link_target<R: Read>(
    entry: &tar::Entry<'_, R>,
    raw: &[u8],
    missing: &'static str,
) -> Result<Vec<u8>, UnpackError> {
    let target = entry
        .link_name_bytes()
        .ok_or_else(|| unsafe_entry(raw, missing))?
        .into_owned();
    check_name_lengths(raw, &target, "link target")?;
    Ok(target)
}

/// Where an entry goes: its path in the layer (for errors), its parent directory, its
/// name there, and its metadata.
struct At<'a> {
    raw: &'a [u8],
    parent: BorrowedFd<'a>,
    name: &'a [u8],
    meta: &'a Meta,
}

/// Metadata of one entry, with PAX records applied.
struct Meta {
    mode: Mode,
    uid: u32,
    gid: u32,
    times: Timestamps,
    xattrs: Vec<(String, Vec<u8>)>,
}

fn resolve_flags() -> ResolveFlags {
    ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW
}

/// A big file's data is handed to the disk in chunks of this size while it is written
/// (see [`start_writeback`]).
const WRITEBACK_CHUNK: u64 = 8 << 20;

/// Starts the disk writing `len` bytes of `fd` from `offset`, without waiting: the pull's
/// `syncfs` before its layers are committed then finds a big file mostly written, rather
/// than waiting for all of it after the CPU work is done (a 50 MiB layer: ~40-70 ms
/// here). `POSIX_FADV_DONTNEED` queues the range's writeback (the kernel's
/// `generic_fadvise`), then drops from the page cache only the pages already clean:
/// those just written are dirty or under writeback then, and stay cached. Advice only:
/// an error changes nothing.
fn start_writeback(fd: BorrowedFd<'_>, offset: u64, len: u64) {
    let _ = rustix::fs::fadvise(
        fd,
        offset,
        std::num::NonZeroU64::new(len),
        rustix::fs::Advice::DontNeed,
    );
}

/// Set once `openat2` turned out to be missing (kernels before 5.6, qemu-user 7.2).
static NO_OPENAT2: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Opens the directory `path` beneath `dir` with [`resolve_flags`]: `openat2` where the
/// kernel has it, otherwise one `openat(O_NOFOLLOW | O_DIRECTORY)` per component, which
/// refuses the same things — a symlink anywhere on the way (`ELOOP`, or `ENOTDIR` for a
/// symlink with `O_DIRECTORY`) and `..` (`EXDEV`, as `RESOLVE_BENEATH` does); absolute
/// paths never reach here.
fn open_dir_beneath(dir: &OwnedFd, path: &[u8]) -> Result<OwnedFd, Errno> {
    use std::sync::atomic::Ordering;
    if !NO_OPENAT2.load(Ordering::Relaxed) {
        match rfs::openat2(dir, os(path), dir_flags(), Mode::empty(), resolve_flags()) {
            Err(Errno::NOSYS) => NO_OPENAT2.store(true, Ordering::Relaxed),
            r => return r,
        }
    }
    open_dir_by_components(dir, path)
}

/// The `openat2` fallback of [`open_dir_beneath`].
fn open_dir_by_components(dir: &OwnedFd, path: &[u8]) -> Result<OwnedFd, Errno> {
    if path.starts_with(b"/") {
        return Err(Errno::XDEV);
    }
    let mut cur = dir
        .try_clone()
        .map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::IO))?;
    for comp in path.split(|b| *b == b'/') {
        match comp {
            b"" | b"." => continue,
            b".." => return Err(Errno::XDEV),
            c => cur = rfs::openat(&cur, os(c), dir_flags(), Mode::empty())?,
        }
    }
    Ok(cur)
}

/// Splits an entry path into its components; refuses absolute paths and `..`.
fn split_path(raw: &[u8]) -> Result<Vec<&[u8]>, UnpackError> {
    if raw.starts_with(b"/") {
        return Err(unsafe_entry(raw, "absolute path"));
    }
    let mut out = Vec::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err(unsafe_entry(raw, "path contains a '..' component")),
            _ => out.push(c),
        }
    }
    Ok(out)
}

fn os(bytes: &[u8]) -> &std::ffi::OsStr {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::OsStr::from_bytes(bytes)
}

impl Unpacker<'_> {
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), UnpackError> {
        use tar::EntryType as T;
        let raw = entry.path_bytes().into_owned();
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink
        ) {
            return Ok(());
        }
        self.stats.entries += 1;
        if let Some(free) = self.opts.free_inodes
            && self.stats.entries > free
        {
            return Err(UnpackError::NoSpace {
                entry: entry_name(&raw),
                limit: free,
                unit: "inodes",
            });
        }
        check_name_lengths(&raw, &raw, "path")?;
        let comps = split_path(&raw)?;
        let Some((name, parents)) = comps.split_last() else {
            // The layer root itself ("./"): its attributes come from the container's
            // upper directory, never from a layer.
            return Ok(());
        };
        let name = name.to_vec();
        let parent_path = parents.join(&b'/');
        let meta = self.meta(entry, &raw)?;

        if name.starts_with(WHITEOUT_PREFIX) {
            return self.whiteout(&raw, &parent_path, &name);
        }

        let pfd = self.open_parent(&raw, &parent_path)?;
        let at = At {
            raw: &raw,
            parent: pfd.as_fd(),
            name: &name,
            meta: &meta,
        };
        match kind {
            T::Regular | T::Continuous | T::GNUSparse => self.regular(entry, &at),
            T::Directory => self.directory(&at, &parent_path),
            T::Symlink => self.symlink(entry, &at),
            T::Link => self.hardlink(entry, &at),
            T::Char | T::Block | T::Fifo => self.node(entry, kind, &at),
            other => {
                tracing::warn!(entry = %entry_name(&raw), kind = ?other,
                    "skipping layer entry of unsupported type");
                Ok(())
            }
        }
    }

    /// A regular file: its data within the size limits, then its metadata and times.
    fn regular<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        at: &At<'_>,
    ) -> Result<(), UnpackError> {
        let raw = at.raw;
        let size = entry.size();
        let total = self.stats.bytes.saturating_add(size);
        if total > self.opts.max_unpacked_bytes {
            return Err(UnpackError::TooLarge {
                entry: entry_name(raw),
                limit: self.opts.max_unpacked_bytes,
            });
        }
        if let Some(free) = self.opts.free_space_bytes
            && total > free
        {
            return Err(UnpackError::NoSpace {
                entry: entry_name(raw),
                limit: free,
                unit: "bytes",
            });
        }
        let file = self.create_file(raw, at.parent, at.name)?;
        let mut file = File::from(file);
        self.copy_data(entry, &mut file, raw)?;
        self.stats.bytes += size;
        self.apply_fd_meta(raw, file.as_fd(), at.meta)?;
        rfs::futimens(&file, &at.meta.times).map_err(|e| entry_io("set times", raw, e))?;
        Ok(())
    }

    /// A directory: made (or kept, when a lower entry made it; what else is there is
    /// replaced), its metadata now and its times at the end ([`Self::finish_dirs`]).
    fn directory(&mut self, at: &At<'_>, parent_path: &[u8]) -> Result<(), UnpackError> {
        let (raw, pfd, name) = (at.raw, at.parent, at.name);
        match rfs::mkdirat(pfd, os(name), Mode::from_raw_mode(0o700)) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                let st = rfs::statat(pfd, os(name), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| entry_io("stat", raw, e))?;
                if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                    self.remove(raw, pfd, name)?;
                    rfs::mkdirat(pfd, os(name), Mode::from_raw_mode(0o700))
                        .map_err(|e| entry_io("create directory", raw, e))?;
                }
            }
            Err(e) => return Err(entry_io("create directory", raw, e)),
        }
        let dfd = rfs::openat(pfd, os(name), dir_flags(), Mode::empty())
            .map_err(|e| entry_io("open directory", raw, e))?;
        self.apply_fd_meta(raw, dfd.as_fd(), at.meta)?;
        let mut path = parent_path.to_vec();
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(name);
        self.dirs.push((path, at.meta.times.clone()));
        Ok(())
    }

    /// A symbolic link, its target as written (never followed here).
    fn symlink<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        at: &At<'_>,
    ) -> Result<(), UnpackError> {
        let raw = at.raw;
        let target = link_target(entry, raw, "symlink without a target")?;
        self.create_with_retry(raw, at.parent, at.name, "create symlink", |p, n| {
            rfs::symlinkat(os(&target), p, os(n))
        })?;
        self.apply_path_meta(raw, at.parent, at.name, at.meta, false)
    }

    /// A hard link: its target must be an entry of this layer, reached without symlinks.
    fn hardlink<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        at: &At<'_>,
    ) -> Result<(), UnpackError> {
        let raw = at.raw;
        let target = link_target(entry, raw, "hardlink without a target")?;
        let tcomps = split_path(&target).map_err(|_| {
            unsafe_entry(
                raw,
                format!("hardlink target {:?} leaves the layer", entry_name(&target)),
            )
        })?;
        let Some((tname, tparents)) = tcomps.split_last() else {
            return Err(unsafe_entry(raw, "hardlink to the layer root"));
        };
        let tparent = tparents.join(&b'/');
        let tfd = self.open_existing_dir(&tparent).map_err(|e| {
            unsafe_entry(
                raw,
                format!(
                    "hardlink target {:?} is not inside this layer ({e})",
                    entry_name(&target)
                ),
            )
        })?;
        let tname = tname.to_vec();
        self.create_with_retry(raw, at.parent, at.name, "create hardlink", |p, n| {
            rfs::linkat(tfd.as_fd(), os(&tname), p, os(n), AtFlags::empty())
        })
        .map_err(|e| match e {
            UnpackError::Entry { source, .. }
                if source.raw_os_error() == Some(Errno::NOENT.raw_os_error()) =>
            {
                unsafe_entry(
                    raw,
                    format!(
                        "hardlink target {:?} does not exist in this layer",
                        entry_name(&target)
                    ),
                )
            }
            other => other,
        })
    }

    /// A character or block device node, or a FIFO.
    fn node<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        kind: tar::EntryType,
        at: &At<'_>,
    ) -> Result<(), UnpackError> {
        use tar::EntryType as T;
        let raw = at.raw;
        let ftype = match kind {
            T::Char => FileType::CharacterDevice,
            T::Block => FileType::BlockDevice,
            _ => FileType::Fifo,
        };
        let major = entry.header().device_major().ok().flatten().unwrap_or(0);
        let minor = entry.header().device_minor().ok().flatten().unwrap_or(0);
        let dev = rfs::makedev(major, minor);
        let mode = at.meta.mode;
        let made = self.create_with_retry(raw, at.parent, at.name, "create device node", |p, n| {
            rfs::mknodat(p, os(n), ftype, mode, dev)
        });
        match made {
            // Without CAP_MKNOD (not root), device nodes are skipped as rootless
            // podman does; as root they are created as Docker and podman do.
            Err(UnpackError::Entry { source, .. })
                if kind != T::Fifo && source.raw_os_error() == Some(Errno::PERM.raw_os_error()) =>
            {
                tracing::warn!(entry = %entry_name(raw), major, minor,
                    "skipping a device node: creating it needs CAP_MKNOD");
                return Ok(());
            }
            other => other?,
        }
        self.apply_path_meta(raw, at.parent, at.name, at.meta, true)
    }

    fn meta<R: Read>(
        &self,
        entry: &mut tar::Entry<'_, R>,
        raw: &[u8],
    ) -> Result<Meta, UnpackError> {
        let h = entry.header();
        let bad = |what: &'static str| move |e: io::Error| entry_io(what, raw, e);
        let mode = h.mode().map_err(bad("read mode of"))? & 0o7777;
        let mut uid = h.uid().map_err(bad("read uid of"))?;
        let mut gid = h.gid().map_err(bad("read gid of"))?;
        let mut mtime = Timespec {
            tv_sec: h.mtime().map_err(bad("read mtime of"))? as i64,
            tv_nsec: 0,
        };
        let mut xattrs = Vec::new();
        if let Some(pax) = entry.pax_extensions().map_err(bad("read PAX header of"))? {
            for ext in pax {
                let ext = ext.map_err(bad("read PAX header of"))?;
                let Ok(key) = ext.key() else { continue };
                let value = ext.value_bytes();
                let num = || {
                    std::str::from_utf8(value)
                        .ok()
                        .and_then(|v| v.parse::<u64>().ok())
                };
                match key {
                    "uid" => uid = num().unwrap_or(u64::MAX),
                    "gid" => gid = num().unwrap_or(u64::MAX),
                    "mtime" => {
                        if let Some(t) = std::str::from_utf8(value).ok().and_then(parse_pax_time) {
                            mtime = t;
                        }
                    }
                    _ => {
                        if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                            if name.starts_with("trusted.overlay.") {
                                tracing::warn!(entry = %entry_name(raw), xattr = name,
                                    "ignoring an overlayfs-internal xattr carried by the layer");
                            } else {
                                xattrs.push((name.to_string(), value.to_vec()));
                            }
                        }
                    }
                }
            }
        }
        // u32::MAX is (uid_t)-1, "no change", to chown(2); ids above it do not exist.
        if uid >= u64::from(u32::MAX) || gid >= u64::from(u32::MAX) {
            return Err(unsafe_entry(
                raw,
                format!("owner {uid}:{gid} is outside the 32-bit uid/gid range"),
            ));
        }
        Ok(Meta {
            mode: Mode::from_raw_mode(mode),
            uid: uid as u32,
            gid: gid as u32,
            times: Timestamps {
                last_access: mtime,
                last_modification: mtime,
            },
            xattrs,
        })
    }

    /// Opens the directory `path` beneath the layer root, creating missing components
    /// (tars may omit parents). Any symlink or non-directory on the way is refused.
    fn open_parent(&mut self, raw: &[u8], path: &[u8]) -> Result<OwnedFd, UnpackError> {
        if let Some((p, fd)) = &self.parent
            && p == path
        {
            return fd
                .try_clone()
                .map_err(|e| entry_io("open parent of", raw, e));
        }
        let fd = if path.is_empty() {
            self.root
                .try_clone()
                .map_err(|e| entry_io("open parent of", raw, e))?
        } else {
            match open_dir_beneath(&self.root, path) {
                Ok(fd) => fd,
                Err(Errno::NOENT) => self.create_parents(raw, path)?,
                Err(e) => return Err(self.classify(raw, path, e)),
            }
        };
        self.parent = Some((
            path.to_vec(),
            fd.try_clone().map_err(|e| entry_io("open", raw, e))?,
        ));
        Ok(fd)
    }

    fn create_parents(&mut self, raw: &[u8], path: &[u8]) -> Result<OwnedFd, UnpackError> {
        let mut cur = self
            .root
            .try_clone()
            .map_err(|e| entry_io("open parent of", raw, e))?;
        let mut so_far: Vec<u8> = Vec::new();
        for comp in path.split(|b| *b == b'/') {
            if !so_far.is_empty() {
                so_far.push(b'/');
            }
            so_far.extend_from_slice(comp);
            let next = match open_dir_beneath(&cur, comp) {
                Ok(fd) => fd,
                Err(Errno::NOENT) => {
                    match rfs::mkdirat(&cur, os(comp), Mode::from_raw_mode(0o755)) {
                        Ok(()) => self
                            .stats
                            .implicit_dirs
                            .push((entry_name(&so_far), entry_name(raw))),
                        Err(Errno::EXIST) => {}
                        Err(e) => return Err(entry_io("create parent directory of", raw, e)),
                    }
                    open_dir_beneath(&cur, comp).map_err(|e| self.classify(raw, path, e))?
                }
                Err(e) => return Err(self.classify(raw, path, e)),
            };
            cur = next;
        }
        Ok(cur)
    }

    fn open_existing_dir(&self, path: &[u8]) -> io::Result<OwnedFd> {
        if path.is_empty() {
            return self.root.try_clone();
        }
        Ok(open_dir_beneath(&self.root, path)?)
    }

    /// Turns a failed lookup into a message that says why the path is refused.
    fn classify(&self, raw: &[u8], path: &[u8], e: Errno) -> UnpackError {
        match e {
            Errno::LOOP | Errno::XDEV => unsafe_entry(
                raw,
                format!(
                    "its parent {:?} goes through a symlink; writing through a symlink could \
                     reach outside the layer",
                    entry_name(path)
                ),
            ),
            Errno::NOTDIR => unsafe_entry(
                raw,
                format!("its parent {:?} is not a directory", entry_name(path)),
            ),
            other => entry_io("open parent of", raw, other),
        }
    }

    fn create_file(
        &mut self,
        raw: &[u8],
        pfd: BorrowedFd<'_>,
        name: &[u8],
    ) -> Result<OwnedFd, UnpackError> {
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        match rfs::openat(pfd, os(name), flags, Mode::from_raw_mode(0o600)) {
            Ok(fd) => Ok(fd),
            Err(Errno::EXIST) => {
                self.remove(raw, pfd, name)?;
                rfs::openat(pfd, os(name), flags, Mode::from_raw_mode(0o600))
                    .map_err(|e| entry_io("create file", raw, e))
            }
            Err(e) => Err(entry_io("create file", raw, e)),
        }
    }

    /// Runs `create`; if the name exists (a later entry replaces an earlier one, as tar
    /// semantics say), removes it and tries once more.
    fn create_with_retry(
        &mut self,
        raw: &[u8],
        pfd: BorrowedFd<'_>,
        name: &[u8],
        op: &'static str,
        create: impl Fn(BorrowedFd<'_>, &[u8]) -> rustix::io::Result<()>,
    ) -> Result<(), UnpackError> {
        match create(pfd, name) {
            Ok(()) => Ok(()),
            Err(Errno::EXIST) => {
                self.remove(raw, pfd, name)?;
                create(pfd, name).map_err(|e| entry_io(op, raw, e))
            }
            Err(e) => Err(entry_io(op, raw, e)),
        }
    }

    /// Removes whatever is at `name` (a directory with its contents).
    fn remove(&mut self, raw: &[u8], pfd: BorrowedFd<'_>, name: &[u8]) -> Result<(), UnpackError> {
        match rfs::unlinkat(pfd, os(name), AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(Errno::ISDIR) => {
                // The cached parent may live inside the tree being removed.
                self.parent = None;
                remove_tree(pfd, name).map_err(|e| entry_io("replace directory", raw, e))
            }
            Err(e) => Err(entry_io("replace", raw, e)),
        }
    }

    fn copy_data<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        file: &mut File,
        raw: &[u8],
    ) -> Result<(), UnpackError> {
        // Bytes written, and how many of them the disk was asked to start writing.
        let (mut written, mut started) = (0u64, 0u64);
        loop {
            let n = match entry.read(&mut self.buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(UnpackError::Read(e)),
            };
            file.write_all(&self.buf[..n])
                .map_err(|e| entry_io("write", raw, e))?;
            written += n as u64;
            if written - started >= WRITEBACK_CHUNK {
                start_writeback(file.as_fd(), started, written - started);
                started = written;
            }
        }
    }

    fn apply_fd_meta(
        &self,
        raw: &[u8],
        fd: BorrowedFd<'_>,
        meta: &Meta,
    ) -> Result<(), UnpackError> {
        if meta.uid != self.euid.as_raw() || meta.gid != self.egid.as_raw() {
            rfs::fchown(
                fd,
                Some(Uid::from_raw(meta.uid)),
                Some(Gid::from_raw(meta.gid)),
            )
            .map_err(|e| entry_io("set owner of", raw, e))?;
        }
        // After chown, which clears setuid/setgid bits.
        rfs::fchmod(fd, meta.mode).map_err(|e| entry_io("set mode of", raw, e))?;
        for (name, value) in &meta.xattrs {
            if let Err(e) = rfs::fsetxattr(fd, name.as_str(), value, XattrFlags::empty()) {
                tracing::warn!(entry = %entry_name(raw), xattr = %name, error = %e,
                    "could not set xattr from the layer");
            }
        }
        Ok(())
    }

    fn apply_path_meta(
        &self,
        raw: &[u8],
        pfd: BorrowedFd<'_>,
        name: &[u8],
        meta: &Meta,
        chmod: bool,
    ) -> Result<(), UnpackError> {
        if meta.uid != self.euid.as_raw() || meta.gid != self.egid.as_raw() {
            rfs::chownat(
                pfd,
                os(name),
                Some(Uid::from_raw(meta.uid)),
                Some(Gid::from_raw(meta.gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|e| entry_io("set owner of", raw, e))?;
        }
        if chmod {
            // Only for nodes we just created (never symlinks): chmodat follows links.
            rfs::chmodat(pfd, os(name), meta.mode, AtFlags::empty())
                .map_err(|e| entry_io("set mode of", raw, e))?;
        }
        rfs::utimensat(pfd, os(name), &meta.times, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| entry_io("set times of", raw, e))?;
        Ok(())
    }

    fn whiteout(&mut self, raw: &[u8], parent_path: &[u8], name: &[u8]) -> Result<(), UnpackError> {
        let pfd = self.open_parent(raw, parent_path)?;
        if name == OPAQUE_MARKER {
            return rfs::fsetxattr(&pfd, OPAQUE_XATTR, b"y", XattrFlags::empty())
                .map_err(|e| entry_io("mark opaque the directory of", raw, e));
        }
        if name.starts_with(b".wh..wh.") {
            // Other AUFS metadata (.wh..wh.plnk, .wh..wh.aufs): meaningless here.
            return Ok(());
        }
        let target = &name[WHITEOUT_PREFIX.len()..];
        if target.is_empty() || target == b"." || target == b".." {
            return Err(unsafe_entry(
                raw,
                "whiteout names no file inside its directory",
            ));
        }
        self.create_with_retry(raw, pfd.as_fd(), target, "create whiteout", |p, n| {
            rfs::mknodat(
                p,
                os(n),
                FileType::CharacterDevice,
                Mode::empty(),
                rfs::makedev(0, 0),
            )
        })
    }

    fn finish_dirs(&mut self) -> Result<(), UnpackError> {
        self.parent = None;
        for (path, times) in std::mem::take(&mut self.dirs) {
            match self.open_existing_dir(&path) {
                Ok(fd) => {
                    rfs::futimens(&fd, &times).map_err(|e| entry_io("set times of", &path, e))?
                }
                // Replaced or removed by a later entry.
                Err(e) if e.raw_os_error() == Some(Errno::NOENT.raw_os_error()) => {}
                Err(e) if e.raw_os_error() == Some(Errno::NOTDIR.raw_os_error()) => {}
                Err(e) => return Err(entry_io("open directory", &path, e)),
            }
        }
        Ok(())
    }
}

fn parse_pax_time(v: &str) -> Option<Timespec> {
    let (secs, frac) = v.split_once('.').unwrap_or((v, ""));
    let tv_sec = secs.parse::<i64>().ok()?;
    let mut digits: String = frac.chars().take(9).collect();
    while digits.len() < 9 {
        digits.push('0');
    }
    let tv_nsec = digits.parse::<i64>().ok()?;
    Some(Timespec {
        tv_sec,
        tv_nsec: tv_nsec as _,
    })
}

/// Removes the directory `name` under `pfd` with everything in it, never following
/// symlinks.
fn remove_tree(pfd: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    let dfd = rfs::openat(pfd, os(name), dir_flags(), Mode::empty())?;
    let mut children = Vec::new();
    let mut dir = rfs::Dir::read_from(&dfd)?;
    while let Some(ent) = dir.read() {
        let ent = ent?;
        let n = ent.file_name().to_bytes();
        if n != b"." && n != b".." {
            children.push((n.to_vec(), ent.file_type() == FileType::Directory));
        }
    }
    for (child, is_dir) in children {
        if is_dir {
            remove_tree(dfd.as_fd(), &child)?;
        } else {
            match rfs::unlinkat(&dfd, os(&child), AtFlags::empty()) {
                Err(Errno::ISDIR) => remove_tree(dfd.as_fd(), &child)?,
                other => other?,
            }
        }
    }
    rfs::unlinkat(pfd, os(name), AtFlags::REMOVEDIR)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn component_walk_refuses_what_openat2_refuses() {
        use std::os::fd::OwnedFd;
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("a/b")).unwrap();
        std::os::unix::fs::symlink("/", d.path().join("a/up")).unwrap();
        std::os::unix::fs::symlink("b", d.path().join("a/side")).unwrap();
        let root: OwnedFd = std::fs::File::open(d.path()).unwrap().into();
        let walk = |p: &str| super::open_dir_by_components(&root, p.as_bytes());
        assert!(walk("a/b").is_ok());
        assert!(walk("./a//b").is_ok());
        for bad in ["a/up", "a/up/etc", "a/side", "a/side/x"] {
            let e = walk(bad).unwrap_err();
            assert!(
                matches!(e, rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR),
                "{bad}: {e:?}"
            );
        }
        assert_eq!(walk("a/../a").unwrap_err(), rustix::io::Errno::XDEV);
        assert_eq!(walk("/etc").unwrap_err(), rustix::io::Errno::XDEV);
        assert_eq!(walk("a/none").unwrap_err(), rustix::io::Errno::NOENT);
    }

    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn header(path: &str, kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(mode);
        h.set_mtime(1_600_000_000);
        h.set_uid(0);
        h.set_gid(0);
        // Bypass tar-rs's own path checks: hostile layers are what we test.
        let name = &mut h.as_old_mut().name;
        name.fill(0);
        name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_cksum();
        h
    }

    enum E<'a> {
        Dir(&'a str),
        File(&'a str, &'a [u8]),
        Mode(&'a str, &'a [u8], u32),
        Symlink(&'a str, &'a str),
        Hardlink(&'a str, &'a str),
        Whiteout(&'a str),
    }

    fn build(entries: &[E]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for e in entries {
            match e {
                E::Dir(p) => b.append(&header(p, tar::EntryType::Directory, 0, 0o755), &[][..]),
                E::File(p, data) => b.append(
                    &header(p, tar::EntryType::Regular, data.len() as u64, 0o644),
                    *data,
                ),
                E::Mode(p, data, mode) => b.append(
                    &header(p, tar::EntryType::Regular, data.len() as u64, *mode),
                    *data,
                ),
                E::Whiteout(p) => b.append(&header(p, tar::EntryType::Regular, 0, 0o644), &[][..]),
                E::Symlink(p, t) | E::Hardlink(p, t) => {
                    let kind = if matches!(e, E::Symlink(..)) {
                        tar::EntryType::Symlink
                    } else {
                        tar::EntryType::Link
                    };
                    let mut h = header(p, kind, 0, 0o777);
                    let ln = &mut h.as_old_mut().linkname;
                    ln.fill(0);
                    ln[..t.len()].copy_from_slice(t.as_bytes());
                    h.set_cksum();
                    b.append(&h, &[][..])
                }
            }
            .unwrap();
        }
        b.into_inner().unwrap()
    }

    fn run(entries: &[E]) -> (tempfile::TempDir, Result<UnpackStats, UnpackError>) {
        let outer = tempfile::tempdir().unwrap();
        std::fs::create_dir(outer.path().join("layer")).unwrap();
        let data = build(entries);
        let res = unpack(
            &mut &data[..],
            &outer.path().join("layer"),
            &UnpackOptions::default(),
        );
        (outer, res)
    }

    fn refused(entries: &[E], entry: &str) {
        let (outer, res) = run(entries);
        match res {
            Err(UnpackError::Unsafe { entry: e, .. }) => assert_eq!(e, entry),
            other => panic!("expected refusal of {entry}, got {other:?}"),
        }
        // Nothing was created next to the layer directory.
        let names: Vec<_> = std::fs::read_dir(outer.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("layer")]);
    }

    #[test]
    fn unpacks_files_dirs_links_and_modes() {
        let (outer, res) = run(&[
            E::Dir("etc/"),
            E::File("etc/hostname", b"box\n"),
            E::Mode("bin/su", b"#!", 0o4755),
            E::Symlink("bin/sh", "/bin/busybox"),
            E::Hardlink("etc/hn2", "etc/hostname"),
        ]);
        let stats = res.unwrap();
        assert_eq!(stats.entries, 5);
        let l = outer.path().join("layer");
        assert_eq!(std::fs::read(l.join("etc/hostname")).unwrap(), b"box\n");
        let su = std::fs::metadata(l.join("bin/su")).unwrap();
        assert_eq!(su.permissions().mode() & 0o7777, 0o4755);
        assert_eq!(
            std::fs::read_link(l.join("bin/sh")).unwrap(),
            Path::new("/bin/busybox")
        );
        let a = std::fs::metadata(l.join("etc/hostname")).unwrap();
        let b = std::fs::metadata(l.join("etc/hn2")).unwrap();
        assert_eq!(a.ino(), b.ino());
        assert_eq!(a.mtime(), 1_600_000_000);
        assert_eq!(
            std::fs::metadata(l.join("etc")).unwrap().mtime(),
            1_600_000_000
        );
    }

    #[test]
    fn later_entries_replace_earlier_ones() {
        let (outer, res) = run(&[
            E::File("a", b"one"),
            E::File("a", b"two"),
            E::Dir("d/"),
            E::File("d/x", b"x"),
            E::File("d", b"now a file"),
        ]);
        res.unwrap();
        let l = outer.path().join("layer");
        assert_eq!(std::fs::read(l.join("a")).unwrap(), b"two");
        assert_eq!(std::fs::read(l.join("d")).unwrap(), b"now a file");
    }

    #[test]
    fn refuses_dotdot_and_absolute_paths() {
        refused(&[E::File("../escape", b"x")], "../escape");
        refused(&[E::File("a/../../escape", b"x")], "a/../../escape");
        refused(&[E::File("/abs", b"x")], "/abs");
    }

    #[test]
    fn refuses_writes_through_symlinks() {
        refused(
            &[E::Symlink("root", "/"), E::File("root/etc/evil", b"x")],
            "root/etc/evil",
        );
        refused(
            &[E::Symlink("up", ".."), E::File("up/evil", b"x")],
            "up/evil",
        );
        refused(
            &[E::Dir("a/"), E::Symlink("a/b", "../.."), E::Dir("a/b/c/")],
            "a/b/c/",
        );
    }

    #[test]
    fn refuses_hardlinks_outside() {
        refused(&[E::Hardlink("pw", "../../../../etc/passwd")], "pw");
        refused(&[E::Hardlink("pw", "/etc/passwd")], "pw");
        refused(
            &[E::Symlink("s", "/etc"), E::Hardlink("pw", "s/passwd")],
            "pw",
        );
        refused(&[E::Hardlink("pw", "missing")], "pw");
    }

    #[test]
    fn refuses_whiteouts_that_climb_out() {
        refused(&[E::Whiteout(".wh...")], ".wh...");
        refused(&[E::Whiteout("a/.wh.")], "a/.wh.");
        refused(&[E::Whiteout("a/../.wh.x")], "a/../.wh.x");
    }

    #[test]
    fn refuses_ids_outside_32_bits() {
        let mut h = header("f", tar::EntryType::Regular, 0, 0o644);
        h.set_uid(u64::from(u32::MAX));
        h.set_cksum();
        let mut b = tar::Builder::new(Vec::new());
        b.append(&h, &[][..]).unwrap();
        let data = b.into_inner().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let err = unpack(&mut &data[..], dir.path(), &UnpackOptions::default()).unwrap_err();
        assert!(err.to_string().contains("uid/gid range"), "{err}");
    }

    #[test]
    fn bounds_the_unpacked_size() {
        let data = build(&[E::File("a", &[7u8; 4096]), E::File("b", &[7u8; 4096])]);
        let dir = tempfile::tempdir().unwrap();
        let opts = UnpackOptions {
            max_unpacked_bytes: 6000,
            free_space_bytes: None,
            free_inodes: None,
        };
        let err = unpack(&mut &data[..], dir.path(), &opts).unwrap_err();
        assert!(
            matches!(err, UnpackError::TooLarge { limit: 6000, ref entry } if entry == "b"),
            "{err}"
        );
    }

    #[test]
    fn stops_before_the_disk_fills() {
        let data = build(&[E::File("a", &[7u8; 4096]), E::File("b", &[7u8; 4096])]);
        let dir = tempfile::tempdir().unwrap();
        let opts = UnpackOptions {
            max_unpacked_bytes: 1 << 30,
            free_space_bytes: Some(5000),
            free_inodes: None,
        };
        let err = unpack(&mut &data[..], dir.path(), &opts).unwrap_err();
        assert!(
            matches!(err, UnpackError::NoSpace { limit: 5000, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("free"), "{err}");
    }

    #[test]
    fn converts_whiteouts_to_overlay_form() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: whiteouts need CAP_MKNOD and trusted xattrs (root)");
            return;
        }
        let (outer, res) = run(&[
            E::Dir("etc/"),
            E::Whiteout("etc/.wh.motd"),
            E::Dir("var/cache/"),
            E::Whiteout("var/cache/.wh..wh..opq"),
        ]);
        res.unwrap();
        let l = outer.path().join("layer");
        let st = rfs::lstat(l.join("etc/motd")).unwrap();
        assert_eq!(
            FileType::from_raw_mode(st.st_mode),
            FileType::CharacterDevice
        );
        assert_eq!(st.st_rdev, 0);
        let mut buf = [0u8; 8];
        let n = rfs::getxattr(l.join("var/cache"), OPAQUE_XATTR, &mut buf[..]).unwrap();
        assert_eq!(&buf[..n], b"y");
    }
}
