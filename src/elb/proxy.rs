//! An HTTP listener's client connections, one task each on the thread that accepted it:
//! each request's head is read and parsed in place (`super::h1`), routed (`Elb::route`),
//! and either answered by the load balancer (fixed response, redirect, 503, 400…) or
//! written on to the target with the `X-Forwarded-*` fields, over a kept-alive connection
//! of this thread's `Pool` (no task of its own: the request that uses it drives it). The
//! bodies pass through as they came, their ends found from their framing; a target's
//! answer delimited by its connection's close reaches an HTTP/1.1 client chunked (ALB
//! keeps a client's connection whatever its targets do), an HTTP/1.0 client without
//! chunks. Interim answers (`100 Continue`) reach the client while its body is sent.

use super::desync;
use super::h1::{self, Chunks, Framing};
use super::meters::Meter;
use super::{Elb, Pick};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a connection to a target may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle kept-alive connections kept per target (and thread).
const IDLE_PER_TARGET: usize = 64;
/// What one read asks for.
const READ_SIZE: usize = 16 * 1024;

/// What the requests of one HTTP listener's thread share.
pub struct Site {
    pub elb: Arc<Elb>,
    pub listener: String,
    pub pool: Arc<Pool>,
    /// `X-Forwarded-Port`.
    pub port: u16,
    /// The client connections this thread serves (of every listener): counted up as one
    /// is given it, down when `serve` ends.
    pub clients: Arc<std::sync::atomic::AtomicUsize>,
}

/// The load balancer's attributes a client connection follows, read as it opens
/// (ModifyLoadBalancerAttributes; ALB User Guide, "Edit attributes of your Application
/// Load Balancer" and "HTTP headers and Application Load Balancers").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// `idle_timeout.timeout_seconds`: a connection (client's or target's) silent this
    /// long ends; a target that does not answer within it is a 504.
    pub idle: Duration,
    /// `client_keep_alive.seconds`: a client's connection is closed after its first
    /// answer past this long.
    pub keep_alive_for: Duration,
    /// `routing.http.xff_header_processing.mode`.
    pub xff: Xff,
    /// `routing.http.xff_client_port.enabled`: the client's port with its address.
    pub xff_port: bool,
    /// `routing.http.preserve_host_header.enabled`: else the listener's port is added to
    /// a `Host` without one (unless it is 80).
    pub preserve_host: bool,
    /// `routing.http.drop_invalid_header_fields.enabled`: fields whose names are not
    /// letters, digits and hyphens are not forwarded.
    pub drop_invalid: bool,
    /// `routing.http.desync_mitigation_mode` (`super::desync`).
    pub desync: desync::Mode,
}

/// What becomes of `X-Forwarded-For`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Xff {
    /// The client's address added (made when the request has none).
    Append,
    /// Sent as the request had it (none when it had none).
    Preserve,
    /// Not sent.
    Remove,
}

impl Default for Settings {
    /// ALB's defaults.
    fn default() -> Settings {
        Settings {
            idle: Duration::from_secs(60),
            keep_alive_for: Duration::from_secs(3600),
            xff: Xff::Append,
            xff_port: false,
            preserve_host: false,
            drop_invalid: false,
            desync: desync::Mode::Defensive,
        }
    }
}

/// Why a read or write ended a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fail {
    /// Nothing came within the idle timeout.
    Timeout,
    /// The peer closed or broke the connection before the message's end.
    Broken,
    /// The message cannot be read (a bad head or framing).
    Bad,
    /// The client's connection broke (while the target's answer was passed on).
    Client,
}

/// Bytes read and not yet taken.
#[derive(Default)]
struct Buf {
    data: Vec<u8>,
    at: usize,
}

impl Buf {
    fn bytes(&self) -> &[u8] {
        &self.data[self.at..]
    }

    fn is_empty(&self) -> bool {
        self.at == self.data.len()
    }

    fn consume(&mut self, n: usize) {
        self.at += n;
        if self.at >= self.data.len() {
            self.data.clear();
            self.at = 0;
        }
    }

    /// Reads what comes next: how much (0 at the connection's end).
    async fn fill<R: AsyncRead + Unpin>(
        &mut self,
        r: &mut R,
        idle: Duration,
    ) -> Result<usize, Fail> {
        if self.at > 0 && self.data.capacity() - self.data.len() < READ_SIZE / 2 {
            self.data.drain(..self.at);
            self.at = 0;
        }
        self.data.reserve(READ_SIZE);
        match tokio::time::timeout(idle, r.read_buf(&mut self.data)).await {
            Ok(Ok(n)) => Ok(n),
            Ok(Err(_)) => Err(Fail::Broken),
            Err(_) => Err(Fail::Timeout),
        }
    }
}

