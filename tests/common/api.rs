//! `minifargate serve` on a free loopback port over a private root and registry, and the
//! real clients that talk to it: the AWS CLI and boto3 (from the test venv), the
//! JavaScript SDK v3 (from target/test-node), and curl.
//! `serve` runs as a user would start it: with no key given it generates one and writes
//! the AWS CLI profile `minifargate` into its HOME (a directory of the test's own), and
//! every client here signs with that profile; a test that passes `--credentials-file`
//! or `--insecure-no-auth` gets the dummy pair below instead.

use super::cli::Mf;
use super::image::{Compression, Layer, busybox_layer};
use super::push_image;
use super::registry::{Registry, RegistryOpts};
use super::services::tool;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A private root and registry, and `minifargate serve` on a free loopback port. On drop:
/// the server is stopped, then any supervisor still running is killed (by its recorded
/// pid) and cleaned up after.
pub struct Api {
    pub mf: Mf,
    _reg: Registry,
    server: Child,
    serve_args: Vec<String>,
    pub endpoint: String,
    /// The HOME `serve` runs with (its AWS CLI profile is written there).
    pub home: std::path::PathBuf,
    /// The key `serve` generated (None: the test gave keys or turned them off).
    key: Option<(String, String)>,
}

/// The pair clients sign with when `serve` did not generate the key (`--credentials-file`
/// with this pair, or `--insecure-no-auth`).
pub const DUMMY_KEY: (&str, &str) = ("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");

impl Api {
    pub fn start() -> Api {
        Api::start_with(busybox_layer(Compression::Gzip, "serve"), &[])
    }

    /// [`Api::start`] with `layer` as the busybox image and more `serve` arguments.
    pub fn start_with(layer: Layer, serve_args: &[&str]) -> Api {
        Api::start_env(layer, serve_args, &[])
    }

    /// [`Api::start_with`], `serve` (and the tasks it starts) with the variables `env`.
    pub fn start_env(layer: Layer, serve_args: &[&str], env: &[(&str, &str)]) -> Api {
        let reg = Registry::start(RegistryOpts::default());
        let work = tempfile::Builder::new()
            .prefix("mf-serve-img-")
            .tempdir()
            .unwrap();
        push_image(&reg, work.path(), "docker/library/busybox:1.36", &[layer]);
        let mut mf = Mf::new();
        mf.mirror_config("public.ecr.aws", &reg.host(), true);
        for (k, v) in env {
            mf.set_env(k, v);
        }
        // `--userns MODE` among the arguments: the tasks get this test's own id range.
        if let Some(i) = serve_args.iter().position(|a| *a == "--userns") {
            mf.enable_userns(serve_args[i + 1]);
        }
        let home = mf.dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let (server, endpoint) = spawn_server(&mf, &home, "127.0.0.1:0", serve_args);
        let generates = !serve_args
            .iter()
            .any(|a| *a == "--insecure-no-auth" || a.starts_with("--credentials-file"));
        let key = generates.then(|| generated_key(&mf.root));
        Api {
            mf,
            _reg: reg,
            server,
            serve_args: serve_args.iter().map(|a| a.to_string()).collect(),
            endpoint,
            home,
            key,
        }
    }

    /// The access key clients sign with: the generated one, else [`DUMMY_KEY`].
    pub fn credentials(&self) -> (String, String) {
        self.key.clone().unwrap_or_else(|| {
            let (id, secret) = DUMMY_KEY;
            (id.to_string(), secret.to_string())
        })
    }

    /// Sets a client's AWS environment: none of the caller's; the `minifargate` profile
    /// `serve` wrote when it generated the key, else the dummy pair; no instance metadata.
    pub fn aws_env(&self, c: &mut Command) {
        for (k, _) in std::env::vars() {
            if k.starts_with("AWS_") {
                c.env_remove(k);
            }
        }
        super::util::no_proxy(c);
        c.env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_PAGER", "");
        if self.key.is_some() {
            let aws = self.home.join(".aws");
            c.env("AWS_CONFIG_FILE", aws.join("config"))
                .env("AWS_SHARED_CREDENTIALS_FILE", aws.join("credentials"))
                .env("AWS_PROFILE", "minifargate");
        } else {
            let (id, secret) = DUMMY_KEY;
            c.env("AWS_ACCESS_KEY_ID", id)
                .env("AWS_SECRET_ACCESS_KEY", secret)
                .env("AWS_CONFIG_FILE", "/dev/null")
                .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null");
        }
    }

