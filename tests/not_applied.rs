//! Every task-definition member this host does not apply is said out loud, in `validate` and
//! on the task in describe-tasks (issue 22, "nothing silent").
//!
//! The list of members comes from docs/taskdefs.md's coverage table, which a unit test keeps
//! equal to `taskdef::coverage` — so a member newly classified "not applied" fails here until
//! it has a sample below, and so a test.

use crate::common;

use common::busybox_task_env;
use common::image::{Compression, busybox_layer};
use serde_json::{Value, json};

/// The not-applied rows of a coverage table in docs/taskdefs.md that get their own warning
/// (sub-members noted "as X" are reported through X).
fn not_applied(table: &str) -> Vec<String> {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/taskdefs.md")).unwrap();
    let begin = format!("<!-- coverage:{table}:begin -->");
    let end = format!("<!-- coverage:{table}:end -->");
    let body = &doc[doc.find(&begin).unwrap()..doc.find(&end).unwrap()];
    body.lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split(" | ").collect();
            (cells.len() == 3 && cells[1] == "not applied" && !cells[2].starts_with("as ")).then(
                || {
                    cells[0]
                        .trim_start_matches("| `")
                        .trim_end_matches('`')
                        .to_string()
                },
            )
        })
        .collect()
}

/// A value for each not-applied member, set into one task definition that ECS would take.
fn sample(path: &str) -> Option<(&'static str, Value)> {
    Some(match path {
        "placementConstraints" => (
            "",
            json!([{"type": "memberOf", "expression": "attribute:ecs.os-type == linux"}]),
        ),
        "inferenceAccelerators" => (
            "",
            json!([{"deviceName": "device_1", "deviceType": "eia2.medium"}]),
        ),
        "proxyConfiguration" => (
            "",
            json!({"type": "APPMESH", "containerName": "app",
                   "properties": [{"name": "ProxyIngressPort", "value": "15000"}]}),
        ),
        "enableFaultInjection" => ("", json!(true)),
        "volumes[].dockerVolumeConfiguration.labels" => ("volume", json!({"team": "a"})),
        "containerDefinitions[].logConfiguration.secretOptions" => (
            "container",
            json!([{"name": "token", "valueFrom": "arn:aws:ssm:us-east-1:123456789012:parameter/t"}]),
        ),
        "containerDefinitions[].resourceRequirements" => (
            "container",
            json!([{"type": "InferenceAccelerator", "value": "device_1"}]),
        ),
        "containerDefinitions[].portMappings[].name" => ("port", json!("web")),
        "containerDefinitions[].portMappings[].appProtocol" => ("port", json!("http")),
        "containerDefinitions[].credentialSpecs" => (
            "container",
            json!(["credentialspec:arn:aws:ssm:us-east-1:123456789012:parameter/gmsa"]),
        ),
        _ => return None,
    })
}

/// The task definition holding every sample; the path each warning is expected at.
fn definition(members: &[String]) -> (Value, Vec<String>) {
    let mut def = json!({
        "family": "not-applied",
        "networkMode": "awsvpc",
        "cpu": "256",
        "memory": "512",
        "volumes": [{"name": "labelled",
                     "dockerVolumeConfiguration": {"scope": "task", "driver": "local"}}],
        "containerDefinitions": [{
            "name": "app", "essential": true,
            "image": "public.ecr.aws/docker/library/busybox:1.36",
            "command": ["true"],
            "logConfiguration": {"logDriver": "json-file"}
        }]
    });
    let mut missing = Vec::new();
    let mut paths = Vec::new();
    for m in members {
        let Some((place, value)) = sample(m) else {
            missing.push(m.clone());
            continue;
        };
        let leaf = m.rsplit(['.', ']']).next().unwrap().to_string();
        match place {
            "" => {
                def[m.as_str()] = value;
                paths.push(m.clone());
            }
            "port" => {
                let c = &mut def["containerDefinitions"][0];
                if c["portMappings"].is_null() {
                    c["portMappings"] = json!([{"containerPort": 47113}]);
                }
                c["portMappings"][0][&leaf] = value;
                paths.push(m.replace("[]", "[0]"));
            }
            "volume" => {
                def["volumes"][0]["dockerVolumeConfiguration"][&leaf] = value;
                paths.push(m.replace("[]", "[0]"));
            }
            _ => {
                let c = &mut def["containerDefinitions"][0];
                if m.contains(".logConfiguration.") {
                    c["logConfiguration"][&leaf] = value;
                } else {
                    c[&leaf] = value;
                }
                paths.push(m.replace("[]", "[0]"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "not-applied members without a sample in tests/not_applied.rs (add one, so the \
         warning is tested): {missing:?}"
    );
    (def, paths)
}

#[test]
fn every_not_applied_member_is_reported_by_validate_and_on_the_task() {
    let members = not_applied("task-definition");
    assert!(members.len() >= 5, "{members:?}");
    let (def, paths) = definition(&members);

    let (mf, _reg) = busybox_task_env(busybox_layer(Compression::Gzip, "not-applied"));
    let file = mf.taskdef("not-applied", &def.to_string());

    // validate: exit 0 (ECS takes all of it) with one not-applied warning per member.
    let out = mf.run(&["validate", &file, "--output", "json"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    for p in &paths {
        assert!(
            report["findings"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["rule"] == "not-applied"
                    && f["path"] == p.as_str()
                    && f["severity"] == "warning"),
            "validate has no not-applied warning at {p}: {report:#}"
        );
    }

    // run-task, then describe-tasks: the same members, on the task.
    let out = mf.run(&["run-task", "--task-definition", &file]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let arn = mf.json(&["list-tasks", "--desired-status", "STOPPED"])["taskArns"][0]
        .as_str()
        .unwrap()
        .to_string();
    let task = mf.json(&["describe-tasks", "--tasks", &arn])["tasks"][0].clone();
    let warnings: Vec<&str> = task["minifargateWarnings"]
        .as_array()
        .unwrap_or_else(|| panic!("no minifargateWarnings: {task:#}"))
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    let attributes: Vec<&str> = task["attributes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["name"] == "minifargate.warning")
        .filter_map(|a| a["value"].as_str())
        .collect();
    for p in &paths {
        let said = |list: &[&str]| {
            list.iter()
                .any(|w| w.starts_with(&format!("{p}: not applied here")))
        };
        assert!(said(&warnings), "describe-tasks lacks {p}: {warnings:#?}");
        assert!(
            said(&attributes),
            "task attributes lack {p}: {attributes:#?}"
        );
    }
    let id = arn.rsplit('/').next().unwrap();
    common::leaks::assert_no_leaks(&mf, &[id], &[]);
}
