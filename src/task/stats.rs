//! Container statistics in Docker's stats JSON shape (what task metadata v4 `/stats`
//! serves), read from the container's cgroup (v1 per controller, or v2) and from the
//! task's `eth0` as its processes see it (`/proc/<pid>/net/dev`).
//!
//! Ref: moby api/types/container/stats.go (`StatsResponse`: read, preread, pids_stats,
//! blkio_stats, cpu_stats, precpu_stats, memory_stats, networks); ecs-reference.md §3
//! (`/stats` is that object plus `network_rate_stats`).

use runtime::{CgroupVersion, Cgroups};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One reading of a container's cgroup and network.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    pub read: chrono::DateTime<chrono::Utc>,
    pub cpu_total_ns: u64,
    pub cpu_user_ns: u64,
    pub cpu_system_ns: u64,
    pub percpu_ns: Vec<u64>,
    /// The host's total CPU time (ns), from /proc/stat.
    pub system_ns: u64,
    pub online_cpus: u64,
    pub periods: u64,
    pub throttled_periods: u64,
    pub throttled_ns: u64,
    pub mem_usage: u64,
    pub mem_max_usage: Option<u64>,
    pub mem_limit: u64,
    pub mem_stat: BTreeMap<String, u64>,
    pub pids: u64,
    pub pids_limit: Option<u64>,
    /// interface → (rx_bytes, rx_packets, rx_errors, rx_dropped, tx_bytes, tx_packets,
    /// tx_errors, tx_dropped)
    pub networks: BTreeMap<String, [u64; 8]>,
    /// Bytes read and written per device (Docker's `io_service_bytes_recursive`).
    pub io_bytes: Vec<BlkioEntry>,
    /// I/O operations per device (Docker's `io_serviced_recursive`).
    pub io_ops: Vec<BlkioEntry>,
    /// A process of the container (the first of its cgroup), when it has one.
    pub pid: Option<u32>,
}

/// One line of Docker's `blkio_stats` lists: a device, an operation, a count.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BlkioEntry {
    pub major: u64,
    pub minor: u64,
    pub op: String,
    pub value: u64,
}

/// A cgroup v1 blkio file (`8:0 Read 4096` lines, then `Total …`): the per-device lines.
/// Ref: kernel Documentation/admin-guide/cgroup-v1/blkio-controller.rst.
pub fn blkio_v1(text: &str) -> Vec<BlkioEntry> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let (dev, op, value) = (w.next()?, w.next()?, w.next()?);
            let (major, minor) = dev.split_once(':')?;
            Some(BlkioEntry {
                major: major.parse().ok()?,
                minor: minor.parse().ok()?,
                op: op.to_string(),
                value: value.parse().ok()?,
            })
        })
        .collect()
}

/// A cgroup v2 `io.stat` (`8:0 rbytes=… wbytes=… rios=… wios=… dbytes=… dios=…` lines):
/// (bytes, operations) as Docker reports them on v2, ops `read` and `write`.
/// Ref: kernel Documentation/admin-guide/cgroup-v2.rst (io.stat); moby
/// daemon/stats_unix.go (the v2 io.stat to blkio_stats mapping).
pub fn io_stat_v2(text: &str) -> (Vec<BlkioEntry>, Vec<BlkioEntry>) {
    let (mut bytes, mut ops) = (Vec::new(), Vec::new());
    for l in text.lines() {
        let mut w = l.split_whitespace();
        let Some((major, minor)) = w.next().and_then(|d| d.split_once(':')) else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (major.parse(), minor.parse()) else {
            continue;
        };
        let kv: BTreeMap<&str, u64> = w
            .filter_map(|f| {
                let (k, v) = f.split_once('=')?;
                Some((k, v.parse().ok()?))
            })
            .collect();
        let entry = |key: &str, op: &str| {
            kv.get(key).map(|&value| BlkioEntry {
                major,
                minor,
                op: op.into(),
                value,
            })
        };
        bytes.extend(
            [entry("rbytes", "read"), entry("wbytes", "write")]
                .into_iter()
                .flatten(),
        );
        ops.extend(
            [entry("rios", "read"), entry("wios", "write")]
                .into_iter()
                .flatten(),
        );
    }
    (bytes, ops)
}

