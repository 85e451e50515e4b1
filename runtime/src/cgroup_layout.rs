//! The host's cgroup layout as the mount table shows it: which v1 hierarchies are
//! mounted where with which controllers, the v2 unified mount, and what they make.

use std::path::{Path, PathBuf};

use crate::cgroup::CgroupVersion;
use crate::mountinfo;

/// One mounted cgroup hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupMount {
    pub mount_point: PathBuf,
    /// The cgroup shown at the mount point: `/` for a hierarchy mounted at its root, a
    /// path for a bind of one cgroup (as inside a container).
    pub root: String,
    pub version: CgroupVersion,
    /// v1: the hierarchy's controllers and its `name=` if any (`cpu`, `name=systemd`), in
    /// the mount's super-option order. v2: empty (its controllers are in the mount's
    /// `cgroup.controllers`).
    pub controllers: Vec<String>,
}

impl CgroupMount {
    /// Mounted at its hierarchy's root, so every cgroup of the hierarchy is below it.
    pub fn shows_all(&self) -> bool {
        self.root == "/"
    }
}

/// What the mounted hierarchies make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayoutKind {
    /// Only v1 hierarchies.
    V1,
    /// Only the v2 unified hierarchy.
    V2,
    /// v1 controllers plus a v2 mount (systemd's `/sys/fs/cgroup/unified`).
    Hybrid,
    /// No cgroup filesystem mounted.
    None,
}

impl LayoutKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LayoutKind::V1 => "v1",
            LayoutKind::V2 => "v2",
            LayoutKind::Hybrid => "hybrid",
            LayoutKind::None => "none",
        }
    }
}

/// The cgroup hierarchies mounted in a mount namespace, in mount-table order; a mount
/// point mounted over again is listed once (its first mount).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupLayout {
    pub mounts: Vec<CgroupMount>,
}

impl CgroupLayout {
    /// This process's layout: `/proc/self/mountinfo`, with the v1 controller names the
    /// kernel lists in `/proc/cgroups`. Empty when they cannot be read.
    pub fn read() -> Self {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        Self::parse(&read("/proc/self/mountinfo"), &read("/proc/cgroups"))
    }

    /// The layout in `mountinfo` text; `proc_cgroups` (the text of `/proc/cgroups`) tells
    /// which v1 super options are controllers rather than mount flags.
    pub fn parse(mountinfo: &str, proc_cgroups: &str) -> Self {
        let known: Vec<&str> = proc_cgroups
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        let mut mounts: Vec<CgroupMount> = Vec::new();
        for m in mountinfo::parse(mountinfo) {
            let (version, controllers) = match m.fs_type.as_str() {
                "cgroup2" => (CgroupVersion::V2, Vec::new()),
                "cgroup" => (
                    CgroupVersion::V1,
                    m.super_options
                        .split(',')
                        .filter(|o| known.contains(o) || o.starts_with("name="))
                        .map(str::to_string)
                        .collect(),
                ),
                _ => continue,
            };
            if mounts.iter().any(|c| c.mount_point == m.mount_point) {
                continue;
            }
            mounts.push(CgroupMount {
                mount_point: m.mount_point,
                root: m.root,
                version,
                controllers,
            });
        }
        Self { mounts }
    }

    /// The v1 hierarchies.
    pub fn v1(&self) -> impl Iterator<Item = &CgroupMount> {
        self.mounts
            .iter()
            .filter(|m| m.version == CgroupVersion::V1)
    }

    /// The first v2 mount (bind mounts of it come later).
    pub fn unified(&self) -> Option<&CgroupMount> {
        self.mounts.iter().find(|m| m.version == CgroupVersion::V2)
    }

    pub fn kind(&self) -> LayoutKind {
        match (self.unified().is_some(), self.v1().next().is_some()) {
            (true, false) => LayoutKind::V2,
            (true, true) => LayoutKind::Hybrid,
            (false, true) => LayoutKind::V1,
            (false, false) => LayoutKind::None,
        }
    }

    /// The v1 hierarchies mounted directly under `/sys/fs/cgroup` (`/sys/fs/cgroup/cpu`,
    /// `/sys/fs/cgroup/systemd`), sorted.
    pub fn v1_under_sys_fs_cgroup(&self) -> Vec<&Path> {
        let mut dirs: Vec<&Path> = self
            .v1()
            .map(|m| m.mount_point.as_path())
            .filter(|p| p.parent() == Some(Path::new("/sys/fs/cgroup")))
            .collect();
        dirs.sort();
        dirs
    }
}

