//! Root integration tests of CloudWatch metrics on `serve`'s listener, driven by the real
//! AWS CLI (`aws cloudwatch …`, which speaks RPC v2 CBOR as its model says) and boto3 (in
//! CBOR, and in AWS JSON 1.0, the model's second protocol): custom metrics put and read
//! back per period with their statistics and percentiles, GetMetricData's order and
//! pages, ListMetrics' filters, CloudWatch's error codes; a request refused by the guard
//! is CBOR the CLI reads.

use crate::common;

use common::api::Api;
use serde_json::Value;

fn cw(api: &Api, args: &[&str]) -> Value {
    let out = api.aws_in("cloudwatch", args);
    assert!(
        out.status.success(),
        "aws cloudwatch {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    if out.stdout.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(&out.stdout).unwrap()
}

fn cw_err(api: &Api, args: &[&str]) -> String {
    let out = api.aws_in("cloudwatch", args);
    assert!(!out.status.success(), "aws cloudwatch {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn iso(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[test]
fn custom_metrics_put_with_the_cli_come_back_per_period_with_their_statistics() {
    let api = Api::start();
    let now = chrono::Utc::now();
    // A minute well inside the last hour, its start exactly.
    let minute = now - chrono::Duration::minutes(10);
    let minute = minute - chrono::Duration::seconds(minute.timestamp() % 60);
    let at = |s: i64| iso(minute + chrono::Duration::seconds(s));
    for (value, s) in [("10", 1), ("20", 2), ("30", 3), ("40", 4)] {
        cw(
            &api,
            &[
                "put-metric-data",
                "--namespace",
                "Shop",
                "--metric-name",
                "Latency",
                "--dimensions",
                "Service=web,Stage=prod",
                "--unit",
                "Milliseconds",
                "--value",
                value,
                "--timestamp",
                &at(s),
            ],
        );
    }
    // Another metric: the same name, other dimensions.
    cw(
        &api,
        &[
            "put-metric-data",
            "--namespace",
            "Shop",
            "--metric-data",
            &format!(
                r#"[{{"MetricName":"Latency","Dimensions":[{{"Name":"Service","Value":"api"}}],"Timestamp":"{}","Values":[5,7],"Counts":[3,1],"Unit":"Milliseconds"}}]"#,
                at(5)
            ),
        ],
    );
    let stats = cw(
        &api,
        &[
            "get-metric-statistics",
            "--namespace",
            "Shop",
            "--metric-name",
            "Latency",
            // Dimensions in another order: the same metric.
            "--dimensions",
            "Name=Stage,Value=prod",
            "Name=Service,Value=web",
            "--start-time",
            &iso(minute - chrono::Duration::minutes(5)),
            "--end-time",
            &iso(now),
            "--period",
            "60",
            "--statistics",
            "SampleCount",
            "Average",
            "Sum",
            "Minimum",
            "Maximum",
        ],
    );
    assert_eq!(stats["Label"], "Latency");
    let dp = stats["Datapoints"].as_array().unwrap();
    assert_eq!(dp.len(), 1, "one minute of data: {stats}");
    assert_eq!(dp[0]["SampleCount"], 4.0);
    assert_eq!(dp[0]["Sum"], 100.0);
    assert_eq!(dp[0]["Average"], 25.0);
    assert_eq!(dp[0]["Minimum"], 10.0);
    assert_eq!(dp[0]["Maximum"], 40.0);
    assert_eq!(dp[0]["Unit"], "Milliseconds");
    // The minute's start (AWS CLI v1 prints timestamps as received: epoch seconds; boto3
    // reads them as datetimes, the next test).
    assert_eq!(dp[0]["Timestamp"], minute.timestamp(), "{stats}");

    let p = cw(
        &api,
        &[
            "get-metric-statistics",
            "--namespace",
            "Shop",
            "--metric-name",
            "Latency",
            "--dimensions",
            "Name=Service,Value=api",
            "--start-time",
            &iso(minute),
            "--end-time",
            &iso(now),
            "--period",
            "300",
            "--extended-statistics",
            "p50",
            "p99",
        ],
    );
    assert_eq!(
        p["Datapoints"][0]["ExtendedStatistics"],
        serde_json::json!({"p50": 5.0, "p99": 7.0}),
        "{p}"
    );

    let listed = cw(&api, &["list-metrics", "--namespace", "Shop"]);
    assert_eq!(listed["Metrics"].as_array().unwrap().len(), 2, "{listed}");
    let listed = cw(
        &api,
        &[
            "list-metrics",
            "--dimensions",
            "Name=Stage,Value=prod",
            "--recently-active",
            "PT3H",
        ],
    );
    assert_eq!(
        listed["Metrics"],
        serde_json::json!([{"Namespace": "Shop", "MetricName": "Latency",
            "Dimensions": [{"Name": "Service", "Value": "web"}, {"Name": "Stage", "Value": "prod"}]}])
    );

    // Metric math through the CLI: the two services' sums added, the metrics themselves
    // not returned (ReturnData false); a function not evaluated here is CloudWatch's
    // ValidationError.
    let queries = serde_json::json!([
        {"Id": "web", "ReturnData": false, "MetricStat": {"Metric": {"Namespace": "Shop",
            "MetricName": "Latency", "Dimensions": [{"Name": "Service", "Value": "web"},
            {"Name": "Stage", "Value": "prod"}]}, "Period": 60, "Stat": "Sum"}},
        {"Id": "api", "ReturnData": false, "MetricStat": {"Metric": {"Namespace": "Shop",
            "MetricName": "Latency", "Dimensions": [{"Name": "Service", "Value": "api"}]},
            "Period": 60, "Stat": "Sum"}},
        {"Id": "total", "Expression": "web + api", "Label": "All services"},
        {"Id": "share", "Expression": "100 * web / SUM(METRICS())"}
    ]);
    let f = api.file("math.json", &queries.to_string());
    let math = cw(
        &api,
        &[
            "get-metric-data",
            "--metric-data-queries",
            &f,
            "--start-time",
            &iso(minute - chrono::Duration::minutes(5)),
            "--end-time",
            &iso(now),
        ],
    );
    let r = math["MetricDataResults"].as_array().unwrap();
    assert_eq!(r.len(), 2, "only the expressions: {math}");
    assert_eq!(r[0]["Label"], "All services");
    // 10 + 20 + 30 + 40, and 5 × 3 + 7.
    assert_eq!(r[0]["Values"], serde_json::json!([122.0]), "{math}");
    assert_eq!(r[0]["Timestamps"], serde_json::json!([minute.timestamp()]));
    assert_eq!(
        r[1]["Values"],
        serde_json::json!([100.0 * 100.0 / 122.0]),
        "{math}"
    );
    let f = api.file(
        "bad-math.json",
        r#"[{"Id": "band", "Expression": "ANOMALY_DETECTION_BAND(m1, 2)"}]"#,
    );
    let e = cw_err(
        &api,
        &[
            "get-metric-data",
            "--metric-data-queries",
            &f,
            "--start-time",
            &iso(minute),
            "--end-time",
            &iso(now),
        ],
    );
    assert!(
        e.contains("(ValidationError)")
            && e.contains("Error in expression band: Unsupported function ANOMALY_DETECTION_BAND"),
        "{e}"
    );

    // CloudWatch's error codes, as the CLI reports them (the query-compatible codes).
    let e = cw_err(
        &api,
        &[
            "put-metric-data",
            "--namespace",
            "AWS/ECS",
            "--metric-name",
            "CPUUtilization",
            "--value",
            "1",
        ],
    );
    assert!(e.contains("(InvalidParameterValue)"), "{e}");
    let e = cw_err(
        &api,
        &[
            "get-metric-statistics",
            "--namespace",
            "Shop",
            "--metric-name",
            "Latency",
            "--start-time",
            &iso(now - chrono::Duration::days(3)),
            "--end-time",
            &iso(now),
            "--period",
            "60",
            "--statistics",
            "Sum",
        ],
    );
    assert!(
        e.contains("(InvalidParameterCombination)") && e.contains("1,440"),
        "{e}"
    );
    let e = cw_err(&api, &["list-dashboards"]);
    assert!(e.contains("ListDashboards is not supported"), "{e}");
}

#[test]
fn boto3_reads_get_metric_data_in_cbor_and_in_json_and_a_bad_signature_in_cbor() {
    let api = Api::start();
    let got = api.boto3(
        r#"
import boto3, botocore, json, os, time, datetime
from botocore.config import Config

def client(protocol=None):
    session = botocore.session.get_session()
    if protocol:
        # The model's second protocol (AWS JSON 1.0): what an SDK that does not speak
        # CBOR uses.
        loader = session.get_component('data_loader')
        original = loader.load_service_model
        def load(name, type_name, api_version=None):
            m = original(name, type_name, api_version)
            if name == 'cloudwatch' and type_name == 'service-2':
                m['metadata']['protocol'] = protocol
                m['metadata']['protocols'] = [protocol]
            return m
        loader.load_service_model = load
    return boto3.Session(botocore_session=session).client(
        'cloudwatch', endpoint_url=os.environ['ENDPOINT'], region_name='us-east-1')

out = {}
now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
start = now - datetime.timedelta(minutes=30)
start = start - datetime.timedelta(seconds=start.second)
for name, c in [('cbor', client()), ('json', client('json'))]:
    ns = 'Orders-' + name
    c.put_metric_data(Namespace=ns, MetricData=[
        {'MetricName': 'Placed', 'Timestamp': start + datetime.timedelta(minutes=i),
         'Value': float(i), 'Unit': 'Count'} for i in range(10)])
    q = [{'Id': 'placed', 'MetricStat': {'Metric': {'Namespace': ns, 'MetricName': 'Placed'},
          'Period': 60, 'Stat': 'Sum'}}]
    r = c.get_metric_data(MetricDataQueries=q, StartTime=start, EndTime=now)
    res = r['MetricDataResults'][0]
    page = c.get_metric_data(MetricDataQueries=q, StartTime=start, EndTime=now,
                             ScanBy='TimestampAscending', MaxDatapoints=3)
    out[name] = {
        'values': res['Values'],
        'first_ts': (res['Timestamps'][-1] - start).total_seconds(),
        'ts_type': type(res['Timestamps'][0]).__name__,
        'status': res['StatusCode'],
        'page': page['MetricDataResults'][0]['Values'],
        'token': 'NextToken' in page,
    }
    try:
        c.put_metric_data(Namespace=ns, MetricData=[{'MetricName': 'x', 'Value': 1, 'StorageResolution': 7}])
        out[name]['error'] = None
    except botocore.exceptions.ClientError as e:
        out[name]['error'] = e.response['Error']['Code']

bad = boto3.client('cloudwatch', endpoint_url=os.environ['ENDPOINT'], region_name='us-east-1',
                   aws_access_key_id='AKIDWRONG', aws_secret_access_key='wrong')
try:
    bad.list_metrics()
    out['bad'] = None
except botocore.exceptions.ClientError as e:
    out['bad'] = e.response['Error']['Code']
print(json.dumps(out))
"#,
    );
    for proto in ["cbor", "json"] {
        let o = &got[proto];
        assert_eq!(
            o["values"],
            serde_json::json!([9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.0]),
            "{proto}: {got}"
        );
        assert_eq!(
            o["first_ts"], 0.0,
            "{proto}: the oldest period starts at StartTime"
        );
        assert_eq!(
            o["ts_type"], "datetime",
            "{proto}: timestamps are timestamps"
        );
        assert_eq!(o["status"], "Complete");
        assert_eq!(o["page"], serde_json::json!([0.0, 1.0, 2.0]), "{proto}");
        assert_eq!(o["token"], true);
        assert_eq!(o["error"], "InvalidParameterValue", "{proto}");
    }
    // The guard's refusal, in CBOR: boto3 reads its code.
    assert_eq!(got["bad"], "UnrecognizedClientException", "{got}");
}

/// A service whose task burns its CPU and one whose task sleeps: `AWS/ECS`
/// CPUUtilization by ClusterName and ServiceName says which is which, as ECS computes it
/// (percent of the task's reserved CPU units), and MemoryUtilization is published beside
/// it; with MINIFARGATE_METRICS_PERIOD=5 a period is 5 s (high resolution).
#[test]
fn ecs_publishes_each_service_s_cpu_and_memory_utilization_from_its_tasks_cgroups() {
    let api = Api::start_env(
        common::image::busybox_layer(common::image::Compression::Gzip, "serve"),
        &[],
        &[("MINIFARGATE_METRICS_PERIOD", "5")],
    );
    let def = |family: &str, script: &str| {
        format!(
            r#"{{"family":"{family}","networkMode":"awsvpc","cpu":"256","memory":"512",
  "containerDefinitions":[{{"name":"app","image":"public.ecr.aws/docker/library/busybox:1.36",
    "essential":true,"command":["sh","-c","{script}"]}}]}}"#
        )
    };
    for (name, script) in [
        ("busy", "trap 'exit 0' TERM; while :; do :; done"),
        ("idle", "trap 'exit 0' TERM; sleep 3600 & wait"),
    ] {
        let f = api.file(&format!("{name}.json"), &def(name, script));
        api.aws_json(&["register-task-definition", "--cli-input-json", &f]);
        api.aws_json(&[
            "create-service",
            "--service-name",
            name,
            "--task-definition",
            name,
            "--desired-count",
            "1",
        ]);
    }
    let start = chrono::Utc::now();
    let stat = |service: &str, metric: &str| -> Option<Value> {
        let v = cw(
            &api,
            &[
                "get-metric-statistics",
                "--namespace",
                "AWS/ECS",
                "--metric-name",
                metric,
                "--dimensions",
                "Name=ClusterName,Value=default",
                &format!("Name=ServiceName,Value={service}"),
                "--start-time",
                &iso(start - chrono::Duration::minutes(1)),
                "--end-time",
                &iso(chrono::Utc::now() + chrono::Duration::minutes(1)),
                "--period",
                "60",
                "--statistics",
                "Average",
                "Maximum",
                "SampleCount",
            ],
        );
        let dp = v["Datapoints"].as_array()?;
        let n: f64 = dp.iter().map(|d| d["SampleCount"].as_f64().unwrap()).sum();
        // A few samples of the running task (three per 5 s period).
        (n >= 6.0).then(|| {
            let sum: f64 = dp
                .iter()
                .map(|d| d["Average"].as_f64().unwrap() * d["SampleCount"].as_f64().unwrap())
                .sum();
            serde_json::json!({"average": sum / n, "unit": dp[0]["Unit"], "samples": n})
        })
    };
    let busy = api.wait_for(120, "CPUUtilization of the busy service", || {
        stat("busy", "CPUUtilization")
    });
    let idle = api.wait_for(60, "CPUUtilization of the idle service", || {
        stat("idle", "CPUUtilization")
    });
    assert_eq!(busy["unit"], "Percent");
    // A busy loop in a task of 256 CPU units (a quarter of a vCPU, its cgroup's quota) is
    // near 100 % of its reservation; a sleeping one near 0.
    let (b, i) = (
        busy["average"].as_f64().unwrap(),
        idle["average"].as_f64().unwrap(),
    );
    assert!(b > 40.0, "busy service's CPUUtilization {b} ({busy})");
    assert!(i < 10.0, "idle service's CPUUtilization {i} ({idle})");
    let mem = api.wait_for(30, "MemoryUtilization of the idle service", || {
        stat("idle", "MemoryUtilization")
    });
    let m = mem["average"].as_f64().unwrap();
    assert!(
        m > 0.0 && m < 50.0,
        "MemoryUtilization {m} of 512 MiB ({mem})"
    );
    // ListMetrics lists them by their dimensions.
    let listed = cw(
        &api,
        &[
            "list-metrics",
            "--namespace",
            "AWS/ECS",
            "--dimensions",
            "Name=ServiceName,Value=busy",
        ],
    );
    let mut names: Vec<&str> = listed["Metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["MetricName"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["CPUUtilization", "MemoryUtilization"], "{listed}");
    for name in ["busy", "idle"] {
        api.aws_json(&["delete-service", "--service", name, "--force"]);
    }
}

/// MemoryUtilization counts what ECS's agent counts: a container's cgroup usage less its
/// page cache (agent/stats/utils_unix.go, getMemUsage). A task that wrote and read a
/// 160 MiB file (its page cache, charged to its cgroup) stays low; one that holds 200 MB
/// in a process (awk's string: anonymous memory) is high. Both reserve 512 MiB.
#[test]
fn memory_utilization_leaves_the_page_cache_out_as_ecs_does() {
    let api = Api::start_env(
        common::image::busybox_layer(common::image::Compression::Gzip, "serve"),
        &[],
        &[("MINIFARGATE_METRICS_PERIOD", "5")],
    );
    let def = |family: &str, script: &str| {
        format!(
            r#"{{"family":"{family}","networkMode":"awsvpc","cpu":"256","memory":"512",
  "containerDefinitions":[{{"name":"app","image":"public.ecr.aws/docker/library/busybox:1.36",
    "essential":true,"command":["sh","-c","{script}"]}}]}}"#
        )
    };
    for (name, script) in [
        (
            "cache",
            "trap 'exit 0' TERM; dd if=/dev/zero of=/big bs=1M count=160 conv=fsync && \
             dd if=/big of=/dev/null bs=1M; sleep 3600 & wait",
        ),
        (
            "anon",
            "trap 'exit 0' TERM; awk 'BEGIN { s = sprintf(\\\"%200000000s\\\", \\\"\\\"); \
             system(\\\"sleep 3600\\\") }' & wait",
        ),
    ] {
        let f = api.file(&format!("{name}.json"), &def(name, script));
        api.aws_json(&["register-task-definition", "--cli-input-json", &f]);
        api.aws_json(&[
            "create-service",
            "--service-name",
            name,
            "--task-definition",
            name,
            "--desired-count",
            "1",
        ]);
    }
    // The cache task's page cache, read from its task cgroup as the host sees it (v1
    // `total_cache`, v2 `file`): the premise, at least the file's 160 MiB.
    let task = api.wait_for(60, "the cache service's task", || {
        let v = api.aws_json(&["list-tasks", "--service-name", "cache"]);
        let arn = v["taskArns"].as_array()?.first()?.as_str()?.to_string();
        Some(arn.rsplit('/').next().unwrap().to_string())
    });
    let cached = api.wait_for(120, "the cache task's page cache", || {
        let (dir, key) = [
            ("/sys/fs/cgroup/memory/minifargate", "total_cache"),
            ("/sys/fs/cgroup/minifargate", "file"),
        ]
        .into_iter()
        .find(|(d, _)| std::path::Path::new(d).join(&task).exists())?;
        let stat = std::fs::read_to_string(format!("{dir}/{task}/memory.stat")).ok()?;
        let bytes: u64 = stat
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key} "))?.trim().parse().ok())?;
        (bytes >= 160 << 20).then_some(bytes)
    });
    let start = chrono::Utc::now();
    // The highest datum since the cache was filled, of at least `n` samples.
    let maximum = |service: &str, n: f64| -> Option<f64> {
        let v = cw(
            &api,
            &[
                "get-metric-statistics",
                "--namespace",
                "AWS/ECS",
                "--metric-name",
                "MemoryUtilization",
                "--dimensions",
                "Name=ClusterName,Value=default",
                &format!("Name=ServiceName,Value={service}"),
                "--start-time",
                &iso(start),
                "--end-time",
                &iso(chrono::Utc::now() + chrono::Duration::minutes(1)),
                "--period",
                "5",
                "--statistics",
                "Maximum",
                "SampleCount",
            ],
        );
        let dp = v["Datapoints"].as_array()?;
        let samples: f64 = dp.iter().map(|d| d["SampleCount"].as_f64().unwrap()).sum();
        (samples >= n).then(|| {
            dp.iter()
                .map(|d| d["Maximum"].as_f64().unwrap())
                .fold(0.0, f64::max)
        })
    };
    let anon = api.wait_for(
        120,
        "the anon service's MemoryUtilization above 30 %",
        || maximum("anon", 1.0).filter(|m| *m > 30.0),
    );
    let cache = api.wait_for(60, "six samples of the cache service", || {
        maximum("cache", 6.0)
    });
    // 160 MiB of page cache is 31 % of 512 MiB, counted; what the shell and dd hold is
    // a few MiB.
    assert!(
        cache < 10.0,
        "the cache service's MemoryUtilization {cache} % (its page cache: {cached} bytes; \
         the anon service's: {anon} %)"
    );
    for name in ["cache", "anon"] {
        api.aws_json(&["delete-service", "--service", name, "--force"]);
    }
}

