//! Root integration tests of the web console (docs/console.md) in a real browser: Debian's
//! chromium and chromium-driver, driven over WebDriver by Python selenium
//! (tests/console/browser.py), against `minifargate serve` over a real registry, the real
//! kernel and supervisors. The browser talks to loopback only. Screenshots of every page
//! go to target/console-shots/ (and, with UPDATE_DOCS=1, to docs/console/).

use crate::common;

use common::api::{Api, console_shots};
use common::elb::elbv2;
use common::image::{Compression, Layer, busybox_all_applets};
use common::util::{free_port, no_proxy};
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

/// examples/web.json as it is but for its port (awsvpc publishes hostPort ==
/// containerPort on this host, so tests in parallel need their own).
fn web_taskdef(port: u16) -> String {
    std::fs::read_to_string(repo("examples/web.json"))
        .unwrap()
        .replace("8080", &port.to_string())
}

/// A small service's task definition (the services page and the scale action).
const TICK: &str = r#"{"family":"tick","networkMode":"awsvpc","cpu":"256","memory":"512",
  "requiresCompatibilities":["FARGATE"],
  "containerDefinitions":[{"name":"app","image":"public.ecr.aws/docker/library/busybox:1.36",
    "essential":true,"stopTimeout":2,
    "command":["sh","-c","trap 'exit 0' TERM; while :; do echo tick; sleep 1; done"]}]}"#;

/// The screenshots docs/console.md shows (the others stay under target/).
const DOC_SHOTS: &[&str] = &[
    "clusters",
    "tasks",
    "task",
    "task-isolation",
    "task-timeline",
    "task-logs",
    "task-stopped",
    "task-phone-dark",
    "taskdefs",
    "taskdef",
    "run-task-result",
    "services",
    "service",
];

/// With UPDATE_DOCS=1, the screenshots become docs/console.md's.
fn update_docs(shots: &Path) {
    if std::env::var_os("UPDATE_DOCS").is_none() {
        return;
    }
    let docs = repo("docs/console");
    std::fs::create_dir_all(&docs).unwrap();
    for name in DOC_SHOTS {
        let file = format!("{name}.png");
        std::fs::copy(shots.join(&file), docs.join(&file))
            .unwrap_or_else(|e| panic!("copy the screenshot {file}: {e}"));
    }
}

fn arn_id(v: &serde_json::Value) -> String {
    v.as_str().unwrap().rsplit('/').next().unwrap().to_string()
}

