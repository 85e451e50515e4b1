//! Real-kernel tests of task networking (root): namespaces, veths, bridge, nftables.
//! Each test owns a bridge `mfgt<hex>`, a /24 of 10.95/16 and its own run root; a Drop
//! guard resets all of it even when the test panics. 10.95/16 is apart from the product's
//! default 10.94.0.0/16: a box where minifargate already ran tasks on its default bridge
//! keeps that bridge's table (`minifargate_mfg0`), which masquerades 10.94/16 (issue 54).
//! Traffic goes only to loopback and to namespaces these tests create.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use netns::{
    Error, Network, NetworkConfig, NetworkMode, PortError, PortMapping, Protocol, TaskSpec, nsfs,
};

static NEXT_OCTET: AtomicU8 = AtomicU8::new(0);

struct Fixture {
    net: Network,
    _root: tempfile::TempDir,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // The tests of a lost state make a task "lost" the state no longer knows (so
        // `reset` would not find it): torn down by name, also when the test failed first.
        let _ = self.net.teardown("lost");
        if let Err(e) = self.net.reset() {
            eprintln!("fixture cleanup: {e}");
        }
    }
}

fn config(root: &Path) -> NetworkConfig {
    let bridge = format!("mfgt{:06x}", fastrand::u32(..0x100_0000));
    // A distinct /24 per test in this process; the start is random so two test runs at
    // once are unlikely to pick the same one.
    if NEXT_OCTET.load(Ordering::SeqCst) == 0 {
        let _ = NEXT_OCTET.compare_exchange(
            0,
            fastrand::u8(1..=200),
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
    }
    let octet = NEXT_OCTET.fetch_add(1, Ordering::SeqCst);
    NetworkConfig {
        run_root: root.into(),
        netns_prefix: bridge.clone(),
        bridge,
        subnet: format!("10.95.{octet}.0/24").parse().unwrap(),
        ..NetworkConfig::default()
    }
}

fn fixture_with(f: impl FnOnce(&mut NetworkConfig)) -> Fixture {
    let root = tempfile::tempdir().unwrap();
    let mut cfg = config(root.path());
    f(&mut cfg);
    Fixture {
        net: Network::open(cfg).unwrap(),
        _root: root,
    }
}

fn fixture() -> Fixture {
    fixture_with(|_| {})
}

fn awsvpc() -> TaskSpec {
    TaskSpec::new(NetworkMode::Awsvpc)
}

/// Serves `n` connections on `l`, answering each with the peer address it saw.
fn peer_echo(l: TcpListener, n: usize) -> JoinHandle<Vec<SocketAddr>> {
    std::thread::spawn(move || {
        (0..n)
            .map(|_| {
                let (mut s, peer) = l.accept().unwrap();
                s.write_all(peer.ip().to_string().as_bytes()).unwrap();
                peer
            })
            .collect()
    })
}

fn listen_in(ns: &Path, addr: SocketAddrV4) -> TcpListener {
    nsfs::in_netns(ns, || TcpListener::bind(addr))
        .unwrap()
        .unwrap()
}

fn ask(stream: std::io::Result<TcpStream>) -> String {
    let mut s = stream.unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn connect_from(ns: &Path, addr: SocketAddrV4) -> std::io::Result<TcpStream> {
    nsfs::in_netns(ns, || {
        TcpStream::connect_timeout(&addr.into(), Duration::from_secs(2))
    })
    .unwrap()
}

/// A free port below the kernel's ephemeral range (32768+), so that no outgoing
/// connection of a test running in parallel can take it between check and use.
fn free_port() -> u16 {
    loop {
        let p = fastrand::u16(20000..30000);
        if TcpListener::bind(("0.0.0.0", p)).is_ok() && UdpSocket::bind(("0.0.0.0", p)).is_ok() {
            return p;
        }
    }
}

/// Kills a child process (by its PID, via `Child::kill`) when dropped.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn nft_table_exists(table: &str) -> bool {
    Command::new("nft")
        .args(["list", "table", "ip", table])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// The rules of our table, none of them a task's: per protocol a DNAT in prerouting and
/// one in output, and three masquerades in postrouting (netns::nft::create_table_script).
const TABLE_RULES: usize = 7;

/// `nft -j list table ip <table>`: the table's objects (maps, chains, rules).
fn nft_json(table: &str) -> Vec<serde_json::Value> {
    let out = Command::new("nft")
        .args(["-j", "list", "table", "ip", table])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["nftables"].as_array().unwrap().clone()
}

/// What a user checks once the last task is gone: the table is still there (it stays
/// until `reset`, as the bridge does) and holds nothing of any task: no map element, no
/// rule but the table's own.
fn assert_table_holds_no_task(table: &str) {
    let objects = nft_json(table);
    for m in objects.iter().filter_map(|o| o.get("map")) {
        assert!(
            m.get("elem").is_none(),
            "elements left in map {} of {table}: {}",
            m["name"],
            m["elem"]
        );
    }
    let rules: Vec<_> = objects.iter().filter_map(|o| o.get("rule")).collect();
    assert_eq!(rules.len(), TABLE_RULES, "rules of {table}: {rules:#?}");
}

/// Adds the element `host_port : ip . 80` to our tcp map behind the crate's back (what a
/// withdrawal that failed would leave).
fn nft_add_tcp_element(table: &str, host_port: u16, ip: Ipv4Addr) {
    let st = Command::new("nft")
        .args([
            "add",
            "element",
            "ip",
            table,
            "tcp_ports",
            &format!("{{ {host_port} : {ip} . 80 }}"),
        ])
        .status()
        .unwrap();
    assert!(st.success());
}

/// Asserts nothing of `task` is left: netns file, veth, lease, files. The kernel frees
/// the veth with the namespace asynchronously, so that part is polled (up to 3 s).
fn assert_gone(f: &Fixture, task: &str) {
    let ns = f.net.netns_path(task);
    assert!(!ns.exists(), "netns {} left behind", ns.display());
    let veth = f.net.veth_name(task);
    let start = Instant::now();
    while netns::link_exists(&veth).unwrap() {
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "veth {veth} left behind"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    f.net.reap_released().unwrap();
    assert!(
        !f.net.tasks().unwrap().contains(&task.to_string()),
        "{task} still recorded"
    );
    assert!(
        !f.net.releasing().unwrap().contains(&task.to_string()),
        "lease of {task} left behind"
    );
    assert!(
        !f.net.config().run_root.join("tasks").join(task).exists(),
        "files of {task} left behind"
    );
}

#[test]
fn two_tasks_get_different_ips_and_talk_over_tcp() {
    let f = fixture();
    let a = f.net.setup_task("a", &awsvpc()).unwrap();
    let b = f.net.setup_task("b", &awsvpc()).unwrap();
    let (ipa, ipb) = (a.ip.unwrap(), b.ip.unwrap());
    assert_ne!(ipa, ipb);
    let subnet = f.net.config().subnet;
    assert!(subnet.contains(ipa) && subnet.contains(ipb));
    assert_eq!(a.gateway, Some(subnet.gateway()));
    assert_eq!(
        a.netns_path.as_deref(),
        Some(f.net.netns_path("a").as_path())
    );
    assert!(f.net.netns_path("a").starts_with("/run/netns"));

    let ns_a = a.netns_path.clone().unwrap();
    let ns_b = b.netns_path.clone().unwrap();
    let mut links = netns::links_in(&ns_a).unwrap();
    links.sort();
    assert_eq!(links, ["eth0", "lo"]);

    // The host end of each veth is a bridge port without an IPv6 address (no link-local
    // address or route of its own in the host's table); the task's eth0 has none either (IPv4 only, nothing
    // sent to IPv6 multicast groups that the bridge floods to every task), `lo` keeps ::1.
    let ipv6_addrs = |netns: Option<&Path>, dev: &str| {
        let mut cmd = std::process::Command::new("ip");
        if let Some(ns) = netns {
            cmd.args(["-n", ns.file_name().unwrap().to_str().unwrap()]);
        }
        let out = cmd
            .args(["-6", "-o", "addr", "show", "dev", dev])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let veth = f.net.veth_name("a");
    assert_eq!(
        std::fs::read_to_string(format!("/proc/sys/net/ipv6/conf/{veth}/addr_gen_mode"))
            .unwrap()
            .trim(),
        "1",
        "host end {veth} makes no IPv6 address"
    );
    let host_routes = std::process::Command::new("ip")
        .args(["-6", "route", "show", "table", "all", "dev", &veth])
        .output()
        .unwrap();
    let host_routes = String::from_utf8(host_routes.stdout).unwrap();
    assert!(
        !host_routes.contains("fe80"),
        "no link-local route for {veth}: {host_routes}"
    );
    assert_eq!(
        ipv6_addrs(None, &veth),
        "",
        "host end {veth} has no IPv6 address"
    );
    assert_eq!(
        ipv6_addrs(Some(&ns_a), "eth0"),
        "",
        "the task's eth0 has no IPv6 address"
    );
    assert!(
        ipv6_addrs(Some(&ns_a), "lo").contains("::1/128"),
        "the task's lo keeps ::1"
    );

    let server = peer_echo(
        listen_in(&ns_b, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 8080)),
        1,
    );
    let seen = ask(connect_from(&ns_a, SocketAddrV4::new(ipb, 8080)));
    assert_eq!(
        seen,
        ipa.to_string(),
        "b sees a's own address (no NAT between tasks)"
    );
    server.join().unwrap();

    // hosts file: localhost and the Fargate-style own name.
    let hosts = std::fs::read_to_string(a.hosts_file.as_ref().unwrap()).unwrap();
    let name = a.private_dns_name.clone().unwrap();
    assert!(hosts.contains("127.0.0.1\tlocalhost"));
    assert!(hosts.contains(&format!("{ipa}\t{name}")), "{hosts}");
    assert!(
        std::fs::read_to_string(a.resolv_conf.as_ref().unwrap())
            .unwrap()
            .contains("nameserver")
    );

    f.net.teardown("a").unwrap();
    f.net.teardown("b").unwrap();
    assert_gone(&f, "a");
    assert_gone(&f, "b");
    assert_table_holds_no_task(f.net.nft_table());
    f.net.teardown("a").unwrap(); // a second teardown is a no-op
    // `system reset` takes the table with the bridge.
    f.net.reset().unwrap();
    assert!(!nft_table_exists(f.net.nft_table()), "table left by reset");
    assert!(!netns::link_exists(&f.net.config().bridge).unwrap());
}

/// The state lost under running tasks (their run root removed): a teardown finds no
/// record, and still removes each task's namespace and veth, by name, without making the
/// lost state again; a task set up after the loss (new state, no record of the first)
/// does not keep the first's teardown from finding what it left.
#[test]
fn a_task_whose_state_was_lost_is_torn_down_by_name() {
    let f = fixture();
    let root = f.net.config().run_root.clone();
    f.net.setup_task("lost", &awsvpc()).unwrap();
    f.net.setup_task("lost2", &awsvpc()).unwrap();
    std::fs::remove_dir_all(&root).unwrap();
    f.net.teardown("lost").unwrap();
    assert!(!root.exists(), "the lost state was made again");
    assert_gone(&f, "lost");
    f.net.setup_task("other", &awsvpc()).unwrap();
    f.net.teardown("lost2").unwrap();
    assert_gone(&f, "lost2");
    f.net.teardown("other").unwrap();
    assert_gone(&f, "other");
}

/// A lost task's published ports (its state gone with its run root) go with its teardown
/// by name: the port map elements that send a host port to its address, found by the
/// address its namespace holds; another task's elements (lost too, still running) stay
/// until its own teardown.
#[test]
fn a_lost_tasks_port_map_elements_go_with_its_teardown_by_name() {
    let f = fixture();
    let root = f.net.config().run_root.clone();
    let table = f.net.nft_table().to_string();
    let (tcp, udp, other) = loop {
        let p = (free_port(), free_port(), free_port());
        if p.0 != p.1 && p.1 != p.2 && p.0 != p.2 {
            break p;
        }
    };
    let lost = TaskSpec {
        port_mappings: vec![
            PortMapping::tcp(tcp),
            PortMapping {
                protocol: Protocol::Udp,
                ..PortMapping::tcp(udp)
            },
        ],
        ..awsvpc()
    };
    let kept = TaskSpec {
        port_mappings: vec![PortMapping::tcp(other)],
        ..awsvpc()
    };
    let lost_ip = f.net.setup_task("lost", &lost).unwrap().ip.unwrap();
    let kept_ip = f.net.setup_task("kept", &kept).unwrap().ip.unwrap();
    let listing = nft_list_table(&table);
    for want in [
        format!("{tcp} : {lost_ip} . {tcp}"),
        format!("{udp} : {lost_ip} . {udp}"),
        format!("{other} : {kept_ip} . {other}"),
    ] {
        assert!(listing.contains(&want), "{want} not in {listing}");
    }
    std::fs::remove_dir_all(&root).unwrap();
    f.net.teardown("lost").unwrap();
    assert!(!root.exists(), "the lost state was made again");
    let listing = nft_list_table(&table);
    assert!(
        !listing.contains(&lost_ip.to_string()),
        "an element of the lost task's address {lost_ip} left: {listing}"
    );
    for port in [tcp, udp] {
        assert!(
            !listing.contains(&format!("{port} :")),
            "the lost task's host port {port} left: {listing}"
        );
    }
    assert!(
        listing.contains(&format!("{other} : {kept_ip} . {other}")),
        "the other task's element went: {listing}"
    );
    f.net.teardown("kept").unwrap();
    assert!(
        !nft_list_table(&table).contains(&kept_ip.to_string()),
        "the other task's element left after its own teardown"
    );
    assert_table_holds_no_task(&table);
    assert_gone(&f, "lost");
    assert_gone(&f, "kept");
}

/// The next task after the state was lost (the run root removed while tasks ran) makes
/// the table again (the state has no word of it), keeping the published ports of the
/// tasks that still run without a record: their port map elements are in the new table.
#[test]
fn a_table_made_again_after_the_state_was_lost_keeps_the_lost_tasks_ports() {
    let f = fixture();
    let root = f.net.config().run_root.clone();
    let table = f.net.nft_table().to_string();
    let (tcp, udp, other) = loop {
        let p = (free_port(), free_port(), free_port());
        if p.0 != p.1 && p.1 != p.2 && p.0 != p.2 {
            break p;
        }
    };
    let lost = TaskSpec {
        port_mappings: vec![
            PortMapping::tcp(tcp),
            PortMapping {
                protocol: Protocol::Udp,
                ..PortMapping::tcp(udp)
            },
        ],
        ..awsvpc()
    };
    // The first address is free again when the state goes, so the next task takes it,
    // not the lost task's.
    f.net.setup_task("gap", &awsvpc()).unwrap();
    let lost_ip = f.net.setup_task("lost", &lost).unwrap().ip.unwrap();
    f.net.teardown("gap").unwrap();
    std::fs::remove_dir_all(&root).unwrap();
    let next = TaskSpec {
        port_mappings: vec![PortMapping::tcp(other)],
        ..awsvpc()
    };
    let next_ip = f.net.setup_task("next", &next).unwrap().ip.unwrap();
    assert_ne!(next_ip, lost_ip);
    let listing = nft_list_table(&table);
    for want in [
        format!("{tcp} : {lost_ip} . {tcp}"),
        format!("{udp} : {lost_ip} . {udp}"),
        format!("{other} : {next_ip} . {other}"),
    ] {
        assert!(listing.contains(&want), "{want} not in {listing}");
    }
    f.net.teardown("next").unwrap();
    f.net.teardown("lost").unwrap();
    assert_table_holds_no_task(&table);
    assert_gone(&f, "gap");
    assert_gone(&f, "lost");
    assert_gone(&f, "next");
}

#[test]
fn metadata_address_is_private_to_each_task() {
    let f = fixture();
    let a = f.net.setup_task("a", &awsvpc()).unwrap();
    let b = f.net.setup_task("b", &awsvpc()).unwrap();
    let (ns_a, ns_b) = (a.netns_path.unwrap(), b.netns_path.unwrap());
    let md = SocketAddrV4::new(netns::METADATA_ADDRESS, 80);
    let server = peer_echo(listen_in(&ns_a, md), 1);
    // Inside a, 169.254.170.2 is a's own.
    assert_eq!(
        ask(connect_from(&ns_a, md)),
        netns::METADATA_ADDRESS.to_string()
    );
    server.join().unwrap();
    // b has its own 169.254.170.2 with nothing listening: refused, never reaching a.
    let _still = listen_in(&ns_a, SocketAddrV4::new(netns::METADATA_ADDRESS, 81));
    let err = connect_from(&ns_b, SocketAddrV4::new(netns::METADATA_ADDRESS, 81)).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
}

/// The number of connections the kernel tracks in the namespace at `ns`: stays 0 unless
/// something (a nat chain, a ct expression) turned connection tracking on there.
fn conntrack_count(ns: &Path) -> u64 {
    nsfs::in_netns(ns, || {
        std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_count")
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    })
    .unwrap()
}

/// Like [`connect_from`], from a socket bound to `local` first.
fn connect_bound(ns: &Path, local: Ipv4Addr, addr: SocketAddrV4) -> std::io::Result<TcpStream> {
    nsfs::in_netns(ns, || {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        s.bind(&SocketAddrV4::new(local, 0).into())?;
        s.connect_timeout(&addr.into(), Duration::from_secs(2))?;
        Ok(s.into())
    })
    .unwrap()
}

#[test]
fn metadata_port_80_is_rewritten_without_connection_tracking() {
    let f = fixture();
    let t = f.net.setup_task("t", &awsvpc()).unwrap();
    let ns = t.netns_path.unwrap();
    let ip = t.ip.unwrap();
    netns::redirect_metadata_port(&ns).unwrap();
    let listen = SocketAddrV4::new(netns::METADATA_ADDRESS, netns::METADATA_LISTEN_PORT);
    let md = SocketAddrV4::new(netns::METADATA_ADDRESS, 80);
    // The endpoint on 51679 and the task's own server on 0.0.0.0:80, side by side.
    let endpoint = listen_in(&ns, listen);
    let own = listen_in(&ns, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 80));
    let endpoint = std::thread::spawn(move || {
        for _ in 0..3 {
            let (mut s, peer) = endpoint.accept().unwrap();
            s.write_all(format!("endpoint {peer}").as_bytes()).unwrap();
        }
        endpoint
    });
    let own = std::thread::spawn(move || {
        for _ in 0..2 {
            let (mut s, _) = own.accept().unwrap();
            s.write_all(b"own").unwrap();
        }
    });
    let got = ask(connect_from(&ns, md));
    assert!(got.starts_with("endpoint 169.254.170.2:"), "{got}");
    // A client with another local address (eth0's, or 127.0.0.1) reaches it too: the
    // answers are rewritten by their source, whatever their destination.
    for local in [ip, Ipv4Addr::LOCALHOST] {
        let got = ask(connect_bound(&ns, local, md));
        assert!(got.starts_with(&format!("endpoint {local}:")), "{got}");
    }
    // The task's server answers on port 80 of its other addresses.
    assert_eq!(ask(connect_from(&ns, SocketAddrV4::new(ip, 80))), "own");
    assert_eq!(
        ask(connect_from(
            &ns,
            SocketAddrV4::new(Ipv4Addr::LOCALHOST, 80)
        )),
        "own"
    );
    let _endpoint = endpoint.join().unwrap();
    own.join().unwrap();
    // The documented price of a stateless rewrite: the listener on 51679 answers as
    // port 80, so a direct connection to 51679 never completes.
    let direct = nsfs::in_netns(&ns, || {
        TcpStream::connect_timeout(&listen.into(), Duration::from_millis(500))
    })
    .unwrap();
    assert!(direct.is_err(), "{direct:?}");
    assert_eq!(
        conntrack_count(&ns),
        0,
        "no connection tracked in the task namespace"
    );
    let out = Command::new("nsenter")
        .arg(format!("--net={}", ns.display()))
        .args(["nft", "list", "ruleset"])
        .output()
        .unwrap();
    let ruleset = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(ruleset.contains("type filter hook output"), "{ruleset}");
    assert!(!ruleset.contains("nat"), "{ruleset}");
}

#[test]
fn two_processes_in_one_task_talk_over_localhost() {
    let f = fixture();
    let t = f.net.setup_task("t", &awsvpc()).unwrap();
    let ns = t.netns_path.unwrap();
    let net_arg = format!("--net={}", ns.display());
    let mut server = KillOnDrop(
        Command::new("nsenter")
            .args([net_arg.as_str(), "busybox", "nc", "-l", "-p", "7000"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("nsenter and busybox are installed by scripts/test"),
    );
    let start = Instant::now();
    loop {
        let mut client = Command::new("nsenter")
            .args([net_arg.as_str(), "busybox", "nc", "127.0.0.1", "7000"])
            .stdin(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // The client exits at once (broken pipe here) while the server is not up yet.
        let _ = client
            .stdin
            .take()
            .unwrap()
            .write_all(b"hello from container two\n");
        if client.wait().unwrap().success() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "server never listened"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut out = String::new();
    server
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert_eq!(out, "hello from container two\n");
    // The host's loopback is a different one: nothing listens on 7000 there.
    assert!(
        TcpStream::connect_timeout(
            &"127.0.0.1:7000".parse().unwrap(),
            Duration::from_millis(500)
        )
        .is_err()
    );
}

#[test]
fn host_reaches_published_ports_via_loopback_and_bridge_address() {
    let f = fixture();
    let port = free_port();
    let spec = TaskSpec {
        port_mappings: vec![PortMapping::tcp(port)],
        ..awsvpc()
    };
    let t = f.net.setup_task("web", &spec).unwrap();
    assert_eq!(t.bindings.len(), 1);
    assert_eq!(
        (t.bindings[0].host_port, t.bindings[0].container_port),
        (port, port)
    );
    let ns = t.netns_path.clone().unwrap();
    let server = peer_echo(
        listen_in(&ns, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)),
        4,
    );
    let gw = t.gateway.unwrap();
    // Via 127.0.0.1 (DNAT + route_localnet + masquerade): the task sees the gateway.
    assert_eq!(
        ask(TcpStream::connect((Ipv4Addr::LOCALHOST, port))),
        gw.to_string()
    );
    // Via the bridge address.
    assert_eq!(ask(TcpStream::connect((gw, port))), gw.to_string());
    // And the task address directly.
    assert_eq!(
        ask(TcpStream::connect((t.ip.unwrap(), port))),
        gw.to_string()
    );
    // Another task reaches it through the host's published port too (hairpin NAT).
    let other = f.net.setup_task("other", &awsvpc()).unwrap();
    let via_host = connect_from(
        other.netns_path.as_ref().unwrap(),
        SocketAddrV4::new(gw, port),
    );
    assert_eq!(ask(via_host), gw.to_string());
    server.join().unwrap();

    // Bridge mode: container port 80 behind a dynamic host port, tcp and udp.
    let spec = TaskSpec {
        mode: NetworkMode::Bridge,
        port_mappings: vec![
            PortMapping::tcp(80),
            PortMapping {
                container_port: 53,
                container_port_end: None,
                host_port: None,
                protocol: Protocol::Udp,
            },
        ],
        ..awsvpc()
    };
    let br = f.net.setup_task("bridged", &spec).unwrap();
    let ns = br.netns_path.clone().unwrap();
    let tcp = br
        .bindings
        .iter()
        .find(|b| b.protocol == Protocol::Tcp)
        .unwrap();
    let udp = br
        .bindings
        .iter()
        .find(|b| b.protocol == Protocol::Udp)
        .unwrap();
    assert!(
        netns::DYNAMIC_PORTS.contains(&tcp.host_port)
            && netns::DYNAMIC_PORTS.contains(&udp.host_port)
    );
    let server = peer_echo(
        listen_in(&ns, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 80)),
        1,
    );
    assert_eq!(
        ask(TcpStream::connect((Ipv4Addr::LOCALHOST, tcp.host_port))),
        gw.to_string()
    );
    server.join().unwrap();
    let usock = nsfs::in_netns(&ns, || UdpSocket::bind("0.0.0.0:53"))
        .unwrap()
        .unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .send_to(b"ping", (Ipv4Addr::LOCALHOST, udp.host_port))
        .unwrap();
    usock
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 16];
    let (n, from) = usock.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"ping");
    usock.send_to(b"pong", from).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let n = client.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"pong");

    f.net.teardown("bridged").unwrap();
    // Withdrawn while other tasks still hold the table: the old host port now reaches a
    // host process listening there, not the (gone) task.
    let host = TcpListener::bind((Ipv4Addr::UNSPECIFIED, tcp.host_port)).unwrap();
    let c = TcpStream::connect_timeout(
        &SocketAddr::from((Ipv4Addr::LOCALHOST, tcp.host_port)),
        Duration::from_secs(2),
    )
    .expect("the withdrawn port reaches the host listener");
    let (_, peer) = host.accept().unwrap();
    assert_eq!(peer, c.local_addr().unwrap());
}

#[test]
fn dynamic_host_ports_are_unique() {
    let f = fixture();
    let spec = TaskSpec {
        mode: NetworkMode::Bridge,
        port_mappings: vec![
            PortMapping::tcp(80),
            PortMapping {
                container_port: 443,
                container_port_end: None,
                host_port: Some(0),
                protocol: Protocol::Tcp,
            },
            PortMapping {
                container_port: 9000,
                container_port_end: Some(9003),
                host_port: None,
                protocol: Protocol::Tcp,
            },
        ],
        ..awsvpc()
    };
    let mut seen = HashSet::new();
    for i in 0..6 {
        let t = f.net.setup_task(&format!("c{i}"), &spec).unwrap();
        assert_eq!(t.bindings.len(), 6);
        for b in &t.bindings {
            assert!(netns::DYNAMIC_PORTS.contains(&b.host_port));
            assert!(
                seen.insert(b.host_port),
                "host port {} handed out twice",
                b.host_port
            );
        }
    }
    assert_eq!(seen.len(), 36);
}

#[test]
fn port_conflicts_are_refused_cleanly() {
    let f = fixture();
    // A host process holds the port.
    let port = free_port();
    let holder = TcpListener::bind(("0.0.0.0", port)).unwrap();
    let spec = TaskSpec {
        port_mappings: vec![PortMapping::tcp(port)],
        ..awsvpc()
    };
    // Bridge mode: refused, as a port conflict fails placement on ECS.
    let bridge = TaskSpec {
        port_mappings: vec![PortMapping {
            host_port: Some(port),
            ..PortMapping::tcp(port)
        }],
        ..TaskSpec::new(NetworkMode::Bridge)
    };
    let err = f.net.setup_task("x", &bridge).unwrap_err();
    assert!(
        matches!(err, Error::Ports { source: PortError::InUse { host_port, .. }, .. } if host_port == port),
        "{err}"
    );
    assert!(format!("{:#}", std::error::Error::source(&err).unwrap()).contains("already in use"));
    assert_gone(&f, "x");
    // awsvpc: the task is set up, the mapping left unpublished.
    let tn = f.net.setup_task("y", &spec).unwrap();
    assert!(tn.bindings.is_empty(), "{tn:?}");
    assert_eq!(tn.unpublished.len(), 1, "{tn:?}");
    assert!(
        tn.unpublished[0].reason.contains("already in use"),
        "{tn:?}"
    );
    f.net.teardown("y").unwrap();
    assert_gone(&f, "y");
    drop(holder);

    // Another task holds it.
    let first = f.net.setup_task("first", &spec).unwrap();
    assert_eq!(
        first.bindings.len(),
        1,
        "the first task publishes it: {first:?}"
    );
    let err = f.net.setup_task("second", &bridge).unwrap_err();
    assert!(
        matches!(&err, Error::Ports { source: PortError::TakenByTask { task, .. }, .. } if task == "first"),
        "{err}"
    );
    assert_gone(&f, "second");
    let tn = f.net.setup_task("fourth", &spec).unwrap();
    assert!(
        tn.unpublished[0]
            .reason
            .contains("already published by task first"),
        "{tn:?}"
    );
    f.net.teardown("fourth").unwrap();
    assert_gone(&f, "fourth");
    // An awsvpc hostPort different from containerPort is refused too.
    let bad = TaskSpec {
        port_mappings: vec![PortMapping {
            host_port: Some(8081),
            ..PortMapping::tcp(8080)
        }],
        ..awsvpc()
    };
    assert!(matches!(
        f.net.setup_task("third", &bad),
        Err(Error::Ports {
            source: PortError::AwsvpcHostPort { .. },
            ..
        })
    ));
    assert_gone(&f, "third");
    // The same id twice is refused and the first is untouched.
    assert!(matches!(
        f.net.setup_task("first", &awsvpc()),
        Err(Error::TaskExists { .. })
    ));
    assert!(f.net.netns_path("first").exists());
}

/// An "outside host": a namespace on its own /30, linked to the host by a veth; it has
/// no route to the task subnet, as a real server on the internet would not.
struct Outside {
    ns: PathBuf,
    host_if: String,
    host_ip: Ipv4Addr,
    ip: Ipv4Addr,
}

impl Outside {
    fn new(tag: &str) -> Self {
        let host_if = format!("mfo{:06x}", fastrand::u32(..0x100_0000));
        let n = fastrand::u8(0..63) * 4;
        let host_ip = Ipv4Addr::new(10, 96, fastrand::u8(..), n + 1);
        let ip = Ipv4Addr::from(u32::from(host_ip) + 1);
        let ns = nsfs::create(Path::new("/run/netns"), &format!("{host_if}-{tag}")).unwrap();
        let o = Outside {
            ns,
            host_if,
            host_ip,
            ip,
        };
        netns::test_link_outside(&o.host_if, host_ip, &o.ns, ip, 30).unwrap();
        o
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        // The pair dies with the namespace (the kernel frees it asynchronously).
        let _ = nsfs::remove(&self.ns);
        let start = Instant::now();
        while netns::link_exists(&self.host_if).unwrap_or(false)
            && start.elapsed() < Duration::from_secs(2)
        {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

#[test]
fn egress_is_masqueraded_to_the_host_address() {
    let f = fixture();
    let out = Outside::new("egress");
    let t = f.net.setup_task("client", &awsvpc()).unwrap();
    assert!(t.egress);
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
            .unwrap()
            .trim(),
        "1"
    );
    let server = peer_echo(listen_in(&out.ns, SocketAddrV4::new(out.ip, 9000)), 1);
    let seen = ask(connect_from(
        t.netns_path.as_ref().unwrap(),
        SocketAddrV4::new(out.ip, 9000),
    ));
    assert_eq!(
        seen,
        out.host_ip.to_string(),
        "the outside host sees the host's address, not {:?}",
        t.ip
    );
    server.join().unwrap();
}

#[test]
fn without_nftables_tasks_run_without_egress_and_ports_are_refused() {
    let f = fixture_with(|c| c.disable_nft = true);
    let out = Outside::new("noegress");
    let t = f.net.setup_task("plain", &awsvpc()).unwrap();
    assert!(!t.egress);
    assert!(!nft_table_exists(f.net.nft_table()));
    let _l = listen_in(&out.ns, SocketAddrV4::new(out.ip, 9000));
    assert!(
        connect_from(
            t.netns_path.as_ref().unwrap(),
            SocketAddrV4::new(out.ip, 9000)
        )
        .is_err()
    );
    let spec = TaskSpec {
        port_mappings: vec![PortMapping::tcp(free_port())],
        ..awsvpc()
    };
    let err = f.net.setup_task("ported", &spec).unwrap_err();
    assert!(matches!(err, Error::NftMissing { .. }), "{err}");
    assert!(err.to_string().contains("install the nftables package"));
    assert_gone(&f, "ported");
}

#[test]
fn none_and_host_modes() {
    let f = fixture();
    let n = f
        .net
        .setup_task("lonely", &TaskSpec::new(NetworkMode::None))
        .unwrap();
    assert_eq!(n.ip, None);
    assert_eq!(
        netns::links_in(n.netns_path.as_ref().unwrap()).unwrap(),
        ["lo"]
    );
    let l = listen_in(
        n.netns_path.as_ref().unwrap(),
        SocketAddrV4::new(netns::METADATA_ADDRESS, 80),
    );
    drop(l);
    let h = f
        .net
        .setup_task(
            "hosty",
            &TaskSpec {
                port_mappings: vec![PortMapping::tcp(free_port())],
                ..TaskSpec::new(NetworkMode::Host)
            },
        )
        .unwrap();
    assert_eq!(h.netns_path, None);
    assert_eq!(h.bindings.len(), 1);
    f.net.teardown("lonely").unwrap();
    f.net.teardown("hosty").unwrap();
    assert_gone(&f, "lonely");
}

#[test]
fn fifty_concurrent_allocations_get_fifty_unique_ips() {
    let f = fixture();
    let cfg = f.net.config().clone();
    let ips: Vec<Ipv4Addr> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..50)
            .map(|i| {
                let cfg = cfg.clone();
                // A Network per thread, as separate run-task processes would have.
                s.spawn(move || {
                    Network::open(cfg)
                        .unwrap()
                        .setup_task(&format!("p{i}"), &awsvpc())
                        .unwrap()
                        .ip
                        .unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let unique: HashSet<_> = ips.iter().collect();
    assert_eq!(unique.len(), 50, "{ips:?}");
    assert_eq!(f.net.tasks().unwrap().len(), 50);
    std::thread::scope(|s| {
        for i in 0..50 {
            let net = &f.net;
            s.spawn(move || net.teardown(&format!("p{i}")).unwrap());
        }
    });
    assert!(f.net.tasks().unwrap().is_empty());
    assert_table_holds_no_task(f.net.nft_table());
}

const CHILD_ENV: &str = "MFG_NETNS_TEST_CHILD";

/// Not a test on its own: the body of the child process `killed_mid_setup_...` starts.
#[test]
#[ignore = "helper: run in a child process by killed_mid_setup_then_gc_leaves_nothing"]
fn child_sets_up_and_hangs() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let v: Vec<&str> = spec.split(',').collect();
    let cfg = NetworkConfig {
        run_root: v[0].into(),
        bridge: v[1].into(),
        netns_prefix: v[1].into(),
        subnet: v[2].parse().unwrap(),
        pause_mid_setup: Some(Duration::from_secs(60)),
        ..NetworkConfig::default()
    };
    let spec = TaskSpec {
        port_mappings: vec![PortMapping::tcp(v[3].parse().unwrap())],
        ..awsvpc()
    };
    Network::open(cfg)
        .unwrap()
        .setup_task("victim", &spec)
        .unwrap();
    unreachable!("the parent kills this process during the pause");
}

#[test]
fn killed_mid_setup_then_gc_leaves_nothing() {
    let f = fixture();
    let cfg = f.net.config();
    let port = free_port();
    let arg = format!(
        "{},{},{},{port}",
        cfg.run_root.display(),
        cfg.bridge,
        cfg.subnet
    );
    let mut child = KillOnDrop(
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child_sets_up_and_hangs",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, arg)
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let veth = f.net.veth_name("victim");
    let start = Instant::now();
    while !netns::link_exists(&veth).unwrap() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "child never got to the veth"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child.0.kill().unwrap(); // SIGKILL
    child.0.wait().unwrap();
    // Half-made: netns, veth, lease, nft table all exist.
    assert!(f.net.netns_path("victim").exists());
    assert!(netns::link_exists(&veth).unwrap());
    assert_eq!(f.net.tasks().unwrap(), ["victim"]);
    assert!(nft_table_exists(f.net.nft_table()));
    // The port is still reserved for the dead task until GC (a bridge task asking for it
    // is refused; an awsvpc one would run with it unpublished).
    let spec = TaskSpec {
        port_mappings: vec![PortMapping {
            host_port: Some(port),
            ..PortMapping::tcp(port)
        }],
        ..TaskSpec::new(NetworkMode::Bridge)
    };
    assert!(matches!(
        f.net.setup_task("other", &spec),
        Err(Error::Ports { .. })
    ));

    assert_eq!(f.net.gc(&["someone-alive"]).unwrap(), ["victim"]);
    assert_gone(&f, "victim");
    // The dead task's port element went with it.
    assert_table_holds_no_task(f.net.nft_table());
    // And the port is free again.
    f.net.setup_task("other", &spec).unwrap();
}

#[test]
fn gc_keeps_live_tasks() {
    let f = fixture();
    f.net.setup_task("alive", &awsvpc()).unwrap();
    f.net.setup_task("dead", &awsvpc()).unwrap();
    assert_eq!(f.net.gc(&["alive"]).unwrap(), ["dead"]);
    assert_gone(&f, "dead");
    assert!(f.net.netns_path("alive").exists());
    assert!(nft_table_exists(f.net.nft_table()));
}

#[test]
fn lease_is_held_while_something_pins_the_namespace() {
    let f = fixture();
    let t = f.net.setup_task("pinned", &awsvpc()).unwrap();
    let ip = t.ip.unwrap();
    // An open namespace file (say, a forgotten `ip netns exec` shell) keeps the
    // namespace, and with it the veth, alive after teardown.
    let pin = nsfs::open(t.netns_path.as_ref().unwrap()).unwrap();
    f.net.teardown("pinned").unwrap();
    assert!(!f.net.netns_path("pinned").exists());
    assert!(netns::link_exists(&f.net.veth_name("pinned")).unwrap());
    assert_eq!(f.net.releasing().unwrap(), ["pinned"]);
    assert!(f.net.leased_ips().unwrap().contains(&ip));
    let next = f.net.setup_task("next", &awsvpc()).unwrap();
    assert_ne!(
        next.ip,
        Some(ip),
        "a pinned task's address is not handed out again"
    );
    drop(pin);
    assert_gone(&f, "pinned");
    assert!(!f.net.leased_ips().unwrap().contains(&ip));
}

/// A task short of an address while the only one is still releasing (the kernel frees a
/// torn-down task's veth asynchronously, slower on a loaded host) waits for it rather than
/// failing with "all addresses are leased" beside an address about to free.
#[test]
fn a_task_short_of_an_address_waits_for_one_being_released() {
    // One task address: network, gateway, task, broadcast.
    let f = fixture_with(|c| c.subnet = netns::Subnet::new(c.subnet.network(), 30).unwrap());
    let old = f.net.setup_task("old", &awsvpc()).unwrap();
    let pin = nsfs::open(old.netns_path.as_ref().unwrap()).unwrap();
    f.net.teardown("old").unwrap();
    assert_eq!(f.net.releasing().unwrap(), ["old"]);
    let unpin = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(300));
        drop(pin);
    });
    let new = f
        .net
        .setup_task("new", &awsvpc())
        .unwrap_or_else(|e| panic!("{e:?}"));
    unpin.join().unwrap();
    assert_eq!(
        new.ip, old.ip,
        "the released address goes to the waiting task"
    );
    assert!(f.net.releasing().unwrap().is_empty());
    f.net.teardown("new").unwrap();
}

#[test]
fn a_failure_late_in_setup_removes_everything_it_made() {
    // An `nft` that creates the table without the tcp port map: the kernel then
    // refuses to publish the port, after the netns, veth and addresses exist.
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("nft");
    std::fs::write(
        &fake,
        "#!/bin/sh\nsed 's/@tcp_ports/@udp_ports/; s/map tcp_ports/map tcp_ports_renamed/' | nft \"$@\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let f = fixture_with(|c| c.nft = Some(fake.clone()));
    let spec = TaskSpec {
        port_mappings: vec![PortMapping::tcp(free_port())],
        ..awsvpc()
    };
    let err = f.net.setup_task("doomed", &spec).unwrap_err();
    let Error::Setup {
        source, cleanup, ..
    } = &err
    else {
        panic!("{err}")
    };
    assert!(matches!(**source, Error::Nft { .. }), "{source}");
    assert!(cleanup.is_empty(), "{err}");
    let text = format!(
        "{}",
        std::error::Error::source(std::error::Error::source(&err).unwrap()).unwrap()
    );
    assert!(
        text.contains("failed to publish ports in table ip"),
        "{text}"
    );
    assert!(
        format!("{:?}", err).contains("NotFound"),
        "the kernel's ENOENT is kept: {err:?}"
    );
    assert_gone(&f, "doomed");
    // The table made for it stays, holding nothing of it; its maps are not the crate's,
    // so the state no longer vouches for it and the next task makes it again.
    assert_table_holds_no_task(f.net.nft_table());
    assert!(
        !f.net.config().run_root.join("state/nft_table").exists(),
        "a table whose maps could not be emptied is not recorded as ours"
    );
}

fn nft_list_table(table: &str) -> String {
    let out = Command::new("nft")
        .args(["list", "table", "ip", table])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn netlink_table_is_the_nft_script_ruleset() {
    // The table is written through netlink; the same ruleset as text lives in
    // nft::create_table_script. Both must list the same, names and subnet aside.
    let ours = fixture();
    let scripted = fixture_with(|c| c.nft = Some(netns::nft::find_nft().expect("nft installed")));
    let spec = TaskSpec {
        port_mappings: vec![PortMapping::tcp(free_port())],
        ..awsvpc()
    };
    let a = ours.net.setup_task("a", &spec).unwrap();
    let b = scripted.net.setup_task("b", &awsvpc()).unwrap();
    let normalise = |f: &Fixture, text: String| {
        let cfg = f.net.config();
        let net = cfg.subnet.network().to_string();
        text.replace(f.net.nft_table(), "TABLE")
            .replace(&cfg.bridge, "BRIDGE")
            .replace(&net[..net.rfind('.').unwrap()], "SUBNET")
    };
    let listed = nft_list_table(ours.net.nft_table());
    // The published port is an element of the tcp map.
    let port = a.bindings[0].host_port;
    assert!(
        listed.contains(&format!("{port} : {} . {port}", a.ip.unwrap())),
        "{listed}"
    );
    ours.net.teardown("a").unwrap();
    let _keep = ours.net.setup_task("keep", &awsvpc()).unwrap();
    assert_eq!(
        normalise(&ours, nft_list_table(ours.net.nft_table())),
        normalise(&scripted, nft_list_table(scripted.net.nft_table()))
    );
    drop(b);
}

/// Writes the state as earlier builds kept it (one `netns.json`) from the current
/// layout, and removes the layout: the run root of a host being upgraded.
fn downgrade_state_to_one_file(root: &Path) {
    let state = root.join("state");
    let mut tasks = serde_json::Map::new();
    for e in std::fs::read_dir(state.join("records")).unwrap() {
        let p = e.unwrap().path();
        let id = p.file_stem().unwrap().to_str().unwrap().to_string();
        let rec: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        tasks.insert(id, rec);
    }
    let old = serde_json::json!({
        "tasks": tasks,
        "nft_table": state.join("nft_table").exists(),
        "last_ip": std::fs::read_to_string(state.join("last_ip")).ok(),
    });
    std::fs::write(
        root.join("netns.json"),
        serde_json::to_vec_pretty(&old).unwrap(),
    )
    .unwrap();
    std::fs::remove_dir_all(&state).unwrap();
}

#[test]
fn a_task_running_across_the_upgrade_keeps_its_lease_and_port() {
    let f = fixture();
    let port = free_port();
    let spec = TaskSpec {
        port_mappings: vec![PortMapping::tcp(port)],
        ..awsvpc()
    };
    let old = f.net.setup_task("old", &spec).unwrap();
    let pinned = f.net.setup_task("pinned", &awsvpc()).unwrap();
    // A releasing task too: something holds its namespace after teardown.
    let pin = nsfs::open(pinned.netns_path.as_ref().unwrap()).unwrap();
    f.net.teardown("pinned").unwrap();
    let root = f.net.config().run_root.clone();
    downgrade_state_to_one_file(&root);

    assert_eq!(
        f.net.tasks_and_releasing().unwrap(),
        (vec!["old".to_string()], vec!["pinned".to_string()])
    );
    assert!(!root.join("netns.json").exists());
    let mut leased = f.net.leased_ips().unwrap();
    leased.sort();
    let mut want = vec![old.ip.unwrap(), pinned.ip.unwrap()];
    want.sort();
    assert_eq!(leased, want);
    let next = f.net.setup_task("next", &awsvpc()).unwrap();
    assert!(
        !want.contains(&next.ip.unwrap()),
        "a lease was handed out twice"
    );
    let thief = TaskSpec {
        mode: NetworkMode::Bridge,
        port_mappings: vec![PortMapping {
            host_port: Some(port),
            ..PortMapping::tcp(port)
        }],
        ..spec.clone()
    };
    let err = f.net.setup_task("thief", &thief).unwrap_err();
    assert!(
        matches!(&err, Error::Ports { source: PortError::TakenByTask { task, .. }, .. } if task == "old"),
        "{err}"
    );
    assert_gone(&f, "thief");

    drop(pin);
    assert_gone(&f, "pinned");
    f.net.teardown("old").unwrap();
    assert_gone(&f, "old");
    assert!(nft_table_exists(f.net.nft_table()), "next still runs");
    f.net.teardown("next").unwrap();
    assert_gone(&f, "next");
    assert_table_holds_no_task(f.net.nft_table());
    assert!(f.net.leased_ips().unwrap().is_empty());
}

#[test]
fn a_lease_and_port_left_by_a_crash_are_handed_out_again() {
    let f = fixture();
    let root = f.net.config().run_root.clone();
    let subnet = f.net.config().subnet;
    let first = Ipv4Addr::from(u32::from(subnet.gateway()) + 1);
    let port = free_port();
    f.net.tasks().unwrap(); // makes the layout
    // A crash between writing the index files and the record of task "ghost".
    std::fs::write(root.join(format!("state/ips/{first}")), "ghost").unwrap();
    std::fs::write(root.join(format!("state/ports/tcp-{port}")), "ghost").unwrap();
    std::fs::write(root.join("state/bridged/ghost"), "").unwrap();
    assert!(f.net.leased_ips().unwrap().is_empty());
    let spec = TaskSpec {
        port_mappings: vec![PortMapping::tcp(port)],
        ..awsvpc()
    };
    let t = f.net.setup_task("t", &spec).unwrap();
    assert_eq!(t.ip, Some(first));
    assert_eq!(t.bindings[0].host_port, port);
    // An element no withdrawal will remove: only the last task's emptying of the maps does.
    nft_add_tcp_element(f.net.nft_table(), free_port(), first);
    f.net.teardown("t").unwrap();
    assert_gone(&f, "t");
    // The stale bridged marker did not make "t" look like it was not the last task.
    assert_table_holds_no_task(f.net.nft_table());
    assert_eq!(f.net.gc(&[]).unwrap(), Vec::<String>::new());
    for sub in ["ips", "ports", "bridged", "releasing", "records"] {
        assert_eq!(
            std::fs::read_dir(root.join("state").join(sub))
                .unwrap()
                .count(),
            0,
            "{sub}"
        );
    }
}

/// A task's port element, and one a failed withdrawal left, are gone after the last task;
/// the table's rules are what they were (a task adds no rule); the table stays.
#[test]
fn the_table_stays_after_the_last_task_holding_nothing_of_it() {
    let f = fixture();
    let table = f.net.nft_table().to_string();
    let spec = TaskSpec {
        port_mappings: vec![PortMapping::tcp(free_port()), PortMapping::tcp(free_port())],
        ..awsvpc()
    };
    let a = f.net.setup_task("a", &spec).unwrap();
    let b = f.net.setup_task("b", &awsvpc()).unwrap();
    let rules = |t: &str| -> Vec<serde_json::Value> {
        nft_json(t)
            .into_iter()
            .filter_map(|o| o.get("rule").cloned())
            .map(|mut r| {
                r.as_object_mut().unwrap().remove("handle");
                r
            })
            .collect()
    };
    let before = rules(&table);
    assert_eq!(before.len(), TABLE_RULES);
    let elems = nft_json(&table)
        .iter()
        .filter_map(|o| o.get("map"))
        .filter_map(|m| m.get("elem"))
        .map(|e| e.as_array().unwrap().len())
        .sum::<usize>();
    assert_eq!(elems, 2, "a's two ports are published");
    // A leak: an element of b's address that no record names.
    nft_add_tcp_element(&table, free_port(), b.ip.unwrap());
    f.net.teardown("a").unwrap();
    f.net.teardown("b").unwrap();
    assert_gone(&f, "a");
    assert_gone(&f, "b");
    assert_table_holds_no_task(&table);
    assert_eq!(rules(&table), before, "the table's rules are untouched");
    drop(a);
    // The next task uses the kept table: its port is published there.
    let port = free_port();
    let c = f
        .net
        .setup_task(
            "c",
            &TaskSpec {
                port_mappings: vec![PortMapping::tcp(port)],
                ..awsvpc()
            },
        )
        .unwrap();
    assert!(
        nft_list_table(&table).contains(&format!("{port} : {} . {port}", c.ip.unwrap())),
        "{}",
        nft_list_table(&table)
    );
    f.net.teardown("c").unwrap();
    assert_table_holds_no_task(&table);
    // A second gc with nothing left changes nothing.
    assert_eq!(f.net.gc(&[]).unwrap(), Vec::<String>::new());
    assert_table_holds_no_task(&table);
}

/// The state says the table is there, but it was deleted behind our back (a firewall
/// reload's `flush ruleset`, a reboot that kept the run root): the next task makes it
/// again rather than running without egress NAT.
#[test]
fn a_table_deleted_behind_our_back_is_made_again() {
    let f = fixture();
    let table = f.net.nft_table().to_string();
    f.net.setup_task("a", &awsvpc()).unwrap();
    f.net.teardown("a").unwrap();
    assert!(nft_table_exists(&table));
    let st = Command::new("nft")
        .args(["delete", "table", "ip", &table])
        .status()
        .unwrap();
    assert!(st.success());
    let port = free_port();
    let b = f
        .net
        .setup_task(
            "b",
            &TaskSpec {
                port_mappings: vec![PortMapping::tcp(port)],
                ..awsvpc()
            },
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(
        nft_json(&table)
            .iter()
            .filter(|o| o.get("rule").is_some())
            .count(),
        TABLE_RULES
    );
    assert!(nft_list_table(&table).contains(&format!("{port} : {} . {port}", b.ip.unwrap())));
    // Deleted again while b runs: b's teardown finds nothing to empty, which is no error,
    // and the state no longer claims a table.
    let st = Command::new("nft")
        .args(["delete", "table", "ip", &table])
        .status()
        .unwrap();
    assert!(st.success());
    f.net.teardown("b").unwrap();
    assert!(!f.net.config().run_root.join("state/nft_table").exists());
    f.net.setup_task("c", &awsvpc()).unwrap();
    assert!(nft_table_exists(&table));
    f.net.teardown("c").unwrap();
}

/// A table made by an earlier build (whose state recorded no ruleset id) or with another
/// ruleset is kept while tasks use it, and made again by the first task that finds no
/// other task on it.
#[test]
fn a_table_of_another_ruleset_is_made_again_when_no_task_uses_it() {
    let f = fixture();
    let table = f.net.nft_table().to_string();
    let flag = f.net.config().run_root.join("state/nft_table");
    let ours = |f: &Fixture| {
        f.net.setup_task("probe", &awsvpc()).unwrap();
        f.net.teardown("probe").unwrap();
        std::fs::read_to_string(&flag).unwrap()
    };
    let id = ours(&f);
    assert!(id.starts_with("netlink-"), "{id:?}");
    let old = f.net.setup_task("old", &awsvpc()).unwrap();
    // What an earlier build left: an empty flag, and a table this build would not make
    // (a chain of its own marks it).
    std::fs::write(&flag, "").unwrap();
    let st = Command::new("nft")
        .args(["add", "chain", "ip", &table, "earlier_build"])
        .status()
        .unwrap();
    assert!(st.success());
    f.net.setup_task("new", &awsvpc()).unwrap();
    assert!(
        nft_list_table(&table).contains("earlier_build"),
        "kept while old uses it"
    );
    assert_eq!(std::fs::read_to_string(&flag).unwrap(), "");
    f.net.teardown("old").unwrap();
    f.net.teardown("new").unwrap();
    drop(old);
    f.net.setup_task("next", &awsvpc()).unwrap();
    assert!(
        !nft_list_table(&table).contains("earlier_build"),
        "made again"
    );
    assert_eq!(std::fs::read_to_string(&flag).unwrap(), id);
    f.net.teardown("next").unwrap();
    assert_table_holds_no_task(&table);
}
