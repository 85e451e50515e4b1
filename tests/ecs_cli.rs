//! Root integration tests of the ECS verbs as a script moved from the AWS CLI uses them:
//! services and tags through their verbs, `--cli-input-json` inline and `file://` (`~`
//! and relative paths), options over it, shorthand, `--generate-cli-skeleton` against the
//! AWS CLI's, `--output text`/`--query`, pagination, `execute-command`, RunTask's members
//! as options, and one test per exit status.

use crate::common;
use common::busybox_task_env;
use common::cli::Mf;
use common::image::{Compression, busybox_layer};
use common::services::tool;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::process::Output;
use std::time::{Duration, Instant};

const BUSYBOX: &str = "public.ecr.aws/docker/library/busybox:1.36";

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs and expects exit status `code`; returns the output.
fn status(mf: &Mf, args: &[&str], code: i32) -> Output {
    let out = mf.run(args);
    assert_eq!(
        out.status.code(),
        Some(code),
        "minifargate {args:?}: {}",
        stderr(&out)
    );
    out
}

/// Every object key path of a JSON value (`a.b[].c`), for comparing shapes.
fn key_paths(v: &Value, at: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let p = format!("{at}.{k}");
                out.insert(p.clone());
                key_paths(v, &p, out);
            }
        }
        Value::Array(a) => {
            for v in a {
                key_paths(v, &format!("{at}[]"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn services_and_tags_through_the_aws_named_verbs() {
    let mut mf = Mf::new();
    let home = mf.dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    mf.env.push(("HOME".into(), home.display().to_string()));

    // register-task-definition takes inline JSON, as the AWS CLI does.
    let td = mf.json(&[
        "register-task-definition",
        "--cli-input-json",
        r#"{"family":"web","containerDefinitions":[{"name":"app","image":"busybox","memory":64}]}"#,
    ]);
    assert_eq!(td["taskDefinition"]["family"], "web");
    // … or as options only, each member JSON or shorthand, as the AWS CLI takes them.
    let out = status(
        &mf,
        &[
            "register-task-definition",
            "--family",
            "opts",
            "--container-definitions",
            r#"[{"name":"app","image":"busybox","memory":64}]"#,
            "--ephemeral-storage",
            "sizeInGiB=30",
            "--tags",
            "key=team,value=core",
            "--output",
            "text",
            "--query",
            "[taskDefinition.family, taskDefinition.ephemeralStorage.sizeInGiB, tags[0].key]",
        ],
        0,
    );
    assert_eq!(stdout(&out), "opts\t30\tteam\n");

    // create-service from file://~/… with an option over one of its members.
    std::fs::write(
        home.join("svc.json"),
        r#"{"serviceName":"web","taskDefinition":"web","desiredCount":3}"#,
    )
    .unwrap();
    let created = mf.json(&[
        "create-service",
        "--cli-input-json",
        "file://~/svc.json",
        "--desired-count",
        "0",
    ]);
    assert_eq!(created["service"]["serviceName"], "web");
    assert_eq!(created["service"]["desiredCount"], 0);
    let arn = created["service"]["serviceArn"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        arn,
        "arn:aws:ecs:us-east-1:000000000000:service/default/web"
    );

    // A relative file:// path is from the working directory.
    std::fs::write(
        mf.dir.path().join("upd.json"),
        r#"{"service":"web","deploymentConfiguration":{"maximumPercent":150}}"#,
    )
    .unwrap();
    let out = mf
        .cmd()
        .current_dir(mf.dir.path())
        .args([
            "update-service",
            "--cli-input-json",
            "file://upd.json",
            "--deployment-configuration",
            "maximumPercent=150,minimumHealthyPercent=50",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = status(
        &mf,
        &[
            "describe-services",
            "--services",
            "web",
            "--output",
            "text",
            "--query",
            "services[0].[serviceName,desiredCount,deploymentConfiguration.maximumPercent,deploymentConfiguration.minimumHealthyPercent]",
        ],
        0,
    );
    assert_eq!(stdout(&out), "web\t0\t150\t50\n");
    let out = status(&mf, &["list-services", "--output", "text"], 0);
    assert_eq!(stdout(&out), format!("SERVICEARNS\t{arn}\n"));

    // Tags: tag-resource prints nothing (an empty response), as the AWS CLI.
    let out = status(
        &mf,
        &[
            "tag-resource",
            "--resource-arn",
            &arn,
            "--tags",
            "key=team,value=core",
            "key=env,value=dev",
        ],
        0,
    );
    assert_eq!(stdout(&out), "");
    let tags = mf.json(&["list-tags-for-resource", "--resource-arn", &arn]);
    let mut got: Vec<String> = tags["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            format!(
                "{}={}",
                t["key"].as_str().unwrap(),
                t["value"].as_str().unwrap()
            )
        })
        .collect();
    got.sort();
    assert_eq!(got, ["env=dev", "team=core"]);
    status(
        &mf,
        &[
            "untag-resource",
            "--resource-arn",
            &arn,
            "--tag-keys",
            "team",
        ],
        0,
    );
    let out = status(
        &mf,
        &[
            "list-tags-for-resource",
            "--resource-arn",
            &arn,
            "--output",
            "text",
        ],
        0,
    );
    assert_eq!(stdout(&out), "TAGS\tenv\tdev\n");

    // Pagination: --max-items cuts and prints a NextToken that --starting-token resumes.
    for c in ["a", "b", "c"] {
        mf.json(&["create-cluster", "--cluster-name", c]);
    }
    let first = mf.json(&["list-clusters", "--max-items", "2"]);
    assert_eq!(first["clusterArns"].as_array().unwrap().len(), 2);
    let token = first["NextToken"]
        .as_str()
        .expect("a NextToken")
        .to_string();
    let rest = mf.json(&["list-clusters", "--starting-token", &token]);
    let mut all: Vec<Value> = first["clusterArns"].as_array().unwrap().clone();
    all.extend(rest["clusterArns"].as_array().unwrap().iter().cloned());
    let whole = mf.json(&["list-clusters"]);
    assert_eq!(Value::Array(all), whole["clusterArns"]);

    // delete-service: DRAINING until the scheduler (in `serve`) finishes it, as in ECS.
    let deleted = mf.json(&["delete-service", "--service", "web", "--force"]);
    assert_eq!(deleted["service"]["serviceName"], "web");
    let out = status(
        &mf,
        &[
            "describe-services",
            "--services",
            "web",
            "--query",
            "services[0].status",
            "--output",
            "text",
        ],
        0,
    );
    assert_eq!(stdout(&out), "DRAINING\n");

    // Account settings.
    mf.json(&[
        "put-account-setting",
        "--name",
        "containerInsights",
        "--value",
        "enabled",
    ]);
    let out = status(
        &mf,
        &[
            "list-account-settings",
            "--name",
            "containerInsights",
            "--query",
            "settings[0].value",
            "--output",
            "text",
        ],
        0,
    );
    assert_eq!(stdout(&out), "enabled\n");

    // Exit status 1: ECS answered with an error.
    let e = mf.fail(&[
        "update-service",
        "--service",
        "nope",
        "--desired-count",
        "1",
    ]);
    assert!(e.contains("ServiceNotFoundException"), "{e}");
    let e = mf.fail(&["list-tasks", "--cluster", "never-made"]);
    assert!(e.contains("ClusterNotFoundException"), "{e}");
}

#[test]
fn a_wrong_command_line_exits_2_in_the_aws_clis_words() {
    let mf = Mf::new();
    // A member ECS does not have, with botocore's list and a did-you-mean.
    let out = status(
        &mf,
        &[
            "create-service",
            "--cli-input-json",
            r#"{"servicName":"web"}"#,
        ],
        2,
    );
    let e = stderr(&out);
    assert!(
        e.contains("Unknown parameter in input: \"servicName\", must be one of: cluster, serviceName, taskDefinition")
            && e.contains("Did you mean \"serviceName\"?"),
        "{e}"
    );
    assert!(
        e.contains("Missing required parameter in input: \"serviceName\" (--service-name)"),
        "{e}"
    );
    // Unknown option, bad value, bad shorthand, bad JSON, bad --query.
    status(&mf, &["list-clusters", "--no-such-option"], 2);
    status(
        &mf,
        &[
            "create-service",
            "--service-name",
            "w",
            "--desired-count",
            "two",
        ],
        2,
    );
    let out = status(
        &mf,
        &[
            "update-service",
            "--service",
            "w",
            "--deployment-configuration",
            "maximumPercent",
        ],
        2,
    );
    assert!(
        stderr(&out).contains("Error parsing parameter '--deployment-configuration'"),
        "{}",
        stderr(&out)
    );
    let out = status(&mf, &["create-service", "--cli-input-json", "{nope"], 2);
    assert!(stderr(&out).contains("Invalid JSON"), "{}", stderr(&out));
    let out = status(&mf, &["list-clusters", "--query", "clusterArns["], 2);
    assert!(stderr(&out).contains("--query"), "{}", stderr(&out));
    let out = status(
        &mf,
        &[
            "create-service",
            "--cli-input-json",
            "file://~/does-not-exist.json",
        ],
        2,
    );
    assert!(
        stderr(&out).contains("Unable to load paramfile"),
        "{}",
        stderr(&out)
    );
    // Exit status 0 and nothing made by any of these.
    let v = mf.json(&["list-services"]);
    assert_eq!(v["serviceArns"], json!([]));
}

/// `--generate-cli-skeleton` has the AWS CLI's shape for each verb (enum placeholders
/// are random in the AWS CLI, so the keys are compared).
#[test]
fn skeletons_are_the_aws_clis() {
    let mf = Mf::new();
    for verb in [
        "create-service",
        "run-task",
        "update-service",
        "tag-resource",
        "list-tasks",
        "list-service-deployments",
        "describe-service-deployments",
        "stop-service-deployment",
        "describe-service-revisions",
    ] {
        let ours = mf.json(&[verb, "--generate-cli-skeleton"]);
        let out = std::process::Command::new(tool("aws"))
            .args(["ecs", verb, "--generate-cli-skeleton"])
            .env("AWS_CONFIG_FILE", "/dev/null")
            .output()
            .expect("aws cli (./scripts/test installs it)");
        assert!(out.status.success(), "aws ecs {verb}: {}", stderr(&out));
        let theirs: Value = serde_json::from_slice(&out.stdout).unwrap();
        let (mut a, mut b) = (BTreeSet::new(), BTreeSet::new());
        key_paths(&ours, "", &mut a);
        key_paths(&theirs, "", &mut b);
        assert_eq!(a, b, "{verb}");
    }
    // The service deployment verbs answer from this host's store as `serve` does.
    let e = mf.fail(&["list-service-deployments", "--service", "nope"]);
    assert!(
        e.contains("ClusterNotFoundException") || e.contains("ServiceNotFoundException"),
        "{e}"
    );
    let d = mf.json(&[
        "describe-service-deployments",
        "--service-deployment-arns",
        "arn:aws:ecs:us-east-1:000000000000:service-deployment/default/nope/x",
    ]);
    assert_eq!(d["failures"][0]["reason"], "MISSING", "{d:#}");
}

#[test]
fn execute_command_run_task_members_and_exit_statuses_of_a_task() {
    let (mf, _reg) = busybox_task_env(busybox_layer(Compression::Gzip, "ecs-cli"));
    let td = mf.taskdef(
        "long",
        &format!(
            r#"{{"family":"long","networkMode":"awsvpc","requiresCompatibilities":["FARGATE"],
            "cpu":"256","memory":"512","containerDefinitions":[
            {{"name":"app","image":"{BUSYBOX}","essential":true,
              "command":["sh","-c","trap 'exit 0' TERM; while :; do sleep 0.1; done"]}}]}}"#
        ),
    );
    // RunTask's members as options, honoured as the core honours them over the API.
    mf.json(&[
        "create-cluster",
        "--cluster-name",
        "cp",
        "--capacity-providers",
        "FARGATE",
        "FARGATE_SPOT",
    ]);
    let v = mf.json(&[
        "run-task",
        "--cluster",
        "cp",
        "--task-definition",
        &td,
        "--detach",
        "--capacity-provider-strategy",
        "capacityProvider=FARGATE,weight=1",
        "--platform-version",
        "LATEST",
        "--propagate-tags",
        "TASK_DEFINITION",
        "--client-token",
        "tok-1",
        "--reference-id",
        "ref-1",
        "--enable-ecs-managed-tags",
    ]);
    let arn = v["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    let id = arn.rsplit('/').next().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let t = mf.json(&["describe-tasks", "--tasks", &id]);
        if t["tasks"][0]["lastStatus"] == "RUNNING" {
            let t = &t["tasks"][0];
            assert_eq!(t["capacityProviderName"], "FARGATE", "{t:#}");
            assert_eq!(t["launchType"], "FARGATE", "{t:#}");
            break;
        }
        assert!(Instant::now() < deadline, "not RUNNING: {t:#}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // execute-command: the command line split into words, its exit status ours.
    let out = status(
        &mf,
        &[
            "execute-command",
            "--task",
            &id,
            "--container",
            "app",
            "--interactive",
            "--command",
            "sh -c 'echo hello from $(hostname); exit 4'",
        ],
        4,
    );
    assert!(stdout(&out).starts_with("hello from "), "{}", stdout(&out));
    let e = mf.fail(&[
        "execute-command",
        "--task",
        &id,
        "--non-interactive",
        "--command",
        "true",
    ]);
    assert!(
        e.contains("InvalidParameterException: Interactive is the only mode supported currently."),
        "{e}"
    );
    let out = status(&mf, &["execute-command", "--task", &id, "--interactive"], 2);
    assert!(
        stderr(&out).contains("Missing required parameter in input: \"command\""),
        "{}",
        stderr(&out)
    );

    // Task protection through its verb (a boolean member is --x / --no-x).
    let v = mf.json(&[
        "update-task-protection",
        "--cluster",
        "cp",
        "--tasks",
        &id,
        "--protection-enabled",
        "--expires-in-minutes",
        "5",
    ]);
    // ECS protects only a service's tasks: the failure passes through as ECS words it.
    assert_eq!(v["failures"][0]["reason"], "TASK_NOT_VALID", "{v:#}");
    assert_eq!(v["protectedTasks"], json!([]));

    mf.json(&["stop-task", "--task", &id]);
    // Attached run-task: the essential container's exit status.
    let td = mf.taskdef(
        "three",
        &format!(
            r#"{{"family":"three","networkMode":"none","memory":"128","containerDefinitions":[
            {{"name":"app","image":"{BUSYBOX}","essential":true,"command":["sh","-c","exit 3"]}}]}}"#
        ),
    );
    status(&mf, &["run-task", "--task-definition", &td], 3);
    let deadline = Instant::now() + Duration::from_secs(30);
    while mf.json(&["list-tasks"])["taskArns"] != json!([]) {
        assert!(Instant::now() < deadline, "tasks still running");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn start_task_container_instances_and_cluster_operations() {
    let (mf, _reg) = busybox_task_env(busybox_layer(Compression::Gzip, "ecs-cli-start"));
    mf.json(&["create-cluster"]);
    // This box is the cluster's one container instance.
    let out = status(
        &mf,
        &[
            "list-container-instances",
            "--query",
            "containerInstanceArns[0]",
            "--output",
            "text",
        ],
        0,
    );
    let ci = stdout(&out).trim().to_string();
    assert!(ci.contains(":container-instance/default/"), "{ci}");
    let out = status(
        &mf,
        &[
            "describe-container-instances",
            "--container-instances",
            &ci,
            "--query",
            "containerInstances[0].[agentConnected,status]",
            "--output",
            "text",
        ],
        0,
    );
    assert_eq!(stdout(&out), "True\tACTIVE\n");

    // start-task onto it: EC2 semantics.
    mf.json(&[
        "register-task-definition",
        "--family",
        "st",
        "--network-mode",
        "none",
        "--container-definitions",
        &format!(r#"[{{"name":"app","image":"{BUSYBOX}","memory":64,"command":["true"]}}]"#),
    ]);
    let v = mf.json(&[
        "start-task",
        "--task-definition",
        "st",
        "--container-instances",
        &ci,
        "--started-by",
        "cli-test",
    ]);
    let t = &v["tasks"][0];
    assert_eq!(t["launchType"], "EC2", "{v:#}");
    assert_eq!(t["containerInstanceArn"], ci.as_str(), "{v:#}");
    assert_eq!(t["startedBy"], "cli-test", "{v:#}");
    let id = t["taskArn"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let d = mf.json(&["describe-tasks", "--tasks", &id]);
        if d["tasks"][0]["lastStatus"] == "STOPPED" {
            assert_eq!(d["tasks"][0]["containers"][0]["exitCode"], 0, "{d:#}");
            break;
        }
        assert!(Instant::now() < deadline, "not STOPPED: {d:#}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // delete-task-definitions: an INACTIVE revision only.
    let v = mf.json(&["delete-task-definitions", "--task-definitions", "st:1"]);
    assert_eq!(
        v["failures"][0]["arn"]
            .as_str()
            .map(|a| a.ends_with("st:1")),
        Some(true),
        "{v:#}"
    );
    mf.json(&["deregister-task-definition", "--task-definition", "st:1"]);
    let out = status(
        &mf,
        &[
            "delete-task-definitions",
            "--task-definitions",
            "st:1",
            "--query",
            "taskDefinitions[0].status",
            "--output",
            "text",
        ],
        0,
    );
    assert_eq!(stdout(&out), "DELETE_IN_PROGRESS\n");

    // Capacity providers and cluster settings, shorthand typed by the model.
    let out = status(
        &mf,
        &[
            "describe-capacity-providers",
            "--query",
            "capacityProviders[].name",
            "--output",
            "text",
        ],
        0,
    );
    assert_eq!(stdout(&out), "FARGATE\tFARGATE_SPOT\n");
    let v = mf.json(&[
        "put-cluster-capacity-providers",
        "--cluster",
        "default",
        "--capacity-providers",
        "FARGATE",
        "--default-capacity-provider-strategy",
        "capacityProvider=FARGATE,weight=1",
    ]);
    assert_eq!(v["cluster"]["capacityProviders"], json!(["FARGATE"]));
    assert_eq!(
        v["cluster"]["defaultCapacityProviderStrategy"][0]["weight"], 1,
        "{v:#}"
    );
    let out = status(
        &mf,
        &[
            "update-cluster-settings",
            "--cluster",
            "default",
            "--settings",
            "name=containerInsights,value=enabled",
            "--output",
            "text",
            "--query",
            "cluster.settings[0].value",
        ],
        0,
    );
    assert_eq!(stdout(&out), "enabled\n");
    let e = mf.fail(&["list-services-by-namespace", "--namespace", "nope"]);
    assert!(e.contains("NamespaceNotFoundException"), "{e}");
}