#[test]
fn the_web_example_is_watched_and_stopped_in_a_real_browser() {
    let api = Api::start_with(
        Layer::new(Compression::Gzip, busybox_all_applets("console")),
        &[],
    );
    let port = free_port();
    let web = api.file("web.json", &web_taskdef(port));
    api.aws_json(&["register-task-definition", "--cli-input-json", &web]);
    // A second revision, for the diff: another size.
    let web2 = api.file(
        "web2.json",
        &web_taskdef(port).replace("\"memory\": \"512\"", "\"memory\": \"1024\""),
    );
    api.aws_json(&["register-task-definition", "--cli-input-json", &web2]);
    let tick = api.file("tick.json", TICK);
    api.aws_json(&["register-task-definition", "--cli-input-json", &tick]);
    api.aws_json(&[
        "create-service",
        "--service-name",
        "ticker",
        "--task-definition",
        "tick",
        "--desired-count",
        "1",
    ]);
    let run = api.aws_json(&["run-task", "--task-definition", "web:1"]);
    let arn = run["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    let id = arn_id(&run["tasks"][0]["taskArn"]);
    api.aws_json(&["wait", "tasks-running", "--tasks", &arn]);

    let shots = console_shots();
    // In the CI run with MINIFARGATE_TEST_USERNS the task has a user namespace of its own.
    let userns = if api.mf.env_value("MINIFARGATE_USERNS").is_some() {
        "1"
    } else {
        "0"
    };
    api.browser(
        "browser.py",
        &[("TASK_ID", &id), ("CLUSTER", "default"), ("USERNS", userns)],
    );

    // What the browser did is what the API says.
    let t = &api.aws_json(&["describe-tasks", "--tasks", &arn])["tasks"][0];
    assert_eq!(t["lastStatus"], "STOPPED", "{t:#}");
    assert_eq!(t["stopCode"], "UserInitiated", "{t:#}");
    assert_eq!(t["stoppedReason"], "Stopped from the web console", "{t:#}");
    let svc = api.service("default", "ticker");
    assert_eq!(svc["desiredCount"], 0, "{svc:#}");
    // The task run from the console, with its overrides.
    let listed = api.aws_json(&["list-tasks", "--family", "tick"]);
    let arns: Vec<&str> = listed["taskArns"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    let tasks = api.aws_json(&[&["describe-tasks", "--tasks"][..], &arns[..]].concat());
    let from_console = tasks["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| {
            t["overrides"]["containerOverrides"][0]["command"][2]
                .as_str()
                .is_some_and(|c| c.starts_with("echo from-the-console"))
        })
        .unwrap_or_else(|| panic!("no task run from the console: {tasks:#}"));
    assert_eq!(from_console["lastStatus"], "RUNNING", "{from_console:#}");
    update_docs(&shots);
}

#[test]
fn a_read_only_console_hides_the_actions_and_the_server_refuses_them() {
    let api = Api::start_with(
        Layer::new(Compression::Gzip, busybox_all_applets("console-ro")),
        // Its task in a user namespace of its own, which the isolation view shows.
        &["--read-only", "--userns", "on"],
    );
    let tick = api.file("tick.json", TICK);
    api.aws_json(&["register-task-definition", "--cli-input-json", &tick]);
    let run = api.aws_json(&["run-task", "--task-definition", "tick"]);
    let arn = run["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    let id = arn_id(&run["tasks"][0]["taskArn"]);
    api.aws_json(&["wait", "tasks-running", "--tasks", &arn]);
    // Signed in with serve's key (HTTP Basic), as the browser is.
    let (key_id, secret) = api.credentials();
    let user = format!("{key_id}:{secret}");
    let signed_in: &[&str] = &["-u", &user];

    // The server refuses an action even when asked directly (not only hidden).
    let out = no_proxy(&mut Command::new("curl"))
        .args(signed_in)
        .args(["-s", "-w", "\n%{http_code}", "-X", "POST"])
        .args(["-H", "Content-Type: application/json"])
        .args(["-d", &format!(r#"{{"task":"{arn}"}}"#)])
        .arg(format!("{}/console/api/ecs/StopTask", api.endpoint))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.ends_with("\n403"), "{text}");
    assert!(text.contains("read-only"), "{text}");

    // The views ECS has no operation for, as the page reads them.
    let view = |path: &str| -> (u16, serde_json::Value) {
        let (code, text) = curl(signed_in, &format!("{}/console/api/{path}", api.endpoint));
        let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
        (code, serde_json::from_str(body).unwrap_or_default())
    };
    let (code, stats) = view(&format!("tasks/{id}/stats"));
    assert_eq!(code, 200, "{stats:#}");
    let c = &stats["containers"][0];
    assert_eq!(c["name"], "app", "{stats:#}");
    assert!(c["memUsage"].as_u64().unwrap() > 0, "{stats:#}");
    assert!(c["cpuTotalNs"].as_u64().unwrap() > 0, "{stats:#}");
    assert_eq!(stats["taskMemory"], "512", "{stats:#}");
    let (code, tl) = view(&format!("tasks/{id}/timeline"));
    assert_eq!(code, 200, "{tl:#}");
    let phases: Vec<String> = tl["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{}/{}",
                p["container"].as_str().unwrap(),
                p["phase"].as_str().unwrap()
            )
        })
        .collect();
    for want in ["app/pull", "app/create", "app/start"] {
        assert!(phases.iter().any(|p| p == want), "{want} in {phases:?}");
    }
    assert!(
        tl["milestones"]["runningUs"].as_i64().unwrap() > 0,
        "{tl:#}"
    );
    // Logs: the last lines first, then only what is newer than a cursor.
    let (code, logs) = view(&format!("tasks/{id}/logs"));
    assert_eq!(code, 200, "{logs:#}");
    let lines = logs["lines"].as_array().unwrap().clone();
    assert!(lines.iter().any(|l| l["log"] == "tick"), "{logs:#}");
    let last = lines.last().unwrap()["time"].as_str().unwrap().to_string();
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let (_, newer) = view(&format!(
        "tasks/{id}/logs?container=app&since={}",
        last.replace('+', "%2B")
    ));
    let newer = newer["lines"].as_array().unwrap();
    assert!(!newer.is_empty(), "a tick a second");
    assert!(
        newer
            .iter()
            .all(|l| l["time"].as_str().unwrap() >= last.as_str()),
        "{newer:#?}"
    );
    // A page of another name pointed at 127.0.0.1 (DNS rebinding) gets nothing, even
    // with the key.
    let config = format!("{}/console/api/config", api.endpoint);
    let (code, text) = curl(
        &[signed_in, &["-H", "Host: rebound.example"][..]].concat(),
        &config,
    );
    assert_eq!(code, 421, "{text}");
    let (code, text) = curl(signed_in, &config);
    assert_eq!(code, 200, "{text}");
    let (code, text) = curl(&[], &config);
    assert_eq!(code, 401, "not signed in: {text}");
    let (code, missing) = view("tasks/0123456789abcdef0123456789abcdef/isolation");
    assert_eq!(code, 404, "{missing:#}");
    assert!(missing["message"].as_str().unwrap().contains("not found"));

    api.browser(
        "browser.py",
        &[
            ("TASK_ID", &id),
            ("CLUSTER", "default"),
            ("READ_ONLY", "1"),
            ("USERNS", "1"),
        ],
    );
    let t = &api.aws_json(&["describe-tasks", "--tasks", &arn])["tasks"][0];
    assert_eq!(t["lastStatus"], "RUNNING", "{t:#}");
    api.aws_json(&["stop-task", "--task", &arn]);
    api.aws_json(&["wait", "tasks-stopped", "--tasks", &arn]);
}

/// `curl -s -i ARGS URL`: the status line's code and the whole response.
fn curl(args: &[&str], url: &str) -> (u16, String) {
    let out = no_proxy(&mut Command::new("curl"))
        .args(["-s", "-i"])
        .args(args)
        .arg(url)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, text)
}

#[test]
fn with_access_keys_the_console_asks_for_one_and_the_api_stays_sigv4() {
    // The AWS CLI's pair in tests/common/api.rs, so `api.aws` signs with a valid key.
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("keys");
    std::fs::write(
        &creds,
        "AKIDEXAMPLE wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o600)).unwrap();
    let api = Api::start_with(
        Layer::new(Compression::Gzip, busybox_all_applets("console-keys")),
        &["--credentials-file", creds.to_str().unwrap()],
    );
    let page = format!("{}/", api.endpoint);
    let (code, text) = curl(&[], &page);
    assert_eq!(code, 401, "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("www-authenticate: basic realm=\"minifargate console\""),
        "{text}"
    );
    let (code, text) = curl(&["-u", "AKIDEXAMPLE:wrong"], &page);
    assert_eq!(code, 401, "{text}");
    let good = "AKIDEXAMPLE:wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    let (code, text) = curl(&["-u", good], &page);
    assert_eq!(code, 200, "{text}");
    assert!(text.contains("/assets/app.js"), "{text}");
    let call = format!("{}/console/api/ecs/ListClusters", api.endpoint);
    let json = [
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-d",
        "{}",
    ];
    let (code, text) = curl(&json, &call);
    assert_eq!(code, 401, "{text}");
    let (code, text) = curl(&[&["-u", good][..], &json[..]].concat(), &call);
    assert_eq!(code, 200, "{text}");
    assert!(text.contains("clusterArns"), "{text}");
    // Basic credentials do not open the ECS API: it still wants SigV4.
    let (code, text) = curl(
        &[
            "-u",
            good,
            "-X",
            "POST",
            "-H",
            "X-Amz-Target: AmazonEC2ContainerServiceV20141113.ListClusters",
            "-H",
            "Content-Type: application/x-amz-json-1.1",
            "-d",
            "{}",
        ],
        &page,
    );
    assert_eq!(code, 400, "{text}");
    assert!(api.aws_json(&["list-clusters"])["clusterArns"].is_array());
}

/// The target group's targets as DescribeTargetHealth answers them: `id:port` and state.
fn target_states(api: &Api, tg: &str) -> Vec<(String, String)> {
    let h = elbv2(api, &["describe-target-health", "--target-group-arn", tg]);
    let mut v: Vec<(String, String)> = h["TargetHealthDescriptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                format!(
                    "{}:{}",
                    d["Target"]["Id"].as_str().unwrap(),
                    d["Target"]["Port"]
                ),
                d["TargetHealth"]["State"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn a_service_behind_a_load_balancer_shows_its_targets_health_in_a_real_browser() {
    let api = Api::start_with(
        Layer::new(Compression::Gzip, busybox_all_applets("console-lb")),
        &[],
    );
    let lb = common::elb::create_alb(&api, "console-web");
    let (lb_arn, dns) = (lb.arn, lb.dns);
    // A delay long enough to be seen draining in the browser.
    let tg_arn = common::elb::http_target_group(&api, "console-web", 30);
    let port = free_port().to_string();
    common::elb::http_listener(&api, &lb_arn, &port, &tg_arn);
    let web = api.file(
        "web.json",
        r#"{"family":"web","networkMode":"awsvpc","cpu":"256","memory":"512",
  "containerDefinitions":[{"name":"web","image":"public.ecr.aws/docker/library/busybox:1.36",
    "essential":true,"portMappings":[{"containerPort":8080}],
    "command":["sh","-c","mkdir -p /www && echo hi > /www/index.html && trap 'exit 0' TERM; httpd -f -p 8080 -h /www & wait"]}]}"#,
    );
    api.aws_json(&["register-task-definition", "--cli-input-json", &web]);
    api.aws_json(&["create-cluster", "--cluster-name", "default"]);
    api.aws_json(&[
        "create-service",
        "--service-name",
        "web",
        "--task-definition",
        "web",
        "--desired-count",
        "2",
        "--load-balancers",
        &format!("targetGroupArn={tg_arn},containerName=web,containerPort=8080"),
    ]);
    let healthy = api.wait_for(120, "2 healthy targets", || {
        let t = target_states(&api, &tg_arn);
        (t.len() == 2 && t.iter().all(|(_, s)| s == "healthy")).then_some(t)
    });
    let targets: Vec<String> = healthy.into_iter().map(|(t, _)| t).collect();
    // serve's record of each target's changes, which the page's strips show: registered
    // (initial, maybe for more than one reason), then healthy, in time order.
    let history = |api: &Api| -> Vec<(String, Vec<(f64, String)>)> {
        let (key_id, secret) = api.credentials();
        let (code, text) = curl(
            &["-u", &format!("{key_id}:{secret}")],
            &format!("{}/console/api/target-health-history", api.endpoint),
        );
        assert_eq!(code, 200, "{text}");
        let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        v["targets"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["targetGroupArn"] == tg_arn.as_str())
            .map(|t| {
                let id = format!("{}:{}", t["id"].as_str().unwrap(), t["port"]);
                let points = t["points"].as_array().unwrap().iter();
                (
                    id,
                    points
                        .map(|p| {
                            (
                                p["at"].as_f64().unwrap(),
                                p["state"].as_str().unwrap().to_string(),
                            )
                        })
                        .collect(),
                )
            })
            .collect()
    };
    let before = history(&api);
    assert_eq!(before.len(), 2, "{before:?}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    for (id, points) in &before {
        assert!(targets.contains(id), "{id} against {targets:?}");
        let states: Vec<&str> = points.iter().map(|(_, s)| s.as_str()).collect();
        assert!(
            states.first() == Some(&"initial")
                && states.last() == Some(&"healthy")
                && states[..states.len() - 1].iter().all(|s| *s == "initial"),
            "{id}: {points:?}"
        );
        assert!(
            points.windows(2).all(|w| w[0].0 <= w[1].0)
                && points.iter().all(|(at, _)| *at > now - 300.0 && *at <= now),
            "{id}: {points:?}, now {now}"
        );
    }

    api.browser(
        "loadbalancers.py",
        &[
            ("LB", "console-web"),
            ("DNS", &dns),
            ("PORT", &port),
            ("TG", "console-web"),
            ("SERVICE", "web"),
            ("TARGETS", &targets.join(",")),
        ],
    );

    // What the browser did and saw is what the API says: desired 1 (the console's form),
    // one of the two targets draining or already gone, the other healthy.
    assert_eq!(api.service("default", "web")["desiredCount"], 1);
    let now = target_states(&api, &tg_arn);
    assert!(
        now.iter().filter(|(_, s)| s == "healthy").count() == 1
            && now
                .iter()
                .all(|(t, s)| targets.contains(t) && (s == "healthy" || s == "draining")),
        "{now:?} against {targets:?}"
    );
    // The record has the drain too, after the healthy time it had before.
    let after = history(&api);
    let drained: Vec<&(String, Vec<(f64, String)>)> = after
        .iter()
        .filter(|(_, p)| p.iter().any(|(_, s)| s == "draining"))
        .collect();
    assert_eq!(drained.len(), 1, "{after:?}");
    let states: Vec<&str> = drained[0].1.iter().map(|(_, s)| s.as_str()).collect();
    let healthy_at = states.iter().position(|s| *s == "healthy").unwrap();
    let draining_at = states.iter().position(|s| *s == "draining").unwrap();
    assert!(healthy_at < draining_at, "{states:?}");
}

fn autoscaling(api: &Api, args: &[&str]) {
    let out = api.aws_in("application-autoscaling", args);
    assert!(
        out.status.success(),
        "aws application-autoscaling {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A service's scaling on its page, on a read-only console: a service whose one task
/// burns its quarter vCPU, in a cluster with Container Insights on, a target tracking
/// policy at 50 % CPU (metrics every 5 s), scaled out to 2 by it; then the page shows,
/// from its first showing, CloudWatch's history of the service (CPU datapoints from before
/// it opened, a running count of 1 and then more) on a time axis, the scalable target and
/// policy, the CPU chart's target line, the memory chart, the running and desired count,
/// the scaling activity in AWS's words, as the APIs answered the test, and 3 hours at a
/// coarser period.
#[test]
fn a_service_s_page_charts_its_scaling_against_the_policy_s_target_in_a_real_browser() {
    let api = Api::start_env(
        Layer::new(Compression::Gzip, busybox_all_applets("console-scaling")),
        &["--read-only"],
        &[("MINIFARGATE_METRICS_PERIOD", "5")],
    );
    let def = api.file(
        "burner.json",
        r#"{"family":"burner","networkMode":"awsvpc","cpu":"256","memory":"512",
  "containerDefinitions":[{"name":"app","image":"public.ecr.aws/docker/library/busybox:1.36",
    "essential":true,"stopTimeout":2,
    "command":["sh","-c","trap 'exit 0' TERM; while :; do i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; done"]}]}"#,
    );
    api.aws_json(&["register-task-definition", "--cli-input-json", &def]);
    // Container Insights on: the running and desired counts have a history.
    api.create_cluster_with_insights("default");
    api.aws_json(&[
        "create-service",
        "--service-name",
        "burner",
        "--task-definition",
        "burner",
        "--desired-count",
        "1",
    ]);
    let target = [
        "--service-namespace",
        "ecs",
        "--scalable-dimension",
        "ecs:service:DesiredCount",
        "--resource-id",
        "service/default/burner",
    ];
    autoscaling(
        &api,
        &[
            &["register-scalable-target"][..],
            &target,
            &["--min-capacity", "1", "--max-capacity", "2"],
        ]
        .concat(),
    );
    autoscaling(
        &api,
        &[
            &["put-scaling-policy", "--policy-name", "cpu50"][..],
            &target,
            &[
                "--policy-type",
                "TargetTrackingScaling",
                "--target-tracking-scaling-policy-configuration",
                r#"{"TargetValue":50,"PredefinedMetricSpecification":{"PredefinedMetricType":"ECSServiceAverageCPUUtilization"}}"#,
            ],
        ]
        .concat(),
    );
    api.wait_for(120, "the service scaled out to 2 running tasks", || {
        let s = api.service("default", "burner");
        (s["desiredCount"] == 2 && s["runningCount"] == 2).then_some(())
    });
    // What the page's first showing must chart: Container Insights has sent a period in
    // which more than one task ran (a period is sent once it is over; on a loaded machine
    // the page could open before that).
    api.wait_for(120, "Container Insights' running count above 1", || {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let v = api.aws_json_in(
            "cloudwatch",
            &[
                "get-metric-statistics",
                "--namespace",
                "ECS/ContainerInsights",
                "--metric-name",
                "RunningTaskCount",
                "--dimensions",
                "Name=ClusterName,Value=default",
                "Name=ServiceName,Value=burner",
                "--start-time",
                &(now - 3600).to_string(),
                "--end-time",
                &(now + 60).to_string(),
                "--period",
                "10",
                "--statistics",
                "Average",
            ],
        );
        v["Datapoints"]
            .as_array()?
            .iter()
            .any(|d| d["Average"].as_f64().is_some_and(|a| a > 1.0))
            .then_some(())
    });
    api.browser(
        "scaling.py",
        &[
            ("SERVICE", "burner"),
            ("POLICY", "cpu50"),
            ("TARGET", "50"),
            ("DESIRED", "2"),
            // The period of the last hour's and 3 hours' points at a 5 s box period.
            ("PERIOD_1H", "10"),
            ("PERIOD_3H", "60"),
        ],
    );
    // The console reads these services; a write through its routes is refused.
    let (key_id, secret) = api.credentials();
    let user = format!("{key_id}:{secret}");
    for (path, body) in [
        (
            "cloudwatch/PutMetricData",
            r#"{"Namespace":"x","MetricData":[{"MetricName":"m","Value":1}]}"#,
        ),
        (
            "application-autoscaling/DeleteScalingPolicy",
            r#"{"PolicyName":"cpu50","ServiceNamespace":"ecs","ResourceId":"service/default/burner","ScalableDimension":"ecs:service:DesiredCount"}"#,
        ),
    ] {
        let (code, text) = curl(
            &[
                "-u",
                &user,
                "-X",
                "POST",
                "-H",
                "Content-Type: application/json",
                "-d",
                body,
            ],
            &format!("{}/console/api/{path}", api.endpoint),
        );
        assert_eq!(code, 404, "{text}");
        assert!(text.contains("the console does not call"), "{text}");
    }
    let policies = api.aws_in(
        "application-autoscaling",
        &["describe-scaling-policies", "--service-namespace", "ecs"],
    );
    assert!(String::from_utf8_lossy(&policies.stdout).contains("cpu50"));
    api.aws_json(&["delete-service", "--service", "burner", "--force"]);
}

fn ecr_json(api: &Api, args: &[&str]) -> serde_json::Value {
    let out = api.aws_in("ecr", args);
    assert!(
        out.status.success(),
        "aws ecr {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    if out.stdout.is_empty() {
        return serde_json::Value::Null;
    }
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The Repositories page: a repository of serve's ECR with an exclusion-filter tag
/// mutability, its images (tags, size, pushed at, last pull), its lifecycle policy, the
/// policy's preview and the image lifecycle expiry removed, as `aws ecr` answered the
/// test. Images pushed with `minifargate push` (OCI layouts), one pulled with
/// `minifargate pull`.
#[test]
fn the_repositories_page_shows_images_lifecycle_preview_and_expiry_in_a_real_browser() {
    use common::image::{Layout, busybox_layer};
    let api = Api::start_env(
        busybox_layer(Compression::Gzip, "serve"),
        &[],
        &[("MINIFARGATE_ECR_LIFECYCLE_INTERVAL", "1")],
    );
    let created = ecr_json(
        &api,
        &[
            "create-repository",
            "--repository-name",
            "console/app",
            "--image-tag-mutability",
            "IMMUTABLE_WITH_EXCLUSION",
            "--image-tag-mutability-exclusion-filters",
            "filterType=WILDCARD,filter=dev-*",
        ],
    );
    let uri = created["repository"]["repositoryUri"]
        .as_str()
        .unwrap()
        .to_string();
    let work = tempfile::tempdir().unwrap();
    let mut digests = Vec::new();
    for tag in ["v1", "v2", "v3", "dev-1"] {
        let dir = work.path().join(tag);
        let mut l = Layout::new(&dir);
        let img = l.add_image(
            "linux/amd64",
            &[busybox_layer(Compression::Gzip, &format!("console-{tag}"))],
        );
        l.tag_image("t", &img);
        let got = api.mf.json(&[
            "push",
            "--output",
            "json",
            dir.to_str().unwrap(),
            &format!("{uri}:{tag}"),
        ]);
        digests.push((tag, got["imageDigest"].as_str().unwrap().to_string()));
        // Push times one after another (the count rule keeps the newest).
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    api.mf
        .json(&["pull", &format!("{uri}:v2"), "--format", "json"]);

    // The guide's count rule: keep the newest 2 images tagged v*; v1 goes.
    let policy = r#"{"rules":[{"rulePriority":1,"description":"keep 2 releases","selection":{"tagStatus":"tagged","tagPrefixList":["v"],"countType":"imageCountMoreThan","countNumber":2},"action":{"type":"expire"}}]}"#;
    let preview = ecr_json(
        &api,
        &[
            "start-lifecycle-policy-preview",
            "--repository-name",
            "console/app",
            "--lifecycle-policy-text",
            policy,
        ],
    );
    assert_eq!(preview["status"], "COMPLETE", "{preview}");
    ecr_json(
        &api,
        &[
            "put-lifecycle-policy",
            "--repository-name",
            "console/app",
            "--lifecycle-policy-text",
            policy,
        ],
    );
    let v1 = digests[0].1.clone();
    api.wait_for(30, "the expiry of v1", || {
        let d = ecr_json(
            &api,
            &["describe-images", "--repository-name", "console/app"],
        );
        let left: Vec<String> = d["imageDetails"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["imageDigest"].as_str().unwrap().to_string())
            .collect();
        (left.len() == 3 && !left.contains(&v1)).then_some(())
    });
    let images: Vec<String> = digests[1..]
        .iter()
        .map(|(tag, d)| format!("{d}={tag}"))
        .collect();
    let pulled = digests[1].1.clone();
    api.browser(
        "repositories.py",
        &[
            ("REPO", "console/app"),
            ("URI", &uri),
            ("MUTABILITY", "IMMUTABLE_WITH_EXCLUSION (mutable: dev-*)"),
            ("IMAGES", &images.join(";")),
            ("PULLED", &pulled),
            ("EXPIRED", &v1),
            ("COUNT_TYPE", "imageCountMoreThan"),
        ],
    );
}

/// `id=address:port` of each instance Cloud Map lists in the service `service_id`, sorted.
fn instances(api: &Api, service_id: &str) -> Vec<String> {
    let v = api.aws_json_in(
        "servicediscovery",
        &["list-instances", "--service-id", service_id],
    );
    let mut out: Vec<String> = v["Instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let a = &i["Attributes"];
            format!(
                "{}={}:{}",
                i["Id"].as_str().unwrap(),
                a["AWS_INSTANCE_IPV4"].as_str().unwrap(),
                a["AWS_INSTANCE_PORT"].as_str().unwrap()
            )
        })
        .collect();
    out.sort();
    out
}

/// A service's discovery names on its page: a service of two tasks registered
/// (`serviceRegistries`) in a Cloud Map service of a private DNS namespace, made with the
/// AWS CLI, and with a Service Connect alias; the page shows the name the tasks resolve,
/// the records, each task's instance with its address and port, the Service Connect
/// namespace, the alias as `dnsName:port` and its instances, as the AWS CLI answers them;
/// a service naming no namespace nor alias name shows the cluster's default namespace and
/// ECS's default alias name; a registry naming no Cloud Map service shows Cloud Map's error.
#[test]
fn a_service_s_page_shows_its_discovery_names_and_service_connect_alias_in_a_real_browser() {
    let api = Api::start_with(
        Layer::new(Compression::Gzip, busybox_all_applets("console-sd")),
        &[],
    );
    let op = api.aws_json_in(
        "servicediscovery",
        &[
            "create-private-dns-namespace",
            "--name",
            "console.local",
            "--vpc",
            "vpc-1",
        ],
    );
    let op = api.aws_json_in(
        "servicediscovery",
        &[
            "get-operation",
            "--operation-id",
            op["OperationId"].as_str().unwrap(),
        ],
    );
    let ns_id = op["Operation"]["Targets"]["NAMESPACE"]
        .as_str()
        .unwrap()
        .to_string();
    let ns = api.aws_json_in("servicediscovery", &["get-namespace", "--id", &ns_id])["Namespace"]
        .clone();
    let svc = api.aws_json_in(
        "servicediscovery",
        &[
            "create-service",
            "--name",
            "api",
            "--namespace-id",
            &ns_id,
            "--dns-config",
            "RoutingPolicy=MULTIVALUE,DnsRecords=[{Type=A,TTL=10},{Type=SRV,TTL=15}]",
        ],
    )["Service"]
        .clone();
    let (svc_id, registry) = (
        svc["Id"].as_str().unwrap().to_string(),
        svc["Arn"].as_str().unwrap().to_string(),
    );
    let name = format!(
        "{}.{}",
        svc["Name"].as_str().unwrap(),
        ns["Name"].as_str().unwrap()
    );
    let records: Vec<String> = svc["DnsConfig"]["DnsRecords"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| format!("{} (TTL {} s)", r["Type"].as_str().unwrap(), r["TTL"]))
        .collect();
    let def = api.file(
        "api.json",
        r#"{"family":"api","networkMode":"awsvpc","cpu":"256","memory":"512",
  "containerDefinitions":[{"name":"web","image":"public.ecr.aws/docker/library/busybox:1.36",
    "essential":true,"stopTimeout":2,"portMappings":[{"containerPort":8080,"name":"web"}],
    "command":["sh","-c","trap 'exit 0' TERM; while :; do sleep 1; done"]}]}"#,
    );
    api.aws_json(&["register-task-definition", "--cli-input-json", &def]);
    // The cluster's default namespace is the one made above (by its name), for `client`.
    let cluster = api.aws_json(&[
        "create-cluster",
        "--cluster-name",
        "default",
        "--service-connect-defaults",
        &format!("namespace={}", ns["Name"].as_str().unwrap()),
    ]);
    let default_ns = arn_id(&cluster["cluster"]["serviceConnectDefaults"]["namespace"]);
    let default_ns = api.aws_json_in("servicediscovery", &["get-namespace", "--id", &default_ns])
        ["Namespace"]["Name"]
        .as_str()
        .unwrap()
        .to_string();
    let port = free_port();
    // No task: it names no namespace (the cluster's) and no alias name (ECS's default,
    // `<portName>.<namespace>`).
    let client_port = free_port();
    api.aws_json(&[
        "create-service",
        "--service-name",
        "client",
        "--task-definition",
        "api",
        "--desired-count",
        "0",
        "--service-connect-configuration",
        &format!(
            r#"{{"enabled":true,"services":[{{"portName":"web","clientAliases":[{{"port":{client_port}}}]}}]}}"#
        ),
    ]);
    api.aws_json(&[
        "create-service",
        "--service-name",
        "api",
        "--task-definition",
        "api",
        "--desired-count",
        "2",
        "--service-registries",
        &format!("registryArn={registry},containerName=web,containerPort=8080"),
        "--service-connect-configuration",
        &format!(
            r#"{{"enabled":true,"namespace":"{}","services":[{{"portName":"web","discoveryName":"api-sc","clientAliases":[{{"port":{port},"dnsName":"api.internal"}}]}}]}}"#,
            ns["Arn"].as_str().unwrap()
        ),
    ]);
    let sc = &api.service("default", "api")["deployments"][0]["serviceConnectConfiguration"];
    let alias = format!(
        "{}:{}",
        sc["services"][0]["clientAliases"][0]["dnsName"]
            .as_str()
            .unwrap(),
        sc["services"][0]["clientAliases"][0]["port"]
    );
    let registered = api.wait_for(120, "both tasks registered", || {
        let i = instances(&api, &svc_id);
        (i.len() == 2).then_some(i)
    });
    // Service Connect's Cloud Map service, named for the discovery name.
    let connect_instances = api.wait_for(60, "both tasks in api-sc", || {
        let v = api.aws_json_in(
            "servicediscovery",
            &[
                "list-services",
                "--filters",
                &format!("Name=NAMESPACE_ID,Values={ns_id},Condition=EQ"),
            ],
        );
        let id = v["Services"]
            .as_array()?
            .iter()
            .find(|s| s["Name"] == "api-sc")?["Id"]
            .as_str()?
            .to_string();
        let i = instances(&api, &id);
        // And `client`'s Cloud Map service, named for its port name.
        let client = v["Services"].as_array()?.iter().any(|s| s["Name"] == "web");
        (i.len() == 2 && client).then_some(i)
    });
    api.browser(
        "discovery.py",
        &[
            ("SERVICE", "api"),
            ("NAME", &name),
            ("REGISTRY_ARN", &registry),
            ("RECORDS", &records.join(", ")),
            ("INSTANCES", &registered.join(",")),
            ("CONNECT_NS", ns["Name"].as_str().unwrap()),
            ("PORT_NAME", "web"),
            ("ALIAS", &alias),
            ("CONNECT_INSTANCES", &connect_instances.join(",")),
            ("CLIENT_SERVICE", "client"),
            ("DEFAULT_NS", &default_ns),
            ("CLIENT_ALIAS", &format!("web.{default_ns}:{client_port}")),
        ],
    );
    // The console reads Cloud Map; a write through its route is refused.
    let (key_id, secret) = api.credentials();
    let (code, text) = curl(
        &[
            "-u",
            &format!("{key_id}:{secret}"),
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "-d",
            &format!(r#"{{"ServiceId":"{svc_id}","InstanceId":"x"}}"#),
        ],
        &format!(
            "{}/console/api/servicediscovery/DeregisterInstance",
            api.endpoint
        ),
    );
    assert_eq!(code, 404, "{text}");
    assert!(text.contains("the console does not call"), "{text}");
    assert_eq!(instances(&api, &svc_id), registered);
    // A registry naming no Cloud Map service: the page shows Cloud Map's error for it.
    let gone = registry.replace(&svc_id, "srv-0123456789abcdef");
    let out = api.aws_in(
        "servicediscovery",
        &["get-service", "--id", "srv-0123456789abcdef"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let message = stderr
        .trim()
        .split_once("GetService operation: ")
        .unwrap_or_else(|| panic!("{stderr}"))
        .1;
    assert!(stderr.contains("(ServiceNotFound)"), "{stderr}");
    api.aws_json(&[
        "update-service",
        "--service",
        "api",
        "--service-registries",
        &format!("registryArn={gone},containerName=web,containerPort=8080"),
    ]);
    api.browser(
        "discovery.py",
        &[
            ("SERVICE", "api"),
            ("REGISTRY_ARN", &gone),
            ("NAME", ""),
            ("ERROR", &format!("GetService: ServiceNotFound: {message}")),
        ],
    );
    for service in ["api", "client"] {
        api.aws_json(&["delete-service", "--service", service, "--force"]);
    }
}
