//! A fault-injecting TCP proxy in front of the real registry or etcd's JSON gateway, in
//! the test process (toxiproxy is not packaged in Debian 12). It reads each HTTP/1.1
//! request head on its way up, so faults can pick requests by path (and size); responses
//! are relayed as raw bytes and cut, stalled, reset or delayed at the TCP level.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What happens to a response once `after` bytes of it (headers included) are through.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Cut {
    /// RST (SO_LINGER 0 then close): "connection reset by peer".
    Reset,
    /// FIN: the body ends before its Content-Length.
    Close,
    /// Nothing more is sent and the connection stays open: a read timeout.
    Stall,
}

#[derive(Clone, Debug)]
pub enum Fault {
    /// Every request and the first bytes of every response wait this long.
    Latency(Duration),
    /// The first `times` responses to requests whose path contains `path` and that
    /// are larger than `after` bytes are cut after `after` bytes.
    Cut {
        path: String,
        after: u64,
        times: u32,
        how: Cut,
    },
    /// The first `times` requests whose path contains `path` are answered `status`
    /// (with `Connection: close`) instead of being forwarded.
    Status {
        path: String,
        status: u16,
        times: u32,
    },
    /// Responses to GET requests whose path contains `path` are relayed at no more
    /// than `bytes_per_sec`, so a test can act while a large blob is in flight.
    Throttle { path: String, bytes_per_sec: u64 },
    /// Requests of any method whose path contains `path` and whose body is at least
    /// `min_body` bytes: the first `skip` pass, the `times` after them get `then`.
    /// (etcd's gateway takes every call as a POST; a placement transaction is kilobytes,
    /// the cluster's other calls are not.)
    Request {
        path: String,
        min_body: u64,
        skip: u32,
        times: u32,
        then: Then,
    },
    /// Requests whose path contains `path` and whose body contains `needle` (etcd's
    /// gateway carries keys base64-encoded: pass a key as encoded): the first `times`
    /// get `then`. Picks one write among many of the same size (a box's release of a
    /// task's assignment among its reports).
    RequestWith {
        path: String,
        needle: Vec<u8>,
        times: u32,
        then: Then,
    },
    /// Requests whose path contains `path` are answered 200 with this body and
    /// content type, as a hostile registry would.
    Body {
        path: String,
        content_type: String,
        body: Arc<Vec<u8>>,
    },
}

/// What a [`Fault::Request`] does to a request it picks.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Then {
    /// The request is forwarded (upstream applies it), and its answer is cut `how`
    /// after `after` bytes: with 0, the client never learns what happened.
    Lose { after: u64, how: Cut },
    /// Answered `status` without being forwarded (nothing is applied).
    Refuse(u16),
}

/// One request the proxy saw and what it did to it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub range: Option<String>,
    /// "forwarded", "status 503", "cut Reset", "body" …
    pub action: String,
}

pub struct FaultProxy {
    pub port: u16,
    faults: Arc<Mutex<Vec<Fault>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
}

