//! Tags: TagResource, UntagResource, ListTagsForResource for every taggable resource
//! (clusters, task definitions, tasks, services), and ECS's tag rules, which RunTask and
//! CreateService apply too.

use super::names::{self, task_id};
use super::{Ecs, EcsError, EcsResult};
use crate::store::{Resource, Store};
use serde::{Deserialize, Serialize};

/// One ECS resource tag (kept by the store, which has the type).
pub use crate::store::Tag;

/// Why a set of tags breaks ECS's rules.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TagRule(pub String);

/// ECS tag limits. Ref: ecs.json `Tag` (key 1-128, value 0-256), `Tags` (max 50);
/// the `aws:` prefix is reserved for AWS.
pub fn check_tags(tags: &[Tag]) -> Result<(), TagRule> {
    let rule = |why: String| Err(TagRule(why));
    if tags.len() > 50 {
        return rule(format!("{} tags given, at most 50 are allowed", tags.len()));
    }
    for t in tags {
        if t.key.is_empty() || t.key.chars().count() > 128 {
            return rule(format!("tag key {:?} must be 1 to 128 characters", t.key));
        }
        if t.value.chars().count() > 256 {
            return rule(format!(
                "the value of tag {:?} is longer than 256 characters",
                t.key
            ));
        }
        if t.key.to_ascii_lowercase().starts_with("aws:") {
            return rule(format!(
                "tag key {:?}: the aws: prefix is reserved for AWS use",
                t.key
            ));
        }
    }
    Ok(())
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TagResourceRequest {
    pub resource_arn: String,
    #[serde(default)]
    pub tags: Vec<Tag>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UntagResourceRequest {
    pub resource_arn: String,
    #[serde(default)]
    pub tag_keys: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListTagsForResourceRequest {
    pub resource_arn: String,
}

#[derive(Debug, Serialize)]
pub struct ListTagsForResourceResponse {
    pub tags: Vec<Tag>,
}

/// The empty response of TagResource and UntagResource.
#[derive(Debug, Serialize)]
pub struct Empty {}

/// ECS's tag rules, as the exception ECS answers with.
pub fn checked_tags(tags: &[Tag]) -> EcsResult<()> {
    check_tags(tags).map_err(|e| EcsError::invalid(e.0))
}

/// The resource a tagging request names by ARN.
pub fn resource_of(arn: &str) -> EcsResult<Resource> {
    let bad = || {
        EcsError::invalid(format!(
            "resourceArn {arn:?}: not the ARN of a cluster, task definition, task or service"
        ))
    };
    let (_, rest) = arn
        .strip_prefix("arn:")
        .and_then(|a| a.split_once(":ecs:"))
        .ok_or_else(bad)?;
    // <region>:<account>:<type>/<…>
    let resource = rest.splitn(3, ':').nth(2).ok_or_else(bad)?;
    let (kind, path) = resource.split_once('/').ok_or_else(bad)?;
    let parts: Vec<&str> = path.split('/').collect();
    Ok(match (kind, parts.as_slice()) {
        ("cluster", [name]) => Resource::Cluster(name.to_string()),
        ("task-definition", [fr]) => {
            let (f, r) = fr.rsplit_once(':').ok_or_else(bad)?;
            Resource::TaskDefinition(f.to_string(), r.parse().map_err(|_| bad())?)
        }
        ("task", [_, id]) | ("task", [id]) => Resource::Task(task_id(id).to_string()),
        ("service", [cluster, name]) => Resource::Service {
            cluster: cluster.to_string(),
            name: name.to_string(),
        },
        ("service", [name]) => Resource::Service {
            cluster: names::DEFAULT.to_string(),
            name: name.to_string(),
        },
        _ => return Err(bad()),
    })
}

fn current_tags(store: &Store, arn: &str, r: &Resource) -> EcsResult<Vec<Tag>> {
    match store.resource_tags(r).map_err(anyhow::Error::from)? {
        Some(t) => Ok(t),
        None => {
            let what = match r {
                Resource::Cluster(_) => {
                    return Err(EcsError::ClusterNotFound(format!(
                        "Cluster not found. ({arn})"
                    )));
                }
                Resource::TaskDefinition(..) => "task definition",
                Resource::Task(_) => "task",
                Resource::Service { .. } => "service",
            };
            Err(EcsError::invalid(format!(
                "The specified {what} was not found: {arn}"
            )))
        }
    }
}

/// ListTagsForResource: `[{"key", "value"}]`.
pub fn list_tags_for_resource(
    ecs: &Ecs,
    req: &ListTagsForResourceRequest,
) -> EcsResult<ListTagsForResourceResponse> {
    let store = ecs.open_store()?;
    let r = resource_of(&req.resource_arn)?;
    Ok(ListTagsForResourceResponse {
        tags: current_tags(&store, &req.resource_arn, &r)?,
    })
}

/// TagResource: adds `tags`, replacing the value of a key already there.
pub fn tag_resource(ecs: &Ecs, req: TagResourceRequest) -> EcsResult<Empty> {
    if req.tags.is_empty() {
        return Err(EcsError::invalid("tags: at least one tag is required"));
    }
    let mut store = ecs.open_store()?;
    let r = resource_of(&req.resource_arn)?;
    let mut tags = current_tags(&store, &req.resource_arn, &r)?;
    for t in req.tags {
        match tags.iter_mut().find(|x| x.key == t.key) {
            Some(x) => x.value = t.value,
            None => tags.push(t),
        }
    }
    checked_tags(&tags)?;
    set_tags(&mut store, &r, &tags)?;
    Ok(Empty {})
}

/// UntagResource: removes the tags of `tagKeys`.
pub fn untag_resource(ecs: &Ecs, req: &UntagResourceRequest) -> EcsResult<Empty> {
    if req.tag_keys.is_empty() {
        return Err(EcsError::invalid("tagKeys: at least one key is required"));
    }
    let mut store = ecs.open_store()?;
    let r = resource_of(&req.resource_arn)?;
    let mut tags = current_tags(&store, &req.resource_arn, &r)?;
    tags.retain(|t| !req.tag_keys.contains(&t.key));
    set_tags(&mut store, &r, &tags)?;
    Ok(Empty {})
}

fn set_tags(store: &mut Store, r: &Resource, tags: &[Tag]) -> anyhow::Result<()> {
    store.set_resource_tags(r, tags)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_arns() {
        let r = |a: &str| resource_of(a).unwrap();
        assert_eq!(
            r("arn:aws:ecs:us-east-1:000000000000:cluster/dev"),
            Resource::Cluster("dev".into())
        );
        assert_eq!(
            r("arn:aws:ecs:us-east-1:000000000000:task-definition/web:3"),
            Resource::TaskDefinition("web".into(), 3)
        );
        assert_eq!(
            r("arn:aws:ecs:us-east-1:000000000000:task/default/abc"),
            Resource::Task("abc".into())
        );
        assert_eq!(
            r("arn:aws:ecs:us-east-1:000000000000:service/dev/web"),
            Resource::Service {
                cluster: "dev".into(),
                name: "web".into()
            }
        );
        assert!(resource_of("arn:aws:s3:::bucket").is_err());
        assert!(resource_of("web").is_err());
    }
}
