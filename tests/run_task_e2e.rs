//! Root integration tests of run-task end to end: a real registry (served as
//! public.ecr.aws through a mirror), the real kernel, the real binary and its supervisors.

use crate::common;

use common::busybox_task_env;
use common::cli::Mf;
use common::image::{Compression, busybox_layer};
use common::registry::Registry;
use serde_json::Value;
use std::path::Path;
use std::process::Output;
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
        let (mf, reg) = busybox_task_env(busybox_layer(Compression::Gzip, "run-task"));
        Env { mf, _reg: reg }
    }

    fn describe(&self, id: &str) -> Value {
        let v = self.json(&["describe-tasks", "--tasks", id]);
        assert_eq!(v["failures"], serde_json::json!([]));
        v["tasks"][0].clone()
    }

    /// The ids of every task in the default cluster with this desired status.
    fn task_ids(&self, desired: &str) -> Vec<String> {
        let v = self.json(&["list-tasks", "--desired-status", desired]);
        v["taskArns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().rsplit('/').next().unwrap().to_string())
            .collect()
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

    fn supervisor_pid(&self, id: &str) -> Option<i32> {
        let p = self
            .mf
            .run_root
            .join("tasks")
            .join(id)
            .join("supervisor.pid");
        std::fs::read_to_string(p).ok()?.trim().parse().ok()
    }

    /// Sends signal `sig` (`kill`'s name for it: KILL, TERM) to task `id`'s supervisor;
    /// returns its pid.
    fn signal_supervisor(&self, id: &str, sig: &str) -> i32 {
        let pid = self.supervisor_pid(id).expect("supervisor pid file");
        let status = std::process::Command::new("kill")
            .args([format!("-{sig}"), pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{sig} {pid}");
        pid
    }

    /// Waits (10 s at most) until task `id`'s supervisor is gone: its run dir (with the pid
    /// file) goes before it writes STOPPED; a dead one's goes at the next reconcile.
    fn wait_supervisor_gone(&self, id: &str) {
        let run_dir = self.mf.run_root.join("tasks").join(id);
        let deadline = Instant::now() + Duration::from_secs(10);
        while (self.supervisor_pid(id).is_some() || run_dir.exists()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Nothing of task `id` is left: no mounts, cgroups, run dir or supervisor.
    fn assert_clean(&self, id: &str) {
        let left = common::leaks::task_mount_lines(&self.mf);
        assert!(left.is_empty(), "mounts left behind: {left:#?}");
        for entry in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
            let cg = entry.path().join("minifargate").join(id);
            assert!(!cg.exists(), "cgroup left behind: {}", cg.display());
        }
        let run_dir = self.mf.run_root.join("tasks").join(id);
        assert!(
            !run_dir.exists(),
            "run dir left behind: {}",
            run_dir.display()
        );
        let ns = Path::new("/run/netns").join(format!("mfg-{id}"));
        assert!(!ns.exists(), "netns left behind: {}", ns.display());
        // The containers' scratch dirs (upper, work) are deleted right after the task is
        // reported done; only the logs stay.
        let task_dir = self.mf.root.join("tasks").join(id);
        let scratch = || -> Vec<String> {
            let Ok(d) = std::fs::read_dir(&task_dir) else {
                return Vec::new();
            };
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| {
                    let idx = n
                        .strip_prefix('.')
                        .and_then(|n| n.strip_suffix(".removing"))
                        .unwrap_or(n);
                    idx.strip_prefix('c')
                        .is_some_and(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()))
                })
                .collect()
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !scratch().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(scratch(), Vec::<String>::new(), "in {}", task_dir.display());
        let t = self.describe(id);
        for w in t["minifargateWarnings"].as_array().into_iter().flatten() {
            assert!(!w.as_str().unwrap().starts_with("teardown"), "{w}");
        }
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The id of the first task in a RunTask response.
fn first_task_id(v: &Value) -> String {
    let arn = v["tasks"][0]["taskArn"].as_str().expect("a task ARN");
    arn.rsplit('/').next().unwrap().to_string()
}

fn assert_arn(arn: &str, id: &str) {
    let prefix = "arn:aws:ecs:us-east-1:000000000000:task/default/";
    assert_eq!(arn, format!("{prefix}{id}"));
    assert_eq!(id.len(), 32);
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
}

#[test]
fn hello_runs_attached_with_prefixed_output_and_exit_code() {
    let env = Env::new();
    let hello = format!(
        "file://{}",
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples/hello.json")
            .display()
    );
    let out = env.run(&["run-task", "--task-definition", &hello]);
    assert!(out.status.success());
    assert_eq!(stdout(&out), "hello | Hello from minifargate\n");

    // The exit code is the essential container's.
    let out = env.run(&[
        "run-task",
        "--task-definition",
        "hello",
        "--overrides",
        r#"{"containerOverrides":[{"name":"hello","command":["sh","-c","echo out; echo err >&2; exit 3"]}]}"#,
    ]);
    assert_eq!(out.status.code(), Some(3));
    let s = stdout(&out);
    assert!(
        s.contains("hello | out\n") && s.contains("hello | err\n"),
        "{s}"
    );

    let ids = env.task_ids("STOPPED");
    assert_eq!(ids.len(), 2);
    for id in &ids {
        env.assert_clean(id);
    }
    // Newest first: the one that exited 3.
    let t = env.describe(&ids[0]);
    assert_arn(t["taskArn"].as_str().unwrap(), &ids[0]);
    assert_eq!(
        t["clusterArn"],
        "arn:aws:ecs:us-east-1:000000000000:cluster/default"
    );
    assert_eq!(
        t["taskDefinitionArn"],
        "arn:aws:ecs:us-east-1:000000000000:task-definition/hello:1"
    );
    assert_eq!(t["lastStatus"], "STOPPED");
    assert_eq!(t["desiredStatus"], "STOPPED");
    assert_eq!(t["launchType"], "FARGATE");
    assert_eq!(t["cpu"], "256");
    assert_eq!(t["memory"], "512");
    assert_eq!(t["stopCode"], "EssentialContainerExited");
    assert_eq!(t["stoppedReason"], "Essential container in task exited");
    for k in [
        "createdAt",
        "pullStartedAt",
        "pullStoppedAt",
        "startedAt",
        "stoppingAt",
        "executionStoppedAt",
        "stoppedAt",
    ] {
        assert!(t[k].is_string(), "{k} missing: {t:#}");
    }
    assert_eq!(
        t["overrides"]["containerOverrides"][0]["command"][2],
        "echo out; echo err >&2; exit 3"
    );
    let c = &t["containers"][0];
    assert_eq!(c["name"], "hello");
    assert_eq!(c["image"], BUSYBOX);
    assert_eq!(c["lastStatus"], "STOPPED");
    assert_eq!(c["exitCode"], 3);
    assert_eq!(c["runtimeId"], format!("{}-0", ids[0]));
    assert!(c["imageDigest"].as_str().unwrap().starts_with("sha256:"));
    assert!(c["containerArn"].as_str().unwrap().starts_with(&format!(
        "arn:aws:ecs:us-east-1:000000000000:container/default/{}/",
        ids[0]
    )));
    assert!(c.get("reason").is_none(), "{c:#}");
    // awsvpc: the task had its ENI, deleted when it stopped; nothing is emulated.
    assert_eq!(t["attachments"][0]["type"], "ElasticNetworkInterface");
    assert_eq!(t["attachments"][0]["status"], "DELETED");
    assert!(t.get("minifargateWarnings").is_none(), "{t:#}");

    // Unknown ids are failures, as in ECS.
    let v = env.json(&[
        "describe-tasks",
        "--tasks",
        "0123456789abcdef0123456789abcdef",
    ]);
    assert_eq!(v["tasks"], serde_json::json!([]));
    assert_eq!(v["failures"][0]["reason"], "MISSING");

    // The output stays readable after the task stopped.
    let out = env.run(&["logs", &ids[0]]);
    assert_eq!(stdout(&out).lines().count(), 2, "{}", stdout(&out));
}

#[test]
fn essential_exit_stops_the_sidecar_with_sigkill_after_stop_timeout() {
    let env = Env::new();
    let td = env.taskdef(
        "pair",
        &format!(
            r#"{{"family":"pair","networkMode":"none","containerDefinitions":[
            {{"name":"app","image":"{BUSYBOX}","memory":64,"essential":true,
              "command":["sh","-c","sleep 1; echo app done"]}},
            {{"name":"sidecar","image":"{BUSYBOX}","memory":64,"essential":false,
              "stopTimeout":2,"command":["sleep","1000"]}}]}}"#
        ),
    );
    let started = Instant::now();
    let out = env.run(&["run-task", "--task-definition", &td]);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stdout(&out).contains("app     | app done"),
        "{}",
        stdout(&out)
    );
    // sleep as pid 1 ignores SIGTERM: SIGKILL comes after stopTimeout (2 s).
    assert!(took >= Duration::from_secs(3), "{took:?}");
    let id = &env.task_ids("STOPPED")[0];
    let t = env.describe(id);
    assert_eq!(t["stopCode"], "EssentialContainerExited");
    assert_eq!(t["stoppedReason"], "Essential container in task exited");
    assert_eq!(t["launchType"], "EC2");
    assert_eq!(t["containers"][0]["exitCode"], 0);
    assert_eq!(t["containers"][1]["name"], "sidecar");
    assert_eq!(t["containers"][1]["lastStatus"], "STOPPED");
    assert_eq!(t["containers"][1]["exitCode"], 137);
    env.assert_clean(id);
}

#[test]
fn depends_on_complete_starts_the_app_after_init_exits() {
    let env = Env::new();
    let td = env.taskdef(
        "ordering",
        &format!(
            r#"{{"family":"ordering","networkMode":"awsvpc","requiresCompatibilities":["FARGATE"],
            "cpu":"256","memory":"512","containerDefinitions":[
            {{"name":"app","image":"{BUSYBOX}","essential":true,
              "dependsOn":[{{"containerName":"init","condition":"COMPLETE"}}],
              "command":["sh","-c","echo app sees $(cat /tmp/x 2>/dev/null || echo nothing) && echo $AWS_REGION $ECS_CONTAINER_METADATA_URI_V4 && echo nofile $(ulimit -n) cwd $(pwd)"],
              "workingDirectory":"/tmp","ulimits":[{{"name":"nofile","softLimit":1024,"hardLimit":4096}}]}},
            {{"name":"init","image":"{BUSYBOX}","essential":false,
              "command":["sh","-c","echo init start; sleep 1; echo init done; exit 4"]}}]}}"#
        ),
    );
    let out = env.run(&["run-task", "--task-definition", &td]);
    assert_eq!(out.status.code(), Some(0));
    let s = stdout(&out);
    let lines: Vec<&str> = s.lines().collect();
    let pos = |needle: &str| {
        lines
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle:?} not in {s}"))
    };
    assert!(pos("init | init done") < pos("app  | app sees"), "{s}");
    // Containers have their own rootfs, and the ECS environment.
    assert!(s.contains("app  | app sees nothing"), "{s}");
    let id = &env.task_ids("STOPPED")[0];
    assert!(
        s.contains(&format!("app  | us-east-1 http://169.254.170.2/v4/{id}-0")),
        "{s}"
    );
    assert!(s.contains("app  | nofile 1024 cwd /tmp"), "{s}");
    let t = env.describe(id);
    assert_eq!(t["containers"][1]["exitCode"], 4);
    assert_eq!(t["stopCode"], "EssentialContainerExited");
    env.assert_clean(id);
}

