//! The registry's typed names, parsed at the edge: a repository name (ECR's and the OCI
//! distribution spec's rules), a tag, a sha256 digest, and a manifest reference (tag or
//! digest).

use super::RegistryError;
use std::fmt;

/// A repository name. Ref: ECR's model (`RepositoryName`: 2-256 characters, pattern
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`), the same
/// grammar as the distribution spec's `<name>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RepoName(String);

impl RepoName {
    pub fn parse(s: &str) -> Result<RepoName, String> {
        if !(2..=256).contains(&s.len()) {
            return Err(format!(
                "repository name {s:?}: {} characters; ECR's names have 2 to 256",
                s.len()
            ));
        }
        if !s.split('/').all(component_ok) {
            return Err(format!(
                "repository name {s:?}: each /-separated part must be lowercase letters and \
                 digits, separated by one '.', one or two '_', or '-'s (ECR's pattern \
                 [a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*(\\/[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*)*)"
            ));
        }
        Ok(RepoName(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn component_ok(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A sha256 digest, `sha256:<64 lowercase hex>` (the only algorithm stored here; the
/// spec's other registered one, sha512, is refused as unsupported).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest(String);

impl Digest {
    pub fn parse(s: &str) -> Result<Digest, RegistryError> {
        let invalid = || RegistryError::DigestInvalid(format!("{s:?} is not a sha256 digest"));
        let (alg, hex) = s.split_once(':').ok_or_else(invalid)?;
        if alg != "sha256" {
            return Err(if alg.is_empty() {
                invalid()
            } else {
                RegistryError::Unsupported(format!(
                    "digest algorithm {alg:?}: this registry stores sha256 only"
                ))
            });
        }
        if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(invalid());
        }
        Ok(Digest(s.to_string()))
    }

    pub fn of(bytes: &[u8]) -> Digest {
        use sha2::Digest as _;
        Digest(format!(
            "sha256:{}",
            hex::encode(sha2::Sha256::digest(bytes))
        ))
    }

    pub fn from_hasher(h: sha2::Sha256) -> Digest {
        use sha2::Digest as _;
        Digest(format!("sha256:{}", hex::encode(h.finalize())))
    }

    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `t` is a tag: the spec's `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub fn tag_ok(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|&x| x.is_ascii_alphanumeric() || matches!(x, b'_' | b'.' | b'-'))
}

/// A manifest's reference in a URL: a digest (it has a ':') or a tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Tag(String),
    Digest(Digest),
}

impl Reference {
    pub fn parse(s: &str) -> Result<Reference, RegistryError> {
        if s.contains(':') {
            return Ok(Reference::Digest(Digest::parse(s)?));
        }
        if tag_ok(s) {
            Ok(Reference::Tag(s.to_string()))
        } else {
            Err(RegistryError::TagInvalid(format!(
                "{s:?} is neither a digest nor a tag ([a-zA-Z0-9_][a-zA-Z0-9._-]{{0,127}})"
            )))
        }
    }
}

/// `*` matches any run of characters (none included); everything else itself, the whole
/// string (lifecycle policies' `tagPatternList`, tag mutability's exclusion filters).
pub fn wildcard_match(pattern: &str, s: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == s;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !s.starts_with(first) || s.len() < first.len() + last.len() || !s.ends_with(last) {
        return false;
    }
    let mut rest = &s[first.len()..s.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names_follow_ecr_s_pattern() {
        for ok in [
            "ab",
            "web",
            "project-a/nginx-web-app",
            "a__b",
            "a--b/c.d",
            "a_b/9",
        ] {
            assert!(RepoName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "a", "Web", "-a", "a-", "a/", "/a", "a//b", "a___b", "a..b", "a._b", "a b", "a:b",
        ] {
            assert!(RepoName::parse(bad).is_err(), "{bad}");
        }
        assert!(RepoName::parse(&"a".repeat(257)).is_err());
        assert!(RepoName::parse(&"a".repeat(256)).is_ok());
    }

    #[test]
    fn digests_and_references() {
        let d = Digest::of(b"");
        assert_eq!(
            d.as_str(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(Digest::parse(d.as_str()).unwrap(), d);
        assert!(matches!(
            Digest::parse("sha256:ABC"),
            Err(RegistryError::DigestInvalid(_))
        ));
        assert!(matches!(
            Digest::parse(&format!("sha512:{}", "a".repeat(128))),
            Err(RegistryError::Unsupported(_))
        ));
        assert_eq!(
            Reference::parse("v1.0").unwrap(),
            Reference::Tag("v1.0".into())
        );
        assert!(matches!(
            Reference::parse(".x"),
            Err(RegistryError::TagInvalid(_))
        ));
        assert!(tag_ok(&"a".repeat(128)) && !tag_ok(&"a".repeat(129)));
    }
}
