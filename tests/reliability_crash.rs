//! The crash matrix (issue 8): `kill -9` of the CLI during a pull and during run-task, of
//! the supervisor while PROVISIONING, PENDING (pulling), RUNNING, stopping and tearing
//! down, of a container's init, and a simulated reboot. After each, the next command
//! reconciles: the task is STOPPED with a reason saying what happened, nothing of it is
//! left on the host (mounts, processes, cgroups, netns, veth, lease, nft table),
//! `PRAGMA integrity_check` is ok and a new task runs.
//!
//! Phases are hit with real timing where it works (a throttling proxy in front of the
//! registry keeps a pull going; a container that ignores SIGTERM keeps a stop going), and
//! with `MINIFARGATE_TEST_PAUSE` (src/task/mod.rs) for the short windows: between the
//! CLI writing the task and starting its supervisor, the supervisor's network set up
//! before PENDING, its teardown, and its task STOPPED before it reported done.

use crate::common;

use common::cli::Mf;
use common::image::{Compression, Entry, Layer, busybox_entries};
use common::leaks::{
    assert_no_leaks, mounts_under, supervisors_of, task_cgroups, task_processes, wait_for,
};
use common::registry::{Registry, RegistryOpts};
use common::util::random_bytes;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const BUSYBOX: &str = "public.ecr.aws/docker/library/busybox:1.36";
/// Busybox plus an 8 MiB incompressible layer: ~16 s through the throttled proxy.
const SLOW: &str = "public.ecr.aws/slow/app:1";
const BIG_LAYER: usize = 8 << 20;
/// Bytes per second per connection while the proxy throttles.
const RATE: u64 = 512 << 10;

/// A TCP proxy in front of the registry that, while `throttle` is on, sends the
/// registry's answers at [`RATE`] bytes/s per connection.
struct SlowProxy {
    port: u16,
    throttle: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
}

impl SlowProxy {
    fn start(upstream: u16) -> SlowProxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let throttle = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let (t, s) = (throttle.clone(), sent.clone());
        std::thread::spawn(move || {
            for client in l.incoming().flatten() {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let (mut c_in, mut s_out) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c_in, &mut s_out);
                    let _ = s_out.shutdown(std::net::Shutdown::Write);
                });
                let (t, s) = (t.clone(), s.clone());
                std::thread::spawn(move || {
                    let (mut server, mut client) = (server, client);
                    let mut buf = [0u8; 16 << 10];
                    loop {
                        let n = match server.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if client.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        s.fetch_add(n as u64, Ordering::SeqCst);
                        if t.load(Ordering::SeqCst) {
                            std::thread::sleep(Duration::from_micros(n as u64 * 1_000_000 / RATE));
                        }
                    }
                    let _ = client.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        SlowProxy {
            port,
            throttle,
            sent,
        }
    }

    fn throttle(&self, on: bool) {
        self.throttle.store(on, Ordering::SeqCst);
    }

    fn sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }
}

/// A tmpfs mounted by the test (the run root of the reboot test), unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64m", "mf-test-run"])
            .arg(at)
            .status()
            .unwrap();
        assert!(st.success(), "mount tmpfs on {}", at.display());
        Tmpfs(at.to_path_buf())
    }

    /// What a reboot does to /run: everything in it is gone.
    fn lose_contents(&self) {
        let st = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(st.success(), "umount {}", self.0.display());
        let again = Tmpfs::mount(&self.0);
        std::mem::forget(again);
    }
}

impl Drop for Tmpfs {
    /// Unmounts, then removes the mount point and the test's dir it is in: the `Mf`, which
    /// drops first, could not delete them while the tmpfs was mounted there.
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
        let _ = std::fs::remove_dir(&self.0);
        if let Some(test_dir) = self.0.parent() {
            let _ = std::fs::remove_dir(test_dir);
        }
    }
}

