//! `repositoryCredentials.credentialsParameter`: a Secrets Manager secret holding
//! `{"username": …, "password": …}`, fetched at task start with the task's execution
//! identity and used as Basic credentials for that container's registry (instead of the
//! host's Docker config), as the ECS agent's asmauth resource does.
//!
//! Ref: ecs.json `RepositoryCredentials.credentialsParameter` ("the full ARN or the name
//! of the secret" when it is in the task's Region); docs …/developerguide/private-auth.html
//! (the secret's JSON); aws/amazon-ecs-agent agent/asm/asm.go (`GetDockerAuthFromASM`,
//! `extractASMValue`: Go's case-insensitive JSON field match, an empty username or
//! password is an error, messages quoted below).

use crate::supervisor::aws_http::AwsError;
use crate::supervisor::endpoints::credentials::{CredentialsError, Execution};
use crate::supervisor::secrets::REASON_PREFIX;
use crate::taskdef::model::TaskDefinition;
use rootfs_cache::auth::Credentials;
use std::collections::BTreeMap;

/// Why a container's `repositoryCredentials` could not be had: the task's stopped reason,
/// beginning with [`REASON_PREFIX`].
#[derive(Debug, thiserror::Error)]
pub enum RegistryAuthError {
    #[error("{REASON_PREFIX}: failed to start the AWS client: {0}")]
    Runtime(#[source] std::io::Error),
    /// No client for the execution identity.
    #[error("{REASON_PREFIX}: {0}")]
    Identity(#[source] CredentialsError),
    /// GetSecretValue failed; `who` is the identity it was asked as.
    #[error(
        "{REASON_PREFIX}: unable to get registry auth from asm for secret {param} as {who}: asm \
         fetching secret from the service: {source}"
    )]
    Fetch {
        param: String,
        who: String,
        #[source]
        source: AwsError,
    },
    /// The secret is not `{"username": …, "password": …}` ([`parse_secret`]'s reason).
    #[error(
        "{REASON_PREFIX}: unable to get registry auth from asm for secret {param} as {who}: {reason}"
    )]
    Secret {
        param: String,
        who: String,
        #[source]
        reason: AsmSecretError,
    },
}

/// Per container index, the credentials for its image's registry.
pub type RegistryAuth = BTreeMap<usize, Credentials>;

/// The region a `credentialsParameter` lives in: its ARN's, else the task's.
fn region_of<'a>(param: &'a str, task_region: &'a str) -> &'a str {
    match param.strip_prefix("arn:") {
        Some(rest) => rest
            .split(':')
            .nth(2)
            .filter(|r| !r.is_empty())
            .unwrap_or(task_region),
        None => task_region,
    }
}

/// A `repositoryCredentials` secret that is not `{"username": …, "password": …}`, in the
/// agent's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AsmSecretError {
    #[error("asm fetching authorization data: empty secrets value")]
    Empty,
    #[error("asm fetching authorization data: unable to unmarshal secret value, invalid schema")]
    InvalidSchema,
    #[error("asm fetching username: AuthorizationData is malformed, empty field")]
    EmptyUsername,
    #[error("asm fetching password: AuthorizationData is malformed, empty field")]
    EmptyPassword,
}

