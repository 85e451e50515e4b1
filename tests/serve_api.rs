//! Root integration tests of `minifargate serve` with the real AWS CLI (PyPI `awscli`,
//! from the test venv): the ECS JSON 1.1 API over loopback, against a real registry
//! (served as public.ecr.aws through a mirror), the real kernel and supervisors.

mod common;

use common::cli::Mf;
use common::image::{Compression, busybox_layer};
use common::push_image;
use common::registry::{Registry, RegistryOpts};
use common::services::tool;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// A private root and registry, and `minifargate serve` on a free loopback port. On drop:
/// the server is stopped, then any supervisor still running is killed (by its recorded
/// pid) and cleaned up after.
struct Api {
    mf: Mf,
    _reg: Registry,
    server: Child,
    endpoint: String,
}

impl Api {
    fn start() -> Api {
        let reg = Registry::start(RegistryOpts::default());
        let work = tempfile::Builder::new()
            .prefix("mf-serve-img-")
            .tempdir()
            .unwrap();
        push_image(
            &reg,
            work.path(),
            "docker/library/busybox:1.36",
            &[busybox_layer(Compression::Gzip, "serve")],
        );
        let mut mf = Mf::new();
        mf.mirror_config("public.ecr.aws", &reg.host(), true);
        let mut server = mf
            .cmd()
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start minifargate serve");
        // The first line names the address it listens on.
        let mut line = String::new();
        BufReader::new(server.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let endpoint = line
            .split_whitespace()
            .last()
            .filter(|u| u.starts_with("http://127.0.0.1:"))
            .unwrap_or_else(|| panic!("serve did not print its address: {line:?}"))
            .to_string();
        Api {
            mf,
            _reg: reg,
            server,
            endpoint,
        }
    }

    /// `aws ecs ARGS` against the server: dummy credentials, no config files, no
    /// instance metadata.
    fn aws(&self, args: &[&str]) -> Output {
        let mut c = Command::new(tool("aws"));
        for (k, _) in std::env::vars() {
            if k.starts_with("AWS_") {
                c.env_remove(k);
            }
        }
        common::util::no_proxy(&mut c);
        c.env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
            .env(
                "AWS_SECRET_ACCESS_KEY",
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            )
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("AWS_PAGER", "")
            .args([
                "ecs",
                "--endpoint-url",
                &self.endpoint,
                "--region",
                "us-east-1",
            ])
            .args(["--output", "json"])
            .args(args);
        let out = c
            .output()
            .expect("run the aws cli (is awscli in target/test-venv?)");
        eprintln!(
            "$ aws ecs {}\n  exit: {}\n  stdout: {}\n  stderr: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn aws_json(&self, args: &[&str]) -> Value {
        let out = self.aws(args);
        assert!(out.status.success(), "aws ecs {args:?} failed");
        if out.stdout.is_empty() {
            return Value::Null;
        }
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The stderr of a failing `aws ecs ARGS`.
    fn aws_err(&self, args: &[&str]) -> String {
        let out = self.aws(args);
        assert!(!out.status.success(), "aws ecs {args:?} should have failed");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn mf_json(&self, args: &[&str]) -> Value {
        let out = self.mf.run(args);
        assert!(out.status.success(), "minifargate {args:?} failed");
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn file(&self, name: &str, json: &str) -> String {
        let p = self.mf.dir.path().join(name);
        std::fs::write(&p, json).unwrap();
        format!("file://{}", p.display())
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.server.id().to_string()])
            .status();
        let _ = self.server.wait();
        let tasks = self.mf.run_root.join("tasks");
        let mut killed = false;
        for e in std::fs::read_dir(&tasks).into_iter().flatten().flatten() {
            if let Ok(pid) = std::fs::read_to_string(e.path().join("supervisor.pid")) {
                let _ = Command::new("kill").args(["-KILL", pid.trim()]).status();
                killed = true;
            }
        }
        if killed {
            std::thread::sleep(Duration::from_millis(200));
            // The next command notices the dead supervisors and cleans up after them.
            let _ = self.mf.cmd().args(["list-tasks"]).output();
        }
    }
}

fn hello_json() -> String {
    format!("file://{}/examples/hello.json", env!("CARGO_MANIFEST_DIR"))
}

const LONG: &str = r#"{"family":"serve-long","networkMode":"awsvpc","cpu":"256","memory":"512",
  "requiresCompatibilities":["FARGATE"],
  "containerDefinitions":[{"name":"app","image":"public.ecr.aws/docker/library/busybox:1.36",
    "essential":true,"command":["sh","-c","trap 'exit 0' TERM; while :; do sleep 0.1; done"]}]}"#;

#[test]
fn hello_runs_to_completion_through_the_aws_cli() {
    let api = Api::start();
    let td = api.aws_json(&[
        "register-task-definition",
        "--cli-input-json",
        &hello_json(),
    ]);
    assert_eq!(
        td["taskDefinition"]["taskDefinitionArn"],
        "arn:aws:ecs:us-east-1:000000000000:task-definition/hello:1"
    );
    assert_eq!(td["taskDefinition"]["status"], "ACTIVE");

    let run = api.aws_json(&[
        "run-task",
        "--task-definition",
        "hello",
        "--launch-type",
        "FARGATE",
        "--network-configuration",
        "awsvpcConfiguration={subnets=[subnet-0abc],securityGroups=[sg-0def]}",
    ]);
    assert_eq!(run["failures"], serde_json::json!([]));
    let arn = run["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    assert!(
        arn.starts_with("arn:aws:ecs:us-east-1:000000000000:task/default/"),
        "{arn}"
    );
    assert_eq!(run["tasks"][0]["desiredStatus"], "RUNNING");

    api.aws_json(&["wait", "tasks-stopped", "--tasks", &arn]);
    let d = api.aws_json(&["describe-tasks", "--tasks", &arn]);
    let t = &d["tasks"][0];
    assert_eq!(t["lastStatus"], "STOPPED");
    assert_eq!(t["stopCode"], "EssentialContainerExited");
    assert_eq!(t["containers"][0]["exitCode"], 0);
    // The awsvpc ENI attachment carries the subnet the AWS CLI sent.
    let eni = &t["attachments"][0];
    assert_eq!(eni["type"], "ElasticNetworkInterface", "{t:#}");
    assert!(
        eni["details"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["name"] == "subnetId" && d["value"] == "subnet-0abc"),
        "{eni:#}"
    );
    assert_eq!(
        t["taskDefinitionArn"],
        "arn:aws:ecs:us-east-1:000000000000:task-definition/hello:1"
    );
    // Timestamps travel as epoch seconds (AWS CLI v1 prints them as it got them).
    let (created, stopped) = (t["createdAt"].as_f64(), t["stoppedAt"].as_f64());
    assert!(
        created.is_some_and(|c| c > 1.7e9) && stopped >= created,
        "{t:#}"
    );

    // The same task through the minifargate CLI, over the same store.
    let cli = api.mf_json(&["describe-tasks", "--tasks", &arn]);
    assert_eq!(cli["tasks"][0]["stopCode"], "EssentialContainerExited");
    let stopped = api.aws_json(&["list-tasks", "--desired-status", "STOPPED"]);
    assert_eq!(stopped["taskArns"], serde_json::json!([arn]));
}

#[test]
fn long_running_task_waits_stop_and_is_shared_with_the_cli() {
    let api = Api::start();
    let def = api.file("long.json", LONG);
    api.aws_json(&["register-task-definition", "--cli-input-json", &def]);
    let run = api.aws_json(&["run-task", "--task-definition", "serve-long:1"]);
    let arn = run["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    api.aws_json(&["wait", "tasks-running", "--tasks", &arn]);

    // A task started by the CLI shows up in the API, and the reverse.
    let cli_run = api.mf_json(&["run-task", "--task-definition", "serve-long", "--detach"]);
    let cli_arn = cli_run["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    api.aws_json(&["wait", "tasks-running", "--tasks", &cli_arn]);
    let listed = api.aws_json(&["list-tasks"]);
    let arns: Vec<&str> = listed["taskArns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        arns.contains(&arn.as_str()) && arns.contains(&cli_arn.as_str()),
        "{arns:?}"
    );
    let seen = api.mf_json(&["describe-tasks", "--tasks", &arn]);
    assert_eq!(seen["tasks"][0]["lastStatus"], "RUNNING");
    // Pagination: one ARN a page, the AWS CLI follows nextToken.
    let paged = api.aws_json(&["list-tasks", "--page-size", "1"]);
    assert_eq!(paged["taskArns"].as_array().unwrap().len(), 2, "{paged:#}");

    let stop = api.aws_json(&["stop-task", "--task", &arn, "--reason", "done with it"]);
    assert_eq!(stop["task"]["desiredStatus"], "STOPPED");
    api.aws_json(&["wait", "tasks-stopped", "--tasks", &arn]);
    let t = &api.aws_json(&["describe-tasks", "--tasks", &arn])["tasks"][0];
    assert_eq!(t["stopCode"], "UserInitiated");
    assert_eq!(t["stoppedReason"], "done with it");
    assert_eq!(t["containers"][0]["exitCode"], 0);

    // The CLI's task, stopped through the API.
    api.aws_json(&["stop-task", "--task", &cli_arn]);
    api.aws_json(&["wait", "tasks-stopped", "--tasks", &cli_arn]);
    let running = api.aws_json(&["list-tasks"]);
    assert_eq!(running["taskArns"], serde_json::json!([]));
}

#[test]
fn clusters_task_definitions_and_errors() {
    let api = Api::start();
    // Errors: the ECS exception name, as the AWS CLI prints it.
    let e = api.aws_err(&["describe-task-definition", "--task-definition", "nope"]);
    assert!(
        e.contains(
            "An error occurred (ClientException) when calling the DescribeTaskDefinition operation"
        ),
        "{e}"
    );
    let e = api.aws_err(&["run-task", "--task-definition", "nope:3"]);
    assert!(
        e.contains("An error occurred (ClientException) when calling the RunTask operation"),
        "{e}"
    );
    let e = api.aws_err(&["list-tasks", "--cluster", "nowhere"]);
    assert!(
        e.contains("An error occurred (ClusterNotFoundException) when calling the ListTasks operation: Cluster not found."),
        "{e}"
    );
    let e = api.aws_err(&["run-task", "--cluster", "nowhere", "--task-definition", "x"]);
    assert!(e.contains("(ClusterNotFoundException)"), "{e}");
    let bad = api.file(
        "bad.json",
        r#"{"family":"bad","containerDefinitions":[{"name":"a"}]}"#,
    );
    let e = api.aws_err(&["register-task-definition", "--cli-input-json", &bad]);
    assert!(
        e.contains("(ClientException) when calling the RegisterTaskDefinition operation"),
        "{e}"
    );
    let e = api.aws_err(&["create-cluster", "--cluster-name", "bad name"]);
    assert!(e.contains("(InvalidParameterException)"), "{e}");

    // Clusters.
    let c = api.aws_json(&["create-cluster", "--cluster-name", "serve-dev"]);
    assert_eq!(c["cluster"]["clusterName"], "serve-dev");
    assert_eq!(c["cluster"]["status"], "ACTIVE");
    let l = api.aws_json(&["list-clusters"]);
    assert_eq!(
        l["clusterArns"],
        serde_json::json!(["arn:aws:ecs:us-east-1:000000000000:cluster/serve-dev"])
    );
    let d = api.aws_json(&["describe-clusters", "--clusters", "serve-dev", "gone"]);
    assert_eq!(d["clusters"][0]["runningTasksCount"], 0);
    assert_eq!(d["failures"][0]["reason"], "MISSING");
    assert_eq!(
        d["failures"][0]["arn"],
        "arn:aws:ecs:us-east-1:000000000000:cluster/gone"
    );
    // The CLI sees the API's cluster.
    let cli = api.mf_json(&["list-clusters"]);
    assert_eq!(cli["clusterArns"], l["clusterArns"]);
    let del = api.aws_json(&["delete-cluster", "--cluster", "serve-dev"]);
    assert_eq!(del["cluster"]["status"], "INACTIVE");

    // Task definitions: three revisions, listed one a page (nextToken followed by the CLI).
    for _ in 0..3 {
        api.aws_json(&[
            "register-task-definition",
            "--cli-input-json",
            &hello_json(),
        ]);
    }
    let l = api.aws_json(&["list-task-definitions", "--page-size", "1"]);
    let want: Vec<String> = (1..=3)
        .map(|r| format!("arn:aws:ecs:us-east-1:000000000000:task-definition/hello:{r}"))
        .collect();
    assert_eq!(l["taskDefinitionArns"], serde_json::json!(want));
    let l = api.aws_json(&[
        "list-task-definitions",
        "--sort",
        "DESC",
        "--max-items",
        "1",
    ]);
    assert_eq!(l["taskDefinitionArns"], serde_json::json!([want[2]]));
    assert!(l["NextToken"].is_string(), "{l:#}");
    let d = api.aws_json(&["describe-task-definition", "--task-definition", "hello"]);
    assert_eq!(d["taskDefinition"]["revision"], 3);
    let dr = api.aws_json(&["deregister-task-definition", "--task-definition", "hello:3"]);
    assert_eq!(dr["taskDefinition"]["status"], "INACTIVE");
    let d = api.aws_json(&["describe-task-definition", "--task-definition", "hello"]);
    assert_eq!(d["taskDefinition"]["revision"], 2);
    let f = api.aws_json(&["list-task-definition-families"]);
    assert_eq!(f["families"], serde_json::json!(["hello"]));
    let e = api.aws_err(&["run-task", "--task-definition", "hello:3"]);
    assert!(
        e.contains("(ClientException)") && e.contains("inactive"),
        "{e}"
    );
}
