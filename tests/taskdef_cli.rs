//! The task definition verbs through the real binary, with `--root <tempdir>`: validate's
//! exit codes and outputs, the register/describe/list/deregister round trip, and concurrent
//! registrations from several processes.

use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_minifargate");

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

fn cmd(root: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.arg("--root").arg(root);
    c.env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .env_remove("MINIFARGATE_ACCOUNT_ID");
    c
}

fn run(root: &Path, args: &[&str]) -> Output {
    cmd(root).args(args).output().unwrap()
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): stdout={} stderr={}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn ok(out: &Output) -> &Output {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        stderr(out)
    );
    out
}

#[test]
fn examples_are_valid() {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(repo("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let mut args = vec!["validate", path.to_str().unwrap()];
            if path.ends_with("container-definitions.json") {
                // A bare containerDefinitions array (Terraform's) gets its task-level
                // settings from register-task-definition's flags, which validate takes too.
                let out = run(dir.path(), &args);
                assert_eq!(out.status.code(), Some(1));
                assert!(
                    stderr(&out).contains("[container-memory-required]")
                        || String::from_utf8_lossy(&out.stdout)
                            .contains("[container-memory-required]"),
                    "{}",
                    stderr(&out)
                );
                args.extend(["--cpu", "256", "--memory", "512"]);
            }
            let out = run(dir.path(), &args);
            assert_eq!(
                out.status.code(),
                Some(0),
                "{}: {}",
                path.display(),
                stderr(&out)
            );
        }
    }
    // The README demo's task definition is Fargate-valid, not merely ECS-valid.
    let out = run(
        dir.path(),
        &[
            "validate",
            "examples/web.json",
            "--launch-type",
            "FARGATE",
            "--output",
            "json",
        ],
    );
    let doc = json(ok(&out));
    assert_eq!(doc["fargate"], true);
    assert_eq!(doc["warnings"], 0);
}

#[test]
fn validate_reads_paths_file_urls_and_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let web = repo("examples/web.json");
    let web = web.to_str().unwrap();
    ok(&run(dir.path(), &["validate", web]));
    ok(&run(dir.path(), &["validate", &format!("file://{web}")]));
    let mut child = cmd(dir.path())
        .args(["validate", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&std::fs::read(web).unwrap())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    ok(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("<stdin>: valid"));
    let missing = run(dir.path(), &["validate", "/nonexistent/taskdef.json"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).contains("failed to read task definition /nonexistent/taskdef.json"));
}

