//! The lifecycle policy operations: Put/Get/DeleteLifecyclePolicy and the preview
//! (StartLifecyclePolicyPreview, GetLifecyclePolicyPreview); the rules are `ecr::lifecycle`'s.

use super::images::ImageId;
use super::{RepositoryRequest, Result, check_registry, existing, page, server};
use crate::ecr::{EcrError, Registry, RepoName, meta};
use serde::Deserialize;
use serde_json::{Value, json};

fn policy_invalid(e: crate::ecr::lifecycle::PolicyInvalid) -> EcrError {
    EcrError::InvalidParameter(e.to_string())
}

fn no_policy(r: &Registry, repo: &RepoName) -> EcrError {
    EcrError::LifecyclePolicyNotFound {
        name: repo.as_str().to_string(),
        registry: r.account_id.clone(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PutLifecyclePolicyRequest {
    registry_id: Option<String>,
    repository_name: String,
    lifecycle_policy_text: String,
}

pub(super) fn put_lifecycle_policy(r: &Registry, req: PutLifecyclePolicyRequest) -> Result<Value> {
    check_registry(r, req.registry_id.as_deref())?;
    let (repo, _) = existing(r, &req.repository_name)?;
    crate::ecr::lifecycle::Policy::parse(&req.lifecycle_policy_text).map_err(policy_invalid)?;
    meta::put_lifecycle_policy(&r.db(), &repo, &req.lifecycle_policy_text)
        .map_err(server("store the lifecycle policy"))?;
    Ok(json!({
        "registryId": r.account_id,
        "repositoryName": repo.as_str(),
        "lifecyclePolicyText": req.lifecycle_policy_text,
    }))
}

fn policy_json(r: &Registry, repo: &RepoName, text: &str, evaluated: Option<f64>) -> Value {
    let mut v = json!({
        "registryId": r.account_id,
        "repositoryName": repo.as_str(),
        "lifecyclePolicyText": text,
    });
    if let Some(t) = evaluated {
        v["lastEvaluatedAt"] = json!(t);
    }
    v
}

pub(super) fn get_lifecycle_policy(r: &Registry, req: RepositoryRequest) -> Result<Value> {
    check_registry(r, req.registry_id.as_deref())?;
    let (repo, _) = existing(r, &req.repository_name)?;
    let (text, evaluated) = meta::lifecycle_policy(&r.db(), &repo)
        .map_err(server("read the lifecycle policy"))?
        .ok_or_else(|| no_policy(r, &repo))?;
    Ok(policy_json(r, &repo, &text, evaluated))
}

pub(super) fn delete_lifecycle_policy(r: &Registry, req: RepositoryRequest) -> Result<Value> {
    check_registry(r, req.registry_id.as_deref())?;
    let (repo, _) = existing(r, &req.repository_name)?;
    let db = r.db();
    let (text, evaluated) = meta::lifecycle_policy(&db, &repo)
        .map_err(server("read the lifecycle policy"))?
        .ok_or_else(|| no_policy(r, &repo))?;
    meta::delete_lifecycle_policy(&db, &repo).map_err(server("delete the lifecycle policy"))?;
    Ok(policy_json(r, &repo, &text, evaluated))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StartLifecyclePolicyPreviewRequest {
    registry_id: Option<String>,
    repository_name: String,
    lifecycle_policy_text: Option<String>,
}

/// The preview is evaluated at once (a repository of a box is small), so it is COMPLETE
/// when this answers; GetLifecyclePolicyPreview gives its results.
pub(super) fn start_lifecycle_policy_preview(
    r: &Registry,
    req: StartLifecyclePolicyPreviewRequest,
    now: u64,
) -> Result<Value> {
    check_registry(r, req.registry_id.as_deref())?;
    let (repo, _) = existing(r, &req.repository_name)?;
    let text = match req.lifecycle_policy_text {
        Some(t) => t,
        None => {
            meta::lifecycle_policy(&r.db(), &repo)
                .map_err(server("read the lifecycle policy"))?
                .ok_or_else(|| no_policy(r, &repo))?
                .0
        }
    };
    let policy = crate::ecr::lifecycle::Policy::parse(&text).map_err(policy_invalid)?;
    let images = r.lifecycle_images(&repo).map_err(server("list images"))?;
    let expiring = crate::ecr::lifecycle::evaluate(&policy, &images, now as f64);
    let results: Vec<Value> = expiring
        .iter()
        .filter_map(|e| {
            let i = images.iter().find(|i| i.digest == e.digest)?;
            let mut v = json!({
                "imageDigest": i.digest,
                "imagePushedAt": i.pushed_at,
                "action": {"type": "EXPIRE"},
                "appliedRulePriority": e.rule_priority,
                "storageClass": "STANDARD",
            });
            if !i.tags.is_empty() {
                v["imageTags"] = json!(i.tags);
            }
            Some(v)
        })
        .collect();
    let results = serde_json::to_string(&results).unwrap_or_else(|_| "[]".into());
    meta::put_lifecycle_preview(&r.db(), &repo, &text, &results)
        .map_err(server("store the lifecycle policy preview"))?;
    Ok(json!({
        "registryId": r.account_id,
        "repositoryName": repo.as_str(),
        "lifecyclePolicyText": text,
        "status": "COMPLETE",
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PreviewFilter {
    tag_status: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GetLifecyclePolicyPreviewRequest {
    registry_id: Option<String>,
    repository_name: String,
    image_ids: Option<Vec<ImageId>>,
    next_token: Option<String>,
    max_results: Option<i64>,
    filter: Option<PreviewFilter>,
}

pub(super) fn get_lifecycle_policy_preview(
    r: &Registry,
    req: GetLifecyclePolicyPreviewRequest,
) -> Result<Value> {
    check_registry(r, req.registry_id.as_deref())?;
    let (repo, _) = existing(r, &req.repository_name)?;
    let (text, results) = meta::lifecycle_preview(&r.db(), &repo)
        .map_err(server("read the lifecycle policy preview"))?
        .ok_or_else(|| EcrError::LifecyclePolicyPreviewNotFound {
            name: repo.as_str().to_string(),
            registry: r.account_id.clone(),
        })?;
    if let Some(n) = req.max_results
        && !(1..=100).contains(&n)
    {
        return Err(EcrError::InvalidParameter(format!(
            "Invalid parameter at 'maxResults' failed to satisfy constraint: 'Member must have \
             value between 1 and 100' ({n})"
        )));
    }
    if req.image_ids.is_some() && (req.max_results.is_some() || req.next_token.is_some()) {
        return Err(EcrError::InvalidParameter(
            "maxResults and nextToken cannot be used with imageIds".into(),
        ));
    }
    let all: Vec<Value> = serde_json::from_str(&results).unwrap_or_default();
    let total = all.len();
    let tag_status = req.filter.and_then(|f| f.tag_status);
    let mut kept = Vec::new();
    for v in all {
        let tagged = v.get("imageTags").is_some();
        let ok = match tag_status.as_deref() {
            None | Some("ANY") => true,
            Some("TAGGED") => tagged,
            Some("UNTAGGED") => !tagged,
            Some(other) => {
                return Err(EcrError::InvalidParameter(format!(
                    "tagStatus {other:?}: one of TAGGED, UNTAGGED, ANY"
                )));
            }
        };
        let id_ok = req.image_ids.as_ref().is_none_or(|ids| {
            ids.iter().any(|id| {
                id.image_digest.as_deref() == v["imageDigest"].as_str()
                    || id.image_tag.as_ref().is_some_and(|t| {
                        v["imageTags"]
                            .as_array()
                            .is_some_and(|ts| ts.iter().any(|x| x.as_str() == Some(t)))
                    })
            })
        });
        if ok && id_ok {
            kept.push(v);
        }
    }
    let (page_items, next) = page(kept, req.next_token.as_deref(), req.max_results, 100)?;
    let mut out = json!({
        "registryId": r.account_id,
        "repositoryName": repo.as_str(),
        "lifecyclePolicyText": text,
        "status": "COMPLETE",
        "previewResults": page_items,
        "summary": {"expiringImageTotalCount": total},
    });
    if let Some(n) = next {
        out["nextToken"] = json!(n);
    }
    Ok(out)
}
