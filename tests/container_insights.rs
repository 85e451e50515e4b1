//! Root integration test of Container Insights (`ECS/ContainerInsights`) on `serve`'s
//! listener, driven by the real AWS CLI and boto3: a cluster created with
//! `containerInsights=enabled` gets its tasks', services' and its own metrics (from the
//! tasks' cgroups and network namespaces, and ECS's counts), a cluster left disabled gets
//! none until update-cluster-settings turns them on; in cluster mode (`serve --cluster`,
//! two `agent` boxes over a real etcd) the tasks' figures come from the boxes they run on,
//! one datum per task and period. The box's metric period is 5 s, so a period's
//! datapoints come in seconds. Each test has its own serve (and etcd and boxes), stopped
//! by their pids also when it fails.

use crate::common;

use common::api::Api;
use common::cluster::{boxes, instance, register, service_tasks};
use common::etcd::Etcd;
use common::image::{Compression, busybox_layer};
use serde_json::{Value, json};

fn cw(api: &Api, args: &[&str]) -> Value {
    api.aws_json_in("cloudwatch", args)
}

fn insights_metrics(api: &Api, cluster: &str) -> Vec<Value> {
    cw(
        api,
        &[
            "list-metrics",
            "--namespace",
            "ECS/ContainerInsights",
            "--dimensions",
            &format!("Name=ClusterName,Value={cluster}"),
        ],
    )["Metrics"]
        .as_array()
        .unwrap()
        .clone()
}

fn service(api: &Api, cluster: &str, family: &str) {
    api.aws_json(&[
        "create-service",
        "--cluster",
        cluster,
        "--service-name",
        "web",
        "--task-definition",
        family,
        "--desired-count",
        "2",
    ]);
}

/// The newest value of each query (GetMetricData answers newest first), by Id.
fn latest(api: &Api, queries: &Value) -> serde_json::Map<String, Value> {
    let now = chrono::Utc::now();
    let f = api.file("queries.json", &queries.to_string());
    let out = cw(
        api,
        &[
            "get-metric-data",
            "--metric-data-queries",
            &f,
            "--start-time",
            &(now - chrono::Duration::minutes(2)).to_rfc3339(),
            "--end-time",
            &(now + chrono::Duration::seconds(5)).to_rfc3339(),
        ],
    );
    out["MetricDataResults"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["Id"].as_str().unwrap().to_string(),
                r["Values"][0].clone(),
            )
        })
        .collect()
}

fn query(id: &str, name: &str, dims: &[(&str, &str)], stat: &str) -> Value {
    json!({"Id": id, "MetricStat": {"Metric": {"Namespace": "ECS/ContainerInsights",
        "MetricName": name,
        "Dimensions": dims.iter().map(|(k, v)| json!({"Name": k, "Value": v})).collect::<Vec<_>>()},
        "Period": 5, "Stat": stat}})
}