impl FaultProxy {
    /// Listens on a free loopback port, forwarding to `upstream` ("host:port").
    pub fn start(upstream: &str, faults: Vec<Fault>) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fault proxy");
        let port = listener.local_addr().unwrap().port();
        let p = FaultProxy {
            port,
            faults: Arc::new(Mutex::new(faults)),
            seen: Arc::new(Mutex::new(Vec::new())),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (faults, seen, stop) = (p.faults.clone(), p.seen.clone(), p.stop.clone());
        let upstream = upstream.to_string();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(client) = conn else { continue };
                let Ok(up) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let c = Conn {
                    faults: faults.clone(),
                    seen: seen.clone(),
                    stop: stop.clone(),
                    state: Arc::new(Mutex::new(State::default())),
                };
                c.run(client, up);
            }
        });
        p
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Requests whose path ends with `suffix`.
    pub fn seen_for(&self, suffix: &str) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.path.ends_with(suffix))
            .collect()
    }

    /// Adds `fault` to those in force.
    pub fn inject(&self, fault: Fault) {
        self.faults.lock().unwrap().push(fault);
    }

    /// Removes every fault: what follows is forwarded untouched.
    pub fn heal(&self) {
        self.faults.lock().unwrap().clear();
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

#[derive(Default)]
struct State {
    /// The cut armed for the response in flight, and the bytes it let through.
    cut: Option<(u64, Cut)>,
    sent: u64,
    /// The rate limit armed for the response in flight (bytes per second).
    throttle: Option<u64>,
    /// The response's first bytes have not arrived yet (for latency).
    fresh: bool,
    closed: bool,
    /// A reset is under way: close without FIN so the RST goes out.
    reset: bool,
}

#[derive(Clone)]
struct Conn {
    faults: Arc<Mutex<Vec<Fault>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    state: Arc<Mutex<State>>,
}

fn latency(faults: &[Fault]) -> Option<Duration> {
    faults.iter().find_map(|f| match f {
        Fault::Latency(d) => Some(*d),
        _ => None,
    })
}

impl Conn {
    fn run(self, client: TcpStream, up: TcpStream) {
        let (c2, u2) = (client.try_clone().unwrap(), up.try_clone().unwrap());
        let down = self.clone();
        std::thread::spawn(move || down.downstream(u2, c2));
        std::thread::spawn(move || self.upstream(client, up));
    }

    /// Client → registry: one request head at a time (pulls send no bodies but the
    /// token POST, whose Content-Length body is passed on).
    fn upstream(self, client: TcpStream, mut up: TcpStream) {
        let mut reader = BufReader::new(client.try_clone().unwrap());
        let mut client = client;
        loop {
            // Not HTTP (the client tries TLS first): close, as a plain HTTP server does,
            // so the client falls back to plain HTTP at once.
            match reader.fill_buf() {
                Ok(b) if b.first().is_some_and(|c| c.is_ascii_uppercase()) => {}
                _ => return self.close(&client, &up),
            }
            let mut head = Vec::new();
            loop {
                let mut line = Vec::new();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => return self.close(&client, &up),
                    Ok(_) => {}
                }
                head.extend_from_slice(&line);
                if line == b"\r\n" || line == b"\n" {
                    break;
                }
            }
            let text = String::from_utf8_lossy(&head).into_owned();
            let mut lines = text.lines();
            let mut first = lines.next().unwrap_or("").split(' ');
            let method = first.next().unwrap_or("").to_string();
            let path = first.next().unwrap_or("").to_string();
            let header = |name: &str| {
                text.lines().skip(1).find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.trim()
                        .eq_ignore_ascii_case(name)
                        .then(|| v.trim().to_string())
                })
            };
            let range = header("range");
            let body_len: u64 = header("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);

            // Small bodies (etcd's calls, token requests) are read before the faults are
            // chosen, so a fault can pick a request by what it carries; large ones
            // (blob uploads) stream through as they come.
            let mut small_body: Option<Vec<u8>> = None;
            if body_len > 0 && body_len <= 1 << 20 {
                let mut b = Vec::with_capacity(body_len as usize);
                if (&mut reader).take(body_len).read_to_end(&mut b).is_err() {
                    return self.close(&client, &up);
                }
                small_body = Some(b);
            }
            let mut action = "forwarded".to_string();
            let mut answer: Option<Vec<u8>> = None;
            let mut close_after = false;
            let mut cut = None;
            let mut throttle = None;
            let delay;
            {
                let mut faults = self.faults.lock().unwrap();
                delay = latency(&faults);
                for f in faults.iter_mut() {
                    // What a Request or RequestWith fault that picked this request does.
                    let mut picked: Option<Then> = None;
                    match f {
                        Fault::Status {
                            path: p,
                            status,
                            times,
                        } if *times > 0 && path.contains(p.as_str()) => {
                            *times -= 1;
                            action = format!("status {status}");
                            answer = Some(injected_status(*status));
                            close_after = true;
                            break;
                        }
                        Fault::Body {
                            path: p,
                            content_type,
                            body,
                        } if path.contains(p.as_str()) => {
                            action = "body".into();
                            let mut r = format!(
                                "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\n\
                                 Content-Length: {}\r\nConnection: close\r\n\r\n",
                                body.len()
                            )
                            .into_bytes();
                            if method != "HEAD" {
                                r.extend_from_slice(body);
                            }
                            answer = Some(r);
                            close_after = true;
                            break;
                        }
                        Fault::Cut {
                            path: p,
                            after,
                            times,
                            how,
                        } if *times > 0 && method == "GET" && path.contains(p.as_str()) => {
                            *times -= 1;
                            action = format!("cut {how:?} after {after}");
                            cut = Some((*after, *how));
                        }
                        Fault::Request {
                            path: p,
                            min_body,
                            skip,
                            times,
                            then,
                        } if *times > 0 && body_len >= *min_body && path.contains(p.as_str()) => {
                            if *skip > 0 {
                                *skip -= 1;
                                continue;
                            }
                            *times -= 1;
                            picked = Some(*then);
                        }
                        Fault::RequestWith {
                            path: p,
                            needle,
                            times,
                            then,
                        } if *times > 0
                            && path.contains(p.as_str())
                            && small_body
                                .as_deref()
                                .is_some_and(|b| b.windows(needle.len()).any(|w| w == needle)) =>
                        {
                            *times -= 1;
                            picked = Some(*then);
                        }
                        Fault::Throttle {
                            path: p,
                            bytes_per_sec,
                        } if method == "GET" && path.contains(p.as_str()) => {
                            action = format!("throttled to {bytes_per_sec} B/s");
                            throttle = Some(*bytes_per_sec);
                        }
                        _ => {}
                    }
                    match picked {
                        Some(Then::Lose { after, how }) => {
                            action = format!("answer cut {how:?} after {after}");
                            cut = Some((after, how));
                        }
                        Some(Then::Refuse(status)) => {
                            action = format!("status {status}");
                            answer = Some(injected_status(status));
                            close_after = true;
                            break;
                        }
                        None => {}
                    }
                }
            }
            self.seen.lock().unwrap().push(Seen {
                method,
                path,
                range,
                action,
            });
            if let Some(d) = delay {
                std::thread::sleep(d);
            }
            if let Some(r) = answer {
                let _ = client.write_all(&r);
                if close_after {
                    let _ = client.flush();
                    return self.close(&client, &up);
                }
                continue;
            }
            {
                let mut st = self.state.lock().unwrap();
                st.cut = cut;
                st.throttle = throttle;
                st.sent = 0;
                st.fresh = true;
            }
            if up.write_all(&head).is_err() {
                return self.close(&client, &up);
            }
            if let Some(b) = &small_body {
                if up.write_all(b).is_err() {
                    return self.close(&client, &up);
                }
            } else if body_len > 0 {
                let mut body = (&mut reader).take(body_len);
                if std::io::copy(&mut body, &mut up).is_err() {
                    return self.close(&client, &up);
                }
            }
        }
    }

    fn close(&self, client: &TcpStream, up: &TcpStream) {
        let reset = {
            let mut st = self.state.lock().unwrap();
            st.closed = true;
            st.reset
        };
        if reset {
            return;
        }
        let _ = client.shutdown(Shutdown::Both);
        let _ = up.shutdown(Shutdown::Both);
    }

    /// Registry → client: raw bytes, with the armed cut applied.
    fn downstream(self, mut up: TcpStream, mut client: TcpStream) {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match up.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = client.shutdown(Shutdown::Write);
                    return;
                }
                Ok(n) => n,
            };
            let (fresh, cut, sent, throttle) = {
                let mut st = self.state.lock().unwrap();
                let r = (st.fresh, st.cut, st.sent, st.throttle);
                st.fresh = false;
                r
            };
            if fresh && let Some(d) = latency(&self.faults.lock().unwrap()) {
                std::thread::sleep(d);
            }
            let mut chunk = &buf[..n];
            let mut fire = None;
            if let Some((after, how)) = cut
                && sent + n as u64 > after
            {
                chunk = &buf[..(after - sent) as usize];
                fire = Some(how);
            }
            if client.write_all(chunk).is_err() {
                return;
            }
            self.state.lock().unwrap().sent += chunk.len() as u64;
            if let Some(rate) = throttle {
                std::thread::sleep(Duration::from_secs_f64(chunk.len() as f64 / rate as f64));
            }
            match fire {
                None => {}
                Some(Cut::Reset) => {
                    let _ = client.flush();
                    let _ = rustix::net::sockopt::set_socket_linger(&client, Some(Duration::ZERO));
                    self.state.lock().unwrap().reset = true;
                    let _ = up.shutdown(Shutdown::Both);
                    // Wakes the upstream reader, which drops its handles without a
                    // FIN; the last handle closed with linger 0 sends the RST.
                    let _ = client.shutdown(Shutdown::Read);
                    return;
                }
                Some(Cut::Close) => {
                    let _ = client.shutdown(Shutdown::Both);
                    let _ = up.shutdown(Shutdown::Both);
                    return;
                }
                Some(Cut::Stall) => {
                    // Hold the connection open, sending nothing, until the client
                    // gives up (the upstream reader sees it close) or the test ends.
                    loop {
                        std::thread::sleep(Duration::from_millis(50));
                        if self.state.lock().unwrap().closed || self.stop.load(Ordering::Relaxed) {
                            let _ = up.shutdown(Shutdown::Both);
                            return;
                        }
                    }
                }
            }
        }
    }
}

/// The empty answer with `status` a fault injects (the connection closed after it).
fn injected_status(status: u16) -> Vec<u8> {
    format!("HTTP/1.1 {status} Injected\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .into_bytes()
}