/// Fields drop in order: the `Mf` (which kills and reconciles what a failed test left)
/// before the tmpfs its run root may be on.
struct Env {
    mf: Mf,
    _reg: Registry,
    proxy: SlowProxy,
    /// diffID of SLOW's big layer.
    big_layer: String,
    _run_tmpfs: Option<Tmpfs>,
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
        Self::with_run_root(|_| None)
    }

    fn with_run_root(setup: impl FnOnce(&Mf) -> Option<Tmpfs>) -> Env {
        let reg = Registry::start(RegistryOpts::default());
        let work = tempfile::Builder::new()
            .prefix("mf-crash-img-")
            .tempdir()
            .unwrap();
        let bb = Layer::new(Compression::Gzip, busybox_entries("crash"));
        common::push_image(
            &reg,
            work.path(),
            "docker/library/busybox:1.36",
            std::slice::from_ref(&bb),
        );
        let big = Layer::new(
            Compression::Gzip,
            vec![Entry::file("big", random_bytes(8, BIG_LAYER))],
        );
        let slow = common::push_image(&reg, work.path(), "slow/app:1", &[bb, big]);
        let proxy = SlowProxy::start(reg.port);
        let mut mf = Mf::new();
        mf.mirror_config("public.ecr.aws", &format!("127.0.0.1:{}", proxy.port), true);
        let tmpfs = setup(&mf);
        Env {
            mf,
            _reg: reg,
            proxy,
            big_layer: slow.layers[1].diff_id.clone(),
            _run_tmpfs: tmpfs,
        }
    }

    fn describe(&self, id: &str) -> Value {
        let v = self.json(&["describe-tasks", "--tasks", id]);
        assert_eq!(v["failures"], serde_json::json!([]));
        v["tasks"][0].clone()
    }

    fn wait_status(&self, id: &str, want: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let t = self.describe(id);
            if t["lastStatus"] == want {
                return t;
            }
            assert!(
                Instant::now() < deadline,
                "task {id} did not reach {want}: {t:#}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Ids of the tasks in the default cluster (any status), newest first.
    fn task_ids(&self) -> Vec<String> {
        let mut ids = Vec::new();
        for desired in ["RUNNING", "STOPPED"] {
            let v = self.json(&["list-tasks", "--desired-status", desired]);
            ids.extend(v["taskArns"].as_array().unwrap().iter().map(arn_id));
        }
        ids
    }

    /// A `file://` task definition: one essential container `app` running `cmd` with
    /// stopTimeout 2 s, in `mode`, with `extra` JSON fields on the container.
    fn taskdef(&self, family: &str, mode: &str, image: &str, cmd: &str, extra: &str) -> String {
        let extra = if extra.is_empty() {
            String::new()
        } else {
            format!(",{extra}")
        };
        self.mf.taskdef(
            family,
            &format!(
                r#"{{"family":"{family}","networkMode":"{mode}","containerDefinitions":[
                {{"name":"app","image":"{image}","memory":64,"stopTimeout":2,
                  "command":["sh","-c",{cmd:?}]{extra}}}]}}"#
            ),
        )
    }

    /// An attached `run-task` of `td` (its output discarded), still running.
    fn spawn_attached(&self, td: &str) -> Child {
        self.mf
            .cmd()
            .args(["run-task", "--task-definition", td])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap()
    }

    fn run_detached(&self, td: &str) -> String {
        let v = self.json(&["run-task", "--task-definition", td, "--detach"]);
        arn_id(&v["tasks"][0]["taskArn"])
    }

    fn supervisor_pid(&self, id: &str) -> i32 {
        let p = self
            .mf
            .run_root
            .join("tasks")
            .join(id)
            .join("supervisor.pid");
        read_pid(&p)
    }

    /// A task that ignores SIGTERM for nothing runs to RUNNING, stops cleanly and leaves
    /// nothing behind: the host is usable after the crash.
    fn assert_new_task_runs(&self, keep: &[&Path]) {
        let td = self.taskdef(
            "after",
            "awsvpc",
            BUSYBOX,
            "trap 'exit 0' TERM; while :; do sleep 1; done",
            "",
        );
        let id = self.run_detached(&td);
        self.wait_status(&id, "RUNNING", Duration::from_secs(60));
        let out = self.run(&["stop-task", "--task", &id]);
        assert!(out.status.success());
        let t = self.wait_status(&id, "STOPPED", Duration::from_secs(60));
        assert_eq!(t["stopCode"], "UserInitiated");
        assert_no_leaks(&self.mf, &[&id], keep);
    }
}

fn arn_id(v: &Value) -> String {
    v.as_str().unwrap().rsplit('/').next().unwrap().to_string()
}

fn read_pid(p: &Path) -> i32 {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
        .trim()
        .parse()
        .unwrap()
}

/// Waits for a pause file (`MINIFARGATE_TEST_PAUSE`) and returns the pid in it.
fn wait_paused(p: &Path) -> i32 {
    wait_for(&format!("{} to appear", p.display()), || p.exists());
    read_pid(p)
}

