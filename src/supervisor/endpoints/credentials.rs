//! The task's credentials endpoint (`AWS_CONTAINER_CREDENTIALS_RELATIVE_URI=/v2/credentials/
//! <uuid>`): the task role's credentials from STS AssumeRole with the host's credentials
//! (session name = task id, refreshed before they expire), or — only with the explicit
//! `--task-credentials host` opt-in — temporary credentials of the host's own identity.
//!
//! Also the task's *execution* identity ([`Execution`]): what the supervisor itself uses at
//! task start for ECR pulls, `repositoryCredentials`, `secrets` and S3 `environmentFiles`.
//!
//! Ref: ecs-reference.md §3 (the JSON `{RoleArn, AccessKeyId, SecretAccessKey, Token,
//! Expiration}`); the SDKs' container credential providers read exactly these keys.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::time::Duration;

/// Role credentials are fetched again when less than this is left of them (the ECS agent
/// likewise hands out fresh credentials well before the old ones expire).
pub const REFRESH_BEFORE: Duration = Duration::from_secs(15 * 60);

/// Why credentials could not be had; the text is what the task's stopped reason or the
/// endpoint's `CredentialsUnavailable` message quotes.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// STS AssumeRole failed (the SDK's error with its causes, as the SDK prints them).
    #[error("{}", aws_sdk_sts::error::DisplayErrorContext(.0))]
    AssumeRole(
        #[source]
        Box<aws_sdk_sts::error::SdkError<aws_sdk_sts::operation::assume_role::AssumeRoleError>>,
    ),
    /// STS GetSessionToken failed.
    #[error("{}", aws_sdk_sts::error::DisplayErrorContext(.0))]
    GetSessionToken(
        #[source]
        Box<
            aws_sdk_sts::error::SdkError<
                aws_sdk_sts::operation::get_session_token::GetSessionTokenError,
            >,
        >,
    ),
    /// STS answered `operation` without credentials.
    #[error("STS {operation} returned no credentials")]
    NoCredentials { operation: &'static str },
    /// The host's configuration has no credentials provider.
    #[error("no AWS credentials on this host")]
    NoHostProvider,
    /// The host's credentials provider found none.
    #[error("no AWS credentials on this host: {0}")]
    HostProvider(#[source] aws_credential_types::provider::error::CredentialsError),
    #[error("failed to start the AWS client: {0}")]
    Runtime(#[source] std::io::Error),
    /// Asked for credentials with no source (never reached from the endpoint's `answer`).
    #[error("no task role")]
    NoTaskRole,
    /// The execution role could not be assumed with the host's credentials.
    #[error("unable to assume the execution role {arn}: {source}")]
    ExecutionRole {
        arn: String,
        #[source]
        source: Box<CredentialsError>,
    },
}

/// Temporary AWS credentials.
#[derive(Clone)]
pub struct Creds {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub token: String,
    pub expiration: DateTime<Utc>,
}

impl std::fmt::Debug for Creds {
    // Never print the secret parts.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Creds")
            .field("access_key_id", &self.access_key_id)
            .field("expiration", &self.expiration)
            .finish_non_exhaustive()
    }
}

impl Creds {
    /// As an SDK credentials provider (for clients acting as the assumed role).
    pub fn sdk(&self) -> aws_credential_types::Credentials {
        aws_credential_types::Credentials::new(
            &self.access_key_id,
            &self.secret_access_key,
            Some(self.token.clone()),
            Some(self.expiration.into()),
            "minifargate-assumed-role",
        )
    }
}

/// The SDK configuration from the host's credential chain and endpoint settings
/// (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_STS` …, honoured by aws-config) for `region`.
/// One HTTP/TLS stack for every AWS client: rootfs-cache's (see `auth::aws_config`).
pub async fn sdk_config(region: &str) -> aws_config::SdkConfig {
    rootfs_cache::auth::aws_config(region).await
}

/// The identity a task's start-up calls (ECR GetAuthorizationToken, Secrets Manager, SSM,
/// S3) act as. As the ECS agent does: the task definition's `executionRoleArn`, assumed
/// once per task through STS with the host's credentials (session name = task id); the
/// host's own credential chain only when there is no execution role, or when the user
/// asked for it (`run-task --execution-credentials host`).
/// Ref: docs …/developerguide/task_execution_IAM_role.html (the agent pulls ECR images,
/// fetches secrets, private registry credentials and environment files with this role).
#[derive(Debug, Clone, Default)]
pub struct Execution {
    /// The role to assume, if any (None also with `--execution-credentials host`).
    role: Option<String>,
    region: String,
    task_id: String,
    /// Assumed on first use, so a task that makes no such call (public images, local
    /// secrets) never needs STS.
    creds: Option<Creds>,
}

impl Execution {
    pub fn new(role_arn: Option<&str>, use_host: bool, region: &str, task_id: &str) -> Execution {
        Execution {
            role: role_arn
                .filter(|a| !a.is_empty() && !use_host)
                .map(str::to_string),
            region: region.to_string(),
            task_id: task_id.to_string(),
            creds: None,
        }
    }

    /// Who the calls act as, for messages.
    pub fn describe(&self) -> String {
        match &self.role {
            Some(arn) => format!("the execution role {arn}"),
            None => "this host's AWS credentials".to_string(),
        }
    }

    /// The role's credentials (assumed on first use, again when they near their expiry);
    /// None: the host's chain. `Err` names the role and what STS said.
    pub async fn creds(&mut self) -> Result<Option<Creds>, CredentialsError> {
        let Some(arn) = &self.role else {
            return Ok(None);
        };
        let fresh = self.creds.as_ref().is_some_and(|c| {
            c.expiration - Utc::now()
                > chrono::Duration::from_std(REFRESH_BEFORE).unwrap_or_default()
        });
        if !fresh {
            let cfg = sdk_config(&self.region).await;
            let c = assume_role(&cfg, arn, &self.task_id).await.map_err(|e| {
                CredentialsError::ExecutionRole {
                    arn: arn.clone(),
                    source: Box::new(e),
                }
            })?;
            self.creds = Some(c);
        }
        Ok(self.creds.clone())
    }

    /// The SDK configuration for `region` acting as this identity.
    pub async fn config(
        &mut self,
        region: &str,
    ) -> Result<aws_config::SdkConfig, CredentialsError> {
        let creds = self.creds().await?;
        let cfg = sdk_config(region).await;
        Ok(match creds {
            Some(c) => cfg
                .into_builder()
                .credentials_provider(
                    aws_credential_types::provider::SharedCredentialsProvider::new(c.sdk()),
                )
                .build(),
            None => cfg,
        })
    }

    /// The registry client's ECR identity (None: the host's chain).
    pub async fn ecr_identity(
        &mut self,
    ) -> Result<Option<rootfs_cache::auth::AwsIdentity>, CredentialsError> {
        let name = self.describe();
        Ok(self
            .creds()
            .await?
            .map(|c| rootfs_cache::auth::AwsIdentity {
                credentials: c.sdk(),
                name,
            }))
    }
}

fn to_chrono(t: &aws_sdk_sts::primitives::DateTime) -> DateTime<Utc> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos()).unwrap_or_else(Utc::now)
}

