//! Runs the real `minifargate` binary against a private root: each test gets its own
//! `--root`, run root, DOCKER_CONFIG and registries config, so tests never collide.

use super::util::list_dir;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tempfile::TempDir;

/// The binary under test: this build's, or the one `MINIFARGATE_TEST_BIN` names (e.g. the
/// static musl binary of `scripts/release`: `MINIFARGATE_TEST_BIN=dist/… ./scripts/test`).
pub fn bin() -> PathBuf {
    match std::env::var_os("MINIFARGATE_TEST_BIN") {
        Some(p) if !p.is_empty() => std::fs::canonicalize(&p)
            .unwrap_or_else(|e| panic!("MINIFARGATE_TEST_BIN={}: {e}", p.to_string_lossy())),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_minifargate")),
    }
}

/// Environment variables the binary reads only when built with the tests' hooks: debug
/// assertions (the `cargo test` build) or the `test-hooks` feature (src/task/mod.rs
/// `test_pause`, Cargo.toml).
pub const TEST_HOOKS: [&str; 2] = ["MINIFARGATE_TEST_PAUSE", "MINIFARGATE_BINFMT_MISC"];

/// Fails, naming the fix, when the binary under test has no test hooks (a release build
/// given as `MINIFARGATE_TEST_BIN`), rather than letting a test wait for a pause that
/// never comes: such a binary does not contain the variables' names.
pub fn assert_test_hooks() {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let bin = bin();
    let has = *HAS.get_or_init(|| {
        Command::new("grep")
            .args(["-q", "-a", "-F", TEST_HOOKS[0]])
            .arg(&bin)
            .status()
            .expect("run grep")
            .success()
    });
    assert!(
        has,
        "{} has no test hooks ({}): build it with `--features test-hooks` \
         (`FEATURES=test-hooks scripts/release` for the static binary)",
        bin.display(),
        TEST_HOOKS.join(", ")
    );
}

pub struct Mf {
    pub dir: TempDir,
    pub root: PathBuf,
    pub run_root: PathBuf,
    pub docker_config: PathBuf,
    pub config: Option<PathBuf>,
    pub env: Vec<(String, String)>,
    /// Held while this test owns its subnet (see `test_network`).
    _subnet_claim: std::fs::File,
    /// That subnet's number (0–1023), unique among live tests: it also picks the test's
    /// user namespace id range.
    net_index: u32,
}

impl Default for Mf {
    fn default() -> Self {
        Self::new()
    }
}

impl Mf {
    pub fn new() -> Mf {
        let dir = tempfile::Builder::new()
            .prefix("mf-test-")
            .tempdir()
            .unwrap();
        let docker_config = dir.path().join("docker");
        std::fs::create_dir(&docker_config).unwrap();
        let (bridge, subnet, claim, n) = test_network();
        // Whose the subnet is, for the test that takes it after this one (`sweep_dead`).
        record_claim(&claim, dir.path(), &bridge);
        // serve's block of load balancer names goes to this test's own hosts file, never
        // the box's /etc/hosts (tests run side by side); tests/elb.rs has the one test of
        // the real file.
        let hosts = dir.path().join("hosts");
        std::fs::write(&hosts, "127.0.0.1\tlocalhost\n").unwrap();
        let mut mf = Mf {
            root: dir.path().join("root"),
            run_root: dir.path().join("run"),
            docker_config,
            config: None,
            env: vec![
                ("MINIFARGATE_BRIDGE".into(), bridge),
                ("MINIFARGATE_SUBNET".into(), subnet),
                // prune's background deleter at once, not 30 s after the test ended.
                ("MINIFARGATE_TRASH_DELAY_MS".into(), "0".into()),
                ("MINIFARGATE_HOSTS_FILE".into(), hosts.display().to_string()),
                // The registry's trust for podman goes to the test's own directory, not the
                // box's /etc/containers/certs.d (a serve killed by a test would leave its
                // files there); tests/ecr.rs's podman test names the real one.
                (
                    "MINIFARGATE_REGISTRY_CERTS_D".into(),
                    dir.path().join("certs.d").display().to_string(),
                ),
                // Docker's trust of the registry at its ECR host name, likewise.
                (
                    "MINIFARGATE_DOCKER_CERTS_D".into(),
                    dir.path().join("docker-certs.d").display().to_string(),
                ),
            ],
            dir,
            _subnet_claim: claim,
            net_index: n,
        };
        // `MINIFARGATE_TEST_USERNS=on` runs a suite with per-task user namespaces (CI runs
        // one suite both ways): each Mf gets its own id range, cut by its subnet's number
        // (unique among live tests), so tests in parallel never share host ids.
        if let Ok(mode) = std::env::var("MINIFARGATE_TEST_USERNS") {
            mf.enable_userns(&mode);
        }
        mf
    }

