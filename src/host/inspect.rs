//! How a task is isolated on this host, read for `inspect` and the web console's isolation
//! picture: per container its namespaces (own / shared with the task / the host's),
//! cgroups with limits and usage, overlay rootfs, user, capabilities and seccomp; per task
//! its cgroup and network.
//!
//! Everything is read, never changed: `/proc/<pid>/{ns,cgroup,mountinfo,status,net}`,
//! the cgroup files, and the task's describe-tasks record. The readers take a `/proc`
//! root so the unit tests run them on a fake tree.

use crate::ecs::Ecs;
use crate::ecs::names::task_id;
use crate::ecs::tasks::find_task;
use crate::store::LastStatus;
use crate::task::{TaskPaths, shape};
use anyhow::Context;
use runtime::mountinfo::unescape as unescape_mountinfo;
use runtime::{CgroupMount, CgroupVersion};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The namespaces a process has, in the order `inspect` prints them.
pub const NS_KINDS: [&str; 7] = ["mnt", "uts", "ipc", "pid", "net", "cgroup", "user"];

/// Cgroup files worth showing: limits first, then usage.
const V1_FILES: &[(&str, &[&str])] = &[
    (
        "cpu",
        &["cpu.shares", "cpu.cfs_quota_us", "cpu.cfs_period_us"],
    ),
    ("cpuacct", &["cpuacct.usage"]),
    (
        "memory",
        &[
            "memory.limit_in_bytes",
            "memory.soft_limit_in_bytes",
            "memory.memsw.limit_in_bytes",
            "memory.usage_in_bytes",
            "memory.max_usage_in_bytes",
        ],
    ),
    ("pids", &["pids.max", "pids.current"]),
];
const V2_FILES: &[&str] = &[
    "cpu.max",
    "cpu.weight",
    "memory.max",
    "memory.high",
    "memory.low",
    "memory.swap.max",
    "pids.max",
    "memory.current",
    "memory.peak",
    "pids.current",
    "cpu.stat",
];

/// The report of task `task` (id or ARN) as JSON: what `inspect --output json` prints and
/// the web console's isolation picture shows.
pub fn report(ecs: &Ecs, task: &str, cluster: Option<&str>) -> anyhow::Result<Value> {
    let mut store = ecs.open_store()?;
    let id = task_id(task).to_string();
    ecs.reconcile_tasks(&mut store, &[id.as_str()]);
    let (task, containers) = find_task(&store, task, cluster)?;
    let net = store.task_network(&id)?;
    let record = serde_json::to_value(shape::task(&task, &containers, net.as_ref()))?;
    let paths = TaskPaths::new(&ecs.root, &ecs.run_root, &id);
    let running = task.last_status == LastStatus::Running;
    let rt = if running && paths.runtime_state().is_dir() {
        Some(
            runtime::Runtime::attach(paths.runtime_state())
                .with_context(|| format!("failed to open the runtime state of task {id}"))?,
        )
    } else {
        None
    };
    let proc = Path::new("/proc");
    // Only hierarchies mounted at their root show every cgroup.
    let mounts: Vec<CgroupMount> = runtime::CgroupLayout::read()
        .mounts
        .into_iter()
        .filter(CgroupMount::shows_all)
        .collect();
    let mut views = Vec::new();
    for c in &containers {
        let info = match (&rt, &c.runtime_id) {
            (Some(rt), Some(rid)) if c.last_status == LastStatus::Running => rt.info(rid).ok(),
            _ => None,
        };
        views.push(ContainerView {
            name: c.name.clone(),
            status: c.last_status.to_string(),
            runtime_id: c.runtime_id.clone(),
            pid: info.as_ref().and_then(|i| i.pid),
            cgroup_path: info.as_ref().map(|i| i.cgroup_path.clone()),
            rootfs: info.as_ref().map(|i| i.rootfs.clone()),
            hostname: info.as_ref().and_then(|i| i.hostname.clone()),
        });
    }
    // The task's network as the network step recorded it: its namespace (none in host
    // mode) and the ports really published — describe-tasks shows none for awsvpc (ECS
    // puts them on the ENI), the teaching view shows them all.
    let recorded = net
        .as_ref()
        .and_then(crate::supervisor::isolation::network::Recorded::of);
    let mut record = record;
    if let Some(r) = &recorded {
        for c in record["containers"].as_array_mut().into_iter().flatten() {
            let name = c["name"].as_str().unwrap_or_default().to_string();
            let published: Vec<_> = r
                .bindings
                .iter()
                .filter(|b| b.container == name)
                .map(|b| &b.binding)
                .collect();
            c["networkBindings"] = serde_json::to_value(published)?;
        }
    }
    // awsvpc mappings whose host port another task (or the host) holds: reachable at
    // the task's own address only.
    let unpublished: Vec<Value> = recorded
        .iter()
        .flat_map(|r| &r.net.unpublished)
        .map(|u| {
            json!({
                "containerPort": u.container_port,
                "containerPortEnd": u.container_port_end,
                "protocol": u.protocol.to_string(),
                "reason": u.reason,
            })
        })
        .collect();
    let netns_path = recorded.and_then(|r| r.net.netns_path).unwrap_or_default();
    let mut out = build(proc, &mounts, &record, &views, &netns_path);
    out["network"]["portsNotPublished"] = Value::Array(unpublished);
    // The host ids the task holds (while it runs; `null`: the host's, root is root).
    out["userNamespace"] = match store.userns_range(&id)? {
        Some((start, count)) => json!({"hostIdStart": start, "hostIdCount": count}),
        None => Value::Null,
    };
    Ok(out)
}

