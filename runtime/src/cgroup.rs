//! Task and container cgroups for cgroup v1 and v2, with limits given in kernel terms
//! (CFS quota, shares, bytes), plus the OOM counter, usage statistics and removal.
//! Every function takes a root path.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::spec::Limits;

/// The directory under every hierarchy that holds minifargate's cgroups.
pub const CGROUP_PREFIX: &str = "minifargate";
/// The range of v1 `cpu.shares`; the kernel clamps what is written to it.
/// Ref: kernel/sched/sched.h MIN_SHARES (2) and MAX_SHARES (1 << 18).
pub const MIN_CPU_SHARES: u64 = 2;
pub const MAX_CPU_SHARES: u64 = 262_144;

/// Errors from cgroup file operations.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("failed to detect the cgroup version under {root}")]
    Detect {
        root: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to create cgroup {path}")]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to write {value:?} to {path}")]
    Write {
        path: PathBuf,
        value: String,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to parse {path}: unexpected content {content:?}")]
    Parse { path: PathBuf, content: String },
    #[error("failed to remove cgroup {path}")]
    Remove {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid cgroup name {name:?}: must be non-empty and contain no '/' or '..'")]
    InvalidName { name: String },
}

/// Which cgroup interface the host offers. A hybrid host (v1 controllers plus an
/// almost empty v2 mount) counts as v1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    V1,
    V2,
}

/// A CFS bandwidth limit: at most `quota_us` of CPU time in every `period_us`
/// (v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`, v2 `cpu.max`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuQuota {
    pub quota_us: u64,
    pub period_us: u64,
}

/// Limits of the task cgroup, the parent of all of a task's containers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskLimits {
    /// CFS bandwidth limit on the whole task.
    pub cpu_quota: Option<CpuQuota>,
    /// Relative weight as v1 `cpu.shares` (written as `cpu.weight` on v2, see
    /// [`shares_to_weight`]); clamped to [[`MIN_CPU_SHARES`], [`MAX_CPU_SHARES`]].
    pub cpu_shares: Option<u64>,
    /// Memory hard limit in bytes; no swap beyond it.
    pub memory: Option<u64>,
    /// Maximum number of tasks (processes and threads) in the whole task cgroup.
    pub pids: Option<u64>,
}

/// Usage figures read from a container's cgroup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupStats {
    /// Total CPU time in nanoseconds.
    pub cpu_usage_ns: u64,
    pub memory_usage: u64,
    /// `None` when unlimited.
    pub memory_limit: Option<u64>,
    pub pids: u64,
}

/// Shares clamped to the range the kernel accepts for v1 `cpu.shares`.
pub fn clamp_shares(shares: u64) -> u64 {
    shares.clamp(MIN_CPU_SHARES, MAX_CPU_SHARES)
}

/// cgroup v2 `cpu.weight` for v1 shares. Ref: the OCI/runc conversion
/// weight = 1 + (shares − 2) × 9999 / 262142.
pub fn shares_to_weight(shares: u64) -> u64 {
    let shares = clamp_shares(shares);
    1 + (shares - 2) * 9999 / 262_142
}

fn check_name(name: &str) -> Result<(), CgroupError> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(CgroupError::InvalidName {
            name: name.to_string(),
        });
    }
    Ok(())
}

fn write(path: &Path, value: impl ToString) -> Result<(), CgroupError> {
    let value = value.to_string();
    fs::write(path, &value).map_err(|source| {
        tracing::warn!(path = %path.display(), %value, error = %source, "cgroup write failed");
        CgroupError::Write {
            path: path.to_path_buf(),
            value,
            source,
        }
    })
}

