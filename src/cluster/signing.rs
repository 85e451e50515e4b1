//! The signatures of the requests a serve or an operator sends an agent's endpoint
//! (docs/cluster.md "Logs across boxes", "exec across boxes"): HMAC-SHA256 with the
//! cluster's token over the time, the call and the body. The token is in etcd, so only
//! who can read the cluster's state can sign; it never crosses the network.

use super::etcd::{Etcd, EtcdError};
use super::keys;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// The header that carries a request's signature: `MS:HEX`.
pub const SIGNATURE: &str = "x-minifargate-signature";
/// How far a signature's time may be from the receiver's clock.
pub const SKEW: Duration = Duration::from_secs(60);
/// The cluster's token (32 random bytes, hex), made by whoever needs it first.
pub async fn token(etcd: &Etcd) -> Result<Vec<u8>, EtcdError> {
    let key = keys::token();
    if let Some(kv) = etcd.get(&key).await? {
        return Ok(kv.value);
    }
    let fresh = format!(
        "{}{}",
        crate::task::new_id().unwrap_or_default(),
        crate::task::new_id().unwrap_or_default()
    );
    etcd.put_if_absent(&key, fresh.as_bytes()).await?;
    Ok(etcd.get(&key).await?.map(|kv| kv.value).unwrap_or_default())
}

fn mac(token: &[u8], ms: i64, call: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut m = Hmac::<Sha256>::new_from_slice(token).expect("HMAC takes any key length");
    m.update(ms.to_string().as_bytes());
    m.update(b"\n");
    m.update(call.as_bytes());
    m.update(b"\n");
    m.update(body);
    m
}

/// The signature of `call` with `body` at `ms` (epoch milliseconds).
pub fn sign(token: &[u8], ms: i64, call: &str, body: &[u8]) -> String {
    format!(
        "{ms}:{}",
        hex::encode(mac(token, ms, call, body).finalize().into_bytes())
    )
}

/// Why a request's signature was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("no {SIGNATURE} header")]
    Missing,
    #[error("the {SIGNATURE} header is not MS:HEX")]
    Malformed,
    #[error("the signature's time is more than {} s from this box's clock", SKEW.as_secs())]
    Stale,
    #[error("the signature does not match (another cluster's token?)")]
    Mismatch,
    #[error("this signed request was already received once (a replay)")]
    Replayed,
}

/// Checks `header` for `call` with `body` at `now_ms`.
pub fn verify(
    token: &[u8],
    header: Option<&str>,
    call: &str,
    body: &[u8],
    now_ms: i64,
) -> Result<(), SignatureError> {
    let h = header.ok_or(SignatureError::Missing)?;
    let (ms, sig) = h.split_once(':').ok_or(SignatureError::Malformed)?;
    let ms: i64 = ms.parse().map_err(|_| SignatureError::Malformed)?;
    let sig = hex::decode(sig).map_err(|_| SignatureError::Malformed)?;
    if (now_ms - ms).unsigned_abs() > SKEW.as_millis() as u64 {
        return Err(SignatureError::Stale);
    }
    mac(token, ms, call, body)
        .verify_slice(&sig)
        .map_err(|_| SignatureError::Mismatch)
}

/// The signatures an endpoint has accepted in the last [`SKEW`] × 2: a request that
/// starts something (an exec) is taken once, so a captured one cannot be sent again
/// while its time is still accepted. Clients make each such request unique (a nonce in
/// its body).
#[derive(Debug, Default)]
pub struct Seen {
    accepted: Mutex<HashMap<String, i64>>,
}

impl Seen {
    /// Checks `header` as [`verify`] does, and that it was not accepted before.
    pub fn verify_once(
        &self,
        token: &[u8],
        header: Option<&str>,
        call: &str,
        body: &[u8],
        now_ms: i64,
    ) -> Result<(), SignatureError> {
        verify(token, header, call, body, now_ms)?;
        let sig = header.unwrap_or_default().to_string();
        let mut seen = self.accepted.lock().expect("replay guard lock");
        // Older than twice the skew: refused as stale anyway.
        let horizon = 2 * SKEW.as_millis() as i64;
        seen.retain(|_, at| now_ms - *at <= horizon);
        if seen.contains_key(&sig) {
            return Err(SignatureError::Replayed);
        }
        seen.insert(sig, now_ms);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_bind_the_token_the_call_the_body_and_the_time() {
        let t = b"token";
        let s = sign(t, 1_000_000, "logs/GetLogEvents", b"{}");
        assert_eq!(
            verify(t, Some(&s), "logs/GetLogEvents", b"{}", 1_000_500),
            Ok(())
        );
        assert_eq!(
            verify(b"other", Some(&s), "logs/GetLogEvents", b"{}", 1_000_500),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(t, Some(&s), "logs/FilterLogEvents", b"{}", 1_000_500),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(t, Some(&s), "logs/GetLogEvents", b"{\"a\":1}", 1_000_500),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(t, Some(&s), "logs/GetLogEvents", b"{}", 1_000_000 + 61_000),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(t, None, "logs/GetLogEvents", b"{}", 0),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify(t, Some("12"), "logs/GetLogEvents", b"{}", 0),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn a_request_taken_once_is_refused_the_second_time() {
        let seen = Seen::default();
        let s = sign(b"t", 1_000_000, "exec", b"{}");
        assert_eq!(
            seen.verify_once(b"t", Some(&s), "exec", b"{}", 1_000_100),
            Ok(())
        );
        assert_eq!(
            seen.verify_once(b"t", Some(&s), "exec", b"{}", 1_000_200),
            Err(SignatureError::Replayed)
        );
        // A bad signature is not remembered (and stays refused for its own reason).
        assert_eq!(
            seen.verify_once(b"x", Some(&s), "exec", b"{}", 1_000_300),
            Err(SignatureError::Mismatch)
        );
    }
}
