//! Boxes as network namespaces (issue 38, "How to test it on one machine"): a [`Lan`] is a
//! test bridge on the host with an address of its own (the boxes' network: its /26 is
//! 10.99.x.y, cut from the test's unique 10.97.x.y/26); each [`NetBox`] is a network
//! namespace joined to it by a veth (`eth0` inside, the host's address as its default
//! route), with an [`Mf`] of its own (state root, run root, task bridge, task subnet, hence
//! nftables table) and a `minifargate agent` running inside the namespace (`nsenter
//! --net`, so the box shares the host's mounts and cgroups but has its own links, routes,
//! nftables and sysctls). What the boxes must reach on the host's loopback (etcd, the
//! registry) is relayed by a [`Forward`] listening on the Lan's host address.
//!
//! Everything is removed on drop, also when the test panics: the agent and its
//! supervisors (by pid), the task networks (a reconcile inside the box), the namespace
//! (with it the box's veth, task bridge, routes and nftables table), the Lan's bridge.

use super::cli::{Mf, bin};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Runs `ip ARGS`, panicking with its stderr when it fails.
pub fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `ip ARGS`, its failure ignored (clean-up).
fn ip_quiet(args: &[&str]) {
    let _ = Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A TCP relay from an address on the Lan to a host address (e.g. etcd on loopback),
/// one thread a direction per connection; stopped (listener and connections shut) on
/// drop.
pub struct Forward {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Forward {
    pub fn start(listen: Ipv4Addr, upstream: SocketAddr) -> Forward {
        Forward::start_on(TcpListener::bind((listen, 0)).unwrap(), upstream)
    }

    /// A relay on a listener bound before (its address told to the upstream first).
    pub fn start_on(l: TcpListener, upstream: SocketAddr) -> Forward {
        let addr = l.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (s, c) = (stop.clone(), conns.clone());
        std::thread::spawn(move || {
            for down in l.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(down) = down else { continue };
                let Ok(up) = TcpStream::connect_timeout(&upstream, Duration::from_secs(2)) else {
                    continue;
                };
                let mut held = c.lock().unwrap();
                held.push(down.try_clone().unwrap());
                held.push(up.try_clone().unwrap());
                drop(held);
                for (mut from, mut to) in [
                    (down.try_clone().unwrap(), up.try_clone().unwrap()),
                    (up, down),
                ] {
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16384];
                        loop {
                            match from.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    if to.write_all(&buf[..n]).is_err() {
                                        break;
                                    }
                                }
                            }
                        }
                        let _ = to.shutdown(Shutdown::Write);
                    });
                }
            }
        });
        Forward { addr, stop, conns }
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

/// The boxes' network: a bridge on the host with the first address of a /26 of its own.
pub struct Lan {
    pub bridge: String,
    pub gateway: Ipv4Addr,
    /// The test's unique tag (from its claimed test subnet): names its links and boxes.
    tag: String,
    base: u32,
    boxes: u32,
    /// Holds the test's unique 10.97.x.y/26 (and names): also the range the boxes lease
    /// their task subnets from ([`Lan::task_range`]).
    claim: Mf,
    forwards: Vec<Forward>,
}

impl Default for Lan {
    fn default() -> Self {
        Self::new()
    }
}

impl Lan {
    pub fn new() -> Lan {
        let claim = Mf::new();
        let bridge = claim.bridge();
        let tag = bridge[bridge.len() - 7..].to_string();
        let range: Ipv4Addr = claim
            .env_value("MINIFARGATE_SUBNET")
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let [_, _, c, d] = range.octets();
        let base = u32::from(Ipv4Addr::new(10, 99, c, d));
        let lan = Lan {
            bridge: format!("mfl{tag}"),
            gateway: Ipv4Addr::from(base + 1),
            tag,
            base,
            boxes: 0,
            claim,
            forwards: Vec::new(),
        };
        ip_quiet(&["link", "del", &lan.bridge]);
        ip(&["link", "add", &lan.bridge, "type", "bridge"]);
        ip(&[
            "addr",
            "add",
            &format!("{}/26", lan.gateway),
            "dev",
            &lan.bridge,
        ]);
        ip(&["link", "set", &lan.bridge, "up"]);
        lan
    }

    /// The range boxes lease their task subnets from (`agent --task-range`): the test's
    /// own 10.97.x.y/26.
    pub fn task_range(&self) -> String {
        self.claim.env_value("MINIFARGATE_SUBNET").unwrap()
    }

