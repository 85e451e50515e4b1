//! `environmentFiles`: S3 objects (`arn:aws:s3:::bucket/key.env`, `type: s3`) read by the
//! task's supervisor at task start with the execution identity, as the ECS agent's envfile
//! resource does, and their `VAR=VALUE` lines under the container's `environment`.
//!
//! Ref: aws/amazon-ecs-agent agent/taskresource/envFiles/envfile.go (`readEnvVarsFromFile`:
//! a line starting with `#` is a comment, only lines with `=` count, split at the first
//! `=`, a line with an empty name or value is skipped; `downloadEnvfileFromS3`);
//! agent/api/container/container.go (`MergeEnvironmentVariablesFromEnvfiles`: files in
//! order, a name already set — by `environment` or an earlier file — is kept);
//! ecs.json `EnvironmentFile` (up to ten files, `.env` extension, `s3` the only type).

use super::credentials::Execution;
use crate::taskdef::model::{EnvironmentFileType, TaskDefinition};
use std::collections::BTreeMap;

/// The prefix of every failure, as ECS words it for environment files.
pub const REASON_PREFIX: &str = "ResourceInitializationError: failed to download env files";

/// ECS sets no size limit (docs …/developerguide/use-environment-file.html); the agent
/// writes the file to disk. This supervisor holds it in memory, so a guard: far above what
/// execve(2) could pass on anyway (all of a process's environment shares one
/// `RLIMIT_STACK / 4`, 2 MiB by default).
pub const MAX_FILE_BYTES: u64 = 32 << 20;

/// An S3 object an `environmentFiles` entry names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Object {
    pub bucket: String,
    pub key: String,
}

/// Parses `arn:<partition>:s3:::<bucket>/<key>` (the only form ECS accepts).
/// Ref: agent/s3/s3.go `ParseS3ARN` (the resource is `bucket/key`).
pub fn parse_s3_arn(v: &str) -> Option<S3Object> {
    let rest = v.strip_prefix("arn:")?;
    let mut parts = rest.splitn(5, ':');
    let (_partition, service, region, account, resource) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    if service != "s3" || !region.is_empty() || !account.is_empty() {
        return None;
    }
    let (bucket, key) = resource.split_once('/')?;
    (!bucket.is_empty() && !key.is_empty()).then(|| S3Object {
        bucket: bucket.to_string(),
        key: key.to_string(),
    })
}

/// Whether an `environmentFiles` value names an S3 object (else: a local path, a local
/// extension of this host; see `super::support`).
pub fn is_s3(value: &str, kind: Option<EnvironmentFileType>) -> bool {
    value.starts_with("arn:") || (kind == Some(EnvironmentFileType::S3) && value.starts_with("s3:"))
}

/// The variables of one file by the agent's rules, in the order first seen; a name set
/// twice in one file takes its last value (the agent reads a file into a map).
pub fn parse(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        if k.is_empty() || v.is_empty() {
            continue;
        }
        match out.iter_mut().find(|(n, _)| n == k) {
            Some(e) => e.1 = v.to_string(),
            None => out.push((k.to_string(), v.to_string())),
        }
    }
    out
}

/// Merges files in order: the first file that sets a name wins.
pub fn merge(files: &[Vec<(String, String)>]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for f in files {
        for (k, v) in f {
            if !out.iter().any(|(n, _)| n == k) {
                out.push((k.clone(), v.clone()));
            }
        }
    }
    out
}

/// Per container index, `NAME=value` from its S3 environment files.
pub type FileEnv = BTreeMap<usize, Vec<String>>;

