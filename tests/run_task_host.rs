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

/// Each container's /etc/hosts and /etc/resolv.conf are its own in bridge and awsvpc mode:
/// one container's extraHosts, dnsServers and search domains do not reach the other.
#[test]
fn each_container_gets_its_own_hosts_and_resolv_conf() {
    let env = Env::new();
    let show = r#""command":["sh","-c","sleep 1; hostname; cat /etc/hosts /etc/resolv.conf"]"#;
    let (out, log) = env.run_task(
        "own-dns",
        &format!(
            r#"{{"family":"own-dns","networkMode":"bridge","containerDefinitions":[
            {{"name":"asks","image":"{BUSYBOX}","memory":64,"essential":false,"hostname":"asker",
             "dnsServers":["10.97.255.53"],"dnsSearchDomains":["corp.example"],
             "extraHosts":[{{"hostname":"db.internal","ipAddress":"10.97.255.7"}}],{show}}},
            {{"name":"plain","image":"{BUSYBOX}","memory":64,{show}}}]}}"#
        ),
    );
    assert!(out.status.success(), "{log}");
    let asks = lines_of(&log, "asks");
    let plain = lines_of(&log, "plain");
    assert_eq!(asks[0], "asker", "{log}");
    assert!(
        asks.iter().any(|l| l == "10.97.255.7\tdb.internal"),
        "{log}"
    );
    assert!(asks.iter().any(|l| l.ends_with(" asker")), "{log}");
    assert!(asks.iter().any(|l| l == "nameserver 10.97.255.53"), "{log}");
    assert!(asks.iter().any(|l| l == "search corp.example"), "{log}");
    assert!(
        !asks
            .iter()
            .any(|l| l.starts_with("nameserver ") && l != "nameserver 10.97.255.53"),
        "{log}"
    );
    // The other container: the task's defaults, none of the first one's members.
    assert!(
        !plain
            .iter()
            .any(|l| l.contains("db.internal") || l.contains("asker")),
        "{log}"
    );
    assert!(
        !plain
            .iter()
            .any(|l| l.contains("10.97.255.53") || l.contains("corp.example")),
        "{log}"
    );
    assert!(plain.iter().any(|l| l.starts_with("nameserver ")), "{log}");
    assert!(
        plain.iter().any(|l| l.starts_with("127.0.0.1\tlocalhost")),
        "{log}"
    );

    // awsvpc (EC2 allows dnsServers there): the same, per container.
    let (out, log) = env.run_task(
        "own-dns-vpc",
        &format!(
            r#"{{"family":"own-dns-vpc","networkMode":"awsvpc","containerDefinitions":[
            {{"name":"asks","image":"{BUSYBOX}","memory":64,"essential":false,
             "dnsServers":["10.97.255.54"],{show}}},
            {{"name":"plain","image":"{BUSYBOX}","memory":64,{show}}}]}}"#
        ),
    );
    assert!(out.status.success(), "{log}");
    let asks = lines_of(&log, "asks");
    let plain = lines_of(&log, "plain");
    assert!(asks.iter().any(|l| l == "nameserver 10.97.255.54"), "{log}");
    assert!(!plain.iter().any(|l| l.contains("10.97.255.54")), "{log}");
    // Both have the task's address and private DNS name, and its hostname.
    assert_eq!(asks[0], plain[0], "{log}");
    assert!(asks[0].starts_with("ip-10-"), "{log}");
    for lines in [&asks, &plain] {
        assert!(
            lines.iter().any(|l| l.ends_with(&format!(
                "\t{} {}",
                asks[0],
                asks[0].split('.').next().unwrap()
            ))),
            "{log}"
        );
    }
}

/// Host mode keeps a container's hostname (its own UTS namespace), extraHosts and DNS
/// members, as Docker's `--network host` does with `--hostname`, `--add-host`, `--dns`;
/// a container without them sees the host's name and files.
#[test]
fn host_mode_keeps_hostname_extra_hosts_and_dns_servers() {
    let env = Env::new();
    let show = r#""command":["sh","-c","sleep 1; hostname; cat /etc/hosts /etc/resolv.conf"]"#;
    let (out, log) = env.run_task(
        "host-dns",
        &format!(
            r#"{{"family":"host-dns","networkMode":"host","containerDefinitions":[
            {{"name":"asks","image":"{BUSYBOX}","memory":64,"essential":false,"hostname":"host-asker",
             "dnsServers":["10.97.255.55"],"dnsSearchDomains":["corp.example"],
             "extraHosts":[{{"hostname":"db.internal","ipAddress":"10.97.255.8"}}],{show}}},
            {{"name":"plain","image":"{BUSYBOX}","memory":64,{show}}}]}}"#
        ),
    );
    assert!(out.status.success(), "{log}");
    let asks = lines_of(&log, "asks");
    let plain = lines_of(&log, "plain");
    let host_name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(asks[0], "host-asker", "{log}");
    assert_eq!(plain[0], host_name.trim(), "{log}");
    // The host's own name is untouched by the container's.
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap(),
        host_name
    );
    assert!(
        asks.iter().any(|l| l == "10.97.255.8\tdb.internal"),
        "{log}"
    );
    assert!(asks.iter().any(|l| l == "nameserver 10.97.255.55"), "{log}");
    assert!(asks.iter().any(|l| l == "search corp.example"), "{log}");
    // The host's hosts entries are there too (a copy of its file, then the extra ones).
    let host_hosts = std::fs::read_to_string("/etc/hosts").unwrap();
    for l in host_hosts.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            asks.iter().any(|a| a == l),
            "host line {l:?} missing: {log}"
        );
        assert!(
            plain.iter().any(|a| a == l),
            "host line {l:?} missing: {log}"
        );
    }
    assert!(
        !plain
            .iter()
            .any(|l| l.contains("db.internal") || l.contains("10.97.255.55")),
        "{log}"
    );
}