async fn write<W: AsyncWrite + Unpin>(w: &mut W, bytes: &[u8], idle: Duration) -> bool {
    matches!(
        tokio::time::timeout(idle, w.write_all(bytes)).await,
        Ok(Ok(()))
    )
}

/// A connection to a target, with what was read on it and not yet taken.
pub struct Link {
    stream: TcpStream,
    buf: Buf,
    idle_since: Instant,
}

impl Link {
    /// Whether the target has not closed it (nothing to read, not at its end).
    fn alive(&self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.stream.try_read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }
}

/// Kept-alive connections to the targets, by address, idle between requests.
#[derive(Default)]
pub struct Pool(Mutex<super::HashMap<SocketAddr, Vec<Link>>>);

impl Pool {
    fn take(&self, addr: SocketAddr) -> Option<Link> {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let v = m.get_mut(&addr)?;
        // The last one in is the likeliest still open.
        while let Some(l) = v.pop() {
            if l.alive() {
                return Some(l);
            }
        }
        None
    }

    fn put(&self, addr: SocketAddr, mut l: Link) {
        l.idle_since = Instant::now();
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let v = m.entry(addr).or_default();
        if v.len() < IDLE_PER_TARGET {
            v.push(l);
        }
    }

    /// Closes the connections the targets closed and those idle longer than `idle`.
    pub fn sweep(&self, idle: Duration) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.retain(|_, v| {
            v.retain(|l| l.alive() && l.idle_since.elapsed() < idle);
            !v.is_empty()
        });
    }
}

/// One client connection.
struct Client {
    stream: TcpStream,
    buf: Buf,
    peer: SocketAddr,
    /// The client's address as `X-Forwarded-For` has it.
    ip: String,
    /// The address it connected to (`Host` of an HTTP/1.0 request without one).
    local: String,
}

/// What becomes of the client's connection after an answer.
enum Next {
    Again,
    /// Closed after the answer (`Connection: close`).
    Close,
    /// Closed with some of the request unread: reading on a while, so the close does not
    /// reset the answer away.
    Linger,
    /// Gone.
    Drop,
}

/// Serves one client connection until it ends.
pub async fn serve(site: Arc<Site>, stream: TcpStream, peer: SocketAddr) {
    struct Leave<'a>(&'a std::sync::atomic::AtomicUsize);
    impl Drop for Leave<'_> {
        fn drop(&mut self) {
            self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
    let _leave = Leave(&site.clients);
    let set = site.elb.http_settings(&site.listener);
    let until = Instant::now() + set.keep_alive_for;
    let local = stream
        .local_addr()
        .map_or_else(|_| String::new(), |a| a.to_string());
    let mut c = Client {
        stream,
        buf: Buf::default(),
        peer,
        // `X-Forwarded-For`'s entry: the address, with the port when asked (an IPv6
        // address then in brackets).
        ip: match (set.xff_port, peer) {
            (false, _) => peer.ip().to_string(),
            (true, p) => p.to_string(),
        },
        local,
    };
    let mut out = Vec::with_capacity(1024);
    loop {
        out.clear();
        match one(&site, set, &mut c, &mut out, Instant::now() >= until).await {
            Next::Again => {}
            Next::Close => {
                let _ = c.stream.shutdown().await;
                return;
            }
            Next::Linger => {
                let _ = c.stream.shutdown().await;
                let mut sink = [0u8; 4096];
                let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
                while let Ok(Ok(n)) =
                    tokio::time::timeout_at(deadline, c.stream.read(&mut sink)).await
                {
                    if n == 0 {
                        break;
                    }
                }
                return;
            }
            Next::Drop => return,
        }
    }
}

/// A request as it is forwarded.
struct Forward {
    addr: SocketAddr,
    stick: super::Stick,
    hold: super::balance::Outstanding,
    framing: Framing,
    head_request: bool,
    /// The client's connection closes after the answer.
    close: bool,
    /// The target's connection closes after the answer (an Ambiguous request in
    /// defensive mode: `super::desync`).
    close_target: bool,
    /// An HTTP/1.0 client (no chunks, `Connection: keep-alive` to keep it).
    v10: bool,
    /// The client asks to switch protocols (`Connection: Upgrade`, `Upgrade: websocket`):
    /// on the target's `101`, the two connections are joined.
    upgrade: bool,
}

