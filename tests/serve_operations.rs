//! The ECS operations beyond tasks and services, driven with the real AWS CLI against
//! `minifargate serve`: the box as a container instance (ListContainerInstances,
//! DescribeContainerInstances, StartTask), DeleteTaskDefinitions, UpdateCluster,
//! UpdateClusterSettings, PutClusterCapacityProviders, DescribeCapacityProviders, account
//! settings, ListServicesByNamespace and task protection's failures for a standalone task.

use crate::common;

use common::api::Api;
use serde_json::{Value, json};

const EC2: &str = r#"{"family":"ops-ec2","networkMode":"bridge",
  "containerDefinitions":[{"name":"app","image":"public.ecr.aws/docker/library/busybox:1.36",
    "essential":true,"cpu":256,"memory":128,
    "portMappings":[{"containerPort":8080,"hostPort":18080}],
    "command":["sh","-c","trap 'exit 0' TERM; while :; do sleep 0.1; done"]}]}"#;

const DEL: &str = r#"{"family":"ops-del","networkMode":"bridge",
  "containerDefinitions":[{"name":"app","image":"public.ecr.aws/docker/library/busybox:1.36",
    "essential":true,"memory":64,
    "command":["sh","-c","trap 'exit 0' TERM; while :; do sleep 0.1; done"]}]}"#;

fn resource<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {list:#}"))
}

#[test]
fn the_box_is_each_clusters_container_instance_and_start_task_places_on_it() {
    let api = Api::start();
    api.aws_json(&["create-cluster", "--cluster-name", "box"]);
    let list = api.aws_json(&["list-container-instances", "--cluster", "box"]);
    let arns = list["containerInstanceArns"].as_array().unwrap();
    assert_eq!(arns.len(), 1, "{list:#}");
    let instance = arns[0].as_str().unwrap().to_string();
    assert!(
        instance.starts_with("arn:aws:ecs:us-east-1:000000000000:container-instance/box/"),
        "{instance}"
    );
    // The filter language: this host's attributes.
    let arch = if cfg!(target_arch = "aarch64") {
        "arm64"
    } else {
        "x86_64"
    };
    let hit = api.aws_json(&[
        "list-container-instances",
        "--cluster",
        "box",
        "--filter",
        &format!("attribute:ecs.cpu-architecture == {arch}"),
    ]);
    assert_eq!(hit["containerInstanceArns"], json!([instance]));
    let miss = api.aws_json(&[
        "list-container-instances",
        "--cluster",
        "box",
        "--filter",
        "attribute:ecs.os-type == windows",
    ]);
    assert_eq!(miss["containerInstanceArns"], json!([]));

    let describe = |api: &Api| {
        api.aws_json(&[
            "describe-container-instances",
            "--cluster",
            "box",
            "--container-instances",
            &instance,
        ])["containerInstances"][0]
            .clone()
    };
    let ci = describe(&api);
    assert_eq!(ci["agentConnected"], true, "{ci:#}");
    assert_eq!(ci["status"], "ACTIVE");
    let attrs = ci["attributes"].as_array().unwrap();
    let attr = |n: &str| attrs.iter().find(|a| a["name"] == n).cloned();
    assert_eq!(attr("ecs.cpu-architecture").unwrap()["value"], arch);
    assert_eq!(attr("ecs.os-type").unwrap()["value"], "linux");
    assert!(attr("ecs.capability.task-eni").is_some(), "{attrs:#?}");
    let nproc = std::thread::available_parallelism().unwrap().get() as i64;
    let cpu = resource(&ci["registeredResources"], "CPU")["integerValue"]
        .as_i64()
        .unwrap();
    assert_eq!(cpu, nproc * 1024);
    let free_cpu = resource(&ci["remainingResources"], "CPU")["integerValue"]
        .as_i64()
        .unwrap();
    let free_mem = resource(&ci["remainingResources"], "MEMORY")["integerValue"]
        .as_i64()
        .unwrap();
    assert_eq!(free_cpu, cpu);

    // StartTask onto it: one task, EC2, on this instance; its resources are taken.
    let def = api.file("ec2.json", EC2);
    api.aws_json(&["register-task-definition", "--cli-input-json", &def]);
    let start = api.aws_json(&[
        "start-task",
        "--cluster",
        "box",
        "--task-definition",
        "ops-ec2",
        "--container-instances",
        &instance,
        "0123456789abcdef0123456789abcdef",
    ]);
    assert_eq!(start["tasks"].as_array().unwrap().len(), 1, "{start:#}");
    assert_eq!(start["failures"][0]["reason"], "MISSING", "{start:#}");
    let t = &start["tasks"][0];
    assert_eq!(t["launchType"], "EC2");
    assert_eq!(t["containerInstanceArn"], instance.as_str());
    let arn = t["taskArn"].as_str().unwrap().to_string();
    api.aws_json(&["wait", "tasks-running", "--cluster", "box", "--tasks", &arn]);
    let ci = describe(&api);
    assert_eq!(ci["runningTasksCount"], 1, "{ci:#}");
    let rem = &ci["remainingResources"];
    assert_eq!(resource(rem, "CPU")["integerValue"], free_cpu - 256);
    assert_eq!(resource(rem, "MEMORY")["integerValue"], free_mem - 128);
    let ports = resource(rem, "PORTS")["stringSetValue"].as_array().unwrap();
    assert!(ports.contains(&json!("18080")), "{ports:?}");
    assert!(ports.contains(&json!("51678")), "{ports:?}");
    let listed = api.aws_json(&[
        "list-tasks",
        "--cluster",
        "box",
        "--container-instance",
        &instance,
    ]);
    assert_eq!(listed["taskArns"], json!([arn]));

    // Task protection is for a service's tasks: a standalone one is TASK_NOT_VALID.
    let p = api.aws_json(&[
        "update-task-protection",
        "--cluster",
        "box",
        "--tasks",
        &arn,
        "--protection-enabled",
    ]);
    assert_eq!(p["failures"][0]["reason"], "TASK_NOT_VALID", "{p:#}");

    api.aws_json(&["stop-task", "--cluster", "box", "--task", &arn]);
    api.aws_json(&["wait", "tasks-stopped", "--cluster", "box", "--tasks", &arn]);
    let ci = describe(&api);
    assert_eq!(
        resource(&ci["remainingResources"], "CPU")["integerValue"],
        free_cpu
    );
}

