//! Registry configuration: mirrors and insecure registries, in the spirit of
//! containers-registries.conf v2 (TOML `[[registry]]` tables with `[[registry.mirror]]`).

use serde::Deserialize;
use std::path::{Path, PathBuf};

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

    /// Reads `path`, or the default path if it exists; no file means no mirrors.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
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
        let api_host = if registry == "docker.io" {
            "registry-1.docker.io".to_string()
        } else {
            registry.to_string()
        };
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
}