/// What a request's head leads to.
enum Prep {
    /// The load balancer's own answer (in `out`) with its status; the request's body is
    /// not read (the connection closes after the answer when it has one).
    Own {
        status: u16,
        close: bool,
    },
    Forward(Forward),
}

/// Reads, routes and answers one request.
async fn one(site: &Site, set: Settings, c: &mut Client, out: &mut Vec<u8>, last: bool) -> Next {
    let mut meter = Meter::default();
    let prep = loop {
        if !c.buf.is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; h1::MAX_HEADERS];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(c.buf.bytes()) {
                Ok(httparse::Status::Complete(n)) if n <= h1::MAX_HEAD => {
                    let who = (c.peer, c.ip.as_str(), c.local.as_str());
                    let prep = prepare(site, set, who, &req, out, &mut meter, last);
                    c.buf.consume(n);
                    break prep;
                }
                Ok(httparse::Status::Partial) if c.buf.bytes().len() <= h1::MAX_HEAD => {}
                // ALB answers 400 to a head it cannot read, or one over its limits.
                _ => break own(out, 400, false, true),
            }
        }
        match c.buf.fill(&mut c.stream, set.idle).await {
            Ok(0) | Err(Fail::Broken) => return Next::Drop,
            Ok(_) => {}
            // Idle between requests: closed without a word; inside a head: 408.
            Err(_) if c.buf.is_empty() => return Next::Close,
            Err(_) => break own(out, 408, false, true),
        }
    };
    match prep {
        Prep::Own { status, close } => send_own(c, out, status, close, &meter, set.idle).await,
        Prep::Forward(f) => forward(set, &site.pool, c, out, f, meter).await,
    }
}

/// Sends the load balancer's own answer (in `out`) and counts it.
async fn send_own(
    c: &mut Client,
    out: &[u8],
    status: u16,
    close: bool,
    meter: &Meter,
    idle: Duration,
) -> Next {
    meter.request();
    meter.elb_answer(status);
    if !write(&mut c.stream, out, idle).await {
        return Next::Drop;
    }
    if close { Next::Linger } else { Next::Again }
}

/// Writes the load balancer's own answer `status` (its error page) to `out`.
fn own(out: &mut Vec<u8>, status: u16, head_request: bool, close: bool) -> Prep {
    let page = h1::error_page(status);
    let answer = (Some("text/html"), None, page.as_bytes());
    own_answer(out, status, answer, head_request, close)
}

/// Writes the load balancer's own answer to `out`: `status` with its content type,
/// location and body (no body to a HEAD request).
fn own_answer(
    out: &mut Vec<u8>,
    status: u16,
    (content_type, location, body): (Option<&str>, Option<&str>, &[u8]),
    head_request: bool,
    close: bool,
) -> Prep {
    out.clear();
    let head = h1::own_answer(out, status, content_type, location, body, close);
    if head_request {
        out.truncate(head);
    }
    Prep::Own { status, close }
}