fn kill9(pid: i32) {
    let st = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success(), "kill -9 {pid}");
}

/// Until `pid` is gone and reaped (by init: supervisors outlive the CLI that started
/// them), so nothing can take a leftover of it for a live process's.
fn wait_dead(pid: i32) {
    wait_for(&format!("pid {pid} to be reaped"), || {
        !Path::new(&format!("/proc/{pid}")).exists()
    });
}

fn kill9_child(mut c: Child) {
    c.kill().unwrap();
    c.wait().unwrap();
}

fn assert_supervisor_died(t: &Value, pid: i32) {
    assert_eq!(t["lastStatus"], "STOPPED", "{t:#}");
    assert_eq!(t["desiredStatus"], "STOPPED");
    let reason = t["stoppedReason"].as_str().unwrap();
    assert!(
        reason.starts_with(&format!("Task supervisor (pid {pid}) exited unexpectedly")),
        "{reason}"
    );
    for c in t["containers"].as_array().unwrap() {
        assert_eq!(c["lastStatus"], "STOPPED", "{c:#}");
    }
}

#[test]
fn cli_killed_during_pull_leaves_no_partial_image() {
    let env = Env::new();
    env.proxy.throttle(true);
    let child = env.mf.cmd().args(["pull", SLOW]).spawn().unwrap();
    wait_for("the pull to transfer 1 MiB", || env.proxy.sent() > 1 << 20);
    kill9_child(child);
    // Nothing half-pulled is visible as complete.
    let images = env.mf.images();
    assert!(
        !images.iter().any(|i| i.to_string().contains("slow/app")),
        "{images:?}"
    );
    assert!(
        !env.mf.layer_dir(&env.big_layer).exists(),
        "the interrupted layer is in the cache as complete"
    );
    // The next pull starts over, completes and clears what the killed one left in tmp/.
    env.proxy.throttle(false);
    let v = env.mf.pull_json(SLOW, &[]);
    assert_eq!(v["layers"].as_array().unwrap().len(), 2, "{v:#}");
    env.mf.assert_tmp_empty();
    assert!(env.mf.layer_dir(&env.big_layer).is_dir());
    assert_no_leaks(&env.mf, &[], &[]);
    env.assert_new_task_runs(&[]);
}

#[test]
fn cli_killed_during_attached_run_task_leaves_the_task_to_its_supervisor() {
    let env = Env::new();
    env.proxy.throttle(true);
    let td = env.taskdef(
        "attached",
        "awsvpc",
        SLOW,
        "trap 'exit 0' TERM; while :; do sleep 1; done",
        "",
    );
    let child = env.spawn_attached(&td);
    wait_for("the supervisor's pull to start", || {
        env.proxy.sent() > 1 << 20
    });
    kill9_child(child);
    let id = env.task_ids().remove(0);
    // The supervisor owns the task (its own session): it carries on without the CLI,
    // like a container whose `docker run` was killed.
    let t = env.describe(&id);
    assert_eq!(t["lastStatus"], "PENDING", "{t:#}");
    env.proxy.throttle(false);
    env.wait_status(&id, "RUNNING", Duration::from_secs(60));
    let out = env.run(&["stop-task", "--task", &id]);
    assert!(out.status.success());
    let t = env.wait_status(&id, "STOPPED", Duration::from_secs(60));
    assert_eq!(t["stopCode"], "UserInitiated");
    assert_eq!(t["stoppedReason"], "Task stopped by user");
    assert_no_leaks(&env.mf, &[&id], &[]);
    env.assert_new_task_runs(&[]);
}

