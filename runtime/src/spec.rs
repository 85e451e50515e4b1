//! The plain description of a container that callers hand to the runtime:
//! process, user, mounts, limits, security and namespace sharing. No OCI or libcontainer types.

use std::path::PathBuf;

/// Everything the runtime needs to know about one container, besides its rootfs,
/// netns and cgroup placement (those are arguments of [`crate::Runtime::create`]).
///
/// `Default` gives Docker's defaults: the Docker capability set, the default seccomp
/// profile, masked and read-only `/proc` paths, a 64 MiB `/dev/shm`, root user, own
/// pid and ipc namespaces, no limits.
#[derive(Debug, Clone, Default)]
pub struct ContainerSpec {
    /// `argv`; `args[0]` is looked up in `PATH` from `env` when it has no slash.
    pub args: Vec<String>,
    /// `KEY=value` pairs. `PATH` defaults to Docker's when absent; `HOME` is set from
    /// the resolved user's passwd entry when absent.
    pub env: Vec<String>,
    /// Working directory inside the container (default `/`).
    pub cwd: Option<String>,
    /// `name`, `uid`, `uid:gid`, `name:group`, resolved against the image's
    /// `/etc/passwd` and `/etc/group`. `None` is root.
    pub user: Option<String>,
    /// Extra supplementary groups (names or gids), like `docker run --group-add`.
    pub additional_groups: Vec<String>,
    /// UTS hostname (default: the container id truncated to 12 characters, like Docker).
    pub hostname: Option<String>,
    pub mounts: Vec<Mount>,
    pub limits: Limits,
    pub security: Security,
    /// Host device nodes to create inside the container (`--device`).
    pub devices: Vec<Device>,
    /// `net.*`, `kernel.shm*`, … sysctls written in the container's namespaces.
    pub sysctls: Vec<(String, String)>,
    /// Resource limits (`setrlimit`, Docker's `--ulimit`). Without a `nofile` entry the container gets
    /// [`DEFAULT_NOFILE`]. Hard limits above what the host lets this process set are
    /// clamped to it with a warning (these VMs lack CAP_SYS_RESOURCE; hard nofile 20000).
    pub rlimits: Vec<Rlimit>,
    /// Size of `/dev/shm` in bytes (default 64 MiB, Docker's), for [`DevShm::Tmpfs`].
    pub shm_size: Option<u64>,
    /// What `/dev/shm` is: the container's own tmpfs (default), a host directory shared
    /// with others, or nothing (Docker's `--ipc none`).
    pub dev_shm: DevShm,
    /// Run a minimal init as pid 1 that reaps zombies and forwards signals (Docker's
    /// `--init`). The path is a *static* init binary on the host; it is
    /// bind-mounted read-only into the container and runs `args` as its child.
    pub init: Option<PathBuf>,
    /// Give the process a pseudo-terminal (Docker's `--tty`); its output is
    /// logged as `stdout`.
    pub tty: bool,
    /// Keep stdin open (Docker's `--interactive`); otherwise stdin is `/dev/null`.
    pub interactive: bool,
    pub namespaces: Namespaces,
    /// Where stdout/stderr go.
    pub log: LogConfig,
}

/// A bind or tmpfs mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mount {
    /// Bind `source` (host path) onto `destination`.
    Bind {
        source: PathBuf,
        destination: String,
        read_only: bool,
    },
    /// A tmpfs at `destination`; `size` in bytes, `options` like `noexec`, `mode=1777`.
    Tmpfs {
        destination: String,
        size: Option<u64>,
        options: Vec<String>,
    },
}

/// Per-container cgroup limits (the task-level ones are in [`crate::TaskLimits`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// v1 `cpu.shares` (v2 `cpu.weight` through [`crate::shares_to_weight`]), clamped to
    /// the kernel's [2, 262144]. `None` leaves the kernel default (1024).
    pub cpu_shares: Option<u64>,
    /// Hard memory limit in bytes (`memory.limit_in_bytes` / `memory.max`); no swap
    /// beyond it unless `swap` says so.
    pub memory: Option<u64>,
    /// Soft limit in bytes (v1 `memory.soft_limit_in_bytes`, v2 `memory.low`).
    pub memory_reservation: Option<u64>,
    /// Maximum number of tasks (processes and threads).
    pub pids: Option<u64>,
    /// Swap the container may use beyond `memory`, in bytes; `None`: none.
    /// Applied only with a `memory` limit, where the kernel accounts swap (cgroup v1
    /// `memory.memsw.*`, v2 `memory.swap.max`).
    pub swap: Option<u64>,
    /// `memory.swappiness` 0-100 (cgroup v1 only, v2 has no such knob).
    pub swappiness: Option<u64>,
}

/// Security options: capabilities, seccomp, privileges, read-only rootfs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Security {
    /// Capabilities added to Docker's default set, e.g. `SYS_PTRACE` or `CAP_SYS_PTRACE`.
    /// `ALL` adds every capability.
    pub cap_add: Vec<String>,
    /// Capabilities removed from the set; `ALL` removes every capability first.
    pub cap_drop: Vec<String>,
    /// All capabilities, no seccomp, no masked paths, all host devices (EC2 `privileged`).
    pub privileged: bool,
    pub read_only_rootfs: bool,
    pub no_new_privileges: bool,
    pub seccomp: Seccomp,
    /// AppArmor profile to run the process under (OCI `process.apparmorProfile`, Docker's
    /// `--security-opt apparmor=PROFILE`); it must be loaded in the host's kernel.
    pub apparmor_profile: Option<String>,
}

