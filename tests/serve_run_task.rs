//! Root integration tests of RunTask's and ListTasks' members with a local meaning, driven
//! with the real AWS CLI against `minifargate serve`: capacity provider strategies,
//! platformVersion, propagateTags, ECS managed tags, clientToken idempotency, overrides,
//! and every ListTasks filter.

use crate::common;

use common::api::Api;
use serde_json::{Value, json};

/// A Fargate task that runs until stopped, with a tag on its definition.
const LONG: &str = r#"{"family":"rt-long","networkMode":"awsvpc","cpu":"256","memory":"512",
  "requiresCompatibilities":["FARGATE"],
  "tags":[{"key":"team","value":"blue"}],
  "containerDefinitions":[{"name":"app","image":"public.ecr.aws/docker/library/busybox:1.36",
    "essential":true,"command":["sh","-c","trap 'exit 0' TERM; while :; do sleep 0.1; done"]}]}"#;

/// The same on EC2: no requiresCompatibilities.
const EC2: &str = r#"{"family":"rt-ec2","networkMode":"awsvpc",
  "containerDefinitions":[{"name":"app","image":"public.ecr.aws/docker/library/busybox:1.36",
    "essential":true,"memory":64,
    "command":["sh","-c","trap 'exit 0' TERM; while :; do sleep 0.1; done"]}]}"#;

const NET: &str = "awsvpcConfiguration={subnets=[subnet-0abc]}";

fn arns(v: &Value) -> Vec<String> {
    v["taskArns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

fn tag<'a>(t: &'a Value, key: &str) -> Option<&'a str> {
    t["tags"]
        .as_array()?
        .iter()
        .find(|x| x["key"] == key)
        .and_then(|x| x["value"].as_str())
}

