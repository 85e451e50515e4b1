//! Root integration tests of task volumes, container settings and restartPolicy: the real
//! binary, a real registry, the real kernel. Each test checks what a container sees (its
//! log) and what is left on the host after the task.

use crate::common;

use common::busybox_task_env;
use common::cli::Mf;
use common::image::{Compression, Entry, Layer, Layout, busybox_entries, busybox_layer};
use common::registry::Registry;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

const BUSYBOX: &str = "public.ecr.aws/docker/library/busybox:1.36";

struct Env {
    mf: Mf,
    reg: Registry,
}

/// The test's `Mf` (its `taskdef`, `run`, `json`, ...), as its own methods.
impl std::ops::Deref for Env {
    type Target = Mf;
    fn deref(&self) -> &Mf {
        &self.mf
    }
}

impl Env {
    fn new() -> Env {
        let (mf, reg) = busybox_task_env(busybox_layer(Compression::Gzip, "volumes"));
        Env { mf, reg }
    }

    fn describe(&self, id: &str) -> Value {
        self.json(&["describe-tasks", "--tasks", id])["tasks"][0].clone()
    }

    fn task_ids(&self) -> Vec<String> {
        let v = self.json(&["list-tasks", "--desired-status", "STOPPED"]);
        v["taskArns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().rsplit('/').next().unwrap().to_string())
            .collect()
    }

    /// The newest stopped task.
    fn last_task(&self) -> String {
        self.task_ids()[0].clone()
    }

    fn task_dir(&self, id: &str) -> PathBuf {
        self.mf.root.join("tasks").join(id)
    }

    /// Nothing of task `id` is left: no mounts under this test's dirs, no cgroups, no run
    /// dir, no task volumes, no teardown warnings.
    fn assert_clean(&self, id: &str) {
        assert_no_mounts(&self.mf);
        for entry in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
            let cg = entry.path().join("minifargate").join(id);
            assert!(!cg.exists(), "cgroup left behind: {}", cg.display());
        }
        let run_dir = self.mf.run_root.join("tasks").join(id);
        assert!(!run_dir.exists(), "run dir left: {}", run_dir.display());
        let vols = self.task_dir(id).join("volumes");
        assert!(!vols.exists(), "task volumes left: {}", vols.display());
        let t = self.describe(id);
        for w in t["minifargateWarnings"].as_array().into_iter().flatten() {
            assert!(!w.as_str().unwrap().starts_with("teardown"), "{w}");
        }
    }
}

fn assert_no_mounts(mf: &Mf) {
    let left = common::leaks::task_mount_lines(mf);
    assert!(left.is_empty(), "mounts left behind: {left:#?}");
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn task_volume_is_shared_read_only_and_borrowed_then_removed() {
    let env = Env::new();
    let td = env.taskdef(
        "share",
        &format!(
            r#"{{"family":"share","networkMode":"none","memory":"512","volumes":[{{"name":"data"}}],
            "containerDefinitions":[
            {{"name":"writer","image":"{BUSYBOX}","essential":false,
              "mountPoints":[{{"sourceVolume":"data","containerPath":"/data"}}],
              "command":["sh","-c","echo hello from writer > /data/x"]}},
            {{"name":"borrower","image":"{BUSYBOX}","essential":false,
              "dependsOn":[{{"containerName":"writer","condition":"SUCCESS"}}],
              "volumesFrom":[{{"sourceContainer":"writer"}}],
              "command":["sh","-c","cat /data/x && echo borrowed > /data/y && echo borrower wrote"]}},
            {{"name":"reader","image":"{BUSYBOX}","essential":true,
              "dependsOn":[{{"containerName":"borrower","condition":"SUCCESS"}}],
              "mountPoints":[{{"sourceVolume":"data","containerPath":"/in","readOnly":true}}],
              "command":["sh","-c","cat /in/x /in/y; echo nope > /in/z; echo exit $?"]}}]}}"#
        ),
    );
    let out = env.run(&["run-task", "--task-definition", &td]);
    let s = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{s}");
    assert!(s.contains("borrower | hello from writer"), "{s}");
    assert!(s.contains("borrower | borrower wrote"), "{s}");
    assert!(s.contains("reader   | hello from writer"), "{s}");
    assert!(s.contains("reader   | borrowed"), "{s}");
    // The read-only mountPoint refuses writes.
    assert!(s.contains("Read-only file system"), "{s}");
    assert!(s.contains("reader   | exit 1"), "{s}");
    let id = env.last_task();
    let t = env.describe(&id);
    assert!(
        !t["minifargateWarnings"].to_string().contains("volume"),
        "{t:#}"
    );
    env.assert_clean(&id);
}

