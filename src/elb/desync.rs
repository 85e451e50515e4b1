//! ALB's HTTP desync mitigation (`routing.http.desync_mitigation_mode`): each request's
//! head is classified as AWS's http-desync-guardian classifies it (Compliant, Acceptable,
//! Ambiguous, Severe, with its reason codes), and the mode says what becomes of it.
//!
//! Ref: ALB User Guide, "Edit attributes of your Application Load Balancer", "Desync
//! mitigation mode" (the classes and the table of modes); github.com/aws/http-desync-guardian
//! docs/README.md (the reasons) and tests/*.yaml (the cases `tests` below follow).
//! Allocation-free: one pass over the head, on the stack.

use super::h1;

/// A request's class, least to most dangerous.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    /// RFC 7230 and no known threat.
    Compliant,
    /// Not RFC 7230, no known threat.
    Acceptable,
    /// Not RFC 7230, and servers may read it differently.
    Ambiguous,
    /// Malformed or crafted to desynchronise parsers.
    Severe,
}

/// Why a request is classified as it is: the access log's `classification_reason` codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Compliant,
    NonCompliantHeader,
    SpaceInUri,
    NonCompliantVersion,
    GetHeadZeroContentLength,
    EmptyHeader,
    AmbiguousUri,
    UndefinedContentLengthSemantics,
    UndefinedTransferEncodingSemantics,
    DuplicateContentLength,
    BothTeClPresent,
    SuspiciousHeader,
    BadHeader,
    BadUri,
    BadVersion,
    MultipleContentLength,
    BadContentLength,
    MultipleTransferEncodingChunked,
    BadTransferEncoding,
    BadMethod,
}

/// `routing.http.desync_mitigation_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    Monitor,
    #[default]
    Defensive,
    Strictest,
}

/// What the load balancer does with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Forward,
    /// Forwarded; the client's and the target's connections closed after its answer.
    ForwardThenClose,
    /// A 400, the client's connection closed.
    Block,
}

impl Mode {
    /// The attribute's value (checked at ModifyLoadBalancerAttributes; ALB's default for
    /// anything else).
    pub fn of(value: Option<&str>) -> Mode {
        match value {
            Some("monitor") => Mode::Monitor,
            Some("strictest") => Mode::Strictest,
            _ => Mode::Defensive,
        }
    }

    /// ALB's table ("Desync mitigation mode", Modes): monitor allows every class;
    /// defensive blocks Severe and closes both connections after an Ambiguous one;
    /// strictest allows Compliant only.
    pub fn action(self, class: Class) -> Action {
        match (self, class) {
            (_, Class::Compliant) | (Mode::Monitor, _) => Action::Forward,
            (Mode::Defensive, Class::Acceptable) => Action::Forward,
            (Mode::Defensive, Class::Ambiguous) => Action::ForwardThenClose,
            (Mode::Defensive, Class::Severe) | (Mode::Strictest, _) => Action::Block,
        }
    }
}

impl Reason {
    pub fn class(self) -> Class {
        use Reason::*;
        match self {
            Compliant => Class::Compliant,
            NonCompliantHeader | SpaceInUri | NonCompliantVersion | GetHeadZeroContentLength => {
                Class::Acceptable
            }
            EmptyHeader
            | AmbiguousUri
            | UndefinedContentLengthSemantics
            | UndefinedTransferEncodingSemantics
            | DuplicateContentLength
            | BothTeClPresent
            | SuspiciousHeader => Class::Ambiguous,
            BadHeader
            | BadUri
            | BadVersion
            | MultipleContentLength
            | BadContentLength
            | MultipleTransferEncodingChunked
            | BadTransferEncoding
            | BadMethod => Class::Severe,
        }
    }
}

/// The verdict so far: the first reason of the highest class found wins.
struct Verdict(Reason);

impl Verdict {
    fn raise(&mut self, r: Reason) {
        if r.class() > self.0.class() {
            self.0 = r;
        }
    }
}

