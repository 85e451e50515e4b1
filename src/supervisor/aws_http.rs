//! Signed AWS requests without a service SDK, for the few calls a task's supervisor makes to
//! S3 (environment files, the FireLens S3 config: GetBucketLocation, GetObject),
//! CloudWatch Logs (awslogs forwarding: CreateLogGroup, CreateLogStream, PutLogEvents),
//! SSM (GetParameters) and Secrets Manager (GetSecretValue) for `secrets` and
//! `repositoryCredentials`. Each SDK crate costs a few hundred KB of the static binary's
//! size budget (docs/packaging.md "Sizes"); these calls need only SigV4, which the SDK's
//! own signer (`aws-sigv4`) computes, sent with reqwest over the TLS stack already linked.
//!
//! Credentials and the global endpoint come from the identity's `aws_config::SdkConfig`
//! (as before); a service's own endpoint variable (`AWS_ENDPOINT_URL_S3`,
//! `AWS_ENDPOINT_URL_CLOUDWATCH_LOGS`, `AWS_ENDPOINT_URL_SSM`,
//! `AWS_ENDPOINT_URL_SECRETS_MANAGER`) is honoured as the SDK does.
//! Ref: https://docs.aws.amazon.com/sdkref/latest/guide/feature-ss-endpoints.html (the
//! variable is `AWS_ENDPOINT_URL_` + the service id upper-cased, spaces as `_`;
//! awslabs/aws-sdk-rust sdk/cloudwatchlogs/src/config.rs loads the id "CloudWatch Logs").

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use std::time::{Duration, SystemTime};

/// Attempts for a transient failure (connection, 5xx, throttling), as the SDK's standard
/// retry mode; the first backoff, doubling.
/// Ref: https://docs.aws.amazon.com/sdkref/latest/guide/feature-retry-behavior.html
const ATTEMPTS: u32 = 3;
const BACKOFF: Duration = Duration::from_millis(500);

/// Credentials are fetched again this long before they expire.
const REFRESH_BEFORE: Duration = Duration::from_secs(300);

/// The services called here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    S3,
    Logs,
    Ssm,
    SecretsManager,
}

impl Service {
    /// The SigV4 signing name.
    fn signing_name(self) -> &'static str {
        match self {
            Service::S3 => "s3",
            Service::Logs => "logs",
            Service::Ssm => "ssm",
            Service::SecretsManager => "secretsmanager",
        }
    }

    /// The service-specific endpoint variable (see the module header).
    fn endpoint_env(self) -> &'static str {
        match self {
            Service::S3 => "AWS_ENDPOINT_URL_S3",
            Service::Logs => "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS",
            Service::Ssm => "AWS_ENDPOINT_URL_SSM",
            Service::SecretsManager => "AWS_ENDPOINT_URL_SECRETS_MANAGER",
        }
    }
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    #[error("no AWS credentials: {0}")]
    Credentials(String),
    #[error("failed to sign the request: {0}")]
    Sign(String),
    #[error("request failed: {0}")]
    Transport(String),
    /// The service's answer: its error code (`NoSuchKey`, `ResourceNotFoundException` …).
    #[error("{code}: {message} (HTTP {status})")]
    Service {
        status: u16,
        code: String,
        message: String,
    },
}

impl AwsError {
    /// The service's error code, if the service answered.
    pub fn code(&self) -> Option<&str> {
        match self {
            AwsError::Service { code, .. } => Some(code),
            _ => None,
        }
    }

    fn transient(&self) -> bool {
        match self {
            AwsError::Transport(_) => true,
            AwsError::Service { status, code, .. } => {
                matches!(status, 429 | 500 | 502 | 503 | 504)
                    || matches!(
                        code.as_str(),
                        "Throttling"
                            | "ThrottlingException"
                            | "ThrottledException"
                            | "RequestThrottledException"
                            | "SlowDown"
                            | "RequestTimeout"
                    )
            }
            _ => false,
        }
    }
}

