//! Manifests, indexes and image configs (OCI and Docker schema 2, parsed with
//! `oci-spec`), and platform selection from an index the way Docker/containerd do it.
//! Ref: OCI image-spec image-index.md, manifest.md, config.md.

use crate::digest::{Digest, DigestParseError};
use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest};
use std::fmt;
use std::str::FromStr;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("failed to parse the {what}")]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "the image has a Docker schema 1 manifest, which is not supported (Docker deprecated \
         it in 2019); push the image again with a current Docker, podman or skopeo"
    )]
    Schema1,
    #[error("unsupported manifest media type {0:?} (expected an OCI or Docker v2 image)")]
    UnsupportedMediaType(String),
    #[error("no image for platform {wanted} in the index (it has: {available})")]
    NoPlatform { wanted: String, available: String },
    #[error(transparent)]
    BadDigest(#[from] DigestParseError),
    #[error("{what} digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("the platform manifest {digest} is itself an index; refusing nested indexes")]
    NestedIndex { digest: Digest },
    #[error("the image config lists {diff_ids} diff_ids but the manifest has {layers} layers")]
    LayerCountMismatch { layers: usize, diff_ids: usize },
    #[error("invalid platform {0:?}: expected os/arch[/variant], e.g. linux/arm64")]
    BadPlatform(String),
}

/// `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub arch: String,
    pub variant: Option<String>,
}

impl Platform {
    /// The platform this binary runs on.
    pub fn host() -> Self {
        let (arch, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "x86" => ("386", None),
            "powerpc64" => ("ppc64le", None),
            "loongarch64" => ("loong64", None),
            other => (other, None),
        };
        Platform {
            os: "linux".into(),
            arch: arch.into(),
            variant: variant.map(str::to_string),
        }
    }

    /// arm64 with no variant means v8, as in containerd's normalisation.
    fn norm_variant(&self) -> Option<&str> {
        match (self.arch.as_str(), self.variant.as_deref()) {
            ("arm64", None) => Some("v8"),
            (_, v) => v,
        }
    }

    /// Whether an index entry for `candidate` serves a request for `self`.
    pub fn accepts(&self, candidate: &Platform) -> bool {
        self.os == candidate.os
            && self.arch == candidate.arch
            && (self.variant.is_none() && self.arch != "arm64"
                || self.norm_variant() == candidate.norm_variant())
    }

    /// Same os and architecture.
    pub fn matches_loosely(&self, other: &Platform) -> bool {
        self.os == other.os && self.arch == other.arch
    }
}

impl FromStr for Platform {
    type Err = ManifestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [os, arch] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
                os: os.to_string(),
                arch: arch.to_string(),
                variant: None,
            }),
            [os, arch, v] if !os.is_empty() && !arch.is_empty() && !v.is_empty() => Ok(Platform {
                os: os.to_string(),
                arch: arch.to_string(),
                variant: Some(v.to_string()),
            }),
            _ => Err(ManifestError::BadPlatform(s.to_string())),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct LayerDesc {
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
}

/// An image manifest reduced to what the cache needs.
#[derive(Debug, Clone)]
pub struct ImageInfo {
    pub media_type: String,
    pub config: Digest,
    pub layers: Vec<LayerDesc>,
}

#[derive(Debug)]
pub enum Parsed {
    Index(Box<ImageIndex>),
    Image(ImageInfo),
}

/// Parses a manifest or index; the media type comes from the document, else from the
/// Content-Type the registry sent, else from its shape.
pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Parsed, ManifestError> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        schema_version: Option<u32>,
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
        layers: Option<serde_json::Value>,
    }
    let probe: Probe = serde_json::from_slice(bytes).map_err(|source| ManifestError::Json {
        what: "manifest",
        source,
    })?;
    if probe.schema_version == Some(1) {
        return Err(ManifestError::Schema1);
    }
    let media_type = probe
        .media_type
        .clone()
        .or_else(|| content_type.map(str::to_string))
        .unwrap_or_default();
    let is_index = match media_type.as_str() {
        OCI_INDEX | DOCKER_LIST => true,
        OCI_MANIFEST | DOCKER_MANIFEST => false,
        t if t.contains("manifest.v1") => return Err(ManifestError::Schema1),
        _ if probe.manifests.is_some() => true,
        _ if probe.layers.is_some() => false,
        other => return Err(ManifestError::UnsupportedMediaType(other.to_string())),
    };
    if is_index {
        let index: ImageIndex =
            serde_json::from_slice(bytes).map_err(|source| ManifestError::Json {
                what: "image index",
                source,
            })?;
        return Ok(Parsed::Index(Box::new(index)));
    }
    let m: ImageManifest = serde_json::from_slice(bytes).map_err(|source| ManifestError::Json {
        what: "image manifest",
        source,
    })?;
    let layers = m
        .layers()
        .iter()
        .map(|l| {
            Ok(LayerDesc {
                digest: l.digest().to_string().parse()?,
                size: l.size(),
                media_type: l.media_type().to_string(),
            })
        })
        .collect::<Result<Vec<_>, ManifestError>>()?;
    Ok(Parsed::Image(ImageInfo {
        media_type: if media_type.is_empty() {
            OCI_MANIFEST.to_string()
        } else {
            media_type
        },
        config: m.config().digest().to_string().parse()?,
        layers,
    }))
}

