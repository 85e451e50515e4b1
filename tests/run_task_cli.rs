//! Root integration tests of the run-task CLI surface: RunTask flags (tags, group,
//! startedBy, enableExecuteCommand, --env-file, --timeline), `logs` filters, cluster verbs,
//! `--output text|table` with `--query`, and the `limits` example hitting its Fargate memory limit.

use crate::common;

use common::busybox_task_env;
use common::cli::Mf;
use common::image::{Compression, busybox_layer};
use common::registry::Registry;
use serde_json::{Value, json};
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

const BUSYBOX: &str = "public.ecr.aws/docker/library/busybox:1.36";
const OOM: &str = "OutOfMemoryError: Container killed due to memory usage";

/// A private root, run root and registry (busybox served as public.ecr.aws through a
/// mirror); on drop, kills any supervisor still running, by the pid it recorded, and lets
/// the next command clean up after it.
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
        let (mf, reg) = busybox_task_env(busybox_layer(Compression::Gzip, "run-task-cli"));
        Env { mf, _reg: reg }
    }

    fn file(&self, name: &str, text: &str) -> String {
        let p = self.mf.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    }

    fn taskdef(&self, name: &str, json: &str) -> String {
        format!("file://{}", self.file(&format!("{name}.json"), json))
    }

    fn describe(&self, id: &str, extra: &[&str]) -> Value {
        let mut args = vec!["describe-tasks", "--tasks", id];
        args.extend_from_slice(extra);
        let v = self.json(&args);
        assert_eq!(v["failures"], json!([]));
        v["tasks"][0].clone()
    }

    fn wait_status(&self, id: &str, want: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let t = self.describe(id, &[]);
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

    /// Runs `run-task … --detach` and returns the task id.
    fn detach(&self, args: &[&str]) -> String {
        let mut all = vec!["run-task"];
        all.extend_from_slice(args);
        all.push("--detach");
        let v = self.json(&all);
        assert_eq!(v["failures"], json!([]));
        id_of(v["tasks"][0]["taskArn"].as_str().unwrap())
    }

    /// Nothing of task `id` is left: no mounts under this test's dir, cgroups or run dir.
    fn assert_clean(&self, id: &str) {
        let left = common::leaks::task_mount_lines(&self.mf);
        assert!(left.is_empty(), "mounts left behind: {left:#?}");
        for entry in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
            let cg = entry.path().join("minifargate").join(id);
            assert!(!cg.exists(), "cgroup left behind: {}", cg.display());
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let run_dir = self.mf.run_root.join("tasks").join(id);
        while run_dir.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(!run_dir.exists(), "run dir left: {}", run_dir.display());
    }
}

fn id_of(arn: &str) -> String {
    arn.rsplit('/').next().unwrap().to_string()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn example(name: &str) -> String {
    format!(
        "file://{}",
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples")
            .join(name)
            .display()
    )
}

/// The timeline row of `container`: its cells split on runs of 2+ blanks.
fn timeline_row(text: &str, container: &str) -> Vec<String> {
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{container} ")))
        .unwrap_or_else(|| panic!("no timeline row for {container} in:\n{text}"));
    line.split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect()
}

/// The CLI starts a supervisor before it checks the request (`launch::prestart_supervisor`);
/// a launch that then fails leaves it nothing to do: it exits, and nothing of a task is
/// made (no row, no run dir, no log).
#[test]
fn a_failed_launch_leaves_no_supervisor_behind() {
    let env = Env::new();
    // Refused once the definition is read, after the CLI named its image to the waiting
    // supervisor (which then asks the registry about the cached image): FARGATE refuses a
    // bridge network.
    let pulled = env.run(&["pull", BUSYBOX]);
    assert!(pulled.status.success(), "{}", stderr(&pulled));
    let bridge = env.taskdef(
        "bridge",
        &json!({"family": "bridge", "networkMode": "bridge", "cpu": "256", "memory": "512",
                "containerDefinitions": [{"name": "app", "image": BUSYBOX, "essential": true,
                                          "command": ["true"]}]})
        .to_string(),
    );
    for args in [
        &["run-task", "--task-definition", "nosuch:9"][..],
        &["run-task", "--task-definition", "nosuch:9", "--detach"],
        &[
            "run-task",
            "--task-definition",
            &bridge,
            "--launch-type",
            "FARGATE",
        ],
    ] {
        let out = env.run(args);
        assert!(!out.status.success(), "{args:?}: {}", stderr(&out));
        if args.contains(&"FARGATE") {
            assert!(stderr(&out).contains("awsvpc"), "{}", stderr(&out));
        }
        common::leaks::wait_for("the supervisor started ahead to exit", || {
            common::leaks::supervisors_of(&env.mf.root).is_empty()
        });
    }
    for dir in [env.mf.root.join("tasks"), env.mf.run_root.join("tasks")] {
        let left: Vec<_> = std::fs::read_dir(&dir)
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "left in {}: {left:?}", dir.display());
    }
}

