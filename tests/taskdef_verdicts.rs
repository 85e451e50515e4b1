//! One verdict everywhere (issue 22): every corpus file goes through `validate`,
//! `register-task-definition`, `run-task` (CLI, file://), RegisterTaskDefinition over the API,
//! and — with launch type FARGATE — `validate --launch-type FARGATE`, `run-task --launch-type
//! FARGATE` and CreateService over the API. They must accept and refuse the same files with
//! the same error findings (path, ECS exception, message, rule).
//!
//! Nothing here pulls: run-task uses `--pull never`, services are created with
//! desiredCount 0.

use crate::common;

use common::api::Api;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn corpus() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in ["valid", "invalid"] {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/taskdefs")
            .join(dir);
        for e in std::fs::read_dir(&root).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|e| e == "json") {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

/// The error findings a verb printed on stderr (`NAME: error: PATH: CODE: MESSAGE [rule]`),
/// without the leading input name.
fn errors(stderr: &str) -> BTreeSet<String> {
    stderr
        .lines()
        .filter_map(|l| {
            let i = l.find(": error: ")?;
            // `NAME:LINE:COLUMN: error: X` is how the CLI places a syntax error's position;
            // the finding itself says `error: line LINE, column COLUMN: X`.
            let mut at = l[..i].rsplitn(3, ':');
            let (col, line) = (at.next().unwrap_or(""), at.next().unwrap_or(""));
            Some(match (line.parse::<u32>(), col.parse::<u32>()) {
                (Ok(line), Ok(col)) => {
                    format!("error: line {line}, column {col}: {}", &l[i + 9..])
                }
                _ => l[i + 2..].to_string(),
            })
        })
        .collect()
}

/// The error findings an API error message carries (one per line after the summary).
fn api_errors(message: &str) -> BTreeSet<String> {
    message
        .lines()
        .filter(|l| l.starts_with("error: "))
        .map(str::to_string)
        .collect()
}

#[derive(Debug, PartialEq)]
struct Verdict {
    accepted: bool,
    errors: BTreeSet<String>,
}

/// The verdict of a raw ECS API call (the AWS CLI cannot send every corpus file: it
/// refuses unknown members and bare arrays before sending): accepted, or the error
/// findings its message carries.
fn api_verdict(api: &Api, op: &str, body: &str) -> Verdict {
    let out = api
        .curl()
        .args(["-X", "POST", &api.endpoint])
        .args([
            "-H",
            &format!("X-Amz-Target: AmazonEC2ContainerServiceV20141113.{op}"),
        ])
        .args(["-H", "Content-Type: application/x-amz-json-1.1"])
        .args(["--data-binary", body])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{op}: {e}: {}", String::from_utf8_lossy(&out.stdout)));
    Verdict {
        accepted: v.get("__type").is_none(),
        errors: api_errors(v["message"].as_str().unwrap_or("")),
    }
}

/// The verdict of a run-task of a file with `--pull never`: it is refused with findings,
/// or it gets past them (to the pull, which fails without a finding).
fn run_task_verdict(mf: &common::cli::Mf, input: &str, extra: &[&str]) -> Verdict {
    let mut args = vec![
        "run-task",
        "--task-definition",
        input,
        "--pull",
        "never",
        "--detach",
    ];
    args.extend_from_slice(extra);
    let errors = errors(&String::from_utf8_lossy(&mf.run(&args).stderr));
    Verdict {
        accepted: errors.is_empty(),
        errors,
    }
}

#[test]
fn every_front_end_gives_the_same_verdict() {
    let api = Api::start();
    let mf = &api.mf;
    let mut failures = Vec::new();
    for (n, file) in corpus().iter().enumerate() {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(file).unwrap();
        let input = format!("file://{}", file.display());
        let f = file.to_str().unwrap();
        let verdict = |out: &std::process::Output| Verdict {
            accepted: out.status.success(),
            errors: errors(&String::from_utf8_lossy(&out.stderr)),
        };
        let validate = verdict(&mf.run(&["validate", f]));
        let register_out = mf.run(&["register-task-definition", "--cli-input-json", &input]);
        let register = verdict(&register_out);
        // run-task of a file registers it (as the next revision) and then pulls.
        let run_verdict = run_task_verdict(mf, &input, &[]);
        for (verb, v) in [
            ("register-task-definition", &register),
            ("run-task", &run_verdict),
        ] {
            if *v != validate {
                failures.push(format!("{name}: {verb} {v:?} != validate {validate:?}"));
            }
        }
        // The API: the file as the request body. A bare array has no family there (the CLI
        // takes it from the file name), so it is left to the CLI.
        if !text.trim_start().starts_with('[') {
            let api_verdict = api_verdict(&api, "RegisterTaskDefinition", &text);
            if api_verdict != validate {
                failures.push(format!(
                    "{name}: RegisterTaskDefinition {api_verdict:?} != validate {validate:?}"
                ));
            }
        }
        if !validate.accepted {
            continue;
        }
        // Launch type FARGATE: validate, run-task and a service deployment agree.
        let fargate = verdict(&mf.run(&["validate", f, "--launch-type", "FARGATE"]));
        let registered: serde_json::Value = serde_json::from_slice(&register_out.stdout).unwrap();
        let arn = registered["taskDefinition"]["taskDefinitionArn"]
            .as_str()
            .unwrap()
            .to_string();
        let run_fargate = run_task_verdict(mf, &input, &["--launch-type", "FARGATE"]);
        if run_fargate != fargate {
            failures.push(format!(
                "{name}: run-task --launch-type FARGATE {run_fargate:?} != validate {fargate:?}"
            ));
        }
        let service_verdict = api_verdict(
            &api,
            "CreateService",
            &serde_json::json!({
                "serviceName": format!("svc-{n}"),
                "taskDefinition": arn,
                "desiredCount": 0,
                "launchType": "FARGATE",
                "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-1"]}},
            })
            .to_string(),
        );
        if service_verdict != fargate {
            failures.push(format!(
                "{name}: CreateService FARGATE {service_verdict:?} != validate {fargate:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