#[test]
fn cli_killed_before_it_started_the_supervisor() {
    common::cli::assert_test_hooks();
    let env = Env::new();
    let td = env.taskdef("launch", "awsvpc", BUSYBOX, "sleep 1000", "");
    let child = env
        .mf
        .cmd()
        .env("MINIFARGATE_TEST_PAUSE", "launch")
        .args(["run-task", "--task-definition", &td, "--detach"])
        .spawn()
        .unwrap();
    wait_paused(&env.mf.run_root.join("paused-launch"));
    let id = env.task_ids().remove(0);
    // While the CLI lives (holding the task's launch lock) the task is starting.
    assert_eq!(env.describe(&id)["lastStatus"], "PROVISIONING");
    // The supervisor the CLI started ahead waits for its task (launch::prestart_supervisor).
    let waiting = supervisors_of(&env.mf.root);
    assert_eq!(waiting.len(), 1, "one supervisor waits: {waiting:?}");
    // Told the task's id once the definition was read, it has made the task's cgroups
    // (executor::CgroupAhead::start_early).
    wait_for("the cgroups made ahead", || {
        !common::leaks::task_cgroups(&id).is_empty()
    });
    kill9_child(child);
    // Its pipe's end of file: it exits leaving nothing (the cgroups it made ahead go,
    // checked below).
    wait_dead(waiting[0]);
    assert!(
        !env.mf.run_root.join("tasks").join(&id).exists(),
        "the waiting supervisor made the task's run dir"
    );
    // Noticed by the next command at once, not after the 60 s start grace.
    let t = env.describe(&id);
    assert_eq!(t["lastStatus"], "STOPPED", "{t:#}");
    assert_eq!(t["stopCode"], "TaskFailedToStart");
    let reason = t["stoppedReason"].as_str().unwrap();
    assert!(
        reason.starts_with("Task supervisor was never started: the minifargate process"),
        "{reason}"
    );
    assert_no_leaks(&env.mf, &[&id], &[]);
    assert!(
        !env.mf
            .root
            .join("tasks")
            .join(&id)
            .join("launch.lock")
            .exists()
    );
    env.assert_new_task_runs(&[]);
}

#[test]
fn supervisor_killed_while_provisioning() {
    let mut env = Env::new();
    env.mf.set_env("MINIFARGATE_TEST_PAUSE", "network");
    let td = env.taskdef(
        "prov",
        "bridge",
        BUSYBOX,
        "sleep 1000",
        r#""portMappings":[{"containerPort":8080,"hostPort":0}]"#,
    );
    let id = env.run_detached(&td);
    let pid = wait_paused(
        &env.mf
            .run_root
            .join("tasks")
            .join(&id)
            .join("paused-network"),
    );
    env.mf.env.retain(|(k, _)| k != "MINIFARGATE_TEST_PAUSE");
    let t = env.describe(&id);
    assert_eq!(t["lastStatus"], "PROVISIONING", "{t:#}");
    // The phase is the one with a network and nothing else.
    assert!(Path::new(&format!("/run/netns/mfg-{id}")).exists());
    kill9(pid);
    wait_dead(pid);
    let t = env.describe(&id);
    assert_supervisor_died(&t, pid);
    assert_eq!(t["stopCode"], "TaskFailedToStart");
    assert_no_leaks(&env.mf, &[&id], &[]);
    env.assert_new_task_runs(&[]);
}

#[test]
fn supervisor_killed_while_pulling() {
    let env = Env::new();
    env.proxy.throttle(true);
    let td = env.taskdef("pulling", "awsvpc", SLOW, "sleep 1000", "");
    let id = env.run_detached(&td);
    wait_for("the supervisor's pull to start", || {
        env.proxy.sent() > 1 << 20
    });
    assert_eq!(env.describe(&id)["lastStatus"], "PENDING");
    let pid = env.supervisor_pid(&id);
    kill9(pid);
    wait_dead(pid);
    let t = env.describe(&id);
    assert_supervisor_died(&t, pid);
    assert_eq!(t["stopCode"], "TaskFailedToStart");
    assert!(!env.mf.layer_dir(&env.big_layer).exists());
    assert_no_leaks(&env.mf, &[&id], &[]);
    // The image pulls completely the next time.
    env.proxy.throttle(false);
    let td = env.taskdef(
        "pulled",
        "awsvpc",
        SLOW,
        "test -s /big && echo whole",
        r#""essential":true"#,
    );
    let out = env.run(&["run-task", "--task-definition", &td]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "app | whole");
    env.mf.assert_tmp_empty();
    env.assert_new_task_runs(&[]);
}

#[test]
fn supervisor_killed_while_running() {
    let env = Env::new();
    let td = env.mf.taskdef(
        "running",
        &format!(
            r#"{{"family":"running","networkMode":"bridge","containerDefinitions":[
            {{"name":"app","image":"{BUSYBOX}","memory":64,"command":["sleep","1000"],
              "portMappings":[{{"containerPort":8080,"hostPort":0}}]}},
            {{"name":"side","image":"{BUSYBOX}","memory":64,"essential":false,
              "command":["sleep","1000"]}}]}}"#
        ),
    );
    let id = env.run_detached(&td);
    env.wait_status(&id, "RUNNING", Duration::from_secs(60));
    let pid = env.supervisor_pid(&id);
    kill9(pid);
    wait_dead(pid);
    let t = env.describe(&id);
    assert_supervisor_died(&t, pid);
    assert_no_leaks(&env.mf, &[&id], &[]);
    env.assert_new_task_runs(&[]);
}

