//! This box's registry as `serve` advertises it (`<root>/registry/local.json`, root only):
//! the ECR host name its repository URIs carry, the loopback address it answers at and a
//! token to pull with. Every pull on the box (a task's supervisor, `minifargate pull`)
//! reads it, so `<account>.dkr.ecr.<region>.amazonaws.com/<repo>:<tag>` in a task
//! definition resolves to the box's registry with nothing edited by hand: the ECR host
//! gets the local address as its mirror, and that address the token as its credentials.
//! docs/registry.md, "The product's pulls".

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Where serve writes it, under the state root.
pub const FILE: &str = "registry/local.json";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LocalRegistry {
    /// `<account>.dkr.ecr.<region>.amazonaws.com`.
    pub host: String,
    /// `127.0.0.1:<port>`: serve's listener.
    pub endpoint: String,
    /// Plain HTTP (or TLS with serve's own certificate) on loopback.
    pub insecure: bool,
    /// `AWS` and a token (None: serve runs without authentication).
    pub username: Option<String>,
    pub password: Option<String>,
    /// Seconds since the epoch; serve writes a new token long before.
    pub expires_at: u64,
    /// The serve process that wrote it (a file of a serve that is gone is not used).
    pub pid: u32,
}

pub fn path(root: &Path) -> PathBuf {
    root.join(FILE)
}

impl LocalRegistry {
    /// The advertisement under `root`, if a live serve wrote it and its token is valid.
    pub fn read(root: &Path) -> Option<LocalRegistry> {
        let text = std::fs::read(path(root)).ok()?;
        let l: LocalRegistry = serde_json::from_slice(&text)
            .inspect_err(
                |e| tracing::warn!(error = %e, "ignoring an unreadable registry/local.json"),
            )
            .ok()?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(l.pid as i32), None).is_ok();
        (alive && l.expires_at > now).then_some(l)
    }

    /// Writes it (0600: it holds a token), temp file + rename.
    pub fn write(&self, root: &Path) -> std::io::Result<()> {
        let dest = path(root);
        let tmp = dest.with_extension(format!("json.{}", std::process::id()));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&serde_json::to_vec(self).unwrap_or_default())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &dest)
    }

    /// Whether `image` names a repository of this registry.
    pub fn serves(&self, image: &str) -> bool {
        rootfs_cache::pull::parse_reference(image)
            .is_ok_and(|r| rootfs_cache::config::api_host(r.registry()) == self.host)
    }

    /// Points pulls of [`Self::host`] at the local endpoint (a mirror, unless the
    /// registry configuration already has an entry for the host: the user's wins) with
    /// the token as its credentials.
    pub fn apply(
        &self,
        config: &mut rootfs_cache::config::RegistriesConfig,
        overrides: &mut rootfs_cache::auth::Overrides,
    ) {
        if !config
            .registries
            .iter()
            .any(|e| e.prefix.trim_end_matches('/') == self.host)
        {
            config.registries.push(rootfs_cache::config::RegistryEntry {
                prefix: self.host.clone(),
                insecure: false,
                mirrors: vec![rootfs_cache::config::Mirror {
                    location: self.endpoint.clone(),
                    insecure: self.insecure,
                }],
            });
        }
        if let (Some(u), Some(p)) = (&self.username, &self.password) {
            overrides
                .basic
                .entry(self.endpoint.clone())
                .or_insert_with(|| rootfs_cache::credentials::Credentials {
                    username: u.clone(),
                    password: p.clone(),
                    source: "this box's registry (serve's ECR token)".into(),
                });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> LocalRegistry {
        LocalRegistry {
            host: "000000000000.dkr.ecr.us-east-1.amazonaws.com".into(),
            endpoint: "127.0.0.1:8080".into(),
            insecure: true,
            username: Some("AWS".into()),
            password: Some("pw".into()),
            expires_at: u64::MAX,
            pid: std::process::id(),
        }
    }

    #[test]
    fn the_ecr_host_gets_the_local_endpoint_as_mirror_and_the_token() {
        let l = local();
        assert!(l.serves("000000000000.dkr.ecr.us-east-1.amazonaws.com/web:v1"));
        assert!(!l.serves("111111111111.dkr.ecr.us-east-1.amazonaws.com/web:v1"));
        let mut config = rootfs_cache::config::RegistriesConfig::default();
        let mut o = rootfs_cache::auth::Overrides::default();
        l.apply(&mut config, &mut o);
        let e = config.endpoints("000000000000.dkr.ecr.us-east-1.amazonaws.com", "team/web");
        assert_eq!(e[0].host, "127.0.0.1:8080");
        assert_eq!(e[0].repository, "team/web");
        assert!(e[0].insecure && e[0].is_mirror);
        assert_eq!(o.basic["127.0.0.1:8080"].password, "pw");
        // The user's own entry for the host wins.
        let mut config = rootfs_cache::config::RegistriesConfig::default();
        config.registries.push(rootfs_cache::config::RegistryEntry {
            prefix: l.host.clone(),
            insecure: false,
            mirrors: vec![],
        });
        l.apply(&mut config, &mut o);
        assert_eq!(config.registries.len(), 1);
    }

    #[test]
    fn a_file_of_a_gone_serve_or_an_expired_token_is_not_used() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("registry")).unwrap();
        let l = local();
        l.write(dir.path()).unwrap();
        assert_eq!(LocalRegistry::read(dir.path()), Some(l.clone()));
        let mode = std::fs::metadata(path(dir.path())).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        LocalRegistry {
            expires_at: 1,
            ..l.clone()
        }
        .write(dir.path())
        .unwrap();
        assert_eq!(LocalRegistry::read(dir.path()), None);
        // No process has pid 0x7fffffff.
        LocalRegistry {
            pid: 0x7fff_ffff,
            ..l
        }
        .write(dir.path())
        .unwrap();
        assert_eq!(LocalRegistry::read(dir.path()), None);
    }
}
