//! Registry tokens kept on disk from one process to the next: ECR authorization tokens
//! and the Bearer tokens of the distribution token flow.
//!
//! The ECS agent asks ECR for a token once and keeps it in memory for the tasks that
//! follow, keyed by the execution role's ARN, the region, the registry and the endpoint
//! override, until 30 minutes before its `expiresAt` (amazon-ecs-agent
//! `agent/dockerclient/dockerauth/ecr.go`, `cacheKey` and `IsTokenValid`); Docker's daemon
//! keeps a registry's Bearer tokens in memory the same way. Each task here has a
//! supervisor process of its own, so the same keeping is a file per key: a task whose
//! image was checked or pulled a minute ago with the same identity skips the
//! `GetAuthorizationToken` call (a TLS handshake and a signed call to the ECR API), or the
//! refused first request and the round trip to the registry's token service.
//!
//! An ECR token's key is the registry host (account and region are in it), the identity
//! ECR is asked as (the execution role's name, which carries its ARN; for the host's
//! credential chain, the access key id it resolves to, so that another set of host
//! credentials never gets this one's token) and the endpoint override variables. A token
//! only opens the registry door: ECR checks the identity's pull permissions on every
//! request it serves with it. What a kept token skips is the permission to *ask* for one,
//! as on ECS. A Bearer token's key is the registry host and the repository scope; the file
//! says whose credentials it was asked with (a digest of them, or `anonymous`), and only
//! a process about to ask with the same ones takes it.
//!
//! Files are 0600 in a 0700 directory of the cache's root; written whole and renamed into
//! place. A file that does not read or decode is said (a warning naming it) and removed;
//! the token is then asked for as if none was kept.

use crate::credentials::Credentials;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The directory under the cache's root that keeps them.
pub const DIR: &str = "registry-tokens";

/// A kept token is used until this long before it expires (the ECS agent's
/// `MinimumJitterDuration`): a pull that starts with it still has it valid at its end.
pub const REFRESH_BEFORE: Duration = Duration::from_secs(30 * 60);

/// The text `Credentials::source` carries for a kept token (in messages about it).
pub const SOURCE: &str = "ECR GetAuthorizationToken (kept from an earlier pull)";

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Kept {
    host: String,
    identity: String,
    username: String,
    password: String,
    /// Seconds since the epoch.
    expires_at: u64,
}

/// The directory tokens are kept in (`<root>/registry-tokens`).
#[derive(Debug, Clone)]
pub struct TokenDir {
    dir: PathBuf,
}

impl TokenDir {
    pub fn new(dir: PathBuf) -> TokenDir {
        TokenDir { dir }
    }

    /// The file of the token for `host` asked as `identity`.
    pub fn file(&self, host: &str, identity: &str) -> PathBuf {
        let overrides = ["AWS_ENDPOINT_URL_ECR", "AWS_ENDPOINT_URL"]
            .map(|v| std::env::var(v).unwrap_or_default());
        self.hashed("", &["v1", host, identity, &overrides[0], &overrides[1]])
    }

    /// `<dir>/<prefix><sha256 of the parts>.json`.
    fn hashed(&self, prefix: &str, parts: &[&str]) -> PathBuf {
        let mut h = Sha256::new();
        for part in parts {
            h.update(part.as_bytes());
            h.update([0]);
        }
        self.dir.join(format!("{prefix}{:x}.json", h.finalize()))
    }

    /// Writes `kept` (made with its expiry in seconds since the epoch) to `path` if
    /// `expires` is more than `margin` away: a token that would not be used again is not
    /// written. Failures are warnings: the pull goes on with the token in hand.
    fn keep<T: Serialize>(
        &self,
        path: &Path,
        expires: SystemTime,
        margin: Duration,
        kept: impl FnOnce(u64) -> T,
    ) {
        let Ok(left) = expires.duration_since(SystemTime::now()) else {
            return;
        };
        if left <= margin {
            return;
        }
        let secs = expires
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if let Err(e) = write_private(&self.dir, path, &kept(secs)) {
            tracing::warn!(path = %path.display(), error = %e,
                "the registry's token could not be kept for the next pull");
        }
    }

    /// The token kept for `host` and `identity`, if one is and it is good for more than
    /// [`REFRESH_BEFORE`]; with its expiry.
    pub fn get(&self, host: &str, identity: &str) -> Option<(Credentials, SystemTime)> {
        let path = self.file(host, identity);
        let kept: Kept = read_kept(&path, |k: &Kept| k.host == host && k.identity == identity)?;
        let expires = good_for_more_than(kept.expires_at, REFRESH_BEFORE)?;
        Some((
            Credentials {
                username: kept.username,
                password: kept.password,
                source: SOURCE.to_string(),
            },
            expires,
        ))
    }