/// A command about one task (describe-tasks here) checks that task's supervisor only; a
/// command that lists tasks checks them all. Two supervisors are killed: describing the
/// first finishes it and leaves the second RUNNING in the store, list-tasks then finishes
/// the second, and nothing of either is left.
#[test]
fn describing_a_task_checks_its_supervisor_and_listing_checks_all() {
    let env = Env::new();
    let td = env.taskdef("two", "awsvpc", BUSYBOX, "sleep 1000", "");
    let a = env.run_detached(&td);
    let b = env.run_detached(&td);
    env.wait_status(&a, "RUNNING", Duration::from_secs(60));
    env.wait_status(&b, "RUNNING", Duration::from_secs(60));
    let (pa, pb) = (env.supervisor_pid(&a), env.supervisor_pid(&b));
    kill9(pa);
    kill9(pb);
    wait_dead(pa);
    wait_dead(pb);
    let ta = env.describe(&a);
    assert_supervisor_died(&ta, pa);
    let v = env.json(&[
        "list-tasks",
        "--desired-status",
        "RUNNING",
        "--query",
        "taskArns",
    ]);
    // list-tasks checked b before it answered: b is no longer among the RUNNING.
    assert!(
        v.as_array().unwrap().iter().all(|arn| arn_id(arn) != b),
        "{v:#}"
    );
    let tb = env.describe(&b);
    assert_supervisor_died(&tb, pb);
    assert_no_leaks(&env.mf, &[&a, &b], &[]);
}

/// RunTask does not check every running task's supervisor before it starts one (that
/// walk grows with the number of tasks): a dead task still holding the only address of
/// the subnet is found and finished by the new task's supervisor, which then gets it.
#[test]
fn a_dead_supervisors_address_goes_to_the_next_task() {
    let mut env = Env::new();
    // One task address: the test's own subnet cut to a /30 (network, gateway, task,
    // broadcast).
    let subnet = env.mf.env_value("MINIFARGATE_SUBNET").unwrap();
    let base = subnet.split('/').next().unwrap().to_string();
    env.mf.set_env("MINIFARGATE_SUBNET", format!("{base}/30"));
    let td = env.taskdef("onlyip", "awsvpc", BUSYBOX, "sleep 1000", "");
    let first = env.run_detached(&td);
    let t = env.wait_status(&first, "RUNNING", Duration::from_secs(60));
    let ip = t["containers"][0]["networkInterfaces"][0]["privateIpv4Address"].clone();
    assert!(ip.is_string(), "{t:#}");
    let pid = env.supervisor_pid(&first);
    kill9(pid);
    wait_dead(pid);
    // No other command in between: the next run-task's own supervisor must free it.
    let second = env.run_detached(&td);
    let t2 = env.wait_status(&second, "RUNNING", Duration::from_secs(60));
    assert_eq!(
        t2["containers"][0]["networkInterfaces"][0]["privateIpv4Address"], ip,
        "the second task has the address the dead one held"
    );
    assert_supervisor_died(&env.describe(&first), pid);
    let log = std::fs::read_to_string(
        env.mf
            .root
            .join("tasks")
            .join(&second)
            .join("supervisor.log"),
    )
    .unwrap();
    assert!(
        log.contains(&first) && log.contains("held what this task needs"),
        "{log}"
    );
    assert!(env.run(&["stop-task", "--task", &second]).status.success());
    env.wait_status(&second, "STOPPED", Duration::from_secs(60));
    assert_no_leaks(&env.mf, &[&first, &second], &[]);
}

