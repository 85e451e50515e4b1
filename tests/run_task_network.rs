//! Root integration tests of task networking through run-task: awsvpc tasks on a bridge
//! with their own address, published ports, bridge-mode dynamic ports, the describe-tasks
//! ENI fields, port conflicts and a killed supervisor. Each test has its own bridge and
//! subnet (tests/common/cli.rs); traffic goes only to loopback and to the tasks.

use crate::common;

use common::busybox_task_env;
use common::cli::Mf;
use common::image::{Compression, Layer, busybox_all_applets};
use common::registry::Registry;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

const BUSYBOX: &str = "public.ecr.aws/docker/library/busybox:1.36";

struct Env {
    mf: Mf,
    _reg: Registry,
}

/// The test's `Mf` (its `taskdef`, `run`, `json`, ...), as its own methods.
impl std::ops::Deref for Env {
    type Target = Mf;
    fn deref(&self) -> &Mf {
        &self.mf
    }
}

impl Env {
    fn new() -> Env {
        let (mf, reg) = busybox_task_env(Layer::new(
            Compression::Gzip,
            busybox_all_applets("run-task-net"),
        ));
        Env { mf, _reg: reg }
    }

    /// Runs a detached task (run-task or run) and returns its id.
    fn detach(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "{args:?} failed");
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        arn_id(&v["tasks"][0]["taskArn"])
    }

    /// A detached busybox task that sleeps until stopped (its shell traps SIGTERM:
    /// `sleep` as pid 1 would ignore stop-task's SIGTERM for its whole stopTimeout),
    /// RUNNING; its id.
    fn sleeper(&self) -> String {
        let id = self.detach(&[
            "run",
            "--detach",
            BUSYBOX,
            "--",
            "sh",
            "-c",
            "trap 'exit 0' TERM; sleep 1000 & wait",
        ]);
        self.wait_status(&id, "RUNNING", Duration::from_secs(60));
        id
    }

    fn describe(&self, id: &str) -> Value {
        let out = self.run(&["describe-tasks", "--tasks", id]);
        assert!(out.status.success());
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["tasks"][0].clone()
    }

    fn wait_status(&self, id: &str, want: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let t = self.describe(id);
            if t["lastStatus"] == want {
                return t;
            }
            assert!(
                Instant::now() < deadline,
                "task {id} did not reach {want}: {t:#}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stop(&self, id: &str) -> Value {
        let out = self.run(&["stop-task", "--task", id]);
        assert!(out.status.success());
        // A pid 1 without a SIGTERM handler waits out its stopTimeout (30 s by default).
        self.wait_status(id, "STOPPED", Duration::from_secs(90))
    }

    fn logs(&self, id: &str, container: &str) -> String {
        String::from_utf8_lossy(&self.run(&["logs", id, "--container", container]).stdout)
            .into_owned()
    }

    fn supervisor_pid(&self, id: &str) -> Option<i32> {
        let p = self
            .mf
            .run_root
            .join("tasks")
            .join(id)
            .join("supervisor.pid");
        std::fs::read_to_string(p).ok()?.trim().parse().ok()
    }

    /// Nothing of the tasks' networks is left: namespace, veth, lease, published ports
    /// (the bridge and the nftables table stay, emptied, like docker0 and Docker's
    /// rules; Mf's drop removes them).
    fn assert_network_clean(&self, ids: &[&str]) {
        let net = self.mf.network();
        for id in ids {
            let ns = Path::new("/run/netns").join(format!("mfg-{id}"));
            assert!(!ns.exists(), "netns left behind: {}", ns.display());
            let veth = net.veth_name(id);
            wait_for(&format!("veth {veth} of {id} to go"), || {
                !netns::link_exists(&veth).unwrap()
            });
        }
        // The next command's GC pass releases the leases of veths the kernel freed.
        wait_for("the task leases to be released", || {
            let _ = self.mf.cmd().arg("list-tasks").output();
            net.leased_ips().unwrap().is_empty() && net.tasks().unwrap().is_empty()
        });
        let left =
            common::leaks::table_leftovers(std::process::Command::new("nft"), net.nft_table());
        assert!(
            left.is_empty(),
            "task rules or elements left in table ip {}: {left:#?}",
            net.nft_table()
        );
    }
}

