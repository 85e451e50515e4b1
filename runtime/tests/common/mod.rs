//! Test support for the root integration tests: a busybox rootfs with the static
//! probe, unique names, and Drop guards that remove containers, cgroups and netns.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use runtime::{Container, ContainerSpec, LogConfig, Runtime, TaskLimits};

/// Builds `tests/probe/probe.c` statically once per test binary.
pub fn probe_binary() -> &'static Path {
    static PROBE: OnceLock<PathBuf> = OnceLock::new();
    PROBE.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/probe/probe.c");
        let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let out = out_dir.join("probe");
        let tmp = out_dir.join(format!("probe.{}", std::process::id()));
        let st = Command::new("gcc")
            .args(["-static", "-O2", "-Wall", "-o"])
            .arg(&tmp)
            .arg(&src)
            .status()
            .expect("run gcc (apt-get install gcc libc6-dev)");
        assert!(st.success(), "building the probe failed");
        std::fs::rename(&tmp, &out).unwrap();
        out
    })
}

/// A rootfs: Debian's static busybox with its applets, the probe at `/probe`, and a
/// minimal /etc/passwd and /etc/group.
pub struct Rootfs {
    pub dir: tempfile::TempDir,
}

impl Rootfs {
    pub fn new() -> Self {
        let busybox = Path::new("/bin/busybox");
        assert!(
            busybox.exists(),
            "/bin/busybox missing: apt-get install busybox-static"
        );
        let dir = tempfile::Builder::new()
            .prefix("mfrt-rootfs-")
            .tempdir()
            .unwrap();
        let r = dir.path();
        for d in [
            "bin", "etc", "proc", "sys", "dev", "tmp", "mnt", "root", "home/app",
        ] {
            std::fs::create_dir_all(r.join(d)).unwrap();
        }
        std::fs::copy(busybox, r.join("bin/busybox")).unwrap();
        std::fs::copy(probe_binary(), r.join("probe")).unwrap();
        let list = Command::new(busybox).arg("--list").output().unwrap();
        for applet in String::from_utf8_lossy(&list.stdout).lines() {
            if applet != "busybox" {
                let _ = std::os::unix::fs::symlink("busybox", r.join("bin").join(applet));
            }
        }
        std::fs::write(
            r.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        )
        .unwrap();
        std::fs::write(
            r.join("etc/group"),
            "root:x:0:\napp:x:1000:\nwheel:x:10:app\nnogroup:x:65534:\n",
        )
        .unwrap();
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// A name unique to this process and call: `<prefix><pid>x<n>`.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}{}x{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A runtime with its own state dir, and a task cgroup removed on drop.
pub struct Task {
    pub rt: Runtime,
    pub id: String,
    pub state: tempfile::TempDir,
    pub logs: tempfile::TempDir,
}

impl Task {
    pub fn new(limits: TaskLimits) -> Self {
        let state = tempfile::Builder::new()
            .prefix("mfrt-state-")
            .tempdir()
            .unwrap();
        let logs = tempfile::Builder::new()
            .prefix("mfrt-logs-")
            .tempdir()
            .unwrap();
        let rt = Runtime::new(state.path()).unwrap();
        let id = unique("t");
        rt.create_task_cgroup(&id, &limits).unwrap();
        Self {
            rt,
            id,
            state,
            logs,
        }
    }

    pub fn log_path(&self, name: &str) -> PathBuf {
        self.logs.path().join(format!("{name}.log"))
    }

    /// Creates container `<task>-<name>` logging to `log_path(name)`.
    pub fn create(
        &self,
        name: &str,
        mut spec: ContainerSpec,
        rootfs: &Path,
        netns: Option<&Path>,
    ) -> Guard {
        if spec.log == LogConfig::Discard {
            spec.log = LogConfig::json_file(self.log_path(name));
        }
        let id = format!("{}-{name}", self.id);
        Guard(Some(
            self.rt
                .create(&id, &self.id, &spec, rootfs, netns)
                .unwrap_or_else(|e| panic!("create {id}: {}", runtime::error_chain(&e))),
        ))
    }

    /// Runs a container to completion; returns (status, stdout text).
    pub fn run(
        &self,
        name: &str,
        spec: ContainerSpec,
        rootfs: &Path,
    ) -> (runtime::ExitStatus, String) {
        let c = self.create(name, spec, rootfs, None);
        c.start().unwrap();
        let status = c.wait().unwrap();
        c.delete();
        (status, self.stdout(name))
    }

    pub fn stdout(&self, name: &str) -> String {
        self.stream(name, "stdout")
    }

    pub fn stream(&self, name: &str, stream: &str) -> String {
        runtime::read_log(&self.log_path(name))
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e.stream == stream)
            .map(|e| e.log)
            .collect()
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        let report = self.rt.gc(&|t| t != self.id);
        for e in &report.errors {
            eprintln!("cleanup: {}", runtime::error_chain(e));
        }
        if let Err(e) = self.rt.remove_task_cgroup(&self.id) {
            eprintln!("cleanup: {}", runtime::error_chain(&e));
        }
    }
}

/// Deletes its container on drop (also when a test panics).
pub struct Guard(pub Option<Container>);

impl Guard {
    pub fn delete(mut self) {
        if let Some(c) = self.0.take() {
            c.delete()
                .unwrap_or_else(|e| panic!("delete: {}", runtime::error_chain(&e)));
        }
    }
}

impl std::ops::Deref for Guard {
    type Target = Container;
    fn deref(&self) -> &Container {
        self.0.as_ref().unwrap()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            let _ = c.delete();
        }
    }
}

/// A network namespace from `ip netns add`, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new() -> Self {
        let name = unique("mfrt");
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap()
            .success();
        assert!(ok, "ip netns add {name}");
        let ok = Command::new("ip")
            .args(["-n", &name, "link", "set", "lo", "up"])
            .status()
            .unwrap()
            .success();
        assert!(ok, "lo up in {name}");
        Self { name }
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from("/var/run/netns").join(&self.name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
    }
}

/// Runs `/probe info` and parses its JSON.
pub fn probe_info(
    task: &Task,
    name: &str,
    mut spec: ContainerSpec,
    rootfs: &Path,
) -> serde_json::Value {
    spec.args = vec!["/probe".into(), "info".into()];
    let (status, out) = task.run(name, spec, rootfs);
    assert_eq!(
        status.code,
        0,
        "probe failed: {out} {}",
        task.stream(name, "stderr")
    );
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("probe output {out:?}: {e}"))
}

/// Capability bitmask from names (CAP_CHOWN = bit 0 …), as /proc/self/status shows it.
pub fn cap_mask(names: &[&str]) -> u64 {
    names
        .iter()
        .map(|n| {
            let i = runtime::oci::ALL_CAPS
                .iter()
                .position(|c| c == n)
                .unwrap_or_else(|| panic!("{n}"));
            1u64 << i
        })
        .fold(0, |a, b| a | b)
}

pub fn hex(v: &serde_json::Value) -> u64 {
    u64::from_str_radix(v.as_str().unwrap(), 16).unwrap()
}