/// The username and password of a secret's JSON text.
pub fn parse_secret(text: &str) -> Result<(String, String), AsmSecretError> {
    if text.is_empty() {
        return Err(AsmSecretError::Empty);
    }
    let bad = AsmSecretError::InvalidSchema;
    let v: serde_json::Value = serde_json::from_str(text).map_err(|_| bad)?;
    let obj = v.as_object().ok_or(bad)?;
    // Go's encoding/json matches a field name case-insensitively (an exact match first).
    let field = |name: &str| -> Result<String, AsmSecretError> {
        let v = obj.get(name).or_else(|| {
            obj.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        });
        match v {
            None | Some(serde_json::Value::Null) => Ok(String::new()),
            Some(serde_json::Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(bad),
        }
    };
    let (username, password) = (field("username")?, field("password")?);
    if username.is_empty() {
        return Err(AsmSecretError::EmptyUsername);
    }
    if password.is_empty() {
        return Err(AsmSecretError::EmptyPassword);
    }
    Ok((username, password))
}

/// Fetches every container's `repositoryCredentials`; `Err` is the task's stopped reason.
pub fn resolve(
    def: &TaskDefinition,
    exec: &mut Execution,
    region: &str,
) -> Result<RegistryAuth, RegistryAuthError> {
    let wanted: Vec<(usize, &str)> = def
        .container_definitions
        .iter()
        .flatten()
        .enumerate()
        .filter_map(|(idx, c)| {
            let p = c
                .repository_credentials
                .as_ref()?
                .credentials_parameter
                .as_deref()?;
            (!p.is_empty()).then_some((idx, p))
        })
        .collect();
    if wanted.is_empty() {
        return Ok(RegistryAuth::new());
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(RegistryAuthError::Runtime)?;
    rt.block_on(async {
        let mut out = RegistryAuth::new();
        for (idx, param) in wanted {
            let who = exec.describe();
            let cfg = exec
                .config(region_of(param, region))
                .await
                .map_err(RegistryAuthError::Identity)?;
            let got = crate::supervisor::secrets::get_secret_value(
                &cfg,
                region_of(param, region),
                param,
                None,
                None,
            )
            .await
            .map_err(|source| RegistryAuthError::Fetch {
                param: param.to_string(),
                who: who.clone(),
                source,
            })?;
            let (username, password) =
                parse_secret(got.as_deref().unwrap_or_default()).map_err(|reason| {
                    RegistryAuthError::Secret {
                        param: param.to_string(),
                        who,
                        reason,
                    }
                })?;
            out.insert(
                idx,
                Credentials {
                    username,
                    password,
                    source: format!("the Secrets Manager secret {param} (repositoryCredentials)"),
                },
            );
        }
        Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_json_as_the_agent_reads_it() {
        assert_eq!(
            parse_secret(r#"{"username":"alice","password":"pw"}"#),
            Ok(("alice".into(), "pw".into()))
        );
        assert_eq!(
            parse_secret(r#"{"Username":"bob","PASSWORD":"pw2","other":1}"#),
            Ok(("bob".into(), "pw2".into()))
        );
        assert_eq!(
            parse_secret(r#"{"username":"alice"}"#),
            Err(AsmSecretError::EmptyPassword)
        );
        assert_eq!(
            parse_secret(r#"{"password":"x"}"#),
            Err(AsmSecretError::EmptyUsername)
        );
        assert_eq!(parse_secret("alice:pw"), Err(AsmSecretError::InvalidSchema));
        assert_eq!(
            parse_secret(r#"{"username":1,"password":"x"}"#),
            Err(AsmSecretError::InvalidSchema)
        );
        assert_eq!(parse_secret(""), Err(AsmSecretError::Empty));
        // The agent's wording, word for word.
        assert_eq!(
            AsmSecretError::InvalidSchema.to_string(),
            "asm fetching authorization data: unable to unmarshal secret value, invalid schema"
        );
        assert_eq!(
            AsmSecretError::EmptyUsername.to_string(),
            "asm fetching username: AuthorizationData is malformed, empty field"
        );
        assert_eq!(
            AsmSecretError::EmptyPassword.to_string(),
            "asm fetching password: AuthorizationData is malformed, empty field"
        );
    }

    #[test]
    fn regions_from_arns_else_the_task() {
        assert_eq!(
            region_of(
                "arn:aws:secretsmanager:eu-west-1:123456789012:secret:reg-AbCdEf",
                "us-east-1"
            ),
            "eu-west-1"
        );
        assert_eq!(region_of("reg-creds", "us-east-1"), "us-east-1");
    }

    /// The stopped reasons word for word.
    #[test]
    fn stopped_reasons_read_as_before() {
        let p = REASON_PREFIX;
        let e = RegistryAuthError::Fetch {
            param: "reg".into(),
            who: "the execution role arn:aws:iam::1:role/x".into(),
            source: AwsError::Service {
                status: 400,
                code: "ResourceNotFoundException".into(),
                message: "gone".into(),
            },
        };
        assert_eq!(
            e.to_string(),
            format!(
                "{p}: unable to get registry auth from asm for secret reg as the execution role \
                 arn:aws:iam::1:role/x: asm fetching secret from the service: \
                 ResourceNotFoundException: gone (HTTP 400)"
            )
        );
        let e = RegistryAuthError::Secret {
            param: "reg".into(),
            who: "this host's AWS credentials".into(),
            reason: parse_secret("").unwrap_err(),
        };
        assert_eq!(
            e.to_string(),
            format!(
                "{p}: unable to get registry auth from asm for secret reg as this host's AWS \
                 credentials: asm fetching authorization data: empty secrets value"
            )
        );
        assert_eq!(
            RegistryAuthError::Runtime(std::io::Error::other("boom")).to_string(),
            format!("{p}: failed to start the AWS client: boom")
        );
        assert_eq!(
            RegistryAuthError::Identity(CredentialsError::NoHostProvider).to_string(),
            format!("{p}: no AWS credentials on this host")
        );
    }
}
