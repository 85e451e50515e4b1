//! HTTP/1.1 as the HTTP listener reads and writes it (RFC 9112), without building
//! messages: a message's head is parsed in place (`httparse`), what is forwarded is
//! written from it, and a body passes through as it came, its end found from its framing
//! (`Framing`, `Chunks`). `super::proxy` drives the connections.

/// ALB's limit on a request's head (its request line, each header and all of them
/// together fit in it: 16K, 16K and 64K), and the same for a target's answer.
pub const MAX_HEAD: usize = 64 * 1024;
/// The header fields a head may have.
pub const MAX_HEADERS: usize = 100;

/// How a message's body ends (RFC 9112 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    None,
    /// `Content-Length` bytes.
    Length(u64),
    /// The chunked coding, last.
    Chunked,
    /// When the connection closes (a response only).
    Close,
}

/// The framing of a request, and whether its connection must close after the answer
/// (both `Transfer-Encoding` and `Content-Length`: RFC 9112 6.3 item 3); an error is a
/// 400 (a coding other than chunked last, or a bad or conflicting `Content-Length`).
pub fn request_framing(headers: &[httparse::Header]) -> Result<(Framing, bool), &'static str> {
    let (te, cl) = framing_fields(headers)?;
    match (te, cl) {
        (Some(true), cl) => Ok((Framing::Chunked, cl.is_some())),
        (Some(false), _) => Err("a transfer coding other than chunked last"),
        (None, Some(0) | None) => Ok((Framing::None, false)),
        (None, Some(n)) => Ok((Framing::Length(n), false)),
    }
}

/// The framing of a target's answer to a request (`head`: a HEAD request); an error is a
/// 502 (a bad or conflicting `Content-Length`).
pub fn response_framing(
    status: u16,
    head: bool,
    headers: &[httparse::Header],
) -> Result<Framing, &'static str> {
    if head || status < 200 || status == 204 || status == 304 {
        return Ok(Framing::None);
    }
    match framing_fields(headers)? {
        (Some(true), _) => Ok(Framing::Chunked),
        (Some(false), _) => Ok(Framing::Close),
        (None, Some(n)) => Ok(Framing::Length(n)),
        (None, None) => Ok(Framing::Close),
    }
}

/// Whether the message has `Transfer-Encoding` (and chunked as its last coding), and its
/// `Content-Length` (every value the same).
fn framing_fields(
    headers: &[httparse::Header],
) -> Result<(Option<bool>, Option<u64>), &'static str> {
    let (mut te, mut cl) = (None, None);
    for h in headers {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            let v = std::str::from_utf8(h.value).map_err(|_| "a bad Transfer-Encoding")?;
            let last = v.rsplit(',').map(str::trim).find(|c| !c.is_empty());
            if let Some(last) = last {
                te = Some(last.eq_ignore_ascii_case("chunked"));
            }
        } else if h.name.eq_ignore_ascii_case("content-length") {
            for v in h.value.split(|b| *b == b',') {
                let v = v.trim_ascii();
                if v.is_empty() || !v.iter().all(u8::is_ascii_digit) || v.len() > 19 {
                    return Err("a bad Content-Length");
                }
                let n: u64 = std::str::from_utf8(v)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or("a bad Content-Length")?;
                if cl.is_some_and(|c| c != n) {
                    return Err("conflicting Content-Length values");
                }
                cl = Some(n);
            }
        }
    }
    Ok((te, cl))
}

/// Finds where a chunked body ends (RFC 9112 7.1), fed as its bytes come; with the data
/// of its chunks for a reader that wants them without the coding.
#[derive(Debug, Default)]
pub struct Chunks {
    state: ChunkState,
    /// The chunk's size so far, then what is left of its data.
    size: u64,
    /// Bytes of the current size or trailer line (bounded).
    line: usize,
    digits: u8,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    Trailer,
    TrailerLf,
    Done,
}

/// The longest request line or header taken (ALB's quota), and the longest chunk-size
/// line (with extensions) or trailer line.
pub const MAX_LINE: usize = 16 * 1024;