fn read(path: &Path) -> Result<String, CgroupError> {
    fs::read_to_string(path).map_err(|source| CgroupError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn read_u64(path: &Path) -> Result<u64, CgroupError> {
    let content = read(path)?;
    content.trim().parse().map_err(|_| CgroupError::Parse {
        path: path.to_path_buf(),
        content,
    })
}

/// `key value` line lookup in files like `memory.events` or `cpu.stat`.
fn keyed(path: &Path, key: &str) -> Result<u64, CgroupError> {
    let content = read(path)?;
    content
        .lines()
        .find_map(|l| {
            l.strip_prefix(key)
                .and_then(|r| r.strip_prefix(' '))
                .and_then(|v| v.trim().parse().ok())
        })
        .ok_or_else(|| CgroupError::Parse {
            path: path.to_path_buf(),
            content,
        })
}

fn mkdir_all(path: &Path) -> Result<(), CgroupError> {
    fs::create_dir_all(path).map_err(|source| CgroupError::Create {
        path: path.to_path_buf(),
        source,
    })
}

fn mkdir(path: &Path) -> Result<(), CgroupError> {
    match fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(CgroupError::Create {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The cgroup filesystem: a root (normally `/sys/fs/cgroup`) and its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroups {
    root: PathBuf,
    version: CgroupVersion,
}

impl Cgroups {
    /// Detects the version of the cgroup filesystem at `/sys/fs/cgroup`.
    pub fn detect() -> Result<Self, CgroupError> {
        Self::detect_at(Path::new("/sys/fs/cgroup"))
    }

    /// Detects the version at `root`: v2 when `cgroup.controllers` sits at the root
    /// (a unified mount), v1 when per-controller directories (`memory/`) do.
    pub fn detect_at(root: &Path) -> Result<Self, CgroupError> {
        let version = if root.join("cgroup.controllers").exists() {
            CgroupVersion::V2
        } else if root.join("memory").is_dir() {
            CgroupVersion::V1
        } else {
            return Err(CgroupError::Detect {
                root: root.to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "neither cgroup.controllers nor memory/ found",
                ),
            });
        };
        Ok(Self {
            root: root.to_path_buf(),
            version,
        })
    }

    /// Uses `root` with a known version (tests point this at a temp dir).
    pub fn with_root(root: impl Into<PathBuf>, version: CgroupVersion) -> Self {
        Self {
            root: root.into(),
            version,
        }
    }

    pub fn version(&self) -> CgroupVersion {
        self.version
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The cgroup path of a task, relative to every hierarchy root: `/minifargate/<task>`.
    pub fn task_path(task_id: &str) -> String {
        format!("/{CGROUP_PREFIX}/{task_id}")
    }

    /// The cgroup path of a container: `/minifargate/<task>/<container>`.
    pub fn container_path(task_id: &str, container_id: &str) -> String {
        format!("/{CGROUP_PREFIX}/{task_id}/{container_id}")
    }

    /// Directory of `rel` in controller `ctrl` (v1) or in the unified tree (v2).
    fn dir(&self, ctrl: &str, rel: &str) -> PathBuf {
        let rel = rel.trim_start_matches('/');
        match self.version {
            CgroupVersion::V1 => self.root.join(ctrl).join(rel),
            CgroupVersion::V2 => self.root.join(rel),
        }
    }

    /// Creates `/minifargate/<task>` and writes the task limits: CFS quota, shares (or
    /// their v2 weight), memory hard limit (no swap beyond it), pids.
    /// On failure the half-made cgroup is removed.
    pub fn create_task(&self, task_id: &str, limits: &TaskLimits) -> Result<(), CgroupError> {
        if let Err(e) = self.update_task(task_id, limits) {
            if let Err(cleanup) = self.remove(&Self::task_path(task_id)) {
                tracing::warn!(task_id, error = %cleanup, "failed to remove half-made task cgroup");
            }
            return Err(e);
        }
        Ok(())
    }

    /// As [`Cgroups::create_task`] for a task cgroup that may exist already (made ahead,
    /// before the limits were known): makes what is missing and writes the limits, and on
    /// failure removes nothing (the caller may have a thread in the cgroup, which
    /// [`Cgroups::remove`] would kill).
    pub fn update_task(&self, task_id: &str, limits: &TaskLimits) -> Result<(), CgroupError> {
        check_name(task_id)?;
        let rel = Self::task_path(task_id);
        let create = || match self.version {
            CgroupVersion::V1 => self.create_task_v1(&rel, limits),
            CgroupVersion::V2 => self.create_task_v2(&rel, limits),
        };
        let result = create();
        // Another task's teardown may have removed the shared, then empty, `minifargate`
        // parent between our mkdirs of parent and child: once more finds it settled.
        if let Err(CgroupError::Create { source, .. }) = &result
            && source.kind() == std::io::ErrorKind::NotFound
        {
            return create();
        }
        result
    }

    /// Makes `rel` and its parents in the v1 cpuset hierarchy, each new one out of the
    /// scheduler's load balancing and then given its parent's cpus and mems (v1 cpuset
    /// children start empty: clone_children is 0).
    ///
    /// Why the load balancing flag: a v1 cpuset that has it and is given cpus, or is
    /// removed with cpus, makes the kernel rebuild the scheduler domains, which walks every
    /// cpuset on the host (`rebuild_sched_domains_locked`: `update_domain_attr_tree`,
    /// `dl_rebuild_rd_accounting`), under the cpuset lock, and on removal in the cgroup
    /// offline worker that holds the cgroup lock the next task's mkdir waits for: that
    /// was four walks over every task's cpusets per task started and stopped
    /// (docs/benchmarks.md, "N idle tasks"). Cleared while the cpuset has no cpus, it
    /// costs no rebuild, and setting the cpus then costs none either. It changes nothing
    /// for the tasks: the root cpuset keeps load balancing over all cpus, which is what
    /// the kernel's domains are built from (cpusets(7), "sched_load_balance"). A cpuset
    /// that already has cpus (made by another task) is left as it is. libcontainer then
    /// finds the cpus and mems set and writes neither.
    fn cpuset_v1(&self, rel: &str) -> Result<(), CgroupError> {
        let mut parent = self.root.join("cpuset");
        if !parent.is_dir() {
            return Ok(());
        }
        for part in rel.trim_start_matches('/').split('/') {
            let dir = parent.join(part);
            mkdir(&dir)?;
            for file in ["cpuset.cpus", "cpuset.mems"] {
                let empty = read(&dir.join(file))
                    .map(|s| s.trim().is_empty())
                    .unwrap_or(false);
                if !empty {
                    continue;
                }
                // Off before the cpus are set; a kernel without the flag only rebuilds.
                if file == "cpuset.cpus"
                    && let Err(e) = fs::write(dir.join("cpuset.sched_load_balance"), "0")
                {
                    tracing::debug!(error = %e, "cpuset load balancing left on");
                }
                write(&dir.join(file), read(&parent.join(file))?.trim())?;
            }
            parent = dir;
        }
        Ok(())
    }

    fn create_task_v1(&self, rel: &str, limits: &TaskLimits) -> Result<(), CgroupError> {
        self.cpuset_v1(rel)?;
        let cpu = self.dir("cpu", rel);
        mkdir_all(&cpu)?;
        if let Some(q) = limits.cpu_quota {
            // Each write of a CFS bandwidth file checks the whole host's cpu cgroup tree
            // (`__cfs_schedulable` walks every task group: ~0.4 ms with 1000 tasks), and a
            // new cgroup already has the kernel's default period (100 ms, the one ECS
            // uses): the period is written only when it differs.
            let period = cpu.join("cpu.cfs_period_us");
            if read_u64(&period).ok() != Some(q.period_us) {
                write(&period, q.period_us)?;
            }
            write(&cpu.join("cpu.cfs_quota_us"), q.quota_us)?;
        }
        if let Some(shares) = limits.cpu_shares {
            write(&cpu.join("cpu.shares"), clamp_shares(shares))?;
        }
        let mem = self.dir("memory", rel);
        mkdir_all(&mem)?;
        if let Some(bytes) = limits.memory {
            write(&mem.join("memory.limit_in_bytes"), bytes)?;
            if mem.join("memory.memsw.limit_in_bytes").exists() {
                write(&mem.join("memory.memsw.limit_in_bytes"), bytes)?;
            }
        }
        let pids = self.dir("pids", rel);
        mkdir_all(&pids)?;
        if let Some(max) = limits.pids {
            write(&pids.join("pids.max"), max)?;
        }
        // The task's dir in every controller hierarchy, not only those with limits:
        // libcontainer puts the containers in all of them, and while the task dir exists
        // another task's teardown cannot remove the shared parent from under it.
        for hierarchy in self.controller_hierarchies() {
            mkdir_all(&hierarchy.join(rel.trim_start_matches('/')))?;
        }
        Ok(())
    }

    /// The v1 controller hierarchies under the root (not the named `systemd` one, nor
    /// the hybrid `unified` mount).
    fn controller_hierarchies(&self) -> Vec<PathBuf> {
        fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
            .filter(|e| !matches!(e.file_name().to_str(), Some("systemd" | "unified")))
            .map(|e| e.path())
            .filter(|p| p.join("cgroup.procs").exists())
            .collect()
    }

    /// Enables the cpu, memory and pids controllers for the children of `dir` (v2).
    fn enable_controllers_v2(dir: &Path) -> Result<(), CgroupError> {
        let available = read(&dir.join("cgroup.controllers")).unwrap_or_default();
        let enabled = read(&dir.join("cgroup.subtree_control")).unwrap_or_default();
        let want: Vec<&str> = ["cpu", "memory", "pids"]
            .into_iter()
            .filter(|c| available.split_whitespace().any(|a| a == *c))
            .filter(|c| !enabled.split_whitespace().any(|a| a == *c))
            .collect();
        if want.is_empty() {
            return Ok(());
        }
        let value = want
            .iter()
            .map(|c| format!("+{c}"))
            .collect::<Vec<_>>()
            .join(" ");
        write(&dir.join("cgroup.subtree_control"), value)
    }

    fn create_task_v2(&self, rel: &str, limits: &TaskLimits) -> Result<(), CgroupError> {
        let prefix = self.root.join(CGROUP_PREFIX);
        Self::enable_controllers_v2(&self.root)?;
        mkdir(&prefix)?;
        Self::enable_controllers_v2(&prefix)?;
        let dir = self.dir("", rel);
        mkdir(&dir)?;
        Self::enable_controllers_v2(&dir)?;
        if let Some(q) = limits.cpu_quota {
            write(
                &dir.join("cpu.max"),
                format!("{} {}", q.quota_us, q.period_us),
            )?;
        }
        if let Some(shares) = limits.cpu_shares {
            write(&dir.join("cpu.weight"), shares_to_weight(shares))?;
        }
        if let Some(bytes) = limits.memory {
            write(&dir.join("memory.max"), bytes)?;
            write(&dir.join("memory.swap.max"), 0)?;
        }
        if let Some(max) = limits.pids {
            write(&dir.join("pids.max"), max)?;
        }
        Ok(())
    }

    /// Creates the container's cgroup under its task and writes its limits: shares,
    /// hard limit with no swap beyond it, soft limit, pids. libcontainer then puts the
    /// container's processes there.
    pub fn create_container(
        &self,
        task_id: &str,
        container_id: &str,
        limits: &Limits,
    ) -> Result<String, CgroupError> {
        check_name(task_id)?;
        check_name(container_id)?;
        let rel = Self::container_path(task_id, container_id);
        let result = match self.version {
            CgroupVersion::V1 => self.create_container_v1(&rel, limits),
            CgroupVersion::V2 => self.create_container_v2(&rel, limits),
        };
        if let Err(e) = result {
            if let Err(cleanup) = self.remove(&rel) {
                tracing::warn!(container_id, error = %cleanup, "failed to remove half-made container cgroup");
            }
            return Err(e);
        }
        Ok(rel)
    }

    /// Makes the v1 cgroup directories of the task's containers `container_ids` ahead of
    /// their creation, in every controller hierarchy (the cpuset given its parent's cpus
    /// and mems), without limits: [`Cgroups::create_container`] writes those later, and
    /// libcontainer finds every directory it would make already there. Call it before
    /// [`Cgroups::warm_migrations`]: a mkdir takes the kernel's cgroup mutex, which the
    /// warmer's first migration holds through an RCU grace period; made before, nothing
    /// of the containers' creation waits for that grace period but libcontainer's move
    /// of the container's process, after its own preparation. A no-op on v2 (no warmer
    /// there). On failure what was made is removed, and the error returned.
    pub fn precreate_containers(
        &self,
        task_id: &str,
        container_ids: &[String],
    ) -> Result<(), CgroupError> {
        if self.version != CgroupVersion::V1 {
            return Ok(());
        }
        check_name(task_id)?;
        let hierarchies = self.controller_hierarchies();
        for id in container_ids {
            check_name(id)?;
            let rel = Self::container_path(task_id, id);
            let made = self.cpuset_v1(&rel).and_then(|()| {
                hierarchies
                    .iter()
                    .try_for_each(|h| mkdir(&h.join(rel.trim_start_matches('/'))))
            });
            if let Err(e) = made {
                if let Err(cleanup) = self.remove(&rel) {
                    tracing::warn!(container_id = %id, error = %cleanup, "failed to remove half-made container cgroup");
                }
                return Err(e);
            }
        }
        Ok(())
    }

    fn create_container_v1(&self, rel: &str, limits: &Limits) -> Result<(), CgroupError> {
        self.cpuset_v1(rel)?;
        let cpu = self.dir("cpu", rel);
        mkdir_all(&cpu)?;
        if let Some(shares) = limits.cpu_shares {
            write(&cpu.join("cpu.shares"), clamp_shares(shares))?;
        }
        let mem = self.dir("memory", rel);
        mkdir_all(&mem)?;
        if let Some(bytes) = limits.memory {
            write(&mem.join("memory.limit_in_bytes"), bytes)?;
            // memsw = memory + swap; equal to the limit means no swap beyond it.
            if mem.join("memory.memsw.limit_in_bytes").exists() {
                let swap = limits.swap.unwrap_or(0);
                write(
                    &mem.join("memory.memsw.limit_in_bytes"),
                    bytes.saturating_add(swap),
                )?;
            }
        }
        if let Some(bytes) = limits.memory_reservation {
            write(&mem.join("memory.soft_limit_in_bytes"), bytes)?;
        }
        if let Some(v) = limits.swappiness
            && mem.join("memory.swappiness").exists()
        {
            write(&mem.join("memory.swappiness"), v.min(100))?;
        }
        let pids = self.dir("pids", rel);
        mkdir_all(&pids)?;
        if let Some(max) = limits.pids {
            write(&pids.join("pids.max"), max)?;
        }
        Ok(())
    }

    fn create_container_v2(&self, rel: &str, limits: &Limits) -> Result<(), CgroupError> {
        let dir = self.dir("", rel);
        mkdir_all(&dir)?;
        if let Some(shares) = limits.cpu_shares {
            write(&dir.join("cpu.weight"), shares_to_weight(shares))?;
        }
        if let Some(bytes) = limits.memory {
            write(&dir.join("memory.max"), bytes)?;
            write(&dir.join("memory.swap.max"), limits.swap.unwrap_or(0))?;
        }
        if let Some(bytes) = limits.memory_reservation {
            // Ref: Docker maps --memory-reservation to memory.low on cgroup v2.
            write(&dir.join("memory.low"), bytes)?;
        }
        if let Some(max) = limits.pids {
            write(&dir.join("pids.max"), max)?;
        }
        Ok(())
    }

    /// The kernel's count of OOM kills in the cgroup (`memory.oom_control` `oom_kill`
    /// on v1, `memory.events` `oom_kill` on v2). Read it before the cgroup is removed.
    pub fn oom_kills(&self, rel: &str) -> Result<u64, CgroupError> {
        match self.version {
            CgroupVersion::V1 => keyed(
                &self.dir("memory", rel).join("memory.oom_control"),
                "oom_kill",
            ),
            CgroupVersion::V2 => keyed(&self.dir("", rel).join("memory.events"), "oom_kill"),
        }
    }

    /// CPU, memory and pids usage of the cgroup at `rel`.
    pub fn stats(&self, rel: &str) -> Result<CgroupStats, CgroupError> {
        // Limits at or above this are "unlimited" (v1 reports PAGE_COUNTER_MAX pages).
        const UNLIMITED: u64 = 1 << 62;
        match self.version {
            CgroupVersion::V1 => {
                let mem = self.dir("memory", rel);
                let limit = read_u64(&mem.join("memory.limit_in_bytes"))?;
                Ok(CgroupStats {
                    cpu_usage_ns: read_u64(&self.dir("cpuacct", rel).join("cpuacct.usage"))?,
                    memory_usage: read_u64(&mem.join("memory.usage_in_bytes"))?,
                    memory_limit: (limit < UNLIMITED).then_some(limit),
                    pids: read_u64(&self.dir("pids", rel).join("pids.current"))?,
                })
            }
            CgroupVersion::V2 => {
                let dir = self.dir("", rel);
                let max = read(&dir.join("memory.max"))?;
                Ok(CgroupStats {
                    cpu_usage_ns: keyed(&dir.join("cpu.stat"), "usage_usec")? * 1000,
                    memory_usage: read_u64(&dir.join("memory.current"))?,
                    memory_limit: max.trim().parse().ok(),
                    pids: read_u64(&dir.join("pids.current"))?,
                })
            }
        }
    }

    /// Every directory that holds `rel`: one per v1 hierarchy, or the one unified dir.
    fn all_dirs(&self, rel: &str) -> Vec<PathBuf> {
        let rel = rel.trim_start_matches('/');
        match self.version {
            CgroupVersion::V2 => vec![self.root.join(rel)],
            CgroupVersion::V1 => {
                let mut dirs: Vec<PathBuf> = fs::read_dir(&self.root)
                    .into_iter()
                    .flatten()
                    .flatten()
                    // cpu and cpuacct are often symlinks to one "cpu,cpuacct" mount.
                    .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
                    .map(|e| e.path().join(rel))
                    .filter(|p| p.is_dir())
                    .collect();
                dirs.sort();
                dirs
            }
        }
    }

    /// Kills whatever is left in the cgroup at `rel` (and below), then removes it in
    /// every hierarchy, deepest first. Every directory is tried; the first error is returned.
    pub fn remove(&self, rel: &str) -> Result<(), CgroupError> {
        let mut first_err = None;
        for top in self.remaining_dirs(rel) {
            let mut dirs = Vec::new();
            collect_dirs(&top, &mut dirs);
            // Deepest first.
            dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
            for dir in dirs {
                if let Err(e) = remove_one(&dir) {
                    tracing::warn!(path = %dir.display(), error = %e, "failed to remove cgroup");
                    first_err.get_or_insert(e);
                }
            }
        }
        // The last task out removes the shared `minifargate` parent; with other tasks
        // under it, rmdir fails (EBUSY/ENOTEMPTY) and it stays.
        if Path::new(rel.trim_start_matches('/')).parent() == Some(Path::new(CGROUP_PREFIX)) {
            let _ = self.remaining_dirs(CGROUP_PREFIX);
        }
        first_err.map_or(Ok(()), Err)
    }

    /// The directories of `rel` (as [`Cgroups::all_dirs`]) that a plain `rmdir` did not
    /// remove: the common case at a teardown is an empty cgroup without children, which
    /// goes at the first try, without first listing its directory and reading its
    /// `cgroup.procs`. What is left (processes or child cgroups in it, EBUSY; files in a
    /// plain directory, ENOTEMPTY) is for [`Cgroups::remove`]'s walk.
    fn remaining_dirs(&self, rel: &str) -> Vec<PathBuf> {
        let rel = rel.trim_start_matches('/');
        let tops: Vec<PathBuf> = match self.version {
            CgroupVersion::V2 => vec![self.root.join(rel)],
            // cpu and cpuacct are often symlinks to one "cpu,cpuacct" mount: the second
            // rmdir finds nothing.
            CgroupVersion::V1 => fs::read_dir(&self.root)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path().join(rel))
                .collect(),
        };
        let mut left: Vec<PathBuf> = tops
            .into_iter()
            .filter(|dir| match fs::remove_dir(dir) {
                Ok(()) => false,
                Err(e) => !matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)),
            })
            .collect();
        left.sort();
        left
    }

    /// Ids of the tasks that have a cgroup under `/minifargate` in any hierarchy.
    pub fn task_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .all_dirs(CGROUP_PREFIX)
            .into_iter()
            .flat_map(|d| fs::read_dir(d).into_iter().flatten().flatten())
            .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// Whether the cgroup at `rel` exists in any hierarchy.
    pub fn exists(&self, rel: &str) -> bool {
        !self.all_dirs(rel).is_empty()
    }
}

fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    if !dir.is_dir() {
        return;
    }
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            collect_dirs(&entry.path(), out);
        }
    }
    out.push(dir.to_path_buf());
}

