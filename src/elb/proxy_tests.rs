//! The HTTP listener's forwarding, in process: a load balancer made through the API
//! (`crate::elb::tests::group_in_use`), a scripted target on loopback that reads and
//! writes raw bytes, and a client that does the same.

use super::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;

/// A scripted target: each connection is given to `script` with what it reads, on a
/// thread of its own; what each request head looked like is sent to the test.
struct Target {
    addr: SocketAddr,
    heads: mpsc::Receiver<String>,
}

fn target(script: fn(&mut BufReader<std::net::TcpStream>, &mpsc::Sender<String>)) -> Target {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, heads) = mpsc::channel();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { return };
            let tx = tx.clone();
            std::thread::spawn(move || script(&mut BufReader::new(s), &tx));
        }
    });
    Target { addr, heads }
}

/// Reads a head (to its empty line); `None` at the connection's end.
fn head(r: &mut impl BufRead) -> Option<String> {
    let mut h = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        h.push_str(&line);
        if line == "\r\n" {
            return Some(h);
        }
    }
}

fn content_length(head: &str) -> usize {
    head.lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0)
}

/// The load balancer in front of `t`, on a loopback port of its own (its thread and
/// runtime, as a data-plane thread's: left to the test process's end).
fn balancer(t: &Target) -> (SocketAddr, tempfile::TempDir) {
    let (addr, dir, _) = balancer_at(t, 80);
    (addr, dir)
}

/// The same, its site saying listener port `port`; with the load balancer's resources.
fn balancer_at(t: &Target, port: u16) -> (SocketAddr, tempfile::TempDir, Arc<Elb>) {
    let dir = tempfile::tempdir().unwrap();
    let elb = Arc::new(Elb::open(dir.path().to_path_buf()).unwrap());
    let tg = crate::elb::tests::group_in_use(&elb, "proxy");
    elb.register_target(&tg, "127.0.0.1", t.addr.port())
        .unwrap();
    let listener = elb.lock().listeners.keys().next().cloned().unwrap();
    let site = Arc::new(Site {
        elb: elb.clone(),
        listener,
        pool: Arc::default(),
        port,
        clients: Arc::default(),
    });
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(l.local_addr().unwrap()).unwrap();
            loop {
                let (s, peer) = l.accept().await.unwrap();
                tokio::spawn(serve(site.clone(), s, peer));
            }
        })
    });
    (rx.recv().unwrap(), dir, elb)
}

fn client(addr: SocketAddr) -> BufReader<std::net::TcpStream> {
    let s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    BufReader::new(s)
}

/// An answer: its head and its body (by `Content-Length`, chunked, or to the close).
fn answer(r: &mut BufReader<std::net::TcpStream>) -> (String, Vec<u8>) {
    let h = head(r).expect("an answer");
    let mut body = Vec::new();
    let lower = h.to_ascii_lowercase();
    if lower.contains("transfer-encoding: chunked") {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).unwrap();
            let n = size.trim().split(';').next().unwrap();
            let n = usize::from_str_radix(n, 16).unwrap();
            if n == 0 {
                // The trailers, to their empty line.
                head(r);
                break;
            }
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).unwrap();
            body.extend_from_slice(&chunk[..n]);
        }
    } else if lower.contains("content-length") {
        body.resize(content_length(&h), 0);
        r.read_exact(&mut body).unwrap();
    } else if !h.starts_with("HTTP/1.1 1") {
        r.read_to_end(&mut body).unwrap();
    }
    (h, body)
}

fn send(r: &mut BufReader<std::net::TcpStream>, bytes: &[u8]) {
    r.get_mut().write_all(bytes).unwrap();
}

/// Answers each request with its head as the body (kept alive).
fn echo(r: &mut BufReader<std::net::TcpStream>, tx: &mpsc::Sender<String>) {
    while let Some(h) = head(r) {
        let mut body = vec![0; content_length(&h)];
        r.read_exact(&mut body).unwrap();
        let _ = tx.send(h.clone());
        let out = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{h}", h.len());
        r.get_mut().write_all(out.as_bytes()).unwrap();
    }
}