/// Two clusters, each with a service of two tasks (256 CPU units, 512 MiB), the enabled
/// one also a task of no service: the one created with containerInsights enabled lists
/// Container Insights metrics whose values are what describe-services, describe-clusters
/// and the task definition say (RunningTaskCount 2, TaskCount 3, ServiceCount 1,
/// MemoryReserved 512, CpuReserved 256, one datum a task and period) and what the tasks use
/// (memory in use under the reservation); the disabled one lists none (its AWS/ECS
/// metrics are there) until its setting is turned on.
#[test]
fn an_enabled_cluster_publishes_container_insights_and_a_disabled_one_does_not() {
    let api = Api::start_env(
        common::image::busybox_layer(common::image::Compression::Gzip, "serve"),
        &[],
        &[("MINIFARGATE_METRICS_PERIOD", "5")],
    );
    let def = r#"{"family":"ciweb","networkMode":"awsvpc","cpu":"256","memory":"512",
  "containerDefinitions":[{"name":"app","image":"public.ecr.aws/docker/library/busybox:1.36",
    "essential":true,"command":["sh","-c","trap 'exit 0' TERM; sleep 3600 & wait"]}]}"#;
    let f = api.file("ciweb.json", def);
    api.aws_json(&["register-task-definition", "--cli-input-json", &f]);
    let on = api.create_cluster_with_insights("ci-on");
    assert_eq!(
        on["cluster"]["settings"],
        json!([{"name": "containerInsights", "value": "enabled"}])
    );
    api.aws_json(&["create-cluster", "--cluster-name", "ci-off"]);
    service(&api, "ci-on", "ciweb");
    service(&api, "ci-off", "ciweb");
    for c in ["ci-on", "ci-off"] {
        api.wait_for(60, "the service's two tasks running", || {
            (api.service(c, "web")["runningCount"] == 2).then_some(())
        });
    }
    // A task of no service: the cluster's and the family's figures count it too.
    let run = api.aws_json(&[
        "run-task",
        "--cluster",
        "ci-on",
        "--task-definition",
        "ciweb",
    ]);
    let standalone = run["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    api.wait_for(60, "the standalone task running", || {
        let d = api.aws_json(&[
            "describe-tasks",
            "--cluster",
            "ci-on",
            "--tasks",
            &standalone,
        ]);
        (d["tasks"][0]["lastStatus"] == "RUNNING").then_some(())
    });

    // The enabled cluster's metrics, listed by the CLI: each dimension set AWS documents.
    let want = [
        ("RunningTaskCount", vec!["ClusterName", "ServiceName"]),
        ("DesiredTaskCount", vec!["ClusterName", "ServiceName"]),
        ("DeploymentCount", vec!["ClusterName", "ServiceName"]),
        ("TaskCount", vec!["ClusterName"]),
        ("ServiceCount", vec!["ClusterName"]),
        ("CpuUtilized", vec!["ClusterName", "TaskDefinitionFamily"]),
        ("MemoryReserved", vec!["ClusterName", "ServiceName"]),
        ("NetworkRxBytes", vec!["ClusterName"]),
        (
            "StorageReadBytes",
            vec!["ClusterName", "TaskDefinitionFamily"],
        ),
    ];
    let listed = api.wait_for(
        30,
        "the enabled cluster's Container Insights metrics",
        || {
            let m = insights_metrics(&api, "ci-on");
            let has = |name: &str, dims: &[&str]| {
                m.iter().any(|x| {
                    let names: Vec<&str> = x["Dimensions"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|d| d["Name"].as_str().unwrap())
                        .collect();
                    x["MetricName"] == name && names == dims
                })
            };
            want.iter().all(|(n, d)| has(n, d)).then_some(m)
        },
    );
    assert!(
        listed
            .iter()
            .filter(|m| m["Dimensions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|d| d["Name"] == "TaskDefinitionFamily"))
            .all(|m| m["Dimensions"]
                .as_array()
                .unwrap()
                .contains(&json!({"Name": "TaskDefinitionFamily", "Value": "ciweb"}))),
        "{listed:?}"
    );

    // The values a user checks, through get-metric-data.
    let svc = [("ClusterName", "ci-on"), ("ServiceName", "web")];
    let fam = [("ClusterName", "ci-on"), ("TaskDefinitionFamily", "ciweb")];
    let cluster = [("ClusterName", "ci-on")];
    let queries = json!([
        query("running", "RunningTaskCount", &svc, "Maximum"),
        query("desired", "DesiredTaskCount", &svc, "Maximum"),
        query("pending", "PendingTaskCount", &svc, "Maximum"),
        query("tasks", "TaskCount", &cluster, "Maximum"),
        query("services", "ServiceCount", &cluster, "Maximum"),
        query("memres", "MemoryReserved", &fam, "Average"),
        query("cpures", "CpuReserved", &svc, "Maximum"),
        query("memused", "MemoryUtilized", &svc, "Maximum"),
        query("cpuused", "CpuUtilized", &cluster, "Maximum"),
        query("famtasks", "MemoryReserved", &fam, "SampleCount"),
        query("svctasks", "MemoryReserved", &svc, "SampleCount"),
    ]);
    let v = api.wait_for(30, "a period with every figure", || {
        let v = latest(&api, &queries);
        (v.values().all(|x| x.is_number()) && v["tasks"] == json!(3.0)).then_some(v)
    });
    let running = api.service("ci-on", "web")["runningCount"]
        .as_f64()
        .unwrap();
    assert_eq!(v["running"], json!(running), "{v:?}");
    assert_eq!(v["desired"], json!(2.0), "{v:?}");
    assert_eq!(v["pending"], json!(0.0), "{v:?}");
    // One datum a task and period: the family's three tasks, the service's two.
    assert_eq!(v["famtasks"], json!(3.0), "{v:?}");
    assert_eq!(v["svctasks"], json!(2.0), "{v:?}");
    assert_eq!(v["services"], json!(1.0), "{v:?}");
    assert_eq!(
        v["memres"],
        json!(512.0),
        "the task definition's memory: {v:?}"
    );
    assert_eq!(
        v["cpures"],
        json!(256.0),
        "the task definition's cpu: {v:?}"
    );
    let used = v["memused"].as_f64().unwrap();
    assert!(used > 0.0 && used < 512.0, "MiB in use: {v:?}");
    let cpu = v["cpuused"].as_f64().unwrap();
    assert!(
        (0.0..256.0).contains(&cpu),
        "sleeping tasks' CPU units: {v:?}"
    );

    // The disabled cluster: none, though its tasks are sampled (AWS/ECS has them).
    assert_eq!(insights_metrics(&api, "ci-off"), Vec::<Value>::new());
    let ecs = cw(
        &api,
        &[
            "list-metrics",
            "--namespace",
            "AWS/ECS",
            "--dimensions",
            "Name=ClusterName,Value=ci-off",
        ],
    );
    assert!(
        !ecs["Metrics"].as_array().unwrap().is_empty(),
        "AWS/ECS metrics of the disabled cluster: {ecs}"
    );

    // Turned on: its metrics come (boto3 this time).
    api.aws_json(&[
        "update-cluster-settings",
        "--cluster",
        "ci-off",
        "--settings",
        "name=containerInsights,value=enhanced",
    ]);
    api.wait_for(30, "Container Insights once turned on", || {
        let v = api.boto3(
            r#"
import boto3, json, os
cw = boto3.client("cloudwatch", endpoint_url=os.environ["ENDPOINT"], region_name="us-east-1")
m = cw.list_metrics(Namespace="ECS/ContainerInsights", MetricName="RunningTaskCount",
                    Dimensions=[{"Name": "ClusterName", "Value": "ci-off"}])["Metrics"]
print(json.dumps(m))
"#,
        );
        (v.as_array().unwrap().len() == 1).then_some(())
    });

    api.aws_json(&["stop-task", "--cluster", "ci-on", "--task", &standalone]);
    for c in ["ci-on", "ci-off"] {
        api.aws_json(&[
            "update-service",
            "--cluster",
            c,
            "--service",
            "web",
            "--desired-count",
            "0",
        ]);
        api.aws_json(&[
            "delete-service",
            "--cluster",
            c,
            "--service",
            "web",
            "--force",
        ]);
    }
}

/// Cluster mode: a service of two busy tasks (256 CPU units each), one on each of two
/// boxes, in a cluster created with containerInsights enabled. serve runs no task, so its
/// CpuUtilized by service comes from the boxes: each period holds one datum of each task
/// (SampleCount 2), each near the 256 units its cgroup's quota allows; the counts
/// (RunningTaskCount 2, ContainerInstanceCount 2) are the cluster's, from etcd.
#[test]
fn in_cluster_mode_each_box_sends_its_tasks_container_insights() {
    let etcd = Etcd::start();
    let mut args = vec!["--cluster".to_string(), etcd.endpoint()];
    args.extend(etcd.serve_args());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let api = Api::start_env(
        busybox_layer(Compression::Gzip, "cluster"),
        &args,
        &[("MINIFARGATE_METRICS_PERIOD", "5")],
    );
    let agents = boxes(&etcd, &api, 5, &[&[], &[]]);
    register(
        &api,
        "busy.json",
        r#"{"family": "busy", "networkMode": "awsvpc", "requiresCompatibilities": ["EC2"],
  "cpu": "256", "memory": "128",
  "containerDefinitions": [{"name": "main", "image": "public.ecr.aws/docker/library/busybox:1.36",
    "command": ["sh", "-c", "trap 'exit 0' TERM; while :; do :; done"], "essential": true}]}"#,
    );
    api.create_cluster_with_insights("default");
    api.aws_json(&[
        "create-service",
        "--service-name",
        "busy",
        "--task-definition",
        "busy",
        "--desired-count",
        "2",
        "--launch-type",
        "EC2",
        "--placement-strategy",
        "type=spread,field=instanceId",
    ]);
    api.wait_for(90, "2 tasks RUNNING, one on each box", || {
        let t = service_tasks(&api, "busy");
        let mut on: Vec<&str> = t.iter().map(|(_, ci)| ci.as_str()).collect();
        on.sort();
        on.dedup();
        (t.len() == 2 && on.len() == 2).then_some(())
    });
    let svc = [("ClusterName", "default"), ("ServiceName", "busy")];
    let cluster = [("ClusterName", "default")];
    let queries = json!([
        query("n", "CpuUtilized", &svc, "SampleCount"),
        query("least", "CpuUtilized", &svc, "Minimum"),
        query("running", "RunningTaskCount", &svc, "Maximum"),
        query("boxes", "ContainerInstanceCount", &cluster, "Maximum"),
        query("memres", "MemoryReserved", &svc, "Sum"),
    ]);
    // The newest period may still be filling: wait for one with both tasks' datum.
    let v = api.wait_for(60, "a period with both boxes' tasks", || {
        let v = latest(&api, &queries);
        (v.values().all(|x| x.is_number()) && v["n"] == json!(2.0)).then_some(v)
    });
    let least = v["least"].as_f64().unwrap();
    assert!(
        least > 128.0 && least < 300.0,
        "each busy task uses about its 256 CPU units: {v:?}"
    );
    assert_eq!(v["running"], json!(2.0), "{v:?}");
    assert_eq!(v["boxes"], json!(2.0), "{v:?}");
    assert_eq!(v["memres"], json!(256.0), "2 tasks × 128 MiB: {v:?}");

    api.aws_json(&[
        "update-service",
        "--service",
        "busy",
        "--desired-count",
        "0",
    ]);
    for a in &agents {
        api.wait_for(60, "the box's tasks stopped", || {
            (instance(&api, &a.arn())["runningTasksCount"] == 0).then_some(())
        });
    }
}

