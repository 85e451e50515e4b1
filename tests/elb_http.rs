//! HTTP/1.1 as a client of an application load balancer's HTTP listener sees it, byte for
//! byte over a raw TCP connection: keep-alive, forwarded and hop-by-hop headers, request
//! and response framing (Content-Length, chunked, close-delimited, HEAD/204/304, 100
//! Continue), HTTP/1.0 clients, pipelining, malformed requests and targets, smuggling.
//! The target is tests/elb_http.d/target.rs (std only, built here with `rustc`), run on
//! loopback as an `ip` target, which reports each request as it arrived.
//! Refs: RFC 9112 (HTTP/1.1), RFC 9110 (semantics); AWS's "HTTP headers and Application
//! Load Balancers", "Quotas for your Application Load Balancers" and "Troubleshoot your
//! Application Load Balancers" (HTTP 400/502/503).

use crate::common;

use common::api::Api;
use common::elb::{create_alb, elbv2, http_listener, http_target_group};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

/// The target program, built once per test binary into `dir`, running on a free loopback
/// port; killed on drop.
struct Target {
    child: std::process::Child,
    port: u16,
}

impl Target {
    fn start(dir: &std::path::Path) -> Target {
        let bin = dir.join("h1-target");
        let src = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/elb_http.d/target.rs");
        let out = std::process::Command::new("rustc")
            .args(["-O", "--edition", "2021", "-o"])
            .arg(&bin)
            .arg(src)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "rustc {src}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = common::util::free_port();
        let child = std::process::Command::new(&bin)
            .arg(port.to_string())
            .spawn()
            .unwrap();
        common::util::wait_until("the target listens", Duration::from_secs(10), || {
            TcpStream::connect(("127.0.0.1", port)).ok()
        });
        Target { child, port }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One serve, one load balancer, the target registered (and healthy) in a group behind
/// listener `port`; a group with no target behind `empty_port`; a group whose one target
/// is a loopback port nothing listens on behind `dead_port`.
struct Lb {
    _target: Target,
    _dir: tempfile::TempDir,
    ip: String,
    dns: String,
    arn: String,
    port: u16,
    empty_port: u16,
    dead_port: u16,
    _api: Api,
}

fn setup(name: &str) -> Lb {
    let dir = tempfile::Builder::new()
        .prefix("mf-elb-http-")
        .tempdir()
        .unwrap();
    let target = Target::start(dir.path());
    let api = Api::start();
    let alb = create_alb(&api, name);
    let tg = http_target_group(&api, &format!("{name}-tg"), 0);
    let empty = http_target_group(&api, &format!("{name}-empty"), 0);
    let dead = http_target_group(&api, &format!("{name}-dead"), 0);
    let ports = [
        common::util::free_port(),
        common::util::free_port(),
        common::util::free_port(),
    ];
    for (p, g) in ports.iter().zip([&tg, &empty, &dead]) {
        http_listener(&api, &alb.arn, &p.to_string(), g);
    }
    let register = |g: &str, port: u16| {
        elbv2(
            &api,
            &[
                "register-targets",
                "--target-group-arn",
                g,
                "--targets",
                &format!("Id=127.0.0.1,Port={port}"),
            ],
        );
    };
    register(&tg, target.port);
    register(&dead, common::util::free_port());
    api.wait_for(30, "the target healthy", || {
        let h = elbv2(&api, &["describe-target-health", "--target-group-arn", &tg]);
        (h["TargetHealthDescriptions"][0]["TargetHealth"]["State"] == "healthy").then_some(())
    });
    for p in ports {
        api.wait_for(10, "the listeners", || {
            TcpStream::connect((alb.ip.as_str(), p)).ok()
        });
    }
    Lb {
        _target: target,
        _dir: dir,
        ip: alb.ip,
        dns: alb.dns,
        arn: alb.arn,
        port: ports[0],
        empty_port: ports[1],
        dead_port: ports[2],
        _api: api,
    }
}

/// An answer as the client read it.
struct Resp {
    version: String,
    status: u16,
    headers: Vec<(String, String)>,
    /// The body de-framed.
    body: Vec<u8>,
    /// The body's bytes as they came (with any chunk framing).
    raw: Vec<u8>,
}

impl std::fmt::Debug for Resp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = self.text();
        let shown: String = text.chars().take(400).collect();
        write!(
            f,
            "{} {} {:?} body ({} bytes): {shown:?}",
            self.version,
            self.status,
            self.headers,
            self.body.len()
        )
    }
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// The echoed request head's lines (for `/echo`): request line first.
    fn echoed(&self) -> Vec<String> {
        let t = self.text();
        let head = t.split("\r\n\r\n").next().unwrap_or("").to_string();
        head.split("\r\n").map(str::to_string).collect()
    }
    fn echoed_header(&self, name: &str) -> Option<String> {
        self.echoed().iter().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
    fn echoed_body(&self) -> &[u8] {
        let at = self
            .body
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("an echoed head");
        &self.body[at + 4..]
    }
}

/// A raw client connection to a listener.
struct Conn {
    r: BufReader<TcpStream>,
}

impl Conn {
    fn open(ip: &str, port: u16) -> Conn {
        let s = TcpStream::connect((ip, port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Conn {
            r: BufReader::new(s),
        }
    }
    fn send(&mut self, bytes: &[u8]) {
        self.r.get_mut().write_all(bytes).unwrap();
    }
    fn client_ip(&self) -> String {
        self.r.get_ref().local_addr().unwrap().ip().to_string()
    }
    fn line(&mut self) -> String {
        let mut l = Vec::new();
        self.r.read_until(b'\n', &mut l).unwrap();
        String::from_utf8_lossy(&l).trim_end().to_string()
    }
    /// The next answer, `head` when it answers a HEAD (no body whatever it says).
    fn read(&mut self, head: bool) -> Resp {
        let status_line = self.line();
        assert!(
            !status_line.is_empty(),
            "the connection closed before an answer"
        );
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap().to_string();
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("a status line: {status_line:?}"));
        let mut headers = Vec::new();
        loop {
            let l = self.line();
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':').expect("a header line");
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
        let mut resp = Resp {
            version,
            status,
            headers,
            body: Vec::new(),
            raw: Vec::new(),
        };
        if head || status / 100 == 1 || status == 204 || status == 304 {
            return resp;
        }
        let chunked = resp
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().ends_with("chunked"));
        if chunked {
            loop {
                let size_line = self.line();
                resp.raw.extend_from_slice(size_line.as_bytes());
                resp.raw.extend_from_slice(b"\r\n");
                let size = usize::from_str_radix(size_line.split(';').next().unwrap().trim(), 16)
                    .unwrap_or_else(|_| panic!("a chunk size: {size_line:?}"));
                if size == 0 {
                    loop {
                        let t = self.line();
                        if t.is_empty() {
                            break;
                        }
                    }
                    return resp;
                }
                let mut chunk = vec![0; size];
                self.r.read_exact(&mut chunk).unwrap();
                resp.body.extend_from_slice(&chunk);
                resp.raw.extend_from_slice(&chunk);
                assert_eq!(self.line(), "", "a chunk's CRLF");
            }
        }
        if let Some(n) = resp.header("content-length") {
            let mut body = vec![0; n.parse().unwrap()];
            self.r.read_exact(&mut body).unwrap();
            resp.raw = body.clone();
            resp.body = body;
            return resp;
        }
        self.r.read_to_end(&mut resp.body).unwrap();
        resp.raw = resp.body.clone();
        resp
    }
    /// Whether the other side closes the connection within `secs` with nothing more sent
    /// (a reset counts as closed).
    fn closed_within(&mut self, secs: u64) -> bool {
        self.r
            .get_ref()
            .set_read_timeout(Some(Duration::from_secs(secs)))
            .unwrap();
        let mut b = [0u8; 1];
        let got = self.r.read(&mut b);
        self.r
            .get_ref()
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        match got {
            Ok(0) => true,
            Ok(_) => panic!("more bytes after the answer: {:?}", b),
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: lb\r\n\r\n").into_bytes()
}

/// Byte `i` of the target's `/big` pattern.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// The body the target's `/chunked?n=K` sends, de-framed.
fn chunks(n: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| format!("chunk {i} of {n}\n").into_bytes())
        .collect()
}

// 1. Keep-alive and ALB's X-Forwarded headers. Ref: AWS "HTTP headers and Application Load
// Balancers": X-Forwarded-For (the client's address appended to any the request carried),
// X-Forwarded-Proto, X-Forwarded-Port (the listener's port).
fn keep_alive_and_forwarded_headers(lb: &Lb) {
    let mut c = Conn::open(&lb.ip, lb.port);
    let client = c.client_ip();
    c.send(&get("/echo?n=1"));
    let a = c.read(false);
    assert_eq!((a.version.as_str(), a.status), ("HTTP/1.1", 200), "{a:?}");
    assert_eq!(
        a.echoed_header("x-forwarded-for"),
        Some(client.clone()),
        "{a:?}"
    );
    assert_eq!(
        a.echoed_header("x-forwarded-proto").as_deref(),
        Some("http")
    );
    assert_eq!(
        a.echoed_header("x-forwarded-port"),
        Some(lb.port.to_string())
    );
    c.send(b"GET /echo?n=2 HTTP/1.1\r\nHost: lb\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n");
    let b = c.read(false);
    assert_eq!(b.status, 200, "{b:?}");
    assert_eq!(b.echoed()[0], "GET /echo?n=2 HTTP/1.1");
    assert_eq!(
        b.echoed_header("x-forwarded-for"),
        Some(format!("1.2.3.4, {client}"))
    );
}

// 2. Hop-by-hop headers stay on their hop, both ways. Ref: RFC 9110 7.6.1 (Connection and
// the fields it names, Keep-Alive, TE, Upgrade...), 11.7.1/11.7.2 (Proxy-Authenticate,
// Proxy-Authorization are for the proxy).
fn hop_by_hop_headers_are_not_forwarded(lb: &Lb) {
    let mut c = Conn::open(&lb.ip, lb.port);
    c.send(
        b"GET /echo HTTP/1.1\r\nHost: lb\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\n\
          Keep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Authorization: Basic YTpi\r\n\
          Upgrade: foo/1\r\nX-End-To-End: yes\r\n\r\n",
    );
    let a = c.read(false);
    assert_eq!(a.status, 200, "{a:?}");
    for h in [
        "x-secret",
        "keep-alive",
        "te",
        "proxy-authorization",
        "upgrade",
    ] {
        assert_eq!(a.echoed_header(h), None, "{h} forwarded: {:?}", a.echoed());
    }
    assert_eq!(a.echoed_header("x-end-to-end").as_deref(), Some("yes"));
    c.send(&get("/hop"));
    let b = c.read(false);
    assert_eq!((b.status, b.text().as_str()), (200, "hop"), "{b:?}");
    assert_eq!(b.header("x-resp-secret"), None, "{b:?}");
    assert_eq!(b.header("proxy-authenticate"), None, "{b:?}");
    assert_ne!(b.header("keep-alive"), Some("timeout=5"), "{b:?}");
    assert_eq!(b.header("x-kept"), Some("yes"), "{b:?}");
}

// 3. Request bodies arrive byte-exact, framed by Content-Length or chunked (RFC 9112 6, 7.1).
fn request_bodies_arrive_byte_exact(lb: &Lb) {
    let body = common::util::random_bytes(7, 1 << 20);
    let mut c = Conn::open(&lb.ip, lb.port);
    c.send(
        format!(
            "POST /echo HTTP/1.1\r\nHost: lb\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    c.send(&body);
    let a = c.read(false);
    assert_eq!(a.status, 200, "{a:?}");
    assert!(
        a.echoed_body() == body.as_slice(),
        "a 1 MiB body changed on its way"
    );

    c.send(b"POST /echo HTTP/1.1\r\nHost: lb\r\nTransfer-Encoding: chunked\r\n\r\n");
    let mut sent = Vec::new();
    for (i, part) in body.chunks(100_000).take(5).enumerate() {
        std::thread::sleep(Duration::from_millis(20));
        c.send(format!("{:x};ext={i}\r\n", part.len()).as_bytes());
        c.send(part);
        c.send(b"\r\n");
        sent.extend_from_slice(part);
    }
    c.send(b"0\r\n\r\n");
    let b = c.read(false);
    assert_eq!(b.status, 200, "{b:?}");
    assert!(
        b.echoed_body() == sent.as_slice(),
        "a chunked body changed on its way"
    );
}

// 4. A chunked answer arrives whole, and the connection serves the next request.
fn a_chunked_answer_arrives_whole(lb: &Lb) {
    let mut c = Conn::open(&lb.ip, lb.port);
    c.send(&get("/chunked?n=7"));
    let a = c.read(false);
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body, chunks(7));
    c.send(&get("/echo"));
    assert_eq!(c.read(false).status, 200);
}

// 5. An answer delimited by the target's close (RFC 9112 6.3, item 8) arrives whole and the
// client's connection stays usable: ALB keeps client and target connections apart (AWS
// "HTTP connections": the load balancer manages client and target connections separately),
// so it frames the body for its client (chunked, or Content-Length after reading it).
fn a_close_delimited_answer_arrives_whole_and_the_client_keeps_its_connection(lb: &Lb) {
    let mut c = Conn::open(&lb.ip, lb.port);
    c.send(&get("/close"));
    let a = c.read(false);
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(
        a.text(),
        "a body delimited by the close of the connection\n"
    );
    assert!(
        a.header("content-length").is_some() || a.header("transfer-encoding").is_some(),
        "the answer to the client is close-delimited too: {a:?}"
    );
    c.send(&get("/echo"));
    assert_eq!(c.read(false).status, 200);
}

// 6. HEAD, 204 and 304 answers have no body whatever their headers say (RFC 9112 6.3 items
// 1-2), and the next answer on the connection is read right.
fn head_204_and_304_have_no_body(lb: &Lb) {
    let mut c = Conn::open(&lb.ip, lb.port);
    c.send(b"HEAD /big?bytes=1000 HTTP/1.1\r\nHost: lb\r\n\r\n");
    let a = c.read(true);
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.header("content-length"), Some("1000"), "{a:?}");
    for path in ["/status/204", "/status/304"] {
        c.send(&get("/echo?after=head"));
        let b = c.read(false);
        assert_eq!(b.echoed()[0], "GET /echo?after=head HTTP/1.1", "{b:?}");
        c.send(&get(path));
        let s = c.read(false);
        assert_eq!(s.status.to_string(), path[8..], "{s:?}");
    }
    c.send(&get("/echo?after=304"));
    let b = c.read(false);
    assert_eq!(b.echoed()[0], "GET /echo?after=304 HTTP/1.1", "{b:?}");
}

// 7. `Expect: 100-continue`: the client gets `100 Continue` before it sends the body (RFC
// 9110 10.1.1), then the final answer.
fn expect_100_continue(lb: &Lb) {
    let mut c = Conn::open(&lb.ip, lb.port);
    c.r.get_ref()
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    c.send(b"POST /continue HTTP/1.1\r\nHost: lb\r\nExpect: 100-continue\r\nContent-Length: 11\r\n\r\n");
    let cont = c.read(false);
    assert_eq!(cont.status, 100, "{cont:?}");
    c.send(b"hello world");
    let a = c.read(false);
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.echoed_body(), b"hello world");
}

// 8. HTTP/1.0 clients (RFC 9112 9.3: 1.0 closes unless it asked to keep alive; a chunked
// answer cannot go to a 1.0 client, RFC 9112 7: "A server MUST NOT send a response
// containing Transfer-Encoding unless the corresponding request indicates HTTP/1.1").
fn http_1_0_clients(lb: &Lb) {
    let mut c = Conn::open(&lb.ip, lb.port);
    c.send(b"GET /echo HTTP/1.0\r\n\r\n");
    let a = c.read(false);
    assert_eq!(a.status, 200, "{a:?}");
    assert!(a.text().starts_with("GET /echo HTTP/1."), "{a:?}");
    assert!(c.closed_within(5), "a 1.0 connection left open");

    let mut c = Conn::open(&lb.ip, lb.port);
    c.send(b"GET /echo?ka=1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let a = c.read(false);
    assert_eq!(a.status, 200, "{a:?}");
    assert!(
        a.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("keep-alive")),
        "{a:?}"
    );
    c.send(b"GET /echo?ka=2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let b = c.read(false);
    assert!(b.text().starts_with("GET /echo?ka=2 HTTP/1."), "{b:?}");

    let mut c = Conn::open(&lb.ip, lb.port);
    c.send(b"GET /chunked?n=4 HTTP/1.0\r\n\r\n");
    let a = c.read(false);
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.header("transfer-encoding"), None, "{a:?}");
    assert_eq!(a.raw, chunks(4), "chunk framing reached a 1.0 client");
}

// 9. Pipelined requests are answered in order (RFC 9112 9.3.2).
fn pipelined_requests_are_answered_in_order(lb: &Lb) {
    let mut c = Conn::open(&lb.ip, lb.port);
    let mut all = Vec::new();
    for i in 1..=3 {
        all.extend(get(&format!("/echo?p={i}")));
    }
    c.send(&all);
    for i in 1..=3 {
        let a = c.read(false);
        assert_eq!(a.echoed()[0], format!("GET /echo?p={i} HTTP/1.1"), "{a:?}");
    }
}

// 10. An absolute-form target reaches the target in origin-form (RFC 9112 3.2.2, 3.2.1).
fn absolute_form_reaches_the_target_in_origin_form(lb: &Lb) {
    let mut c = Conn::open(&lb.ip, lb.port);
    c.send(
        format!(
            "GET http://{}/echo?x=1 HTTP/1.1\r\nHost: {}\r\n\r\n",
            lb.dns, lb.dns
        )
        .as_bytes(),
    );
    let a = c.read(false);
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.echoed()[0], "GET /echo?x=1 HTTP/1.1");
}

