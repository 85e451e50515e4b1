//! What a crashed or finished task must not leave behind, checked the way an operator
//! would (mountinfo, /run/netns, links, cgroup dirs, the netns crate's leases, nft,
//! `PRAGMA integrity_check`), scoped to one test's root, bridge and task ids so tests
//! running in parallel do not see each other.

use super::cli::Mf;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Polls `f` every 100 ms for up to 20 s; panics naming `what` when it never holds.
pub fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Mount points under this test's directory, except `keep` (e.g. a tmpfs run root
/// the test mounted itself) and the run root's template mount namespace
/// ([`is_template_mount`]).
pub fn mounts_under(mf: &Mf, keep: &[&Path]) -> Vec<String> {
    let root = mf.dir.path().to_string_lossy().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| {
            let point = l.split(' ').nth(4).unwrap_or_default();
            point.starts_with(&root)
                && !keep.iter().any(|k| Path::new(point) == *k)
                && !is_template_mount(mf, point)
        })
        .map(str::to_string)
        .collect()
}

/// The lines of the host's mountinfo that name `mf`'s directory, but the template mount
/// namespace's ([`is_template_mount`]).
pub fn task_mount_lines(mf: &Mf) -> Vec<String> {
    let root = mf.dir.path().to_string_lossy().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(&root))
        .filter(|l| !is_template_mount(mf, l.split(' ').nth(4).unwrap_or_default()))
        .map(str::to_string)
        .collect()
}

/// A mount point of the run root's template mount namespace (src/supervisor/isolation/
/// mountns/template.rs): `<run-root>/mntns`, a private bind mount of itself, and the pin
/// `<run-root>/mntns/ns` in it. The first task of a run root makes them; they stay until
/// `system reset` (or the test's `Mf` is dropped), and belong to no task.
pub fn is_template_mount(mf: &Mf, point: &str) -> bool {
    let dir = mf.run_root.join("mntns");
    Path::new(point) == dir || Path::new(point) == dir.join("ns")
}

/// The host's mount points of `mf`'s template mount namespace (none before its first task;
/// two after: the dir and the pin).
pub fn template_mounts(mf: &Mf) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| is_template_mount(mf, p))
        .map(str::to_string)
        .collect()
}

/// Cgroup directories of task `id` under any hierarchy (v1 controllers and v2).
pub fn task_cgroups(id: &str) -> Vec<String> {
    let mut left = Vec::new();
    for entry in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let cg = entry.path().join("minifargate").join(id);
        if cg.exists() {
            left.push(cg.display().to_string());
        }
    }
    left
}

/// Host processes whose cgroup path names task `id`.
pub fn task_processes(id: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if std::fs::read_to_string(e.path().join("cgroup"))
            .map(|c| c.contains(&format!("/{id}")))
            .unwrap_or(false)
        {
            pids.push(pid);
        }
    }
    pids
}

/// The supervisors of this test's root (`minifargate --root <root> … supervise …`),
/// running or waiting for a task: their pids.
pub fn supervisors_of(root: &Path) -> Vec<i32> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let root = root.as_os_str().as_encoded_bytes();
        if args.windows(2).any(|w| w[0] == b"--root" && w[1] == root)
            && args.contains(&&b"supervise"[..])
        {
            pids.push(pid);
        }
    }
    pids
}

/// The rules of our nftables table, none of them a task's (netns::nft::create_table_script):
/// per protocol a DNAT in prerouting and one in output, and three masquerades in
/// postrouting.
pub const TABLE_RULES: usize = 7;

/// What tasks left in our nftables table `table`, as `nft` (`nft`: the command that runs
/// it, e.g. inside a box's namespace) lists it: every map element, and the rules if they
/// are not the table's own [`TABLE_RULES`]. Empty if there is no such table. The table
/// outlives its last task (until `system reset`, like the bridge); its contents must not.
pub fn table_leftovers(mut nft: Command, table: &str) -> Vec<String> {
    let out = nft
        .args(["-j", "list", "table", "ip", table])
        .output()
        .expect("run nft (apt-get install nftables)");
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("No such file or directory"), "nft: {err}");
        return Vec::new();
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let objects = v["nftables"].as_array().unwrap();
    let mut left: Vec<String> = objects
        .iter()
        .filter_map(|o| o.get("map"))
        .filter_map(|m| Some(format!("map {}: {}", m["name"], m.get("elem")?)))
        .collect();
    let rules: Vec<_> = objects.iter().filter_map(|o| o.get("rule")).collect();
    if rules.len() != TABLE_RULES {
        left.push(format!(
            "{} rules, not the table's own {TABLE_RULES}: {rules:?}",
            rules.len()
        ));
    }
    left
}

/// `PRAGMA integrity_check` of the test's state.db, as the sqlite3 shell prints it.
pub fn integrity(mf: &Mf) -> String {
    let out = Command::new("sqlite3")
        .arg(mf.root.join("state.db"))
        .arg("PRAGMA integrity_check;")
        .output()
        .expect("run sqlite3 (apt-get install sqlite3)");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Nothing of tasks `ids` is left on the host: no mounts under the test dir (but
/// `keep`), processes, cgroups, netns pins, veths, IP leases, nftables map elements or
/// rules (the table itself stays, as the bridge does) or run dirs; and the state database
/// is intact. Runs `list-tasks` (a reconcile pass) while
/// waiting for what the kernel frees asynchronously (veths, then their leases).
pub fn assert_no_leaks(mf: &Mf, ids: &[&str], keep: &[&Path]) {
    let net = mf.network();
    for id in ids {
        wait_for(&format!("the processes of task {id} to go"), || {
            task_processes(id).is_empty()
        });
        let cgs = task_cgroups(id);
        assert!(cgs.is_empty(), "cgroups of {id} left behind: {cgs:?}");
        let ns = Path::new("/run/netns").join(format!("mfg-{id}"));
        assert!(!ns.exists(), "netns left behind: {}", ns.display());
        let veth = net.veth_name(id);
        wait_for(&format!("veth {veth} of {id} to go"), || {
            !netns::link_exists(&veth).unwrap()
        });
        // Reconcile removes a dead supervisor's after its next pass.
        let run_dir = mf.run_root.join("tasks").join(id);
        wait_for(&format!("run dir {} to go", run_dir.display()), || {
            !run_dir.exists()
        });
        let rootfs_dir = mf.run_root.join("rootfs").join(id);
        wait_for(
            &format!("rootfs dir {} to go", rootfs_dir.display()),
            || !rootfs_dir.exists(),
        );
    }
    let left = mounts_under(mf, keep);
    assert!(left.is_empty(), "mounts left behind: {left:#?}");
    wait_for("the task leases to be released", || {
        let _ = mf.cmd().arg("list-tasks").output();
        net.leased_ips().unwrap().is_empty() && net.tasks().unwrap().is_empty()
    });
    let left = table_leftovers(Command::new("nft"), net.nft_table());
    assert!(
        left.is_empty(),
        "task rules or elements left in table ip {}: {left:#?}",
        net.nft_table()
    );
    assert_eq!(integrity(mf), "ok", "PRAGMA integrity_check");
}
