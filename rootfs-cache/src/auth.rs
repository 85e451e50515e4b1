//! Registry authentication: Basic credentials from the Docker config (and its credential
//! helpers), the Bearer token flow of `WWW-Authenticate`, and ECR's GetAuthorizationToken.
//! A caller may hand in its own credentials instead of the host's ([`Overrides`]: a task's
//! execution role for ECR, a container's `repositoryCredentials`).
//! Ref: distribution spec "token authentication"; docker/cli config.json; AWS ECR API.

use base64::Engine as _;
use reqwest::header::HeaderValue;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

pub use crate::credentials::Credentials;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(
        "401 Unauthorized from {host}: no credentials found for it (add them to \
         ~/.docker/config.json or $DOCKER_CONFIG/config.json, e.g. with `docker login {host}`)"
    )]
    NoCredentials { host: String },
    #[error("401 Unauthorized from {host}: the credentials from {source_name} were rejected")]
    Rejected { host: String, source_name: String },
    #[error("failed to read credentials for {host} from the Docker config: {detail}")]
    DockerConfig { host: String, detail: String },
    #[error(
        "failed to get an ECR authorization token for {host} (region {region}): {detail}; check \
         the AWS credentials (AWS_PROFILE, `aws configure`, or the instance/task role)"
    )]
    Ecr {
        host: String,
        region: String,
        detail: String,
    },
    #[error(
        "failed to get an ECR authorization token for {host} with the credentials of \
         {identity}, which need ecr:GetAuthorizationToken (and \
         ecr:BatchGetImage, ecr:GetDownloadUrlForLayer on the repository): {detail}"
    )]
    EcrAs {
        host: String,
        identity: String,
        detail: String,
    },
    #[error(
        "failed to reach ECR for an authorization token for {host} (region {region}): {detail}"
    )]
    EcrUnreachable {
        host: String,
        region: String,
        detail: String,
    },
    #[error("ECR returned an unusable authorization token for {host}: {detail}")]
    EcrToken { host: String, detail: String },
    #[error("failed to parse the registry's WWW-Authenticate header {header:?} from {host}")]
    Challenge { host: String, header: String },
    #[error("failed to get a bearer token for {host} from {realm}")]
    Token {
        host: String,
        realm: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("token service {realm} answered {status} for {host}{hint}")]
    TokenStatus {
        host: String,
        realm: String,
        status: reqwest::StatusCode,
        hint: &'static str,
    },
}

impl AuthError {
    /// Whether the service that issues the credentials could not be reached at all (no
    /// connection, no answer in time, or 502/503/504): nothing was said about access.
    pub fn is_unreachable(&self) -> bool {
        match self {
            AuthError::EcrUnreachable { .. } => true,
            AuthError::Token { source, .. } => source.is_connect() || source.is_timeout(),
            AuthError::TokenStatus { status, .. } => matches!(status.as_u16(), 502..=504),
            _ => false,
        }
    }
}

/// An ECR registry host: `<account>.dkr.ecr[-fips].<region>.amazonaws.com[.cn]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcrHost {
    pub account: String,
    pub region: String,
}

/// What a 401's `WWW-Authenticate` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// The token flow (distribution's token auth spec): get a token from `realm`.
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
    /// Basic, or a scheme we do not know: Basic is all there is to offer.
    Basic,
}

/// Parses a `WWW-Authenticate` value (RFC 9110 §11.6.1, several challenges allowed);
/// None when it does not parse or a Bearer challenge has no realm.
pub fn parse_challenge(www_authenticate: &str) -> Option<Challenge> {
    let challenges = http_auth::parse_challenges(www_authenticate).ok()?;
    let Some(bearer) = challenges
        .iter()
        .find(|c| c.scheme.eq_ignore_ascii_case("bearer"))
    else {
        return Some(Challenge::Basic);
    };
    let param = |name: &str| {
        bearer
            .params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.to_unescaped())
    };
    Some(Challenge::Bearer {
        realm: param("realm")?,
        service: param("service"),
        scope: param("scope"),
    })
}

