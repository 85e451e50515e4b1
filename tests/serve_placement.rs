//! Placement on one box (docs/cluster.md, "Placement"), driven with the real AWS CLI
//! against `minifargate serve`: an EC2 task is placed on the cluster's one container
//! instance (this host) or comes back in RunTask's `failures[]` with ECS's reason
//! (RESOURCE:MEMORY, RESOURCE:PORTS, MemberOf/DistinctInstance placement constraint
//! unsatisfied), remainingResources go down and back up by the task's reservation, racing
//! RunTasks never both take the last memory, the CLI's run-task fails when nothing
//! started, and a service whose task fits nowhere gets ECS's event.

use crate::common;

use common::api::Api;
use serde_json::{Value, json};

fn def(family: &str, memory: i64, port: Option<u16>) -> String {
    let ports = port.map_or(String::new(), |p| {
        format!(r#","portMappings":[{{"containerPort":8080,"hostPort":{p}}}]"#)
    });
    format!(
        r#"{{"family":"{family}","networkMode":"bridge",
  "containerDefinitions":[{{"name":"app","image":"public.ecr.aws/docker/library/busybox:1.36",
    "essential":true,"memory":{memory}{ports},
    "command":["sh","-c","trap 'exit 0' TERM; while :; do sleep 0.1; done"]}}]}}"#
    )
}

fn resource(ci: &Value, name: &str) -> i64 {
    ci["remainingResources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {ci:#}"))["integerValue"]
        .as_i64()
        .unwrap()
}

struct Box_<'a> {
    api: &'a Api,
    cluster: &'static str,
    instance: String,
}

impl Box_<'_> {
    fn new<'a>(api: &'a Api, cluster: &'static str) -> Box_<'a> {
        api.aws_json(&["create-cluster", "--cluster-name", cluster]);
        let list = api.aws_json(&["list-container-instances", "--cluster", cluster]);
        let instance = list["containerInstanceArns"][0]
            .as_str()
            .unwrap()
            .to_string();
        Box_ {
            api,
            cluster,
            instance,
        }
    }

    fn describe(&self) -> Value {
        self.api.aws_json(&[
            "describe-container-instances",
            "--cluster",
            self.cluster,
            "--container-instances",
            &self.instance,
        ])["containerInstances"][0]
            .clone()
    }

    fn register(&self, family: &str, memory: i64, port: Option<u16>) {
        let f = self
            .api
            .file(&format!("{family}.json"), &def(family, memory, port));
        self.api
            .aws_json(&["register-task-definition", "--cli-input-json", &f]);
    }

    fn run(&self, family: &str, more: &[&str]) -> Value {
        let mut args = vec![
            "run-task",
            "--cluster",
            self.cluster,
            "--launch-type",
            "EC2",
            "--task-definition",
            family,
        ];
        args.extend_from_slice(more);
        self.api.aws_json(&args)
    }

    fn task_arns(r: &Value) -> Vec<String> {
        r["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["taskArn"].as_str().unwrap().to_string())
            .collect()
    }

    fn stop_all(&self, arns: &[String]) {
        for a in arns {
            self.api
                .aws_json(&["stop-task", "--cluster", self.cluster, "--task", a]);
        }
        let mut args = vec![
            "wait",
            "tasks-stopped",
            "--cluster",
            self.cluster,
            "--tasks",
        ];
        args.extend(arns.iter().map(String::as_str));
        self.api.aws_json(&args);
    }

    fn listed(&self) -> usize {
        self.api.aws_json(&[
            "list-tasks",
            "--cluster",
            self.cluster,
            "--desired-status",
            "RUNNING",
        ])["taskArns"]
            .as_array()
            .unwrap()
            .len()
    }
}