    /// Relays `upstream` (a host address, e.g. on loopback) to an address on the Lan the
    /// boxes reach; returns that address.
    pub fn forward(&mut self, upstream: SocketAddr) -> SocketAddr {
        let f = Forward::start(self.gateway, upstream);
        let a = f.addr;
        self.forwards.push(f);
        a
    }

    /// Relays `upstream` from `listener` (bound on the Lan before `upstream` existed).
    pub fn forward_from(&mut self, listener: TcpListener, upstream: SocketAddr) {
        self.forwards.push(Forward::start_on(listener, upstream));
    }

    /// `url` (`SCHEME://HOST:PORT`) with its host relayed onto the Lan.
    pub fn forward_url(&mut self, url: &str) -> String {
        let (scheme, hostport) = url.split_once("://").unwrap();
        let up: SocketAddr = hostport.trim_end_matches('/').parse().unwrap();
        format!("{scheme}://{}", self.forward(up))
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        self.forwards.clear();
        ip_quiet(&["link", "del", &self.bridge]);
    }
}

/// One box: a network namespace on the [`Lan`] with its own minifargate state, and its
/// agent (once started).
pub struct NetBox {
    /// The namespace's name (`ip netns`): `/run/netns/<name>`.
    pub name: String,
    pub mf: Mf,
    /// The box's address on the Lan.
    pub address: Ipv4Addr,
    /// The host's end of the box's veth (its "cable").
    pub host_veth: String,
    /// Whether the agent keeps MINIFARGATE_SUBNET (the box's own /26, pinned) or leases
    /// its subnet from the Lan's range.
    pub pinned: bool,
    agent: Option<Child>,
    args: Vec<String>,
}

