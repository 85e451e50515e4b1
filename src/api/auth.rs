//! SigV4 verification for `serve`: every request's signature (the `Authorization` header or
//! the presigned query form) is checked against the access keys `serve` was given, with
//! the errors AWS's JSON services answer. The expected signature is computed by the AWS
//! SDK's own signer (`aws-sigv4`) over the request as received, never by hand here.
//!
//! Ref: SigV4, https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{
    SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use axum::http::request::Parts;
use chrono::{DateTime, NaiveDateTime, Utc};

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// AWS refuses a request signed more than 5 minutes before or after its own clock.
/// Ref: "Signature expired: 20160610T180547Z is now earlier than 20160610T180612Z
/// (20160610T181112Z - 5 min.)" (InvalidSignatureException, HTTP 400), e.g.
/// https://github.com/aws/aws-sdk-js/issues/254, https://github.com/hassy/artillery-dino/issues/2;
/// "Signature not yet current: … is still later than … (… + 5 min.)",
/// https://github.com/serverless/enterprise/issues/11.
pub const MAX_SKEW: Duration = Duration::from_secs(5 * 60);
/// A presigned request is valid for at most 7 days (X-Amz-Expires ≤ 604800).
/// Ref: https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html
const MAX_EXPIRES: u64 = 604_800;

/// The access keys `serve` accepts: access key id → secret access key.
#[derive(Clone, Default)]
pub struct Keys {
    keys: HashMap<String, String>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secrets.
        f.debug_struct("Keys")
            .field("ids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Failed to load the access keys.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("failed to read the credentials file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the credentials file {path} can be read by other users (mode {mode:04o}): it holds secret keys; run `chmod 600 {path}`"
    )]
    Readable { path: PathBuf, mode: u32 },
    #[error(
        "{path} line {line}: expected `ACCESS_KEY_ID SECRET_ACCESS_KEY` (two words; `#` starts a comment)"
    )]
    Syntax { path: PathBuf, line: usize },
    #[error("{path} line {line}: access key id {id:?} is listed twice")]
    Duplicate {
        path: PathBuf,
        line: usize,
        id: String,
    },
    #[error(
        "MINIFARGATE_API_ACCESS_KEY_ID and MINIFARGATE_API_SECRET_ACCESS_KEY must be set together"
    )]
    HalfEnv,
}

impl Keys {
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// The pair, when there is exactly one.
    pub fn only(&self) -> Option<(&str, &str)> {
        match self.keys.len() {
            1 => self
                .keys
                .iter()
                .next()
                .map(|(i, s)| (i.as_str(), s.as_str())),
            _ => None,
        }
    }

    pub fn insert(&mut self, id: impl Into<String>, secret: impl Into<String>) {
        self.keys.insert(id.into(), secret.into());
    }

    /// Whether `id` and `secret` are one of the pairs, comparing secrets in constant time:
    /// the web console's sign-in (HTTP Basic), since a browser cannot SigV4-sign.
    pub fn accepts(&self, id: &str, secret: &str) -> bool {
        use subtle::ConstantTimeEq;
        self.keys
            .get(id)
            .is_some_and(|s| bool::from(s.as_bytes().ct_eq(secret.as_bytes())))
    }

    /// The keys of a credentials file: one `ACCESS_KEY_ID SECRET_ACCESS_KEY` pair a line,
    /// blank lines and `#` comments ignored. The file must not be readable by group or
    /// others (as ssh insists for private keys).
    pub fn load_file(path: &Path) -> Result<Keys, KeysError> {
        use std::os::unix::fs::MetadataExt;
        let read = |source| KeysError::Read {
            path: path.to_path_buf(),
            source,
        };
        let mode = std::fs::metadata(path).map_err(read)?.mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(KeysError::Readable {
                path: path.to_path_buf(),
                mode,
            });
        }
        let text = std::fs::read_to_string(path).map_err(read)?;
        let mut keys = Keys::default();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default();
            let words: Vec<&str> = line.split_whitespace().collect();
            match words[..] {
                [] => {}
                [id, secret] => {
                    if keys.keys.insert(id.into(), secret.into()).is_some() {
                        return Err(KeysError::Duplicate {
                            path: path.to_path_buf(),
                            line: i + 1,
                            id: id.into(),
                        });
                    }
                }
                _ => {
                    return Err(KeysError::Syntax {
                        path: path.to_path_buf(),
                        line: i + 1,
                    });
                }
            }
        }
        Ok(keys)
    }

    /// The key pair of `MINIFARGATE_API_ACCESS_KEY_ID`/`MINIFARGATE_API_SECRET_ACCESS_KEY`,
    /// if set.
    pub fn from_env_pair(id: Option<String>, secret: Option<String>) -> Result<Keys, KeysError> {
        let mut keys = Keys::default();
        match (id, secret) {
            (Some(id), Some(secret)) if !id.is_empty() && !secret.is_empty() => {
                keys.insert(id, secret)
            }
            (None, None) => {}
            _ => return Err(KeysError::HalfEnv),
        }
        Ok(keys)
    }

    pub fn extend(&mut self, other: Keys) {
        self.keys.extend(other.keys);
    }
}