/// STS AssumeRole of `role_arn` with session name `session`.
pub async fn assume_role(
    cfg: &aws_config::SdkConfig,
    role_arn: &str,
    session: &str,
) -> Result<Creds, CredentialsError> {
    let out = aws_sdk_sts::Client::new(cfg)
        .assume_role()
        .role_arn(role_arn)
        .role_session_name(session)
        .send()
        .await
        .map_err(|e| CredentialsError::AssumeRole(Box::new(e)))?;
    let c = out.credentials().ok_or(CredentialsError::NoCredentials {
        operation: "AssumeRole",
    })?;
    Ok(sts_creds(c))
}

/// The temporary credentials an STS call answered with.
fn sts_creds(c: &aws_sdk_sts::types::Credentials) -> Creds {
    Creds {
        access_key_id: c.access_key_id().to_string(),
        secret_access_key: c.secret_access_key().to_string(),
        token: c.session_token().to_string(),
        expiration: to_chrono(c.expiration()),
    }
}

/// Temporary credentials of the host's own identity: passed through when they already
/// are temporary, else from STS GetSessionToken (long-term keys never enter a task).
async fn host_credentials(cfg: &aws_config::SdkConfig) -> Result<Creds, CredentialsError> {
    use aws_credential_types::provider::ProvideCredentials;
    let provider = cfg
        .credentials_provider()
        .ok_or(CredentialsError::NoHostProvider)?;
    let c = provider
        .provide_credentials()
        .await
        .map_err(CredentialsError::HostProvider)?;
    if let (Some(token), Some(exp)) = (c.session_token(), c.expiry()) {
        return Ok(Creds {
            access_key_id: c.access_key_id().to_string(),
            secret_access_key: c.secret_access_key().to_string(),
            token: token.to_string(),
            expiration: exp.into(),
        });
    }
    let out = aws_sdk_sts::Client::new(cfg)
        .get_session_token()
        .send()
        .await
        .map_err(|e| CredentialsError::GetSessionToken(Box::new(e)))?;
    let c = out.credentials().ok_or(CredentialsError::NoCredentials {
        operation: "GetSessionToken",
    })?;
    Ok(sts_creds(c))
}

