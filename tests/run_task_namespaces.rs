//! Root integration tests of `pidMode`, `ipcMode`, `disableNetworking` and
//! `dockerSecurityOptions`, checked from inside the containers (`/proc/self/ns/*`, `ps`,
//! `/dev/shm`, `/sys/class/net`) against what the host sees.

use crate::common;

use common::busybox_task_env;
use common::cli::Mf;
use common::image::{Compression, Layer, busybox_all_applets};
use common::leaks::assert_no_leaks;
use common::registry::Registry;
use serde_json::Value;
use std::process::Output;

const BUSYBOX: &str = "public.ecr.aws/docker/library/busybox:1.36";

struct Env {
    mf: Mf,
    _reg: Registry,
}

impl Env {
    fn new() -> Env {
        let (mf, reg) = busybox_task_env(Layer::new(
            Compression::Gzip,
            busybox_all_applets("run-task-ns"),
        ));
        Env { mf, _reg: reg }
    }

    /// Runs `taskdef` attached (EC2 launch type: these members are not for Fargate).
    fn run_attached(&self, name: &str, json: &str) -> (Output, String) {
        let td = self.mf.taskdef(name, json);
        let before = self.stopped_ids();
        let out = self
            .mf
            .run(&["run-task", "--task-definition", &td, "--launch-type", "EC2"]);
        let id = self
            .stopped_ids()
            .into_iter()
            .find(|i| !before.contains(i))
            .unwrap_or_default();
        (out, id)
    }

    fn stopped_ids(&self) -> Vec<String> {
        let v = self.mf.json(&["list-tasks", "--desired-status", "STOPPED"]);
        v["taskArns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().rsplit('/').next().unwrap().to_string())
            .collect()
    }

    fn describe(&self, id: &str) -> Value {
        let v = self.mf.json(&["describe-tasks", "--tasks", id]);
        v["tasks"][0].clone()
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The value a container printed after `tag=` (its output lines are `name | text`).
fn printed(out: &str, container: &str, tag: &str) -> String {
    out.lines()
        .filter(|l| l.split('|').next().is_some_and(|n| n.trim() == container))
        .find_map(|l| {
            l.split_once(&format!("{tag}="))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| panic!("{container} printed no {tag}= in:\n{out}"))
}

fn host_ns(ns: &str) -> String {
    std::fs::read_link(format!("/proc/self/ns/{ns}"))
        .unwrap()
        .display()
        .to_string()
}

/// Processes whose command line is a namespace holder of task `id`.
fn holders_of(id: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.starts_with("minifargate-ns-holder") && c.contains(id))
        .collect()
}

#[test]
fn pid_mode_task_shares_one_pid_namespace_that_outlives_the_first_container() {
    let env = Env::new();
    // `first` exits before `app` starts: the namespace must outlive it. `app` must see
    // its sibling's `sleep 4242` and the holder as pid 1.
    let (out, id) = env.run_attached(
        "pid-task",
        &format!(
            r#"{{"family":"pid-task","pidMode":"task","memory":"256","containerDefinitions":[
            {{"name":"first","image":"{BUSYBOX}","essential":false,
              "command":["sh","-c","echo ns=$(readlink /proc/self/ns/pid)"]}},
            {{"name":"sibling","image":"{BUSYBOX}","essential":false,
              "command":["sleep","4242"]}},
            {{"name":"app","image":"{BUSYBOX}",
              "dependsOn":[{{"containerName":"first","condition":"COMPLETE"}},
                           {{"containerName":"sibling","condition":"START"}}],
              "command":["sh","-c","echo ns=$(readlink /proc/self/ns/pid); ps -o pid,args | sed 's/^/ps: /'; sleep 1 & wait; echo forked=ok"]}}]}}"#
        ),
    );
    let s = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{s}");
    let first = printed(&s, "first", "ns");
    assert_eq!(first, printed(&s, "app", "ns"), "{s}");
    assert_ne!(first, host_ns("pid"));
    let ps: Vec<&str> = s.lines().filter(|l| l.contains("ps: ")).collect();
    assert!(ps.iter().any(|l| l.contains("sleep 4242")), "{ps:#?}");
    // pid 1 is the holder (busybox shows `{exe}`: its comm differs from argv[0]).
    assert!(
        ps.iter()
            .any(|l| l.contains("ps:     1 ") && l.contains("minifargate-ns-holder")),
        "{ps:#?}"
    );
    assert!(s.contains("forked=ok"), "{s}");
    let t = env.describe(&id);
    assert_eq!(t["containers"][0]["exitCode"], 0, "{t:#}");
    assert!(holders_of(&id).is_empty(), "{:?}", holders_of(&id));
    assert_no_leaks(&env.mf, &[&id], &[]);
}