impl Chunks {
    /// Takes what of `input` belongs to the body: how many bytes (those after are the
    /// next message's); `data` gets the chunks' data. An error is a broken coding.
    pub fn feed(
        &mut self,
        input: &[u8],
        mut data: impl FnMut(&[u8]),
    ) -> Result<usize, &'static str> {
        use ChunkState::*;
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                Size => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        let d = (b as char).to_digit(16).expect("a hex digit") as u64;
                        self.digits += 1;
                        if self.digits > 15 {
                            return Err("a chunk size too large");
                        }
                        self.size = self.size * 16 + d;
                    }
                    b';' | b' ' | b'\t' if self.digits > 0 => self.state = Extension,
                    b'\r' if self.digits > 0 => self.state = SizeLf,
                    _ => return Err("a bad chunk size"),
                },
                Extension => {
                    self.line += 1;
                    if b == b'\r' {
                        self.state = SizeLf;
                    } else if self.line > MAX_LINE {
                        return Err("a chunk extension too long");
                    }
                }
                SizeLf => {
                    if b != b'\n' {
                        return Err("a chunk size line without its LF");
                    }
                    (self.line, self.digits) = (0, 0);
                    self.state = if self.size == 0 { Trailer } else { Data };
                }
                Data => {
                    let n = (input.len() - i).min(usize::try_from(self.size).unwrap_or(usize::MAX));
                    data(&input[i..i + n]);
                    self.size -= n as u64;
                    i += n;
                    if self.size == 0 {
                        self.state = DataCr;
                    }
                    continue;
                }
                DataCr if b == b'\r' => self.state = DataLf,
                DataLf if b == b'\n' => self.state = Size,
                DataCr | DataLf => return Err("a chunk's data without its CRLF"),
                Trailer => {
                    if b == b'\r' {
                        self.state = TrailerLf;
                    } else {
                        self.line += 1;
                        if self.line > MAX_LINE {
                            return Err("a trailer too long");
                        }
                    }
                }
                TrailerLf => {
                    if b != b'\n' {
                        return Err("a trailer line without its LF");
                    }
                    if self.line == 0 {
                        self.state = Done;
                        return Ok(i + 1);
                    }
                    (self.line, self.state) = (0, Trailer);
                }
                Done => return Ok(i),
            }
            i += 1;
        }
        Ok(i)
    }

    /// Whether the last chunk and the trailers are in.
    pub fn done(&self) -> bool {
        self.state == ChunkState::Done
    }
}

/// Appends `data` as one chunk of the chunked coding.
pub fn chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    use std::io::Write;
    let _ = write!(out, "{:x}\r\n", data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// The chunked coding's end: the last chunk, no trailer.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Fields that belong to one connection, not to the message (RFC 9110 7.6.1).
pub fn hop_by_hop(name: &str) -> bool {
    const HOP: &[&str] = &[
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "upgrade",
    ];
    HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// The field names a message's `Connection` lists (each one of its connection's), and
/// whether it says `close` and `keep-alive`.
#[derive(Default)]
pub struct Connection<'a> {
    pub named: Vec<&'a str>,
    pub close: bool,
    pub keep_alive: bool,
}

impl<'a> Connection<'a> {
    pub fn of(headers: &'a [httparse::Header<'a>]) -> Connection<'a> {
        let mut c = Connection::default();
        for h in headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        {
            let Ok(v) = std::str::from_utf8(h.value) else {
                continue;
            };
            for t in v.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                if t.eq_ignore_ascii_case("close") {
                    c.close = true;
                } else if t.eq_ignore_ascii_case("keep-alive") {
                    c.keep_alive = true;
                } else {
                    c.named.push(t);
                }
            }
        }
        c
    }

    /// Whether field `name` is not to be forwarded: hop-by-hop or named here.
    pub fn drops(&self, name: &str) -> bool {
        hop_by_hop(name) || self.named.iter().any(|n| n.eq_ignore_ascii_case(name))
    }
}