    /// Keeps `creds` for `host` and `identity` until `expires` (not when it expires within
    /// [`REFRESH_BEFORE`]).
    pub fn put(&self, host: &str, identity: &str, creds: &Credentials, expires: SystemTime) {
        let path = self.file(host, identity);
        self.keep(&path, expires, REFRESH_BEFORE, |expires_at| Kept {
            host: host.to_string(),
            identity: identity.to_string(),
            username: creds.username.clone(),
            password: creds.password.clone(),
            expires_at,
        });
    }

    /// Removes the token kept for `host` and `identity` (the registry refused it).
    pub fn remove(&self, host: &str, identity: &str) {
        let path = self.file(host, identity);
        if let Err(e) = std::fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %path.display(), error = %e, "a refused ECR token could not be removed");
        }
    }
}

/// A registry's Bearer token (the distribution token flow: Docker Hub, GHCR, ECR Public,
/// …) kept for the next process that pulls the same repository as the same client, until
/// a few seconds before it expires (`expires_in`, 60 s by default; Docker Hub's last 300).
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct KeptBearer {
    host: String,
    scope: String,
    /// [`who`] of the credentials the token was asked with.
    who: String,
    token: String,
    /// Seconds since the epoch.
    expires_at: u64,
}

/// Whose a Bearer token is: a digest of the Basic credentials it was asked with, or
/// `anonymous`. The credentials themselves are never written.
pub fn who(creds: Option<&Credentials>) -> String {
    match creds {
        None => "anonymous".to_string(),
        Some(c) => {
            let mut h = Sha256::new();
            for part in [c.username.as_str(), c.password.as_str()] {
                h.update(part.as_bytes());
                h.update([0]);
            }
            format!("{:x}", h.finalize())
        }
    }
}

/// A Bearer token kept by an earlier process ([`TokenDir::get_bearer`]).
pub struct BearerToken {
    /// [`who`] of the credentials it was asked with: the caller takes it only if its own
    /// credentials are the same.
    pub who: String,
    pub token: String,
    pub expires: SystemTime,
}

impl TokenDir {
    /// The file of the Bearer token for `scope` on `host`.
    pub fn bearer_file(&self, host: &str, scope: &str) -> PathBuf {
        self.hashed("bearer-", &["bearer v1", host, scope])
    }

    /// The Bearer token kept for `scope` on `host`, if it is good for more than a few
    /// seconds.
    pub fn get_bearer(&self, host: &str, scope: &str) -> Option<BearerToken> {
        let path = self.bearer_file(host, scope);
        let kept: KeptBearer =
            read_kept(&path, |k: &KeptBearer| k.host == host && k.scope == scope)?;
        Some(BearerToken {
            expires: good_for_more_than(kept.expires_at, BEARER_MARGIN)?,
            who: kept.who,
            token: kept.token,
        })
    }

    /// Keeps the Bearer `token` for `scope` on `host`, asked as `who`, until `expires` (not
    /// when it expires within [`BEARER_MARGIN`]).
    pub fn put_bearer(&self, host: &str, scope: &str, who: &str, token: &str, expires: SystemTime) {
        let path = self.bearer_file(host, scope);
        self.keep(&path, expires, BEARER_MARGIN, |expires_at| KeptBearer {
            host: host.to_string(),
            scope: scope.to_string(),
            who: who.to_string(),
            token: token.to_string(),
            expires_at,
        });
    }
}

/// A kept Bearer token is used until this long before it expires: a request that starts
/// with it is answered before it does.
pub const BEARER_MARGIN: Duration = Duration::from_secs(10);

/// The kept token in `path`, if there is one that reads, decodes and is `for_this` key.
/// No file is the common case and says nothing; anything else is said, and a file that
/// does not decode or is for another key is removed. The caller then asks for a token.
fn read_kept<T: serde::de::DeserializeOwned>(
    path: &Path,
    for_this: impl Fn(&T) -> bool,
) -> Option<T> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e,
                "a kept registry token could not be read; asking for a new one");
            return None;
        }
    };
    match serde_json::from_slice::<T>(&bytes) {
        Ok(k) if for_this(&k) => Some(k),
        Ok(_) => {
            forget(path, "is for another registry, repository or identity");
            None
        }
        Err(e) => {
            forget(path, &format!("does not decode ({e})"));
            None
        }
    }
}

/// `expires_at` (seconds since the epoch) as a time, if that is more than `margin` away.
fn good_for_more_than(expires_at: u64, margin: Duration) -> Option<SystemTime> {
    let expires = UNIX_EPOCH + Duration::from_secs(expires_at);
    let left = expires.duration_since(SystemTime::now()).ok()?;
    (left > margin).then_some(expires)
}

fn forget(path: &Path, why: &str) {
    tracing::warn!(path = %path.display(),
        "a kept registry token {why}: removed; asking for a new one");
    let _ = std::fs::remove_file(path);
}

