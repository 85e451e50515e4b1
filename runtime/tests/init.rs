//! Root tests of the init option (ECS `initProcessEnabled`). This test binary is its
//! own `main` and doubles as the init: bind-mounted at /dev/init, it runs `init::run`.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use runtime::{ContainerSpec, Mount, TaskLimits};

fn main() {
    if runtime::init::is_init_invocation() {
        let args: Vec<String> = std::env::args().skip(1).collect();
        std::process::exit(runtime::init::run(&args));
    }
    let tests: &[(&str, fn())] = &[
        ("init_reaps_orphans", init_reaps_orphans),
        ("init_forwards_sigterm", init_forwards_sigterm),
        ("init_passes_the_exit_code", init_passes_the_exit_code),
    ];
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    for (name, test) in tests {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        eprint!("test {name} ... ");
        test();
        eprintln!("ok");
    }
}

/// A spec whose init is this (dynamically linked) test binary: the host's libraries
/// are bind-mounted read-only so it runs inside the busybox rootfs.
fn with_init(args: &[&str], rootfs: &Path) -> ContainerSpec {
    for (link, target) in [("lib", "usr/lib"), ("lib64", "usr/lib64")] {
        let _ = std::os::unix::fs::symlink(target, rootfs.join(link));
    }
    let lib = |p: &str| Mount::Bind {
        source: PathBuf::from(p),
        destination: p.into(),
        read_only: true,
    };
    ContainerSpec {
        args: args.iter().map(|s| s.to_string()).collect(),
        init: Some(std::env::current_exe().unwrap()),
        mounts: vec![lib("/usr/lib"), lib("/usr/lib64")],
        ..Default::default()
    }
}

fn init_reaps_orphans() {
    let rootfs = Rootfs::new();
    let task = Task::new(TaskLimits::default());
    // The subshell exits at once, orphaning `sleep 0.1`, which re-parents to pid 1.
    // After it exits, only a reaping pid 1 leaves no zombie behind.
    let script = "(/bin/sleep 0.1 &); /bin/sleep 0.6; cat /proc/1/cmdline | tr '\\0' ' '; echo; \
                  for s in /proc/[0-9]*/stat; do read -r l < $s && echo \"$l\"; done";
    let (status, out) = task.run(
        "reap",
        with_init(&["/bin/sh", "-c", script], rootfs.path()),
        rootfs.path(),
    );
    assert_eq!(status.code, 0, "{out} {}", task.stream("reap", "stderr"));
    let mut lines = out.lines();
    assert_eq!(
        lines.next().unwrap().trim(),
        "/dev/init -- /bin/sh -c ".to_string() + script
    );
    let zombies: Vec<&str> = lines.filter(|l| l.contains(") Z ")).collect();
    assert!(zombies.is_empty(), "zombies: {zombies:?}\n{out}");
}

fn init_forwards_sigterm() {
    let rootfs = Rootfs::new();
    let task = Task::new(TaskLimits::default());
    let c = task.create(
        "term",
        with_init(&["/bin/sleep", "60"], rootfs.path()),
        rootfs.path(),
        None,
    );
    c.start().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    let status = c.stop(Duration::from_secs(10)).unwrap();
    // sleep (not pid 1) dies of the forwarded SIGTERM; init exits 128 + 15.
    assert_eq!((status.code, status.signal), (143, None), "{status:?}");
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    c.delete();
}

fn init_passes_the_exit_code() {
    let rootfs = Rootfs::new();
    let task = Task::new(TaskLimits::default());
    let (status, _) = task.run(
        "code",
        with_init(&["/bin/sh", "-c", "exit 7"], rootfs.path()),
        rootfs.path(),
    );
    assert_eq!(status.code, 7);
}