/// An alarm on a custom metric, as the CLI sets it: INSUFFICIENT_DATA at creation, ALARM
/// once a period breaches (CloudWatch's reason), OK when data stops and missing data is
/// notBreaching; SetAlarmState, the history, DescribeAlarmsForMetric, a restart keeps it,
/// DeleteAlarms with CloudWatch's ResourceNotFound. The box's period is 5 s, the alarm's
/// 10 s (high resolution).
/// PutMetricAlarm's `Tags` and `EvaluateLowSampleCountPercentile` through the AWS CLI:
/// the tags come back from list-tags-for-resource (and are changed by tag-resource and
/// untag-resource), kept across a restart; the member is shown by describe-alarms; a
/// value other than `evaluate`/`ignore` is CloudWatch's InvalidParameterValue.
#[test]
fn an_alarm_s_tags_and_low_sample_setting_are_kept_and_shown() {
    let mut api = Api::start();
    let base = [
        "put-metric-alarm",
        "--alarm-name",
        "p99-latency",
        "--namespace",
        "Shop",
        "--metric-name",
        "Latency",
        "--extended-statistic",
        "p99",
        "--period",
        "60",
        "--evaluation-periods",
        "1",
        "--threshold",
        "500",
        "--comparison-operator",
        "GreaterThanThreshold",
    ];
    let err = cw_err(
        &api,
        &[
            &base[..],
            &["--evaluate-low-sample-count-percentile", "skip"],
        ]
        .concat(),
    );
    assert!(err.contains("(InvalidParameterValue)"), "{err}");
    assert!(err.contains("EvaluateLowSampleCountPercentile"), "{err}");
    cw(
        &api,
        &[
            &base[..],
            &[
                "--evaluate-low-sample-count-percentile",
                "ignore",
                "--tags",
                "Key=team,Value=web",
                "Key=env,Value=prod",
            ],
        ]
        .concat(),
    );
    let d = cw(&api, &["describe-alarms", "--alarm-names", "p99-latency"]);
    let alarm = &d["MetricAlarms"][0];
    assert_eq!(alarm["EvaluateLowSampleCountPercentile"], "ignore");
    let arn = alarm["AlarmArn"].as_str().unwrap().to_string();
    let tags =
        |api: &Api| cw(api, &["list-tags-for-resource", "--resource-arn", &arn])["Tags"].clone();
    assert_eq!(
        tags(&api),
        serde_json::json!([{"Key": "team", "Value": "web"}, {"Key": "env", "Value": "prod"}])
    );
    cw(
        &api,
        &[
            "tag-resource",
            "--resource-arn",
            &arn,
            "--tags",
            "Key=tier,Value=1",
        ],
    );
    cw(
        &api,
        &[
            "untag-resource",
            "--resource-arn",
            &arn,
            "--tag-keys",
            "env",
        ],
    );
    api.restart();
    assert_eq!(
        tags(&api),
        serde_json::json!([{"Key": "team", "Value": "web"}, {"Key": "tier", "Value": "1"}])
    );
    let err = cw_err(
        &api,
        &[
            "list-tags-for-resource",
            "--resource-arn",
            &arn.replace("p99-latency", "nope"),
        ],
    );
    assert!(err.contains("(ResourceNotFoundException)"), "{err}");
}