#[test]
fn validate_reports_all_errors_with_paths_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.json");
    std::fs::write(
        &f,
        r#"{"family":"bad","networkMode":"awsvpc","requiresCompatibilities":["FARGATE"],
            "cpu":"256","memory":"4096","containerDefinitions":[
            {"name":"app","image":"nginx","privileged":true,"portMappings":[{"containerPort":80,"hostPort":81}]},
            {"name":"side","essential":false,"unknownThing":1}]}"#,
    )
    .unwrap();
    let out = run(dir.path(), &["validate", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    for want in [
        "error: memory: ClientException: No Fargate configuration exists for given values: 256 CPU, 4096 memory.",
        "error: containerDefinitions[0].privileged: ClientException:",
        "error: containerDefinitions[0].portMappings[0].hostPort: ClientException: When networkMode=awsvpc",
        "error: containerDefinitions[1].image: ClientException: Container.image should not be null or empty.",
        "error: containerDefinitions[1].unknownThing: ParamValidationError: Unknown parameter in \
         containerDefinitions[1]: \"unknownThing\", must be one of: name, image,",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    let out = run(
        dir.path(),
        &["validate", f.to_str().unwrap(), "--output", "json"],
    );
    assert_eq!(out.status.code(), Some(1));
    let doc = json(&out);
    assert_eq!(doc["valid"], false);
    assert_eq!(doc["errors"], 5);
    assert_eq!(doc["warnings"], 0);
    let rules: Vec<&str> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rule"].as_str().unwrap())
        .collect();
    assert!(
        rules.contains(&"fargate-task-size") && rules.contains(&"unknown-member"),
        "{rules:?}"
    );
}

#[test]
fn syntax_errors_give_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("broken.json");
    std::fs::write(&f, "{\n  \"family\": \"x\",\n  \"cpu\": 256,,\n}\n").unwrap();
    let out = run(dir.path(), &["validate", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("broken.json:3:14: error: SerializationException: invalid JSON"),
        "{}",
        stderr(&out)
    );
    let doc = json(&run(
        dir.path(),
        &["validate", f.to_str().unwrap(), "--output", "json"],
    ));
    assert_eq!(doc["findings"][0]["line"], 3);
    assert_eq!(doc["findings"][0]["column"], 14);
}

#[test]
fn warnings_do_not_fail() {
    let dir = tempfile::tempdir().unwrap();
    let file = repo("tests/taskdefs/invalid/unknown-members.json");
    let out = run(
        dir.path(),
        &["validate", "--lenient", file.to_str().unwrap()],
    );
    ok(&out);
    assert!(
        stderr(&out).contains("warning: comment: ignored (--lenient): Unknown parameter in input"),
        "{}",
        stderr(&out)
    );
}

/// A misspelt member is refused as the AWS CLI refuses it, with a did-you-mean, and nothing
/// is registered; `--lenient` registers it without the member, saying so.
#[test]
fn a_misspelt_member_is_refused_like_the_aws_cli() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("typo.json");
    std::fs::write(
        &f,
        r#"{"family":"typo","containerDefinitions":[{"name":"app","image":"busybox",
            "memory":64,"enviroment":[{"name":"A","value":"1"}]}]}"#,
    )
    .unwrap();
    let input = format!("file://{}", f.display());
    for verb in [
        vec!["validate", f.to_str().unwrap()],
        vec!["register-task-definition", "--cli-input-json", &input],
    ] {
        let out = run(dir.path(), &verb);
        assert_eq!(out.status.code(), Some(1), "{verb:?}");
        let err = stderr(&out);
        assert!(
            err.contains(
                "error: containerDefinitions[0].enviroment: ParamValidationError: Unknown \
                 parameter in containerDefinitions[0]: \"enviroment\", must be one of: name, \
                 image, repositoryCredentials,"
            ) && err.contains("Did you mean \"environment\"?"),
            "{verb:?}: {err}"
        );
    }
    let listed = json(&run(
        dir.path(),
        &["list-task-definitions", "--family-prefix", "typo"],
    ));
    assert_eq!(listed["taskDefinitionArns"], serde_json::json!([]));
    let out = run(
        dir.path(),
        &[
            "register-task-definition",
            "--lenient",
            "--cli-input-json",
            &input,
        ],
    );
    ok(&out);
    assert!(
        stderr(&out).contains("ignored (--lenient)"),
        "{}",
        stderr(&out)
    );
    assert_eq!(json(&out)["taskDefinition"]["revision"], 1);
    // --overrides too, before anything starts.
    let out = run(
        dir.path(),
        &[
            "run-task",
            "--task-definition",
            "typo:1",
            "--overrides",
            r#"{"containerOverrides":[{"name":"app","comand":["true"]}]}"#,
        ],
    );
    // A member ECS does not have is a wrong command line: exit 2.
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(
            "Unknown parameter in overrides.containerOverrides[0]: \"comand\", must be one of: \
             name, command,"
        ) && stderr(&out).contains("Did you mean \"command\"?"),
        "{}",
        stderr(&out)
    );
    let tasks = json(&run(dir.path(), &["list-tasks"]));
    assert_eq!(tasks["taskArns"], serde_json::json!([]));
}

