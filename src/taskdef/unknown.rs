//! Members a model does not have, refused the way the AWS CLI refuses them (botocore's
//! `ParamValidationError`: `Unknown parameter in containerDefinitions[0]: "enviroment", must
//! be one of: name, image, …`), with the nearest member's name as a did-you-mean.
//!
//! The member lists come from the model's own serde impls ([`super::members::paths`]), so
//! they cannot drift from what the parser accepts.

use super::finding::{JsonPath, Seg};
use serde::de::DeserializeOwned;

/// Members only a describe-task-definition output has: accepted in a task definition file
/// (users feed describe output back), never offered as a suggestion for a register input.
pub const READ_ONLY: &[&str] = &[
    "taskDefinitionArn",
    "revision",
    "status",
    "requiresAttributes",
    "compatibilities",
    "registeredAt",
    "registeredBy",
    "deregisteredAt",
    "deleteRequestedAt",
];

/// RegisterTaskDefinition's members in the order of its request shape, which is how the AWS
/// CLI lists them (the model declares them in the order of the `TaskDefinition` shape, which
/// describe output follows). A test checks it holds exactly the model's writable members.
/// Ref: ecs.json `RegisterTaskDefinitionRequest`.
const REGISTER_ORDER: &[&str] = &[
    "family",
    "taskRoleArn",
    "executionRoleArn",
    "networkMode",
    "containerDefinitions",
    "volumes",
    "placementConstraints",
    "requiresCompatibilities",
    "cpu",
    "memory",
    "tags",
    "pidMode",
    "ipcMode",
    "proxyConfiguration",
    "inferenceAccelerators",
    "ephemeralStorage",
    "runtimePlatform",
    "enableFaultInjection",
];

/// The members of `T` at the object holding `at` (a path relative to `T`), in declaration
/// order, as the AWS CLI lists them; read-only describe members left out.
pub fn siblings<T: DeserializeOwned>(at: &JsonPath) -> Vec<String> {
    let parent = pattern(&at.0[..at.0.len().saturating_sub(1)]);
    let mut names = super::members::paths::<T>()
        .into_iter()
        .filter_map(|p| {
            let (head, name) = match p.rsplit_once('.') {
                Some((h, n)) => (h.to_string(), n.to_string()),
                None => (String::new(), p.clone()),
            };
            (head == parent && !(head.is_empty() && READ_ONLY.contains(&name.as_str())))
                .then_some(name)
        })
        .collect::<Vec<_>>();
    if parent.is_empty() && std::any::type_name::<T>().ends_with("::TaskDefinition") {
        names.sort_by_key(|n| REGISTER_ORDER.iter().position(|r| r == n));
    }
    names
}

/// `containerDefinitions[0].portMappings[1]` → `containerDefinitions[].portMappings[]`, the
/// form [`super::members::paths`] names members in.
fn pattern(segs: &[Seg]) -> String {
    let mut out = String::new();
    for s in segs {
        match s {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(_) => out.push_str("[]"),
        }
    }
    out
}

/// The AWS CLI's message for unknown member `at` (relative to the object `T` describes;
/// `base` is where that object sits in the input), with a did-you-mean.
pub fn message<T: DeserializeOwned>(base: &JsonPath, at: &JsonPath) -> String {
    let names = siblings::<T>(at);
    let mut full = base.clone();
    full.0.extend(at.0.iter().cloned());
    message_with(&full, &names)
}

/// The AWS CLI's message for unknown member `path`, whose object has members `names`.
pub fn message_with(path: &JsonPath, names: &[String]) -> String {
    let key = match path.0.last() {
        Some(Seg::Key(k)) => k.as_str(),
        _ => "",
    };
    let parent = JsonPath(path.0[..path.0.len().saturating_sub(1)].to_vec());
    // botocore names the top level "input".
    let within = if parent.is_root() {
        "input".to_string()
    } else {
        parent.to_string()
    };
    let mut m = format!(
        "Unknown parameter in {within}: \"{key}\", must be one of: {}",
        names.join(", ")
    );
    if let Some(s) = suggest(key, names) {
        m.push_str(&format!(". Did you mean \"{s}\"?"));
        if s.eq_ignore_ascii_case(key) && key.starts_with(|c: char| c.is_ascii_uppercase()) {
            m.push_str(
                " (ECS JSON members are camelCase; PascalCase is CloudFormation's spelling)",
            );
        }
    }
    m
}

