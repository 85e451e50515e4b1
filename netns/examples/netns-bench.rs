//! Times task network setup + teardown (root): awsvpc without ports, with one published
//! port, and the only task of a network (back to back, as sequential `run-task`s).
//!
//! Usage: `netns-bench [ITERATIONS]`. Uses its own bridge `mfgb<hex>` and a /24 of
//! 10.94/16, and removes everything it made before it exits.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use netns::{Network, NetworkConfig, NetworkMode, PortMapping, TaskSpec};

/// Removes everything the bench made, also when it panics.
struct Reset<'a>(&'a Network);

impl Drop for Reset<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.0.reset() {
            eprintln!("cleanup: {e}");
        }
        let _ = std::fs::remove_dir_all(&self.0.config().run_root);
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.9), v[v.len() - 1])
}

fn run(net: &Network, label: &str, spec: &TaskSpec, n: usize) {
    run_with(label, spec, n, Duration::ZERO, |f| f(net));
}

/// Like [`run`] with a new [`Network`] per task (opened before setup, dropped after
/// teardown, both timed), as a per-task supervisor process does.
fn run_fresh(cfg: &NetworkConfig, label: &str, spec: &TaskSpec, n: usize) {
    run_with(label, spec, n, Duration::ZERO, |f| {
        let net = Network::open(cfg.clone()).expect("open network");
        f(&net);
    });
}

/// Times `n` setup + teardown pairs of `spec`, untimed `gap` before each.
fn run_with(
    label: &str,
    spec: &TaskSpec,
    n: usize,
    gap: Duration,
    with: impl Fn(&mut dyn FnMut(&Network)),
) {
    static CASE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let case = CASE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (mut setup, mut teardown, mut total) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        std::thread::sleep(gap);
        let id = format!("bench-{case}-{i}");
        let t0 = Instant::now();
        let mut t1 = t0;
        with(&mut |net: &Network| {
            net.setup_task(&id, spec).expect("setup");
            t1 = Instant::now();
            net.teardown(&id).expect("teardown");
        });
        let t2 = Instant::now();
        setup.push(ms(t1 - t0));
        teardown.push(ms(t2 - t1));
        total.push(ms(t2 - t0));
    }
    let (s, _, _) = stats(setup);
    let (t, _, _) = stats(teardown);
    let (m, p90, max) = stats(total);
    println!("| {label} | {n} | {s:.2} | {t:.2} | {m:.2} | {p90:.2} | {max:.2} |");
}

/// Connect + 1-byte echo + close, median µs over `n` connections to `addr`.
fn echo_rtt(addr: SocketAddr, n: usize) -> f64 {
    let mut v = Vec::new();
    for _ in 0..n {
        let t0 = Instant::now();
        let mut s = TcpStream::connect(addr).expect("connect");
        s.write_all(b"x").unwrap();
        let mut b = [0u8; 1];
        s.read_exact(&mut b).unwrap();
        drop(s);
        v.push(t0.elapsed().as_secs_f64() * 1e6);
    }
    stats(v).0
}

/// A minimal userspace proxy (thread per connection), as docker-proxy does it.
fn proxy(listen: TcpListener, to: SocketAddr) {
    std::thread::spawn(move || {
        for c in listen.incoming() {
            let Ok(c) = c else { return };
            std::thread::spawn(move || {
                let Ok(u) = TcpStream::connect(to) else {
                    return;
                };
                let (mut cr, mut cw) = (c.try_clone().unwrap(), c);
                let (mut ur, mut uw) = (u.try_clone().unwrap(), u);
                let t = std::thread::spawn(move || {
                    let _ = std::io::copy(&mut cr, &mut uw);
                    let _ = uw.shutdown(std::net::Shutdown::Write);
                });
                let _ = std::io::copy(&mut ur, &mut cw);
                let _ = cw.shutdown(std::net::Shutdown::Write);
                let _ = t.join();
            });
        }
    });
}

