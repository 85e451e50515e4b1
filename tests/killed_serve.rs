//! `serve` killed with SIGKILL (a crash, the OOM killer) while its RunTasks are in flight:
//! as a supervisor is started ahead of its task, just after RunTask answered (tasks
//! PROVISIONING or PENDING) and while the tasks run. A user then does what they would:
//! start `serve` again on the same root, stop every task it lists, and later `system
//! reset`. Nothing of any task may be left: no process, cgroup, netns, veth, IP lease,
//! nftables element, mount or run dir; after the reset, no bridge, table or template
//! mount namespace either.

use crate::common;

use common::api::Api;
use common::leaks::{assert_no_leaks, supervisors_of, table_leftovers, template_mounts, wait_for};
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// An EC2 task on its own namespace that stops at once on SIGTERM.
const LONG: &str = r#"{"family":"ks-long","networkMode":"awsvpc",
  "containerDefinitions":[{"name":"app","image":"public.ecr.aws/docker/library/busybox:1.36",
    "essential":true,"memory":32,"stopTimeout":2,
    "command":["sh","-c","trap 'exit 0' TERM; while :; do sleep 0.1; done"]}]}"#;

const NET: &str = "awsvpcConfiguration={subnets=[subnet-0abc]}";

/// The service of 6 tasks the scheduler test creates (again, when serve died before it
/// answered).
const CREATE_WEB: [&str; 9] = [
    "create-service",
    "--service-name",
    "web",
    "--task-definition",
    "ks-long",
    "--desired-count",
    "6",
    "--network-configuration",
    NET,
];

fn arn_id(v: &Value) -> String {
    v.as_str().unwrap().rsplit('/').next().unwrap().to_string()
}

/// Every task `serve` lists in the default cluster (any status).
fn all_tasks(api: &Api) -> Vec<String> {
    let mut ids = Vec::new();
    for desired in ["RUNNING", "STOPPED"] {
        let v = api.aws_json(&["list-tasks", "--desired-status", desired]);
        ids.extend(v["taskArns"].as_array().unwrap().iter().map(arn_id));
    }
    ids
}

fn statuses(api: &Api, ids: &[String]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for chunk in ids.chunks(100) {
        let mut args = vec!["describe-tasks", "--tasks"];
        args.extend(chunk.iter().map(String::as_str));
        let v = api.aws_json(&args);
        for t in v["tasks"].as_array().unwrap() {
            out.push((
                arn_id(&t["taskArn"]),
                t["lastStatus"].as_str().unwrap_or_default().to_string(),
            ));
        }
    }
    out
}

