//! Helper servers besides the registry: moto_server (a real ECR API answering
//! GetAuthorizationToken) and the small Python token service for the Bearer flow.
//! Both run on free loopback ports and are killed by PID on Drop.

use super::util::{free_port, http_status, wait_until};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The venv scripts/lib.sh makes for PyPI tools (moto[server], cryptography).
pub fn venv_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-venv/bin")
}

/// A tool from the test venv, else from PATH. `aws` is the AWS CLI scripts/test started
/// once for the suite when it names its socket in `MINIFARGATE_TEST_AWS_SOCKET`
/// (tests/fixtures/aws_zygote.py: the same CLI, its imports done once), reached through
/// the client `MINIFARGATE_TEST_AWS_CLIENT` names (scripts/test's build of
/// tests/fixtures/aws_client.c) or else tests/fixtures/aws_client.py; else the venv's.
pub fn tool(name: &str) -> PathBuf {
    if name == "aws"
        && let Some(socket) = std::env::var_os("MINIFARGATE_TEST_AWS_SOCKET")
        && Path::new(&socket).exists()
    {
        return match std::env::var_os("MINIFARGATE_TEST_AWS_CLIENT") {
            Some(c) if Path::new(&c).exists() => PathBuf::from(c),
            _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/aws_client.py"),
        };
    }
    let v = venv_bin().join(name);
    if v.exists() { v } else { PathBuf::from(name) }
}

pub struct Server {
    child: Option<Child>,
    pub port: u16,
    pub log: PathBuf,
}

impl Server {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Start `make(port)` on a free port and wait for `probe` to answer 200; a port
    /// taken between picking and binding makes the server exit: pick another.
    fn spawn(make: impl Fn(u16) -> Command, log: &Path, probe: &str) -> Server {
        for _ in 0..3 {
            let port = free_port();
            let mut cmd = make(port);
            let f = std::fs::File::create(log).unwrap();
            let child = cmd
                .stdin(Stdio::null())
                .stdout(f.try_clone().unwrap())
                .stderr(f)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("spawn {cmd:?}: {e} (run ./scripts/test to install it)")
                });
            let mut s = Server {
                child: Some(child),
                port,
                log: log.to_path_buf(),
            };
            let url = format!("{}{probe}", s.url());
            let up = wait_until(&url, Duration::from_secs(30), || {
                if s.child.as_mut().unwrap().try_wait().unwrap().is_some() {
                    return Some(false);
                }
                (http_status(&url) == 200).then_some(true)
            });
            if up {
                return s;
            }
        }
        panic!(
            "server did not start; last log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }

    /// moto_server on a free loopback port.
    pub fn moto(dir: &Path) -> Server {
        let make = |port: u16| {
            let mut cmd = Command::new(tool("moto_server"));
            cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
            cmd
        };
        Server::spawn(make, &dir.join("moto.log"), "/moto-api/")
    }

    /// tests/fixtures/token_server.py signing with `key`/`cert`.
    #[allow(clippy::too_many_arguments)]
    pub fn token(
        dir: &Path,
        key: &Path,
        cert: &Path,
        issuer: &str,
        service: &str,
        user: &str,
        password: &str,
    ) -> Server {
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/token_server.py");
        let make = |port: u16| {
            let mut cmd = Command::new(tool("python3"));
            cmd.arg(&script)
                .args(["--port", &port.to_string()])
                .arg("--key")
                .arg(key)
                .arg("--cert")
                .arg(cert)
                .args(["--issuer", issuer, "--service", service])
                .args(["--user", user, "--password", password])
                .arg("--log")
                .arg(dir.join("token-requests.jsonl"));
            cmd
        };
        Server::spawn(make, &dir.join("token.log"), "/healthz")
    }

    /// tests/fixtures/flaky_proxy.py in front of `upstream` ("host:port") with the
    /// given fault flags (`--fail-status 503`, `--drop-mid`, `--redirect` …).
    pub fn flaky_proxy(dir: &Path, upstream: &str, flags: &[&str]) -> Server {
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/flaky_proxy.py");
        let make = |port: u16| {
            let mut cmd = Command::new(tool("python3"));
            cmd.arg(&script)
                .args(["--port", &port.to_string(), "--upstream", upstream])
                .arg("--log")
                .arg(dir.join("proxy-requests.jsonl"))
                .args(flags);
            cmd
        };
        Server::spawn(make, &dir.join("proxy.log"), "/healthz")
    }

    /// tests/fixtures/ecr_token_server.py: ECR's GetAuthorizationToken answering with a
    /// token for `password` good for 12 hours (moto's expired in 2015).
    pub fn ecr_tokens(dir: &Path, password: &str) -> Server {
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ecr_token_server.py");
        let make = |port: u16| {
            let mut cmd = Command::new(tool("python3"));
            cmd.arg(&script)
                .args(["--port", &port.to_string(), "--password", password])
                .arg("--log")
                .arg(dir.join("ecr-token-requests.jsonl"));
            cmd
        };
        Server::spawn(make, &dir.join("registry-tokens.log"), "/healthz")
    }

    /// The access key ids GetAuthorizationToken was asked with, in order.
    pub fn ecr_token_askers(&self) -> Vec<String> {
        let p = self.log.with_file_name("ecr-token-requests.jsonl");
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| {
                v["target"]
                    .as_str()
                    .is_some_and(|t| t.ends_with(".GetAuthorizationToken"))
            })
            .map(|v| v["key"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// Requests the fault proxy saw, one JSON object each.
    pub fn proxy_requests(&self) -> Vec<serde_json::Value> {
        let p = self.log.with_file_name("proxy-requests.jsonl");
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Requests the token service saw, one JSON object each.
    pub fn token_requests(&self) -> Vec<serde_json::Value> {
        let p = self.log.with_file_name("token-requests.jsonl");
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The AWS CLI from the test venv against moto, as `key`/`secret` (moto's default
/// `testing`, or an IAM user's keys once moto enforces IAM), JSON output.
pub fn aws_command(moto: &Server, key: &str, secret: &str) -> Command {
    let mut c = Command::new(tool("aws"));
    c.args([
        "--endpoint-url",
        &moto.url(),
        "--region",
        "us-east-1",
        "--output",
        "json",
    ])
    .env("AWS_ACCESS_KEY_ID", key)
    .env("AWS_SECRET_ACCESS_KEY", secret)
    .env("AWS_CONFIG_FILE", "/dev/null")
    .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    .env("NO_PROXY", "*");
    c
}

/// `aws ARGS` against moto as its default user, which must succeed; its JSON output.
pub fn aws(moto: &Server, args: &[&str]) -> serde_json::Value {
    let out = aws_command(moto, "testing", "testing")
        .args(args)
        .output()
        .expect("aws cli (./scripts/test installs it)");
    assert!(
        out.status.success(),
        "aws {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}
