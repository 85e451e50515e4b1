//! The image operations: ListImages, DescribeImages, BatchGetImage, BatchDeleteImage and
//! PutImage, and the image ids they take (by digest or tag, with ECR's failure codes).

use super::{Result, check_registry, collect, existing, page, server};
use crate::ecr::{Digest, EcrError, Reference, Registry, RepoName, meta};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

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

pub(super) fn list_images(r: &Registry, req: ListImagesRequest) -> Result<Value> {
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
    pub(super) image_digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) image_tag: Option<String>,
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
            if !crate::ecr::names::tag_ok(t) {
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

pub(super) fn describe_images(r: &Registry, req: DescribeImagesRequest) -> Result<Value> {
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

pub(super) fn batch_get_image(r: &Registry, req: BatchGetImageRequest) -> Result<Value> {
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

pub(super) fn batch_delete_image(r: &Registry, req: BatchDeleteImageRequest) -> Result<Value> {
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
pub(super) fn put_image(r: &Registry, req: PutImageRequest) -> Result<Value> {
    use crate::ecr::RegistryError as R;
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
        && !crate::ecr::names::tag_ok(t)
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