    /// Gives this Mf's tasks user namespaces: `mode` (on/auto/off) and its own id range
    /// (start, count), which it returns.
    pub fn enable_userns(&mut self, mode: &str) -> (u32, u32) {
        let (start, count) = test_userns_range(self.net_index);
        self.set_env("MINIFARGATE_USERNS", mode);
        self.set_env("MINIFARGATE_USERNS_RANGE", format!("{start}:{count}"));
        (start, count)
    }

    /// This test's own bridge (MINIFARGATE_BRIDGE), so tests run in parallel.
    pub fn bridge(&self) -> String {
        self.env_value("MINIFARGATE_BRIDGE").unwrap()
    }

    pub fn env_value(&self, k: &str) -> Option<String> {
        self.env
            .iter()
            .rev()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    }

    /// The netns crate's view of this test's bridge (the state minifargate keeps under
    /// `<run-root>/net/<bridge>`).
    pub fn network(&self) -> netns::Network {
        let bridge = self.bridge();
        netns::Network::open(netns::NetworkConfig {
            run_root: self.run_root.join("net").join(&bridge),
            // Only setup uses the subnet; a test may have set a bad one on purpose.
            subnet: self
                .env_value("MINIFARGATE_SUBNET")
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| "10.97.0.0/26".parse().unwrap()),
            bridge,
            ..Default::default()
        })
        .unwrap()
    }

    /// A `minifargate` command with this test's root, config and a clean environment
    /// (no MINIFARGATE_*, DOCKER_CONFIG, AWS_* or SSL_CERT_FILE from the host).
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(bin());
        self.prepare(&mut c);
        c.arg("--root")
            .arg(&self.root)
            .arg("--run-root")
            .arg(&self.run_root);
        if let Some(cfg) = &self.config {
            c.arg("--config").arg(cfg);
        }
        c
    }

    /// Environment for any process that runs minifargate (also through a wrapper).
    pub fn prepare(&self, c: &mut Command) {
        for (k, _) in std::env::vars() {
            if k.starts_with("MINIFARGATE_")
                || k.starts_with("AWS_")
                || k == "DOCKER_CONFIG"
                || k == "SSL_CERT_FILE"
                || k == "SSL_CERT_DIR"
                || k == "RUST_LOG"
            {
                c.env_remove(k);
            }
        }
        c.env("DOCKER_CONFIG", &self.docker_config);
        c.env("AWS_EC2_METADATA_DISABLED", "true");
        c.env("AWS_CONFIG_FILE", self.dir.path().join("no-aws-config"));
        c.env(
            "AWS_SHARED_CREDENTIALS_FILE",
            self.dir.path().join("no-aws-credentials"),
        );
        super::util::no_proxy(c);
        for (k, v) in &self.env {
            c.env(k, v);
        }
    }

    pub fn set_env(&mut self, k: &str, v: impl AsRef<std::ffi::OsStr>) {
        if TEST_HOOKS.contains(&k) {
            assert_test_hooks();
        }
        self.env
            .push((k.into(), v.as_ref().to_string_lossy().into_owned()));
    }

    /// Write DOCKER_CONFIG/config.json with Basic credentials for `host`.
    pub fn docker_login(&self, host: &str, user: &str, pass: &str) {
        let auth = b64(format!("{user}:{pass}").as_bytes());
        let cfg = serde_json::json!({"auths": {host: {"auth": auth}}});
        std::fs::write(
            self.docker_config.join("config.json"),
            serde_json::to_vec_pretty(&cfg).unwrap(),
        )
        .unwrap();
    }

    /// Write a registries config with one `[[registry]]` whose mirror is `mirror`.
    pub fn mirror_config(&mut self, prefix: &str, mirror: &str, mirror_insecure: bool) {
        let path = self.dir.path().join("registries.toml");
        std::fs::write(
            &path,
            format!(
                "[[registry]]\nprefix = \"{prefix}\"\ninsecure = false\n\n\
                 [[registry.mirror]]\nlocation = \"{mirror}\"\ninsecure = {mirror_insecure}\n"
            ),
        )
        .unwrap();
        self.config = Some(path);
    }

    /// Kills every supervisor still running under this root (by its recorded pid), then
    /// lets one command clean up after them (netns, mounts, cgroups, leases).
    pub fn kill_supervisors(&self) {
        let tasks = self.run_root.join("tasks");
        let mut killed = false;
        for e in std::fs::read_dir(&tasks).into_iter().flatten().flatten() {
            if let Ok(pid) = std::fs::read_to_string(e.path().join("supervisor.pid")) {
                let _ = Command::new("kill").args(["-KILL", pid.trim()]).status();
                killed = true;
            }
        }
        // And any process of this binary that still names this test's run root: a
        // supervisor handed its task just before serve stopped has no supervisor.pid yet,
        // and would go on making the task's netns, veth and mounts after the cleanup.
        killed |= self.kill_processes_of_this_root();
        if killed {
            std::thread::sleep(std::time::Duration::from_millis(200));
            // The next command notices the dead supervisors and cleans up after them.
            let _ = self.cmd().args(["list-tasks"]).output();
        }
    }

    /// SIGKILLs, by pid, every process other than this one whose executable is the binary
    /// under test and whose arguments name this test's run root (`--run-root <it>`), and
    /// waits until they are gone. True if there was one.
    pub fn kill_processes_of_this_root(&self) -> bool {
        let exe = std::fs::canonicalize(bin()).unwrap_or_else(|_| bin());
        let root = self.run_root.as_os_str().as_encoded_bytes().to_vec();
        let me = std::process::id();
        let ours = || -> Vec<i32> {
            let mut pids = Vec::new();
            for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                    continue;
                };
                if pid as u32 == me
                    || std::fs::read_link(e.path().join("exe")).ok() != Some(exe.clone())
                {
                    continue;
                }
                let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
                if cmdline.split(|b| *b == 0).any(|a| a == root.as_slice()) {
                    pids.push(pid);
                }
            }
            pids
        };
        let mut found = false;
        for _ in 0..50 {
            let pids = ours();
            if pids.is_empty() {
                break;
            }
            found = true;
            for pid in pids {
                eprintln!(
                    "test cleanup: killing leftover process {pid} of {}",
                    self.run_root.display()
                );
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        found
    }

    /// Writes a task definition into the test dir; returns its `file://` reference.
    pub fn taskdef(&self, name: &str, json: &str) -> String {
        let p = self.dir.path().join(format!("{name}.json"));
        std::fs::write(&p, json).unwrap();
        format!("file://{}", p.display())
    }

    pub fn run(&self, args: &[&str]) -> Output {
        let out = self.cmd().args(args).output().expect("run minifargate");
        eprintln!(
            "$ minifargate {}\n  exit: {}\n  stdout: {}\n  stderr: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout).trim_end(),
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
        out
    }

    /// Run, expect exit 0, parse stdout as JSON.
    pub fn json(&self, args: &[&str]) -> Value {
        let out = self.run(args);
        assert!(out.status.success(), "minifargate {args:?} failed");
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "minifargate {args:?}: stdout is not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    pub fn pull_json(&self, image: &str, extra: &[&str]) -> Value {
        let mut args = vec!["pull", image, "--format", "json"];
        args.extend_from_slice(extra);
        self.json(&args)
    }

    /// Run and expect exit 1 with one `minifargate: ` line on stderr; returns it.
    pub fn fail(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "minifargate {args:?} should fail with exit 1"
        );
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let line = stderr
            .lines()
            .find(|l| l.starts_with("minifargate: "))
            .unwrap_or_else(|| panic!("no `minifargate: ` error line in stderr: {stderr}"));
        line.to_string()
    }

    pub fn images(&self) -> Vec<Value> {
        self.json(&["images", "--format", "json"])
            .as_array()
            .expect("images --format json prints an array")
            .clone()
    }

    pub fn layer_dir(&self, diff_id: &str) -> PathBuf {
        self.root
            .join("layers/sha256")
            .join(diff_id.strip_prefix("sha256:").unwrap())
    }

    pub fn blob_path(&self, digest: &str) -> PathBuf {
        self.root
            .join("blobs/sha256")
            .join(digest.strip_prefix("sha256:").unwrap())
    }

    /// `tmp/` under the root must hold nothing after any pull, failed or not.
    pub fn assert_tmp_empty(&self) {
        let tmp = self.root.join("tmp");
        let left = list_dir(&tmp);
        assert!(left.is_empty(), "{} not empty: {left:?}", tmp.display());
    }

    pub fn layer_dirs(&self) -> Vec<String> {
        list_dir(&self.root.join("layers/sha256"))
    }

    pub fn blobs(&self) -> Vec<String> {
        list_dir(&self.root.join("blobs/sha256"))
    }
}

