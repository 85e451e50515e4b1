//! The task model every process shares: ids, paths ([`TaskPaths`]), ECS reasons and stop
//! codes, the pull policy; [`shape`] (a task's ECS JSON), [`launch`] (the rows of a new task
//! and the start of its supervisor, by the CLI or serve) and [`reconcile`] (finishing a task
//! whose supervisor died, by whichever process notices). What runs in a task's supervisor
//! is under `src/supervisor/`; what the front-ends read of a task is under `src/host/`.

pub mod ephemeral;
pub mod local_registry;
pub mod shape;
pub mod stats;

pub use crate::store::{ContainerOverride, TaskOverride};
use std::path::{Path, PathBuf};

/// The `stoppedReason` strings that go with ECS's stop codes ([`crate::store::StopCode`]).
/// Ref: repost.aws/knowledge-center/ecs-task-stopped.
pub mod stop {
    pub const ESSENTIAL_EXITED_REASON: &str = "Essential container in task exited";
    pub const USER_REASON: &str = "Task stopped by user";
}

/// Container `reason` prefixes of the ECS agent.
/// Ref: amazon-ecs-agent agent/dockerclient/dockerapi/errors.go; stopped-task-error-codes.html.
pub mod reason {
    pub const CANNOT_PULL: &str = "CannotPullContainerError";
    pub const CANNOT_CREATE: &str = "CannotCreateContainerError";
    pub const CANNOT_START: &str = "CannotStartContainerError";
    pub const RESOURCE_INIT: &str = "ResourceInitializationError";
    /// A container the kernel OOM-killed (the whole reason, not a prefix).
    pub const OUT_OF_MEMORY: &str = "OutOfMemoryError: Container killed due to memory usage";
}