// 11. A malformed request is answered 400 and its connection closed (RFC 9112 3); a request
// head over ALB's limits (AWS "Quotas for your Application Load Balancers", HTTP headers:
// request line 16K, single header 16K, whole request header 64K) is refused with 400 (AWS
// "Troubleshoot your Application Load Balancers" lists a header over those limits among the
// causes of the load balancer's HTTP 400; users report ALB's "400 Request Header Or Cookie
// Too Large" page for it).
fn a_malformed_request_gets_400_and_a_close(lb: &Lb) {
    let mut c = Conn::open(&lb.ip, lb.port);
    c.send(b"THIS IS NOT HTTP\r\n\r\n");
    let a = c.read(false);
    assert_eq!(a.status, 400, "{a:?}");
    assert!(c.closed_within(5), "left open after a malformed request");
}

fn oversized_request_heads_get_400(lb: &Lb) {
    let mut c = Conn::open(&lb.ip, lb.port);
    let long = "q".repeat(20 * 1024);
    c.send(format!("GET /echo?{long} HTTP/1.1\r\nHost: lb\r\n\r\n").as_bytes());
    let a = c.read(false);
    assert_eq!(a.status, 400, "a 20K request line: {a:?}");

    let mut c = Conn::open(&lb.ip, lb.port);
    let big = "a".repeat(20 * 1024);
    c.send(format!("GET /echo HTTP/1.1\r\nHost: lb\r\nX-Big: {big}\r\n\r\n").as_bytes());
    let a = c.read(false);
    assert_eq!(a.status, 400, "a 20K header: {a:?}");

    let mut c = Conn::open(&lb.ip, lb.port);
    let many: String = (0..10)
        .map(|i| format!("X-Many-{i}: {}\r\n", "b".repeat(8 * 1024)))
        .collect();
    c.send(format!("GET /echo HTTP/1.1\r\nHost: lb\r\n{many}\r\n").as_bytes());
    let a = c.read(false);
    assert_eq!(a.status, 400, "an 80K header section: {a:?}");

    // Within the limits: a 12K header passes.
    let mut c = Conn::open(&lb.ip, lb.port);
    let ok = "c".repeat(12 * 1024);
    c.send(format!("GET /echo HTTP/1.1\r\nHost: lb\r\nX-Ok: {ok}\r\n\r\n").as_bytes());
    let a = c.read(false);
    assert_eq!(a.status, 200, "a 12K header");
    assert_eq!(a.echoed_header("x-ok"), Some(ok));
}

