//! The task network's configuration runs beside the pull, rootfs and create (issue 39):
//! a failure on either side fails the task with the reason it had when the steps ran one
//! after the other, once the other side is done, and leaves nothing behind. The
//! configuration is held up by the tests' hook (`MINIFARGATE_TEST_NETWORK_DELAY`, before
//! it makes the veth pair), so the other side's step happens while it waits. Each test
//! has its own bridge and subnet (tests/common/cli.rs).

use crate::common;

use common::busybox_task_env;
use common::cli::Mf;
use common::faultproxy::FaultProxy;
use common::image::{Compression, Layer, busybox_entries};
use common::leaks::{assert_no_leaks, task_processes, wait_for};
use common::registry::Registry;
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};

const BUSYBOX: &str = "public.ecr.aws/docker/library/busybox:1.36";

/// How long the network configuration is held up before it makes the veth pair.
const DELAY_MS: u64 = 3000;

fn env() -> (Mf, Registry) {
    let (mut mf, reg) = busybox_task_env(Layer::new(
        Compression::Gzip,
        busybox_entries("run-task-overlap"),
    ));
    mf.set_env("MINIFARGATE_TEST_NETWORK_DELAY", DELAY_MS.to_string());
    (mf, reg)
}

fn describe(mf: &Mf, id: &str) -> Value {
    mf.json(&["describe-tasks", "--tasks", id])["tasks"][0].clone()
}

fn wait_stopped(mf: &Mf, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let t = describe(mf, id);
        if t["lastStatus"] == "STOPPED" {
            return t;
        }
        assert!(Instant::now() < deadline, "task {id} did not stop: {t:#}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn arn_id(v: &Value) -> String {
    v.as_str().unwrap().rsplit('/').next().unwrap().to_string()
}

/// `12.3 ms` or `1.53 s` (the timeline's durations) in ms.
fn ms(text: &str) -> f64 {
    let (v, unit) = text.trim().split_once(' ').unwrap();
    let v: f64 = v.parse().unwrap();
    if unit == "s" { v * 1000.0 } else { v }
}

/// The task's `timeline` and, from its network configuration line, when the
/// configuration ran (ms after createdAt).
fn timeline(mf: &Mf, id: &str) -> (String, f64, f64, f64) {
    let out = mf.run(&["timeline", id]);
    assert!(out.status.success(), "{out:?}");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("network configuration: "))
        .unwrap_or_else(|| panic!("no network configuration line: {text}"));
    // "<took>, beside the pull, rootfs and create (from <a> to <b> after createdAt)"
    let (took, rest) = line.split_once(", beside").unwrap();
    let span = rest.split_once("(from ").unwrap().1;
    let (from, to) = span.split_once(" to ").unwrap();
    let to = to.strip_suffix(" after createdAt)").unwrap();
    (text.clone(), ms(took), ms(from), ms(to))
}

/// A describe-tasks time (RFC 3339) in ms since the epoch.
fn epoch_ms(v: &Value) -> f64 {
    let t = v.as_str().unwrap_or_else(|| panic!("not a time: {v}"));
    chrono::DateTime::parse_from_rfc3339(t)
        .unwrap_or_else(|e| panic!("{t}: {e}"))
        .timestamp_micros() as f64
        / 1000.0
}

/// A pull that fails while the network is being configured: the task fails with the
/// pull's CannotPullContainerError as before, once the configuration is done, and nothing
/// of the network, the rootfs or the cgroups is left.
#[test]
fn a_pull_that_fails_while_the_network_is_configured_fails_as_before_and_leaves_nothing() {
    let (mut mf, reg) = env();
    // Straight from the test's registry (plain HTTP): it says at once it has no such
    // image (no mirror to fall back from).
    std::fs::create_dir_all(&mf.root).unwrap();
    let config = mf.root.join("overlap-registries.toml");
    std::fs::write(
        &config,
        format!(
            "[[registry]]\nprefix = \"{}\"\ninsecure = true\n",
            reg.host()
        ),
    )
    .unwrap();
    mf.config = Some(config);
    let td = mf.taskdef(
        "overlap-pull",
        &format!(
            r#"{{"family":"overlap-pull","networkMode":"awsvpc","containerDefinitions":[
            {{"name":"app","image":"{}/nosuch:1.0","memory":32,"command":["true"]}}]}}"#,
            reg.host()
        ),
    );
    let out = mf.run(&["run-task", "--task-definition", &td]);
    assert!(!out.status.success(), "{out:?}");
    let id = arn_id(&mf.json(&["list-tasks", "--desired-status", "STOPPED"])["taskArns"][0]);
    let t = wait_stopped(&mf, &id);
    assert_eq!(t["stopCode"], "TaskFailedToStart", "{t:#}");
    let reason = t["stoppedReason"].as_str().unwrap();
    assert!(
        reason.starts_with("CannotPullContainerError: ") && reason.contains("nosuch"),
        "{reason}"
    );
    assert_eq!(t["containers"][0]["reason"], reason, "{t:#}");
    // The pull ended while the network was still being configured.
    let (text, took, _from, to) = timeline(&mf, &id);
    assert!(took >= DELAY_MS as f64, "{text}");
    let pulled = epoch_ms(&t["pullStoppedAt"]) - epoch_ms(&t["createdAt"]);
    assert!(
        pulled < to,
        "the pull stopped {pulled} ms after createdAt, the configuration at {to}: {text}"
    );
    assert_eq!(t["attachments"][0]["status"], "DELETED", "{t:#}");
    assert_no_leaks(&mf, &[&id], &[]);
}

