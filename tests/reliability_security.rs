//! Security from inside (issue 8): what a task's container can see and do, checked from
//! inside with the runtime's probe (runtime/tests/probe/probe.c, built here) and busybox,
//! and what a container's uid can read of the task on the host.
//!
//! That a task cannot reach another task's 169.254.170.2 endpoint (metadata or
//! credentials) is checked in tests/run_task_metadata.rs, next to the endpoint's tests.

use crate::common;

use common::cli::Mf;
use common::image::{Compression, Entry, Layer, busybox_all_applets};
use common::leaks::assert_no_leaks;
use common::registry::{Registry, RegistryOpts};
use serde_json::Value;
use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const IMAGE: &str = "public.ecr.aws/docker/library/busybox:1.36";
/// Docker's default capability set (CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID
/// SETPCAP NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP), which ECS
/// and Fargate containers get.
const DEFAULT_CAPS: &str = "00000000a80425fb";
const EPERM: i64 = 1;

/// `runtime/tests/probe/probe.c`, built static once per test binary.
fn probe() -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("runtime/tests/probe/probe.c");
        let out = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("probe-sec-{}", std::process::id()));
        let st = Command::new("gcc")
            .args(["-static", "-O2", "-Wall", "-o"])
            .arg(&out)
            .arg(&src)
            .status()
            .expect("run gcc (apt-get install gcc libc6-dev)");
        assert!(st.success(), "building the probe failed");
        out
    })
}

struct Env {
    mf: Mf,
    _reg: Registry,
}

impl Env {
    /// Busybox with every applet, the probe at /probe and a `nobody` user.
    fn new() -> Env {
        let reg = Registry::start(RegistryOpts::default());
        let work = tempfile::Builder::new()
            .prefix("mf-sec-img-")
            .tempdir()
            .unwrap();
        let mut entries: Vec<Entry> = busybox_all_applets("security")
            .into_iter()
            .filter(|e| e.path != "etc/passwd" && e.path != "etc/group")
            .collect();
        entries.extend([
            Entry::file(
                "etc/passwd",
                "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n",
            ),
            Entry::file("etc/group", "root:x:0:\nnogroup:x:65534:\n"),
            Entry::file("probe", std::fs::read(probe()).unwrap()).mode(0o755),
        ]);
        common::push_image(
            &reg,
            work.path(),
            "docker/library/busybox:1.36",
            &[Layer::new(Compression::Gzip, entries)],
        );
        let mut mf = Mf::new();
        mf.mirror_config("public.ecr.aws", &reg.host(), true);
        Env { mf, _reg: reg }
    }

    fn taskdef(&self, family: &str, container: &str) -> String {
        self.taskdef_in("awsvpc", family, container)
    }

    fn taskdef_in(&self, mode: &str, family: &str, container: &str) -> String {
        self.mf.taskdef(
            family,
            &format!(
                r#"{{"family":"{family}","networkMode":"{mode}","containerDefinitions":[
                {{"name":"app","image":"{IMAGE}","memory":64,"stopTimeout":2{container}}}]}}"#
            ),
        )
    }

    /// Runs the task attached; returns its id and the container's output lines.
    fn run_attached(&self, td: &str) -> (String, Vec<String>) {
        let out = self.mf.run(&["run-task", "--task-definition", td]);
        assert!(out.status.success(), "the probe task failed");
        let lines = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.strip_prefix("app | ").unwrap_or(l).to_string())
            .collect();
        let v = self.mf.json(&["list-tasks", "--desired-status", "STOPPED"]);
        let id = v["taskArns"][0]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .to_string();
        (id, lines)
    }

    fn describe(&self, id: &str) -> Value {
        self.mf.json(&["describe-tasks", "--tasks", id])["tasks"][0].clone()
    }

    fn wait_status(&self, id: &str, want: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let t = self.describe(id);
            if t["lastStatus"] == want {
                return t;
            }
            assert!(Instant::now() < deadline, "{id} not {want}: {t:#}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The text between `--- name` and the next `---` line of the container's output.
fn section<'a>(lines: &'a [String], name: &str) -> Vec<&'a str> {
    let start = lines
        .iter()
        .position(|l| l == &format!("--- {name}"))
        .unwrap_or_else(|| panic!("no section {name} in {lines:#?}"));
    lines[start + 1..]
        .iter()
        .take_while(|l| !l.starts_with("--- "))
        .map(String::as_str)
        .collect()
}