/// Why a request is refused: AWS's error names (JSON services, HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header and no `X-Amz-Signature` query parameter.
    #[error("Missing Authentication Token")]
    Missing,
    /// A signature that is not SigV4's shape.
    #[error("{0}")]
    Incomplete(String),
    /// An access key id this server does not know.
    #[error("The security token included in the request is invalid.")]
    UnknownKey,
    #[error(
        "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
    )]
    Mismatch,
    /// Signed too long ago (or a presigned request past its expiry).
    #[error("Signature expired: {signed} is now earlier than {limit} ({now} - {window})")]
    Expired {
        signed: String,
        limit: String,
        now: String,
        window: String,
    },
    /// The client declared `X-Amz-Content-Sha256: UNSIGNED-PAYLOAD`: the JSON services sign
    /// the body, so a signature that leaves it out could be replayed with any other body.
    #[error(
        "The request signature we calculated does not match the signature you provided: this service signs the request body, and X-Amz-Content-Sha256 UNSIGNED-PAYLOAD leaves it out (sign the body's SHA-256, as the AWS CLI and SDKs do)."
    )]
    UnsignedPayload,
    /// Signed too far in the future.
    #[error("Signature not yet current: {signed} is still later than {limit} ({now} + 5 min.)")]
    NotYetCurrent {
        signed: String,
        limit: String,
        now: String,
    },
}

impl AuthError {
    /// The `__type` AWS answers with.
    // Ref: MissingAuthenticationTokenException "Missing Authentication Token"
    // (https://github.com/aws-samples/amazon-comprehend-medical-fhir-integration/issues/9);
    // UnrecognizedClientException "The security token included in the request is invalid."
    // HTTP 400 (https://github.com/aws/aws-sdk-php/issues/1114);
    // InvalidSignatureException "The request signature we calculated does not match …"
    // (https://github.com/grafana/k6-jslib-aws/issues/109);
    // IncompleteSignatureException (AWS common errors: "The request signature does not
    // conform to AWS standards", https://docs.aws.amazon.com/AmazonECS/latest/APIReference/CommonErrors.html).
    pub fn name(&self) -> &'static str {
        match self {
            AuthError::Missing => "MissingAuthenticationTokenException",
            AuthError::Incomplete(_) => "IncompleteSignatureException",
            AuthError::UnknownKey => "UnrecognizedClientException",
            AuthError::Mismatch
            | AuthError::UnsignedPayload
            | AuthError::Expired { .. }
            | AuthError::NotYetCurrent { .. } => "InvalidSignatureException",
        }
    }
}

/// The signature a request carries, from either form.
struct Claim<'a> {
    access_key: String,
    date: &'a str,
    region: String,
    service: String,
    signed_headers: Vec<String>,
    signature: String,
    /// Presigned: X-Amz-Expires in seconds, and the query without the signing parameters.
    presigned: Option<(u64, String)>,
}

fn incomplete(msg: impl Into<String>) -> AuthError {
    AuthError::Incomplete(msg.into())
}

/// `Credential=AKID/20240101/us-east-1/ecs/aws4_request`'s value, split.
fn credential(value: &str) -> Result<(String, String, String, String), AuthError> {
    let parts: Vec<&str> = value.split('/').collect();
    match parts[..] {
        [key, date, region, service, "aws4_request"] if !key.is_empty() => {
            Ok((key.into(), date.into(), region.into(), service.into()))
        }
        _ => Err(incomplete(format!(
            "Credential should be scoped to a valid region and service, as ACCESS_KEY_ID/YYYYMMDD/REGION/SERVICE/aws4_request, not '{value}'."
        ))),
    }
}