/// The network's configuration fails (a link of its veth's name appears on the host while
/// it waits) after the container was created in the namespace: the task fails with the
/// network's ResourceInitializationError as before, the container never runs, and
/// nothing is left.
#[test]
fn a_network_that_fails_while_the_container_is_created_fails_as_before_and_leaves_nothing() {
    let (mf, _reg) = env();
    let td = mf.taskdef(
        "overlap-net",
        &format!(
            r#"{{"family":"overlap-net","networkMode":"awsvpc","containerDefinitions":[
            {{"name":"app","image":"{BUSYBOX}","memory":32,"command":["echo","it ran"]}}]}}"#
        ),
    );
    // Cached: the create comes well within the configuration's delay.
    assert!(mf.run(&["pull", BUSYBOX]).status.success());
    let out = mf.run(&["run-task", "--task-definition", &td, "--detach"]);
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = arn_id(&v["tasks"][0]["taskArn"]);
    let veth = mf.network().veth_name(&id);
    // The container is created (its init is in its cgroup) while the configuration waits.
    let container_cgroup = format!("/{id}/{id}-0");
    wait_for("the container's create", || {
        task_processes(&id).iter().any(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
                .is_ok_and(|c| c.contains(&container_cgroup))
        })
    });
    assert!(!netns::link_exists(&veth).unwrap(), "the veth came first");
    let ip = |args: &[&str]| {
        let st = Command::new("ip").args(args).status().unwrap();
        assert!(st.success(), "ip {args:?}");
    };
    ip(&["link", "add", &veth, "type", "bridge"]);
    let t = wait_stopped(&mf, &id);
    ip(&["link", "del", &veth]);
    assert_eq!(t["stopCode"], "TaskFailedToStart", "{t:#}");
    let reason = t["stoppedReason"].as_str().unwrap();
    assert!(
        reason.starts_with(&format!(
            "ResourceInitializationError: failed to set up the network of task {id}: "
        )),
        "{reason}"
    );
    let app = &t["containers"][0];
    assert_eq!(app["reason"], reason, "{t:#}");
    assert!(app["exitCode"].is_null(), "{t:#}");
    assert_eq!(t["attachments"][0]["status"], "FAILED", "{t:#}");
    let logs = mf.run(&["logs", &id]);
    assert!(
        !String::from_utf8_lossy(&logs.stdout).contains("it ran"),
        "the container ran: {logs:?}"
    );
    assert_no_leaks(&mf, &[&id], &[]);
}

/// A `net.*` systemControl is written into the task's namespace at the container's create,
/// so the create waits for the network's configuration: a key of `eth0` (which the
/// configuration makes, after its delay) is set.
#[test]
fn a_net_system_control_waits_for_the_network_before_the_create() {
    let (mf, _reg) = env();
    let td = mf.taskdef(
        "overlap-sysctl",
        &format!(
            r#"{{"family":"overlap-sysctl","networkMode":"awsvpc","containerDefinitions":[
            {{"name":"app","image":"{BUSYBOX}","memory":32,
              "systemControls":[{{"namespace":"net.ipv4.conf.eth0.rp_filter","value":"2"}}],
              "command":["cat","/proc/sys/net/ipv4/conf/eth0/rp_filter"]}}]}}"#
        ),
    );
    let out = mf.run(&["run-task", "--task-definition", &td]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(text.trim(), "app | 2", "{out:?}");
    let id = arn_id(&mf.json(&["list-tasks", "--desired-status", "STOPPED"])["taskArns"][0]);
    assert_no_leaks(&mf, &[&id], &[]);
}

/// `default`'s registry check of a cached image is asked from the supervisor's start,
/// beside the network's first half: with the supervisor held at the end of that step
/// (`MINIFARGATE_TEST_PAUSE=network`), the registry has already been asked for the
/// image's manifest. The supervisor killed there leaves nothing behind.
#[test]
fn the_image_check_is_asked_beside_the_network() {
    let (mut mf, reg) = busybox_task_env(Layer::new(
        Compression::Gzip,
        busybox_entries("run-task-overlap-check"),
    ));
    let proxy = FaultProxy::start(&reg.host(), Vec::new());
    mf.mirror_config("public.ecr.aws", &proxy.host(), true);
    let out = mf.run(&["pull", BUSYBOX]);
    assert!(out.status.success(), "{out:?}");
    let manifests = |p: &FaultProxy| {
        p.seen()
            .iter()
            .filter(|s| s.path.ends_with("/manifests/1.36"))
            .count()
    };
    let before = manifests(&proxy);
    let td = mf.taskdef(
        "overlap-check",
        r#"{"family":"overlap-check","networkMode":"awsvpc","containerDefinitions":[
            {"name":"app","image":"public.ecr.aws/docker/library/busybox:1.36","memory":32,
             "command":["sleep","1000"]}]}"#,
    );
    mf.set_env("MINIFARGATE_TEST_PAUSE", "network");
    let out = mf.run(&["run-task", "--task-definition", &td, "--detach"]);
    mf.env.retain(|(k, _)| k != "MINIFARGATE_TEST_PAUSE");
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = arn_id(&v["tasks"][0]["taskArn"]);
    let paused = mf.run_root.join("tasks").join(&id).join("paused-network");
    wait_for("the supervisor to pause after the network step", || {
        paused.exists()
    });
    wait_for("the registry to be asked for the manifest", || {
        manifests(&proxy) > before
    });
    let t = describe(&mf, &id);
    assert_eq!(t["lastStatus"], "PROVISIONING", "{t:#}");
    assert!(t["pullStartedAt"].is_null(), "{t:#}");
    mf.kill_supervisors();
    let t = wait_stopped(&mf, &id);
    assert_eq!(t["stopCode"], "TaskFailedToStart", "{t:#}");
    assert_no_leaks(&mf, &[&id], &[]);
}
