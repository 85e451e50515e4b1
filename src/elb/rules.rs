//! Listener rules as ALB evaluates them: the conditions (`host-header`, `path-pattern`,
//! `http-header`, `query-string`, `http-request-method`, `source-ip`) read from a request's
//! members, checked against ELB's limits, matched against a request with ALB's wildcards
//! and case rules; and the redirect action's URL with its `#{…}` keywords.
//! Ref: API_RuleCondition and its `*ConditionConfig` shapes, API_RedirectActionConfig,
//! elasticloadbalancing/latest/application/rule-condition-types.html.

use super::error::{ElbError, ElbResult};
use super::query::{Params, Xml};
use serde::{Deserialize, Serialize};

/// One key/value pair (or value alone) a `query-string` condition looks for.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct QueryPair {
    pub key: Option<String>,
    pub value: String,
}

/// A rule condition; a request meets it when one of its values matches.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "field", rename_all = "kebab-case")]
pub enum Condition {
    HostHeader { values: Vec<String> },
    PathPattern { values: Vec<String> },
    HttpHeader { name: String, values: Vec<String> },
    QueryString { pairs: Vec<QueryPair> },
    HttpRequestMethod { values: Vec<String> },
    SourceIp { values: Vec<String> },
}

/// The condition fields ELB knows (the model's `RuleCondition.Field`).
const FIELDS: &str =
    "[http-header, http-request-method, host-header, path-pattern, query-string, source-ip]";

fn validation(msg: impl Into<String>) -> ElbError {
    ElbError::Validation(msg.into())
}

/// ELB's limits on a rule's conditions (rule-condition-types.html, "Condition basics"):
/// up to three match evaluations per condition, five per rule, five wildcards per rule.
const VALUES_PER_CONDITION: usize = 3;
const VALUES_PER_RULE: usize = 5;
const WILDCARDS_PER_RULE: usize = 5;