/// What the store and the runtime say about one container.
#[derive(Debug, Clone, Default)]
pub struct ContainerView {
    pub name: String,
    pub status: String,
    pub runtime_id: Option<String>,
    /// Host pid of its pid 1, while it runs.
    pub pid: Option<i32>,
    pub cgroup_path: Option<String>,
    pub rootfs: Option<PathBuf>,
    pub hostname: Option<String>,
}

/// The report as JSON (`--format json`); the text view renders the same value.
pub fn build(
    proc: &Path,
    mounts: &[CgroupMount],
    record: &Value,
    containers: &[ContainerView],
    netns_path: &Path,
) -> Value {
    // The host's namespaces are init's; where /proc/1/ns cannot be read (this VM's
    // pid 1 denies it), this process's, which runs in the host's namespaces.
    let mut host = ns_inodes(proc, 1);
    if host.is_empty() {
        host = ns_inodes(proc, std::process::id() as i32);
    }
    let inodes: Vec<BTreeMap<String, u64>> = containers
        .iter()
        .map(|c| c.pid.map(|p| ns_inodes(proc, p)).unwrap_or_default())
        .collect();
    let netns_inode = std::fs::metadata(netns_path).ok().map(|m| m.ino());
    let mut out = Vec::new();
    for (i, c) in containers.iter().enumerate() {
        let mut v = json!({
            "name": c.name,
            "lastStatus": c.status,
            "runtimeId": c.runtime_id,
            "hostPid": c.pid,
            "cgroupPath": c.cgroup_path,
            "hostname": c.hostname,
        });
        let Some(pid) = c.pid else {
            out.push(v);
            continue;
        };
        let mut ns = Vec::new();
        for kind in NS_KINDS {
            let Some(&inode) = inodes[i].get(kind) else {
                continue;
            };
            let shared: Vec<&str> = containers
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i && inodes[*j].get(kind) == Some(&inode))
                .map(|(_, o)| o.name.as_str())
                .collect();
            let scope = if host.get(kind) == Some(&inode) {
                "host"
            } else if !shared.is_empty() || (kind == "net" && netns_inode == Some(inode)) {
                "task"
            } else {
                "own"
            };
            ns.push(json!({"type": kind, "inode": inode, "scope": scope, "sharedWith": shared}));
        }
        v["namespaces"] = json!(ns);
        let cg_text =
            std::fs::read_to_string(proc.join(format!("{pid}/cgroup"))).unwrap_or_default();
        v["cgroups"] = json!(
            proc_cgroups(&cg_text)
                .into_iter()
                .filter_map(|(ctrl, path)| read_cgroup(mounts, &ctrl, &path))
                .collect::<Vec<_>>()
        );
        let mountinfo =
            std::fs::read_to_string(proc.join(format!("{pid}/mountinfo"))).unwrap_or_default();
        v["rootfs"] = match root_mount(&mountinfo) {
            Some(m) => m,
            None => json!({"path": c.rootfs}),
        };
        if let Some(r) = &c.rootfs {
            v["rootfs"]["hostPath"] = json!(r);
        }
        v["mounts"] = json!(extra_mounts(&mountinfo));
        let st = std::fs::read_to_string(proc.join(format!("{pid}/status"))).unwrap_or_default();
        let root = proc.join(format!("{pid}/root"));
        let map = |f: &str| {
            id_map(&std::fs::read_to_string(proc.join(format!("{pid}/{f}"))).unwrap_or_default())
        };
        let (uid_map, gid_map) = (map("uid_map"), map("gid_map"));
        v["process"] = process_security(&st, &root, &uid_map, &gid_map);
        v["userNamespace"] = json!({
            "uidMap": uid_map,
            "gidMap": gid_map,
            // The initial namespace maps every id to itself.
            "ownRange": uid_map != [[0, 0, u32::MAX]],
        });
        out.push(v);
    }
    // The task cgroup is the parent of the containers'.
    let task_cgroups = containers
        .iter()
        .zip(&inodes)
        .find_map(|(c, _)| c.pid)
        .map(|pid| {
            let text =
                std::fs::read_to_string(proc.join(format!("{pid}/cgroup"))).unwrap_or_default();
            proc_cgroups(&text)
                .into_iter()
                .filter_map(|(ctrl, path)| {
                    let parent = Path::new(&path).parent()?.to_string_lossy().into_owned();
                    read_cgroup(mounts, &ctrl, &parent)
                })
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let first_pid = containers.iter().find_map(|c| c.pid);
    let bindings: Vec<Value> = record["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| {
            let name = c["name"].clone();
            c["networkBindings"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |mut b| {
                    b["containerName"] = name.clone();
                    b
                })
        })
        .collect();
    let network = json!({
        "netnsPath": netns_inode.map(|_| netns_path.to_path_buf()),
        "netnsInode": netns_inode,
        "attachments": record["attachments"],
        "networkBindings": bindings,
        "interfaces": first_pid.map(|p| interfaces(proc, p)).unwrap_or_default(),
    });
    json!({
        "taskArn": record["taskArn"],
        "taskDefinitionArn": record["taskDefinitionArn"],
        "lastStatus": record["lastStatus"],
        "launchType": record["launchType"],
        "cpu": record["cpu"],
        "memory": record["memory"],
        "hostNamespaces": host,
        "taskCgroups": task_cgroups,
        "network": network,
        "containers": out,
    })
}