/// SIGKILLs the processes in one cgroup dir and rmdirs it, retrying while the kernel
/// still counts dying tasks (EBUSY) for up to 2 s.
fn remove_one(dir: &Path) -> Result<(), CgroupError> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        if let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) {
            for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::SIGKILL,
                );
            }
        }
        // A real cgroup dir holds only kernel files, which rmdir ignores; a plain dir
        // (unit tests) holds regular files that must go first.
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) && !is_cgroupfs(dir) => {
                for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
                    if entry.file_type().map(|t| t.is_file()).unwrap_or(false) {
                        let _ = fs::remove_file(entry.path());
                    }
                }
            }
            Err(source) if Instant::now() >= deadline => {
                return Err(CgroupError::Remove {
                    path: dir.to_path_buf(),
                    source,
                });
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

fn is_cgroupfs(dir: &Path) -> bool {
    nix::sys::statfs::statfs(dir)
        .map(|s| {
            let t = s.filesystem_type();
            t == nix::sys::statfs::CGROUP_SUPER_MAGIC || t == nix::sys::statfs::CGROUP2_SUPER_MAGIC
        })
        .unwrap_or(false)
}

/// Keeps the kernel's cgroup migration lock warm while a task is set up (cgroup v1).
///
/// Moving a process between cgroups takes `cgroup_threadgroup_rwsem` for writing, and
/// after a quiet spell that write lock first waits for an RCU grace period: the first
/// migration after a pause takes ~7 ms here (measured: the first `cgroup.procs` write of
/// a container's process, every later one ~0.03 ms). One migration every few ms keeps
/// the lock in its fast state, so a warmer started when the supervisor starts pays the
/// grace period while the supervisor does other work, and the container's own
/// migration (done by libcontainer) finds the lock warm.
///
/// The warmer is a thread that moves itself, again and again, into the task's own cgroup
/// of one v1 hierarchy (`pids`, or `cpu`/`memory` when that is not mounted), while it has
/// the host's one turn to ([`WarmTurn`]): no other process and no cgroup but the task's
/// is touched. It is joined when dropped, so its thread is out of the cgroup (gone)
/// before anything removes the task's cgroups. It stops by itself after `max`. On v2 it
/// does nothing (moving a single thread needs a threaded subtree there).
///
/// It starts only once the task's cgroups, and its containers'
/// ([`Cgroups::precreate_containers`]), exist: its first move holds the kernel's cgroup
/// mutex through the grace period, and every cgroup mkdir meanwhile waits for it. (A
/// warmer started before any of the task's cgroups existed made their mkdirs wait out
/// that grace period instead: at 1000 tasks held, run-task took ~6 ms longer with it,
/// docs/benchmarks.md.)
#[derive(Debug)]
pub struct MigrationWarmer {
    /// Dropped to stop the thread (it wakes at once).
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The cgroup dir the warmer created, removed on drop when empty.
    created: Option<PathBuf>,
}

/// How often the warmer migrates itself: well inside one grace period.
const WARM_INTERVAL: Duration = Duration::from_millis(2);

/// How often a warmer waiting for its turn ([`WarmTurn`]) asks again.
const TURN_POLL: Duration = Duration::from_millis(5);

/// The one warmer of the host that migrates. The lock it keeps warm is one for the whole
/// kernel, so one warmer at a time is enough for every task being set up; each more
/// would only take that lock for writing again (which blocks every fork and exit of the
/// host meanwhile) and walk cgroupfs paths. A scale-out of a few hundred tasks had a
/// hundred warmers at once, 50,000 migrations a second, and the launches waited on them
/// (docs/scaling.md). The turn is an abstract unix socket name bound by the warmer whose
/// turn it is: the kernel frees it when that warmer stops or its process dies, and it
/// leaves nothing on disk.
struct WarmTurn {
    _bound: std::os::unix::net::UnixDatagram,
}

impl WarmTurn {
    const NAME: &'static [u8] = b"minifargate/cgroup-migration-warmer";

    /// The turn, when no other warmer of this host (this network namespace: where abstract
    /// names live) has it.
    fn take() -> Option<WarmTurn> {
        Self::take_named(Self::NAME)
    }

    fn take_named(name: &[u8]) -> Option<WarmTurn> {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name).ok()?;
        std::os::unix::net::UnixDatagram::bind_addr(&addr)
            .ok()
            .map(|s| WarmTurn { _bound: s })
    }
}