fn header_claim<'a>(auth: &str, parts: &'a Parts) -> Result<Claim<'a>, AuthError> {
    let Some(rest) = auth.strip_prefix(ALGORITHM) else {
        return Err(incomplete(format!(
            "Authorization header must use the {ALGORITHM} algorithm (SigV4)"
        )));
    };
    let mut cred = None;
    let mut signed = None;
    let mut sig = None;
    for item in rest.split(',') {
        let Some((k, v)) = item.trim().split_once('=') else {
            continue;
        };
        match k {
            "Credential" => cred = Some(v),
            "SignedHeaders" => signed = Some(v),
            "Signature" => sig = Some(v),
            _ => {}
        }
    }
    let mut missing = Vec::new();
    for (name, v) in [
        ("Credential", cred),
        ("Signature", sig),
        ("SignedHeaders", signed),
    ] {
        if v.is_none() {
            missing.push(format!("Authorization header requires '{name}' parameter."));
        }
    }
    let date = parts
        .headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok());
    if date.is_none() {
        missing.push("Authorization header requires existence of a 'X-Amz-Date' header.".into());
    }
    if !missing.is_empty() {
        return Err(incomplete(format!(
            "{} Authorization={auth}",
            missing.join(" ")
        )));
    }
    let (access_key, _, region, service) = credential(cred.unwrap_or_default())?;
    Ok(Claim {
        access_key,
        date: date.unwrap_or_default(),
        region,
        service,
        signed_headers: signed
            .unwrap_or_default()
            .split(';')
            .map(str::to_ascii_lowercase)
            .collect(),
        signature: sig.unwrap_or_default().to_string(),
        presigned: None,
    })
}

/// The query parameters the signer adds itself in the presigned form (so they are taken
/// out of the query it is given), and the signature.
const QUERY_AUTH: [&str; 6] = [
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
];

fn query_claim<'a>(query: &'a str) -> Result<Claim<'a>, AuthError> {
    let mut found: HashMap<&str, String> = HashMap::new();
    let mut rest = Vec::new();
    let mut date = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = form_urlencoded::parse(pair.as_bytes())
            .next()
            .unwrap_or_default();
        if let Some(name) = QUERY_AUTH.iter().find(|n| **n == k) {
            if *name == "X-Amz-Date" {
                // Borrowed from the query (a date is plain ASCII, never encoded).
                date = pair.split_once('=').map(|(_, d)| d);
            }
            found.insert(name, v.into_owned());
        } else {
            rest.push(pair);
        }
    }
    let mut missing = Vec::new();
    for name in QUERY_AUTH {
        if !found.contains_key(name) {
            missing.push(format!(
                "AWS query-string parameters must include '{name}'."
            ));
        }
    }
    if !missing.is_empty() {
        return Err(incomplete(format!(
            "{} Re-examine the query-string parameters.",
            missing.join(" ")
        )));
    }
    if found["X-Amz-Algorithm"] != ALGORITHM {
        return Err(incomplete(format!(
            "X-Amz-Algorithm must be {ALGORITHM} (SigV4)"
        )));
    }
    let expires: u64 = found["X-Amz-Expires"]
        .parse()
        .ok()
        .filter(|e| (1..=MAX_EXPIRES).contains(e))
        .ok_or_else(|| {
            incomplete(format!(
                "X-Amz-Expires must be a number of seconds from 1 to {MAX_EXPIRES}, not '{}'",
                found["X-Amz-Expires"]
            ))
        })?;
    let (access_key, _, region, service) = credential(&found["X-Amz-Credential"])?;
    Ok(Claim {
        access_key,
        date: date.unwrap_or_default(),
        region,
        service,
        signed_headers: found["X-Amz-SignedHeaders"]
            .split(';')
            .map(str::to_ascii_lowercase)
            .collect(),
        signature: found["X-Amz-Signature"].clone(),
        presigned: Some((expires, rest.join("&"))),
    })
}

fn amz_date(t: DateTime<Utc>) -> String {
    t.format("%Y%m%dT%H%M%SZ").to_string()
}