/// `{"mnt": 4026531841, …}` from `/proc/<pid>/ns/*` (links read as `mnt:[4026531841]`).
pub fn ns_inodes(proc: &Path, pid: i32) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for kind in NS_KINDS {
        let link = proc.join(format!("{pid}/ns/{kind}"));
        if let Ok(target) = std::fs::read_link(&link) {
            let t = target.to_string_lossy();
            if let Some(n) = t
                .split_once(":[")
                .and_then(|(_, rest)| rest.strip_suffix(']'))
                .and_then(|n| n.parse().ok())
            {
                m.insert(kind.to_string(), n);
            }
        }
    }
    m
}

/// `(controllers, path)` pairs of `/proc/<pid>/cgroup` (`4:memory:/a/b`, `0::/a/b`).
pub fn proc_cgroups(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let (_, ctrl, path) = (it.next()?, it.next()?, it.next()?);
            Some((ctrl.to_string(), path.to_string()))
        })
        .collect()
}

/// The limits and usage files of cgroup `path` in the hierarchy of `controllers`
/// (`""` is v2); `None` for hierarchies that hold nothing `inspect` shows.
pub fn read_cgroup(mounts: &[CgroupMount], controllers: &str, path: &str) -> Option<Value> {
    let v2 = |m: &CgroupMount| m.version == CgroupVersion::V2;
    let (mount, files): (&CgroupMount, Vec<&str>) = if controllers.is_empty() {
        (mounts.iter().find(|m| v2(m))?, V2_FILES.to_vec())
    } else {
        let ctrls: Vec<&str> = controllers.split(',').collect();
        let files: Vec<&str> = V1_FILES
            .iter()
            .filter(|(c, _)| ctrls.contains(c))
            .flat_map(|(_, f)| f.iter().copied())
            .collect();
        if files.is_empty() {
            return None;
        }
        let m = mounts
            .iter()
            .find(|m| !v2(m) && ctrls.iter().all(|c| m.controllers.iter().any(|x| x == c)))?;
        (m, files)
    };
    let dir = mount.mount_point.join(path.trim_start_matches('/'));
    let mut values = serde_json::Map::new();
    // In the hierarchy's root: minifargate placed nothing there (v2 on a v1 hybrid host),
    // and the root's counters are the whole host's.
    let in_root = path == "/";
    let files = if in_root { vec![] } else { files };
    for f in files {
        let Ok(raw) = std::fs::read_to_string(dir.join(f)) else {
            continue;
        };
        let raw = if f == "cpu.stat" {
            // Only the total: `usage_usec N`.
            match raw.lines().find_map(|l| l.strip_prefix("usage_usec ")) {
                Some(u) => {
                    values.insert("cpu.stat usage_usec".into(), json!(u.trim()));
                    continue;
                }
                None => continue,
            }
        } else {
            raw.trim().to_string()
        };
        values.insert(f.to_string(), json!(raw));
    }
    Some(json!({
        "inRoot": in_root,
        "version": if v2(mount) { "v2" } else { "v1" },
        "controllers": if v2(mount) { "unified".to_string() } else { controllers.to_string() },
        "path": path,
        "dir": dir,
        "files": values,
    }))
}