#[test]
fn shared_docker_volume_outlives_the_task_and_is_reused() {
    let env = Env::new();
    let vol = |autoprovision: bool| {
        format!(
            r#""volumes":[{{"name":"cache","dockerVolumeConfiguration":
                {{"scope":"shared","autoprovision":{autoprovision},"driver":"local"}}}}]"#
        )
    };
    let td = |name: &str, autoprovision: bool, cmd: &str| {
        env.taskdef(
            name,
            &format!(
                r#"{{"family":"{name}","networkMode":"none","memory":"512",{},"containerDefinitions":[
                {{"name":"app","image":"{BUSYBOX}",
                  "mountPoints":[{{"sourceVolume":"cache","containerPath":"/cache"}}],
                  "command":["sh","-c","{cmd}"]}}]}}"#,
                vol(autoprovision)
            ),
        )
    };
    // autoprovision false and no such volume: a clear error, no task.
    let out = env.run(&[
        "run-task",
        "--task-definition",
        &td("strict", false, "true"),
    ]);
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains("volumes[0].dockerVolumeConfiguration: shared volume \"cache\" does not exist")
            && e.contains("autoprovision"),
        "{e}"
    );
    assert!(env.task_ids().is_empty());

    let out = env.run(&[
        "run-task",
        "--task-definition",
        &td("first", true, "echo kept > /cache/f"),
    ]);
    assert_eq!(out.status.code(), Some(0));
    let first = env.last_task();
    env.assert_clean(&first);
    let shared = env.mf.root.join("volumes/cache/f");
    assert_eq!(std::fs::read_to_string(&shared).unwrap(), "kept\n");

    // Now it exists: autoprovision false finds it.
    let out = env.run(&[
        "run-task",
        "--task-definition",
        &td("strict", false, "cat /cache/f"),
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("app | kept"), "{}", stdout(&out));
    env.assert_clean(&env.last_task());
    assert!(shared.exists());
}

#[test]
fn host_source_path_binds_on_ec2_and_run_v() {
    let env = Env::new();
    let host = env.mf.dir.path().join("hostdir");
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("in"), "from the host\n").unwrap();
    // In a user namespace of its own (the CI run with MINIFARGATE_TEST_USERNS) the task's
    // root is nobody in a host path: it writes only where others may (docs/security.md).
    if env.mf.env_value("MINIFARGATE_USERNS").is_some() {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let td = env.taskdef(
        "hostvol",
        &format!(
            r#"{{"family":"hostvol","networkMode":"none","memory":"512",
            "volumes":[{{"name":"h","host":{{"sourcePath":"{}"}}}}],
            "containerDefinitions":[{{"name":"app","image":"{BUSYBOX}",
              "mountPoints":[{{"sourceVolume":"h","containerPath":"/mnt/h"}}],
              "command":["sh","-c","cat /mnt/h/in && echo from the container > /mnt/h/out"]}}]}}"#,
            host.display()
        ),
    );
    // Fargate refuses a host sourcePath.
    let out = env.run(&[
        "run-task",
        "--task-definition",
        &td,
        "--launch-type",
        "FARGATE",
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("sourcePath"), "{}", stderr(&out));

    let out = env.run(&["run-task", "--task-definition", &td, "--launch-type", "EC2"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("app | from the host"));
    assert_eq!(
        std::fs::read_to_string(host.join("out")).unwrap(),
        "from the container\n"
    );
    env.assert_clean(&env.last_task());
    // The host directory is the user's: kept.
    assert!(host.join("in").exists());

    // `run -v` goes the same way; :ro refuses writes.
    let v = format!("{}:/m:ro", host.display());
    let out = env.run(&[
        "run",
        "--network",
        "none",
        "-v",
        &v,
        BUSYBOX,
        "--",
        "sh",
        "-c",
        "cat /m/in; echo x > /m/new",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let s = stdout(&out);
    assert!(
        s.contains("from the host") && s.contains("Read-only file system"),
        "{s}"
    );
    assert!(!host.join("new").exists());
    env.assert_clean(&env.last_task());
}

#[test]
fn efs_is_a_clear_error_unless_mapped_to_a_local_dir() {
    let env = Env::new();
    let td = env.taskdef(
        "efs",
        &format!(
            r#"{{"family":"efs","networkMode":"none","memory":"512",
            "volumes":[{{"name":"shared-fs","efsVolumeConfiguration":{{"fileSystemId":"fs-12345678","rootDirectory":"/"}}}}],
            "containerDefinitions":[{{"name":"app","image":"{BUSYBOX}",
              "mountPoints":[{{"sourceVolume":"shared-fs","containerPath":"/efs"}}],
              "command":["cat","/efs/hello"]}}]}}"#
        ),
    );
    let out = env.run(&["run-task", "--task-definition", &td]);
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains("volumes[0].efsVolumeConfiguration: volume \"shared-fs\" needs Amazon EFS")
            && e.contains("--volume-map shared-fs=/local/dir"),
        "{e}"
    );
    // Nothing was made: no task, no task dir, no mounts.
    assert!(env.task_ids().is_empty());
    let tasks = env.mf.root.join("tasks");
    assert!(
        std::fs::read_dir(&tasks).map_or(true, |mut d| d.next().is_none()),
        "task dirs left in {}",
        tasks.display()
    );
    assert_no_mounts(&env.mf);

    let local = env.mf.dir.path().join("efs-local");
    std::fs::create_dir(&local).unwrap();
    std::fs::write(local.join("hello"), "efs served locally\n").unwrap();
    let map = format!("shared-fs={}", local.display());
    let out = env.run(&["run-task", "--task-definition", &td, "--volume-map", &map]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("app | efs served locally"));
    env.assert_clean(&env.last_task());
}