impl Cgroups {
    /// Starts a [`MigrationWarmer`] in task `task_id`'s cgroup; `None` on v2, when no
    /// suitable hierarchy is mounted, or when the thread cannot be started.
    pub fn warm_migrations(&self, task_id: &str, max: Duration) -> Option<MigrationWarmer> {
        if check_name(task_id).is_err() {
            return None;
        }
        self.warm_in(&Self::task_path(task_id), max)
    }

    fn warm_in(&self, rel: &str, max: Duration) -> Option<MigrationWarmer> {
        if self.version != CgroupVersion::V1 {
            return None;
        }
        let ctrl = ["pids", "cpu", "memory"]
            .into_iter()
            .find(|c| self.root.join(c).join("tasks").exists())?;
        let dir = self.dir(ctrl, rel);
        let created = (!dir.exists()).then(|| dir.clone());
        if fs::create_dir_all(&dir).is_err() {
            return None;
        }
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let tasks = dir.join("tasks");
        let thread = threadgate::spawn(
            std::thread::Builder::new().name("cgroup-warm".into()),
            move || {
                let tid = nix::unistd::gettid().as_raw().to_string();
                let until = Instant::now() + max;
                let mut turn: Option<WarmTurn> = None;
                while Instant::now() < until {
                    if turn.is_none() {
                        turn = WarmTurn::take();
                    }
                    let wait = if turn.is_some() {
                        if fs::write(&tasks, &tid).is_err() {
                            return;
                        }
                        WARM_INTERVAL
                    } else {
                        TURN_POLL
                    };
                    match stopped.recv_timeout(wait) {
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                        _ => return,
                    }
                }
            },
        );
        match thread {
            Ok(t) => Some(MigrationWarmer {
                stop: Some(stop),
                thread: Some(t),
                created,
            }),
            Err(_) => {
                if let Some(d) = created {
                    let _ = fs::remove_dir(d);
                }
                None
            }
        }
    }
}