/// The container's root mount from its mountinfo: for overlay, lowerdirs (top first),
/// upperdir and workdir as the kernel reports them.
pub fn root_mount(mountinfo: &str) -> Option<Value> {
    let m = runtime::mountinfo::parse(mountinfo)
        .into_iter()
        .rev()
        .find(|m| m.mount_point == Path::new("/"))?;
    let (fstype, opts) = (m.fs_type.as_str(), m.super_options.as_str());
    let mut v = json!({"fsType": fstype, "source": m.source});
    if fstype == "overlay" {
        let mut lower = Vec::new();
        for opt in split_options(opts) {
            if let Some(l) = opt.strip_prefix("lowerdir=") {
                lower.extend(split_lowerdirs(l));
            } else if let Some(l) = opt.strip_prefix("lowerdir+=") {
                lower.push(unescape_mountinfo(l));
            } else if let Some(u) = opt.strip_prefix("upperdir=") {
                v["upperdir"] = json!(unescape_mountinfo(u));
            } else if let Some(w) = opt.strip_prefix("workdir=") {
                v["workdir"] = json!(unescape_mountinfo(w));
            }
        }
        v["lowerdirs"] = json!(lower);
    }
    Some(v)
}

/// The container's mounts besides its root and the standard `/proc`, `/dev` and `/sys`
/// trees: volumes, bind mounts, tmpfs, and the files the runtime binds in (`/etc/hosts`…).
pub fn extra_mounts(mountinfo: &str) -> Vec<Value> {
    let standard = |p: &str| {
        p == "/"
            || ["/proc", "/dev", "/sys"]
                .iter()
                .any(|t| p == *t || p.starts_with(&format!("{t}/")))
    };
    runtime::mountinfo::parse(mountinfo)
        .into_iter()
        .filter_map(|m| {
            let target = m.mount_point.to_string_lossy().into_owned();
            if standard(&target) {
                return None;
            }
            Some(json!({
                "target": target,
                "fsType": m.fs_type,
                "source": m.source,
                "root": m.root,
                "readOnly": m.read_only(),
            }))
        })
        .collect()
}

/// Super options split at commas not escaped with a backslash.
fn split_options(opts: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut esc = false;
    for ch in opts.chars() {
        match ch {
            ',' if !esc => out.push(String::new()),
            '\\' if !esc => {
                esc = true;
                out.last_mut().expect("non-empty").push(ch);
                continue;
            }
            _ => out.last_mut().expect("non-empty").push(ch),
        }
        esc = false;
    }
    out
}

/// Overlay's `lowerdir=a:b` (a `\:` is a colon inside a path).
fn split_lowerdirs(s: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&':') => {
                out.last_mut().expect("non-empty").push(':');
                chars.next();
            }
            ':' => out.push(String::new()),
            _ => out.last_mut().expect("non-empty").push(c),
        }
    }
    out.into_iter().map(|p| unescape_mountinfo(&p)).collect()
}

/// User, groups, capabilities, seccomp and no_new_privs from `/proc/<pid>/status`;
/// names from the container's own `/etc/passwd` and `/etc/group` under `root`.
/// The lines of a `uid_map`/`gid_map` file as [inside, host, count] (user_namespaces(7)).
pub fn id_map(text: &str) -> Vec<[u32; 3]> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<u32> = l
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            (f.len() == 3).then(|| [f[0], f[1], f[2]])
        })
        .collect()
}