#[test]
fn task_definitions_clusters_capacity_providers_and_account_settings() {
    let api = Api::start();
    let def = api.file("ec2.json", EC2);
    for _ in 0..2 {
        api.aws_json(&["register-task-definition", "--cli-input-json", &def]);
    }
    // DeleteTaskDefinitions: only INACTIVE revisions; ACTIVE ones are failures.
    api.aws_json(&[
        "deregister-task-definition",
        "--task-definition",
        "ops-ec2:1",
    ]);
    let d = api.aws_json(&[
        "delete-task-definitions",
        "--task-definitions",
        "ops-ec2:1",
        "ops-ec2:2",
    ]);
    assert_eq!(
        d["taskDefinitions"][0]["status"], "DELETE_IN_PROGRESS",
        "{d:#}"
    );
    assert_eq!(d["failures"].as_array().unwrap().len(), 1, "{d:#}");
    assert!(
        d["failures"][0]["arn"]
            .as_str()
            .unwrap()
            .ends_with("ops-ec2:2"),
        "{d:#}"
    );
    // Nothing uses ops-ec2:1: it is gone at the next pass (serve's scheduler runs one a
    // second), as ECS removes a DELETE_IN_PROGRESS revision once nothing uses it.
    api.wait_for(30, "ops-ec2:1 to be gone", || {
        let listed = api.aws_json(&["list-task-definitions", "--status", "DELETE_IN_PROGRESS"]);
        listed["taskDefinitionArns"]
            .as_array()
            .unwrap()
            .is_empty()
            .then_some(())
    });
    let gone = api.aws(&["describe-task-definition", "--task-definition", "ops-ec2:1"]);
    assert!(!gone.status.success());

    // One a task still runs stays DELETE_IN_PROGRESS until the task stops; then it is
    // gone, and the family's next registration still takes the next number.
    let del = api.file("del.json", DEL);
    api.aws_json(&["register-task-definition", "--cli-input-json", &del]);
    let run = api.aws_json(&["run-task", "--task-definition", "ops-del:1"]);
    let task = run["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    api.aws_json(&["wait", "tasks-running", "--tasks", &task]);
    api.aws_json(&[
        "deregister-task-definition",
        "--task-definition",
        "ops-del:1",
    ]);
    api.aws_json(&["delete-task-definitions", "--task-definitions", "ops-del:1"]);
    std::thread::sleep(std::time::Duration::from_secs(2));
    let kept = api.aws_json(&["describe-task-definition", "--task-definition", "ops-del:1"]);
    assert_eq!(kept["taskDefinition"]["status"], "DELETE_IN_PROGRESS");
    api.aws_json(&["stop-task", "--task", &task]);
    api.aws_json(&["wait", "tasks-stopped", "--tasks", &task]);
    api.wait_for(30, "ops-del:1 to be gone", || {
        let out = api.aws(&["describe-task-definition", "--task-definition", "ops-del:1"]);
        (!out.status.success()).then_some(())
    });
    let again = api.aws_json(&["register-task-definition", "--cli-input-json", &del]);
    assert_eq!(again["taskDefinition"]["revision"], 2);
    let e = api.aws_err(&["delete-task-definitions", "--task-definitions", "ops-ec2"]);
    assert!(e.contains("InvalidParameterException"), "{e}");

    // Cluster settings and capacity providers, stored and returned.
    api.aws_json(&["create-cluster", "--cluster-name", "c1"]);
    let u = api.aws_json(&[
        "update-cluster-settings",
        "--cluster",
        "c1",
        "--settings",
        "name=containerInsights,value=enabled",
    ]);
    assert_eq!(
        u["cluster"]["settings"],
        json!([{"name": "containerInsights", "value": "enabled"}])
    );
    let e = api.aws_err(&[
        "update-cluster-settings",
        "--cluster",
        "c1",
        "--settings",
        "name=containerInsights,value=maybe",
    ]);
    assert!(e.contains("InvalidParameterException"), "{e}");
    let u = api.aws_json(&[
        "update-cluster",
        "--cluster",
        "c1",
        "--service-connect-defaults",
        "namespace=ns-local",
    ]);
    // A new name: an HTTP namespace made in Cloud Map, answered as its ARN (as ECS does).
    let ns = u["cluster"]["serviceConnectDefaults"]["namespace"]
        .as_str()
        .unwrap_or_default();
    assert!(
        ns.starts_with("arn:aws:servicediscovery:") && ns.contains(":namespace/ns-"),
        "{u}"
    );
    let p = api.aws_json(&[
        "put-cluster-capacity-providers",
        "--cluster",
        "c1",
        "--capacity-providers",
        "FARGATE",
        "FARGATE_SPOT",
        "--default-capacity-provider-strategy",
        "capacityProvider=FARGATE,weight=1,base=1",
    ]);
    assert_eq!(
        p["cluster"]["capacityProviders"],
        json!(["FARGATE", "FARGATE_SPOT"])
    );
    assert_eq!(
        p["cluster"]["defaultCapacityProviderStrategy"],
        json!([{"capacityProvider": "FARGATE", "weight": 1, "base": 1}])
    );
    let e = api.aws_err(&[
        "put-cluster-capacity-providers",
        "--cluster",
        "c1",
        "--capacity-providers",
        "my-asg",
        "--default-capacity-provider-strategy",
        "[]",
    ]);
    assert!(e.contains("InvalidParameterException"), "{e}");
    let c = &api.aws_json(&[
        "describe-clusters",
        "--clusters",
        "c1",
        "--include",
        "SETTINGS",
    ])["clusters"][0];
    assert_eq!(c["settings"][0]["value"], "enabled", "{c:#}");
    assert_eq!(c["registeredContainerInstancesCount"], 1, "{c:#}");
    let cp = api.aws_json(&["describe-capacity-providers"]);
    let names: Vec<&str> = cp["capacityProviders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["FARGATE", "FARGATE_SPOT"]);
    let cp = api.aws_json(&[
        "describe-capacity-providers",
        "--capacity-providers",
        "FARGATE",
        "nope",
    ]);
    assert_eq!(cp["failures"][0]["reason"], "MISSING", "{cp:#}");

    // ListServicesByNamespace: the clusters' namespaces exist, others do not.
    let s = api.aws_json(&["list-services-by-namespace", "--namespace", "ns-local"]);
    assert_eq!(s["serviceArns"], json!([]));
    let e = api.aws_err(&["list-services-by-namespace", "--namespace", "elsewhere"]);
    assert!(e.contains("NamespaceNotFoundException"), "{e}");

    // Account settings: the default, the principal's own, effective values; a new
    // cluster starts with the account's containerInsights.
    api.aws_json(&[
        "put-account-setting-default",
        "--name",
        "containerInsights",
        "--value",
        "enhanced",
    ]);
    let put = api.aws_json(&[
        "put-account-setting",
        "--name",
        "awsvpcTrunking",
        "--value",
        "enabled",
    ]);
    assert_eq!(
        put["setting"]["principalArn"],
        "arn:aws:iam::000000000000:root"
    );
    let own = api.aws_json(&["list-account-settings"]);
    assert_eq!(
        own["settings"],
        json!([{"name": "awsvpcTrunking", "value": "enabled",
                "principalArn": "arn:aws:iam::000000000000:root", "type": "user"}])
    );
    let eff = api.aws_json(&[
        "list-account-settings",
        "--effective-settings",
        "--name",
        "containerInsights",
    ]);
    assert_eq!(eff["settings"][0]["value"], "enhanced", "{eff:#}");
    let e = api.aws_err(&[
        "put-account-setting",
        "--name",
        "taskLongArnFormat",
        "--value",
        "sometimes",
    ]);
    assert!(e.contains("InvalidParameterException"), "{e}");
    let c = api.aws_json(&["create-cluster", "--cluster-name", "c2"]);
    assert_eq!(
        c["cluster"]["settings"],
        json!([{"name": "containerInsights", "value": "enhanced"}])
    );
}