fn write_private(dir: &Path, path: &Path, kept: &impl Serialize) -> std::io::Result<()> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("token");
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&serde_json::to_vec(kept).map_err(std::io::Error::other)?)?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn creds(p: &str) -> Credentials {
        Credentials {
            username: "AWS".into(),
            password: p.into(),
            source: "ECR GetAuthorizationToken".into(),
        }
    }

    #[test]
    fn a_kept_token_comes_back_for_its_host_and_identity_only() {
        let d = tempfile::tempdir().unwrap();
        let dir = TokenDir::new(d.path().join("registry-tokens"));
        let later = SystemTime::now() + Duration::from_secs(12 * 3600);
        let host = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
        dir.put(host, "role:a", &creds("pa"), later);
        let (c, exp) = dir.get(host, "role:a").unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("AWS", "pa"));
        assert_eq!(c.source, SOURCE);
        assert_eq!(
            exp.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            later.duration_since(UNIX_EPOCH).unwrap().as_secs()
        );
        assert!(dir.get(host, "role:b").is_none());
        assert!(
            dir.get("210987654321.dkr.ecr.us-east-1.amazonaws.com", "role:a")
                .is_none()
        );
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&d.path().join("registry-tokens")), 0o700);
        assert_eq!(mode(&dir.file(host, "role:a")), 0o600);
        // Only the token: no temporary file left beside it.
        assert_eq!(
            std::fs::read_dir(d.path().join("registry-tokens"))
                .unwrap()
                .count(),
            1
        );
        dir.remove(host, "role:a");
        assert!(dir.get(host, "role:a").is_none());
    }

    #[test]
    fn a_token_near_its_expiry_is_neither_kept_nor_used() {
        let d = tempfile::tempdir().unwrap();
        let dir = TokenDir::new(d.path().to_path_buf());
        let host = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
        let soon = SystemTime::now() + REFRESH_BEFORE - Duration::from_secs(60);
        dir.put(host, "host:AKIA", &creds("p"), soon);
        assert!(!dir.file(host, "host:AKIA").exists());
        // Written by an earlier process while it was fresh, near its expiry now.
        let kept = Kept {
            host: host.into(),
            identity: "host:AKIA".into(),
            username: "AWS".into(),
            password: "p".into(),
            expires_at: soon.duration_since(UNIX_EPOCH).unwrap().as_secs(),
        };
        std::fs::write(
            dir.file(host, "host:AKIA"),
            serde_json::to_vec(&kept).unwrap(),
        )
        .unwrap();
        assert!(dir.get(host, "host:AKIA").is_none());
    }

    #[test]
    fn a_bearer_token_comes_back_for_its_scope_and_credentials_only() {
        let d = tempfile::tempdir().unwrap();
        let dir = TokenDir::new(d.path().join("t"));
        let later = SystemTime::now() + Duration::from_secs(300);
        let alice = who(Some(&creds("pw")));
        assert_ne!(alice, who(None));
        assert_ne!(alice, who(Some(&creds("other"))));
        assert!(!dir.bearer_file("r.example", "repository:a:pull").exists());
        dir.put_bearer("r.example", "repository:a:pull", &alice, "tok", later);
        assert!(dir.bearer_file("r.example", "repository:a:pull").exists());
        let kept = dir.get_bearer("r.example", "repository:a:pull").unwrap();
        assert_eq!(kept.token, "tok");
        // Whose it is: the caller compares its own credentials' digest.
        assert_eq!(kept.who, alice);
        assert_ne!(kept.who, who(None));
        assert!(dir.get_bearer("r.example", "repository:b:pull").is_none());
        assert!(dir.get_bearer("s.example", "repository:a:pull").is_none());
        // The credentials are not in the file, only the digest of them.
        let text =
            std::fs::read_to_string(dir.bearer_file("r.example", "repository:a:pull")).unwrap();
        assert!(!text.contains("pw"), "{text}");
        // Near its expiry: neither kept nor used.
        let soon = SystemTime::now() + BEARER_MARGIN - Duration::from_secs(1);
        dir.put_bearer("r.example", "repository:c:pull", &alice, "tok", soon);
        assert!(!dir.bearer_file("r.example", "repository:c:pull").exists());
    }

    #[test]
    fn a_kept_file_that_does_not_decode_is_removed() {
        let d = tempfile::tempdir().unwrap();
        let dir = TokenDir::new(d.path().to_path_buf());
        let host = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
        let f = dir.file(host, "role:a");
        std::fs::write(&f, b"{\"host\":").unwrap();
        assert!(dir.get(host, "role:a").is_none());
        assert!(!f.exists());
        let b = dir.bearer_file(host, "repository:a:pull");
        std::fs::write(&b, b"[").unwrap();
        assert!(dir.get_bearer(host, "repository:a:pull").is_none());
        assert!(!b.exists());
    }
}