/// The account and region of an ECR registry host: `<12 digits>.dkr.ecr[-fips].<region>.
/// amazonaws.com[.cn][:443]`, the region of lower-case letters, digits and hyphens.
///
/// Read by hand, not with a regex: a compiled regex is heap that lives as long as the
/// process, and the supervisor first asks this on a short-lived thread (the image check),
/// whose malloc arena that heap then kept for the idle task (~36 KiB, docs/benchmarks.md
/// "Stop 49"); compiling it also cost every launch.
pub fn parse_ecr_host(host: &str) -> Option<EcrHost> {
    let host = host.strip_suffix(":443").unwrap_or(host);
    let (account, rest) = host.split_once('.')?;
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let rest = rest.strip_prefix("dkr.ecr")?;
    let rest = rest
        .strip_prefix("-fips")
        .unwrap_or(rest)
        .strip_prefix('.')?;
    let region = rest
        .strip_suffix(".amazonaws.com.cn")
        .or_else(|| rest.strip_suffix(".amazonaws.com"))?;
    let region_char = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-';
    if region.is_empty() || !region.bytes().all(region_char) {
        return None;
    }
    Some(EcrHost {
        account: account.to_string(),
        region: region.to_string(),
    })
}

/// AWS credentials a caller hands in for ECR's GetAuthorizationToken, and whose they are
/// (for messages: "the execution role arn:aws:iam::…:role/exec").
#[derive(Clone, Debug)]
pub struct AwsIdentity {
    pub credentials: aws_credential_types::Credentials,
    pub name: String,
}

/// Credentials used instead of the host's own: the ECS agent pulls a task's images with
/// the task's execution role (ECR) and its containers' `repositoryCredentials`, never with
/// the instance's Docker config.
/// Ref: docs …/developerguide/task_execution_IAM_role.html; …/private-auth.html.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// For ECR hosts, instead of the host's AWS credential chain.
    pub ecr: Option<AwsIdentity>,
    /// Basic credentials per registry host (`host[:port]`), instead of the Docker config.
    /// Mirrors are other hosts and keep their own credentials.
    pub basic: HashMap<String, Credentials>,
    /// The CA (PEM) a registry host (`host[:port]`) is verified with, instead of the
    /// system's trust store: the only root its TLS is checked against (a registry of the
    /// product's own, whose certificate its CA signed).
    pub roots: HashMap<String, Vec<u8>>,
}

#[derive(Clone)]
struct Token {
    header: HeaderValue,
    expires: Instant,
}

/// The `Authorization` header of Bearer token `value`, if it makes one.
fn bearer_header(value: &str) -> Option<HeaderValue> {
    let mut header = HeaderValue::from_str(&format!("Bearer {value}")).ok()?;
    header.set_sensitive(true);
    Some(header)
}

#[derive(Clone)]
struct EcrCreds {
    creds: Credentials,
    expires_at: SystemTime,
}

/// Caches credentials and tokens for the life of the process (a `serve` daemon keeps
/// them across pulls).
#[derive(Default)]
pub struct Authenticator {
    /// Hosts that answered with a Basic challenge (ECR always does).
    basic_hosts: Mutex<HashMap<String, Credentials>>,
    tokens: Mutex<HashMap<(String, String), Token>>,
    ecr: Mutex<HashMap<String, EcrCreds>>,
    overrides: Overrides,
    /// Registry tokens kept between processes ([`crate::kept_tokens`]), if asked to.
    token_dir: Option<crate::kept_tokens::TokenDir>,
    /// Hosts whose credentials came from `token_dir`, with the identity they were kept as.
    kept: Mutex<HashMap<String, String>>,
}

impl Authenticator {
    /// An authenticator that uses `overrides` before the host's credentials.
    pub fn with_overrides(overrides: Overrides) -> Authenticator {
        Authenticator {
            overrides,
            ..Authenticator::default()
        }
    }

    /// Keeps registry tokens in `dir` for the processes that follow, and takes them from
    /// there ([`crate::kept_tokens`]).
    pub fn keep_tokens_in(&mut self, dir: std::path::PathBuf) {
        self.token_dir = Some(crate::kept_tokens::TokenDir::new(dir));
    }

    /// The header to send with a request to `host` for `scope`, if one is known.
    pub fn header_for(&self, host: &str, scope: &str) -> Option<HeaderValue> {
        if let Some(c) = self.basic_hosts.lock().ok()?.get(host) {
            return Some(c.basic_header());
        }
        let tokens = self.tokens.lock().ok()?;
        let t = tokens.get(&(host.to_string(), scope.to_string()))?;
        (t.expires > Instant::now()).then(|| t.header.clone())
    }