#[test]
fn a_request_reaches_the_target_with_alb_s_fields_and_without_its_connection_s() {
    let t = target(echo);
    let (lb, _dir) = balancer(&t);
    let mut c = client(lb);
    send(
        &mut c,
        b"GET http://example.com/a?b=1 HTTP/1.1\r\nHost: other\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: 5\r\nX-Forwarded-For: 1.2.3.4\r\nX-Forwarded-Proto: https\r\nX-Amzn-Trace-Id: Root=1-67891233-abcdef012345678912345678\r\nX-Kept: yes\r\n\r\n",
    );
    let (h, _) = answer(&mut c);
    assert!(h.starts_with("HTTP/1.1 200 OK\r\n"), "{h}");
    let got = t.heads.recv().unwrap();
    assert!(got.starts_with("GET /a?b=1 HTTP/1.1\r\n"), "{got}");
    for want in [
        "Host: example.com\r\n",
        "X-Kept: yes\r\n",
        "X-Forwarded-For: 1.2.3.4, 127.0.0.1\r\n",
        "X-Forwarded-Proto: http\r\n",
        "X-Forwarded-Port: 80\r\n",
        "X-Amzn-Trace-Id: Self=1-",
        ";Root=1-67891233-abcdef012345678912345678\r\n",
    ] {
        assert!(got.contains(want), "{want:?} in {got}");
    }
    for gone in ["other", "X-Secret", "Keep-Alive", "Connection", "https"] {
        assert!(!got.contains(gone), "{gone:?} in {got}");
    }
    // The same client connection goes on.
    send(&mut c, b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(answer(&mut c).0.starts_with("HTTP/1.1 200"));
    assert!(t.heads.recv().unwrap().contains("X-Amzn-Trace-Id: Root=1-"));
}

#[test]
fn pipelined_requests_and_bodiless_answers_keep_their_framing() {
    fn script(r: &mut BufReader<std::net::TcpStream>, _: &mpsc::Sender<String>) {
        while let Some(h) = head(r) {
            let out: &[u8] = if h.starts_with("HEAD") {
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
            } else if h.starts_with("GET /204") {
                b"HTTP/1.1 204 No Content\r\n\r\n"
            } else if h.starts_with("GET /304") {
                b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n"
            } else {
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
            };
            r.get_mut().write_all(out).unwrap();
        }
    }
    let t = target(script);
    let (lb, _dir) = balancer(&t);
    let mut c = client(lb);
    send(
        &mut c,
        b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET /204 HTTP/1.1\r\nHost: x\r\n\r\nGET /304 HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    // HEAD: the length, no body (read as the next answer's head if it came).
    let h = head(&mut c).unwrap();
    assert!(
        h.starts_with("HTTP/1.1 200") && h.contains("Content-Length: 5"),
        "{h}"
    );
    let h = head(&mut c).unwrap();
    assert!(h.starts_with("HTTP/1.1 204"), "{h}");
    let h = head(&mut c).unwrap();
    assert!(h.starts_with("HTTP/1.1 304"), "{h}");
    let (h, body) = answer(&mut c);
    assert!(h.starts_with("HTTP/1.1 200"), "{h}");
    assert_eq!(body, b"hello");
}

#[test]
fn chunked_and_close_delimited_answers_reach_each_client_as_it_can_read_them() {
    fn script(r: &mut BufReader<std::net::TcpStream>, _: &mpsc::Sender<String>) {
        while let Some(h) = head(r) {
            if h.starts_with("GET /close") {
                let _ = r.get_mut().write_all(b"HTTP/1.1 200 OK\r\n\r\nto the end");
                return;
            }
            r.get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nX-T: 1\r\n\r\n")
                .unwrap();
        }
    }
    let t = target(script);
    let (lb, _dir) = balancer(&t);
    // HTTP/1.1: chunks as they came; the close-delimited one chunked; the connection kept.
    let mut c = client(lb);
    send(&mut c, b"GET /chunks HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(answer(&mut c).1, b"abcde");
    send(&mut c, b"GET /close HTTP/1.1\r\nHost: x\r\n\r\n");
    let (h, body) = answer(&mut c);
    assert!(h.contains("Transfer-Encoding: chunked"), "{h}");
    assert_eq!(body, b"to the end");
    send(&mut c, b"GET /chunks HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(answer(&mut c).1, b"abcde");
    // HTTP/1.0: no chunks; closed after; kept alive when it asks.
    let mut c = client(lb);
    send(&mut c, b"GET /chunks HTTP/1.0\r\n\r\n");
    let (h, body) = answer(&mut c);
    assert!(
        !h.contains("chunked") && h.contains("Connection: close"),
        "{h}"
    );
    assert_eq!(body, b"abcde");
    let mut c = client(lb);
    send(
        &mut c,
        b"GET /close HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    );
    let (h, body) = answer(&mut c);
    assert!(h.contains("Connection: close"), "{h}");
    assert_eq!(body, b"to the end");
}

#[test]
fn a_body_goes_on_after_100_continue_and_an_early_answer_closes_the_client_s_connection() {
    fn script(r: &mut BufReader<std::net::TcpStream>, _: &mpsc::Sender<String>) {
        while let Some(h) = head(r) {
            if h.contains("/early") {
                let _ = r
                    .get_mut()
                    .write_all(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                return;
            }
            r.get_mut()
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .unwrap();
            // The chunked body, to its last chunk: its bytes sent back.
            let mut body = Vec::new();
            loop {
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                let n = usize::from_str_radix(line.trim(), 16).unwrap();
                let mut chunk = vec![0; n + 2];
                r.read_exact(&mut chunk).unwrap();
                body.extend_from_slice(&chunk[..n]);
                if n == 0 {
                    break;
                }
            }
            let out = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
            r.get_mut().write_all(out.as_bytes()).unwrap();
            r.get_mut().write_all(&body).unwrap();
        }
    }
    let t = target(script);
    let (lb, _dir) = balancer(&t);
    let mut c = client(lb);
    send(
        &mut c,
        b"POST /up HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    let (h, _) = answer(&mut c);
    assert!(h.starts_with("HTTP/1.1 100 Continue"), "{h}");
    send(&mut c, b"5\r\nhello\r\n");
    send(&mut c, b"6\r\n world\r\n0\r\n\r\n");
    let (h, body) = answer(&mut c);
    assert!(h.starts_with("HTTP/1.1 200"), "{h}");
    assert_eq!(body, b"hello world");
    // A target that answers before the body: its answer, and the client's connection ends.
    send(
        &mut c,
        b"POST /early HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n",
    );
    send(&mut c, &[b'x'; 65536]);
    let (h, _) = answer(&mut c);
    assert!(
        h.starts_with("HTTP/1.1 413") && h.contains("Connection: close"),
        "{h}"
    );
}

#[test]
fn a_kept_alive_connection_the_target_closed_is_replaced_and_errors_are_alb_s() {
    fn script(r: &mut BufReader<std::net::TcpStream>, _: &mpsc::Sender<String>) {
        // One answer a connection, then closed without a word (kept alive, it said).
        let Some(h) = head(r) else { return };
        if h.contains("/hangup") {
            return;
        }
        if h.contains("/garbage") {
            let _ = r.get_mut().write_all(b"SPDY/9 what\r\n\r\n");
            return;
        }
        r.get_mut()
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .unwrap();
    }
    let t = target(script);
    let (lb, _dir) = balancer(&t);
    let mut c = client(lb);
    for _ in 0..3 {
        send(&mut c, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(answer(&mut c).1, b"ok");
    }
    for path in ["/hangup", "/garbage"] {
        send(
            &mut c,
            format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
        );
        let (h, body) = answer(&mut c);
        assert!(h.starts_with("HTTP/1.1 502 Bad Gateway\r\n"), "{path}: {h}");
        assert!(h.contains("Server: awselb/2.0"), "{h}");
        assert!(String::from_utf8_lossy(&body).contains("502 Bad Gateway"));
    }
    // The client's own errors: 400 and closed; TRACE 405.
    send(&mut c, b"GET / HTTP/1.1\r\n\r\n");
    let (h, _) = answer(&mut c);
    assert!(
        h.starts_with("HTTP/1.1 400") && h.contains("Connection: close"),
        "{h}"
    );
    let mut c = client(lb);
    send(&mut c, b"TRACE / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(answer(&mut c).0.starts_with("HTTP/1.1 405"));
    let mut c = client(lb);
    send(
        &mut c,
        b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
    );
    assert!(answer(&mut c).0.starts_with("HTTP/1.1 400"));
}

#[test]
fn the_load_balancer_s_header_attributes_are_applied() {
    let t = target(echo);
    let (lb, _dir, elb) = balancer_at(&t, 8080);
    let arn = elb.lock().lbs.keys().next().cloned().unwrap();
    let set = |pairs: &[(&str, &str)]| {
        let mut p = vec![("LoadBalancerArn", arn.clone())];
        for (i, (k, v)) in pairs.iter().enumerate() {
            p.push((
                format!("Attributes.member.{}.Key", i + 1).leak(),
                k.to_string(),
            ));
            p.push((
                format!("Attributes.member.{}.Value", i + 1).leak(),
                v.to_string(),
            ));
        }
        let p: Vec<(&str, &str)> = p.iter().map(|(k, v)| (*k, v.as_str())).collect();
        crate::elb::tests::call(&elb, "ModifyLoadBalancerAttributes", &p);
    };
    let request = |lines: &str| {
        let mut c = client(lb);
        send(&mut c, format!("GET / HTTP/1.1\r\n{lines}\r\n").as_bytes());
        assert!(answer(&mut c).0.starts_with("HTTP/1.1 200"));
        t.heads.recv().unwrap()
    };
    // ALB's defaults: the listener's port added to a Host without one; the address appended.
    let got = request("Host: example.com\r\nX-Forwarded-For: 1.2.3.4\r\nX_Under: 1\r\n");
    assert!(got.contains("Host: example.com:8080\r\n"), "{got}");
    assert!(
        got.contains("X-Forwarded-For: 1.2.3.4, 127.0.0.1\r\n"),
        "{got}"
    );
    assert!(got.contains("X_Under: 1\r\n"), "{got}");
    let got = request("Host: example.com:1\r\n");
    assert!(got.contains("Host: example.com:1\r\n"), "{got}");
    set(&[
        ("routing.http.preserve_host_header.enabled", "true"),
        ("routing.http.xff_header_processing.mode", "preserve"),
        ("routing.http.drop_invalid_header_fields.enabled", "true"),
    ]);
    let got = request("Host: example.com\r\nX-Forwarded-For: 1.2.3.4\r\nX_Under: 1\r\n");
    assert!(got.contains("Host: example.com\r\n"), "{got}");
    assert!(got.contains("X-Forwarded-For: 1.2.3.4\r\n"), "{got}");
    assert!(!got.contains("X_Under"), "{got}");
    let got = request("Host: example.com\r\n");
    assert!(!got.contains("X-Forwarded-For"), "{got}");
    set(&[("routing.http.xff_header_processing.mode", "remove")]);
    let got = request("Host: x\r\nX-Forwarded-For: 1.2.3.4\r\n");
    assert!(!got.contains("X-Forwarded-For"), "{got}");
    set(&[
        ("routing.http.xff_header_processing.mode", "append"),
        ("routing.http.xff_client_port.enabled", "true"),
    ]);
    let got = request("Host: x\r\n");
    assert!(got.contains("X-Forwarded-For: 127.0.0.1:"), "{got}");
}

#[test]
fn a_websocket_upgrade_joins_the_client_to_its_target() {
    fn script(r: &mut BufReader<std::net::TcpStream>, tx: &mpsc::Sender<String>) {
        let Some(h) = head(r) else { return };
        let _ = tx.send(h.clone());
        if !h.contains("Upgrade: websocket") {
            r.get_mut()
                .write_all(b"HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\n\r\n")
                .unwrap();
            return;
        }
        r.get_mut()
            .write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nfrom-target;")
            .unwrap();
        // Then an echo of what comes, to the close.
        let mut b = [0u8; 64];
        while let Ok(n) = r.read(&mut b) {
            if n == 0 || r.get_mut().write_all(&b[..n]).is_err() {
                return;
            }
        }
    }
    let t = target(script);
    let (lb, _dir, elb) = balancer_at(&t, 80);
    let mut c = client(lb);
    send(
        &mut c,
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\nearly;",
    );
    let h = head(&mut c).unwrap();
    assert!(h.starts_with("HTTP/1.1 101 Switching Protocols\r\n"), "{h}");
    assert!(
        h.contains("Upgrade: websocket") && h.contains("Connection: Upgrade"),
        "{h}"
    );
    let got = t.heads.recv().unwrap();
    assert!(
        got.contains("Upgrade: websocket\r\n") && got.contains("Connection: Upgrade\r\n"),
        "{got}"
    );
    assert!(got.contains("Sec-WebSocket-Key: "), "{got}");
    send(&mut c, b"later");
    let mut want = b"from-target;early;later".to_vec();
    let mut got = vec![0; want.len()];
    c.read_exact(&mut got).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&want)
    );
    // A target that does not switch: its answer, and the connection goes on as HTTP.
    want.clear();
    let mut c = client(lb);
    send(
        &mut c,
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n",
    );
    assert!(answer(&mut c).0.starts_with("HTTP/1.1 426"));
    assert!(!t.heads.recv().unwrap().contains("Upgrade"));
    // A joined connection silent for the idle timeout is closed.
    let arn = elb.lock().lbs.keys().next().cloned().unwrap();
    crate::elb::tests::call(
        &elb,
        "ModifyLoadBalancerAttributes",
        &[
            ("LoadBalancerArn", arn.as_str()),
            ("Attributes.member.1.Key", "idle_timeout.timeout_seconds"),
            ("Attributes.member.1.Value", "1"),
        ],
    );
    let mut c = client(lb);
    send(
        &mut c,
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
    );
    assert!(head(&mut c).unwrap().starts_with("HTTP/1.1 101"));
    // (Not closed, the read would time out after 10 s: `client`.)
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, b"from-target;");
}

#[test]
fn each_desync_mitigation_mode_forwards_closes_or_refuses_as_alb_s_table_says() {
    /// `echo`, and a chunked body read to its last chunk (no trailers).
    fn script(r: &mut BufReader<std::net::TcpStream>, tx: &mpsc::Sender<String>) {
        while let Some(h) = head(r) {
            if h.to_ascii_lowercase().contains("chunked") {
                let mut line = String::new();
                while line != "0\r\n" {
                    line.clear();
                    r.read_line(&mut line).unwrap();
                }
                r.read_line(&mut line).unwrap();
            } else {
                let mut body = vec![0; content_length(&h)];
                r.read_exact(&mut body).unwrap();
            }
            let _ = tx.send(h.clone());
            let out = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{h}", h.len());
            r.get_mut().write_all(out.as_bytes()).unwrap();
        }
    }
    let t = target(script);
    let (lb, _dir, elb) = balancer_at(&t, 80);
    let arn = elb.lock().lbs.keys().next().cloned().unwrap();
    let mode = |m: &str| {
        let p = [
            ("LoadBalancerArn", arn.as_str()),
            (
                "Attributes.member.1.Key",
                "routing.http.desync_mitigation_mode",
            ),
            ("Attributes.member.1.Value", m),
        ];
        crate::elb::tests::call(&elb, "ModifyLoadBalancerAttributes", &p);
    };
    // One request of each class (ALB User Guide, "Desync mitigation mode"; the reasons
    // are http-desync-guardian's).
    let compliant = &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..];
    // GetHeadZeroContentLength.
    let acceptable = &b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"[..];
    // UndefinedContentLengthSemantics.
    let ambiguous = &b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"[..];
    // BadTransferEncoding (an unknown coding), yet framed: chunked last.
    let severe =
        &b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: foo, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"[..];
    // What became of it: the status, and whether the client's connection went on.
    let outcome = |request: &[u8]| {
        let mut c = client(lb);
        send(&mut c, request);
        let (h, _) = answer(&mut c);
        let status: u16 = h[9..12].parse().unwrap();
        // Refused, the connection may be gone already.
        let _ = c.get_mut().write_all(compliant);
        let mut rest = String::new();
        let _ = c.read_line(&mut rest);
        (status, rest.starts_with("HTTP/1.1 200"))
    };
    let table = [
        // ALB's default.
        (None, [(200, true), (200, true), (200, false), (400, false)]),
        (
            Some("monitor"),
            [(200, true), (200, true), (200, true), (200, true)],
        ),
        (
            Some("defensive"),
            [(200, true), (200, true), (200, false), (400, false)],
        ),
        (
            Some("strictest"),
            [(200, true), (400, false), (400, false), (400, false)],
        ),
    ];
    for (m, want) in table {
        if let Some(m) = m {
            mode(m);
        }
        for (request, want) in [compliant, acceptable, ambiguous, severe].iter().zip(want) {
            assert_eq!(
                outcome(request),
                want,
                "{m:?}: {}",
                String::from_utf8_lossy(request)
            );
            // The target saw the request when it was forwarded, then the next one.
            if want.0 == 200 {
                let got = t.heads.recv().unwrap();
                assert_eq!(got.as_bytes()[..4], request[..4], "{got}");
            }
            if want.1 {
                t.heads.recv().unwrap();
            }
        }
    }
    assert!(t.heads.try_recv().is_err());
    // Each request but the compliant one counts in CloudWatch's
    // DesyncMitigationMode_NonCompliant_Request_Count, whatever its mode did with it: 3
    // in each of the 4 modes (the compliant requests after them count nothing).
    let listener = elb.lock().listeners.keys().next().cloned().unwrap();
    assert_eq!(elb.read().meters.non_compliant_of(&listener), 12);
}

#[test]
fn an_ambiguous_request_in_defensive_mode_closes_the_target_s_connection_too() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static CONNECTIONS: AtomicUsize = AtomicUsize::new(0);
    fn script(r: &mut BufReader<std::net::TcpStream>, tx: &mpsc::Sender<String>) {
        CONNECTIONS.fetch_add(1, Ordering::SeqCst);
        echo(r, tx);
    }
    let t = target(script);
    let (lb, _dir) = balancer(&t);
    let request = |bytes: &[u8]| {
        let mut c = client(lb);
        send(&mut c, bytes);
        assert!(answer(&mut c).0.starts_with("HTTP/1.1 200"));
        t.heads.recv().unwrap();
    };
    // Compliant requests share one kept-alive connection to the target.
    request(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    request(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(CONNECTIONS.load(Ordering::SeqCst), 1);
    // An Ambiguous one (a GET with a body) uses it, and it is not used again.
    request(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc");
    request(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(CONNECTIONS.load(Ordering::SeqCst), 2);
}