    /// `curl -s` for a raw request to the API, SigV4-signed (curl's `--aws-sigv4`, which
    /// signs the body and every header) with [`Api::credentials`] for ECS in us-east-1;
    /// add the method, headers, body and URL.
    pub fn curl(&self) -> Command {
        let (id, secret) = self.credentials();
        let mut c = Command::new("curl");
        super::util::no_proxy(&mut c);
        c.args(["-s", "--noproxy", "*"])
            .args(["--aws-sigv4", "aws:amz:us-east-1:ecs"])
            .args(["--user", &format!("{id}:{secret}")]);
        c
    }

    /// The registry behind `public.ecr.aws` (to push more images).
    pub fn registry(&self) -> &Registry {
        &self._reg
    }

    /// The `serve` process's pid.
    pub fn server_pid(&self) -> u32 {
        self.server.id()
    }

    /// Stops `serve` (SIGTERM, as systemd would) and starts it again on the same port over
    /// the same root; tasks keep running meanwhile.
    pub fn restart(&mut self) {
        stop_server(&mut self.server);
        let listen = self.endpoint.trim_start_matches("http://").to_string();
        let args: Vec<&str> = self.serve_args.iter().map(String::as_str).collect();
        let (server, endpoint) = spawn_server(&self.mf, &self.home, &listen, &args);
        assert_eq!(endpoint, self.endpoint);
        self.server = server;
    }

    /// SIGKILLs `serve` (a crash, the OOM killer) and reaps it; [`Api::restart`] starts
    /// it again. Its tasks' supervisors are not its children: they go on.
    pub fn kill_server(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }

    /// Stops `serve` as [`Api::restart`] does, without starting it again (what it leaves
    /// behind can then be checked; the test's directory stays until the Api is dropped).
    pub fn stop(&mut self) {
        stop_server(&mut self.server);
    }

    /// [`Api::restart`] with `args` as `serve`'s arguments from now on.
    pub fn restart_with(&mut self, args: &[&str]) {
        self.serve_args = args.iter().map(|a| a.to_string()).collect();
        self.restart();
    }