/// Routes a request whose head is `req`; for a target, writes the head it gets to `out`.
#[allow(clippy::too_many_arguments)]
fn prepare(
    site: &Site,
    set: Settings,
    (peer, ip, local): (SocketAddr, &str, &str),
    req: &httparse::Request,
    out: &mut Vec<u8>,
    meter: &mut Meter,
    last: bool,
) -> Prep {
    let (Some(method), Some(raw), Some(version)) = (req.method, req.path, req.version) else {
        return own(out, 400, false, true);
    };
    let head_request = method == "HEAD";
    // ALB's quotas ("Quotas for your Application Load Balancers"): a request line and
    // each header of at most 16K (the whole head's 64K is `h1::MAX_HEAD`).
    let too_long = method.len() + raw.len() > h1::MAX_LINE
        || req
            .headers
            .iter()
            .any(|h| h.name.len() + h.value.len() > h1::MAX_LINE);
    let Some(t) = h1::target(raw).filter(|_| !too_long) else {
        return own(out, 400, head_request, true);
    };
    let v10 = version == 0;
    // ALB's desync mitigation: the mode's answer to the request's class, before its
    // framing (a request without one is a 400 in every mode: RFC 9112 6.3 items 4-5).
    let class = desync::classify(
        method.as_bytes(),
        raw.as_bytes(),
        if v10 { b"HTTP/1.0" } else { b"HTTP/1.1" },
        req.headers,
    );
    if class.class() != desync::Class::Compliant {
        if meter.listener.is_none() {
            meter.listener = site.elb.listener_meter(&site.listener);
        }
        meter.non_compliant();
    }
    let close_target = match set.desync.action(class.class()) {
        desync::Action::Block => return own(out, 400, head_request, true),
        desync::Action::ForwardThenClose => true,
        desync::Action::Forward => false,
    };
    let Ok((framing, ambiguous)) = h1::request_framing(req.headers) else {
        return own(out, 400, head_request, true);
    };
    let conn = h1::Connection::of(req.headers);
    // ALB passes WebSocket upgrades through (ALB User Guide, "Listeners": WebSockets).
    let upgrade = !v10
        && framing == Framing::None
        && conn.named.iter().any(|n| n.eq_ignore_ascii_case("upgrade"))
        && h1::values(req.headers, "upgrade").next().is_some();
    let mut hosts = h1::values(req.headers, "host");
    let host = hosts.next();
    // RFC 9112 3.2: an HTTP/1.1 request without Host, or with two, is a 400.
    if hosts.next().is_some() || (!v10 && host.is_none() && t.authority.is_none()) {
        return own(out, 400, head_request, true);
    }
    // The client's connection closes after this answer when it asks, when the request's
    // framing was ambiguous (RFC 9112 6.3), and past `client_keep_alive.seconds`.
    let close = last || ambiguous || close_target || conn.close || (v10 && !conn.keep_alive);
    // Body unread by the load balancer's own answers: the connection cannot go on.
    let own_close = close || framing != Framing::None;
    // ALB does not support TRACE (its 405); a CONNECT tunnel is not a load balancer's.
    if method == "TRACE" || method == "CONNECT" {
        return own(out, 405, head_request, own_close);
    }
    let view = super::rules::Request {
        method,
        host: t.authority.or(host),
        path: t.path,
        query: t.query,
        headers: req.headers,
        source: peer.ip(),
    };
    let (addr, stick, hold) = match site
        .elb
        .route(&site.listener, Some(&view), peer.ip(), meter)
    {
        Pick::Target(a, stick, hold, _) => (a, stick, hold),
        Pick::NoTarget | Pick::Gone => return own(out, 503, head_request, own_close),
        Pick::Fixed {
            status,
            content_type,
            body,
        } => {
            let answer = (content_type.as_deref(), None, body.as_bytes());
            return own_answer(out, status, answer, head_request, own_close);
        }
        Pick::Redirect { status, location } => {
            let answer = (None, Some(location.as_str()), &b""[..]);
            return own_answer(out, status, answer, head_request, own_close);
        }
    };
    let incoming = Incoming {
        method,
        target: &t,
        conn: &conn,
        upgrade,
        ambiguous,
        host,
        local,
        ip,
    };
    target_head(out, site, &set, req, &incoming);
    Prep::Forward(Forward {
        addr,
        stick,
        hold,
        framing,
        head_request,
        close,
        close_target,
        v10,
        upgrade,
    })
}

/// What of a client's request the head sent to its target follows.
struct Incoming<'a> {
    method: &'a str,
    target: &'a h1::Target<'a>,
    conn: &'a h1::Connection<'a>,
    /// A WebSocket upgrade passed through.
    upgrade: bool,
    /// Its framing was ambiguous (RFC 9112 6.3): its Content-Length is not sent.
    ambiguous: bool,
    host: Option<&'a str>,
    /// The address it came to, and its client's.
    local: &'a str,
    ip: &'a str,
}

