//! The default seccomp profile: an allow-list equivalent to Docker's default profile
//! (Ref: moby/profiles/seccomp/default.json, v0.2.3 as vendored by moby/moby in 2026),
//! `EPERM` for everything else. docs/security.md compares the two syscall by syscall.

use serde_json::{Value, json};

/// Allowed for every container. Written from the Linux syscall table, keeping what
/// Docker's default profile allows unconditionally (file, memory, signal, socket,
/// time-reading, scheduling, SysV IPC, … calls) and leaving out what it refuses:
/// keyctl/add_key/request_key, kexec, module loading, mount and namespaces without
/// CAP_SYS_ADMIN, clock setting, swapon/off, userfaultfd, bpf, perf, personality
/// changes, acct, reboot, …
const ALLOWED: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "bind",
    "brk",
    "cachestat",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_requeue",
    "futex_time64",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "map_shadow_stack",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "name_to_handle_at",
    "nanosleep",
    "newfstatat",
    "_newselect",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pselect6_time64",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setuid32",
    "setxattr",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
    // Docker allows these on kernels ≥ 4.8, where ptrace can no longer bypass seccomp.
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
];

/// x86-only calls Docker allows on amd64.
const ALLOWED_X86: &[&str] = &["arch_prctl", "modify_ldt"];

