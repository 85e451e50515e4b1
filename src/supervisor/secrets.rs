//! `secrets[].valueFrom`, resolved by the task's supervisor at task start: SSM parameters
//! (names or ARNs), Secrets Manager secrets (ARNs with `:json-key:version-stage:version-id`),
//! or a local `--secrets-file` for offline use.
//!
//! Values live only in the supervisor's memory and in the containers' environment: never in
//! the store, describe-tasks, inspect or any log line. Failures become ECS's
//! `ResourceInitializationError: unable to pull secrets or registry auth: …` reason.
//! Ref: repost.aws/knowledge-center/ecs-unable-to-pull-secrets (the reasons ECS prints);
//! docs …/developerguide/specifying-sensitive-data-secrets.html (the valueFrom forms).

use crate::supervisor::aws_http::{AwsError, Client, Service};
use crate::supervisor::endpoints::credentials::{CredentialsError, Execution};
use crate::taskdef::model::TaskDefinition;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The prefix of every secrets failure, as ECS words it.
pub const REASON_PREFIX: &str = "ResourceInitializationError: unable to pull secrets or registry auth: execution resource retrieval failed";

/// Where one `valueFrom` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// An SSM parameter: its name (`/app/db` or `db`) and the region of its ARN, if any.
    Ssm {
        name: String,
        region: Option<String>,
    },
    /// A Secrets Manager secret: the secret ARN (without the suffixes) and the suffixes.
    SecretsManager {
        secret_id: String,
        region: String,
        json_key: Option<String>,
        version_stage: Option<String>,
        version_id: Option<String>,
    },
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SecretError {
    #[error(
        "containerDefinitions[{idx}].{member}[{k}].valueFrom: {value_from:?} is neither an SSM \
         parameter name or ARN nor a Secrets Manager secret ARN"
    )]
    ValueFrom {
        idx: usize,
        /// `secrets` or `logConfiguration.secretOptions`.
        member: &'static str,
        k: usize,
        value_from: String,
    },
    #[error("containerDefinitions[{idx}].{member}[{k}]: name and valueFrom are required")]
    Missing {
        idx: usize,
        member: &'static str,
        k: usize,
    },
    #[error("--secrets-file {path}: {reason}")]
    File { path: PathBuf, reason: String },
}

/// A secret whose `:json-key:` cannot be read from its value.
#[derive(Debug, thiserror::Error)]
pub enum JsonKeyError {
    #[error(
        "retrieved secret {secret_id} from Secrets Manager is not JSON, so json key {key} cannot \
         be read"
    )]
    NotJson {
        secret_id: String,
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("retrieved secret {secret_id} from Secrets Manager did not contain json key {key}")]
    Missing { secret_id: String, key: String },
}

/// Why the task's secrets could not be resolved: the task's stopped reason, each
/// beginning with [`REASON_PREFIX`] as ECS's do.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// A malformed entry or an unreadable `--secrets-file`.
    #[error("{REASON_PREFIX}: {0}")]
    Invalid(#[source] SecretError),
    #[error("{REASON_PREFIX}: failed to start the AWS client: {0}")]
    Runtime(#[source] std::io::Error),
    /// No client for the execution identity.
    #[error("{REASON_PREFIX}: {0}")]
    Identity(#[source] CredentialsError),
    /// SSM GetParameters failed.
    #[error("{REASON_PREFIX}: unable to retrieve secrets from ssm: {0}")]
    Ssm(#[source] AwsError),
    /// SSM answered without (some of) the parameters.
    #[error("{REASON_PREFIX}: unable to retrieve secrets from ssm: invalid parameters: {}", .names.join(", "))]
    SsmInvalid { names: Vec<String> },
    /// Secrets Manager GetSecretValue failed.
    #[error(
        "{REASON_PREFIX}: unable to retrieve secret from asm: failed to fetch secret {secret_id} \
         from secrets manager: {source}"
    )]
    Asm {
        secret_id: String,
        #[source]
        source: AwsError,
    },
    #[error(
        "{REASON_PREFIX}: unable to retrieve secret from asm: failed to fetch secret {secret_id} \
         from secrets manager: the secret has no SecretString (binary secrets cannot be env vars)"
    )]
    AsmBinary { secret_id: String },
    #[error("{REASON_PREFIX}: unable to retrieve secret from asm: {0}")]
    JsonKey(#[source] JsonKeyError),
    #[error("{REASON_PREFIX}: secret {name} ({value_from}) is not in --secrets-file {}", .path.display())]
    NotInFile {
        name: String,
        value_from: String,
        path: PathBuf,
    },
}

