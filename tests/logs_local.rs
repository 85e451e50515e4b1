//! Root integration tests of the local logs: json-file rotation by size and count (the
//! host's default and the json-file driver's `max-size`/`max-file`), `logs --tail` from the
//! end of rotated files, `logs --follow` across rotations.

use crate::common;

use common::busybox_task_env;
use common::cli::Mf;
use common::image::{Compression, busybox_layer};
use common::registry::Registry;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

struct Env {
    mf: Mf,
    _reg: Registry,
}

impl Env {
    fn new() -> Env {
        let (mf, reg) = busybox_task_env(busybox_layer(Compression::Gzip, "logs-local"));
        Env { mf, _reg: reg }
    }

    /// Runs a one-container busybox task (`command` in `sh -c`) detached; its task id.
    fn run_sh(&self, name: &str, command: &str, log_configuration: Option<Value>) -> String {
        let mut c = json!({
            "name": "app",
            "image": "public.ecr.aws/docker/library/busybox:1.36",
            "essential": true,
            "memory": 128,
            "command": ["sh", "-c", command],
        });
        if let Some(lc) = log_configuration {
            c["logConfiguration"] = lc;
        }
        let td = json!({"family": name, "networkMode": "none", "containerDefinitions": [c]});
        let td = self.mf.taskdef(name, &td.to_string());
        let v = self
            .mf
            .json(&["run-task", "--task-definition", &td, "--detach"]);
        assert_eq!(v["failures"], json!([]));
        let arn = v["tasks"][0]["taskArn"].as_str().unwrap();
        arn.rsplit('/').next().unwrap().to_string()
    }

    fn status(&self, id: &str) -> String {
        let v = self.mf.json(&["describe-tasks", "--tasks", id]);
        v["tasks"][0]["lastStatus"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    fn wait_stopped(&self, id: &str) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.status(id) != "STOPPED" {
            assert!(Instant::now() < deadline, "task {id} did not stop");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn log_path(&self, id: &str) -> PathBuf {
        self.mf
            .root
            .join("tasks")
            .join(id)
            .join("logs")
            .join("app.log")
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The files of a container's log (the current one and its rotated ones) and their sizes.
fn log_files(path: &Path) -> Vec<(String, u64)> {
    let dir = path.parent().unwrap();
    let stem = path.file_name().unwrap().to_string_lossy().to_string();
    let mut files: Vec<(String, u64)> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(&stem))
                .filter_map(|e| {
                    Some((
                        e.file_name().to_string_lossy().to_string(),
                        e.metadata().ok()?.len(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// The numbers that start each line.
fn numbers(text: &str) -> Vec<u64> {
    text.lines()
        .map(|l| {
            l.split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap_or_else(|_| panic!("line {l:?}"))
        })
        .collect()
}

/// The soak in short (scripts/soak-logs runs it for 2 minutes): 1 KiB lines as fast as
/// the container can print them; the log stays within the host's rotation limit all the
/// while, and `logs --tail 5` answers at once with the last lines.
#[test]
fn a_chatty_container_stays_within_the_rotation_limit() {
    let mut env = Env::new();
    env.mf.set_env("MINIFARGATE_LOG_MAX_SIZE", "1m");
    env.mf.set_env("MINIFARGATE_LOG_MAX_FILES", "3");
    // 40,000 lines of about 1 KiB: about 40 MiB of log, 13 times the limit.
    let id = env.run_sh(
        "chatty",
        "pad=$(head -c 1000 /dev/zero | tr '\\0' x); i=0; \
         while [ $i -lt 40000 ]; do echo \"$i $pad\"; i=$((i+1)); done",
        None,
    );
    let path = env.log_path(&id);
    // Each file at most max-size (an entry is written whole, so one line over at most),
    // at most max-file files.
    let limit = 1u64 << 20;
    let mut samples = 0;
    let mut max_total = 0;
    let mut check = || {
        let files = log_files(&path);
        assert!(files.len() <= 3, "more files than max-file: {files:?}");
        for (name, len) in &files {
            assert!(*len <= limit, "{name} is {len} bytes, over max-size");
        }
        max_total = max_total.max(files.iter().map(|(_, l)| l).sum::<u64>());
    };
    while env.status(&id) != "STOPPED" {
        check();
        samples += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    check();
    eprintln!("{samples} samples, largest total {max_total} bytes");
    assert!(
        max_total > 2 * limit,
        "the log never filled two files: {max_total}"
    );
    assert_eq!(log_files(&path).len(), 3);

    let t = Instant::now();
    let out = env.mf.run(&["logs", &id, "--tail", "5"]);
    let took = t.elapsed();
    assert!(out.status.success());
    assert_eq!(
        numbers(&stdout(&out)),
        vec![39995, 39996, 39997, 39998, 39999]
    );
    assert!(took < Duration::from_secs(1), "logs --tail 5 took {took:?}");
    // Without --tail: every kept line, oldest first, none missing in between.
    let all = numbers(&stdout(&env.mf.run(&["logs", &id])));
    let first = all[0];
    assert!(first > 0);
    assert_eq!(all, (first..40000).collect::<Vec<_>>());
}

/// The json-file driver's own options set the rotation of that container; `logs
/// --follow`, started before the output, reads on across each rotation without losing
/// or repeating a line.
#[test]
fn json_file_options_rotate_and_follow_goes_across_rotations() {
    let env = Env::new();
    // About 4000 × 100 bytes = 400 KB against 64 KiB files, at about 300 KB/s: several
    // rotations while `logs --follow` reads.
    let id = env.run_sh(
        "rotating",
        "sleep 1; pad=$(head -c 60 /dev/zero | tr '\\0' y); i=0; \
         while [ $i -lt 4000 ]; do echo \"$i $pad\"; i=$((i+1)); \
         [ $((i % 50)) = 0 ] && usleep 10000; done; true",
        Some(json!({"logDriver": "json-file", "options": {"max-size": "64k", "max-file": "8"}})),
    );
    let mut follow = env.mf.cmd();
    follow
        .args(["logs", "--follow", &id])
        .stdout(Stdio::piped());
    let follow = follow.spawn().unwrap();
    let out = follow.wait_with_output().unwrap();
    assert!(out.status.success());
    env.wait_stopped(&id);
    let files = log_files(&env.log_path(&id));
    assert!(files.len() >= 5, "expected several rotations: {files:?}");
    for (name, len) in &files {
        assert!(*len <= 64 << 10, "{name} is {len} bytes");
    }
    assert_eq!(numbers(&stdout(&out)), (0..4000).collect::<Vec<_>>());
}
