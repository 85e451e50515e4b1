//! Sticky sessions and slow start, as an Application Load Balancer applies them (Elastic
//! Load Balancing User Guide for Application Load Balancers, "Sticky sessions for your
//! Application Load Balancer", "Slow start mode"; API TargetGroupAttribute).
//!
//! - Duration-based (`stickiness.type` `lb_cookie`): the load balancer sets `AWSALB` (and
//!   `AWSALBCORS`, the same with `SameSite=None; Secure`) naming the target it chose, valid
//!   `stickiness.lb_cookie.duration_seconds`; a request that brings it goes to that target
//!   while it is registered and healthy, else to a new one, and the cookie is set again.
//! - Application-based (`app_cookie`): when the target's response sets the cookie named
//!   `stickiness.app_cookie.cookie_name`, the load balancer sets `AWSALBAPP-0` naming that
//!   target (`stickiness.app_cookie.duration_seconds`); a request that brings it goes there.
//! - Target group stickiness of a weighted forward (`TargetGroupStickinessConfig`):
//!   `AWSALBTG` / `AWSALBTGCORS` name the group chosen.
//!
//! ALB encrypts its cookies with a rotating key; here a cookie is the target (or group) in
//! the clear with a keyed SHA-256 tag of this serve's random key, so a client can neither
//! read more than the target's address nor make one: a cookie that does not verify is
//! ignored (a new target is chosen), as ALB ignores one it cannot decode. A restarted serve
//! (or, in a cluster, a new leader) has a new key: sessions start again on their next
//! request.

use super::model::{Target, TargetGroup};
use base64::Engine;
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};

/// The cookies a request brings, by name (the first of each name).
pub fn cookies<'a>(headers: &'a [httparse::Header<'a>]) -> Vec<(&'a str, &'a str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for v in super::h1::values(headers, "cookie") {
        for part in v.split(';') {
            if let Some((n, val)) = part.trim().split_once('=')
                && !out.iter().any(|(have, _)| *have == n)
            {
                out.push((n, val));
            }
        }
    }
    out
}

/// The key of this serve's cookies.
pub struct Key([u8; 32]);

impl Default for Key {
    fn default() -> Key {
        Key::random()
    }
}

impl Key {
    pub fn random() -> Key {
        let mut k = [0u8; 32];
        let _ = getrandom::getrandom(&mut k);
        Key(k)
    }

    /// The key as hex (what the cluster's leader publishes with the load balancers'
    /// configuration: `super::snapshot`).
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// A key from its hex (None: not 32 bytes of hex).
    pub fn from_hex(s: &str) -> Option<Key> {
        let b = ::hex::decode(s).ok()?;
        Some(Key(b.try_into().ok()?))
    }

    fn tag(&self, scope: &str, body: &str) -> String {
        let mut h = Sha256::new();
        h.update(self.0);
        h.update(scope.as_bytes());
        h.update([0]);
        h.update(body.as_bytes());
        hex(&h.finalize()[..12])
    }

    /// A cookie value naming `body` within `scope` (a target group's ARN, or a listener's
    /// forward for group stickiness).
    pub fn seal(&self, scope: &str, body: &str) -> String {
        let b = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(body);
        format!("{b}.{}", self.tag(scope, body))
    }

