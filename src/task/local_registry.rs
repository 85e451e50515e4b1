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
        serves_host(&self.host, image)
    }

    fn source(&self) -> Source {
        Source {
            host: self.host.clone(),
            endpoint: self.endpoint.clone(),
            insecure: self.insecure,
            username: self.username.clone(),
            password: self.password.clone(),
            ca_pem: None,
            what: "this box's registry (serve's ECR token)".into(),
        }
    }
}

fn serves_host(host: &str, image: &str) -> bool {
    rootfs_cache::pull::parse_reference(image)
        .is_ok_and(|r| rootfs_cache::config::api_host(r.registry()) == host)
}

/// Where the box's agent writes the cluster's registries, under the state root.
pub const CLUSTER_FILE: &str = "registry/cluster.json";

/// One `serve --cluster`'s registry as it advertises it in etcd (`registries/<serve>`),
/// for every box of the cluster (docs/registry.md "A cluster's boxes").
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRegistry {
    /// The serve (host name and pid).
    pub serve: String,
    /// `<account>.dkr.ecr.<region>.amazonaws.com`.
    pub host: String,
    /// `host:port` the boxes reach the registry at (HTTPS).
    pub endpoint: String,
    /// The registry's CA (PEM) its certificate is verified with; None: the system's
    /// trust store (serve's own `--tls-cert`).
    pub ca_pem: Option<String>,
    /// `AWS` and a pull-only token (None: serve runs without authentication).
    pub username: Option<String>,
    pub password: Option<String>,
    /// Seconds since the epoch.
    pub expires_at: u64,
}

/// The cluster's registries as the box's agent last read them from etcd.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRegistries {
    /// The agent that wrote it (a file of an agent that is gone is not used).
    pub pid: u32,
    pub registries: Vec<ClusterRegistry>,
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

impl ClusterRegistries {
    /// The registries under `root` whose tokens are valid, if a live agent wrote them.
    pub fn read(root: &Path) -> Option<ClusterRegistries> {
        let text = std::fs::read(root.join(CLUSTER_FILE)).ok()?;
        let mut c: ClusterRegistries = serde_json::from_slice(&text)
            .inspect_err(
                |e| tracing::warn!(error = %e, "ignoring an unreadable registry/cluster.json"),
            )
            .ok()?;
        let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.pid as i32), None).is_ok();
        let now = now_secs();
        c.registries.retain(|r| r.expires_at > now);
        alive.then_some(c)
    }

    /// Writes it (0600: it holds tokens), temp file + rename.
    pub fn write(&self, root: &Path) -> std::io::Result<()> {
        let dest = root.join(CLUSTER_FILE);
        if let Some(dir) = dest.parent() {
            std::fs::create_dir_all(dir)?;
        }
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

    pub fn remove(root: &Path) {
        let _ = std::fs::remove_file(root.join(CLUSTER_FILE));
    }

    fn sources(&self) -> Vec<Source> {
        self.registries
            .iter()
            .map(|r| Source {
                host: r.host.clone(),
                endpoint: r.endpoint.clone(),
                insecure: false,
                username: r.username.clone(),
                password: r.password.clone(),
                ca_pem: r.ca_pem.clone().map(String::into_bytes),
                what: format!("the cluster's registry on serve {} (a pull token)", r.serve),
            })
            .collect()
    }
}

/// A registry the box's pulls take a repository URI's host to.
struct Source {
    host: String,
    endpoint: String,
    insecure: bool,
    username: Option<String>,
    password: Option<String>,
    ca_pem: Option<Vec<u8>>,
    what: String,
}

/// Points pulls of each source's ECR host at its endpoints, as mirrors in the order given
/// (unless the registry configuration already has an entry for the host: the user's
/// wins), each endpoint with its token and, when given, its CA.
fn apply_sources(
    sources: &[Source],
    config: &mut rootfs_cache::config::RegistriesConfig,
    overrides: &mut rootfs_cache::auth::Overrides,
) {
    let mut ours: Vec<rootfs_cache::config::RegistryEntry> = Vec::new();
    for s in sources {
        if config
            .registries
            .iter()
            .any(|e| e.prefix.trim_end_matches('/') == s.host)
        {
            continue;
        }
        let mirror = rootfs_cache::config::Mirror {
            location: s.endpoint.clone(),
            insecure: s.insecure,
        };
        match ours.iter_mut().find(|e| e.prefix == s.host) {
            Some(e) if e.mirrors.iter().any(|m| m.location == s.endpoint) => {}
            Some(e) => e.mirrors.push(mirror),
            None => ours.push(rootfs_cache::config::RegistryEntry {
                prefix: s.host.clone(),
                insecure: false,
                mirrors: vec![mirror],
            }),
        }
        if let (Some(u), Some(p)) = (&s.username, &s.password) {
            overrides
                .basic
                .entry(s.endpoint.clone())
                .or_insert_with(|| rootfs_cache::credentials::Credentials {
                    username: u.clone(),
                    password: p.clone(),
                    source: s.what.clone(),
                });
        }
        if let Some(ca) = &s.ca_pem {
            overrides
                .roots
                .entry(s.endpoint.clone())
                .or_insert_with(|| ca.clone());
        }
    }
    config.registries.extend(ours);
}