#[test]
fn stop_task_stops_a_long_running_detached_task() {
    let env = Env::new();
    let td = env.taskdef(
        "long",
        &format!(
            r#"{{"family":"long","networkMode":"awsvpc","requiresCompatibilities":["FARGATE"],
            "cpu":"256","memory":"512","containerDefinitions":[
            {{"name":"web","image":"{BUSYBOX}","essential":true,
              "command":["sh","-c","trap 'echo got TERM; exit 0' TERM; echo up; while :; do sleep 0.1; done"]}}]}}"#
        ),
    );
    let v = env.json(&[
        "run-task",
        "--task-definition",
        &td,
        "--detach",
        "--started-by",
        "tests",
    ]);
    assert_eq!(v["failures"], serde_json::json!([]));
    let t = &v["tasks"][0];
    assert_eq!(t["lastStatus"], "PROVISIONING");
    assert_eq!(t["desiredStatus"], "RUNNING");
    assert_eq!(t["startedBy"], "tests");
    let arn = t["taskArn"].as_str().unwrap();
    let id = arn.rsplit('/').next().unwrap().to_string();
    assert_arn(arn, &id);
    env.wait_status(&id, "RUNNING", Duration::from_secs(30));
    assert_eq!(env.task_ids("RUNNING"), std::slice::from_ref(&id));
    let v = env.json(&["list-tasks", "--started-by", "other"]);
    assert_eq!(v["taskArns"], serde_json::json!([]));

    // `logs --follow` streams until the task stops.
    let follower = env
        .mf
        .cmd()
        .args(["logs", "--follow", &id])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let v = env.json(&["stop-task", "--task", arn]);
    assert_eq!(v["task"]["desiredStatus"], "STOPPED");
    assert_eq!(v["task"]["stopCode"], "UserInitiated");
    assert_eq!(v["task"]["stoppedReason"], "Task stopped by user");
    let t = env.wait_status(&id, "STOPPED", Duration::from_secs(30));
    assert_eq!(t["containers"][0]["exitCode"], 0);
    assert_eq!(t["stopCode"], "UserInitiated");
    let out = env.run(&["logs", &id, "--container", "web"]);
    assert_eq!(stdout(&out), "up\ngot TERM\n");
    let followed = follower.wait_with_output().unwrap();
    assert!(followed.status.success());
    assert_eq!(stdout(&followed), "up\ngot TERM\n");
    // Supervisor gone, everything cleaned.
    env.wait_supervisor_gone(&id);
    env.assert_clean(&id);
    assert!(env.task_ids("RUNNING").is_empty());
}