/// What a container probes from inside: its probe report, processes, links, addresses,
/// writes to /proc/sys and cgroups, a module load, its own endpoint (the control that
/// `wget` works) and the other task's at `other_ip` (51679, where each task's supervisor
/// listens inside its own namespace). busybox 1.35's `wget -T` crashes: `timeout` bounds
/// the calls instead.
fn inside_script(other_ip: &str) -> String {
    format!(
        r#"
echo '--- probe'; /probe info
echo '--- pids'; ls /proc | grep -E '^[0-9]+$'
echo '--- cmdlines'; cat /proc/[0-9]*/cmdline | tr '\0\n' '  ' | sed 's/---/-/g'; echo
echo '--- links'; ls /sys/class/net
echo '--- addrs'; ip -4 addr show | grep inet | awk '{{print $2}}'
echo '--- proc/sys'
(echo 1 > /proc/sys/net/ipv4/ip_forward) 2>/dev/null && echo wrote ip_forward
(echo evil > /proc/sys/kernel/hostname) 2>/dev/null && echo wrote hostname
echo '--- cgroup before'; cat /proc/self/cgroup
echo '--- cgroup escape'
for f in $(find /sys/fs/cgroup -name cgroup.procs 2>/dev/null); do
  (echo $$ > $f) 2>/dev/null && echo "wrote $f"
done
mkdir /sys/fs/cgroup/pids/escape 2>/dev/null && echo made a cgroup
mount -t cgroup -o pids none /mnt 2>/dev/null && echo mounted cgroup
echo '--- cgroup after'; cat /proc/self/cgroup
echo '--- modules'
insmod /nonexistent.ko 2>/dev/null && echo loaded a module
echo '--- own endpoint'
timeout 3 wget -qO- "$ECS_CONTAINER_METADATA_URI_V4" >/dev/null 2>&1 && echo reached
echo '--- other endpoint'
timeout 3 wget -qO- http://{other_ip}:51679/v4/ >/dev/null 2>&1 && echo reached {other_ip}:51679
echo '--- end'
"#
    )
}