/// Each task's dirs are placed as ext4 places top-level dirs (`chattr +T` on their
/// parents), so that launches do not all make and free their inodes in one block group
/// (docs/benchmarks.md "Stop 49"); where the filesystem has no inode flags, nothing is
/// asked.
#[test]
fn a_tasks_dirs_are_spread_over_the_block_groups() {
    use rustix::fs::{IFlags, ioctl_getflags};
    let env = Env::new();
    let td = env.taskdef(
        "spread",
        &json!({"family": "spread", "networkMode": "awsvpc", "cpu": "256", "memory": "512",
                "containerDefinitions": [{"name": "app", "image": BUSYBOX, "essential": true,
                                          "command": ["true"]}]})
        .to_string(),
    );
    let out = env.run(&["run-task", "--task-definition", &td]);
    assert!(out.status.success(), "{}", stderr(&out));
    let flags = |p: &Path| ioctl_getflags(std::fs::File::open(p).unwrap());
    for (fs_root, parent) in [
        (&env.mf.root, env.mf.root.join("tasks")),
        (&env.mf.run_root, env.mf.run_root.join("tasks")),
        (&env.mf.run_root, env.mf.run_root.join("rootfs")),
    ] {
        if flags(fs_root).is_ok() {
            let f = flags(&parent).unwrap();
            assert!(f.contains(IFlags::TOPDIR), "{}: {f:?}", parent.display());
        }
    }
}

#[test]
fn limits_example_is_oom_killed_at_its_fargate_memory() {
    let env = Env::new();
    let out = env.run(&[
        "run-task",
        "--task-definition",
        &example("limits.json"),
        "--timeline",
    ]);
    assert_eq!(out.status.code(), Some(137));
    let s = stdout(&out);
    assert!(
        s.starts_with("hog | holding 1 MiB\nhog | holding 2 MiB\n"),
        "{s}"
    );
    assert!(s.contains("hog | holding 128 MiB\n"), "{s}");
    assert!(!s.contains("holding 1024 MiB"), "grew past 512 MiB: {s}");
    let err = stderr(&out);
    assert!(err.contains(&format!("container hog: {OOM}")), "{err}");

    let arns = env.json(&["list-tasks", "--desired-status", "STOPPED"]);
    let id = id_of(arns["taskArns"][0].as_str().unwrap());
    let t = env.describe(&id, &[]);
    assert_eq!(t["cpu"], "256");
    assert_eq!(t["memory"], "512");
    assert_eq!(t["stopCode"], "EssentialContainerExited");
    assert_eq!(t["stoppedReason"], "Essential container in task exited");
    assert_eq!(t["containers"][0]["exitCode"], 137);
    assert_eq!(t["containers"][0]["reason"], OOM);

    // --timeline: one row per container with every phase it went through.
    assert!(
        err.contains(&format!("Launch timeline of task {id}\n")),
        "{err}"
    );
    let row = timeline_row(&err, "hog");
    assert_eq!(row.len(), 10, "{row:?}");
    for (i, phase) in [
        (1, "pull"),
        (2, "network"),
        (3, "rootfs"),
        (4, "create"),
        (5, "start"),
    ] {
        assert!(
            row[i].ends_with(" ms") || row[i].ends_with(" s"),
            "{phase}: {row:?}"
        );
    }
    assert_eq!(row[7], "-", "no health check: {row:?}");
    assert_eq!(row[9], "-", "exited by itself, never stopped: {row:?}");
    assert!(err.contains("task (from createdAt): RUNNING at "), "{err}");
    env.assert_clean(&id);

    // `run --memory 32`: the same limit through a one-container task.
    let out = env.run(&[
        "run",
        "--memory",
        "32",
        "--network",
        "none",
        BUSYBOX,
        "--",
        "sh",
        "-c",
        "x=0123456789abcdef; while :; do x=$x$x; done",
    ]);
    assert_eq!(out.status.code(), Some(137));
    let err = stderr(&out);
    assert!(err.contains(&format!(": {OOM}\n")), "{err}");
}