/// A client for one service in one region as one identity.
pub struct Client {
    http: reqwest::Client,
    provider: Option<SharedCredentialsProvider>,
    creds: tokio::sync::Mutex<Option<Credentials>>,
    service: Service,
    region: String,
    /// A configured endpoint (moto, LocalStack, MinIO), without a trailing `/`.
    endpoint: Option<String>,
}

impl Client {
    /// A client acting as `cfg`'s credentials (fetched on first use).
    pub fn new(cfg: &aws_config::SdkConfig, service: Service, region: &str) -> Client {
        let endpoint = std::env::var(service.endpoint_env())
            .ok()
            .filter(|v| !v.trim().is_empty())
            .or_else(|| cfg.endpoint_url().map(str::to_string))
            .map(|e| e.trim().trim_end_matches('/').to_string());
        // As the SDK's client: no proxy from the environment, no redirects followed (a
        // signed request must not go elsewhere), a bounded connect and read.
        let http = reqwest::Client::builder()
            .user_agent(concat!("minifargate/", env!("CARGO_PKG_VERSION")))
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            .build()
            .unwrap_or_default();
        Client {
            http,
            provider: cfg.credentials_provider(),
            creds: tokio::sync::Mutex::new(None),
            service,
            region: region.to_string(),
            endpoint,
        }
    }

    /// The configured endpoint, if any.
    #[cfg(test)]
    fn custom_endpoint(&self) -> Option<&str> {
        self.endpoint.as_deref()
    }