    /// A Bearer token for `scope` on `host` kept by an earlier process
    /// ([`crate::kept_tokens`]), asked as the credentials this one would use: afterwards
    /// `header_for` has it, and the first request goes with it instead of being refused
    /// and sent again after a round trip to the token service. A token the registry
    /// refuses is answered as any 401 is: a new one is asked (and kept).
    pub async fn prime_kept_bearer(&self, host: &str, scope: &str) {
        let Some(dir) = &self.token_dir else { return };
        if parse_ecr_host(host).is_some() {
            return;
        }
        // The file first: only a kept token is worth finding this process's credentials.
        let Some(kept) = dir.get_bearer(host, scope) else {
            return;
        };
        let Ok(creds) = self.credentials(host).await else {
            return;
        };
        if kept.who != crate::kept_tokens::who(creds.as_ref()) {
            return;
        }
        let Some(header) = bearer_header(&kept.token) else {
            return;
        };
        let left = kept
            .expires
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        tracing::debug!(host, scope, "registry token kept from an earlier pull");
        self.tokens.lock().expect("auth lock").insert(
            (host.to_string(), scope.to_string()),
            Token {
                header,
                expires: Instant::now() + left,
            },
        );
    }

    /// Pre-authenticates hosts whose scheme is known without a round trip (ECR: Basic).
    pub async fn prime(&self, host: &str) -> Result<(), AuthError> {
        if parse_ecr_host(host).is_some() && self.header_for(host, "").is_none() {
            let creds = match self.overrides.basic.get(host) {
                Some(c) => c.clone(),
                None => self.ecr_credentials(host).await?,
            };
            self.basic_hosts
                .lock()
                .expect("auth lock")
                .insert(host.to_string(), creds);
        }
        Ok(())
    }

    /// Drops what is cached for `host` (after it rejected it).
    /// True when what was forgotten was an ECR token kept from an earlier process: it is
    /// removed from its file too, and the next [`Self::prime`] asks ECR.
    pub fn forget(&self, host: &str) -> bool {
        self.basic_hosts.lock().expect("auth lock").remove(host);
        self.tokens
            .lock()
            .expect("auth lock")
            .retain(|(h, _), _| h != host);
        let kept = self.kept.lock().expect("auth lock").remove(host);
        match (kept, &self.token_dir) {
            (Some(identity), Some(dir)) => {
                self.ecr.lock().expect("auth lock").remove(host);
                dir.remove(host, &identity);
                true
            }
            _ => false,
        }
    }

    /// Answers a 401's `WWW-Authenticate` challenge; afterwards `header_for` has a header.
    pub async fn answer_challenge(
        &self,
        http: &reqwest::Client,
        host: &str,
        www_authenticate: &str,
        scope: &str,
    ) -> Result<(), AuthError> {
        let bad = || AuthError::Challenge {
            host: host.to_string(),
            header: www_authenticate.to_string(),
        };
        if let Challenge::Bearer {
            realm,
            service,
            scope: scope_param,
        } = parse_challenge(www_authenticate).ok_or_else(bad)?
        {
            let scope_param = scope_param.unwrap_or_else(|| scope.to_string());
            let creds = self.credentials(host).await?;
            let (value, life) = fetch_token(
                http,
                host,
                &realm,
                service.as_deref(),
                &scope_param,
                creds.as_ref(),
            )
            .await?;
            if let Some(dir) = &self.token_dir {
                let who = crate::kept_tokens::who(creds.as_ref());
                dir.put_bearer(host, scope, &who, &value, SystemTime::now() + life);
            }
            let token = Token {
                header: bearer_header(&value).unwrap_or_else(|| HeaderValue::from_static("")),
                expires: Instant::now() + life,
            };
            self.tokens
                .lock()
                .expect("auth lock")
                .insert((host.to_string(), scope.to_string()), token);
            return Ok(());
        }
        // Basic (or an unknown scheme: Basic is all that is left to offer).
        let creds = self
            .credentials(host)
            .await?
            .ok_or_else(|| AuthError::NoCredentials {
                host: host.to_string(),
            })?;
        self.basic_hosts
            .lock()
            .expect("auth lock")
            .insert(host.to_string(), creds);
        Ok(())
    }