#[test]
fn run_task_records_tags_group_started_by_exec_and_env_files() {
    let env = Env::new();
    let td = env.taskdef(
        "flags",
        &format!(
            r#"{{"family":"flags","networkMode":"awsvpc","requiresCompatibilities":["FARGATE"],
            "cpu":"256","memory":"512","containerDefinitions":[
            {{"name":"app","image":"{BUSYBOX}","essential":true,
              "environment":[{{"name":"BOTH","value":"taskdef"}}],
              "command":["sh","-c","echo FROM_FILE=$FROM_FILE BOTH=$BOTH LATER=$LATER QUOTED=$QUOTED"]}}]}}"#
        ),
    );
    let f1 = env.file(
        "one.env",
        "# Docker rules\nFROM_FILE=file one\nBOTH=file\nLATER=1\nQUOTED=\"q\"\n",
    );
    let f2 = env.file("two.env", "LATER=2\n");
    let id = env.detach(&[
        "--task-definition",
        &td,
        "--tags",
        "key=team,value=core",
        "key=env,value=dev,test",
        "--group",
        "batch",
        "--started-by",
        "ci",
        "--enable-execute-command",
        "--env-file",
        &f1,
        "--env-file",
        &f2,
    ]);
    let t = env.wait_status(&id, "STOPPED");
    assert_eq!(t["group"], "batch");
    assert_eq!(t["startedBy"], "ci");
    assert_eq!(t["enableExecuteCommand"], true);
    // Tags only with --include TAGS, as ECS does.
    assert_eq!(t["tags"], json!([]));
    let t = env.describe(&id, &["--include", "TAGS"]);
    assert_eq!(
        t["tags"],
        json!([{"key":"team","value":"core"},{"key":"env","value":"dev,test"}])
    );
    // The task definition's environment wins over --env-file; later files win.
    let out = env.run(&["logs", &id]);
    assert_eq!(
        stdout(&out),
        "FROM_FILE=file one BOTH=taskdef LATER=2 QUOTED=\"q\"\n"
    );
    env.assert_clean(&id);

    // Defaults: group family:<family>, no exec, JSON tags.
    let id = env.detach(&[
        "--task-definition",
        "flags",
        "--tags",
        r#"[{"key":"k","value":"v"}]"#,
    ]);
    let t = env.wait_status(&id, "STOPPED");
    assert_eq!(t["group"], "family:flags");
    assert_eq!(t["enableExecuteCommand"], false);
    assert!(t.get("startedBy").is_none());
    let t = env.describe(&id, &["--include", "TAGS"]);
    assert_eq!(t["tags"], json!([{"key":"k","value":"v"}]));

    // Bad input: one clear error, no task.
    let e = env.mf.fail(&[
        "run-task",
        "--task-definition",
        "flags",
        "--tags",
        "team=core",
    ]);
    assert!(
        e.contains("--tags \"team=core\": use key=KEY,value=VALUE"),
        "{e}"
    );
    let bad = env.file("bad.env", "OK=1\nNOT OK=2\n");
    let e = env
        .mf
        .fail(&["run-task", "--task-definition", "flags", "--env-file", &bad]);
    assert!(
        e.ends_with("line 2: variable \"NOT OK\" contains whitespace"),
        "{e}"
    );
    let v = env.json(&["list-tasks", "--desired-status", "STOPPED"]);
    assert_eq!(v["taskArns"].as_array().unwrap().len(), 2);

    // `run --env-file`: `-e` wins over the file, as in `docker run`.
    let out = env.run(&[
        "run",
        "--network",
        "none",
        "--env-file",
        &f1,
        "-e",
        "BOTH=cli",
        BUSYBOX,
        "--",
        "sh",
        "-c",
        "echo $FROM_FILE/$BOTH",
    ]);
    assert!(out.status.success());
    assert_eq!(stdout(&out), "busybox | file one/cli\n");
}

