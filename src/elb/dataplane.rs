//! The listeners: each on its load balancer's own address (`super::model::address`) and
//! its port, on the data plane's own threads (`Workers`). An HTTP listener applies the actions of the
//! request's first matching rule, else its default actions (`Elb::route`): a fixed
//! response, a redirect, or a proxy to the next target of the forward action (healthy
//! targets in turn, all of them when none is healthy) over kept-alive connections, adding `X-Forwarded-For`,
//! `X-Forwarded-Proto` and `X-Forwarded-Port`; it answers 503 when the group has no
//! registered target, 502 when the target refuses or breaks the connection, 504 when it
//! does not answer within the idle timeout (60 s, ALB's default). A TCP listener passes
//! each connection's bytes through to a target. Which listeners run follows the
//! resources (`Elb::changes`).

use super::meters::Meter;
use super::{Binding, Elb, Pick};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;

/// ALB's default idle timeout: a target that sends nothing for this long is a 504.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a connection to a target may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle kept-alive connections kept per target.
const IDLE_PER_TARGET: usize = 64;

type Body = BoxBody<Bytes, hyper::Error>;

/// The data plane's threads, one current-thread tokio runtime each. A listener listens on
/// every thread (one socket a thread, `SO_REUSEPORT`: the kernel spreads the connections
/// over them), and a connection, its requests and its connections to the targets stay on
/// the thread that accepted it: no task moves between threads and no wake-up crosses
/// them, which is what a proxy's requests cost most in a work-stealing runtime. Each
/// thread keeps its own kept-alive connections to the targets.
struct Workers {
    threads: Vec<(tokio::runtime::Handle, Arc<Pool>)>,
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
            threads.push((rt.handle().clone(), Arc::new(Pool::default())));
            let mut rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("elb-{i}"))
                .spawn(move || {
                    rt.block_on(async move {
                        let _ = rx.changed().await;
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
        for (rt, pool) in &self.threads {
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
            let (elb, listener, pool) = (elb.clone(), b.listener.clone(), pool.clone());
            let (tcp_protocol, port) = (b.protocol == "TCP", b.addr.port());
            // Listening registers the socket with the thread's own runtime.
            tasks.push(rt.spawn(async move {
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
                    serve_http(elb, listener, port, tcp, pool).await
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
                    tracing::warn!(listener = %b.listener, addr = %b.addr, error = %e, "a load balancer's listener cannot listen");
                }
            }
        }
        if changes.changed().await.is_err() {
            break;
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
        let Pick::Target(addr, _, _) = elb.route(&listener, None, peer.ip(), &mut meter) else {
            continue;
        };
        tokio::spawn(async move {
            let Ok(Ok(mut target)) =
                tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await
            else {
                return;
            };
            let _ = target.set_nodelay(true);
            meter.flow_opened();
            let bytes = tokio::io::copy_bidirectional(&mut client, &mut target)
                .await
                .map(|(a, b)| a + b)
                .unwrap_or(0);
            meter.flow_closed(bytes);
        });
    }
}

/// What the requests of one HTTP listener's thread share.
struct Site {
    elb: Arc<Elb>,
    listener: String,
    pool: Arc<Pool>,
    /// `X-Forwarded-Port`, made once.
    port: header::HeaderValue,
}

/// One client connection: its listener's [`Site`], the client's address, and that
/// address as a header value (`X-Forwarded-For` of a request that has none), made once.
struct Client {
    site: Arc<Site>,
    peer: SocketAddr,
    peer_ip: Option<header::HeaderValue>,
}

async fn serve_http(elb: Arc<Elb>, listener: String, port: u16, tcp: TcpListener, pool: Arc<Pool>) {
    let site = Arc::new(Site {
        elb,
        listener,
        pool,
        port: header::HeaderValue::from(port),
    });
    loop {
        let (stream, peer) = accept(&tcp).await;
        let _ = stream.set_nodelay(true);
        let client = Arc::new(Client {
            site: site.clone(),
            peer,
            peer_ip: header::HeaderValue::from_str(&peer.ip().to_string()).ok(),
        });
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let client = client.clone();
                async move { Ok::<_, std::convert::Infallible>(proxy(&client, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(IDLE_TIMEOUT)
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// ALB's own answers (503, 502, 504): its HTML page and `Server: awselb/2.0`.
fn answer(status: StatusCode) -> Response<Body> {
    let reason = status.canonical_reason().unwrap_or("");
    let code = status.as_u16();
    let html = format!(
        "<html>\r\n<head><title>{code} {reason}</title></head>\r\n<body>\r\n<center><h1>{code} {reason}</h1></center>\r\n</body>\r\n</html>\r\n"
    );
    let mut r = Response::new(Full::new(Bytes::from(html)).map_err(|e| match e {}).boxed());
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::SERVER,
        header::HeaderValue::from_static("awselb/2.0"),
    );
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/html"),
    );
    r
}

/// A fixed-response action's answer, as ALB sends it (`Server: awselb/2.0`).
fn fixed(status: u16, content_type: Option<&str>, body: String) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)).map_err(|e| match e {}).boxed());
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let h = r.headers_mut();
    h.insert(
        header::SERVER,
        header::HeaderValue::from_static("awselb/2.0"),
    );
    if let Some(v) = content_type.and_then(|t| header::HeaderValue::from_str(t).ok()) {
        h.insert(header::CONTENT_TYPE, v);
    }
    r
}

/// A redirect action's answer: 301 or 302 with `Location`, no body (as ALB sends it).
fn redirect(status: u16, location: &str) -> Response<Body> {
    let mut r = Response::new(http_body_util::Empty::new().map_err(|e| match e {}).boxed());
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::FOUND);
    let h = r.headers_mut();
    h.insert(
        header::SERVER,
        header::HeaderValue::from_static("awselb/2.0"),
    );
    if let Ok(v) = header::HeaderValue::from_str(location) {
        h.insert(header::LOCATION, v);
    }
    r
}

const X_FORWARDED_FOR: header::HeaderName = header::HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: header::HeaderName = header::HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_PORT: header::HeaderName = header::HeaderName::from_static("x-forwarded-port");

/// Headers that belong to one connection, not to the request (RFC 9110 7.6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
];

/// Removes the headers of one connection: those `Connection` names, and the hop-by-hop
/// ones. (Most messages have none: one look at their names, then nothing to do.)
fn strip_hop_by_hop(headers: &mut header::HeaderMap) {
    if !headers.keys().any(|k| HOP_BY_HOP.contains(&k.as_str())) {
        return;
    }
    let named: Vec<header::HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| header::HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for h in HOP_BY_HOP {
        headers.remove(*h);
    }
}

/// One request: forwarded or answered, and counted (`super::meters`): the target's answers
/// with their time from the request's forwarding (connection to the target included) to
/// the response's head.
async fn proxy(client: &Client, req: Request<Incoming>) -> Response<Body> {
    let mut count = Count::default();
    let r = forward(client, req, &mut count).await;
    let meter = &count.meter;
    meter.request();
    let status = r.status().as_u16();
    match count.forwarded {
        Some(at) => meter.target_answer(status, at.elapsed()),
        None => meter.elb_answer(status),
    }
    count
        .hold
        .outcome(count.forwarded.is_none() || status >= 500);
    if count.hold.in_flight() {
        // Least outstanding requests: in flight until the response body ends.
        let hold = std::mem::take(&mut count.hold);
        return r.map(|b| {
            Held {
                body: b,
                _hold: hold,
            }
            .boxed()
        });
    }
    r
}

/// A response body that keeps its request counted in flight until it ends (or is dropped).
struct Held {
    body: Body,
    _hold: super::balance::Outstanding,
}

impl hyper::body::Body for Held {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>> {
        hyper::body::Body::poll_frame(std::pin::Pin::new(&mut self.body), cx)
    }

    fn is_end_stream(&self) -> bool {
        hyper::body::Body::is_end_stream(&self.body)
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::Body::size_hint(&self.body)
    }
}

/// What one request counts on, and when it was forwarded to a target: set on a target's
/// answer (HTTPCode_Target_*; the others are the load balancer's own, HTTPCode_ELB_*).
#[derive(Default)]
struct Count {
    meter: Meter,
    forwarded: Option<std::time::Instant>,
    /// The request's hold on its target's load (`super::balance`).
    hold: super::balance::Outstanding,
}

async fn forward(client: &Client, req: Request<Incoming>, count: &mut Count) -> Response<Body> {
    let (site, peer) = (&*client.site, client.peer);
    let pool = &*site.pool;
    let (mut parts, body) = req.into_parts();
    let pick = {
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| parts.uri.authority().map(|a| a.as_str()));
        let view = super::rules::Request {
            method: parts.method.as_str(),
            host,
            path: parts.uri.path(),
            query: parts.uri.query(),
            headers: &parts.headers,
            source: peer.ip(),
        };
        site.elb
            .route(&site.listener, Some(&view), peer.ip(), &mut count.meter)
    };
    let (addr, stick) = match pick {
        Pick::Target(a, stick, hold) => {
            count.hold = hold;
            (a, stick)
        }
        Pick::NoTarget | Pick::Gone => return answer(StatusCode::SERVICE_UNAVAILABLE),
        Pick::Fixed {
            status,
            content_type,
            body,
        } => return fixed(status, content_type.as_deref(), body),
        Pick::Redirect { status, location } => return redirect(status, &location),
    };
    strip_hop_by_hop(&mut parts.headers);
    // The client's address after those the request names already, else alone (made once
    // a connection).
    let xff = match parts
        .headers
        .get(&X_FORWARDED_FOR)
        .and_then(|v| v.to_str().ok())
    {
        Some(prev) => header::HeaderValue::from_str(&format!("{prev}, {}", peer.ip())).ok(),
        None => client.peer_ip.clone(),
    };
    if let Some(v) = xff {
        parts.headers.insert(X_FORWARDED_FOR, v);
    }
    parts
        .headers
        .insert(X_FORWARDED_PROTO, header::HeaderValue::from_static("http"));
    parts.headers.insert(X_FORWARDED_PORT, site.port.clone());
    // Origin form to the target (`/path?query`), whatever form the client used.
    if (parts.uri.scheme().is_some() || parts.uri.authority().is_some())
        && let Some(pq) = parts.uri.path_and_query().cloned()
    {
        parts.uri = pq.as_str().parse().unwrap_or_default();
    }
    parts.version = hyper::Version::HTTP_11;
    let at = std::time::Instant::now();
    let (link, reused) = match pool.take(addr) {
        Some(s) => ((s, None), true),
        None => match connect(addr).await {
            Ok((s, c)) => ((s, Some(c)), false),
            Err(status) => return answer(status),
        },
    };
    // A body-less request on a kept-alive connection may be sent again on a fresh one
    // when the target turns out to have closed it.
    let again = (reused && hyper::body::Body::is_end_stream(&body)).then(|| parts.clone());
    match send(link, Request::from_parts(parts, body.boxed()), pool, addr).await {
        Ok(r) => {
            count.forwarded = Some(at);
            with_cookies(r, &stick)
        }
        Err(_) if again.is_some() => {
            let parts = again.expect("checked");
            let empty = http_body_util::Empty::new().map_err(|e| match e {}).boxed();
            match connect(addr).await {
                Ok((s, c)) => {
                    match send((s, Some(c)), Request::from_parts(parts, empty), pool, addr).await {
                        Ok(r) => {
                            count.forwarded = Some(at);
                            with_cookies(r, &stick)
                        }
                        Err(status) => answer(status),
                    }
                }
                Err(status) => answer(status),
            }
        }
        Err(status) => answer(status),
    }
}

