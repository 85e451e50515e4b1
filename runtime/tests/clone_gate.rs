//! A create never waits forever for a thread that started or ended beside it.
//!
//! libcontainer clones the calling process; the clone's intermediate process ends with
//! `std::process::exit`, which takes std's thread-info lock, held for a moment by every
//! thread that starts or ends. A thread starting or ending at the instant of the clone
//! left the intermediate waiting for that lock forever, and the create with it (seen in
//! `scripts/bench-run-task` and `scripts/bench-phases`: the network's namespace threads
//! and the task metadata endpoint's thread, beside the supervisor's create). Threads
//! started through `threadgate` wait while a create clones. Own test binary: the churn
//! below is this process's.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use runtime::{ContainerSpec, TaskLimits};

/// This process's children that are libcontainer's intermediate process.
fn intermediates() -> Vec<i32> {
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let Some((head, tail)) = stat.rsplit_once(") ") else {
            continue;
        };
        let ppid = tail.split(' ').nth(1).unwrap_or("");
        if ppid == me && head.contains("(youki:[1:INTER]") {
            found.extend(e.file_name().to_str().and_then(|p| p.parse::<i32>().ok()));
        }
    }
    found
}

#[test]
fn creates_beside_threads_that_start_and_end_all_finish() {
    let rootfs = Rootfs::new();
    let task = Task::new(TaskLimits::default());
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let churned = Arc::new(AtomicUsize::new(0));
    let hung = Arc::new(AtomicUsize::new(0));

    // Threads starting and ending all the time beside the creates, as the network's
    // namespace threads do beside a task's first create.
    let churn = {
        let (stop, churned) = (stop.clone(), churned.clone());
        threadgate::spawn(
            std::thread::Builder::new().name("churn".into()),
            move || {
                let mut i = 0usize;
                while !stop.load(Ordering::SeqCst) {
                    let hs: Vec<_> = (0..8)
                        .map(|_| {
                            i += 1;
                            // Stacks of sizes glibc's cache does not hold: fresh pages.
                            let b =
                                std::thread::Builder::new().stack_size((64 + (i % 512) * 16) << 10);
                            threadgate::spawn(b, || {}).unwrap()
                        })
                        .collect();
                    for h in hs {
                        h.join().unwrap();
                        churned.fetch_add(1, Ordering::SeqCst);
                    }
                }
            },
        )
        .unwrap()
    };
    // A create with no progress for 20 s is hung: its intermediate process is killed
    // (libcontainer then goes on, its container's init being ready), counted, and the
    // test fails below instead of waiting forever.
    let watchdog = {
        let (stop, done, hung) = (stop.clone(), done.clone(), hung.clone());
        threadgate::spawn(
            std::thread::Builder::new().name("watchdog".into()),
            move || {
                let (mut seen, mut since) = (0, Instant::now());
                while !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(100));
                    let now = done.load(Ordering::SeqCst);
                    if now != seen {
                        (seen, since) = (now, Instant::now());
                    } else if since.elapsed() > Duration::from_secs(20) {
                        for pid in intermediates() {
                            let _ = nix::sys::signal::kill(
                                nix::unistd::Pid::from_raw(pid),
                                nix::sys::signal::Signal::SIGKILL,
                            );
                            hung.fetch_add(1, Ordering::SeqCst);
                        }
                        since = Instant::now();
                    }
                }
            },
        )
        .unwrap()
    };

    const CREATES: usize = 300;
    for i in 0..CREATES {
        let spec = ContainerSpec {
            args: vec!["/bin/true".into()],
            ..Default::default()
        };
        let (status, _) = task.run(&format!("c{i}"), spec, rootfs.path());
        assert_eq!(status.code, 0, "container {i}");
        done.fetch_add(1, Ordering::SeqCst);
    }
    eprintln!(
        "churned {} hung {}",
        churned.load(Ordering::SeqCst),
        hung.load(Ordering::SeqCst)
    );
    stop.store(true, Ordering::SeqCst);
    churn.join().unwrap();
    watchdog.join().unwrap();

    assert_eq!(
        hung.load(Ordering::SeqCst),
        0,
        "creates waited forever for a lock a thread held at the clone"
    );
    // The churn ran beside the creates, not only before or after them.
    assert!(
        churned.load(Ordering::SeqCst) > CREATES,
        "only {} threads started and ended beside {CREATES} creates",
        churned.load(Ordering::SeqCst)
    );
}
