//! The layer operations: BatchCheckLayerAvailability, GetDownloadUrlForLayer, and the
//! upload in parts (InitiateLayerUpload, UploadLayerPart, CompleteLayerUpload).

use super::{RepositoryRequest, Result, check_registry, decode, existing, server};
use crate::ecr::{Digest, EcrError, Registry, RepoName};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BatchCheckLayerAvailabilityRequest {
    registry_id: Option<String>,
    repository_name: String,
    layer_digests: Vec<String>,
}

pub(super) fn batch_check_layer_availability(
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
            Err(crate::ecr::RegistryError::BlobUnknown(_)) => failures.push(
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
    tokens: Option<&crate::ecr::tokens::Tokens>,
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
        Err(crate::ecr::RegistryError::BlobUnknown(_)) => {
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

/// The part size InitiateLayerUpload answers, and the least a part but the last may be
/// (ECR's LayerPartTooSmallException: "Layer parts must be at least 5 MiB in size").
const PART_SIZE: u64 = 10 * 1024 * 1024;
const PART_MIN: u64 = 5 * 1024 * 1024;

pub(super) fn initiate_layer_upload(r: &Registry, req: RepositoryRequest) -> Result<Value> {
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

pub(super) fn upload_layer_part(r: &Registry, req: UploadLayerPartRequest) -> Result<Value> {
    use std::io::Write;
    check_registry(r, req.registry_id.as_deref())?;
    let (repo, _) = existing(r, &req.repository_name)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&req.layer_part_blob)
        .map_err(|e| EcrError::InvalidParameter(format!("layerPartBlob is not base64: {e}")))?;
    let (mut f, size) = r
        .upload_writer(&repo, &req.upload_id, Some(req.part_first_byte))
        .map_err(|e| match e {
            crate::ecr::RegistryError::BlobUploadUnknown(_) => {
                upload_not_found(&req.upload_id, &repo, r)
            }
            crate::ecr::RegistryError::RangeInvalid { size, .. } => {
                EcrError::InvalidLayerPart(format!(
                    "The layer part starts at byte {}, the upload has {size} bytes \
                 (lastValidByteReceived {})",
                    req.part_first_byte,
                    size as i64 - 1
                ))
            }
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
            source: crate::ecr::RegistryError::Storage {
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

pub(super) fn complete_layer_upload(
    r: &Registry,
    req: CompleteLayerUploadRequest,
) -> Result<Value> {
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
            crate::ecr::RegistryError::DigestInvalid(m) => EcrError::InvalidLayer(format!(
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
