//! The request types against the ECS service model the AWS CLI itself carries (botocore's
//! `data/ecs/2014-11-13/service-2.json`, in the test venv `scripts/test` installs, with the
//! awscli version `scripts/lib.sh` pins).
//!
//! Unknown members are refused here with the AWS CLI's words (`taskdef::unknown`), so a member
//! the model has and ours lacks would be refused here and accepted by ECS — a rule stricter
//! than ECS. And a member ours has that the model lacks would be accepted here and refused by
//! the AWS CLI. Both directions fail these tests, naming the members.

use crate::taskdef::members::paths;
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::Read;

/// botocore's ECS service model, found through the `python3` on PATH (the test venv's first,
/// as `scripts/test` sets it).
pub(crate) fn service_model() -> Value {
    model_of("ecs", "2014-11-13")
}

/// botocore's model of `service` (its `data/<service>/<version>/service-2.json`, plain or
/// gzipped), found as [`service_model`] finds ECS's.
pub(crate) fn model_of(service: &str, version: &str) -> Value {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import botocore, os; print(os.path.dirname(botocore.__file__))",
        ])
        .output()
        .expect("python3 is needed to find botocore (scripts/test installs the test venv)");
    assert!(
        out.status.success(),
        "botocore is not importable by the python3 on PATH (scripts/test installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = std::path::PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
        .join(format!("data/{service}/{version}"));
    let plain = dir.join("service-2.json");
    let text = if plain.exists() {
        std::fs::read_to_string(&plain).unwrap()
    } else {
        let gz = std::fs::File::open(dir.join("service-2.json.gz"))
            .unwrap_or_else(|e| panic!("no {service} service model under {}: {e}", dir.display()));
        let mut s = String::new();
        flate2::read::GzDecoder::new(gz)
            .read_to_string(&mut s)
            .unwrap();
        s
    };
    serde_json::from_str(&text).unwrap()
}

/// The member paths of `shape` in our notation: `a.b`, `[]` for list elements; maps and
/// scalars are leaves.
pub(crate) fn shape_paths(model: &Value, shape: &str) -> BTreeSet<String> {
    fn walk(shapes: &Value, name: &str, prefix: &str, depth: usize, out: &mut BTreeSet<String>) {
        let s = &shapes[name];
        assert!(depth < 24, "recursive shape {name}");
        match s["type"].as_str() {
            Some("structure") => {
                for (member, m) in s["members"].as_object().unwrap() {
                    let path = if prefix.is_empty() {
                        member.clone()
                    } else {
                        format!("{prefix}.{member}")
                    };
                    out.insert(path.clone());
                    walk(shapes, m["shape"].as_str().unwrap(), &path, depth + 1, out);
                }
            }
            Some("list") => {
                let elem = s["member"]["shape"].as_str().unwrap();
                walk(shapes, elem, &format!("{prefix}[]"), depth + 1, out);
            }
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    walk(&model["shapes"], shape, "", 0, &mut out);
    out
}

/// The members of `theirs` that `ours` lacks, except those under a member `ours` keeps as
/// opaque JSON (a leaf in ours, a structure in theirs: e.g. RunTask's `volumeConfigurations`,
/// not applied here, kept as given and reported as such). Those are accepted whatever they
/// hold, so they are never refused.
fn differences(ours: &BTreeSet<String>, theirs: &BTreeSet<String>) -> Vec<String> {
    let is_leaf = |p: &str| {
        !ours
            .iter()
            .any(|q| q.len() > p.len() && q.starts_with(p) && q[p.len()..].starts_with(['.', '[']))
    };
    let opaque_ancestor = |p: &str| {
        ours.iter().any(|q| {
            p.len() > q.len()
                && p.starts_with(q.as_str())
                && p[q.len()..].starts_with(['.', '['])
                && is_leaf(q)
        })
    };
    theirs
        .difference(ours)
        .filter(|p| !opaque_ancestor(p))
        .cloned()
        .collect()
}

#[test]
fn the_task_definition_model_has_every_member_ecs_accepts_and_no_other() {
    let model = service_model();
    let ours: BTreeSet<String> = paths::<crate::taskdef::model::TaskDefinition>()
        .into_iter()
        .collect();
    let request = shape_paths(&model, "RegisterTaskDefinitionRequest");
    let missing = differences(&ours, &request);
    assert!(
        missing.is_empty(),
        "members of RegisterTaskDefinitionRequest the task-definition model lacks (they would \
         be refused here as unknown, and ECS accepts them): {missing:?}"
    );
    // Ours may also hold the members of a describe-task-definition output (accepted with a
    // note, `taskdef::unknown::READ_ONLY`); nothing else.
    let described = shape_paths(&model, "TaskDefinition");
    let extra: Vec<&String> = ours
        .iter()
        .filter(|p| !request.contains(*p) && !described.contains(*p))
        .collect();
    assert!(
        extra.is_empty(),
        "task-definition members ECS's model does not have: {extra:?}"
    );
}

#[test]
fn the_run_task_request_has_every_member_ecs_accepts_and_no_other() {
    let model = service_model();
    let ours: BTreeSet<String> = paths::<super::tasks::RunTaskRequest>()
        .into_iter()
        .collect();
    let theirs = shape_paths(&model, "RunTaskRequest");
    let missing = differences(&ours, &theirs);
    let extra: Vec<&String> = ours.difference(&theirs).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "RunTaskRequest members ours lacks (refused here, accepted by ECS): {missing:?}; \
         members ours has that ECS's model does not: {extra:?}"
    );
}
