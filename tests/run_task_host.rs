//! Root integration tests of what a container gets from its host: a privileged
//! container's host devices, each container's own /etc/hosts, /etc/resolv.conf and
//! hostname in every network mode, and block I/O in the task's stats. Real tasks through
//! run-task, each test on its own bridge and subnet (tests/common/cli.rs).

mod common;

use common::busybox_task_env;
use common::cli::Mf;
use common::image::{Compression, Layer, busybox_all_applets};
use common::registry::Registry;
use serde_json::Value;
use std::process::Output;

const BUSYBOX: &str = "public.ecr.aws/docker/library/busybox:1.36";

struct Env {
    mf: Mf,
    _reg: Registry,
}

impl Env {
    fn new() -> Env {
        let (mf, reg) = busybox_task_env(Layer::new(
            Compression::Gzip,
            busybox_all_applets("run-task-host"),
        ));
        Env { mf, _reg: reg }
    }

    /// Runs `json` to its end in the foreground; its output (`name | line`) and status.
    fn run_task(&self, name: &str, json: &str) -> (Output, String) {
        let td = self.mf.taskdef(name, json);
        let out = self.mf.run(&["run-task", "--task-definition", &td]);
        let log = String::from_utf8_lossy(&out.stdout).into_owned();
        (out, log)
    }

    fn describe_last_stopped(&self) -> Value {
        let out = self.mf.run(&["list-tasks", "--desired-status", "STOPPED"]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let arn = v["taskArns"][0].as_str().unwrap().to_string();
        let out = self.mf.run(&["describe-tasks", "--tasks", &arn]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["tasks"][0].clone()
    }
}

/// The lines container `name` printed, without the `name | ` prefix.
fn lines_of(log: &str, name: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| l.split_once(" | "))
        .filter(|(who, _)| who.trim_end() == name)
        .map(|(_, line)| line.to_string())
        .collect()
}

/// `privileged: true` gives the container the host's devices, as Docker's `--privileged`;
/// a container that is not privileged has only the standard nodes.
#[test]
fn a_privileged_container_sees_the_hosts_devices() {
    assert!(
        std::path::Path::new("/dev/loop-control").exists(),
        "this test needs the host's /dev/loop-control (modprobe loop)"
    );
    let env = Env::new();
    let (out, log) = env.run_task(
        "priv",
        &format!(
            r#"{{"family":"priv","networkMode":"none","containerDefinitions":[
            {{"name":"priv","image":"{BUSYBOX}","memory":64,"privileged":true,"essential":false,
             "command":["sh","-c","ls -l /dev/loop-control; ls /dev/loop0 && echo has-loop0; test -c /dev/pts/ptmx && echo own-devpts"]}},
            {{"name":"plain","image":"{BUSYBOX}","memory":64,
             "command":["sh","-c","sleep 1; ls /dev/loop-control || echo no-loop-control; ls /dev"]}}]}}"#
        ),
    );
    assert!(out.status.success(), "{log}");
    let priv_lines = lines_of(&log, "priv");
    // A character device with the host's numbers (10, 237).
    assert!(
        priv_lines.iter().any(|l| l.starts_with('c')
            && l.contains("10, 237")
            && l.ends_with("/dev/loop-control")),
        "{log}"
    );
    assert!(priv_lines.iter().any(|l| l == "has-loop0"), "{log}");
    assert!(priv_lines.iter().any(|l| l == "own-devpts"), "{log}");
    let plain = lines_of(&log, "plain");
    assert!(plain.iter().any(|l| l == "no-loop-control"), "{log}");
    assert!(!plain.iter().any(|l| l.contains("loop0")), "{log}");
}