/// Calls unlocked by a capability, as in Docker's profile.
const BY_CAPABILITY: &[(&str, &[&str])] = &[
    ("CAP_DAC_READ_SEARCH", &["open_by_handle_at"]),
    (
        "CAP_SYS_ADMIN",
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    ("CAP_SYS_BOOT", &["reboot"]),
    ("CAP_SYS_CHROOT", &["chroot"]),
    (
        "CAP_SYS_MODULE",
        &["delete_module", "init_module", "finit_module"],
    ),
    ("CAP_SYS_PACCT", &["acct"]),
    ("CAP_SYS_RAWIO", &["iopl", "ioperm"]),
    (
        "CAP_SYS_TIME",
        &["settimeofday", "stime", "clock_settime", "clock_settime64"],
    ),
    ("CAP_SYS_TTY_CONFIG", &["vhangup"]),
    // Ref: moby/profiles seccomp v0.2.3 default.json: kcmp, pidfd_getfd and
    // process_madvise only with CAP_SYS_PTRACE (ptrace itself for everyone, above).
    (
        "CAP_SYS_PTRACE",
        &["kcmp", "pidfd_getfd", "process_madvise"],
    ),
    (
        "CAP_SYS_NICE",
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
    ),
    ("CAP_SYSLOG", &["syslog"]),
    ("CAP_BPF", &["bpf"]),
    ("CAP_PERFMON", &["perf_event_open"]),
];

/// Namespace flags of clone(2): CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER |
/// NEWPID | NEWNET. Without CAP_SYS_ADMIN, clone is allowed only without them.
const CLONE_NS_FLAGS: u64 = 0x7E02_0000;
/// socket(2) families Docker refuses: AF_ALG (38, the kernel crypto API) and AF_VSOCK
/// (40, host–guest sockets); every other family is allowed.
/// Ref: moby/profiles seccomp v0.2.3 default.json (`socket` with arg0 < 38, == 39, > 40).
const SOCKET_ALLOWED: &[(&str, u64)] = &[
    ("SCMP_CMP_LT", 38),
    ("SCMP_CMP_EQ", 39),
    ("SCMP_CMP_GT", 40),
];
/// personality(2) values Docker allows: PER_LINUX, PER_LINUX32, UNAME26,
/// UNAME26|PER_LINUX32, and the query value 0xffffffff.
const PERSONALITIES: &[u64] = &[0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];
const EPERM: u32 = 1;
const ENOSYS: u32 = 38;

/// The OCI `linux.seccomp` object for a container holding `caps` (`CAP_*` names);
/// `compat_abis` also filters (instead of killing) 32-bit/x32 syscalls, as Docker does.
pub fn default_profile(caps: &[String], compat_abis: bool) -> Value {
    let has = |c: &str| caps.iter().any(|x| x == c);
    let mut syscalls = vec![json!({ "names": ALLOWED, "action": "SCMP_ACT_ALLOW" })];
    if cfg!(target_arch = "x86_64") {
        syscalls.push(json!({ "names": ALLOWED_X86, "action": "SCMP_ACT_ALLOW" }));
    }
    for (op, family) in SOCKET_ALLOWED {
        syscalls.push(json!({
            "names": ["socket"], "action": "SCMP_ACT_ALLOW",
            "args": [{ "index": 0, "value": family, "op": op }],
        }));
    }
    for p in PERSONALITIES {
        syscalls.push(json!({
            "names": ["personality"], "action": "SCMP_ACT_ALLOW",
            "args": [{ "index": 0, "value": p, "op": "SCMP_CMP_EQ" }],
        }));
    }
    let mut by_cap: Vec<&str> = BY_CAPABILITY
        .iter()
        .filter(|(cap, _)| has(cap))
        .flat_map(|(_, names)| names.iter().copied())
        .collect();
    by_cap.sort_unstable();
    by_cap.dedup();
    if !has("CAP_SYS_ADMIN") {
        // libcontainer hands `valueTwo` to libseccomp as the mask and `value` as the
        // datum: (flags & CLONE_NS_FLAGS) == 0.
        syscalls.push(json!({
            "names": ["clone"], "action": "SCMP_ACT_ALLOW",
            "args": [{ "index": 0, "value": 0, "valueTwo": CLONE_NS_FLAGS, "op": "SCMP_CMP_MASKED_EQ" }],
        }));
        // clone3 flags live in a struct seccomp cannot inspect: ENOSYS makes libcs
        // fall back to clone(2), as Docker does.
        syscalls
            .push(json!({ "names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS }));
    }
    if !by_cap.is_empty() {
        syscalls.push(json!({ "names": by_cap, "action": "SCMP_ACT_ALLOW" }));
    }
    // Docker lists the compat ABIs too (x86 and x32 on amd64, arm on arm64). Each
    // extra ABI multiplies libseccomp's compile time, which dominated container create
    // here (3 ABIs: ~30 ms, native only: ~14 ms per create+start+wait+delete). By
    // default only the native ABI is listed; a syscall through another ABI then hits
    // the filter's bad-architecture action and the thread is killed.
    let architectures: &[&str] = match (cfg!(target_arch = "aarch64"), compat_abis) {
        (true, false) => &["SCMP_ARCH_AARCH64"],
        (true, true) => &["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
        (false, false) => &["SCMP_ARCH_X86_64"],
        (false, true) => &["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    };
    json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": EPERM,
        "architectures": architectures,
        "syscalls": syscalls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(profile: &Value) -> Vec<String> {
        profile["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["action"] == "SCMP_ACT_ALLOW" && r.get("args").is_none())
            .flat_map(|r| {
                r["names"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|n| n.as_str().unwrap().to_string())
            })
            .collect()
    }

    #[test]
    fn default_refuses_dangerous_calls_and_parses_as_oci() {
        let p = default_profile(&["CAP_CHOWN".into(), "CAP_KILL".into()], false);
        let names = allowed(&p);
        for refused in [
            "keyctl",
            "add_key",
            "mount",
            "unshare",
            "setns",
            "reboot",
            "kexec_load",
            "bpf",
            "userfaultfd",
            "kcmp",
            "pidfd_getfd",
            "io_uring_setup",
        ] {
            assert!(
                !names.iter().any(|n| n == refused),
                "{refused} must not be allowed"
            );
        }
        for needed in ["read", "execve", "futex", "ptrace", "wait4"] {
            assert!(
                names.iter().any(|n| n == needed),
                "{needed} must be allowed"
            );
        }
        // socket: every family but AF_ALG (38) and AF_VSOCK (40), as Docker.
        let socket: Vec<(String, u64)> = p["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["names"][0] == "socket")
            .map(|r| {
                let a = &r["args"][0];
                (
                    a["op"].as_str().unwrap().to_string(),
                    a["value"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            socket,
            [
                ("SCMP_CMP_LT".into(), 38),
                ("SCMP_CMP_EQ".into(), 39),
                ("SCMP_CMP_GT".into(), 40)
            ]
        );
        let oci: oci_spec::runtime::LinuxSeccomp = serde_json::from_value(p).unwrap();
        assert_eq!(oci.default_errno_ret(), Some(EPERM));
    }

    #[test]
    fn capabilities_unlock_their_calls() {
        let ptrace = allowed(&default_profile(&["CAP_SYS_PTRACE".into()], false));
        for n in ["kcmp", "pidfd_getfd", "process_madvise", "ptrace"] {
            assert!(ptrace.iter().any(|x| x == n), "{n}");
        }
        let p = default_profile(&["CAP_SYS_ADMIN".into(), "CAP_SYS_TIME".into()], true);
        let names = allowed(&p);
        for n in ["mount", "unshare", "clone", "clone3", "settimeofday"] {
            assert!(names.iter().any(|x| x == n), "{n}");
        }
        assert!(!names.iter().any(|x| x == "reboot"));
        assert_eq!(
            p["architectures"].as_array().unwrap().len(),
            if cfg!(target_arch = "aarch64") { 2 } else { 3 }
        );
    }
}