/// What is mounted at `/dev/shm`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum DevShm {
    /// A tmpfs of the container's own, [`ContainerSpec::shm_size`] bytes.
    #[default]
    Tmpfs,
    /// Bind this host directory (a tmpfs several containers share, or the host's
    /// `/dev/shm`, as Docker does for `--ipc container:…` and `--ipc host`).
    Bind(PathBuf),
    /// No `/dev/shm` at all (Docker's `--ipc none`).
    None,
}

/// Which seccomp filter to load.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Seccomp {
    /// An allow-list equivalent to Docker's default profile; other syscalls get `EPERM`.
    /// Only the native ABI is filtered: a 32-bit (or x32) syscall kills the thread.
    #[default]
    Default,
    /// Docker's profile including the 32-bit/x32 ABIs (32-bit binaries work), at about
    /// twice the container start cost (libseccomp compiles the filter per ABI).
    DefaultWithCompatAbis,
    /// No filter.
    Unconfined,
}

/// A host device node made available in the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub host_path: PathBuf,
    /// Path inside the container (default: same as on the host).
    pub container_path: Option<String>,
    /// Any of `r`, `w`, `m` (default `rwm`).
    pub permissions: Option<String>,
}

/// One `setrlimit` pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rlimit {
    /// `nofile`, `nproc`, `core`, … (Docker's `--ulimit` names).
    pub name: String,
    pub soft: u64,
    pub hard: u64,
}

/// The `nofile` (soft, hard) a container gets when its spec sets none, instead of
/// whatever the creating process happens to hold.
pub const DEFAULT_NOFILE: (u64, u64) = (65535, 65535);

/// Namespace sharing. Mount, uts and cgroup namespaces are always the container's own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Namespaces {
    /// Pid namespace: own (default), the host's, or join one by path
    /// (`/proc/<pid>/ns/pid` of another container, like Docker's `--pid container:<id>`).
    pub pid: NamespaceMode,
    /// Ipc namespace, same choices (Docker's `--ipc`).
    pub ipc: NamespaceMode,
    /// The task's user namespace to join (`/proc/<holder>/ns/user`, see
    /// [`crate::NamespaceHolder`]) and the ids it maps; `None`: the host's (container root
    /// is host root).
    pub user: Option<UserNamespace>,
}

/// A user namespace made elsewhere that a container joins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserNamespace {
    /// Its nsfs file (`/proc/<pid>/ns/user`).
    pub path: PathBuf,
    /// The host ids that container ids `0..count` map to.
    pub range: IdRange,
}

/// Container ids `0..count` are host ids `start..start + count` (uids and gids alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IdRange {
    pub start: u32,
    pub count: u32,
}

impl IdRange {
    /// The host id of container id `id`, `None` when the range does not map it.
    pub fn host_id(&self, id: u32) -> Option<u32> {
        (id < self.count).then(|| self.start + id)
    }

    /// A `uid_map`/`gid_map` line (user_namespaces(7)).
    pub fn map_line(&self) -> String {
        format!("0 {} {}\n", self.start, self.count)
    }
}

/// Own, host or joined namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum NamespaceMode {
    #[default]
    Private,
    Host,
    Join(PathBuf),
}

/// Stdout/stderr handling.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum LogConfig {
    /// Discard output (`/dev/null`).
    #[default]
    Discard,
    /// Docker json-file style: one JSON object per line with `log`, `stream`, `time`,
    /// rotated by size and count; and each line to `sink` too, when set (a log driver,
    /// with the file as Docker's dual-logging local cache).
    JsonFile {
        path: PathBuf,
        rotation: crate::logs::Rotation,
        sink: Option<crate::logs::SinkRef>,
    },
}

impl LogConfig {
    /// A json-file log at `path` with the default [`crate::Rotation`].
    pub fn json_file(path: impl Into<PathBuf>) -> Self {
        LogConfig::JsonFile {
            path: path.into(),
            rotation: crate::logs::Rotation::default(),
            sink: None,
        }
    }
}

/// A process to run in a running container ([`crate::Container::exec`]).
#[derive(Debug, Clone, Default)]
pub struct ExecSpec {
    pub args: Vec<String>,
    /// Added to (and overriding) the container's environment.
    pub env: Vec<String>,
    pub cwd: Option<String>,
    /// Default: the container's user.
    pub user: Option<String>,
    /// Allocate a pseudo-terminal; its master is returned in [`crate::ExecProcess::tty`].
    pub tty: bool,
    /// The pty's size (rows, columns), set before the command starts (the caller gets
    /// the master only after that).
    pub tty_size: Option<(u16, u16)>,
    /// SIGKILL the process when the thread that called `exec` ends (`PR_SET_PDEATHSIG`),
    /// so an exec'd command never outlives the `minifargate exec` that started it.
    pub kill_with_caller: bool,
}