#[test]
fn missing_image_is_cannot_pull_and_task_failed_to_start() {
    let env = Env::new();
    let td = env.taskdef(
        "nopull",
        r#"{"family":"nopull","networkMode":"none","containerDefinitions":[
            {"name":"app","image":"public.ecr.aws/docker/library/does-not-exist:1","memory":64,
             "command":["true"]}]}"#,
    );
    let out = env.run(&["run-task", "--task-definition", &td]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("CannotPullContainerError"), "{err}");
    let id = &env.task_ids("STOPPED")[0];
    let t = env.describe(id);
    assert_eq!(t["stopCode"], "TaskFailedToStart");
    let reason = t["containers"][0]["reason"].as_str().unwrap();
    assert!(reason.starts_with("CannotPullContainerError: "), "{reason}");
    assert!(reason.contains("does-not-exist"), "{reason}");
    assert!(t["containers"][0].get("exitCode").is_none());
    assert!(t.get("startedAt").is_none());
    env.assert_clean(id);
}

#[test]
fn command_not_found_is_cannot_start() {
    let env = Env::new();
    let td = env.taskdef(
        "nocmd",
        &format!(
            r#"{{"family":"nocmd","networkMode":"host","containerDefinitions":[
            {{"name":"app","image":"{BUSYBOX}","memory":64,"command":["/no/such/binary"]}}]}}"#
        ),
    );
    let out = env.run(&["run-task", "--task-definition", &td]);
    assert_eq!(out.status.code(), Some(1));
    let id = &env.task_ids("STOPPED")[0];
    let t = env.describe(id);
    assert_eq!(t["stopCode"], "TaskFailedToStart");
    let reason = t["containers"][0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("CannotStartContainerError: "),
        "{reason}"
    );
    assert!(reason.contains("/no/such/binary"), "{reason}");
    assert_eq!(t["stoppedReason"], reason);
    env.assert_clean(id);
}