/// What a byte may be, as bits: a `tchar` (RFC 7230 3.2.6), in a field value (VCHAR,
/// obs-text, SP, HTAB: 3.2), in a request-target as ALB takes it (above SP, not DEL).
const TCHAR: u8 = 1;
const VALUE: u8 = 2;
const URI: u8 = 4;
static BYTES: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        let token = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-'
            )
            || matches!(c, b'.' | b'^' | b'_' | b'`' | b'|' | b'~');
        let value = c == b'\t' || (c >= b' ' && c != 0x7f);
        let uri = c > b' ' && c != 0x7f;
        t[b] = if token { TCHAR } else { 0 }
            | if value { VALUE } else { 0 }
            | if uri { URI } else { 0 };
        b += 1;
    }
    t
};

/// Whether every byte of `bytes` is `what` (one table look-up a byte, no branch: the
/// common path).
fn all(bytes: &[u8], what: u8) -> bool {
    bytes.iter().fold(what, |a, b| a & BYTES[usize::from(*b)]) == what
}

fn tchar(b: u8) -> bool {
    BYTES[usize::from(b)] & TCHAR != 0
}

/// A byte no HTTP/1 field or target may hold: CR, LF, NUL.
fn bad(b: u8) -> bool {
    matches!(b, b'\r' | b'\n' | 0)
}

fn trim(v: &[u8]) -> &[u8] {
    let v = match v.iter().position(|b| !matches!(b, b' ' | b'\t')) {
        Some(i) => &v[i..],
        None => return &[],
    };
    let end = v
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(0, |i| i + 1);
    &v[..end]
}

/// How close a field name is to `Transfer-Encoding` or `Content-Length`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Like {
    Same,
    /// The same letters with other delimiters, case folds or non-letters around them
    /// (`Transfer_Encoding`, `Content-Length `, `\x01Content-Length`, `Transfer-Encodıng`).
    Letters,
    Distant,
}

fn next_alnum(h: &[u8], mut i: usize) -> usize {
    while i < h.len() && !h[i].is_ascii_alphanumeric() {
        i += 1;
    }
    i
}

fn next_visible(h: &[u8], mut i: usize) -> usize {
    while i < h.len() && h[i] <= b' ' {
        i += 1;
    }
    i
}

/// `want` (lower case letters and `-`) against a field name: letters compared without
/// case (and the two non-ASCII letters whose upper case is ASCII: ſ and ı), delimiters
/// skipped over any run of non-alphanumerics, control bytes and spaces between letters.
fn like(want: &[u8], name: &[u8]) -> Like {
    if name.len() < want.len() {
        return Like::Distant;
    }
    let mut i = next_alnum(name, 0);
    let mut same = i == 0 && want.len() == name.len();
    for &c in want {
        if i == name.len() {
            return Like::Distant;
        }
        let delimiter = c == b'-';
        let (matched, next) = if name[i].to_ascii_lowercase() == c {
            (true, i + 1)
        } else if i + 1 < name.len()
            && matches!(
                (c, name[i], name[i + 1]),
                (b's', 0xc5, 0xbf) | (b'i', 0xc4, 0xb1)
            )
        {
            (true, i + 2)
        } else {
            (false, i + 1)
        };
        if !matched {
            if !delimiter {
                break;
            }
            same = false;
        }
        i = if delimiter {
            next_alnum(name, next)
        } else {
            next_visible(name, next)
        };
    }
    if i == name.len() && same {
        Like::Same
    } else if i == name.len() || next_alnum(name, i) == name.len() {
        Like::Letters
    } else {
        Like::Distant
    }
}

/// A field's tier: whether its name is a token and its value field-content (RFC 7230
/// 3.2): `Some(BadHeader)` with CR, LF or NUL, `Some(NonCompliantHeader)` otherwise.
fn field(name: &[u8], value: &[u8]) -> Option<Reason> {
    if all(name, TCHAR) && all(value, VALUE) {
        return None;
    }
    let mut worst = None;
    for &b in name {
        if bad(b) {
            return Some(Reason::BadHeader);
        }
        if !tchar(b) {
            worst = Some(Reason::NonCompliantHeader);
        }
    }
    for &b in value {
        if bad(b) {
            return Some(Reason::BadHeader);
        }
        if BYTES[usize::from(b)] & VALUE == 0 {
            worst = Some(Reason::NonCompliantHeader);
        }
    }
    worst
}