#[test]
fn members_not_applied_here_are_warnings_naming_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("not-applied.json");
    std::fs::write(
        &f,
        r#"{"family":"na","networkMode":"bridge","memory":"512","enableFaultInjection":true,
            "placementConstraints":[{"type":"memberOf","expression":"attribute:ecs.os-type == linux"}],
            "containerDefinitions":[{"name":"app","image":"busybox","dockerLabels":{"a":"b"},
              "dockerSecurityOptions":["no-new-privileges","label:type:x"]}],
            "volumes":[{"name":"data","efsVolumeConfiguration":{"fileSystemId":"fs-1"}}]}"#,
    )
    .unwrap();
    let out = run(dir.path(), &["validate", f.to_str().unwrap()]);
    // Warnings do not fail: ECS accepts every one of these.
    ok(&out);
    let err = stderr(&out);
    for want in [
        "warning: enableFaultInjection: not applied here: the task metadata endpoint has no \
         fault-injection paths [not-applied]",
        "warning: placementConstraints: not applied here: one host",
        "warning: networkMode: honoured with a local difference: the task's containers share \
         one network namespace",
        "warning: containerDefinitions[0].dockerSecurityOptions: not applied here: label:type:x: \
         this host does not label containers for SELinux",
        "warning: volumes[0].efsVolumeConfiguration: refused here by run-task: EFS is not \
         reachable from this host",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    // One warning for the EFS volume, not one per member of it; none for what is honoured.
    assert!(!err.contains("fileSystemId"), "{err}");
    assert!(!err.contains("dockerLabels"), "{err}");
    let doc = json(ok(&run(
        dir.path(),
        &["validate", f.to_str().unwrap(), "--output", "json"],
    )));
    assert_eq!(doc["valid"], true);
    assert_eq!(doc["warnings"], 5, "{doc:#}");
    let f = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "volumes[0].efsVolumeConfiguration")
        .unwrap();
    assert_eq!(
        (&f["severity"], &f["rule"]),
        (&"warning".into(), &"refused-here".into())
    );
}