fn platform_of(d: &oci_spec::image::Descriptor) -> Option<Platform> {
    let p = d.platform().as_ref()?;
    Some(Platform {
        os: p.os().to_string(),
        arch: p.architecture().to_string(),
        variant: p.variant().clone().filter(|v| !v.is_empty()),
    })
}

/// Picks the manifest for `wanted` from an index. Attestation entries
/// (`unknown/unknown`) are never picked.
pub fn select_platform<'i>(
    index: &'i ImageIndex,
    wanted: &Platform,
) -> Result<&'i oci_spec::image::Descriptor, ManifestError> {
    let candidates: Vec<_> = index
        .manifests()
        .iter()
        .filter_map(|d| platform_of(d).map(|p| (d, p)))
        .filter(|(_, p)| p.os != "unknown")
        .collect();
    // An exact variant match beats a variant-less request matching any variant.
    let exact = candidates
        .iter()
        .find(|(_, p)| p.matches_loosely(wanted) && p.norm_variant() == wanted.norm_variant());
    if let Some((d, _)) = exact.or_else(|| candidates.iter().find(|(_, p)| wanted.accepts(p))) {
        return Ok(d);
    }
    let available: Vec<String> = candidates.iter().map(|(_, p)| p.to_string()).collect();
    Err(ManifestError::NoPlatform {
        wanted: wanted.to_string(),
        available: if available.is_empty() {
            "no platforms".to_string()
        } else {
            available.join(", ")
        },
    })
}

/// What the cache needs from an image config.
#[derive(Debug, Clone)]
pub struct ConfigInfo {
    pub platform: Platform,
    pub diff_ids: Vec<Digest>,
}

pub fn parse_config(bytes: &[u8], layer_count: usize) -> Result<ConfigInfo, ManifestError> {
    let cfg: ImageConfiguration =
        serde_json::from_slice(bytes).map_err(|source| ManifestError::Json {
            what: "image config",
            source,
        })?;
    let diff_ids = cfg
        .rootfs()
        .diff_ids()
        .iter()
        .map(|d| d.parse::<Digest>())
        .collect::<Result<Vec<_>, _>>()?;
    if diff_ids.len() != layer_count {
        return Err(ManifestError::LayerCountMismatch {
            layers: layer_count,
            diff_ids: diff_ids.len(),
        });
    }
    Ok(ConfigInfo {
        platform: Platform {
            os: cfg.os().to_string(),
            arch: cfg.architecture().to_string(),
            variant: cfg.variant().clone().filter(|v| !v.is_empty()),
        },
        diff_ids,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDEX: &str = r#"{
      "schemaVersion": 2,
      "mediaType": "application/vnd.oci.image.index.v1+json",
      "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 1,
         "digest": "sha256:1111111111111111111111111111111111111111111111111111111111111111",
         "platform": {"os": "linux", "architecture": "amd64"}},
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 1,
         "digest": "sha256:2222222222222222222222222222222222222222222222222222222222222222",
         "platform": {"os": "linux", "architecture": "arm", "variant": "v6"}},
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 1,
         "digest": "sha256:3333333333333333333333333333333333333333333333333333333333333333",
         "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 1,
         "digest": "sha256:4444444444444444444444444444444444444444444444444444444444444444",
         "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 1,
         "digest": "sha256:5555555555555555555555555555555555555555555555555555555555555555",
         "platform": {"os": "unknown", "architecture": "unknown"}}
      ]}"#;

    fn pick(wanted: &str) -> Result<String, ManifestError> {
        let Parsed::Index(i) = parse(INDEX.as_bytes(), None).unwrap() else {
            panic!("not an index")
        };
        select_platform(&i, &wanted.parse().unwrap())
            .map(|d| d.digest().to_string()[7..8].to_string())
    }

    #[test]
    fn selects_platforms_like_containerd() {
        assert_eq!(pick("linux/amd64").unwrap(), "1");
        assert_eq!(pick("linux/arm64").unwrap(), "4");
        assert_eq!(pick("linux/arm64/v8").unwrap(), "4");
        assert_eq!(pick("linux/arm/v7").unwrap(), "3");
        assert_eq!(pick("linux/arm").unwrap(), "2");
        let err = pick("linux/s390x").unwrap_err().to_string();
        assert!(
            err.contains("linux/s390x") && err.contains("linux/arm64/v8"),
            "{err}"
        );
        assert!(!err.contains("unknown"), "{err}");
    }

    #[test]
    fn refuses_schema1_and_garbage() {
        assert!(matches!(
            parse(br#"{"schemaVersion":1,"name":"x","fsLayers":[]}"#, None),
            Err(ManifestError::Schema1)
        ));
        assert!(matches!(
            parse(
                b"{}",
                Some("application/vnd.docker.distribution.manifest.v1+prettyjws")
            ),
            Err(ManifestError::Schema1)
        ));
        assert!(parse(b"not json", None).is_err());
        assert!("linux".parse::<Platform>().is_err());
    }

    #[test]
    fn parses_docker_v2_manifests() {
        let m = r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
          "config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":2,
            "digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},
          "layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":10,
            "digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111"}]}"#;
        let Parsed::Image(info) = parse(m.as_bytes(), None).unwrap() else {
            panic!("not a manifest")
        };
        assert_eq!(info.media_type, DOCKER_MANIFEST);
        assert_eq!(info.layers.len(), 1);
        assert_eq!(info.layers[0].size, 10);
    }
}
