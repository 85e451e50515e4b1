//! Builds the OCI runtime `config.json` for a [`ContainerSpec`]: Docker's default
//! capabilities, mounts, masked paths and seccomp profile, namespaces, rlimits, user.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Value, json};

use crate::cgroup_layout::CgroupLayout;
use crate::seccomp;
use crate::spec::{ContainerSpec, DevShm, Mount, NamespaceMode, Seccomp};
use crate::user::ResolvedUser;

/// Errors in a container spec, found before anything is created.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("invalid container spec: {field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("failed to stat device {path}")]
    Device {
        path: std::path::PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("failed to list the host's devices under {path}")]
    HostDevices {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to build the OCI spec")]
    Oci(#[source] serde_json::Error),
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> SpecError {
    SpecError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Docker's default capability set. Ref: moby oci/caps/defaults.go.
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability of Linux 5.9+, in kernel bit order (CAP_CHOWN = 0 …
/// CAP_CHECKPOINT_RESTORE = 40).
pub const ALL_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Paths hidden from the container. Ref: moby oci/defaults.go `maskedPaths`.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// `/sys/fs/cgroup` and each cgroup v1 hierarchy under it, for
/// `readonlyPaths`: libcontainer 0.7 mounts the v1 hierarchies of a container with a
/// cgroup namespace read-write whatever the spec's mount options say, which let a
/// container create cgroups and write `cgroup.procs` (and, in a named hierarchy we do not
/// place it in, such as `name=systemd`, move itself into the host's cgroups). Docker and
/// runc mount them read-only. Parents come first: each is bind-remounted read-only.
pub fn cgroup_v1_readonly_paths(layout: &CgroupLayout) -> Vec<String> {
    readonly_paths_of(&layout.v1_under_sys_fs_cgroup())
}

fn readonly_paths_of(subs: &[&Path]) -> Vec<String> {
    if subs.is_empty() {
        return Vec::new();
    }
    std::iter::once("/sys/fs/cgroup".to_string())
        .chain(subs.iter().map(|p| p.to_string_lossy().into_owned()))
        .collect()
}

/// Paths made read-only. Ref: moby oci/defaults.go `readonlyPaths`.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Docker's default `PATH`.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Docker's default `/dev/shm` size.
pub const DEFAULT_SHM_SIZE: u64 = 64 << 20;
/// Where the init binary is bind-mounted inside the container.
pub const INIT_PATH: &str = "/dev/init";

/// `SYS_PTRACE` / `cap_sys_ptrace` / `CAP_SYS_PTRACE` → `CAP_SYS_PTRACE`, checked
/// against the known set.
pub fn normalize_cap(name: &str) -> Result<String, SpecError> {
    let upper = name.trim().to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    if ALL_CAPS.contains(&full.as_str()) {
        Ok(full)
    } else {
        Err(invalid(
            "security.cap_add/cap_drop",
            format!("unknown capability {name:?}"),
        ))
    }
}

/// The capabilities this process holds in its bounding set: "all" for a container
/// means all of these (a process cannot grant what it lacks; these VMs drop
/// CAP_SYS_RESOURCE even for root).
pub fn host_capabilities() -> Vec<String> {
    let bounding = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(u64::MAX);
    ALL_CAPS
        .iter()
        .enumerate()
        .filter(|(bit, _)| bounding & (1 << bit) != 0)
        .map(|(_, c)| c.to_string())
        .collect()
}

/// The capability set after Docker's rules: start from the default set (or all when
/// privileged), drop (`ALL` drops everything), then add (`ALL` adds everything).
pub fn capabilities(spec: &ContainerSpec) -> Result<Vec<String>, SpecError> {
    let sec = &spec.security;
    if sec.privileged {
        return Ok(host_capabilities());
    }
    let is_all = |s: &String| s.eq_ignore_ascii_case("ALL");
    let mut caps: Vec<String> = DEFAULT_CAPS.iter().map(|c| c.to_string()).collect();
    if sec.cap_drop.iter().any(is_all) {
        caps.clear();
    }
    for d in sec.cap_drop.iter().filter(|d| !is_all(d)) {
        let d = normalize_cap(d)?;
        caps.retain(|c| *c != d);
    }
    if sec.cap_add.iter().any(is_all) {
        return Ok(host_capabilities());
    }
    for a in &sec.cap_add {
        let a = normalize_cap(a)?;
        if !caps.contains(&a) {
            caps.push(a);
        }
    }
    Ok(caps)
}

/// The rlimit resource for a Docker `--ulimit` name.
pub fn rlimit_resource(name: &str) -> Option<(&'static str, nix::sys::resource::Resource)> {
    use nix::sys::resource::Resource as R;
    Some(match name {
        "core" => ("RLIMIT_CORE", R::RLIMIT_CORE),
        "cpu" => ("RLIMIT_CPU", R::RLIMIT_CPU),
        "data" => ("RLIMIT_DATA", R::RLIMIT_DATA),
        "fsize" => ("RLIMIT_FSIZE", R::RLIMIT_FSIZE),
        "locks" => ("RLIMIT_LOCKS", R::RLIMIT_LOCKS),
        "memlock" => ("RLIMIT_MEMLOCK", R::RLIMIT_MEMLOCK),
        "msgqueue" => ("RLIMIT_MSGQUEUE", R::RLIMIT_MSGQUEUE),
        "nice" => ("RLIMIT_NICE", R::RLIMIT_NICE),
        "nofile" => ("RLIMIT_NOFILE", R::RLIMIT_NOFILE),
        "nproc" => ("RLIMIT_NPROC", R::RLIMIT_NPROC),
        "rss" => ("RLIMIT_RSS", R::RLIMIT_RSS),
        "rtprio" => ("RLIMIT_RTPRIO", R::RLIMIT_RTPRIO),
        "rttime" => ("RLIMIT_RTTIME", R::RLIMIT_RTTIME),
        "sigpending" => ("RLIMIT_SIGPENDING", R::RLIMIT_SIGPENDING),
        "stack" => ("RLIMIT_STACK", R::RLIMIT_STACK),
        "as" => ("RLIMIT_AS", R::RLIMIT_AS),
        _ => return None,
    })
}

/// What this process may raise a hard limit to: anything with CAP_SYS_RESOURCE,
/// otherwise its own hard limit (these VMs drop the capability; hard nofile is 20000).
pub trait HostLimits {
    fn max_hard(&self, resource: nix::sys::resource::Resource) -> u64;
}

/// The real host: `getrlimit` + CAP_SYS_RESOURCE in this thread's effective set
/// (capget(2): one system call, where reading `/proc/self/status` took ten, per rlimit
/// of every create).
pub struct ProcessLimits;

impl HostLimits for ProcessLimits {
    fn max_hard(&self, resource: nix::sys::resource::Resource) -> u64 {
        let has_cap = caps::has_cap(
            None,
            caps::CapSet::Effective,
            caps::Capability::CAP_SYS_RESOURCE,
        )
        .unwrap_or(false);
        if has_cap {
            return u64::MAX;
        }
        nix::sys::resource::getrlimit(resource)
            .map(|(_, hard)| hard)
            .unwrap_or(u64::MAX)
    }
}

/// The rlimits for the spec: [`crate::DEFAULT_NOFILE`] unless given, each clamped
/// (with a warning, never an error) to what the host lets this process set.
pub fn rlimits(spec: &ContainerSpec, host: &dyn HostLimits) -> Result<Vec<Value>, SpecError> {
    let mut wanted = spec.rlimits.clone();
    if !wanted.iter().any(|r| r.name == "nofile") {
        let (soft, hard) = crate::spec::DEFAULT_NOFILE;
        wanted.push(crate::spec::Rlimit {
            name: "nofile".into(),
            soft,
            hard,
        });
    }
    let mut out = Vec::new();
    for r in wanted {
        let (typ, resource) = rlimit_resource(&r.name)
            .ok_or_else(|| invalid("rlimits", format!("unknown ulimit name {:?}", r.name)))?;
        if r.soft > r.hard {
            return Err(invalid(
                "rlimits",
                format!(
                    "{}: soft limit {} is above hard limit {}",
                    r.name, r.soft, r.hard
                ),
            ));
        }
        let max = host.max_hard(resource);
        let (mut soft, mut hard) = (r.soft, r.hard);
        if hard > max {
            tracing::warn!(
                ulimit = %r.name, requested_soft = r.soft, requested_hard = r.hard, host_max = max,
                "ulimit above what this host allows (no CAP_SYS_RESOURCE): clamped to the host's hard limit"
            );
            hard = max;
            soft = soft.min(max);
        }
        out.push(json!({ "type": typ, "soft": soft, "hard": hard }));
    }
    Ok(out)
}

fn namespace(typ: &str, mode: &NamespaceMode) -> Option<Value> {
    match mode {
        NamespaceMode::Private => Some(json!({ "type": typ })),
        NamespaceMode::Host => None,
        NamespaceMode::Join(path) => Some(json!({ "type": typ, "path": path })),
    }
}

fn check_abs(field: &str, path: &str) -> Result<(), SpecError> {
    if !path.starts_with('/') || path.split('/').any(|c| c == "..") {
        return Err(invalid(
            field,
            format!("{path:?} must be an absolute path without '..'"),
        ));
    }
    Ok(())
}

/// A device node of the host, as a privileged container gets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostDevice {
    /// Its path under `/dev` (the same path inside the container).
    pub path: PathBuf,
    /// `c` or `b`.
    pub kind: &'static str,
    pub major: u64,
    pub minor: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// Directories under `/dev` whose nodes a container has of its own or that are not
/// devices to hand on: its own devpts, /dev/shm and /dev/mqueue, the /dev/fd symlinks,
/// and the bookkeeping directories of udev and LXC/LXD.
const HOST_DEV_SKIPPED_DIRS: &[&str] =
    &["pts", "shm", "mqueue", "fd", ".udev", ".lxc", ".lxd-mounts"];
/// Nodes a container gets its own of: the console is the container's terminal and
/// `/dev/ptmx` is the container's devpts multiplexer (a link to `pts/ptmx`).
const HOST_DEV_SKIPPED_NODES: &[&str] = &["console", "ptmx"];

/// Every character and block device under `dev_root` (the host's `/dev`), recursively,
/// without following links: what Docker's `--privileged` gives a container.
/// Ref: moby daemon/oci_linux.go (WithDevices: privileged adds all host devices).
pub fn host_devices(dev_root: &Path) -> Result<Vec<HostDevice>, SpecError> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut out = Vec::new();
    let mut dirs = vec![dev_root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            // A subdirectory gone since it was listed (udev renames) is not an error.
            Err(e) if dir != dev_root && e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(SpecError::HostDevices { path: dir, source }),
        };
        for entry in entries {
            let entry = entry.map_err(|source| SpecError::HostDevices {
                path: dir.clone(),
                source,
            })?;
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let ft = meta.file_type();
            if ft.is_dir() {
                if !(dir == dev_root && HOST_DEV_SKIPPED_DIRS.contains(&name.as_ref())) {
                    dirs.push(path);
                }
                continue;
            }
            let kind = if ft.is_char_device() {
                "c"
            } else if ft.is_block_device() {
                "b"
            } else {
                continue;
            };
            if dir == dev_root && HOST_DEV_SKIPPED_NODES.contains(&name.as_ref()) {
                continue;
            }
            let rdev = meta.rdev();
            out.push(HostDevice {
                path: Path::new("/dev").join(path.strip_prefix(dev_root).unwrap_or(&path)),
                kind,
                major: nix::sys::stat::major(rdev),
                minor: nix::sys::stat::minor(rdev),
                mode: meta.mode() & 0o7777,
                uid: meta.uid(),
                gid: meta.gid(),
            });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Inputs besides the spec.
pub struct OciInputs<'a> {
    pub id: &'a str,
    pub rootfs: &'a Path,
    pub netns: Option<&'a Path>,
    pub cgroup_path: &'a str,
    pub user: &'a ResolvedUser,
    pub host: &'a dyn HostLimits,
    /// The host's `/dev`, whose devices a privileged container gets (a test points it
    /// elsewhere).
    pub dev_root: &'a Path,
}

/// Checks what can be checked without touching the system.
pub fn validate(spec: &ContainerSpec) -> Result<(), SpecError> {
    if spec.args.is_empty() || spec.args[0].is_empty() {
        return Err(invalid("args", "the command is empty"));
    }
    if let Some(cwd) = &spec.cwd {
        check_abs("cwd", cwd)?;
    }
    for (i, e) in spec.env.iter().enumerate() {
        if !e.contains('=') || e.starts_with('=') {
            return Err(invalid(
                format!("env[{i}]"),
                format!("{e:?} is not KEY=value"),
            ));
        }
    }
    for (i, m) in spec.mounts.iter().enumerate() {
        match m {
            Mount::Bind {
                source,
                destination,
                ..
            } => {
                check_abs(&format!("mounts[{i}].destination"), destination)?;
                if !source.is_absolute() || !source.exists() {
                    return Err(invalid(
                        format!("mounts[{i}].source"),
                        format!(
                            "{} must be an existing absolute host path",
                            source.display()
                        ),
                    ));
                }
            }
            Mount::Tmpfs { destination, .. } => {
                check_abs(&format!("mounts[{i}].destination"), destination)?
            }
        }
    }
    if let Some(h) = &spec.hostname
        && (h.is_empty() || h.len() > 64)
    {
        return Err(invalid("hostname", "must be 1 to 64 characters"));
    }
    let l = &spec.limits;
    if let (Some(hard), Some(soft)) = (l.memory, l.memory_reservation)
        && soft > hard
    {
        return Err(invalid(
            "limits.memory_reservation",
            "must not be above limits.memory",
        ));
    }
    if l.memory.is_some_and(|m| m < 6 << 20) {
        return Err(invalid("limits.memory", "must be at least 6 MiB"));
    }
    capabilities(spec)?;
    Ok(())
}

/// The OCI runtime spec (`config.json` content) for one container: its process, mounts
/// and `linux` section, each built by its own step below in this order (a step's error
/// is the first one found, as the spec's checks run top to bottom).
pub fn build(spec: &ContainerSpec, inp: &OciInputs) -> Result<Value, SpecError> {
    validate(spec)?;
    let caps = capabilities(spec)?;
    let hostname = spec
        .hostname
        .clone()
        .unwrap_or_else(|| inp.id.chars().take(12).collect());
    let process = process(spec, inp, &caps, &hostname)?;
    let mounts = mounts(spec);
    let linux = linux(spec, inp, &caps)?;
    let doc = json!({
        "ociVersion": "1.0.2",
        "root": { "path": inp.rootfs, "readonly": spec.security.read_only_rootfs },
        "hostname": hostname,
        "process": process,
        "mounts": mounts,
        "linux": linux,
    });
    // Read by oci-spec, as libcontainer will, so a malformed document fails here, not in
    // the child. The document itself is what oci-spec would give back
    // (`the_document_is_what_oci_spec_gives_back`), so it is not rebuilt from the typed
    // form at every create.
    oci_spec::runtime::Spec::deserialize(&doc).map_err(SpecError::Oci)?;
    Ok(doc)
}

/// The `process` section: the user, its arguments (behind the init when there is one),
/// the environment with Docker's defaults, capabilities and rlimits.
fn process(
    spec: &ContainerSpec,
    inp: &OciInputs,
    caps: &[String],
    hostname: &str,
) -> Result<Value, SpecError> {
    let mut env: Vec<String> = spec.env.clone();
    let has = |env: &[String], k: &str| {
        env.iter()
            .any(|e| e.split_once('=').is_some_and(|(key, _)| key == k))
    };
    if !has(&env, "PATH") {
        env.insert(0, format!("PATH={DEFAULT_PATH}"));
    }
    if !has(&env, "HOSTNAME") {
        env.push(format!("HOSTNAME={hostname}"));
    }
    if !has(&env, "HOME") {
        env.push(format!("HOME={}", inp.user.home));
    }
    if spec.tty && !has(&env, "TERM") {
        env.push("TERM=xterm".into());
    }

    let mut args = spec.args.clone();
    if spec.init.is_some() {
        args.splice(0..0, [INIT_PATH.to_string(), "--".to_string()]);
    }

    // A non-root user starts without effective/permitted capabilities, as in Docker;
    // the bounding set still limits what setuid binaries can gain.
    let running_caps: Vec<String> = if inp.user.uid == 0 {
        caps.to_vec()
    } else {
        Vec::new()
    };
    let mut process = json!({
        "terminal": spec.tty,
        "user": { "uid": inp.user.uid, "gid": inp.user.gid, "additionalGids": inp.user.additional_gids },
        "args": args,
        "env": env,
        "cwd": spec.cwd.clone().unwrap_or_else(|| "/".into()),
        "capabilities": { "bounding": caps, "effective": running_caps, "permitted": running_caps },
        "rlimits": rlimits(spec, inp.host)?,
    });
    // Only when set: libcontainer 0.7 loads the seccomp filter after dropping
    // capabilities whenever the field is present, even `false`, and that load then
    // fails without CAP_SYS_ADMIN or no_new_privs.
    if spec.security.no_new_privileges {
        process["noNewPrivileges"] = json!(true);
    }
    if let Some(profile) = &spec.security.apparmor_profile {
        process["apparmorProfile"] = json!(profile);
    }
    Ok(process)
}

/// The `mounts` section: Docker's standard filesystems, `/dev/shm` as the ipc mode
/// says, then the spec's own mounts and the init.
fn mounts(spec: &ContainerSpec) -> Vec<Value> {
    let privileged = spec.security.privileged;
    let shm = spec.shm_size.unwrap_or(DEFAULT_SHM_SIZE);
    let sys_opts: &[&str] = if privileged {
        &["nosuid", "noexec", "nodev"]
    } else {
        &["nosuid", "noexec", "nodev", "ro"]
    };
    let mut mounts = vec![
        json!({ "destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"] }),
        json!({ "destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] }),
        json!({ "destination": "/dev/pts", "type": "devpts", "source": "devpts",
                "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"] }),
        json!({ "destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"] }),
        json!({ "destination": "/sys", "type": "sysfs", "source": "sysfs", "options": sys_opts }),
        json!({ "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                "options": ["nosuid", "noexec", "nodev", "relatime", if privileged { "rw" } else { "ro" }] }),
    ];
    // Ref: moby daemon/container_operations_unix.go (setupIpcDirs) and oci_linux.go
    // (WithIPC): a private tmpfs, the shared one of the container whose ipc namespace is
    // joined, the host's /dev/shm for `--ipc host`, none for `--ipc none`.
    match &spec.dev_shm {
        DevShm::Tmpfs => mounts.insert(
            3,
            json!({ "destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                "options": ["nosuid", "noexec", "nodev", "mode=1777", format!("size={shm}")] }),
        ),
        DevShm::Bind(source) => mounts.insert(
            3,
            json!({ "destination": "/dev/shm", "type": "bind", "source": source,
                "options": ["rbind", "rprivate", "nosuid", "noexec", "nodev"] }),
        ),
        DevShm::None => {}
    }
    for m in &spec.mounts {
        mounts.push(match m {
            Mount::Bind { source, destination, read_only } => {
                let mut opts = vec!["rbind", "rprivate"];
                if *read_only {
                    opts.push("ro");
                }
                json!({ "destination": destination, "type": "bind", "source": source, "options": opts })
            }
            Mount::Tmpfs { destination, size, options } => {
                let mut opts: Vec<String> = vec!["nosuid".into(), "nodev".into()];
                opts.extend(options.iter().cloned());
                if let Some(size) = size {
                    opts.push(format!("size={size}"));
                }
                json!({ "destination": destination, "type": "tmpfs", "source": "tmpfs", "options": opts })
            }
        });
    }
    if let Some(init) = &spec.init {
        mounts.push(json!({ "destination": INIT_PATH, "type": "bind", "source": init, "options": ["bind", "ro", "nosuid", "nodev"] }));
    }
    mounts
}

/// The `linux` section: namespaces, the cgroup, devices, sysctls, the user namespace's
/// maps, and for an unprivileged container the masked and read-only paths and seccomp.
fn linux(spec: &ContainerSpec, inp: &OciInputs, caps: &[String]) -> Result<Value, SpecError> {
    let privileged = spec.security.privileged;
    let (namespaces, user_maps) = namespaces(spec, inp);
    let (device_rules, devices) = devices(spec, inp)?;
    let mut linux = json!({
        "namespaces": namespaces,
        "cgroupsPath": inp.cgroup_path,
        "resources": { "devices": device_rules },
        "devices": devices,
    });
    // Only when there are some: libcontainer 0.7 mounts a fresh, unmasked procfs instance
    // in the container's init (fsopen + fsmount, and pathrs' checks of it) whenever the
    // field is present, even empty, to write nothing.
    if !spec.sysctls.is_empty() {
        let sysctl: serde_json::Map<String, Value> = spec
            .sysctls
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        linux["sysctl"] = Value::Object(sysctl);
    }
    if let Some(maps) = user_maps {
        linux["uidMappings"] = maps.clone();
        linux["gidMappings"] = maps;
    }
    if !privileged {
        linux["maskedPaths"] = json!(MASKED_PATHS);
        let mut ro: Vec<String> = READONLY_PATHS.iter().map(|p| p.to_string()).collect();
        // From statfs, not the mount table (crate::cgroup_layout::v1_mounts_under_sys_fs_cgroup).
        let v1 = crate::cgroup_layout::v1_mounts_under_sys_fs_cgroup();
        ro.extend(readonly_paths_of(
            &v1.iter().map(PathBuf::as_path).collect::<Vec<_>>(),
        ));
        linux["readonlyPaths"] = json!(ro);
        match spec.security.seccomp {
            Seccomp::Default => linux["seccomp"] = seccomp::default_profile(caps, false),
            Seccomp::DefaultWithCompatAbis => {
                linux["seccomp"] = seccomp::default_profile(caps, true)
            }
            Seccomp::Unconfined => {}
        }
    }
    Ok(linux)
}

/// The container's namespaces, and the maps of the task's user namespace when it joins
/// one (for `uidMappings` and `gidMappings`).
fn namespaces(spec: &ContainerSpec, inp: &OciInputs) -> (Vec<Value>, Option<Value>) {
    let mut namespaces = vec![
        json!({ "type": "mount" }),
        json!({ "type": "uts" }),
        json!({ "type": "cgroup" }),
    ];
    namespaces.extend(namespace("pid", &spec.namespaces.pid));
    namespaces.extend(namespace("ipc", &spec.namespaces.ipc));
    namespaces.push(match inp.netns {
        Some(path) => json!({ "type": "network", "path": path }),
        None => json!({ "type": "network" }),
    });
    // The task's user namespace, made by its holder with the maps below already written:
    // libcontainer joins it first (before the other namespaces) and writes no map itself.
    // The maps are stated for readers of the bundle (`inspect`).
    let user_maps = spec.namespaces.user.as_ref().map(|u| {
        namespaces.insert(0, json!({ "type": "user", "path": u.path }));
        json!([{ "containerID": 0, "hostID": u.range.start, "size": u.range.count }])
    });
    (namespaces, user_maps)
}

/// The device cgroup's rules and the device nodes: deny everything, then libcontainer
/// adds its standard nodes; the requested devices are allowed. Privileged containers get
/// all devices, the host's nodes besides those asked for by path.
fn devices(spec: &ContainerSpec, inp: &OciInputs) -> Result<(Vec<Value>, Vec<Value>), SpecError> {
    let privileged = spec.security.privileged;
    let mut device_rules = vec![json!({ "allow": privileged, "access": "rwm" })];
    let mut devices = Vec::new();
    for (i, d) in spec.devices.iter().enumerate() {
        let st = nix::sys::stat::stat(&d.host_path).map_err(|source| SpecError::Device {
            path: d.host_path.clone(),
            source,
        })?;
        let kind = match st.st_mode & libc::S_IFMT {
            libc::S_IFCHR => "c",
            libc::S_IFBLK => "b",
            _ => {
                return Err(invalid(
                    format!("devices[{i}]"),
                    format!("{} is not a device node", d.host_path.display()),
                ));
            }
        };
        let (major, minor) = (
            nix::sys::stat::major(st.st_rdev),
            nix::sys::stat::minor(st.st_rdev),
        );
        let path = d
            .container_path
            .clone()
            .unwrap_or_else(|| d.host_path.to_string_lossy().into_owned());
        check_abs(&format!("devices[{i}].container_path"), &path)?;
        let access = d.permissions.clone().unwrap_or_else(|| "rwm".into());
        if access.is_empty() || !access.chars().all(|c| "rwm".contains(c)) {
            return Err(invalid(
                format!("devices[{i}].permissions"),
                format!("{access:?} is not a subset of \"rwm\""),
            ));
        }
        devices.push(
            json!({ "path": path, "type": kind, "major": major, "minor": minor,
                             "fileMode": st.st_mode & 0o7777, "uid": 0, "gid": 0 }),
        );
        device_rules.push(json!({ "allow": true, "type": kind, "major": major, "minor": minor, "access": access }));
    }
    // Privileged: every host device besides those asked for by path (the device cgroup
    // already allows them all above).
    if privileged {
        let asked: Vec<String> = devices
            .iter()
            .filter_map(|d| d["path"].as_str().map(str::to_string))
            .collect();
        for d in host_devices(inp.dev_root)? {
            let path = d.path.to_string_lossy().into_owned();
            if !asked.contains(&path) {
                devices.push(
                    json!({ "path": path, "type": d.kind, "major": d.major, "minor": d.minor,
                                     "fileMode": d.mode, "uid": d.uid, "gid": d.gid }),
                );
            }
        }
    }

    Ok((device_rules, devices))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Rlimit, Security};

    struct FakeHost(u64);
    impl HostLimits for FakeHost {
        fn max_hard(&self, _: nix::sys::resource::Resource) -> u64 {
            self.0
        }
    }

    fn user() -> ResolvedUser {
        ResolvedUser {
            uid: 0,
            gid: 0,
            additional_gids: vec![],
            home: "/root".into(),
        }
    }

    fn base() -> ContainerSpec {
        ContainerSpec {
            args: vec!["/bin/true".into()],
            ..Default::default()
        }
    }

    fn build_with(spec: &ContainerSpec, host: &dyn HostLimits) -> Value {
        let u = user();
        build(
            spec,
            &OciInputs {
                id: "abcdef0123456789",
                rootfs: Path::new("/tmp/rootfs"),
                netns: None,
                cgroup_path: "/minifargate/t/c",
                user: &u,
                host,
                dev_root: Path::new("/dev"),
            },
        )
        .unwrap()
    }

    /// `build` returns its document after oci-spec has read it, not oci-spec's
    /// serialisation of what it read: the two must not differ, for any spec this crate
    /// makes (libcontainer, exec and `info` read the file).
    #[test]
    fn the_document_is_what_oci_spec_gives_back() {
        let mut specs = vec![base()];
        let mut s = base();
        s.security.privileged = true;
        s.sysctls = vec![("net.ipv4.ip_forward".into(), "1".into())];
        specs.push(s);
        let mut s = base();
        s.rlimits = vec![Rlimit {
            name: "nproc".into(),
            soft: 100,
            hard: 200,
        }];
        s.security = Security {
            read_only_rootfs: true,
            no_new_privileges: true,
            cap_add: vec!["SYS_PTRACE".into()],
            cap_drop: vec!["NET_RAW".into()],
            seccomp: Seccomp::DefaultWithCompatAbis,
            ..Default::default()
        };
        s.hostname = Some("web".into());
        s.env = vec!["A=1".into()];
        s.tty = true;
        specs.push(s);
        let mut s = base();
        s.security.seccomp = Seccomp::Unconfined;
        s.limits.memory = Some(64 << 20);
        specs.push(s);
        for spec in &specs {
            let v = build_with(spec, &FakeHost(u64::MAX));
            let typed: oci_spec::runtime::Spec = serde_json::from_value(v.clone()).unwrap();
            let mut back = serde_json::to_value(typed).unwrap();
            // oci-spec keeps the capability sets in hash sets: its order is random, the
            // document's is the order they were listed in.
            let mut v = v;
            for doc in [&mut back, &mut v] {
                if let Some(sets) = doc["process"]["capabilities"].as_object_mut() {
                    for list in sets.values_mut() {
                        list.as_array_mut().unwrap().sort_by_key(|c| c.to_string());
                    }
                }
            }
            assert!(back == v, "{spec:?}: {}", first_difference("", &back, &v));
        }
    }

    /// Where two documents first differ, as `path: oci-spec's / ours`.
    fn first_difference(at: &str, a: &Value, b: &Value) -> String {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                for k in x.keys().chain(y.keys()) {
                    let (l, r) = (x.get(k), y.get(k));
                    if l != r {
                        return match (l, r) {
                            (Some(l), Some(r)) => first_difference(&format!("{at}.{k}"), l, r),
                            _ => format!("{at}.{k}: {l:?} / {r:?}"),
                        };
                    }
                }
                String::new()
            }
            (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
                .iter()
                .zip(y)
                .enumerate()
                .find(|(_, (l, r))| l != r)
                .map(|(i, (l, r))| first_difference(&format!("{at}[{i}]"), l, r))
                .unwrap_or_default(),
            _ => format!("{at}: {a} / {b}"),
        }
    }

    #[test]
    fn sysctl_only_when_given() {
        // An empty `sysctl` still makes libcontainer mount a procfs instance in init.
        let v = build_with(&base(), &FakeHost(u64::MAX));
        assert!(v["linux"].get("sysctl").is_none(), "{}", v["linux"]);
        let mut s = base();
        s.sysctls = vec![("net.ipv4.ip_forward".into(), "1".into())];
        let v = build_with(&s, &FakeHost(u64::MAX));
        assert_eq!(v["linux"]["sysctl"], json!({"net.ipv4.ip_forward": "1"}));
    }

    #[test]
    fn docker_defaults() {
        let v = build_with(&base(), &FakeHost(u64::MAX));
        let caps = v["process"]["capabilities"]["bounding"].as_array().unwrap();
        assert_eq!(caps.len(), DEFAULT_CAPS.len());
        assert!(caps.iter().any(|c| c == "CAP_NET_RAW"));
        assert_eq!(v["hostname"], "abcdef012345");
        assert_eq!(v["linux"]["seccomp"]["defaultErrnoRet"], 1);
        assert!(
            v["linux"]["maskedPaths"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p == "/proc/kcore")
        );
        assert!(
            v["process"]["env"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e == "HOME=/root")
        );
        assert_eq!(
            v["process"]["rlimits"][0],
            json!({"type": "RLIMIT_NOFILE", "soft": 65535, "hard": 65535})
        );
        assert_eq!(v["linux"]["cgroupsPath"], "/minifargate/t/c");
    }

    #[test]
    fn cap_add_drop_and_privileged() {
        let mut s = base();
        s.security = Security {
            cap_add: vec!["sys_ptrace".into()],
            cap_drop: vec!["NET_RAW".into(), "CAP_KILL".into()],
            ..Default::default()
        };
        let caps = capabilities(&s).unwrap();
        assert!(caps.contains(&"CAP_SYS_PTRACE".to_string()));
        assert!(
            !caps.contains(&"CAP_NET_RAW".to_string()) && !caps.contains(&"CAP_KILL".to_string())
        );
        s.security.cap_drop = vec!["ALL".into()];
        assert_eq!(
            capabilities(&s).unwrap(),
            vec!["CAP_SYS_PTRACE".to_string()]
        );
        s.security.cap_add = vec!["CAP_BOGUS".into()];
        assert!(
            capabilities(&s)
                .unwrap_err()
                .to_string()
                .contains("CAP_BOGUS")
        );
        let p = ContainerSpec {
            security: Security {
                privileged: true,
                ..Default::default()
            },
            ..base()
        };
        let v = build_with(&p, &FakeHost(u64::MAX));
        assert_eq!(
            v["process"]["capabilities"]["bounding"]
                .as_array()
                .unwrap()
                .len(),
            host_capabilities().len()
        );
        assert!(v["linux"].get("seccomp").is_none());
        assert!(v["linux"].get("maskedPaths").is_none());
    }

    /// A fake `/dev` with device nodes (root: mknod), a skipped devpts, console and
    /// ptmx, a link and a regular file.
    fn fake_dev() -> tempfile::TempDir {
        use nix::sys::stat::{Mode, SFlag, makedev, mknod};
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("net")).unwrap();
        std::fs::create_dir_all(d.path().join("pts")).unwrap();
        let node = |p: &str, kind, major, minor| {
            mknod(
                &d.path().join(p),
                kind,
                Mode::from_bits_truncate(0o660),
                makedev(major, minor),
            )
            .unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(d.path().join(p), std::fs::Permissions::from_mode(0o660))
                .unwrap();
        };
        node("loop-control", SFlag::S_IFCHR, 10, 237);
        node("net/tun", SFlag::S_IFCHR, 10, 200);
        node("loop0", SFlag::S_IFBLK, 7, 0);
        node("pts/0", SFlag::S_IFCHR, 136, 0);
        node("console", SFlag::S_IFCHR, 5, 1);
        node("ptmx", SFlag::S_IFCHR, 5, 2);
        std::os::unix::fs::symlink("loop-control", d.path().join("lc")).unwrap();
        std::fs::write(d.path().join("regular"), "x").unwrap();
        d
    }

    #[test]
    fn host_devices_lists_nodes_but_not_the_containers_own() {
        let d = fake_dev();
        let got = host_devices(d.path()).unwrap();
        let paths: Vec<String> = got.iter().map(|d| d.path.display().to_string()).collect();
        assert_eq!(paths, ["/dev/loop-control", "/dev/loop0", "/dev/net/tun"]);
        assert_eq!(
            (got[0].kind, got[0].major, got[0].minor, got[0].mode),
            ("c", 10, 237, 0o660)
        );
        assert_eq!(got[1].kind, "b");
        let e = host_devices(&d.path().join("absent")).unwrap_err();
        assert!(e.to_string().contains("absent"), "{e}");
    }

    #[test]
    fn privileged_gets_the_host_devices_and_keeps_asked_ones() {
        let d = fake_dev();
        let u = user();
        let mut s = base();
        s.devices = vec![crate::spec::Device {
            host_path: d.path().join("net/tun"),
            container_path: Some("/dev/loop0".into()),
            permissions: None,
        }];
        let inp = OciInputs {
            id: "c",
            rootfs: Path::new("/r"),
            netns: None,
            cgroup_path: "/m",
            user: &u,
            host: &FakeHost(u64::MAX),
            dev_root: d.path(),
        };
        let paths = |v: &Value| -> Vec<String> {
            v["linux"]["devices"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["path"].as_str().unwrap().to_string())
                .collect()
        };
        let plain = build(&s, &inp).unwrap();
        assert_eq!(paths(&plain), ["/dev/loop0"]);
        s.security.privileged = true;
        let v = build(&s, &inp).unwrap();
        assert_eq!(
            paths(&v),
            ["/dev/loop0", "/dev/loop-control", "/dev/net/tun"]
        );
        // The one asked for by path is the asked one (tun's numbers), not the host's loop0.
        assert_eq!(v["linux"]["devices"][0]["minor"], 200);
    }

    #[test]
    fn cgroup_v1_hierarchies_are_read_only() {
        let mi = "35 25 0:30 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n\
                  36 35 0:31 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n\
                  37 35 0:32 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n\
                  40 35 0:35 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n\
                  41 25 0:36 / /proc rw - proc proc rw";
        assert_eq!(
            cgroup_v1_readonly_paths(&CgroupLayout::parse(mi, "")),
            [
                "/sys/fs/cgroup",
                "/sys/fs/cgroup/cpu",
                "/sys/fs/cgroup/systemd"
            ]
        );
        assert!(
            cgroup_v1_readonly_paths(&CgroupLayout::parse(
                "36 35 0:31 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw",
                ""
            ))
            .is_empty()
        );
    }

    #[test]
    fn rlimits_are_clamped_not_refused() {
        let mut s = base();
        s.rlimits = vec![Rlimit {
            name: "nproc".into(),
            soft: 100,
            hard: 200,
        }];
        let v = build_with(&s, &FakeHost(20000));
        let r = v["process"]["rlimits"].as_array().unwrap();
        assert_eq!(
            r[0],
            json!({"type": "RLIMIT_NPROC", "soft": 100, "hard": 200})
        );
        assert_eq!(
            r[1],
            json!({"type": "RLIMIT_NOFILE", "soft": 20000, "hard": 20000})
        );
        s.rlimits = vec![Rlimit {
            name: "bogus".into(),
            soft: 1,
            hard: 1,
        }];
        let u = user();
        let inp = OciInputs {
            id: "x",
            rootfs: Path::new("/"),
            netns: None,
            cgroup_path: "/x",
            user: &u,
            host: &FakeHost(1),
            dev_root: Path::new("/dev"),
        };
        assert!(build(&s, &inp).unwrap_err().to_string().contains("bogus"));
    }

    #[test]
    fn bad_specs_name_the_field() {
        let cases: Vec<(ContainerSpec, &str)> = vec![
            (ContainerSpec::default(), "args"),
            (
                ContainerSpec {
                    cwd: Some("rel".into()),
                    ..base()
                },
                "cwd",
            ),
            (
                ContainerSpec {
                    env: vec!["NOEQUALS".into()],
                    ..base()
                },
                "env[0]",
            ),
            (
                ContainerSpec {
                    mounts: vec![Mount::Bind {
                        source: "/nonexistent/x".into(),
                        destination: "/x".into(),
                        read_only: true,
                    }],
                    ..base()
                },
                "mounts[0].source",
            ),
            (
                ContainerSpec {
                    limits: crate::Limits {
                        memory: Some(1 << 20),
                        ..Default::default()
                    },
                    ..base()
                },
                "limits.memory",
            ),
        ];
        for (spec, field) in cases {
            let e = validate(&spec).unwrap_err().to_string();
            assert!(e.contains(field), "{e} should name {field}");
        }
    }

    #[test]
    fn namespaces_follow_modes() {
        let mut s = base();
        s.namespaces.pid = NamespaceMode::Join("/proc/42/ns/pid".into());
        s.namespaces.ipc = NamespaceMode::Host;
        let u = user();
        let v = build(
            &s,
            &OciInputs {
                id: "c",
                rootfs: Path::new("/r"),
                netns: Some(Path::new("/run/netns/x")),
                cgroup_path: "/m",
                user: &u,
                host: &FakeHost(u64::MAX),
                dev_root: Path::new("/dev"),
            },
        )
        .unwrap();
        let ns = v["linux"]["namespaces"].as_array().unwrap();
        assert!(ns.contains(&json!({"type": "pid", "path": "/proc/42/ns/pid"})));
        assert!(ns.contains(&json!({"type": "network", "path": "/run/netns/x"})));
        assert!(!ns.iter().any(|n| n["type"] == "ipc"));
        assert!(!ns.iter().any(|n| n["type"] == "user"));
        assert!(v["linux"].get("uidMappings").is_none());
        s.namespaces.user = Some(crate::UserNamespace {
            path: "/proc/7/ns/user".into(),
            range: crate::IdRange {
                start: 200_000,
                count: 65536,
            },
        });
        let v = build_with(&s, &FakeHost(u64::MAX));
        assert_eq!(
            v["linux"]["namespaces"][0],
            json!({"type": "user", "path": "/proc/7/ns/user"})
        );
        let map = json!([{"containerID": 0, "hostID": 200_000, "size": 65536}]);
        assert_eq!(v["linux"]["uidMappings"], map);
        assert_eq!(v["linux"]["gidMappings"], map);
    }

    #[test]
    fn dev_shm_follows_the_ipc_choice_and_apparmor_is_passed() {
        let shm = |v: &Value| -> Vec<Value> {
            v["mounts"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|m| m["destination"] == "/dev/shm")
                .cloned()
                .collect()
        };
        let v = build_with(&base(), &FakeHost(u64::MAX));
        assert_eq!(shm(&v).len(), 1);
        assert_eq!(shm(&v)[0]["type"], "tmpfs");
        assert!(v["process"].get("apparmorProfile").is_none());
        let mut s = base();
        s.dev_shm = DevShm::None;
        assert!(shm(&build_with(&s, &FakeHost(u64::MAX))).is_empty());
        s.dev_shm = DevShm::Bind("/run/x/shm".into());
        s.security.apparmor_profile = Some("docker-default".into());
        let v = build_with(&s, &FakeHost(u64::MAX));
        assert_eq!(shm(&v)[0]["type"], "bind");
        assert_eq!(shm(&v)[0]["source"], "/run/x/shm");
        assert_eq!(v["process"]["apparmorProfile"], "docker-default");
    }
}