#[test]
fn capacity_providers_platform_version_tags_and_client_tokens() {
    let api = Api::start();
    let def = api.file("long.json", LONG);
    api.aws_json(&["register-task-definition", "--cli-input-json", &def]);

    // A strategy may only name providers associated with the cluster (ECS's rule).
    api.aws_json(&["create-cluster", "--cluster-name", "plain"]);
    let e = api.aws_err(&[
        "run-task",
        "--cluster",
        "plain",
        "--task-definition",
        "rt-long",
        "--capacity-provider-strategy",
        "capacityProvider=FARGATE_SPOT,weight=1",
        "--network-configuration",
        NET,
    ]);
    assert!(
        e.contains("InvalidParameterException") && e.contains("not associated with the cluster"),
        "{e}"
    );
    let c = api.aws_json(&[
        "create-cluster",
        "--cluster-name",
        "cp",
        "--capacity-providers",
        "FARGATE",
        "FARGATE_SPOT",
        "--tags",
        "key=env,value=test",
    ]);
    assert_eq!(
        c["cluster"]["capacityProviders"],
        json!(["FARGATE", "FARGATE_SPOT"])
    );
    assert_eq!(
        c["cluster"]["tags"],
        json!([{"key": "env", "value": "test"}])
    );

    let run_args = [
        "run-task",
        "--cluster",
        "cp",
        "--task-definition",
        "rt-long",
        "--capacity-provider-strategy",
        "capacityProvider=FARGATE_SPOT,weight=1",
        "--platform-version",
        "LATEST",
        "--propagate-tags",
        "TASK_DEFINITION",
        "--enable-ecs-managed-tags",
        "--tags",
        "key=owner,value=me",
        "--client-token",
        "tok-1",
        "--network-configuration",
        NET,
    ];
    let run = api.aws_json(&run_args);
    let t = &run["tasks"][0];
    let arn = t["taskArn"].as_str().unwrap().to_string();
    assert_eq!(t["launchType"], "FARGATE", "{t:#}");
    assert_eq!(t["capacityProviderName"], "FARGATE_SPOT", "{t:#}");
    assert_eq!(t["platformVersion"], "1.4.0", "{t:#}");
    api.aws_json(&["wait", "tasks-running", "--cluster", "cp", "--tasks", &arn]);

    // The tags: the request's, the definition's (propagated), ECS's managed one.
    let d = api.aws_json(&[
        "describe-tasks",
        "--cluster",
        "cp",
        "--tasks",
        &arn,
        "--include",
        "TAGS",
    ]);
    let t = &d["tasks"][0];
    assert_eq!(tag(t, "owner"), Some("me"), "{t:#}");
    assert_eq!(tag(t, "team"), Some("blue"), "{t:#}");
    assert_eq!(tag(t, "aws:ecs:clusterName"), Some("cp"), "{t:#}");
    assert_eq!(t["tags"].as_array().unwrap().len(), 3, "{t:#}");

    // The same token and request: the same task, nothing new started.
    let again = api.aws_json(&run_args);
    assert_eq!(again["tasks"][0]["taskArn"], arn.as_str());
    let listed = api.aws_json(&["list-tasks", "--cluster", "cp"]);
    assert_eq!(arns(&listed), [arn.as_str()]);
    // The same token with another request: ECS's ConflictException.
    let mut other = run_args.to_vec();
    other.extend(["--started-by", "someone-else"]);
    let e = api.aws_err(&other);
    assert!(e.contains("ConflictException"), "{e}");
    // Four clients retrying one new token at once: one task, and each gets it.
    let raced = api.boto3(
        r#"
import boto3, json, os, threading
ecs = boto3.client("ecs", endpoint_url=os.environ["ENDPOINT"], region_name="us-east-1")
out = []
def run():
    r = ecs.run_task(cluster="cp", taskDefinition="rt-long", clientToken="tok-race",
                     capacityProviderStrategy=[{"capacityProvider": "FARGATE", "weight": 1}],
                     networkConfiguration={"awsvpcConfiguration": {"subnets": ["subnet-0abc"]}})
    out.append([t["taskArn"] for t in r["tasks"]])
threads = [threading.Thread(target=run) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps(out))
"#,
    );
    let raced: Vec<Vec<String>> = serde_json::from_value(raced).unwrap();
    assert_eq!(raced.len(), 4, "{raced:?}");
    assert_eq!(raced[0].len(), 1, "{raced:?}");
    assert!(raced.iter().all(|r| *r == raced[0]), "{raced:?}");
    let listed = api.aws_json(&["list-tasks", "--cluster", "cp"]);
    assert_eq!(arns(&listed).len(), 2, "{listed:#}");
    api.aws_json(&["stop-task", "--cluster", "cp", "--task", &raced[0][0]]);

    // ECS's refusals.
    let e = api.aws_err(&[
        "run-task",
        "--cluster",
        "cp",
        "--task-definition",
        "rt-long",
        "--launch-type",
        "FARGATE",
        "--capacity-provider-strategy",
        "capacityProvider=FARGATE,weight=1",
    ]);
    assert!(
        e.contains("Specifying both a launch type and capacity provider strategy"),
        "{e}"
    );
    let e = api.aws_err(&[
        "run-task",
        "--cluster",
        "cp",
        "--task-definition",
        "rt-long",
        "--propagate-tags",
        "SERVICE",
    ]);
    assert!(
        e.contains("InvalidParameterException") && e.contains("propagateTags SERVICE"),
        "{e}"
    );

    // An EC2 task: on this host as the cluster's container instance; no platform version.
    let ec2 = api.file("ec2.json", EC2);
    api.aws_json(&["register-task-definition", "--cli-input-json", &ec2]);
    let e = api.aws_err(&[
        "run-task",
        "--cluster",
        "cp",
        "--task-definition",
        "rt-ec2",
        "--launch-type",
        "EC2",
        "--platform-version",
        "1.4.0",
    ]);
    assert!(
        e.contains("The platform version must be null when specifying an EC2 launch type"),
        "{e}"
    );
    let run = api.aws_json(&[
        "run-task",
        "--cluster",
        "cp",
        "--task-definition",
        "rt-ec2",
        "--launch-type",
        "EC2",
    ]);
    let t = &run["tasks"][0];
    let ec2_arn = t["taskArn"].as_str().unwrap().to_string();
    let instance = t["containerInstanceArn"].as_str().unwrap().to_string();
    assert!(
        instance.starts_with("arn:aws:ecs:us-east-1:000000000000:container-instance/cp/"),
        "{t:#}"
    );
    assert!(t.get("platformVersion").is_none(), "{t:#}");
    api.aws_json(&[
        "wait",
        "tasks-running",
        "--cluster",
        "cp",
        "--tasks",
        &ec2_arn,
    ]);

    // ListTasks filters.
    let by = |args: &[&str]| {
        let mut a = vec!["list-tasks", "--cluster", "cp"];
        a.extend_from_slice(args);
        arns(&api.aws_json(&a))
    };
    assert_eq!(by(&["--launch-type", "FARGATE"]), [arn.as_str()]);
    assert_eq!(by(&["--launch-type", "EC2"]), [ec2_arn.as_str()]);
    assert_eq!(by(&["--container-instance", &instance]), [ec2_arn.as_str()]);
    assert_eq!(by(&["--family", "rt-ec2"]), [ec2_arn.as_str()]);
    let e = api.aws_err(&[
        "list-tasks",
        "--cluster",
        "cp",
        "--container-instance",
        "0123456789abcdef0123456789abcdef",
    ]);
    assert!(e.contains("InvalidParameterException"), "{e}");
    let e = api.aws_err(&["list-tasks", "--cluster", "cp", "--service-name", "nope"]);
    assert!(e.contains("ServiceNotFoundException"), "{e}");

    for a in [&arn, &ec2_arn] {
        api.aws_json(&["stop-task", "--cluster", "cp", "--task", a]);
        api.aws_json(&["wait", "tasks-stopped", "--cluster", "cp", "--tasks", a]);
    }
}