/// Where a task's credentials come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The task definition's (or the overrides') `taskRoleArn`.
    TaskRole(String),
    /// No task role, but the user opted in to the host's identity.
    Host,
    /// No task role: the endpoint answers with an error saying so.
    None,
}

impl Source {
    pub fn pick(task_role_arn: Option<&str>, host_opt_in: bool) -> Source {
        match task_role_arn.filter(|a| !a.is_empty()) {
            Some(arn) => Source::TaskRole(arn.to_string()),
            None if host_opt_in => Source::Host,
            None => Source::None,
        }
    }
}

/// An endpoint answer: HTTP status and JSON body.
pub type Answer = (u16, Value);

fn error(status: u16, code: &str, message: String) -> Answer {
    (status, json!({"code": code, "message": message}))
}

/// The credentials of one task, cached until [`REFRESH_BEFORE`] their expiry.
pub struct TaskCredentials {
    /// The unguessable id in the task's relative URI.
    pub id: String,
    pub source: Source,
    task_id: String,
    region: String,
    cached: Option<Creds>,
    rt: Option<tokio::runtime::Runtime>,
}

impl TaskCredentials {
    pub fn new(id: String, source: Source, task_id: &str, region: &str) -> TaskCredentials {
        TaskCredentials {
            id,
            source,
            task_id: task_id.into(),
            region: region.into(),
            cached: None,
            rt: None,
        }
    }

    /// The relative URI containers get.
    pub fn relative_uri(&self) -> String {
        format!("/v2/credentials/{}", self.id)
    }