fn is_elb_error(a: &Resp, status: u16) {
    assert_eq!(a.status, status, "{a:?}");
    assert_eq!(a.header("server"), Some("awselb/2.0"), "{a:?}");
    assert!(
        a.text().contains(&format!("<title>{status}")),
        "{}",
        a.text()
    );
}

// 12. Target failures: ALB answers 502 when the target closes without answering, answers
// garbage, or refuses the connection (AWS "Troubleshoot your Application Load Balancers",
// HTTP 502: "The load balancer received a TCP RST from the target when attempting to
// establish a connection", "The target closed the connection ...", "The target response is
// malformed"); a target's own early answer reaches the client.
fn target_failures_give_502_and_an_early_answer_passes(lb: &Lb) {
    for path in ["/hangup", "/garbage"] {
        let mut c = Conn::open(&lb.ip, lb.port);
        c.send(&get(path));
        is_elb_error(&c.read(false), 502);
    }
    let mut c = Conn::open(&lb.ip, lb.dead_port);
    c.send(&get("/echo"));
    is_elb_error(&c.read(false), 502);

    let mut c = Conn::open(&lb.ip, lb.port);
    let big = 4 << 20;
    c.send(format!("POST /early HTTP/1.1\r\nHost: lb\r\nContent-Length: {big}\r\n\r\n").as_bytes());
    let w = c.r.get_ref().try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let mut w = w;
        let part = vec![b'z'; 64 * 1024];
        for _ in 0..(big / part.len()) {
            if w.write_all(&part).is_err() {
                break;
            }
        }
    });
    let a = c.read(false);
    assert_eq!((a.status, a.text().as_str()), (413, "too large"), "{a:?}");
    let _ = c.r.get_ref().shutdown(Shutdown::Both);
    writer.join().unwrap();
}

