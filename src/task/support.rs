//! What of a task definition this host does not do yet: errors for what cannot be faked
//! (S3 environment files, malformed `secrets`), warnings recorded on the task for what is
//! skipped or done differently (`taskdef::coverage`).
//! Also reads local `environmentFiles` into the environment, as the ECS agent does.

use crate::taskdef::coverage;
use crate::taskdef::model::{EnvironmentFileType, KeyValuePair, TaskDefinition};

#[derive(Debug, thiserror::Error)]
pub enum SupportError {
    /// A `secrets` entry that names no SSM parameter or Secrets Manager secret (they are
    /// resolved by the supervisor at task start: `super::secrets`).
    #[error(transparent)]
    Secret(#[from] super::secrets::SecretError),
    #[error(
        "containerDefinitions[{idx}].environmentFiles: {value} is in S3, which minifargate cannot \
         read; use a local path to the file instead"
    )]
    S3EnvironmentFile { idx: usize, value: String },
    #[error(transparent)]
    Setting(#[from] super::spec::SpecBuildError),
    /// A runtimePlatform this host cannot run (refused before anything of the task exists).
    #[error(transparent)]
    Platform(#[from] super::platform::PlatformError),
    #[error("containerDefinitions[{idx}].environmentFiles: failed to read {path}")]
    ReadEnvironmentFile {
        idx: usize,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// `VAR=VALUE` lines; blank lines and `#` comments are skipped (ECS environment file rules).
pub fn parse_env_file(text: &str) -> Vec<KeyValuePair> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| KeyValuePair {
            name: Some(k.to_string()),
            value: Some(v.to_string()),
        })
        .collect()
}

/// Checks `def` and resolves its local environment files into `environment` (which
/// keeps precedence, as in ECS). Returns the warnings to record on the task.
pub fn prepare(def: &mut TaskDefinition) -> Result<Vec<String>, SupportError> {
    // Nothing silent: what `validate` says this host does not honour, the task says too;
    // ephemeralStorage's depends on this host's setting, which `ephemeral` knows.
    let mut warnings: Vec<String> = coverage::task_warnings(&coverage::members(def))
        .into_iter()
        .filter(|w| !w.starts_with("ephemeralStorage"))
        .collect();
    super::secrets::wanted(def)?;
    warnings.extend(super::ephemeral::warning(def));
    super::platform::check(def, &super::platform::binfmt_dir())?;
    for (idx, c) in def.container_definitions.iter_mut().flatten().enumerate() {
        let mut from_files = Vec::new();
        for f in c.environment_files.iter().flatten() {
            let value = f.value.clone().unwrap_or_default();
            if value.starts_with("arn:")
                || f.kind == Some(EnvironmentFileType::S3) && value.starts_with("s3:")
            {
                return Err(SupportError::S3EnvironmentFile { idx, value });
            }
            let text = std::fs::read_to_string(&value).map_err(|source| {
                SupportError::ReadEnvironmentFile {
                    idx,
                    path: value.clone(),
                    source,
                }
            })?;
            from_files.extend(parse_env_file(&text));
        }
        if !from_files.is_empty() {
            let env = c.environment.get_or_insert_with(Vec::new);
            for kv in from_files {
                if !env.iter().any(|e| e.name == kv.name) {
                    env.push(kv);
                }
            }
            c.environment_files = None;
        }
        super::spec::check_sysctls(idx, c)?;
    }
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(json: &str) -> TaskDefinition {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn bad_secrets_and_s3_files_are_errors_naming_them() {
        let mut d = def(
            r#"{"containerDefinitions":[{"name":"a"},{"name":"b","secrets":[{"name":"DB","valueFrom":"arn:aws:ssm:us-east-1:1:parameter/db"}]}]}"#,
        );
        assert!(prepare(&mut d).is_ok());
        let mut d = def(
            r#"{"containerDefinitions":[{"name":"a"},{"name":"b","secrets":[{"name":"DB","valueFrom":"arn:aws:s3:::b/db"}]}]}"#,
        );
        let e = prepare(&mut d).unwrap_err().to_string();
        assert!(
            e.starts_with("containerDefinitions[1].secrets[0].valueFrom"),
            "{e}"
        );
        let mut d = def(
            r#"{"containerDefinitions":[{"name":"a","environmentFiles":[{"value":"arn:aws:s3:::b/x.env","type":"s3"}]}]}"#,
        );
        let e = prepare(&mut d).unwrap_err().to_string();
        assert!(e.contains("arn:aws:s3:::b/x.env is in S3"), "{e}");
    }

    #[test]
    fn local_env_files_fill_in_under_environment() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x.env");
        std::fs::write(&f, "# comment\nA=file\nB=file=with=equals\n\n").unwrap();
        let mut d = def(&format!(
            r#"{{"containerDefinitions":[{{"name":"a","environment":[{{"name":"A","value":"env"}}],
                "environmentFiles":[{{"value":"{}","type":"s3"}}],"healthCheck":{{"command":["CMD","true"]}}}}]}}"#,
            f.display()
        ));
        let w = prepare(&mut d).unwrap();
        // A local path is what ECS would not take: the task says so.
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with(
                "containerDefinitions[0].environmentFiles[0].value: honoured with a local \
                 difference: "
            ),
            "{w:?}"
        );
        let env = d.container_definitions.unwrap()[0]
            .environment
            .clone()
            .unwrap();
        let got: Vec<_> = env
            .iter()
            .map(|e| {
                format!(
                    "{}={}",
                    e.name.as_deref().unwrap(),
                    e.value.as_deref().unwrap()
                )
            })
            .collect();
        assert_eq!(got, ["A=env", "B=file=with=equals"]);
    }
}
