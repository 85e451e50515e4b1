//! TagResource, UntagResource and ListTagsForResource on a repository's ARN, and ECR's tag
//! rules (also CreateRepository's).

use super::{Result, existing, server};
use crate::ecr::{EcrError, Registry, RepoName, meta};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TagResourceRequest {
    resource_arn: String,
    tags: Vec<Tag>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UntagResourceRequest {
    resource_arn: String,
    tag_keys: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ListTagsForResourceRequest {
    resource_arn: String,
}

/// The repository an ARN names (`arn:aws:ecr:<region>:<account>:repository/<name>`, this
/// registry's region and account): InvalidParameterException for another ARN,
/// RepositoryNotFoundException for a repository that does not exist.
fn arn_repository(r: &Registry, arn: &str) -> Result<RepoName> {
    let prefix = format!("arn:aws:ecr:{}:{}:repository/", r.region, r.account_id);
    let Some(name) = arn.strip_prefix(&prefix) else {
        return Err(EcrError::InvalidParameter(format!(
            "Invalid parameter at 'resourceArn' failed to satisfy constraint: {arn:?} is not \
             the ARN of a repository of this registry ({prefix}<name>)"
        )));
    };
    Ok(existing(r, name)?.0)
}

/// The repository's tags, changed by `change` under the registry's connection (no other
/// write between the read and the write).
fn retag(r: &Registry, arn: &str, change: impl FnOnce(&mut Vec<Tag>) -> Result<()>) -> Result<()> {
    let repo = arn_repository(r, arn)?;
    let db = r.db();
    let row = meta::repository(&db, &repo)
        .map_err(server("read a repository"))?
        .ok_or_else(|| EcrError::RepositoryNotFound {
            name: repo.to_string(),
            registry: r.account_id.clone(),
        })?;
    let mut tags: Vec<Tag> = serde_json::from_str(&row.tags).unwrap_or_default();
    change(&mut tags)?;
    let text = serde_json::to_string(&tags).unwrap_or_else(|_| "[]".into());
    meta::set_repository_tags(&db, &repo, &text).map_err(server("tag a repository"))
}

/// TagResource: the tags added, a key already there takes the new value.
pub(super) fn tag_resource(r: &Registry, req: TagResourceRequest) -> Result<Value> {
    check_tags(&req.tags)?;
    retag(r, &req.resource_arn, |tags| {
        for t in req.tags {
            match tags.iter_mut().find(|x| x.key == t.key) {
                Some(x) => x.value = t.value,
                None => tags.push(t),
            }
        }
        if tags.len() > MAX_TAGS {
            return Err(too_many(tags.len()));
        }
        Ok(())
    })?;
    Ok(json!({}))
}

/// UntagResource: the tags of those keys removed (a key the repository lacks: nothing).
pub(super) fn untag_resource(r: &Registry, req: UntagResourceRequest) -> Result<Value> {
    for k in &req.tag_keys {
        check_tag_key(k)?;
    }
    retag(r, &req.resource_arn, |tags| {
        tags.retain(|t| !req.tag_keys.contains(&t.key));
        Ok(())
    })?;
    Ok(json!({}))
}

pub(super) fn list_tags_for_resource(
    r: &Registry,
    req: ListTagsForResourceRequest,
) -> Result<Value> {
    let repo = arn_repository(r, &req.resource_arn)?;
    let row = existing(r, repo.as_str())?.1;
    let tags: Value = serde_json::from_str(&row.tags).unwrap_or_else(|_| json!([]));
    Ok(json!({ "tags": tags }))
}

#[derive(Deserialize, Serialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct Tag {
    #[serde(rename = "Key")]
    key: String,
    #[serde(rename = "Value", default)]
    value: String,
}

/// The most tags a repository has (TooManyTagsException).
const MAX_TAGS: usize = 50;

/// A tag key as ECR takes it: 1 to 128 characters, not under the reserved `aws:`.
fn check_tag_key(k: &str) -> Result<()> {
    let n = k.chars().count();
    if n == 0 || n > 128 {
        return Err(EcrError::InvalidTagParameter(format!(
            "Tag key {k:?}: tag keys have 1 to 128 characters"
        )));
    }
    if k.to_ascii_lowercase().starts_with("aws:") {
        return Err(EcrError::InvalidTagParameter(format!(
            "Tag key {k:?}: the aws: prefix is reserved for AWS use"
        )));
    }
    Ok(())
}

/// Tags as ECR takes them: keys as [`check_tag_key`], values of at most 256 characters,
/// at most [`MAX_TAGS`].
pub(super) fn check_tags(tags: &[Tag]) -> Result<()> {
    for t in tags {
        check_tag_key(&t.key)?;
        if t.value.chars().count() > 256 {
            return Err(EcrError::InvalidTagParameter(format!(
                "Tag {:?}: tag values have at most 256 characters",
                t.key
            )));
        }
    }
    if tags.len() > MAX_TAGS {
        return Err(too_many(tags.len()));
    }
    Ok(())
}

fn too_many(n: usize) -> EcrError {
    EcrError::TooManyTags(format!(
        "The repository would have {n} tags: the maximum number of tags that can be applied \
         to a repository is {MAX_TAGS}"
    ))
}