impl Drop for Mf {
    /// Tasks still running are killed and reconciled. The bridge outlives its last task by design (like docker0); tests remove it, and
    /// anything a failed test left on it.
    fn drop(&mut self) {
        // First the supervisors a failed test left running (by the pid each recorded): the
        // next command notices them dead and cleans up after them.
        let mut killed = false;
        for e in std::fs::read_dir(self.run_root.join("tasks"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Ok(pid) = std::fs::read_to_string(e.path().join("supervisor.pid")) {
                let _ = Command::new("kill").args(["-KILL", pid.trim()]).status();
                killed = true;
            }
        }
        killed |= self.kill_processes_of_this_root();
        if killed {
            std::thread::sleep(std::time::Duration::from_millis(200));
            let _ = self.cmd().args(["list-tasks"]).output();
        }
        // The run root's template mount namespace (kept until `system reset`): its pin,
        // then its dir's bind mount, so the test dir can be removed.
        let template = self.run_root.join("mntns");
        for m in [template.join("ns"), template] {
            while nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH).is_ok() {}
        }
        let state = self.run_root.join("net").join(self.bridge());
        if state.exists()
            && let Err(e) = self.network().reset()
        {
            eprintln!("test network cleanup: {e}");
        }
    }
}

/// A bridge name and a /26 of 10.97.0.0/16 for one test. The /26 is claimed with a flock
/// on `/tmp/mf-test-subnets/<n>`, held until the test's `Mf` is dropped, so test processes
/// running at once (other suites, other worktrees) never share one; the search starts at a
/// random point. netns's own tests use 10.95.x.0/24; neither range is the product's
/// default 10.94.0.0/16, which a box that already ran a task keeps masqueraded.
/// 32 tasks' worth of ids per test network `n` (0–1023), from 10,000,000 up (to
/// 2,157,483,648: within the 32-bit ids).
fn test_userns_range(n: u32) -> (u32, u32) {
    (10_000_000 + n * (32 << 16), 32 << 16)
}