/// Writes to `out` the head a target gets of request `req`: its fields but those ALB
/// drops or sets itself, then `Host`, `X-Forwarded-*` and the trace id as `set` says.
fn target_head(
    out: &mut Vec<u8>,
    site: &Site,
    set: &Settings,
    req: &httparse::Request,
    i: &Incoming,
) {
    out.extend_from_slice(i.method.as_bytes());
    out.push(b' ');
    i.target.write(out);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    // Those `X-Forwarded-For` the request has, joined (an allocation only when it has one).
    let mut xff = Vec::new();
    let mut trace = None;
    // ALB adds the listener's port to a `Host` without one.
    let host_port = !set.preserve_host && site.port != 80;
    for h in req.headers.iter() {
        let name = h.name;
        if i.upgrade && name.eq_ignore_ascii_case("upgrade") {
            h1::field(out, name, h.value);
            continue;
        }
        if i.conn.drops(name)
            || name.eq_ignore_ascii_case("x-forwarded-proto")
            || name.eq_ignore_ascii_case("x-forwarded-port")
            || (i.ambiguous && name.eq_ignore_ascii_case("content-length"))
            || (set.drop_invalid && !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        {
            continue;
        }
        if name.eq_ignore_ascii_case("host") {
            if i.target.authority.is_none() {
                h1::field(out, name, h.value);
                if host_port && !has_port(h.value) {
                    out.truncate(out.len() - 2);
                    out.push(b':');
                    out.extend_from_slice(itoa::Buffer::new().format(site.port).as_bytes());
                    out.extend_from_slice(b"\r\n");
                }
            }
            continue;
        }
        if name.eq_ignore_ascii_case("x-amzn-trace-id") {
            trace = Some(h.value);
            continue;
        }
        if name.eq_ignore_ascii_case("x-forwarded-for") {
            match set.xff {
                Xff::Append => {
                    xff.extend_from_slice(h.value);
                    xff.extend_from_slice(b", ");
                }
                Xff::Preserve => h1::field(out, name, h.value),
                Xff::Remove => {}
            }
            continue;
        }
        h1::field(out, name, h.value);
    }
    // The absolute form's authority is the request's host (RFC 9112 3.2.2); an
    // HTTP/1.0 request without one is for the address it came to.
    match (i.target.authority, i.host) {
        (Some(a), _) => h1::field(out, "Host", a.as_bytes()),
        (None, None) => h1::field(out, "Host", i.local.as_bytes()),
        _ => {}
    }
    // The client's address after those the request names already.
    if set.xff == Xff::Append {
        xff.extend_from_slice(i.ip.as_bytes());
        h1::field(out, "X-Forwarded-For", &xff);
    }
    out.extend_from_slice(b"X-Forwarded-Proto: http\r\nX-Forwarded-Port: ");
    out.extend_from_slice(itoa::Buffer::new().format(site.port).as_bytes());
    out.extend_from_slice(b"\r\n");
    h1::trace_id(out, trace);
    if i.upgrade {
        out.extend_from_slice(b"Connection: Upgrade\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Whether a `Host` value names a port (`host:port`, `[v6]:port`).
fn has_port(host: &[u8]) -> bool {
    match host.iter().rposition(|b| *b == b':') {
        Some(i) => !host[i..].contains(&b']'),
        None => false,
    }
}

/// Where a body is: what is left of a `Content-Length`, or the chunks' state.
enum Body {
    Length(u64),
    Chunks(Chunks),
}

impl Body {
    fn of(f: Framing) -> Body {
        match f {
            Framing::Chunked => Body::Chunks(Chunks::default()),
            Framing::Length(n) => Body::Length(n),
            Framing::None | Framing::Close => Body::Length(0),
        }
    }

    fn done(&self) -> bool {
        match self {
            Body::Length(n) => *n == 0,
            Body::Chunks(c) => c.done(),
        }
    }

    /// How much of `bytes` is the body's (as it came: the coding kept).
    fn take(&mut self, bytes: &[u8]) -> Result<usize, Fail> {
        match self {
            Body::Length(n) => {
                let k = bytes.len().min(usize::try_from(*n).unwrap_or(usize::MAX));
                *n -= k as u64;
                Ok(k)
            }
            Body::Chunks(c) => c.feed(bytes, |_| ()).map_err(|_| Fail::Bad),
        }
    }
}

/// Passes a request's body on from the client (after what `out` had of it) to the target.
async fn send_body<R, W>(
    cr: &mut R,
    buf: &mut Buf,
    tw: &mut W,
    body: &mut Body,
    idle: Duration,
) -> Result<(), Fail>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    while !body.done() {
        if buf.is_empty() && buf.fill(cr, idle).await.unwrap_or(0) == 0 {
            return Err(Fail::Client);
        }
        let k = body.take(buf.bytes()).map_err(|_| Fail::Client)?;
        if !write(tw, &buf.bytes()[..k], idle).await {
            return Err(Fail::Broken);
        }
        buf.consume(k);
    }
    Ok(())
}

/// The head of a target's answer as it reached the client, and how its body comes.
struct Answer {
    status: u16,
    body: Relay,
    /// The target keeps its connection open after this answer.
    keeps: bool,
    /// The client's connection closes after this answer.
    close: bool,
}

/// How a target's answer's body reaches the client.
enum Relay {
    /// As it came, to its end (`Content-Length` or chunked, coding kept; nothing).
    Pass(Body),
    /// Chunked from the target, without its coding to an HTTP/1.0 client.
    Dechunk(Chunks),
    /// To the target's close, chunked to an HTTP/1.1 client.
    Rechunk,
    /// To the target's close, as it came (the client's connection then closes).
    Raw,
    /// Protocols switched: both ways, as they come, until either side closes.
    Tunnel,
}

/// Reads the head of the target's answer, passing interim answers (1xx) to the client,
/// and writes the head the client gets to `head` (in place of what it held; nothing
/// when there is no answer).
async fn answer_head<R, W>(
    tr: &mut R,
    buf: &mut Buf,
    cw: &mut W,
    f: &Forward,
    idle: Duration,
    head: &mut Vec<u8>,
) -> Result<Answer, Fail>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    loop {
        if !buf.is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; h1::MAX_HEADERS];
            let mut r = httparse::Response::new(&mut headers);
            let (n, got) = match r.parse(buf.bytes()) {
                Ok(httparse::Status::Complete(n)) => match r.code {
                    // An interim answer: on to the client (not an HTTP/1.0 one), as it came.
                    Some(c) if (100..200).contains(&c) && c != 101 => (n, None),
                    Some(101) if f.upgrade => (n, Some(switched(&r, head))),
                    Some(101) | None => return Err(Fail::Bad),
                    Some(_) => (n, Some(client_head(&r, f, head)?)),
                },
                Ok(httparse::Status::Partial) if buf.bytes().len() <= h1::MAX_HEAD => (0, None),
                _ => return Err(Fail::Bad),
            };
            if let Some(a) = got {
                buf.consume(n);
                return Ok(a);
            }
            if n > 0 {
                if !f.v10 && !write(cw, &buf.bytes()[..n], idle).await {
                    return Err(Fail::Client);
                }
                buf.consume(n);
                continue;
            }
        }
        match buf.fill(tr, idle).await {
            Ok(0) => return Err(Fail::Broken),
            Ok(_) => {}
            Err(e) => return Err(e),
        }
    }
}