/// A target's answer with the sticky sessions' cookies (`super::sticky`): the load
/// balancer's own, and the application-based one when the answer sets the application's
/// cookie.
fn with_cookies(mut r: Response<Body>, stick: &super::Stick) -> Response<Body> {
    let sets_app = stick.app.as_ref().is_some_and(|(name, _)| {
        r.headers().get_all(header::SET_COOKIE).iter().any(|v| {
            v.to_str()
                .ok()
                .and_then(|v| v.split_once('='))
                .is_some_and(|(n, _)| n.trim() == name)
        })
    });
    let app = stick.app.iter().filter(|_| sets_app).flat_map(|(_, c)| c);
    for c in stick.set_cookies.iter().chain(app) {
        if let Ok(v) = header::HeaderValue::from_str(c) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    r
}

type Sender = hyper::client::conn::http1::SendRequest<Body>;
type Conn = hyper::client::conn::http1::Connection<TokioIo<TcpStream>, Body>;

/// A connection to a target to send a request on: a kept-alive one from the pool (its
/// connection runs in a task of its own: no `Conn` here), or a fresh one, which the
/// request that opened it drives itself: up to the response's head, then through the
/// response's body when the target closes it after this answer (as targets that close
/// each connection do: no task a request), and in a task of its own when it is kept
/// alive for the next ones.
type Link = (Sender, Option<Conn>);

async fn connect(addr: SocketAddr) -> Result<(Sender, Conn), StatusCode> {
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(_)) => return Err(StatusCode::BAD_GATEWAY),
        Err(_) => return Err(StatusCode::GATEWAY_TIMEOUT),
    };
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|_| StatusCode::BAD_GATEWAY)?;
    Ok((sender, conn))
}

