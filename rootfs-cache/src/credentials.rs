//! A registry's username and password, and where they came from: what the authenticator
//! asks with and what a kept token is keyed by (`crate::auth`, `crate::kept_tokens`).

use base64::Engine as _;
use reqwest::header::HeaderValue;

/// Username/password for a registry and where they came from, for error messages.
#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    /// "the Docker config", "ECR GetAuthorizationToken", …
    pub source: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({} from {})", self.username, self.source)
    }
}

impl Credentials {
    pub(crate) fn basic_header(&self) -> HeaderValue {
        let raw = format!("{}:{}", self.username, self.password);
        let mut v = HeaderValue::from_str(&format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        ))
        .unwrap_or_else(|_| HeaderValue::from_static(""));
        v.set_sensitive(true);
        v
    }
}