/// The hard `nofile` limit this process may set (no CAP_SYS_RESOURCE here).
fn host_nofile_hard() -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    line.split_whitespace().nth(4).unwrap().parse().unwrap()
}

#[test]
fn container_settings_tmpfs_caps_ulimits_readonly_rootfs() {
    let env = Env::new();
    let hard = host_nofile_hard();
    let want = hard + 1000;
    let td = env.taskdef(
        "settings",
        &format!(
            r#"{{"family":"settings","networkMode":"none","memory":"512","containerDefinitions":[
            {{"name":"app","image":"{BUSYBOX}","readonlyRootFilesystem":true,
              "dockerLabels":{{"team":"core"}},
              "linuxParameters":{{"capabilities":{{"drop":["CHOWN"]}},
                 "tmpfs":[{{"containerPath":"/scratch","size":8,"mountOptions":["noexec"]}}]}},
              "ulimits":[{{"name":"nofile","softLimit":{want},"hardLimit":{want}}}],
              "systemControls":[{{"namespace":"net.ipv4.ip_unprivileged_port_start","value":"80"}}],
              "command":["sh","-c","busybox grep CapBnd /proc/self/status; busybox chown 1 /scratch; echo ok > /scratch/f && echo tmpfs ok; busybox grep ' /scratch ' /proc/mounts; echo x > /etc/x; echo nofile $(ulimit -n) $(ulimit -Hn); cat /proc/sys/net/ipv4/ip_unprivileged_port_start"]}}]}}"#
        ),
    );
    let out = env.run(&["run-task", "--task-definition", &td]);
    let s = stdout(&out);
    // Docker's default bounding set 0xa80425fb without CAP_CHOWN (bit 0).
    assert!(s.contains("app | CapBnd:\t00000000a80425fa"), "{s}");
    assert!(
        s.contains("chown") && s.contains("Operation not permitted"),
        "{s}"
    );
    assert!(s.contains("app | tmpfs ok"), "{s}");
    let tmpfs_line = s.lines().find(|l| l.contains(" /scratch ")).unwrap();
    assert!(
        tmpfs_line.contains("tmpfs")
            && tmpfs_line.contains("noexec")
            && tmpfs_line.contains("size=8192k"),
        "{tmpfs_line}"
    );
    assert!(s.contains("/etc/x: Read-only file system"), "{s}");
    assert!(s.contains(&format!("app | nofile {hard} {hard}")), "{s}");
    assert!(s.contains("app | 80\n"), "{s}");
    let id = env.last_task();
    let t = env.describe(&id);
    let warnings = t["minifargateWarnings"].to_string();
    assert!(
        warnings.contains(&format!(
            "containerDefinitions[0].ulimits[0]: nofile hardLimit {want} is above what this host allows ({hard}"
        )),
        "{t:#}"
    );
    env.assert_clean(&id);

    // A sysctl that is not namespaced is refused before anything exists.
    let td = env.taskdef(
        "badsysctl",
        &format!(
            r#"{{"family":"badsysctl","networkMode":"none","memory":"512","containerDefinitions":[
            {{"name":"app","image":"{BUSYBOX}","command":["true"],
              "systemControls":[{{"namespace":"vm.overcommit_memory","value":"1"}}]}}]}}"#
        ),
    );
    let out = env.run(&["run-task", "--task-definition", &td]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(
            "containerDefinitions[0].systemControls[0].namespace: \"vm.overcommit_memory\" is not a namespaced sysctl"
        ),
        "{}",
        stderr(&out)
    );
    assert_eq!(env.task_ids().len(), 1);
}

