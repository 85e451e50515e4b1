//! Benchmark driver for scripts/bench-runtime: one create+start+wait+delete of a
//! command in a rootfs, as one process, like `crun run` / `runc run`.
//!
//! bench-run run <state-dir> <rootfs> <id> [args…]    run once, exit with its code
//! bench-run config <rootfs> <cgroups-path> [args…]   print the OCI config.json the
//!                                                    runtime would use (for crun/runc)

use std::path::Path;

use runtime::{ContainerSpec, Runtime, TaskLimits};

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let cmd: Vec<String> = argv.iter().skip(4).cloned().collect();
    match argv.first().map(String::as_str) {
        Some("run") if argv.len() >= 4 => {
            std::process::exit(run(&argv[1], &argv[2], &argv[3], cmd))
        }
        Some("config") if argv.len() >= 3 => {
            let args: Vec<String> = argv.iter().skip(3).cloned().collect();
            config(&argv[1], &argv[2], args)
        }
        _ => {
            eprintln!(
                "usage: bench-run run <state-dir> <rootfs> <id> [args…] | config <rootfs> <cgroups-path> [args…]"
            );
            std::process::exit(2);
        }
    }
}

fn spec(args: Vec<String>) -> ContainerSpec {
    let args = if args.is_empty() {
        vec!["/bin/true".to_string()]
    } else {
        args
    };
    ContainerSpec {
        args,
        ..Default::default()
    }
}

fn run(state: &str, rootfs: &str, id: &str, args: Vec<String>) -> i32 {
    // BENCH_STEPS=1 prints the time of each step to stderr.
    let steps = std::env::var_os("BENCH_STEPS").is_some();
    let mut t = std::time::Instant::now();
    let mut step = |name: &str| {
        if steps {
            eprintln!("{name:>12}: {:6.2} ms", t.elapsed().as_secs_f64() * 1e3);
        }
        t = std::time::Instant::now();
    };
    let rt = Runtime::new(state).expect("runtime");
    let task = format!("bench-{id}");
    rt.create_task_cgroup(&task, &TaskLimits::default())
        .expect("task cgroup");
    step("task cgroup");
    let c = rt
        .create(id, &task, &spec(args), Path::new(rootfs), None)
        .unwrap_or_else(|e| {
            eprintln!("{}", runtime::error_chain(&e));
            std::process::exit(1)
        });
    step("create");
    c.start().expect("start");
    step("start");
    let status = c.wait().expect("wait");
    step("wait");
    c.delete().expect("delete");
    step("delete");
    rt.remove_task_cgroup(&task).expect("remove task");
    step("remove task");
    status.code
}

fn config(rootfs: &str, cgroups_path: &str, args: Vec<String>) {
    let user = runtime::resolve_user(Path::new(rootfs), None, &[]).expect("user");
    let v = runtime::oci::build(
        &spec(args),
        &runtime::oci::OciInputs {
            id: "bench",
            rootfs: Path::new(rootfs),
            netns: None,
            cgroup_path: cgroups_path,
            user: &user,
            host: &runtime::oci::ProcessLimits,
            dev_root: Path::new("/dev"),
        },
    )
    .expect("spec");
    println!("{}", serde_json::to_string_pretty(&v).unwrap());
}