/// The member `key` most likely stands for: the same name in another case, else the nearest
/// by edit distance, if near enough to be a typo (at most a third of the name's letters).
pub fn suggest<'a>(key: &str, names: &'a [String]) -> Option<&'a str> {
    if let Some(n) = names.iter().find(|n| n.eq_ignore_ascii_case(key)) {
        return Some(n);
    }
    let lower = key.to_ascii_lowercase();
    names
        .iter()
        .map(|n| {
            (
                strsim::damerau_levenshtein(&lower, &n.to_ascii_lowercase()),
                n,
            )
        })
        .filter(|(d, n)| *d <= (n.len().max(key.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n.as_str())
}

/// Why a request body did not decode.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON, or a member of the wrong type (ECS's SerializationException).
    #[error("{0}")]
    Malformed(String),
    /// Members the model does not have, in the AWS CLI's words (botocore reports them all
    /// under this heading).
    #[error("Parameter validation failed:\n{}", .0.join("\n"))]
    Unknown(Vec<String>),
}

/// Decodes request `text` into `T`, refusing members `T` does not have as the AWS CLI does;
/// `base` is where `T` sits in the request, for messages (`overrides` for `--overrides`).
pub fn decode<T: DeserializeOwned>(text: &str, base: &JsonPath) -> Result<T, DecodeError> {
    let mut unknown = Vec::new();
    let de = &mut serde_json::Deserializer::from_str(text);
    let mut record = |p: serde_ignored::Path| unknown.push(ignored_path(&p));
    let ignored = serde_ignored::Deserializer::new(de, &mut record);
    let value: T = serde_path_to_error::deserialize(ignored).map_err(|e| {
        let mut at = base.clone();
        at.0.extend(path_of(e.path()).0);
        let at = if at.is_root() {
            String::new()
        } else {
            format!("{at}: ")
        };
        DecodeError::Malformed(format!("{at}{}", e.inner()))
    })?;
    if unknown.is_empty() {
        return Ok(value);
    }
    Err(DecodeError::Unknown(
        unknown.iter().map(|p| message::<T>(base, p)).collect(),
    ))
}

pub(super) fn path_of(p: &serde_path_to_error::Path) -> JsonPath {
    use serde_path_to_error::Segment;
    let mut out = JsonPath::root();
    for seg in p.iter() {
        match seg {
            Segment::Seq { index } => out.0.push(Seg::Index(*index)),
            Segment::Map { key } => out.0.push(Seg::Key(key.clone())),
            Segment::Enum { .. } | Segment::Unknown => {}
        }
    }
    out
}

pub(super) fn ignored_path(p: &serde_ignored::Path) -> JsonPath {
    use serde_ignored::Path as P;
    match p {
        P::Root => JsonPath::root(),
        P::Seq { parent, index } => ignored_path(parent).index(*index),
        P::Map { parent, key } => ignored_path(parent).key(key),
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            ignored_path(parent)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::taskdef::TaskDefinition;

    #[test]
    fn register_order_is_the_models_writable_members() {
        let mut model = siblings::<TaskDefinition>(&JsonPath::root().key("x"));
        model.sort();
        let mut order: Vec<String> = REGISTER_ORDER.iter().map(|s| s.to_string()).collect();
        order.sort();
        assert_eq!(model, order);
    }

    #[test]
    fn the_aws_cli_wording_with_a_did_you_mean() {
        let at = JsonPath::root()
            .key("containerDefinitions")
            .index(0)
            .key("enviroment");
        let m = message::<TaskDefinition>(&JsonPath::root(), &at);
        assert!(
            m.starts_with(
                "Unknown parameter in containerDefinitions[0]: \"enviroment\", must be one of: \
                 name, image, repositoryCredentials, cpu, memory,"
            ),
            "{m}"
        );
        assert!(m.ends_with("Did you mean \"environment\"?"), "{m}");
        let top = message::<TaskDefinition>(&JsonPath::root(), &JsonPath::root().key("familly"));
        assert!(
            top.starts_with("Unknown parameter in input: \"familly\""),
            "{top}"
        );
        assert!(!top.contains("taskDefinitionArn"), "{top}");
        assert!(top.contains("Did you mean \"family\"?"), "{top}");
        let pascal = message::<TaskDefinition>(&JsonPath::root(), &JsonPath::root().key("Volumes"));
        assert!(pascal.contains("Did you mean \"volumes\"? (ECS JSON members are camelCase"));
        // Nothing near: no guess.
        let far = message::<TaskDefinition>(&JsonPath::root(), &JsonPath::root().key("comment"));
        assert!(!far.contains("Did you mean"), "{far}");
    }
}
