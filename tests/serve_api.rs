//! Root integration tests of `minifargate serve` with the real AWS CLI (PyPI `awscli`,
//! from the test venv): the ECS JSON 1.1 API over loopback, against a real registry
//! (served as public.ecr.aws through a mirror), the real kernel and supervisors.

use crate::common;

use common::api::Api;

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

/// Members this host does not apply: placementConstraints and credentialSpecs in the task
/// definition; splunk is a local difference (the output stays on this host; awslogs is
/// honoured, tests/logs_api.rs).
const NOT_APPLIED: &str = r#"{"family":"not-applied","networkMode":"awsvpc","cpu":"256","memory":"512",
  "placementConstraints":[{"type":"memberOf","expression":"attribute:ecs.instance-type =~ t3.*"}],
  "containerDefinitions":[{"name":"app","image":"public.ecr.aws/docker/library/busybox:1.36",
    "essential":true,"command":["echo","hi"],
    "credentialSpecs":["credentialspecdomainless:arn:aws:ssm:us-east-1:000000000000:parameter/gmsa"],
    "logConfiguration":{"logDriver":"splunk","options":{
      "splunk-url":"https://splunk.example.com:8088"}}}]}"#;

/// The warnings a task carries, as the task `attributes` named `minifargate.warning`.
fn warning_attributes(t: &serde_json::Value) -> Vec<String> {
    t["attributes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["name"] == "minifargate.warning")
        .map(|a| a["value"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn members_not_applied_are_task_warnings_the_aws_cli_shows() {
    let api = Api::start();
    let def = api.file("not-applied.json", NOT_APPLIED);
    api.aws_json(&["register-task-definition", "--cli-input-json", &def]);
    let run = api.aws_json(&[
        "run-task",
        "--task-definition",
        "not-applied",
        "--reference-id",
        "ref-1",
        "--enable-ecs-managed-tags",
    ]);
    let arn = run["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    api.aws_json(&["wait", "tasks-stopped", "--tasks", &arn]);
    let t = &api.aws_json(&["describe-tasks", "--tasks", &arn])["tasks"][0];
    // The AWS CLI drops minifargateWarnings (its model has no such member)...
    assert!(t.get("minifargateWarnings").is_none(), "{t:#}");
    // ...and prints the attributes.
    let shown = warning_attributes(t);
    for want in [
        "placementConstraints: not applied here: one host",
        "containerDefinitions[0].credentialSpecs: not applied here: no Active Directory",
        "containerDefinitions[0].logConfiguration: honoured with a local difference: the \
         splunk log driver is not used here: the output is kept on this host",
    ] {
        assert!(
            shown.iter().any(|w| w.starts_with(want)),
            "no warning {want:?} in {shown:#?}"
        );
    }
    // referenceId, enableECSManagedTags and the clientToken the AWS CLI sends with every
    // RunTask are honoured: no warning.
    assert_eq!(shown.len(), 3, "{shown:#?}");
    // The task still ran as asked.
    assert_eq!(t["containers"][0]["exitCode"], 0, "{t:#}");

    // The minifargate CLI shows the same warnings, in both places.
    let cli = &api.mf_json(&["describe-tasks", "--tasks", &arn])["tasks"][0];
    assert_eq!(warning_attributes(cli), shown);
    let extra: Vec<String> = serde_json::from_value(cli["minifargateWarnings"].clone()).unwrap();
    assert_eq!(extra, shown);
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

/// boto3, as scripts use it: register → run_task → the tasks_running waiter → describe →
/// stop_task → the tasks_stopped waiter; and a service until the services_stable waiter,
/// deleted until services_inactive.
#[test]
fn boto3_runs_waits_and_stops_a_task_and_a_service() {
    let api = Api::start();
    let out = api.boto3(&format!(
        r#"
import json, os, boto3
ecs = boto3.client("ecs", endpoint_url=os.environ["ENDPOINT"], region_name="us-east-1")
td = json.loads('''{LONG}''')
arn = ecs.register_task_definition(**td)["taskDefinition"]["taskDefinitionArn"]
task = ecs.run_task(taskDefinition="serve-long")["tasks"][0]["taskArn"]
fast = {{"Delay": 1, "MaxAttempts": 60}}
ecs.get_waiter("tasks_running").wait(tasks=[task], WaiterConfig=fast)
running = ecs.describe_tasks(tasks=[task])["tasks"][0]
ecs.stop_task(task=task, reason="boto3 says stop")
ecs.get_waiter("tasks_stopped").wait(tasks=[task], WaiterConfig=fast)
stopped = ecs.describe_tasks(tasks=[task])["tasks"][0]
svc = ecs.create_service(serviceName="boto", taskDefinition="serve-long", desiredCount=1)
ecs.get_waiter("services_stable").wait(services=["boto"], WaiterConfig=fast)
stable = ecs.describe_services(services=["boto"])["services"][0]
ecs.delete_service(service="boto", force=True)
ecs.get_waiter("services_inactive").wait(services=["boto"], WaiterConfig=fast)
gone = ecs.describe_services(services=["boto"])["services"][0]
print(json.dumps({{"arn": arn, "running": running["lastStatus"], "stopped": stopped["lastStatus"],
    "stopCode": stopped["stopCode"], "reason": stopped["stoppedReason"],
    "created": svc["service"]["status"], "stableRunning": stable["runningCount"],
    "deployments": len(stable["deployments"]), "gone": gone["status"]}}))
"#
    ));
    assert_eq!(
        out["arn"],
        "arn:aws:ecs:us-east-1:000000000000:task-definition/serve-long:1"
    );
    assert_eq!(out["running"], "RUNNING");
    assert_eq!(out["stopped"], "STOPPED");
    assert_eq!(out["stopCode"], "UserInitiated");
    assert_eq!(out["reason"], "boto3 says stop");
    assert_eq!(out["created"], "ACTIVE");
    assert_eq!(out["stableRunning"], 1);
    assert_eq!(out["deployments"], 1);
    assert_eq!(out["gone"], "INACTIVE");
}

/// What the AWS CLI refuses before sending, a hand-made request gets refused with the same
/// words, and nothing is registered or
/// started; overrides above ECS's 8192 characters are refused as ECS refuses them.
#[test]
fn unknown_members_and_oversized_overrides_are_refused_over_the_api() {
    let api = Api::start();
    let out = api.boto3(
        r##"
import json, os, urllib.request, urllib.error
import botocore.auth, botocore.awsrequest, botocore.session
# A raw request: boto3 and the AWS CLI cannot send members their model does not have.
# Signed as botocore signs (serve's key, from the session the harness set up).
creds = botocore.session.Session().get_credentials()
def call(op, body):
    r = botocore.awsrequest.AWSRequest(method="POST", url=os.environ["ENDPOINT"],
        data=json.dumps(body).encode(),
        headers={"X-Amz-Target": "AmazonEC2ContainerServiceV20141113." + op,
                 "Content-Type": "application/x-amz-json-1.1"})
    botocore.auth.SigV4Auth(creds, "ecs", "us-east-1").add_auth(r)
    req = urllib.request.Request(r.url, data=r.body, headers=dict(r.headers.items()))
    try:
        return json.load(urllib.request.urlopen(req))
    except urllib.error.HTTPError as e:
        b = json.load(e)
        raise RuntimeError(b.get("__type", ""), b.get("message", b.get("Message", "")))
class Ecs:
    def __getattr__(self, op):
        return lambda **kw: call("".join(w.capitalize() for w in op.split("_")), kw)
ecs = Ecs()
def err(f, **kw):
    try:
        f(**kw)
        return None
    except RuntimeError as e:
        return [e.args[0].split("#")[-1], e.args[1]]
out = {}
out["register"] = err(ecs.register_task_definition, family="typo", containerDefinitions=[
    {"name": "a", "image": "busybox", "memory": 64, "enviroment": [{"name": "A", "value": "1"}]}])
out["families"] = ecs.list_task_definition_families()["families"]
out["run"] = err(ecs.run_task, taskDefinition="typo",
    overrides={"containerOverrides": [{"name": "a", "comand": ["true"]}]})
big = [{"name": "V%04d" % i, "value": "x" * 40} for i in range(200)]
out["big"] = err(ecs.run_task, taskDefinition="typo",
    overrides={"containerOverrides": [{"name": "a", "environment": big}]})
out["tasks"] = ecs.list_tasks()["taskArns"]
print(json.dumps(out))
"##,
    );
    assert_eq!(out["register"][0], "ClientException", "{out:#}");
    let m = out["register"][1].as_str().unwrap();
    assert!(
        m.contains("Unknown parameter in containerDefinitions[0]: \"enviroment\"")
            && m.contains("Did you mean \"environment\"?"),
        "{m}"
    );
    assert_eq!(out["families"], serde_json::json!([]));
    assert_eq!(out["run"][0], "InvalidParameterException", "{out:#}");
    let m = out["run"][1].as_str().unwrap();
    assert!(
        m.contains(
            "Unknown parameter in overrides.containerOverrides[0]: \"comand\", must be one of: \
             name, command,"
        ) && m.contains("Did you mean \"command\"?"),
        "{m}"
    );
    assert_eq!(out["big"][0], "InvalidParameterException", "{out:#}");
    assert!(
        out["big"][1]
            .as_str()
            .unwrap()
            .starts_with("Container Overrides length must be at most 8192"),
        "{out:#}"
    );
    assert_eq!(out["tasks"], serde_json::json!([]));
}