/// A task that prints its environment and the size of its ephemeral storage request.
const ENV: &str = r#"{"family":"rt-env","networkMode":"awsvpc","cpu":"256","memory":"512",
  "requiresCompatibilities":["FARGATE"],
  "containerDefinitions":[{"name":"app","image":"public.ecr.aws/docker/library/busybox:1.36",
    "essential":true,"command":["sh","-c","echo GREETING=$GREETING"]}]}"#;

#[test]
fn overrides_are_complete_and_list_tasks_finds_a_services_tasks() {
    let api = Api::start();
    let def = api.file("env.json", ENV);
    api.aws_json(&["register-task-definition", "--cli-input-json", &def]);
    // ephemeralStorage and resourceRequirements overrides reach the task: the size is the
    // task's, and the GPU it asks for is reported as not assigned here.
    let overrides = r#"{"ephemeralStorage":{"sizeInGiB":40},
        "containerOverrides":[{"name":"app","environment":[{"name":"GREETING","value":"hi"}],
          "resourceRequirements":[{"type":"GPU","value":"1"}]}]}"#;
    let run = api.aws_json(&[
        "run-task",
        "--task-definition",
        "rt-env",
        "--overrides",
        overrides,
    ]);
    let arn = run["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    api.aws_json(&["wait", "tasks-stopped", "--tasks", &arn]);
    let t = &api.aws_json(&["describe-tasks", "--tasks", &arn])["tasks"][0];
    assert_eq!(t["ephemeralStorage"], json!({"sizeInGiB": 40}), "{t:#}");
    assert_eq!(
        t["overrides"]["ephemeralStorage"],
        json!({"sizeInGiB": 40}),
        "{t:#}"
    );
    let warnings: Vec<&str> = t["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["name"] == "minifargate.warning")
        .map(|a| a["value"].as_str().unwrap())
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("containerDefinitions[0].resourceRequirements")),
        "{warnings:#?}"
    );
    // The override itself is said to do nothing here (no GPU is assigned).
    assert!(
        warnings.iter().any(|w| w
            .starts_with("overrides.containerOverrides[0].resourceRequirements: not applied here")),
        "{warnings:#?}"
    );
    assert_eq!(t["containers"][0]["exitCode"], 0, "{t:#}");
    // What the container printed (the logs verb reads the task's output).
    let logs = api.mf.run(&["logs", arn.rsplit('/').next().unwrap()]);
    assert!(
        String::from_utf8_lossy(&logs.stdout).contains("GREETING=hi"),
        "{logs:?}"
    );
    // A remote caller cannot have the server read its files into a container.
    let e = api.aws_err(&[
        "run-task",
        "--task-definition",
        "rt-env",
        "--overrides",
        r#"{"containerOverrides":[{"name":"app","environmentFiles":[{"value":"/etc/hostname","type":"s3"}]}]}"#,
    ]);
    assert!(
        e.contains("InvalidParameterException") && e.contains("not an S3 object ARN"),
        "{e}"
    );

    // A service's tasks, by serviceName.
    let long = api.file("long.json", LONG);
    api.aws_json(&["register-task-definition", "--cli-input-json", &long]);
    api.aws_json(&[
        "create-service",
        "--service-name",
        "web",
        "--task-definition",
        "rt-long",
        "--desired-count",
        "1",
        "--network-configuration",
        NET,
    ]);
    let solo = api.aws_json(&[
        "run-task",
        "--task-definition",
        "rt-long",
        "--network-configuration",
        NET,
    ]);
    let solo_arn = solo["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    let svc_tasks = api.wait_for(30, "the service's task", || {
        let a = arns(&api.aws_json(&["list-tasks", "--service-name", "web"]));
        (!a.is_empty()).then_some(a)
    });
    assert_eq!(svc_tasks.len(), 1);
    assert_ne!(svc_tasks[0], solo_arn);
    let all = arns(&api.aws_json(&["list-tasks"]));
    assert_eq!(all.len(), 2, "{all:?}");
    api.aws_json(&["delete-service", "--service", "web", "--force"]);
    api.aws_json(&["stop-task", "--task", &solo_arn]);
    api.aws_json(&["wait", "tasks-stopped", "--tasks", &solo_arn, &svc_tasks[0]]);
}