fn arn_id(v: &Value) -> String {
    v.as_str().unwrap().rsplit('/').next().unwrap().to_string()
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A TCP port free on the host, below the ephemeral range (so no outgoing connection of
/// another test takes it between check and use).
fn free_port() -> u16 {
    loop {
        let p = 20000 + (std::process::id() as u16 ^ rand16()) % 10000;
        if TcpListener::bind(("0.0.0.0", p)).is_ok() {
            return p;
        }
    }
}

fn rand16() -> u16 {
    let mut b = [0u8; 2];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut b)
        .unwrap();
    u16::from_le_bytes(b)
}

/// GET / from `addr`; the body, or the error.
fn http_get(addr: SocketAddr) -> Result<String, String> {
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(3)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET / HTTP/1.0\r\nHost: test\r\n\r\n").map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

fn http_get_eventually(addr: SocketAddr, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match http_get(addr) {
            Ok(body) if body.contains(want) => return body,
            other => assert!(
                Instant::now() < deadline,
                "GET http://{addr}/ never returned {want:?}: {other:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn detail(t: &Value, name: &str) -> String {
    t["attachments"][0]["details"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {t:#}"))["value"]
        .as_str()
        .unwrap()
        .to_string()
}

fn task_ip(t: &Value) -> Ipv4Addr {
    detail(t, "privateIPv4Address").parse().unwrap()
}

/// examples/web.json as it is, but for its port (awsvpc publishes hostPort ==
/// containerPort, so tests in parallel need their own).
fn web_taskdef(port: u16) -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/web.json"))
        .unwrap()
        .replace("8080", &port.to_string())
}

#[test]
fn web_example_serves_the_host_and_its_sidecar_over_localhost() {
    let env = Env::new();
    let port = free_port();
    let td = env.taskdef("web", &web_taskdef(port));
    let id = env.detach(&["run-task", "--task-definition", &td, "--detach"]);
    let t = env.wait_status(&id, "RUNNING", Duration::from_secs(60));
    let ip = task_ip(&t);
    let want = "hello from minifargate";
    // From the host: the published port on loopback, and the task's own address.
    http_get_eventually(SocketAddr::from((Ipv4Addr::LOCALHOST, port)), want);
    http_get_eventually(SocketAddr::from((ip, port)), want);
    // The sidecar fetches the page over localhost inside the task's namespace.
    wait_for("the sidecar to fetch the page", || {
        env.logs(&id, "sidecar").contains(want)
    });
    let t = env.stop(&id);
    assert_eq!(t["attachments"][0]["status"], "DELETED");
    env.assert_network_clean(&[&id]);
    assert!(http_get(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).is_err());
}

#[test]
fn describe_tasks_shows_the_eni_and_containers_see_their_hostname_and_hosts() {
    let env = Env::new();
    let td = env.taskdef(
        "probe",
        r#"{"family":"probe","networkMode":"awsvpc","memory":"256","containerDefinitions":[
            {"name":"probe","image":"public.ecr.aws/docker/library/busybox:1.36","stopTimeout":2,
             "command":["sh","-c","hostname; cat /etc/hosts /etc/resolv.conf; echo ipv6 eth0 addr_gen_mode=$(cat /proc/sys/net/ipv6/conf/eth0/addr_gen_mode); ip -6 -o addr; ls /sys/class/net; sleep 1000"]},
            {"name":"app","image":"public.ecr.aws/docker/library/busybox:1.36","essential":false,
             "stopTimeout":2,"command":["sleep","1000"]}]}"#,
    );
    let out = env.run(&[
        "run-task",
        "--task-definition",
        &td,
        "--detach",
        "--network-configuration",
        "awsvpcConfiguration={subnets=[subnet-0abc],securityGroups=[sg-1]}",
    ]);
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    // The RunTask response: the ENI is only pre-created, with the subnet.
    let a = &v["tasks"][0]["attachments"][0];
    assert_eq!(a["type"], "ElasticNetworkInterface");
    assert_eq!(a["status"], "PRECREATED");
    assert_eq!(
        a["details"],
        serde_json::json!([{"name":"subnetId","value":"subnet-0abc"}])
    );
    let id = arn_id(&v["tasks"][0]["taskArn"]);

    let t = env.wait_status(&id, "RUNNING", Duration::from_secs(60));
    let a = &t["attachments"][0];
    assert_eq!(a["status"], "ATTACHED");
    let names: Vec<&str> = a["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "subnetId",
            "networkInterfaceId",
            "macAddress",
            "privateDnsName",
            "privateIPv4Address"
        ]
    );
    assert_eq!(detail(&t, "subnetId"), "subnet-0abc");
    let ip = task_ip(&t);
    let subnet: netns::Subnet = env
        .mf
        .env_value("MINIFARGATE_SUBNET")
        .unwrap()
        .parse()
        .unwrap();
    assert!(subnet.contains(ip), "{ip} not in {subnet}");
    let [o1, o2, o3, o4] = ip.octets();
    let dns = format!("ip-{o1}-{o2}-{o3}-{o4}.ec2.internal");
    assert_eq!(detail(&t, "privateDnsName"), dns);
    assert!(detail(&t, "networkInterfaceId").starts_with("eni-"));
    assert_eq!(detail(&t, "macAddress").len(), 17);
    for c in t["containers"].as_array().unwrap() {
        assert_eq!(
            c["networkInterfaces"],
            serde_json::json!([{"attachmentId": a["id"], "privateIpv4Address": ip.to_string()}])
        );
        assert_eq!(c["networkBindings"], serde_json::json!([]));
    }
    // What the container sees: Fargate's hostname, its hosts and resolv.conf, eth0.
    let mut log = String::new();
    wait_for("the probe output", || {
        log = env.logs(&id, "probe");
        log.lines().any(|l| l == "eth0")
    });
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines[0], dns, "{log}");
    assert!(log.contains("127.0.0.1\tlocalhost"), "{log}");
    assert!(log.contains(&format!("{ip}\t{dns}")), "{log}");
    assert!(log.contains("nameserver "), "{log}");
    assert!(!log.contains("nameserver 127."), "{log}");
    assert!(lines.contains(&"lo") && lines.contains(&"eth0"), "{log}");
    // IPv4 only, as an ENI in an IPv4 subnet: eth0 makes no IPv6 address (addr_gen_mode
    // 1, none), so it sends nothing the bridge would flood to the other tasks; lo keeps ::1.
    assert!(lines.contains(&"ipv6 eth0 addr_gen_mode=1"), "{log}");
    let v6: Vec<&&str> = lines.iter().filter(|l| l.contains("inet6")).collect();
    assert!(
        v6.len() == 1 && v6[0].contains(" lo ") && v6[0].contains("::1/128"),
        "{log}"
    );

    let t = env.stop(&id);
    assert_eq!(t["attachments"][0]["status"], "DELETED");
    env.assert_network_clean(&[&id]);
}

/// dnsServers, dnsSearchDomains, extraHosts (ECS allows them outside awsvpc only) and
/// links.
#[test]
fn bridge_task_gets_its_dns_settings_and_extra_hosts() {
    let env = Env::new();
    let td = env.taskdef(
        "dns",
        r#"{"family":"dns","networkMode":"bridge","containerDefinitions":[
            {"name":"dns","image":"public.ecr.aws/docker/library/busybox:1.36","memory":64,
             "hostname":"custom-name","links":["backend:api"],
             "command":["sh","-c","hostname; cat /etc/hosts /etc/resolv.conf"],
             "dnsServers":["10.97.255.53"],"dnsSearchDomains":["corp.example"],
             "extraHosts":[{"hostname":"db.internal","ipAddress":"10.97.255.7"}]},
            {"name":"backend","image":"public.ecr.aws/docker/library/busybox:1.36","memory":64,
             "essential":false,"command":["true"]}]}"#,
    );
    let out = env.run(&["run-task", "--task-definition", &td]);
    let log = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{log}");
    assert!(log.contains("| custom-name\n"), "{log}");
    // The container's hostname resolves to the task (as Docker's bridge mode has it).
    assert!(
        log.lines()
            .any(|l| l.contains("\tip-10-97-") && l.ends_with(" custom-name")),
        "{log}"
    );
    assert!(log.contains("10.97.255.7\tdb.internal"), "{log}");
    assert!(log.contains("127.0.0.1\tapi"), "{log}");
    assert!(log.contains("nameserver 10.97.255.53"), "{log}");
    assert!(log.contains("search corp.example"), "{log}");
    let v: Value = serde_json::from_slice(
        &env.run(&["list-tasks", "--desired-status", "STOPPED"])
            .stdout,
    )
    .unwrap();
    env.assert_network_clean(&[&arn_id(&v["taskArns"][0])]);
}