#[test]
fn devices_swap_init_and_pseudo_terminal() {
    let env = Env::new();
    let td = env.taskdef(
        "lp",
        &format!(
            r#"{{"family":"lp","networkMode":"none","memory":"512","containerDefinitions":[
            {{"name":"app","image":"{BUSYBOX}","memory":64,
              "linuxParameters":{{"maxSwap":32,"swappiness":10,"initProcessEnabled":true,
                 "devices":[{{"hostPath":"/dev/zero","containerPath":"/dev/myzero","permissions":["read"]}}]}},
              "command":["sh","-c","busybox head -c 5 /dev/myzero | busybox wc -c; cat /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes /sys/fs/cgroup/memory/memory.swappiness; busybox tr '\\0' ' ' < /proc/1/cmdline; echo"]}},
            {{"name":"term","image":"{BUSYBOX}","essential":false,"pseudoTerminal":true,
              "command":["sh","-c","busybox tty; [ -t 1 ] && echo stdout is a terminal"]}}]}}"#
        ),
    );
    let out = env.run(&["run-task", "--task-definition", &td]);
    assert_eq!(out.status.code(), Some(0));
    let s = stdout(&out);
    assert!(s.contains("app  | 5\n"), "{s}");
    // pseudoTerminal: the process has a terminal; its output is still logged.
    assert!(s.contains("term | /dev/pts/0"), "{s}");
    assert!(s.contains("term | stdout is a terminal"), "{s}");
    let id = env.last_task();
    // maxSwap 32 MiB on top of memory 64 MiB, where the kernel accounts swap (cgroup v1 memsw).
    if Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists() {
        assert!(s.contains(&format!("app  | {}\n", 96u64 << 20)), "{s}");
        assert!(s.contains("app  | 10\n"), "{s}");
    }
    // initProcessEnabled: pid 1 is the init running the command (Debian's tini-static,
    // from scripts/lib.sh's packages), or the task says why there is none.
    let warnings = env.describe(&id)["minifargateWarnings"].to_string();
    if Path::new("/usr/bin/tini-static").exists() {
        assert!(s.contains("app  | /dev/init -- sh -c"), "{s}");
    } else {
        assert!(
            warnings.contains("initProcessEnabled: no static init binary"),
            "{warnings}"
        );
    }
    env.assert_clean(&id);
}

