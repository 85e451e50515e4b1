//! `system info` (what a bug report needs first: versions, cgroup layout, kernel
//! features, state dirs), and the hidden `completions` / `man` generators.

mod reset;

use super::GlobalOpts;
use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct SystemArgs {
    #[command(subcommand)]
    pub command: SystemCommand,
}

#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Show versions, the cgroup layout, kernel features and state dirs (attach to bug reports).
    Info {
        /// `text` or `json` (`--format` is the old name).
        #[arg(long = "output", alias = "format", value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Stop every task and remove all networks, mounts, cgroups, images and state of
    /// this root (like `podman system reset`).
    Reset {
        /// Do not ask for confirmation (required when stdin is not a terminal).
        #[arg(long, short)]
        force: bool,
        /// How long tasks get to stop gracefully (SIGTERM, then SIGKILL after each
        /// container's stopTimeout) before they are stopped by force.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// Shell to generate the completion script for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write minifargate.1 and one minifargate-VERB.1 per verb into DIR (default: print
    /// minifargate.1 to stdout).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

pub fn system(g: &GlobalOpts, a: SystemArgs) -> anyhow::Result<ExitCode> {
    match a.command {
        SystemCommand::Info { format } => {
            let info = info(g);
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&info)?),
                Format::Text => print!("{}", render_text(&info)),
            }
            Ok(ExitCode::SUCCESS)
        }
        SystemCommand::Reset { force, timeout } => reset::reset(g, force, timeout),
    }
}