#[test]
fn two_tasks_get_different_addresses_and_reach_each_other() {
    let env = Env::new();
    let server = env.detach(&[
        "run",
        "--detach",
        BUSYBOX,
        "--",
        "sh",
        "-c",
        "mkdir /www && echo 'from task one' > /www/index.html && exec httpd -f -p 8000 -h /www",
    ]);
    let t1 = env.wait_status(&server, "RUNNING", Duration::from_secs(60));
    let ip1 = task_ip(&t1);
    // The second task fetches the first one's page by its address (attached: its exit
    // code is wget's).
    let url = format!("http://{ip1}:8000/");
    let script = format!(
        "ip -4 -o addr show eth0; for i in 1 2 3 4 5 6 7 8 9 10; do wget -q -O - {url} && exit 0; sleep 0.5; done; exit 1"
    );
    let out = env.run(&["run", BUSYBOX, "--", "sh", "-c", &script]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("from task one"), "{text}");
    let ip2: Ipv4Addr = text
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|cidr| cidr.split('/').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no inet address in {text}"));
    assert_ne!(ip1, ip2);
    let list = env.run(&["list-tasks", "--desired-status", "STOPPED"]);
    let v: Value = serde_json::from_slice(&list.stdout).unwrap();
    let client = arn_id(&v["taskArns"][0]);
    env.stop(&server);
    env.assert_network_clean(&[&server, &client]);
}

