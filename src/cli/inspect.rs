//! `inspect`: how a task is isolated on this host, as JSON or rendered as text. The
//! report is read by `crate::host::inspect` (the web console shows the same one).

use super::GlobalOpts;
use crate::host::inspect::*;
use clap::{Args, ValueEnum};
use serde_json::Value;
use std::fmt::Write as _;
use std::process::ExitCode;

/// Show how a task is isolated: namespaces, cgroups, rootfs, user, capabilities,
/// seccomp and network of each container (the teaching view of Fargate's isolation).
///
/// Example: minifargate inspect 0123456789abcdef0123456789abcdef --format json
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Task id or ARN.
    pub task: String,
    /// Only a task of this cluster.
    #[arg(long)]
    pub cluster: Option<String>,
    /// `text` (for people) or `json` (`--format` is the old name).
    #[arg(long = "output", alias = "format", value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

pub fn inspect(g: &GlobalOpts, a: InspectArgs) -> anyhow::Result<ExitCode> {
    let report = report(&g.ecs(), &a.task, a.cluster.as_deref())?;
    match a.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Text => print!("{}", render(&report)),
    }
    Ok(ExitCode::SUCCESS)
}

fn mib(bytes: &str) -> String {
    match bytes.parse::<u64>() {
        // v1 "unlimited" is PAGE_COUNTER_MAX pages: anything past 2^62.
        Ok(b) if b >= 1 << 62 => "unlimited".into(),
        Ok(b) if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1 << 20) as f64),
        Ok(b) => format!("{:.1} KiB", b as f64 / 1024.0),
        Err(_) => bytes.to_string(),
    }
}

/// One cgroup file's value the way a person reads it.
fn pretty(file: &str, raw: &str) -> String {
    match file {
        "cpu.cfs_quota_us" if raw == "-1" => "unlimited".into(),
        "cpuacct.usage" => raw
            .parse::<u64>()
            .map(|ns| format!("{:.3} s", ns as f64 / 1e9))
            .unwrap_or_else(|_| raw.into()),
        "cpu.stat usage_usec" => raw
            .parse::<u64>()
            .map(|us| format!("{:.3} s", us as f64 / 1e6))
            .unwrap_or_else(|_| raw.into()),
        f if f.starts_with("memory.") && raw != "max" => mib(raw),
        _ => raw.into(),
    }
}

fn cgroup_lines(out: &mut String, indent: &str, cgroups: &Value) {
    let mut sorted: Vec<&Value> = cgroups.as_array().into_iter().flatten().collect();
    // cpu, cpuacct, memory, pids, then v2 (the kernel lists them in hierarchy id order).
    sorted.sort_by_key(|c| {
        (
            c["version"] == "v2",
            c["controllers"].as_str().map(str::to_string),
        )
    });
    for cg in sorted {
        let files = cg["files"].as_object().cloned().unwrap_or_default();
        let _ = writeln!(
            out,
            "{indent}{} {:<8} {}",
            cg["version"].as_str().unwrap_or(""),
            cg["controllers"].as_str().unwrap_or(""),
            cg["dir"].as_str().unwrap_or("")
        );
        if cg["inRoot"] == true {
            let _ = writeln!(
                out,
                "{indent}    (the hierarchy's root: minifargate sets no limits here)"
            );
        } else if files.is_empty() {
            let _ = writeln!(
                out,
                "{indent}    (no cpu/memory/pids files in this hierarchy)"
            );
        }
        for (f, v) in files {
            let raw = v.as_str().unwrap_or_default();
            let _ = writeln!(out, "{indent}    {f:<28} {}", pretty(&f, raw));
        }
    }
}

fn s(v: &Value) -> String {
    match v {
        Value::String(x) => x.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// The text view.
pub fn render(r: &Value) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "Task {}", s(&r["taskArn"]));
    let _ = writeln!(
        o,
        "  definition {}  status {}  launch type {}  cpu {}  memory {}",
        s(&r["taskDefinitionArn"]),
        s(&r["lastStatus"]),
        s(&r["launchType"]),
        s(&r["cpu"]),
        s(&r["memory"])
    );
    let _ = writeln!(
        o,
        "  Fargate gives each task its own Firecracker microVM (own kernel); here a task is\n  \
         namespaces + cgroups on the host's kernel (docs/how-isolation-works.md)."
    );
    let _ = writeln!(o, "\nTask cgroup (limits for all containers together)");
    if r["taskCgroups"].as_array().is_none_or(|a| a.is_empty()) {
        let _ = writeln!(o, "  (no running container to read it from)");
    }
    cgroup_lines(&mut o, "  ", &r["taskCgroups"]);

    network_lines(&mut o, &r["network"]);
    for c in r["containers"].as_array().into_iter().flatten() {
        container_lines(&mut o, c);
    }
    o
}