fn non_empty(s: Option<&&str>) -> Option<String> {
    s.filter(|s| !s.is_empty()).map(|s| s.to_string())
}

/// Parses a `valueFrom`: an ARN of `ssm` or `secretsmanager`, else an SSM parameter name
/// (ECS takes a bare name as a parameter in the task's region).
pub fn parse_value_from(v: &str) -> Option<Source> {
    let v = v.trim();
    if v.is_empty() {
        return None;
    }
    if !v.starts_with("arn:") {
        return Some(Source::Ssm {
            name: v.to_string(),
            region: None,
        });
    }
    let parts: Vec<&str> = v.split(':').collect();
    if parts.len() < 6 {
        return None;
    }
    let region = parts[3].to_string();
    match parts[2] {
        "ssm" => {
            // `parameter/db` names `db`; `parameter/app/db` names `/app/db`.
            let rest = parts[5..].join(":");
            let name = rest.strip_prefix("parameter/")?;
            if name.is_empty() {
                return None;
            }
            let name = if name.contains('/') {
                format!("/{name}")
            } else {
                name.to_string()
            };
            Some(Source::Ssm {
                name,
                region: Some(region),
            })
        }
        "secretsmanager" if parts.len() >= 7 && parts[5] == "secret" && !parts[6].is_empty() => {
            Some(Source::SecretsManager {
                secret_id: parts[..7].join(":"),
                region,
                json_key: non_empty(parts.get(7)),
                version_stage: non_empty(parts.get(8)),
                version_id: non_empty(parts.get(9)),
            })
        }
        _ => None,
    }
}

/// One secret a container asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Wanted {
    pub container: usize,
    pub name: String,
    pub value_from: String,
    pub source: Source,
}

/// Every `secrets` entry of the task's containers, parsed (an error names the field), and
/// the `secretOptions` of each awsfirelens container, which go to the log router as
/// `<name>_<container index>` (the config variable its generated configuration names).
/// Ref: amazon-ecs-agent agent/api/task/task.go `firelensConfigVarFmt`,
/// `collectFirelensLogEnvOptions` and the firelens container's environment (`firelensENVs`).
pub fn wanted(def: &TaskDefinition) -> Result<Vec<Wanted>, SecretError> {
    let containers = def.container_definitions.as_deref().unwrap_or_default();
    let router = containers
        .iter()
        .position(|c| c.firelens_configuration.is_some());
    let mut out = Vec::new();
    for (idx, c) in containers.iter().enumerate() {
        let log_secrets = match router {
            Some(r) if crate::supervisor::logs::firelens::uses_awsfirelens(c) => c
                .log_configuration
                .as_ref()
                .and_then(|l| l.secret_options.as_deref())
                .map(|s| (r, s)),
            _ => None,
        };
        let lists = [
            Some(("secrets", idx, c.secrets.as_deref().unwrap_or_default())),
            log_secrets.map(|(r, s)| ("logConfiguration.secretOptions", r, s)),
        ];
        for (member, target, list) in lists.into_iter().flatten() {
            for (k, s) in list.iter().enumerate() {
                let (Some(name), Some(vf)) = (s.name.as_deref(), s.value_from.as_deref()) else {
                    return Err(SecretError::Missing { idx, member, k });
                };
                let source = parse_value_from(vf).ok_or_else(|| SecretError::ValueFrom {
                    idx,
                    member,
                    k,
                    value_from: vf.to_string(),
                })?;
                let name = if member == "secrets" {
                    name.to_string()
                } else {
                    format!("{name}_{idx}")
                };
                out.push(Wanted {
                    container: target,
                    name,
                    value_from: vf.to_string(),
                    source,
                });
            }
        }
    }
    Ok(out)
}

/// The values of a `--secrets-file`, by `valueFrom`.
pub type SecretsFile = BTreeMap<String, String>;

