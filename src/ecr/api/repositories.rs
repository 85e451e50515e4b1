//! CreateRepository, DescribeRepositories, DeleteRepository and PutImageTagMutability: the
//! repository rows, their settings' rules (tag mutability and its exclusion filters) and JSON.

use super::tags::{Tag, check_tags};
use super::{Result, check_registry, collect, existing, page, repo_name, server};
use crate::ecr::{EcrError, Registry, meta};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

fn repository_json(r: &Registry, row: &meta::RepositoryRow) -> Value {
    let mut enc = json!({"encryptionType": row.encryption_type});
    if let Some(k) = &row.kms_key {
        enc["kmsKey"] = json!(k);
    }
    let mut out = json!({
        "repositoryArn": r.repository_arn(&row.name),
        "registryId": r.account_id,
        "repositoryName": row.name,
        "repositoryUri": r.repository_uri(&row.name),
        "createdAt": row.created_at,
        "imageTagMutability": row.tag_mutability,
        "imageScanningConfiguration": {"scanOnPush": row.scan_on_push},
        "encryptionConfiguration": enc,
    });
    if let Some(f) = filters_json(row.tag_mutability_exclusion_filters.as_deref()) {
        out["imageTagMutabilityExclusionFilters"] = f;
    }
    out
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ScanningConfiguration {
    #[serde(default)]
    scan_on_push: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EncryptionConfiguration {
    encryption_type: String,
    kms_key: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateRepositoryRequest {
    registry_id: Option<String>,
    repository_name: String,
    #[serde(default)]
    tags: Vec<Tag>,
    image_tag_mutability: Option<String>,
    image_tag_mutability_exclusion_filters: Option<Vec<ExclusionFilter>>,
    image_scanning_configuration: Option<ScanningConfiguration>,
    encryption_configuration: Option<EncryptionConfiguration>,
}

/// One of `imageTagMutabilityExclusionFilters` (the model's
/// `ImageTagMutabilityExclusionFilter`).
#[derive(Deserialize, Serialize, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExclusionFilter {
    filter_type: String,
    filter: String,
}

/// The most exclusion filters a repository has (the model's list `max`).
const MAX_EXCLUSION_FILTERS: usize = 5;

/// Tag mutability `m` with its exclusion filters, validated as the model bounds them
/// (`ImageTagMutabilityExclusionFilters`: 1 to 5 filters; `filterType` WILDCARD; `filter`
/// 1 to 128 characters of `^[0-9a-zA-Z._*-]{1,128}$`): the mode and the filters as
/// stored (JSON, `None` for MUTABLE and IMMUTABLE). Filters belong to the
/// `*_WITH_EXCLUSION` modes, which need at least one.
fn mutability(m: &str, filters: &Option<Vec<ExclusionFilter>>) -> Result<(String, Option<String>)> {
    let at = "Invalid parameter at 'imageTagMutabilityExclusionFilters' failed to satisfy \
              constraint:";
    match m {
        "MUTABLE" | "IMMUTABLE" if filters.is_none() => Ok((m.to_string(), None)),
        "MUTABLE" | "IMMUTABLE" => Err(EcrError::InvalidParameter(format!(
            "imageTagMutabilityExclusionFilters are for IMMUTABLE_WITH_EXCLUSION and \
             MUTABLE_WITH_EXCLUSION, not {m}"
        ))),
        "IMMUTABLE_WITH_EXCLUSION" | "MUTABLE_WITH_EXCLUSION" => {
            let fs = filters.as_deref().unwrap_or_default();
            if fs.is_empty() {
                return Err(EcrError::InvalidParameter(format!(
                    "imageTagMutability {m} needs imageTagMutabilityExclusionFilters (1 to \
                     {MAX_EXCLUSION_FILTERS} filters)"
                )));
            }
            if fs.len() > MAX_EXCLUSION_FILTERS {
                return Err(EcrError::InvalidParameter(format!(
                    "{at} 'Member must have length less than or equal to \
                     {MAX_EXCLUSION_FILTERS}' ({} filters)",
                    fs.len()
                )));
            }
            for (i, f) in fs.iter().enumerate() {
                if f.filter_type != "WILDCARD" {
                    return Err(EcrError::InvalidParameter(format!(
                        "Invalid parameter at 'imageTagMutabilityExclusionFilters.{}.member.\
                         filterType' failed to satisfy constraint: 'Member must satisfy enum \
                         value set: [WILDCARD]' ({:?})",
                        i + 1,
                        f.filter_type
                    )));
                }
                let ok = (1..=128).contains(&f.filter.len())
                    && f.filter
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._*-".contains(&b));
                if !ok {
                    return Err(EcrError::InvalidParameter(format!(
                        "Invalid parameter at 'imageTagMutabilityExclusionFilters.{}.member.\
                         filter' failed to satisfy constraint: 'Member must satisfy regular \
                         expression pattern: ^[0-9a-zA-Z._*-]{{1,128}}$' ({:?})",
                        i + 1,
                        f.filter
                    )));
                }
            }
            let text = serde_json::to_string(fs).unwrap_or_else(|_| "[]".into());
            Ok((m.to_string(), Some(text)))
        }
        other => Err(EcrError::InvalidParameter(format!(
            "Invalid parameter at 'imageTagMutability' failed to satisfy constraint: 'Member \
             must satisfy enum value set: [MUTABLE, IMMUTABLE, IMMUTABLE_WITH_EXCLUSION, \
             MUTABLE_WITH_EXCLUSION]' ({other:?})"
        ))),
    }
}

/// The stored filters as the API answers them.
fn filters_json(stored: Option<&str>) -> Option<Value> {
    stored.and_then(|t| serde_json::from_str(t).ok())
}

pub(super) fn create_repository(r: &Registry, req: CreateRepositoryRequest) -> Result<Value> {
    check_registry(r, req.registry_id.as_deref())?;
    let repo = repo_name(&req.repository_name)?;
    let (tag_mutability, tag_mutability_exclusion_filters) = mutability(
        req.image_tag_mutability.as_deref().unwrap_or("MUTABLE"),
        &req.image_tag_mutability_exclusion_filters,
    )?;
    let (encryption_type, kms_key) = match req.encryption_configuration {
        None => ("AES256".to_string(), None),
        Some(e) => match e.encryption_type.as_str() {
            "AES256" if e.kms_key.is_none() => ("AES256".to_string(), None),
            "AES256" => {
                return Err(EcrError::InvalidParameter(
                    "kmsKey is for encryptionType KMS".into(),
                ));
            }
            "KMS" | "KMS_DSSE" => (e.encryption_type.clone(), e.kms_key.clone()),
            other => {
                return Err(EcrError::InvalidParameter(format!(
                    "encryptionType {other:?}: one of AES256, KMS, KMS_DSSE"
                )));
            }
        },
    };
    check_tags(&req.tags)?;
    let row = meta::RepositoryRow {
        name: repo.as_str().to_string(),
        created_at: meta::now(),
        tag_mutability,
        scan_on_push: req
            .image_scanning_configuration
            .is_some_and(|c| c.scan_on_push),
        encryption_type,
        kms_key,
        tags: serde_json::to_string(&req.tags).unwrap_or_else(|_| "[]".into()),
        tag_mutability_exclusion_filters,
    };
    if !meta::insert_repository(&r.db(), &row).map_err(server("create a repository"))? {
        return Err(EcrError::RepositoryAlreadyExists {
            name: row.name,
            registry: r.account_id.clone(),
        });
    }
    Ok(json!({"repository": repository_json(r, &row)}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DescribeRepositoriesRequest {
    registry_id: Option<String>,
    repository_names: Option<Vec<String>>,
    next_token: Option<String>,
    max_results: Option<i64>,
}

pub(super) fn describe_repositories(
    r: &Registry,
    req: DescribeRepositoriesRequest,
) -> Result<Value> {
    check_registry(r, req.registry_id.as_deref())?;
    let rows = match &req.repository_names {
        Some(names) => {
            if req.next_token.is_some() || req.max_results.is_some() {
                return Err(EcrError::InvalidParameter(
                    "maxResults and nextToken cannot be used with repositoryNames".into(),
                ));
            }
            names
                .iter()
                .map(|n| existing(r, n).map(|(_, row)| row))
                .collect::<Result<Vec<_>>>()?
        }
        None => meta::repositories(&r.db()).map_err(server("list repositories"))?,
    };
    // Ref: the model's maxResults: "up to 100 results and a nextToken" when not given.
    let (rows, next) = page(rows, req.next_token.as_deref(), req.max_results, 100)?;
    let repos: Vec<Value> = rows.iter().map(|row| repository_json(r, row)).collect();
    let mut out = json!({"repositories": repos});
    if let Some(n) = next {
        out["nextToken"] = json!(n);
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeleteRepositoryRequest {
    registry_id: Option<String>,
    repository_name: String,
    #[serde(default)]
    force: bool,
}

pub(super) fn delete_repository(r: &Registry, req: DeleteRepositoryRequest) -> Result<Value> {
    check_registry(r, req.registry_id.as_deref())?;
    let (repo, row) = existing(r, &req.repository_name)?;
    let images = meta::images(&r.db(), &repo).map_err(server("list images"))?;
    if !images.is_empty() && !req.force {
        return Err(EcrError::RepositoryNotEmpty {
            name: row.name,
            registry: r.account_id.clone(),
        });
    }
    meta::delete_repository(&mut r.db(), &repo).map_err(server("delete a repository"))?;
    collect(r);
    Ok(json!({"repository": repository_json(r, &row)}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PutImageTagMutabilityRequest {
    registry_id: Option<String>,
    repository_name: String,
    image_tag_mutability: String,
    image_tag_mutability_exclusion_filters: Option<Vec<ExclusionFilter>>,
}

pub(super) fn put_image_tag_mutability(
    r: &Registry,
    req: PutImageTagMutabilityRequest,
) -> Result<Value> {
    check_registry(r, req.registry_id.as_deref())?;
    let (m, filters) = mutability(
        &req.image_tag_mutability,
        &req.image_tag_mutability_exclusion_filters,
    )?;
    let (repo, _) = existing(r, &req.repository_name)?;
    meta::set_tag_mutability(&r.db(), &repo, &m, filters.as_deref())
        .map_err(server("set tag mutability"))?;
    let mut out = json!({
        "registryId": r.account_id,
        "repositoryName": repo.as_str(),
        "imageTagMutability": m,
    });
    if let Some(f) = filters_json(filters.as_deref()) {
        out["imageTagMutabilityExclusionFilters"] = f;
    }
    Ok(out)
}