    /// Where the credentials used for `host` came from (for "rejected" messages).
    pub fn source_of(&self, host: &str) -> String {
        if let Some(c) = self.basic_hosts.lock().expect("auth lock").get(host) {
            return c.source.clone();
        }
        "the registry's token service".to_string()
    }

    async fn credentials(&self, host: &str) -> Result<Option<Credentials>, AuthError> {
        if let Some(c) = self.overrides.basic.get(host) {
            return Ok(Some(c.clone()));
        }
        if parse_ecr_host(host).is_some() {
            return self.ecr_credentials(host).await.map(Some);
        }
        docker_config_credentials(host)
    }

    /// ECR tokens are cached until `expiresAt`. A token that is already expired when it
    /// arrives (clock skew, or a test endpoint) is used for this pull and fetched anew
    /// only by a later one, never in a loop.
    async fn ecr_credentials(&self, host: &str) -> Result<Credentials, AuthError> {
        if let Some(c) = self.ecr.lock().expect("auth lock").get(host)
            && c.expires_at > SystemTime::now()
        {
            return Ok(c.creds.clone());
        }
        let (kept_as, resolved) = match &self.token_dir {
            Some(_) => self.ecr_identity_key(host).await,
            None => (None, None),
        };
        let kept = match (&self.token_dir, &kept_as) {
            (Some(dir), Some(identity)) => dir.get(host, identity),
            _ => None,
        };
        let (creds, expires_at) = if let Some(kept) = kept {
            tracing::debug!(host, "ECR token kept from an earlier pull");
            if let Some(identity) = kept_as {
                self.kept
                    .lock()
                    .expect("auth lock")
                    .insert(host.to_string(), identity);
            }
            kept
        } else {
            let (creds, expires_at) =
                ecr_token(host, self.overrides.ecr.as_ref(), resolved).await?;
            if let (Some(dir), Some(identity)) = (&self.token_dir, &kept_as) {
                dir.put(host, identity, &creds, expires_at);
            }
            if expires_at <= SystemTime::now() {
                tracing::warn!(
                    host,
                    "ECR authorization token arrived already expired; using it once"
                );
            }
            (creds, expires_at)
        };
        self.ecr.lock().expect("auth lock").insert(
            host.to_string(),
            EcrCreds {
                creds: creds.clone(),
                expires_at,
            },
        );
        Ok(creds)
    }
}

impl Authenticator {
    /// Whom ECR is asked as for `host`, as the key of a kept token: the identity handed in
    /// (an execution role: its name carries the ARN), else the access key id the host's
    /// credential chain resolves to, with those credentials (resolved once: ECR is asked
    /// with them). No key when the chain resolves to nothing: ECR is then asked through
    /// the chain, and says why.
    async fn ecr_identity_key(
        &self,
        host: &str,
    ) -> (Option<String>, Option<aws_credential_types::Credentials>) {
        if let Some(id) = &self.overrides.ecr {
            return (Some(format!("as {}", id.name)), None);
        }
        use aws_credential_types::provider::ProvideCredentials as _;
        let Some(ecr) = parse_ecr_host(host) else {
            return (None, None);
        };
        let cfg = aws_config(&ecr.region).await;
        let Some(chain) = cfg.credentials_provider() else {
            return (None, None);
        };
        match chain.provide_credentials().await {
            Ok(c) => (Some(format!("host {}", c.access_key_id())), Some(c)),
            Err(_) => (None, None),
        }
    }
}

fn docker_config_credentials(host: &str) -> Result<Option<Credentials>, AuthError> {
    use docker_credential::{CredentialRetrievalError as E, DockerCredential};
    let server = if host == "registry-1.docker.io" || host == "docker.io" {
        "https://index.docker.io/v1/"
    } else {
        host
    };
    match docker_credential::get_credential(server) {
        Ok(DockerCredential::UsernamePassword(username, password)) => Ok(Some(Credentials {
            username,
            password,
            source: "the Docker config".to_string(),
        })),
        // An identity token is exchanged at the token service as a refresh token; the
        // distribution token flow also accepts it as the password of user "<token>".
        Ok(DockerCredential::IdentityToken(token)) => Ok(Some(Credentials {
            username: "<token>".to_string(),
            password: token,
            source: "the Docker config (identity token)".to_string(),
        })),
        Err(E::NoCredentialConfigured | E::ConfigNotFound | E::ConfigReadError) => Ok(None),
        Err(e) => Err(AuthError::DockerConfig {
            host: host.to_string(),
            detail: e.to_string(),
        }),
    }
}

