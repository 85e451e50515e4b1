//! The listeners: each on its load balancer's own address (`super::model::address`) and
//! its port, on the data plane's own threads (`Workers`). An HTTP listener applies the actions of the
//! request's first matching rule, else its default actions (`Elb::route`): a fixed
//! response, a redirect, or a proxy to the next target of the forward action (healthy
//! targets in turn, all of them below the group's minimum of healthy ones) over kept-alive connections, adding `X-Forwarded-For`,
//! `X-Forwarded-Proto` and `X-Forwarded-Port`; it answers 503 when the group has no
//! registered target, 502 when the target refuses or breaks the connection, 504 when it
//! does not answer within the idle timeout (`super::proxy`). A TCP listener passes
//! each connection's bytes through to a target. Which listeners run follows the
//! resources (`Elb::changes`).

use super::meters::Meter;
use super::proxy::{Pool, Site};
use super::{Binding, Elb, Pick};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;

/// How long a listener that could not listen waits to try again.
const RETRY_LISTEN: Duration = Duration::from_secs(1);
/// How long a connection to a target may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often each thread closes its idle connections to the targets that the targets
/// closed, or that were idle longer than `POOL_IDLE`.
const SWEEP_EVERY: Duration = Duration::from_secs(5);
/// How long an idle connection to a target is kept (ALB's default idle timeout; a longer
/// one set on a load balancer only means a new connection after this).
const POOL_IDLE: Duration = Duration::from_secs(60);

/// The data plane's threads, one current-thread tokio runtime each. A listener listens on
/// every thread (one socket a thread, `SO_REUSEPORT`: the kernel spreads the connections
/// over them), and a connection, its requests and its connections to the targets stay on
/// the thread it is served on: no task moves between threads and no wake-up crosses
/// them, which is what a proxy's requests cost most in a work-stealing runtime. Each
/// thread keeps its own kept-alive connections to the targets. The kernel's spread is by
/// a hash of the connection's addresses, uneven over a few connections (20 and 12 of 32,
/// say, and the 20 then wait longer): an HTTP connection accepted on a thread serving
/// more than one connection over the least busy one's count goes to that thread.
struct Workers {
    threads: Vec<Thread>,
    /// Dropped with the workers: each thread's runtime then ends, with its tasks.
    _stop: tokio::sync::watch::Sender<()>,
}

impl Workers {
    /// One thread a core (at most 8).
    fn start() -> std::io::Result<Workers> {
        let n = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(8);
        let (stop, rx) = tokio::sync::watch::channel(());
        let mut threads = Vec::with_capacity(n);
        for i in 0..n {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let pool = Arc::new(Pool::default());
            threads.push(Thread {
                rt: rt.handle().clone(),
                pool: pool.clone(),
                clients: Arc::default(),
            });
            let mut rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("elb-{i}"))
                .spawn(move || {
                    rt.block_on(async move {
                        let sweep = async {
                            let mut every = tokio::time::interval(SWEEP_EVERY);
                            loop {
                                every.tick().await;
                                pool.sweep(POOL_IDLE);
                            }
                        };
                        tokio::select! {
                            _ = rx.changed() => {}
                            _ = sweep => {}
                        }
                    })
                })?;
        }
        Ok(Workers {
            threads,
            _stop: stop,
        })
    }

    /// Listens for `b` on every thread; the tasks, or why the address cannot be listened on.
    fn listen(&self, elb: &Arc<Elb>, b: &Binding) -> std::io::Result<Vec<JoinHandle<()>>> {
        // The address must be free, as a plain bind finds it (a port port-shared with
        // `SO_REUSEPORT` by another socket is not).
        drop(std::net::TcpListener::bind(b.addr)?);
        let mut tasks = Vec::with_capacity(self.threads.len());
        // Each thread's share of an HTTP listener.
        let sites: Arc<Vec<(tokio::runtime::Handle, Arc<Site>)>> = Arc::new(
            self.threads
                .iter()
                .map(|t| {
                    let site = Site {
                        elb: elb.clone(),
                        listener: b.listener.clone(),
                        pool: t.pool.clone(),
                        port: b.addr.port(),
                        clients: t.clients.clone(),
                    };
                    (t.rt.clone(), Arc::new(site))
                })
                .collect(),
        );
        for (me, t) in self.threads.iter().enumerate() {
            let socket = match b.addr {
                SocketAddr::V4(_) => TcpSocket::new_v4(),
                SocketAddr::V6(_) => TcpSocket::new_v6(),
            };
            let bound = socket.and_then(|s| {
                s.set_reuseaddr(true)?;
                s.set_reuseport(true)?;
                s.bind(b.addr)?;
                Ok(s)
            });
            let socket = match bound {
                Ok(s) => s,
                Err(e) => {
                    tasks.iter().for_each(|t: &JoinHandle<()>| t.abort());
                    return Err(e);
                }
            };
            let (elb, listener, sites) = (elb.clone(), b.listener.clone(), sites.clone());
            let tcp_protocol = b.protocol == "TCP";
            // Listening registers the socket with the thread's own runtime.
            tasks.push(t.rt.spawn(async move {
                let tcp = match socket.listen(1024) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(listener = %listener, error = %e, "a load balancer's listener cannot listen");
                        return;
                    }
                };
                if tcp_protocol {
                    serve_tcp(elb, listener, tcp).await
                } else {
                    serve_http(tcp, sites, me).await
                }
            }));
        }
        Ok(tasks)
    }
}