/// `--secrets-file`: a JSON object from `valueFrom` to the value, e.g.
/// `{"/app/db/password": "…", "arn:aws:secretsmanager:…:secret:db-AbCdEf": "{\"user\":\"…\"}"}`.
pub fn read_secrets_file(path: &Path) -> Result<SecretsFile, SecretError> {
    let err = |reason: String| SecretError::File {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(format!("failed to read it: {e}")))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| err(format!("not a JSON object of valueFrom → value: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| err("not a JSON object of valueFrom → value".into()))?;
    let mut out = BTreeMap::new();
    for (k, v) in obj {
        let s = match v {
            serde_json::Value::String(s) => s.clone(),
            // A JSON secret may be given as an object; json-key then picks from it.
            other @ serde_json::Value::Object(_) => other.to_string(),
            _ => return Err(err(format!("the value of {k:?} is not a string"))),
        };
        out.insert(k.clone(), s);
    }
    Ok(out)
}

/// Picks `key` from a JSON secret string, as ECS does for `:json-key:`.
fn json_key(secret_id: &str, text: &str, key: &str) -> Result<String, JsonKeyError> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|source| JsonKeyError::NotJson {
            secret_id: secret_id.to_string(),
            key: key.to_string(),
            source,
        })?;
    match v.get(key) {
        Some(serde_json::Value::String(s)) => Ok(s.clone()),
        Some(other) => Ok(other.to_string()),
        None => Err(JsonKeyError::Missing {
            secret_id: secret_id.to_string(),
            key: key.to_string(),
        }),
    }
}

/// What the task's containers get: per container index, `NAME=value` entries.
pub type SecretEnv = BTreeMap<usize, Vec<String>>;

/// Where secrets come from.
#[derive(Debug, Clone)]
pub struct Resolver {
    /// `--secrets-file`: when set, only this file is read (offline), never AWS.
    pub file: Option<PathBuf>,
    /// The task's region (bare SSM names live there).
    pub region: String,
}

impl Resolver {
    /// Resolves every secret of `def` (from AWS as `exec`); `Err` is the task's stopped
    /// reason.
    pub fn resolve(
        &self,
        def: &TaskDefinition,
        exec: &mut Execution,
    ) -> Result<SecretEnv, ResolveError> {
        let wanted = wanted(def).map_err(ResolveError::Invalid)?;
        if wanted.is_empty() {
            return Ok(SecretEnv::new());
        }
        let values: Vec<String> = match &self.file {
            Some(path) => {
                let map = read_secrets_file(path).map_err(ResolveError::Invalid)?;
                wanted
                    .iter()
                    .map(|w| from_file(&map, w, path))
                    .collect::<Result<_, _>>()?
            }
            None => self.fetch_from_aws(exec, &wanted)?,
        };
        let mut env = SecretEnv::new();
        for (w, v) in wanted.iter().zip(values) {
            env.entry(w.container)
                .or_default()
                .push(format!("{}={v}", w.name));
        }
        Ok(env)
    }

    fn fetch_from_aws(
        &self,
        exec: &mut Execution,
        wanted: &[Wanted],
    ) -> Result<Vec<String>, ResolveError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(ResolveError::Runtime)?;
        rt.block_on(async {
            let mut out = Vec::with_capacity(wanted.len());
            for w in wanted {
                out.push(self.fetch(w, exec).await?);
            }
            Ok(out)
        })
    }

    async fn fetch(&self, w: &Wanted, exec: &mut Execution) -> Result<String, ResolveError> {
        match &w.source {
            Source::Ssm { name, region } => {
                let region = region.as_deref().unwrap_or(&self.region);
                let cfg = exec.config(region).await.map_err(ResolveError::Identity)?;
                // Ref: https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_GetParameters.html
                let out = Client::new(&cfg, Service::Ssm, region)
                    .json(
                        "AmazonSSM.GetParameters",
                        &json!({"Names": [name], "WithDecryption": true}),
                    )
                    .await
                    .map_err(ResolveError::Ssm)?;
                let invalid: Vec<String> = out["InvalidParameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect();
                if !invalid.is_empty() {
                    return Err(ResolveError::SsmInvalid { names: invalid });
                }
                out["Parameters"][0]["Value"]
                    .as_str()
                    .map(str::to_string)
                    .ok_or_else(|| ResolveError::SsmInvalid {
                        names: vec![name.clone()],
                    })
            }
            Source::SecretsManager {
                secret_id,
                region,
                json_key: key,
                version_stage,
                version_id,
            } => {
                let cfg = exec.config(region).await.map_err(ResolveError::Identity)?;
                let out = get_secret_value(
                    &cfg,
                    region,
                    secret_id,
                    version_stage.as_deref(),
                    version_id.as_deref(),
                )
                .await
                .map_err(|source| ResolveError::Asm {
                    secret_id: secret_id.clone(),
                    source,
                })?;
                let text = out.ok_or_else(|| ResolveError::AsmBinary {
                    secret_id: secret_id.clone(),
                })?;
                let text = text.as_str();
                match key {
                    Some(k) => json_key(secret_id, text, k).map_err(ResolveError::JsonKey),
                    None => Ok(text.to_string()),
                }
            }
        }
    }
}