#[test]
fn killed_supervisor_is_noticed_and_cleaned_up() {
    let env = Env::new();
    let out = env.run(&[
        "run",
        "--detach",
        "--network",
        "awsvpc",
        BUSYBOX,
        "--",
        "sleep",
        "1000",
    ]);
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = first_task_id(&v);
    let t = env.wait_status(&id, "RUNNING", Duration::from_secs(30));
    assert_eq!(t["containers"][0]["name"], "busybox");
    let pid = env.signal_supervisor(&id, "KILL");
    // Reaped by init once it is gone; wait until it is.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{pid}/stat")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z")
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let t = env.describe(&id);
    assert_eq!(t["lastStatus"], "STOPPED");
    assert!(
        t["stoppedReason"]
            .as_str()
            .unwrap()
            .contains(&format!("Task supervisor (pid {pid}) exited unexpectedly")),
        "{t:#}"
    );
    assert_eq!(t["containers"][0]["lastStatus"], "STOPPED");
    env.assert_clean(&id);
}

/// The attached CLI returns when the supervisor says the task is done, not when its
/// process has ended. A supervisor that dies without saying so (SIGKILL) must still end
/// the CLI, with the task STOPPED by the reconcile and the reason on stderr.
#[test]
fn an_attached_run_task_ends_when_its_supervisor_is_killed() {
    let env = Env::new();
    let td = env.taskdef(
        "doomed",
        &format!(
            r#"{{"family":"doomed","networkMode":"awsvpc","containerDefinitions":[
            {{"name":"app","image":"{BUSYBOX}","memory":64,"command":["sleep","1000"]}}]}}"#
        ),
    );
    let mut child = env
        .mf
        .cmd()
        .args(["run-task", "--task-definition", &td])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let id = loop {
        if let Some(id) = env.task_ids("RUNNING").first() {
            break id.clone();
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    env.wait_status(&id, "RUNNING", Duration::from_secs(30));
    let pid = env.signal_supervisor(&id, "KILL");
    let deadline = Instant::now() + Duration::from_secs(30);
    let code = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("run-task still attached 30 s after its supervisor was killed");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(code, Some(1), "stderr: {err}");
    assert!(
        err.contains(&format!("Task supervisor (pid {pid}) exited unexpectedly")),
        "stderr: {err}"
    );
    let t = env.describe(&id);
    assert_eq!(t["lastStatus"], "STOPPED");
    env.assert_clean(&id);
}

#[test]
fn ctrl_c_stops_an_attached_task_gracefully() {
    use std::io::BufRead;
    let env = Env::new();
    let td = env.taskdef(
        "trap",
        &format!(
            r#"{{"family":"trap","networkMode":"none","containerDefinitions":[
            {{"name":"app","image":"{BUSYBOX}","memory":64,
              "command":["sh","-c","trap 'echo got TERM; exit 7' TERM; echo up; while :; do sleep 0.1; done"]}}]}}"#
        ),
    );
    let mut child = env
        .mf
        .cmd()
        .args(["run-task", "--task-definition", &td])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(30));
    if first.as_deref() != Ok("app | up") {
        let _ = child.kill();
        let _ = child.wait();
        panic!("first line: {first:?}");
    }
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let code = child.wait().unwrap().code();
    reader.join().unwrap();
    let rest: Vec<String> = rx.try_iter().collect();
    assert_eq!(code, Some(7), "rest of the output: {rest:?}");
    assert_eq!(rest, ["app | got TERM"]);
    let id = &env.task_ids("STOPPED")[0];
    let t = env.describe(id);
    assert_eq!(t["stopCode"], "UserInitiated");
    assert_eq!(t["stoppedReason"], "Task stopped by user");
    assert_eq!(t["containers"][0]["exitCode"], 7);
    env.assert_clean(id);
}