/// The head of a target's `101 Switching Protocols` as the client gets it: as it came
/// (its `Connection` and `Upgrade` are the switch's).
fn switched(r: &httparse::Response, out: &mut Vec<u8>) -> Answer {
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 101 ");
    out.extend_from_slice(r.reason.unwrap_or("Switching Protocols").as_bytes());
    out.extend_from_slice(b"\r\n");
    for h in r.headers.iter() {
        h1::field(out, h.name, h.value);
    }
    out.extend_from_slice(b"\r\n");
    Answer {
        status: 101,
        body: Relay::Tunnel,
        keeps: false,
        close: true,
    }
}

/// The head of the target's answer `r` as the client gets it.
fn client_head(r: &httparse::Response, f: &Forward, out: &mut Vec<u8>) -> Result<Answer, Fail> {
    let status = r.code.ok_or(Fail::Bad)?;
    let framing = h1::response_framing(status, f.head_request, r.headers).map_err(|_| Fail::Bad)?;
    let conn = h1::Connection::of(r.headers);
    // RFC 9112 9.3.
    let keeps = framing != Framing::Close
        && if r.version == Some(0) {
            conn.keep_alive
        } else {
            !conn.close
        };
    let coded =
        framing == Framing::Close && h1::values(r.headers, "transfer-encoding").next().is_some();
    let body = match framing {
        Framing::None => Relay::Pass(Body::Length(0)),
        Framing::Length(n) => Relay::Pass(Body::Length(n)),
        Framing::Chunked if f.v10 => Relay::Dechunk(Chunks::default()),
        Framing::Chunked => Relay::Pass(Body::Chunks(Chunks::default())),
        Framing::Close if f.v10 || coded => Relay::Raw,
        Framing::Close => Relay::Rechunk,
    };
    let close = f.close || matches!(body, Relay::Dechunk(_) | Relay::Raw);
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
    out.push(b' ');
    out.extend_from_slice(r.reason.unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let app = f.stick.app.as_ref().map(|(name, _)| name.as_str());
    let mut sets_app = false;
    for h in r.headers.iter() {
        if conn.drops(h.name)
            || (matches!(body, Relay::Dechunk(_))
                && (h.name.eq_ignore_ascii_case("transfer-encoding")
                    || h.name.eq_ignore_ascii_case("content-length")))
        {
            continue;
        }
        if let Some(app) = app
            && h.name.eq_ignore_ascii_case("set-cookie")
            && std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.split_once('='))
                .is_some_and(|(n, _)| n.trim() == app)
        {
            sets_app = true;
        }
        h1::field(out, h.name, h.value);
    }
    if matches!(body, Relay::Rechunk) {
        out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
    }
    // The sticky sessions' cookies (`super::sticky`): the load balancer's own, and the
    // application-based one when the answer sets the application's cookie.
    let app_cookies = f.stick.app.iter().filter(|_| sets_app).flat_map(|(_, c)| c);
    for c in f.stick.set_cookies.iter().chain(app_cookies) {
        h1::field(out, "Set-Cookie", c.as_bytes());
    }
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if f.v10 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Ok(Answer {
        status,
        body,
        keeps,
        close,
    })
}