pub fn completions(a: CompletionsArgs) -> anyhow::Result<ExitCode> {
    let mut cmd = super::help::completion_command();
    clap_complete::generate(a.shell, &mut cmd, "minifargate", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}

pub fn man(a: ManArgs) -> anyhow::Result<ExitCode> {
    let pages = super::help::man_pages()?;
    match a.dir {
        None => {
            let (_, top) = pages.first().context("no man page")?;
            std::io::stdout().write_all(top)?;
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("failed to create {}", dir.display()))?;
            for (name, text) in &pages {
                let path = dir.join(name);
                std::fs::write(&path, text)
                    .with_context(|| format!("failed to write {}", path.display()))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Everything `system info` reports, as the JSON `--format json` prints.
pub fn info(g: &GlobalOpts) -> Value {
    let uts = nix::sys::utsname::uname().ok();
    let s = |f: &std::ffi::OsStr| f.to_string_lossy().into_owned();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "arch": std::env::consts::ARCH,
        "kernel": {
            "release": uts.as_ref().map(|u| s(u.release())),
            "version": uts.as_ref().map(|u| s(u.version())),
            "machine": uts.as_ref().map(|u| s(u.machine())),
        },
        "cgroups": cgroups(&runtime::CgroupLayout::read()),
        "features": {
            "overlayfs": filesystem_known("overlay"),
            "seccomp": seccomp(),
            "userNamespaces": user_namespaces(),
            "nftables": nftables(),
        },
        "root": dir_info(&g.root),
        "runRoot": dir_info(&g.run_root),
        "state": state_counts(&g.root),
    })
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The cgroup hierarchies mounted here and the layout they make: `v2` (unified only),
/// `hybrid` (v1 controllers plus a v2 mount, as systemd's /sys/fs/cgroup/unified), `v1`,
/// or `none`.
pub fn cgroups(layout: &runtime::CgroupLayout) -> Value {
    let path = |m: &runtime::CgroupMount| m.mount_point.to_string_lossy().into_owned();
    let v2 = layout.unified().map(|m| {
        let controllers: Vec<String> = read(&format!("{}/cgroup.controllers", path(m)))
            .split_whitespace()
            .map(str::to_string)
            .collect();
        json!({ "mountPoint": path(m), "controllers": controllers })
    });
    json!({
        "layout": layout.kind().as_str(),
        "v2": v2,
        "v1": layout
            .v1()
            .map(|m| json!({ "mountPoint": path(m), "controllers": m.controllers }))
            .collect::<Vec<_>>(),
    })
}

fn filesystem_known(fs: &str) -> Value {
    let known = read("/proc/filesystems")
        .lines()
        .any(|l| l.split_whitespace().last() == Some(fs));
    // Not listed may still mean "module not loaded yet": mount(2) autoloads it.
    let module = Path::new("/sys/module").join(fs).exists();
    json!({ "available": known, "moduleLoaded": module })
}

fn seccomp() -> Value {
    let status = read("/proc/self/status");
    let kernel = status.lines().any(|l| l.starts_with("Seccomp:"));
    let actions: Vec<String> = read("/proc/sys/kernel/seccomp/actions_avail")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    json!({ "available": kernel, "actions": actions })
}

fn user_namespaces() -> Value {
    let max: Option<u64> = read("/proc/sys/user/max_user_namespaces")
        .trim()
        .parse()
        .ok();
    json!({ "available": max.is_some_and(|m| m > 0), "max": max })
}

fn nftables() -> Value {
    let nft = netns::nft::find_nft();
    let version = nft.as_ref().and_then(|p| {
        let out = std::process::Command::new(p)
            .arg("--version")
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    });
    json!({
        "available": nft.is_some(),
        "nft": nft,
        "version": version,
        "moduleLoaded": Path::new("/sys/module/nf_tables").exists(),
    })
}

/// Path, whether it exists, bytes used below it (one filesystem, so task overlay
/// mounts are not counted twice) and the free space of its filesystem.
fn dir_info(path: &Path) -> Value {
    if !path.exists() {
        return json!({ "path": path, "exists": false });
    }
    let used = disk_usage(path);
    let free = nix::sys::statvfs::statvfs(path)
        .ok()
        .map(|s| s.blocks_available() * s.fragment_size());
    json!({ "path": path, "exists": true, "usedBytes": used, "filesystemFreeBytes": free })
}

fn disk_usage(root: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(top) = std::fs::symlink_metadata(root) else {
        return 0;
    };
    let dev = top.dev();
    let mut total = 0u64;
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.dev() != dev {
                continue;
            }
            // Hard links (layers share files with their snapshots) count once.
            if m.nlink() > 1 && !seen.insert((m.dev(), m.ino())) {
                continue;
            }
            total += m.blocks() * 512;
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    total
}

/// Images, task counts by lastStatus and clusters, read without creating anything.
fn state_counts(root: &Path) -> Value {
    let images = std::fs::read_dir(root.join("images"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                .count()
        })
        .unwrap_or(0);
    let mut tasks: BTreeMap<String, usize> = BTreeMap::new();
    let mut clusters = 0;
    let mut error = None;
    if root.join("state.db").is_file() {
        match crate::store::Store::open(root) {
            Ok(store) => {
                match store.list_tasks(&crate::store::TaskFilter::default()) {
                    Ok(list) => {
                        for t in list {
                            *tasks.entry(t.last_status.to_string()).or_default() += 1;
                        }
                    }
                    Err(e) => error = Some(e.to_string()),
                }
                clusters = store.list_clusters().map(|c| c.len()).unwrap_or(0);
            }
            Err(e) => error = Some(e.to_string()),
        }
    }
    let total: usize = tasks.values().sum();
    json!({
        "images": images,
        "tasks": { "total": total, "byLastStatus": tasks },
        "clusters": clusters,
        "error": error,
    })
}

fn human(bytes: &Value) -> String {
    match bytes.as_u64() {
        Some(b) if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        Some(b) if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        Some(b) if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        Some(b) => format!("{b} B"),
        None => "?".into(),
    }
}

fn yes_no(v: &Value) -> &'static str {
    if v["available"].as_bool() == Some(true) {
        "yes"
    } else {
        "no"
    }
}

fn render_text(i: &Value) -> String {
    let mut o = String::new();
    let mut line = |k: &str, v: String| o.push_str(&format!("{k:<18}{v}\n"));
    line(
        "version:",
        format!(
            "{} ({})",
            i["version"].as_str().unwrap_or("?"),
            i["arch"].as_str().unwrap_or("?")
        ),
    );
    line(
        "kernel:",
        format!(
            "{} {}",
            i["kernel"]["release"].as_str().unwrap_or("?"),
            i["kernel"]["machine"].as_str().unwrap_or("")
        ),
    );
    let cg = &i["cgroups"];
    line(
        "cgroup layout:",
        cg["layout"].as_str().unwrap_or("?").to_string(),
    );
    if let Some(v2) = cg["v2"].as_object() {
        let c: Vec<&str> = v2["controllers"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        line(
            "  v2:",
            format!(
                "{} [{}]",
                v2["mountPoint"].as_str().unwrap_or("?"),
                c.join(" ")
            ),
        );
    }
    for h in cg["v1"].as_array().into_iter().flatten() {
        let c: Vec<&str> = h["controllers"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        line(
            "  v1:",
            format!(
                "{} [{}]",
                h["mountPoint"].as_str().unwrap_or("?"),
                c.join(" ")
            ),
        );
    }
    let f = &i["features"];
    line("overlayfs:", yes_no(&f["overlayfs"]).into());
    line(
        "seccomp:",
        format!(
            "{} ({})",
            yes_no(&f["seccomp"]),
            f["seccomp"]["actions"]
                .as_array()
                .map(|a| a
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(" "))
                .unwrap_or_default()
        ),
    );
    line("user namespaces:", yes_no(&f["userNamespaces"]).into());
    line(
        "nftables:",
        match f["nftables"]["version"].as_str() {
            Some(v) => format!("yes ({v})"),
            None => yes_no(&f["nftables"]).into(),
        },
    );
    for (k, key) in [("root:", "root"), ("run root:", "runRoot")] {
        let d = &i[key];
        let p = d["path"].as_str().unwrap_or("?");
        if d["exists"].as_bool() == Some(true) {
            line(
                k,
                format!(
                    "{p} ({} used, {} free)",
                    human(&d["usedBytes"]),
                    human(&d["filesystemFreeBytes"])
                ),
            );
        } else {
            line(k, format!("{p} (does not exist)"));
        }
    }
    let s = &i["state"];
    line("images:", s["images"].to_string());
    let by: Vec<String> = s["tasks"]["byLastStatus"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| format!("{k} {v}")).collect())
        .unwrap_or_default();
    line(
        "tasks:",
        if by.is_empty() {
            s["tasks"]["total"].to_string()
        } else {
            format!("{} ({})", s["tasks"]["total"], by.join(", "))
        },
    );
    line("clusters:", s["clusters"].to_string());
    if let Some(e) = s["error"].as_str() {
        line("state error:", e.to_string());
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
35 24 0:30 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
36 35 0:31 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
37 35 0:32 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
40 35 0:35 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,memory
";

    /// The layout's JSON shape (the layout itself is read and tested in the runtime crate).
    #[test]
    fn layout_as_json() {
        let layout = runtime::CgroupLayout::parse(HYBRID, "memory\t4\t22\t1\n");
        let h = cgroups(&layout);
        assert_eq!(h["layout"], "hybrid");
        assert_eq!(h["v2"]["mountPoint"], "/sys/fs/cgroup/unified");
        assert_eq!(
            h["v1"],
            json!([
                { "mountPoint": "/sys/fs/cgroup/systemd", "controllers": ["name=systemd"] },
                { "mountPoint": "/sys/fs/cgroup/memory", "controllers": ["memory"] },
            ])
        );
        let none = cgroups(&runtime::CgroupLayout::default());
        assert_eq!(none, json!({ "layout": "none", "v2": null, "v1": [] }));
    }
}