/// With MINIFARGATE_EPHEMERAL_STORAGE=enforce a task has its own ephemeral filesystem:
/// EphemeralStorageReserved is its definition's sizeInGiB (21) and
/// EphemeralStorageUtilized counts the 64 MiB its container wrote into its writable layer.
#[test]
fn a_task_s_own_ephemeral_storage_is_published_when_enforced() {
    let api = Api::start_env(
        busybox_layer(Compression::Gzip, "serve"),
        &[],
        &[
            ("MINIFARGATE_METRICS_PERIOD", "5"),
            ("MINIFARGATE_EPHEMERAL_STORAGE", "enforce"),
        ],
    );
    let def = r#"{"family":"scratch","networkMode":"awsvpc","cpu":"256","memory":"512",
  "ephemeralStorage":{"sizeInGiB":21},
  "containerDefinitions":[{"name":"app","image":"public.ecr.aws/docker/library/busybox:1.36",
    "essential":true,"command":["sh","-c","dd if=/dev/zero of=/scratch bs=1M count=64 && sync; trap 'exit 0' TERM; sleep 3600 & wait"]}]}"#;
    let f = api.file("scratch.json", def);
    api.aws_json(&["register-task-definition", "--cli-input-json", &f]);
    api.create_cluster_with_insights("ci-disk");
    let run = api.aws_json(&[
        "run-task",
        "--cluster",
        "ci-disk",
        "--task-definition",
        "scratch",
    ]);
    let task = run["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    let fam = [
        ("ClusterName", "ci-disk"),
        ("TaskDefinitionFamily", "scratch"),
    ];
    let queries = json!([
        query("reserved", "EphemeralStorageReserved", &fam, "Maximum"),
        query("used", "EphemeralStorageUtilized", &fam, "Maximum"),
    ]);
    let v = api.wait_for(60, "the task's ephemeral storage with its 64 MiB", || {
        let v = latest(&api, &queries);
        v["used"]
            .as_f64()
            .is_some_and(|u| u >= 64.0 / 1024.0)
            .then_some(v)
    });
    assert_eq!(v["reserved"], json!(21.0), "{v:?}");
    let used = v["used"].as_f64().unwrap();
    assert!(
        used < 1.0,
        "64 MiB and the filesystem's own blocks, in GiB: {v:?}"
    );
    api.aws_json(&["stop-task", "--cluster", "ci-disk", "--task", &task]);
}