#[test]
fn run_image_streams_exit_code_and_prints_the_oom_reason() {
    let env = Env::new();
    let out = env.run(&[
        "run",
        "--network",
        "none",
        BUSYBOX,
        "--",
        "sh",
        "-c",
        "echo hi; exit 5",
    ]);
    assert_eq!(out.status.code(), Some(5));
    assert_eq!(stdout(&out), "busybox | hi\n");
    // `tail` of a file without newlines keeps everything in memory: past 16 MiB, OOM.
    let out = env.run(&[
        "run",
        "--memory",
        "16",
        "--network",
        "none",
        BUSYBOX,
        "--",
        "busybox",
        "tail",
        "/dev/zero",
    ]);
    assert_eq!(out.status.code(), Some(137));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("container busybox: OutOfMemoryError: Container killed due to memory usage"),
        "{err}"
    );
    for id in env.task_ids("STOPPED") {
        env.assert_clean(&id);
    }
}

#[test]
fn bad_input_is_refused_and_leaves_nothing_behind() {
    let env = Env::new();
    let out = env.run(&[
        "run-task",
        "--task-definition",
        &format!(
            "file://{}",
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("examples/hello.json")
                .display()
        ),
        "--overrides",
        r#"{"containerOverrides":[{"name":"nope","command":["true"]}]}"#,
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("containerOverrides: container \"nope\" is not in task definition hello:1"),
        "{err}"
    );
    let out = env.run(&[
        "run-task",
        "--task-definition",
        "hello",
        "--overrides",
        "{not json",
    ]);
    // A wrong command line (exit 2), in the AWS CLI's words.
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("Error parsing parameter '--overrides': Invalid JSON"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // What Fargate refuses, --launch-type FARGATE refuses, with RunTask's exception.
    let td = env.taskdef(
        "ec2only",
        &format!(
            r#"{{"family":"ec2only","networkMode":"bridge","containerDefinitions":[
            {{"name":"app","image":"{BUSYBOX}","memory":64,"privileged":true}}]}}"#
        ),
    );
    let out = env.run(&[
        "run-task",
        "--task-definition",
        &td,
        "--launch-type",
        "FARGATE",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "containerDefinitions[0].privileged: PlatformTaskDefinitionIncompatibilityException"
        ),
        "{err}"
    );
    // A secret that cannot be fetched (no AWS credentials here): ECS's reason, the task
    // STOPPED as TaskFailedToStart, and nothing of it left on the host.
    let td = env.taskdef(
        "secret",
        &format!(
            r#"{{"family":"secret","networkMode":"none",
            "executionRoleArn":"arn:aws:iam::000000000000:role/exec","containerDefinitions":[
            {{"name":"app","image":"{BUSYBOX}","memory":64,
              "secrets":[{{"name":"DB_PASSWORD","valueFrom":"arn:aws:ssm:us-east-1:000000000000:parameter/db"}}]}}]}}"#
        ),
    );
    let out = env.run(&["run-task", "--task-definition", &td]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ResourceInitializationError: unable to pull secrets or registry auth"),
        "{err}"
    );
    let stopped = env.task_ids("STOPPED");
    assert_eq!(stopped.len(), 1);
    assert!(env.task_ids("RUNNING").is_empty());
    let t = &env.json(&["describe-tasks", "--tasks", &stopped[0]])["tasks"][0];
    assert_eq!(t["stopCode"], "TaskFailedToStart", "{t}");
    assert!(
        t["stoppedReason"]
            .as_str()
            .unwrap()
            .starts_with("ResourceInitializationError: unable to pull secrets"),
        "{t}"
    );
    let left: Vec<_> = std::fs::read_dir(env.mf.run_root.join("tasks"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "run dirs left: {left:?}");
}

