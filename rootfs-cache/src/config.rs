//! Registry configuration: mirrors and insecure registries, in the spirit of
//! containers-registries.conf v2 (TOML `[[registry]]` tables with `[[registry.mirror]]`).

use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the configuration is read from when no path is given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/minifargate/config.toml";

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistriesConfig {
    #[serde(default, rename = "registry")]
    pub registries: Vec<RegistryEntry>,
    /// Refuse layers that unpack to more than this (bytes); default 32 GiB.
    #[serde(default)]
    pub max_unpacked_size: Option<u64>,
    /// Keep at least this many bytes free on the cache's filesystem; default 256 MiB.
    #[serde(default)]
    pub min_free_space: Option<u64>,
    /// Seconds a registry connection may stay silent before the read is abandoned (and
    /// a blob download resumed with `Range`); default 30.
    #[serde(default)]
    pub registry_read_timeout: Option<f64>,
}

/// Values that win over the file's keys of the same meaning: the binary's environment
/// (`MINIFARGATE_MAX_UNPACKED_SIZE`, `MINIFARGATE_MIN_FREE_SPACE`,
/// `MINIFARGATE_REGISTRY_READ_TIMEOUT`), parsed where the binary parses its configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Overrides {
    pub max_unpacked_size: Option<u64>,
    pub min_free_space: Option<u64>,
    pub registry_read_timeout: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryEntry {
    /// `host[:port][/namespace]` that image references start with.
    pub prefix: String,
    /// Allow plain HTTP and unverified TLS for this registry.
    #[serde(default)]
    pub insecure: bool,
    /// Tried in order before the registry itself.
    #[serde(default, rename = "mirror")]
    pub mirrors: Vec<Mirror>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mirror {
    /// `host[:port][/namespace]`; the rest of the repository path is appended.
    pub location: String,
    #[serde(default)]
    pub insecure: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("failed to read registry config {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to parse registry config {path}")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("invalid {key}={value:?}: {expected}")]
    Value {
        key: String,
        value: String,
        expected: &'static str,
    },
}

/// One place to fetch a repository from: a mirror or the registry itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]` to connect to.
    pub host: String,
    /// The repository path at that host.
    pub repository: String,
    /// Plain HTTP and unverified TLS allowed.
    pub insecure: bool,
    pub is_mirror: bool,
}

/// The host the registry API of `registry` (as in an image reference) answers at.
pub fn api_host(registry: &str) -> String {
    if registry == "docker.io" {
        "registry-1.docker.io".to_string()
    } else {
        registry.to_string()
    }
}

impl RegistriesConfig {
    /// Unpack limits from `max_unpacked_size` (default 32 GiB per layer).
    pub fn unpack_options(&self) -> crate::unpack::UnpackOptions {
        let mut opts = crate::unpack::UnpackOptions::default();
        if let Some(max) = self.max_unpacked_size {
            opts.max_unpacked_bytes = max;
        }
        opts
    }

    /// Bytes to leave free on the cache's disk (default 256 MiB).
    pub fn min_free_space(&self) -> u64 {
        self.min_free_space.unwrap_or(256 << 20)
    }

    /// Retries and timeouts for the registry client (`registry_read_timeout`).
    pub fn retry_policy(&self) -> RetryPolicy {
        let mut p = RetryPolicy::default();
        if let Some(t) = self.registry_read_timeout {
            p.read_timeout = Duration::from_secs_f64(t);
        }
        p
    }