/// The id inside a namespace with map `map` of host id `host`, if mapped.
fn inside_id(map: &[[u32; 3]], host: u32) -> Option<u32> {
    map.iter()
        .find(|[_, h, n]| host >= *h && u64::from(host) < u64::from(*h) + u64::from(*n))
        .map(|[i, h, _]| i + (host - h))
}

/// `status` is the process's /proc status as this (host) process reads it; `uid_map` and
/// `gid_map` its namespace's maps, to show its ids as the container sees them (an empty
/// map: the host's ids, as given).
pub fn process_security(
    status: &str,
    root: &Path,
    uid_map: &[[u32; 3]],
    gid_map: &[[u32; 3]],
) -> Value {
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix(':')))
            .map(|r| r.trim().to_string())
    };
    let first = |k: &str| -> Option<u32> { field(k)?.split_whitespace().next()?.parse().ok() };
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap_or_default();
    let group = std::fs::read_to_string(root.join("etc/group")).unwrap_or_default();
    let name_of = |db: &str, id: u32| {
        db.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.get(2)?.parse::<u32>().ok()? == id).then(|| f[0].to_string())
        })
    };
    let inside = |map: &[[u32; 3]], id: Option<u32>| match (map.is_empty(), id) {
        (true, id) => id,
        (false, Some(id)) => inside_id(map, id),
        (false, None) => None,
    };
    let (host_uid, host_gid) = (first("Uid"), first("Gid"));
    let uid = inside(uid_map, host_uid);
    let gid = inside(gid_map, host_gid);
    let groups: Vec<u32> = field("Groups")
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|g| inside(gid_map, g.parse().ok()))
        .collect();
    let caps = |k: &str| -> Vec<String> {
        let mask = field(k)
            .and_then(|h| u64::from_str_radix(&h, 16).ok())
            .unwrap_or(0);
        cap_names(mask)
    };
    let seccomp = match field("Seccomp").as_deref() {
        Some("0") => "disabled",
        Some("1") => "strict",
        Some("2") => "filter",
        _ => "unknown",
    };
    json!({
        "uid": uid,
        "hostUid": host_uid,
        "hostGid": host_gid,
        "user": uid.and_then(|u| name_of(&passwd, u)),
        "gid": gid,
        "group": gid.and_then(|g| name_of(&group, g)),
        "groups": groups,
        "capabilities": {
            "effective": caps("CapEff"),
            "bounding": caps("CapBnd"),
        },
        "seccomp": seccomp,
        "seccompFilters": field("Seccomp_filters").and_then(|n| n.parse::<u32>().ok()),
        "noNewPrivs": field("NoNewPrivs").as_deref() == Some("1"),
    })
}

/// `CAP_…` names of the bits set in `mask` (unknown bits as `CAP_<n>`).
pub fn cap_names(mask: u64) -> Vec<String> {
    let mut known: Vec<caps::Capability> = caps::all().into_iter().collect();
    known.sort_by_key(|c| c.index());
    (0..64u8)
        .filter(|b| mask & (1 << b) != 0)
        .map(|b| {
            known
                .iter()
                .find(|c| c.index() == b)
                .map(|c| c.to_string())
                .unwrap_or_else(|| format!("CAP_{b}"))
        })
        .collect()
}

/// Interfaces of `pid`'s network namespace with their IPv4/IPv6 addresses and counters,
/// from `/proc/<pid>/net/{dev,route,fib_trie,if_inet6}` (the files show the namespace
/// of the process they belong to).
pub fn interfaces(proc: &Path, pid: i32) -> Vec<Value> {
    let read =
        |f: &str| std::fs::read_to_string(proc.join(format!("{pid}/net/{f}"))).unwrap_or_default();
    let routes = ipv4_routes(&read("route"));
    let mut addrs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for a in local_ipv4(&read("fib_trie")) {
        let o = a.octets();
        let (iface, prefix) = if o[0] == 127 {
            ("lo".to_string(), 8)
        } else {
            match routes
                .iter()
                .filter(|r| r.mask != 0 && u32::from(a) & r.mask == r.dest)
                .max_by_key(|r| r.mask.count_ones())
            {
                Some(r) => (r.iface.clone(), r.mask.count_ones()),
                None => ("?".to_string(), 32),
            }
        };
        addrs
            .entry(iface)
            .or_default()
            .push(format!("{a}/{prefix}"));
    }
    for l in read("if_inet6").lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 6 || f[0].len() != 32 {
            continue;
        }
        let Ok(bits) = u128::from_str_radix(f[0], 16) else {
            continue;
        };
        let prefix = u32::from_str_radix(f[2], 16).unwrap_or(128);
        addrs
            .entry(f[5].to_string())
            .or_default()
            .push(format!("{}/{prefix}", std::net::Ipv6Addr::from(bits)));
    }
    let mut out = Vec::new();
    for l in read("dev").lines().skip(2) {
        let Some((name, rest)) = l.split_once(':') else {
            continue;
        };
        let name = name.trim().to_string();
        let n: Vec<u64> = rest
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        let default_route = routes
            .iter()
            .find(|r| r.iface == name && r.mask == 0 && r.dest == 0)
            .map(|r| std::net::Ipv4Addr::from(r.gateway).to_string());
        out.push(json!({
            "name": name,
            "addresses": addrs.remove(&name).unwrap_or_default(),
            "defaultGateway": default_route,
            "rxBytes": n.first(),
            "txBytes": n.get(8),
        }));
    }
    out
}