/// Secrets Manager GetSecretValue: the secret's `SecretString` (None for a binary secret).
/// Ref: https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_GetSecretValue.html
pub async fn get_secret_value(
    cfg: &aws_config::SdkConfig,
    region: &str,
    secret_id: &str,
    version_stage: Option<&str>,
    version_id: Option<&str>,
) -> Result<Option<String>, AwsError> {
    let mut req = json!({"SecretId": secret_id});
    if let Some(v) = version_stage {
        req["VersionStage"] = v.into();
    }
    if let Some(v) = version_id {
        req["VersionId"] = v.into();
    }
    let out = Client::new(cfg, Service::SecretsManager, region)
        .json("secretsmanager.GetSecretValue", &req)
        .await?;
    Ok(out["SecretString"].as_str().map(str::to_string))
}

/// A value from `--secrets-file`: the whole `valueFrom` first; for a Secrets Manager
/// `valueFrom` with suffixes also the bare secret ARN (then `json-key` picks from it).
fn from_file(
    map: &BTreeMap<String, String>,
    w: &Wanted,
    path: &Path,
) -> Result<String, ResolveError> {
    if let Some(v) = map.get(&w.value_from) {
        return Ok(v.clone());
    }
    if let Source::SecretsManager {
        secret_id,
        json_key: key,
        ..
    } = &w.source
        && let Some(v) = map.get(secret_id)
    {
        return match key {
            Some(k) => json_key(secret_id, v, k).map_err(ResolveError::JsonKey),
            None => Ok(v.clone()),
        };
    }
    Err(ResolveError::NotInFile {
        name: w.name.clone(),
        value_from: w.value_from.clone(),
        path: path.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `secretOptions` of a container whose logs go through FireLens are resolved into
    /// the router's environment (container 0 here), named `<name>_<index of the container>`:
    /// the variable the router's configuration refers to (firelens.rs).
    #[test]
    fn a_routed_containers_secret_options_go_to_the_router() {
        let d: TaskDefinition = serde_json::from_value(serde_json::json!({
            "family": "f",
            "containerDefinitions": [
                {"name": "log_router", "image": "fluent-bit", "essential": true,
                 "firelensConfiguration": {"type": "fluentbit"}},
                {"name": "app", "image": "app", "essential": true,
                 "logConfiguration": {"logDriver": "awsfirelens",
                    "options": {"Name": "datadog"},
                    "secretOptions": [{"name": "apikey",
                        "valueFrom": "arn:aws:ssm:us-east-1:123456789012:parameter/k"}]}}
            ]
        }))
        .unwrap();
        let w = wanted(&d).unwrap();
        assert_eq!(w.len(), 1);
        assert_eq!((w[0].container, w[0].name.as_str()), (0, "apikey_1"));
    }

    #[test]
    fn value_from_forms() {
        assert_eq!(
            parse_value_from("db_password"),
            Some(Source::Ssm {
                name: "db_password".into(),
                region: None
            })
        );
        assert_eq!(
            parse_value_from("arn:aws:ssm:eu-west-1:123456789012:parameter/app/db"),
            Some(Source::Ssm {
                name: "/app/db".into(),
                region: Some("eu-west-1".into())
            })
        );
        assert_eq!(
            parse_value_from("arn:aws:ssm:us-east-1:123456789012:parameter/db"),
            Some(Source::Ssm {
                name: "db".into(),
                region: Some("us-east-1".into())
            })
        );
        let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf";
        assert_eq!(
            parse_value_from(&format!("{arn}:password:AWSCURRENT:")),
            Some(Source::SecretsManager {
                secret_id: arn.into(),
                region: "us-east-1".into(),
                json_key: Some("password".into()),
                version_stage: Some("AWSCURRENT".into()),
                version_id: None,
            })
        );
        assert_eq!(
            parse_value_from(&format!("{arn}:::0123")),
            Some(Source::SecretsManager {
                secret_id: arn.into(),
                region: "us-east-1".into(),
                json_key: None,
                version_stage: None,
                version_id: Some("0123".into()),
            })
        );
        assert_eq!(parse_value_from("arn:aws:s3:::bucket/x"), None);
        assert_eq!(parse_value_from("arn:aws:ssm:us-east-1:1:document/x"), None);
        assert_eq!(parse_value_from(""), None);
    }

    #[test]
    fn secrets_file_and_json_keys() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("s.json");
        let arn = "arn:aws:secretsmanager:us-east-1:1:secret:db-AbCdEf";
        std::fs::write(
            &f,
            format!(r#"{{"/app/token":"t0k3n","{arn}":{{"user":"admin","port":5432}}}}"#),
        )
        .unwrap();
        let def: TaskDefinition = serde_json::from_str(&format!(
            r#"{{"containerDefinitions":[{{"name":"a","secrets":[
                {{"name":"TOKEN","valueFrom":"/app/token"}},
                {{"name":"USER","valueFrom":"{arn}:user::"}},
                {{"name":"PORT","valueFrom":"{arn}:port::"}}]}},
                {{"name":"b","secrets":[{{"name":"MISSING","valueFrom":"/nope"}}]}}]}}"#
        ))
        .unwrap();
        let r = Resolver {
            file: Some(f.clone()),
            region: "us-east-1".into(),
        };
        let mut exec = Execution::default();
        let e = r.resolve(&def, &mut exec).unwrap_err().to_string();
        assert!(e.starts_with(REASON_PREFIX), "{e}");
        assert!(
            e.contains("secret MISSING (/nope) is not in --secrets-file"),
            "{e}"
        );
        let mut ok = def.clone();
        ok.container_definitions.as_mut().unwrap().pop();
        let env = r.resolve(&ok, &mut exec).unwrap();
        assert_eq!(env[&0], ["TOKEN=t0k3n", "USER=admin", "PORT=5432"]);
        let e = json_key("x", r#"{"a":1}"#, "b").unwrap_err();
        assert_eq!(
            e.to_string(),
            "retrieved secret x from Secrets Manager did not contain json key b"
        );
    }

    #[test]
    fn bad_entries_name_the_field() {
        let def: TaskDefinition = serde_json::from_str(
            r#"{"containerDefinitions":[{"name":"a","secrets":[{"name":"X","valueFrom":"arn:aws:s3:::b/k"}]}]}"#,
        )
        .unwrap();
        let e = wanted(&def).unwrap_err().to_string();
        assert!(
            e.starts_with("containerDefinitions[0].secrets[0].valueFrom"),
            "{e}"
        );
    }

    /// The stopped reasons word for word (ECS's wording, matched by users and tests).
    #[test]
    fn stopped_reasons_read_as_before() {
        let p = REASON_PREFIX;
        let aws = || AwsError::Service {
            status: 400,
            code: "AccessDeniedException".into(),
            message: "no".into(),
        };
        let arn = "arn:aws:secretsmanager:us-east-1:1:secret:db-AbCdEf";
        let cases = [
            (
                ResolveError::Invalid(SecretError::Missing {
                    idx: 0,
                    member: "secrets",
                    k: 1,
                }),
                format!("{p}: containerDefinitions[0].secrets[1]: name and valueFrom are required"),
            ),
            (
                ResolveError::Runtime(std::io::Error::other("boom")),
                format!("{p}: failed to start the AWS client: boom"),
            ),
            (
                ResolveError::Identity(CredentialsError::NoHostProvider),
                format!("{p}: no AWS credentials on this host"),
            ),
            (
                ResolveError::Ssm(aws()),
                format!(
                    "{p}: unable to retrieve secrets from ssm: AccessDeniedException: no (HTTP 400)"
                ),
            ),
            (
                ResolveError::SsmInvalid {
                    names: vec!["/a".into(), "b".into()],
                },
                format!("{p}: unable to retrieve secrets from ssm: invalid parameters: /a, b"),
            ),
            (
                ResolveError::Asm {
                    secret_id: arn.into(),
                    source: aws(),
                },
                format!(
                    "{p}: unable to retrieve secret from asm: failed to fetch secret {arn} from \
                     secrets manager: AccessDeniedException: no (HTTP 400)"
                ),
            ),
            (
                ResolveError::AsmBinary {
                    secret_id: arn.into(),
                },
                format!(
                    "{p}: unable to retrieve secret from asm: failed to fetch secret {arn} from \
                     secrets manager: the secret has no SecretString (binary secrets cannot be \
                     env vars)"
                ),
            ),
            (
                ResolveError::JsonKey(json_key(arn, "not json", "k").unwrap_err()),
                format!(
                    "{p}: unable to retrieve secret from asm: retrieved secret {arn} from Secrets \
                     Manager is not JSON, so json key k cannot be read"
                ),
            ),
            (
                ResolveError::NotInFile {
                    name: "DB".into(),
                    value_from: "/db".into(),
                    path: "/etc/s.json".into(),
                },
                format!("{p}: secret DB (/db) is not in --secrets-file /etc/s.json"),
            ),
        ];
        for (e, text) in cases {
            assert_eq!(e.to_string(), text);
        }
    }
}