/// For the crash tests only (tests/reliability_crash.rs), and only in builds with the
/// tests' hooks: debug assertions (what `cargo test` runs) or the `test-hooks` feature,
/// never the release profiles by default (Cargo.toml; elsewhere this does nothing and
/// the variable is not read, as `MINIFARGATE_BINFMT_MISC` of [`crate::supervisor::isolation::platform::binfmt_dir`]
/// is not). When the environment variable `MINIFARGATE_TEST_PAUSE` names `point`, writes
/// our pid to `<dir>/paused-<point>` (the run root for the CLI, the task's run dir for its
/// supervisor) and sleeps until killed, so a test can `kill -9` this process at a known
/// phase.
/// Points: `launch` (CLI: task row written, supervisor not started), `network`
/// (supervisor: network set up, task still PROVISIONING), `teardown` (supervisor:
/// DEPROVISIONING, containers stopped, nothing removed yet), `stopped` (supervisor: task
/// STOPPED and torn down, done not yet reported; the file goes to the task's dir, as the
/// run dir is gone).
#[cfg(any(debug_assertions, feature = "test-hooks"))]
pub fn test_pause(dir: &Path, point: &str) {
    let Some(v) = &crate::config::hooks().test_pause else {
        return;
    };
    if !v.split(',').any(|p| p.trim() == point) {
        return;
    }
    tracing::warn!(point, "MINIFARGATE_TEST_PAUSE: pausing until killed");
    let _ = std::fs::create_dir_all(dir);
    // Written aside and renamed: a test that sees the file reads the whole pid.
    let file = dir.join(format!("paused-{point}"));
    let tmp = dir.join(format!(".paused-{point}.tmp"));
    let _ = std::fs::write(&tmp, format!("{}\n", std::process::id()))
        .and_then(|()| std::fs::rename(&tmp, &file));
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

/// A build without the tests' hooks: nothing to pause for.
#[cfg(not(any(debug_assertions, feature = "test-hooks")))]
#[inline(always)]
pub fn test_pause(_dir: &Path, _point: &str) {}

/// ECS cuts reasons to 1024 characters before sending them (ecs_client.go L49-50).
pub fn cut_reason(s: &str) -> String {
    if s.len() <= 1024 {
        return s.to_string();
    }
    let mut end = 1024;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// A fresh 32-hex task id (what ECS puts at the end of a task ARN).
pub fn new_id() -> std::io::Result<String> {
    let mut b = [0u8; 16];
    fill_random(&mut b)?;
    Ok(hex_id(&b))
}

/// A random UUID (v4 layout) for container ARNs and attachments.
pub fn new_uuid() -> std::io::Result<String> {
    let mut b = [0u8; 16];
    fill_random(&mut b)?;
    Ok(uuid(&b))
}

/// Fills `buf` from the kernel's random pool: one `getrandom(2)`, not an open, read and
/// close of `/dev/urandom` (a launch takes several ids: [`launch::Ids::new`] draws them
/// all at once).
pub fn fill_random(buf: &mut [u8]) -> std::io::Result<()> {
    getrandom::getrandom(buf).map_err(|e| match e.raw_os_error() {
        Some(errno) => std::io::Error::from_raw_os_error(errno),
        None => std::io::Error::other(e.to_string()),
    })
}

/// 16 random bytes as a 32-hex id ([`new_id`]).
pub fn hex_id(b: &[u8]) -> String {
    use std::fmt::Write;
    b.iter().fold(String::with_capacity(32), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

/// 16 random bytes as a UUID, version 4 layout ([`new_uuid`]).
pub fn uuid(b: &[u8]) -> String {
    let h = hex_id(b);
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// Where one task keeps its files.
#[derive(Debug, Clone)]
pub struct TaskPaths {
    /// `<root>/tasks/<id>`: rootfs state, logs (kept after the task stops, for `logs`).
    pub dir: PathBuf,
    /// `<run-root>/tasks/<id>`: socket, runtime state (gone when it stops). Owner-only
    /// (0700, under a 0700 `tasks/`): the OCI bundles below hold the containers'
    /// environment, resolved secrets included ([`Self::make_run_dir`]).
    pub run_dir: PathBuf,
    /// `<run-root>/rootfs/<id>`: the containers' rootfs mount points. Apart from the
    /// owner-only task dir because a task in its own user namespace must reach its
    /// rootfs as its own root (libcontainer binds and pivots into it from inside the
    /// namespace): this dir is owned by that id, mode 0700, under a 0711 parent. Removed
    /// entry by entry (`remove_dir`), never recursively: a rootfs may still be mounted.
    pub rootfs_dir: PathBuf,
}

impl TaskPaths {
    pub fn new(root: &Path, run_root: &Path, id: &str) -> Self {
        TaskPaths {
            dir: root.join("tasks").join(id),
            run_dir: run_root.join("tasks").join(id),
            rootfs_dir: run_root.join("rootfs").join(id),
        }
    }
    pub fn socket(&self) -> PathBuf {
        self.run_dir.join("sock")
    }
    pub fn pid_file(&self) -> PathBuf {
        self.run_dir.join("supervisor.pid")
    }
    pub fn runtime_state(&self) -> PathBuf {
        self.run_dir.join("runtime")
    }
    pub fn supervisor_log(&self) -> PathBuf {
        self.dir.join("supervisor.log")
    }
    pub fn log(&self, container: &str) -> PathBuf {
        self.dir.join("logs").join(format!("{container}.log"))
    }
    /// Upper/work dirs of container number `idx`.
    pub fn container_state(&self, idx: usize) -> PathBuf {
        self.dir.join(format!("c{idx}"))
    }
    /// Where a container's state dir is moved at teardown, to be deleted once the task
    /// is reported done.
    pub fn container_state_removing(&self, idx: usize) -> PathBuf {
        self.dir.join(format!(".c{idx}.removing"))
    }
    pub fn rootfs(&self, idx: usize) -> PathBuf {
        self.rootfs_dir.join(format!("c{idx}"))
    }

    /// Makes [`Self::run_dir`] and its parent `<run-root>/tasks` owner-only (0700), also
    /// when they exist with a wider mode (a run root made by an older version): the OCI
    /// bundles below hold each container's environment, secrets from SSM, Secrets
    /// Manager and S3 environment files included, and no other user may read them. Nothing
    /// of a task's user namespace reaches into it: libcontainer reads the bundle and binds
    /// its sockets as host root before the container's process exists.
    pub fn make_run_dir(&self) -> std::io::Result<()> {
        if let Some(tasks) = self.run_dir.parent() {
            if let Some(run_root) = tasks.parent() {
                std::fs::create_dir_all(run_root)?;
            }
            owner_only_dir(tasks)?;
            spread_task_dirs(tasks);
        }
        owner_only_dir(&self.run_dir)
    }

    /// Makes [`Self::rootfs_dir`], owned by `owner` (host uid = gid) when given.
    pub fn make_rootfs_dir(&self, owner: Option<u32>) -> std::io::Result<()> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        if let Some(parent) = self.rootfs_dir.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o711)
                .create(parent)?;
            spread_task_dirs(parent);
        }
        match std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&self.rootfs_dir)
        {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        std::fs::set_permissions(&self.rootfs_dir, std::fs::Permissions::from_mode(0o700))?;
        let id = owner.unwrap_or(0);
        std::os::unix::fs::chown(&self.rootfs_dir, Some(id), Some(id))
    }

    /// Removes the (unmounted, empty) rootfs mount points and their dir; a mount point
    /// still mounted stays (`remove_dir` fails with EBUSY), its contents untouched.
    pub fn remove_rootfs_dir(&self, containers: usize) -> std::io::Result<()> {
        for idx in 0..containers {
            match std::fs::remove_dir(self.rootfs(idx)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        match std::fs::remove_dir(&self.rootfs_dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// Places each task's dir made in `parent` (`<root>/tasks`, `<run-root>/tasks`,
/// `<run-root>/rootfs`) as ext4 places a top-level dir, spread over the block groups,
/// and with it every file and dir the task makes inside. Without it every task's inodes
/// are made, and freed at its end, in the parent's one group; on an ext4 without a journal
/// each new inode there is found after skipping every inode freed in the last minute
/// (or six, `recently_deleted()`), which cost back-to-back launches ~3.5 ms of system CPU
/// each (docs/benchmarks.md "Stop 49"). One ioctl to read the flag once it is set.
pub fn spread_task_dirs(parent: &Path) {
    rootfs_cache::store::spread_new_dirs(parent);
}

/// Creates `dir` (its parent must exist) mode 0700, or narrows an existing one to 0700
/// when group or others have any access.
pub fn owner_only_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let mode = std::fs::metadata(dir)?.permissions().mode() & 0o7777;
            if mode & 0o077 != 0 {
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode & 0o7700))?;
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// The runtime id of container `idx` of a task (like Fargate's `<task-id>-<n>`).
pub fn runtime_id(task_id: &str, idx: usize) -> String {
    format!("{task_id}-{idx}")
}

/// How a task gets its images, named as the ECS agent's `ECS_IMAGE_PULL_BEHAVIOR`.
/// Ref: amazon-ecs-agent agent/config/types.go (`ImagePullDefaultBehavior`, …) and
/// agent/engine/docker_task_engine.go (`imagePullRequired`, `pullContainerManifest`);
/// docs.aws.amazon.com/AmazonECS/latest/bestpracticesguide/pull-behavior.html.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum PullPolicy {
    /// Ask the registry with the task's credentials every time (the manifest only; cached
    /// layers are reused, a moved tag pulls what is new); run the cached image only when
    /// the registry cannot be reached, with a task warning saying so.
    #[default]
    Default,
    /// Pull every time; a failed pull fails the task.
    Always,
    /// Use a cached image without asking the registry; pull only what is not cached.
    /// `missing`, this flag's name before, is accepted.
    #[value(alias = "missing")]
    PreferCached,
    /// Never pull: an image not in the cache fails the task.
    Never,
}

impl PullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Default => "default",
            PullPolicy::Always => "always",
            PullPolicy::PreferCached => "prefer-cached",
            PullPolicy::Never => "never",
        }
    }
}

/// Start time of process `pid` (clock ticks since boot, /proc/PID/stat field 22), or
/// `None` when there is no such live process (gone or a zombie).
pub fn process_start_time(pid: i64) -> Option<i64> {
    live_stat(pid).and_then(|s| i64::try_from(s.starttime).ok())
}

/// Whether `pid` is a live process: it exists and has not exited (a zombie, state Z or X,
/// exited but was not reaped yet).
pub fn process_alive(pid: i64) -> bool {
    live_stat(pid).is_some()
}

/// `/proc/<pid>/stat` of a live process; the one reader of that file.
///
/// One open and one read of the file (not `Process::new(pid)?.stat()`, which opens and
/// stats `/proc/<pid>` first, nor `Stat::from_file`, whose buffered reader adds a statx, an
/// lseek and a second read: 6 system calls instead of 3): the commands that list tasks check
/// each running task's supervisor with it, so at 1000 tasks this is most of what they
/// cost (docs/benchmarks.md, "N idle tasks"). The kernel formats the whole line in one
/// read (proc(5): a single line of at most ~52 fields); a line that fills the buffer is
/// read again through the crate's own reader.
fn live_stat(pid: i64) -> Option<procfs::process::Stat> {
    use procfs::FromRead;
    use std::io::Read;
    let pid = i32::try_from(pid).ok().filter(|p| *p > 0)?;
    let path = format!("/proc/{pid}/stat");
    let mut buf = [0u8; 1024];
    let n = std::fs::File::open(&path).ok()?.read(&mut buf).ok()?;
    let stat = if n < buf.len() {
        procfs::process::Stat::from_read(&buf[..n]).ok()?
    } else {
        procfs::process::Stat::from_file(&path).ok()?
    };
    (!matches!(stat.state, 'Z' | 'X')).then_some(stat)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policies_have_the_agents_names_and_the_old_spelling() {
        use clap::ValueEnum;
        assert_eq!(PullPolicy::default(), PullPolicy::Default);
        for p in PullPolicy::value_variants() {
            // What the CLI hands the supervisor parses back to the same policy.
            assert_eq!(PullPolicy::from_str(p.as_str(), false), Ok(*p));
        }
        assert_eq!(
            PullPolicy::from_str("missing", false),
            Ok(PullPolicy::PreferCached)
        );
        assert!(PullPolicy::from_str("once", false).is_err());
    }

    #[test]
    fn a_tasks_run_dir_is_owner_only_also_when_an_older_one_was_not() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        let d = tempfile::tempdir().unwrap();
        let run_root = d.path().join("run");
        let paths = TaskPaths::new(d.path(), &run_root, "t1");
        paths.make_run_dir().unwrap();
        assert_eq!(mode(&run_root.join("tasks")), 0o700);
        assert_eq!(mode(&paths.run_dir), 0o700);
        // Left 0755 by an older version: narrowed, contents kept.
        for p in [run_root.join("tasks"), paths.run_dir.clone()] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::write(paths.pid_file(), "1\n").unwrap();
        paths.make_run_dir().unwrap();
        assert_eq!(mode(&run_root.join("tasks")), 0o700);
        assert_eq!(mode(&paths.run_dir), 0o700);
        assert!(paths.pid_file().exists());
    }

    #[test]
    fn task_dirs_are_spread_over_the_block_groups_where_the_filesystem_can() {
        use rustix::fs::{IFlags, ioctl_getflags};
        let d = tempfile::tempdir().unwrap();
        let flags = |p: &Path| ioctl_getflags(std::fs::File::open(p).unwrap());
        // ext2/3/4 (as /tmp is on the CI VMs) answer FS_IOC_GETFLAGS; tmpfs does not.
        let has_flags = flags(d.path()).is_ok();
        let run_root = d.path().join("run");
        let paths = TaskPaths::new(d.path(), &run_root, "t1");
        paths.make_run_dir().unwrap();
        paths.make_rootfs_dir(None).unwrap();
        for parent in [run_root.join("tasks"), run_root.join("rootfs")] {
            match flags(&parent) {
                Ok(f) => assert!(f.contains(IFlags::TOPDIR), "{}", parent.display()),
                Err(_) => assert!(!has_flags, "{}", parent.display()),
            }
        }
        // Again: set already, nothing fails.
        paths.make_run_dir().unwrap();
    }

    #[test]
    fn ids_and_uuids_have_the_ecs_shape() {
        let id = new_id().unwrap();
        assert_eq!(id.len(), 32);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        let u = new_uuid().unwrap();
        assert_eq!(u.len(), 36);
        assert_eq!(u.matches('-').count(), 4);
    }

    #[test]
    fn own_start_time_is_readable_and_long_reasons_are_cut() {
        let me = std::process::id() as i64;
        assert!(process_start_time(me).is_some());
        assert!(process_alive(me));
        assert!(!process_alive(i64::from(i32::MAX)), "no such pid");
        assert!(!process_alive(-1));
        // A zombie: exited, not reaped yet.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = i64::from(child.id());
        while process_alive(pid) {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(process_start_time(pid).is_none());
        child.wait().unwrap();
        assert_eq!(cut_reason(&"é".repeat(600)).len(), 1024);
    }

    #[test]
    fn overrides_parse_the_aws_cli_shape() {
        let o: TaskOverride = serde_json::from_str(
            r#"{"containerOverrides":[{"name":"app","command":["echo","x"],
                "environment":[{"name":"A","value":"1"}]}],"cpu":"512","extra":1}"#,
        )
        .unwrap();
        assert_eq!(o.container_overrides[0].command.as_ref().unwrap()[1], "x");
        assert_eq!(o.cpu.as_deref(), Some("512"));
    }
}
