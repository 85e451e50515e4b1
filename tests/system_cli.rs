//! `minifargate system info` through the real binary: the cgroup layout it reports is
//! the one this machine mounts (checked against statfs and the kernel's own files),
//! and the state counts follow what the root holds without creating anything.

use crate::common;

use common::cli::Mf;
use common::image::{Compression, Entry, Layer, Layout};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// The filesystem type of `path` as `stat -f` names it (cgroup2fs, tmpfs, cgroupfs).
fn fs_type(path: &str) -> String {
    let out = Command::new("stat")
        .args(["-f", "-c", "%T", path])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn reports_the_cgroup_layout_this_machine_mounts() {
    let mf = Mf::new();
    let info = mf.json(&["system", "info", "--format", "json"]);
    let cg = &info["cgroups"];
    let top = fs_type("/sys/fs/cgroup");
    let want = match top.as_str() {
        "cgroup2fs" => "v2",
        "tmpfs" if fs_type("/sys/fs/cgroup/unified") == "cgroup2fs" => "hybrid",
        "tmpfs" => "v1",
        other => panic!("unexpected /sys/fs/cgroup type {other}"),
    };
    assert_eq!(cg["layout"], want, "{cg}");
    let v2_mount = match want {
        "v2" => Some("/sys/fs/cgroup"),
        "hybrid" => Some("/sys/fs/cgroup/unified"),
        _ => None,
    };
    if let Some(m) = v2_mount {
        assert_eq!(cg["v2"]["mountPoint"], m);
        let file = std::fs::read_to_string(format!("{m}/cgroup.controllers")).unwrap();
        let want: Vec<String> = file.split_whitespace().map(str::to_string).collect();
        assert_eq!(names(&cg["v2"]["controllers"]), want);
    }
    if want != "v2" {
        // Every v1 controller the kernel has mounted shows up under its mount point.
        for ctl in ["memory", "pids", "cpu"] {
            let dir = format!("/sys/fs/cgroup/{ctl}");
            if fs_type(&dir) != "cgroupfs" {
                continue;
            }
            let real = std::fs::canonicalize(&dir).unwrap();
            let h = cg["v1"]
                .as_array()
                .unwrap()
                .iter()
                .find(|h| Path::new(h["mountPoint"].as_str().unwrap()) == real)
                .unwrap_or_else(|| panic!("no v1 hierarchy at {} in {cg}", real.display()));
            assert!(names(&h["controllers"]).contains(&ctl.to_string()), "{h}");
        }
    }
    // This project's machines are all the v1 hybrid (DESIGN.md); say so when that changes.
    if Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists()
        && fs_type("/sys/fs/cgroup/unified") == "cgroup2fs"
    {
        assert_eq!(cg["layout"], "hybrid");
    }

    let f = &info["features"];
    let filesystems = std::fs::read_to_string("/proc/filesystems").unwrap();
    assert_eq!(
        f["overlayfs"]["available"],
        filesystems.lines().any(|l| l.ends_with("\toverlay"))
    );
    assert_eq!(f["seccomp"]["available"], true);
    assert!(names(&f["seccomp"]["actions"]).contains(&"errno".to_string()));
    let nft = ["/usr/sbin/nft", "/sbin/nft"]
        .iter()
        .any(|p| Path::new(p).exists());
    assert_eq!(f["nftables"]["available"], nft);
    let uname = Command::new("uname").arg("-r").output().unwrap();
    assert_eq!(
        info["kernel"]["release"],
        String::from_utf8_lossy(&uname.stdout).trim()
    );
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn counts_what_the_root_holds_and_creates_nothing() {
    let mf = Mf::new();
    let info = mf.json(&["system", "info", "--format", "json"]);
    assert_eq!(info["root"]["exists"], false);
    assert_eq!(info["runRoot"]["exists"], false);
    assert_eq!(info["state"]["images"], 0);
    assert_eq!(info["state"]["tasks"]["total"], 0);
    assert!(!mf.root.exists(), "system info created the root");
    assert!(!mf.run_root.exists(), "system info created the run root");

    // One image loaded from an OCI layout, one task definition registered.
    let layout = mf.dir.path().join("layout");
    let mut l = Layout::new(&layout);
    let payload = vec![7u8; 256 * 1024];
    let img = l.add_image(
        "linux/amd64",
        &[Layer::new(
            Compression::Gzip,
            vec![Entry::dir("srv"), Entry::file("srv/blob", payload)],
        )],
    );
    l.tag_image("t", &img);
    mf.json(&[
        "load",
        "-i",
        layout.to_str().unwrap(),
        "--tag",
        "sysinfo/app:1",
        "--format",
        "json",
    ]);
    let td = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello.json");
    let out = mf.run(&[
        "register-task-definition",
        "--cli-input-json",
        &format!("file://{}", td.display()),
    ]);
    assert!(out.status.success());

    let info = mf.json(&["system", "info", "--format", "json"]);
    assert_eq!(info["root"]["exists"], true);
    assert_eq!(info["root"]["path"], mf.root.to_str().unwrap());
    let used = info["root"]["usedBytes"].as_u64().unwrap();
    assert!(
        used >= 256 * 1024,
        "the unpacked 256 KiB layer is counted: {used}"
    );
    assert!(info["root"]["filesystemFreeBytes"].as_u64().unwrap() > 0);
    assert_eq!(info["state"]["images"], 1);
    assert_eq!(info["state"]["tasks"]["total"], 0);
    assert_eq!(info["state"]["error"], Value::Null);

    // The text form says the same.
    let out = mf.run(&["system", "info"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "cgroup layout:    {}",
            info["cgroups"]["layout"].as_str().unwrap()
        )),
        "{text}"
    );
    assert!(text.contains("images:           1"), "{text}");
}

#[test]
fn completions_and_man_pages_cover_every_verb() {
    let mf = Mf::new();
    let verbs = ["run-task", "describe-tasks", "pull", "system"];
    for shell in ["bash", "zsh", "fish"] {
        let out = mf.run(&["completions", shell]);
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8_lossy(&out.stdout);
        for v in verbs {
            assert!(script.contains(v), "{shell} completion lacks {v}");
        }
        // The internal verb is not offered.
        assert!(
            !script.contains("supervise"),
            "{shell} completion offers supervise"
        );
    }
    let dir = mf.dir.path().join("man1");
    let out = mf.run(&["man", "--dir", dir.to_str().unwrap()]);
    assert!(out.status.success());
    let top = std::fs::read_to_string(dir.join("minifargate.1")).unwrap();
    assert!(top.contains(".TH minifargate"), "{top}");
    for v in verbs {
        let page = std::fs::read_to_string(dir.join(format!("minifargate-{v}.1")))
            .unwrap_or_else(|e| panic!("minifargate-{v}.1: {e}"));
        assert!(page.contains("Example"), "minifargate-{v}.1 has no example");
        for section in ["EXIT STATUS", "ENVIRONMENT", "FILES"] {
            assert!(page.contains(section), "minifargate-{v}.1 has no {section}");
        }
    }
    // The verb the top page lists are the pages written (no minifargate-help(1)).
    assert!(!top.contains("help(1)"), "{top}");
    assert!(!dir.join("minifargate-supervise.1").exists());
    // `man` without --dir prints the top page.
    let out = mf.run(&["man"]);
    let top = String::from_utf8_lossy(&out.stdout);
    assert!(top.contains(".TH minifargate"));
    // Its ENVIRONMENT is src/config.rs's table: every variable with its default, none of
    // the tests' hooks.
    let env = top
        .split(".SH \"ENVIRONMENT\"")
        .nth(1)
        .and_then(|s| s.split(".SH").next())
        .unwrap_or_else(|| panic!("no ENVIRONMENT: {top}"));
    for var in [
        "MINIFARGATE_ROOT",
        "MINIFARGATE_SUBNET",
        "MINIFARGATE_LOG_MAX_SIZE",
        "MINIFARGATE_STOPPED_TASK_RETENTION",
        "MINIFARGATE_API_ACCESS_KEY_ID",
        "RUST_LOG",
    ] {
        assert!(env.contains(var), "ENVIRONMENT lacks {var}: {env}");
    }
    assert!(env.contains("10.94.0.0/16"), "{env}");
    assert!(!env.contains("MINIFARGATE_TEST"), "{env}");
}

/// Whether an nftables table `ip NAME` exists (`nft list tables`).
fn nft_table_exists(name: &str) -> bool {
    let out = Command::new("nft")
        .args(["list", "tables"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.trim() == format!("table ip {name}"))
}

#[test]
fn reset_stops_every_task_and_removes_networks_mounts_cgroups_and_state() {
    use common::image::busybox_layer;
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    const BUSYBOX: &str = "public.ecr.aws/docker/library/busybox:1.36";

    let (mf, _reg) = common::busybox_task_env(busybox_layer(Compression::Gzip, "reset"));
    // One task that stops on SIGTERM, one that ignores it for 120 s (forced by reset).
    let polite = mf.taskdef(
        "polite",
        &format!(
            r#"{{"family":"polite","networkMode":"awsvpc","requiresCompatibilities":["FARGATE"],
            "cpu":"256","memory":"512","containerDefinitions":[
            {{"name":"app","image":"{BUSYBOX}","essential":true,
              "command":["sh","-c","trap 'exit 0' TERM; while :; do sleep 0.1; done"]}}]}}"#
        ),
    );
    let stubborn = mf.taskdef(
        "stubborn",
        &format!(
            r#"{{"family":"stubborn","networkMode":"awsvpc","requiresCompatibilities":["FARGATE"],
            "cpu":"256","memory":"512","containerDefinitions":[
            {{"name":"app","image":"{BUSYBOX}","essential":true,"stopTimeout":120,
              "command":["sh","-c","trap '' TERM; while :; do sleep 0.1; done"]}}]}}"#
        ),
    );
    let mut ids = Vec::new();
    for td in [&polite, &stubborn] {
        let v = mf.json(&["run-task", "--task-definition", td, "--detach"]);
        let arn = v["tasks"][0]["taskArn"].as_str().unwrap();
        ids.push(arn.rsplit('/').next().unwrap().to_string());
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for id in &ids {
        loop {
            let t = &mf.json(&["describe-tasks", "--tasks", id])["tasks"][0];
            if t["lastStatus"] == "RUNNING" {
                break;
            }
            assert!(Instant::now() < deadline, "task {id} did not start: {t:#}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let supervisors: Vec<String> = ids
        .iter()
        .map(|id| {
            std::fs::read_to_string(mf.run_root.join("tasks").join(id).join("supervisor.pid"))
                .unwrap()
                .trim()
                .to_string()
        })
        .collect();
    let bridge = mf.bridge();
    let table = netns::nft::table_name(&bridge);
    let test_dir = mf.dir.path().to_string_lossy().to_string();
    // The host's mount table and, while they run, the supervisors' own (a task's rootfs is
    // mounted in its supervisor's mount namespace: src/supervisor/isolation/mountns.rs).
    let mounts = || -> Vec<String> {
        std::iter::once("self".to_string())
            .chain(supervisors.iter().cloned())
            .map(|p| std::fs::read_to_string(format!("/proc/{p}/mountinfo")).unwrap_or_default())
            .flat_map(|t| t.lines().map(str::to_string).collect::<Vec<_>>())
            .filter(|l| l.contains(&test_dir))
            .collect()
    };
    let cgroups = |id: &str| -> Vec<String> {
        let mut found = Vec::new();
        for e in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
            for cg in [e.path().join("minifargate").join(id), e.path().join(id)] {
                if cg.exists() {
                    found.push(cg.display().to_string());
                }
            }
        }
        found
    };
    // What a user would see before: the tasks' mounts, cgroups, namespaces, bridge, table.
    assert!(!mounts().is_empty(), "no rootfs mounts while running");
    assert!(
        ids.iter().all(|id| !cgroups(id).is_empty()),
        "no task cgroups"
    );
    assert!(Path::new("/sys/class/net").join(&bridge).exists());
    assert!(nft_table_exists(&table), "no nftables table {table}");
    for id in &ids {
        assert!(Path::new("/run/netns").join(format!("mfg-{id}")).exists());
    }

    // Without --force and without a terminal to ask on: refused, nothing changes.
    let out = mf
        .cmd()
        .args(["system", "reset"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pass --force"), "{err}");
    for id in &ids {
        let t = &mf.json(&["describe-tasks", "--tasks", id])["tasks"][0];
        assert_eq!(t["lastStatus"], "RUNNING", "{t:#}");
    }

    let started = Instant::now();
    let out = mf.run(&["system", "reset", "--force", "--timeout", "3s"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("stopped 2 tasks (1 forced)"), "{text}");
    assert!(
        text.contains(&format!("removed network {bridge}")),
        "{text}"
    );
    assert!(
        text.contains(&format!("removed {}", mf.root.display())),
        "{text}"
    );
    // The stubborn task's 120 s stopTimeout was not waited for.
    assert!(started.elapsed() < Duration::from_secs(60));

    for pid in &supervisors {
        // Gone, or an exited process its reaper has not collected yet.
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s[s.rfind(')').unwrap() + 2..].chars().next().unwrap())
            .unwrap_or('X');
        assert!(
            state == 'Z' || state == 'X',
            "supervisor {pid} still running (state {state})"
        );
    }
    assert_eq!(mounts(), Vec::<String>::new(), "mounts left behind");
    for id in &ids {
        assert_eq!(cgroups(id), Vec::<String>::new(), "cgroups left behind");
        assert!(!Path::new("/run/netns").join(format!("mfg-{id}")).exists());
    }
    assert!(
        !Path::new("/sys/class/net").join(&bridge).exists(),
        "bridge left"
    );
    assert!(!nft_table_exists(&table), "nftables table {table} left");
    assert!(!mf.root.exists(), "root left");
    assert!(!mf.run_root.exists(), "run root left");

    // Again on nothing: fine, and still nothing is created.
    let out = mf.run(&["system", "reset", "--force"]);
    assert!(out.status.success());
    assert!(!mf.root.exists());
}

#[test]
fn reset_refuses_a_system_directory_as_root() {
    let mf = Mf::new();
    let out = Command::new(common::cli::bin())
        .args(["--root", "/var", "--run-root"])
        .arg(&mf.run_root)
        .args(["system", "reset", "--force"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refusing to reset /var"), "{err}");
    assert!(Path::new("/var/lib").exists());
}