/// Passes a target's answer's body on to the client (after its head, in `out`); whether
/// it ended as its framing says (else the connection to the target cannot be kept).
async fn relay(
    link: &mut Link,
    cw: &mut TcpStream,
    a: &mut Answer,
    out: &mut Vec<u8>,
    idle: Duration,
) -> Result<(), Fail> {
    let mut ended = false;
    loop {
        let bytes = link.buf.bytes();
        let (k, done) = match &mut a.body {
            Relay::Pass(b) => {
                let k = b.take(bytes)?;
                if out.is_empty() {
                    // Straight from what was read.
                    if k > 0 && !write(cw, &bytes[..k], idle).await {
                        return Err(Fail::Client);
                    }
                } else {
                    out.extend_from_slice(&bytes[..k]);
                }
                (k, b.done())
            }
            Relay::Dechunk(c) => {
                let k = c
                    .feed(bytes, |d| out.extend_from_slice(d))
                    .map_err(|_| Fail::Bad)?;
                (k, c.done())
            }
            Relay::Rechunk => {
                h1::chunk(out, bytes);
                if ended {
                    out.extend_from_slice(h1::LAST_CHUNK);
                }
                (bytes.len(), ended)
            }
            Relay::Raw => {
                out.extend_from_slice(bytes);
                (bytes.len(), ended)
            }
            Relay::Tunnel => {
                out.extend_from_slice(bytes);
                (bytes.len(), true)
            }
        };
        link.buf.consume(k);
        if !out.is_empty() {
            if !write(cw, out, idle).await {
                return Err(Fail::Client);
            }
            out.clear();
        }
        if done {
            return Ok(());
        }
        match link.buf.fill(&mut link.stream, idle).await {
            Ok(0) if matches!(a.body, Relay::Rechunk | Relay::Raw) => ended = true,
            Ok(0) => return Err(Fail::Broken),
            Ok(_) => {}
            Err(e) => return Err(e),
        }
    }
}

async fn connect(addr: SocketAddr) -> Result<Link, u16> {
    match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            Ok(Link {
                stream,
                buf: Buf::default(),
                idle_since: Instant::now(),
            })
        }
        Ok(Err(_)) => Err(502),
        Err(_) => Err(504),
    }
}