/// Why a container's S3 environment files could not be read, by step. Its text is the
/// task's stopped reason, as the ECS agent words it.
#[derive(Debug, thiserror::Error)]
pub enum EnvFileError {
    /// An `environmentFiles` value that is not an S3 object ARN.
    #[error(
        "{p}: unable to parse bucket and key from s3 ARN specified in environmentFile {0}",
        p = REASON_PREFIX
    )]
    Arn(String),
    /// The runtime the AWS calls run on could not be made.
    #[error("{p}: failed to start the AWS client: {0}", p = REASON_PREFIX)]
    Runtime(String),
    /// The execution identity S3 is asked with.
    #[error("{p}: {0}", p = REASON_PREFIX)]
    Identity(String),
    /// GetBucketLocation failed.
    #[error(
        "{p}: unable to initialize s3 client for bucket {bucket} as {who}: {detail}",
        p = REASON_PREFIX
    )]
    Bucket {
        bucket: String,
        who: String,
        detail: String,
    },
    /// GetObject failed, the object is too large or it is not UTF-8 text.
    #[error(
        "{p}: unable to download env file with key {key} from bucket {bucket} as {who}: {detail}",
        p = REASON_PREFIX
    )]
    Object {
        key: String,
        bucket: String,
        who: String,
        detail: String,
    },
}

/// Reads every container's S3 environment files.
pub fn resolve(
    def: &TaskDefinition,
    exec: &mut Execution,
    region: &str,
) -> Result<FileEnv, EnvFileError> {
    let mut wanted: Vec<(usize, Vec<S3Object>)> = Vec::new();
    for (idx, c) in def.container_definitions.iter().flatten().enumerate() {
        let objs: Vec<S3Object> = c
            .environment_files
            .iter()
            .flatten()
            .filter_map(|f| {
                let v = f.value.as_deref().unwrap_or_default();
                is_s3(v, f.kind).then_some(v)
            })
            .map(|v| parse_s3_arn(v).ok_or_else(|| EnvFileError::Arn(v.to_string())))
            .collect::<Result<_, _>>()?;
        if !objs.is_empty() {
            wanted.push((idx, objs));
        }
    }
    if wanted.is_empty() {
        return Ok(FileEnv::new());
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| EnvFileError::Runtime(e.to_string()))?;
    rt.block_on(async {
        let mut env = FileEnv::new();
        for (idx, objs) in wanted {
            let mut files = Vec::with_capacity(objs.len());
            for o in &objs {
                files.push(parse(&fetch(exec, region, o).await?));
            }
            env.insert(
                idx,
                merge(&files)
                    .into_iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect(),
            );
        }
        Ok(env)
    })
}

/// Why [`get_object`] failed.
#[derive(Debug)]
pub enum ObjectError {
    /// No credentials or client configuration for the identity.
    Identity(String),
    /// GetBucketLocation failed: the client for the bucket could not be set up.
    Bucket(String),
    /// GetObject (or reading its body) failed, or the object is too large.
    Object(String),
}

