// The target of tests/elb_http.rs: an HTTP/1.1 server (std only, built by the test with
// plain `rustc`) that reads requests itself and answers by path, so the test sees what a
// load balancer forwarded byte for byte and can make it face every framing a target may
// answer with. `target PORT`; a thread per connection, kept alive unless asked to close.
//   /          200 "ok" (the health check)
//   /echo      200, body: the request line and header lines as received, an empty line,
//              then the request body de-framed (Content-Length or chunked)
//   /continue  as /echo, sending `100 Continue` first when the request expects it
//   /chunked?n=K   K chunks, Transfer-Encoding: chunked
//   /close     no Content-Length nor Transfer-Encoding: the body ends with the connection
//   /status/C  status C (204, 304) with no body
//   /big?bytes=N   N bytes of the pattern `i % 251`
//   /early     413 at once, without reading the request body, then closes
//   /hangup    closes without answering
//   /garbage   a malformed status line, then closes
//   /sleep?ms=N    200 after N ms
//   /hop       200 with hop-by-hop headers (Connection: X-Resp-Secret, X-Resp-Secret,
//              Keep-Alive, Proxy-Authenticate) and an end-to-end X-Kept
//   HEAD of any path: the GET's head (its Content-Length) and no body
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::Duration;

fn query(target: &str, key: &str) -> Option<usize> {
    let q = target.split_once('?')?.1;
    q.split('&')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}

fn read_line(r: &mut BufReader<TcpStream>) -> std::io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    if r.read_until(b'\n', &mut line)? == 0 {
        return Ok(None);
    }
    Ok(Some(line))
}

fn trim(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\n")
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .unwrap_or(line)
}

fn read_body(
    r: &mut BufReader<TcpStream>,
    length: Option<usize>,
    chunked: bool,
) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    if chunked {
        loop {
            let line = read_line(r)?.unwrap_or_default();
            let size = String::from_utf8_lossy(trim(&line));
            let size = size.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size, 16)
                .map_err(|_| std::io::Error::other(format!("bad chunk size {size:?}")))?;
            if size == 0 {
                // Trailers up to the empty line.
                while let Some(l) = read_line(r)? {
                    if trim(&l).is_empty() {
                        break;
                    }
                }
                return Ok(body);
            }
            let start = body.len();
            body.resize(start + size, 0);
            r.read_exact(&mut body[start..])?;
            read_line(r)?;
        }
    }
    if let Some(n) = length {
        body.resize(n, 0);
        r.read_exact(&mut body)?;
    }
    Ok(body)
}

fn answer(w: &mut TcpStream, status: &str, head: &str, body: &[u8], head_only: bool) -> std::io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\n{head}\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body);
    }
    w.write_all(&out)
}

fn serve(stream: TcpStream) -> std::io::Result<()> {
    let mut w = stream.try_clone()?;
    let mut r = BufReader::with_capacity(64 * 1024, stream);
    loop {
        let Some(request_line) = read_line(&mut r)? else {
            return Ok(());
        };
        if trim(&request_line).is_empty() {
            continue;
        }
        let mut received = trim(&request_line).to_vec();
        received.extend_from_slice(b"\r\n");
        let text = String::from_utf8_lossy(trim(&request_line)).into_owned();
        let mut parts = text.split(' ');
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("").to_string();
        let mut close = parts.next() == Some("HTTP/1.0");
        let (mut length, mut chunked, mut expect) = (None, false, false);
        loop {
            let Some(line) = read_line(&mut r)? else {
                return Ok(());
            };
            let line = trim(&line);
            if line.is_empty() {
                break;
            }
            received.extend_from_slice(line);
            received.extend_from_slice(b"\r\n");
            let l = String::from_utf8_lossy(line);
            if let Some((name, value)) = l.split_once(':') {
                let (name, value) = (name.to_ascii_lowercase(), value.trim().to_ascii_lowercase());
                match name.as_str() {
                    "content-length" => length = value.parse().ok(),
                    "transfer-encoding" => chunked = value.ends_with("chunked"),
                    "expect" => expect = value == "100-continue",
                    "connection" => {
                        if value.split(',').any(|t| t.trim() == "close") {
                            close = true;
                        } else if value.split(',').any(|t| t.trim() == "keep-alive") {
                            close = false;
                        }
                    }
                    _ => {}
                }
            }
        }
        let path = target.split('?').next().unwrap_or("").to_string();
        let head_only = method == "HEAD";
        let conn = if close { "Connection: close\r\n" } else { "" };
        match path.as_str() {
            "/early" => {
                w.write_all(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 9\r\nConnection: close\r\n\r\ntoo large")?;
                // A lingering close: stop writing, drain a while, so the 413 is not lost
                // to a reset for unread bytes (RFC 9112 9.6).
                w.shutdown(Shutdown::Write)?;
                r.get_ref().set_read_timeout(Some(Duration::from_secs(2)))?;
                let mut sink = [0u8; 65536];
                while matches!(r.read(&mut sink), Ok(n) if n > 0) {}
                return Ok(());
            }
            "/hangup" => return Ok(()),
            "/garbage" => {
                w.write_all(b"HTTP/1.1 abc this is no status line\r\n\r\n")?;
                return Ok(());
            }
            _ => {}
        }
        if path == "/continue" && expect {
            w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        let body = read_body(&mut r, length, chunked)?;
        match path.as_str() {
            "/echo" | "/continue" => {
                received.extend_from_slice(b"\r\n");
                received.extend_from_slice(&body);
                answer(&mut w, "200 OK", conn, &received, head_only)?;
            }
            "/chunked" => {
                let n = query(&target, "n").unwrap_or(3);
                let mut out = format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n{conn}\r\n").into_bytes();
                if !head_only {
                    for i in 0..n {
                        let c = format!("chunk {i} of {n}\n");
                        out.extend_from_slice(format!("{:x}\r\n{c}\r\n", c.len()).as_bytes());
                    }
                    out.extend_from_slice(b"0\r\n\r\n");
                }
                w.write_all(&out)?;
            }
            "/close" => {
                let mut out = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_vec();
                if !head_only {
                    out.extend_from_slice(b"a body delimited by the close of the connection\n");
                }
                w.write_all(&out)?;
                return Ok(());
            }
            "/status/204" => w.write_all(format!("HTTP/1.1 204 No Content\r\n{conn}\r\n").as_bytes())?,
            "/status/304" => w.write_all(format!("HTTP/1.1 304 Not Modified\r\nETag: \"e1\"\r\n{conn}\r\n").as_bytes())?,
            "/big" => {
                let n = query(&target, "bytes").unwrap_or(0);
                let big: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
                answer(&mut w, "200 OK", conn, &big, head_only)?;
            }
            "/hop" => {
                let head = format!("{conn}Connection: X-Resp-Secret\r\nX-Resp-Secret: 1\r\nKeep-Alive: timeout=5\r\nProxy-Authenticate: Basic\r\nX-Kept: yes\r\n");
                answer(&mut w, "200 OK", &head, b"hop", head_only)?;
            }
            "/sleep" => {
                std::thread::sleep(Duration::from_millis(query(&target, "ms").unwrap_or(0) as u64));
                answer(&mut w, "200 OK", conn, b"slept", head_only)?;
            }
            _ => answer(&mut w, "200 OK", conn, b"ok", head_only)?,
        }
        if close {
            return Ok(());
        }
    }
}

fn main() {
    let port: u16 = std::env::args().nth(1).and_then(|p| p.parse().ok()).expect("usage: target PORT");
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind");
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || serve(stream));
    }
}
