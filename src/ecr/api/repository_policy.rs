//! The repository policy operations: Set/Get/DeleteRepositoryPolicy (the policy is checked
//! by `ecr::policy` and recorded).

use super::{RepositoryRequest, Result, check_registry, existing, server};
use crate::ecr::{EcrError, Registry, RepoName, meta};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SetRepositoryPolicyRequest {
    registry_id: Option<String>,
    repository_name: String,
    policy_text: String,
    /// ECR's guard against a policy that locks the caller out: nothing here can (a token
    /// does everything whatever the policy), so it changes nothing.
    #[allow(dead_code)]
    force: Option<bool>,
}

fn repository_policy_json(r: &Registry, repo: &RepoName, text: &str) -> Value {
    json!({
        "registryId": r.account_id,
        "repositoryName": repo.as_str(),
        "policyText": text,
    })
}

fn no_repository_policy(r: &Registry, repo: &RepoName) -> EcrError {
    EcrError::RepositoryPolicyNotFound {
        name: repo.as_str().to_string(),
        registry: r.account_id.clone(),
    }
}

pub(super) fn set_repository_policy(
    r: &Registry,
    req: SetRepositoryPolicyRequest,
) -> Result<Value> {
    check_registry(r, req.registry_id.as_deref())?;
    let (repo, _) = existing(r, &req.repository_name)?;
    crate::ecr::policy::validate(&req.policy_text).map_err(EcrError::InvalidParameter)?;
    meta::put_repository_policy(&r.db(), &repo, &req.policy_text)
        .map_err(server("store the repository policy"))?;
    Ok(repository_policy_json(r, &repo, &req.policy_text))
}

pub(super) fn get_repository_policy(r: &Registry, req: RepositoryRequest) -> Result<Value> {
    check_registry(r, req.registry_id.as_deref())?;
    let (repo, _) = existing(r, &req.repository_name)?;
    let text = meta::repository_policy(&r.db(), &repo)
        .map_err(server("read the repository policy"))?
        .ok_or_else(|| no_repository_policy(r, &repo))?;
    Ok(repository_policy_json(r, &repo, &text))
}

pub(super) fn delete_repository_policy(r: &Registry, req: RepositoryRequest) -> Result<Value> {
    check_registry(r, req.registry_id.as_deref())?;
    let (repo, _) = existing(r, &req.repository_name)?;
    let db = r.db();
    let text = meta::repository_policy(&db, &repo)
        .map_err(server("read the repository policy"))?
        .ok_or_else(|| no_repository_policy(r, &repo))?;
    meta::delete_repository_policy(&db, &repo).map_err(server("delete the repository policy"))?;
    Ok(repository_policy_json(r, &repo, &text))
}