/// The first of a v1 blkio dir's files that has device lines: the throttle layer's counts
/// (every bio of the cgroup, whatever the I/O scheduler), recursive first, then the
/// scheduler's (CFQ/BFQ), as runc reads them.
fn blkio_v1_dir(dir: &Path, kind: &str) -> Vec<BlkioEntry> {
    [
        format!("blkio.throttle.{kind}_recursive"),
        format!("blkio.throttle.{kind}"),
        format!("blkio.{kind}_recursive"),
        format!("blkio.bfq.{kind}_recursive"),
    ]
    .iter()
    .map(|f| blkio_v1(&read(&dir.join(f)).unwrap_or_default()))
    .find(|e| !e.is_empty())
    .unwrap_or_default()
}

fn read(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok()
}

fn read_u64(p: &Path) -> Option<u64> {
    read(p)?.trim().parse().ok()
}

/// `key value` lines (memory.stat, cpu.stat, cpuacct.stat).
fn keyed(p: &Path) -> BTreeMap<String, u64> {
    read(p)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

/// USER_HZ: /proc/stat and cpuacct.stat count in 1/100 s on Linux. Ref: proc(5).
const TICK_NS: u64 = 10_000_000;

/// The host's total CPU time and online CPUs from a /proc/stat text.
pub fn system_cpu(stat: &str) -> (u64, u64) {
    let mut total = 0;
    let mut cpus = 0;
    for l in stat.lines() {
        let mut f = l.split_whitespace();
        match f.next() {
            Some("cpu") => total = f.filter_map(|x| x.parse::<u64>().ok()).sum::<u64>() * TICK_NS,
            Some(c) if c.starts_with("cpu") => cpus += 1,
            _ => {}
        }
    }
    (total, cpus)
}

/// Interface counters from a /proc/<pid>/net/dev text (loopback left out, as Docker does).
pub fn net_dev(text: &str) -> BTreeMap<String, [u64; 8]> {
    let mut out = BTreeMap::new();
    for l in text.lines().skip(2) {
        let Some((name, rest)) = l.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name == "lo" {
            continue;
        }
        let f: Vec<u64> = rest
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        if f.len() >= 16 {
            out.insert(
                name.to_string(),
                [f[0], f[1], f[2], f[3], f[8], f[9], f[10], f[11]],
            );
        }
    }
    out
}

/// Where a cgroup's files are: per controller on v1, one directory on v2.
struct Dirs {
    cg: Cgroups,
    rel: String,
}

impl Dirs {
    fn dir(&self, ctrl: &str) -> PathBuf {
        let rel = self.rel.trim_start_matches('/');
        match self.cg.version() {
            CgroupVersion::V1 => self.cg.root().join(ctrl).join(rel),
            CgroupVersion::V2 => self.cg.root().join(rel),
        }
    }
}

/// The memory a container uses as ECS counts it: the cgroup's usage less its page cache,
/// what the agent sends as the container's memory (so `MemoryUtilization`, Container
/// Insights' `MemoryUtilized`, and what a scaling policy on memory acts on). On cgroup v2
/// less `inactive_file` (as the Docker CLI's `docker stats`), else less `cache` (v1's
/// memory.stat), each only when it is below the usage; otherwise the usage.
/// Ref: aws/amazon-ecs-agent agent/stats/utils_unix.go (`getMemUsage`, at
/// e23308ff3d3017ca627ca5a1fb520f9bbe15638a; aws/amazon-ecs-agent#3323 for v2).
pub fn mem_in_use(version: CgroupVersion, usage: u64, stat: &BTreeMap<String, u64>) -> u64 {
    let less = |key: &str| stat.get(key).filter(|v| **v < usage).map(|v| usage - v);
    let v2 = match version {
        CgroupVersion::V2 => less("inactive_file"),
        CgroupVersion::V1 => None,
    };
    v2.or_else(|| less("cache")).unwrap_or(usage)
}

impl Sample {
    /// [`mem_in_use`] of this reading: what ECS's metrics count, where `mem_usage` is
    /// the cgroup's raw usage (Docker's `memory_stats.usage`, page cache included).
    pub fn mem_in_use(&self, version: CgroupVersion) -> u64 {
        mem_in_use(version, self.mem_usage, &self.mem_stat)
    }
}

/// Container `runtime_id` of `task_id`'s CPU time (ns) and memory in use (bytes, as
/// [`mem_in_use`] counts it) as [`sample`] reads them, and nothing else: three files,
/// where [`sample`] reads about twenty (the service metrics need only these two figures;
/// Container Insights needs the rest). None when the container's cgroup is gone.
pub fn usage(cg: &Cgroups, task_id: &str, runtime_id: &str) -> Option<(u64, u64)> {
    let d = Dirs {
        cg: cg.clone(),
        rel: Cgroups::container_path(task_id, runtime_id),
    };
    let (cpu, mem, stat) = match cg.version() {
        CgroupVersion::V1 => {
            let cpu = read_u64(&d.dir("cpuacct").join("cpuacct.usage"))?;
            let mem = d.dir("memory");
            let usage = read_u64(&mem.join("memory.usage_in_bytes")).unwrap_or(0);
            (cpu, usage, keyed(&mem.join("memory.stat")))
        }
        CgroupVersion::V2 => {
            let dir = d.dir("");
            let cpu = keyed(&dir.join("cpu.stat")).get("usage_usec")? * 1000;
            let usage = read_u64(&dir.join("memory.current")).unwrap_or(0);
            (cpu, usage, keyed(&dir.join("memory.stat")))
        }
    };
    Some((cpu, mem_in_use(cg.version(), mem, &stat)))
}

/// Reads container `runtime_id` of `task_id` (cgroup `/minifargate/<task>/<id>`); `limit`
/// caps the memory limit (the task's limit when the container has none of its own).
/// `None` when the cgroup is gone (the container is not running).
pub fn sample(
    cg: &Cgroups,
    task_id: &str,
    runtime_id: &str,
    limit: Option<u64>,
    proc_root: &Path,
) -> Option<Sample> {
    let d = Dirs {
        cg: cg.clone(),
        rel: Cgroups::container_path(task_id, runtime_id),
    };
    let mut s = Sample {
        read: chrono::Utc::now(),
        ..Default::default()
    };
    let (procs_dir, unlimited) = match cg.version() {
        CgroupVersion::V1 => {
            let acct = d.dir("cpuacct");
            s.cpu_total_ns = read_u64(&acct.join("cpuacct.usage"))?;
            s.percpu_ns = read(&acct.join("cpuacct.usage_percpu"))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            let st = keyed(&acct.join("cpuacct.stat"));
            s.cpu_user_ns = st.get("user").copied().unwrap_or(0) * TICK_NS;
            s.cpu_system_ns = st.get("system").copied().unwrap_or(0) * TICK_NS;
            let cpu = keyed(&d.dir("cpu").join("cpu.stat"));
            s.periods = cpu.get("nr_periods").copied().unwrap_or(0);
            s.throttled_periods = cpu.get("nr_throttled").copied().unwrap_or(0);
            s.throttled_ns = cpu.get("throttled_time").copied().unwrap_or(0);
            let mem = d.dir("memory");
            s.mem_usage = read_u64(&mem.join("memory.usage_in_bytes")).unwrap_or(0);
            s.mem_max_usage = read_u64(&mem.join("memory.max_usage_in_bytes"));
            s.mem_limit = read_u64(&mem.join("memory.limit_in_bytes")).unwrap_or(u64::MAX);
            s.mem_stat = keyed(&mem.join("memory.stat"));
            let pids = d.dir("pids");
            s.pids = read_u64(&pids.join("pids.current")).unwrap_or(0);
            s.pids_limit = read_u64(&pids.join("pids.max"));
            let blkio = d.dir("blkio");
            s.io_bytes = blkio_v1_dir(&blkio, "io_service_bytes");
            s.io_ops = blkio_v1_dir(&blkio, "io_serviced");
            (mem, 1u64 << 62)
        }
        CgroupVersion::V2 => {
            let dir = d.dir("");
            let cpu = keyed(&dir.join("cpu.stat"));
            s.cpu_total_ns = cpu.get("usage_usec")? * 1000;
            s.cpu_user_ns = cpu.get("user_usec").copied().unwrap_or(0) * 1000;
            s.cpu_system_ns = cpu.get("system_usec").copied().unwrap_or(0) * 1000;
            s.periods = cpu.get("nr_periods").copied().unwrap_or(0);
            s.throttled_periods = cpu.get("nr_throttled").copied().unwrap_or(0);
            s.throttled_ns = cpu.get("throttled_usec").copied().unwrap_or(0) * 1000;
            s.mem_usage = read_u64(&dir.join("memory.current")).unwrap_or(0);
            s.mem_max_usage = read_u64(&dir.join("memory.peak"));
            s.mem_limit = read_u64(&dir.join("memory.max")).unwrap_or(u64::MAX);
            s.mem_stat = keyed(&dir.join("memory.stat"));
            s.pids = read_u64(&dir.join("pids.current")).unwrap_or(0);
            s.pids_limit = read_u64(&dir.join("pids.max"));
            (s.io_bytes, s.io_ops) = io_stat_v2(&read(&dir.join("io.stat")).unwrap_or_default());
            (dir, u64::MAX)
        }
    };
    // Unlimited: the task's limit, else the host's memory (what Docker reports).
    if s.mem_limit >= unlimited {
        s.mem_limit = u64::MAX;
    }
    if let Some(l) = limit {
        s.mem_limit = s.mem_limit.min(l);
    }
    if s.mem_limit == u64::MAX {
        s.mem_limit = read(&proc_root.join("meminfo"))
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .map_or(0, |kb| kb * 1024);
    }
    let (system, cpus) = system_cpu(&read(&proc_root.join("stat")).unwrap_or_default());
    s.system_ns = system;
    s.online_cpus = cpus;
    // Any process of the container shows the task's namespace's interfaces.
    let pid =
        read(&procs_dir.join("cgroup.procs")).and_then(|p| p.lines().next().map(str::to_string));
    if let Some(pid) = pid {
        s.networks = net_dev(&read(&proc_root.join(&pid).join("net/dev")).unwrap_or_default());
        s.pid = pid.parse().ok();
    }
    Some(s)
}

fn cpu_json(s: Option<&Sample>) -> Value {
    let Some(s) = s else {
        return json!({"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0,
            "usage_in_usermode": 0}, "throttling_data": {"periods": 0,
            "throttled_periods": 0, "throttled_time": 0}});
    };
    let mut usage = json!({
        "total_usage": s.cpu_total_ns,
        "usage_in_kernelmode": s.cpu_system_ns,
        "usage_in_usermode": s.cpu_user_ns,
    });
    if !s.percpu_ns.is_empty() {
        usage["percpu_usage"] = json!(s.percpu_ns);
    }
    json!({
        "cpu_usage": usage,
        "system_cpu_usage": s.system_ns,
        "online_cpus": s.online_cpus,
        "throttling_data": {
            "periods": s.periods,
            "throttled_periods": s.throttled_periods,
            "throttled_time": s.throttled_ns,
        },
    })
}