#[test]
fn pid_and_ipc_mode_host_are_the_hosts_namespaces() {
    let env = Env::new();
    let (out, id) = env.run_attached(
        "host-ns",
        &format!(
            r#"{{"family":"host-ns","pidMode":"host","ipcMode":"host","memory":"256","containerDefinitions":[
            {{"name":"app","image":"{BUSYBOX}",
              "command":["sh","-c","echo pid=$(readlink /proc/self/ns/pid) ipc=$(readlink /proc/self/ns/ipc); echo host-pid-visible=$(test -d /proc/{me} && echo yes)"]}}]}}"#,
            me = std::process::id()
        ),
    );
    let s = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{s}");
    assert_eq!(
        printed(&s, "app", "pid").split(' ').next().unwrap(),
        host_ns("pid")
    );
    assert_eq!(printed(&s, "app", "ipc"), host_ns("ipc"));
    assert_eq!(printed(&s, "app", "host-pid-visible"), "yes");
    assert_no_leaks(&env.mf, &[&id], &[]);
}

#[test]
fn ipc_mode_task_shares_the_namespace_and_dev_shm_and_none_has_no_dev_shm() {
    let env = Env::new();
    let (out, id) = env.run_attached(
        "ipc-task",
        &format!(
            r#"{{"family":"ipc-task","ipcMode":"task","memory":"256","containerDefinitions":[
            {{"name":"writer","image":"{BUSYBOX}","essential":false,
              "command":["sh","-c","echo ns=$(readlink /proc/self/ns/ipc); echo from-writer > /dev/shm/x"]}},
            {{"name":"reader","image":"{BUSYBOX}",
              "dependsOn":[{{"containerName":"writer","condition":"SUCCESS"}}],
              "command":["sh","-c","echo ns=$(readlink /proc/self/ns/ipc); echo shm=$(cat /dev/shm/x)"]}}]}}"#
        ),
    );
    let s = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{s}");
    let w = printed(&s, "writer", "ns");
    assert_eq!(w, printed(&s, "reader", "ns"), "{s}");
    assert_ne!(w, host_ns("ipc"));
    assert_eq!(printed(&s, "reader", "shm"), "from-writer");
    assert!(holders_of(&id).is_empty());

    // ipcMode none: private, and like Docker's `--ipc none`, no /dev/shm at all. Without
    // ipcMode each container has its own namespace and /dev/shm.
    let (out, id2) = env.run_attached(
        "ipc-none",
        &format!(
            r#"{{"family":"ipc-none","ipcMode":"none","memory":"256","containerDefinitions":[
            {{"name":"a","image":"{BUSYBOX}",
              "command":["sh","-c","echo ns=$(readlink /proc/self/ns/ipc); echo shm=$(test -e /dev/shm && echo present || echo absent)"]}}]}}"#
        ),
    );
    let s = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{s}");
    assert_ne!(printed(&s, "a", "ns"), host_ns("ipc"));
    assert_eq!(printed(&s, "a", "shm"), "absent");
    let (out, id3) = env.run_attached(
        "ipc-default",
        &format!(
            r#"{{"family":"ipc-default","memory":"256","containerDefinitions":[
            {{"name":"a","image":"{BUSYBOX}","essential":false,
              "command":["sh","-c","echo ns=$(readlink /proc/self/ns/ipc); sleep 3"]}},
            {{"name":"b","image":"{BUSYBOX}","dependsOn":[{{"containerName":"a","condition":"START"}}],
              "command":["sh","-c","echo ns=$(readlink /proc/self/ns/ipc); echo shm=$(test -d /dev/shm && echo present)"]}}]}}"#
        ),
    );
    let s = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{s}");
    // Both alive at once (b starts once a has): a freed namespace's inode number can be
    // reused by the next one, so two that did not overlap may print the same.
    assert_ne!(printed(&s, "a", "ns"), printed(&s, "b", "ns"));
    assert_eq!(printed(&s, "b", "shm"), "present");
    assert_no_leaks(&env.mf, &[&id, &id2, &id3], &[]);
}

#[test]
fn disable_networking_leaves_the_container_only_its_own_loopback() {
    let env = Env::new();
    let (out, id) = env.run_attached(
        "no-net",
        &format!(
            r#"{{"family":"no-net","networkMode":"awsvpc","memory":"256","containerDefinitions":[
            {{"name":"net","image":"{BUSYBOX}","essential":false,
              "command":["sh","-c","echo ns=$(readlink /proc/self/ns/net); echo links=$(ls /sys/class/net)"]}},
            {{"name":"off","image":"{BUSYBOX}","disableNetworking":true,
              "dependsOn":[{{"containerName":"net","condition":"COMPLETE"}}],
              "command":["sh","-c","echo ns=$(readlink /proc/self/ns/net); echo links=$(ls /sys/class/net); echo loflags=$(cat /sys/class/net/lo/flags); echo ping=$(ping -c1 -W2 127.0.0.1 >/dev/null && echo ok)"]}}]}}"#
        ),
    );
    let s = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{s}");
    assert_eq!(printed(&s, "net", "links"), "eth0 lo");
    assert_eq!(printed(&s, "off", "links"), "lo");
    assert_ne!(printed(&s, "off", "ns"), printed(&s, "net", "ns"));
    assert_ne!(printed(&s, "off", "ns"), host_ns("net"));
    // IFF_UP | IFF_LOOPBACK: the loopback is up, as Docker leaves it.
    assert_eq!(printed(&s, "off", "loflags"), "0x9");
    assert_eq!(printed(&s, "off", "ping"), "ok");
    assert_no_leaks(&env.mf, &[&id], &[]);
}