#[test]
fn bridge_mode_publishes_a_dynamic_host_port() {
    let env = Env::new();
    let id = env.detach(&[
        "run",
        "--detach",
        "--network",
        "bridge",
        "-p",
        "80",
        BUSYBOX,
        "--",
        "sh",
        "-c",
        "mkdir /www && echo 'bridge mode page' > /www/index.html && exec httpd -f -p 80 -h /www",
    ]);
    let t = env.wait_status(&id, "RUNNING", Duration::from_secs(60));
    assert_eq!(t["attachments"], serde_json::json!([]));
    let b = &t["containers"][0]["networkBindings"];
    assert_eq!(b.as_array().unwrap().len(), 1, "{t:#}");
    assert_eq!(b[0]["bindIP"], "0.0.0.0");
    assert_eq!(b[0]["containerPort"], 80);
    assert_eq!(b[0]["protocol"], "tcp");
    let host_port = b[0]["hostPort"].as_u64().unwrap() as u16;
    assert!((49153..=65535).contains(&host_port), "{host_port}");
    http_get_eventually(
        SocketAddr::from((Ipv4Addr::LOCALHOST, host_port)),
        "bridge mode page",
    );
    env.stop(&id);
    env.assert_network_clean(&[&id]);
}

#[test]
fn a_host_port_in_use_fails_a_bridge_task_cleanly_and_an_awsvpc_task_runs_unpublished() {
    let env = Env::new();
    let port = free_port();
    let _holder = TcpListener::bind(("0.0.0.0", port)).unwrap();
    let p = format!("{port}:{port}");

    // awsvpc: the task has its own address (as on Fargate); the host port is a
    // convenience it goes without, said as a warning.
    let script = format!(
        "trap 'exit 0' TERM; mkdir /www && echo unpublished > /www/index.html && {{ httpd -f -p {port} -h /www & wait; }}"
    );
    let id = env.detach(&[
        "run", "--detach", "-p", &p, BUSYBOX, "--", "sh", "-c", &script,
    ]);
    let t = env.wait_status(&id, "RUNNING", Duration::from_secs(30));
    let warnings = t["minifargateWarnings"].to_string();
    assert!(
        warnings.contains(&format!(
            "port {port}/tcp of container busybox is not published on the host \
             (failed to reserve host tcp port {port}: it is already in use on this host"
        )),
        "{t:#}"
    );
    let ip = task_ip(&t);
    http_get_eventually(SocketAddr::from((ip, port)), "unpublished");
    env.stop(&id);
    env.assert_network_clean(&[&id]);

    // bridge: a taken static host port fails the task, as it fails placement on ECS
    // (RESOURCE:PORTS).
    let id = env.detach(&[
        "run",
        "--detach",
        "--network",
        "bridge",
        "-p",
        &p,
        BUSYBOX,
        "--",
        "sleep",
        "100",
    ]);
    let t = env.wait_status(&id, "STOPPED", Duration::from_secs(30));
    assert_eq!(t["stopCode"], "TaskFailedToStart");
    let reason = t["stoppedReason"].as_str().unwrap();
    assert!(
        reason.starts_with("ResourceInitializationError: "),
        "{reason}"
    );
    assert!(
        reason.contains(&format!("host tcp port {port}: it is already in use")),
        "{reason}"
    );
    assert_eq!(t["containers"][0]["reason"], reason);
    // (Bridge mode has no ENI attachment, as on ECS.)
    assert!(
        t["attachments"].as_array().is_none_or(|a| a.is_empty()),
        "{t:#}"
    );
    assert!(t.get("startedAt").is_none());
    env.assert_network_clean(&[&id]);
}