// 13. A 10 MiB answer arrives byte-exact.
fn a_10_mib_answer_arrives_byte_exact(lb: &Lb) {
    let n = 10 << 20;
    let mut c = Conn::open(&lb.ip, lb.port);
    c.send(&get(&format!("/big?bytes={n}")));
    let a = c.read(false);
    assert_eq!(a.status, 200);
    assert!(
        a.body == pattern(n),
        "a 10 MiB answer changed ({} bytes)",
        a.body.len()
    );
}

// 14. No registered target: ALB's 503 (AWS "Troubleshoot", HTTP 503: "The target groups for
// the load balancer have no registered targets").
fn no_registered_target_gives_503(lb: &Lb) {
    let mut c = Conn::open(&lb.ip, lb.empty_port);
    c.send(&get("/echo"));
    is_elb_error(&c.read(false), 503);
}

// 15a. Content-Length with Transfer-Encoding: chunked. Ref: RFC 9112 6.3 item 3: the
// request is rejected or framed by Transfer-Encoding alone, "Regardless, the server MUST
// close the connection after responding to such a request"; an intermediary forwarding it
// "MUST first remove the received Content-Length field". So the bytes after the chunked
// body never become a request.
fn content_length_with_chunked_cannot_smuggle(lb: &Lb) {
    let mut c = Conn::open(&lb.ip, lb.port);
    c.send(
        b"POST /echo HTTP/1.1\r\nHost: lb\r\nContent-Length: 50\r\nTransfer-Encoding: chunked\r\n\r\n\
          0\r\n\r\nGET /echo?smuggled=1 HTTP/1.1\r\nHost: lb\r\n\r\n",
    );
    let a = c.read(false);
    assert!(a.status == 400 || a.status == 200, "{a:?}");
    if a.status == 200 {
        assert_eq!(
            a.echoed_header("content-length").as_deref().unwrap_or("0"),
            "0",
            "{a:?}"
        );
        assert_eq!(a.echoed_body(), b"", "{a:?}");
    }
    assert!(
        c.closed_within(5),
        "the connection stayed open after a request with both Content-Length and chunked"
    );
}