impl Condition {
    pub fn field(&self) -> &'static str {
        match self {
            Condition::HostHeader { .. } => "host-header",
            Condition::PathPattern { .. } => "path-pattern",
            Condition::HttpHeader { .. } => "http-header",
            Condition::QueryString { .. } => "query-string",
            Condition::HttpRequestMethod { .. } => "http-request-method",
            Condition::SourceIp { .. } => "source-ip",
        }
    }

    /// The match evaluations (each value, or each key and value of a query pair).
    fn values(&self) -> Vec<&str> {
        match self {
            Condition::HostHeader { values }
            | Condition::PathPattern { values }
            | Condition::HttpHeader { values, .. }
            | Condition::HttpRequestMethod { values }
            | Condition::SourceIp { values } => values.iter().map(String::as_str).collect(),
            Condition::QueryString { pairs } => pairs.iter().map(|p| p.value.as_str()).collect(),
        }
    }

    fn wildcards(&self) -> usize {
        let count = |s: &str| s.chars().filter(|c| *c == '*' || *c == '?').count();
        match self {
            Condition::QueryString { pairs } => pairs
                .iter()
                .map(|p| count(&p.value) + p.key.as_deref().map_or(0, count))
                .sum(),
            Condition::HttpRequestMethod { .. } | Condition::SourceIp { .. } => 0,
            other => other.values().into_iter().map(count).sum(),
        }
    }

    /// Reads one `Conditions.member.N` structure: the `Values` shorthand (host-header and
    /// path-pattern only) or the field's `*Config`, checked against ELB's rules for it.
    pub fn parse(c: &Params) -> ElbResult<Condition> {
        let field = c.required("Field")?;
        let shorthand = c.list("Values");
        let configs = [
            ("HostHeaderConfig", "host-header"),
            ("PathPatternConfig", "path-pattern"),
            ("HttpHeaderConfig", "http-header"),
            ("QueryStringConfig", "query-string"),
            ("HttpRequestMethodConfig", "http-request-method"),
            ("SourceIpConfig", "source-ip"),
        ];
        for (config, of) in configs {
            let given = c.sub(config);
            if !given.list("RegexValues").is_empty() {
                return Err(ElbError::InvalidConfigurationRequest(format!(
                    "{config}.RegexValues: regular-expression conditions are not served by minifargate (it matches Values with ALB's wildcards * and ?)"
                )));
            }
            if !given.is_empty() && of != field {
                return Err(validation(format!(
                    "{config} can be specified only for the '{of}' condition field, not '{field}'"
                )));
            }
        }
        if !c.list("RegexValues").is_empty() {
            return Err(ElbError::InvalidConfigurationRequest(
                "RegexValues: regular-expression conditions are not served by minifargate (it matches Values with ALB's wildcards * and ?)".into(),
            ));
        }
        if !shorthand.is_empty() && !matches!(field, "host-header" | "path-pattern") {
            return Err(validation(format!(
                "Values can be specified only for the 'host-header' and 'path-pattern' condition fields; use the {field} condition's config"
            )));
        }
        // Values and the config may both be given (Terraform does) when they agree.
        let merged = |config: &str| -> ElbResult<Vec<String>> {
            let cfg = c.sub(config).list("Values");
            match (shorthand.is_empty(), cfg.is_empty()) {
                (false, false) if cfg != shorthand => Err(validation(format!(
                    "Values and {config}.Values differ: give the values once"
                ))),
                (false, _) => Ok(shorthand.clone()),
                _ => Ok(cfg),
            }
        };
        let cond = match field {
            "host-header" => Condition::HostHeader {
                values: merged("HostHeaderConfig")?,
            },
            "path-pattern" => Condition::PathPattern {
                values: merged("PathPatternConfig")?,
            },
            "http-header" => {
                let cfg = c.sub("HttpHeaderConfig");
                let name = cfg.str("HttpHeaderName").ok_or_else(|| {
                    validation("An HTTP header condition must have an HTTP header name (HttpHeaderConfig.HttpHeaderName)")
                })?;
                Condition::HttpHeader {
                    name: name.to_string(),
                    values: cfg.list("Values"),
                }
            }
            "query-string" => {
                let mut pairs = Vec::new();
                for p in c.sub("QueryStringConfig").structs("Values") {
                    pairs.push(QueryPair {
                        key: p.str("Key").map(str::to_string),
                        value: p.required("Value")?.to_string(),
                    });
                }
                Condition::QueryString { pairs }
            }
            "http-request-method" => Condition::HttpRequestMethod {
                values: c.sub("HttpRequestMethodConfig").list("Values"),
            },
            "source-ip" => Condition::SourceIp {
                values: c.sub("SourceIpConfig").list("Values"),
            },
            other => {
                return Err(validation(format!(
                    "Condition field '{other}' must be one of {FIELDS}"
                )));
            }
        };
        cond.check()?;
        Ok(cond)
    }

    /// ELB's rules for the values of one condition.
    fn check(&self) -> ElbResult<()> {
        let field = self.field();
        let n = self.values().len();
        if n == 0 {
            return Err(validation(format!(
                "A '{field}' condition must have at least one value"
            )));
        }
        if n > VALUES_PER_CONDITION {
            return Err(validation(format!(
                "A '{field}' condition can have at most {VALUES_PER_CONDITION} values (match evaluations); it has {n}"
            )));
        }
        let long = |v: &str| v.is_empty() || v.len() > 128;
        match self {
            Condition::HostHeader { values } => {
                for v in values {
                    let ok_chars = v
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-.*?".contains(&b));
                    let last = v.rsplit('.').next().unwrap_or("");
                    if long(v)
                        || !ok_chars
                        || !v.contains('.')
                        || last.is_empty()
                        || !last
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'*' || b == b'?')
                    {
                        return Err(validation(format!(
                            "Host header value '{v}' is not valid: 1-128 characters of A-Z, a-z, 0-9, - . * ?, with at least one '.' and only alphanumerics after the last '.'"
                        )));
                    }
                }
            }
            Condition::PathPattern { values } => {
                for v in values {
                    let ok = v
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_-.$/~\"'@:+&*?".contains(&b));
                    if long(v) || !ok {
                        return Err(validation(format!(
                            "Path pattern '{v}' is not valid: 1-128 characters of A-Z, a-z, 0-9, _ - . $ / ~ \" ' @ : + & * ?"
                        )));
                    }
                }
            }
            Condition::HttpHeader { name, values } => {
                let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
                if name.is_empty() || name.len() > 40 || !name.bytes().all(token) {
                    return Err(validation(format!(
                        "HTTP header name '{name}' is not valid: 1-40 characters of an RFC 7230 token"
                    )));
                }
                if name.eq_ignore_ascii_case("host") {
                    return Err(validation(
                        "You can't use an HTTP header condition to specify the host header: use a host-header condition",
                    ));
                }
                if let Some(v) = values.iter().find(|v| long(v)) {
                    return Err(validation(format!(
                        "HTTP header value '{v}' must be 1-128 characters"
                    )));
                }
            }
            Condition::QueryString { pairs } => {
                for p in pairs {
                    if long(&p.value) || p.key.as_deref().is_some_and(long) {
                        return Err(validation(
                            "A query string key and value must each be 1-128 characters",
                        ));
                    }
                }
            }
            Condition::HttpRequestMethod { values } => {
                for v in values {
                    if v.is_empty()
                        || v.len() > 40
                        || !v
                            .bytes()
                            .all(|b| b.is_ascii_uppercase() || b == b'_' || b == b'-')
                    {
                        return Err(validation(format!(
                            "HTTP request method '{v}' is not valid: 1-40 characters of A-Z, _ and - (methods are case-sensitive)"
                        )));
                    }
                }
            }
            Condition::SourceIp { values } => {
                for v in values {
                    if Cidr::parse(v).is_none() {
                        return Err(validation(format!(
                            "Source IP '{v}' is not valid: it must be an IPv4 or IPv6 address in CIDR format (e.g. 192.0.2.0/24)"
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// The `RuleCondition` shape: `Values` as well for host-header and path-pattern (as
    /// ELB answers), and the field's config.
    pub fn write(&self, x: &mut Xml) {
        x.leaf("Field", self.field());
        let values = |x: &mut Xml, v: &[String]| {
            x.strings("Values", v);
        };
        match self {
            Condition::HostHeader { values: v } => {
                values(x, v);
                x.node("HostHeaderConfig", |x| values(x, v));
            }
            Condition::PathPattern { values: v } => {
                values(x, v);
                x.node("PathPatternConfig", |x| values(x, v));
            }
            Condition::HttpHeader { name, values: v } => {
                x.node("HttpHeaderConfig", |x| {
                    x.leaf("HttpHeaderName", name);
                    values(x, v);
                });
            }
            Condition::QueryString { pairs } => {
                x.node("QueryStringConfig", |x| {
                    x.list("Values", pairs, |x, p| {
                        x.opt("Key", p.key.as_ref()).leaf("Value", &p.value);
                    });
                });
            }
            Condition::HttpRequestMethod { values: v } => {
                x.node("HttpRequestMethodConfig", |x| values(x, v));
            }
            Condition::SourceIp { values: v } => {
                x.node("SourceIpConfig", |x| values(x, v));
            }
        }
    }

    /// Whether request `r` meets the condition.
    pub fn matches(&self, r: &Request) -> bool {
        match self {
            Condition::HostHeader { values } => {
                let host = r.host.map(host_of).unwrap_or("");
                values.iter().any(|v| glob(v, host, false, false))
            }
            Condition::PathPattern { values } => {
                values.iter().any(|v| glob(v, r.path, true, false))
            }
            Condition::HttpHeader { name, values } => super::h1::values(r.headers, name)
                .any(|h| values.iter().any(|v| glob(v, h, false, false))),
            Condition::QueryString { pairs } => {
                let got: Vec<(String, String)> = r
                    .query
                    .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
                    .unwrap_or_default();
                pairs.iter().any(|p| {
                    got.iter().any(|(k, v)| {
                        // A bare `?flag` is a value without a key.
                        let (k, v) = if v.is_empty() && p.key.is_none() {
                            ("", k.as_str())
                        } else {
                            (k.as_str(), v.as_str())
                        };
                        p.key.as_deref().is_none_or(|pk| glob(pk, k, false, true))
                            && glob(&p.value, v, false, true)
                    })
                })
            }
            Condition::HttpRequestMethod { values } => values.iter().any(|v| v == r.method),
            Condition::SourceIp { values } => values
                .iter()
                .filter_map(|v| Cidr::parse(v))
                .any(|c| c.contains(r.source)),
        }
    }
}

/// A Host header's host name, without the port (`example.com:8080` → `example.com`).
fn host_of(h: &str) -> &str {
    if h.starts_with('[') {
        return h.split(']').next().map_or(h, |s| &h[..s.len() + 1]);
    }
    h.rsplit_once(':')
        .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
        .map_or(h, |(n, _)| n)
}

/// ELB's limits over all of a rule's conditions: one each of host-header,
/// http-request-method, path-pattern and source-ip; five values and five wildcards.
pub fn check_rule(conditions: &[Condition]) -> ElbResult<()> {
    if conditions.is_empty() {
        return Err(validation("A rule must have at least one condition"));
    }
    for once in [
        "host-header",
        "http-request-method",
        "path-pattern",
        "source-ip",
    ] {
        if conditions.iter().filter(|c| c.field() == once).count() > 1 {
            return Err(validation(format!(
                "A rule can have only one '{once}' condition"
            )));
        }
    }
    let values: usize = conditions.iter().map(|c| c.values().len()).sum();
    if values > VALUES_PER_RULE {
        return Err(validation(format!(
            "A rule can have at most {VALUES_PER_RULE} condition values (match evaluations); it has {values}"
        )));
    }
    let wildcards: usize = conditions.iter().map(Condition::wildcards).sum();
    if wildcards > WILDCARDS_PER_RULE {
        return Err(validation(format!(
            "A rule can have at most {WILDCARDS_PER_RULE} wildcards; it has {wildcards}"
        )));
    }
    Ok(())
}

/// What a rule's conditions look at in a request.
pub struct Request<'a> {
    pub method: &'a str,
    /// The Host header (with its port, if any).
    pub host: Option<&'a str>,
    pub path: &'a str,
    pub query: Option<&'a str>,
    /// The header fields as they came.
    pub headers: &'a [httparse::Header<'a>],
    pub source: std::net::IpAddr,
}

/// ALB's wildcard match: `*` is 0 or more characters, `?` exactly one; with `escapes`
/// (query strings), `\*` and `\?` are the characters themselves.
pub fn glob(pattern: &str, text: &str, case_sensitive: bool, escapes: bool) -> bool {
    #[derive(Clone, Copy, PartialEq)]
    enum P {
        Any,
        One,
        Char(char),
    }
    let mut pat = Vec::new();
    let mut it = pattern.chars();
    while let Some(c) = it.next() {
        pat.push(match c {
            '\\' if escapes => P::Char(it.next().unwrap_or('\\')),
            '*' => P::Any,
            '?' => P::One,
            c => P::Char(c),
        });
    }
    let text: Vec<char> = text.chars().collect();
    let eq = |a: char, b: char| {
        if case_sensitive {
            a == b
        } else {
            a.eq_ignore_ascii_case(&b)
        }
    };
    // Iterative matching with one backtrack point (the last `*`).
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pat.get(p) {
            Some(P::One) => {
                p += 1;
                t += 1;
            }
            Some(P::Char(c)) if eq(*c, text[t]) => {
                p += 1;
                t += 1;
            }
            Some(P::Any) => {
                star = Some((p, t));
                p += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pat[p..].iter().all(|x| *x == P::Any)
}

/// An address range in CIDR form.
struct Cidr {
    net: std::net::IpAddr,
    bits: u32,
}

impl Cidr {
    fn parse(s: &str) -> Option<Cidr> {
        let (a, b) = s.split_once('/')?;
        let net: std::net::IpAddr = a.parse().ok()?;
        let bits: u32 = b.parse().ok()?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        (bits <= max).then_some(Cidr { net, bits })
    }

    fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        let ip = match (self.net, ip) {
            (IpAddr::V4(_), IpAddr::V6(v6)) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            _ => ip,
        };
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => {
                let mask = u32::MAX.checked_shl(32 - self.bits).unwrap_or(0);
                u32::from(n) & mask == u32::from(i) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(i)) => {
                let mask = u128::MAX.checked_shl(128 - self.bits).unwrap_or(0);
                u128::from(n) & mask == u128::from(i) & mask
            }
            _ => false,
        }
    }
}

/// The redirect action's settings (API_RedirectActionConfig); absent members keep the
/// request's component (`#{protocol}`, `#{host}`, `#{port}`, `/#{path}`, `#{query}`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Redirect {
    pub protocol: Option<String>,
    pub host: Option<String>,
    pub port: Option<String>,
    pub path: Option<String>,
    pub query: Option<String>,
    /// `HTTP_301` or `HTTP_302`.
    pub status: String,
}

impl Redirect {
    pub fn parse(p: &Params) -> ElbResult<Redirect> {
        let status = p.required("StatusCode")?.to_string();
        if !matches!(status.as_str(), "HTTP_301" | "HTTP_302") {
            return Err(validation(format!(
                "1 validation error detected: Value '{status}' at 'redirectConfig.statusCode' failed to satisfy constraint: Member must satisfy enum value set: [HTTP_301, HTTP_302]"
            )));
        }
        let r = Redirect {
            protocol: p.str("Protocol").map(str::to_string),
            host: p.str("Host").map(str::to_string),
            port: p.str("Port").map(str::to_string),
            path: p.str("Path").map(str::to_string),
            query: p.str("Query").map(str::to_string),
            status,
        };
        if let Some(proto) = &r.protocol
            && !matches!(proto.as_str(), "HTTP" | "HTTPS" | "#{protocol}")
        {
            return Err(validation(format!(
                "Redirect protocol '{proto}' is not valid: HTTP, HTTPS or #{{protocol}}"
            )));
        }
        if let Some(port) = &r.port
            && port != "#{port}"
            && !port.parse::<u16>().is_ok_and(|n| n >= 1)
        {
            return Err(validation(format!(
                "Redirect port '{port}' is not valid: 1-65535 or #{{port}}"
            )));
        }
        if let Some(h) = &r.host
            && (h.is_empty() || h.len() > 128)
        {
            return Err(validation("A redirect host must be 1-128 characters"));
        }
        if let Some(path) = &r.path
            && (!path.starts_with('/') || path.len() > 128)
        {
            return Err(validation(format!(
                "Redirect path '{path}' is not valid: 1-128 characters starting with '/'"
            )));
        }
        if let Some(q) = &r.query
            && (q.len() > 128 || q.starts_with('?'))
        {
            return Err(validation(
                "A redirect query must be at most 128 characters, without the leading '?'",
            ));
        }
        let same = |v: &Option<String>, keyword: &str| v.as_deref().is_none_or(|v| v == keyword);
        if same(&r.protocol, "#{protocol}")
            && same(&r.host, "#{host}")
            && same(&r.port, "#{port}")
            && same(&r.path, "/#{path}")
        {
            return Err(ElbError::InvalidLoadBalancerAction(
                "The redirect configuration is not valid: change at least one of protocol, host, port or path to avoid a redirect loop".into(),
            ));
        }
        Ok(r)
    }

    pub fn write(&self, x: &mut Xml) {
        x.leaf(
            "Protocol",
            self.protocol.as_deref().unwrap_or("#{protocol}"),
        )
        .leaf("Port", self.port.as_deref().unwrap_or("#{port}"))
        .leaf("Host", self.host.as_deref().unwrap_or("#{host}"))
        .leaf("Path", self.path.as_deref().unwrap_or("/#{path}"))
        .leaf("Query", self.query.as_deref().unwrap_or("#{query}"))
        .leaf("StatusCode", &self.status);
    }

    /// The status (301 or 302) and `Location` for a request to `port` (over HTTP) with
    /// `host`, `path` and `query`. The port is written always, as ALB writes it.
    pub fn location(
        &self,
        host: &str,
        port: u16,
        path: &str,
        query: Option<&str>,
    ) -> (u16, String) {
        let host = host_of(host);
        let path_kw = path.strip_prefix('/').unwrap_or(path);
        let query_in = query.unwrap_or("");
        let fill = |s: &str| {
            s.replace("#{protocol}", "http")
                .replace("#{host}", host)
                .replace("#{port}", &port.to_string())
                .replace("#{path}", path_kw)
                .replace("#{query}", query_in)
        };
        let protocol = fill(self.protocol.as_deref().unwrap_or("#{protocol}")).to_lowercase();
        let to_host = fill(self.host.as_deref().unwrap_or("#{host}"));
        let to_port = fill(self.port.as_deref().unwrap_or("#{port}"));
        let to_path = fill(self.path.as_deref().unwrap_or("/#{path}"));
        let to_query = fill(self.query.as_deref().unwrap_or("#{query}"));
        let mut loc = format!("{protocol}://{to_host}:{to_port}{to_path}");
        if !to_query.is_empty() {
            loc.push('?');
            loc.push_str(&to_query);
        }
        let status = if self.status == "HTTP_301" { 301 } else { 302 };
        (status, loc)
    }
}

/// The fixed-response action's settings (API_FixedResponseActionConfig).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FixedResponse {
    pub status: String,
    pub content_type: Option<String>,
    pub body: Option<String>,
}

impl FixedResponse {
    pub fn parse(p: &Params) -> ElbResult<FixedResponse> {
        let status = p.required("StatusCode")?.to_string();
        let b = status.as_bytes();
        if !(b.len() == 3 && b"245".contains(&b[0]) && b.iter().all(u8::is_ascii_digit)) {
            return Err(validation(format!(
                "1 validation error detected: Value '{status}' at 'fixedResponseConfig.statusCode' failed to satisfy constraint: Member must satisfy regular expression pattern: ^(2|4|5)\\d\\d$"
            )));
        }
        let content_type = p.str("ContentType").map(str::to_string);
        if let Some(t) = &content_type
            && !matches!(
                t.as_str(),
                "text/plain"
                    | "text/css"
                    | "text/html"
                    | "application/javascript"
                    | "application/json"
            )
        {
            return Err(ElbError::InvalidLoadBalancerAction(format!(
                "Content type '{t}' is not valid: text/plain, text/css, text/html, application/javascript or application/json"
            )));
        }
        let body = p.str("MessageBody").map(str::to_string);
        if body.as_ref().is_some_and(|b| b.len() > 1024) {
            return Err(validation(
                "1 validation error detected: Value at 'fixedResponseConfig.messageBody' failed to satisfy constraint: Member must have length less than or equal to 1024",
            ));
        }
        Ok(FixedResponse {
            status,
            content_type,
            body,
        })
    }

    pub fn write(&self, x: &mut Xml) {
        x.opt("MessageBody", self.body.as_ref())
            .leaf("StatusCode", &self.status)
            .opt("ContentType", self.content_type.as_ref());
    }
}

/// The default rule's ARN of listener `listener` (stable: derived from the listener's).
pub fn default_rule_arn(listener: &str) -> String {
    let tail = listener.split_once(":listener/").map_or("", |(_, t)| t);
    let head = listener.split_once(":listener/").map_or("", |(h, _)| h);
    let h = listener.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    format!("{head}:listener-rule/{tail}/{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_as_alb_documents() {
        assert!(glob("/img/*", "/img/a/b.png", true, false));
        assert!(!glob("/img/*", "/IMG/a", true, false));
        assert!(glob("*.example.com", "test.EXAMPLE.com", false, false));
        assert!(!glob("*.example.com", "example.com", false, false));
        assert!(glob("/a?c", "/abc", true, false));
        assert!(!glob("/a?c", "/ac", true, false));
        assert!(glob("*", "", true, false));
        assert!(glob("a*b*c", "aXbYbc", true, false));
        assert!(glob("v\\*", "v*", false, true));
        assert!(!glob("v\\*", "vx", false, true));
    }

    fn cond(pairs: &[(&str, &str)]) -> ElbResult<Condition> {
        Condition::parse(&Params::of(pairs))
    }

    #[test]
    fn conditions_are_read_in_both_forms_and_checked() {
        let a = cond(&[("Field", "path-pattern"), ("Values.member.1", "/a/*")]).unwrap();
        let b = cond(&[
            ("Field", "path-pattern"),
            ("PathPatternConfig.Values.member.1", "/a/*"),
        ])
        .unwrap();
        assert_eq!(a, b);
        assert!(cond(&[("Field", "host-header"), ("Values.member.1", "nodot")]).is_err());
        assert!(cond(&[("Field", "bogus"), ("Values.member.1", "x")]).is_err());
        assert!(
            cond(&[
                ("Field", "http-header"),
                ("HttpHeaderConfig.HttpHeaderName", "Host"),
                ("HttpHeaderConfig.Values.member.1", "x")
            ])
            .is_err()
        );
        assert!(
            cond(&[
                ("Field", "http-request-method"),
                ("HttpRequestMethodConfig.Values.member.1", "get")
            ])
            .is_err()
        );
        let four: Vec<(String, String)> = (1..=4)
            .map(|i| (format!("Values.member.{i}"), format!("/p{i}")))
            .collect();
        let mut p: Vec<(&str, &str)> = vec![("Field", "path-pattern")];
        p.extend(four.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        assert!(cond(&p).is_err());
        assert!(matches!(
            cond(&[
                ("Field", "path-pattern"),
                ("PathPatternConfig.RegexValues.member.1", "^/a")
            ]),
            Err(ElbError::InvalidConfigurationRequest(_))
        ));
    }

    #[test]
    fn requests_meet_conditions_with_alb_s_case_rules() {
        let headers = [httparse::Header {
            name: "X-Env",
            value: b"Beta",
        }];
        let r = Request {
            method: "POST",
            host: Some("Api.Example.com:8080"),
            path: "/v1/Users",
            query: Some("version=2&debug"),
            headers: &headers,
            source: "10.1.2.3".parse().unwrap(),
        };
        let yes = |p: &[(&str, &str)]| cond(p).unwrap().matches(&r);
        assert!(yes(&[
            ("Field", "host-header"),
            ("Values.member.1", "api.example.com")
        ]));
        assert!(yes(&[
            ("Field", "path-pattern"),
            ("Values.member.1", "/v1/*")
        ]));
        assert!(!yes(&[
            ("Field", "path-pattern"),
            ("Values.member.1", "/v1/users")
        ]));
        assert!(yes(&[
            ("Field", "http-header"),
            ("HttpHeaderConfig.HttpHeaderName", "X-Env"),
            ("HttpHeaderConfig.Values.member.1", "beta")
        ]));
        assert!(yes(&[
            ("Field", "query-string"),
            ("QueryStringConfig.Values.member.1.Key", "VERSION"),
            ("QueryStringConfig.Values.member.1.Value", "2")
        ]));
        assert!(yes(&[
            ("Field", "query-string"),
            ("QueryStringConfig.Values.member.1.Value", "debug")
        ]));
        assert!(!yes(&[
            ("Field", "http-request-method"),
            ("HttpRequestMethodConfig.Values.member.1", "GET")
        ]));
        assert!(yes(&[
            ("Field", "source-ip"),
            ("SourceIpConfig.Values.member.1", "10.1.0.0/16")
        ]));
    }

    #[test]
    fn redirects_fill_alb_s_keywords() {
        let r = Redirect::parse(&Params::of(&[
            ("StatusCode", "HTTP_301"),
            ("Protocol", "HTTPS"),
            ("Port", "443"),
        ]))
        .unwrap();
        assert_eq!(
            r.location("a.example.com:80", 80, "/x/y", Some("q=1")),
            (301, "https://a.example.com:443/x/y?q=1".to_string())
        );
        let r = Redirect::parse(&Params::of(&[
            ("StatusCode", "HTTP_302"),
            ("Path", "/new/#{path}"),
            ("Query", "#{query}&v=2"),
        ]))
        .unwrap();
        assert_eq!(
            r.location("h.example.com", 8080, "/old", None),
            (302, "http://h.example.com:8080/new/old?&v=2".to_string())
        );
        assert!(matches!(
            Redirect::parse(&Params::of(&[("StatusCode", "HTTP_301")])),
            Err(ElbError::InvalidLoadBalancerAction(_))
        ));
    }
}