/// Drives a fresh connection one step; `None` once it is done (the target's answer read,
/// nothing more to come on it) or broken. Done, it is dropped without `shutdown`: the
/// socket's close sends the FIN.
fn drive(conn: &mut Option<Conn>, cx: &mut std::task::Context<'_>) {
    if let Some(c) = conn
        && c.poll_without_shutdown(cx).is_ready()
    {
        *conn = None;
    }
}

async fn send(
    link: Link,
    req: Request<Body>,
    pool: &Pool,
    addr: SocketAddr,
) -> Result<Response<Body>, StatusCode> {
    let (mut sender, mut conn) = link;
    let mut response = std::pin::pin!(sender.send_request(req));
    let head = std::future::poll_fn(|cx| {
        if let std::task::Poll::Ready(r) = response.as_mut().poll(cx) {
            return std::task::Poll::Ready(r);
        }
        drive(&mut conn, cx);
        response.as_mut().poll(cx)
    });
    match tokio::time::timeout(IDLE_TIMEOUT, head).await {
        Ok(Ok(resp)) => {
            // A target that closes the connection after its answer (`Connection: close`,
            // or HTTP/1.0 without keep-alive) leaves nothing to keep.
            let mut driven = None;
            if keeps_alive(&resp) {
                if let Some(c) = conn {
                    tokio::spawn(c);
                }
                pool.put(addr, sender);
            } else if conn.is_some() {
                driven = Some((conn, sender));
            }
            // The target's connection is its own: the client's stays open (ALB keeps a
            // client's connection alive whatever its targets do with theirs).
            let (mut head, body) = resp.into_parts();
            strip_hop_by_hop(&mut head.headers);
            head.version = hyper::Version::HTTP_11;
            let body = match driven {
                Some((conn, sender)) => Driven {
                    body,
                    conn,
                    _sender: sender,
                }
                .boxed(),
                None => body.boxed(),
            };
            Ok(Response::from_parts(head, body))
        }
        Ok(Err(_)) => Err(StatusCode::BAD_GATEWAY),
        Err(_) => Err(StatusCode::GATEWAY_TIMEOUT),
    }
}

