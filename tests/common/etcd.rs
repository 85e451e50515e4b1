//! A private etcd (Debian's `etcd-server`, `/usr/bin/etcd`) for the cluster tests: its
//! own data directory and free loopback ports; killed by its pid and its data removed on
//! drop, also when the test panics. It can be stopped and started again over the same
//! data and ports (an etcd restart).
//!
//! As docs/cluster.md tells a user to run it: https with client-certificate
//! authentication, the certificates made by `minifargate cluster init` (serve's bundle
//! for serve, one `cluster add-box` bundle for the agents, the operator's for etcdctl and
//! `exec --etcd`), and etcd's users and roles on (`minifargate cluster enable-auth`: each
//! bundle's password is its etcd user's). `MINIFARGATE_TEST_ETCD=plain` runs it as before (plain http on
//! loopback), e.g. to tell a TLS problem from another.

use super::util::free_port;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct Etcd {
    child: Option<Child>,
    dir: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
    tls: Option<ServerTls>,
    /// The directory `minifargate cluster init` made (None: plain, or [`Etcd::start_tls`]).
    pki: Option<PathBuf>,
}

/// etcd serving https and requiring client certificates signed by `ca`.
pub struct ServerTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// A client certificate and key the test may use (signed by `ca`).
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl Etcd {
    /// Starts etcd (with the cluster's certificates unless `MINIFARGATE_TEST_ETCD=plain`)
    /// and waits until it answers.
    pub fn start() -> Etcd {
        Etcd::start_for(&[])
    }

    /// [`Etcd::start`], its server certificate also valid for `hosts` (addresses etcd is
    /// relayed to, e.g. a [`super::netbox::Lan`]'s gateway).
    pub fn start_for(hosts: &[&str]) -> Etcd {
        Etcd::start_made(hosts, true)
    }

    /// [`Etcd::start`] as docs/cluster.md makes a cluster: `cluster init`, `cluster
    /// add-box`, etcd with the certificates, and no `cluster enable-auth` (the first serve
    /// turns etcd's users on).
    pub fn start_without_enable_auth() -> Etcd {
        Etcd::start_made(&[], false)
    }

    fn start_made(hosts: &[&str], enable_auth: bool) -> Etcd {
        let dir = tempfile::Builder::new()
            .prefix("mf-etcd-")
            .tempdir()
            .unwrap();
        if std::env::var("MINIFARGATE_TEST_ETCD").as_deref() == Ok("plain") {
            return Etcd::start_in(dir, None, None);
        }
        let pki = dir.path().join("pki");
        let mut init = Command::new(super::cli::bin());
        init.args(["cluster", "init", "--dir"]).arg(&pki);
        for h in hosts {
            init.args(["--etcd-host", h]);
        }
        super::util::run_ok(&mut init);
        super::util::run_ok(
            Command::new(super::cli::bin())
                .args(["cluster", "add-box", "tests", "--dir"])
                .arg(&pki),
        );
        let tls = ServerTls {
            ca: pki.join("etcd/ca.crt"),
            cert: pki.join("etcd/server.crt"),
            key: pki.join("etcd/server.key"),
            client_cert: pki.join("admin/client.crt"),
            client_key: pki.join("admin/client.key"),
        };
        let e = Etcd::start_in(dir, Some(tls), Some(pki.clone()));
        if !enable_auth {
            return e;
        }
        super::util::run_ok(
            Command::new(super::cli::bin())
                .args(["cluster", "enable-auth", "--dir"])
                .arg(&pki)
                .args(["--cluster", &e.endpoint()]),
        );
        e
    }

    /// Issues box `name`'s bundle (`cluster add-box NAME --cluster`: its etcd user made
    /// too): its `--etcd-certs` flags.
    pub fn add_box(&self, name: &str) -> Vec<String> {
        let Some(pki) = &self.pki else {
            return Vec::new();
        };
        super::util::run_ok(
            Command::new(super::cli::bin())
                .args(["cluster", "add-box", name, "--dir"])
                .arg(pki)
                .args(["--cluster", &self.endpoint()]),
        );
        self.bundle(&format!("boxes/{name}"))
    }

    /// etcdctl against this etcd with the client bundle in `dir` (its CA, certificate,
    /// key and, when it has one, its etcd user), calls timing out after `timeout`.
    pub fn etcdctl_with_bundle(&self, dir: &std::path::Path, timeout: &str) -> Command {
        let mut c = Command::new("etcdctl");
        c.env("ETCDCTL_API", "3")
            .args([
                "--endpoints",
                &self.endpoint(),
                "--command-timeout",
                timeout,
            ])
            .arg("--cacert")
            .arg(dir.join("ca.crt"))
            .arg("--cert")
            .arg(dir.join("client.crt"))
            .arg("--key")
            .arg(dir.join("client.key"));
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).map(|s| s.trim().to_string());
        if let (Ok(user), Ok(password)) = (read("etcd-user"), read("etcd-password")) {
            c.args(["--user", &format!("{user}:{password}")]);
        }
        c
    }

    /// `--user USER:PASSWORD` of bundle `which` for etcdctl (none without etcd users).
    pub fn etcdctl_user(&self, which: &str) -> Vec<String> {
        match &self.pki {
            Some(p) => {
                let dir = p.join(which);
                let read = |f: &str| {
                    std::fs::read_to_string(dir.join(f))
                        .unwrap()
                        .trim()
                        .to_string()
                };
                vec![
                    "--user".into(),
                    format!("{}:{}", read("etcd-user"), read("etcd-password")),
                ]
            }
            None => Vec::new(),
        }
    }

    /// Starts etcd over plain http on loopback (a fault proxy in front of it reads the
    /// requests).
    pub fn start_plain() -> Etcd {
        let dir = tempfile::Builder::new()
            .prefix("mf-etcd-")
            .tempdir()
            .unwrap();
        Etcd::start_in(dir, None, None)
    }

    /// Starts etcd with TLS client-certificate authentication (`--client-cert-auth`).
    pub fn start_tls(tls: ServerTls) -> Etcd {
        let dir = tempfile::Builder::new()
            .prefix("mf-etcd-")
            .tempdir()
            .unwrap();
        Etcd::start_in(dir, Some(tls), None)
    }

    fn start_in(dir: tempfile::TempDir, tls: Option<ServerTls>, pki: Option<PathBuf>) -> Etcd {
        let mut e = Etcd {
            child: None,
            dir,
            client_port: free_port(),
            peer_port: free_port(),
            tls,
            pki,
        };
        e.start_again();
        e
    }

    fn bundle(&self, which: &str) -> Vec<String> {
        match &self.pki {
            Some(p) => vec![
                "--etcd-certs".into(),
                p.join(which).to_string_lossy().into_owned(),
            ],
            None => Vec::new(),
        }
    }

    /// serve's TLS flags for this etcd (`--etcd-certs DIR`; none when plain).
    pub fn serve_args(&self) -> Vec<String> {
        self.bundle("serve")
    }

    /// An agent's TLS flags for this etcd (a `cluster add-box` bundle).
    pub fn agent_args(&self) -> Vec<String> {
        self.bundle("boxes/tests")
    }

    /// The operator's TLS flags (`exec --etcd`, `logs --etcd`).
    pub fn admin_args(&self) -> Vec<String> {
        self.bundle("admin")
    }

    /// The directory `minifargate cluster init` made, when it did.
    pub fn pki(&self) -> Option<&std::path::Path> {
        self.pki.as_deref()
    }

    /// The client endpoint (`http://127.0.0.1:PORT`, https with TLS).
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    /// Starts etcd over the same data and ports (after [`Etcd::kill`]).
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "etcd is running");
        let client = self.endpoint();
        let peer = self.peer_endpoint();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("etcd.log"))
            .unwrap();
        let mut cmd = Command::new("etcd");
        if let Some(t) = &self.tls {
            cmd.arg("--cert-file")
                .arg(&t.cert)
                .arg("--key-file")
                .arg(&t.key)
                .arg("--trusted-ca-file")
                .arg(&t.ca)
                .arg("--client-cert-auth");
        }
        if let Some(p) = &self.pki {
            // Peers over TLS with the peers' own CA, as docs/cluster.md runs them.
            let etcd = p.join("etcd");
            cmd.arg("--peer-cert-file")
                .arg(etcd.join("peer.crt"))
                .arg("--peer-key-file")
                .arg(etcd.join("peer.key"))
                .arg("--peer-trusted-ca-file")
                .arg(etcd.join("peer-ca.crt"))
                .arg("--peer-client-cert-auth");
        }
        let child = cmd
            .args(["--name", "t"])
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("t={peer}")])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start etcd (Debian's etcd-server: scripts/lib.sh install_deps)");
        self.child = Some(child);
        let start = Instant::now();
        while !self.healthy() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "etcd did not become healthy in 20 s; its log:\n{}",
                std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The peer endpoint (`https://…` when `cluster init` made the certificates).
    pub fn peer_endpoint(&self) -> String {
        let scheme = if self.pki.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.peer_port)
    }

    /// Whether etcd answers `/health` with `"health":"true"`.
    fn healthy(&self) -> bool {
        if let Some(t) = &self.tls {
            let out = Command::new("curl")
                .args(["-s", "--noproxy", "*", "-m", "2"])
                .arg("--cacert")
                .arg(&t.ca)
                .arg("--cert")
                .arg(&t.client_cert)
                .arg("--key")
                .arg(&t.client_key)
                .arg(format!("{}/health", self.endpoint()))
                .output()
                .expect("run curl");
            return String::from_utf8_lossy(&out.stdout).contains("\"health\":\"true\"");
        }
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.client_port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        if s.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .is_err()
        {
            return false;
        }
        let mut body = String::new();
        let _ = s.read_to_string(&mut body);
        body.contains("\"health\":\"true\"")
    }

    /// Kills etcd (SIGKILL, by its pid) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends `sig` (e.g. `-STOP`, `-CONT`) to etcd, by its pid.
    pub fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("etcd runs").id();
        let st = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap();
        assert!(st.success(), "kill {sig} {pid}");
    }

    /// `etcdctl ARGS` against this etcd (as the operator, with client certificates).
    pub fn etcdctl(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("etcdctl");
        cmd.env("ETCDCTL_API", "3")
            .args(["--endpoints", &self.endpoint()]);
        if let Some(t) = &self.tls {
            cmd.arg("--cacert")
                .arg(&t.ca)
                .arg("--cert")
                .arg(&t.client_cert)
                .arg("--key")
                .arg(&t.client_key);
        }
        cmd.args(self.etcdctl_user("admin"));
        cmd.args(args)
            .output()
            .expect("run etcdctl (Debian's etcd-client)")
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A private etcd cluster of several members on loopback (each its own data directory and
/// free ports), for the faults of one member; every member killed by its pid and the data
/// removed on drop, also when the test panics.
pub struct EtcdCluster {
    members: Vec<Member>,
    dir: tempfile::TempDir,
}

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

impl EtcdCluster {
    /// Starts `n` members together and waits until each answers healthy.
    pub fn start(n: usize) -> EtcdCluster {
        let dir = tempfile::Builder::new()
            .prefix("mf-etcds-")
            .tempdir()
            .unwrap();
        let members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: free_port(),
                peer_port: free_port(),
                child: None,
            })
            .collect();
        let mut c = EtcdCluster { members, dir };
        for i in 0..n {
            c.spawn(i, "new");
        }
        for i in 0..n {
            c.wait_healthy(i);
        }
        c
    }

    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn spawn(&mut self, i: usize, state: &str) {
        let initial = self.initial_cluster();
        let m = &self.members[i];
        assert!(m.child.is_none(), "member {} runs", m.name);
        let client = format!("http://127.0.0.1:{}", m.client_port);
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{}.log", m.name)))
            .unwrap();
        let child = Command::new("etcd")
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(self.dir.path().join(&m.name))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &initial])
            .args(["--initial-cluster-state", state])
            .args(["--initial-cluster-token", "mf-test"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start etcd (Debian's etcd-server: scripts/lib.sh install_deps)");
        self.members[i].child = Some(child);
    }

    fn wait_healthy(&self, i: usize) {
        let m = &self.members[i];
        let start = Instant::now();
        loop {
            let out = Command::new("etcdctl")
                .env("ETCDCTL_API", "3")
                .args(["--endpoints", &self.endpoint(i), "endpoint", "health"])
                .args(["--command-timeout", "2s"])
                .output()
                .expect("run etcdctl (Debian's etcd-client)");
            if out.status.success() {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "etcd member {} did not become healthy in 30 s; its log:\n{}",
                m.name,
                std::fs::read_to_string(self.dir.path().join(format!("{}.log", m.name)))
                    .unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Member `i`'s client endpoint.
    pub fn endpoint(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.members[i].client_port)
    }

    /// Every member's endpoint, comma-separated (as `--cluster` takes them).
    pub fn endpoints(&self) -> String {
        (0..self.members.len())
            .map(|i| self.endpoint(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Kills member `i` (SIGKILL, by its pid) and waits for it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts member `i` again over its data (it rejoins the cluster).
    pub fn start_again(&mut self, i: usize) {
        self.spawn(i, "existing");
        self.wait_healthy(i);
    }

    /// `etcdctl ARGS` against every member.
    pub fn etcdctl(&self, args: &[&str]) -> Output {
        Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &self.endpoints()])
            .args(args)
            .output()
            .expect("run etcdctl (Debian's etcd-client)")
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}