/// Forwards a request (its head in `out`) to its target and passes the answer back.
async fn forward(
    set: Settings,
    pool: &Pool,
    c: &mut Client,
    out: &mut Vec<u8>,
    f: Forward,
    meter: Meter,
) -> Next {
    let idle = set.idle;
    // The body's bytes read with the head go with it.
    let mut body = Body::of(f.framing);
    match body.take(c.buf.bytes()) {
        Ok(k) => {
            out.extend_from_slice(&c.buf.bytes()[..k]);
            c.buf.consume(k);
        }
        Err(_) => return finish_own(c, out, 400, true, &meter, &f, idle).await,
    }
    let at = Instant::now();
    let (mut link, mut reused) = match pool.take(f.addr) {
        Some(l) => (l, true),
        None => match connect(f.addr).await {
            Ok(l) => (l, false),
            Err(status) => {
                let close = f.close || !body.done();
                return finish_own(c, out, status, close, &meter, &f, idle).await;
            }
        },
    };
    // The whole request is in `out`: it can be sent again. (`out` takes the answer's head
    // once it is in: `answer_head` writes nothing before.)
    let whole = body.done();
    let got = loop {
        let got = if !write(&mut link.stream, out, idle).await {
            Err(Fail::Broken)
        } else if body.done() {
            answer_head(
                &mut link.stream,
                &mut link.buf,
                &mut c.stream,
                &f,
                idle,
                out,
            )
            .await
        } else {
            // The body goes on while the answer's head is awaited: a target may answer
            // before it has all of it, and `100 Continue` must reach the client first.
            let (mut cr, mut cw) = c.stream.split();
            let (mut tr, mut tw) = link.stream.split();
            let mut sending =
                std::pin::pin!(send_body(&mut cr, &mut c.buf, &mut tw, &mut body, idle));
            let mut head =
                std::pin::pin!(answer_head(&mut tr, &mut link.buf, &mut cw, &f, idle, out));
            let mut sent = false;
            std::future::poll_fn(|cx| {
                if !sent && let Poll::Ready(r) = sending.as_mut().poll(cx) {
                    sent = true;
                    // A client gone ends it; a target that stopped reading may answer yet.
                    if r == Err(Fail::Client) {
                        return Poll::Ready(Err(Fail::Client));
                    }
                }
                head.as_mut().poll(cx)
            })
            .await
        };
        // A kept-alive connection the target closed before the request got there: once
        // more on a fresh one, when the request is all in `out`.
        if reused && whole && got.as_ref().is_err_and(|e| *e == Fail::Broken) && link.buf.is_empty()
        {
            match connect(f.addr).await {
                Ok(l) => {
                    (link, reused) = (l, false);
                    continue;
                }
                Err(status) => return finish_own(c, out, status, f.close, &meter, &f, idle).await,
            }
        }
        break got;
    };
    let mut a = match got {
        Ok(a) => a,
        Err(Fail::Client) => return Next::Drop,
        Err(e) => {
            let status = if e == Fail::Timeout { 504 } else { 502 };
            return finish_own(c, out, status, f.close || !body.done(), &meter, &f, idle).await;
        }
    };
    meter.request();
    meter.target_answer(a.status, at.elapsed());
    f.hold.outcome(a.status >= 500);
    // The request's body not all sent (the target answered first): the client's
    // connection cannot go on, nor the target's.
    let unsent = !body.done();
    if unsent && !a.close {
        closing(out);
    }
    let relayed = relay(&mut link, &mut c.stream, &mut a, out, idle).await;
    if matches!(a.body, Relay::Tunnel) && relayed.is_ok() {
        // The client's bytes read after its request are the new protocol's.
        if !c.buf.is_empty() && !write(&mut link.stream, c.buf.bytes(), idle).await {
            return Next::Drop;
        }
        drop(f.hold);
        tunnel(&mut c.stream, &mut link.stream, idle).await;
        return Next::Drop;
    }
    drop(f.hold);
    match relayed {
        Ok(()) if a.keeps && !unsent && !f.close_target && link.buf.is_empty() => {
            pool.put(f.addr, link)
        }
        Ok(()) => {}
        Err(_) => return Next::Drop,
    }
    if unsent {
        Next::Linger
    } else if a.close {
        Next::Close
    } else {
        Next::Again
    }
}

/// Passes bytes both ways between a client and its target (protocols switched) until
/// either side closes or both are silent for `idle` (ALB's idle timeout on a WebSocket).
async fn tunnel(a: &mut TcpStream, b: &mut TcpStream, idle: Duration) {
    let (mut ar, mut aw) = a.split();
    let (mut br, mut bw) = b.split();
    let (mut from_a, mut from_b) = (vec![0u8; READ_SIZE], vec![0u8; READ_SIZE]);
    let mut deadline = tokio::time::Instant::now() + idle;
    loop {
        let moved = tokio::select! {
            r = ar.read(&mut from_a) => match r {
                Ok(n) if n > 0 => bw.write_all(&from_a[..n]).await.is_ok(),
                _ => false,
            },
            r = br.read(&mut from_b) => match r {
                Ok(n) if n > 0 => aw.write_all(&from_b[..n]).await.is_ok(),
                _ => false,
            },
            _ = tokio::time::sleep_until(deadline) => false,
        };
        if !moved {
            // Each side is told the other's end.
            let _ = aw.shutdown().await;
            let _ = bw.shutdown().await;
            return;
        }
        deadline = tokio::time::Instant::now() + idle;
    }
}

/// Makes the head of an answer say `Connection: close` (instead of `keep-alive`).
fn closing(head: &mut Vec<u8>) {
    const KEEP: &[u8] = b"Connection: keep-alive\r\n\r\n";
    if head.ends_with(KEEP) {
        head.truncate(head.len() - KEEP.len());
    } else {
        head.truncate(head.len() - 2);
    }
    head.extend_from_slice(b"Connection: close\r\n\r\n");
}

/// Answers the load balancer's own error `status` to a request that was to go to a
/// target.
async fn finish_own(
    c: &mut Client,
    out: &mut Vec<u8>,
    status: u16,
    close: bool,
    meter: &Meter,
    f: &Forward,
    idle: Duration,
) -> Next {
    f.hold.outcome(true);
    own(out, status, f.head_request, close);
    send_own(c, out, status, close, meter, idle).await
}

#[cfg(test)]
#[path = "proxy_tests.rs"]
mod tests;