/// Runs the listeners until the runtime stops; `names` puts each load balancer's address
/// and name in place before its listeners listen.
pub async fn run(elb: Arc<Elb>, names: Arc<Mutex<super::names::Names>>) {
    let workers = match Workers::start() {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(error = %e, "the load balancers' threads cannot start: no listener runs");
            return;
        }
    };
    let mut changes = elb.changes();
    let mut running: HashMap<Binding, Vec<JoinHandle<()>>> = HashMap::new();
    loop {
        let mut refused = false;
        {
            let want = elb.names();
            let names = names.clone();
            let _ = tokio::task::spawn_blocking(move || {
                names.lock().unwrap_or_else(|p| p.into_inner()).sync(&want)
            })
            .await;
        }
        let want = elb.bindings();
        running.retain(|b, tasks| {
            let keep = want.contains(b) && !tasks.iter().any(|t| t.is_finished());
            if !keep {
                tasks.iter().for_each(|t| t.abort());
            }
            keep
        });
        for b in want {
            if running.contains_key(&b) {
                continue;
            }
            match workers.listen(&elb, &b) {
                Ok(tasks) => {
                    tracing::info!(listener = %b.listener, addr = %b.addr, protocol = %b.protocol, threads = tasks.len(), "load balancer listening");
                    running.insert(b, tasks);
                }
                Err(e) => {
                    refused = true;
                    tracing::warn!(listener = %b.listener, addr = %b.addr, error = %e, "a load balancer's listener cannot listen");
                }
            }
        }
        // A listener refused its address (held by another process: a serve leading on
        // a box's host, or one stopping) is tried again a second later.
        tokio::select! {
            r = changes.changed() => {
                if r.is_err() {
                    break;
                }
            }
            () = tokio::time::sleep(RETRY_LISTEN), if refused => {}
        }
    }
    for tasks in running.into_values() {
        tasks.iter().for_each(|t| t.abort());
    }
}