#[test]
fn failed_dependencies_stop_the_task_with_the_agents_reasons() {
    let env = Env::new();
    // SUCCESS that exits 1: the app never starts.
    let td = env.taskdef(
        "success",
        &format!(
            r#"{{"family":"success","networkMode":"none","containerDefinitions":[
            {{"name":"migrate","image":"{BUSYBOX}","memory":64,"essential":false,
              "command":["sh","-c","echo migrating; exit 1"]}},
            {{"name":"app","image":"{BUSYBOX}","memory":64,
              "dependsOn":[{{"containerName":"migrate","condition":"SUCCESS"}}],
              "command":["echo","never printed"]}}]}}"#
        ),
    );
    let out = env.run(&["run-task", "--task-definition", &td]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!stdout(&out).contains("never printed"));
    let id = &env.task_ids("STOPPED")[0];
    let t = env.describe(id);
    assert_eq!(t["stopCode"], "TaskFailedToStart");
    assert_eq!(t["containers"][0]["exitCode"], 1);
    assert_eq!(
        t["containers"][1]["reason"],
        "dependency graph: container ordering dependency [migrate] for target [app] did not exit \
         successfully."
    );
    assert!(t["containers"][1].get("exitCode").is_none());
    env.assert_clean(id);

    // COMPLETE on a dependency that outlives its startTimeout.
    let td = env.taskdef(
        "timeout",
        &format!(
            r#"{{"family":"timeout","networkMode":"none","containerDefinitions":[
            {{"name":"slow","image":"{BUSYBOX}","memory":64,"essential":false,"startTimeout":2,
              "stopTimeout":2,"command":["sleep","1000"]}},
            {{"name":"app","image":"{BUSYBOX}","memory":64,
              "dependsOn":[{{"containerName":"slow","condition":"COMPLETE"}}],
              "command":["echo","never printed"]}}]}}"#
        ),
    );
    let started = Instant::now();
    let out = env.run(&["run-task", "--task-definition", &td]);
    assert_eq!(out.status.code(), Some(1));
    assert!(started.elapsed() >= Duration::from_secs(2));
    let id = &env.task_ids("STOPPED")[0];
    let t = env.describe(id);
    assert_eq!(t["stopCode"], "TaskFailedToStart");
    assert_eq!(
        t["containers"][1]["reason"],
        "dependency graph: container ordering dependency [slow] for target [app] has timed out."
    );
    // The dependency was stopped like any container: SIGTERM, then SIGKILL.
    assert_eq!(t["containers"][0]["exitCode"], 137);
    env.assert_clean(id);
}