/// A Bearer token from the realm, and how long to use it.
async fn fetch_token(
    http: &reqwest::Client,
    host: &str,
    realm: &str,
    service: Option<&str>,
    scope: &str,
    creds: Option<&Credentials>,
) -> Result<(String, Duration), AuthError> {
    #[derive(serde::Deserialize)]
    struct TokenResponse {
        token: Option<String>,
        access_token: Option<String>,
        expires_in: Option<u64>,
    }
    let mut query: Vec<(&str, &str)> = vec![("scope", scope)];
    if let Some(s) = service {
        query.push(("service", s));
    }
    let mut req = http.get(realm).query(&query);
    if let Some(c) = creds {
        req = req.header(reqwest::header::AUTHORIZATION, c.basic_header());
    }
    let terr = |source| AuthError::Token {
        host: host.to_string(),
        realm: realm.to_string(),
        source,
    };
    let resp = req.send().await.map_err(terr)?;
    let status = resp.status();
    if !status.is_success() {
        return Err(AuthError::TokenStatus {
            host: host.to_string(),
            realm: realm.to_string(),
            status,
            hint: if status == reqwest::StatusCode::UNAUTHORIZED {
                ": check the credentials in the Docker config"
            } else {
                ""
            },
        });
    }
    let body: TokenResponse = resp.json().await.map_err(terr)?;
    let value = body.token.or(body.access_token).unwrap_or_default();
    // Ref: distribution token spec: expires_in defaults to 60 s.
    let ttl = Duration::from_secs(body.expires_in.unwrap_or(60).max(10));
    // Renew a little early so a token never expires mid-request.
    Ok((value, ttl.saturating_sub(Duration::from_secs(5))))
}

/// The AWS SDK configuration for `region` with the whole credential chain, over the
/// HTTP stack reqwest already links (hyper 1, rustls 0.23 with ring, native + webpki
/// roots): the SDK crates are built without their own TLS features, which would link a
/// second stack (hyper 0.14 + rustls 0.21, or aws-lc-rs) into the static binaries. Every
/// AWS client in minifargate should be built from this.
pub async fn aws_config(region: &str) -> aws_config::SdkConfig {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_string()))
        .http_client(http)
        .load()
        .await
}

/// Calls ECR GetAuthorizationToken with `identity`'s credentials, else the host's
/// (`resolved` from its chain already, else the whole AWS credential chain). Endpoint
/// overrides (`AWS_ENDPOINT_URL_ECR`, `AWS_ENDPOINT_URL`) are honoured by aws-config.
async fn ecr_token(
    host: &str,
    identity: Option<&AwsIdentity>,
    resolved: Option<aws_credential_types::Credentials>,
) -> Result<(Credentials, SystemTime), AuthError> {
    let ecr = parse_ecr_host(host).expect("caller checked the host");
    let cfg = aws_config(&ecr.region).await;
    let mut conf = aws_sdk_ecr::config::Builder::from(&cfg);
    if let Some(id) = identity {
        conf = conf.credentials_provider(id.credentials.clone());
    } else if let Some(c) = resolved {
        conf = conf.credentials_provider(c);
    }
    let client = aws_sdk_ecr::Client::from_conf(conf.build());
    let out = client.get_authorization_token().send().await.map_err(|e| {
        use aws_sdk_ecr::error::SdkError;
        let unreachable = matches!(e, SdkError::DispatchFailure(_) | SdkError::TimeoutError(_));
        let detail = sdk_detail(e);
        if unreachable {
            return AuthError::EcrUnreachable {
                host: host.to_string(),
                region: ecr.region.clone(),
                detail,
            };
        }
        match identity {
            Some(id) => AuthError::EcrAs {
                host: host.to_string(),
                identity: id.name.clone(),
                detail,
            },
            None => AuthError::Ecr {
                host: host.to_string(),
                region: ecr.region.clone(),
                detail,
            },
        }
    })?;
    let bad = |detail: &str| AuthError::EcrToken {
        host: host.to_string(),
        detail: detail.to_string(),
    };
    let data = out
        .authorization_data()
        .first()
        .ok_or_else(|| bad("no authorizationData in the response"))?;
    let token = data
        .authorization_token()
        .ok_or_else(|| bad("no authorizationToken"))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .map_err(|_| bad("authorizationToken is not base64"))?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad("authorizationToken is not UTF-8"))?;
    let (username, password) = decoded
        .split_once(':')
        .ok_or_else(|| bad("authorizationToken is not user:password"))?;
    let expires_at = data
        .expires_at()
        .and_then(|t| SystemTime::try_from(*t).ok())
        .unwrap_or_else(|| SystemTime::now() + Duration::from_secs(12 * 3600));
    Ok((
        Credentials {
            username: username.to_string(),
            password: password.to_string(),
            source: "ECR GetAuthorizationToken".to_string(),
        },
        expires_at,
    ))
}