#[test]
fn register_describe_list_deregister_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("state");
    let web = format!("file://{}", repo("examples/web.json").display());

    let r1 = json(ok(&run(
        &root,
        &["register-task-definition", "--cli-input-json", &web],
    )));
    let td = &r1["taskDefinition"];
    assert_eq!(
        td["taskDefinitionArn"],
        "arn:aws:ecs:us-east-1:000000000000:task-definition/web:1"
    );
    assert_eq!(td["revision"], 1);
    assert_eq!(td["status"], "ACTIVE");
    assert_eq!(td["family"], "web");
    assert_eq!(td["cpu"], "256");
    assert_eq!(td["compatibilities"], serde_json::json!(["EC2", "FARGATE"]));
    assert_eq!(
        td["containerDefinitions"][1]["portMappings"][0]["hostPort"],
        8080
    );
    assert!(td["registeredAt"].as_str().unwrap().ends_with("+00:00"));
    assert_eq!(r1["tags"][0]["key"], "app");
    assert!(root.join("state.db").exists());

    ok(&run(
        &root,
        &["register-task-definition", "--cli-input-json", &web],
    ));
    ok(&run(
        &root,
        &["register-task-definition", "--cli-input-json", &web],
    ));

    let d = json(ok(&run(
        &root,
        &["describe-task-definition", "--task-definition", "web"],
    )));
    assert_eq!(d["taskDefinition"]["revision"], 3);
    assert!(d.get("tags").is_none());
    let d = json(ok(&run(
        &root,
        &[
            "describe-task-definition",
            "--task-definition",
            "web:2",
            "--include",
            "TAGS",
        ],
    )));
    assert_eq!(d["taskDefinition"]["revision"], 2);
    assert_eq!(d["tags"][0]["value"], "web");
    let d = json(ok(&run(
        &root,
        &[
            "describe-task-definition",
            "--task-definition",
            "arn:aws:ecs:us-east-1:000000000000:task-definition/web:1",
        ],
    )));
    assert_eq!(d["taskDefinition"]["revision"], 1);

    // Deregister the newest: describe by family falls back to the latest ACTIVE revision.
    let dr = json(ok(&run(
        &root,
        &["deregister-task-definition", "--task-definition", "web:3"],
    )));
    assert_eq!(dr["taskDefinition"]["status"], "INACTIVE");
    assert!(dr["taskDefinition"]["deregisteredAt"].is_string());
    let d = json(ok(&run(
        &root,
        &["describe-task-definition", "--task-definition", "web"],
    )));
    assert_eq!(d["taskDefinition"]["revision"], 2);
    let d = json(ok(&run(
        &root,
        &["describe-task-definition", "--task-definition", "web:3"],
    )));
    assert_eq!(d["taskDefinition"]["status"], "INACTIVE");

    // A revision number is never reused.
    let r4 = json(ok(&run(
        &root,
        &["register-task-definition", "--cli-input-json", &web],
    )));
    assert_eq!(r4["taskDefinition"]["revision"], 4);

    let l = json(ok(&run(&root, &["list-task-definitions"])));
    let arns: Vec<&str> = l["taskDefinitionArns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        arns.iter()
            .map(|a| a.rsplit(':').next().unwrap())
            .collect::<Vec<_>>(),
        ["1", "2", "4"]
    );
    let l = json(ok(&run(
        &root,
        &["list-task-definitions", "--status", "INACTIVE"],
    )));
    assert_eq!(l["taskDefinitionArns"].as_array().unwrap().len(), 1);
    let l = json(ok(&run(
        &root,
        &[
            "list-task-definitions",
            "--family-prefix",
            "web",
            "--sort",
            "DESC",
        ],
    )));
    assert!(
        l["taskDefinitionArns"][0]
            .as_str()
            .unwrap()
            .ends_with("web:4")
    );
    let f = json(ok(&run(&root, &["list-task-definition-families"])));
    assert_eq!(f["families"], serde_json::json!(["web"]));
    let f = json(ok(&run(
        &root,
        &["list-task-definition-families", "--status", "INACTIVE"],
    )));
    assert_eq!(f["families"], serde_json::json!([]));

    // Errors: unknown family, deregister without a revision.
    let out = run(
        &root,
        &["describe-task-definition", "--task-definition", "nope"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("ClientException"), "{}", stderr(&out));
    let out = run(
        &root,
        &["deregister-task-definition", "--task-definition", "web"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("must name a revision"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn describe_output_registers_again_and_invalid_input_registers_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("state");
    let web = format!("file://{}", repo("examples/web.json").display());
    let first = ok(&run(
        &root,
        &["register-task-definition", "--cli-input-json", &web],
    ))
    .stdout
    .clone();
    // The describe output, wrapped, is accepted as register input.
    let described = dir.path().join("described.json");
    std::fs::write(&described, &first).unwrap();
    let again = json(ok(&run(
        &root,
        &[
            "register-task-definition",
            "--cli-input-json",
            described.to_str().unwrap(),
        ],
    )));
    assert_eq!(again["taskDefinition"]["revision"], 2);
    let first: Value = serde_json::from_slice(&first).unwrap();
    assert_eq!(
        again["taskDefinition"]["containerDefinitions"],
        first["taskDefinition"]["containerDefinitions"]
    );

    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"family":"web","containerDefinitions":[{"name":"a"}]}"#,
    )
    .unwrap();
    let out = run(
        &root,
        &[
            "register-task-definition",
            "--cli-input-json",
            bad.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("Container.image should not be null or empty."),
        "{}",
        stderr(&out)
    );
    let d = json(ok(&run(
        &root,
        &["describe-task-definition", "--task-definition", "web"],
    )));
    assert_eq!(d["taskDefinition"]["revision"], 2);
}

#[test]
fn region_and_account_come_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let out = cmd(dir.path())
        .env("AWS_REGION", "eu-central-1")
        .env("MINIFARGATE_ACCOUNT_ID", "123456789012")
        .args([
            "register-task-definition",
            "--cli-input-json",
            repo("examples/web.json").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let doc = json(ok(&out));
    assert_eq!(
        doc["taskDefinition"]["taskDefinitionArn"],
        "arn:aws:ecs:eu-central-1:123456789012:task-definition/web:1"
    );
    assert_eq!(
        doc["taskDefinition"]["registeredBy"],
        "arn:aws:iam::123456789012:root"
    );
}

/// Every MINIFARGATE_* variable is parsed once at start-up (src/config.rs,
/// docs/configuration.md): a value that does not parse stops any command before it does
/// anything, naming the variable and the value (it used to be ignored for the default).
#[test]
fn a_bad_setting_stops_every_command_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    for (name, value, why) in [
        (
            "MINIFARGATE_STOPPED_TASK_RETENTION",
            "1h",
            "whole number (seconds)",
        ),
        ("MINIFARGATE_LOGS_MAX_BYTES", "lots", "not a size"),
        ("MINIFARGATE_ACCOUNT_ID", "42", "12 digits"),
        ("MINIFARGATE_AWSLOGS_FORWARD", "maybe", "expected one of"),
    ] {
        let out = cmd(&root)
            .env(name, value)
            .args(["list-task-definitions"])
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{name}={value}: {err}");
        assert!(
            err.starts_with(&format!("minifargate: {name}={value:?}: ")) && err.contains(why),
            "{err}"
        );
        assert!(out.stdout.is_empty());
    }
    assert!(!root.exists(), "a command with a bad setting did something");
    // An empty value is an unset one.
    let out = cmd(&root)
        .env("MINIFARGATE_STOPPED_TASK_RETENTION", "")
        .args(["list-task-definitions"])
        .output()
        .unwrap();
    assert_eq!(json(ok(&out))["taskDefinitionArns"], serde_json::json!([]));
}

#[test]
fn concurrent_registers_get_distinct_revisions() {
    const N: usize = 16;
    let dir = tempfile::tempdir().unwrap();
    // A fresh root: the processes also race to create the database and run migrations.
    let root = dir.path().join("fresh");
    let web = repo("examples/web.json");
    let children: Vec<_> = (0..N)
        .map(|_| {
            cmd(&root)
                .args([
                    "register-task-definition",
                    "--cli-input-json",
                    web.to_str().unwrap(),
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut revisions = Vec::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let err = stderr(&out);
        assert!(!err.contains("locked") && !err.contains("busy"), "{err}");
        revisions.push(
            json(ok(&out))["taskDefinition"]["revision"]
                .as_u64()
                .unwrap(),
        );
    }
    revisions.sort();
    assert_eq!(revisions, (1..=N as u64).collect::<Vec<_>>());
    let l = json(ok(&run(&root, &["list-task-definitions"])));
    assert_eq!(l["taskDefinitionArns"].as_array().unwrap().len(), N);
}

/// A reader that goes away (`minifargate … | head -1`) ends a printing verb quietly by
/// SIGPIPE, as it ends `ls`: no "failed printing to stdout" panic on stderr.
#[test]
fn a_closed_stdout_pipe_ends_a_printing_verb_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = cmd(dir.path())
        .args(["validate", repo("examples/hello.json").to_str().unwrap()])
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        out.status.signal(),
        Some(13),
        "SIGPIPE: {:?} {stderr}",
        out.status
    );
}

/// run-task of a file that breaks ECS's rules names every error (member path and rule),
/// not just a count, and registers nothing.
#[test]
fn run_task_of_an_invalid_file_names_every_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.json");
    std::fs::write(
        &file,
        r#"{"family":"bad","containerDefinitions":[
            {"name":"b bad","image":"busybox","memory":64},
            {"name":"c","memory":64}]}"#,
    )
    .unwrap();
    let root = dir.path().join("root");
    let url = format!("file://{}", file.display());
    let out = cmd(&root)
        .arg("--run-root")
        .arg(dir.path().join("run"))
        .args(["run-task", "--task-definition", &url])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    for needle in [
        "containerDefinitions[0].name",
        "[container-name-format]",
        "containerDefinitions[1].image",
        "[image-required]",
        "ClientException: ",
        "has 2 error(s)",
    ] {
        assert!(err.contains(needle), "no {needle:?} in: {err}");
    }
    let listed = json(ok(&run(&root, &["list-task-definitions"])));
    assert_eq!(listed["taskDefinitionArns"], serde_json::json!([]));
}