/// What [`CgroupLayout::v1_under_sys_fs_cgroup`] of [`CgroupLayout::read`] answers,
/// without reading the mount table: the directories directly under `/sys/fs/cgroup`
/// (symlinks such as `cpu -> cpu,cpuacct` skipped) whose filesystem is a cgroup v1 one,
/// none when `/sys/fs/cgroup` is itself a cgroup filesystem. Every container start needs
/// it (the spec's read-only paths), and the kernel formats the whole of
/// `/proc/self/mountinfo` on each read, which grows by two mounts per running task
/// (31 ms a read with 1000 tasks here; docs/benchmarks.md, "Where the time still goes").
/// Looked at once per process (a directory read and a statfs(2) per entry, ~17 system
/// calls): the host mounts its hierarchies at boot, and a process that creates
/// containers (a task's supervisor) lives for one task.
pub fn v1_mounts_under_sys_fs_cgroup() -> Vec<PathBuf> {
    static V1: std::sync::OnceLock<Vec<PathBuf>> = std::sync::OnceLock::new();
    V1.get_or_init(|| v1_mounts_under(Path::new("/sys/fs/cgroup")))
        .clone()
}

fn v1_mounts_under(base: &Path) -> Vec<PathBuf> {
    use nix::sys::statfs::{CGROUP_SUPER_MAGIC, CGROUP2_SUPER_MAGIC, statfs};
    let fs = |p: &Path| statfs(p).ok().map(|s| s.filesystem_type());
    if matches!(fs(base), Some(t) if t == CGROUP_SUPER_MAGIC || t == CGROUP2_SUPER_MAGIC) {
        return Vec::new();
    }
    let Ok(entries) = std::fs::read_dir(base) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .filter(|p| fs(p) == Some(CGROUP_SUPER_MAGIC))
        .collect();
    dirs.sort();
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_mounts_from_statfs_match_the_mount_table() {
        // The host's own layout, whatever it is (v1, hybrid, v2: then both are empty).
        let from_mountinfo: Vec<PathBuf> = CgroupLayout::read()
            .v1_under_sys_fs_cgroup()
            .into_iter()
            .map(Path::to_path_buf)
            .collect();
        assert_eq!(v1_mounts_under_sys_fs_cgroup(), from_mountinfo);
        // Not a cgroup mount point: nothing.
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("cpu")).unwrap();
        assert!(v1_mounts_under(dir.path()).is_empty());
    }

    const PROC_CGROUPS: &str = "\
#subsys_name\thierarchy\tnum_cgroups\tenabled
cpuset\t3\t1\t1
cpu\t1\t1\t1
cpuacct\t2\t1\t1
memory\t4\t22\t1
pids\t8\t1\t1
";
    const HYBRID: &str = "\
35 24 0:30 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
36 35 0:31 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
37 35 0:32 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
38 35 0:33 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
40 35 0:35 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,memory
41 35 0:35 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
90 30 0:35 /minifargate/t /mnt/cg rw,relatime - cgroup cgroup rw,memory
";
    const V2: &str = "\
35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    #[test]
    fn a_hybrid_host() {
        let l = CgroupLayout::parse(HYBRID, PROC_CGROUPS);
        assert_eq!(l.kind(), LayoutKind::Hybrid);
        let unified = l.unified().unwrap();
        assert_eq!(unified.mount_point, Path::new("/sys/fs/cgroup/unified"));
        assert!(unified.controllers.is_empty());
        let v1: Vec<(&Path, &[String])> = l
            .v1()
            .map(|m| (m.mount_point.as_path(), m.controllers.as_slice()))
            .collect();
        assert_eq!(
            v1,
            [
                (
                    Path::new("/sys/fs/cgroup/systemd"),
                    &["name=systemd".into()][..]
                ),
                (Path::new("/sys/fs/cgroup/cpu"), &["cpu".into()][..]),
                (Path::new("/sys/fs/cgroup/memory"), &["memory".into()][..]),
                (Path::new("/mnt/cg"), &["memory".into()][..]),
            ],
            "one entry per mount point; xattr and rw are not controllers"
        );
        assert!(!l.mounts.last().unwrap().shows_all());
        assert_eq!(
            l.v1_under_sys_fs_cgroup(),
            [
                Path::new("/sys/fs/cgroup/cpu"),
                Path::new("/sys/fs/cgroup/memory"),
                Path::new("/sys/fs/cgroup/systemd"),
            ]
        );
    }

    #[test]
    fn v2_v1_and_none() {
        let v2 = CgroupLayout::parse(V2, PROC_CGROUPS);
        assert_eq!(v2.kind(), LayoutKind::V2);
        assert_eq!(v2.v1().count(), 0);
        assert!(v2.v1_under_sys_fs_cgroup().is_empty());
        let v1_only: String = HYBRID
            .lines()
            .filter(|l| !l.contains("cgroup2"))
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(
            CgroupLayout::parse(&v1_only, PROC_CGROUPS).kind(),
            LayoutKind::V1
        );
        assert_eq!(CgroupLayout::parse("", "").kind(), LayoutKind::None);
        assert_eq!(LayoutKind::Hybrid.as_str(), "hybrid");
    }
}