/// Checks request `parts` + `body` against `keys` at time `now`; returns the access key
/// id that signed it.
pub fn verify(
    keys: &Keys,
    parts: &Parts,
    body: &[u8],
    now: SystemTime,
) -> Result<String, AuthError> {
    let auth = parts.headers.get(axum::http::header::AUTHORIZATION);
    let query = parts.uri.query().unwrap_or_default();
    let claim = match auth {
        Some(v) => header_claim(
            v.to_str()
                .map_err(|_| incomplete("the Authorization header is not ASCII"))?,
            parts,
        )?,
        None if query.contains("X-Amz-Signature=") || query.contains("X-Amz-Credential=") => {
            query_claim(query)?
        }
        None => return Err(AuthError::Missing),
    };
    let Some(secret) = keys.keys.get(&claim.access_key) else {
        return Err(AuthError::UnknownKey);
    };
    if !claim.signed_headers.iter().any(|h| h == "host") {
        return Err(incomplete(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
        ));
    }
    // The operation is named by X-Amz-Target (AWS JSON 1.1): unsigned, a captured signature
    // would carry any other operation. The AWS CLI and SDKs sign it (botocore signs every
    // header but a few transport ones); the words follow AWS's own for Host, above.
    if parts.headers.contains_key("x-amz-target")
        && !claim.signed_headers.iter().any(|h| h == "x-amz-target")
    {
        return Err(incomplete(
            "'X-Amz-Target' must be a 'SignedHeader' in the AWS Authorization.",
        ));
    }
    // The body is always part of the signature here, as for every AWS JSON service (only S3
    // accepts UNSIGNED-PAYLOAD, https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html);
    // the services hash the body they received whatever the header says, so a signature
    // over UNSIGNED-PAYLOAD does not match (InvalidSignatureException), said here with why.
    if parts
        .headers
        .get("x-amz-content-sha256")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"UNSIGNED-PAYLOAD"))
    {
        return Err(AuthError::UnsignedPayload);
    }

    // The time it was signed, against this host's clock.
    let signed = NaiveDateTime::parse_from_str(claim.date, "%Y%m%dT%H%M%SZ")
        .map_err(|_| {
            incomplete(format!(
                "Date must be in ISO-8601 'basic format' (YYYYMMDD'T'HHMMSS'Z'), got '{}'",
                claim.date
            ))
        })?
        .and_utc();
    let now_utc: DateTime<Utc> = now.into();
    let skew = chrono::Duration::from_std(MAX_SKEW).unwrap_or_default();
    if signed > now_utc + skew {
        return Err(AuthError::NotYetCurrent {
            signed: amz_date(signed),
            limit: amz_date(now_utc + skew),
            now: amz_date(now_utc),
        });
    }
    match claim.presigned {
        None if signed < now_utc - skew => {
            return Err(AuthError::Expired {
                signed: amz_date(signed),
                limit: amz_date(now_utc - skew),
                now: amz_date(now_utc),
                window: "5 min.".into(),
            });
        }
        Some((expires, _)) if signed + chrono::Duration::seconds(expires as i64) < now_utc => {
            return Err(AuthError::Expired {
                signed: amz_date(signed),
                limit: amz_date(now_utc - chrono::Duration::seconds(expires as i64)),
                now: amz_date(now_utc),
                window: format!("{expires} sec."),
            });
        }
        _ => {}
    }

    // The request as the client signed it: its signed headers only, the path and query as
    // received (the signer does the canonical encoding), the hash of the body received.
    let mut headers: Vec<(&str, &str)> = Vec::new();
    for name in &claim.signed_headers {
        let values: Vec<&str> = parts
            .headers
            .get_all(name.as_str())
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if values.is_empty() {
            return Err(AuthError::Mismatch);
        }
        headers.extend(values.into_iter().map(|v| (name.as_str(), v)));
    }
    let path = parts.uri.path();
    let uri = match &claim.presigned {
        Some((_, rest)) if !rest.is_empty() => format!("http://localhost{path}?{rest}"),
        Some(_) => format!("http://localhost{path}"),
        None if query.is_empty() => format!("http://localhost{path}"),
        None => format!("http://localhost{path}?{query}"),
    };
    let body = SignableBody::Bytes(body);
    let request = SignableRequest::new(parts.method.as_str(), uri, headers.into_iter(), body)
        .map_err(|_| AuthError::Mismatch)?;

    let mut settings = SigningSettings::default();
    // Sign exactly the headers the client signed (the SDKs' default exclusions, such as
    // User-Agent, are a client choice the client's SignedHeaders already reflects).
    settings.excluded_headers = None;
    if let Some((expires, _)) = claim.presigned {
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(Duration::from_secs(expires));
    }
    let identity =
        aws_credential_types::Credentials::new(&claim.access_key, secret, None, None, "serve")
            .into();
    let params: aws_sigv4::http_request::SigningParams = v4::SigningParams::builder()
        .identity(&identity)
        .region(&claim.region)
        .name(&claim.service)
        .time(signed.into())
        .settings(settings)
        .build()
        .map_err(|_| AuthError::Mismatch)?
        .into();
    let expected = sign(request, &params).map_err(|_| AuthError::Mismatch)?;
    use subtle::ConstantTimeEq;
    if bool::from(
        expected
            .signature()
            .as_bytes()
            .ct_eq(claim.signature.to_ascii_lowercase().as_bytes()),
    ) {
        Ok(claim.access_key)
    } else {
        Err(AuthError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;

    const ID: &str = "AKIDEXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    fn keys() -> Keys {
        let mut k = Keys::default();
        k.insert(ID, SECRET);
        k
    }

    /// A ListClusters request signed by aws-sigv4 as the Rust SDK signs it, at `at`.
    fn signed(secret: &str, at: SystemTime, body: &'static str) -> (Parts, &'static [u8]) {
        signed_with(
            secret,
            at,
            body,
            &[(
                "x-amz-target",
                "AmazonEC2ContainerServiceV20141113.ListClusters",
            )],
        )
    }

    /// A request with `headers` (besides host and content-type) signed at `at`; with
    /// `x-amz-content-sha256: UNSIGNED-PAYLOAD` among them, signed over that.
    fn signed_with(
        secret: &str,
        at: SystemTime,
        body: &'static str,
        headers: &[(&str, &str)],
    ) -> (Parts, &'static [u8]) {
        let mut req = Request::builder()
            .method("POST")
            .uri("http://127.0.0.1:8080/")
            .header("host", "127.0.0.1:8080")
            .header("content-type", "application/x-amz-json-1.1");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let mut req = req.body(()).unwrap();
        let unsigned = headers
            .iter()
            .any(|(k, v)| *k == "x-amz-content-sha256" && *v == "UNSIGNED-PAYLOAD");
        let identity =
            aws_credential_types::Credentials::new(ID, secret, None, None, "test").into();
        let params: aws_sigv4::http_request::SigningParams = v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name("ecs")
            .time(at)
            .settings(SigningSettings::default())
            .build()
            .unwrap()
            .into();
        let headers: Vec<(String, String)> = req
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
            .collect();
        let signable = SignableRequest::new(
            "POST",
            "http://127.0.0.1:8080/",
            headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            if unsigned {
                SignableBody::UnsignedPayload
            } else {
                SignableBody::Bytes(body.as_bytes())
            },
        )
        .unwrap();
        let (instructions, _) = sign(signable, &params).unwrap().into_parts();
        instructions.apply_to_request_http1x(&mut req);
        (req.into_parts().0, body.as_bytes())
    }

    #[test]
    fn a_correct_signature_is_accepted_and_every_flaw_named() {
        let now = SystemTime::now();
        let (parts, body) = signed(SECRET, now, "{}");
        assert_eq!(verify(&keys(), &parts, body, now), Ok(ID.to_string()));
        // The body is covered.
        assert_eq!(
            verify(&keys(), &parts, b"{\"x\":1}", now),
            Err(AuthError::Mismatch)
        );
        // A wrong secret.
        let (parts, body) = signed("not-the-secret", now, "{}");
        assert_eq!(verify(&keys(), &parts, body, now), Err(AuthError::Mismatch));
        // An unknown key.
        assert_eq!(
            verify(&Keys::default(), &parts, body, now),
            Err(AuthError::UnknownKey)
        );
        // Six minutes off, either way.
        let (parts, body) = signed(SECRET, now - Duration::from_secs(360), "{}");
        let e = verify(&keys(), &parts, body, now).unwrap_err();
        assert_eq!(e.name(), "InvalidSignatureException");
        assert!(e.to_string().starts_with("Signature expired: "), "{e}");
        assert!(e.to_string().ends_with(" - 5 min.)"), "{e}");
        let (parts, body) = signed(SECRET, now + Duration::from_secs(360), "{}");
        let e = verify(&keys(), &parts, body, now).unwrap_err();
        assert!(
            e.to_string().starts_with("Signature not yet current: "),
            "{e}"
        );
        // Four minutes off is within the window.
        let (parts, body) = signed(SECRET, now - Duration::from_secs(240), "{}");
        assert!(verify(&keys(), &parts, body, now).is_ok());
    }

    /// A captured signature replayed with another operation or body is refused, as is a
    /// signature that leaves the operation or the body out.
    #[test]
    fn the_operation_and_the_body_are_always_signed() {
        use axum::http::HeaderValue;
        let now = SystemTime::now();
        let (mut parts, body) = signed(SECRET, now, "{}");
        parts.headers.insert(
            "x-amz-target",
            HeaderValue::from_static("AmazonEC2ContainerServiceV20141113.RunTask"),
        );
        assert_eq!(verify(&keys(), &parts, body, now), Err(AuthError::Mismatch));
        let (parts, _) = signed(SECRET, now, "{}");
        assert_eq!(
            verify(&keys(), &parts, br#"{"cluster":"other"}"#, now),
            Err(AuthError::Mismatch)
        );

        // Signed without X-Amz-Target, which is added afterwards.
        let (mut parts, body) = signed_with(SECRET, now, "{}", &[]);
        parts.headers.insert(
            "x-amz-target",
            HeaderValue::from_static("AmazonEC2ContainerServiceV20141113.RunTask"),
        );
        let e = verify(&keys(), &parts, body, now).unwrap_err();
        assert_eq!(e.name(), "IncompleteSignatureException");
        assert!(e.to_string().contains("'X-Amz-Target'"), "{e}");

        // Signed over UNSIGNED-PAYLOAD (as S3 allows): refused whatever the body.
        let (parts, body) = signed_with(
            SECRET,
            now,
            "{}",
            &[
                (
                    "x-amz-target",
                    "AmazonEC2ContainerServiceV20141113.ListClusters",
                ),
                ("x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
            ],
        );
        let e = verify(&keys(), &parts, body, now).unwrap_err();
        assert_eq!(e, AuthError::UnsignedPayload);
        assert_eq!(e.name(), "InvalidSignatureException");
        assert!(e.to_string().contains("UNSIGNED-PAYLOAD"), "{e}");
    }

    #[test]
    fn unsigned_and_malformed_requests_get_aws_names() {
        let parts = Request::builder().uri("/").body(()).unwrap().into_parts().0;
        let e = verify(&keys(), &parts, b"", SystemTime::now()).unwrap_err();
        assert_eq!(e.name(), "MissingAuthenticationTokenException");
        let parts = Request::builder()
            .uri("/")
            .header("authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/x")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        let e = verify(&keys(), &parts, b"", SystemTime::now()).unwrap_err();
        assert_eq!(e.name(), "IncompleteSignatureException");
        assert!(e.to_string().contains("'Signature'"), "{e}");
        let parts = Request::builder()
            .uri("/?X-Amz-Signature=00&X-Amz-Credential=AKIDEXAMPLE")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        let e = verify(&keys(), &parts, b"", SystemTime::now()).unwrap_err();
        assert_eq!(e.name(), "IncompleteSignatureException");
    }

    #[test]
    fn credentials_file_format_and_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("keys");
        std::fs::write(
            &p,
            "# ops team\nAKID1 secret/one\n\n  AKID2\tsecret+two  # ci\n",
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Keys::load_file(&p).unwrap_err();
        assert!(e.to_string().contains("chmod 600"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let k = Keys::load_file(&p).unwrap();
        assert_eq!(k.len(), 2);
        assert_eq!(k.keys["AKID2"], "secret+two");
        std::fs::write(&p, "AKID1\n").unwrap();
        let e = Keys::load_file(&p).unwrap_err();
        assert!(e.to_string().contains("line 1"), "{e}");
        assert!(matches!(
            Keys::from_env_pair(Some("A".into()), None),
            Err(KeysError::HalfEnv)
        ));
    }

    /// Requests with a small and a 1 KiB body check, 2,000 times each; the mean cost of
    /// one check is printed (docs/security.md quotes it; `scripts/bench-serve` points
    /// here). A figure, not an assertion: speed is never asserted in a test, as the
    /// machine running the suite may be busy.
    #[test]
    fn a_check_costs_microseconds() {
        const BODY: &str = concat!("{\"family\":\"x\",", "\"containerDefinitions\":[]}");
        let now = SystemTime::now();
        let (parts, _) = signed(SECRET, now, BODY);
        let body = BODY.repeat(1024 / BODY.len() + 1);
        let (parts_kib, _) = signed(SECRET, now, Box::leak(body.clone().into_boxed_str()));
        let n = 2000;
        let started = std::time::Instant::now();
        for _ in 0..n {
            assert!(verify(&keys(), &parts, BODY.as_bytes(), now).is_ok());
        }
        let small = started.elapsed() / n;
        let started = std::time::Instant::now();
        for _ in 0..n {
            assert!(verify(&keys(), &parts_kib, body.as_bytes(), now).is_ok());
        }
        let kib = started.elapsed() / n;
        eprintln!(
            "SigV4 check: {small:?} per request ({} B body), {kib:?} (1 KiB body)",
            BODY.len()
        );
    }
}