#[test]
fn supervisor_killed_while_stopping() {
    let env = Env::new();
    // pid 1 ignores SIGTERM and the stopTimeout is long: the stop stays in progress.
    let td = env.mf.taskdef(
        "stopping",
        &format!(
            r#"{{"family":"stopping","networkMode":"awsvpc","containerDefinitions":[
            {{"name":"app","image":"{BUSYBOX}","memory":64,"stopTimeout":120,
              "command":["sh","-c","trap '' TERM; while :; do sleep 1; done"]}}]}}"#
        ),
    );
    let id = env.run_detached(&td);
    env.wait_status(&id, "RUNNING", Duration::from_secs(60));
    let out = env.run(&["stop-task", "--task", &id]);
    assert!(out.status.success());
    wait_for("the stop to begin", || {
        env.describe(&id)["desiredStatus"] == "STOPPED"
    });
    let t = env.describe(&id);
    assert_eq!(t["lastStatus"], "RUNNING", "{t:#}");
    assert!(!task_processes(&id).is_empty());
    let pid = env.supervisor_pid(&id);
    kill9(pid);
    wait_dead(pid);
    let t = env.describe(&id);
    assert_eq!(t["lastStatus"], "STOPPED", "{t:#}");
    // The stop the user asked for is what happened; the container says the rest.
    assert_eq!(t["stopCode"], "UserInitiated");
    assert_eq!(t["stoppedReason"], "Task stopped by user");
    let creason = t["containers"][0]["reason"].as_str().unwrap();
    assert!(
        creason.starts_with(&format!("Task supervisor (pid {pid}) exited unexpectedly")),
        "{creason}"
    );
    assert_no_leaks(&env.mf, &[&id], &[]);
    env.assert_new_task_runs(&[]);
}

#[test]
fn supervisor_killed_during_teardown() {
    let mut env = Env::new();
    env.mf.set_env("MINIFARGATE_TEST_PAUSE", "teardown");
    let td = env.taskdef(
        "teardown",
        "bridge",
        BUSYBOX,
        "trap 'exit 0' TERM; while :; do sleep 1; done",
        r#""portMappings":[{"containerPort":8080,"hostPort":0}]"#,
    );
    let id = env.run_detached(&td);
    env.mf.env.retain(|(k, _)| k != "MINIFARGATE_TEST_PAUSE");
    env.wait_status(&id, "RUNNING", Duration::from_secs(60));
    let out = env.run(&["stop-task", "--task", &id]);
    assert!(out.status.success());
    let pid = wait_paused(
        &env.mf
            .run_root
            .join("tasks")
            .join(&id)
            .join("paused-teardown"),
    );
    let t = env.describe(&id);
    assert_eq!(t["lastStatus"], "DEPROVISIONING", "{t:#}");
    assert_eq!(t["containers"][0]["exitCode"], 0);
    kill9(pid);
    wait_dead(pid);
    let t = env.describe(&id);
    assert_eq!(t["lastStatus"], "STOPPED", "{t:#}");
    assert_eq!(t["stopCode"], "UserInitiated");
    assert_eq!(t["containers"][0]["exitCode"], 0);
    assert_no_leaks(&env.mf, &[&id], &[]);
    env.assert_new_task_runs(&[]);
}

/// STOPPED means torn down: while the supervisor is held just after writing STOPPED,
/// nothing of the task is left on the host (its run dir included), and the attached
/// run-task has not returned: it waits for its supervisor to say it is done (or to end),
/// here until the supervisor is killed. Then it exits with the container's code.
#[test]
fn stopped_task_is_torn_down_and_attached_run_task_waits_for_its_supervisor() {
    let mut env = Env::new();
    env.mf.set_env("MINIFARGATE_TEST_PAUSE", "stopped");
    let td = env.taskdef("stopped", "awsvpc", BUSYBOX, "exit 3", "");
    let mut cli = env.spawn_attached(&td);
    env.mf.env.retain(|(k, _)| k != "MINIFARGATE_TEST_PAUSE");
    let tasks = env.mf.root.join("tasks");
    let mut paused = None;
    wait_for("the supervisor to pause after STOPPED", || {
        paused = std::fs::read_dir(&tasks)
            .into_iter()
            .flatten()
            .flatten()
            .find_map(|e| {
                let p = e.path().join("paused-stopped");
                p.exists()
                    .then(|| (e.file_name().to_string_lossy().into_owned(), p))
            });
        paused.is_some()
    });
    let (id, file) = paused.unwrap();
    let pid = read_pid(&file);
    let t = env.describe(&id);
    assert_eq!(t["lastStatus"], "STOPPED", "{t:#}");
    assert_eq!(t["containers"][0]["exitCode"], 3);
    let run_dir = env.mf.run_root.join("tasks").join(&id);
    assert!(
        !run_dir.exists(),
        "STOPPED with its run dir: {}",
        run_dir.display()
    );
    assert_no_leaks(&env.mf, &[&id], &[]);
    // The store has said STOPPED all along (it is polled every 25 ms).
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        cli.try_wait().unwrap().is_none(),
        "run-task returned before its supervisor was done"
    );
    kill9(pid);
    let code = cli.wait().unwrap().code();
    assert_eq!(code, Some(3));
    wait_dead(pid);
    let t = env.describe(&id);
    assert_eq!(t["lastStatus"], "STOPPED", "{t:#}");
    assert_eq!(t["stopCode"], "EssentialContainerExited");
    assert_no_leaks(&env.mf, &[&id], &[]);
}