    /// Runs Python `script` with boto3 from the test venv; `ENDPOINT` is the server's URL,
    /// and boto3's default session signs with serve's key (see [`Api::aws_env`]).
    /// Returns its stdout (the script prints JSON).
    pub fn boto3(&self, script: &str) -> Value {
        let mut c = Command::new(tool("python3"));
        self.aws_env(&mut c);
        let out = c
            .env("ENDPOINT", &self.endpoint)
            .args(["-c", script])
            .output()
            .expect("run python3 (is boto3 in target/test-venv?)");
        show(
            "python3 (boto3)",
            &out,
            &String::from_utf8_lossy(&out.stdout),
        );
        assert!(out.status.success(), "the boto3 script failed");
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Runs the Node.js program `script` of tests/fixtures/ with the npm packages
    /// scripts/test installs into target/test-node (the JavaScript SDK v3: scripts/lib.sh
    /// `install_test_node`), in the AWS environment of [`Api::aws_env`] plus `env`; with
    /// `no_network`, in a network namespace of its own (`unshare --net`: no interface up,
    /// so a name lookup fails on the box and nothing leaves it). Returns its stdout's JSON.
    pub fn node(&self, script: &str, env: &[(&str, &str)], no_network: bool) -> Value {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let modules = root.join("target/test-node/node_modules");
        assert!(
            modules.join("@aws-sdk/client-servicediscovery").is_dir(),
            "no JavaScript SDK in {}: scripts/test installs it (scripts/lib.sh install_test_node)",
            modules.display()
        );
        let mut c = Command::new(if no_network { "unshare" } else { "node" });
        if no_network {
            c.args(["--net", "node"]);
        }
        self.aws_env(&mut c);
        let out = c
            .env("NODE_PATH", &modules)
            .envs(env.iter().copied())
            .arg(root.join("tests/fixtures").join(script))
            .output()
            .expect("run node (scripts/test installs nodejs)");
        show(
            &format!("node {script}"),
            &out,
            &String::from_utf8_lossy(&out.stdout),
        );
        assert!(out.status.success(), "node {script} failed");
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// `create-cluster NAME` with Container Insights on (`containerInsights` `enabled`): its
    /// services' counts and its tasks' figures are published (ECS/ContainerInsights).
    pub fn create_cluster_with_insights(&self, name: &str) -> Value {
        self.aws_json(&[
            "create-cluster",
            "--cluster-name",
            name,
            "--settings",
            "name=containerInsights,value=enabled",
        ])
    }

    /// `describe-services` of one service.
    pub fn service(&self, cluster: &str, name: &str) -> Value {
        let d = self.aws_json(&[
            "describe-services",
            "--cluster",
            cluster,
            "--services",
            name,
        ]);
        d["services"][0].clone()
    }

    /// Polls `f` every 300 ms until it returns Some, for up to `secs`; panics with `what`.
    pub fn wait_for<T>(&self, secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// `aws ecs ARGS` against the server, signed with serve's key (see [`Api::aws_env`]).
    pub fn aws(&self, args: &[&str]) -> Output {
        self.aws_in("ecs", args)
    }

    /// `aws SERVICE ARGS` against the server (e.g. `logs`), as [`Api::aws`].
    pub fn aws_in(&self, service: &str, args: &[&str]) -> Output {
        let out = self
            .aws_command(service, args)
            .output()
            .expect("run the aws cli (is awscli in target/test-venv?)");
        // The command, its status and the start of its answer: a failing test's output
        // stays short enough to read whole in CI's log (the assertions print what they
        // compared).
        show(
            &format!("aws {service} {}", args.join(" ")),
            &out,
            &clipped(&out.stdout),
        );
        out
    }

    /// The command [`Api::aws_in`] runs (to start it in the background).
    pub fn aws_command(&self, service: &str, args: &[&str]) -> Command {
        let mut c = Command::new(tool("aws"));
        self.aws_env(&mut c);
        c.args([
            service,
            "--endpoint-url",
            &self.endpoint,
            "--region",
            "us-east-1",
        ])
        .args(["--output", "json"])
        .args(args);
        c
    }

    pub fn aws_json(&self, args: &[&str]) -> Value {
        self.aws_json_in("ecs", args)
    }

    /// `aws SERVICE ARGS`, which must succeed: its JSON answer (Null when it printed
    /// nothing).
    pub fn aws_json_in(&self, service: &str, args: &[&str]) -> Value {
        let out = self.aws_in(service, args);
        assert!(
            out.status.success(),
            "aws {service} {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        if out.stdout.is_empty() {
            return Value::Null;
        }
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The container instances `cluster` (default: `default`) lists now. A cluster that
    /// does not exist yet lists none: the first agent's registration makes it, and a
    /// test that waits for its boxes may ask before any has registered.
    pub fn instances_listed(&self, cluster: Option<&str>) -> Vec<String> {
        let mut args = vec!["list-container-instances"];
        if let Some(c) = cluster {
            args.extend(["--cluster", c]);
        }
        let out = self.aws(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() && err.contains("ClusterNotFoundException") {
            return Vec::new();
        }
        assert!(out.status.success(), "aws ecs {args:?} failed: {err}");
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["containerInstanceArns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect()
    }

    /// The stderr of a failing `aws ecs ARGS`.
    pub fn aws_err(&self, args: &[&str]) -> String {
        let out = self.aws(args);
        assert!(!out.status.success(), "aws ecs {args:?} should have failed");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    pub fn mf_json(&self, args: &[&str]) -> Value {
        let out = self.mf.run(args);
        assert!(out.status.success(), "minifargate {args:?} failed");
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Runs `tests/console/SCRIPT` (Python selenium driving Debian's chromium over
    /// chromedriver) against this server, signed in with serve's key, with `env` set; its
    /// screenshots go to target/console-shots. Panics when it fails, with the reason in
    /// the message: the traceback's last lines (the wait or assertion that failed) and
    /// the script's last words (where JS console errors are printed).
    pub fn browser(&self, script: &str, env: &[(&str, &str)]) {
        let shots = console_shots();
        // Chromium's own temporary files (a SingletonSocket directory per browser) in the
        // test's directory, removed with it rather than left in /tmp.
        let tmp = self.mf.dir.path().join("browser-tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        let (user, password) = self.credentials();
        let mut c = Command::new(tool("python3"));
        super::util::no_proxy(&mut c);
        c.arg(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/console")
                .join(script),
        )
        .env("CONSOLE_URL", &self.endpoint)
        .env("CONSOLE_USER", user)
        .env("CONSOLE_PASSWORD", password)
        .env("SHOTS", &shots)
        .env("TMPDIR", &tmp);
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c
            .output()
            .expect("run python3 (is selenium in target/test-venv? scripts/test installs it)");
        show(
            &format!("python3 tests/console/{script}"),
            &out,
            &String::from_utf8_lossy(&out.stdout),
        );
        let tail = |b: &[u8], n: usize| {
            let text = String::from_utf8_lossy(b).into_owned();
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        };
        assert!(
            out.status.success(),
            "tests/console/{script} failed ({}):\n{}\n{}",
            out.status,
            tail(&out.stdout, 4),
            tail(&out.stderr, 4)
        );
    }

    pub fn file(&self, name: &str, json: &str) -> String {
        let p = self.mf.dir.path().join(name);
        std::fs::write(&p, json).unwrap();
        format!("file://{}", p.display())
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        stop_server(&mut self.server);
        self.mf.kill_supervisors();
    }
}

/// The key pair `serve` generated under state root `root` (`<root>/api/credentials`:
/// `#` comments, then `ID SECRET`).
pub fn generated_key(root: &std::path::Path) -> (String, String) {
    let path = root.join("api/credentials");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("serve generated no key in {}: {e}", path.display()));
    let line = text
        .lines()
        .find(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .unwrap_or_else(|| panic!("no key in {}: {text}", path.display()));
    let (id, secret) = line.split_once(' ').unwrap();
    (id.to_string(), secret.trim().to_string())
}

/// `minifargate serve` (add its arguments) as a user starts it, with HOME `home` and no
/// sudo or AWS file variables, so the AWS CLI profile it writes goes to `home/.aws` and
/// never to the HOME of whoever runs the tests. Every test that starts `serve` does so
/// through this.
pub fn serve_cmd(mf: &Mf, home: &std::path::Path) -> Command {
    std::fs::create_dir_all(home).unwrap();
    let mut cmd = mf.cmd();
    for k in [
        "SUDO_UID",
        "SUDO_GID",
        "SUDO_USER",
        "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE",
    ] {
        cmd.env_remove(k);
    }
    cmd.env("HOME", home).arg("serve");
    cmd
}

/// `minifargate serve --listen LISTEN` with HOME `home` ([`serve_cmd`]); returns it and
/// the URL it printed.
fn spawn_server(mf: &Mf, home: &std::path::Path, listen: &str, more: &[&str]) -> (Child, String) {
    let mut server = serve_cmd(mf, home)
        .args(["--listen", listen])
        .args(more)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start minifargate serve");
    // The first line names the address it listens on.
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let endpoint = line
        .split_whitespace()
        .last()
        .filter(|u| u.starts_with("http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("serve did not print its address: {line:?}"))
        .to_string();
    (server, endpoint)
}

fn stop_server(server: &mut Child) {
    // Gone already (killed and reaped): its pid may be another process's by now.
    if let Ok(Some(_)) = server.try_wait() {
        return;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    let _ = server.wait();
}

/// Where the browser tests' screenshots go (made if missing): target/console-shots.
pub fn console_shots() -> std::path::PathBuf {
    let d = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/console-shots");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Prints a command that ran (`what`), its status, `stdout` as given and its stderr.
fn show(what: &str, out: &Output, stdout: &str) {
    eprintln!(
        "$ {what}\n  exit: {}\n  stdout: {stdout}\n  stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The first 400 characters of a command's output, with its size when cut.
fn clipped(out: &[u8]) -> String {
    const KEEP: usize = 400;
    let text = String::from_utf8_lossy(out);
    match text.char_indices().nth(KEEP) {
        Some((cut, _)) => format!("{}… ({} bytes in all)", &text[..cut], out.len()),
        None => text.into_owned(),
    }
}
