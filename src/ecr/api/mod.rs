//! ECR's own API (AWS JSON 1.1, `AmazonEC2ContainerRegistry_V20150921.<Op>`): each
//! operation's request and response shapes as the model names them, and the call over the
//! [`Registry`]. The front-end (`api::ecr`) only decodes the body and encodes the answer.
//! Members the model knows and this host does not apply are accepted and said in
//! docs/registry.md; unknown members are refused as the AWS CLI refuses them.

use super::{Digest, EcrError, Reference, Registry, RepoName, meta};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

type Result<T> = std::result::Result<T, EcrError>;

/// The operations served, in the order docs/registry.md lists them.
pub const OPERATIONS: &[&str] = &[
    "GetAuthorizationToken",
    "CreateRepository",
    "DescribeRepositories",
    "DeleteRepository",
    "PutImageTagMutability",
    "ListImages",
    "DescribeImages",
    "BatchGetImage",
    "BatchDeleteImage",
    "BatchCheckLayerAvailability",
    "PutImage",
    "PutLifecyclePolicy",
    "GetLifecyclePolicy",
    "DeleteLifecyclePolicy",
    "StartLifecyclePolicyPreview",
    "GetLifecyclePolicyPreview",
    "InitiateLayerUpload",
    "UploadLayerPart",
    "CompleteLayerUpload",
    "SetRepositoryPolicy",
    "GetRepositoryPolicy",
    "DeleteRepositoryPolicy",
    "GetDownloadUrlForLayer",
    "TagResource",
    "UntagResource",
    "ListTagsForResource",
];

fn decode<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T> {
    let body = if body.is_empty() {
        b"{}" as &[u8]
    } else {
        body
    };
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        EcrError::InvalidParameter(format!("invalid request body: {}: {}", e.path(), e.inner()))
    })
}

fn server(what: &str) -> impl FnOnce(super::RegistryError) -> EcrError {
    let what = what.to_string();
    move |source| EcrError::Server { what, source }
}