/// GetBucketLocation, then GetObject in the bucket's region, as the agent's
/// `NewS3ClientForBucket` does (the execution role needs s3:GetObject and
/// s3:GetBucketLocation: docs …/developerguide/use-environment-file.html); at most
/// [`MAX_FILE_BYTES`]. Shared with the FireLens S3 config file (`super::firelens`).
pub async fn get_object(
    exec: &mut Execution,
    region: &str,
    o: &S3Object,
) -> Result<Vec<u8>, ObjectError> {
    use super::aws_http::{Client, Service, location_constraint};
    let cfg = exec
        .config(region)
        .await
        .map_err(|e| ObjectError::Identity(e.to_string()))?;
    let s3 = Client::new(&cfg, Service::S3, region);
    let loc = s3
        .send(
            reqwest::Method::GET,
            &s3.s3_url(&o.bucket, None, Some("location")),
            &[],
            Vec::new(),
        )
        .await
        .map_err(|e| ObjectError::Bucket(e.to_string()))?
        .text()
        .await
        .map_err(|e| ObjectError::Bucket(e.to_string()))?;
    // Ref: S3 GetBucketLocation: an empty LocationConstraint is us-east-1.
    let bucket_region = Some(location_constraint(&loc).map_err(ObjectError::Bucket)?)
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "us-east-1".to_string());
    let s3 = if bucket_region == region {
        s3
    } else {
        let cfg = exec
            .config(&bucket_region)
            .await
            .map_err(|e| ObjectError::Identity(e.to_string()))?;
        Client::new(&cfg, Service::S3, &bucket_region)
    };
    let mut out = s3
        .send(
            reqwest::Method::GET,
            &s3.s3_url(&o.bucket, Some(&o.key), None),
            &[],
            Vec::new(),
        )
        .await
        .map_err(|e| ObjectError::Object(e.to_string()))?;
    let too_large = || {
        ObjectError::Object(format!(
            "it is larger than {MAX_FILE_BYTES} bytes, more than a task's environment can hold"
        ))
    };
    if out.content_length().is_some_and(|n| n > MAX_FILE_BYTES) {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = out
        .chunk()
        .await
        .map_err(|e| ObjectError::Object(e.to_string()))?
    {
        if (bytes.len() + chunk.len()) as u64 > MAX_FILE_BYTES {
            return Err(too_large());
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// An environment file's text, with the agent's reasons.
async fn fetch(exec: &mut Execution, region: &str, o: &S3Object) -> Result<String, EnvFileError> {
    let who = exec.describe();
    let fail = |detail: String| EnvFileError::Object {
        key: o.key.clone(),
        bucket: o.bucket.clone(),
        who: who.clone(),
        detail,
    };
    let bytes = get_object(exec, region, o).await.map_err(|e| match e {
        ObjectError::Identity(e) => EnvFileError::Identity(e),
        ObjectError::Bucket(detail) => EnvFileError::Bucket {
            bucket: o.bucket.clone(),
            who: who.clone(),
            detail,
        },
        ObjectError::Object(e) => fail(e),
    })?;
    String::from_utf8(bytes).map_err(|_| fail("it is not UTF-8 text".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_arns() {
        assert_eq!(
            parse_s3_arn("arn:aws:s3:::my-bucket/app/prod.env"),
            Some(S3Object {
                bucket: "my-bucket".into(),
                key: "app/prod.env".into()
            })
        );
        assert!(parse_s3_arn("arn:aws-cn:s3:::b/k.env").is_some());
        assert_eq!(parse_s3_arn("arn:aws:s3:::bucket-only"), None);
        assert_eq!(parse_s3_arn("arn:aws:s3:::/k.env"), None);
        assert_eq!(parse_s3_arn("arn:aws:s3:us-east-1:1:b/k.env"), None);
        assert_eq!(parse_s3_arn("arn:aws:ssm:::b/k.env"), None);
        assert_eq!(parse_s3_arn("s3://b/k.env"), None);
        assert!(is_s3("arn:aws:s3:::b/k.env", None));
        assert!(is_s3("s3://b/k.env", Some(EnvironmentFileType::S3)));
        assert!(!is_s3("/etc/app.env", Some(EnvironmentFileType::S3)));
    }

    #[test]
    fn lines_by_the_agents_rules() {
        let text = "# comment\nA=1\n  # not a comment but without an equals sign: skipped\nB=x=y\n\
                    EMPTY=\n=novalue\nnoequals\n A=spaced\nA=2\n #C=3\nD= keep \n";
        assert_eq!(
            parse(text),
            [
                ("A".to_string(), "2".to_string()),
                ("B".into(), "x=y".into()),
                (" A".into(), "spaced".into()),
                (" #C".into(), "3".into()),
                ("D".into(), " keep ".into()),
            ]
        );
    }

    #[test]
    fn the_first_file_wins() {
        let merged = merge(&[parse("A=first\nB=b\n"), parse("A=second\nC=c\n")]);
        assert_eq!(
            merged,
            [
                ("A".to_string(), "first".to_string()),
                ("B".into(), "b".into()),
                ("C".into(), "c".into()),
            ]
        );
    }
}