impl Drop for MigrationWarmer {
    fn drop(&mut self) {
        drop(self.stop.take());
        // Joined: the thread has left the task's cgroup before anyone may remove it.
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // Made here and still unused (the task never got its cgroup): not left behind,
        // nor the shared parent when it is empty (as `Cgroups::remove` does). With the
        // task's containers under it, rmdir fails and the dir stays theirs.
        if let Some(d) = self.created.take()
            && fs::remove_dir(&d).is_ok()
            && let Some(parent) = d.parent()
        {
            let _ = fs::remove_dir(parent);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content(p: &Path) -> String {
        fs::read_to_string(p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .trim()
            .to_string()
    }

    #[test]
    fn one_warmer_at_a_time_has_the_turn_until_it_lets_go() {
        let name = format!("minifargate-test/warm-turn/{}", std::process::id());
        let first = WarmTurn::take_named(name.as_bytes()).expect("a free turn");
        assert!(
            WarmTurn::take_named(name.as_bytes()).is_none(),
            "a second warmer waits"
        );
        // From another thread too (as another supervisor's warmer).
        let n = name.clone();
        assert!(
            std::thread::spawn(move || WarmTurn::take_named(n.as_bytes()).is_none())
                .join()
                .unwrap()
        );
        drop(first);
        assert!(WarmTurn::take_named(name.as_bytes()).is_some());
    }

    #[test]
    fn shares_clamp_and_weight() {
        assert_eq!(clamp_shares(0), 2);
        assert_eq!(clamp_shares(512), 512);
        assert_eq!(clamp_shares(1 << 20), 262_144);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(0), 1, "clamped first");
    }

    #[test]
    fn v1_writes_task_and_container_files() {
        let tmp = tempfile::tempdir().unwrap();
        for c in ["cpu", "cpuacct", "memory", "pids", "cpuset"] {
            fs::create_dir(tmp.path().join(c)).unwrap();
        }
        fs::write(tmp.path().join("cpuset/cpuset.cpus"), "0-1\n").unwrap();
        fs::write(tmp.path().join("cpuset/cpuset.mems"), "0\n").unwrap();
        let cg = Cgroups::detect_at(tmp.path()).unwrap();
        assert_eq!(cg.version(), CgroupVersion::V1);
        let limits = TaskLimits {
            cpu_quota: Some(CpuQuota {
                quota_us: 25_000,
                period_us: 100_000,
            }),
            memory: Some(512 << 20),
            pids: Some(100),
            ..Default::default()
        };
        cg.create_task("t1", &limits).unwrap();
        let t = |c: &str, f: &str| tmp.path().join(c).join("minifargate/t1").join(f);
        assert_eq!(content(&t("cpu", "cpu.cfs_quota_us")), "25000");
        assert_eq!(content(&t("cpu", "cpu.cfs_period_us")), "100000");
        assert_eq!(
            content(&t("memory", "memory.limit_in_bytes")),
            (512u64 << 20).to_string()
        );
        assert_eq!(content(&t("pids", "pids.max")), "100");
        // Plain dirs start without the files the kernel would create: cpuset copied down
        // only where empty files exist, so just check the dirs were made.
        assert!(tmp.path().join("cpuset/minifargate/t1").is_dir());

        // memsw is written only where the kernel offers it (swap accounting on).
        fs::create_dir_all(tmp.path().join("memory/minifargate/t1/c1")).unwrap();
        fs::write(
            tmp.path()
                .join("memory/minifargate/t1/c1/memory.memsw.limit_in_bytes"),
            "",
        )
        .unwrap();
        fs::write(
            tmp.path()
                .join("memory/minifargate/t1/c1/memory.swappiness"),
            "",
        )
        .unwrap();
        let lim = Limits {
            cpu_shares: Some(0),
            memory: Some(64 << 20),
            memory_reservation: Some(32 << 20),
            pids: Some(50),
            swap: Some(16 << 20),
            swappiness: Some(10),
        };
        let rel = cg.create_container("t1", "c1", &lim).unwrap();
        assert_eq!(rel, "/minifargate/t1/c1");
        let c = |ctl: &str, f: &str| tmp.path().join(ctl).join("minifargate/t1/c1").join(f);
        assert_eq!(content(&c("cpu", "cpu.shares")), "2");
        assert_eq!(
            content(&c("memory", "memory.limit_in_bytes")),
            (64u64 << 20).to_string()
        );
        // maxSwap: memsw = memory + swap.
        assert_eq!(
            content(&c("memory", "memory.memsw.limit_in_bytes")),
            (80u64 << 20).to_string()
        );
        assert_eq!(content(&c("memory", "memory.swappiness")), "10");
        assert_eq!(
            content(&c("memory", "memory.soft_limit_in_bytes")),
            (32u64 << 20).to_string()
        );
        assert_eq!(content(&c("pids", "pids.max")), "50");

        fs::write(
            c("memory", "memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
        )
        .unwrap();
        assert_eq!(cg.oom_kills(&rel).unwrap(), 3);
        assert_eq!(cg.task_ids(), vec!["t1".to_string()]);

        cg.remove(&Cgroups::task_path("t1")).unwrap();
        assert!(!cg.exists(&Cgroups::task_path("t1")));
        assert!(cg.task_ids().is_empty());
    }

    #[test]
    fn v1_container_dirs_made_ahead_in_every_hierarchy_then_given_limits() {
        let tmp = tempfile::tempdir().unwrap();
        let hierarchies = ["cpu", "cpuacct", "memory", "pids", "freezer", "cpuset"];
        for c in hierarchies {
            fs::create_dir(tmp.path().join(c)).unwrap();
            fs::write(tmp.path().join(c).join("cgroup.procs"), "").unwrap();
        }
        fs::write(tmp.path().join("cpuset/cpuset.cpus"), "0-1\n").unwrap();
        fs::write(tmp.path().join("cpuset/cpuset.mems"), "0\n").unwrap();
        let cg = Cgroups::with_root(tmp.path(), CgroupVersion::V1);
        cg.create_task("t4", &TaskLimits::default()).unwrap();
        // The kernel gives a new cpuset empty cpus and mems files; these plain dirs do not.
        for f in ["cpuset.cpus", "cpuset.mems"] {
            fs::write(tmp.path().join("cpuset/minifargate/t4").join(f), "0-1\n").unwrap();
        }
        let ids = ["t4-0".to_string(), "t4-1".to_string()];
        cg.precreate_containers("t4", &ids).unwrap();
        for c in hierarchies {
            for id in &ids {
                let d = tmp.path().join(c).join("minifargate/t4").join(id);
                assert!(d.is_dir(), "{}", d.display());
                // No limits yet: those are the container create's.
                assert_eq!(fs::read_dir(&d).unwrap().count(), 0, "{}", d.display());
            }
        }
        // The create then finds its dirs and writes its limits into them.
        let lim = Limits {
            memory: Some(64 << 20),
            pids: Some(50),
            ..Default::default()
        };
        cg.create_container("t4", "t4-0", &lim).unwrap();
        let c = |ctl: &str, f: &str| tmp.path().join(ctl).join("minifargate/t4/t4-0").join(f);
        assert_eq!(
            content(&c("memory", "memory.limit_in_bytes")),
            (64u64 << 20).to_string()
        );
        assert_eq!(content(&c("pids", "pids.max")), "50");
        // A bad id is refused before anything is made.
        assert!(
            cg.precreate_containers("t4", &["../x".to_string()])
                .is_err()
        );
        assert!(!tmp.path().join("cpu/minifargate/x").exists());
        // The task's removal takes the containers' dirs with it.
        cg.remove(&Cgroups::task_path("t4")).unwrap();
        for c in hierarchies {
            assert!(!tmp.path().join(c).join("minifargate/t4").exists(), "{c}");
        }
        // v2: nothing is made ahead (no warmer there).
        let v2 = tempfile::tempdir().unwrap();
        Cgroups::with_root(v2.path(), CgroupVersion::V2)
            .precreate_containers("t5", &["t5-0".to_string()])
            .unwrap();
        assert_eq!(fs::read_dir(v2.path()).unwrap().count(), 0);
    }

    #[test]
    fn v1_task_shares_without_quota() {
        let tmp = tempfile::tempdir().unwrap();
        for c in ["cpu", "memory", "pids"] {
            fs::create_dir(tmp.path().join(c)).unwrap();
        }
        let cg = Cgroups::with_root(tmp.path(), CgroupVersion::V1);
        let limits = TaskLimits {
            cpu_shares: Some(514),
            ..Default::default()
        };
        cg.create_task("t2", &limits).unwrap();
        assert_eq!(
            content(&tmp.path().join("cpu/minifargate/t2/cpu.shares")),
            "514"
        );
        assert!(
            !tmp.path()
                .join("cpu/minifargate/t2/cpu.cfs_quota_us")
                .exists()
        );
        assert!(
            !tmp.path()
                .join("memory/minifargate/t2/memory.limit_in_bytes")
                .exists()
        );
    }

    #[test]
    fn v2_writes_unified_files() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(
            tmp.path().join("cgroup.controllers"),
            "cpuset cpu io memory hugetlb pids rdma\n",
        )
        .unwrap();
        fs::write(tmp.path().join("cgroup.subtree_control"), "cpu\n").unwrap();
        let cg = Cgroups::detect_at(tmp.path()).unwrap();
        assert_eq!(cg.version(), CgroupVersion::V2);
        let limits = TaskLimits {
            cpu_quota: Some(CpuQuota {
                quota_us: 50_000,
                period_us: 100_000,
            }),
            memory: Some(1 << 30),
            pids: Some(4096),
            ..Default::default()
        };
        cg.create_task("t3", &limits).unwrap();
        assert_eq!(
            content(&tmp.path().join("cgroup.subtree_control")),
            "+memory +pids"
        );
        let t = tmp.path().join("minifargate/t3");
        assert_eq!(content(&t.join("cpu.max")), "50000 100000");
        assert_eq!(content(&t.join("memory.max")), (1u64 << 30).to_string());
        assert_eq!(content(&t.join("memory.swap.max")), "0");
        assert_eq!(content(&t.join("pids.max")), "4096");

        let lim = Limits {
            cpu_shares: Some(1024),
            memory: Some(256 << 20),
            memory_reservation: Some(128 << 20),
            pids: None,
            ..Default::default()
        };
        let rel = cg.create_container("t3", "web", &lim).unwrap();
        let c = t.join("web");
        assert_eq!(content(&c.join("cpu.weight")), "39");
        assert_eq!(content(&c.join("memory.max")), (256u64 << 20).to_string());
        assert_eq!(content(&c.join("memory.swap.max")), "0");
        assert_eq!(content(&c.join("memory.low")), (128u64 << 20).to_string());
        assert!(!c.join("pids.max").exists());

        fs::write(
            c.join("memory.events"),
            "low 0\nhigh 0\nmax 9\noom 1\noom_kill 1\noom_group_kill 0\n",
        )
        .unwrap();
        assert_eq!(cg.oom_kills(&rel).unwrap(), 1);
        fs::write(
            c.join("cpu.stat"),
            "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n",
        )
        .unwrap();
        fs::write(c.join("memory.current"), "4096\n").unwrap();
        fs::write(c.join("pids.current"), "3\n").unwrap();
        let s = cg.stats(&rel).unwrap();
        assert_eq!(
            s,
            CgroupStats {
                cpu_usage_ns: 1_500_000,
                memory_usage: 4096,
                memory_limit: Some(256 << 20),
                pids: 3
            }
        );

        cg.remove(&Cgroups::task_path("t3")).unwrap();
        assert!(!t.exists());
        assert!(
            !tmp.path().join("minifargate").exists(),
            "the last task out removes the shared prefix dir"
        );
    }

    #[test]
    fn bad_names_are_refused_and_nothing_is_created() {
        let tmp = tempfile::tempdir().unwrap();
        let cg = Cgroups::with_root(tmp.path(), CgroupVersion::V2);
        for bad in ["", "..", "a/b"] {
            let e = cg.create_task(bad, &TaskLimits::default()).unwrap_err();
            assert!(matches!(e, CgroupError::InvalidName { .. }), "{e}");
        }
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);
        assert!(Cgroups::detect_at(tmp.path()).is_err());
    }
}