#[test]
fn container_init_killed() {
    let env = Env::new();
    let td = env.taskdef(
        "init",
        "awsvpc",
        BUSYBOX,
        "sleep 1000",
        r#""linuxParameters":{"initProcessEnabled":true}"#,
    );
    let id = env.run_detached(&td);
    env.wait_status(&id, "RUNNING", Duration::from_secs(60));
    let v = env.json(&["inspect", &id, "--format", "json"]);
    let init = v["containers"][0]["hostPid"].as_i64().expect("hostPid") as i32;
    let comm = std::fs::read_to_string(format!("/proc/{init}/comm")).unwrap();
    assert!(
        comm.trim() == "init" || comm.starts_with("tini"),
        "pid 1 of the container is {comm}"
    );
    kill9(init);
    let t = env.wait_status(&id, "STOPPED", Duration::from_secs(30));
    assert_eq!(t["stopCode"], "EssentialContainerExited");
    assert_eq!(t["stoppedReason"], "Essential container in task exited");
    assert_eq!(t["containers"][0]["exitCode"], 137);
    assert_no_leaks(&env.mf, &[&id], &[]);
    env.assert_new_task_runs(&[]);
}

#[test]
fn simulated_reboot() {
    let env = Env::with_run_root(|mf| Some(Tmpfs::mount(&mf.run_root)));
    let run_root = env.mf.run_root.clone();
    let web = env.taskdef(
        "web",
        "bridge",
        BUSYBOX,
        "sleep 1000",
        r#""portMappings":[{"containerPort":8080,"hostPort":0}]"#,
    );
    let quiet = env.taskdef("quiet", "none", BUSYBOX, "sleep 1000", "");
    let ids = [env.run_detached(&web), env.run_detached(&quiet)];
    for id in &ids {
        env.wait_status(id, "RUNNING", Duration::from_secs(60));
    }
    // Power off: every process of the tasks dies at once...
    let mut pids: Vec<i32> = ids.iter().map(|id| env.supervisor_pid(id)).collect();
    for id in &ids {
        pids.extend(task_processes(id));
    }
    for &p in &pids {
        kill9(p);
    }
    for &p in &pids {
        wait_dead(p);
    }
    // ...and the run root (a tmpfs, like /run) comes back empty.
    env._run_tmpfs.as_ref().unwrap().lose_contents();
    assert!(std::fs::read_dir(&run_root).unwrap().next().is_none());
    for (id, pid) in ids.iter().zip(&pids) {
        let t = env.describe(id);
        assert_supervisor_died(&t, *pid);
    }
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    assert_no_leaks(&env.mf, &ids, &[&run_root]);
    env.assert_new_task_runs(&[&run_root]);
}

/// The run root removed under a running task (a test's cleanup once did it to a supervisor
/// handed its task as serve stopped): the network's state, with the task's record, and
/// the task's run dir are gone. Stopped then (SIGTERM, as systemd would), the supervisor still removes the
/// namespace and veth it made, by their names, and leaves nothing else behind.
#[test]
fn a_supervisor_whose_network_state_is_lost_tears_its_network_down_by_name() {
    let env = Env::new();
    let td = env.taskdef(
        "lost",
        "awsvpc",
        BUSYBOX,
        "trap 'exit 0' TERM; while :; do sleep 1; done",
        "",
    );
    let id = env.run_detached(&td);
    env.wait_status(&id, "RUNNING", Duration::from_secs(60));
    let pid = env.supervisor_pid(&id);
    let net = env.mf.network();
    let pin = Path::new("/run/netns").join(format!("mfg-{id}"));
    let veth = net.veth_name(&id);
    assert!(pin.exists() && netns::link_exists(&veth).unwrap());
    let state = env.mf.run_root.join("net").join(env.mf.bridge());
    std::fs::remove_dir_all(&state).unwrap();
    // Its run dir (socket, pid file) too.
    std::fs::remove_dir_all(env.mf.run_root.join("tasks").join(&id)).unwrap();
    let st = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    wait_dead(pid);
    assert!(!pin.exists(), "netns left behind: {}", pin.display());
    assert!(
        !netns::link_exists(&veth).unwrap(),
        "veth {veth} left behind"
    );
    assert!(
        !state.exists(),
        "the lost state was made again: {}",
        state.display()
    );
    let t = env.describe(&id);
    assert_eq!(t["lastStatus"], "STOPPED", "{t:#}");
    assert_no_leaks(&env.mf, &[&id], &[]);
    env.assert_new_task_runs(&[]);
}