    /// The endpoint's host suffix of the region's partition.
    fn dns_suffix(&self) -> &'static str {
        if self.region.starts_with("cn-") {
            "amazonaws.com.cn"
        } else {
            "amazonaws.com"
        }
    }

    /// The URL of `path` (starting with `/`) at the service's endpoint.
    pub fn url(&self, path: &str) -> String {
        match &self.endpoint {
            Some(e) => format!("{e}{path}"),
            None => format!(
                "https://{}.{}.{}{path}",
                self.service.signing_name(),
                self.region,
                self.dns_suffix()
            ),
        }
    }

    /// The URL of an S3 bucket (`key` None) or object, with `query`: path-style for a
    /// configured endpoint, else virtual-hosted when the bucket's name allows it in a TLS
    /// host name (no dots), as the SDK chooses.
    /// Ref: https://docs.aws.amazon.com/AmazonS3/latest/userguide/VirtualHosting.html
    pub fn s3_url(&self, bucket: &str, key: Option<&str>, query: Option<&str>) -> String {
        let key = key
            .map(|k| format!("/{}", encode_key(k)))
            .unwrap_or_default();
        let query = query.map(|q| format!("?{q}")).unwrap_or_default();
        let virtual_ok = bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && (3..=63).contains(&bucket.len());
        match &self.endpoint {
            None if virtual_ok => format!(
                "https://{bucket}.s3.{}.{}{}{query}",
                self.region,
                self.dns_suffix(),
                if key.is_empty() { "/" } else { &key }
            ),
            _ => self.url(&format!("/{}{key}{query}", encode_key(bucket))),
        }
    }

    async fn credentials(&self) -> Result<Credentials, AwsError> {
        let mut cached = self.creds.lock().await;
        if let Some(c) = cached.as_ref()
            && c.expiry()
                .is_none_or(|e| e > SystemTime::now() + REFRESH_BEFORE)
        {
            return Ok(c.clone());
        }
        let provider = self
            .provider
            .as_ref()
            .ok_or_else(|| AwsError::Credentials("no credentials provider".into()))?;
        let c = provider
            .provide_credentials()
            .await
            .map_err(|e| AwsError::Credentials(e.to_string()))?;
        *cached = Some(c.clone());
        Ok(c)
    }

    /// Sends a signed request, retrying transient failures; a non-2xx answer is the
    /// service's error.
    pub async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<reqwest::Response, AwsError> {
        let mut delay = BACKOFF;
        let mut attempt = 1;
        loop {
            match self.send_once(&method, url, headers, &body).await {
                Err(e) if e.transient() && attempt < ATTEMPTS => {
                    tracing::debug!(attempt, error = %e, url, "AWS request failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn send_once(
        &self,
        method: &reqwest::Method,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<reqwest::Response, AwsError> {
        let creds = self.credentials().await?;
        let identity = creds.into();
        let mut settings = SigningSettings::default();
        if self.service == Service::S3 {
            // Ref: https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html
            // (x-amz-content-sha256 is required and signed; the path is encoded once and
            // not normalised).
            settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
            settings.percent_encoding_mode = PercentEncodingMode::Single;
            settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        }
        let params: aws_sigv4::http_request::SigningParams = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(self.service.signing_name())
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| AwsError::Sign(e.to_string()))?
            .into();
        let signable = SignableRequest::new(
            method.as_str(),
            url,
            headers.iter().copied(),
            SignableBody::Bytes(body),
        )
        .map_err(|e| AwsError::Sign(e.to_string()))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| AwsError::Sign(e.to_string()))?
            .into_parts();
        let mut req = self.http.request(method.clone(), url);
        for (k, v) in headers.iter().copied().chain(instructions.headers()) {
            req = req.header(k, v);
        }
        let resp = req
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| AwsError::Transport(error_chain(&e)))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        let (code, message) = match self.service {
            Service::S3 => s3_error(&text),
            _ => json_error(&text),
        }
        .unwrap_or_else(|| {
            let reason = reqwest::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("error");
            (reason.replace(' ', ""), text.trim().to_string())
        });
        Err(AwsError::Service {
            status,
            code,
            message,
        })
    }

    /// An AWS JSON 1.1 call (`X-Amz-Target: <prefix>.<operation>`) at the endpoint's root.
    pub async fn json(
        &self,
        target: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, AwsError> {
        let resp = self
            .send(
                reqwest::Method::POST,
                &self.url("/"),
                &[
                    ("content-type", "application/x-amz-json-1.1"),
                    ("x-amz-target", target),
                ],
                body.to_string().into_bytes(),
            )
            .await?;
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| AwsError::Transport(error_chain(&e)))?;
        if bytes.is_empty() {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| AwsError::Transport(format!("unreadable answer: {e}")))
    }
}

/// An error with its sources (reqwest's own text hides the cause: "error sending request").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// Percent-encodes an S3 key for the URL path, `/` kept (SigV4's URI encoding: everything
/// but the unreserved characters).
/// Ref: https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html
fn encode_key(key: &str) -> String {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
    const SET: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~')
        .remove(b'/');
    utf8_percent_encode(key, SET).to_string()
}

/// S3's REST error body: `<Error><Code>…</Code><Message>…</Message></Error>`.
/// Ref: https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html
fn s3_error(xml: &str) -> Option<(String, String)> {
    use aws_smithy_xml::decode::{Document, try_data};
    let mut doc = Document::new(xml);
    let mut root = doc.root_element().ok()?;
    if !root.start_el().matches("Error") {
        return None;
    }
    let (mut code, mut message) = (None, String::new());
    while let Some(mut tag) = root.next_tag() {
        if tag.start_el().matches("Code") {
            code = Some(try_data(&mut tag).ok()?.into_owned());
        } else if tag.start_el().matches("Message") {
            message = try_data(&mut tag).ok()?.into_owned();
        }
    }
    Some((code?, message))
}

/// A GetBucketLocation answer that names no region.
#[derive(Debug, thiserror::Error)]
pub enum LocationError {
    /// Not XML, or the element's text cannot be read.
    #[error(transparent)]
    Xml(#[from] aws_smithy_xml::decode::XmlDecodeError),
    #[error("unexpected GetBucketLocation answer <{element}>")]
    Unexpected { element: String },
}

/// GetBucketLocation's answer: `<LocationConstraint>region</LocationConstraint>`, empty
/// for us-east-1.
/// Ref: https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetBucketLocation.html
pub fn location_constraint(xml: &str) -> Result<String, LocationError> {
    use aws_smithy_xml::decode::{Document, try_data};
    let mut doc = Document::new(xml);
    let mut root = doc.root_element()?;
    if !root.start_el().matches("LocationConstraint") {
        return Err(LocationError::Unexpected {
            element: root.start_el().local().to_string(),
        });
    }
    Ok(try_data(&mut root)?.trim().to_string())
}

/// An AWS JSON error body: `{"__type": "…#Code", "message": "…"}`.
/// Ref: https://smithy.io/2.0/aws/protocols/aws-json-1_1-protocol.html (the `__type`
/// may carry a namespace before `#` and data after `:`).
fn json_error(text: &str) -> Option<(String, String)> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let t = v.get("__type")?.as_str()?;
    let t = t.rsplit_once('#').map_or(t, |(_, c)| c);
    let code = t.split(':').next().unwrap_or(t).to_string();
    let message = ["message", "Message"]
        .iter()
        .find_map(|k| v.get(*k)?.as_str())
        .unwrap_or_default()
        .to_string();
    Some((code, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_errors_are_read_by_their_protocol() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message><Key>a&amp;b</Key></Error>"#;
        assert_eq!(
            s3_error(xml),
            Some((
                "NoSuchKey".into(),
                "The specified key does not exist.".into()
            ))
        );
        assert_eq!(s3_error("not xml"), None);
        assert_eq!(s3_error(""), None);
        assert_eq!(
            json_error(
                r#"{"__type":"com.amazonaws.logs#ResourceAlreadyExistsException","message":"The specified log group already exists"}"#
            ),
            Some((
                "ResourceAlreadyExistsException".into(),
                "The specified log group already exists".into()
            ))
        );
        assert_eq!(
            json_error(r#"{"__type":"ResourceNotFoundException:http://x","Message":"gone"}"#),
            Some(("ResourceNotFoundException".into(), "gone".into()))
        );
        assert_eq!(json_error("<html>"), None);
    }

    #[test]
    fn bucket_locations() {
        let ns = r#"xmlns="http://s3.amazonaws.com/doc/2006-03-01/""#;
        assert_eq!(
            location_constraint(&format!(
                "<?xml version=\"1.0\"?>\n<LocationConstraint {ns}>eu-west-1</LocationConstraint>"
            ))
            .unwrap(),
            "eu-west-1"
        );
        assert_eq!(
            location_constraint(&format!("<LocationConstraint {ns}/>")).unwrap(),
            ""
        );
        assert_eq!(
            location_constraint(&format!("<LocationConstraint {ns}></LocationConstraint>"))
                .unwrap(),
            ""
        );
        assert_eq!(
            location_constraint("<Other/>").unwrap_err().to_string(),
            "unexpected GetBucketLocation answer <Other>"
        );
    }

    #[test]
    fn urls_by_endpoint_and_bucket_name() {
        let cfg = aws_config::SdkConfig::builder().build();
        let c = Client::new(&cfg, Service::S3, "eu-west-1");
        if c.custom_endpoint().is_none() {
            assert_eq!(
                c.s3_url("envs", Some("app/a b+.env"), None),
                "https://envs.s3.eu-west-1.amazonaws.com/app/a%20b%2B.env"
            );
            assert_eq!(
                c.s3_url("my.bucket", None, Some("location")),
                "https://s3.eu-west-1.amazonaws.com/my.bucket?location"
            );
        }
        let cfg = aws_config::SdkConfig::builder()
            .endpoint_url("http://127.0.0.1:5000/")
            .build();
        let c = Client::new(&cfg, Service::S3, "us-east-1");
        if std::env::var_os("AWS_ENDPOINT_URL_S3").is_none() {
            assert_eq!(
                c.s3_url("envs", Some("k.env"), None),
                "http://127.0.0.1:5000/envs/k.env"
            );
            assert_eq!(
                c.s3_url("envs", None, Some("location")),
                "http://127.0.0.1:5000/envs?location"
            );
        }
        let logs = Client::new(
            &aws_config::SdkConfig::builder().build(),
            Service::Logs,
            "cn-north-1",
        );
        if logs.custom_endpoint().is_none() {
            assert_eq!(logs.url("/"), "https://logs.cn-north-1.amazonaws.com.cn/");
        }
    }
}
