//! ECR's own API (AWS JSON 1.1, `AmazonEC2ContainerRegistry_V20150921.<Op>`): each
//! operation's request and response shapes as the model names them, and the call over the
//! [`Registry`]. The front-end (`api::ecr`) only decodes the body and encodes the answer.
//! Members the model knows and this host does not apply are accepted and said in
//! docs/registry.md; unknown members are refused as the AWS CLI refuses them.
//! One file per family of operations; this file holds the dispatch and what all of them
//! share (the request body's decoding, the repository a request names, paging).

mod authorization;
mod images;
mod layers;
mod lifecycle_policy;
mod repositories;
mod repository_policy;
mod tags;

pub use layers::get_download_url_for_layer;

use authorization::get_authorization_token;
use images::{batch_delete_image, batch_get_image, describe_images, list_images, put_image};
use layers::{
    batch_check_layer_availability, complete_layer_upload, initiate_layer_upload, upload_layer_part,
};
use lifecycle_policy::{
    delete_lifecycle_policy, get_lifecycle_policy, get_lifecycle_policy_preview,
    put_lifecycle_policy, start_lifecycle_policy_preview,
};
use repositories::{
    create_repository, delete_repository, describe_repositories, put_image_tag_mutability,
};
use repository_policy::{delete_repository_policy, get_repository_policy, set_repository_policy};
use tags::{list_tags_for_resource, tag_resource, untag_resource};

use super::{EcrError, Registry, RepoName, meta};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;

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

fn collect(r: &Registry) {
    r.collect_garbage_logged();
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RepositoryRequest {
    registry_id: Option<String>,
    repository_name: String,
}

/// botocore's ECR service model (the test venv's, as the AWS CLI carries it).
#[cfg(test)]
pub(crate) fn service_model() -> Value {
    crate::ecs::botocore_model::model_of("ecr", "2015-09-21")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ecr::Digest;
    use serde_json::json;

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