// 15b. A transfer coding the proxy does not know, with chunked not last: RFC 9112 6.3 item
// 4: "the server MUST respond with the 400 (Bad Request) status code and then close the
// connection" (6.1 would allow 501 for a coding it does not implement).
fn an_unknown_transfer_coding_is_refused(lb: &Lb) {
    let mut c = Conn::open(&lb.ip, lb.port);
    c.send(b"POST /echo HTTP/1.1\r\nHost: lb\r\nTransfer-Encoding: gzip\r\n\r\nabcdef");
    let a = c.read(false);
    assert!(a.status == 400 || a.status == 501, "{a:?}");
    assert!(
        c.closed_within(5),
        "left open after an unknown transfer coding"
    );
}

/// A check's name and its function.
type Check = (&'static str, fn(&Lb));

/// Runs every check of `checks` against `lb` (one failing does not hide the others), then
/// fails naming each that failed.
fn run(lb: &Lb, checks: &[Check]) {
    let failed: Vec<&str> = checks
        .iter()
        .filter(|(_, check)| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(lb))).is_err()
        })
        .map(|(name, _)| *name)
        .collect();
    assert!(failed.is_empty(), "failed: {failed:?}");
}

#[test]
fn an_http_listener_speaks_http_1_1_as_a_client_sees_it() {
    let lb = setup("h1conf");
    run(
        &lb,
        &[
            (
                "1 keep-alive, X-Forwarded-*",
                keep_alive_and_forwarded_headers,
            ),
            ("2 hop-by-hop", hop_by_hop_headers_are_not_forwarded),
            ("3 request bodies", request_bodies_arrive_byte_exact),
            ("4 chunked answer", a_chunked_answer_arrives_whole),
            (
                "5 close-delimited answer",
                a_close_delimited_answer_arrives_whole_and_the_client_keeps_its_connection,
            ),
            ("6 HEAD/204/304", head_204_and_304_have_no_body),
            ("7 100-continue", expect_100_continue),
            ("8 HTTP/1.0", http_1_0_clients),
            ("9 pipelining", pipelined_requests_are_answered_in_order),
            (
                "10 absolute-form",
                absolute_form_reaches_the_target_in_origin_form,
            ),
            ("11 malformed", a_malformed_request_gets_400_and_a_close),
            (
                "12 502s, early 413",
                target_failures_give_502_and_an_early_answer_passes,
            ),
            ("13 10 MiB", a_10_mib_answer_arrives_byte_exact),
            ("14 503", no_registered_target_gives_503),
            ("15a CL+TE", content_length_with_chunked_cannot_smuggle),
            ("15b unknown coding", an_unknown_transfer_coding_is_refused),
        ],
    );
}

