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

use super::credentials::Execution;
use super::secrets::REASON_PREFIX;
use crate::taskdef::model::TaskDefinition;
use rootfs_cache::auth::Credentials;
use std::collections::BTreeMap;

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

/// The username and password of a secret's JSON text; `Err` is the agent's wording.
pub fn parse_secret(text: &str) -> Result<(String, String), &'static str> {
    if text.is_empty() {
        return Err("asm fetching authorization data: empty secrets value");
    }
    let bad = "asm fetching authorization data: unable to unmarshal secret value, invalid schema";
    let v: serde_json::Value = serde_json::from_str(text).map_err(|_| bad)?;
    let obj = v.as_object().ok_or(bad)?;
    // Go's encoding/json matches a field name case-insensitively (an exact match first).
    let field = |name: &str| -> Result<String, &'static str> {
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
        return Err("asm fetching username: AuthorizationData is malformed, empty field");
    }
    if password.is_empty() {
        return Err("asm fetching password: AuthorizationData is malformed, empty field");
    }
    Ok((username, password))
}

/// Why a container's `repositoryCredentials` could not be had, by step. Its text is the
/// task's stopped reason, as the ECS agent words it.
#[derive(Debug, thiserror::Error)]
pub enum RegistryAuthError {
    /// The runtime the AWS calls run on could not be made.
    #[error("{p}: failed to start the AWS client: {0}", p = REASON_PREFIX)]
    Runtime(String),
    /// The execution identity Secrets Manager is asked with.
    #[error("{p}: {0}", p = REASON_PREFIX)]
    Identity(String),
    /// Secrets Manager did not give the secret, or it is not a username and password.
    #[error(
        "{p}: unable to get registry auth from asm for secret {param} as {who}: {detail}",
        p = REASON_PREFIX
    )]
    Secret {
        param: String,
        who: String,
        detail: String,
    },
}

/// Fetches every container's `repositoryCredentials`.
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
        .map_err(|e| RegistryAuthError::Runtime(e.to_string()))?;
    rt.block_on(async {
        let mut out = RegistryAuth::new();
        for (idx, param) in wanted {
            let who = exec.describe();
            let fail = |detail: String| RegistryAuthError::Secret {
                param: param.to_string(),
                who: who.to_string(),
                detail,
            };
            let cfg = exec
                .config(region_of(param, region))
                .await
                .map_err(|e| RegistryAuthError::Identity(e.to_string()))?;
            let got =
                super::secrets::get_secret_value(&cfg, region_of(param, region), param, None, None)
                    .await
                    .map_err(|e| fail(format!("asm fetching secret from the service: {e}")))?;
            let (username, password) =
                parse_secret(got.as_deref().unwrap_or_default()).map_err(|e| fail(e.into()))?;
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
            Err("asm fetching password: AuthorizationData is malformed, empty field")
        );
        assert_eq!(
            parse_secret(r#"{"password":"x"}"#),
            Err("asm fetching username: AuthorizationData is malformed, empty field")
        );
        assert!(
            parse_secret("alice:pw")
                .unwrap_err()
                .contains("invalid schema")
        );
        assert!(
            parse_secret(r#"{"username":1,"password":"x"}"#)
                .unwrap_err()
                .contains("invalid schema")
        );
        assert!(
            parse_secret("")
                .unwrap_err()
                .contains("empty secrets value")
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
}
