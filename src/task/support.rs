//! What of a task definition this host does not do yet: errors for what cannot be faked
//! (malformed `secrets` or S3 environment file ARNs), warnings recorded on the task for
//! what is skipped or done differently (`taskdef::coverage`).
//! Also reads *local* `environmentFiles` into the environment at RunTask (a local
//! extension: ECS reads them only from S3; S3 files are read by the supervisor at task
//! start, `super::envfiles`), by the ECS agent's file rules.

use super::envfiles;
use crate::taskdef::coverage;
use crate::taskdef::model::{KeyValuePair, TaskDefinition};

#[derive(Debug, thiserror::Error)]
pub enum SupportError {
    /// A `secrets` entry that names no SSM parameter or Secrets Manager secret (they are
    /// resolved by the supervisor at task start: `super::secrets`).
    #[error(transparent)]
    Secret(#[from] super::secrets::SecretError),
    #[error(
        "containerDefinitions[{idx}].environmentFiles[{k}].value: {value:?} is not an S3 object \
         ARN; ECS takes arn:aws:s3:::<bucket>/<key>.env"
    )]
    S3EnvironmentFile { idx: usize, k: usize, value: String },
    #[error(
        "containerDefinitions[{idx}].environmentFiles: {count} files; ECS takes at most {max} \
         (merge some of them)"
    )]
    TooManyEnvironmentFiles {
        idx: usize,
        count: usize,
        max: usize,
    },
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

/// Ref: ecs.json `ContainerDefinition.environmentFiles`: "You can specify up to ten
/// environment files."
pub const MAX_ENVIRONMENT_FILES: usize = 10;

/// Checks `def` and resolves its local environment files into `environment` (which
/// keeps precedence, as in ECS; the first file that sets a name wins, as in the agent).
/// S3 files stay for the supervisor. Returns the warnings to record on the task.
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
        let files = c.environment_files.as_deref().unwrap_or_default();
        if files.len() > MAX_ENVIRONMENT_FILES {
            return Err(SupportError::TooManyEnvironmentFiles {
                idx,
                count: files.len(),
                max: MAX_ENVIRONMENT_FILES,
            });
        }
        let mut local = Vec::new();
        let mut kept = Vec::new();
        for (k, f) in files.iter().enumerate() {
            let value = f.value.clone().unwrap_or_default();
            if envfiles::is_s3(&value, f.kind) {
                if envfiles::parse_s3_arn(&value).is_none() {
                    return Err(SupportError::S3EnvironmentFile { idx, k, value });
                }
                kept.push(f.clone());
                continue;
            }
            let text = std::fs::read_to_string(&value).map_err(|source| {
                SupportError::ReadEnvironmentFile {
                    idx,
                    path: value.clone(),
                    source,
                }
            })?;
            local.push(envfiles::parse(&text));
        }
        if !local.is_empty() {
            let env = c.environment.get_or_insert_with(Vec::new);
            for (k, v) in envfiles::merge(&local) {
                if !env.iter().any(|e| e.name.as_deref() == Some(k.as_str())) {
                    env.push(KeyValuePair {
                        name: Some(k),
                        value: Some(v),
                    });
                }
            }
            c.environment_files = (!kept.is_empty()).then_some(kept);
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
        // S3 files are left for the supervisor; a malformed ARN or an 11th file is refused.
        let mut d = def(
            r#"{"containerDefinitions":[{"name":"a","environmentFiles":[{"value":"arn:aws:s3:::b/x.env","type":"s3"}]}]}"#,
        );
        assert!(prepare(&mut d).unwrap().is_empty());
        assert_eq!(
            d.container_definitions.as_ref().unwrap()[0]
                .environment_files
                .as_ref()
                .unwrap()
                .len(),
            1
        );
        let mut d = def(
            r#"{"containerDefinitions":[{"name":"a","environmentFiles":[{"value":"arn:aws:s3:::bucket-only","type":"s3"}]}]}"#,
        );
        let e = prepare(&mut d).unwrap_err().to_string();
        assert!(
            e.starts_with("containerDefinitions[0].environmentFiles[0].value: \"arn:aws:s3:::bucket-only\" is not an S3 object ARN"),
            "{e}"
        );
        let eleven = [r#"{"value":"arn:aws:s3:::b/x.env","type":"s3"}"#; 11].join(",");
        let mut d = def(&format!(
            r#"{{"containerDefinitions":[{{"name":"a","environmentFiles":[{eleven}]}}]}}"#
        ));
        let e = prepare(&mut d).unwrap_err().to_string();
        assert!(e.contains("11 files; ECS takes at most 10"), "{e}");
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