#[test]
fn ec2_tasks_that_do_not_fit_are_run_task_failures_with_ecs_reasons() {
    let api = Api::start();
    let b = Box_::new(&api, "place");
    let ci = b.describe();
    let mem = resource(&ci, "MEMORY");
    assert!(mem > 0, "{ci:#}");

    // More memory than the box has left: RESOURCE:MEMORY, the instance's ARN, no task.
    b.register("place-big", mem + 1, None);
    let r = b.run("place-big", &[]);
    assert_eq!(r["tasks"], json!([]), "{r:#}");
    assert_eq!(
        r["failures"],
        json!([{"arn": b.instance, "reason": "RESOURCE:MEMORY"}]),
        "{r:#}"
    );
    assert_eq!(b.listed(), 0);

    // StartTask onto the instance is placed the same way.
    let r = api.aws_json(&[
        "start-task",
        "--cluster",
        "place",
        "--task-definition",
        "place-big",
        "--container-instances",
        &b.instance,
    ]);
    assert_eq!(
        r["failures"],
        json!([{"arn": b.instance, "reason": "RESOURCE:MEMORY"}]),
        "{r:#}"
    );
    assert_eq!(r["tasks"], json!([]));

    // The CLI's run-task takes the same path: it says why and exits non-zero.
    let out = api.mf.run(&[
        "run-task",
        "--cluster",
        "place",
        "--task-definition",
        "place-big",
        "--detach",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("RESOURCE:MEMORY"), "{err}");
    assert!(err.contains(&b.instance), "{err}");
    assert_eq!(b.listed(), 0);

    // count 3 where 2 fit: two tasks, one failure; remainingResources go down by the
    // two reservations and come back once they stopped.
    let third = mem / 3 + 1;
    b.register("place-third", third, None);
    let r = b.run("place-third", &["--count", "3"]);
    let arns = Box_::task_arns(&r);
    assert_eq!(arns.len(), 2, "{r:#}");
    assert_eq!(r["failures"][0]["reason"], "RESOURCE:MEMORY", "{r:#}");
    assert_eq!(r["failures"].as_array().unwrap().len(), 1, "{r:#}");
    for t in r["tasks"].as_array().unwrap() {
        assert_eq!(t["containerInstanceArn"], b.instance.as_str());
    }
    assert_eq!(resource(&b.describe(), "MEMORY"), mem - 2 * third);
    b.stop_all(&arns);
    assert_eq!(resource(&b.describe(), "MEMORY"), mem);

    // Two bridge tasks on one static host port: the second is RESOURCE:PORTS.
    let port = common::util::free_port();
    b.register("place-port", 16, Some(port));
    let first = Box_::task_arns(&b.run("place-port", &[]));
    assert_eq!(first.len(), 1);
    let r = b.run("place-port", &[]);
    assert_eq!(
        r["failures"],
        json!([{"arn": b.instance, "reason": "RESOURCE:PORTS"}]),
        "{r:#}"
    );
    assert_eq!(r["tasks"], json!([]));
    let ci = b.describe();
    let ports = ci["remainingResources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "PORTS")
        .unwrap()["stringSetValue"]
        .clone();
    assert!(
        ports.as_array().unwrap().contains(&json!(port.to_string())),
        "{ports}"
    );
    // The query language (ListContainerInstances' filter, memberOf) sees the box's tasks.
    let filter = |f: &str| {
        api.aws_json(&[
            "list-container-instances",
            "--cluster",
            "place",
            "--filter",
            f,
        ])["containerInstanceArns"]
            .clone()
    };
    assert_eq!(
        filter("task:group == family:place-port"),
        json!([b.instance])
    );
    assert_eq!(filter("task:group == family:other"), json!([]));
    assert_eq!(
        filter("runningTasksCount >= 1 and attribute:ecs.os-type == linux"),
        json!([b.instance])
    );
    let r = b.run(
        "place-third",
        &[
            "--placement-constraints",
            "type=memberOf,expression=task:group == family:place-port",
        ],
    );
    assert_eq!(Box_::task_arns(&r).len(), 1, "{r:#}");
    b.stop_all(&Box_::task_arns(&r));
    b.stop_all(&first);
}

#[test]
fn constraints_are_binding_and_racing_run_tasks_never_share_the_last_memory() {
    let api = Api::start();
    let b = Box_::new(&api, "rules");
    b.register("rules-small", 16, None);

    // memberOf this box does not satisfy: ECS's words, no task.
    let r = b.run(
        "rules-small",
        &[
            "--placement-constraints",
            "type=memberOf,expression=attribute:ecs.os-type == windows",
        ],
    );
    assert_eq!(
        r["failures"],
        json!([{"arn": b.instance, "reason": "MemberOf placement constraint unsatisfied."}]),
        "{r:#}"
    );
    assert_eq!(r["tasks"], json!([]));
    // One it satisfies places; distinctInstance with count 2 places one (one instance).
    let r = b.run(
        "rules-small",
        &[
            "--count",
            "2",
            "--placement-constraints",
            "type=memberOf,expression=attribute:ecs.os-type == linux",
            "type=distinctInstance",
            "--placement-strategy",
            "type=binpack,field=memory",
        ],
    );
    let placed = Box_::task_arns(&r);
    assert_eq!(placed.len(), 1, "{r:#}");
    assert_eq!(
        r["failures"],
        json!([{"arn": b.instance, "reason": "DistinctInstance placement constraint unsatisfied."}]),
        "{r:#}"
    );
    // An expression the query language does not parse is refused up front.
    let err = api.aws_err(&[
        "run-task",
        "--cluster",
        "rules",
        "--task-definition",
        "rules-small",
        "--placement-constraints",
        "type=memberOf,expression=attribute:x ==",
    ]);
    assert!(err.contains("InvalidParameterException"), "{err}");
    assert!(err.contains("placementConstraints[0].expression"), "{err}");
    b.stop_all(&placed);

    // Four RunTasks at once, each wanting more than half of the memory left: one wins.
    let half = resource(&b.describe(), "MEMORY") / 2 + 1;
    b.register("rules-half", half, None);
    let results: Vec<Value> = std::thread::scope(|s| {
        let runs: Vec<_> = (0..4)
            .map(|_| s.spawn(|| b.run("rules-half", &[])))
            .collect();
        runs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let won: Vec<String> = results.iter().flat_map(Box_::task_arns).collect();
    assert_eq!(won.len(), 1, "{results:#?}");
    let lost = results
        .iter()
        .filter(|r| r["failures"][0]["reason"] == "RESOURCE:MEMORY")
        .count();
    assert_eq!(lost, 3, "{results:#?}");
    b.stop_all(&won);
}

#[test]
fn a_service_whose_task_fits_nowhere_gets_ecs_event_and_keeps_trying() {
    let api = Api::start();
    let b = Box_::new(&api, "svc-place");
    let mem = resource(&b.describe(), "MEMORY");
    b.register("svc-big", mem + 1, None);
    api.aws_json(&[
        "create-service",
        "--cluster",
        "svc-place",
        "--service-name",
        "big",
        "--task-definition",
        "svc-big",
        "--launch-type",
        "EC2",
        "--desired-count",
        "1",
    ]);
    let id = b.instance.rsplit('/').next().unwrap().to_string();
    let want = format!(
        "(service big) was unable to place a task because no container instance met all of \
         its requirements. The closest matching (container-instance {id}) has insufficient \
         memory available."
    );
    let events = api.wait_for(60, "the unable-to-place event", || {
        let s = api.service("svc-place", "big");
        let msgs: Vec<String> = s["events"]
            .as_array()?
            .iter()
            .filter_map(|e| e["message"].as_str().map(String::from))
            .collect();
        msgs.iter().any(|m| m.starts_with(&want)).then_some(msgs)
    });
    // Written once while the cause stays (ECS omits duplicates), and nothing runs.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let s = api.service("svc-place", "big");
    let same = s["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["message"].as_str().unwrap().starts_with(&want))
        .count();
    assert_eq!(same, 1, "{events:#?}");
    assert_eq!(s["runningCount"], 0);
    assert_eq!(b.listed(), 0);
    api.aws_json(&[
        "delete-service",
        "--cluster",
        "svc-place",
        "--service",
        "big",
        "--force",
    ]);
}