    /// Answers `GET /v2/credentials/<id>`.
    pub fn answer(&mut self, id: &str) -> Answer {
        if id != self.id {
            // Another task's id (or a guess): this task's endpoint knows only its own.
            return error(
                400,
                "InvalidIdInRequest",
                "CredentialsV2Request: Credentials not found".into(),
            );
        }
        let role_arn = match &self.source {
            Source::None => {
                return error(
                    404,
                    "NoTaskRole",
                    "the task definition has no taskRoleArn, so this task has no credentials; \
                     set taskRoleArn (assumed with this host's credentials through STS), or run \
                     the task with --task-credentials host to hand it this host's own identity"
                        .into(),
                );
            }
            Source::TaskRole(arn) => arn.clone(),
            Source::Host => String::new(),
        };
        let fresh = self.cached.as_ref().is_some_and(|c| {
            c.expiration - Utc::now()
                > chrono::Duration::from_std(REFRESH_BEFORE).unwrap_or_default()
        });
        if !fresh {
            match self.fetch() {
                Ok(c) => self.cached = Some(c),
                Err(e) => {
                    tracing::warn!(task_id = %self.task_id, error = %e, "failed to get task credentials");
                    let what = if role_arn.is_empty() {
                        "the host's credentials".to_string()
                    } else {
                        format!("task role {role_arn}")
                    };
                    return error(
                        500,
                        "CredentialsUnavailable",
                        format!("failed to get credentials for {what}: {e}"),
                    );
                }
            }
        }
        let c = self.cached.as_ref().expect("set above");
        (
            200,
            json!({
                "RoleArn": role_arn,
                "AccessKeyId": c.access_key_id,
                "SecretAccessKey": c.secret_access_key,
                "Token": c.token,
                "Expiration": c.expiration.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            }),
        )
    }

    fn fetch(&mut self) -> Result<Creds, CredentialsError> {
        if self.rt.is_none() {
            self.rt = Some(
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(CredentialsError::Runtime)?,
            );
        }
        let rt = self.rt.as_ref().expect("set above");
        let (region, task_id, source) = (&self.region, &self.task_id, &self.source);
        rt.block_on(async {
            let cfg = sdk_config(region).await;
            match source {
                Source::TaskRole(arn) => assume_role(&cfg, arn, task_id).await,
                Source::Host => host_credentials(&cfg).await,
                Source::None => Err(CredentialsError::NoTaskRole),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_ids_and_no_role_are_json_errors() {
        let mut c = TaskCredentials::new("abc".into(), Source::None, "t", "us-east-1");
        let (st, v) = c.answer("other");
        assert_eq!(st, 400);
        assert_eq!(v["code"], "InvalidIdInRequest");
        let (st, v) = c.answer("abc");
        assert_eq!(st, 404);
        assert!(v["message"].as_str().unwrap().contains("no taskRoleArn"));
        assert_eq!(c.relative_uri(), "/v2/credentials/abc");
        assert_eq!(
            Source::pick(Some("arn:aws:iam::1:role/r"), false),
            Source::TaskRole("arn:aws:iam::1:role/r".into())
        );
        assert_eq!(Source::pick(Some(""), true), Source::Host);
        assert_eq!(Source::pick(None, false), Source::None);
    }

    /// The texts a task's stopped reason and the endpoint's message quote, word for word.
    #[test]
    fn errors_read_as_before() {
        let cases = [
            (
                CredentialsError::NoCredentials {
                    operation: "AssumeRole",
                },
                "STS AssumeRole returned no credentials",
            ),
            (
                CredentialsError::NoCredentials {
                    operation: "GetSessionToken",
                },
                "STS GetSessionToken returned no credentials",
            ),
            (
                CredentialsError::NoHostProvider,
                "no AWS credentials on this host",
            ),
            (
                CredentialsError::HostProvider(
                    aws_credential_types::provider::error::CredentialsError::not_loaded("none"),
                ),
                "no AWS credentials on this host: the credential provider was not enabled",
            ),
            (
                CredentialsError::Runtime(std::io::Error::other("boom")),
                "failed to start the AWS client: boom",
            ),
            (CredentialsError::NoTaskRole, "no task role"),
            (
                CredentialsError::ExecutionRole {
                    arn: "arn:aws:iam::1:role/x".into(),
                    source: Box::new(CredentialsError::NoCredentials {
                        operation: "AssumeRole",
                    }),
                },
                "unable to assume the execution role arn:aws:iam::1:role/x: STS AssumeRole \
                 returned no credentials",
            ),
        ];
        for (e, text) in cases {
            assert_eq!(e.to_string(), text);
        }
    }
}