/// A task's network and storage figures are its own: a container writes 4 MiB to its
/// writable layer, direct (StorageWriteBytes, cumulative, at least that) and serves
/// them with busybox httpd; 4 MiB fetched by curl from the host over the task's awsvpc
/// address are sent by the task's interface (NetworkTxBytes, bytes a second, near 4 MiB
/// over its period) and its requests received (NetworkRxBytes above 0).
#[test]
fn a_task_s_network_and_storage_bytes_come_from_its_netns_and_cgroups() {
    let api = Api::start_env(
        busybox_layer(Compression::Gzip, "serve"),
        &[],
        &[("MINIFARGATE_METRICS_PERIOD", "5")],
    );
    let def = r#"{"family":"webby","networkMode":"awsvpc","cpu":"256","memory":"512",
  "containerDefinitions":[{"name":"app","image":"public.ecr.aws/docker/library/busybox:1.36",
    "essential":true,"command":["sh","-c","r=/sys/fs/cgroup/blkio/blkio.throttle.write_bps_device; n=0; while [ -e $r ] && ! grep -q . $r && [ $n -lt 300 ]; do sleep 0.1; n=$((n+1)); done; mkdir -p /www && dd if=/dev/urandom of=/www/big bs=1M count=4 oflag=direct conv=fsync && exec httpd -f -p 8080 -h /www"]}]}"#;
    let f = api.file("webby.json", def);
    api.aws_json(&["register-task-definition", "--cli-input-json", &f]);
    api.create_cluster_with_insights("ci-net");
    let run = api.aws_json(&[
        "run-task",
        "--cluster",
        "ci-net",
        "--task-definition",
        "webby",
    ]);
    let task = run["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    // On cgroup v1 a recent kernel sets blk-throttle up (and counts) only for a device
    // with a rule: the container waits for one no write reaches (1 TiB/s), as in
    // tests/run_task_host.rs; v2's io.stat counts without.
    let blkio = std::path::Path::new("/sys/fs/cgroup/blkio");
    if blkio.is_dir() {
        use std::os::unix::fs::MetadataExt;
        let id = task.rsplit('/').next().unwrap();
        let cg = blkio.join("minifargate").join(id).join(format!("{id}-0"));
        api.wait_for(30, "the container's blkio cgroup", || {
            cg.join("blkio.throttle.write_bps_device")
                .exists()
                .then_some(())
        });
        let dev = std::fs::metadata("/tmp").unwrap().dev();
        let rule = format!(
            "{}:{} {}",
            nix::sys::stat::major(dev),
            nix::sys::stat::minor(dev),
            1u64 << 40
        );
        std::fs::write(cg.join("blkio.throttle.write_bps_device"), rule).unwrap();
    }
    let t = api.wait_for(60, "the task running", || {
        let d = api.aws_json(&["describe-tasks", "--cluster", "ci-net", "--tasks", &task]);
        (d["tasks"][0]["lastStatus"] == "RUNNING").then(|| d["tasks"][0].clone())
    });
    let ip = t["attachments"][0]["details"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "privateIPv4Address")
        .unwrap_or_else(|| panic!("no private address in {t:#}"))["value"]
        .as_str()
        .unwrap()
        .to_string();
    let url = format!("http://{ip}:8080/big");
    let fetched = api.wait_for(30, "httpd answering in the task", || {
        let out = std::process::Command::new("curl")
            .args([
                "-s",
                "--noproxy",
                "*",
                "-o",
                "/dev/null",
                "-w",
                "%{size_download}",
                &url,
            ])
            .output()
            .unwrap();
        let n: u64 = String::from_utf8_lossy(&out.stdout).parse().unwrap_or(0);
        (n == 4 << 20).then_some(n)
    });
    assert_eq!(fetched, 4 << 20);
    let fam = [("ClusterName", "ci-net"), ("TaskDefinitionFamily", "webby")];
    let queries = json!([
        query("tx", "NetworkTxBytes", &fam, "Maximum"),
        query("rx", "NetworkRxBytes", &fam, "Maximum"),
        query("written", "StorageWriteBytes", &fam, "Maximum"),
    ]);
    let max_of = |v: &Value| {
        v.as_array()
            .map(|a| a.iter().filter_map(Value::as_f64).fold(0.0, f64::max))
            .unwrap_or(0.0)
    };
    let got = api.wait_for(30, "the period of the download", || {
        let now = chrono::Utc::now();
        let f = api.file("net-queries.json", &queries.to_string());
        let out = cw(
            &api,
            &[
                "get-metric-data",
                "--metric-data-queries",
                &f,
                "--start-time",
                &(now - chrono::Duration::minutes(2)).to_rfc3339(),
                "--end-time",
                &(now + chrono::Duration::seconds(5)).to_rfc3339(),
            ],
        );
        let r = out["MetricDataResults"].as_array().unwrap().clone();
        let by = |id: &str| max_of(&r.iter().find(|x| x["Id"] == id).unwrap()["Values"]);
        let (tx, rx, written) = (by("tx"), by("rx"), by("written"));
        // 4 MiB over a window of about a 5 s period.
        (tx > 400_000.0).then_some((tx, rx, written))
    });
    let (tx, rx, written) = got;
    assert!(
        tx < 8.0 * 1024.0 * 1024.0,
        "bytes a second, not the total: {got:?}"
    );
    assert!(rx > 0.0, "the requests the task received: {got:?}");
    assert!(
        written >= (4 << 20) as f64,
        "4 MiB written with fsync: {got:?}"
    );
    api.aws_json(&["stop-task", "--cluster", "ci-net", "--task", &task]);
}