/// A `Transfer-Encoding` item's coding, if it is one HTTP/1.1 defines.
fn coding(item: &[u8]) -> Option<&'static [u8]> {
    let item = trim(item);
    let end = item.iter().position(|b| *b == b';').unwrap_or(item.len());
    let c = trim(&item[..end]);
    [
        &b"chunked"[..],
        b"compress",
        b"deflate",
        b"gzip",
        b"identity",
    ]
    .into_iter()
    .find(|k| k.eq_ignore_ascii_case(c))
}

/// A `Content-Length` value: digits only (around spaces), no overflow.
fn length(v: &[u8]) -> Option<u64> {
    trim(v).iter().try_fold(0u64, |n, b| {
        if !b.is_ascii_digit() {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// Classifies a request: its method, request-target and version as they came (the
/// version `HTTP/1.1`, say) and its header fields.
pub fn classify(method: &[u8], uri: &[u8], version: &[u8], headers: &[httparse::Header]) -> Reason {
    // HTTP/2 and later are another framing (compared as the guardian does, bytewise).
    if version >= &b"HTTP/2"[..] {
        return Reason::Compliant;
    }
    let version = match trim(version) {
        b"" => &b"HTTP/0.9"[..],
        _ => version,
    };
    let mut v = Verdict(Reason::Compliant);
    // The TE and CL fields (and those made to look like them), by their index: at most
    // MAX_HEADERS, as a bit set on the stack.
    let mut te = [0u128; h1::MAX_HEADERS.div_ceil(128)];
    let mut cl = te;
    let (mut any_te, mut any_cl) = (false, false);
    let mark = |set: &mut [u128], i: usize| set[i / 128] |= 1 << (i % 128);
    for (i, h) in headers.iter().enumerate() {
        let name = h.name.as_bytes();
        let te_like = like(b"transfer-encoding", name);
        let cl_like = if te_like == Like::Distant {
            like(b"content-length", name)
        } else {
            Like::Distant
        };
        let essential = te_like == Like::Same || cl_like == Like::Same;
        let tier = field(name, h.value);
        if let Some(r) = tier {
            v.raise(r);
        }
        let trimmed = trim(name);
        if trimmed.is_empty() || trimmed[0] == b':' {
            v.raise(Reason::EmptyHeader);
        } else if !essential && tier != Some(Reason::BadHeader) {
            if te_like == Like::Letters {
                mark(&mut te, i);
                any_te = true;
                v.raise(Reason::SuspiciousHeader);
            } else if cl_like == Like::Letters {
                mark(&mut cl, i);
                any_cl = true;
                v.raise(Reason::SuspiciousHeader);
            }
        } else if te_like == Like::Same {
            mark(&mut te, i);
            any_te = true;
        } else if cl_like == Like::Same {
            mark(&mut cl, i);
            any_cl = true;
        }
    }
    if any_te || any_cl {
        framing(
            &mut v,
            method,
            version,
            headers,
            (any_te, &te),
            (any_cl, &cl),
        );
    }
    if !all(method, TCHAR) {
        v.raise(Reason::BadMethod);
    }
    check_version(&mut v, version);
    let uri = if all(uri, URI) { &[][..] } else { uri };
    for &b in uri {
        if BYTES[usize::from(b)] & URI != 0 {
            continue;
        }
        if bad(b) {
            v.raise(Reason::BadUri);
            break;
        }
        v.raise(if b == b' ' {
            Reason::SpaceInUri
        } else {
            Reason::AmbiguousUri
        });
    }
    v.0
}

/// The rules on `Transfer-Encoding` and `Content-Length` (RFC 7230 3.3).
fn framing(
    v: &mut Verdict,
    method: &[u8],
    version: &[u8],
    headers: &[httparse::Header],
    (any_te, te): (bool, &[u128]),
    (any_cl, cl): (bool, &[u128]),
) {
    fn of<'a>(
        headers: &'a [httparse::Header<'a>],
        set: &'a [u128],
    ) -> impl Iterator<Item = &'a [u8]> {
        headers
            .iter()
            .enumerate()
            .filter(move |(i, _)| set[i / 128] & (1 << (i % 128)) != 0)
            .map(|(_, h)| h.value)
    }
    // Transfer-Encoding means nothing before HTTP/1.1, Content-Length before HTTP/1.0.
    if any_te && version <= &b"HTTP/1.0"[..] {
        return v.raise(Reason::UndefinedTransferEncodingSemantics);
    }
    if any_cl && version < &b"HTTP/1.0"[..] {
        return v.raise(Reason::UndefinedContentLengthSemantics);
    }
    let mut chunked = false;
    for item in of(headers, te).flat_map(|value| value.split(|b| *b == b',')) {
        match coding(item) {
            Some(c) => {
                let is_chunked = c == b"chunked";
                if chunked && is_chunked {
                    v.raise(Reason::MultipleTransferEncodingChunked);
                }
                chunked = is_chunked;
            }
            None => v.raise(Reason::BadTransferEncoding),
        }
    }
    let mut length_of = None;
    for value in of(headers, cl) {
        match (length(value), length_of) {
            (None, _) => v.raise(Reason::BadContentLength),
            (Some(n), Some(m)) if n != m => v.raise(Reason::MultipleContentLength),
            (Some(_), Some(_)) => v.raise(Reason::DuplicateContentLength),
            (Some(n), None) => length_of = Some(n),
        }
    }
    // A body has no meaning in a GET or a HEAD (RFC 7231 4.3.1-2).
    if method == b"GET" || method == b"HEAD" {
        if any_te {
            v.raise(Reason::UndefinedTransferEncodingSemantics);
        }
        match length_of {
            Some(0) => v.raise(Reason::GetHeadZeroContentLength),
            Some(_) => v.raise(Reason::UndefinedContentLengthSemantics),
            None => {}
        }
    }
    if length_of.is_some() && any_te {
        v.raise(Reason::BothTeClPresent);
    }
}

fn check_version(v: &mut Verdict, version: &[u8]) {
    let t = trim(version);
    if t == b"HTTP/0.9" {
        return v.raise(Reason::NonCompliantVersion);
    }
    let valid = t.len() == 8 && t.starts_with(b"HTTP/1.") && t[7].is_ascii_digit();
    if !valid {
        v.raise(Reason::BadVersion);
    } else if t.len() != version.len() || t[7] > b'1' {
        v.raise(Reason::NonCompliantVersion);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One case: method, target, version, fields, the reason expected.
    type Case<'a> = (
        &'a str,
        &'a [u8],
        &'a [u8],
        &'a [(&'a str, &'a [u8])],
        Reason,
    );

    /// The cases of http-desync-guardian's tests/*.yaml, in our own words, one or more a
    /// reason (one line each: a table).
    #[rustfmt::skip]
    const CASES: &[Case] = &[
        // Compliant (tests/rfc-compliant.yaml).
        ("GET", b"/", b"HTTP/1.1", &[("Host", b"a"), ("Accept", b"*/*")], Reason::Compliant),
        ("POST", b"/a", b"HTTP/1.1", &[("Content-Length", b"10")], Reason::Compliant),
        ("POST", b"/a", b"HTTP/1.1", &[("transfer-encoding", b"gzip, chunked")], Reason::Compliant),
        ("POST", b"/a", b"HTTP/1.0", &[("Content-Length", b"1")], Reason::Compliant),
        ("GET", b"/", b"HTTP/2.0", &[("Content-Length", b"x")], Reason::Compliant),
        ("GET", b"/", b"HTTP/1.1", &[("X_Under", b"1"), ("Content-Type", b"\xe9t\xe9")], Reason::Compliant),
        ("GET", b"/", b"HTTP/1.1", &[("Transfer-Encoding-X", b"chunked")], Reason::Compliant),
        // Acceptable (tests/acceptable.yaml).
        ("PUT", b"/a", b"HTTP/1.1", &[("x-custom ", b"v"), ("Transfer-Encoding", b"chunked")], Reason::NonCompliantHeader),
        ("PUT", b"/a", b"HTTP/1.1", &[("\x01x-custom", b"v")], Reason::NonCompliantHeader),
        ("PUT", b"/a", b"HTTP/1.1", &[("x", b"a\x7fb")], Reason::NonCompliantHeader),
        ("GET", b"/", b"HTTP/1.1", &[("Content-Length", b"0")], Reason::GetHeadZeroContentLength),
        ("HEAD", b"/", b"HTTP/1.1", &[("Content-Length", b"0")], Reason::GetHeadZeroContentLength),
        ("GET", b"/a b", b"HTTP/1.1", &[], Reason::SpaceInUri),
        ("GET", b"/", b"HTTP/1.2", &[], Reason::NonCompliantVersion),
        ("GET", b"/", b" HTTP/1.1", &[], Reason::NonCompliantVersion),
        ("GET", b"/", b"", &[], Reason::NonCompliantVersion),
        // Ambiguous (tests/ambiguous.yaml).
        ("POST", b"/a", b"HTTP/1.1", &[("Transfer-Encoding ", b"chunked")], Reason::SuspiciousHeader),
        ("POST", b"/a", b"HTTP/1.1", &[("Transfer-Encoding\t", b"chunked")], Reason::SuspiciousHeader),
        ("POST", b"/a", b"HTTP/1.1", &[("\x01Transfer-Encoding", b"chunked")], Reason::SuspiciousHeader),
        ("POST", b"/a", b"HTTP/1.1", &[("\x01\x01Content-Length", b"1")], Reason::SuspiciousHeader),
        ("POST", b"/a", b"HTTP/1.1", &[("Transfer- Encoding", b"chunked")], Reason::SuspiciousHeader),
        ("POST", b"/a", b"HTTP/1.1", &[("Transfer_Encoding", b"chunked")], Reason::SuspiciousHeader),
        ("POST", b"/a", b"HTTP/1.1", &[("Content_Length", b"5")], Reason::SuspiciousHeader),
        ("POST", b"/a", b"HTTP/1.1", &[("Transfer-Encodıng", b"chunked")], Reason::SuspiciousHeader),
        ("POST", b"/a", b"HTTP/1.1", &[("Tranſfer-Encoding", b"chunked")], Reason::SuspiciousHeader),
        ("POST", b"/a", b"HTTP/1.1", &[("", b"x")], Reason::EmptyHeader),
        ("POST", b"/a", b"HTTP/1.1", &[(" ", b"x")], Reason::EmptyHeader),
        ("GET", b"/a\x01", b"HTTP/1.1", &[], Reason::AmbiguousUri),
        ("GET", b"/a\x7f", b"HTTP/1.1", &[], Reason::AmbiguousUri),
        ("GET", b"/", b"HTTP/1.1", &[("Content-Length", b"5")], Reason::UndefinedContentLengthSemantics),
        ("GET", b"/", b"HTTP/0.9", &[("Content-Length", b"0")], Reason::UndefinedContentLengthSemantics),
        ("HEAD", b"/", b"HTTP/1.1", &[("Transfer-Encoding", b"chunked")], Reason::UndefinedTransferEncodingSemantics),
        ("POST", b"/", b"HTTP/1.0", &[("Transfer-Encoding", b"chunked")], Reason::UndefinedTransferEncodingSemantics),
        ("POST", b"/", b"HTTP/1.1", &[("Content-Length", b"5"), ("content-length", b"5")], Reason::DuplicateContentLength),
        ("POST", b"/", b"HTTP/1.1", &[("Content-Length", b"5"), ("Transfer-Encoding", b"chunked")], Reason::BothTeClPresent),
        ("POST", b"/", b"HTTP/1.1", &[("Transfer_Encoding", b"chunked"), ("Content-Length", b"5")], Reason::SuspiciousHeader),
        // Severe (tests/severe.yaml).
        ("POST", b"/", b"HTTP/1.1", &[("Content-Length", b"1000"), ("Content-Length", b"100")], Reason::MultipleContentLength),
        ("POST", b"/", b"HTTP/1.1", &[("Content-Length", b"1000,1000")], Reason::BadContentLength),
        ("POST", b"/", b"HTTP/1.1", &[("Content-Length", b"1000 1000")], Reason::BadContentLength),
        ("POST", b"/", b"HTTP/1.1", &[("Content-Length", b"1000.1000")], Reason::BadContentLength),
        ("POST", b"/", b"HTTP/1.1", &[("Content-Length", b"18446744073709551616")], Reason::BadContentLength),
        ("POST", b"/", b"HTTP/1.1", &[("Content-Length", b"1000\x11")], Reason::BadContentLength),
        ("POST", b"/", b"HTTP/1.1", &[("Transfer-Encoding", b"xchunked")], Reason::BadTransferEncoding),
        ("POST", b"/", b"HTTP/1.1", &[("Transfer-Encoding", b"chunked\x11")], Reason::BadTransferEncoding),
        ("POST", b"/", b"HTTP/1.1", &[("Transfer-Encoding", b"chunked,")], Reason::BadTransferEncoding),
        ("POST", b"/", b"HTTP/1.1", &[ ("Transfer-Encoding", b"chunked"), ("Transfer-Encoding", b"chunked"), ], Reason::MultipleTransferEncodingChunked),
        ("POST", b"/", b"HTTP/1.1", &[("Transfer-Encoding", b"chunked, chunked")], Reason::MultipleTransferEncodingChunked),
        ("POST", b"/", b"HTTP/1.1", &[("X-A", b"a\0b")], Reason::BadHeader),
        ("POST", b"/", b"HTTP/1.1", &[("X-A", b"a\rb")], Reason::BadHeader),
        ("POST", b"/", b"HTTP/1.1", &[("X\nA", b"a")], Reason::BadHeader),
        ("GET", b"/a\0", b"HTTP/1.1", &[], Reason::BadUri),
        ("GET", b"/a\r\n", b"HTTP/1.1", &[], Reason::BadUri),
        ("GET", b"/", b"HTTP/1.x", &[], Reason::BadVersion),
        ("GET", b"/", b"HTTP/1.1.1", &[], Reason::BadVersion),
        ("GET", b"/", b"HTTA/1.1", &[], Reason::BadVersion),
        ("G(T", b"/", b"HTTP/1.1", &[], Reason::BadMethod),
        // The first reason of the highest class wins.
        ("GET", b"/a b", b"HTTP/1.1", &[("Content-Length", b"x")], Reason::BadContentLength),
        ("GET", b"/a\x01", b"HTTP/1.1", &[("X", b"\x01")], Reason::AmbiguousUri),
    ];

    #[test]
    fn requests_are_classified_as_http_desync_guardian_does() {
        for (method, uri, version, fields, want) in CASES {
            let headers: Vec<httparse::Header> = fields
                .iter()
                .map(|(name, value)| httparse::Header { name, value })
                .collect();
            let got = classify(method.as_bytes(), uri, version, &headers);
            assert_eq!(
                got,
                *want,
                "{method} {} {} {fields:?}",
                String::from_utf8_lossy(uri),
                String::from_utf8_lossy(version)
            );
        }
    }

    #[test]
    fn each_mode_does_what_alb_s_table_says() {
        use Action::*;
        use Class::*;
        let table = [
            (Compliant, [Forward, Forward, Forward]),
            (Acceptable, [Forward, Forward, Block]),
            (Ambiguous, [Forward, ForwardThenClose, Block]),
            (Severe, [Forward, Block, Block]),
        ];
        for (class, actions) in table {
            for (mode, want) in [Mode::Monitor, Mode::Defensive, Mode::Strictest]
                .into_iter()
                .zip(actions)
            {
                assert_eq!(mode.action(class), want, "{mode:?} {class:?}");
            }
        }
        assert_eq!(Mode::of(None), Mode::Defensive);
        assert_eq!(Mode::of(Some("strictest")), Mode::Strictest);
    }
}