#[test]
fn an_alarm_follows_its_metric_through_alarm_and_ok_and_survives_a_restart() {
    let mut api = Api::start_env(
        common::image::busybox_layer(common::image::Compression::Gzip, "serve"),
        &[],
        &[("MINIFARGATE_METRICS_PERIOD", "5")],
    );
    cw(
        &api,
        &[
            "put-metric-alarm",
            "--alarm-name",
            "queue-deep",
            "--namespace",
            "Shop",
            "--metric-name",
            "QueueDepth",
            "--dimensions",
            "Name=Queue,Value=orders",
            "--statistic",
            "Maximum",
            "--period",
            "10",
            "--evaluation-periods",
            "1",
            "--threshold",
            "50",
            "--comparison-operator",
            "GreaterThanThreshold",
            "--treat-missing-data",
            "notBreaching",
            "--alarm-actions",
            "arn:aws:sns:us-east-1:000000000000:pager",
        ],
    );
    let alarm = |api: &Api| {
        cw(api, &["describe-alarms", "--alarm-names", "queue-deep"])["MetricAlarms"][0].clone()
    };
    let a = alarm(&api);
    // The alarms are evaluated after each sample (every 5/3 s here), with the data there
    // was before the alarm: one may already have run (no data, notBreaching: OK); then
    // the history says where the alarm started.
    if a["StateValue"] == "INSUFFICIENT_DATA" {
        assert_eq!(a["StateReason"], "Unchecked: Initial alarm creation");
    } else {
        assert_eq!(a["StateValue"], "OK", "{a}");
        let h = cw(
            &api,
            &[
                "describe-alarm-history",
                "--alarm-name",
                "queue-deep",
                "--history-item-type",
                "StateUpdate",
            ],
        );
        let first = &h["AlarmHistoryItems"].as_array().unwrap().last().unwrap()["HistorySummary"];
        assert_eq!(first, "Alarm updated from INSUFFICIENT_DATA to OK", "{h}");
    }
    assert_eq!(
        a["AlarmArn"],
        "arn:aws:cloudwatch:us-east-1:000000000000:alarm:queue-deep"
    );
    assert_eq!(a["DatapointsToAlarm"], 1);
    // 90 every second for the last 20 s (high resolution).
    let now = chrono::Utc::now();
    let data: Vec<Value> = (1..=20)
        .map(|s| {
            serde_json::json!({"MetricName": "QueueDepth", "Dimensions": [{"Name": "Queue", "Value": "orders"}],
                "Timestamp": iso(now - chrono::Duration::seconds(s)), "Value": 90, "StorageResolution": 1})
        })
        .collect();
    cw(
        &api,
        &[
            "put-metric-data",
            "--namespace",
            "Shop",
            "--metric-data",
            &Value::Array(data).to_string(),
        ],
    );
    // In ALARM while the datapoints are in the alarm's last period (about 10 s here): the
    // history keeps the transition with its reason and data, however slow the CLI is.
    let went = api.wait_for(60, "the transition to ALARM in the alarm's history", || {
        let h = cw(
            &api,
            &[
                "describe-alarm-history",
                "--alarm-name",
                "queue-deep",
                "--history-item-type",
                "StateUpdate",
            ],
        );
        h["AlarmHistoryItems"]
            .as_array()
            .unwrap()
            .iter()
            .find_map(|i| {
                let d: Value = serde_json::from_str(i["HistoryData"].as_str().unwrap()).unwrap();
                (d["newState"]["stateValue"] == "ALARM").then(|| d["newState"].clone())
            })
    });
    let reason = went["stateReason"].as_str().unwrap();
    assert!(
        reason.starts_with("Threshold Crossed: 1 datapoint [90.0 (")
            && reason.ends_with("was greater than the threshold (50.0) (minimum 1 datapoint for OK -> ALARM transition)."),
        "{reason}"
    );
    assert_eq!(
        went["stateReasonData"]["recentDatapoints"],
        serde_json::json!([90.0]),
        "{went}"
    );
    let for_metric = cw(
        &api,
        &[
            "describe-alarms-for-metric",
            "--namespace",
            "Shop",
            "--metric-name",
            "QueueDepth",
            "--dimensions",
            "Name=Queue,Value=orders",
        ],
    );
    assert_eq!(for_metric["MetricAlarms"][0]["AlarmName"], "queue-deep");
    // No more data: once the alarm's evaluation range (its 1 period + 2, 30 s here) holds
    // none, the missing period counts as not breaching (CloudWatch reaches back over the
    // range for real datapoints before it fills one in: docs/cloudwatch.md).
    let a = api.wait_for(70, "the alarm back to OK", || {
        let a = alarm(&api);
        (a["StateValue"] == "OK").then_some(a)
    });
    assert_eq!(
        a["StateReason"],
        "Threshold Crossed: no datapoints were received for 1 period and 1 missing datapoint was treated as [NonBreaching]."
    );
    cw(
        &api,
        &[
            "set-alarm-state",
            "--alarm-name",
            "queue-deep",
            "--state-value",
            "ALARM",
            "--state-reason",
            "testing the pager",
        ],
    );
    let e = cw_err(
        &api,
        &[
            "set-alarm-state",
            "--alarm-name",
            "queue-deep",
            "--state-value",
            "ALARM",
            "--state-reason",
            "x",
            "--state-reason-data",
            "not json",
        ],
    );
    assert!(e.contains("(InvalidFormat)"), "{e}");
    // The history, oldest first: created, to ALARM by its datapoint, back to OK, to ALARM
    // by SetAlarmState (evaluations may add OK transitions in between).
    let history = cw(
        &api,
        &[
            "describe-alarm-history",
            "--alarm-name",
            "queue-deep",
            "--scan-by",
            "TimestampAscending",
        ],
    );
    let items: Vec<String> = history["AlarmHistoryItems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            let data: Value = serde_json::from_str(h["HistoryData"].as_str().unwrap()).unwrap();
            format!(
                "{} | {}",
                h["HistorySummary"].as_str().unwrap(),
                data["newState"]["stateReason"].as_str().unwrap_or_default()
            )
        })
        .collect();
    let wanted = [
        "Alarm \"queue-deep\" created",
        "to ALARM | Threshold Crossed: 1 datapoint [90.0",
        "ALARM to OK | Threshold Crossed: no datapoints",
        "to ALARM | testing the pager",
    ];
    let mut at = 0;
    for w in wanted {
        let (before, after) = w.split_once(" | ").unwrap_or((w, ""));
        match items[at..].iter().position(|i| {
            i.contains(before) && i.split(" | ").nth(1).unwrap_or("").starts_with(after)
        }) {
            Some(p) => at += p + 1,
            None => panic!("{w:?} not in the history after item {at}: {items:#?}"),
        }
    }
    // Kept across a restart of serve.
    api.restart();
    let a = alarm(&api);
    assert_eq!(a["AlarmName"], "queue-deep", "after a restart");
    assert_eq!(
        a["AlarmActions"],
        serde_json::json!(["arn:aws:sns:us-east-1:000000000000:pager"])
    );
    let e = cw_err(
        &api,
        &["delete-alarms", "--alarm-names", "queue-deep", "nope"],
    );
    assert!(e.contains("(ResourceNotFound)"), "{e}");
    cw(&api, &["delete-alarms", "--alarm-names", "queue-deep"]);
    assert_eq!(
        cw(&api, &["describe-alarms"])["MetricAlarms"],
        serde_json::json!([])
    );
}