/// The root removed under a supervisor after it read its task (as a test's cleanup once
/// did to one handed its task as serve stopped), while the task's wiring waits to make the
/// bridge and the nftables table (`MINIFARGATE_TEST_NETWORK_DELAY`): it makes neither (no
/// `system reset` of that root would find them: the root is gone), the task's namespace,
/// veth and lease go, and the supervisor exits without making a store again.
#[test]
fn a_supervisor_whose_root_goes_before_its_wiring_makes_no_bridge_or_table() {
    let mut env = Env::new();
    env.mf.set_env("MINIFARGATE_TEST_NETWORK_DELAY", "3000");
    let td = env.taskdef("rootgone", "awsvpc", BUSYBOX, "sleep 1000", "");
    let net = env.mf.network();
    let bridge = env.mf.bridge();
    let table_exists = || {
        std::process::Command::new("nft")
            .args(["list", "table", "ip", net.nft_table()])
            .output()
            .expect("run nft")
            .status
            .success()
    };
    assert!(!netns::link_exists(&bridge).unwrap() && !table_exists());
    let id = env.run_detached(&td);
    // PENDING: the namespace is pinned and the wiring is waiting.
    env.wait_status(&id, "PENDING", Duration::from_secs(30));
    let pid = env.supervisor_pid(&id);
    let pin = Path::new("/run/netns").join(format!("mfg-{id}"));
    assert!(pin.exists(), "the task's namespace is pinned");
    assert!(
        !netns::link_exists(&bridge).unwrap(),
        "bridge made before the wiring"
    );
    // (The pull beside the wiring may still write under it: removed until it is gone.)
    wait_for("the root to be removed", || {
        let _ = std::fs::remove_dir_all(&env.mf.root);
        !env.mf.root.exists()
    });
    wait_dead(pid);
    assert!(
        !netns::link_exists(&bridge).unwrap(),
        "bridge {bridge} made for a root that is gone"
    );
    assert!(
        !table_exists(),
        "table ip {} made for a root that is gone",
        net.nft_table()
    );
    assert!(!pin.exists(), "netns left behind: {}", pin.display());
    let veth = net.veth_name(&id);
    wait_for(&format!("veth {veth} to go"), || {
        !netns::link_exists(&veth).unwrap()
    });
    wait_for("the task's lease to be released", || {
        let _ = net.reap_released();
        net.leased_ips().unwrap().is_empty() && net.tasks().unwrap().is_empty()
    });
    assert!(task_processes(&id).is_empty(), "processes of {id} left");
    assert_eq!(task_cgroups(&id), Vec::<String>::new());
    let left = mounts_under(&env.mf, &[]);
    assert!(left.is_empty(), "mounts left behind: {left:#?}");
    assert!(
        !env.mf.root.join("state.db").exists(),
        "a store was made again under the removed root"
    );
}

/// A supervisor for a root with no state (removed since it was started, as a test's
/// cleanup once did to one handed its task as serve stopped; or the wrong `--root`) says
/// so and makes nothing: no store, no run dir.
#[test]
fn a_supervisor_for_a_root_without_state_makes_nothing() {
    let mf = Mf::new();
    let id = "0123456789abcdef0123456789abcdef";
    let out = mf.run(&["supervise", "--task-id", id]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "task {id}: there is no state under {}",
            mf.root.display()
        )),
        "{err}"
    );
    assert!(!mf.root.join("state.db").exists(), "a store was made");
    let run_dir = mf.run_root.join("tasks").join(id);
    assert!(!run_dir.exists(), "{} was made", run_dir.display());
}