/// DNAT (what the crate does) vs a userspace proxy, host -> published port.
fn port_paths(net: &Network, spec: &TaskSpec, port: u16, n: usize) {
    let tn = net.setup_task("ports", spec).expect("setup");
    let ns = tn.netns_path.clone().unwrap();
    let l = netns::nsfs::in_netns(&ns, || TcpListener::bind(("0.0.0.0", port)))
        .unwrap()
        .unwrap();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { return };
            let mut b = [0u8; 1];
            if c.read_exact(&mut b).is_ok() {
                let _ = c.write_all(&b);
            }
        }
    });
    let task = SocketAddr::from((tn.ip.unwrap(), port));
    let p = TcpListener::bind("127.0.0.1:0").unwrap();
    let paddr = p.local_addr().unwrap();
    proxy(p, task);
    let direct = echo_rtt(task, n);
    let dnat = echo_rtt(SocketAddr::from(([127, 0, 0, 1], port)), n);
    let prox = echo_rtt(paddr, n);
    println!();
    println!(
        "| host -> task port path ({n} connections) | connect + 1-byte echo + close, median µs |"
    );
    println!("|---|---|");
    println!("| direct to task IP | {direct:.0} |");
    println!("| 127.0.0.1:hostPort via nftables DNAT | {dnat:.0} |");
    println!("| 127.0.0.1 via a userspace proxy | {prox:.0} |");
    net.teardown("ports").expect("teardown");
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("ITERATIONS is a number"))
        .unwrap_or(200);
    let root = std::env::temp_dir().join(format!("mfg-netns-bench-{}", std::process::id()));
    let bridge = format!("mfgb{:06x}", fastrand::u32(..0x100_0000));
    let cfg = NetworkConfig {
        run_root: root.clone(),
        netns_prefix: bridge.clone(),
        bridge,
        subnet: format!("10.91.{}.0/24", fastrand::u8(201..=250))
            .parse()
            .unwrap(),
        ..NetworkConfig::default()
    };
    let net = Network::open(cfg.clone()).expect("open network");
    let _reset = Reset(&net);

    println!(
        "| case | runs | setup median ms | teardown median ms | setup+teardown median ms | p90 ms | max ms |"
    );
    println!("|---|---|---|---|---|---|---|");
    // The only task of a network: the first run creates the bridge and the nft table,
    // which stay; each teardown, the last task's, empties the table's port maps. (Until
    // stop 47 of docs/benchmarks.md, the table was made and removed every time.)
    run(
        &net,
        "awsvpc, the only task (back to back)",
        &TaskSpec::new(NetworkMode::Awsvpc),
        n.div_ceil(5),
    );
    // Sequential one-task runs (each `run-task` is the only task of the network), which
    // are tens of ms apart at least.
    run_with(
        "awsvpc, the only task, 50 ms after the previous one",
        &TaskSpec::new(NetworkMode::Awsvpc),
        n.div_ceil(5),
        Duration::from_millis(50),
        |f| f(&net),
    );
    // Steady state: another task is running, so the table stays.
    net.setup_task("resident", &TaskSpec::new(NetworkMode::Awsvpc))
        .expect("resident task");
    run(
        &net,
        "awsvpc, no ports (another task running)",
        &TaskSpec::new(NetworkMode::Awsvpc),
        n,
    );
    let port = loop {
        let p = fastrand::u16(20000..30000);
        if std::net::TcpListener::bind(("0.0.0.0", p)).is_ok() {
            break p;
        }
    };
    let spec = TaskSpec {
        port_mappings: vec![PortMapping::tcp(port)],
        ..TaskSpec::new(NetworkMode::Awsvpc)
    };
    run(&net, "awsvpc, 1 published tcp port", &spec, n.div_ceil(2));
    run_fresh(
        &cfg,
        "awsvpc, 1 published tcp port, new Network per task (as a supervisor)",
        &spec,
        n.div_ceil(2),
    );
    run(
        &net,
        "none (netns + loopback only)",
        &TaskSpec::new(NetworkMode::None),
        n,
    );
    port_paths(&net, &spec, port, n);
    net.teardown("resident").expect("teardown resident");
}