/// Points the pulls of `root`'s box at its registries: this box's serve first (loopback),
/// then every serve of its cluster (as the box's agent last read them).
pub fn apply(
    root: &Path,
    config: &mut rootfs_cache::config::RegistriesConfig,
    overrides: &mut rootfs_cache::auth::Overrides,
) {
    let mut sources = Vec::new();
    if let Some(l) = LocalRegistry::read(root) {
        sources.push(l.source());
    }
    if let Some(c) = ClusterRegistries::read(root) {
        sources.extend(c.sources());
    }
    apply_sources(&sources, config, overrides);
}

/// Whether `image` names a repository of a registry of `root`'s box or of its cluster
/// (pulled with that registry's token, not with the task's execution role).
pub fn serves(root: &Path, image: &str) -> bool {
    LocalRegistry::read(root).is_some_and(|l| l.serves(image))
        || ClusterRegistries::read(root)
            .is_some_and(|c| c.registries.iter().any(|r| serves_host(&r.host, image)))
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
        apply_sources(&[l.source()], &mut config, &mut o);
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
        apply_sources(&[l.source()], &mut config, &mut o);
        assert_eq!(config.registries.len(), 1);
    }

    #[test]
    fn the_cluster_s_registries_follow_the_local_one_with_their_tokens_and_cas() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("registry")).unwrap();
        local().write(dir.path()).unwrap();
        let one = |serve: &str, endpoint: &str, expires_at| ClusterRegistry {
            serve: serve.into(),
            host: "000000000000.dkr.ecr.us-east-1.amazonaws.com".into(),
            endpoint: endpoint.into(),
            ca_pem: Some(format!("CA of {serve}")),
            username: Some("AWS".into()),
            password: Some(format!("pull token of {serve}")),
            expires_at,
        };
        ClusterRegistries {
            pid: std::process::id(),
            registries: vec![
                one("a", "10.0.0.1:8080", u64::MAX),
                one("b", "10.0.0.2:8080", u64::MAX),
                one("old", "10.0.0.3:8080", 1),
            ],
        }
        .write(dir.path())
        .unwrap();
        let mut config = rootfs_cache::config::RegistriesConfig::default();
        let mut o = rootfs_cache::auth::Overrides::default();
        apply(dir.path(), &mut config, &mut o);
        let e = config.endpoints("000000000000.dkr.ecr.us-east-1.amazonaws.com", "web");
        let hosts: Vec<_> = e.iter().map(|e| (e.host.as_str(), e.insecure)).collect();
        // This box's serve first (loopback), then the cluster's (verified TLS), the
        // expired one left out, then the ECR host itself.
        assert_eq!(
            hosts,
            [
                ("127.0.0.1:8080", true),
                ("10.0.0.1:8080", false),
                ("10.0.0.2:8080", false),
                ("000000000000.dkr.ecr.us-east-1.amazonaws.com", false)
            ]
        );
        assert_eq!(o.basic["10.0.0.2:8080"].password, "pull token of b");
        assert_eq!(o.roots["10.0.0.1:8080"], b"CA of a");
        assert!(!o.roots.contains_key("127.0.0.1:8080"));
        assert!(serves(
            dir.path(),
            "000000000000.dkr.ecr.us-east-1.amazonaws.com/web:v1"
        ));
        std::fs::remove_file(path(dir.path())).unwrap();
        assert!(serves(
            dir.path(),
            "000000000000.dkr.ecr.us-east-1.amazonaws.com/web:v1"
        ));
        ClusterRegistries::remove(dir.path());
        assert!(!serves(
            dir.path(),
            "000000000000.dkr.ecr.us-east-1.amazonaws.com/web:v1"
        ));
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
