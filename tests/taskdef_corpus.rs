//! The task definition corpus: every file under tests/taskdefs/valid must pass `validate`
//! (exit 0, no errors), and every file under tests/taskdefs/invalid must fail (exit 1) with
//! exactly the errors its `.expect` file lists.
//!
//! A valid file's `.args` holds validate flags it needs (`--template`); its `.expect`, if
//! any, lists warnings it must give (same format as below).
//! `.expect` format, one finding per line:
//! `SEVERITY CODE RULE PATH MESSAGE-SUBSTRING`; `args: …` adds validate flags; `#` comments.
//! Every error finding must match an expected line, and every expected line a finding.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn corpus(dir: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/taskdefs")
        .join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "empty corpus {}", root.display());
    files
}

fn validate(file: &Path, args: &[&str]) -> (i32, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_minifargate"))
        .arg("validate")
        .arg(file)
        .args(["--output", "json"])
        .args(args)
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{}: stdout is not JSON ({e}): {}",
            file.display(),
            String::from_utf8_lossy(&out.stdout)
        )
    });
    (
        out.status.code().unwrap_or(-1),
        doc,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

struct Expected {
    severity: String,
    code: String,
    rule: String,
    path: String,
    message: String,
}

fn matches(e: &Expected, f: &Value) -> bool {
    f["severity"] == e.severity.as_str()
        && f["code"] == e.code.as_str()
        && f["rule"] == e.rule.as_str()
        && f["path"] == e.path.as_str()
        && f["message"]
            .as_str()
            .is_some_and(|m| m.contains(&e.message))
}

/// An `.expect` file's `args:` flags and expected findings.
fn parse_expect(text: &str) -> (Vec<String>, Vec<Expected>) {
    let mut args: Vec<String> = Vec::new();
    let mut expected = Vec::new();
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        if let Some(a) = line.strip_prefix("args:") {
            args.extend(a.split_whitespace().map(String::from));
            continue;
        }
        let mut parts = line.splitn(5, ' ');
        let mut next = || parts.next().unwrap_or("").to_string();
        expected.push(Expected {
            severity: next(),
            code: next(),
            rule: next(),
            path: next(),
            message: next(),
        });
    }
    (args, expected)
}

#[test]
fn valid_corpus_passes() {
    let mut failures = Vec::new();
    for file in corpus("valid") {
        // `NAME.args`: validate flags the file needs (`--template` for a template).
        let args = std::fs::read_to_string(file.with_extension("args")).unwrap_or_default();
        let argv: Vec<&str> = args.split_whitespace().collect();
        let (code, doc, stderr) = validate(&file, &argv);
        if code != 0 || doc["valid"] != true {
            failures.push(format!(
                "{}: exit {code}\n{doc:#}\n{stderr}",
                file.display()
            ));
        }
        // `NAME.expect`, if any: warnings the file must give.
        if let Ok(text) = std::fs::read_to_string(file.with_extension("expect")) {
            let findings = doc["findings"].as_array().cloned().unwrap_or_default();
            for e in parse_expect(&text).1 {
                if !findings.iter().any(|f| matches(&e, f)) {
                    failures.push(format!(
                        "{}: no finding {} {} {} {} ~ {:?}",
                        file.display(),
                        e.severity,
                        e.code,
                        e.rule,
                        e.path,
                        e.message
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn invalid_corpus_fails_with_the_expected_findings() {
    let mut failures = Vec::new();
    for file in corpus("invalid") {
        let expect_file = file.with_extension("expect");
        let text = std::fs::read_to_string(&expect_file)
            .unwrap_or_else(|_| panic!("{} has no .expect file", file.display()));
        let (args, expected) = parse_expect(&text);
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, doc, _) = validate(&file, &argv);
        let findings = doc["findings"].as_array().cloned().unwrap_or_default();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        if code != 1 || doc["valid"] != false {
            failures.push(format!(
                "{name}: expected exit 1 and valid=false, got {code}"
            ));
        }
        for e in &expected {
            if !findings.iter().any(|f| matches(e, f)) {
                failures.push(format!(
                    "{name}: no finding {} {} {} {} ~ {:?}\n  got: {findings:#?}",
                    e.severity, e.code, e.rule, e.path, e.message
                ));
            }
        }
        for f in findings.iter().filter(|f| f["severity"] == "error") {
            if !expected.iter().any(|e| matches(e, f)) {
                failures.push(format!("{name}: unexpected error {f}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_rule_has_an_invalid_file() {
    // The rule ids that validation can emit as errors; each is exercised by the corpus.
    let mut covered = std::collections::BTreeSet::new();
    for file in corpus("invalid") {
        let text = std::fs::read_to_string(file.with_extension("expect")).unwrap();
        for line in text.lines().filter(|l| l.starts_with("error ")) {
            if let Some(rule) = line.split(' ').nth(2) {
                covered.insert(rule.to_string());
            }
        }
    }
    let rules = [
        "json-syntax",
        "json-shape",
        "json-type",
        "family-required",
        "family-format",
        "containers-required",
        "too-many-containers",
        "task-definition-size",
        "template-placeholder",
        "unknown-member",
        "task-cpu",
        "task-memory",
        "container-name-required",
        "container-name-format",
        "container-name-unique",
        "image-required",
        "image-format",
        "container-cpu-exceeds-task",
        "container-cpu-sum",
        "container-memory-sum",
        "container-memory",
        "container-memory-exceeds-task",
        "memory-reservation",
        "container-memory-required",
        "essential-required",
        "port-range",
        "network-mode-none-ports",
        "awsvpc-host-port",
        "host-network-host-port",
        "port-mapping-name",
        "links-network-mode",
        "link-target",
        "links-cycle",
        "awsvpc-hostname",
        "awsvpc-extra-hosts",
        "depends-on-condition",
        "depends-on-target",
        "depends-on-essential",
        "depends-on-cycle",
        "container-timeout",
        "health-check-command",
        "health-check-range",
        "mount-point-volume",
        "volumes-from-container",
        "required-member",
        "out-of-range",
        "tags",
        "capability-name",
        "system-controls",
        "resource-requirement",
        "credential-specs",
        "volume-name",
        "volume-config",
        "proxy-container",
        "fargate-network-mode",
        "fargate-task-size",
        "fargate-unsupported-parameter",
        "fargate-pid-mode",
        "fargate-capabilities",
        "fargate-host-source-path",
        "fargate-log-driver",
        "fargate-execution-role",
        "secrets-execution-role",
        "fargate-firelens-s3",
        "firelens-router",
        "firelens-unused",
        "firelens-single-router",
    ];
    let missing: Vec<_> = rules.iter().filter(|r| !covered.contains(**r)).collect();
    assert!(
        missing.is_empty(),
        "rules without an invalid corpus file: {missing:?}"
    );
}