/// The values of field `name` (any case) that are text, in order.
pub fn values<'a>(
    headers: &'a [httparse::Header<'a>],
    name: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .iter()
        .filter(move |h| h.name.eq_ignore_ascii_case(name))
        .filter_map(|h| std::str::from_utf8(h.value).ok())
}

/// A request-target's parts (RFC 9112 3.2): the authority of an absolute-form one, and
/// what to send a target (origin form: path and query; `*` as it is).
pub struct Target<'a> {
    pub authority: Option<&'a str>,
    pub origin: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
}

/// Splits a request-target; `None` for a form a load balancer does not forward (the
/// authority form of CONNECT, or none at all).
pub fn target(raw: &str) -> Option<Target<'_>> {
    let (authority, origin) = if raw.starts_with('/') || raw == "*" {
        (None, raw)
    } else {
        let scheme_end = raw.find("://")?;
        let scheme = &raw[..scheme_end];
        if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
            return None;
        }
        let rest = &raw[scheme_end + 3..];
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let origin = &rest[end..];
        (
            Some(&rest[..end]),
            if origin.is_empty() { "/" } else { origin },
        )
    };
    let (path, query) = match origin.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (origin, None),
    };
    // `http://host?q` has an empty path: `/` for the rules (and the target: `write`).
    let path = if path.is_empty() { "/" } else { path };
    Some(Target {
        authority,
        origin,
        path,
        query,
    })
}

impl Target<'_> {
    /// Appends the origin form a target is sent.
    pub fn write(&self, out: &mut Vec<u8>) {
        if !self.origin.starts_with('/') && self.origin != "*" {
            out.push(b'/');
        }
        out.extend_from_slice(self.origin.as_bytes());
    }
}

/// A trace field's value, `1-<time>-<id>`: the version, the time in seconds (8 hex
/// digits) and 24 random hex digits (ALB User Guide, "Request tracing for your
/// Application Load Balancer").
fn trace_field(out: &mut Vec<u8>) {
    use std::cell::Cell;
    use std::io::Write;
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            let mut seed = [0u8; 8];
            let _ = getrandom::getrandom(&mut seed);
            u64::from_ne_bytes(seed) | 1
        });
    }
    // splitmix64: ids to tell requests apart, not secrets.
    let next = || {
        STATE.with(|s| {
            let x = s.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
            s.set(x);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        })
    };
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (a, b) = (next(), next());
    let _ = write!(out, "1-{:08x}-{:016x}{:08x}", secs as u32, a, b as u32);
}