// ALB's quotas on a request's head: 16K a request line or header, 64K in all, answered
// 400. (hyper's http1 server, the listener before 2026-11-28, read heads up to its own
// buffer limit, ~400 KiB, and forwarded them.)
#[test]
fn request_heads_over_alb_s_limits_get_400() {
    let lb = setup("h1big");
    oversized_request_heads_get_400(&lb);
}

// ALB's desync mitigation modes (ALB User Guide, "Desync mitigation mode"), set with the AWS
// CLI: a GET with `Content-Length: 0` is Acceptable, a GET with a body Ambiguous, an
// unknown transfer coding before chunked Severe (http-desync-guardian's reasons
// GetHeadZeroContentLength, UndefinedContentLengthSemantics, BadTransferEncoding).
#[test]
fn desync_mitigation_modes_forward_close_or_refuse_as_alb_does() {
    let lb = setup("h1desync");
    let acceptable = &b"GET /echo HTTP/1.1\r\nHost: lb\r\nContent-Length: 0\r\n\r\n"[..];
    let ambiguous = &b"GET /echo HTTP/1.1\r\nHost: lb\r\nContent-Length: 3\r\n\r\nabc"[..];
    let severe = &b"POST /echo HTTP/1.1\r\nHost: lb\r\nTransfer-Encoding: x, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"[..];
    // The status, and whether the connection was closed after it.
    let outcome = |request: &[u8]| {
        let mut c = Conn::open(&lb.ip, lb.port);
        c.send(request);
        let status = c.read(false).status;
        (status, c.closed_within(2))
    };
    for (mode, want) in [
        ("defensive", [(200, false), (200, true), (400, true)]),
        ("strictest", [(400, true), (400, true), (400, true)]),
        ("monitor", [(200, false), (200, false), (200, false)]),
    ] {
        elbv2(
            &lb._api,
            &[
                "modify-load-balancer-attributes",
                "--load-balancer-arn",
                &lb.arn,
                "--attributes",
                &format!("Key=routing.http.desync_mitigation_mode,Value={mode}"),
            ],
        );
        for (request, want) in [acceptable, ambiguous, severe].into_iter().zip(want) {
            assert_eq!(
                outcome(request),
                want,
                "{mode}: {}",
                String::from_utf8_lossy(request)
            );
        }
    }
}