#[test]
fn docker_security_options_apply_warn_or_refuse() {
    let env = Env::new();
    // What this host cannot apply is a warning in validate and on the task; the task runs.
    let json = format!(
        r#"{{"family":"secopts","memory":"256","containerDefinitions":[
        {{"name":"app","image":"{BUSYBOX}",
          "dockerSecurityOptions":["no-new-privileges","label:type:svirt_t","seccomp:unconfined","apparmor:unconfined"],
          "command":["sh","-c","echo nnp=$(grep NoNewPrivs /proc/self/status | tr -d '\\t ')"]}}]}}"#
    );
    let td = env.mf.taskdef("secopts", &json);
    let v = env.mf.run(&["validate", &td, "--output", "json"]);
    let doc: Value = serde_json::from_slice(&v.stdout).unwrap();
    assert!(v.status.success(), "{doc:#}");
    let found: Vec<&Value> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["path"] == "containerDefinitions[0].dockerSecurityOptions")
        .collect();
    assert_eq!(found.len(), 1, "{doc:#}");
    assert_eq!(found[0]["rule"], "not-applied");
    let msg = found[0]["message"].as_str().unwrap();
    assert!(
        msg.contains("label:type:svirt_t: this host does not label")
            && msg.contains("seccomp:unconfined: not applied, here as on ECS")
            && !msg.contains("no-new-privileges")
            && !msg.contains("apparmor"),
        "{msg}"
    );
    let (out, id) = env.run_attached("secopts", &json);
    let s = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{s}");
    assert_eq!(printed(&s, "app", "nnp"), "NoNewPrivs:1");
    let t = env.describe(&id);
    let warnings: Vec<String> = t["minifargateWarnings"]
        .as_array()
        .unwrap_or_else(|| panic!("no warnings on the task: {t:#}"))
        .iter()
        .map(|w| w.as_str().unwrap().to_string())
        .collect();
    assert!(
        warnings.iter().any(|w| w.starts_with(
            "containerDefinitions[0].dockerSecurityOptions: not applied here: label:type:svirt_t"
        ) && w.contains("seccomp:unconfined")),
        "{warnings:#?}"
    );

    // Something Docker refuses: validate warns, and the container fails as Docker's would.
    let bad_json = format!(
        r#"{{"family":"secopt-bad","memory":"256","containerDefinitions":[
        {{"name":"app","image":"{BUSYBOX}","dockerSecurityOptions":["systempaths=unconfined"],
          "command":["true"]}}]}}"#
    );
    let v = env
        .mf
        .run(&["validate", &env.mf.taskdef("secopt-bad", &bad_json)]);
    let err = String::from_utf8_lossy(&v.stderr).into_owned();
    assert!(v.status.success(), "{err}");
    assert!(
        err.contains("containerDefinitions[0].dockerSecurityOptions[0]")
            && err.contains("[docker-security-options]"),
        "{err}"
    );
    let (out, bad) = env.run_attached(
        "secopt-bad",
        &format!(
            r#"{{"family":"secopt-bad","memory":"256","containerDefinitions":[
            {{"name":"app","image":"{BUSYBOX}","dockerSecurityOptions":["systempaths=unconfined"],
              "command":["true"]}}]}}"#
        ),
    );
    assert_ne!(out.status.code(), Some(0));
    let t = env.describe(&bad);
    let reason = t["containers"][0]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("CannotCreateContainerError")
            && reason.contains(r#"invalid --security-opt 2: "systempaths=unconfined""#),
        "{t:#}"
    );
    assert_eq!(t["stopCode"], "TaskFailedToStart");

    // An AppArmor profile this host cannot apply is refused before anything starts.
    let enabled = std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|v| v.starts_with('Y'));
    let before = env.stopped_ids().len();
    let td = env.mf.taskdef(
        "apparmor",
        &format!(
            r#"{{"family":"apparmor","memory":"256","containerDefinitions":[
            {{"name":"app","image":"{BUSYBOX}","dockerSecurityOptions":["apparmor:minifargate-no-such-profile"],
              "command":["true"]}}]}}"#
        ),
    );
    let e = env
        .mf
        .fail(&["run-task", "--task-definition", &td, "--launch-type", "EC2"]);
    assert!(
        e.contains(
            "containerDefinitions[0].dockerSecurityOptions[0]: apparmor:minifargate-no-such-profile"
        ),
        "{e}"
    );
    if enabled {
        assert!(e.contains("is not loaded"), "{e}");
    } else {
        assert!(e.contains("AppArmor is not enabled on this host"), "{e}");
    }
    assert_eq!(
        env.stopped_ids().len(),
        before,
        "a refused task was created"
    );
    assert_no_leaks(&env.mf, &[&id, &bad], &[]);
}