/// The other task (awsvpc, a marker in its command line), RUNNING: its id and address.
fn start_other(env: &Env) -> (String, String) {
    let other = env.taskdef(
        "other",
        r#","command":["sh","-c","trap 'exit 0' TERM; sleep 4242 & wait"]"#,
    );
    let v = env
        .mf
        .json(&["run-task", "--task-definition", &other, "--detach"]);
    let other_id = v["tasks"][0]["taskArn"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let t = env.wait_status(&other_id, "RUNNING");
    let other_ip = t["containers"][0]["networkInterfaces"][0]["privateIpv4Address"]
        .as_str()
        .unwrap()
        .to_string();
    (other_id, other_ip)
}

/// Runs the probe script in a task of network mode `mode` next to the other task, and
/// checks what holds in every mode; `links` is what the container must see in
/// /sys/class/net (`None`: the host's own, in host mode).
fn assert_isolated_in(env: &Env, mode: &str, other_ip: &str, links: Option<&[&str]>) -> String {
    let script = inside_script(other_ip);
    let td = env.taskdef_in(
        mode,
        &format!("inside-{mode}"),
        &format!(r#","command":["sh","-c",{script:?}]"#),
    );
    let (id, lines) = env.run_attached(&td);
    let probe: Value = serde_json::from_str(section(&lines, "probe")[0]).unwrap();
    // Capabilities: Docker's default set, nothing ambient or inheritable.
    assert_eq!(probe["CapEff"], DEFAULT_CAPS, "{mode}: {probe:#}");
    assert_eq!(probe["CapPrm"], DEFAULT_CAPS);
    assert_eq!(probe["CapBnd"], DEFAULT_CAPS);
    assert_eq!(probe["CapAmb"], "0000000000000000");
    // seccomp filter mode; no_new_privs off by default, as on ECS and Docker (the
    // nobody test turns it on with dockerSecurityOptions).
    assert_eq!(probe["Seccomp"], "2");
    assert_eq!(probe["NoNewPrivs"], "0");
    for call in ["unshare", "mount", "keyctl", "finit_module"] {
        assert_eq!(probe["errno"][call], EPERM, "{mode}: {call}: {probe:#}");
    }
    // Masked and read-only paths.
    assert_ne!(probe["errno"]["read_kcore"], 0);
    assert_ne!(probe["errno"]["write_sysrq"], 0);
    let mounts: Vec<&str> = probe["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    let point = |m: &str| m.split(' ').nth(1).unwrap_or_default().to_string();
    for ro in ["/proc/sys", "/sys", "/sys/fs/cgroup"] {
        assert!(
            mounts.iter().any(|m| point(m) == ro),
            "{mode}: {ro} not mounted: {mounts:#?}"
        );
    }
    // The mount a path resolves to is the last one listed at its mount point (the
    // read-only binds sit on top of the mounts they cover).
    let mut top = std::collections::BTreeMap::new();
    for m in &mounts {
        top.insert(point(m), *m);
    }
    for (p, m) in &top {
        if p == "/proc/sys" || p == "/sys" || p.starts_with("/sys/fs/cgroup") {
            let opts = m.split(' ').nth(3).unwrap();
            assert!(
                opts.split(',').any(|o| o == "ro"),
                "{mode}: not read-only: {m}"
            );
        }
    }
    // No write to the kernel's settings — in host mode they would be the host's.
    assert!(section(&lines, "proc/sys").is_empty(), "{mode}: {lines:#?}");
    // Its own pid namespace: a handful of its own processes, none of the host's or of
    // the other task's.
    let pids = section(&lines, "pids");
    assert!(
        pids.len() < 10,
        "{mode}: sees {} processes: {pids:?}",
        pids.len()
    );
    assert!(pids.contains(&"1"));
    let cmdlines = section(&lines, "cmdlines").join(" ");
    assert!(
        !cmdlines.contains("4242"),
        "{mode}: sees the other task: {cmdlines}"
    );
    assert!(
        !cmdlines.contains("minifargate"),
        "{mode}: sees the host: {cmdlines}"
    );
    let seen: BTreeSet<&str> = section(&lines, "links").into_iter().collect();
    let addrs = section(&lines, "addrs");
    match links {
        Some(want) => {
            // Its own network namespace, without the other task's address.
            assert_eq!(seen, want.iter().copied().collect(), "{mode}");
            assert!(
                !addrs.iter().any(|a| a.starts_with(&format!("{other_ip}/"))),
                "{mode}: {addrs:?}"
            );
        }
        // The host's namespace, as ECS's host mode gives (the bridge is the host's).
        None => assert!(seen.iter().any(|l| l.starts_with("mf")), "{mode}: {seen:?}"),
    }
    // Its cgroup: no cgroup.procs it can write, no new cgroup, no cgroup mount; and
    // it is where it started.
    assert!(
        section(&lines, "cgroup escape").is_empty(),
        "{mode}: {lines:#?}"
    );
    assert_eq!(
        section(&lines, "cgroup before"),
        section(&lines, "cgroup after")
    );
    assert!(section(&lines, "modules").is_empty(), "{mode}: {lines:#?}");
    // Its own endpoint answers, in every mode (host mode: on the host's 127.0.0.1 under
    // the task's token, docs/inside-a-task.md); the other task's is the other task's
    // alone, not reachable from here.
    assert_eq!(
        section(&lines, "own endpoint"),
        ["reached"],
        "{mode}: {lines:#?}"
    );
    assert!(
        section(&lines, "other endpoint").is_empty(),
        "{mode}: {lines:#?}"
    );
    id
}

#[test]
fn a_container_sees_only_its_task_and_cannot_reach_the_host() {
    let env = Env::new();
    let (other_id, other_ip) = start_other(&env);
    let id = assert_isolated_in(&env, "awsvpc", &other_ip, Some(&["eth0", "lo"]));
    let out = env.mf.run(&["stop-task", "--task", &other_id]);
    assert!(out.status.success());
    env.wait_status(&other_id, "STOPPED");
    assert_no_leaks(&env.mf, &[&id, &other_id], &[]);
}

#[test]
fn every_network_mode_keeps_the_same_walls() {
    let env = Env::new();
    let (other_id, other_ip) = start_other(&env);
    let mut ids = vec![other_id.clone()];
    for (mode, links) in [
        ("bridge", Some(&["eth0", "lo"][..])),
        ("none", Some(&["lo"][..])),
        ("host", None),
    ] {
        ids.push(assert_isolated_in(&env, mode, &other_ip, links));
    }
    let out = env.mf.run(&["stop-task", "--task", &other_id]);
    assert!(out.status.success());
    env.wait_status(&other_id, "STOPPED");
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    assert_no_leaks(&env.mf, &ids, &[]);
}

/// `setpriv` as uid/gid 65534 (a `user: nobody` container's uid on the host: there is
/// no user namespace) running `cmd`; true when it succeeded.
fn as_nobody(cmd: &[&str]) -> bool {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args(cmd)
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
fn a_nobody_container_gets_no_caps_and_cannot_read_the_task_state() {
    let env = Env::new();
    // Not masked by the test's own 0700 temp dir: what minifargate creates decides.
    std::fs::set_permissions(env.mf.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let secret = "s3cr3t-value-of-the-task";
    let script = format!(
        "echo '--- probe'; /probe info; echo '--- env'; env | grep -c {secret}; echo '--- end'"
    );
    let td = env.taskdef(
        "nobody",
        &format!(
            r#","user":"nobody","dockerSecurityOptions":["no-new-privileges"],
               "environment":[{{"name":"SECRET","value":"{secret}"}}],
               "command":["sh","-c",{script:?}]"#
        ),
    );
    let (id, lines) = env.run_attached(&td);
    let probe: Value = serde_json::from_str(section(&lines, "probe")[0]).unwrap();
    assert_eq!(probe["uid"], 65534, "{probe:#}");
    assert_eq!(probe["gid"], 65534);
    assert_eq!(
        probe["CapEff"], "0000000000000000",
        "a non-root user has no caps"
    );
    assert_eq!(probe["CapPrm"], "0000000000000000");
    assert_eq!(
        probe["NoNewPrivs"], "1",
        "dockerSecurityOptions no-new-privileges"
    );
    assert_eq!(probe["Seccomp"], "2");
    assert_eq!(section(&lines, "env"), ["1"]);
    // The task's state on the host (its definition with the secret in state.db, its
    // logs, its supervisor log) is not readable by that uid.
    let root = &env.mf.root;
    let task_dir = root.join("tasks").join(&id);
    let log = task_dir.join("logs/app.log");
    assert!(std::fs::read_to_string(&log).unwrap().contains("probe"));
    for path in [
        root.join("state.db"),
        log.clone(),
        task_dir.join("supervisor.log"),
    ] {
        assert!(path.exists(), "{}", path.display());
        let p = path.to_str().unwrap();
        assert!(!as_nobody(&["cat", p]), "uid 65534 can read {p}");
    }
    assert!(!as_nobody(&["ls", task_dir.to_str().unwrap()]));
    let db_mode = std::fs::metadata(root.join("state.db"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(db_mode & 0o077, 0, "state.db mode {db_mode:o}");
    assert_no_leaks(&env.mf, &[&id], &[]);
}