/// A short account of a failed AWS call: the service's error code and message, else the
/// HTTP status and the start of the body (an error body the SDK cannot parse), else the
/// SDK's whole error chain.
fn sdk_detail(
    e: aws_sdk_ecr::error::SdkError<
        aws_sdk_ecr::operation::get_authorization_token::GetAuthorizationTokenError,
        aws_sdk_ecr::config::http::HttpResponse,
    >,
) -> String {
    use aws_sdk_ecr::error::SdkError;
    if let SdkError::ServiceError(se) = &e {
        let meta = se.err().meta();
        if let Some(code) = meta.code() {
            return format!("{code}: {}", meta.message().unwrap_or_default());
        }
        let raw = se.raw();
        let body = raw
            .body()
            .bytes()
            .map(|b| String::from_utf8_lossy(&b[..b.len().min(400)]).into_owned())
            .unwrap_or_default();
        return format!("HTTP {}: {}", raw.status().as_u16(), body.trim());
    }
    aws_sdk_ecr::error::DisplayErrorContext(e).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_ecr_hosts() {
        assert_eq!(
            parse_ecr_host("123456789012.dkr.ecr.us-east-1.amazonaws.com"),
            Some(EcrHost {
                account: "123456789012".into(),
                region: "us-east-1".into()
            })
        );
        assert!(parse_ecr_host("123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com").is_some());
        assert_eq!(
            parse_ecr_host("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn")
                .unwrap()
                .region,
            "cn-north-1"
        );
        assert!(parse_ecr_host("public.ecr.aws").is_none());
        assert!(parse_ecr_host("12345.dkr.ecr.us-east-1.amazonaws.com").is_none());
        assert!(parse_ecr_host("123456789012.dkr.ecr.us-east-1.amazonaws.com.evil.io").is_none());
        // The port ECR answers on, and no other.
        assert_eq!(
            parse_ecr_host("123456789012.dkr.ecr.eu-west-3.amazonaws.com.cn:443")
                .unwrap()
                .region,
            "eu-west-3"
        );
        for not_ecr in [
            "123456789012.dkr.ecr.us-east-1.amazonaws.com:444",
            "123456789012.dkr.ecr..amazonaws.com",
            "123456789012.dkr.ecr.US-EAST-1.amazonaws.com",
            "123456789012.dkr.ecr.us.east.amazonaws.com",
            "123456789012.dkr.ecrfips.us-east-1.amazonaws.com",
            "123456789012.dkr.ecr-fips-us-east-1.amazonaws.com",
            "1234567890123.dkr.ecr.us-east-1.amazonaws.com",
            "12345678901a.dkr.ecr.us-east-1.amazonaws.com",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com.cn.cn",
            "x123456789012.dkr.ecr.us-east-1.amazonaws.com",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com:443:443",
        ] {
            assert!(parse_ecr_host(not_ecr).is_none(), "{not_ecr}");
        }
    }

    #[test]
    fn basic_challenge_without_credentials_says_what_to_do() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let a = Authenticator::default();
        let http = reqwest::Client::new();
        let err = rt
            .block_on(a.answer_challenge(&http, "example.invalid:5000", "Basic realm=\"r\"", "s"))
            .unwrap_err();
        assert!(err.to_string().contains("no credentials found"), "{err}");
    }

    #[test]
    fn challenges_are_parsed_bearer_first() {
        assert_eq!(
            parse_challenge(
                r#"Basic realm="b", Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("reg".into()),
                scope: Some("repository:a/b:pull".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="r""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Negotiate"), Some(Challenge::Basic));
        assert_eq!(parse_challenge(r#"Bearer service="no realm""#), None);
        assert_eq!(parse_challenge("Bearer realm=\"unterminated"), None);
    }
}