/// Appends the `X-Amzn-Trace-Id` field ALB sends a target, from the one the request
/// brought (`got`): a new `Root` when it had none (or no `Root` field), else a new `Self`
/// field first (the one it had replaced), its other fields kept.
pub fn trace_id(out: &mut Vec<u8>, got: Option<&[u8]>) {
    out.extend_from_slice(b"X-Amzn-Trace-Id: ");
    let fields = got.and_then(|g| std::str::from_utf8(g).ok()).unwrap_or("");
    let is = |f: &str, name: &str| {
        f.trim()
            .split_once('=')
            .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case(name))
    };
    let has_root = fields.split(';').any(|f| is(f, "root"));
    out.extend_from_slice(if has_root { b"Self=" } else { b"Root=" });
    trace_field(out);
    for f in fields.split(';').map(str::trim) {
        if f.is_empty() || (has_root && is(f, "self")) {
            continue;
        }
        out.push(b';');
        out.extend_from_slice(f.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends a header field line.
pub fn field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The `Date` field's value now (RFC 9110 5.6.7), for the load balancer's own answers.
fn date() -> String {
    httpdate::fmt_http_date(std::time::SystemTime::now())
}

/// The load balancer's own answer (`Server: awselb/2.0`, as ALB sends it): its status
/// line, `Date`, `Content-Type` when given, `Location` when given, the body's length and
/// `Connection: close` when the connection closes after it; where its head ends in `out`.
pub fn own_answer(
    out: &mut Vec<u8>,
    status: u16,
    content_type: Option<&str>,
    location: Option<&str>,
    body: &[u8],
    close: bool,
) -> usize {
    use std::io::Write;
    let reason = reason(status);
    let _ = write!(
        out,
        "HTTP/1.1 {status} {reason}\r\nServer: awselb/2.0\r\nDate: {}\r\n",
        date()
    );
    if let Some(t) = content_type {
        field(out, "Content-Type", t.as_bytes());
    }
    if let Some(l) = location {
        field(out, "Location", l.as_bytes());
    }
    let _ = write!(out, "Content-Length: {}\r\n", body.len());
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    let head = out.len();
    out.extend_from_slice(body);
    head
}

/// ALB's page for its own errors (400, 405, 408, 502, 503, 504).
pub fn error_page(status: u16) -> String {
    let reason = reason(status);
    format!(
        "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n<center><h1>{status} {reason}</h1></center>\r\n</body>\r\n</html>\r\n"
    )
}

/// A status code's reason phrase (RFC 9110 15), empty for one it does not name.
pub fn reason(status: u16) -> &'static str {
    hyper::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h<'a>(name: &'a str, value: &'a str) -> httparse::Header<'a> {
        httparse::Header {
            name,
            value: value.as_bytes(),
        }
    }

    #[test]
    fn a_request_s_framing_follows_rfc_9112() {
        assert_eq!(request_framing(&[]), Ok((Framing::None, false)));
        assert_eq!(
            request_framing(&[h("Content-Length", "12")]),
            Ok((Framing::Length(12), false))
        );
        assert_eq!(
            request_framing(&[h("content-length", "5, 5")]),
            Ok((Framing::Length(5), false))
        );
        assert!(request_framing(&[h("Content-Length", "5"), h("Content-Length", "6")]).is_err());
        assert!(request_framing(&[h("Content-Length", "-1")]).is_err());
        assert!(request_framing(&[h("Content-Length", "+1")]).is_err());
        assert_eq!(
            request_framing(&[h("Transfer-Encoding", "gzip, Chunked")]),
            Ok((Framing::Chunked, false))
        );
        // Both: the chunked coding, and the connection closes after the answer.
        assert_eq!(
            request_framing(&[h("Content-Length", "3"), h("Transfer-Encoding", "chunked")]),
            Ok((Framing::Chunked, true))
        );
        assert!(request_framing(&[h("Transfer-Encoding", "chunked, gzip")]).is_err());
        assert_eq!(
            response_framing(200, false, &[h("Transfer-Encoding", "gzip")]),
            Ok(Framing::Close)
        );
        assert_eq!(response_framing(200, false, &[]), Ok(Framing::Close));
        assert_eq!(
            response_framing(200, true, &[h("Content-Length", "9")]),
            Ok(Framing::None)
        );
        for s in [100, 204, 304] {
            assert_eq!(
                response_framing(s, false, &[h("Content-Length", "9")]),
                Ok(Framing::None)
            );
        }
    }

    #[test]
    fn a_chunked_body_ends_where_its_last_chunk_and_trailers_do() {
        let body = b"4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nX-Sum: 1\r\n\r\nGET / HTTP/1.1\r\n";
        // Byte by byte and at once: the same end, the same data.
        for step in [1, 3, body.len()] {
            let (mut c, mut data, mut at) = (Chunks::default(), Vec::new(), 0);
            while !c.done() {
                let end = (at + step).min(body.len());
                at += c
                    .feed(&body[at..end], |d| data.extend_from_slice(d))
                    .unwrap();
            }
            assert_eq!(&body[at..], b"GET / HTTP/1.1\r\n");
            assert_eq!(data, b"Wikipedia");
        }
        for bad in [
            &b"x\r\n"[..],
            b"4\r\nWikiX\r\n",
            b"4\nWiki",
            b"\r\n",
            b"1234567890abcdef0\r\n",
        ] {
            assert!(Chunks::default().feed(bad, |_| ()).is_err(), "{bad:?}");
        }
        let mut out = Vec::new();
        chunk(&mut out, b"hello, world");
        chunk(&mut out, b"");
        out.extend_from_slice(LAST_CHUNK);
        let mut data = Vec::new();
        let mut c = Chunks::default();
        assert_eq!(c.feed(&out, |d| data.extend_from_slice(d)), Ok(out.len()));
        assert!(c.done());
        assert_eq!(data, b"hello, world");
    }

    #[test]
    fn request_targets_split_into_what_rules_and_targets_see() {
        let t = target("/a/b?x=1").unwrap();
        assert_eq!(
            (t.authority, t.origin, t.path, t.query),
            (None, "/a/b?x=1", "/a/b", Some("x=1"))
        );
        let t = target("http://Example.com:8080/p?q").unwrap();
        assert_eq!(
            (t.authority, t.origin, t.path, t.query),
            (Some("Example.com:8080"), "/p?q", "/p", Some("q"))
        );
        let t = target("http://example.com").unwrap();
        assert_eq!((t.origin, t.path), ("/", "/"));
        let t = target("http://example.com?q").unwrap();
        assert_eq!((t.origin, t.path, t.query), ("?q", "/", Some("q")));
        let mut out = Vec::new();
        t.write(&mut out);
        assert_eq!(out, b"/?q");
        assert!(target("example.com:443").is_none());
        assert!(target("ftp://x/").is_none());
        assert_eq!(target("*").unwrap().origin, "*");
    }

    #[test]
    fn the_trace_id_is_alb_s_root_or_a_new_self_before_the_fields_it_had() {
        let trace = |got: Option<&str>| {
            let mut out = Vec::new();
            trace_id(&mut out, got.map(str::as_bytes));
            let line = String::from_utf8(out).unwrap();
            line.strip_prefix("X-Amzn-Trace-Id: ")
                .unwrap()
                .trim_end()
                .to_string()
        };
        let id = |f: &str| {
            let (v, rest) = f.split_once('-').unwrap();
            let (t, id) = rest.split_once('-').unwrap();
            assert_eq!(v, "1");
            assert_eq!(t.len(), 8, "{f}");
            assert_eq!(id.len(), 24, "{f}");
            assert!(
                t.chars().chain(id.chars()).all(|c| c.is_ascii_hexdigit()),
                "{f}"
            );
            id.to_string()
        };
        let a = trace(None);
        let b = trace(None);
        assert_ne!(
            id(a.strip_prefix("Root=").unwrap()),
            id(b.strip_prefix("Root=").unwrap())
        );
        let root = "Root=1-67891233-abcdef012345678912345678";
        let t = trace(Some(root));
        let (me, rest) = t.split_once(';').unwrap();
        id(me.strip_prefix("Self=").unwrap());
        assert_eq!(rest, root);
        let t = trace(Some(
            "Self=1-67891233-12456789abcdef012345678;Root=1-67891233-abcdef012345678912345678;CalledFrom=app",
        ));
        let (me, rest) = t.split_once(';').unwrap();
        assert!(me.starts_with("Self=") && !me.contains("12456789abcdef012345678"));
        assert_eq!(
            rest,
            "Root=1-67891233-abcdef012345678912345678;CalledFrom=app"
        );
        let t = trace(Some("CalledFrom=app"));
        assert!(
            t.starts_with("Root=") && t.ends_with(";CalledFrom=app"),
            "{t}"
        );
    }

    #[test]
    fn connection_names_the_fields_of_its_connection() {
        let hs = [
            h("Connection", "keep-alive, X-Secret"),
            h("connection", "Close"),
        ];
        let c = Connection::of(&hs);
        assert!(c.close && c.keep_alive);
        assert!(c.drops("x-secret") && c.drops("Upgrade") && c.drops("TE"));
        assert!(!c.drops("X-Other") && !c.drops("Transfer-Encoding"));
    }
}