/// A response body that drives its own (fresh, not kept) connection to the target while
/// it is read; the connection goes when the body ends or is dropped.
struct Driven {
    body: Incoming,
    conn: Option<Conn>,
    _sender: Sender,
}

impl hyper::body::Body for Driven {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        // The connection first: what it reads is then in the body's channel.
        drive(&mut this.conn, cx);
        let frame = std::pin::Pin::new(&mut this.body).poll_frame(cx);
        if matches!(frame, std::task::Poll::Ready(None | Some(Err(_)))) {
            this.conn = None;
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// Whether the connection an answer came on stays open after it (RFC 9112 9.3).
fn keeps_alive<T>(resp: &Response<T>) -> bool {
    let says = |token: &str| {
        resp.headers()
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    if resp.version() == hyper::Version::HTTP_10 {
        says("keep-alive")
    } else {
        !says("close")
    }
}

/// Kept-alive connections to the targets, by address. A connection goes back as soon as
/// its response's head is in; it is taken again once its response body is done (hyper's
/// `is_ready`).
#[derive(Default)]
struct Pool(Mutex<super::HashMap<SocketAddr, Vec<Sender>>>);

impl Pool {
    fn take(&self, addr: SocketAddr) -> Option<Sender> {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let v = m.get_mut(&addr)?;
        v.retain(|s| !s.is_closed());
        let i = v.iter().position(|s| s.is_ready())?;
        Some(v.swap_remove(i))
    }

    fn put(&self, addr: SocketAddr, s: Sender) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let v = m.entry(addr).or_default();
        v.retain(|s| !s.is_closed());
        if v.len() < IDLE_PER_TARGET {
            v.push(s);
        }
    }
}