/// The task's network namespace: its attachments, interfaces and published ports.
fn network_lines(o: &mut String, n: &Value) {
    let _ = writeln!(
        o,
        "\nNetwork (one namespace per task, shared by its containers)"
    );
    let _ = writeln!(
        o,
        "  netns {}  inode {}",
        s(&n["netnsPath"]),
        s(&n["netnsInode"])
    );
    for a in n["attachments"].as_array().into_iter().flatten() {
        let _ = writeln!(o, "  attachment {} {}", s(&a["type"]), s(&a["status"]));
        for d in a["details"].as_array().into_iter().flatten() {
            let _ = writeln!(o, "    {:<24} {}", s(&d["name"]), s(&d["value"]));
        }
    }
    if n["attachments"].as_array().is_none_or(|a| a.is_empty()) {
        let _ = writeln!(o, "  attachment: none in the task record");
    }
    for i in n["interfaces"].as_array().into_iter().flatten() {
        let addrs: Vec<String> = i["addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .map(s)
            .collect();
        let _ = write!(
            o,
            "  interface {:<8} {}  rx {} B tx {} B",
            s(&i["name"]),
            if addrs.is_empty() {
                "(no address)".to_string()
            } else {
                addrs.join(" ")
            },
            s(&i["rxBytes"]),
            s(&i["txBytes"])
        );
        if !i["defaultGateway"].is_null() {
            let _ = write!(o, "  default via {}", s(&i["defaultGateway"]));
        }
        o.push('\n');
    }
    let bindings = n["networkBindings"].as_array().cloned().unwrap_or_default();
    if bindings.is_empty() {
        let _ = writeln!(o, "  published ports: none");
    }
    for b in bindings {
        let _ = writeln!(
            o,
            "  published {}:{} -> {}:{}/{}",
            s(&b["bindIP"]),
            s(&b["hostPort"]),
            s(&b["containerName"]),
            s(&b["containerPort"]),
            s(&b["protocol"])
        );
    }

    for u in n["portsNotPublished"].as_array().into_iter().flatten() {
        let _ = writeln!(
            o,
            "  not published {}/{}: {} (reachable at the task's own address)",
            s(&u["containerPort"]),
            s(&u["protocol"]),
            s(&u["reason"])
        );
    }
}

/// One container: its namespaces, cgroups, root filesystem and mounts, and its process's
/// identity.
fn container_lines(o: &mut String, c: &Value) {
    let _ = writeln!(
        o,
        "\nContainer {} ({}, runtime id {}, host pid {})",
        s(&c["name"]),
        s(&c["lastStatus"]),
        s(&c["runtimeId"]),
        s(&c["hostPid"])
    );
    if c["hostPid"].is_null() {
        let _ = writeln!(o, "  not running: nothing to read in /proc");
        return;
    }
    namespace_lines(o, c);
    let _ = writeln!(o, "  cgroups");
    cgroup_lines(o, "    ", &c["cgroups"]);
    filesystem_lines(o, c);
    process_lines(o, c);
}

/// A container's namespaces: its own, the task's (and with whom) or the host's.
fn namespace_lines(o: &mut String, c: &Value) {
    let _ = writeln!(o, "  namespaces");
    for ns in c["namespaces"].as_array().into_iter().flatten() {
        let scope = match ns["scope"].as_str() {
            Some("host") => "HOST's (not isolated)".to_string(),
            Some("task") => {
                let with: Vec<String> = ns["sharedWith"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(s)
                    .collect();
                if with.is_empty() {
                    "task's".to_string()
                } else {
                    format!("task's, shared with {}", with.join(", "))
                }
            }
            _ => "own".to_string(),
        };
        let extra = if ns["type"] == "uts" && !c["hostname"].is_null() {
            format!(" (hostname {})", s(&c["hostname"]))
        } else {
            String::new()
        };
        let _ = writeln!(
            o,
            "    {:<7} {:<12} {scope}{extra}",
            s(&ns["type"]),
            s(&ns["inode"])
        );
    }
}

/// A container's root filesystem (the overlay's layers) and its other mounts.
fn filesystem_lines(o: &mut String, c: &Value) {
    let rf = &c["rootfs"];
    let _ = writeln!(o, "  rootfs {} on {}", s(&rf["fsType"]), s(&rf["hostPath"]));
    if let Some(lower) = rf["lowerdirs"].as_array() {
        let _ = writeln!(
            o,
            "    lowerdirs ({}, read-only image layers, top first)",
            lower.len()
        );
        for l in lower {
            let _ = writeln!(o, "      {}", s(l));
        }
        let _ = writeln!(o, "    upperdir  {}", s(&rf["upperdir"]));
        let _ = writeln!(o, "    workdir   {}", s(&rf["workdir"]));
    }
    let mounts = c["mounts"].as_array().cloned().unwrap_or_default();
    if !mounts.is_empty() {
        let _ = writeln!(o, "  other mounts");
    }
    for m in mounts {
        let _ = writeln!(
            o,
            "    {:<20} {} {} {}{}",
            s(&m["target"]),
            s(&m["fsType"]),
            s(&m["source"]),
            s(&m["root"]),
            if m["readOnly"] == true { " (ro)" } else { "" }
        );
    }
}

/// A container's process: its user and groups, its user namespace, capabilities and
/// seccomp.
fn process_lines(o: &mut String, c: &Value) {
    let p = &c["process"];
    let u = &c["userNamespace"];
    let host_ids = if u["ownRange"] == true {
        format!(" (host uid {} gid {})", s(&p["hostUid"]), s(&p["hostGid"]))
    } else {
        String::new()
    };
    let _ = writeln!(
        o,
        "  user uid={}({}) gid={}({}){host_ids} supplementary groups: {}",
        s(&p["uid"]),
        s(&p["user"]),
        s(&p["gid"]),
        s(&p["group"]),
        p["groups"]
            .as_array()
            .filter(|g| !g.is_empty())
            .map(|g| g.iter().map(s).collect::<Vec<_>>().join(","))
            .unwrap_or_else(|| "none".into())
    );
    let map = |m: &Value| {
        m.as_array()
            .into_iter()
            .flatten()
            .map(|l| format!("{} -> {} ({} ids)", s(&l[0]), s(&l[1]), s(&l[2])))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if u["ownRange"] == true {
        let _ = writeln!(
            o,
            "  user namespace: the task's own: uids {}; gids {}",
            map(&u["uidMap"]),
            map(&u["gidMap"])
        );
    } else if u.is_object() {
        let _ = writeln!(
            o,
            "  user namespace: the host's (container root is host root)"
        );
    }
    let eff: Vec<String> = p["capabilities"]["effective"]
        .as_array()
        .into_iter()
        .flatten()
        .map(s)
        .collect();
    let _ = writeln!(
        o,
        "  capabilities ({} effective) {}",
        eff.len(),
        eff.join(" ")
    );
    let _ = writeln!(
        o,
        "  seccomp {} (filters: {})  no_new_privs {}",
        s(&p["seccomp"]),
        s(&p["seccompFilters"]),
        s(&p["noNewPrivs"])
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtime::{CgroupMount, CgroupVersion};
    use serde_json::json;

    #[test]
    fn cgroup_files_are_read_per_hierarchy() {
        let d = tempfile::tempdir().unwrap();
        let mem = d.path().join("memory/minifargate/t/c");
        std::fs::create_dir_all(&mem).unwrap();
        std::fs::write(mem.join("memory.limit_in_bytes"), "67108864\n").unwrap();
        std::fs::write(mem.join("memory.usage_in_bytes"), "4096\n").unwrap();
        let v2 = d.path().join("unified/minifargate/t/c");
        std::fs::create_dir_all(&v2).unwrap();
        std::fs::write(v2.join("memory.max"), "max\n").unwrap();
        std::fs::write(v2.join("cpu.stat"), "usage_usec 1500000\nuser_usec 1\n").unwrap();
        let mounts = vec![
            CgroupMount {
                mount_point: d.path().join("memory"),
                root: "/".into(),
                version: CgroupVersion::V1,
                controllers: vec!["memory".into()],
            },
            CgroupMount {
                mount_point: d.path().join("unified"),
                root: "/".into(),
                version: CgroupVersion::V2,
                controllers: vec![],
            },
        ];
        let text = "4:memory:/minifargate/t/c\n5:devices:/minifargate/t/c\n0::/minifargate/t/c\n";
        let cgs: Vec<Value> = proc_cgroups(text)
            .into_iter()
            .filter_map(|(c, p)| read_cgroup(&mounts, &c, &p))
            .collect();
        assert_eq!(cgs.len(), 2, "devices has nothing to show: {cgs:#?}");
        assert_eq!(cgs[0]["files"]["memory.limit_in_bytes"], "67108864");
        assert_eq!(pretty("memory.limit_in_bytes", "67108864"), "64.0 MiB");
        assert_eq!(
            pretty("memory.limit_in_bytes", "9223372036854771712"),
            "unlimited"
        );
        assert_eq!(cgs[1]["version"], "v2");
        assert_eq!(cgs[1]["files"]["memory.max"], "max");
        assert_eq!(cgs[1]["files"]["cpu.stat usage_usec"], "1500000");
        assert_eq!(pretty("cpu.stat usage_usec", "1500000"), "1.500 s");
        // A process left in the v2 root (a v1 hybrid host): the host's numbers, not shown.
        let root = read_cgroup(&mounts, "", "/").unwrap();
        assert_eq!(root["inRoot"], true);
        assert_eq!(root["files"], json!({}));
    }
}