#[test]
fn killed_supervisor_leaves_no_network_behind() {
    let env = Env::new();
    let port = free_port();
    let p = format!("{port}:{port}");
    let script =
        format!("mkdir /www && echo up > /www/index.html && exec httpd -f -p {port} -h /www");
    let id = env.detach(&[
        "run", "--detach", "-p", &p, BUSYBOX, "--", "sh", "-c", &script,
    ]);
    let t = env.wait_status(&id, "RUNNING", Duration::from_secs(60));
    assert_eq!(t["attachments"][0]["status"], "ATTACHED");
    http_get_eventually(SocketAddr::from((Ipv4Addr::LOCALHOST, port)), "up");
    let pid = env.supervisor_pid(&id).expect("supervisor pid");
    let st = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    wait_for("the supervisor to die", || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.contains(") Z"))
            .unwrap_or(true)
    });
    let t = env.describe(&id);
    assert_eq!(t["lastStatus"], "STOPPED");
    assert_eq!(t["attachments"][0]["status"], "DELETED");
    env.assert_network_clean(&[&id]);
    // The port is free for the next task.
    let again = env.detach(&["run", "--detach", "-p", &p, BUSYBOX, "--", "sleep", "100"]);
    env.wait_status(&again, "RUNNING", Duration::from_secs(60));
    env.stop(&again);
    env.assert_network_clean(&[&again]);
}

#[test]
fn none_mode_has_loopback_only_and_host_mode_the_host_network() {
    let env = Env::new();
    let out = env.run(&[
        "run",
        "--network",
        "none",
        BUSYBOX,
        "--",
        "ls",
        "/sys/class/net",
    ]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "busybox | lo");
    let out = env.run(&[
        "run",
        "--network",
        "host",
        BUSYBOX,
        "--",
        "ls",
        "/sys/class/net",
    ]);
    assert!(out.status.success());
    let host: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let seen = String::from_utf8_lossy(&out.stdout);
    assert!(
        host.iter().any(|h| h != "lo" && seen.contains(h.as_str())),
        "{seen}"
    );
    let stopped = env.run(&["list-tasks", "--desired-status", "STOPPED"]);
    let v: Value = serde_json::from_slice(&stopped.stdout).unwrap();
    let ids: Vec<String> = v["taskArns"]
        .as_array()
        .unwrap()
        .iter()
        .map(arn_id)
        .collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    env.assert_network_clean(&ids);
}