#[derive(Debug, PartialEq, Eq)]
struct Route {
    iface: String,
    dest: u32,
    gateway: u32,
    mask: u32,
}

/// `/proc/net/route`: hex fields in the kernel's (little-endian) byte order.
fn ipv4_routes(text: &str) -> Vec<Route> {
    let hex = |s: &str| u32::from_str_radix(s, 16).ok().map(u32::from_be);
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some(Route {
                iface: f.first()?.to_string(),
                dest: hex(f.get(1)?)?,
                gateway: hex(f.get(2)?)?,
                mask: hex(f.get(7)?)?,
            })
        })
        .collect()
}

/// The `/32 host LOCAL` entries of `/proc/net/fib_trie`: the namespace's own IPv4s.
fn local_ipv4(text: &str) -> Vec<std::net::Ipv4Addr> {
    let mut out = Vec::new();
    let mut last: Option<std::net::Ipv4Addr> = None;
    for l in text.lines() {
        let t = l.trim_start();
        if let Some(a) = t.strip_prefix("|-- ") {
            last = a.trim().parse().ok();
        } else if t.starts_with("/32 host LOCAL")
            && let Some(a) = last
            && !out.contains(&a)
        {
            out.push(a);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_root_mount_is_parsed() {
        let mi = "500 400 0:90 / / rw,relatime - overlay overlay rw,lowerdir=/l/a\\:b:/l/c,upperdir=/u\\,x,workdir=/w\n\
                  501 500 0:91 / /proc rw - proc proc rw\n";
        let v = root_mount(mi).unwrap();
        assert_eq!(v["fsType"], "overlay");
        assert_eq!(v["lowerdirs"], json!(["/l/a:b", "/l/c"]));
        assert_eq!(v["upperdir"], "/u\\,x");
        assert_eq!(v["workdir"], "/w");
        let mi = "1 0 0:1 / / rw - overlay overlay rw,lowerdir+=/l/1,lowerdir+=/l/2,upperdir=/u,workdir=/w\n";
        assert_eq!(
            root_mount(mi).unwrap()["lowerdirs"],
            json!(["/l/1", "/l/2"])
        );
    }

    #[test]
    fn extra_mounts_skip_the_standard_trees() {
        let mi = "1 0 0:1 / / rw - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w\n\
                  2 1 0:2 / /proc rw - proc proc rw\n\
                  3 1 0:3 / /dev rw,nosuid - tmpfs tmpfs rw\n\
                  4 3 0:4 / /dev/shm rw - tmpfs shm rw\n\
                  5 1 8:1 /data/www /www ro,relatime - ext4 /dev/vda rw\n\
                  6 1 8:1 /run/t/hosts /etc/hosts rw - ext4 /dev/vda rw\n";
        let m = extra_mounts(mi);
        assert_eq!(m.len(), 2, "{m:#?}");
        assert_eq!(m[0]["target"], "/www");
        assert_eq!(m[0]["root"], "/data/www");
        assert_eq!(m[0]["readOnly"], true);
        assert_eq!(m[1]["target"], "/etc/hosts");
        assert_eq!(m[1]["readOnly"], false);
    }

    #[test]
    fn status_gives_user_caps_and_seccomp() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("etc")).unwrap();
        std::fs::write(
            root.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n",
        )
        .unwrap();
        std::fs::write(
            root.path().join("etc/group"),
            "root:x:0:\nnogroup:x:65534:\n",
        )
        .unwrap();
        let status = "Name:\tsh\nUid:\t65534\t65534\t65534\t65534\nGid:\t65534\t65534\t65534\t65534\n\
                      Groups:\t10 65534 \nCapEff:\t00000000a80425fb\nCapBnd:\t00000000a80425fb\n\
                      NoNewPrivs:\t1\nSeccomp:\t2\nSeccomp_filters:\t1\n";
        let v = process_security(status, root.path(), &[], &[]);
        assert_eq!(v["uid"], 65534);
        assert_eq!(v["user"], "nobody");
        assert_eq!(v["group"], "nogroup");
        assert_eq!(v["groups"], json!([10, 65534]));
        assert_eq!(v["seccomp"], "filter");
        assert_eq!(v["noNewPrivs"], true);
        // Docker's default set: 14 capabilities.
        let eff = v["capabilities"]["effective"].as_array().unwrap();
        assert_eq!(eff.len(), 14, "{eff:?}");
        assert_eq!(eff[0], "CAP_CHOWN");
        assert!(eff.contains(&json!("CAP_NET_BIND_SERVICE")));
        assert!(!eff.contains(&json!("CAP_SYS_ADMIN")));
        // In a task's user namespace the host sees host ids; the report shows both.
        let status = "Uid:\t1065534\t1065534\t1065534\t1065534\nGid:\t1000000\t1000000\t1000000\t1000000\n\
                      Groups:\t1000010 \n";
        let map = id_map("         0    1000000      65536\n");
        assert_eq!(map, [[0, 1_000_000, 65536]]);
        let v = process_security(status, root.path(), &map, &map);
        assert_eq!(
            (v["uid"].clone(), v["hostUid"].clone()),
            (json!(65534), json!(1_065_534))
        );
        assert_eq!(v["user"], "nobody");
        assert_eq!(
            (v["gid"].clone(), v["group"].clone()),
            (json!(0), json!("root"))
        );
        assert_eq!(v["groups"], json!([10]));
    }

    #[test]
    fn interfaces_from_proc_net() {
        let d = tempfile::tempdir().unwrap();
        let net = d.path().join("7/net");
        std::fs::create_dir_all(&net).unwrap();
        std::fs::write(
            net.join("dev"),
            "Inter-|   Receive |  Transmit\n face |bytes packets|bytes\n    lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0\n  eth0:    2000      20    0    0    0     0          0         0     3000      30    0    0    0     0       0          0\n",
        )
        .unwrap();
        std::fs::write(
            net.join("route"),
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
             eth0\t00000000\t0100A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
             eth0\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n",
        )
        .unwrap();
        std::fs::write(
            net.join("fib_trie"),
            "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 127.0.0.1\n        /32 host LOCAL\n     |-- 192.168.0.5\n        /32 host LOCAL\n     |-- 192.168.0.255\n        /32 link BROADCAST\nLocal:\n     |-- 127.0.0.1\n        /32 host LOCAL\n",
        )
        .unwrap();
        std::fs::write(
            net.join("if_inet6"),
            "00000000000000000000000000000001 01 80 10 80       lo\n",
        )
        .unwrap();
        let v = interfaces(d.path(), 7);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0]["name"], "lo");
        assert_eq!(v[0]["addresses"], json!(["127.0.0.1/8", "::1/128"]));
        assert_eq!(v[1]["name"], "eth0");
        assert_eq!(v[1]["addresses"], json!(["192.168.0.5/24"]));
        assert_eq!(v[1]["defaultGateway"], "192.168.0.1");
        assert_eq!(v[1]["rxBytes"], 2000);
        assert_eq!(v[1]["txBytes"], 3000);
    }

    #[test]
    fn namespaces_are_read_from_links() {
        let d = tempfile::tempdir().unwrap();
        let ns = d.path().join("9/ns");
        std::fs::create_dir_all(&ns).unwrap();
        std::os::unix::fs::symlink("net:[4026532001]", ns.join("net")).unwrap();
        std::os::unix::fs::symlink("mnt:[4026532002]", ns.join("mnt")).unwrap();
        let m = ns_inodes(d.path(), 9);
        assert_eq!(m.get("net"), Some(&4026532001));
        assert_eq!(m.get("mnt"), Some(&4026532002));
        assert_eq!(m.len(), 2);
    }
}
