//! Image references (`busybox`, `host:5000/team/app:1.2`, `app@sha256:…`) with
//! Docker's normalisation (`busybox` → `docker.io/library/busybox:latest`).
//!
//! Why not `oci_spec::distribution::Reference` on the hot path: it compiles a large
//! Unicode regex on first use, ~40 ms per process — most of a warm `pull`. This parser
//! follows the same grammar (distribution/reference's regexp.go) and is checked against
//! oci-spec's parser in the tests below.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefError {
    #[error("repository name must have at least one component")]
    Empty,
    #[error("invalid reference format")]
    Format,
    #[error("repository name must be lowercase")]
    Uppercase,
    #[error("repository name must not be more than 255 characters")]
    TooLong,
    #[error("invalid tag format")]
    Tag,
    #[error("invalid digest format (expected sha256:<64 hex>)")]
    Digest,
}

fn is_alnum_lower(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// One path component: `[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*`.
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum_lower(b[0]) || !is_alnum_lower(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum_lower(b[i]) {
            i += 1;
            continue;
        }
        // A separator: ".", "_", "__" or one or more "-", then an alphanumeric.
        let start = i;
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == start || i >= b.len() || !is_alnum_lower(b[i]) {
            return false;
        }
    }
    true
}

/// `host(.host)*(:port)?` with host labels `[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]`.
fn valid_domain(d: &str) -> bool {
    let (host, port) = match d.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (d, None),
    };
    if let Some(p) = port
        && (p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    !host.is_empty()
        && host.split('.').all(|l| {
            let b = l.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        })
}

/// `[\w][\w.-]{0,127}`.
fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

fn valid_digest(d: &str) -> bool {
    let Some((algo, hex)) = d.split_once(':') else {
        return false;
    };
    let len = match algo {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return false,
    };
    hex.len() == len && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

impl ImageRef {
    pub fn parse(s: &str) -> Result<Self, RefError> {
        if s.is_empty() {
            return Err(RefError::Empty);
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                if !valid_digest(d) {
                    return Err(RefError::Digest);
                }
                (r, Some(d.to_string()))
            }
            None => (s, None),
        };
        // A tag is the part after the last ':' that comes after the last '/'.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let t = &rest[last_slash + i + 1..];
                if !valid_tag(t) {
                    return Err(RefError::Tag);
                }
                (&rest[..last_slash + i], Some(t.to_string()))
            }
            None => (rest, None),
        };
        let (registry, path) = match name.split_once('/') {
            Some((d, p))
                if d.contains(['.', ':'])
                    || d == "localhost"
                    || d.bytes().any(|b| b.is_ascii_uppercase()) =>
            {
                if !valid_domain(d) {
                    return Err(RefError::Format);
                }
                (d.to_string(), p.to_string())
            }
            _ => ("docker.io".to_string(), name.to_string()),
        };
        if path.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(RefError::Uppercase);
        }
        if !path.split('/').all(valid_component) {
            return Err(RefError::Format);
        }
        let registry = if registry == "index.docker.io" {
            "docker.io".to_string()
        } else {
            registry
        };
        let repository = if registry == "docker.io" && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        if repository.len() > 255 {
            return Err(RefError::TooLong);
        }
        let tag = if tag.is_none() && digest.is_none() {
            Some("latest".to_string())
        } else {
            tag
        };
        Ok(ImageRef {
            registry,
            repository,
            tag,
            digest,
        })
    }

    pub fn registry(&self) -> &str {
        &self.registry
    }
    pub fn repository(&self) -> &str {
        &self.repository
    }
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::distribution::Reference;

    const D: &str = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

    #[test]
    fn normalises_like_docker() {
        let r = ImageRef::parse("busybox").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
        let r = ImageRef::parse("127.0.0.1:5000/demo/busybox:1.36").unwrap();
        assert_eq!(
            (r.registry(), r.repository(), r.tag()),
            ("127.0.0.1:5000", "demo/busybox", Some("1.36"))
        );
        let r = ImageRef::parse(&format!("localhost/app@{D}")).unwrap();
        assert_eq!(
            (r.registry(), r.tag(), r.digest()),
            ("localhost", None, Some(D))
        );
        let r = ImageRef::parse("index.docker.io/nginx").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/nginx:latest");
        // Docker's splitDockerDomain: an uppercase first component is a host (oci-spec
        // disagrees and makes it part of a docker.io repository).
        assert_eq!(ImageRef::parse("Upper/case").unwrap().registry(), "Upper");
        let r = ImageRef::parse("123456789012.dkr.ecr.us-east-1.amazonaws.com/web:1.2").unwrap();
        assert_eq!(r.registry(), "123456789012.dkr.ecr.us-east-1.amazonaws.com");
    }

    /// Same answers as oci-spec's regex-based parser.
    #[test]
    fn agrees_with_oci_spec() {
        let long = "a".repeat(256);
        let cases = [
            "busybox",
            "busybox:1.36",
            "library/busybox:latest",
            "docker.io/library/busybox",
            "public.ecr.aws/docker/library/busybox:1.36",
            "localhost:5000/a/b/c:tag_1.2-x",
            "a.b-c.d:1/x__y/z--w/v.u",
            "my-registry.local/team/app",
            &format!("app:1@{D}"),
            &format!("app@{D}"),
            "UPPER.io/app",
            "upper.io/App",
            "app:",
            ":tag",
            "app:-bad",
            "a//b",
            "a/b/",
            "-a/b",
            "a_/b",
            "a___b",
            "a..b",
            "host:port/app",
            "app@sha256:abc",
            "app@md5:0123456789abcdef0123456789abcdef",
            "a b",
            &long,
            "x/.hidden",
        ];
        for c in cases {
            let ours = ImageRef::parse(c);
            let theirs = c.parse::<Reference>();
            match (&ours, &theirs) {
                (Ok(o), Ok(t)) => {
                    assert_eq!(o.registry(), t.registry(), "{c}");
                    assert_eq!(o.repository(), t.repository(), "{c}");
                    assert_eq!(o.tag(), t.tag(), "{c}");
                    assert_eq!(o.digest(), t.digest(), "{c}");
                }
                (Err(_), Err(_)) => {}
                _ => panic!("{c:?}: ours {ours:?} vs oci-spec {theirs:?}"),
            }
        }
    }
}