async fn accept(tcp: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match tcp.accept().await {
            Ok(c) => return c,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "a load balancer failed to accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn serve_tcp(elb: Arc<Elb>, listener: String, tcp: TcpListener) {
    loop {
        let (mut client, peer) = accept(&tcp).await;
        let _ = client.set_nodelay(true);
        let mut meter = Meter::default();
        let Pick::Target(addr, _, hold, proxy_v2) =
            elb.route(&listener, None, peer.ip(), &mut meter)
        else {
            continue;
        };
        // Its ticket now: a cut from here on reaches it.
        let cut = hold.load().map(|l| (l.clone(), l.open()));
        tokio::spawn(async move {
            let Ok(Ok(mut target)) =
                tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await
            else {
                return;
            };
            let _ = target.set_nodelay(true);
            // The client's address and the listener's, as NLB sends them.
            if proxy_v2 {
                let Ok(listener) = client.local_addr() else {
                    return;
                };
                let header = super::proxy_protocol::proxy(peer, listener);
                if target.write_all(&header).await.is_err() {
                    return;
                }
            }
            meter.flow_opened();
            let bytes = relay(&mut client, &mut target, cut).await;
            drop(hold);
            meter.flow_closed(bytes);
        });
    }
}

/// Passes a TCP connection's bytes both ways until both sides have closed it, or until
/// its target's load says to cut it (`cut`: the load and the connection's ticket, taken
/// when it was routed; `Load::cut_at`: the target turned unhealthy, or its deregistration
/// delay ended, with connection termination on): then both sockets close. Returns the
/// bytes passed.
pub(super) async fn relay(
    client: &mut TcpStream,
    target: &mut TcpStream,
    cut: Option<(Arc<super::balance::Load>, u64)>,
) -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
    async fn pump(
        mut from: impl AsyncRead + Unpin,
        mut to: impl AsyncWrite + Unpin,
        n: &AtomicU64,
    ) -> std::io::Result<()> {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let k = from.read(&mut buf).await?;
            if k == 0 {
                return to.shutdown().await;
            }
            to.write_all(&buf[..k]).await?;
            n.fetch_add(k as u64, Relaxed);
        }
    }
    let n = AtomicU64::new(0);
    let (cr, cw) = client.split();
    let (tr, tw) = target.split();
    let both = async {
        // One direction failing ends the connection, as a reset does.
        let _ = tokio::try_join!(pump(cr, tw, &n), pump(tr, cw, &n));
    };
    let cut = async {
        match &cut {
            Some((l, ticket)) => l.cut(*ticket).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        // A cut wins over bytes ready at the same time.
        biased;
        () = cut => {}
        () = both => {}
    }
    n.load(Relaxed)
}

async fn serve_http(
    tcp: TcpListener,
    sites: Arc<Vec<(tokio::runtime::Handle, Arc<Site>)>>,
    me: usize,
) {
    use std::sync::atomic::Ordering::Relaxed;
    loop {
        let (stream, peer) = accept(&tcp).await;
        let _ = stream.set_nodelay(true);
        let mine = sites[me].1.clients.load(Relaxed);
        let (least, n) = sites
            .iter()
            .map(|(_, s)| s.clients.load(Relaxed))
            .enumerate()
            .min_by_key(|(_, n)| *n)
            .unwrap_or((me, mine));
        let to = if mine > n + 1 { least } else { me };
        let (rt, site) = &sites[to];
        let site = site.clone();
        site.clients.fetch_add(1, Relaxed);
        if to == me {
            tokio::spawn(super::proxy::serve(site, stream, peer));
            continue;
        }
        // Registered with the other thread's runtime there.
        match stream.into_std() {
            Ok(s) => {
                rt.spawn(async move {
                    match TcpStream::from_std(s) {
                        Ok(s) => super::proxy::serve(site, s, peer).await,
                        Err(_) => {
                            site.clients.fetch_sub(1, Relaxed);
                        }
                    }
                });
            }
            Err(_) => {
                site.clients.fetch_sub(1, Relaxed);
            }
        }
    }
}

/// One of the data plane's threads: its runtime, its kept-alive connections to the
/// targets, and how many HTTP client connections it serves.
struct Thread {
    rt: tokio::runtime::Handle,
    pool: Arc<Pool>,
    clients: Arc<std::sync::atomic::AtomicUsize>,
}