/// Docker's stats object for `now`, with `prev` (the previous reading) as `precpu_stats`
/// and the base of `network_rate_stats`.
pub fn stats_json(name: &str, id: &str, now: &Sample, prev: Option<&Sample>) -> Value {
    let mut networks = Map::new();
    for (ifname, c) in &now.networks {
        networks.insert(
            ifname.clone(),
            json!({
                "rx_bytes": c[0], "rx_packets": c[1], "rx_errors": c[2], "rx_dropped": c[3],
                "tx_bytes": c[4], "tx_packets": c[5], "tx_errors": c[6], "tx_dropped": c[7],
            }),
        );
    }
    let sum = |s: &Sample, i: usize| s.networks.values().map(|c| c[i]).sum::<u64>();
    let rate = prev
        .map(|p| {
            let secs = (now.read - p.read).num_milliseconds() as f64 / 1000.0;
            let per = |i: usize| {
                if secs > 0.0 {
                    sum(now, i).saturating_sub(sum(p, i)) as f64 / secs
                } else {
                    0.0
                }
            };
            json!({"rx_bytes_per_sec": per(0), "tx_bytes_per_sec": per(4)})
        })
        .unwrap_or_else(|| json!({"rx_bytes_per_sec": 0.0, "tx_bytes_per_sec": 0.0}));
    // Docker's `usage` is the cgroup's raw figure, page cache included (moby
    // daemon/stats_unix.go: v1 memory.usage_in_bytes, v2 memory.current), with the cache
    // in `stats`; the agent serves Docker's object as it is, so here too (the metrics
    // count `mem_in_use`, as the agent does).
    let mut memory = json!({
        "usage": now.mem_usage,
        "stats": now.mem_stat,
        "limit": now.mem_limit,
    });
    if let Some(m) = now.mem_max_usage {
        memory["max_usage"] = json!(m);
    }
    let mut pids = json!({"current": now.pids});
    if let Some(l) = now.pids_limit {
        pids["limit"] = json!(l);
    }
    let ts =
        |t: &chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    json!({
        "read": ts(&now.read),
        "preread": prev.map_or_else(|| "0001-01-01T00:00:00Z".to_string(), |p| ts(&p.read)),
        "pids_stats": pids,
        "blkio_stats": {
            "io_service_bytes_recursive": now.io_bytes, "io_serviced_recursive": now.io_ops,
            "io_queue_recursive": [], "io_service_time_recursive": [],
            "io_wait_time_recursive": [], "io_merged_recursive": [],
            "io_time_recursive": [], "sectors_recursive": [],
        },
        "num_procs": 0,
        // Windows-only in Docker's shape (read/write counts of the container's storage
        // driver): a Linux Docker daemon, so the agent on Linux, reports it empty too.
        // Ref: moby api/types/container/stats.go (StorageStats: "Windows specific").
        "storage_stats": {},
        "cpu_stats": cpu_json(Some(now)),
        "precpu_stats": cpu_json(prev),
        "memory_stats": memory,
        "name": name,
        "id": id,
        "networks": networks,
        "network_rate_stats": rate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_and_net_dev() {
        let (t, n) =
            system_cpu("cpu  10 0 10 80 0 0 0 0 0 0\ncpu0 5 0 5 40\ncpu1 5 0 5 40\nintr 1\n");
        assert_eq!((t, n), (100 * TICK_NS, 2));
        let dev = "Inter-|   Receive |  Transmit\n face |bytes packets …\n    lo: 10 1 0 0 0 0 0 0 10 1 0 0 0 0 0 0\n  eth0: 1500 12 0 1 0 0 0 0 900 9 0 0 0 0 0 0\n";
        let m = net_dev(dev);
        assert_eq!(m.len(), 1);
        assert_eq!(m["eth0"], [1500, 12, 0, 1, 900, 9, 0, 0]);
    }

    #[test]
    fn v1_blkio_files_make_docker_entries() {
        let text = "8:0 Read 4096\n8:0 Write 1048576\n8:0 Sync 1048576\n8:0 Async 4096\n\
                    8:0 Discard 0\n8:0 Total 1052672\nTotal 1052672\n";
        let e = blkio_v1(text);
        assert_eq!(e.len(), 6);
        assert_eq!(
            e[1],
            BlkioEntry {
                major: 8,
                minor: 0,
                op: "Write".into(),
                value: 1_048_576
            }
        );
        // The first file with device lines wins (recursive throttle, here empty: "Total 0").
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("blkio.throttle.io_service_bytes_recursive"),
            "Total 0\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("blkio.throttle.io_service_bytes"), text).unwrap();
        assert_eq!(blkio_v1_dir(dir.path(), "io_service_bytes"), e);
        assert!(blkio_v1_dir(dir.path(), "io_serviced").is_empty());
    }

    #[test]
    fn v2_cgroup_files_make_docker_stats() {
        let root = tempfile::tempdir().unwrap();
        let proc = tempfile::tempdir().unwrap();
        let dir = root.path().join("minifargate/t/t-0");
        std::fs::create_dir_all(&dir).unwrap();
        for (f, v) in [
            (
                "cpu.stat",
                "usage_usec 2000\nuser_usec 1500\nsystem_usec 500\nnr_periods 4\nnr_throttled 1\nthrottled_usec 7\n",
            ),
            ("memory.current", "1048576\n"),
            ("memory.max", "max\n"),
            ("memory.stat", "anon 4096\nfile 0\n"),
            ("pids.current", "3\n"),
            ("pids.max", "max\n"),
            ("cgroup.procs", "42\n"),
            (
                "io.stat",
                "8:0 rbytes=4096 wbytes=8388608 rios=1 wios=8 dbytes=0 dios=0\n253:1 rbytes=0 wbytes=512 rios=0 wios=1 dbytes=0 dios=0\n",
            ),
        ] {
            std::fs::write(dir.join(f), v).unwrap();
        }
        std::fs::create_dir_all(proc.path().join("42/net")).unwrap();
        std::fs::write(
            proc.path().join("42/net/dev"),
            "h\nh\n  eth0: 100 2 0 0 0 0 0 0 50 1 0 0 0 0 0 0\n",
        )
        .unwrap();
        std::fs::write(proc.path().join("stat"), "cpu 1 1 1 1\ncpu0 1 1 1 1\n").unwrap();
        let cg = Cgroups::with_root(root.path(), CgroupVersion::V2);
        // Unlimited container: the task's limit applies.
        let s = sample(&cg, "t", "t-0", Some(512 << 20), proc.path()).unwrap();
        assert_eq!(s.cpu_total_ns, 2_000_000);
        assert_eq!(s.mem_limit, 512 << 20);
        let v = stats_json("app", "t-0", &s, None);
        assert_eq!(v["memory_stats"]["usage"], 1_048_576);
        assert_eq!(v["memory_stats"]["stats"]["anon"], 4096);
        assert_eq!(v["cpu_stats"]["throttling_data"]["throttled_time"], 7000);
        assert_eq!(v["networks"]["eth0"]["rx_bytes"], 100);
        assert_eq!(v["pids_stats"]["current"], 3);
        assert_eq!(
            v["blkio_stats"]["io_service_bytes_recursive"],
            json!([{"major": 8, "minor": 0, "op": "read", "value": 4096},
                   {"major": 8, "minor": 0, "op": "write", "value": 8388608},
                   {"major": 253, "minor": 1, "op": "read", "value": 0},
                   {"major": 253, "minor": 1, "op": "write", "value": 512}])
        );
        assert_eq!(
            v["blkio_stats"]["io_serviced_recursive"][1],
            json!({"major": 8, "minor": 0, "op": "write", "value": 8})
        );
        assert_eq!(v["precpu_stats"]["cpu_usage"]["total_usage"], 0);
        assert!(sample(&cg, "t", "t-9", None, proc.path()).is_none());
        // The two figures alone: the same as the whole sample's (memory in use: the
        // usage less `inactive_file`, none here).
        assert_eq!(
            usage(&cg, "t", "t-0"),
            Some((s.cpu_total_ns, s.mem_in_use(CgroupVersion::V2)))
        );
        assert_eq!(s.mem_in_use(CgroupVersion::V2), 1_048_576);
        assert_eq!(usage(&cg, "t", "t-9"), None);
    }

    #[test]
    fn v1_usage_is_the_cpuacct_and_memory_controllers_figures() {
        let root = tempfile::tempdir().unwrap();
        for (ctrl, f, v) in [
            ("cpuacct", "cpuacct.usage", "123456789\n"),
            ("memory", "memory.usage_in_bytes", "2097152\n"),
        ] {
            let dir = root.path().join(ctrl).join("minifargate/t/t-0");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(f), v).unwrap();
        }
        let cg = Cgroups::with_root(root.path(), CgroupVersion::V1);
        assert_eq!(usage(&cg, "t", "t-0"), Some((123_456_789, 2_097_152)));
        assert_eq!(usage(&cg, "t", "t-1"), None);
        // With a memory.stat: the page cache (`cache`) is not in use.
        let mem = root.path().join("memory/minifargate/t/t-0");
        std::fs::write(
            mem.join("memory.stat"),
            "cache 1572864\nrss 524288\ninactive_file 1048576\ntotal_cache 1572864\n",
        )
        .unwrap();
        assert_eq!(usage(&cg, "t", "t-0"), Some((123_456_789, 524_288)));
    }

    /// The agent's getMemUsage, case by case (agent/stats/utils_unix.go).
    #[test]
    fn memory_in_use_is_the_usage_less_the_page_cache_as_the_agent_counts_it() {
        let stat = |kv: &[(&str, u64)]| -> BTreeMap<String, u64> {
            kv.iter().map(|(k, v)| (k.to_string(), *v)).collect()
        };
        let (v1, v2) = (CgroupVersion::V1, CgroupVersion::V2);
        for (version, usage, st, want) in [
            // v1: less `cache` (inactive_file is not looked at).
            (v1, 100, stat(&[("cache", 60), ("inactive_file", 50)]), 40),
            // v2: less `inactive_file` (active file pages stay counted).
            (v2, 100, stat(&[("file", 70), ("inactive_file", 50)]), 50),
            // v2 without inactive_file: `cache`, then nothing.
            (v2, 100, stat(&[("cache", 30)]), 70),
            (v2, 100, stat(&[("anon", 100)]), 100),
            // A figure not below the usage (read apart from it) takes nothing off.
            (v2, 100, stat(&[("inactive_file", 100)]), 100),
            (v1, 100, stat(&[("cache", 150)]), 100),
            (v1, 0, stat(&[]), 0),
        ] {
            assert_eq!(mem_in_use(version, usage, &st), want, "{version:?} {st:?}");
        }
    }

    #[test]
    fn v2_memory_in_use_leaves_the_inactive_page_cache_out_and_stats_keep_the_raw_usage() {
        let root = tempfile::tempdir().unwrap();
        let proc = tempfile::tempdir().unwrap();
        let dir = root.path().join("minifargate/t/t-0");
        std::fs::create_dir_all(&dir).unwrap();
        // A container that read a 200 MiB file: 210 MiB charged, 190 MiB of it inactive
        // page cache.
        for (f, v) in [
            ("cpu.stat", "usage_usec 1\n".to_string()),
            ("memory.current", format!("{}\n", 210u64 << 20)),
            ("memory.max", format!("{}\n", 512u64 << 20)),
            (
                "memory.stat",
                format!(
                    "anon {}\nfile {}\nactive_file {}\ninactive_file {}\n",
                    8u64 << 20,
                    200u64 << 20,
                    10u64 << 20,
                    190u64 << 20
                ),
            ),
        ] {
            std::fs::write(dir.join(f), v).unwrap();
        }
        let cg = Cgroups::with_root(root.path(), CgroupVersion::V2);
        let s = sample(&cg, "t", "t-0", None, proc.path()).unwrap();
        assert_eq!(s.mem_in_use(CgroupVersion::V2), 20 << 20);
        assert_eq!(usage(&cg, "t", "t-0"), Some((1000, 20 << 20)));
        // Task metadata's /stats is Docker's: the raw usage, the cache in `stats`.
        let v = stats_json("app", "t-0", &s, None);
        assert_eq!(v["memory_stats"]["usage"], 210u64 << 20);
        assert_eq!(v["memory_stats"]["stats"]["inactive_file"], 190u64 << 20);
    }
}