#[test]
fn logs_since_tail_and_timestamps() {
    let env = Env::new();
    // stdout and stderr are separate pipes: "four" waits so the order in the log is fixed.
    let out = env.run(&[
        "run",
        "--network",
        "none",
        BUSYBOX,
        "--",
        "sh",
        "-c",
        "echo one; echo two; sleep 1.5; echo three; sleep 0.2; echo four >&2",
    ]);
    assert!(out.status.success());
    let v = env.json(&["list-tasks", "--desired-status", "STOPPED"]);
    let id = id_of(v["taskArns"][0].as_str().unwrap());
    let logs = |extra: &[&str]| {
        let mut args = vec!["logs", id.as_str()];
        args.extend_from_slice(extra);
        let out = env.run(&args);
        assert!(out.status.success());
        stdout(&out)
    };
    assert_eq!(logs(&[]), "one\ntwo\nthree\nfour\n");
    assert_eq!(logs(&["--tail", "2"]), "three\nfour\n");
    assert_eq!(logs(&["--since", "10m"]), "one\ntwo\nthree\nfour\n");
    assert_eq!(logs(&["--since", "2999-01-01T00:00:00Z"]), "");
    // --timestamps: the time each line was written, as in the json-file log.
    let stamped = logs(&["--timestamps"]);
    let times: Vec<chrono::DateTime<chrono::FixedOffset>> = stamped
        .lines()
        .map(|l| {
            let (t, _) = l.split_once(' ').unwrap();
            chrono::DateTime::parse_from_rfc3339(t).unwrap()
        })
        .collect();
    assert_eq!(times.len(), 4, "{stamped}");
    assert!(stamped.lines().nth(2).unwrap().ends_with(" three"));
    assert!(times[2] - times[1] >= chrono::Duration::milliseconds(1400));
    // --since an RFC 3339 time between "two" and "three".
    let mid = (times[1] + chrono::Duration::milliseconds(500)).to_rfc3339();
    assert_eq!(logs(&["--since", &mid]), "three\nfour\n");
    let out = env.run(&["logs", &id, "--since", "yesterday-ish"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("neither a duration"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn clusters_like_ecs_and_table_output() {
    let env = Env::new();
    let v = env.json(&["create-cluster", "--cluster-name", "dev"]);
    let c = &v["cluster"];
    assert_eq!(
        c["clusterArn"],
        "arn:aws:ecs:us-east-1:000000000000:cluster/dev"
    );
    assert_eq!(c["clusterName"], "dev");
    assert_eq!(c["status"], "ACTIVE");
    assert_eq!(c["runningTasksCount"], 0);
    assert_eq!(c["pendingTasksCount"], 0);

    // Only `default` appears by itself; any other cluster must exist.
    let e = env.mf.fail(&[
        "run",
        "--cluster",
        "nope",
        "--network",
        "none",
        BUSYBOX,
        "--",
        "true",
    ]);
    assert!(
        e.starts_with("minifargate: ClusterNotFoundException: Cluster not found."),
        "{e}"
    );
    let td = env.taskdef(
        "long",
        &format!(
            r#"{{"family":"long","networkMode":"awsvpc","requiresCompatibilities":["FARGATE"],
            "cpu":"256","memory":"512","containerDefinitions":[
            {{"name":"web","image":"{BUSYBOX}","essential":true,
              "command":["sh","-c","trap 'exit 0' TERM; while :; do sleep 0.1; done"]}}]}}"#
        ),
    );
    let id = env.detach(&["--task-definition", &td, "--cluster", "dev"]);
    env.wait_status(&id, "RUNNING");
    let v = env.json(&["describe-clusters", "--clusters", "dev", "default", "gone"]);
    assert_eq!(v["clusters"].as_array().unwrap().len(), 1);
    assert_eq!(v["clusters"][0]["runningTasksCount"], 1);
    assert_eq!(
        v["failures"],
        json!([{"arn":"arn:aws:ecs:us-east-1:000000000000:cluster/default","reason":"MISSING"},
               {"arn":"arn:aws:ecs:us-east-1:000000000000:cluster/gone","reason":"MISSING"}])
    );
    let e = env.mf.fail(&["delete-cluster", "--cluster", "dev"]);
    assert!(
        e.starts_with(
            "minifargate: ClusterContainsTasksException: The Cluster cannot be deleted while \
             Tasks are active."
        ),
        "{e}"
    );

    // The AWS CLI's text and table renderings (awscli's text.py / table.py rules).
    let arn = format!("arn:aws:ecs:us-east-1:000000000000:task/dev/{id}");
    let out = env.run(&["list-tasks", "--cluster", "dev", "--output", "text"]);
    assert_eq!(stdout(&out), format!("TASKARNS\t{arn}\n"));
    let out = env.run(&[
        "describe-tasks",
        "--tasks",
        &id,
        "--output",
        "text",
        "--query",
        "tasks[].containers[].[name,lastStatus]",
    ]);
    assert_eq!(stdout(&out), "web\tRUNNING\n");
    let out = env.run(&["list-tasks", "--cluster", "dev", "--output", "table"]);
    let s = stdout(&out);
    let lines: Vec<&str> = s.lines().collect();
    assert!(lines[0].chars().all(|c| c == '-'), "{s}");
    assert_eq!(lines[1].trim_matches(['|', ' ']), "ListTasks", "{s}");
    assert!(lines.iter().any(|l| l.contains("taskArns")), "{s}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("||  ") && l.contains(&arn) && l.ends_with("||")),
        "{s}"
    );
    let out = env.run(&[
        "describe-clusters",
        "--clusters",
        "dev",
        "--output",
        "table",
    ]);
    let s = stdout(&out);
    let row = |name: &str| -> Vec<String> {
        s.lines()
            .find(|l| l.split('|').any(|c| c.trim() == name))
            .unwrap_or_else(|| panic!("no {name} row in\n{s}"))
            .split('|')
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty())
            .collect()
    };
    assert_eq!(row("clusterName"), ["clusterName", "dev"]);
    assert_eq!(row("runningTasksCount"), ["runningTasksCount", "1"]);
    let out = env.run(&[
        "list-task-definitions",
        "--output",
        "text",
        "--query",
        "taskDefinitionArns[?contains(@, 'long')]",
    ]);
    assert!(
        stdout(&out).trim_end().ends_with("task-definition/long:1"),
        "{}",
        stdout(&out)
    );

    // Clusters by name or ARN, as the AWS CLI takes them.
    let dev_arn = "arn:aws:ecs:us-east-1:000000000000:cluster/dev";
    let v = env.json(&["list-tasks", "--cluster", dev_arn]);
    assert_eq!(v["taskArns"].as_array().unwrap().len(), 1);
    env.json(&["stop-task", "--cluster", dev_arn, "--task", &id]);
    env.wait_status(&id, "STOPPED");
    let v = env.json(&[
        "delete-cluster",
        "--cluster",
        "arn:aws:ecs:us-east-1:000000000000:cluster/dev",
    ]);
    assert_eq!(v["cluster"]["status"], "INACTIVE");
    assert_eq!(v["cluster"]["runningTasksCount"], 0);
    let v = env.json(&["list-clusters"]);
    assert_eq!(v["clusterArns"], json!([]));
    // Still describable, INACTIVE; its stopped task too.
    let v = env.json(&["describe-clusters", "--clusters", "dev"]);
    assert_eq!(v["clusters"][0]["status"], "INACTIVE");
    env.describe(&id, &[]);
    let e = env
        .mf
        .fail(&["run-task", "--task-definition", "long", "--cluster", "dev"]);
    assert!(e.contains("ClusterNotFoundException"), "{e}");
    let e = env.mf.fail(&["delete-cluster", "--cluster", "dev"]);
    assert!(
        e.contains("ClusterNotFoundException: Cluster not found."),
        "{e}"
    );
    env.assert_clean(&id);
}

/// A health check command with neither CMD nor CMD-SHELL first registers (with a warning)
/// and runs whole in exec form, as on Fargate (aws-observability/aws-otel-community#1320):
/// the container turns HEALTHY once the file the check looks for exists.
/// Nothing silent: what the task definition and the overrides ask for that this host does
/// not do is on the task, printed by run-task and shown by describe-tasks, and the task
/// runs all the same.
#[test]
fn run_task_warns_about_what_it_does_not_apply() {
    let env = Env::new();
    // No networkMode: bridge on EC2, where this host's containers share one namespace.
    let td = env.taskdef(
        "not-applied",
        &format!(
            r#"{{"family":"not-applied","memory":"128","inferenceAccelerators":[
              {{"deviceName":"d0","deviceType":"eia2.medium"}}],
            "containerDefinitions":[{{"name":"app","image":"{BUSYBOX}","essential":true,
              "disableNetworking":true,"command":["echo","ran"]}}]}}"#
        ),
    );
    let out = env.run(&[
        "run-task",
        "--task-definition",
        &td,
        "--overrides",
        r#"{"executionRoleArn":"arn:aws:iam::000000000000:role/exec"}"#,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("app | ran"), "{}", stdout(&out));
    let want = [
        "inferenceAccelerators: not applied here: no Elastic Inference accelerator",
        "networkMode: honoured with a local difference: absent, so bridge (ECS's default on EC2)",
        "overrides.executionRoleArn: not applied here: the task definition's executionRoleArn \
         is used for the start-up calls",
    ];
    let err = stderr(&out);
    for w in want {
        // Once each: the registration's findings are not repeated beside the task's.
        assert_eq!(
            err.matches(&format!("warning: {w}")).count(),
            1,
            "{w:?} in:\n{err}"
        );
    }
    let v = env.json(&["list-tasks", "--desired-status", "STOPPED"]);
    let t = env.describe(&id_of(v["taskArns"][0].as_str().unwrap()), &[]);
    let recorded: Vec<String> = serde_json::from_value(t["minifargateWarnings"].clone()).unwrap();
    assert_eq!(recorded.len(), want.len(), "{recorded:#?}");
    for w in want {
        assert!(
            recorded.iter().any(|got| got.starts_with(w)),
            "{w:?} not in {recorded:#?}"
        );
    }
    let attributes: Vec<&str> = t["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            assert_eq!(a["name"], "minifargate.warning");
            a["value"].as_str().unwrap()
        })
        .collect();
    assert_eq!(attributes, recorded);
}