fn test_network() -> (String, String, std::fs::File, u32) {
    let dir = Path::new("/tmp/mf-test-subnets");
    std::fs::create_dir_all(dir).unwrap();
    let start = (std::process::id()
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos())
        % 1024;
    for i in 0..1024 {
        let n = (start + i) % 1024;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(n.to_string()))
            .unwrap();
        if rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_ok() {
            let subnet = format!("10.97.{}.{}/26", n / 4, (n % 4) * 64);
            sweep_dead(&f, &subnet);
            // A test killed before its clean-up (a timeout) leaves its bridge, holding this
            // subnet's route, with the claim released: a second bridge on it would take
            // the new test's traffic to the dead one's. Skipped, and said.
            let routed = Command::new("ip")
                .args(["-4", "route", "show", "exact", &subnet])
                .output()
                .map(|o| !o.stdout.is_empty())
                .unwrap_or(false);
            if routed {
                eprintln!(
                    "test network {subnet}: a route is there already (a killed test's bridge?): skipped"
                );
                continue;
            }
            let bridge = format!("mft{:04x}{n:03x}", std::process::id() & 0xffff);
            return (bridge, subnet, f, n);
        }
    }
    panic!("all 1024 test subnets in 10.97.0.0/16 are claimed");
}

/// Writes into the subnet's claim file which test holds it: its directory and bridge.
fn record_claim(claim: &std::fs::File, dir: &Path, bridge: &str) {
    use std::io::{Seek as _, Write as _};
    let mut f = claim;
    let _ = f.set_len(0);
    let _ = f.seek(std::io::SeekFrom::Start(0));
    let _ = writeln!(f, "{}\n{bridge}", dir.display());
}