#[test]
fn count_runs_several_tasks_with_their_own_ids() {
    let env = Env::new();
    let td = env.taskdef(
        "many",
        &format!(
            r#"{{"family":"many","networkMode":"none","containerDefinitions":[
            {{"name":"app","image":"{BUSYBOX}","memory":64,"command":["sh","-c","echo $ECS_CONTAINER_METADATA_URI_V4"]}}]}}"#
        ),
    );
    let out = env.run(&["run-task", "--task-definition", &td, "--count", "2"]);
    assert_eq!(out.status.code(), Some(0));
    let ids = env.task_ids("STOPPED");
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1]);
    let s = stdout(&out);
    for id in &ids {
        // Several tasks: the prefix names the task too.
        assert!(
            s.contains(&format!(
                "{}/app | http://169.254.170.2/v4/{id}-0",
                &id[..8]
            )),
            "{s}"
        );
        env.assert_clean(id);
    }
}

/// Resident memory of `pid` in kB (`/proc/PID/smaps_rollup`).
fn rss_kb(pid: i32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap();
    let line = s.lines().find(|l| l.starts_with("Rss:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The peak resident memory of `pid` in kB (`VmHWM`, `/proc/PID/status`).
fn peak_rss_kb(pid: i32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = s.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn an_idle_supervisor_gives_memory_back_and_still_stops_the_task() {
    let env = Env::new();
    let td = env.taskdef(
        "idle",
        &format!(
            r#"{{"family":"idle","networkMode":"awsvpc","requiresCompatibilities":["FARGATE"],
            "cpu":"256","memory":"512","containerDefinitions":[
            {{"name":"app","image":"{BUSYBOX}","essential":true,
              "command":["sh","-c","trap 'echo bye; exit 3' TERM; echo up; while :; do sleep 0.1; done"]}}]}}"#
        ),
    );
    let v = env.json(&[
        "run-task",
        "--task-definition",
        &td,
        "--detach",
        "--log-level",
        "info",
    ]);
    let id = first_task_id(&v);
    env.wait_status(&id, "RUNNING", Duration::from_secs(30));
    let pid = env.supervisor_pid(&id).expect("supervisor pid file");
    // Quiet for a moment with its container running (250 ms), the supervisor unmaps the
    // setup code's pages and trims its heap: its resident memory falls well below the
    // peak that setup reached.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut idle, mut peak) = (rss_kb(pid), peak_rss_kb(pid));
    while idle * 4 > peak && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        (idle, peak) = (rss_kb(pid), peak_rss_kb(pid));
    }
    assert!(
        idle * 4 <= peak,
        "supervisor RSS {idle} kB after 30 s running, against its peak of {peak} kB"
    );
    // Everything it needs next (the socket, stop, teardown) pages back in.
    let v = env.json(&["stop-task", "--task", &id]);
    assert_eq!(v["task"]["desiredStatus"], "STOPPED");
    let t = env.wait_status(&id, "STOPPED", Duration::from_secs(30));
    assert_eq!(t["stopCode"], "UserInitiated");
    assert_eq!(t["containers"][0]["exitCode"], 3);
    let out = env.run(&["logs", &id, "--container", "app"]);
    assert_eq!(stdout(&out), "up\nbye\n");
    env.wait_supervisor_gone(&id);
    env.assert_clean(&id);
    // Its log is a file: plain text, no terminal colour codes.
    let log = std::fs::read_to_string(env.mf.root.join("tasks").join(&id).join("supervisor.log"))
        .unwrap();
    assert!(log.contains("task running"), "{log}");
    assert!(
        !log.contains('\x1b'),
        "colour codes in supervisor.log: {log:?}"
    );
}

#[test]
fn sigterm_to_the_supervisor_stops_the_task_properly() {
    let env = Env::new();
    let out = env.run(&[
        "run",
        "--detach",
        "--network",
        "none",
        BUSYBOX,
        "--",
        "sh",
        "-c",
        "trap 'exit 0' TERM; while :; do sleep 0.1; done",
    ]);
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = first_task_id(&v);
    env.wait_status(&id, "RUNNING", Duration::from_secs(30));
    env.signal_supervisor(&id, "TERM");
    let t = env.wait_status(&id, "STOPPED", Duration::from_secs(30));
    assert_eq!(t["stopCode"], "UserInitiated");
    assert_eq!(t["stoppedReason"], "Task supervisor received SIGTERM");
    assert_eq!(t["containers"][0]["exitCode"], 0);
    env.wait_supervisor_gone(&id);
    env.assert_clean(&id);
}

#[test]
fn stopped_tasks_are_forgotten_after_the_retention() {
    let mut env = Env::new();
    let out = env.run(&["run", "--network", "none", BUSYBOX, "--", "echo", "hi"]);
    assert!(out.status.success());
    let id = env.task_ids("STOPPED").remove(0);
    assert!(env.mf.root.join("tasks").join(&id).exists());
    // Kept for an hour by default; with a retention of 0 s the next command prunes it.
    env.mf.set_env("MINIFARGATE_STOPPED_TASK_RETENTION", "0");
    std::thread::sleep(Duration::from_millis(20));
    let v = env.json(&["describe-tasks", "--tasks", &id]);
    assert_eq!(v["failures"][0]["reason"], "MISSING");
    assert!(!env.mf.root.join("tasks").join(&id).exists());
}

#[test]
fn depends_on_healthy_waits_for_the_health_check() {
    let env = Env::new();
    let td = env.taskdef(
        "healthy",
        &format!(
            r#"{{"family":"healthy","networkMode":"awsvpc","requiresCompatibilities":["FARGATE"],
            "cpu":"256","memory":"512","containerDefinitions":[
            {{"name":"app","image":"{BUSYBOX}","essential":true,"stopTimeout":2,
              "command":["sh","-c","sleep 1; touch /tmp/ready; echo app ready; sleep 1000"],
              "healthCheck":{{"command":["CMD-SHELL","test -f /tmp/ready"],"interval":5,
                "timeout":2,"retries":1,"startPeriod":3}}}},
            {{"name":"sidecar","image":"{BUSYBOX}","essential":true,
              "dependsOn":[{{"containerName":"app","condition":"HEALTHY"}}],
              "command":["echo","sidecar after healthy"]}}]}}"#
        ),
    );
    let started = Instant::now();
    let out = env.run(&["run-task", "--task-definition", &td]);
    // The exit code is the sidecar's, whose exit stopped the task (app was killed).
    assert_eq!(out.status.code(), Some(0));
    let s = stdout(&out);
    let pos = |needle: &str| {
        s.find(needle)
            .unwrap_or_else(|| panic!("{needle:?} not in {s}"))
    };
    assert!(
        pos("app     | app ready") < pos("sidecar | sidecar after healthy"),
        "{s}"
    );
    // The check at start fails (inside startPeriod), the one 5 s later passes.
    assert!(started.elapsed() >= Duration::from_secs(5));
    let id = &env.task_ids("STOPPED")[0];
    let t = env.describe(id);
    assert_eq!(t["containers"][0]["healthStatus"], "HEALTHY");
    assert_eq!(t["containers"][1]["healthStatus"], "UNKNOWN");
    assert_eq!(t["healthStatus"], "HEALTHY");
    assert_eq!(t["stopCode"], "EssentialContainerExited");
    assert_eq!(t["containers"][0]["exitCode"], 137);
    env.assert_clean(id);
}

#[test]
fn ordering_example_init_complete_then_healthy_app_then_sidecar() {
    let env = Env::new();
    let td = format!(
        "file://{}",
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples/ordering.json")
            .display()
    );
    let out = env.run(&["run-task", "--task-definition", &td]);
    assert_eq!(out.status.code(), Some(0));
    let s = stdout(&out);
    let pos = |needle: &str| {
        s.find(needle)
            .unwrap_or_else(|| panic!("{needle:?} not in {s}"))
    };
    assert!(pos("init    | prepared") < pos("app     | starting"), "{s}");
    assert!(
        pos("app     | ready") < pos("sidecar | app is healthy"),
        "{s}"
    );
    let id = &env.task_ids("STOPPED")[0];
    let t = env.describe(id);
    assert_eq!(t["healthStatus"], "HEALTHY");
    env.assert_clean(id);
}