/// Runs ECR operation `op` with JSON `body`; the answer as JSON.
pub fn call(r: &Registry, op: &str, body: &[u8], now: u64) -> Result<Value> {
    match op {
        "GetAuthorizationToken" => get_authorization_token(r, decode(body)?, now),
        "CreateRepository" => create_repository(r, decode(body)?),
        "DescribeRepositories" => describe_repositories(r, decode(body)?),
        "DeleteRepository" => delete_repository(r, decode(body)?),
        "PutImageTagMutability" => put_image_tag_mutability(r, decode(body)?),
        "ListImages" => list_images(r, decode(body)?),
        "DescribeImages" => describe_images(r, decode(body)?),
        "BatchGetImage" => batch_get_image(r, decode(body)?),
        "BatchDeleteImage" => batch_delete_image(r, decode(body)?),
        "BatchCheckLayerAvailability" => batch_check_layer_availability(r, decode(body)?),
        "PutImage" => put_image(r, decode(body)?),
        "PutLifecyclePolicy" => put_lifecycle_policy(r, decode(body)?),
        "GetLifecyclePolicy" => get_lifecycle_policy(r, decode(body)?),
        "DeleteLifecyclePolicy" => delete_lifecycle_policy(r, decode(body)?),
        "StartLifecyclePolicyPreview" => start_lifecycle_policy_preview(r, decode(body)?, now),
        "GetLifecyclePolicyPreview" => get_lifecycle_policy_preview(r, decode(body)?),
        "InitiateLayerUpload" => initiate_layer_upload(r, decode(body)?),
        "UploadLayerPart" => upload_layer_part(r, decode(body)?),
        "CompleteLayerUpload" => complete_layer_upload(r, decode(body)?),
        "SetRepositoryPolicy" => set_repository_policy(r, decode(body)?),
        "GetRepositoryPolicy" => get_repository_policy(r, decode(body)?),
        "DeleteRepositoryPolicy" => delete_repository_policy(r, decode(body)?),
        "TagResource" => tag_resource(r, decode(body)?),
        "UntagResource" => untag_resource(r, decode(body)?),
        "ListTagsForResource" => list_tags_for_resource(r, decode(body)?),
        // Needs the address the caller reached: answered by `api::ecr`.
        "GetDownloadUrlForLayer" => {
            get_download_url_for_layer(r, body, &format!("https://{}", r.host()), None, now)
        }
        other => Err(EcrError::UnknownOperation(format!(
            "{other} is not supported by minifargate's ECR API (it serves {}; see \
             docs/registry.md)",
            OPERATIONS.join(", ")
        ))),
    }
}

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
fn tag_resource(r: &Registry, req: TagResourceRequest) -> Result<Value> {
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
fn untag_resource(r: &Registry, req: UntagResourceRequest) -> Result<Value> {
    for k in &req.tag_keys {
        check_tag_key(k)?;
    }
    retag(r, &req.resource_arn, |tags| {
        tags.retain(|t| !req.tag_keys.contains(&t.key));
        Ok(())
    })?;
    Ok(json!({}))
}

fn list_tags_for_resource(r: &Registry, req: ListTagsForResourceRequest) -> Result<Value> {
    let repo = arn_repository(r, &req.resource_arn)?;
    let row = existing(r, repo.as_str())?.1;
    let tags: Value = serde_json::from_str(&row.tags).unwrap_or_else(|_| json!([]));
    Ok(json!({ "tags": tags }))
}

/// `registryId`, when given, must be this registry's account.
fn check_registry(r: &Registry, id: Option<&str>) -> Result<()> {
    match id {
        Some(id) if id != r.account_id => Err(EcrError::InvalidParameter(format!(
            "registryId {id}: this registry is account {}'s",
            r.account_id
        ))),
        _ => Ok(()),
    }
}

fn repo_name(name: &str) -> Result<RepoName> {
    RepoName::parse(name).map_err(|why| {
        EcrError::InvalidParameter(format!(
            "Invalid parameter at 'repositoryName' failed to satisfy constraint: {why}"
        ))
    })
}

/// The repository `name`, which must exist.
fn existing(r: &Registry, name: &str) -> Result<(RepoName, meta::RepositoryRow)> {
    let repo = repo_name(name)?;
    match meta::repository(&r.db(), &repo).map_err(server("read a repository"))? {
        Some(row) => Ok((repo, row)),
        None => Err(EcrError::RepositoryNotFound {
            name: name.into(),
            registry: r.account_id.clone(),
        }),
    }
}

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
pub struct GetAuthorizationTokenRequest {
    #[serde(default)]
    registry_ids: Vec<String>,
}

fn get_authorization_token(
    r: &Registry,
    req: GetAuthorizationTokenRequest,
    now: u64,
) -> Result<Value> {
    for id in &req.registry_ids {
        check_registry(r, Some(id))?;
    }
    let tokens = super::tokens::Tokens::load_or_create(r.dir())
        .map_err(server("read the registry's token key"))?;
    let t = tokens.issue(now);
    Ok(json!({"authorizationData": [{
        "authorizationToken": t.authorization_token,
        "expiresAt": t.expires_at,
        "proxyEndpoint": format!("https://{}", r.host()),
    }]}))
}

#[derive(Deserialize, Serialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct Tag {
    #[serde(rename = "Key")]
    key: String,
    #[serde(rename = "Value", default)]
    value: String,
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
fn check_tags(tags: &[Tag]) -> Result<()> {
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

fn create_repository(r: &Registry, req: CreateRepositoryRequest) -> Result<Value> {
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

/// One page of `items` from `next_token` (the index of its first item, base64).
fn page<T>(
    items: Vec<T>,
    next_token: Option<&str>,
    max_results: Option<i64>,
    default: usize,
) -> Result<(Vec<T>, Option<String>)> {
    let max = match max_results {
        None => default,
        Some(n) if (1..=1000).contains(&n) => n as usize,
        Some(n) => {
            return Err(EcrError::InvalidParameter(format!(
                "Invalid parameter at 'maxResults' failed to satisfy constraint: 'Member must \
                 have value between 1 and 1000' ({n})"
            )));
        }
    };
    let start = match next_token {
        None => 0,
        Some(t) => base64::engine::general_purpose::STANDARD
            .decode(t)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.parse::<usize>().ok())
            .ok_or_else(|| {
                EcrError::InvalidParameter(format!("nextToken {t:?} is not one this registry gave"))
            })?,
    };
    let total = items.len();
    let out: Vec<T> = items.into_iter().skip(start).take(max).collect();
    let next = (start + out.len() < total)
        .then(|| base64::engine::general_purpose::STANDARD.encode((start + out.len()).to_string()));
    Ok((out, next))
}

fn describe_repositories(r: &Registry, req: DescribeRepositoriesRequest) -> Result<Value> {
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

fn delete_repository(r: &Registry, req: DeleteRepositoryRequest) -> Result<Value> {
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

fn put_image_tag_mutability(r: &Registry, req: PutImageTagMutabilityRequest) -> Result<Value> {
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

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ImageFilter {
    tag_status: Option<String>,
    image_status: Option<String>,
}

impl ImageFilter {
    /// Whether image `i` passes (`tagStatus` TAGGED, UNTAGGED or ANY; `imageStatus`: every
    /// image here is ACTIVE, archiving is not served).
    fn admits(&self, i: &meta::ImageRow) -> Result<bool> {
        let tags_ok = match self.tag_status.as_deref() {
            None | Some("ANY") => true,
            Some("TAGGED") => !i.tags.is_empty(),
            Some("UNTAGGED") => i.tags.is_empty(),
            Some(other) => {
                return Err(EcrError::InvalidParameter(format!(
                    "tagStatus {other:?}: one of TAGGED, UNTAGGED, ANY"
                )));
            }
        };
        let status_ok = match self.image_status.as_deref() {
            None | Some("ACTIVE") | Some("ANY") => true,
            Some("ARCHIVED") | Some("ACTIVATING") => false,
            Some(other) => {
                return Err(EcrError::InvalidParameter(format!(
                    "imageStatus {other:?}: one of ACTIVE, ARCHIVED, ACTIVATING, ANY"
                )));
            }
        };
        Ok(tags_ok && status_ok)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ListImagesRequest {
    registry_id: Option<String>,
    repository_name: String,
    next_token: Option<String>,
    max_results: Option<i64>,
    #[serde(default)]
    filter: ImageFilter,
}

fn filtered_images(r: &Registry, repo: &RepoName, f: &ImageFilter) -> Result<Vec<meta::ImageRow>> {
    let all = meta::images(&r.db(), repo).map_err(server("list images"))?;
    let mut out = Vec::new();
    for i in all {
        if f.admits(&i)? {
            out.push(i);
        }
    }
    Ok(out)
}

fn list_images(r: &Registry, req: ListImagesRequest) -> Result<Value> {
    check_registry(r, req.registry_id.as_deref())?;
    let (repo, _) = existing(r, &req.repository_name)?;
    // One id per tag, and one without a tag for an untagged image (as ECR lists them).
    let mut ids = Vec::new();
    for i in filtered_images(r, &repo, &req.filter)? {
        if i.tags.is_empty() {
            ids.push(json!({"imageDigest": i.digest}));
        }
        for t in &i.tags {
            ids.push(json!({"imageDigest": i.digest, "imageTag": t}));
        }
    }
    let (ids, next) = page(ids, req.next_token.as_deref(), req.max_results, 100)?;
    let mut out = json!({"imageIds": ids});
    if let Some(n) = next {
        out["nextToken"] = json!(n);
    }
    Ok(out)
}

#[derive(Deserialize, Serialize, Clone, Debug)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ImageId {
    #[serde(skip_serializing_if = "Option::is_none")]
    image_digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image_tag: Option<String>,
}

/// What an image id names: the manifest's digest, or a failure (ECR's codes).
fn resolve(r: &Registry, repo: &RepoName, id: &ImageId) -> std::result::Result<Digest, Value> {
    let fail = |code: &str, reason: String| json!({"imageId": id, "failureCode": code, "failureReason": reason});
    let by_digest = match &id.image_digest {
        Some(d) => Some(
            Digest::parse(d)
                .map_err(|_| fail("InvalidImageDigest", "Invalid image digest".into()))?,
        ),
        None => None,
    };
    let by_tag = match &id.image_tag {
        Some(t) => {
            if !super::names::tag_ok(t) {
                return Err(fail("InvalidImageTag", "Invalid image tag".into()));
            }
            let d = meta::tag_digest(&r.db(), repo, t)
                .map_err(|e| fail("ImageNotFound", crate::errors::error_chain(&e)))?;
            Some(d.ok_or_else(|| fail("ImageNotFound", "Requested image not found".into()))?)
        }
        None => None,
    };
    let d = match (by_digest, by_tag) {
        (None, None) => {
            return Err(fail(
                "MissingDigestAndTag",
                "Missing image digest and tag".into(),
            ));
        }
        (Some(a), Some(b)) if a != b => {
            return Err(fail(
                "ImageTagDoesNotMatchDigest",
                "Tag does not match digest".into(),
            ));
        }
        (Some(d), _) | (None, Some(d)) => d,
    };
    match meta::manifest_type(&r.db(), repo, &d) {
        Ok(Some(_)) => Ok(d),
        _ => Err(fail("ImageNotFound", "Requested image not found".into())),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DescribeImagesRequest {
    registry_id: Option<String>,
    repository_name: String,
    image_ids: Option<Vec<ImageId>>,
    next_token: Option<String>,
    max_results: Option<i64>,
    #[serde(default)]
    filter: ImageFilter,
}

fn image_detail(r: &Registry, repo: &RepoName, i: &meta::ImageRow) -> Value {
    let mut v = json!({
        "registryId": r.account_id,
        "repositoryName": repo.as_str(),
        "imageDigest": i.digest,
        "imageSizeInBytes": i.image_size,
        "imagePushedAt": i.pushed_at,
        "imageManifestMediaType": i.media_type,
        "imageStatus": "ACTIVE",
    });
    if !i.tags.is_empty() {
        v["imageTags"] = json!(i.tags);
    }
    if let Some(a) = &i.artifact_media_type {
        v["artifactMediaType"] = json!(a);
    }
    if let Some(p) = i.last_pull {
        v["lastRecordedPullTime"] = json!(p);
    }
    v
}

fn describe_images(r: &Registry, req: DescribeImagesRequest) -> Result<Value> {
    check_registry(r, req.registry_id.as_deref())?;
    let (repo, _) = existing(r, &req.repository_name)?;
    if req.image_ids.is_some() && (req.max_results.is_some() || req.next_token.is_some()) {
        return Err(EcrError::InvalidParameter(
            "maxResults and nextToken cannot be used with imageIds".into(),
        ));
    }
    let images = filtered_images(r, &repo, &req.filter)?;
    let details: Vec<Value> = match &req.image_ids {
        Some(ids) => {
            let mut out = Vec::new();
            for id in ids {
                let d = resolve(r, &repo, id).map_err(|f| {
                    EcrError::ImageNotFound(format!(
                        "The image with imageId {} does not exist within the repository with \
                         name '{repo}' in the registry with id '{}' ({})",
                        serde_json::to_string(id).unwrap_or_default(),
                        r.account_id,
                        f["failureReason"].as_str().unwrap_or_default()
                    ))
                })?;
                if let Some(i) = images.iter().find(|i| i.digest == d.as_str()) {
                    out.push(image_detail(r, &repo, i));
                }
            }
            out
        }
        None => images.iter().map(|i| image_detail(r, &repo, i)).collect(),
    };
    let (details, next) = page(details, req.next_token.as_deref(), req.max_results, 100)?;
    let mut out = json!({"imageDetails": details});
    if let Some(n) = next {
        out["nextToken"] = json!(n);
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BatchGetImageRequest {
    registry_id: Option<String>,
    repository_name: String,
    image_ids: Vec<ImageId>,
    accepted_media_types: Option<Vec<String>>,
}

fn batch_get_image(r: &Registry, req: BatchGetImageRequest) -> Result<Value> {
    check_registry(r, req.registry_id.as_deref())?;
    let (repo, _) = existing(r, &req.repository_name)?;
    let (mut images, mut failures) = (Vec::new(), Vec::new());
    for id in &req.image_ids {
        let d = match resolve(r, &repo, id) {
            Ok(d) => d,
            Err(f) => {
                failures.push(f);
                continue;
            }
        };
        let m = r
            .manifest(&repo, &Reference::Digest(d.clone()), false)
            .map_err(server("read a manifest"))?;
        if let Some(accepted) = &req.accepted_media_types
            && !accepted.contains(&m.media_type)
        {
            failures.push(json!({"imageId": id, "failureCode": "ImageNotFound",
                "failureReason": format!("the manifest is {}, not of acceptedMediaTypes", m.media_type)}));
            continue;
        }
        let mut image_id = id.clone();
        image_id.image_digest = Some(d.to_string());
        images.push(json!({
            "registryId": r.account_id,
            "repositoryName": repo.as_str(),
            "imageId": image_id,
            "imageManifest": String::from_utf8_lossy(&m.bytes),
            "imageManifestMediaType": m.media_type,
        }));
    }
    Ok(json!({"images": images, "failures": failures}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BatchDeleteImageRequest {
    registry_id: Option<String>,
    repository_name: String,
    image_ids: Vec<ImageId>,
}

fn batch_delete_image(r: &Registry, req: BatchDeleteImageRequest) -> Result<Value> {
    check_registry(r, req.registry_id.as_deref())?;
    let (repo, _) = existing(r, &req.repository_name)?;
    let (mut deleted, mut failures) = (Vec::new(), Vec::new());
    for id in &req.image_ids {
        let d = match resolve(r, &repo, id) {
            Ok(d) => d,
            Err(f) => {
                failures.push(f);
                continue;
            }
        };
        // By tag: the tag only (the image stays, untagged or under its other tags); by
        // digest alone: the image and all its tags. Ref: ECR API, BatchDeleteImage.
        let reference = match (&id.image_tag, &id.image_digest) {
            (Some(t), _) => Reference::Tag(t.clone()),
            (None, _) => Reference::Digest(d.clone()),
        };
        let tags = meta::images(&r.db(), &repo)
            .map_err(server("list images"))?
            .into_iter()
            .find(|i| i.digest == d.as_str())
            .map(|i| i.tags)
            .unwrap_or_default();
        r.delete_manifest(&repo, &reference)
            .map_err(server("delete an image"))?;
        match reference {
            Reference::Tag(t) => deleted.push(json!({"imageDigest": d.as_str(), "imageTag": t})),
            Reference::Digest(_) if tags.is_empty() => {
                deleted.push(json!({"imageDigest": d.as_str()}))
            }
            Reference::Digest(_) => {
                for t in tags {
                    deleted.push(json!({"imageDigest": d.as_str(), "imageTag": t}));
                }
            }
        }
    }
    if !deleted.is_empty() {
        collect(r);
    }
    Ok(json!({"imageIds": deleted, "failures": failures}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BatchCheckLayerAvailabilityRequest {
    registry_id: Option<String>,
    repository_name: String,
    layer_digests: Vec<String>,
}

fn batch_check_layer_availability(
    r: &Registry,
    req: BatchCheckLayerAvailabilityRequest,
) -> Result<Value> {
    check_registry(r, req.registry_id.as_deref())?;
    let (repo, _) = existing(r, &req.repository_name)?;
    let (mut layers, mut failures) = (Vec::new(), Vec::new());
    for l in &req.layer_digests {
        let Ok(d) = Digest::parse(l) else {
            failures.push(
                json!({"layerDigest": l, "failureCode": "InvalidLayerDigest",
                "failureReason": "Invalid layer digest"}),
            );
            continue;
        };
        match r.blob(&repo, &d) {
            Ok(b) => layers.push(json!({"layerDigest": l, "layerAvailability": "AVAILABLE",
                "layerSize": b.size, "mediaType": "application/octet-stream"})),
            Err(super::RegistryError::BlobUnknown(_)) => failures.push(
                json!({"layerDigest": l, "failureCode": "MissingLayerDigest",
                    "failureReason": "Could not find layer"}),
            ),
            Err(e) => return Err(server("read a layer")(e)),
        }
    }
    Ok(json!({"layers": layers, "failures": failures}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GetDownloadUrlForLayerRequest {
    registry_id: Option<String>,
    repository_name: String,
    layer_digest: String,
}

/// How long a download URL is good for.
pub const DOWNLOAD_URL_SECS: u64 = 3600;

/// GetDownloadUrlForLayer: a URL of the blob on this registry (`base`:
/// `https://<host:port>`), which a client GETs without credentials as it GETs the
/// pre-signed URL ECR answers: it carries its expiry and a signature under the token key
/// (`tokens`; None: a registry without authentication, the URL needs none).
pub fn get_download_url_for_layer(
    r: &Registry,
    body: &[u8],
    base: &str,
    tokens: Option<&super::tokens::Tokens>,
    now: u64,
) -> Result<Value> {
    let req: GetDownloadUrlForLayerRequest = decode(body)?;
    check_registry(r, req.registry_id.as_deref())?;
    let (repo, _) = existing(r, &req.repository_name)?;
    let d = Digest::parse(&req.layer_digest).map_err(|e| {
        EcrError::InvalidParameter(format!(
            "Invalid parameter at 'layerDigest' failed to satisfy constraint: {e}"
        ))
    })?;
    match r.blob(&repo, &d) {
        Ok(_) => {}
        Err(super::RegistryError::BlobUnknown(_)) => {
            return Err(EcrError::LayersNotFound(format!(
                "The specified layer {} does not exist in the repository with name '{}' in the registry with id '{}'",
                d.as_str(),
                repo.as_str(),
                r.account_id
            )));
        }
        Err(e) => return Err(server("read a layer")(e)),
    }
    let mut url = format!("{base}/v2/{}/blobs/{}", repo.as_str(), d.as_str());
    if let Some(t) = tokens {
        let expires = now + DOWNLOAD_URL_SECS;
        url.push_str(&format!(
            "?X-Expires={expires}&X-Signature={}",
            t.sign_blob(repo.as_str(), d.as_str(), expires)
        ));
    }
    Ok(json!({"downloadUrl": url, "layerDigest": d.as_str()}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PutImageRequest {
    registry_id: Option<String>,
    repository_name: String,
    image_manifest: String,
    image_manifest_media_type: Option<String>,
    image_tag: Option<String>,
    image_digest: Option<String>,
}

/// PutImage: a manifest (and tag) pushed through the API, as `aws ecr put-image` retags an
/// image with the manifest BatchGetImage gave. The registry's own checks, with ECR's
/// exception names. Ref: ECR API, PutImage.
fn put_image(r: &Registry, req: PutImageRequest) -> Result<Value> {
    use super::RegistryError as R;
    check_registry(r, req.registry_id.as_deref())?;
    let (repo, _) = existing(r, &req.repository_name)?;
    let bytes = req.image_manifest.as_bytes();
    let computed = Digest::of(bytes);
    if let Some(d) = &req.image_digest
        && d != computed.as_str()
    {
        return Err(EcrError::ImageDigestDoesNotMatch(format!(
            "Provided digest {d} does not match the digest {computed} that Amazon ECR \
             calculated for the image"
        )));
    }
    if let Some(t) = &req.image_tag
        && !super::names::tag_ok(t)
    {
        return Err(EcrError::InvalidParameter(format!(
            "Invalid parameter at 'imageTag' failed to satisfy constraint: {t:?} is not a tag"
        )));
    }
    // Nothing new: the same manifest under the same tag (or untagged, already there).
    let db_tag = match &req.image_tag {
        Some(t) => meta::tag_digest(&r.db(), &repo, t).map_err(server("read a tag"))?,
        None => None,
    };
    let exists = meta::manifest_type(&r.db(), &repo, &computed)
        .map_err(server("read a manifest"))?
        .is_some();
    if exists && (req.image_tag.is_none() || db_tag.as_ref() == Some(&computed)) {
        return Err(EcrError::ImageAlreadyExists(format!(
            "Image with digest '{computed}'{} already exists in the repository with name \
             '{repo}' in registry with id '{}'",
            req.image_tag
                .as_deref()
                .map(|t| format!(" and tag '{t}'"))
                .unwrap_or_default(),
            r.account_id
        )));
    }
    let reference = match &req.image_tag {
        Some(t) => Reference::Tag(t.clone()),
        None => Reference::Digest(computed.clone()),
    };
    let media = req.image_manifest_media_type.as_deref();
    let is_list = |m: &str| m.contains("index") || m.contains("manifest.list");
    let d = r
        .put_manifest(&repo, &reference, media, bytes)
        .map_err(|e| match e {
            R::TagInvalid(_) => EcrError::ImageTagAlreadyExists(format!(
                "The image tag '{}' already exists in the '{repo}' repository and cannot be \
                 overwritten because the repository is immutable.",
                req.image_tag.as_deref().unwrap_or_default()
            )),
            R::ManifestBlobUnknown(m)
                if media.is_some_and(is_list) || m.starts_with("manifest ") =>
            {
                EcrError::ReferencedImagesNotFound(m)
            }
            R::ManifestBlobUnknown(m) => EcrError::LayersNotFound(m),
            R::DigestInvalid(m) | R::ManifestInvalid(m) | R::SizeInvalid(m) | R::Unsupported(m) => {
                EcrError::InvalidParameter(m)
            }
            e => EcrError::Server {
                what: "store the image".into(),
                source: e,
            },
        })?;
    let m = r
        .manifest(&repo, &Reference::Digest(d.clone()), false)
        .map_err(server("read the image back"))?;
    let mut image_id = json!({"imageDigest": d.as_str()});
    if let Some(t) = &req.image_tag {
        image_id["imageTag"] = json!(t);
    }
    Ok(json!({"image": {
        "registryId": r.account_id,
        "repositoryName": repo.as_str(),
        "imageId": image_id,
        "imageManifest": req.image_manifest,
        "imageManifestMediaType": m.media_type,
    }}))
}

fn collect(r: &Registry) {
    r.collect_garbage_logged();
}

fn policy_invalid(e: super::lifecycle::PolicyInvalid) -> EcrError {
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

fn put_lifecycle_policy(r: &Registry, req: PutLifecyclePolicyRequest) -> Result<Value> {
    check_registry(r, req.registry_id.as_deref())?;
    let (repo, _) = existing(r, &req.repository_name)?;
    super::lifecycle::Policy::parse(&req.lifecycle_policy_text).map_err(policy_invalid)?;
    meta::put_lifecycle_policy(&r.db(), &repo, &req.lifecycle_policy_text)
        .map_err(server("store the lifecycle policy"))?;
    Ok(json!({
        "registryId": r.account_id,
        "repositoryName": repo.as_str(),
        "lifecyclePolicyText": req.lifecycle_policy_text,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RepositoryRequest {
    registry_id: Option<String>,
    repository_name: String,
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

fn get_lifecycle_policy(r: &Registry, req: RepositoryRequest) -> Result<Value> {
    check_registry(r, req.registry_id.as_deref())?;
    let (repo, _) = existing(r, &req.repository_name)?;
    let (text, evaluated) = meta::lifecycle_policy(&r.db(), &repo)
        .map_err(server("read the lifecycle policy"))?
        .ok_or_else(|| no_policy(r, &repo))?;
    Ok(policy_json(r, &repo, &text, evaluated))
}

fn delete_lifecycle_policy(r: &Registry, req: RepositoryRequest) -> Result<Value> {
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

fn set_repository_policy(r: &Registry, req: SetRepositoryPolicyRequest) -> Result<Value> {
    check_registry(r, req.registry_id.as_deref())?;
    let (repo, _) = existing(r, &req.repository_name)?;
    super::policy::validate(&req.policy_text).map_err(EcrError::InvalidParameter)?;
    meta::put_repository_policy(&r.db(), &repo, &req.policy_text)
        .map_err(server("store the repository policy"))?;
    Ok(repository_policy_json(r, &repo, &req.policy_text))
}

fn get_repository_policy(r: &Registry, req: RepositoryRequest) -> Result<Value> {
    check_registry(r, req.registry_id.as_deref())?;
    let (repo, _) = existing(r, &req.repository_name)?;
    let text = meta::repository_policy(&r.db(), &repo)
        .map_err(server("read the repository policy"))?
        .ok_or_else(|| no_repository_policy(r, &repo))?;
    Ok(repository_policy_json(r, &repo, &text))
}

fn delete_repository_policy(r: &Registry, req: RepositoryRequest) -> Result<Value> {
    check_registry(r, req.registry_id.as_deref())?;
    let (repo, _) = existing(r, &req.repository_name)?;
    let db = r.db();
    let text = meta::repository_policy(&db, &repo)
        .map_err(server("read the repository policy"))?
        .ok_or_else(|| no_repository_policy(r, &repo))?;
    meta::delete_repository_policy(&db, &repo).map_err(server("delete the repository policy"))?;
    Ok(repository_policy_json(r, &repo, &text))
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
fn start_lifecycle_policy_preview(
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
    let policy = super::lifecycle::Policy::parse(&text).map_err(policy_invalid)?;
    let images = r.lifecycle_images(&repo).map_err(server("list images"))?;
    let expiring = super::lifecycle::evaluate(&policy, &images, now as f64);
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

fn get_lifecycle_policy_preview(
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

/// The part size InitiateLayerUpload answers, and the least a part but the last may be
/// (ECR's LayerPartTooSmallException: "Layer parts must be at least 5 MiB in size").
const PART_SIZE: u64 = 10 * 1024 * 1024;
const PART_MIN: u64 = 5 * 1024 * 1024;

fn initiate_layer_upload(r: &Registry, req: RepositoryRequest) -> Result<Value> {
    check_registry(r, req.registry_id.as_deref())?;
    let (repo, _) = existing(r, &req.repository_name)?;
    let id = r.start_upload(&repo).map_err(server("start an upload"))?;
    r.layer_parts
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id.clone(), Vec::new());
    Ok(json!({"uploadId": id, "partSize": PART_SIZE}))
}

fn upload_not_found(id: &str, repo: &RepoName, r: &Registry) -> EcrError {
    EcrError::UploadNotFound(format!(
        "Upload with id '{id}' is not found in the repository with name '{repo}' in the \
         registry with id '{}'",
        r.account_id
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UploadLayerPartRequest {
    registry_id: Option<String>,
    repository_name: String,
    upload_id: String,
    part_first_byte: u64,
    part_last_byte: u64,
    layer_part_blob: String,
}

fn upload_layer_part(r: &Registry, req: UploadLayerPartRequest) -> Result<Value> {
    use std::io::Write;
    check_registry(r, req.registry_id.as_deref())?;
    let (repo, _) = existing(r, &req.repository_name)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&req.layer_part_blob)
        .map_err(|e| EcrError::InvalidParameter(format!("layerPartBlob is not base64: {e}")))?;
    let (mut f, size) = r
        .upload_writer(&repo, &req.upload_id, Some(req.part_first_byte))
        .map_err(|e| match e {
            super::RegistryError::BlobUploadUnknown(_) => {
                upload_not_found(&req.upload_id, &repo, r)
            }
            super::RegistryError::RangeInvalid { size, .. } => EcrError::InvalidLayerPart(format!(
                "The layer part starts at byte {}, the upload has {size} bytes \
                 (lastValidByteReceived {})",
                req.part_first_byte,
                size as i64 - 1
            )),
            e => EcrError::Server {
                what: "open the upload".into(),
                source: e,
            },
        })?;
    let expected = req
        .part_last_byte
        .checked_sub(req.part_first_byte)
        .map(|n| n + 1);
    if expected != Some(bytes.len() as u64) {
        return Err(EcrError::InvalidLayerPart(format!(
            "partFirstByte {} and partLastByte {} span {expected:?} bytes; the part has {} \
             (lastValidByteReceived {})",
            req.part_first_byte,
            req.part_last_byte,
            bytes.len(),
            size as i64 - 1
        )));
    }
    f.write_all(&bytes)
        .and_then(|()| f.flush())
        .map_err(|source| EcrError::Server {
            what: "write the layer part".into(),
            source: super::RegistryError::Storage {
                what: format!("append to upload {}", req.upload_id),
                source,
            },
        })?;
    r.layer_parts
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(req.upload_id.clone())
        .or_default()
        .push(bytes.len() as u64);
    Ok(json!({
        "registryId": r.account_id,
        "repositoryName": repo.as_str(),
        "uploadId": req.upload_id,
        "lastByteReceived": req.part_last_byte,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CompleteLayerUploadRequest {
    registry_id: Option<String>,
    repository_name: String,
    upload_id: String,
    layer_digests: Vec<String>,
}

fn complete_layer_upload(r: &Registry, req: CompleteLayerUploadRequest) -> Result<Value> {
    check_registry(r, req.registry_id.as_deref())?;
    let (repo, _) = existing(r, &req.repository_name)?;
    let [digest] = req.layer_digests.as_slice() else {
        return Err(EcrError::InvalidParameter(format!(
            "layerDigests: one digest, the layer's ({} given)",
            req.layer_digests.len()
        )));
    };
    let size = r
        .upload_size(&repo, &req.upload_id)
        .map_err(|_| upload_not_found(&req.upload_id, &repo, r))?;
    let d = Digest::parse(digest).map_err(|_| {
        EcrError::InvalidLayer(format!("layer digest {digest:?} is not a sha256 digest"))
    })?;
    if size == 0 {
        return Err(EcrError::EmptyUpload(format!(
            "The upload {} has no layer part",
            req.upload_id
        )));
    }
    let parts = r
        .layer_parts
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&req.upload_id)
        .cloned()
        .unwrap_or_default();
    if let Some((i, n)) = parts
        .iter()
        .enumerate()
        .take(parts.len().saturating_sub(1))
        .find(|(_, n)| **n < PART_MIN)
    {
        return Err(EcrError::LayerPartTooSmall(format!(
            "Layer parts must be at least 5 MiB in size: part {} has {n} bytes",
            i + 1
        )));
    }
    if r.blob(&repo, &d).is_ok() {
        let _ = r.cancel_upload(&repo, &req.upload_id);
        return Err(EcrError::LayerAlreadyExists(format!(
            "The layer '{d}' already exists in the repository with name '{repo}' in the \
             registry with id '{}'",
            r.account_id
        )));
    }
    r.finish_upload(&repo, &req.upload_id, &d)
        .map_err(|e| match e {
            super::RegistryError::DigestInvalid(m) => EcrError::InvalidLayer(format!(
                "The layer digest calculation performed by Amazon ECR upon receipt of the image \
             layer does not match the digest specified: {m}"
            )),
            e => EcrError::Server {
                what: "complete the layer upload".into(),
                source: e,
            },
        })?;
    r.layer_parts
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&req.upload_id);
    Ok(json!({
        "registryId": r.account_id,
        "repositoryName": repo.as_str(),
        "uploadId": req.upload_id,
        "layerDigest": d.as_str(),
    }))
}

/// botocore's ECR service model (the test venv's, as the AWS CLI carries it).
#[cfg(test)]
pub(crate) fn service_model() -> Value {
    crate::ecs::botocore_model::model_of("ecr", "2015-09-21")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> (tempfile::TempDir, Registry) {
        let dir = tempfile::tempdir().unwrap();
        let r = Registry::open(dir.path(), "123456789012", "eu-west-1").unwrap();
        (dir, r)
    }

    #[test]
    fn repositories_page_by_100_and_name_errors_are_ecr_s() {
        let (_d, r) = registry();
        for i in 0..101 {
            let body = format!(r#"{{"repositoryName":"repo-{i:03}"}}"#);
            call(&r, "CreateRepository", body.as_bytes(), 0).unwrap();
        }
        let first = call(&r, "DescribeRepositories", b"{}", 0).unwrap();
        assert_eq!(first["repositories"].as_array().unwrap().len(), 100);
        assert_eq!(
            first["repositories"][0]["repositoryUri"],
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com/repo-000"
        );
        let token = first["nextToken"].as_str().unwrap();
        let body = format!(r#"{{"nextToken":"{token}"}}"#);
        let rest = call(&r, "DescribeRepositories", body.as_bytes(), 0).unwrap();
        assert_eq!(rest["repositories"][0]["repositoryName"], "repo-100");
        assert!(rest.get("nextToken").is_none());
        for (body, name) in [
            (
                r#"{"repositoryName":"repo-000"}"#,
                "RepositoryAlreadyExistsException",
            ),
            (r#"{"repositoryName":"UPPER"}"#, "InvalidParameterException"),
            (
                r#"{"repositoryName":"ok-name","imageTagMutability":"SOMETIMES"}"#,
                "InvalidParameterException",
            ),
            (
                r#"{"repositoryName":"ok-name","unknownMember":1}"#,
                "InvalidParameterException",
            ),
        ] {
            let e = call(&r, "CreateRepository", body.as_bytes(), 0).unwrap_err();
            assert_eq!(e.name(), name, "{body}: {e}");
        }
        let e = call(&r, "DeleteRepository", br#"{"repositoryName":"nope-1"}"#, 0).unwrap_err();
        assert_eq!(e.name(), "RepositoryNotFoundException");
        let e = call(&r, "StartImageScan", b"{}", 0).unwrap_err();
        assert_eq!(e.name(), "UnknownOperationException");
        let e = call(&r, "DescribeRepositories", br#"{"maxResults":1001}"#, 0).unwrap_err();
        assert_eq!(e.name(), "InvalidParameterException");
    }

    #[test]
    fn the_layer_upload_operations_with_ecr_s_errors() {
        let (_d, r) = registry();
        call(&r, "CreateRepository", br#"{"repositoryName":"lay/er"}"#, 0).unwrap();
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let start = || {
            let v = call(
                &r,
                "InitiateLayerUpload",
                br#"{"repositoryName":"lay/er"}"#,
                0,
            )
            .unwrap();
            assert_eq!(v["partSize"], 10 * 1024 * 1024);
            v["uploadId"].as_str().unwrap().to_string()
        };
        let part = |id: &str, first: u64, bytes: &[u8]| {
            let body = json!({"repositoryName": "lay/er", "uploadId": id, "partFirstByte": first,
                "partLastByte": first + bytes.len() as u64 - 1, "layerPartBlob": b64(bytes)});
            call(&r, "UploadLayerPart", body.to_string().as_bytes(), 0)
        };
        let complete = |id: &str, d: &str| {
            let body = json!({"repositoryName": "lay/er", "uploadId": id, "layerDigests": [d]});
            call(&r, "CompleteLayerUpload", body.to_string().as_bytes(), 0)
        };
        let layer = b"a layer in two parts";
        let d = Digest::of(layer).to_string();
        let id = start();
        assert_eq!(part(&id, 0, &layer[..2]).unwrap()["lastByteReceived"], 1);
        // Out of order: the next part must start at byte 2.
        let e = part(&id, 5, &layer[5..]).unwrap_err();
        assert_eq!(e.name(), "InvalidLayerPartException", "{e}");
        part(&id, 2, &layer[2..]).unwrap();
        // The first part was under 5 MiB and not the last.
        let e = complete(&id, &d).unwrap_err();
        assert_eq!(e.name(), "LayerPartTooSmallException", "{e}");

        let id = start();
        part(&id, 0, layer).unwrap();
        let wrong = Digest::of(b"other").to_string();
        assert_eq!(
            complete(&id, &wrong).unwrap_err().name(),
            "InvalidLayerException"
        );
        let id = start();
        part(&id, 0, layer).unwrap();
        assert_eq!(complete(&id, &d).unwrap()["layerDigest"], d.as_str());
        let avail = call(
            &r,
            "BatchCheckLayerAvailability",
            json!({"repositoryName": "lay/er", "layerDigests": [d]})
                .to_string()
                .as_bytes(),
            0,
        )
        .unwrap();
        assert_eq!(avail["layers"][0]["layerAvailability"], "AVAILABLE");
        let id = start();
        part(&id, 0, layer).unwrap();
        assert_eq!(
            complete(&id, &d).unwrap_err().name(),
            "LayerAlreadyExistsException"
        );
        let id = start();
        assert_eq!(
            complete(&id, &d).unwrap_err().name(),
            "EmptyUploadException"
        );
        let gone = "00000000-0000-4000-8000-000000000000";
        assert_eq!(
            part(gone, 0, layer).unwrap_err().name(),
            "UploadNotFoundException"
        );
        assert_eq!(
            complete(gone, &d).unwrap_err().name(),
            "UploadNotFoundException"
        );
    }

    #[test]
    fn every_operation_is_the_model_s_and_its_errors_are_declared() {
        let m = service_model();
        for op in OPERATIONS {
            assert!(
                m["operations"][op].is_object(),
                "{op} is not in ECR's model"
            );
        }
        // Each exception name EcrError answers is a shape of the model.
        for name in [
            "InvalidParameterException",
            "RepositoryNotFoundException",
            "RepositoryAlreadyExistsException",
            "RepositoryNotEmptyException",
            "ImageNotFoundException",
            "ImageAlreadyExistsException",
            "ImageTagAlreadyExistsException",
            "ImageDigestDoesNotMatchException",
            "LayersNotFoundException",
            "ReferencedImagesNotFoundException",
            "LifecyclePolicyNotFoundException",
            "RepositoryPolicyNotFoundException",
            "LifecyclePolicyPreviewNotFoundException",
            "UploadNotFoundException",
            "InvalidLayerPartException",
            "LayerPartTooSmallException",
            "LayerAlreadyExistsException",
            "InvalidLayerException",
            "EmptyUploadException",
            "ServerException",
        ] {
            assert!(
                m["shapes"][name]["exception"].as_bool() == Some(true),
                "{name}"
            );
        }
    }
}
