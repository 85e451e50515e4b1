//! Root integration tests of `exec` and `inspect` on real tasks: a real registry (served
//! as public.ecr.aws through a mirror), the real kernel, the real binary and supervisors.

use crate::common;

use common::busybox_task_env;
use common::cli::Mf;
use common::image::{Compression, busybox_layer};
use common::registry::Registry;
use serde_json::Value;
use std::io::Write;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

const BUSYBOX: &str = "public.ecr.aws/docker/library/busybox:1.36";

/// A private root, run root and registry; on drop, kills any supervisor still running
/// (by the pid it recorded) and lets minifargate clean up after it.
struct Env {
    mf: Mf,
    _reg: Registry,
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
        let (mf, reg) = busybox_task_env(busybox_layer(Compression::Gzip, "exec"));
        Env { mf, _reg: reg }
    }

    fn describe(&self, id: &str) -> Value {
        self.json(&["describe-tasks", "--tasks", id])["tasks"][0].clone()
    }

    /// Starts `taskdef` detached and waits until the task and every essential container
    /// run; returns the task id.
    fn start(&self, name: &str, taskdef: &str) -> String {
        let td = self.mf.taskdef(name, taskdef);
        let v = self.json(&["run-task", "--task-definition", &td, "--detach"]);
        let arn = v["tasks"][0]["taskArn"].as_str().unwrap();
        let id = arn.rsplit('/').next().unwrap().to_string();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let t = self.describe(&id);
            let up = t["containers"]
                .as_array()
                .unwrap()
                .iter()
                .all(|c| c["lastStatus"] == "RUNNING" || c["exitCode"].is_number());
            if t["lastStatus"] == "RUNNING" && up {
                return id;
            }
            assert!(
                Instant::now() < deadline,
                "task did not start in 30 s: {t:#}\nits supervisor log:\n{}",
                std::fs::read_to_string(
                    self.mf.root.join("tasks").join(&id).join("supervisor.log")
                )
                .unwrap_or_else(|e| format!("(unreadable: {e})"))
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_stopped(&self, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let t = self.describe(id);
            if t["lastStatus"] == "STOPPED" {
                return t;
            }
            assert!(Instant::now() < deadline, "task {id} did not stop: {t:#}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `minifargate exec` with `input` on stdin.
    fn exec_with_input(&self, args: &[&str], input: &[u8]) -> Output {
        let mut child = self
            .mf
            .cmd()
            .arg("exec")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        let out = child.wait_with_output().unwrap();
        eprintln!(
            "$ minifargate exec {}\n  exit: {}\n  stdout: {}\n  stderr: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout).trim_end(),
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
        out
    }

    /// `minifargate exec … -- sleep <n>` left running; returns the CLI and the host pid
    /// of the sleep (the CLI's child: the runtime makes the exec'd process its child).
    // The child is handed to the caller, who waits for it (clippy cannot see that).
    #[allow(clippy::zombie_processes)]
    fn exec_sleeper(&self, id: &str, container: &str, secs: &str) -> (Child, i32) {
        let mut child = self
            .mf
            .cmd()
            .args(["exec", id, "--container", container, "--", "sleep", secs])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(pid) = children_of(child.id() as i32)
                .into_iter()
                .find(|p| cmdline(*p) == ["sleep", secs])
            {
                return (child, pid);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("exec'd sleep {secs} never showed up");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn children_of(ppid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            continue;
        };
        if rest.split(' ').nth(1).and_then(|p| p.parse().ok()) == Some(ppid) {
            out.push(pid);
        }
    }
    out
}

fn cmdline(pid: i32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// The process is gone (or a zombie nobody reaped yet).
fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s.rfind(')').and_then(|i| s.get(i + 2..i + 3)) == Some("Z"),
    }
}

fn wait_gone(pid: i32, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !gone(pid) {
        assert!(
            Instant::now() < deadline,
            "{what} (pid {pid}) is still alive"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn two_containers() -> String {
    format!(
        r#"{{"family":"pair","networkMode":"awsvpc","cpu":"256","memory":"512",
        "containerDefinitions":[
        {{"name":"app","image":"{BUSYBOX}","essential":true,"memory":64,"stopTimeout":2,
          "user":"1000:1000","workingDirectory":"/tmp",
          "environment":[{{"name":"GREETING","value":"hello from the taskdef"}}],
          "command":["sh","-c","busybox hostname; exec sleep 1000"]}},
        {{"name":"side","image":"{BUSYBOX}","essential":true,"memory":32,"stopTimeout":2,
          "command":["sleep","1000"]}},
        {{"name":"once","image":"{BUSYBOX}","essential":false,"command":["true"]}}]}}"#
    )
}

#[test]
fn exec_runs_in_the_container_and_returns_its_exit_code() {
    let env = Env::new();
    let id = env.start("pair", &two_containers());

    // Three containers: --container is required, and the error names them.
    let out = env.run(&["exec", &id, "--", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("has 3 containers (app, side, once): choose one with --container"),
        "{}",
        stderr(&out)
    );
    let out = env.run(&["exec", &id, "--container", "db", "--", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no container named \"db\" (its containers: app, side, once)"),
        "{}",
        stderr(&out)
    );
    // A container that is not running.
    let out = env.run(&["exec", &id, "--container", "once", "--", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("container once of task")
            && stderr(&out).contains("is STOPPED (exit code 0): exec needs a RUNNING container"),
        "{}",
        stderr(&out)
    );

    // The container's view: its user, cwd, env, hostname.
    let app = |cmd: &[&str]| {
        let mut args = vec![id.as_str(), "--container", "app", "--"];
        args.extend_from_slice(cmd);
        env.run(
            &["exec"]
                .iter()
                .chain(args.iter())
                .copied()
                .collect::<Vec<_>>(),
        )
    };
    let out = app(&["busybox", "id"]);
    assert!(out.status.success());
    assert!(
        stdout(&out).starts_with("uid=1000 gid=1000"),
        "{}",
        stdout(&out)
    );
    let out = app(&["sh", "-c", "pwd; echo \"$GREETING\"; echo \"$AWS_REGION\""]);
    assert_eq!(stdout(&out), "/tmp\nhello from the taskdef\nus-east-1\n");
    let out = app(&["busybox", "hostname"]);
    let hostname = stdout(&out);
    let logged = env.run(&["logs", &id, "--container", "app"]);
    assert_eq!(stdout(&logged), hostname, "exec and pid 1 see one hostname");
    assert_ne!(
        hostname.trim(),
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap()
            .trim()
    );
    // Its filesystem: the image's marker file, not the host's /etc.
    let out = app(&["cat", "/etc/minifargate-marker"]);
    assert_eq!(stdout(&out), "exec");
    // Its own pid namespace: pid 1 is the container's command.
    let out = app(&["cat", "/proc/1/cmdline"]);
    assert_eq!(stdout(&out), "sleep\x001000\x00");
    // --user, --env, --workdir.
    let out = env.run(&[
        "exec",
        &id,
        "--container",
        "app",
        "--user",
        "0",
        "-e",
        "X=1",
        "-w",
        "/",
        "--",
        "sh",
        "-c",
        "busybox id -u; echo $X; pwd",
    ]);
    assert_eq!(stdout(&out), "0\n1\n/\n");

    // Exit codes: the command's, 127 not found, 126 not executable, 128+N on a signal.
    assert_eq!(app(&["sh", "-c", "exit 7"]).status.code(), Some(7));
    let out = app(&["no-such-command"]);
    assert_eq!(out.status.code(), Some(127));
    assert!(
        stderr(&out).contains("executable \"no-such-command\" not found in PATH"),
        "{}",
        stderr(&out)
    );
    let out = app(&["/etc/minifargate-marker"]);
    assert_eq!(out.status.code(), Some(126), "{}", stderr(&out));
    assert_eq!(app(&["sh", "-c", "kill -9 $$"]).status.code(), Some(137));
    // Output on both streams.
    let out = app(&["sh", "-c", "echo out; echo err >&2"]);
    assert_eq!(
        (stdout(&out), stderr(&out)),
        ("out\n".into(), "err\n".into())
    );

    // stdin only with --interactive.
    let out = env.exec_with_input(
        &[&id, "--container", "side", "--interactive", "--", "cat"],
        b"line one\nline two\n",
    );
    assert!(out.status.success());
    assert_eq!(stdout(&out), "line one\nline two\n");
    let out = env.exec_with_input(&[&id, "--container", "side", "--", "cat"], b"ignored\n");
    assert!(out.status.success());
    assert_eq!(stdout(&out), "");

    // --tty: the command runs on a pseudo-terminal.
    let out = env.run(&[
        "exec",
        &id,
        "--container",
        "side",
        "--tty",
        "--",
        "sh",
        "-c",
        "busybox tty",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("/dev/pts/"), "{}", stdout(&out));
    // From a terminal (util-linux `script` gives the CLI one): the pty gets its size, and
    // input typed there reaches the command.
    let mut cmd = env.mf.cmd();
    cmd.args(["exec", &id, "--container", "side", "-it", "--", "sh", "-c"])
        .arg("busybox stty size; read line; echo got $line");
    let shell_line = format!(
        "stty rows 33 cols 101; {}",
        std::iter::once(cmd.get_program())
            .chain(cmd.get_args())
            .map(|a| format!("'{}'", a.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut script = std::process::Command::new("script");
    script
        .args(["-qec", &shell_line, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => script.env(k, v),
            None => script.env_remove(k),
        };
    }
    let mut child = script.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    stdin.write_all(b"typed\r").unwrap();
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    let text = stdout(&out);
    assert!(out.status.success(), "{text} {}", stderr(&out));
    assert!(text.contains("33 101"), "{text:?}");
    assert!(text.contains("got typed"), "{text:?}");

    env.run(&["stop-task", "--task", &id]);
    env.wait_stopped(&id);
}

#[test]
fn exec_process_lives_in_the_container_cgroup_and_dies_with_the_exec_or_the_task() {
    let env = Env::new();
    let id = env.start("pair", &two_containers());
    let rid = format!("{id}-1");

    // In the container's cgroups (every v1 controller and v2), exactly as its pid 1.
    let (mut cli, pid) = env.exec_sleeper(&id, "side", "4242");
    let want = format!("/minifargate/{id}/{rid}");
    let side_pid1 = all_pids()
        .into_iter()
        .find(|p| {
            *p != pid
                && cmdline(*p) == ["sleep", "1000"]
                && std::fs::read_to_string(format!("/proc/{p}/cgroup"))
                    .is_ok_and(|c| c.contains(&format!("{want}\n")))
        })
        .expect("pid 1 of container side");
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert_eq!(
        cg,
        std::fs::read_to_string(format!("/proc/{side_pid1}/cgroup")).unwrap()
    );
    if cg.starts_with("0::") && cg.lines().count() == 1 {
        // A pure cgroup v2 host (scripts/vm-cgroup2): one unified line.
        assert_eq!(cg, format!("0::{want}\n"));
    } else {
        for ctrl in ["cpu", "memory", "pids"] {
            assert!(cg.contains(&format!(":{ctrl}:{want}\n")), "{ctrl}: {cg}");
        }
    }
    // The exec'd process shares the container's namespaces.
    for ns in ["mnt", "pid", "net", "uts", "ipc", "cgroup"] {
        assert_eq!(
            std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap(),
            std::fs::read_link(format!("/proc/{side_pid1}/ns/{ns}")).unwrap(),
            "{ns}"
        );
    }

    // Killing the exec (the CLI) kills the exec'd process.
    cli.kill().unwrap();
    let _ = cli.wait();
    wait_gone(pid, "exec'd sleep after its CLI was killed");

    // Stopping the task kills an exec'd process too, and the exec returns.
    let (cli, pid) = env.exec_sleeper(&id, "side", "4343");
    env.run(&["stop-task", "--task", &id]);
    let t = env.wait_stopped(&id);
    wait_gone(pid, "exec'd sleep after the task stopped");
    let out = cli.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(137), "{out:?}");
    for w in t["minifargateWarnings"].as_array().into_iter().flatten() {
        assert!(!w.as_str().unwrap().starts_with("teardown"), "{w}");
    }
    for entry in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let cg = entry.path().join("minifargate").join(&id);
        assert!(!cg.exists(), "cgroup left behind: {}", cg.display());
    }

    // A stopped task, an unknown task.
    let out = env.run(&["exec", &id, "--container", "side", "--", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!(
            "task {id} is STOPPED (Task stopped by user): exec needs a RUNNING task"
        )),
        "{}",
        stderr(&out)
    );
    let out = env.run(&["exec", "0123456789abcdef0123456789abcdef", "--", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("task 0123456789abcdef0123456789abcdef not found"),
        "{}",
        stderr(&out)
    );
    let out = env.run(&["inspect", "0123456789abcdef0123456789abcdef"]);
    assert_eq!(out.status.code(), Some(1));
}

fn all_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
        .collect()
}

#[test]
fn inspect_shows_shared_and_own_namespaces_and_the_limits() {
    let env = Env::new();
    let id = env.start("pair", &two_containers());
    // `once` runs `true`: RUNNING is enough for `start`, but here it must have exited.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !env.describe(&id)["containers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["name"] == "once" && c["exitCode"].is_number())
    {
        assert!(Instant::now() < deadline, "container once did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
    let v = env.json(&["inspect", &id, "--format", "json"]);
    let containers = v["containers"].as_array().unwrap();
    let find = |name: &str| containers.iter().find(|c| c["name"] == name).unwrap();
    let (app, side, once) = (find("app"), find("side"), find("once"));
    assert!(once["hostPid"].is_null(), "exited container has no pid");
    let ns = |c: &Value, kind: &str| {
        c["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["type"] == kind)
            .unwrap_or_else(|| panic!("{kind} missing: {c:#}"))
            .clone()
    };
    // One network namespace for the task; own mount, pid, ipc, uts namespaces.
    assert_eq!(ns(app, "net")["inode"], ns(side, "net")["inode"]);
    assert_eq!(ns(app, "net")["scope"], "task");
    assert_eq!(ns(app, "net")["sharedWith"], serde_json::json!(["side"]));
    assert_eq!(v["network"]["netnsInode"], ns(app, "net")["inode"]);
    for kind in ["mnt", "pid", "ipc", "uts"] {
        assert_ne!(ns(app, kind)["inode"], ns(side, kind)["inode"], "{kind}");
        assert_eq!(ns(app, kind)["scope"], "own", "{kind}");
    }
    // Without an id pool, the host's user namespace; with one (the CI run with
    // MINIFARGATE_TEST_USERNS), the task's, which both containers share.
    let want = match env.mf.env_value("MINIFARGATE_USERNS").as_deref() {
        Some("on" | "auto") => "task",
        _ => "host",
    };
    assert_eq!(ns(app, "user")["scope"], want);
    // The pid on the host is real: its ns links match.
    let pid = app["hostPid"].as_i64().unwrap();
    let link = std::fs::read_link(format!("/proc/{pid}/ns/mnt")).unwrap();
    assert_eq!(
        link.to_string_lossy(),
        format!("mnt:[{}]", ns(app, "mnt")["inode"])
    );

    // Memory limits: the container's 64 MiB, the task's 512 MiB.
    let file = |cgroups: &Value, f: &str| -> Option<String> {
        cgroups
            .as_array()
            .unwrap()
            .iter()
            .find_map(|c| c["files"][f].as_str().map(str::to_string))
    };
    let v1 = std::path::Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists();
    let (limit, cpu) = if v1 {
        ("memory.limit_in_bytes", "cpu.cfs_quota_us")
    } else {
        ("memory.max", "cpu.max")
    };
    assert_eq!(
        file(&app["cgroups"], limit).as_deref(),
        Some((64u64 << 20).to_string().as_str())
    );
    assert_eq!(
        file(&side["cgroups"], limit).as_deref(),
        Some((32u64 << 20).to_string().as_str())
    );
    assert_eq!(
        file(&v["taskCgroups"], limit).as_deref(),
        Some((512u64 << 20).to_string().as_str())
    );
    // 256 cpu units: a quarter of a CPU.
    let quota = file(&v["taskCgroups"], cpu).unwrap();
    assert!(quota.starts_with("25000"), "{quota}");
    assert!(
        app["cgroups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["path"] == format!("/minifargate/{id}/{id}-0"))
    );

    // The overlay rootfs with its image layer, Docker's capabilities, seccomp, user.
    let rootfs = &app["rootfs"];
    assert_eq!(rootfs["fsType"], "overlay", "{rootfs:#}");
    assert_eq!(
        rootfs["lowerdirs"].as_array().unwrap().len(),
        1,
        "{rootfs:#}"
    );
    assert!(rootfs["upperdir"].is_string(), "{rootfs:#}");
    let p = &side["process"];
    assert_eq!(p["uid"], 0);
    assert_eq!(p["user"], "root");
    assert_eq!(p["seccomp"], "filter");
    let caps = p["capabilities"]["effective"].as_array().unwrap();
    assert!(caps.contains(&serde_json::json!("CAP_NET_BIND_SERVICE")));
    assert!(!caps.contains(&serde_json::json!("CAP_SYS_ADMIN")));
    assert_eq!(app["process"]["uid"], 1000);
    // Loopback inside the task's namespace.
    let lo = v["network"]["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "lo")
        .cloned()
        .expect("lo in the task's netns");
    assert!(
        lo["addresses"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("127.0.0.1/8")),
        "{lo:#}"
    );

    // The text view says the same in words.
    let out = env.run(&["inspect", &id]);
    assert!(out.status.success());
    let text = stdout(&out);
    eprintln!("{text}");
    assert!(text.contains("Container app (RUNNING"), "{text}");
    assert!(text.contains("task's, shared with side"), "{text}");
    assert!(
        // awsvpc: the hostname is the task's private DNS name, as on Fargate.
        text.contains("own (hostname ip-10-"),
        "{text}"
    );
    assert!(text.contains("64.0 MiB"), "{text}");
    assert!(text.contains("512.0 MiB"), "{text}");
    assert!(
        text.contains("lowerdirs (1, read-only image layers"),
        "{text}"
    );

    env.run(&["stop-task", "--task", &id]);
    env.wait_stopped(&id);
    // A stopped task: the record, no /proc view.
    let out = env.run(&["inspect", &id]);
    assert!(out.status.success());
    assert!(stdout(&out).contains("not running: nothing to read in /proc"));
}