    /// What `value` names within `scope`, if this key made it.
    pub fn open(&self, scope: &str, value: &str) -> Option<String> {
        let (b, tag) = value.split_once('.')?;
        let body = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(b)
            .ok()?;
        let body = String::from_utf8(body).ok()?;
        (self.tag(scope, &body) == tag).then_some(body)
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A target as a cookie names it.
pub fn target_body(t: &Target) -> String {
    format!("{}:{}", t.id, t.port)
}

/// A group's stickiness, from its attributes.
#[derive(Debug, Clone, PartialEq)]
pub enum Stickiness {
    Off,
    /// `AWSALB`, valid this long.
    LbCookie(Duration),
    /// `AWSALBAPP-0` once the target sets the application's cookie `name`.
    AppCookie {
        name: String,
        duration: Duration,
    },
}

pub fn of(g: &TargetGroup) -> Stickiness {
    let a = |k: &str| g.attributes.get(k).map(String::as_str);
    if a("stickiness.enabled") != Some("true") || g.protocol != "HTTP" {
        return Stickiness::Off;
    }
    let secs = |k: &str| Duration::from_secs(a(k).and_then(|v| v.parse().ok()).unwrap_or(86_400));
    match a("stickiness.type") {
        Some("app_cookie") => Stickiness::AppCookie {
            name: a("stickiness.app_cookie.cookie_name")
                .unwrap_or("")
                .to_string(),
            duration: secs("stickiness.app_cookie.duration_seconds"),
        },
        _ => Stickiness::LbCookie(secs("stickiness.lb_cookie.duration_seconds")),
    }
}

/// Whether a TCP group binds each client address to a target (`stickiness.type`
/// `source_ip`, Network Load Balancer User Guide, "Sticky sessions").
pub fn source_ip(g: &TargetGroup) -> bool {
    let a = |k: &str| g.attributes.get(k).map(String::as_str);
    g.protocol == "TCP"
        && a("stickiness.enabled") == Some("true")
        && a("stickiness.type") == Some("source_ip")
}

/// The `Set-Cookie` values of cookie `name` = `value` valid `duration`: the cookie, and for
/// `AWSALB` and `AWSALBTG` their CORS twin (`SameSite=None; Secure`), as ALB sets them.
pub fn set_cookie(name: &str, value: &str, duration: Duration, cors: bool) -> Vec<String> {
    let expires = (chrono::Utc::now()
        + chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::days(1)))
    .format("%a, %d %b %Y %H:%M:%S GMT");
    let mut v = vec![format!("{name}={value}; Expires={expires}; Path=/")];
    if cors {
        v.push(format!(
            "{name}CORS={value}; Expires={expires}; Path=/; SameSite=None; Secure"
        ));
    }
    v
}

/// The slow start of a group (`slow_start.duration_seconds`; 0: off).
pub fn slow_start(g: &TargetGroup) -> Option<Duration> {
    let s: u64 = g
        .attributes
        .get("slow_start.duration_seconds")?
        .parse()
        .ok()?;
    (s > 0).then(|| Duration::from_secs(s))
}

/// A target's share of requests at `now` (1 at full share): a target in slow start until
/// `until` (of `duration`) ramps up linearly from a twentieth of its share.
pub fn weight(until: Option<Instant>, duration: Option<Duration>, now: Instant) -> f64 {
    match (until, duration) {
        (Some(until), Some(d)) if until > now && !d.is_zero() => {
            let left = (until - now).as_secs_f64() / d.as_secs_f64();
            (1.0 - left).clamp(0.05, 1.0)
        }
        _ => 1.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cookie_opens_only_with_its_key_and_scope() {
        let k = Key::random();
        let v = k.seal("tg-a", "10.0.0.2:80");
        assert_eq!(k.open("tg-a", &v).as_deref(), Some("10.0.0.2:80"));
        assert_eq!(k.open("tg-b", &v), None);
        assert_eq!(Key::random().open("tg-a", &v), None);
        let same = Key::from_hex(&k.to_hex()).unwrap();
        assert_eq!(same.open("tg-a", &v).as_deref(), Some("10.0.0.2:80"));
        assert!(Key::from_hex("abcd").is_none(), "too short");
        let forged = format!(
            "{}.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("10.0.0.3:80"),
            v.split_once('.').unwrap().1
        );
        assert_eq!(k.open("tg-a", &forged), None);
        assert_eq!(k.open("tg-a", "garbage"), None);
    }

    #[test]
    fn slow_start_ramps_linearly_from_a_twentieth() {
        let now = Instant::now();
        let d = Some(Duration::from_secs(100));
        assert_eq!(weight(None, d, now), 1.0);
        assert_eq!(weight(Some(now + Duration::from_secs(100)), d, now), 0.05);
        let half = weight(Some(now + Duration::from_secs(50)), d, now);
        assert!((half - 0.5).abs() < 1e-9, "{half}");
        assert_eq!(weight(Some(now), d, now), 1.0);
    }

    #[test]
    fn cookies_are_read_from_every_cookie_header() {
        let h = [
            httparse::Header {
                name: "Cookie",
                value: b"a=1; AWSALB=x.y",
            },
            httparse::Header {
                name: "cookie",
                value: b"b=2; a=3",
            },
        ];
        assert_eq!(cookies(&h), vec![("a", "1"), ("AWSALB", "x.y"), ("b", "2")]);
    }
}