/// The claim just taken was a test's that died without its clean-up (killed by a
/// timeout: its directory is still there, no Drop ran): its processes, tasks, mounts and
/// bridge go now, as its own `Mf`'s drop would have done, and its directory after them.
/// A sweep that fails is said and left (the route check then skips the subnet).
fn sweep_dead(claim: &std::fs::File, subnet: &str) {
    let Ok(text) = std::fs::read_to_string(format!("/proc/self/fd/{}", {
        use std::os::fd::AsRawFd as _;
        claim.as_raw_fd()
    })) else {
        return;
    };
    let mut lines = text.lines();
    let (Some(dead), Some(bridge)) = (lines.next(), lines.next()) else {
        return;
    };
    let dead = PathBuf::from(dead);
    if !dead.starts_with(std::env::temp_dir()) || !dead.is_dir() {
        return;
    }
    eprintln!(
        "test network {subnet}: {} was left by a test that never cleaned up: removing it",
        dead.display()
    );
    let Ok(holder) = claim.try_clone() else {
        return;
    };
    let Ok(scratch) = tempfile::Builder::new().prefix("mf-sweep-").tempdir() else {
        return;
    };
    // The dead test's own Mf, rebuilt from its directory; dropping it cleans up.
    drop(Mf {
        dir: scratch,
        root: dead.join("root"),
        run_root: dead.join("run"),
        docker_config: dead.join("docker"),
        config: None,
        env: vec![
            ("MINIFARGATE_BRIDGE".into(), bridge.to_string()),
            ("MINIFARGATE_SUBNET".into(), subnet.to_string()),
        ],
        _subnet_claim: holder,
        net_index: 0,
    });
    let link = Path::new("/sys/class/net").join(bridge);
    if link.exists() {
        let _ = Command::new("ip").args(["link", "del", bridge]).status();
    }
    let mounted = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|p| Path::new(p).starts_with(&dead));
    if mounted {
        eprintln!("{}: mounts are left under it: kept", dead.display());
    } else if let Err(e) = std::fs::remove_dir_all(&dead) {
        eprintln!("{}: {e}", dead.display());
    }
}

pub fn b64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                s.push(T[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// Assert the JSON layer list of a pull matches what the test built, and that each
/// layer is unpacked under `<root>/layers/sha256/<diffid hex>`.
pub fn assert_layers(mf: &Mf, got: &Value, want: &super::image::BuiltImage) {
    let layers = got["layers"].as_array().expect("layers array");
    assert_eq!(layers.len(), want.layers.len(), "layer count in {got}");
    for (g, w) in layers.iter().zip(&want.layers) {
        assert_eq!(g["digest"], w.digest.as_str(), "layer digest");
        assert_eq!(g["diffId"], w.diff_id.as_str(), "layer diffId");
        assert_eq!(g["size"], w.size, "layer size");
        let dir = mf.layer_dir(&w.diff_id);
        assert_eq!(
            Path::new(g["path"].as_str().expect("layer path")),
            dir,
            "layer path"
        );
        assert!(dir.is_dir(), "{} missing", dir.display());
    }
}

/// `describe-tasks` of task `id`: its Task object.
pub fn describe_task(mf: &Mf, id: &str) -> Value {
    mf.json(&["describe-tasks", "--tasks", id])["tasks"][0].clone()
}

/// Runs `taskdef` (registered as `name`) detached with `extra` arguments; waits until it
/// is RUNNING or STOPPED and returns its id and Task object.
pub fn run_settled(mf: &Mf, name: &str, taskdef: &str, extra: &[&str]) -> (String, Value) {
    let td = mf.taskdef(name, taskdef);
    let mut args = vec!["run-task", "--task-definition", &td, "--detach"];
    args.extend_from_slice(extra);
    let v = mf.json(&args);
    let arn = v["tasks"][0]["taskArn"].as_str().unwrap();
    let id = arn.rsplit('/').next().unwrap().to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let t = describe_task(mf, &id);
        if t["lastStatus"] == "RUNNING" || t["lastStatus"] == "STOPPED" {
            return (id, t);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "task did not settle: {t:#}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// `stop-task` of task `id`, then waits until it is STOPPED.
pub fn stop_and_wait(mf: &Mf, id: &str) {
    assert!(mf.run(&["stop-task", "--task", id]).status.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while describe_task(mf, id)["lastStatus"] != "STOPPED" {
        assert!(
            std::time::Instant::now() < deadline,
            "task {id} did not stop"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