/// An alarm on metric math, as the CLI puts it (`--metrics`: two MetricStat queries and
/// the expression `m1 + m2` that returns data): OK while each metric and their sum are
/// under the threshold, ALARM once the sum crosses it though neither metric does;
/// DescribeAlarms answers the queries back, without the single-metric members;
/// CloudWatch's refusals. The transitions are read from the history, which a slow CLI
/// cannot miss.
#[test]
fn an_alarm_on_metric_math_goes_into_alarm_on_the_sum_of_two_metrics() {
    let api = Api::start_env(
        common::image::busybox_layer(common::image::Compression::Gzip, "serve"),
        &[],
        &[("MINIFARGATE_METRICS_PERIOD", "5")],
    );
    let stat = |id: &str, name: &str| {
        serde_json::json!({"Id": id, "ReturnData": false, "MetricStat": {"Metric": {
            "Namespace": "Shop", "MetricName": name,
            "Dimensions": [{"Name": "Queue", "Value": "orders"}]},
            "Period": 10, "Stat": "Maximum"}})
    };
    let sum = serde_json::json!({"Id": "e1", "Expression": "m1 + m2", "Label": "in both queues",
        "ReturnData": true});
    let metrics = serde_json::json!([stat("m1", "Waiting"), stat("m2", "Retrying"), sum]);
    let alarm_args = |metrics: &Value| -> Vec<String> {
        [
            "put-metric-alarm",
            "--alarm-name",
            "backlog",
            "--evaluation-periods",
            "1",
            "--threshold",
            "100",
            "--comparison-operator",
            "GreaterThanThreshold",
            "--metrics",
            &metrics.to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    fn refs(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    // Refused as CloudWatch refuses: MetricName with Metrics, two queries returning data,
    // an expression that returns an array.
    let mut both = alarm_args(&metrics);
    both.extend(["--metric-name".into(), "Waiting".into()]);
    let e = cw_err(&api, &refs(&both));
    assert!(e.contains("(InvalidParameterCombination)"), "{e}");
    let mut two = metrics.clone();
    two[0]["ReturnData"] = true.into();
    let e = cw_err(&api, &refs(&alarm_args(&two)));
    assert!(
        e.contains("(ValidationError)")
            && e.contains("Exactly one element of the metrics list should return data."),
        "{e}"
    );
    let mut array = metrics.clone();
    array[2]["Expression"] = "METRICS()".into();
    let e = cw_err(&api, &refs(&alarm_args(&array)));
    assert!(
        e.contains("(ValidationError)") && e.contains("single time series"),
        "{e}"
    );
    cw(&api, &refs(&alarm_args(&metrics)));
    let a = cw(&api, &["describe-alarms", "--alarm-names", "backlog"])["MetricAlarms"][0].clone();
    assert_eq!(a["Metrics"], metrics, "{a}");
    for absent in ["MetricName", "Namespace", "Period", "Statistic"] {
        assert!(a.get(absent).is_none(), "{absent} in {a}");
    }
    assert_eq!(a["StateValue"], "INSUFFICIENT_DATA", "{a}");
    // Every second from 20 s ago to 90 s ahead (so that the alarm's last period has data
    // however slow the machine): each metric's value, in one request.
    let put = |values: &[(&str, f64)]| {
        let now = chrono::Utc::now();
        let data: Vec<Value> = values
            .iter()
            .flat_map(|(name, value)| {
                (-20..=90).map(move |s| {
                    serde_json::json!({"MetricName": name,
                        "Dimensions": [{"Name": "Queue", "Value": "orders"}],
                        "Timestamp": iso(now + chrono::Duration::seconds(s)), "Value": value,
                        "StorageResolution": 1})
                })
            })
            .collect();
        cw(
            &api,
            &[
                "put-metric-data",
                "--namespace",
                "Shop",
                "--metric-data",
                &Value::Array(data).to_string(),
            ],
        );
    };
    // The transition to `state` in the history: its new state (reason, data).
    let went = |state: &str| {
        api.wait_for(
            60,
            &format!("the transition to {state} in the history"),
            || {
                let h = cw(
                    &api,
                    &[
                        "describe-alarm-history",
                        "--alarm-name",
                        "backlog",
                        "--history-item-type",
                        "StateUpdate",
                    ],
                );
                h["AlarmHistoryItems"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find_map(|i| {
                        let d: Value =
                            serde_json::from_str(i["HistoryData"].as_str().unwrap()).unwrap();
                        (d["newState"]["stateValue"] == state).then(|| d["newState"].clone())
                    })
            },
        )
    };
    // 60 and 30: each and their sum (90) under 100.
    put(&[("Waiting", 60.0), ("Retrying", 30.0)]);
    let ok = went("OK");
    assert_eq!(
        ok["stateReasonData"]["recentDatapoints"],
        serde_json::json!([90.0]),
        "{ok}"
    );
    let reason = ok["stateReason"].as_str().unwrap();
    assert!(
        reason.starts_with("Threshold Crossed: 1 datapoint [90.0 (")
            && reason.contains("was not greater than the threshold (100.0)"),
        "{reason}"
    );
    // Retrying up to 60: each still under 100, their sum (120) over.
    put(&[("Retrying", 60.0)]);
    let alarm = went("ALARM");
    assert_eq!(
        alarm["stateReasonData"]["recentDatapoints"],
        serde_json::json!([120.0]),
        "{alarm}"
    );
    assert!(
        alarm["stateReasonData"].get("statistic").is_none(),
        "{alarm}"
    );
    let reason = alarm["stateReason"].as_str().unwrap();
    assert!(
        reason.starts_with("Threshold Crossed: 1 datapoint [120.0 (")
            && reason.ends_with("was greater than the threshold (100.0) (minimum 1 datapoint for OK -> ALARM transition)."),
        "{reason}"
    );
    // No ALARM before the sum crossed: the history has OK before ALARM and nothing else
    // than these (and INSUFFICIENT_DATA at the start).
    let h = cw(
        &api,
        &[
            "describe-alarm-history",
            "--alarm-name",
            "backlog",
            "--history-item-type",
            "StateUpdate",
            "--scan-by",
            "TimestampAscending",
        ],
    );
    let summaries: Vec<&str> = h["AlarmHistoryItems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["HistorySummary"].as_str().unwrap())
        .collect();
    assert_eq!(
        summaries.first(),
        Some(&"Alarm updated from INSUFFICIENT_DATA to OK"),
        "{summaries:?}"
    );
    assert!(
        summaries.contains(&"Alarm updated from OK to ALARM"),
        "{summaries:?}"
    );
    cw(&api, &["delete-alarms", "--alarm-names", "backlog"]);
}
