//! Per-task user namespaces (issue 27, docs/security.md "Per-task user namespaces"): each
//! task's root is its own unprivileged host id, running tasks never share ids, the image
//! layers are shared (idmapped, not copied), a host path stays the host's, `inspect` shows
//! the mapping, and nothing is left behind. The isolation suite (reliability_security.rs)
//! also runs whole with `MINIFARGATE_TEST_USERNS=auto` in CI.

use crate::common;

use common::cli::Mf;
use common::image::{Compression, Layer, busybox_all_applets};
use common::leaks::assert_no_leaks;
use common::registry::{Registry, RegistryOpts};
use common::util::wait_until;
use serde_json::Value;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

const IMAGE: &str = "public.ecr.aws/docker/library/busybox:1.36";

struct Env {
    mf: Mf,
    /// The task ids' host range (start, count) of this test's pool.
    pool: (u32, u32),
    layer: String,
    _reg: Registry,
}

impl Env {
    fn new(mode: &str) -> Env {
        let reg = Registry::start(RegistryOpts::default());
        let work = tempfile::Builder::new()
            .prefix("mf-userns-img-")
            .tempdir()
            .unwrap();
        let img = common::push_image(
            &reg,
            work.path(),
            "docker/library/busybox:1.36",
            &[Layer::new(Compression::Gzip, busybox_all_applets("userns"))],
        );
        let mut mf = Mf::new();
        mf.mirror_config("public.ecr.aws", &reg.host(), true);
        let pool = mf.enable_userns(mode);
        Env {
            mf,
            pool,
            layer: img.layers[0].diff_id.clone(),
            _reg: reg,
        }
    }

    fn taskdef(&self, family: &str, extra: &str, container: &str) -> String {
        self.mf.taskdef(
            family,
            &format!(
                r#"{{"family":"{family}","networkMode":"awsvpc"{extra},"containerDefinitions":[
                {{"name":"app","image":"{IMAGE}","memory":64,"stopTimeout":2{container}}}]}}"#
            ),
        )
    }

    fn start(&self, td: &str) -> String {
        let v = self
            .mf
            .json(&["run-task", "--task-definition", td, "--detach"]);
        let id = v["tasks"][0]["taskArn"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .to_string();
        wait_until(&format!("{id} RUNNING"), Duration::from_secs(60), || {
            let t = self.describe(&id);
            assert_ne!(t["lastStatus"], "STOPPED", "{t:#}");
            (t["lastStatus"] == "RUNNING").then_some(())
        });
        id
    }

    /// stop-task, then waits until the task is STOPPED (torn down).
    fn stop(&self, id: &str) {
        self.mf.run(&["stop-task", "--task", id]);
        wait_until(&format!("{id} STOPPED"), Duration::from_secs(60), || {
            (self.describe(id)["lastStatus"] == "STOPPED").then_some(())
        });
    }

    fn describe(&self, id: &str) -> Value {
        self.mf.json(&["describe-tasks", "--tasks", id])["tasks"][0].clone()
    }

    fn inspect(&self, id: &str) -> Value {
        self.mf.json(&["inspect", id, "--output", "json"])
    }
}

fn status_ids(pid: i64, key: &str) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap()
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect()
}

#[test]
fn each_tasks_root_is_its_own_unprivileged_host_id_over_shared_layers() {
    let env = Env::new("on");
    let (start, count) = env.pool;
    let td = env.taskdef(
        "userns",
        "",
        r#","command":["sh","-c","touch /tmp/made; cat /proc/self/uid_map; trap 'exit 0' TERM; sleep 4343 & wait"]"#,
    );
    let a = env.start(&td);
    let b = env.start(&td);
    let mut hosts = Vec::new();
    for id in [&a, &b] {
        let v = env.inspect(id);
        let c = &v["containers"][0];
        let pid = c["hostPid"].as_i64().unwrap();
        // Root inside, an id of the pool outside: every uid and gid of the process.
        assert_eq!(c["process"]["uid"], 0, "{c:#}");
        let host = c["process"]["hostUid"].as_u64().unwrap() as u32;
        assert!(
            host >= start && host < start + count,
            "{host} not in {start}+{count}"
        );
        assert_eq!(status_ids(pid, "Uid"), [host; 4]);
        assert_eq!(status_ids(pid, "Gid"), [host; 4]);
        assert_eq!(
            c["userNamespace"]["uidMap"],
            serde_json::json!([[0, host, 65536]])
        );
        assert_eq!(v["userNamespace"]["hostIdStart"], host);
        assert_ne!(
            c["namespaces"]
                .as_array()
                .unwrap()
                .iter()
                .find(|n| n["type"] == "user")
                .unwrap()["scope"],
            "host"
        );
        // The image's files: owned by the task's root as the host sees them through the
        // container, the very inode of the shared layer (owned by host root on disk), and
        // what the container wrote is its root's on the host.
        let seen = std::fs::metadata(format!("/proc/{pid}/root/bin/busybox")).unwrap();
        let layer = std::fs::metadata(env.mf.layer_dir(&env.layer).join("bin/busybox")).unwrap();
        assert_eq!(layer.uid(), 0);
        assert_eq!((seen.uid(), seen.gid()), (host, host));
        // (overlayfs reports its own st_dev; a copy would have another inode number.)
        assert_eq!(seen.ino(), layer.ino());
        let made = std::fs::metadata(format!("/proc/{pid}/root/tmp/made")).unwrap();
        assert_eq!(made.uid(), host);
        hosts.push(host);
    }
    assert_eq!(
        hosts[1].abs_diff(hosts[0]),
        65536,
        "two tasks, two ranges: {hosts:?}"
    );
    // The container's own view: root, mapped onto its range.
    let out = env.mf.run(&["logs", &a]);
    let text = String::from_utf8_lossy(&out.stdout);
    let map: Vec<&str> = text.split_whitespace().collect();
    assert!(
        map.ends_with(&["0", &hosts[0].to_string(), "65536"]),
        "{text}"
    );
    for id in [&a, &b] {
        env.stop(id);
    }
    assert_no_leaks(&env.mf, &[&a, &b], &[]);
    // Stopped: the range is free again, and the next task gets the first one.
    let c = env.start(&td);
    let v = env.inspect(&c);
    assert_eq!(v["userNamespace"]["hostIdStart"], start);
    env.stop(&c);
    assert_no_leaks(&env.mf, &[&c], &[]);
}