#[test]
fn restart_policy_restarts_in_place_and_ignores_listed_codes() {
    let mut env = Env::new();
    // ECS's minimum restartAttemptPeriod is 60 s; the test runs with 1 s.
    env.mf.set_env("MINIFARGATE_RESTART_ATTEMPT_PERIOD", "1");
    let td = env.taskdef(
        "crashloop",
        &format!(
            r#"{{"family":"crashloop","networkMode":"none","memory":"512","containerDefinitions":[
            {{"name":"app","image":"{BUSYBOX}","essential":true,
              "restartPolicy":{{"enabled":true,"ignoredExitCodes":[0],"restartAttemptPeriod":60}},
              "command":["sh","-c","n=$(( $(cat /tmp/n 2>/dev/null || echo 0) + 1 )); echo $n > /tmp/n; echo run $n; if [ $n -lt 3 ]; then sleep 2; exit 3; fi; exit 5"]}},
            {{"name":"ign","image":"{BUSYBOX}","essential":false,
              "restartPolicy":{{"enabled":true,"ignoredExitCodes":[7]}},
              "command":["sh","-c","echo ign ran; sleep 2; exit 7"]}}]}}"#
        ),
    );
    let out = env.run(&["run-task", "--task-definition", &td]);
    let s = stdout(&out);
    // Runs 1 and 2 ran ≥ 1 s and exited 3: restarted, on the same rootfs (/tmp/n counts).
    // Run 3 exited at once: less than the period, so the normal exit path stops the task.
    assert_eq!(out.status.code(), Some(5), "{s}");
    for n in 1..=3 {
        assert!(s.contains(&format!("app | run {n}\n")), "{s}");
    }
    assert!(!s.contains("run 4"), "{s}");
    // Exit code 7 is ignored: ran once.
    assert_eq!(s.matches("ign | ign ran").count(), 1, "{s}");
    let id = env.last_task();
    let t = env.describe(&id);
    assert_eq!(t["stopCode"], "EssentialContainerExited");
    assert_eq!(t["containers"][0]["exitCode"], 5);
    assert_eq!(t["containers"][1]["exitCode"], 7);
    let log = std::fs::read_to_string(env.task_dir(&id).join("supervisor.log")).unwrap();
    assert_eq!(
        log.matches("restarting container (restartPolicy)").count(),
        2,
        "{log}"
    );
    env.assert_clean(&id);
}

#[test]
fn docker_volume_gets_the_image_content_and_tmpfs_driver_opts() {
    let env = Env::new();
    let td = env.taskdef(
        "fill",
        &format!(
            r#"{{"family":"fill","networkMode":"none","memory":"512","volumes":[
              {{"name":"etc","dockerVolumeConfiguration":{{"scope":"task","driver":"local"}}}},
              {{"name":"mem","dockerVolumeConfiguration":{{"scope":"task","driver":"local",
                 "driverOpts":{{"type":"tmpfs","device":"tmpfs","o":"size=4m"}}}}}}],
            "containerDefinitions":[{{"name":"app","image":"{BUSYBOX}",
              "mountPoints":[{{"sourceVolume":"etc","containerPath":"/etc"}},
                             {{"sourceVolume":"mem","containerPath":"/mem"}}],
              "command":["sh","-c","cat /etc/minifargate-marker; echo; busybox grep ' /mem ' /proc/mounts"]}}]}}"#
        ),
    );
    let out = env.run(&["run-task", "--task-definition", &td]);
    assert_eq!(out.status.code(), Some(0));
    let s = stdout(&out);
    // A new Docker volume is filled with what the image has at the mount path.
    assert!(s.contains("app | volumes\n"), "{s}");
    let line = s.lines().find(|l| l.contains(" /mem ")).unwrap();
    assert!(
        line.contains("tmpfs") && line.contains("size=4096k"),
        "{line}"
    );
    env.assert_clean(&env.last_task());
}