/// RunTask of `count` tasks in the background; `serve` is SIGKILLed once `when` holds
/// (polled every millisecond, at most 60 s), then started again on the same root.
fn kill_serve_during_run_task(
    api: &mut Api,
    count: usize,
    what: &str,
    when: impl Fn(&Api) -> bool,
) {
    let count = count.to_string();
    let mut run = api
        .aws_command(
            "ecs",
            &[
                "run-task",
                "--task-definition",
                "ks-long",
                "--count",
                &count,
                "--network-configuration",
                NET,
            ],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    kill_serve_when(api, what, when);
    let _ = run.wait();
    api.restart();
    let ids = all_tasks(api);
    eprintln!("after the restart: {:?}", statuses(api, &ids));
}

/// SIGKILLs `serve` once `when` holds (polled every millisecond, at most 60 s).
fn kill_serve_when(api: &mut Api, what: &str, when: impl Fn(&Api) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !when(api) {
        assert!(Instant::now() < deadline, "never saw {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
    eprintln!("killing serve: {what}");
    api.kill_server();
}

/// Holds once a supervisor of `root` more than `before` has been seen and `after` has
/// passed since.
fn new_supervisor_then(
    root: &std::path::Path,
    before: usize,
    after: Duration,
) -> impl Fn(&Api) -> bool {
    let seen = std::cell::Cell::new(None::<Instant>);
    let root = root.to_path_buf();
    move |_| {
        if seen.get().is_none() && supervisors_of(&root).len() > before {
            seen.set(Some(Instant::now()));
        }
        seen.get().is_some_and(|t| t.elapsed() >= after)
    }
}

#[test]
fn serve_killed_while_tasks_launch_leaves_nothing_once_restarted_and_stopped() {
    let mut api = Api::start();
    let def = api.file("long.json", LONG);
    api.aws_json(&["register-task-definition", "--cli-input-json", &def]);
    let root = api.mf.root.clone();

    // 1. As the first supervisors are started ahead of their tasks (nothing recorded
    // yet, or just recorded), and a moment later.
    for extra_ms in [0u64, 30, 120] {
        let before = supervisors_of(&root).len();
        kill_serve_during_run_task(
            &mut api,
            3,
            &format!("a new supervisor, then {extra_ms} ms"),
            new_supervisor_then(&root, before, Duration::from_millis(extra_ms)),
        );
    }

    // 2. Right after RunTask answered: the tasks PROVISIONING or PENDING.
    let v = api.aws_json(&[
        "run-task",
        "--task-definition",
        "ks-long",
        "--count",
        "3",
        "--network-configuration",
        NET,
    ]);
    assert_eq!(v["tasks"].as_array().unwrap().len(), 3, "{v:#}");
    api.kill_server();
    api.restart();

    // 3. While they run.
    let ids = all_tasks(&api);
    wait_for("the tasks to be RUNNING or STOPPED", || {
        statuses(&api, &ids)
            .iter()
            .all(|(_, s)| s == "RUNNING" || s == "STOPPED")
    });
    api.kill_server();
    api.restart();

    // What a user does next: stop every task serve lists as running.
    let v = api.aws_json(&["list-tasks", "--desired-status", "RUNNING"]);
    for arn in v["taskArns"].as_array().unwrap() {
        api.aws_json(&["stop-task", "--task", arn.as_str().unwrap()]);
    }
    let ids = all_tasks(&api);
    assert!(ids.len() >= 3, "{ids:?}");
    wait_for("every task to be STOPPED", || {
        statuses(&api, &ids).iter().all(|(_, s)| s == "STOPPED")
    });
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    assert_no_leaks(&api.mf, &id_refs, &[]);
    wait_for("no supervisor of this root left", || {
        supervisors_of(&root).is_empty()
    });

    // And a reset after serve is stopped leaves nothing of the root at all.
    api.kill_server();
    let out = api.mf.run(&["system", "reset", "--force"]);
    assert!(
        out.status.success(),
        "system reset: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let net = api.mf.network();
    assert!(
        !netns::link_exists(&api.mf.bridge()).unwrap(),
        "bridge {} left",
        api.mf.bridge()
    );
    let table = net.nft_table().to_string();
    let listed = Command::new("nft")
        .args(["list", "table", "ip", &table])
        .output()
        .unwrap();
    assert!(
        !listed.status.success(),
        "table ip {table} left: {:?}",
        table_leftovers(Command::new("nft"), &table)
    );
    assert!(
        template_mounts(&api.mf).is_empty(),
        "{:?}",
        template_mounts(&api.mf)
    );
    for id in &ids {
        assert!(
            !std::path::Path::new("/run/netns")
                .join(format!("mfg-{id}"))
                .exists()
        );
        assert!(!netns::link_exists(&net.veth_name(id)).unwrap());
    }
}

/// The same for a service's tasks, launched by serve's scheduler: serve killed as the
/// first of them is started, again as the restarted serve launches the rest, and while
/// they run; the user then scales the service to 0 and deletes it.
#[test]
fn serve_killed_while_a_service_launches_leaves_nothing_once_the_service_is_deleted() {
    let mut api = Api::start();
    let def = api.file("long.json", LONG);
    api.aws_json(&["register-task-definition", "--cli-input-json", &def]);
    let root = api.mf.root.clone();
    // The scheduler starts the service's tasks as soon as it is created (and the
    // restarted serve the missing ones as soon as it starts): counted from before that.
    let mut before = supervisors_of(&root).len();
    let mut create = api
        .aws_command("ecs", &CREATE_WEB)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    kill_serve_when(
        &mut api,
        "a new supervisor of the service",
        new_supervisor_then(&root, before, Duration::ZERO),
    );
    let _ = create.wait();
    // Again as the restarted serve starts the tasks still missing, if any are.
    for _ in 0..3 {
        before = supervisors_of(&root).len();
        api.restart();
        let ids = all_tasks(&api);
        eprintln!("after the restart: {:?}", statuses(&api, &ids));
        if ids.len() >= 6 {
            break;
        }
        kill_serve_when(
            &mut api,
            "a new supervisor of the restarted serve's scheduler",
            new_supervisor_then(&root, before, Duration::ZERO),
        );
    }
    if api.service("default", "web")["status"] != "ACTIVE" {
        // serve was killed before it answered CreateService (nothing recorded): again.
        api.aws_json(&CREATE_WEB);
    }
    api.wait_for(120, "the service's 6 tasks to run", || {
        (api.service("default", "web")["runningCount"] == 6).then_some(())
    });
    api.kill_server();
    api.restart();

    api.aws_json(&["update-service", "--service", "web", "--desired-count", "0"]);
    api.aws_json(&["delete-service", "--service", "web", "--force"]);
    let ids = all_tasks(&api);
    assert!(ids.len() >= 6, "{ids:?}");
    wait_for("every task to be STOPPED", || {
        let _ = api.aws(&["list-tasks"]);
        statuses(&api, &all_tasks(&api))
            .iter()
            .all(|(_, s)| s == "STOPPED")
    });
    let ids = all_tasks(&api);
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    assert_no_leaks(&api.mf, &id_refs, &[]);
    wait_for("no supervisor of this root left", || {
        supervisors_of(&root).is_empty()
    });
}