impl NetBox {
    /// A box on `lan`: its namespace, veth, address and default route (via the host).
    pub fn new(lan: &mut Lan) -> NetBox {
        let i = lan.boxes;
        lan.boxes += 1;
        assert!(i < 16, "at most 16 boxes on a Lan");
        let name = format!("mfbox-{}-{i}", lan.tag);
        let host_veth = format!("mfv{}{i:x}", lan.tag);
        let address = Ipv4Addr::from(lan.base + 2 + i);
        ip_quiet(&["netns", "del", &name]);
        ip_quiet(&["link", "del", &host_veth]);
        let b = NetBox {
            name: name.clone(),
            mf: Mf::new(),
            address,
            host_veth: host_veth.clone(),
            pinned: false,
            agent: None,
            args: Vec::new(),
        };
        ip(&["netns", "add", &name]);
        ip(&[
            "link", "add", &host_veth, "type", "veth", "peer", "name", "eth0", "netns", &name,
        ]);
        ip(&["link", "set", &host_veth, "master", &lan.bridge, "up"]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        ip(&[
            "-n",
            &name,
            "addr",
            "add",
            &format!("{address}/26"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &name, "link", "set", "eth0", "up"]);
        ip(&[
            "-n",
            &name,
            "route",
            "add",
            "default",
            "via",
            &lan.gateway.to_string(),
        ]);
        b
    }

    /// `minifargate` with the box's root, run root, config and environment, inside the
    /// box's network namespace.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new("nsenter");
        self.mf.prepare(&mut c);
        if !self.pinned {
            c.env_remove("MINIFARGATE_SUBNET");
        }
        c.arg(format!("--net=/run/netns/{}", self.name))
            .arg(bin())
            .arg("--root")
            .arg(&self.mf.root)
            .arg("--run-root")
            .arg(&self.mf.run_root);
        if let Some(cfg) = &self.mf.config {
            c.arg("--config").arg(cfg);
        }
        c
    }

    /// Runs `minifargate ARGS` in the box; expects exit 0 and JSON on stdout.
    pub fn json(&self, args: &[&str]) -> Value {
        let out = self.cmd().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "minifargate {args:?} in {}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// `ip -n <box> ARGS`.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut a = vec!["-n", self.name.as_str()];
        a.extend(args);
        ip(&a)
    }

    /// A command run inside the box's network namespace.
    pub fn exec(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    pub fn log(&self) -> std::path::PathBuf {
        self.mf.dir.path().join("agent.log")
    }

    /// Starts `minifargate agent ARGS` in the box (again, after [`NetBox::signal`] ended
    /// it: the same arguments when `args` is empty).
    pub fn start_agent(&mut self, args: &[String]) {
        assert!(self.agent.is_none(), "the agent runs");
        if !args.is_empty() {
            self.args = args.to_vec();
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .unwrap();
        // Not the host's /etc/ecs/ecs.config: an empty file of the box's own.
        let ecs_config = self.mf.dir.path().join("ecs.config");
        std::fs::write(&ecs_config, "").unwrap();
        let child = self
            .cmd()
            .arg("agent")
            .arg("--ecs-config")
            .arg(&ecs_config)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start minifargate agent in the box");
        self.agent = Some(child);
    }

    pub fn agent_pid(&self) -> u32 {
        self.agent.as_ref().expect("the agent runs").id()
    }

    /// Sends `sig` to the agent; for SIGTERM/SIGKILL waits for it and returns its status.
    pub fn signal(&mut self, sig: &str) -> Option<ExitStatus> {
        let pid = self.agent_pid().to_string();
        let _ = Command::new("kill").args([sig, &pid]).status();
        if matches!(sig, "-TERM" | "-KILL" | "-INT") {
            let mut c = self.agent.take().unwrap();
            return Some(c.wait().unwrap());
        }
        None
    }

    /// Stops the agent for good: SIGTERM (the box's data plane, its routes and its
    /// tasks' DNS server and listeners stay for a restart), then `agent --leave` (they
    /// go). The agent's exit status.
    pub fn stop_for_good(&mut self) -> ExitStatus {
        let st = self.signal("-TERM").unwrap();
        self.leave();
        st
    }

    /// `minifargate agent --leave` in the box (its agent stopped): what the agent left
    /// for its tasks goes.
    pub fn leave(&self) {
        let ecs_config = self.mf.dir.path().join("ecs.config");
        let out = self
            .cmd()
            .args(["agent", "--leave", "--ecs-config"])
            .arg(&ecs_config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "agent --leave in {}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The box's cable: the host's end of its veth set down (a partition: the box keeps
    /// running, nothing reaches it) or up again.
    pub fn link(&self, up: bool) {
        ip(&[
            "link",
            "set",
            &self.host_veth,
            if up { "up" } else { "down" },
        ]);
    }

    /// The instance id the box's agent keeps in its state root (once it has made it).
    pub fn id(&self) -> String {
        super::cluster::instance_id(&self.mf.root)
    }

    /// The box's container-instance ARN in cluster `default`.
    pub fn arn(&self) -> String {
        super::cluster::instance_arn(&self.mf.root)
    }

    /// The box's routes to other boxes' task subnets (`ip route show proto 109`).
    pub fn peer_routes(&self) -> Vec<String> {
        self.ip(&["-4", "route", "show", "proto", "109"])
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// The nftables tables of the box's namespace.
    pub fn nft_tables(&self) -> String {
        let out: Output = self.exec("nft").args(["list", "tables"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The links of the box's namespace.
    pub fn links(&self) -> Vec<String> {
        self.ip(&["-o", "link", "show"])
            .lines()
            .filter_map(|l| l.split(':').nth(1))
            .map(|n| n.trim().split('@').next().unwrap().to_string())
            .collect()
    }

    /// Kills the agent and the supervisors left, and lets a command in the box clean up
    /// after them (task networks, mounts, cgroups, leases).
    pub fn kill_all(&mut self) {
        if let Some(mut c) = self.agent.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // The data plane, which outlives the agent, and any other process of this root.
        self.mf.kill_processes_of_this_root();
        let mut killed = false;
        for e in std::fs::read_dir(self.mf.run_root.join("tasks"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Ok(pid) = std::fs::read_to_string(e.path().join("supervisor.pid")) {
                let _ = Command::new("kill").args(["-KILL", pid.trim()]).status();
                killed = true;
            }
        }
        if killed {
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = self.cmd().arg("list-tasks").output();
    }
}

impl Drop for NetBox {
    fn drop(&mut self) {
        self.kill_all();
        eprintln!(
            "agent log of {} ({}):\n{}",
            self.name,
            self.log().display(),
            std::fs::read_to_string(self.log()).unwrap_or_default()
        );
        ip_quiet(&["netns", "del", &self.name]);
        ip_quiet(&["link", "del", &self.host_veth]);
    }
}