#[test]
fn exec_form_health_check_runs_the_whole_list() {
    let env = Env::new();
    let td = env.taskdef(
        "exec-health",
        &format!(
            r#"{{"family":"exec-health","networkMode":"awsvpc","requiresCompatibilities":["FARGATE"],
            "cpu":"256","memory":"512","containerDefinitions":[
            {{"name":"app","image":"{BUSYBOX}","essential":true,
              "command":["sh","-c","trap 'exit 0' TERM; sleep 1; touch /tmp/ready; while :; do sleep 0.1; done"],
              "healthCheck":{{"command":["/bin/sh","-c","test -f /tmp/ready"],"interval":5,"timeout":2,"retries":1}}}}]}}"#
        ),
    );
    let out = env.run(&["validate", &td]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("health-check-exec-form"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = env.detach(&["--task-definition", &td]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while env.describe(&id, &[])["containers"][0]["healthStatus"] != "HEALTHY" {
        assert!(Instant::now() < deadline, "never HEALTHY");
        std::thread::sleep(Duration::from_millis(100));
    }
    env.json(&["stop-task", "--task", &id]);
    env.wait_status(&id, "STOPPED");
    env.assert_clean(&id);
}

#[test]
fn timeline_shows_first_healthy_and_stop() {
    let env = Env::new();
    let td = env.taskdef(
        "health",
        &format!(
            r#"{{"family":"health","networkMode":"awsvpc","requiresCompatibilities":["FARGATE"],
            "cpu":"256","memory":"512","containerDefinitions":[
            {{"name":"app","image":"{BUSYBOX}","essential":true,
              "command":["sh","-c","trap 'exit 0' TERM; while :; do sleep 0.1; done"],
              "healthCheck":{{"command":["CMD-SHELL","true"],"interval":5,"timeout":2,"retries":1}}}}]}}"#
        ),
    );
    let id = env.detach(&["--task-definition", &td]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while env.describe(&id, &[])["healthStatus"] != "HEALTHY" {
        assert!(Instant::now() < deadline, "never HEALTHY");
        std::thread::sleep(Duration::from_millis(100));
    }
    env.json(&["stop-task", "--task", &id]);
    env.wait_status(&id, "STOPPED");
    let out = env.run(&["timeline", &id]);
    assert!(out.status.success());
    let s = stdout(&out);
    let row = timeline_row(&s, "app");
    assert_eq!(row.len(), 10, "{s}");
    assert!(
        row[7].ends_with("ms") || row[7].ends_with(" s"),
        "first healthy: {s}"
    );
    assert!(
        row[9].ends_with("ms") || row[9].ends_with(" s"),
        "stop: {s}"
    );
    assert!(s.contains("teardown "), "{s}");
    env.assert_clean(&id);
}