#[test]
fn without_nftables_tasks_run_without_egress_and_ports_are_refused() {
    let mut env = Env::new();
    env.mf.set_env("MINIFARGATE_NFT", "/nonexistent/nft");
    let out = env.run(&["run", BUSYBOX, "--", "sh", "-c", "ip -4 -o addr show eth0"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    assert!(text.contains("inet 10.97."), "{text}");
    let v: Value = serde_json::from_slice(
        &env.run(&["list-tasks", "--desired-status", "STOPPED"])
            .stdout,
    )
    .unwrap();
    let first = arn_id(&v["taskArns"][0]);
    let t = env.describe(&first);
    let warnings = t["minifargateWarnings"].to_string();
    assert!(
        warnings.contains("nftables is unavailable") && warnings.contains("no egress NAT"),
        "{t:#}"
    );

    let id = env.detach(&["run", "--detach", "-p", "8000:8000", BUSYBOX, "--", "true"]);
    let t = env.wait_status(&id, "STOPPED", Duration::from_secs(30));
    assert_eq!(t["stopCode"], "TaskFailedToStart");
    let reason = t["stoppedReason"].as_str().unwrap();
    assert!(
        reason.contains("nftables is not available")
            && reason.contains("install the nftables package"),
        "{reason}"
    );
    env.assert_network_clean(&[&first, &id]);
}

/// The safety net: network state of a task the store does not know as live (e.g. a
/// supervisor killed between recording its network and writing anything else) is given
/// back by the next command's GC pass.
#[test]
fn the_next_command_reclaims_networks_of_tasks_that_are_not_live() {
    let env = Env::new();
    let net = env.mf.network();
    let orphan = net
        .setup_task(
            "0123456789abcdef0123456789abcdef",
            &netns::TaskSpec::new(netns::NetworkMode::Awsvpc),
        )
        .unwrap();
    assert!(orphan.netns_path.as_ref().unwrap().exists());
    let out = env.run(&["list-tasks"]);
    assert!(out.status.success());
    assert!(net.tasks().unwrap().is_empty());
    env.assert_network_clean(&["0123456789abcdef0123456789abcdef"]);
}

#[test]
fn bad_network_input_is_refused_before_anything_exists() {
    let mut mf = Mf::new();
    let e = mf.fail(&["run", "-p", "80:81", BUSYBOX, "--", "true"]);
    assert_eq!(
        e,
        "minifargate: containerDefinitions[0].portMappings[0].hostPort: in awsvpc mode hostPort \
         must be absent or equal containerPort (81), got 80"
    );
    let e = mf.fail(&["run", "-p", "80/sctp", BUSYBOX, "--", "true"]);
    assert!(e.contains("protocol \"sctp\" is not tcp or udp"), "{e}");
    mf.set_env("MINIFARGATE_SUBNET", "10.97.0.0");
    let e = mf.fail(&["run", BUSYBOX, "--", "true"]);
    assert!(e.contains("MINIFARGATE_SUBNET=\"10.97.0.0\""), "{e}");
    assert!(!mf.run_root.join("tasks").exists());
    assert!(!mf.root.join("tasks").exists());
}

#[test]
fn web_task_whose_server_cannot_start_fails_and_leaves_no_network() {
    let env = Env::new();
    let port = free_port();
    let td = env.taskdef(
        "web",
        &web_taskdef(port).replace("\"httpd\"", "\"nosuchhttpd\""),
    );
    let id = env.detach(&["run-task", "--task-definition", &td, "--detach"]);
    let t = env.wait_status(&id, "STOPPED", Duration::from_secs(60));
    assert_eq!(t["stopCode"], "TaskFailedToStart", "{t:#}");
    let reason = t["stoppedReason"].as_str().unwrap();
    assert!(
        reason.starts_with("CannotStartContainerError:") && reason.contains("nosuchhttpd"),
        "{reason}"
    );
    assert_eq!(t["attachments"][0]["status"], "DELETED");
    env.assert_network_clean(&[&id]);
}

/// The lines of `/proc/<pid>/mountinfo` that contain `needle`.
fn mount_lines(pid: &str, needle: &str) -> Vec<String> {
    std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .unwrap()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

/// A task's mounts live in its supervisor's own mount namespace: the host's mount table,
/// which libcontainer reads whole several times per container create, does not grow with
/// the running tasks, and one task's supervisor holds no mount of another task (nor its
/// netns pin). The netns pins stay in the host's table (`ip netns`, reconcile), and the
/// containers still get their network through the pin bound again inside.
#[test]
fn task_mounts_stay_in_their_supervisors_namespace() {
    let env = Env::new();
    let first = env.sleeper();
    let second = env.detach(&[
        "run",
        "--detach",
        "--name",
        "main",
        BUSYBOX,
        "--",
        "sh",
        "-c",
        "ip -4 -o addr show eth0; trap 'exit 0' TERM; sleep 1000 & wait",
    ]);
    let t2 = env.wait_status(&second, "RUNNING", Duration::from_secs(60));
    let ip2 = task_ip(&t2);
    wait_for("the second task's address in its log", || {
        env.logs(&second, "main").contains(&format!("inet {ip2}/"))
    });

    let me = std::process::id().to_string();
    let root = env.mf.dir.path().to_string_lossy().to_string();
    assert_eq!(
        common::leaks::task_mount_lines(&env.mf),
        Vec::<String>::new(),
        "task mounts in the host's mount table"
    );
    for id in [&first, &second] {
        assert_eq!(
            mount_lines(&me, &format!("/run/netns/mfg-{id} ")).len(),
            1,
            "the netns pin of {id} is in the host's table"
        );
    }
    let sup2 = env.supervisor_pid(&second).unwrap().to_string();
    let rootfs = mount_lines(&sup2, &root);
    assert!(
        rootfs
            .iter()
            .any(|l| l.contains(&second) && l.contains(" - overlay ")),
        "the second task's rootfs in its supervisor's table: {rootfs:#?}"
    );
    assert!(
        rootfs.iter().all(|l| !l.contains(&first)),
        "the first task's mounts in the second supervisor's table: {rootfs:#?}"
    );
    assert_eq!(mount_lines(&sup2, &format!("mfg-{second} ")).len(), 1);
    assert_eq!(
        mount_lines(&sup2, &format!("mfg-{first} ")),
        Vec::<String>::new(),
        "another task's netns pin in the second supervisor's table"
    );

    env.stop(&first);
    env.stop(&second);
    env.assert_network_clean(&[&first, &second]);
    assert_eq!(
        common::leaks::task_mount_lines(&env.mf),
        Vec::<String>::new()
    );
}

/// A mount of the test's own, unmounted (lazily) when dropped, deepest first.
struct Mounted(Vec<std::path::PathBuf>);

impl Mounted {
    /// `dir` made a bind mount of itself with `propagation` (MS_SHARED or MS_PRIVATE).
    fn bind_self(&mut self, dir: &Path, propagation: nix::mount::MsFlags) {
        use nix::mount::{MsFlags, mount};
        std::fs::create_dir_all(dir).unwrap();
        mount(Some(dir), dir, None::<&str>, MsFlags::MS_BIND, None::<&str>).unwrap();
        self.0.push(dir.into());
        mount(None::<&str>, dir, None::<&str>, propagation, None::<&str>).unwrap();
    }

    fn tmpfs(&mut self, dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        nix::mount::mount(
            Some("tmpfs"),
            dir,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some("size=1m"),
        )
        .unwrap();
        self.0.push(dir.into());
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        for m in self.0.iter().rev() {
            let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// Netns pins of the test's own in /run/netns (other tasks' pins, as the host's table has
/// with N tasks running), removed when dropped.
struct Pins(Vec<std::path::PathBuf>);

impl Drop for Pins {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = netns::nsfs::remove(p);
        }
    }
}

/// The inode of the template's pinned namespace. (A template made again may get the inode
/// number its predecessor freed: [`template_table`] tells them apart.)
fn template_ino(mf: &Mf) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(mf.run_root.join("mntns/ns"))
        .unwrap()
        .ino()
}

/// The mount table of the run root's template mount namespace.
fn template_table(mf: &Mf) -> String {
    let out = std::process::Command::new("nsenter")
        .arg(format!(
            "--mount={}",
            mf.run_root.join("mntns/ns").display()
        ))
        .args(["cat", "/proc/self/mountinfo"])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Issue 39: supervisors copy the run root's template mount namespace (the host's table
/// without the netns pins), made once, instead of the host's whole table. A supervisor's
/// table holds its own task's pin and no other; the template holds none; a host mount made
/// after the template under a shared mount reaches new supervisors through propagation; a
/// mount the template cannot see (under a private mount) makes it stale, and it is made
/// again (never twice); a deleted template is made again; `system reset` removes it.
#[test]
fn supervisors_copy_a_template_mount_namespace_without_pins() {
    use std::os::unix::fs::MetadataExt;
    let env = Env::new();
    let mf = &env.mf;
    let dir = mf.dir.path();
    // Before the template: a shared mount and a private one of the test's.
    let mut mounted = Mounted(Vec::new());
    mounted.bind_self(&dir.join("shared"), nix::mount::MsFlags::MS_SHARED);
    mounted.bind_self(&dir.join("priv"), nix::mount::MsFlags::MS_PRIVATE);
    // Other netns pins in the host's table.
    let tag = format!("mft-tpl-{}", std::process::id());
    let mut pins = Pins(Vec::new());
    for i in 0..5 {
        let name = format!("{tag}-{i}");
        pins.0
            .push(netns::nsfs::create(Path::new("/run/netns"), &name).unwrap());
    }
    assert_eq!(common::leaks::template_mounts(mf), Vec::<String>::new());

    let first = env.sleeper();
    assert_eq!(
        common::leaks::template_mounts(mf).len(),
        2,
        "the template's dir and pin"
    );
    let sup1 = env.supervisor_pid(&first).unwrap().to_string();
    assert_eq!(mount_lines(&sup1, &format!("mfg-{first} ")).len(), 1);
    assert_eq!(mount_lines(&sup1, &tag), Vec::<String>::new());
    assert_eq!(mount_lines(&sup1, "/run/netns "), Vec::<String>::new());
    let own = mf.run_root.join("mntns").display().to_string();
    assert_eq!(mount_lines(&sup1, &own), Vec::<String>::new());
    // The template itself: no pin, no pin dir, no template dir.
    let pin = mf.run_root.join("mntns/ns");
    let table = template_table(mf);
    assert!(table.lines().count() > 1, "{table}");
    for l in table.lines() {
        assert!(
            !l.contains("/run/netns") && !l.contains(&own) && !l.contains(&first),
            "in the template: {l}"
        );
    }
    let ino = template_ino(mf);

    // A host mount made after the template, under a shared mount: propagated. (And one
    // under the private mount, which the task does not use: the template stays.)
    mounted.tmpfs(&dir.join("shared/late"));
    let mark = dir.join("priv/mark");
    mounted.tmpfs(&mark);
    let second = env.sleeper();
    let sup2 = env.supervisor_pid(&second).unwrap().to_string();
    assert_eq!(mount_lines(&sup2, "/shared/late ").len(), 1);
    // A copy of the template, not of the host's table (which has the mark).
    assert_eq!(
        mount_lines(&sup2, &format!(" {} ", mark.display())),
        Vec::<String>::new()
    );
    assert_eq!(mount_lines(&sup2, &format!("mfg-{second} ")).len(), 1);
    assert_eq!(
        mount_lines(&sup2, &format!("mfg-{first} ")),
        Vec::<String>::new()
    );
    assert_eq!(mount_lines(&sup2, &tag), Vec::<String>::new());
    assert_eq!(template_ino(mf), ino);
    let table = template_table(mf);
    assert!(
        !table.contains(&format!(" {} ", mark.display())),
        "the template was made again: {table}"
    );
    assert!(table.contains("/shared/late "), "{table}");
    assert_eq!(common::leaks::template_mounts(mf).len(), 2);

    // A host mount made after the template under a private mount does not reach it: a
    // task whose host volume is there finds the template stale, which is made again.
    let vol = dir.join("priv/vol");
    mounted.tmpfs(&vol);
    assert!(!template_table(mf).contains(&format!(" {} ", vol.display())));
    std::fs::write(vol.join("in"), "on the late tmpfs\n").unwrap();
    let td = env.taskdef(
        "latevol",
        &format!(
            r#"{{"family":"latevol","networkMode":"awsvpc","memory":"512",
            "volumes":[{{"name":"h","host":{{"sourcePath":"{}"}}}}],
            "containerDefinitions":[{{"name":"app","image":"{BUSYBOX}",
              "mountPoints":[{{"sourceVolume":"h","containerPath":"/mnt/h"}}],
              "command":["cat","/mnt/h/in"]}}]}}"#,
            vol.display()
        ),
    );
    let out = env.run(&["run-task", "--task-definition", &td, "--launch-type", "EC2"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("app | on the late tmpfs"), "{text}");
    assert!(
        template_table(mf).contains(&format!(" {} ", vol.display())),
        "the stale template was made again"
    );
    assert_eq!(common::leaks::template_mounts(mf).len(), 2);

    // Deleted (unpinned, its file gone): made again at the next launch.
    nix::mount::umount2(&pin, nix::mount::MntFlags::MNT_DETACH).unwrap();
    std::fs::remove_file(&pin).unwrap();
    let out = env.run(&["run", BUSYBOX, "--", "true"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(common::leaks::template_mounts(mf).len(), 2);
    assert!(std::fs::metadata(&pin).unwrap().ino() != 0);

    env.stop(&first);
    env.stop(&second);
    let out = env.run(&["system", "reset", "--force"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(common::leaks::template_mounts(mf), Vec::<String>::new());
    assert!(!mf.run_root.join("mntns").exists());
}
