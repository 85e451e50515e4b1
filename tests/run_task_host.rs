//! Root integration tests of what a container gets from its host: a privileged
//! container's host devices, each container's own /etc/hosts, /etc/resolv.conf and
//! hostname in every network mode, and block I/O in the task's stats. Real tasks through
//! run-task, each test on its own bridge and subnet (tests/common/cli.rs).

use crate::common;

use common::busybox_task_env;
use common::cli::Mf;
use common::image::{Compression, Layer, busybox_all_applets};
use common::registry::Registry;
use serde_json::Value;
use std::process::Output;
use std::time::Duration;

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

/// A container that writes to disk shows the bytes in its task metadata stats
/// (`blkio_stats.io_service_bytes_recursive`, Docker's shape, read from its cgroup).
///
/// On cgroup v1 with a kernel that sets blk-throttle up only once a rule exists on the
/// device (a recent kernel, as this test VM's 6.18), the throttle counters stay at zero without one: the
/// test gives the container's blkio cgroup a limit no write reaches (1 TiB/s) before the
/// container writes, as a host whose tasks have I/O limits has.
#[test]
fn disk_writes_show_in_the_containers_blkio_stats() {
    use std::os::unix::fs::MetadataExt;
    let env = Env::new();
    let td = env.mf.taskdef(
        "io",
        &format!(
            r#"{{"family":"io","networkMode":"awsvpc","memory":"256",
            "volumes":[{{"name":"data"}}],
            "containerDefinitions":[{{"name":"io","image":"{BUSYBOX}",
             "mountPoints":[{{"sourceVolume":"data","containerPath":"/data"}}],
             "command":["sh","-c","r=/sys/fs/cgroup/blkio/blkio.throttle.write_bps_device; n=0; while [ -e $r ] && ! grep -q . $r && [ $n -lt 300 ]; do sleep 0.1; n=$((n+1)); done; dd if=/dev/zero of=/data/f bs=1M count=8 oflag=direct conv=fsync 2>&1; echo; echo STATS $(wget -qO- $ECS_CONTAINER_METADATA_URI_V4/stats)"]}}]}}"#
        ),
    );
    let out = env
        .mf
        .run(&["run-task", "--task-definition", &td, "--detach"]);
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let arn = v["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    let id = arn.rsplit('/').next().unwrap().to_string();
    let blkio = std::path::Path::new("/sys/fs/cgroup/blkio");
    if blkio.is_dir() {
        let cg = blkio.join("minifargate").join(&id).join(format!("{id}-0"));
        common::util::wait_until(
            "the container's blkio cgroup",
            Duration::from_secs(30),
            || {
                cg.join("blkio.throttle.write_bps_device")
                    .exists()
                    .then_some(())
            },
        );
        let dev = std::fs::metadata(&env.mf.root).unwrap().dev();
        let rule = format!(
            "{}:{} {}",
            nix::sys::stat::major(dev),
            nix::sys::stat::minor(dev),
            1u64 << 40
        );
        std::fs::write(cg.join("blkio.throttle.write_bps_device"), rule).unwrap();
    }
    common::util::wait_until("the task to stop", Duration::from_secs(60), || {
        let t = env.mf.json(&["describe-tasks", "--tasks", &arn]);
        (t["tasks"][0]["lastStatus"] == "STOPPED").then_some(())
    });
    let log = String::from_utf8_lossy(&env.mf.run(&["logs", &id]).stdout).into_owned();
    let line = log
        .lines()
        .find_map(|l| l.split_once("STATS ").map(|(_, j)| j.to_string()))
        .unwrap_or_else(|| panic!("no stats: {log}"));
    let st: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    let entries = st["blkio_stats"]["io_service_bytes_recursive"]
        .as_array()
        .unwrap_or_else(|| panic!("{st:#}"));
    for e in entries {
        assert!(
            e["major"].is_u64()
                && e["minor"].is_u64()
                && e["op"].is_string()
                && e["value"].is_u64(),
            "{e}"
        );
    }
    let sum = |list: &str| -> u64 {
        st["blkio_stats"][list]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| {
                e["op"]
                    .as_str()
                    .is_some_and(|o| o.eq_ignore_ascii_case("write"))
            })
            .map(|e| e["value"].as_u64().unwrap())
            .sum()
    };
    let written = sum("io_service_bytes_recursive");
    assert!(
        written >= 8 << 20,
        "8 MiB written, stats say {written}: {log}"
    );
    assert!(sum("io_serviced_recursive") >= 8, "{st:#}");
}
