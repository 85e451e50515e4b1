//! ECR's authorization tokens: `GetAuthorizationToken` answers base64 `AWS:<password>`,
//! valid 12 hours; the registry accepts the pair as HTTP Basic credentials. The password
//! is `v1.<expiry>.<nonce>.<mac>`, the MAC an HMAC-SHA256 under a key generated on first
//! use into `<root>/registry/token.key` (root only), so a token is checked without a
//! table of issued tokens and survives a restart of serve; deleting the key revokes every
//! token. Ref: ECR API, AuthorizationData ("Authorization tokens are valid for 12 hours").

use super::{RegistryError, RegistryResult};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// How long a token is valid: ECR's 12 hours.
pub const VALIDITY_SECS: u64 = 12 * 3600;

/// The user name ECR's tokens carry.
pub const USER: &str = "AWS";

pub struct Tokens {
    key: [u8; 32],
}

/// A token as GetAuthorizationToken answers it.
pub struct Issued {
    /// base64 of `AWS:<password>`.
    pub authorization_token: String,
    /// Seconds since the epoch.
    pub expires_at: u64,
}

impl Tokens {
    /// The key under `dir` (the registry's directory), made on first use.
    pub fn load_or_create(dir: &Path) -> RegistryResult<Tokens> {
        let path = dir.join("token.key");
        let storage = |what: &str| {
            let what = format!("{what} {}", path.display());
            move |source| RegistryError::Storage { what, source }
        };
        match std::fs::read(&path) {
            Ok(b) if b.len() == 32 => {
                let mut key = [0u8; 32];
                key.copy_from_slice(&b);
                return Ok(Tokens { key });
            }
            Ok(_) => {
                return Err(RegistryError::Storage {
                    what: format!(
                        "read the token key {} (not 32 bytes; remove it to make a new one, \
                         which revokes every token)",
                        path.display()
                    ),
                    source: std::io::ErrorKind::InvalidData.into(),
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(storage("read the token key")(e)),
        }
        let mut key = [0u8; 32];
        getrandom::getrandom(&mut key)
            .map_err(|e| storage("make the token key")(std::io::Error::other(e.to_string())))?;
        let tmp = dir.join(format!("token.key.{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&key)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(storage("write the token key"))?;
        Ok(Tokens { key })
    }

    fn mac(&self, payload: &str) -> String {
        let mut m = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        m.update(payload.as_bytes());
        hex::encode(m.finalize().into_bytes())
    }

    /// A new token valid [`VALIDITY_SECS`] from `now` (seconds since the epoch).
    pub fn issue(&self, now: u64) -> Issued {
        self.make(now, "")
    }

    /// A token that only pulls (`GET`/`HEAD`: [`Scope::Pull`]), as the cluster's boxes get
    /// it (docs/registry.md "A cluster's boxes"): what an ECS container instance's role
    /// allows on ECR (`AmazonEC2ContainerServiceforEC2Role`: pulls, no push).
    pub fn issue_pull(&self, now: u64) -> Issued {
        self.make(now, PULL_SUFFIX)
    }

    fn make(&self, now: u64, suffix: &str) -> Issued {
        let mut nonce = [0u8; 12];
        getrandom::getrandom(&mut nonce).expect("the kernel's random numbers");
        let expires_at = now + VALIDITY_SECS;
        let payload = format!("v1.{expires_at}.{}{suffix}", hex::encode(nonce));
        let password = format!("{payload}.{}", self.mac(&payload));
        Issued {
            authorization_token: base64::engine::general_purpose::STANDARD
                .encode(format!("{USER}:{password}")),
            expires_at,
        }
    }

    /// The signature of a download URL (GetDownloadUrlForLayer) of blob `digest` of
    /// repository `repo`, valid until `expires` (seconds since the epoch).
    pub fn sign_blob(&self, repo: &str, digest: &str, expires: u64) -> String {
        self.mac(&format!("blob\n{repo}\n{digest}\n{expires}"))
    }

    /// Whether `signature` is [`Self::sign_blob`]'s for these and `expires` is after `now`.
    pub fn verify_blob(
        &self,
        repo: &str,
        digest: &str,
        expires: &str,
        signature: &str,
        now: u64,
    ) -> bool {
        let Ok(e) = expires.parse::<u64>() else {
            return false;
        };
        let good = self.sign_blob(repo, digest, e);
        e > now
            && bool::from(subtle::ConstantTimeEq::ct_eq(
                good.as_bytes(),
                signature.as_bytes(),
            ))
    }

    /// Checks an `Authorization` header value: Basic `AWS:<password>` with a password this
    /// key made that has not expired at `now`, and what it allows. The error says why not.
    pub fn verify(&self, authorization: Option<&str>, now: u64) -> Result<Scope, String> {
        let Some(value) = authorization else {
            return Err(
                "no credentials: log in with `aws ecr get-login-password | podman login \
                        --username AWS --password-stdin <registry>`"
                    .into(),
            );
        };
        // A Bearer token is what the token endpoint handed out for Basic credentials:
        // the same password (`crate::api::registry`, "the Bearer token exchange").
        let password = if let Some(t) = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
        {
            t.trim().to_string()
        } else {
            let Some(b64) = value
                .strip_prefix("Basic ")
                .or_else(|| value.strip_prefix("basic "))
            else {
                return Err(
                    "only Basic credentials (user AWS, the password from `aws ecr \
                     get-login-password`) and Bearer tokens of this registry are accepted"
                        .into(),
                );
            };
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or("the Basic credentials are not base64 of user:password")?;
            let (user, password) = decoded
                .split_once(':')
                .ok_or("the Basic credentials are not base64 of user:password")?;
            if user != USER {
                return Err(format!("user {user:?}: ECR's tokens are for the user AWS"));
            }
            password.to_string()
        };
        let password = password.as_str();
        let forged = || {
            "the password is not a token of this registry (forged, or made under another key)"
                .to_string()
        };
        let (payload, mac) = password.rsplit_once('.').ok_or_else(forged)?;
        let good = self.mac(payload);
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            good.as_bytes(),
            mac.as_bytes(),
        )) {
            return Err(forged());
        }
        let expires: u64 = payload
            .split('.')
            .nth(1)
            .and_then(|e| e.parse().ok())
            .ok_or_else(forged)?;
        if now >= expires {
            return Err(format!(
                "the token expired {} s ago; get a new one with `aws ecr get-login-password`",
                now - expires
            ));
        }
        Ok(if payload.ends_with(PULL_SUFFIX) {
            Scope::Pull
        } else {
            Scope::All
        })
    }

    /// The token endpoint's answer for credentials [`Tokens::verify`] took: the password
    /// itself as the Bearer token (it is already a token under this registry's MAC) and
    /// the seconds it has left.
    pub fn bearer(authorization: &str, now: u64) -> Option<(String, u64)> {
        let password = match authorization
            .strip_prefix("Bearer ")
            .or_else(|| authorization.strip_prefix("bearer "))
        {
            Some(t) => t.trim().to_string(),
            None => {
                let b64 = authorization
                    .strip_prefix("Basic ")
                    .or_else(|| authorization.strip_prefix("basic "))?;
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .ok()?;
                let decoded = String::from_utf8(decoded).ok()?;
                decoded.split_once(':')?.1.to_string()
            }
        };
        let expires: u64 = password
            .rsplit_once('.')?
            .0
            .split('.')
            .nth(1)?
            .parse()
            .ok()?;
        Some((password, expires.saturating_sub(now)))
    }
}

/// What a token's payload ends with when it only pulls (under the MAC: not removable).
const PULL_SUFFIX: &str = ".pull";

/// What a valid token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Everything (GetAuthorizationToken's).
    All,
    /// `GET` and `HEAD` only.
    Pull,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(token: &str) -> String {
        format!("Basic {token}")
    }

    #[test]
    fn tokens_verify_expire_and_refuse_forgeries() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tokens::load_or_create(dir.path()).unwrap();
        let i = t.issue(1000);
        assert_eq!(i.expires_at, 1000 + 12 * 3600);
        let h = header(&i.authorization_token);
        assert_eq!(t.verify(Some(&h), 1001), Ok(Scope::All));
        assert!(
            t.verify(Some(&h), i.expires_at)
                .unwrap_err()
                .contains("expired")
        );
        // The same key file: the token survives a restart.
        let again = Tokens::load_or_create(dir.path()).unwrap();
        assert_eq!(again.verify(Some(&h), 1001), Ok(Scope::All));
        // A pull token pulls only, and its scope cannot be cut off its payload.
        let p = header(&t.issue_pull(1000).authorization_token);
        assert_eq!(t.verify(Some(&p), 1001), Ok(Scope::Pull));
        let pw_of = |h: &str| {
            String::from_utf8(
                base64::engine::general_purpose::STANDARD
                    .decode(h.strip_prefix("Basic ").unwrap())
                    .unwrap(),
            )
            .unwrap()
        };
        let pp = pw_of(&p);
        let (payload, mac) = pp.rsplit_once('.').unwrap();
        let cut = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("{}.{mac}", payload.strip_suffix(".pull").unwrap()))
        );
        assert!(t.verify(Some(&cut), 1001).unwrap_err().contains("forged"));
        // A forged MAC, a later expiry with the old MAC, another user, no header.
        let plain = String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(&i.authorization_token)
                .unwrap(),
        )
        .unwrap();
        let pw = plain.strip_prefix("AWS:").unwrap();
        let (payload, mac) = pw.rsplit_once('.').unwrap();
        let mut bad = mac.to_string();
        bad.replace_range(0..1, if &mac[0..1] == "0" { "1" } else { "0" });
        let b64 = |s: String| header(&base64::engine::general_purpose::STANDARD.encode(s));
        for (h, why) in [
            (b64(format!("AWS:{payload}.{bad}")), "forged"),
            (
                b64(format!(
                    "AWS:{}.{mac}",
                    payload.replace(&i.expires_at.to_string(), "99999999999")
                )),
                "forged",
            ),
            (b64(format!("root:{pw}")), "user"),
        ] {
            assert!(t.verify(Some(&h), 1001).unwrap_err().contains(why), "{h}");
        }
        assert!(t.verify(None, 1001).is_err());
        let other = tempfile::tempdir().unwrap();
        let t2 = Tokens::load_or_create(other.path()).unwrap();
        assert!(t2.verify(Some(&h), 1001).unwrap_err().contains("forged"));
    }
}