    /// Reads `path` (or the default path if it exists; no file means no mirrors), then
    /// applies `overrides`.
    pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        let mut c = Self::load_file(path)?;
        c.apply(overrides)?;
        Ok(c)
    }

    /// Applies `o` over the file's keys; the result is checked as the file's are.
    pub fn apply(&mut self, o: &Overrides) -> Result<(), ConfigError> {
        if o.max_unpacked_size.is_some() {
            self.max_unpacked_size = o.max_unpacked_size;
        }
        if o.min_free_space.is_some() {
            self.min_free_space = o.min_free_space;
        }
        if o.registry_read_timeout.is_some() {
            self.registry_read_timeout = o.registry_read_timeout;
        }
        self.check()
    }

    /// Refuses values the client cannot use (a zero or negative timeout).
    fn check(&self) -> Result<(), ConfigError> {
        if let Some(t) = self.registry_read_timeout
            && !(t > 0.0 && t <= 86_400.0)
        {
            return Err(ConfigError::Value {
                key: "registry_read_timeout".into(),
                value: t.to_string(),
                expected: "expected seconds between 0 and 86400",
            });
        }
        Ok(())
    }

    fn load_file(path: Option<&Path>) -> Result<Self, ConfigError> {
        let (path, required) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self::default());
            }
            Err(source) => return Err(ConfigError::Read { path, source }),
        };
        toml::from_str(&text).map_err(|source| ConfigError::Parse { path, source })
    }

    /// The longest matching `[[registry]]` prefix for `registry/repository`.
    fn entry_for(&self, registry: &str, repository: &str) -> Option<&RegistryEntry> {
        let full = format!("{registry}/{repository}");
        self.registries
            .iter()
            .filter(|e| {
                let p = e.prefix.trim_end_matches('/');
                full == p || full.starts_with(&format!("{p}/")) || registry == p
            })
            .max_by_key(|e| e.prefix.len())
    }

    /// Endpoints to try for `registry/repository`, mirrors first.
    pub fn endpoints(&self, registry: &str, repository: &str) -> Vec<Endpoint> {
        let api_host = api_host(registry);
        let mut out = Vec::new();
        let entry = self.entry_for(registry, repository);
        if let Some(e) = entry {
            let prefix = e.prefix.trim_end_matches('/');
            let full = format!("{registry}/{repository}");
            let rest = full
                .strip_prefix(prefix)
                .unwrap_or(&full)
                .trim_start_matches('/');
            for m in &e.mirrors {
                let (host, ns) = match m.location.trim_end_matches('/').split_once('/') {
                    Some((h, ns)) => (h.to_string(), Some(ns.to_string())),
                    None => (m.location.trim_end_matches('/').to_string(), None),
                };
                let repository = match (ns, rest.is_empty()) {
                    (Some(ns), false) => format!("{ns}/{rest}"),
                    (Some(ns), true) => ns,
                    (None, _) => rest.to_string(),
                };
                out.push(Endpoint {
                    host,
                    repository,
                    insecure: m.insecure,
                    is_mirror: true,
                });
            }
        }
        out.push(Endpoint {
            host: api_host,
            repository: repository.to_string(),
            insecure: entry.is_some_and(|e| e.insecure),
            is_mirror: false,
        });
        out
    }
}

/// Retries and timeouts of the registry client (`crate::client`).
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// How long one read may wait for bytes before the connection counts as stalled
    /// (config `registry_read_timeout`).
    pub read_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let d = self.base_delay.saturating_mul(1u32 << attempt.min(10));
        d.min(self.max_delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_come_first_and_keep_the_repository_path() {
        let cfg: RegistriesConfig = toml::from_str(
            r#"
            [[registry]]
            prefix = "public.ecr.aws"
            [[registry.mirror]]
            location = "127.0.0.1:5000"
            insecure = true
            [[registry.mirror]]
            location = "mirror.local/ecr-public"
            "#,
        )
        .unwrap();
        let eps = cfg.endpoints("public.ecr.aws", "docker/library/busybox");
        assert_eq!(eps.len(), 3);
        assert_eq!(eps[0].host, "127.0.0.1:5000");
        assert_eq!(eps[0].repository, "docker/library/busybox");
        assert!(eps[0].insecure);
        assert_eq!(eps[1].repository, "ecr-public/docker/library/busybox");
        assert_eq!(eps[2].host, "public.ecr.aws");
        assert!(!eps[2].is_mirror);
    }

    #[test]
    fn namespace_prefixes_and_docker_hub() {
        let cfg: RegistriesConfig = toml::from_str(
            r#"
            [[registry]]
            prefix = "docker.io/library"
            [[registry.mirror]]
            location = "localhost:5000/hub"
            "#,
        )
        .unwrap();
        let eps = cfg.endpoints("docker.io", "library/busybox");
        assert_eq!(eps[0].repository, "hub/busybox");
        assert_eq!(eps[1].host, "registry-1.docker.io");
        assert_eq!(cfg.endpoints("docker.io", "other/x").len(), 1);
        assert!(toml::from_str::<RegistriesConfig>("[[registry]]\nprefx='x'").is_err());
    }

    #[test]
    fn overrides_win_over_the_file() {
        let mut cfg: RegistriesConfig =
            toml::from_str("max_unpacked_size = 100\nregistry_read_timeout = 5").unwrap();
        cfg.apply(&Overrides {
            max_unpacked_size: Some(4096),
            registry_read_timeout: Some(0.5),
            ..Overrides::default()
        })
        .unwrap();
        assert_eq!(cfg.unpack_options().max_unpacked_bytes, 4096);
        assert_eq!(
            cfg.retry_policy().read_timeout,
            std::time::Duration::from_millis(500)
        );
        assert_eq!(cfg.min_free_space(), 256 << 20);
        let e = cfg
            .apply(&Overrides {
                registry_read_timeout: Some(0.0),
                ..Overrides::default()
            })
            .unwrap_err();
        assert!(e.to_string().contains("registry_read_timeout"), "{e}");
    }
}