#[test]
fn a_host_path_stays_the_hosts_and_a_task_volume_is_its_roots() {
    let env = Env::new("on");
    let host = tempfile::Builder::new()
        .prefix("mf-userns-host-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(host.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(host.path().join("owned"), "host\n").unwrap();
    std::fs::write(host.path().join("private"), "secret\n").unwrap();
    std::fs::set_permissions(
        host.path().join("private"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let script = r#"
cat /h/owned
(echo evil > /h/owned) 2>/dev/null && echo wrote owned || echo denied write
cat /h/private 2>/dev/null && echo read private || echo denied read
touch /h/new 2>/dev/null && echo created || echo denied create
chown 0 /h/owned 2>/dev/null && echo chowned || echo denied chown
rm /h/owned 2>/dev/null && echo removed || echo denied remove
touch /t/mine && echo wrote task volume
stat -c 'owner %u' /h/owned
"#;
    let td = env.taskdef(
        "hostpath",
        &format!(
            r#","volumes":[{{"name":"h","host":{{"sourcePath":"{}"}}}},{{"name":"t"}}]"#,
            host.path().display()
        ),
        &format!(
            r#","command":["sh","-c",{script:?}],
            "mountPoints":[{{"sourceVolume":"h","containerPath":"/h"}},{{"sourceVolume":"t","containerPath":"/t"}}]"#
        ),
    );
    let out = env.mf.run(&["run-task", "--task-definition", &td]);
    let text = String::from_utf8_lossy(&out.stdout).replace("app | ", "");
    assert!(out.status.success(), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    for want in [
        "host",
        "denied write",
        "denied read",
        "denied create",
        "denied chown",
        "denied remove",
        "wrote task volume",
        // A host id outside the task's range: the overflow id.
        "owner 65534",
    ] {
        assert!(lines.contains(&want), "{want:?} not in {lines:#?}");
    }
    assert_eq!(
        std::fs::read_to_string(host.path().join("owned")).unwrap(),
        "host\n"
    );
    assert!(!host.path().join("new").exists());
    // Said on the task: the host path is not mapped.
    let v = env.mf.json(&["list-tasks", "--desired-status", "STOPPED"]);
    let arn = v["taskArns"][0].as_str().unwrap().to_string();
    let t = env.describe(&arn);
    let warnings = t["minifargateWarnings"].to_string();
    assert!(
        warnings.contains("is not mapped into the task's user namespace"),
        "{t:#}"
    );
    let id = arn.rsplit('/').next().unwrap();
    assert_no_leaks(&env.mf, &[id], &[]);
}

#[test]
fn on_refuses_what_needs_host_root_and_auto_runs_it_with_a_warning() {
    let env = Env::new("on");
    let td = env.taskdef(
        "priv",
        "",
        r#","privileged":true,"command":["cat","/proc/self/uid_map"]"#,
    );
    let out = env.mf.run(&["run-task", "--task-definition", &td]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("user namespaces are required") && err.contains("privileged"),
        "{err}"
    );
    let mut env = env;
    env.mf.enable_userns("auto");
    let out = env.mf.run(&["run-task", "--task-definition", &td]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    // The host's map: container root is host root in this task, and the task says so.
    assert!(text.contains("4294967295"), "{text}");
    let v = env.mf.json(&["list-tasks", "--desired-status", "STOPPED"]);
    let arns: Vec<String> = v["taskArns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    let said = arns.iter().any(|a| {
        env.describe(a)["minifargateWarnings"]
            .to_string()
            .contains("user namespace: not applied here: container app is privileged")
    });
    assert!(said, "no task warned about the user namespace");
    let ids: Vec<&str> = arns.iter().map(|a| a.rsplit('/').next().unwrap()).collect();
    assert_no_leaks(&env.mf, &ids, &[]);
}