#[test]
fn killed_supervisor_leaves_no_volume_mounts_behind() {
    let env = Env::new();
    let td = env.taskdef(
        "killed",
        &format!(
            r#"{{"family":"killed","networkMode":"none","memory":"512","volumes":[
              {{"name":"mem","dockerVolumeConfiguration":{{"scope":"task",
                 "driverOpts":{{"type":"tmpfs","device":"tmpfs","o":"size=1m"}}}}}},
              {{"name":"scratch"}}],
            "containerDefinitions":[{{"name":"app","image":"{BUSYBOX}",
              "mountPoints":[{{"sourceVolume":"mem","containerPath":"/mem"}},
                             {{"sourceVolume":"scratch","containerPath":"/scratch"}}],
              "command":["sh","-c","echo up > /mem/x; echo up; sleep 1000"]}}]}}"#
        ),
    );
    let v = env.json(&["run-task", "--task-definition", &td, "--detach"]);
    let arn = v["tasks"][0]["taskArn"].as_str().unwrap();
    let id = arn.rsplit('/').next().unwrap().to_string();
    let log = env.task_dir(&id).join("logs/app.log");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&log).is_ok_and(|l| l.contains("up")) {
        assert!(
            std::time::Instant::now() < deadline,
            "the container never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let vols = env.task_dir(&id).join("volumes");
    let pid = std::fs::read_to_string(
        env.mf
            .run_root
            .join("tasks")
            .join(&id)
            .join("supervisor.pid"),
    )
    .unwrap();
    // In the supervisor's own mount namespace (src/supervisor/isolation/mountns.rs).
    let mountinfo = std::fs::read_to_string(format!("/proc/{}/mountinfo", pid.trim())).unwrap();
    assert!(
        mountinfo.contains(&vols.join("mem").display().to_string()),
        "the tmpfs volume is mounted in the supervisor's mount namespace"
    );
    let st = std::process::Command::new("kill")
        .args(["-KILL", pid.trim()])
        .status()
        .unwrap();
    assert!(st.success());
    std::thread::sleep(Duration::from_millis(200));
    // The next command notices the dead supervisor and cleans up, volumes too.
    let t = env.describe(&id);
    assert_eq!(t["lastStatus"], "STOPPED");
    assert!(
        t["stoppedReason"]
            .as_str()
            .unwrap()
            .contains("exited unexpectedly"),
        "{t:#}"
    );
    env.assert_clean(&id);
}

#[test]
fn volumes_example_runs_on_fargate_rules() {
    let env = Env::new();
    let example = format!(
        "file://{}",
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples/volumes.json")
            .display()
    );
    let out = env.run(&[
        "run-task",
        "--task-definition",
        &example,
        "--launch-type",
        "FARGATE",
    ]);
    let s = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{s}");
    assert!(s.contains("render | rendered"), "{s}");
    assert!(s.contains("app    | <h1>rendered at start</h1>"), "{s}");
    assert!(s.contains("/www/x: Read-only file system"), "{s}");
    assert!(s.contains("app    | nofile 4096"), "{s}");
    env.assert_clean(&env.last_task());
}

#[test]
fn bind_volume_gets_the_image_content_only_at_a_declared_volume() {
    let env = Env::new();
    // An image declaring VOLUME /seed, with content there and in /etc.
    let mut entries = busybox_entries("seeded");
    entries.extend([
        Entry::dir("seed"),
        Entry::file("seed/hello", "from the image\n"),
    ]);
    let layout_dir = tempfile::Builder::new()
        .prefix("mf-vol-layout-")
        .tempdir()
        .unwrap();
    let mut layout = Layout::new(layout_dir.path());
    let img = layout.add_image_with_config(
        "linux/amd64",
        &[Layer::new(Compression::Gzip, entries)],
        serde_json::json!({"Volumes": {"/seed": {}}}),
    );
    layout.tag_image("t", &img);
    env.reg
        .push(layout_dir.path(), "t", "docker/library/seeded:1");
    let td = env.taskdef(
        "seed",
        r#"{"family":"seed","networkMode":"none","memory":"512",
        "volumes":[{"name":"seed"},{"name":"conf"}],
        "containerDefinitions":[
        {"name":"first","image":"public.ecr.aws/docker/library/seeded:1","essential":false,
          "mountPoints":[{"sourceVolume":"seed","containerPath":"/seed"},
                         {"sourceVolume":"conf","containerPath":"/etc"}],
          "command":["sh","-c","cat /seed/hello; echo etc: $(ls /etc)"]},
        {"name":"second","image":"public.ecr.aws/docker/library/seeded:1",
          "dependsOn":[{"containerName":"first","condition":"SUCCESS"}],
          "mountPoints":[{"sourceVolume":"seed","containerPath":"/elsewhere"}],
          "command":["cat","/elsewhere/hello"]}]}"#,
    );
    let out = env.run(&["run-task", "--task-definition", &td]);
    let s = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{s}");
    // /seed is a declared VOLUME: its content is copied into the new volume, which the
    // second container then sees at another path. /etc is not: that volume gets none of
    // the image's files, only the task's hosts and resolv.conf mounted over it.
    assert!(s.contains("first  | from the image"), "{s}");
    assert!(s.contains("first  | etc: hosts resolv.conf\n"), "{s}");
    assert!(s.contains("second | from the image"), "{s}");
    env.assert_clean(&env.last_task());
}
